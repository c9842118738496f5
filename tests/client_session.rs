//! Client-session rules that need their own timers or limits: bind timeout, enquire_link on an
//! idle session, window and tps throttling; and the other submit PDUs and upstream bind modes.

mod support;

use smpp_proxy::esme::{submit_sm, Esme};
use smpp_proxy::pdu::body::{DataSm, SubmitMulti};
use smpp_proxy::pdu::{Body, COctetString, CommandId, CommandStatus, DestAddress, Pdu};
use smpp_proxy::sim::SimConfig;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use support::*;

const FAST_TIMERS: &str =
    "[sessions]\nbind_timeout = \"300ms\"\nenquire_link = \"200ms\"\nresponse_timeout = \"400ms\"\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_bind_in_time_closes_and_a_dead_client_is_dropped() {
    let sims = start_sims(1, SimConfig::default()).await;
    let proxy = start_proxy(&format!("{}{FAST_TIMERS}", proxy_toml(&sims, "", SHOP, ""))).await;
    let mut idle = Esme::connect(proxy.local_addr()).await.unwrap();
    let started = Instant::now();
    assert!(idle.recv(T).await.is_err(), "closed without a bind");
    assert!(started.elapsed() >= Duration::from_millis(250));

    // Bound and silent: the proxy sends enquire_link; one that answers stays.
    let mut alive = shop(&proxy).await;
    for _ in 0..3 {
        let pdu = alive.recv(T).await.unwrap();
        assert_eq!(pdu.command_id(), CommandId::ENQUIRE_LINK);
        alive.ack(&pdu).await.unwrap();
    }
    alive.unbind().await.unwrap();
    // One that does not answer is closed.
    let mut dead = shop(&proxy).await;
    assert_eq!(dead.recv(T).await.unwrap().command_id(), CommandId::ENQUIRE_LINK);
    let closed = loop {
        match dead.recv(T).await {
            Ok(pdu) if pdu.command_id() == CommandId::ENQUIRE_LINK => continue,
            Ok(other) => panic!("unexpected {other:?}"),
            Err(_) => break true,
        }
    };
    assert!(closed);
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn window_and_tps_limits_answer_throttled() {
    let sims = start_sims(
        1,
        SimConfig {
            receipts: false,
            latency: Duration::from_millis(200),
            ..SimConfig::default()
        },
    )
    .await;
    let clients = "[[clients]]\nsystem_id = \"win\"\npassword = \"x\"\nwindow = 5\n\
                   [[clients]]\nsystem_id = \"tps\"\npassword = \"x\"\ntps = 10\n";
    let proxy = start_proxy(&proxy_toml(&sims, "", clients, "")).await;
    let mut win = Esme::bind(proxy.local_addr(), CommandId::BIND_TRANSCEIVER, "win", "x")
        .await
        .unwrap();
    for _ in 0..8 {
        win.feed(submit_sm("1", "2", b"x", false)).await.unwrap();
    }
    win.flush().await.unwrap();
    let mut statuses = Vec::new();
    for _ in 0..8 {
        statuses.push(win.recv(T).await.unwrap().command_status);
    }
    // The 3 over the window are refused at once, before the 5 slow answers come.
    assert_eq!(&statuses[..3], &[CommandStatus::ESME_RTHROTTLED; 3]);
    assert_eq!(statuses.iter().filter(|s| s.is_ok()).count(), 5);

    let mut tps = Esme::bind(proxy.local_addr(), CommandId::BIND_TRANSCEIVER, "tps", "x")
        .await
        .unwrap();
    for _ in 0..30 {
        tps.feed(submit_sm("1", "2", b"x", false)).await.unwrap();
    }
    tps.flush().await.unwrap();
    let mut ok = 0;
    for _ in 0..30 {
        ok += usize::from(tps.recv(T).await.unwrap().command_status.is_ok());
    }
    // One second's burst (10) passes, plus what refills while the 30 arrive (a slow machine
    // may take a few hundred ms); the rest is refused at once.
    assert!((10..=15).contains(&ok), "{ok} passed a cap of 10/s");
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_sm_and_submit_multi_are_forwarded_and_mapped() {
    let sims = start_sims_without_receipts(1).await;
    let proxy = start_proxy(&proxy_toml(&sims, "", SHOP, "")).await;
    let mut esme = shop(&proxy).await;
    let data = DataSm {
        source_addr: COctetString::from_text("1"),
        destination_addr: COctetString::from_text("447700900123"),
        ..DataSm::default()
    };
    esme.send(Pdu::new(Body::DataSm(data))).await.unwrap();
    let resp = esme.recv(T).await.unwrap();
    assert_eq!(
        (resp.command_id(), resp.command_status),
        (CommandId::DATA_SM_RESP, CommandStatus::ESME_ROK)
    );
    assert_eq!(resp.message_id().unwrap().as_bytes().len(), 16, "the proxy's id");
    let multi = SubmitMulti {
        source_addr: COctetString::from_text("1"),
        dest_addresses: vec![
            DestAddress::Sme {
                dest_addr_ton: 1,
                dest_addr_npi: 1,
                destination_addr: COctetString::from_text("447700900001"),
            },
            DestAddress::DistributionList {
                dl_name: COctetString::from_text("staff"),
            },
        ],
        short_message: bytes::Bytes::from_static(b"to all"),
        ..SubmitMulti::default()
    };
    esme.send(Pdu::new(Body::SubmitMulti(multi))).await.unwrap();
    let resp = esme.recv(T).await.unwrap();
    assert_eq!(
        (resp.command_id(), resp.command_status),
        (CommandId::SUBMIT_MULTI_RESP, CommandStatus::ESME_ROK)
    );
    assert_eq!(resp.message_id().unwrap().as_bytes().len(), 16);
    assert_eq!(sims[0].stats().submits.load(Ordering::Relaxed), 2);
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pair_binds_and_upstream_tps_cap() {
    // The SMSC would throttle above 25/s; the proxy's cap for it is 20/s.
    let sims = start_sims(
        1,
        SimConfig {
            tps: 25,
            ..SimConfig::default()
        },
    )
    .await;
    let proxy = start_proxy(&proxy_toml(&sims, "bind = \"pair\"\ntps = 20", SHOP, "")).await;
    // A transmitter and a receiver session to the SMSC.
    assert_eq!(proxy.context().live().sessions.len(), 2);
    assert_eq!(sims[0].stats().binds.load(Ordering::Relaxed), 2);
    let mut esme = shop(&proxy).await;
    for _ in 0..40 {
        esme.feed(submit_sm("1", "447700900123", b"x", true)).await.unwrap();
    }
    esme.flush().await.unwrap();
    let (mut ok, mut receipts) = (0, 0);
    while ok < 40 || receipts < 40 {
        let pdu = esme.recv(T).await.unwrap();
        match pdu.command_id() {
            CommandId::SUBMIT_SM_RESP => {
                assert_eq!(
                    pdu.command_status,
                    CommandStatus::ESME_ROK,
                    "held within the window, not refused"
                );
                ok += 1;
            }
            CommandId::DELIVER_SM => {
                esme.ack(&pdu).await.unwrap();
                receipts += 1;
            }
            _ => {}
        }
    }
    // The burst waited for the proxy's cap instead of hitting the SMSC's: it never throttled.
    assert_eq!(sims[0].stats().throttled.load(Ordering::Relaxed), 0);
    assert_eq!(
        sims[0].stats().receipts.load(Ordering::Relaxed),
        40,
        "receipts came over the rx session"
    );
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_larger_than_the_upstream_window_waits_instead_of_failing() {
    let sims = start_sims(
        1,
        SimConfig {
            receipts: false,
            latency: Duration::from_millis(5),
            ..SimConfig::default()
        },
    )
    .await;
    let proxy = start_proxy(&proxy_toml(&sims, "window = 5", SHOP, "")).await;
    let mut esme = shop(&proxy).await;
    for _ in 0..100 {
        esme.feed(submit_sm("1", "2", b"x", false)).await.unwrap();
    }
    esme.flush().await.unwrap();
    for _ in 0..100 {
        assert_eq!(esme.recv(T).await.unwrap().command_status, CommandStatus::ESME_ROK);
    }
    assert_eq!(sims[0].stats().submits.load(Ordering::Relaxed), 100);
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stuck_upstream_throttles_the_client_after_queue_timeout() {
    // One slot, and an SMSC that takes 2 s to answer: the second request cannot get a slot in
    // the 300 ms the client is willing to wait.
    let sims = start_sims(
        1,
        SimConfig {
            receipts: false,
            latency: Duration::from_secs(2),
            ..SimConfig::default()
        },
    )
    .await;
    let toml = format!(
        "{}[sessions]\nqueue_timeout = \"300ms\"\n",
        proxy_toml(&sims, "window = 1", SHOP, "")
    );
    let proxy = start_proxy(&toml).await;
    let mut esme = shop(&proxy).await;
    // Not a wait for anything: the session's tick clock (250 ms) is now ~200 ms behind, which
    // a queue timed by it would take off the client's 300 ms.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let first = esme.send(submit_sm("1", "2", b"a", false)).await.unwrap();
    let sent = std::time::Instant::now();
    let second = esme.send(submit_sm("1", "2", b"b", false)).await.unwrap();
    let resp = esme.recv(T).await.unwrap();
    assert_eq!(
        (resp.sequence_number, resp.command_status),
        (second, CommandStatus::ESME_RTHROTTLED)
    );
    let waited = sent.elapsed();
    assert!(
        waited >= Duration::from_millis(300),
        "refused after {waited:?}, before queue_timeout"
    );
    let resp = esme.recv(T).await.unwrap();
    assert_eq!(
        (resp.sequence_number, resp.command_status),
        (first, CommandStatus::ESME_ROK)
    );
    proxy.shutdown().await;
}

/// While the proxy unbinds a client (here at a stop) and waits for its unbind_resp, what the
/// client sends is answered: an enquire_link, a submit_sm refused as the state no longer
/// allows it, and an unbind of its own that crosses the proxy's, which also ends the session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_being_unbound_is_answered_until_the_end() {
    let sims = start_sims_without_receipts(1).await;
    let proxy = start_proxy(&proxy_toml(&sims, "", SHOP, "")).await;
    let mut esme = bind_shop(proxy.local_addr(), CommandId::BIND_TRANSCEIVER).await;
    let stopping = tokio::spawn(proxy.shutdown());
    assert_eq!(esme.recv(T).await.unwrap().command_id(), CommandId::UNBIND);
    let ping = esme.send(Pdu::new(Body::EnquireLink)).await.unwrap();
    let resp = esme.recv(T).await.expect("enquire_link answered while unbinding");
    assert_eq!(
        (resp.command_id(), resp.sequence_number),
        (CommandId::ENQUIRE_LINK_RESP, ping)
    );
    let late = esme.send(submit_sm("1", "2", b"late", false)).await.unwrap();
    let resp = esme.recv(T).await.expect("submit_sm answered while unbinding");
    assert_eq!(
        (resp.command_id(), resp.command_status, resp.sequence_number),
        (CommandId::SUBMIT_SM_RESP, CommandStatus::ESME_RINVBNDSTS, late)
    );
    let unbind = esme.send(Pdu::new(Body::Unbind)).await.unwrap();
    let resp = esme.recv(T).await.expect("a crossing unbind answered");
    assert_eq!(
        (resp.command_id(), resp.sequence_number),
        (CommandId::UNBIND_RESP, unbind)
    );
    // Well within the 2 s the proxy would otherwise wait for its own unbind_resp.
    assert!(
        matches!(
            esme.recv(Duration::from_secs(1)).await,
            Err(smpp_proxy::esme::EsmeError::NoResponse("closed"))
        ),
        "the session ends with it"
    );
    stopping.await.unwrap();
    assert_eq!(sims[0].stats().submits.load(Ordering::Relaxed), 0, "nothing forwarded");
}
