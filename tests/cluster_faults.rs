//! What a bad day does to a cluster: a node killed in the middle of traffic, and Redis
//! restarted in the middle of traffic. Nothing answered OK may lose its receipt; duplicates
//! come only from what was in flight at the fault, and are counted.

mod support;

use smpp_proxy::esme::{submit_sm, Esme};
use smpp_proxy::pdu::{CommandId, CommandStatus};
use smpp_proxy::sim::SimConfig;
use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use support::redis::{Redis, RedisCluster};
use support::*;

/// Receipts seen, per id, across all the client's receivers.
type Seen = Arc<Mutex<HashMap<String, u32>>>;

/// Reads receipts on `rx` (acknowledging each) until the connection ends or `stop` is set.
fn receive(mut rx: Esme, seen: Seen, stop: Arc<std::sync::atomic::AtomicBool>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            match rx.recv(Duration::from_millis(200)).await {
                Ok(pdu) if pdu.command_id() == CommandId::DELIVER_SM => {
                    if rx.ack(&pdu).await.is_err() {
                        return;
                    }
                    // An MO (not a receipt) counts under its text.
                    let key = match &pdu.body {
                        smpp_proxy::pdu::Body::DeliverSm(d)
                            if smpp_proxy::receipt::Receipt::from_pdu(&pdu).is_none() =>
                        {
                            String::from_utf8_lossy(&d.short_message).into_owned()
                        }
                        _ => receipt_id(&pdu),
                    };
                    *seen.lock().unwrap().entry(key).or_default() += 1;
                }
                Ok(_) => {}
                Err(smpp_proxy::esme::EsmeError::NoResponse("timeout")) => {}
                Err(_) => return,
            }
        }
    })
}

