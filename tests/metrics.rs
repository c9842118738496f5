//! `/metrics` as a Prometheus server reads it: parsed by the Prometheus project's own parser
//! (python prometheus-client, strict OpenMetrics), with the histograms and per-client,
//! per-upstream families an on-call person needs, counting what happened on the wire.

mod support;

use serde_json::Value;
use smpp_proxy::admin;
use smpp_proxy::esme::submit_sm;
use smpp_proxy::pdu::{CommandId, CommandStatus};
use smpp_proxy::sim::SimConfig;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;
use support::*;

/// The families `text` holds, as the Prometheus parser reads them (it fails on anything
/// Prometheus would refuse).
fn parse(text: &str) -> serde_json::Map<String, Value> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let python = root.join(".venv/bin/python");
    assert!(python.exists(), "{} missing: run scripts/test.sh", python.display());
    let mut child = Command::new(python)
        .arg(root.join("tests/interop/parse_metrics.py"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "the Prometheus parser refused /metrics: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice::<Value>(&out.stdout)
        .unwrap()
        .as_object()
        .unwrap()
        .clone()
}

/// The value of the sample called `name` with every label of `labels`.
fn value(families: &serde_json::Map<String, Value>, family: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    families[family]["samples"].as_array()?.iter().find_map(|s| {
        let matches = s[0] == name && labels.iter().all(|(k, v)| s[1][*k] == *v);
        matches.then(|| s[2].as_f64()).flatten()
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_parse_as_prometheus_reads_them_and_count_the_traffic() {
    let sims = start_sims(
        1,
        SimConfig {
            receipt_delay: Duration::from_millis(1),
            ..SimConfig::default()
        },
    )
    .await;
    let clients = format!("{SHOP}[[clients]]\nsystem_id = \"slow\"\npassword = \"secret\"\nwindow = 1\n");
    let toml = proxy_toml(&sims, "", &clients, "").replace("[listen]\n", "[listen]\nadmin = \"127.0.0.1:0\"\n");
    let proxy = start_proxy(&toml).await;
    let mut rx = bind_shop(proxy.local_addr(), CommandId::BIND_RECEIVER).await;
    let mut tx = bind_shop(proxy.local_addr(), CommandId::BIND_TRANSMITTER).await;
    let ids = submit_all(&mut tx, 20, 5).await;
    // Every receipt read and answered, so each is counted.
    let mut receipts = 0;
    while receipts < ids.len() {
        let esme = &mut rx;
        let pdu = esme.recv(T).await.unwrap();
        if pdu.command_id() == CommandId::DELIVER_SM {
            esme.ack(&pdu).await.unwrap();
            receipts += 1;
        }
    }
    let addr = proxy.admin_addr().unwrap();
    let settled = || async move {
        let text = tokio::task::spawn_blocking(move || admin::get(addr, "/metrics"))
            .await
            .unwrap()
            .unwrap();
        let families = parse(&text);
        let matched = value(
            &families,
            "smpp_proxy_receipts_matched",
            "smpp_proxy_receipts_matched_total",
            &[],
        );
        (matched == Some(20.0)).then_some(families)
    };
    let mut families = None;
    let deadline = tokio::time::Instant::now() + T;
    while families.is_none() && tokio::time::Instant::now() < deadline {
        families = settled().await;
    }
    let f = families.expect("the receipts were counted");

    let types: Vec<(&str, &str)> = vec![
        ("smpp_proxy_upstream_submit_duration_seconds", "histogram"),
        ("smpp_proxy_upstream_receipt_delay_seconds", "histogram"),
        ("smpp_proxy_client_submit_duration_seconds", "histogram"),
        ("smpp_proxy_store_commit_duration_seconds", "histogram"),
        ("smpp_proxy_client_submits", "counter"),
        ("smpp_proxy_upstream_state", "gauge"),
        ("smpp_proxy_upstream_sessions_lost", "counter"),
        ("smpp_proxy_upstream_throttled", "counter"),
        ("smpp_proxy_outbox_oldest_age_seconds", "gauge"),
        ("smpp_proxy_outbox_entries", "gauge"),
        ("smpp_proxy_build", "info"),
        ("smpp_proxy_config_reloads", "counter"),
        ("process_resident_memory_bytes", "gauge"),
        ("process_open_fds", "gauge"),
    ];
    for (name, kind) in types {
        assert_eq!(f.get(name).map(|v| v["type"].as_str()), Some(Some(kind)), "{name}");
    }
    let up = [("upstream", "smsc-0")];
    let count = |family: &str, labels: &[(&str, &str)]| value(&f, family, &format!("{family}_count"), labels);
    assert_eq!(count("smpp_proxy_upstream_submit_duration_seconds", &up), Some(20.0));
    assert_eq!(count("smpp_proxy_upstream_receipt_delay_seconds", &up), Some(20.0));
    assert_eq!(
        count("smpp_proxy_client_submit_duration_seconds", &[("client", "shop")]),
        Some(20.0)
    );
    assert_eq!(count("smpp_proxy_store_commit_duration_seconds", &[]), Some(20.0));
    // Cumulative buckets: the +Inf one holds them all.
    assert_eq!(
        value(
            &f,
            "smpp_proxy_upstream_submit_duration_seconds",
            "smpp_proxy_upstream_submit_duration_seconds_bucket",
            &[("upstream", "smsc-0"), ("le", "+Inf")]
        ),
        Some(20.0)
    );
    let submits = [("client", "shop"), ("status", "ESME_ROK")];
    assert_eq!(
        value(
            &f,
            "smpp_proxy_client_submits",
            "smpp_proxy_client_submits_total",
            &submits
        ),
        Some(20.0)
    );
    let state = |s: &str| {
        value(
            &f,
            "smpp_proxy_upstream_state",
            "smpp_proxy_upstream_state",
            &[("upstream", "smsc-0"), ("state", s)],
        )
    };
    assert_eq!((state("available"), state("paused")), (Some(1.0), Some(0.0)));
    assert!(
        value(
            &f,
            "process_resident_memory_bytes",
            "process_resident_memory_bytes",
            &[]
        )
        .unwrap()
            > 1e6
    );

    // A submit beyond the client's window, answered ESME_RTHROTTLED by the proxy itself, is
    // counted under its status too.
    sims[0].set_latency(Duration::from_millis(300));
    let mut slow = smpp_proxy::esme::Esme::bind(proxy.local_addr(), CommandId::BIND_TRANSMITTER, "slow", "secret")
        .await
        .unwrap();
    for _ in 0..2 {
        slow.feed(submit_sm("4477", "447700900123", b"hi", false))
            .await
            .unwrap();
    }
    slow.flush().await.unwrap();
    let statuses = [
        slow.recv(T).await.unwrap().command_status,
        slow.recv(T).await.unwrap().command_status,
    ];
    assert!(statuses.contains(&CommandStatus::ESME_RTHROTTLED), "{statuses:?}");
    let text = tokio::task::spawn_blocking(move || admin::get(addr, "/metrics"))
        .await
        .unwrap()
        .unwrap();
    assert!(text.ends_with("# EOF\n"));
    let f = parse(&text);
    let throttled = [("client", "slow"), ("status", "ESME_RTHROTTLED")];
    assert_eq!(
        value(
            &f,
            "smpp_proxy_client_submits",
            "smpp_proxy_client_submits_total",
            &throttled
        ),
        Some(1.0)
    );
    proxy.shutdown().await;
}
