//! Operating a running proxy through the CLI verbs (and so its admin API): drain, pause and
//! enable an upstream, unbind a client, reload; the token enforced; errors as JSON with the
//! status that says why.

mod support;

use smpp_proxy::admin::{self, Snapshot};
use smpp_proxy::config::Config;
use smpp_proxy::pdu::CommandId;
use smpp_proxy::proxy::Proxy;
use smpp_proxy::routing::UpstreamState;
use smpp_proxy::sim::SimHandle;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use support::*;

const TOKEN: &str = "0123456789abcdef0123";

/// A proxy run from a file in `dir`, with an admin endpoint that wants [`TOKEN`], over one
/// upstream per simulator; `extra` appended to the file.
async fn start(dir: &Path, sims: &[SimHandle], extra: &str) -> (Proxy, PathBuf) {
    let token_file = dir.join("admin-token");
    std::fs::write(&token_file, format!("{TOKEN}\n")).unwrap();
    let text = proxy_toml(
        sims,
        "",
        SHOP,
        &format!("[admin]\ntoken_file = \"{}\"\n{extra}", token_file.display()),
    )
    .replace("[listen]\n", "[listen]\nadmin = \"127.0.0.1:0\"\n");
    let path = dir.join("smpp-proxy.toml");
    std::fs::write(&path, text).unwrap();
    let proxy = Proxy::start(Config::load(&path).unwrap()).await.unwrap();
    assert!(proxy.wait_bound(T).await);
    (proxy, path)
}

/// `smpp-proxy ARGS --config FILE --admin ADDR`, off the runtime's threads.
async fn cli(proxy: &Proxy, config: &Path, args: &[&str]) -> (i32, String, String) {
    let mut args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    args.extend([
        "--config".into(),
        config.display().to_string(),
        "--admin".into(),
        proxy.admin_addr().unwrap().to_string(),
    ]);
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        run_cli(&args, None)
    })
    .await
    .unwrap()
}

fn state(proxy: &Proxy, upstream: &str) -> UpstreamState {
    let snapshot = proxy.snapshot();
    snapshot
        .upstreams
        .iter()
        .find(|u| u.figures.name == upstream)
        .map(|u| u.figures.state)
        .unwrap()
}

