//! Receipt custody with the durable store: nothing lost across unbinds, restarts and `kill -9`.

mod support;

use smpp_proxy::esme::{submit_sm, Esme};
use smpp_proxy::pdu::{Body, CommandId, CommandStatus, Pdu};
use smpp_proxy::proxy::Proxy;
use smpp_proxy::sim::SimConfig;
use smpp_proxy::store::DurableStore;
use std::collections::HashSet;
use std::path::Path;
use std::process::Command;
use std::time::Duration;
use support::*;

/// A directory of its own for the test's store, removed when the test ends.
fn temp_dir() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

/// The million-correlation test writes hundreds of megabytes: on a slow disk, the kill -9 test's
/// commits would wait behind that writeback for seconds. The two take turns.
static HEAVY_DISK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn durable(toml: &str, dir: &Path) -> String {
    toml.replace(
        "backend = \"memory\"",
        &format!("backend = \"embedded\"\npath = \"{}\"", dir.display()),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receipts_for_an_unbound_client_survive_a_restart_in_order() {
    let tmp = temp_dir();
    let dir = tmp.path().join("store");
    let sims = quick_receipts().await;
    let toml = durable(&proxy_toml(&sims, "", SHOP, ""), &dir);
    let proxy = start_proxy(&toml).await;
    // A transmitter only: every receipt must wait in the outbox.
    let mut tx = bind_shop(proxy.local_addr(), CommandId::BIND_TRANSMITTER).await;
    let ids = submit_all(&mut tx, 1000, 50).await;
    assert!(wait_until(T, || client(&proxy, "shop").outbox == 1000).await);
    drop(tx);
    proxy.shutdown().await;

    // What the store holds, in its order, and nothing else.
    let stored: Vec<String> = {
        let store = DurableStore::open(&dir).unwrap();
        let entries = store.outbox_after("shop", 0, 5000).unwrap();
        entries
            .into_iter()
            .map(|e| receipt_id(&Pdu::parse(e.pdu.into()).unwrap()))
            .collect()
    };
    assert_eq!(
        stored.iter().collect::<HashSet<_>>(),
        ids.iter().collect::<HashSet<_>>()
    );

    let proxy = start_proxy(&toml).await;
    let mut rx = bind_shop(proxy.local_addr(), CommandId::BIND_RECEIVER).await;
    let mut got = Vec::new();
    while got.len() < 1000 {
        let pdu = rx.recv(T).await.unwrap();
        rx.ack(&pdu).await.unwrap();
        got.push(receipt_id(&pdu));
    }
    assert_eq!(got, stored, "all 1000, oldest first, with the ids the client was given");
    assert!(rx.recv(Duration::from_millis(300)).await.is_err(), "no duplicates");
    assert!(wait_until(T, || client(&proxy, "shop").outbox == 0).await);
    drop(rx);
    proxy.shutdown().await;
    assert_eq!(
        DurableStore::open(&dir).unwrap().counts().unwrap().outbox,
        vec![],
        "acknowledged entries removed"
    );
}

/// One simulator that sends each receipt 1 ms after its submit.
async fn quick_receipts() -> Vec<smpp_proxy::sim::SimHandle> {
    let config = SimConfig {
        receipt_delay: Duration::from_millis(1),
        ..SimConfig::default()
    };
    start_sims(1, config).await
}

/// The next `n` PDUs, each a deliver_sm, unanswered.
async fn read_deliveries(rx: &mut Esme, n: usize) -> Vec<Pdu> {
    let mut read = Vec::new();
    while read.len() < n {
        let pdu = rx.recv(T).await.unwrap();
        assert_eq!(pdu.command_id(), CommandId::DELIVER_SM);
        read.push(pdu);
    }
    read
}

/// A new receiver is sent a new message's receipt, and none the client answered before it;
/// then the proxy stops.
async fn only_the_next_receipt_comes(proxy: Proxy, mut tx: Esme) {
    let mut rx = bind_shop(proxy.local_addr(), CommandId::BIND_RECEIVER).await;
    let next = submit_all(&mut tx, 1, 1).await;
    let pdu = rx.recv(T).await.unwrap();
    assert_eq!(receipt_id(&pdu), next[0], "a receipt the client answered came again");
    rx.ack(&pdu).await.unwrap();
    drop((rx, tx));
    proxy.shutdown().await;
}

/// A client that unbinds with receipts read and not yet answered, and answers them while it
/// waits for its unbind_resp (as the proxy's own load generator does, and many ESMEs): what
/// it answered is its own, not sent again on its next bind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receipts_answered_after_the_clients_unbind_are_not_sent_again() {
    let sims = quick_receipts().await;
    let proxy = start_proxy(&proxy_toml(&sims, "", SHOP, "")).await;
    let mut rx = bind_shop(proxy.local_addr(), CommandId::BIND_RECEIVER).await;
    let mut tx = bind_shop(proxy.local_addr(), CommandId::BIND_TRANSMITTER).await;
    let ids = submit_all(&mut tx, 5, 5).await;
    let read = read_deliveries(&mut rx, 5).await;
    rx.send(Pdu::new(Body::Unbind)).await.unwrap();
    for pdu in &read {
        rx.ack(pdu).await.unwrap();
    }
    // Until the proxy closes: the session has left its account by then.
    let mut unbound = false;
    while let Ok(pdu) = rx.recv(T).await {
        unbound |= pdu.command_id() == CommandId::UNBIND_RESP;
    }
    assert!(unbound, "unbind answered");
    assert_eq!(
        read.iter().map(receipt_id).collect::<HashSet<_>>(),
        ids.iter().cloned().collect::<HashSet<_>>()
    );
    assert!(
        wait_until(T, || client(&proxy, "shop").outbox == 0).await,
        "the five are settled, not held: {:?}",
        client(&proxy, "shop")
    );
    only_the_next_receipt_comes(proxy, tx).await;
}

/// A client that unbinds, then answers the receipts it read with an error that says only that
/// it takes itself as unbound (ESME_RINVBNDSTS, generic_nack), has not refused the messages:
/// they go to its next bind, and are not counted against `redelivery_attempts` (1 here, so
/// one counted refusal would drop each).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receipts_refused_after_the_clients_unbind_go_to_the_next_bind_uncounted() {
    let sims = quick_receipts().await;
    let clients = format!("{SHOP}redelivery_attempts = 1\n");
    let proxy = start_proxy(&proxy_toml(&sims, "", &clients, "")).await;
    let mut rx = bind_shop(proxy.local_addr(), CommandId::BIND_RECEIVER).await;
    let mut tx = bind_shop(proxy.local_addr(), CommandId::BIND_TRANSMITTER).await;
    let ids = submit_all(&mut tx, 4, 4).await;
    let read = read_deliveries(&mut rx, 4).await;
    rx.send(Pdu::new(Body::Unbind)).await.unwrap();
    for (n, pdu) in read.iter().enumerate() {
        let refusal = if n % 2 == 0 {
            pdu.error_response(CommandStatus::ESME_RINVBNDSTS).unwrap()
        } else {
            Pdu::new(Body::GenericNack)
                .with_status(CommandStatus::ESME_RINVBNDSTS)
                .with_sequence_number(pdu.sequence_number)
        };
        rx.send_raw(&refusal).await.unwrap();
    }
    while rx.recv(T).await.is_ok() {}
    let mut rx = bind_shop(proxy.local_addr(), CommandId::BIND_RECEIVER).await;
    let mut again = HashSet::new();
    while again.len() < 4 {
        let pdu = rx
            .recv(T)
            .await
            .expect("a receipt refused for being unbound comes again");
        rx.ack(&pdu).await.unwrap();
        again.insert(receipt_id(&pdu));
    }
    assert_eq!(again, ids.iter().cloned().collect::<HashSet<_>>());
    only_the_next_receipt_comes(proxy, tx).await;
}

