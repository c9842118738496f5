//! Interop with third-party SMPP software: python-smpplib and node-smpp as clients of the
//! proxy, and node-smpp as an upstream SMSC behind it. `scripts/test.sh` installs them
//! (`.venv/` and `tests/interop/node_modules/`); without them these tests fail and say so.

mod support;

use smpp_proxy::bench::{self, BenchConfig};
use smpp_proxy::sim::SimConfig;
use std::collections::HashSet;
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;
use support::*;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn python() -> PathBuf {
    let p = root().join(".venv/bin/python");
    assert!(
        p.exists(),
        "{} missing: run scripts/test.sh, which installs the interop clients",
        p.display()
    );
    p
}

fn node_ready() {
    let m = root().join("tests/interop/node_modules/smpp");
    assert!(
        m.exists(),
        "{} missing: run scripts/test.sh, which installs the interop clients",
        m.display()
    );
}

/// Runs a client script and checks its JSON: every submit answered with a proxy id, every
/// receipt carrying one of those ids in its TLV and in its text.
async fn run_client(program: PathBuf, script: &str, addr: std::net::SocketAddr, n: usize) {
    let script = root().join("tests/interop").join(script);
    let out = tokio::task::spawn_blocking(move || {
        Command::new(program)
            .arg(script)
            .args([
                addr.ip().to_string(),
                addr.port().to_string(),
                "shop".into(),
                "secret".into(),
                n.to_string(),
            ])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "client failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{e}: {stdout}"));
    let ids: HashSet<&str> = v["ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i.as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), n, "{stdout}");
    assert!(ids.iter().all(|id| id.len() == 16), "{stdout}");
    assert_eq!(v["errors"].as_array().unwrap().len(), 0, "{stdout}");
    let receipts = v["receipts"].as_array().unwrap();
    assert_eq!(receipts.len(), n, "{stdout}");
    let mut seen = HashSet::new();
    for r in receipts {
        let tlv = r["tlv"].as_str().unwrap();
        assert!(ids.contains(tlv), "receipt TLV id {tlv} is a proxy id");
        assert_eq!(r["text"].as_str(), Some(tlv), "text id rewritten too");
        assert!(seen.insert(tlv), "no duplicate receipt");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_smpplib_client_through_the_proxy() {
    let sims = start_sims(2, SimConfig::default()).await;
    let proxy = start_proxy(&proxy_toml(&sims, "", SHOP, "")).await;
    run_client(python(), "smpplib_client.py", proxy.local_addr(), 50).await;
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_smpp_client_through_the_proxy() {
    node_ready();
    let sims = start_sims(2, SimConfig::default()).await;
    let proxy = start_proxy(&proxy_toml(&sims, "", SHOP, "")).await;
    run_client(PathBuf::from("node"), "node_client.js", proxy.local_addr(), 50).await;
    proxy.shutdown().await;
}

struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_smpp_as_the_upstream_smsc() {
    node_ready();
    let mut child = Command::new("node")
        .arg(root().join("tests/interop/node_smsc.js"))
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let _guard = Child(child);
    let port: u16 = line
        .trim()
        .strip_prefix("listening ")
        .unwrap_or_else(|| panic!("node said {line:?}"))
        .parse()
        .unwrap();
    let toml = format!(
        "node_id = \"t\"\n[listen]\nsmpp = \"127.0.0.1:0\"\n[store]\nbackend = \"memory\"\n{SHOP}\n[[upstreams]]\nname = \"node\"\naddress = \"127.0.0.1:{port}\"\n\
         system_id = \"proxy\"\npassword = \"pw\"\nsessions = 2\n"
    );
    let proxy = start_proxy(&toml).await;
    let report = bench::run(BenchConfig {
        window: 10,
        count: Some(200),
        receipts: true,
        receipt_wait: Duration::from_secs(5),
        ..shop_load(&proxy)
    })
    .await
    .unwrap();
    assert_eq!(
        (report.acked, report.receipts_matched),
        (200, 200),
        "{}",
        report.summary()
    );
    assert_eq!((report.receipts_unmatched, report.receipts_duplicated), (0, 0));
    proxy.shutdown().await;
}
