//! The proxy under attack and on a bad day, each finding written as the attack: peers that never
//! read, connection floods, password guessing, a log that cannot be written.

mod support;

use smpp_proxy::esme::{submit_sm, Esme, EsmeError};
use smpp_proxy::pdu::{Body, CommandId, CommandStatus, Pdu};
use smpp_proxy::proxy::Proxy;
use smpp_proxy::sim::SimConfig;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};
use support::*;

/// A connection to `to` from loopback address `from`, with a receive buffer as small as the
/// kernel allows when `small` (a peer that fills up fast when it does not read).
async fn connect_from(from: &str, to: SocketAddr, small: bool) -> tokio::net::TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    if small {
        socket.set_recv_buffer_size(1024).unwrap();
    }
    socket.bind(SocketAddr::new(from.parse().unwrap(), 0)).unwrap();
    socket.connect(to).await.unwrap()
}

/// `true` once the proxy has closed `stream` (EOF or reset), reading and discarding what it
/// sent before; `false` if it is still open at `within`.
async fn closed_within(stream: &mut tokio::net::TcpStream, within: Duration) -> bool {
    use tokio::io::AsyncReadExt;
    let deadline = tokio::time::Instant::now() + within;
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0) | Err(_)) => return true,
            Ok(Ok(_)) => {}
        }
    }
}

/// Writes enquire_links, a few hundred at a time, until the connection fails (the proxy
/// closed it); never reads. How many it wrote.
fn flood_enquire_links(esme: Esme) -> tokio::task::JoinHandle<usize> {
    use tokio::io::AsyncWriteExt;
    let mut stream = esme.into_stream();
    let mut burst = bytes::BytesMut::new();
    for n in 1..=512 {
        Pdu::new(Body::EnquireLink)
            .with_sequence_number(n)
            .encode(&mut burst)
            .unwrap();
    }
    tokio::spawn(async move {
        let mut sent = 0;
        while stream.write_all(&burst).await.is_ok() {
            sent += 512;
        }
        sent
    })
}