/// A client that unbinds with submits in flight (the upstream slow to answer) gets their
/// answers before its unbind_resp, and their receipts on its next bind: the upstream took
/// those messages, and their correlations are stored as the answers are mapped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clients_unbind_is_answered_after_the_submits_it_had_in_flight() {
    let tmp = temp_dir();
    let sims = quick_receipts().await;
    let proxy = start_proxy(&durable(&proxy_toml(&sims, "", SHOP, ""), &tmp.path().join("store"))).await;
    sims[0].set_latency(Duration::from_millis(300));
    let mut tx = bind_shop(proxy.local_addr(), CommandId::BIND_TRANSMITTER).await;
    let mut sent = HashSet::new();
    for n in 0..3 {
        let body = format!("m{n}");
        sent.insert(
            tx.send(submit_sm("4477", "447700900123", body.as_bytes(), true))
                .await
                .unwrap(),
        );
    }
    let unbind = tx.send(Pdu::new(Body::Unbind)).await.unwrap();
    let mut ids = HashSet::new();
    loop {
        let pdu = tx.recv(T).await.expect("the unbind answered");
        match pdu.command_id() {
            CommandId::SUBMIT_SM_RESP => {
                assert_eq!(pdu.command_status, CommandStatus::ESME_ROK);
                assert!(sent.remove(&pdu.sequence_number), "an answer to a submit sent");
                ids.insert(pdu.message_id().unwrap().as_str().unwrap().to_owned());
            }
            CommandId::UNBIND_RESP => {
                assert_eq!(pdu.sequence_number, unbind);
                break;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(
        sent.is_empty(),
        "every submit answered before the unbind_resp: {sent:?} not"
    );
    let mut rx = bind_shop(proxy.local_addr(), CommandId::BIND_RECEIVER).await;
    let mut receipts = HashSet::new();
    for pdu in read_deliveries(&mut rx, 3).await {
        rx.ack(&pdu).await.unwrap();
        receipts.insert(receipt_id(&pdu));
    }
    assert_eq!(receipts, ids, "each receipt under the id its submit_sm_resp gave");
    drop((rx, tx));
    proxy.shutdown().await;
}

/// The wait for answers in flight is bounded (2 s): an answer that comes later, while the
/// session still waits for the client to answer a receipt it read, is mapped all the same,
/// so its receipt reaches the client's next bind under the client's id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_after_the_clients_unbind_resp_still_matches_its_receipt() {
    let tmp = temp_dir();
    let sims = quick_receipts().await;
    let proxy = start_proxy(&durable(&proxy_toml(&sims, "", SHOP, ""), &tmp.path().join("store"))).await;
    let mut trx = bind_shop(proxy.local_addr(), CommandId::BIND_TRANSCEIVER).await;
    // Read and not answered: the session waits for its answer after the unbind_resp.
    let (_, held) = submit_and_read_receipt(&mut trx).await;
    sims[0].set_latency(Duration::from_millis(2500));
    let late = trx
        .send(submit_sm("4477", "447700900123", b"late", true))
        .await
        .unwrap();
    let unbind = trx.send(Pdu::new(Body::Unbind)).await.unwrap();
    let resp = trx.recv(T).await.unwrap();
    assert_eq!(
        (resp.command_id(), resp.sequence_number),
        (CommandId::UNBIND_RESP, unbind),
        "answered once the wait for the submit's answer ran out"
    );
    let resp = trx.recv(T).await.expect("the late answer is written");
    assert_eq!(
        (resp.command_id(), resp.command_status, resp.sequence_number),
        (CommandId::SUBMIT_SM_RESP, CommandStatus::ESME_ROK, late)
    );
    let id = resp.message_id().unwrap().as_str().unwrap().to_owned();
    trx.ack(&held).await.unwrap();
    while trx.recv(T).await.is_ok() {}
    let mut rx = bind_shop(proxy.local_addr(), CommandId::BIND_RECEIVER).await;
    let pdu = rx.recv(T).await.expect("the late message's receipt");
    assert_eq!(receipt_id(&pdu), id);
    rx.ack(&pdu).await.unwrap();
    drop(rx);
    proxy.shutdown().await;
}

/// A client with `max_binds = 1` that unbinds and binds again at once is not refused while
/// its old session still waits (up to 2 s) for the answer to a receipt it read; that receipt,
/// never answered there, reaches the new bind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_unbinds_binds_again_at_once() {
    let tmp = temp_dir();
    let sims = quick_receipts().await;
    let toml = proxy_toml(&sims, "", &format!("{SHOP}max_binds = 1\n"), "");
    let proxy = start_proxy(&durable(&toml, &tmp.path().join("store"))).await;
    let mut old = bind_shop(proxy.local_addr(), CommandId::BIND_TRANSCEIVER).await;
    let (first, _held) = submit_and_read_receipt(&mut old).await;
    let unbind = old.send(Pdu::new(Body::Unbind)).await.unwrap();
    let resp = old.recv(T).await.unwrap();
    assert_eq!(
        (resp.command_id(), resp.sequence_number),
        (CommandId::UNBIND_RESP, unbind)
    );
    let mut new = Esme::bind(proxy.local_addr(), CommandId::BIND_TRANSCEIVER, "shop", "secret")
        .await
        .expect("bound while the old session waits for its last answers");
    let pdu = new
        .recv(T)
        .await
        .expect("the receipt left unanswered comes to the new bind");
    assert_eq!(receipt_id(&pdu), first);
    new.ack(&pdu).await.unwrap();
    drop(old);
    let (next, pdu) = submit_and_read_receipt(&mut new).await;
    new.ack(&pdu).await.unwrap();
    assert_ne!(next, first);
    drop(new);
    proxy.shutdown().await;
}