/// Submits `n` through `tx`, `window` at a time; the ids answered OK. Refusals (the store
/// down: ESME_RTHROTTLED) are sent again; a closed connection ends it. `after(k)` runs once
/// `k` were answered OK.
async fn submit(tx: &mut Esme, n: usize, window: usize, mut after: impl FnMut(usize)) -> Vec<String> {
    let mut ok = Vec::new();
    let (mut sent, mut answered) = (0, 0);
    while ok.len() < n {
        while sent < n + (answered - ok.len()) && sent - answered < window {
            if tx
                .feed(submit_sm("4477", "447700900123", format!("m{sent}").as_bytes(), true))
                .await
                .is_err()
            {
                return ok;
            }
            sent += 1;
        }
        if tx.flush().await.is_err() {
            return ok;
        }
        let Ok(resp) = tx.recv(T).await else { return ok };
        if resp.command_id() != CommandId::SUBMIT_SM_RESP {
            continue;
        }
        answered += 1;
        if resp.command_status == CommandStatus::ESME_ROK {
            ok.push(resp.message_id().unwrap().as_str().unwrap().to_owned());
            after(ok.len());
        } else {
            assert_eq!(
                resp.command_status,
                CommandStatus::ESME_RTHROTTLED,
                "only refusals while the store is down"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    ok
}

/// Waits until every id in `want` has a receipt (or 60 s); the ids without one, and how many
/// came more than once.
async fn settle(want: &HashSet<String>, seen: &Seen) -> (Vec<String>, u32) {
    let complete = || want.iter().all(|id| seen.lock().unwrap().contains_key(id));
    wait_until(Duration::from_secs(60), complete).await;
    let seen = seen.lock().unwrap();
    let lost: Vec<String> = want.iter().filter(|id| !seen.contains_key(*id)).cloned().collect();
    let duplicates = seen.values().map(|n| n - 1).sum();
    (lost, duplicates)
}

/// Two nodes (processes), the client bound to both; node a is killed with SIGKILL after 3 000
/// submits answered through it.
async fn node_killed(url: &str, redis_cluster: bool) {
    // The simulator sends what a dead session never answered again, to another session.
    let sims = start_sims(
        1,
        SimConfig {
            receipt_delay: Duration::from_millis(5),
            ..SimConfig::default()
        },
    )
    .await;
    let tmp = tempfile::tempdir().unwrap();
    let mut nodes = Vec::new();
    let mut addrs: Vec<SocketAddr> = Vec::new();
    for id in ["a", "b"] {
        let port = free_port();
        // The bound on duplicates below counts the receiver's deliver window: set here, as it
        // was the default when the bound was written (the default is 100 since issue 14).
        let shop = format!("{SHOP}deliver_window = 10\n");
        let toml = on_redis(&proxy_toml(&sims, "sessions = 2", &shop, ""), url, redis_cluster, id)
            .replace("smpp = \"127.0.0.1:0\"", &format!("smpp = \"127.0.0.1:{port}\""));
        let config = tmp.path().join(format!("{id}.toml"));
        std::fs::write(&config, toml).unwrap();
        nodes.push(spawn_proxy(&config));
        addrs.push(format!("127.0.0.1:{port}").parse().unwrap());
    }
    let seen: Seen = Arc::default();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let readers = [
        receive(
            bind_when_up(addrs[0], CommandId::BIND_RECEIVER).await,
            seen.clone(),
            stop.clone(),
        ),
        receive(
            bind_when_up(addrs[1], CommandId::BIND_RECEIVER).await,
            seen.clone(),
            stop.clone(),
        ),
    ];
    let mut tx_a = bind_when_up(addrs[0], CommandId::BIND_TRANSMITTER).await;
    let mut tx_b = bind_when_up(addrs[1], CommandId::BIND_TRANSMITTER).await;
    let mut a = nodes.remove(0);
    let through_b = tokio::spawn(async move { submit(&mut tx_b, 10_000, 20, |_| {}).await });
    // SIGKILL node a after 3 000 answers through it, requests and receipts in flight.
    let through_a = submit(&mut tx_a, 10_000, 20, |k| {
        if k == 3_000 {
            a.kill();
        }
    })
    .await;
    let through_b = through_b.await.unwrap();
    assert_eq!(through_b.len(), 10_000, "node b answered all it was sent");
    assert!((3_000..10_000).contains(&through_a.len()), "{}", through_a.len());
    let want: HashSet<String> = through_a.iter().chain(&through_b).cloned().collect();
    let (lost, duplicates) = settle(&want, &seen).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for r in readers {
        let _ = r.await;
    }
    eprintln!(
        "node killed: {} answered OK ({} through the killed node), {} lost, {duplicates} duplicates",
        want.len(),
        through_a.len(),
        lost.len()
    );
    assert!(lost.is_empty(), "{} lost: {:?}", lost.len(), &lost[..lost.len().min(5)]);
    // In flight to the dead node's receiver when it died: at most its deliver window, twice
    // (fetched from the outbox, and handed over directly).
    assert!(duplicates <= 20, "{duplicates} duplicates");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_killed_in_the_middle_of_traffic_loses_no_receipt() {
    let redis = Redis::start();
    node_killed(&redis.url(), false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_killed_in_the_middle_of_traffic_loses_no_receipt_on_a_redis_cluster() {
    let redis = RedisCluster::start();
    node_killed(&redis.url(), true).await;
}

/// Two nodes (in this process) on one Redis, MO routed to the client: the client's receiver
/// bound on b, its transmitter on a.
struct TwoNodes {
    redis: Redis,
    sims: Vec<smpp_proxy::sim::SimHandle>,
    a: smpp_proxy::proxy::Proxy,
    b: smpp_proxy::proxy::Proxy,
    seen: Seen,
    stop: Arc<std::sync::atomic::AtomicBool>,
    reader: tokio::task::JoinHandle<()>,
    tx: Esme,
}

async fn two_nodes_on_redis() -> TwoNodes {
    let redis = Redis::start();
    let sims = start_sims(
        1,
        SimConfig {
            receipt_delay: Duration::from_millis(5),
            ..SimConfig::default()
        },
    )
    .await;
    let routes = "[[mo_routes]]\ndestination_prefix = \"\"\nclient = \"shop\"\n";
    let base = proxy_toml(&sims, "sessions = 2", SHOP, routes);
    let (a, b) = two_nodes(&base, &redis.url()).await;
    let seen: Seen = Arc::default();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let rx = bind_shop(b.local_addr(), CommandId::BIND_RECEIVER).await;
    let reader = receive(rx, seen.clone(), stop.clone());
    let tx = bind_shop(a.local_addr(), CommandId::BIND_TRANSMITTER).await;
    TwoNodes {
        redis,
        sims,
        a,
        b,
        seen,
        stop,
        reader,
        tx,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_restarted_in_the_middle_of_traffic_loses_no_acknowledged_receipt() {
    let TwoNodes {
        mut redis,
        sims: _sims,
        a,
        b,
        seen,
        stop,
        reader,
        mut tx,
    } = two_nodes_on_redis().await;
    let mut restarted = false;
    let ok = submit(&mut tx, 4_000, 20, |k| {
        if k == 1_500 && !restarted {
            restarted = true;
            redis.restart();
        }
    })
    .await;
    assert_eq!(ok.len(), 4_000, "the nodes recovered by themselves");
    let want: HashSet<String> = ok.into_iter().collect();
    let (lost, duplicates) = settle(&want, &seen).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let _ = reader.await;
    let outages = a.context().cluster.as_ref().unwrap().store().health().changes();
    eprintln!(
        "redis restarted: {} answered OK, {} lost, {duplicates} duplicates; node a saw the store go and come back {} times",
        want.len(),
        lost.len(),
        outages / 2
    );
    assert!(outages >= 2, "node a saw the outage: {outages} changes");
    assert!(lost.is_empty(), "{} lost: {:?}", lost.len(), &lost[..lost.len().min(5)]);
    assert!(a.context().store.available() && b.context().store.available());
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_for_a_while_refuses_new_submits_keeps_every_session_and_recovers() {
    let TwoNodes {
        mut redis,
        sims,
        a,
        b,
        seen,
        stop,
        reader,
        mut tx,
    } = two_nodes_on_redis().await;
    let mut ok = submit(&mut tx, 500, 20, |_| {}).await;
    // Their receipts delivered first: nothing is on its way into Redis when it goes.
    let first: HashSet<String> = ok.iter().cloned().collect();
    let (lost, _) = settle(&first, &seen).await;
    assert!(lost.is_empty());
    redis.kill();
    // Within a heartbeat the nodes know: new submits are refused at once, not sent.
    assert!(wait_until(T, || !a.context().store.available()).await);
    let before = sims[0].stats().submits.load(std::sync::atomic::Ordering::Relaxed);
    for _ in 0..10 {
        tx.send(submit_sm("4477", "447700900123", b"while down", true))
            .await
            .unwrap();
        let resp = tx.recv(T).await.unwrap();
        assert_eq!(resp.command_status, CommandStatus::ESME_RTHROTTLED);
    }
    assert_eq!(
        sims[0].stats().submits.load(std::sync::atomic::Ordering::Relaxed),
        before,
        "nothing sent"
    );
    // Sessions stay bound: the client's, and the upstreams'.
    tx.send(smpp_proxy::pdu::Pdu::new(smpp_proxy::pdu::Body::EnquireLink))
        .await
        .unwrap();
    assert_eq!(tx.recv(T).await.unwrap().command_id(), CommandId::ENQUIRE_LINK_RESP);
    assert!(a.context().live().sessions.iter().all(|s| s.is_bound()));
    // MO from the SMSC, one to each of the four upstream sessions in turn: node a (the client
    // is not bound there) cannot take them into custody, so it refuses them for now
    // (ESME_RX_T_APPN) and the SMSC keeps them and retries. Node b may hand them straight to
    // the client bound there.
    let stats = sims[0].stats();
    let refused = stats.redelivered.load(std::sync::atomic::Ordering::Relaxed);
    let mo: Vec<String> = (0..4).map(|n| format!("mo {n} while down")).collect();
    for text in &mo {
        assert!(sims[0].send_mo(None, "447700900999", "4477", text.as_bytes()));
    }
    assert!(
        wait_until(T, || stats.redelivered.load(std::sync::atomic::Ordering::Relaxed)
            > refused)
        .await,
        "the SMSC was asked to send it again"
    );
    assert_eq!(
        CommandStatus(stats.last_refusal.load(std::sync::atomic::Ordering::Relaxed)),
        CommandStatus::ESME_RX_T_APPN
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    redis.restart();
    assert!(
        wait_until(T, || a.context().store.available() && b.context().store.available()).await,
        "back by itself"
    );
    ok.extend(submit(&mut tx, 500, 20, |_| {}).await);
    assert_eq!(ok.len(), 1_000);
    let mut want: HashSet<String> = ok.into_iter().collect();
    want.extend(mo);
    let (lost, duplicates) = settle(&want, &seen).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let _ = reader.await;
    assert!(lost.is_empty(), "lost: {:?}", &lost[..lost.len().min(5)]);
    assert_eq!(duplicates, 0, "every MO and receipt came once");
    let metrics = a.snapshot();
    assert!(metrics.cluster.is_none(), "the snapshot without the store's view");
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receipt_held_for_its_submit_goes_back_to_the_smsc_when_redis_is_down() {
    use smpp_proxy::pdu::{tag, Body, DeliverSm, Pdu, Tlvs};
    let mut redis = Redis::start();
    let sims = start_sims(1, SimConfig::default()).await;
    let base = format!("early_receipt_wait = \"2s\"\n{}", proxy_toml(&sims, "", SHOP, ""));
    let a = start_proxy(&on_redis(&base, &redis.url(), false, "a")).await;
    // A receipt for a message no node has recorded yet: held, waiting for its submit.
    let text = b"id:not-yet sub:001 dlvrd:001 submit date:2401311200 done date:2401311201 stat:DELIVRD err:000";
    let receipt = Pdu::new(Body::DeliverSm(DeliverSm {
        esm_class: 0x04,
        ..DeliverSm::text("1", "2", text)
    }))
    .with_tlvs(Tlvs::from_pairs([(tag::receipted_message_id, &b"not-yet\0"[..])]));
    assert!(sims[0].send_pdu(Some("proxy"), receipt));
    assert!(wait_until(T, || a.context().early.holding()).await);
    // Redis goes before its wait is over: nobody can say whether the submit was recorded
    // meanwhile, so it is not given up as unmatched but left with the SMSC.
    redis.kill();
    let stats = sims[0].stats();
    assert!(
        wait_until(T, || stats.redelivered.load(std::sync::atomic::Ordering::Relaxed) > 0).await,
        "the SMSC was asked to send it again"
    );
    assert_eq!(
        CommandStatus(stats.last_refusal.load(std::sync::atomic::Ordering::Relaxed)),
        CommandStatus::ESME_RX_T_APPN
    );
    assert_eq!(a.snapshot().counters.receipts_unmatched, 0);
    redis.restart();
    a.shutdown().await;
}