fn submits(sim: &SimHandle) -> u64 {
    sim.stats().submits.load(Ordering::Relaxed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_pause_and_enable_an_upstream_from_the_cli() {
    let sims = start_sims_without_receipts(2).await;
    let dir = tempfile::tempdir().unwrap();
    let (proxy, config) = start(dir.path(), &sims, "").await;
    let mut shop = bind_shop(proxy.local_addr(), CommandId::BIND_TRANSMITTER).await;

    // Drain: bound still, but every new message goes to the other one.
    let (code, out, err) = cli(&proxy, &config, &["upstream", "drain", "smsc-1"]).await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.trim(), "smsc-1: draining");
    assert_eq!(state(&proxy, "smsc-1"), UpstreamState::Draining);
    let before = submits(&sims[1]);
    assert_eq!(submit_all(&mut shop, 50, 5).await.len(), 50);
    assert_eq!(submits(&sims[1]), before, "a drained upstream takes nothing new");
    assert_eq!(sims[1].stats().bound_now.load(Ordering::Relaxed), 1, "and stays bound");
    // The same again: a conflict, said as such.
    let (code, _, err) = cli(&proxy, &config, &["upstream", "drain", "smsc-1"]).await;
    assert_eq!(code, 1);
    assert!(err.contains("409") && err.contains("draining already"), "{err}");

    // The mode outlives a reload that keeps the upstream.
    let (code, out, err) = cli(&proxy, &config, &["reload"]).await;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("upstreams_changed"), "the report: {out}");
    assert_eq!(state(&proxy, "smsc-1"), UpstreamState::Draining);

    // Pause: unbound politely, and stays so.
    let (code, _, err) = cli(&proxy, &config, &["upstream", "pause", "smsc-1"]).await;
    assert_eq!(code, 0, "{err}");
    assert!(wait_until(T, || sims[1].stats().unbinds.load(Ordering::Relaxed) == 1).await);
    assert!(wait_until(T, || sims[1].stats().bound_now.load(Ordering::Relaxed) == 0).await);
    assert_eq!(state(&proxy, "smsc-1"), UpstreamState::Paused);
    assert_eq!(submit_all(&mut shop, 20, 5).await.len(), 20);
    assert_eq!(submits(&sims[1]), before);

    // Enable: bound again at once, and back in rotation.
    let (code, out, err) = cli(&proxy, &config, &["upstream", "enable", "smsc-1"]).await;
    assert_eq!((code, out.trim()), (0, "smsc-1: enabled"), "{err}");
    assert!(wait_until(T, || sims[1].stats().bound_now.load(Ordering::Relaxed) == 1).await);
    assert!(wait_until(T, || state(&proxy, "smsc-1").in_rotation()).await);
    let sent = async {
        while submits(&sims[1]) == before {
            submit_all(&mut shop, 10, 5).await;
        }
    };
    assert!(
        tokio::time::timeout(T, sent).await.is_ok(),
        "an enabled upstream takes traffic again"
    );

    // A name nothing has: 404, said.
    let (code, _, err) = cli(&proxy, &config, &["upstream", "drain", "nope"]).await;
    assert_eq!(code, 1);
    assert!(
        err.contains("404") && err.contains("no upstream is called \"nope\""),
        "{err}"
    );
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unbind_a_client_and_reload_from_the_cli() {
    let sims = start_sims_without_receipts(1).await;
    let dir = tempfile::tempdir().unwrap();
    let (proxy, config) = start(dir.path(), &sims, "").await;
    // Not bound: a conflict.
    let (code, _, err) = cli(&proxy, &config, &["client", "unbind", "shop"]).await;
    assert_eq!(code, 1);
    assert!(err.contains("409") && err.contains("not bound"), "{err}");
    let (code, _, err) = cli(&proxy, &config, &["client", "unbind", "nobody"]).await;
    assert!(code == 1 && err.contains("404"), "{err}");
    // Failback of a group that does not fail over: a conflict, said.
    let (code, _, err) = cli(&proxy, &config, &["failback", "--group", "default"]).await;
    assert!(
        code == 1 && err.contains("409") && err.contains("not a failover group"),
        "{err}"
    );

    let mut shop = bind_shop(proxy.local_addr(), CommandId::BIND_TRANSCEIVER).await;
    let (code, out, err) = cli(&proxy, &config, &["client", "unbind", "shop"]).await;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("shop: 1 bind(s) here unbinding"), "{out}");
    let unbind = shop.recv(T).await.unwrap();
    assert_eq!(unbind.command_id(), CommandId::UNBIND);
    // It may bind again.
    bind_shop(proxy.local_addr(), CommandId::BIND_TRANSMITTER).await;
    // The status page's history says so, but names the client only to the token's holder.
    let addr = proxy.admin_addr().unwrap();
    let history = |token: Option<&'static str>| {
        tokio::task::spawn_blocking(move || admin::request(addr, "GET", "/history", token).unwrap())
    };
    assert!(history(Some(TOKEN))
        .await
        .unwrap()
        .contains("client shop: unbound by the operator"));
    assert!(!history(None).await.unwrap().contains("shop"));

    // A broken file: refused, every problem said, the exit status says so.
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, format!("{text}\n[routing]\nbogus = 1\n")).unwrap();
    let (code, _, err) = cli(&proxy, &config, &["reload"]).await;
    assert_eq!(code, 1);
    assert!(err.contains("422") && err.contains("routing.bogus"), "{err}");
    assert_eq!(proxy.snapshot().config.reloads["failed"], 1);
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_wants_its_token_and_answers_in_json() {
    let sims = start_sims_without_receipts(1).await;
    let dir = tempfile::tempdir().unwrap();
    let (proxy, _config) = start(dir.path(), &sims, "").await;
    let addr = proxy.admin_addr().unwrap();
    let ask = move |method: &'static str, path: &'static str, token: Option<&'static str>| {
        tokio::task::spawn_blocking(move || admin::request(addr, method, path, token))
    };
    for path in ["/upstreams/smsc-0/drain", "/clients/shop/unbind", "/reload"] {
        let e = ask("POST", path, None).await.unwrap().unwrap_err().to_string();
        assert!(
            e.contains("401") && e.contains("a bearer token is needed"),
            "{path}: {e}"
        );
        let e = ask("POST", path, Some("wrong-token-wrong-token"))
            .await
            .unwrap()
            .unwrap_err()
            .to_string();
        assert!(e.contains("403") && e.contains("wrong token"), "{path}: {e}");
    }
    assert_eq!(state(&proxy, "smsc-0"), UpstreamState::Available, "nothing was done");
    // An unknown path, a wrong method (with Allow), a query string, HEAD.
    let e = ask("GET", "/nothing", None).await.unwrap().unwrap_err().to_string();
    assert!(e.contains("404") && e.contains("no such resource"), "{e}");
    let wrong =
        tokio::task::spawn_blocking(move || raw(addr, "GET /reload HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"))
            .await
            .unwrap();
    assert!(
        wrong.starts_with("HTTP/1.1 405") && wrong.to_ascii_lowercase().contains("allow: post"),
        "{wrong}"
    );
    let metrics = ask("GET", "/metrics?x=1", None).await.unwrap().unwrap();
    assert!(metrics.contains("smpp_proxy_config_reloads_total"), "{metrics}");
    let head =
        tokio::task::spawn_blocking(move || raw(addr, "HEAD /status HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"))
            .await
            .unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let status: Snapshot = serde_json::from_str(&ask("GET", "/status", Some(TOKEN)).await.unwrap().unwrap()).unwrap();
    assert_eq!(status.clients[0].system_id, "shop");
    // Another site's page cannot act, token or not (a browser says where a request comes from).
    let forged = tokio::task::spawn_blocking(move || {
        raw(
            addr,
            &format!("POST /upstreams/smsc-0/pause HTTP/1.1\r\nHost: {addr}\r\nOrigin: http://evil.example\r\nAuthorization: Bearer {TOKEN}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"),
        )
    })
    .await
    .unwrap();
    assert!(
        forged.starts_with("HTTP/1.1 403") && forged.contains("another site"),
        "{forged}"
    );
    assert_eq!(state(&proxy, "smsc-0"), UpstreamState::Available);
    let said = ask("POST", "/upstreams/smsc-0/drain", Some(TOKEN))
        .await
        .unwrap()
        .unwrap();
    let said: serde_json::Value = serde_json::from_str(&said).unwrap();
    assert_eq!(
        (said["mode"].as_str(), said["was"].as_str()),
        (Some("draining"), Some("enabled"))
    );
    proxy.shutdown().await;
}

