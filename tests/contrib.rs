//! What ships in contrib/ for operators works against the proxy as it is: the alert rules pass
//! promtool's check and their own unit tests, and every metric the rules and the Grafana
//! dashboard name is one a running proxy serves.

mod support;

use smpp_proxy::esme::submit_sm;
use smpp_proxy::pdu::CommandId;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use support::*;

fn contrib(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("contrib").join(path)
}

/// promtool, which scripts/test.sh installs (Debian's `prometheus`).
fn promtool() -> &'static str {
    let found = std::process::Command::new("promtool").arg("--version").output();
    assert!(
        found.is_ok_and(|o| o.status.success()),
        "promtool missing: run scripts/test.sh, which installs Debian's prometheus package"
    );
    "promtool"
}

#[test]
fn the_alert_rules_pass_promtool_and_their_unit_tests() {
    let dir = contrib("prometheus");
    for args in [["check", "rules", "alerts.yml"], ["test", "rules", "alerts.test.yml"]] {
        let out = std::process::Command::new(promtool())
            .args(args)
            .current_dir(&dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "promtool {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// Every `smpp_proxy_*` / `process_*` name in `text`, without the suffix a family's samples
/// carry (`_bucket`, `_count`, `_sum`, `_total`, `_info`).
fn names(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let bytes = text.as_bytes();
    for prefix in ["smpp_proxy_", "process_"] {
        let mut from = 0;
        while let Some(at) = text[from..].find(prefix) {
            let start = from + at;
            let end = start
                + bytes[start..]
                    .iter()
                    .position(|b| !(b.is_ascii_alphanumeric() || *b == b'_'))
                    .unwrap_or(bytes.len() - start);
            let name = &text[start..end];
            let family = ["_bucket", "_count", "_sum", "_total", "_info"]
                .iter()
                .find_map(|s| name.strip_suffix(s))
                .unwrap_or(name);
            out.insert(family.to_owned());
            from = end;
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_metric_the_dashboard_and_the_alerts_name_is_served() {
    let sims = start_sims_without_receipts(1).await;
    let toml = proxy_toml(&sims, "", SHOP, "").replace("[listen]\n", "[listen]\nadmin = \"127.0.0.1:0\"\n");
    let proxy = start_proxy(&toml).await;
    let mut esme = bind_shop(proxy.local_addr(), CommandId::BIND_TRANSMITTER).await;
    esme.send(submit_sm("4477", "447700900123", b"hi", false))
        .await
        .unwrap();
    esme.recv(T).await.unwrap();
    let addr = proxy.admin_addr().unwrap();
    let metrics = tokio::task::spawn_blocking(move || smpp_proxy::admin::get(addr, "/metrics"))
        .await
        .unwrap()
        .unwrap();
    let served: BTreeSet<String> = metrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_owned)
        .collect();
    let dashboard = std::fs::read_to_string(contrib("grafana/smpp-proxy.json")).unwrap();
    let parsed: serde_json::Value = serde_json::from_str(&dashboard).expect("the dashboard is JSON");
    assert_eq!(parsed["uid"], "smpp-proxy");
    let alerts = std::fs::read_to_string(contrib("prometheus/alerts.yml")).unwrap();
    for (what, text) in [("dashboard", &dashboard), ("alerts", &alerts)] {
        let named = names(text);
        assert!(named.len() > 5, "{what} names metrics");
        let missing: Vec<&String> = named.difference(&served).collect();
        assert!(
            missing.is_empty(),
            "{what} names metrics /metrics does not serve: {missing:?}"
        );
    }
    proxy.shutdown().await;
}

#[test]
fn the_container_demo_configurations_are_valid() {
    // The proxy's: as the container reads it, its files where this checkout has them.
    let dir = contrib("container");
    let text = std::fs::read_to_string(dir.join("smpp-proxy.toml"))
        .unwrap()
        .replace("/etc/smpp-proxy/", &format!("{}/", dir.display()));
    let config = smpp_proxy::config::Config::from_toml(&text).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(config.upstreams.len(), 2);
    assert!(config.admin_access.token.is_some());
    // Prometheus's (its rule file is mounted from contrib/prometheus at run time).
    let out = std::process::Command::new(promtool())
        .args(["check", "config", "--syntax-only", "prometheus/prometheus.yml"])
        .current_dir(&dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
}
