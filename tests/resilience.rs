//! Failure and pressure: an upstream dies mid-run, an SMSC throttles, a client stops reading,
//! the proxy shuts down, an SMSC restarts.

mod support;

use smpp_proxy::bench::{self, BenchConfig};
use smpp_proxy::esme::{submit_sm, Esme};
use smpp_proxy::pdu::{CommandId, CommandStatus};
use smpp_proxy::sim::{self, SimConfig};
use std::sync::atomic::Ordering;
use std::time::Duration;
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_killed_mid_run_loses_no_answered_message() {
    let mut sims = start_sims(
        2,
        SimConfig {
            receipts: false,
            latency: Duration::from_millis(1),
            ..SimConfig::default()
        },
    )
    .await;
    let proxy = start_proxy(&proxy_toml(&sims, "window = 20", SHOP, "")).await;
    let load = tokio::spawn(bench::run(BenchConfig {
        window: 10,
        count: Some(4000),
        ..shop_load(&proxy)
    }));
    let victim = sims.remove(0);
    assert!(wait_until(T, || victim.stats().submits.load(Ordering::Relaxed) >= 300).await);
    victim.stop().await;
    let report = load.await.unwrap().unwrap();
    // Every submit was answered. Only requests written to the dead SMSC and unanswered may fail
    // (at most its window); everything never written went to the other upstream.
    assert_eq!(report.unanswered, 0, "{}", report.summary());
    let failed: u64 = report.errors.values().sum();
    assert_eq!(report.acked + failed, 4000, "{}", report.summary());
    assert!(
        failed <= 20,
        "at most one window lost with the SMSC: {}",
        report.summary()
    );
    assert!(report.errors.keys().all(|k| k == "ESME_RSYSERR"), "{:?}", report.errors);
    assert!(sims[0].stats().submits.load(Ordering::Relaxed) >= 3000);
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smsc_throttling_is_absorbed_while_another_upstream_has_room() {
    let capped = sim::start(SimConfig {
        receipts: false,
        tps: 50,
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let free = sim::start(SimConfig {
        receipts: false,
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let sims = vec![capped, free];
    let proxy = start_proxy(&proxy_toml(&sims, "", SHOP, "")).await;
    let report = bench::run(BenchConfig {
        window: 20,
        count: Some(2000),
        ..shop_load(&proxy)
    })
    .await
    .unwrap();
    assert!(
        sims[0].stats().throttled.load(Ordering::Relaxed) > 0,
        "the capped SMSC did throttle"
    );
    assert_eq!(
        report.acked,
        2000,
        "no ESME_RTHROTTLED reached the client: {}",
        report.summary()
    );
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_does_not_read_receipts_cannot_grow_memory() {
    let sims = start_sims(1, SimConfig::default()).await;
    let clients = format!("{SHOP}deliver_window = 5\noutbox_max = 50\n");
    let proxy = start_proxy(&proxy_toml(&sims, "", &clients, "")).await;
    let mut tx = bind_shop(proxy.local_addr(), CommandId::BIND_TRANSMITTER).await;
    // A receiver that binds and then never reads or answers.
    let mute = bind_shop(proxy.local_addr(), CommandId::BIND_RECEIVER).await;
    for i in 0..100 {
        tx.send(submit_sm("1", "447700900123", format!("{i}").as_bytes(), true))
            .await
            .unwrap();
        assert_eq!(tx.recv(T).await.unwrap().command_status, CommandStatus::ESME_ROK);
    }
    assert!(wait_until(T, || sims[0].stats().receipts.load(Ordering::Relaxed) >= 100).await);
    assert!(
        wait_until(T, || client(&proxy, "shop").outbox == 50).await,
        "held: {}",
        client(&proxy, "shop").outbox
    );
    // Nothing beyond the cap was taken: the SMSC was told to retry the rest (ESME_RX_T_APPN).
    tokio::time::sleep(Duration::from_millis(200)).await;
    let shop = client(&proxy, "shop");
    assert_eq!(shop.outbox, 50);
    assert!(shop.outbox_refused_full > 0, "refusals counted");
    // When a reader comes, it gets what was held, and the mute bind's deliveries go back to it.
    drop(mute);
    let mut rx = bind_shop(proxy.local_addr(), CommandId::BIND_RECEIVER).await;
    let mut got = 0;
    while got < 50 {
        let pdu = rx.recv(T).await.unwrap();
        rx.ack(&pdu).await.unwrap();
        got += 1;
    }
    assert!(wait_until(T, || client(&proxy, "shop").outbox == 0).await);
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_unbinds_clients_and_upstreams() {
    let sims = start_sims(1, SimConfig::default()).await;
    let proxy = start_proxy(&proxy_toml(&sims, "sessions = 2", SHOP, "")).await;
    let mut esme = shop(&proxy).await;
    let addr = proxy.local_addr();
    let stopping = tokio::spawn(proxy.shutdown());
    let unbind = esme.recv(T).await.unwrap();
    assert_eq!(unbind.command_id(), CommandId::UNBIND, "the proxy unbinds its client");
    esme.ack(&unbind).await.unwrap();
    stopping.await.unwrap();
    assert!(
        wait_until(T, || sims[0].stats().bound_now.load(Ordering::Relaxed) == 0).await,
        "upstream sessions unbound"
    );
    assert!(Esme::connect(addr).await.is_err(), "no longer listening");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_sessions_come_back_after_the_smsc_restarts_one_socket_each() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let config = SimConfig {
        listen: port,
        receipts: false,
        ..SimConfig::default()
    };
    let first = sim::start(config.clone()).await.unwrap();
    let proxy = start_proxy(&proxy_toml(std::slice::from_ref(&first), "sessions = 3", SHOP, "")).await;
    assert_eq!(first.stats().binds.load(Ordering::Relaxed), 3);
    first.stop().await;
    assert!(wait_until(T, || proxy.context().live().sessions.iter().all(|s| !s.is_bound())).await);
    let mut esme = shop(&proxy).await;
    esme.send(submit_sm("1", "2", b"x", false)).await.unwrap();
    assert_eq!(
        esme.recv(T).await.unwrap().command_status,
        CommandStatus::ESME_RSYSERR,
        "no upstream bound"
    );
    let second = sim::start(config).await.unwrap();
    assert!(
        proxy.wait_bound(Duration::from_secs(15)).await,
        "reconnected after backoff"
    );
    // One socket per configured session: exactly three binds, no storm.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(second.stats().binds.load(Ordering::Relaxed), 3);
    esme.send(submit_sm("1", "2", b"x", false)).await.unwrap();
    assert_eq!(esme.recv(T).await.unwrap().command_status, CommandStatus::ESME_ROK);
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unbind_from_the_smsc_is_answered_and_the_session_rebinds() {
    let sims = start_sims_without_receipts(1).await;
    let proxy = start_proxy(&proxy_toml(&sims, "sessions = 2", SHOP, "")).await;
    assert_eq!(sims[0].stats().binds.load(Ordering::Relaxed), 2);
    sims[0].unbind_all();
    assert!(
        wait_until(T, || sims[0].stats().bound_now.load(Ordering::Relaxed) == 0).await,
        "unbind answered, closed"
    );
    assert!(
        wait_until(Duration::from_secs(15), || sims[0]
            .stats()
            .binds
            .load(Ordering::Relaxed)
            == 4)
        .await,
        "rebound"
    );
    assert!(proxy.wait_bound(T).await);
    let mut esme = shop(&proxy).await;
    esme.send(submit_sm("1", "2", b"x", false)).await.unwrap();
    assert_eq!(esme.recv(T).await.unwrap().command_status, CommandStatus::ESME_ROK);
    proxy.shutdown().await;
}

/// A proxy just started holds submits while its first upstream bind is under way (an SMSC
/// slow to answer it) instead of refusing them ESME_RSYSERR: the client, bound before any
/// upstream, sees every message taken once the bind is in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submits_wait_for_the_first_upstream_bind_instead_of_failing() {
    use futures_util::{SinkExt, StreamExt};
    use smpp_proxy::pdu::body::MessageIdResp;
    use smpp_proxy::pdu::{Body, COctetString, Pdu, SmppCodec};
    use tokio_util::codec::Framed;

    // An SMSC that answers its bind only when the test lets it.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let (release, released) = tokio::sync::oneshot::channel::<()>();
    let smsc = tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        let mut conn = Framed::new(stream, SmppCodec::default());
        let bind = loop {
            let pdu = conn.next().await.unwrap().unwrap().unwrap();
            if let CommandId::BIND_TRANSMITTER | CommandId::BIND_RECEIVER | CommandId::BIND_TRANSCEIVER =
                pdu.command_id()
            {
                break (pdu.command_id().response().unwrap(), pdu.sequence_number);
            }
        };
        released.await.unwrap();
        let body = Body::empty_response(bind.0).unwrap();
        conn.send(&Pdu::new(body).with_sequence_number(bind.1)).await.unwrap();
        let mut taken = 0u32;
        while let Some(Ok(Ok(pdu))) = conn.next().await {
            let body = match pdu.command_id() {
                CommandId::SUBMIT_SM => {
                    taken += 1;
                    let message_id = COctetString::new(format!("up{taken}").into_bytes()).unwrap();
                    Body::SubmitSmResp(Some(MessageIdResp { message_id }))
                }
                CommandId::ENQUIRE_LINK => Body::EnquireLinkResp,
                _ => continue,
            };
            conn.send(&Pdu::new(body).with_sequence_number(pdu.sequence_number))
                .await
                .unwrap();
        }
    });
    let toml = format!(
        "node_id = \"t\"\n[listen]\nsmpp = \"127.0.0.1:0\"\n[store]\nbackend = \"memory\"\n{SHOP}\n\
         [[upstreams]]\nname = \"slow\"\naddress = \"{address}\"\nsystem_id = \"proxy\"\npassword = \"pw\"\nsessions = 1\n"
    );
    let proxy = smpp_proxy::proxy::Proxy::start(smpp_proxy::config::Config::from_toml(&toml).unwrap())
        .await
        .unwrap();
    let mut shop = bind_shop(proxy.local_addr(), CommandId::BIND_TRANSMITTER).await;
    for n in 0..5 {
        shop.feed(submit_sm("4477", "447700900123", format!("m{n}").as_bytes(), false))
            .await
            .unwrap();
    }
    shop.flush().await.unwrap();
    // Refused at once, the answers would be here well within this; held, none comes.
    assert!(
        shop.recv(Duration::from_millis(300)).await.is_err(),
        "a submit was answered before any upstream was bound"
    );
    release.send(()).unwrap();
    for _ in 0..5 {
        let resp = shop.recv(Duration::from_secs(10)).await.unwrap();
        assert_eq!(resp.command_status, CommandStatus::ESME_ROK, "{resp:?}");
    }
    proxy.shutdown().await;
    smsc.abort();
}

/// Holding requests while first binds are under way must not hold them for an upstream that
/// never carries submits: with the only transmitting upstream lost, a receiver-only upstream
/// beside it leaves the answer ESME_RSYSERR at once, not after `queue_timeout`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_only_upstream_does_not_hold_submits_when_the_others_are_down() {
    let mut sims = start_sims_without_receipts(2).await;
    let toml = proxy_toml(&sims, "", SHOP, "[sessions]\nqueue_timeout = \"60s\"\n").replacen(
        "name = \"smsc-1\"\n",
        "name = \"smsc-1\"\nbind = \"receiver\"\n",
        1,
    );
    let proxy = start_proxy(&toml).await;
    let mut shop = bind_shop(proxy.local_addr(), CommandId::BIND_TRANSMITTER).await;
    sims.remove(0).stop().await;
    assert!(
        wait_until(Duration::from_secs(10), || proxy.snapshot().upstreams[0].sessions_bound
            == 0)
        .await,
        "smsc-0 still bound"
    );
    shop.send(submit_sm("4477", "447700900123", b"m", false)).await.unwrap();
    let resp = shop.recv(Duration::from_secs(10)).await.expect("answered within 10 s");
    assert_eq!(resp.command_status, CommandStatus::ESME_RSYSERR);
    proxy.shutdown().await;
}

/// While the proxy unbinds from an SMSC (here at a stop) and waits for its unbind_resp, what
/// the SMSC sends is still answered: an enquire_link, then, past a frame that does not parse,
/// an unbind of its own that crosses the proxy's (which ends the session as an unbind_resp
/// would).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_smsc_unbinding_as_the_proxy_unbinds_is_answered() {
    use futures_util::{SinkExt, StreamExt};
    use smpp_proxy::pdu::{Body, Pdu, SmppCodec};
    use tokio::io::AsyncWriteExt;
    use tokio_util::codec::Framed;

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let smsc = tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        let mut conn = Framed::new(stream, SmppCodec::default());
        let mut answers = Vec::new();
        // Once it has unbound too, the session must end well within the 2 s the proxy would
        // otherwise wait for its own unbind_resp.
        let mut patience = tokio::time::Instant::now() + Duration::from_secs(3600);
        loop {
            let pdu = match tokio::time::timeout_at(patience, conn.next()).await {
                Ok(Some(Ok(Ok(pdu)))) => pdu,
                Ok(_) => break,
                Err(_) => {
                    answers.push((CommandId::GENERIC_NACK, 0));
                    break;
                }
            };
            let (id, seq) = (pdu.command_id(), pdu.sequence_number);
            match id {
                CommandId::BIND_TRANSMITTER | CommandId::BIND_RECEIVER | CommandId::BIND_TRANSCEIVER => {
                    let body = Body::empty_response(id.response().unwrap()).unwrap();
                    conn.send(&Pdu::new(body).with_sequence_number(seq)).await.unwrap();
                }
                CommandId::ENQUIRE_LINK => {
                    conn.send(&Pdu::new(Body::EnquireLinkResp).with_sequence_number(seq))
                        .await
                        .unwrap();
                }
                CommandId::UNBIND => {
                    conn.send(&Pdu::new(Body::EnquireLink).with_sequence_number(900))
                        .await
                        .unwrap();
                    // A whole frame with a command_id SMPP does not have.
                    let unknown = [0, 0, 0, 16, 0, 0, 0, 0x77, 0, 0, 0, 0, 0, 0, 3, 0x85];
                    conn.get_mut().write_all(&unknown).await.unwrap();
                    conn.send(&Pdu::new(Body::Unbind).with_sequence_number(901))
                        .await
                        .unwrap();
                    patience = tokio::time::Instant::now() + Duration::from_secs(1);
                }
                _ => answers.push((id, seq)),
            }
        }
        answers
    });
    let toml = format!(
        "node_id = \"t\"\n[listen]\nsmpp = \"127.0.0.1:0\"\n[store]\nbackend = \"memory\"\n{SHOP}\n\
         [[upstreams]]\nname = \"crossing\"\naddress = \"{address}\"\nsystem_id = \"proxy\"\npassword = \"pw\"\nsessions = 1\n"
    );
    let proxy = start_proxy(&toml).await;
    proxy.shutdown().await;
    let answers = tokio::time::timeout(T, smsc).await.expect("the session ended").unwrap();
    assert_eq!(
        answers,
        vec![(CommandId::ENQUIRE_LINK_RESP, 900), (CommandId::UNBIND_RESP, 901)],
        "what the SMSC sent while the proxy unbound was answered, and the session ended (a \
         generic_nack 0 here: still open a second after the crossing unbind)"
    );
}