/// The same at a restart: the proxy unbinds the client, which answers the receipts it read
/// before its unbind_resp; the proxy that comes back (same store) does not send them again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receipts_answered_before_the_unbind_resp_at_shutdown_are_not_sent_again() {
    let tmp = temp_dir();
    let sims = quick_receipts().await;
    let toml = durable(&proxy_toml(&sims, "", SHOP, ""), &tmp.path().join("store"));
    let proxy = start_proxy(&toml).await;
    let mut rx = bind_shop(proxy.local_addr(), CommandId::BIND_RECEIVER).await;
    let mut tx = bind_shop(proxy.local_addr(), CommandId::BIND_TRANSMITTER).await;
    submit_all(&mut tx, 5, 5).await;
    let read = read_deliveries(&mut rx, 5).await;
    let stopping = tokio::spawn(proxy.shutdown());
    let unbind = rx.recv(T).await.unwrap();
    assert_eq!(unbind.command_id(), CommandId::UNBIND);
    for pdu in &read {
        rx.ack(pdu).await.unwrap();
    }
    rx.ack(&unbind).await.unwrap();
    drop(tx);
    stopping.await.unwrap();
    drop(rx);

    let proxy = start_proxy(&toml).await;
    assert_eq!(client(&proxy, "shop").outbox, 0, "none of the five kept");
    let tx = bind_shop(proxy.local_addr(), CommandId::BIND_TRANSMITTER).await;
    only_the_next_receipt_comes(proxy, tx).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_in_the_middle_of_traffic_loses_no_answered_message() {
    kill_9_loses_nothing("sync = \"always\"").await;
}

