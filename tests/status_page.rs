//! The status page at the admin endpoint's `/`, in headless Chromium (Debian's, driven by
//! playwright-core): it shows the upstreams of a running proxy, updates by itself when one goes
//! down, acts with the token (drain), shows client names only with it, charts the last minutes,
//! and logs no script error. `SMPP_PROXY_SCREENSHOT=docs/status-page.png` keeps its screenshot.

mod support;

use serde_json::Value;
use smpp_proxy::pdu::CommandId;
use smpp_proxy::routing::UpstreamState;
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;
use support::*;

const TOKEN: &str = "0123456789abcdef0123";

/// The page driver (tests/interop/status_page.js), one step at a time.
struct Browser {
    child: Child,
    stdin: ChildStdin,
    answers: mpsc::Receiver<String>,
}

impl Browser {
    fn open(url: &str, screenshot: &std::path::Path) -> Browser {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        assert!(
            root.join("tests/interop/node_modules/playwright-core").exists()
                && std::path::Path::new("/usr/bin/chromium").exists(),
            "playwright-core or chromium missing: run scripts/test.sh, which installs them"
        );
        let mut child = Command::new("node")
            .arg(root.join("tests/interop/status_page.js"))
            .args([url, TOKEN, &screenshot.display().to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        let (tx, answers) = mpsc::channel();
        std::thread::spawn(move || {
            for line in stdout.lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        Browser { child, stdin, answers }
    }

    /// Sends a step and waits (off the runtime's threads) for its answer.
    async fn step(&mut self, step: &str) -> Value {
        writeln!(self.stdin, "{step}").unwrap();
        let line = tokio::task::block_in_place(|| self.answers.recv_timeout(Duration::from_secs(60)))
            .unwrap_or_else(|e| panic!("{step}: no answer from the browser ({e})"));
        let answer: Value = serde_json::from_str(&line).unwrap();
        assert!(answer.get("failed").is_none(), "{step}: {answer}");
        answer
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_status_page_shows_the_proxy_live_and_acts_with_the_token() {
    let sims = start_sims_without_receipts(2).await;
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("admin-token");
    std::fs::write(&token_file, format!("{TOKEN}\n")).unwrap();
    let toml = proxy_toml(
        &sims,
        "",
        SHOP,
        &format!("[admin]\ntoken_file = \"{}\"\n", token_file.display()),
    )
    .replace("[listen]\n", "[listen]\nadmin = \"127.0.0.1:0\"\n");
    let proxy = start_proxy(&toml).await;
    let mut shop = bind_shop(proxy.local_addr(), CommandId::BIND_TRANSMITTER).await;
    submit_all(&mut shop, 200, 10).await;

    let shot = dir.path().join("status-page.png");
    let url = format!("http://{}/", proxy.admin_addr().unwrap());
    let mut page = Browser::open(&url, &shot);
    let shown = page.step("wait 2").await;
    assert_eq!(shown["upstreams"]["smsc-0"], "available", "{shown}");
    assert_eq!(shown["upstreams"]["smsc-1"], "available", "{shown}");

    // One SMSC goes away: the page shows it without being reloaded.
    let mut sims = sims;
    sims.pop().unwrap().stop().await;
    assert_eq!(page.step("state smsc-1 unbound").await["state"], "unbound");

    // Without the token the page names no client; with it, it does, and its buttons act.
    page.step("token").await;
    let clients = page.step("clients").await;
    assert_eq!(clients["clients"], serde_json::json!(["shop"]));
    assert_eq!(page.step("click smsc-0 drain").await["status"], 200);
    assert_eq!(page.step("state smsc-0 draining").await["state"], "draining");
    let status = proxy.snapshot();
    assert_eq!(status.upstreams[0].figures.state, UpstreamState::Draining);
    assert_eq!(page.step("click smsc-0 enable").await["status"], 200);
    page.step("state smsc-0 available").await;

    // More traffic, so that the charts have something to draw, then the picture.
    submit_all(&mut shop, 200, 10).await;
    page.step("shot").await;
    let png = std::fs::read(&shot).unwrap();
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 10_000,
        "a screenshot of the page"
    );
    if let Ok(keep) = std::env::var("SMPP_PROXY_SCREENSHOT") {
        std::fs::copy(&shot, keep).unwrap();
    }
    let quit = page.step("quit").await;
    assert_eq!(quit["errors"], serde_json::json!([]), "the page logged errors");
    proxy.shutdown().await;
}
