//! Two or more nodes on one Redis (started by the test on a free loopback port): any node takes
//! any client, a receipt finds its client wherever it is bound, a node's death loses nothing.

mod support;

use smpp_proxy::esme::Esme;
use smpp_proxy::pdu::CommandId;
use smpp_proxy::sim::SimConfig;
use std::collections::HashSet;
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
    let mut tx = Esme::bind(a.local_addr(), CommandId::BIND_TRANSMITTER, "shop", "secret")
        .await
        .unwrap();
    let mut rx = Esme::bind(b.local_addr(), CommandId::BIND_RECEIVER, "shop", "secret")
        .await
        .unwrap();
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
    let a = start_proxy(&on_redis(&base, &redis.url(), false, "a")).await;
    let b = start_proxy(&on_redis(&base, &redis.url(), false, "b")).await;
    let mut tx = Esme::bind(b.local_addr(), CommandId::BIND_TRANSMITTER, "shop", "secret")
        .await
        .unwrap();
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
    let mut rx = Esme::bind(a.local_addr(), CommandId::BIND_RECEIVER, "shop", "secret")
        .await
        .unwrap();
    assert_eq!(receipts(&mut rx, 200).await, ids);
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_joining_later_takes_clients_and_receipts_and_a_taken_node_id_is_refused() {
    let redis = Redis::start();
    let sims = start_sims(1, SimConfig::default()).await;
    let base = proxy_toml(&sims, "", SHOP, "");
    let a = start_proxy(&on_redis(&base, &redis.url(), false, "a")).await;
    let mut tx = Esme::bind(a.local_addr(), CommandId::BIND_TRANSMITTER, "shop", "secret")
        .await
        .unwrap();
    let ids: HashSet<String> = submit_all(&mut tx, 100, 50).await.into_iter().collect();
    // A third... second node comes later; the client binds its receiver there.
    let c = start_proxy(&on_redis(&base, &redis.url(), false, "c")).await;
    let mut rx = Esme::bind(c.local_addr(), CommandId::BIND_RECEIVER, "shop", "secret")
        .await
        .unwrap();
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
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_binds_holds_across_nodes() {
    let redis = Redis::start();
    let sims = start_sims_without_receipts(1).await;
    let shop = "[[clients]]\nsystem_id = \"shop\"\npassword = \"secret\"\nmax_binds = 2\n";
    let base = proxy_toml(&sims, "", shop, "");
    let a = start_proxy(&on_redis(&base, &redis.url(), false, "a")).await;
    let b = start_proxy(&on_redis(&base, &redis.url(), false, "b")).await;
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
    assert!(
        bind(b.local_addr()).await.is_ok(),
        "its place is free again, on another node"
    );
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_shows_the_nodes_where_each_client_is_bound_and_its_outbox() {
    let redis = Redis::start();
    let sims = start_sims(1, SimConfig::default()).await;
    let base = proxy_toml(&sims, "", SHOP, "").replace("[listen]\n", "[listen]\nadmin = \"127.0.0.1:0\"\n");
    let a = start_proxy(&on_redis(&base, &redis.url(), false, "a")).await;
    let b = start_proxy(&on_redis(&base, &redis.url(), false, "b")).await;
    let mut tx = Esme::bind(a.local_addr(), CommandId::BIND_TRANSMITTER, "shop", "secret")
        .await
        .unwrap();
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
