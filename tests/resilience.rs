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