fn connections(proxy: &Proxy) -> (u32, u32) {
    let l = proxy.snapshot().listener;
    (l.connections, l.unbound)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unbound_connections_cannot_dodge_the_bind_timeout() {
    let sims = start_sims(1, quiet()).await;
    let proxy = start_proxy(&proxy_toml(&sims, "", SHOP, "[sessions]\nbind_timeout = \"2s\"\n")).await;
    let addr = proxy.local_addr();
    // Floods enquire_links and never reads: a few are answered, then it is closed.
    let mut flooder = connect_from("127.0.0.1", addr, true).await;
    let flood = {
        let stream = connect_from("127.0.0.1", addr, true).await;
        flood_enquire_links(Esme::over(stream))
    };
    // Sends nothing at all: closed at bind_timeout.
    let mut silent = connect_from("127.0.0.1", addr, false).await;
    let started = Instant::now();
    {
        use tokio::io::AsyncWriteExt;
        let mut bytes = bytes::BytesMut::new();
        for n in 1..=1000 {
            Pdu::new(Body::EnquireLink)
                .with_sequence_number(n)
                .encode(&mut bytes)
                .unwrap();
        }
        // Whatever part of it goes through before the proxy closes the connection.
        let _ = flooder.write_all(&bytes).await;
    }
    // At most four are answered (16 octets each), then the connection is closed.
    let answered = {
        use tokio::io::AsyncReadExt;
        let mut answers = Vec::new();
        let read = tokio::time::timeout(T, flooder.read_to_end(&mut answers)).await;
        assert!(read.is_ok(), "flooding, unbound connection still open");
        answers.len()
    };
    assert!(answered <= 4 * 16, "{answered} octets of answers before a bind");
    // The other flooder's writes fail: its connection is gone too (how much the kernel took
    // before that is the kernel's buffering, not the proxy's).
    tokio::time::timeout(T, flood)
        .await
        .expect("flood not cut off")
        .unwrap();
    assert!(
        closed_within(&mut silent, T).await,
        "silent unbound connection still open"
    );
    assert!(
        started.elapsed() >= Duration::from_millis(1500),
        "closed before bind_timeout"
    );
    assert!(
        wait_until(T, || connections(&proxy) == (0, 0)).await,
        "{:?}",
        connections(&proxy)
    );
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bound_client_that_never_reads_is_closed_after_the_write_timeout() {
    let sims = start_sims(1, quiet()).await;
    let extra = "[sessions]\nwrite_timeout = \"1s\"\nenquire_link = \"60s\"\n";
    let proxy = start_proxy(&proxy_toml(&sims, "", SHOP, extra)).await;
    let stream = connect_from("127.0.0.1", proxy.local_addr(), true).await;
    let mut esme = Esme::over(stream);
    let resp = esme
        .bind_on(CommandId::BIND_TRANSCEIVER, "shop", "secret")
        .await
        .unwrap();
    assert!(resp.command_status.is_ok());
    assert!(wait_until(T, || client(&proxy, "shop").binds == 1).await);
    // Every enquire_link is answered; none of the answers is read.
    let flood = flood_enquire_links(esme);
    // Closed once the socket buffers are full and a write has waited 1 s: how long they take
    // to fill depends on the kernel's buffer sizes and the machine's load.
    assert!(
        wait_until(Duration::from_secs(60), || client(&proxy, "shop").binds == 0).await,
        "a client that does not read is still bound"
    );
    assert!(wait_until(T, || connections(&proxy) == (0, 0)).await);
    tokio::time::timeout(T, flood)
        .await
        .expect("the flooder's writes never failed")
        .unwrap();
    // Others are served meanwhile and after.
    let mut other = shop(&proxy).await;
    other.send(submit_sm("1", "2", b"x", false)).await.unwrap();
    assert!(other.recv(T).await.unwrap().command_status.is_ok());
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_caps_hold_while_a_legitimate_client_keeps_binding() {
    let sims = start_sims(1, quiet()).await;
    let extra = "[sessions]\nbind_timeout = \"2s\"\n\
                 [limits]\nmax_connections = 40\nmax_connections_per_ip = 4\nmax_unbound = 12\n";
    let proxy = start_proxy(&proxy_toml(&sims, "", SHOP, extra)).await;
    let addr = proxy.local_addr();
    // One address takes its four places; a fifth connection from it is closed at once.
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(connect_from("127.0.0.2", addr, false).await);
    }
    assert!(wait_until(T, || connections(&proxy) == (4, 4)).await);
    let mut fifth = connect_from("127.0.0.2", addr, false).await;
    assert!(
        closed_within(&mut fifth, Duration::from_secs(1)).await,
        "per-address cap"
    );
    // Another address binds and works all along.
    let mut binds = Vec::new();
    for _ in 0..3 {
        let mut esme = Esme::over(connect_from("127.0.0.1", addr, false).await);
        let resp = esme
            .bind_on(CommandId::BIND_TRANSCEIVER, "shop", "secret")
            .await
            .unwrap();
        assert_eq!(resp.command_status, CommandStatus::ESME_ROK);
        binds.push(esme);
    }
    // Two more addresses fill max_unbound (12); bound connections do not count against it.
    for from in ["127.0.0.3", "127.0.0.4"] {
        for _ in 0..4 {
            held.push(connect_from(from, addr, false).await);
        }
    }
    assert!(
        wait_until(T, || connections(&proxy) == (15, 12)).await,
        "{:?}",
        connections(&proxy)
    );
    let mut ninth = connect_from("127.0.0.5", addr, false).await;
    assert!(closed_within(&mut ninth, Duration::from_secs(1)).await, "max_unbound");
    // The bound clients are served meanwhile.
    for esme in &mut binds {
        esme.send(submit_sm("1", "2", b"x", false)).await.unwrap();
        assert!(esme.recv(T).await.unwrap().command_status.is_ok());
    }
    // The idle ones reach bind_timeout; a new client gets in again.
    for stream in &mut held {
        assert!(closed_within(stream, T).await);
    }
    let mut late = Esme::over(connect_from("127.0.0.5", addr, false).await);
    let resp = late
        .bind_on(CommandId::BIND_TRANSCEIVER, "shop", "secret")
        .await
        .unwrap();
    assert_eq!(resp.command_status, CommandStatus::ESME_ROK);
    let listener = proxy.snapshot().listener;
    assert_eq!(listener.refused["max_connections_per_ip"], 1, "{listener:?}");
    assert_eq!(listener.refused["max_unbound"], 1, "{listener:?}");
    assert!(proxy
        .snapshot()
        .prometheus()
        .contains("smpp_proxy_connections_refused_total{reason=\"max_unbound\"} 1"));
    proxy.shutdown().await;
}

/// A bind's outcome as the caller sees it: the status, or `None` when the connection was
/// closed before any answer (refused at accept).
async fn try_bind(addr: SocketAddr, system_id: &str, password: &str) -> Option<CommandStatus> {
    match Esme::bind(addr, CommandId::BIND_TRANSCEIVER, system_id, password).await {
        Ok(esme) => {
            let _ = esme.unbind().await;
            Some(CommandStatus::ESME_ROK)
        }
        Err(EsmeError::BindRefused(status)) => Some(status),
        Err(_) => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_guessing_earns_a_ban_and_every_refusal_sounds_the_same() {
    let sims = start_sims(1, quiet()).await;
    let clients = format!("{SHOP}[[clients]]\nsystem_id = \"far\"\npassword = \"farpw\"\nallow = [\"10.0.0.0/8\"]\n");
    let extra = "[limits]\nmax_auth_failures = 10\nauth_window = \"60s\"\nauth_ban = \"3s\"\n";
    let proxy = start_proxy(&proxy_toml(&sims, "", &clients, extra)).await;
    let addr = proxy.local_addr();
    // Unknown system_id, wrong password, right password from outside `allow`, wrong password
    // from outside `allow`: one answer for all.
    let answers = [
        try_bind(addr, "nobody", "secret").await,
        try_bind(addr, "shop", "wrong").await,
        try_bind(addr, "far", "farpw").await,
        try_bind(addr, "far", "nope").await,
    ];
    assert_eq!(answers, [Some(CommandStatus::ESME_RBINDFAIL); 4]);
    // A refused bind closes its connection: no second guess on it.
    let mut esme = Esme::connect(addr).await.unwrap();
    let resp = esme
        .bind_on(CommandId::BIND_TRANSCEIVER, "shop", "wrong")
        .await
        .unwrap();
    assert_eq!(resp.command_status, CommandStatus::ESME_RBINDFAIL);
    assert!(esme.recv(T).await.is_err(), "connection left open after a refused bind");

    // 200 guesses: the first few are answered, then the address is banned.
    let mut answered = 0;
    for n in 0..200 {
        if try_bind(addr, "shop", &format!("g{n}")).await.is_some() {
            answered += 1;
        }
    }
    assert!(answered <= 10, "{answered} guesses answered");
    // The right password now: refused, since the ban is on the address.
    let banned_at = Instant::now();
    assert_ne!(try_bind(addr, "shop", "secret").await, Some(CommandStatus::ESME_ROK));
    // Once the ban ends, the right password binds.
    let mut bound = false;
    let deadline = Instant::now() + Duration::from_secs(15);
    while !bound && Instant::now() < deadline {
        bound = try_bind(addr, "shop", "secret").await == Some(CommandStatus::ESME_ROK);
        if !bound {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    assert!(bound, "still banned after 15 s");
    assert!(banned_at.elapsed() >= Duration::from_secs(2), "the ban ended early");
    let listener = proxy.snapshot().listener;
    assert!(listener.bans >= 1 && listener.refused["banned"] >= 1, "{listener:?}");
    assert!(listener.bind_failures >= 10, "{listener:?}");
    proxy.shutdown().await;
}

/// The binary on `config` with its stderr piped to the test.
fn spawn_logging_proxy(config: &std::path::Path) -> Proc {
    use std::process::{Command, Stdio};
    Proc(
        Command::new(env!("CARGO_BIN_EXE_smpp-proxy"))
            .args(["run", "--config", config.to_str().unwrap()])
            .env("RUST_LOG", "info")
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    )
}

/// A config for the binary: the listen addresses on free ports, the given extra.
fn process_config(
    dir: &std::path::Path,
    sims: &[smpp_proxy::sim::SimHandle],
    extra: &str,
) -> (std::path::PathBuf, SocketAddr, SocketAddr) {
    let smpp: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let admin: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let toml = proxy_toml(sims, "", SHOP, extra).replace(
        "smpp = \"127.0.0.1:0\"",
        &format!("smpp = \"{smpp}\"\nadmin = \"{admin}\""),
    );
    let path = dir.join("proxy.toml");
    std::fs::write(&path, toml).unwrap();
    (path, smpp, admin)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_stderr_gone_the_proxy_keeps_serving_and_counts_lost_lines() {
    use std::io::BufRead;
    let tmp = tempfile::tempdir().unwrap();
    let sims = start_sims(1, quiet()).await;
    let (config, smpp, admin) = process_config(tmp.path(), &sims, "");
    let mut proxy = spawn_logging_proxy(&config);
    let _ = bind_when_up(smpp, CommandId::BIND_TRANSCEIVER).await;
    // The log's reader goes away: every later write to stderr fails (EPIPE).
    let stderr = proxy.0.stderr.take().unwrap();
    let mut lines = std::io::BufReader::new(stderr).lines();
    assert!(lines.next().is_some(), "the proxy logged nothing");
    drop(lines);
    // Binds log a line each; each now fails. The data path goes on.
    for _ in 0..20 {
        let mut esme = bind_when_up(smpp, CommandId::BIND_TRANSCEIVER).await;
        esme.send(submit_sm("1", "2", b"x", false)).await.unwrap();
        assert!(esme.recv(T).await.unwrap().command_status.is_ok());
        esme.unbind().await.unwrap();
    }
    let status: smpp_proxy::admin::Snapshot =
        serde_json::from_str(&smpp_proxy::admin::get(admin, "/status").unwrap()).unwrap();
    assert!(status.listener.log_lines_lost >= 20, "{:?}", status.listener);
    assert!(proxy.0.try_wait().unwrap().is_none(), "the proxy died");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_unauthenticated_peers_make_the_proxy_log_is_rate_limited() {
    let tmp = tempfile::tempdir().unwrap();
    let sims = start_sims(1, quiet()).await;
    let (config, smpp, _) = process_config(tmp.path(), &sims, "[sessions]\nbind_timeout = \"1s\"\n");
    let mut proxy = spawn_logging_proxy(&config);
    let _ = bind_when_up(smpp, CommandId::BIND_TRANSCEIVER).await;
    // 200 connections that never bind, and 200 refused binds.
    let mut idle = Vec::new();
    for _ in 0..200 {
        idle.push(connect_from("127.0.0.1", smpp, false).await);
    }
    for n in 0..200 {
        let from: IpAddr = format!("127.0.1.{}", n % 250 + 1).parse().unwrap();
        let mut esme = Esme::over(connect_from(&from.to_string(), smpp, false).await);
        let _ = esme.bind_on(CommandId::BIND_TRANSCEIVER, "shop", "wrong").await;
    }
    for stream in &mut idle {
        assert!(closed_within(stream, T).await);
    }
    // One more after the limiter's second has passed: its line says how many were left out
    // (the 200 may all have timed out within one second, leaving no later line to say it).
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let mut late = connect_from("127.0.0.1", smpp, false).await;
    assert!(closed_within(&mut late, T).await);
    // The log is written by its own thread: the line may come just after the close. Read it
    // as it comes and wait for it (a deadline, not a guess), then stop the proxy.
    let stderr = proxy.0.stderr.take().unwrap();
    let log = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let reader = {
        let log = log.clone();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stderr).lines().map_while(Result::ok) {
                let mut log = log.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        })
    };
    let said = |log: &str| {
        log.lines()
            .any(|l| l.contains("no bind in time") && !l.contains("suppressed=0"))
    };
    wait_until(T, || said(&log.lock().unwrap())).await;
    proxy.kill();
    reader.join().unwrap();
    let log = log.lock().unwrap().clone();
    let timeouts = log.lines().filter(|l| l.contains("no bind in time")).count();
    let refused = log.lines().filter(|l| l.contains("bind refused")).count();
    // 5 a second and 10 a second: far below 200 each, and the rest counted.
    assert!((1..=30).contains(&timeouts), "{timeouts} bind-timeout lines");
    assert!((1..=60).contains(&refused), "{refused} refused-bind lines");
    assert!(said(&log), "no line says how many were left out:\n{log}");
}

/// A receipt for `upstream_id`, padded with a vendor TLV to exactly `len` octets.
fn receipt_of_length(upstream_id: &str, len: usize) -> Pdu {
    use smpp_proxy::pdu::{tag, DeliverSm, Tlvs};
    let text =
        format!("id:{upstream_id} sub:001 dlvrd:001 submit date:2401311200 done date:2401311201 stat:DELIVRD err:000");
    let mut id = upstream_id.as_bytes().to_vec();
    id.push(0);
    let build = |pad: usize| {
        Pdu::new(Body::DeliverSm(DeliverSm {
            esm_class: 0x04,
            ..DeliverSm::text("1", "2", text.as_bytes())
        }))
        .with_tlvs(Tlvs::from_pairs([
            (tag::receipted_message_id, &id[..]),
            (0x1400, &vec![b'x'; pad][..]),
        ]))
    };
    let pdu = build(0);
    let pdu = build(len - pdu.encoded_len());
    assert_eq!(pdu.encoded_len(), len);
    pdu
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receipt_the_id_rewrite_would_push_past_max_pdu_len_is_refused_not_cut() {
    use std::sync::atomic::Ordering;
    let sims = start_sims(1, quiet()).await;
    let clients = format!("{SHOP}message_id_format = \"uuid\"\n");
    let proxy = start_proxy(&proxy_toml(&sims, "", &clients, "[sessions]\nmax_pdu_len = 4096\n")).await;
    let mut esme = shop(&proxy).await;
    let mut ids = Vec::new();
    for _ in 0..2 {
        esme.send(submit_sm("1", "2", b"x", true)).await.unwrap();
        let resp = esme.recv(T).await.unwrap();
        let client_id = resp.message_id().unwrap().as_str().unwrap().to_owned();
        let c = proxy
            .context()
            .store
            .find_by_client("shop", &client_id)
            .await
            .unwrap()
            .unwrap();
        // A UUID is longer than the simulator's ids: the rewrite makes the receipt grow.
        assert!(client_id.len() > c.upstream_id.len());
        ids.push((client_id, c.upstream_id.clone()));
    }
    // At the limit before the rewrite, past it after: refused to the SMSC with a clear status.
    assert!(sims[0].send_pdu(Some("proxy"), receipt_of_length(&ids[0].1, 4096)));
    let stats = sims[0].stats();
    assert!(
        wait_until(T, || stats.last_refusal.load(Ordering::Relaxed)
            == CommandStatus::ESME_RINVMSGLEN.0)
        .await,
        "the SMSC was not told ESME_RINVMSGLEN"
    );
    assert!(proxy.snapshot().counters.deliveries_oversized >= 1);
    // With room for the longer id, it is delivered, rewritten, whole.
    assert!(sims[0].send_pdu(Some("proxy"), receipt_of_length(&ids[1].1, 4000)));
    let pdu = esme.recv(T).await.unwrap();
    assert_eq!(receipt_id(&pdu), ids[1].0);
    assert!(pdu.encoded_len() <= 4096 && pdu.encoded_len() > 4000);
    esme.ack(&pdu).await.unwrap();
    proxy.shutdown().await;
}

/// Receives for `within`, answering every deliver_sm with `answer` (generic_nack or a
/// deliver_sm_resp of that status); the receipt ids seen, in order.
async fn refuse_all(esme: &mut Esme, within: Duration, nack: bool, status: CommandStatus) -> Vec<String> {
    let deadline = tokio::time::Instant::now() + within;
    let mut seen = Vec::new();
    while tokio::time::Instant::now() < deadline {
        let Ok(pdu) = esme.recv(Duration::from_millis(100)).await else {
            continue;
        };
        if pdu.command_id() != CommandId::DELIVER_SM {
            esme.ack(&pdu).await.unwrap();
            continue;
        }
        seen.push(receipt_id(&pdu));
        let body = if nack {
            Body::GenericNack
        } else {
            Body::DeliverSmResp(Some(Default::default()))
        };
        esme.send_raw(
            &Pdu::new(body)
                .with_status(status)
                .with_sequence_number(pdu.sequence_number),
        )
        .await
        .unwrap();
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_nacks_every_delivery_gets_it_again_with_growing_waits() {
    let sims = start_sims(1, SimConfig::default()).await;
    let clients =
        format!("{SHOP}redelivery_backoff = \"200ms\"\nredelivery_backoff_max = \"1s\"\nredelivery_attempts = 100\n");
    let proxy = start_proxy(&proxy_toml(&sims, "", &clients, "")).await;
    let mut esme = shop(&proxy).await;
    let id = submit_all(&mut esme, 1, 1).await.remove(0);
    // Nacked for 3 s: tries at about 0, 0.2, 0.6, 1.4, 2.4 s, not thousands.
    let seen = refuse_all(&mut esme, Duration::from_secs(3), true, CommandStatus::ESME_RINVCMDID).await;
    assert!(seen.iter().all(|s| *s == id));
    assert!((3..=8).contains(&seen.len()), "{} tries in 3 s", seen.len());
    assert_eq!(client(&proxy, "shop").redelivered, seen.len() as u64);
    // Taken at last: delivered once more, then gone.
    let pdu = loop {
        let pdu = esme.recv(T).await.unwrap();
        if pdu.command_id() == CommandId::DELIVER_SM {
            break pdu;
        }
    };
    assert_eq!(receipt_id(&pdu), id);
    esme.ack(&pdu).await.unwrap();
    assert!(wait_until(T, || client(&proxy, "shop").outbox == 0).await);
    assert_eq!(client(&proxy, "shop").dropped_refused, 0);
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_refused_redelivery_attempts_times_is_dropped_and_counted() {
    let sims = start_sims(1, SimConfig::default()).await;
    let clients =
        format!("{SHOP}redelivery_backoff = \"50ms\"\nredelivery_backoff_max = \"100ms\"\nredelivery_attempts = 3\n");
    let proxy = start_proxy(&proxy_toml(&sims, "", &clients, "")).await;
    let mut esme = shop(&proxy).await;
    esme.send(submit_sm("1", "2", b"x", true)).await.unwrap();
    assert!(esme.recv(T).await.unwrap().command_status.is_ok());
    let seen = refuse_all(&mut esme, Duration::from_secs(2), false, CommandStatus::ESME_RSYSERR).await;
    assert_eq!(seen.len(), 3, "tried {} times", seen.len());
    let shop = client(&proxy, "shop");
    assert_eq!((shop.dropped_refused, shop.outbox), (1, 0));
    assert!(proxy
        .snapshot()
        .prometheus()
        .contains("smpp_proxy_deliveries_dropped_total{client=\"shop\"} 1"));
    proxy.shutdown().await;
}

/// The next deliver_sm within `T` (anything else is acknowledged on the way).
async fn next_deliver(esme: &mut Esme) -> Pdu {
    loop {
        let pdu = esme.recv(T).await.expect("a deliver_sm");
        if pdu.command_id() == CommandId::DELIVER_SM {
            return pdu;
        }
        esme.ack(&pdu).await.unwrap();
    }
}

/// A receipt the upstream session hands straight to the client's bind (one session thread:
/// the bind and the upstream session share it) is the account's again when the client does
/// not take it: refused, it comes back after the backoff; left unanswered by a bind that
/// drops, it comes on the next bind. Neither is lost, and the SMSC is never told to retry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receipt_handed_straight_to_a_bind_is_held_when_refused_or_left_unanswered_as_the_bind_drops() {
    use std::sync::atomic::Ordering;
    let sims = start_sims(1, SimConfig::default()).await;
    let clients = format!("{SHOP}redelivery_backoff = \"100ms\"\nredelivery_backoff_max = \"200ms\"\n");
    let proxy = start_proxy(&proxy_toml(&sims, "", &clients, "[sessions]\nthreads = 1\n")).await;
    let mut esme = shop(&proxy).await;
    let id = submit_all(&mut esme, 1, 1).await.remove(0);
    let pdu = next_deliver(&mut esme).await;
    assert_eq!(receipt_id(&pdu), id);
    assert_eq!(
        client(&proxy, "shop").delivered_direct,
        1,
        "not handed straight to the bind"
    );
    let refuse = Pdu::new(Body::DeliverSmResp(Some(Default::default())))
        .with_status(CommandStatus::ESME_RX_T_APPN)
        .with_sequence_number(pdu.sequence_number);
    esme.send_raw(&refuse).await.unwrap();
    let again = next_deliver(&mut esme).await;
    assert_eq!(receipt_id(&again), id, "the refused receipt, again");
    assert_eq!(client(&proxy, "shop").redelivered, 1);
    esme.ack(&again).await.unwrap();
    assert!(wait_until(T, || client(&proxy, "shop").outbox == 0).await);

    // The account holds nothing again: the next receipt goes straight to the bind too.
    let id = submit_all(&mut esme, 1, 1).await.remove(0);
    let pdu = next_deliver(&mut esme).await;
    assert_eq!(receipt_id(&pdu), id);
    assert_eq!(client(&proxy, "shop").delivered_direct, 2);
    assert_eq!(
        client(&proxy, "shop").outbox,
        1,
        "in flight on the bind, counted in the outbox"
    );
    drop(esme);
    let mut esme = shop(&proxy).await;
    let pdu = next_deliver(&mut esme).await;
    assert_eq!(receipt_id(&pdu), id, "the unanswered receipt, on the next bind");
    esme.ack(&pdu).await.unwrap();
    assert!(wait_until(T, || client(&proxy, "shop").outbox == 0).await);
    let stats = sims[0].stats();
    assert_eq!(stats.receipts.load(Ordering::Relaxed), 2);
    assert_eq!(
        stats.redelivered.load(Ordering::Relaxed),
        0,
        "the SMSC was asked to retry"
    );
    assert!(
        wait_until(T, || proxy.snapshot().correlations == Some(0)).await,
        "correlations left"
    );
    proxy.shutdown().await;
}

/// An MO of `len` octets of text in message_payload, numbered `n` (its first 8 octets).
fn big_mo(n: usize, len: usize) -> Pdu {
    use smpp_proxy::pdu::{tag, DeliverSm, Tlvs};
    let mut text = format!("{n:08}").into_bytes();
    text.resize(len, b'x');
    Pdu::new(Body::DeliverSm(DeliverSm::text("447700900123", "4477", b"")))
        .with_tlvs(Tlvs::from_pairs([(tag::message_payload, &text[..])]))
}

/// Takes (and acknowledges) the [`big_mo`]s that come within 30 s until `n` different ones
/// came: each one's number and length.
async fn receive_mo(rx: &mut Esme, n: usize) -> std::collections::BTreeMap<String, usize> {
    let mut got = std::collections::BTreeMap::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while got.len() < n && tokio::time::Instant::now() < deadline {
        let Ok(pdu) = rx.recv(Duration::from_secs(1)).await else {
            continue;
        };
        rx.ack(&pdu).await.unwrap();
        if let Some(payload) = pdu.message_payload() {
            got.insert(String::from_utf8_lossy(&payload[..8]).into_owned(), payload.len());
        }
    }
    got
}

const MO_TO_SHOP: &str = "[[mo_routes]]\ndestination_prefix = \"\"\nclient = \"shop\"\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mo_of_60_kb_for_an_absent_client_is_held_within_its_byte_budget_and_none_is_lost() {
    use std::sync::atomic::Ordering;
    let sims = start_sims(1, quiet()).await;
    let clients = format!("{SHOP}outbox_max_bytes = \"1MiB\"\n");
    let proxy = start_proxy(&proxy_toml(&sims, "", &clients, MO_TO_SHOP)).await;
    for n in 0..40 {
        assert!(sims[0].send_pdu(Some("proxy"), big_mo(n, 60_000)));
    }
    let stats = sims[0].stats();
    assert!(
        wait_until(T, || stats.last_refusal.load(Ordering::Relaxed)
            == CommandStatus::ESME_RX_T_APPN.0)
        .await,
        "the SMSC was never asked to retry"
    );
    let shop = client(&proxy, "shop");
    // 17 of 60 KB fit in 1 MiB: the count (outbox_max 100 000) is nowhere near.
    assert!(shop.outbox_bytes <= 1 << 20 && shop.outbox <= 17, "{shop:?}");
    assert!(shop.outbox_refused_full > 0);
    // The client binds: everything comes, the refused ones as the SMSC sends them again.
    let mut rx = bind_shop(proxy.local_addr(), CommandId::BIND_RECEIVER).await;
    let got = receive_mo(&mut rx, 40).await;
    assert!(got.iter().all(|(_, len)| *len == 60_000));
    assert_eq!(got.len(), 40, "MO lost");
    assert!(wait_until(T, || client(&proxy, "shop").outbox_bytes == 0).await);
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receipts_for_unknown_ids_are_held_within_a_cap_and_the_rest_left_with_the_smsc() {
    let sims = start_sims(1, quiet()).await;
    let toml = format!(
        "early_receipt_wait = \"30s\"\n{}",
        proxy_toml(&sims, "", SHOP, "[limits]\nearly_receipts_max = 5\n")
    );
    let proxy = start_proxy(&toml).await;
    for n in 0..20 {
        assert!(sims[0].send_pdu(Some("proxy"), receipt_of_length(&format!("unknown{n}"), 200)));
    }
    let counters = || proxy.snapshot().counters;
    assert!(
        wait_until(T, || counters().early_receipts == 5
            && counters().early_receipts_refused >= 15)
        .await,
        "{:?}",
        counters()
    );
    assert!(proxy.snapshot().prometheus().contains("smpp_proxy_early_receipts 5"));
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_smsc_cannot_make_a_session_hold_more_than_unanswered_delivers() {
    let sims = start_sims(1, quiet()).await;
    let clients = format!("{SHOP}deliver_window = 100\n");
    let extra = format!("{MO_TO_SHOP}[limits]\nunanswered_delivers = 3\n");
    let proxy = start_proxy(&proxy_toml(&sims, "", &clients, &extra)).await;
    // A receiver that takes MO and does not answer: each waits, unanswered, for its answer.
    let mut rx = bind_shop(proxy.local_addr(), CommandId::BIND_RECEIVER).await;
    for n in 0..10 {
        assert!(sims[0].send_pdu(Some("proxy"), big_mo(n, 100)));
    }
    let refused = || proxy.snapshot().upstreams[0].delivers_refused;
    assert!(wait_until(T, || refused() >= 7).await, "{} refused", refused());
    // Answered, the rest flows.
    assert_eq!(receive_mo(&mut rx, 10).await.len(), 10, "MO lost");
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_account_with_a_hashed_password_binds_with_the_password_only() {
    let hash = smpp_proxy::guard::auth::hash_password(b"s3cret!").unwrap();
    let sims = start_sims(1, quiet()).await;
    let clients = format!("[[clients]]\nsystem_id = \"shop\"\npassword_hash = \"{hash}\"\n");
    let proxy = start_proxy(&proxy_toml(&sims, "", &clients, "")).await;
    let addr = proxy.local_addr();
    assert_eq!(try_bind(addr, "shop", "s3cret!").await, Some(CommandStatus::ESME_ROK));
    assert_eq!(
        try_bind(addr, "shop", "s3cret?").await,
        Some(CommandStatus::ESME_RBINDFAIL)
    );
    assert_eq!(
        try_bind(addr, "shop", &hash[..8]).await,
        Some(CommandStatus::ESME_RBINDFAIL),
        "the hash is not the password"
    );
    assert_eq!(
        try_bind(addr, "nobody", "s3cret!").await,
        Some(CommandStatus::ESME_RBINDFAIL)
    );
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hashed_binds_beyond_four_at_once_are_refused_without_counting_against_the_address() {
    let hash = smpp_proxy::guard::auth::hash_password(b"s3cret!").unwrap();
    let sims = start_sims(1, quiet()).await;
    let clients = format!("[[clients]]\nsystem_id = \"shop\"\npassword_hash = \"{hash}\"\nmax_binds = 32\n");
    // Were the refusals counted, three would ban the address.
    let extra = "[limits]\nmax_auth_failures = 3\n";
    let proxy = start_proxy(&proxy_toml(&sims, "", &clients, extra)).await;
    let addr = proxy.local_addr();
    // Sixteen right binds at once; each hash takes tens of milliseconds (more in a debug
    // build), and at most four are checked at a time: the others are refused at once.
    let started = Instant::now();
    let binds: Vec<_> = (0..16)
        .map(|_| tokio::spawn(try_bind(addr, "shop", "s3cret!")))
        .collect();
    let mut answers = Vec::new();
    for bind in binds {
        answers.push(bind.await.unwrap());
    }
    let ok = answers.iter().filter(|a| **a == Some(CommandStatus::ESME_ROK)).count();
    let busy = answers
        .iter()
        .filter(|a| **a == Some(CommandStatus::ESME_RBINDFAIL))
        .count();
    assert_eq!(ok + busy, 16, "{answers:?}");
    assert!(
        ok >= 1 && busy >= 1,
        "{ok} bound, {busy} refused in {:?}",
        started.elapsed()
    );
    let listener = proxy.snapshot().listener;
    assert_eq!(
        (listener.bind_failures, listener.bans),
        (0, 0),
        "refused for load, not for the password"
    );
    assert_eq!(try_bind(addr, "shop", "s3cret!").await, Some(CommandStatus::ESME_ROK));
    proxy.shutdown().await;
}
