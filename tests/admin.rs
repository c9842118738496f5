//! The admin endpoint: /metrics and /status show what happened on the wire, and
//! `smpp-proxy status` prints it.

mod support;

use smpp_proxy::admin::{self, Snapshot};
use smpp_proxy::esme::{submit_sm, Esme};
use smpp_proxy::pdu::{tag, Body, CommandId, DeliverSm, Pdu, Tlvs};
use smpp_proxy::sim::SimConfig;
use std::time::Duration;
use support::*;

/// The value of one sample line (`name{labels} value`) in Prometheus text.
fn sample(metrics: &str, series: &str) -> Option<u64> {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

async fn fetch(addr: std::net::SocketAddr, path: &'static str) -> std::io::Result<String> {
    tokio::task::spawn_blocking(move || admin::get(addr, path))
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_and_status_count_what_happened() {
    let sims = start_sims(
        2,
        SimConfig {
            receipt_delay: Duration::from_millis(1),
            ..SimConfig::default()
        },
    )
    .await;
    // shop's outbox holds 5: with no receiver bound, receipts 6..10 are refused (and retried).
    let clients = format!("{SHOP}outbox_max = 5\n[[clients]]\nsystem_id = \"ops\"\npassword = \"x\"\n");
    let extra = "early_receipt_wait = \"100ms\"\n";
    let toml = format!("{extra}{}", proxy_toml(&sims, "", &clients, ""))
        .replace("[listen]\n", "[listen]\nadmin = \"127.0.0.1:0\"\n");
    let proxy = start_proxy(&toml).await;
    let addr = proxy.admin_addr().expect("admin endpoint");
    let mut tx = Esme::bind(proxy.local_addr(), CommandId::BIND_TRANSMITTER, "shop", "secret")
        .await
        .unwrap();
    for _ in 0..10 {
        tx.send(submit_sm("4477", "447700900123", b"hi", true)).await.unwrap();
        assert_eq!(tx.recv(T).await.unwrap().command_id(), CommandId::SUBMIT_SM_RESP);
    }
    let text = b"id:nobody-knows sub:001 dlvrd:001 submit date:2401311200 done date:2401311201 stat:DELIVRD err:000";
    let stray = Pdu::new(Body::DeliverSm(DeliverSm {
        esm_class: 0x04,
        ..DeliverSm::text("1", "2", text)
    }))
    .with_tlvs(Tlvs::from_pairs([(tag::receipted_message_id, &b"nobody-knows\0"[..])]));
    assert!(sims[0].send_pdu(Some("proxy"), stray));

    let mut metrics = String::new();
    let settled = |m: &str| {
        sample(m, "smpp_proxy_outbox_entries{client=\"shop\"}") == Some(5)
            && sample(m, "smpp_proxy_outbox_refused_full_total{client=\"shop\"}").is_some_and(|n| n >= 5)
            && sample(m, "smpp_proxy_receipts_unmatched_total") == Some(1)
    };
    let deadline = tokio::time::Instant::now() + T;
    while tokio::time::Instant::now() < deadline {
        metrics = fetch(addr, "/metrics").await.unwrap();
        if settled(&metrics) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(settled(&metrics), "{metrics}");
    assert_eq!(sample(&metrics, "smpp_proxy_client_binds{client=\"shop\"}"), Some(1));
    assert_eq!(sample(&metrics, "smpp_proxy_client_binds{client=\"ops\"}"), Some(0));
    assert_eq!(
        sample(&metrics, "smpp_proxy_upstream_sessions_bound{upstream=\"smsc-1\"}"),
        Some(1)
    );
    assert_eq!(
        sample(&metrics, "smpp_proxy_correlations"),
        Some(5),
        "receipts in custody ended their correlations; the refused ones keep theirs"
    );
    assert!(metrics.contains("# TYPE smpp_proxy_receipts_matched_total counter"));

    let status: Snapshot = serde_json::from_str(&fetch(addr, "/status").await.unwrap()).unwrap();
    assert_eq!(status.node_id, "t");
    assert_eq!(status.counters.receipts_unmatched, 1);
    let shop = status.clients.iter().find(|c| c.system_id == "shop").unwrap();
    assert_eq!((shop.binds, shop.outbox), (1, 5));
    let names: Vec<&str> = status.upstreams.iter().map(|u| u.figures.name.as_str()).collect();
    assert_eq!(names, ["smsc-0", "smsc-1"]);
    assert!(status
        .upstreams
        .iter()
        .all(|u| u.sessions_bound == 1 && u.sessions == 1));

    let missing = fetch(addr, "/nothing").await.unwrap_err().to_string();
    assert!(missing.contains("404"), "{missing}");

    // The command line reads the same endpoint.
    let admin = addr.to_string();
    let (code, text, err) = tokio::task::spawn_blocking(move || run_cli(&["status", "--admin", &admin], None))
        .await
        .unwrap();
    assert_eq!(code, 0, "{text}{err}");
    assert!(text.contains("1 unmatched"), "{text}");
    let shop_line = text.lines().find(|l| l.starts_with("shop ")).unwrap_or_default();
    assert_eq!(
        shop_line.split_whitespace().take(3).collect::<Vec<_>>(),
        ["shop", "1", "5"],
        "{text}"
    );
    assert!(
        text.lines().any(|l| l.starts_with("smsc-1 ") && l.contains("1/1")),
        "{text}"
    );
    drop(tx);
    proxy.shutdown().await;
}
