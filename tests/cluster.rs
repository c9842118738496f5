//! Two or more nodes on one Redis (started by the test on a free loopback port): any node takes
//! any client, a receipt finds its client wherever it is bound, a node's death loses nothing.

mod support;

use smpp_proxy::esme::{submit_sm, Esme};
use smpp_proxy::pdu::{CommandId, CommandStatus};
use smpp_proxy::sim::SimConfig;
use std::collections::HashSet;
use std::time::Duration;
use support::redis::{Redis, RedisCluster};
use support::*;

/// Receipts on `rx` until `n` distinct ids came (each acknowledged); panics on a duplicate.
async fn receipts(rx: &mut Esme, n: usize) -> HashSet<String> {
    let mut got = HashSet::new();
    while got.len() < n {
        let pdu = rx
            .recv(T)
            .await
            .unwrap_or_else(|e| panic!("{} of {n} receipts, then {e}", got.len()));
        if pdu.command_id() != CommandId::DELIVER_SM {
            continue;
        }
        rx.ack(&pdu).await.unwrap();
        let id = receipt_id(&pdu);
        assert!(got.insert(id.clone()), "receipt for {id} twice");
    }
    got
}

/// Submit through node a (a transmitter bind), the receiver bound on node b.
async fn cross_node(url: &str, redis_cluster: bool) {
    let sims = start_sims(1, SimConfig::default()).await;
    let base = proxy_toml(&sims, "", SHOP, "");
    let a = start_proxy(&on_redis(&base, url, redis_cluster, "a")).await;
    let b = start_proxy(&on_redis(&base, url, redis_cluster, "b")).await;
    let mut tx = bind_shop(a.local_addr(), CommandId::BIND_TRANSMITTER).await;
    let mut rx = bind_shop(b.local_addr(), CommandId::BIND_RECEIVER).await;
    let ids: HashSet<String> = submit_all(&mut tx, 300, 50).await.into_iter().collect();
    let got = receipts(&mut rx, 300).await;
    assert_eq!(got, ids, "every receipt, with the id the client was given");
    assert!(
        rx.recv(std::time::Duration::from_millis(500)).await.is_err(),
        "nothing more"
    );
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receipt_reaches_its_client_bound_on_another_node() {
    let redis = Redis::start();
    cross_node(&redis.url(), false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receipt_reaches_its_client_bound_on_another_node_on_a_redis_cluster() {
    let redis = RedisCluster::start();
    cross_node(&redis.url(), true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receipts_wait_for_a_client_bound_nowhere_and_come_when_it_binds_anywhere() {
    let redis = Redis::start();
    let sims = start_sims(1, SimConfig::default()).await;
    let base = proxy_toml(&sims, "", SHOP, "");
    let (a, b) = two_nodes(&base, &redis.url()).await;
    let mut tx = bind_shop(b.local_addr(), CommandId::BIND_TRANSMITTER).await;
    let ids: HashSet<String> = submit_all(&mut tx, 200, 50).await.into_iter().collect();
    // Every receipt is in custody (the SMSC has had its answers) before anyone reads them.
    assert!(
        wait_until(T, || sims[0]
            .stats()
            .receipts
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 200)
        .await
    );
    let mut rx = bind_shop(a.local_addr(), CommandId::BIND_RECEIVER).await;
    assert_eq!(receipts(&mut rx, 200).await, ids);
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_joining_later_takes_clients_and_receipts_and_a_taken_node_id_is_refused() {
    let redis = Redis::start();
    let sims = start_sims(1, SimConfig::default()).await;
    let base = proxy_toml(&sims, "", SHOP, "");
    let (a, b) = two_nodes(&base, &redis.url()).await;
    let mut tx = bind_shop(a.local_addr(), CommandId::BIND_TRANSMITTER).await;
    let ids: HashSet<String> = submit_all(&mut tx, 100, 50).await.into_iter().collect();
    // A third node comes later; the client binds its receiver there.
    let c = start_proxy(&on_redis(&base, &redis.url(), false, "c")).await;
    let mut rx = bind_shop(c.local_addr(), CommandId::BIND_RECEIVER).await;
    assert_eq!(receipts(&mut rx, 100).await, ids);
    // `a` is running: another node with its id is refused, saying why.
    let config = smpp_proxy::config::Config::from_toml(&on_redis(&base, &redis.url(), false, "a")).unwrap();
    let refused = smpp_proxy::proxy::Proxy::start(config).await.unwrap_err().to_string();
    assert!(
        refused.contains("node_id \"a\" is in use by another running node"),
        "{refused}"
    );
    // Once `a` stops, its id is free again.
    a.shutdown().await;
    let config = smpp_proxy::config::Config::from_toml(&on_redis(&base, &redis.url(), false, "a")).unwrap();
    let again = smpp_proxy::proxy::Proxy::start(config).await.unwrap();
    again.shutdown().await;
    b.shutdown().await;
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_whose_id_another_run_took_stands_down_until_it_is_its_own_again() {
    let redis = Redis::start();
    let sims = start_sims_without_receipts(1).await;
    let a = start_proxy(&on_redis(&proxy_toml(&sims, "", SHOP, ""), &redis.url(), false, "a")).await;
    let mut tx = bind_shop(a.local_addr(), CommandId::BIND_TRANSMITTER).await;
    let submit = async |tx: &mut Esme| {
        tx.send(submit_sm("4477", "447700900123", b"hi", false)).await.unwrap();
        tx.recv(T).await.unwrap().command_status
    };
    assert_eq!(submit(&mut tx).await, CommandStatus::ESME_ROK);
    // As if its heartbeat had lapsed and another run with its id had joined meanwhile.
    support::redis::ask(redis.port, "SET smpp-proxy:node:a another-run").unwrap();
    assert!(wait_until(T, || !a.context().store.available()).await, "stood down");
    assert_eq!(submit(&mut tx).await, CommandStatus::ESME_RTHROTTLED);
    // That run gone: the id is this node's again, and so is the work.
    support::redis::ask(redis.port, "DEL smpp-proxy:node:a").unwrap();
    assert!(wait_until(T, || a.context().store.available()).await, "serving again");
    assert_eq!(submit(&mut tx).await, CommandStatus::ESME_ROK);
    a.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_binds_holds_across_nodes() {
    let redis = Redis::start();
    let sims = start_sims_without_receipts(1).await;
    let shop = "[[clients]]\nsystem_id = \"shop\"\npassword = \"secret\"\nmax_binds = 2\n";
    let base = proxy_toml(&sims, "", shop, "");
    let (a, b) = two_nodes(&base, &redis.url()).await;
    let bind = |addr| Esme::bind(addr, CommandId::BIND_TRANSCEIVER, "shop", "secret");
    let first = bind(a.local_addr()).await.unwrap();
    let _second = bind(b.local_addr()).await.unwrap();
    let third = bind(b.local_addr()).await;
    assert!(third.is_err(), "a third bind anywhere is refused");
    let fourth = bind(a.local_addr()).await;
    assert!(fourth.is_err(), "on either node");
    drop(first);
    assert!(
        wait_until(T, || client(&a, "shop").binds == 0).await,
        "the first bind went"
    );
    // And the cluster heard of it (node a tells Redis after it counts it gone here).
    let on_a = || support::redis::ask(redis.port, "HGET smpp-proxy:binds:{c/shop} a").unwrap();
    assert!(
        wait_until(T, || {
            let reply = on_a();
            reply.starts_with("$-1") || reply.contains("$1\r\n0")
        })
        .await,
        "{}",
        on_a()
    );
    let again = bind(b.local_addr()).await;
    assert!(again.is_ok(), "its place is free again, on another node");
    // Counts lost in Redis (say, taken for a dead node's while Redis was away) come back from
    // the nodes' own at their next upkeep, and hold again.
    support::redis::ask(redis.port, "DEL smpp-proxy:binds:{c/shop} smpp-proxy:rx:{c/shop}").unwrap();
    let count = |key: &str| support::redis::ask(redis.port, &format!("HGET smpp-proxy:{key}:{{c/shop}} b")).unwrap();
    assert!(
        wait_until(T, || count("binds").contains("$1\r\n2")).await,
        "{}",
        count("binds")
    );
    assert!(count("rx").contains("$1\r\n2"), "{}", count("rx"));
    assert!(bind(a.local_addr()).await.is_err(), "max_binds holds again");
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_shows_the_nodes_where_each_client_is_bound_and_its_outbox() {
    let redis = Redis::start();
    let sims = start_sims(1, SimConfig::default()).await;
    let base = proxy_toml(&sims, "", SHOP, "").replace("[listen]\n", "[listen]\nadmin = \"127.0.0.1:0\"\n");
    let (a, b) = two_nodes(&base, &redis.url()).await;
    let mut tx = bind_shop(a.local_addr(), CommandId::BIND_TRANSMITTER).await;
    submit_all(&mut tx, 20, 20).await;
    let admin = a.admin_addr().unwrap();
    // Nobody reads the receipts: they wait in the shared outbox.
    let depth = move || {
        let status = smpp_proxy::admin::get(admin, "/status").unwrap();
        let status: smpp_proxy::admin::Snapshot = serde_json::from_str(&status).unwrap();
        status.cluster.unwrap()
    };
    let ready = tokio::task::spawn_blocking(move || {
        let deadline = std::time::Instant::now() + T;
        loop {
            let cluster = depth();
            if cluster.clients[0].outbox == 20 || std::time::Instant::now() > deadline {
                return cluster;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    })
    .await
    .unwrap();
    assert_eq!(ready.clients[0].outbox, 20, "{ready:?}");
    let nodes: Vec<(&str, bool, bool)> = ready.nodes.iter().map(|n| (n.id.as_str(), n.alive, n.this)).collect();
    assert_eq!(nodes, [("a", true, true), ("b", true, false)]);
    assert_eq!(ready.clients[0].binds.get("a"), Some(&1), "{ready:?}");
    assert!(ready.store_up);
    let metrics = smpp_proxy::admin::get(admin, "/metrics").unwrap();
    assert!(metrics.contains("smpp_proxy_cluster_nodes_alive 2"), "{metrics}");
    assert!(
        metrics.contains("smpp_proxy_cluster_outbox_entries{client=\"shop\"} 20"),
        "{metrics}"
    );
    // The command line shows it too.
    let (code, text, err) =
        tokio::task::spawn_blocking(move || run_cli(&["status", "--admin", &admin.to_string()], None))
            .await
            .unwrap();
    assert_eq!(code, 0, "{err}");
    assert!(text.contains("cluster (shared store answering)"), "{text}");
    assert!(
        text.lines().any(|l| l.starts_with("shop ") && l.contains("a: 1")),
        "{text}"
    );
    drop(tx);
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_cancel_and_replace_work_from_any_node() {
    let redis = Redis::start();
    let sims = start_sims_without_receipts(1).await;
    let base = proxy_toml(&sims, "", SHOP, "");
    let (a, b) = two_nodes(&base, &redis.url()).await;
    let mut on_a = shop(&a).await;
    let ids = submit_all(&mut on_a, 5, 5).await;
    let mut on_b = shop(&b).await;
    for id in &ids {
        query_replace_cancel(&mut on_b, id).await;
    }
    // Query, replace and cancel of each, all at the SMSC that took the message.
    assert_eq!(sims[0].stats().queries.load(std::sync::atomic::Ordering::Relaxed), 15);
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mo_reaches_its_client_on_another_node() {
    let redis = Redis::start();
    let sims = start_sims(1, SimConfig::default()).await;
    let routes = "[[mo_routes]]\ndestination_prefix = \"\"\nclient = \"shop\"\n";
    let base = proxy_toml(&sims, "", SHOP, routes);
    let (a, b) = two_nodes(&base, &redis.url()).await;
    // The client is bound on b only; the SMSC sends MO to any session of the account, so about
    // half of them come in on node a.
    let mut rx = bind_shop(b.local_addr(), CommandId::BIND_RECEIVER).await;
    for n in 0..40 {
        let text = format!("mo {n}");
        assert!(wait_until(T, || sims[0].send_mo(None, "447700900999", "4477", text.as_bytes())).await);
    }
    let mut got = HashSet::new();
    while got.len() < 40 {
        let pdu = rx
            .recv(T)
            .await
            .unwrap_or_else(|e| panic!("{} of 40 MO, then {e}", got.len()));
        rx.ack(&pdu).await.unwrap();
        if let smpp_proxy::pdu::Body::DeliverSm(d) = &pdu.body {
            assert!(got.insert(d.short_message.clone()), "an MO twice");
        }
    }
    assert!(a.snapshot().counters.mo_routed > 0, "some came in on node a");
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_a_node_holds_stays_its_own_until_its_client_leaves_then_goes_to_another() {
    let redis = Redis::start();
    let sims = start_sims(1, SimConfig::default()).await;
    let shop = format!("{SHOP}deliver_window = 10\n");
    let base = proxy_toml(&sims, "", &shop, "");
    let node = |id: &str| on_redis(&base, &redis.url(), false, id) + "claim_idle = \"1s\"\n";
    let a = start_proxy(&node("a")).await;
    let b = start_proxy(&node("b")).await;
    let mut tx = bind_shop(a.local_addr(), CommandId::BIND_TRANSMITTER).await;
    let ids: HashSet<String> = submit_all(&mut tx, 50, 10).await.into_iter().collect();
    // Every receipt in the shared outbox before anyone reads.
    let depth = || support::redis::ask(redis.port, "XLEN smpp-proxy:out:{c/shop}").unwrap();
    assert!(wait_until(T, || depth().trim() == ":50").await, "{}", depth());
    // The client's first receiver, on a, reads and never answers: a holds what it handed it.
    let mut silent = bind_shop(a.local_addr(), CommandId::BIND_RECEIVER).await;
    let mut held = HashSet::new();
    while held.len() < 10 {
        let pdu = silent.recv(T).await.unwrap();
        if pdu.command_id() == CommandId::DELIVER_SM {
            held.insert(receipt_id(&pdu));
        }
    }
    // A receiver on b that answers gets the rest, and nothing a holds, though a holds it for
    // three times claim_idle.
    let mut rx = bind_shop(b.local_addr(), CommandId::BIND_RECEIVER).await;
    let rest = receipts(&mut rx, 40).await;
    assert!(rest.is_disjoint(&held));
    match rx.recv(Duration::from_secs(3)).await {
        Err(smpp_proxy::esme::EsmeError::NoResponse(_)) => {}
        other => panic!("b was handed something a holds: {other:?}"),
    }
    // The silent receiver goes: what a held comes to b, each once.
    drop(silent);
    assert_eq!(receipts(&mut rx, 10).await, held);
    assert_eq!(rest.union(&held).cloned().collect::<HashSet<_>>(), ids);
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shared_outbox_holds_outbox_max_and_drops_what_outlives_receipt_ttl() {
    let redis = Redis::start();
    let sims = start_sims(1, SimConfig::default()).await;
    let shop = "[[clients]]\nsystem_id = \"shop\"\npassword = \"secret\"\noutbox_max = 30\n";
    let base = proxy_toml(&sims, "", shop, "");
    let (a, b) = two_nodes(&base, &redis.url()).await;
    let mut tx = bind_shop(a.local_addr(), CommandId::BIND_TRANSMITTER).await;
    let ids: HashSet<String> = submit_all(&mut tx, 60, 20).await.into_iter().collect();
    // Bound nowhere: 30 held in the cluster, the rest refused to the SMSC (it sends them again).
    let refused = || a.snapshot().clients[0].outbox_refused_full + b.snapshot().clients[0].outbox_refused_full;
    assert!(wait_until(T, || refused() >= 30).await, "refused {}", refused());
    let depth = || support::redis::ask(redis.port, "XLEN smpp-proxy:out:{c/shop}").unwrap();
    assert_eq!(depth().trim(), ":30", "held: at most outbox_max");
    // Bound anywhere: the held ones flow, and the SMSC's retries fill in the rest.
    let mut rx = bind_shop(b.local_addr(), CommandId::BIND_RECEIVER).await;
    assert_eq!(receipts(&mut rx, 60).await, ids);
    drop(rx);
    a.shutdown().await;
    b.shutdown().await;

    // receipt_ttl: what waits longer is dropped and counted.
    let shop = "[[clients]]\nsystem_id = \"shop\"\npassword = \"secret\"\nreceipt_ttl = \"1s\"\n";
    let base = proxy_toml(&sims, "", shop, "");
    let a = start_proxy(&on_redis(&base, &redis.url(), false, "a")).await;
    let mut tx = bind_shop(a.local_addr(), CommandId::BIND_TRANSMITTER).await;
    submit_all(&mut tx, 10, 10).await;
    assert!(
        wait_until(T, || a.snapshot().clients[0].outbox_expired >= 10).await,
        "trimmed after 1 s"
    );
    let mut rx = bind_shop(a.local_addr(), CommandId::BIND_RECEIVER).await;
    assert!(
        rx.recv(std::time::Duration::from_millis(1500)).await.is_err(),
        "nothing left to deliver"
    );
    a.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_reach_redis_over_tls_with_a_password_from_a_file() {
    let redis = Redis::start_tls("s3cret");
    std::fs::write(redis.dir().join("redis.pass"), "s3cret\n").unwrap();
    let (ca, pass) = (redis.dir().join("ca.pem"), redis.dir().join("redis.pass"));
    let url = format!("rediss://127.0.0.1:{}/0", redis.port);
    let sims = start_sims(1, SimConfig::default()).await;
    let base = proxy_toml(&sims, "", SHOP, "");
    let node = |id| {
        on_redis(&base, &url, false, id).replace(
            "redis_cluster = false",
            &format!(
                "redis_cluster = false\ntls_ca_file = \"{}\"\npassword_file = \"{}\"",
                ca.display(),
                pass.display()
            ),
        )
    };
    let a = start_proxy(&node("a")).await;
    let b = start_proxy(&node("b")).await;
    let mut tx = bind_shop(a.local_addr(), CommandId::BIND_TRANSMITTER).await;
    let mut rx = bind_shop(b.local_addr(), CommandId::BIND_RECEIVER).await;
    let ids: HashSet<String> = submit_all(&mut tx, 50, 25).await.into_iter().collect();
    assert_eq!(receipts(&mut rx, 50).await, ids);
    // The wrong password is refused at start, saying so.
    std::fs::write(&pass, "wrong\n").unwrap();
    let config = smpp_proxy::config::Config::from_toml(&node("c")).unwrap();
    let refused = smpp_proxy::proxy::Proxy::start(config).await.unwrap_err().to_string();
    assert!(
        refused.to_lowercase().contains("auth") || refused.contains("WRONGPASS"),
        "{refused}"
    );
    a.shutdown().await;
    b.shutdown().await;
}

/// A rolling reload adds a client: node `a` has it, node `b` not yet. Receipts for its
/// messages that the SMSC sends on `b`'s sessions go into the client's shared outbox, not back
/// to the SMSC as refused, and reach the client on `a`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receipts_for_a_client_only_a_reloaded_node_knows_reach_it() {
    let redis = Redis::start();
    let sims = start_sims(1, SimConfig::default()).await;
    let base = proxy_toml(&sims, "", SHOP, "");
    let late = "[[clients]]\nsystem_id = \"late\"\npassword = \"later\"\n";
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.toml");
    std::fs::write(&path, on_redis(&base, &redis.url(), false, "a")).unwrap();
    let a = smpp_proxy::proxy::Proxy::start(smpp_proxy::config::Config::load(&path).unwrap())
        .await
        .unwrap();
    let b = start_proxy(&on_redis(&base, &redis.url(), false, "b")).await;
    assert!(a.wait_bound(T).await);
    std::fs::write(
        &path,
        on_redis(
            &proxy_toml(&sims, "", &format!("{SHOP}{late}"), ""),
            &redis.url(),
            false,
            "a",
        ),
    )
    .unwrap();
    a.reload().await.expect("a reloads");
    let bind = |kind| Esme::bind(a.local_addr(), kind, "late", "later");
    let mut tx = bind(CommandId::BIND_TRANSMITTER).await.unwrap();
    let mut rx = bind(CommandId::BIND_RECEIVER).await.unwrap();
    let ids: HashSet<String> = submit_all(&mut tx, 200, 20).await.into_iter().collect();
    assert_eq!(receipts(&mut rx, 200).await, ids, "every receipt, none refused");
    // The simulator spreads receipts over both nodes' sessions: b took some for a client it
    // does not know.
    assert!(b.snapshot().counters.deliveries_unknown_client > 0);
    assert_eq!(
        sims[0].stats().redelivered.load(std::sync::atomic::Ordering::Relaxed),
        0,
        "nothing was sent back to the SMSC"
    );
    a.shutdown().await;
    b.shutdown().await;
}