/// Sends `request` as is; the whole answer.
fn raw(addr: std::net::SocketAddr, request: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(T)).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    let mut answer = Vec::new();
    let _ = s.read_to_end(&mut answer);
    String::from_utf8_lossy(&answer).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trace_a_message_and_keep_its_trail() {
    let sims = start_sims(
        1,
        smpp_proxy::sim::SimConfig {
            receipt_delay: std::time::Duration::from_millis(300),
            ..smpp_proxy::sim::SimConfig::default()
        },
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let trail = dir.path().join("messages.jsonl");
    let (proxy, config) = start(
        dir.path(),
        &sims,
        &format!("[log]\nmessages = \"{}\"\n", trail.display()),
    )
    .await;
    let mut rx = bind_shop(proxy.local_addr(), CommandId::BIND_RECEIVER).await;
    let mut tx = bind_shop(proxy.local_addr(), CommandId::BIND_TRANSMITTER).await;
    let id = submit_all(&mut tx, 1, 1).await.remove(0);

    // Waiting for its receipt: the store knows it.
    let (code, out, err) = cli(&proxy, &config, &["trace", &id]).await;
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains(&format!("message {id}: client shop, upstream smsc-0")),
        "{out}"
    );
    assert!(
        out.contains("447700900123") && out.contains("receipt: none yet"),
        "{out}"
    );
    // Its receipt delivered: remembered, with its state.
    let receipt = rx.recv(T).await.unwrap();
    assert_eq!(receipt.command_id(), CommandId::DELIVER_SM);
    rx.ack(&receipt).await.unwrap();
    let (code, out, _) = cli(&proxy, &config, &["trace", &id]).await;
    assert_eq!(code, 0);
    assert!(out.contains("receipt: DELIVRD (err 000)"), "{out}");
    let (code, _, err) = cli(&proxy, &config, &["trace", "no-such-id"]).await;
    assert!(code == 1 && err.contains("404"), "{err}");
    let addr = proxy.admin_addr().unwrap();
    let e = tokio::task::spawn_blocking(move || admin::get(addr, "/messages/x"))
        .await
        .unwrap()
        .unwrap_err();
    assert!(e.to_string().contains("401"), "the token is needed: {e}");

    // The trail: a submit line and a receipt line for it.
    let lines = |path: &Path| -> Vec<serde_json::Value> {
        std::fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    assert!(wait_until(T, || lines(&trail).len() == 2).await, "{:?}", lines(&trail));
    let events = lines(&trail);
    assert_eq!(
        (events[0]["event"].as_str(), events[1]["event"].as_str()),
        (Some("submit"), Some("receipt"))
    );
    assert!(events
        .iter()
        .all(|e| e["id"] == id.as_str() && e["upstream"] == "smsc-0"));
    assert_eq!(
        (events[0]["status"].as_str(), events[1]["state"].as_str()),
        (Some("ESME_ROK"), Some("DELIVRD"))
    );
    assert!(events[0]["latency_ms"].as_f64().is_some());
    // Rotated (moved away, reopened): new lines go to a new file, the old one keeps its own.
    let rotated = dir.path().join("messages.jsonl.1");
    std::fs::rename(&trail, &rotated).unwrap();
    proxy.reopen_trail();
    submit_all(&mut tx, 1, 1).await;
    assert!(
        wait_until(T, || !lines(&trail).is_empty()).await,
        "a new file after the reopen"
    );
    assert_eq!(lines(&rotated).len(), 2);
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_reloads_on_sighup_and_reopens_its_trail_on_sigusr1() {
    let sims = start_sims_without_receipts(2).await;
    let dir = tempfile::tempdir().unwrap();
    let (trail, config) = (dir.path().join("messages.jsonl"), dir.path().join("smpp-proxy.toml"));
    let port = free_port();
    let text = |sims: &[SimHandle]| {
        proxy_toml(sims, "", SHOP, &format!("[log]\nmessages = \"{}\"\n", trail.display()))
            .replace("127.0.0.1:0", &format!("127.0.0.1:{port}"))
    };
    std::fs::write(&config, text(&sims[..1])).unwrap();
    let proxy = spawn_proxy(&config);
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let mut shop = bind_when_up(addr, CommandId::BIND_TRANSMITTER).await;
    let kill = |signal: &str| {
        let sent = std::process::Command::new("kill")
            .args([signal, &proxy.0.id().to_string()])
            .status()
            .unwrap();
        assert!(sent.success());
    };
    let lines = |path: &Path| std::fs::read_to_string(path).map_or(0, |t| t.lines().count());
    submit_all(&mut shop, 5, 5).await;
    assert!(wait_until(T, || lines(&trail) == 5).await, "{}", lines(&trail));
    // logrotate: the file moved, then SIGUSR1.
    let rotated = dir.path().join("messages.jsonl.1");
    std::fs::rename(&trail, &rotated).unwrap();
    kill("-USR1");
    let reopened = async {
        // The signal is handled while traffic flows: submit until a line lands in a new file.
        while lines(&trail) == 0 {
            submit_all(&mut shop, 1, 1).await;
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    };
    assert!(
        tokio::time::timeout(T, reopened).await.is_ok(),
        "a new file after SIGUSR1"
    );
    assert!(lines(&rotated) >= 5);
    // SIGHUP: a second upstream from the file, the first one's bind untouched.
    std::fs::write(&config, text(&sims)).unwrap();
    kill("-HUP");
    assert!(wait_until(T, || sims[1].stats().binds.load(Ordering::Relaxed) == 1).await);
    assert_eq!(sims[0].stats().binds.load(Ordering::Relaxed), 1);
    assert_eq!(sims[0].stats().unbinds.load(Ordering::Relaxed), 0);
}