/// With `sync = "periodic"` at a 60 s interval the database is made durable only after ten
/// minutes (ten intervals) or 16 MiB of the write-ahead file, neither reached here: everything
/// answered after the start lives only in that file when the process is killed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_loses_nothing_with_periodic_sync_either() {
    kill_9_loses_nothing("sync = \"periodic\"\nsync_interval = \"60s\"").await;
}

/// Keeps submitting; kills the proxy with SIGKILL after 300 answers, with requests in flight;
/// starts it again: every answered message gets its receipt. `sync`: `[store]` keys.
async fn kill_9_loses_nothing(sync: &str) {
    let _disk = HEAVY_DISK.lock().await;
    let tmp = temp_dir();
    let dir = tmp.path().join("store");
    let sims = start_sims(
        1,
        SimConfig {
            receipt_delay: Duration::from_millis(5),
            ..SimConfig::default()
        },
    )
    .await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    // At most 25 receipts per session in the proxy's hands unanswered: what the SMSC can send
    // again after the kill, so the duplicates' bound below.
    let limits = "[limits]\nunanswered_delivers = 25\n";
    let toml = durable(&proxy_toml(&sims, "sessions = 2", SHOP, limits), &dir)
        .replace("backend = \"embedded\"", &format!("backend = \"embedded\"\n{sync}"))
        .replace("127.0.0.1:0", &format!("127.0.0.1:{port}"));
    let config = tmp.path().join("proxy.toml");
    std::fs::write(&config, &toml).unwrap();
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();

    let mut proxy = spawn_proxy(&config);
    let mut tx = bind_when_up(addr, CommandId::BIND_TRANSMITTER).await;
    // Keep submitting; kill the proxy with SIGKILL after 300 answers, with requests in flight.
    let mut acked: Vec<String> = Vec::new();
    let mut sent = 0;
    'first: loop {
        while sent - acked.len() < 20 {
            tx.feed(submit_sm("4477", "447700900123", format!("m{sent}").as_bytes(), true))
                .await
                .unwrap();
            sent += 1;
        }
        tx.flush().await.unwrap();
        let resp = tx.recv(T).await.unwrap();
        if resp.command_status.is_ok() {
            acked.push(resp.message_id().unwrap().as_str().unwrap().to_owned());
        }
        if acked.len() >= 300 {
            assert!(Command::new("kill")
                .args(["-KILL", &proxy.0.id().to_string()])
                .status()
                .unwrap()
                .success());
            // Answers already on the wire still count: they were given after their correlation
            // was durable.
            while let Ok(resp) = tx.recv(Duration::from_millis(500)).await {
                if resp.command_status.is_ok() {
                    acked.push(resp.message_id().unwrap().as_str().unwrap().to_owned());
                }
            }
            break 'first;
        }
    }
    let _ = proxy.0.wait();
    proxy = spawn_proxy(&config);
    let mut tx = bind_when_up(addr, CommandId::BIND_TRANSMITTER).await;
    // The restarted proxy binds its upstream sessions while the client binds: a submit that
    // comes before they are bound waits for them (up to queue_timeout), it is not refused.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    let mut after = 0;
    while after < 200 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the restarted proxy took no submits"
        );
        for resp in submit_window(&mut tx, 20, 20, "447700900123", true).await {
            assert_eq!(resp.command_status, CommandStatus::ESME_ROK, "after the restart");
            acked.push(resp.message_id().unwrap().as_str().unwrap().to_owned());
            after += 1;
        }
    }

    // Now a receiver: every answered submit must get its receipt.
    let mut rx = bind_when_up(addr, CommandId::BIND_RECEIVER).await;
    let want: HashSet<String> = acked.iter().cloned().collect();
    let mut got: HashSet<String> = HashSet::new();
    let mut duplicates = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !want.is_subset(&got) && tokio::time::Instant::now() < deadline {
        let Ok(pdu) = rx.recv(Duration::from_secs(1)).await else {
            continue;
        };
        rx.ack(&pdu).await.unwrap();
        if pdu.command_id() == CommandId::DELIVER_SM && !got.insert(receipt_id(&pdu)) {
            duplicates += 1;
        }
    }
    let lost: Vec<&String> = want.difference(&got).collect();
    assert!(
        lost.is_empty(),
        "{} of {} answered messages got no receipt: {:?}",
        lost.len(),
        want.len(),
        &lost[..lost.len().min(5)]
    );
    // Duplicates come only from the crash window: receipts stored but not yet answered to the
    // SMSC, which sends them again; at most `unanswered_delivers` per session, 2 sessions.
    assert!(duplicates <= 50, "{duplicates} duplicates");
    eprintln!(
        "kill -9 ({sync}): {} answered, 0 lost, {duplicates} duplicated",
        want.len()
    );
    drop(proxy);
    let _ = std::fs::remove_file(&config);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_million_stored_correlations_restart_fast_and_still_match() {
    let _disk = HEAVY_DISK.lock().await;
    use smpp_proxy::store::{Correlation, Store};
    let tmp = temp_dir();
    let dir = tmp.path().join("store");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    {
        let store = DurableStore::open(&dir).unwrap();
        let mut tickets = Vec::new();
        for n in 0..1_000_000u32 {
            let c = Correlation {
                upstream: "smsc-0".into(),
                upstream_id: format!("{n:x}").into(),
                client: "shop".into(),
                client_id: format!("{n:016x}").into(),
                submitted_at: now,
                registered_delivery: 1,
                source_addr: "4477".into(),
                destination_addr: "447700900123".into(),
                part: None,
            };
            tickets.push(store.put_correlation(std::sync::Arc::new(c), &format!("{n:x}")));
            if tickets.len() == 10_000 {
                for t in tickets.drain(..) {
                    t.wait().await.unwrap();
                }
            }
        }
        for t in tickets {
            t.wait().await.unwrap();
        }
    }
    // Restart: nothing is loaded into memory, so opening does not depend on what is stored.
    let started = std::time::Instant::now();
    let store = DurableStore::open(&dir).unwrap();
    let opened = started.elapsed();
    assert!(opened < Duration::from_secs(3), "opening took {opened:?}");
    let c = store
        .find_by_upstream("smsc-0", &[b"0000999999"], smpp_proxy::receipt::id::IdMatch::Numeric)
        .wait_blocking()
        .unwrap();
    assert_eq!(
        c.map(|c| c.client_id.to_string()),
        Some(format!("{:016x}", 999_999)),
        "decimal receipt id finds the hex one"
    );
    assert_eq!(store.counts().unwrap().correlations, 1_000_000);
    drop(store);

    // And a proxy started on it matches a receipt for one of them.
    let sims = start_sims(1, SimConfig::default()).await;
    let proxy = start_proxy(&durable(&proxy_toml(&sims, "", SHOP, ""), &dir)).await;
    assert!(proxy
        .context()
        .store
        .find_by_client("shop", &format!("{:016x}", 123_456))
        .await
        .unwrap()
        .is_some());
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receipts_past_receipt_ttl_are_dropped_and_counted() {
    let tmp = temp_dir();
    let dir = tmp.path().join("store");
    let sims = quick_receipts().await;
    let clients = format!("{SHOP}receipt_ttl = \"1s\"\n");
    let proxy = start_proxy(&durable(&proxy_toml(&sims, "", &clients, ""), &dir)).await;
    let mut tx = bind_shop(proxy.local_addr(), CommandId::BIND_TRANSMITTER).await;
    submit_all(&mut tx, 20, 20).await;
    assert!(wait_until(T, || client(&proxy, "shop").outbox == 20).await);
    assert!(
        wait_until(T, || client(&proxy, "shop").outbox_expired == 20).await,
        "expired after 1 s"
    );
    assert_eq!(client(&proxy, "shop").outbox, 0);
    let mut rx = bind_shop(proxy.local_addr(), CommandId::BIND_RECEIVER).await;
    assert!(
        rx.recv(Duration::from_millis(500)).await.is_err(),
        "nothing left to deliver"
    );
    drop((rx, tx));
    proxy.shutdown().await;
    assert_eq!(
        DurableStore::open(&dir).unwrap().counts().unwrap().outbox,
        vec![],
        "removed from the store too"
    );
}
