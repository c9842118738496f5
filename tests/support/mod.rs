//! What the integration tests share: the fixtures of `pdu-fixtures/`, simulators and a proxy on
//! 127.0.0.1:0, load from the usual client, the binary run as a user runs it, and waiting on a
//! condition with a deadline.
#![allow(dead_code)]

use serde_json::Value;
use std::path::{Path, PathBuf};

/// One fixture file.
pub struct Fixture {
    pub path: PathBuf,
    pub json: Value,
}

impl Fixture {
    pub fn name(&self) -> &str {
        self.json["name"].as_str().unwrap()
    }
    pub fn bytes(&self) -> Vec<u8> {
        smpp_proxy::hex::decode(self.json["hex"].as_str().unwrap()).unwrap()
    }
    pub fn valid(&self) -> bool {
        self.json["valid"].as_bool().unwrap()
    }
}

/// Every fixture under `pdu-fixtures/<dir>/`, sorted by name.
pub fn fixtures(dir: &str) -> Vec<Fixture> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("pdu-fixtures").join(dir);
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&root)
        .unwrap_or_else(|e| panic!("{}: {e}", root.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    paths.sort();
    paths
        .into_iter()
        .map(|path| {
            let json = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
            Fixture { path, json }
        })
        .collect()
}

/// All fixtures: the public vectors and the project's own.
pub fn all_fixtures() -> Vec<Fixture> {
    let mut all = fixtures("public");
    all.extend(fixtures("own"));
    all
}

use smpp_proxy::bench::BenchConfig;
use smpp_proxy::config::Config;
use smpp_proxy::proxy::Proxy;
use smpp_proxy::sim::{self, SimConfig, SimHandle};
use std::time::Duration;

/// How long a test waits for what should happen promptly (a bind, an answer, a receipt): far
/// beyond what it takes on a loaded machine, so that only a real failure runs into it.
pub const T: Duration = Duration::from_secs(10);

/// A simulator that answers submits but sends no receipts.
pub fn quiet() -> SimConfig {
    SimConfig {
        receipts: false,
        ..SimConfig::default()
    }
}

/// Starts `n` simulators on 127.0.0.1:0 with `config`.
pub async fn start_sims(n: usize, config: SimConfig) -> Vec<SimHandle> {
    let mut sims = Vec::new();
    for _ in 0..n {
        sims.push(sim::start(config.clone()).await.unwrap());
    }
    sims
}

/// `n` simulators that answer submits but send no receipts.
pub async fn start_sims_without_receipts(n: usize) -> Vec<SimHandle> {
    start_sims(n, quiet()).await
}

/// A proxy config: listen on 127.0.0.1:0, one upstream per simulator (`smsc-0`, `smsc-1`, …),
/// `clients` as TOML `[[clients]]` blocks, and `extra` appended.
pub fn proxy_toml(sims: &[SimHandle], upstream_extra: &str, clients: &str, extra: &str) -> String {
    let mut text = String::from("node_id = \"t\"\n[listen]\nsmpp = \"127.0.0.1:0\"\n[store]\nbackend = \"memory\"\n");
    text.push_str(clients);
    for (n, s) in sims.iter().enumerate() {
        text.push_str(&format!(
            "\n[[upstreams]]\nname = \"smsc-{n}\"\naddress = \"{}\"\nsystem_id = \"proxy\"\npassword = \"pw\"\n{upstream_extra}\n",
            s.local_addr()
        ));
    }
    text.push_str(extra);
    text
}

/// The usual client block: `shop` / `secret`.
pub const SHOP: &str = "[[clients]]\nsystem_id = \"shop\"\npassword = \"secret\"\n";

/// Starts a proxy from TOML and waits until every upstream session is bound.
pub async fn start_proxy(toml: &str) -> Proxy {
    let config = Config::from_toml(toml).unwrap_or_else(|e| panic!("config: {e}\n{toml}"));
    let proxy = Proxy::start(config).await.unwrap();
    assert!(
        proxy.wait_bound(Duration::from_secs(10)).await,
        "upstreams did not bind"
    );
    proxy
}

/// What the proxy's `/status` shows of client account `system_id` now.
pub fn client(proxy: &Proxy, system_id: &str) -> smpp_proxy::admin::ClientStatus {
    proxy
        .snapshot()
        .clients
        .into_iter()
        .find(|c| c.system_id == system_id)
        .unwrap_or_else(|| panic!("no client {system_id}"))
}

/// Polls `cond` until it holds or `within` passes.
pub async fn wait_until(within: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + within;
    while tokio::time::Instant::now() < deadline {
        if cond() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    cond()
}

/// Load from `shop` / `secret` over two binds through `proxy`; the test says how much
/// (`count` or `duration`), how fast and with what window.
pub fn shop_load(proxy: &Proxy) -> BenchConfig {
    BenchConfig {
        connect: proxy.local_addr(),
        system_id: "shop".into(),
        password: "secret".into(),
        binds: 2,
        ..BenchConfig::default()
    }
}

/// Runs the `smpp-proxy` binary with `args` (and `stdin`) to its end: exit code, stdout, stderr.
pub fn run_cli(args: &[&str], stdin: Option<&str>) -> (i32, String, String) {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let mut child = Command::new(env!("CARGO_BIN_EXE_smpp-proxy"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    if let Some(text) = stdin {
        input.write_all(text.as_bytes()).unwrap();
    }
    drop(input);
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A transceiver bind of `shop` / `secret` to the proxy.
pub async fn shop(proxy: &Proxy) -> smpp_proxy::esme::Esme {
    use smpp_proxy::pdu::CommandId;
    smpp_proxy::esme::Esme::bind(proxy.local_addr(), CommandId::BIND_TRANSCEIVER, "shop", "secret")
        .await
        .unwrap()
}

/// Submits one message asking for a receipt on transceiver `esme`: the id the proxy gave and
/// the receipt that came back (acknowledged).
pub async fn submit_for_receipt(esme: &mut smpp_proxy::esme::Esme) -> (String, smpp_proxy::receipt::Receipt) {
    let (id, pdu) = submit_and_read_receipt(esme).await;
    esme.ack(&pdu).await.unwrap();
    (id, smpp_proxy::receipt::Receipt::from_pdu(&pdu).unwrap())
}

/// Submits one message asking for a receipt on transceiver `esme`: the id it was given, then
/// its receipt, read and not answered. Anything else, or the receipt first (a receipt never
/// comes before its message's answer), fails the test.
pub async fn submit_and_read_receipt(esme: &mut smpp_proxy::esme::Esme) -> (String, smpp_proxy::pdu::Pdu) {
    use smpp_proxy::pdu::CommandId;
    esme.send(smpp_proxy::esme::submit_sm("4477", "447700900123", b"hello", true))
        .await
        .unwrap();
    let answer = esme.recv(Duration::from_secs(10)).await.unwrap();
    assert_eq!(
        answer.command_id(),
        CommandId::SUBMIT_SM_RESP,
        "the answer first: {answer:?}"
    );
    let id = answer.message_id().unwrap().as_str().unwrap().to_owned();
    let receipt = esme.recv(Duration::from_secs(10)).await.unwrap();
    assert_eq!(
        receipt.command_id(),
        CommandId::DELIVER_SM,
        "then the receipt: {receipt:?}"
    );
    assert_eq!(receipt_id(&receipt), id, "the receipt of this message, not another");
    (id, receipt)
}

pub mod redis;

/// `toml` with its store on the Redis at `url` (for a cluster: `redis_cluster = true`), and
/// this node's `node_id`. Heartbeats every 200 ms (a node gone counts as gone after a second)
/// and polls every 250 ms, so that the tests see a cluster react in test time.
pub fn on_redis(toml: &str, url: &str, cluster: bool, node_id: &str) -> String {
    let mut text = toml
        .replace(
            "backend = \"memory\"",
            &format!("backend = \"redis\"\nurl = \"{url}\"\nredis_cluster = {cluster}"),
        )
        .replace("node_id = \"t\"", &format!("node_id = \"{node_id}\""));
    text.push_str("\n[cluster]\nheartbeat = \"200ms\"\npoll = \"250ms\"\n");
    text
}

/// Two nodes, `a` and `b`, of `toml` on the Redis at `url` (see [`on_redis`]).
pub async fn two_nodes(toml: &str, url: &str) -> (Proxy, Proxy) {
    let a = start_proxy(&on_redis(toml, url, false, "a")).await;
    let b = start_proxy(&on_redis(toml, url, false, "b")).await;
    (a, b)
}

/// A bind of `shop` / `secret` to `addr` as `kind` (bind_transmitter, _receiver, _transceiver).
pub async fn bind_shop(addr: std::net::SocketAddr, kind: smpp_proxy::pdu::CommandId) -> smpp_proxy::esme::Esme {
    smpp_proxy::esme::Esme::bind(addr, kind, "shop", "secret")
        .await
        .unwrap_or_else(|e| panic!("shop did not bind to {addr}: {e}"))
}

/// Submits `n` messages to `destination` (asking for receipts or not), `window` at a time;
/// every submit_sm_resp, in the order they came.
pub async fn submit_window(
    esme: &mut smpp_proxy::esme::Esme,
    n: usize,
    window: usize,
    destination: &str,
    receipt: bool,
) -> Vec<smpp_proxy::pdu::Pdu> {
    use smpp_proxy::esme::submit_sm;
    use smpp_proxy::pdu::CommandId;
    let mut answers = Vec::new();
    let mut sent = 0;
    while answers.len() < n {
        while sent < n && sent - answers.len() < window {
            esme.feed(submit_sm("4477", destination, format!("m{sent}").as_bytes(), receipt))
                .await
                .unwrap();
            sent += 1;
        }
        esme.flush().await.unwrap();
        let resp = esme.recv(T).await.unwrap();
        assert_eq!(resp.command_id(), CommandId::SUBMIT_SM_RESP);
        answers.push(resp);
    }
    answers
}

/// Submits `n` messages asking for receipts, `window` at a time; returns the ids given.
pub async fn submit_all(esme: &mut smpp_proxy::esme::Esme, n: usize, window: usize) -> Vec<String> {
    use smpp_proxy::pdu::CommandStatus;
    submit_window(esme, n, window, "447700900123", true)
        .await
        .into_iter()
        .map(|resp| {
            assert_eq!(resp.command_status, CommandStatus::ESME_ROK);
            resp.message_id().unwrap().as_str().unwrap().to_owned()
        })
        .collect()
}

/// The id in a receipt's text.
pub fn receipt_id(pdu: &smpp_proxy::pdu::Pdu) -> String {
    let receipt = smpp_proxy::receipt::Receipt::from_pdu(pdu).expect("a receipt");
    String::from_utf8(receipt.text_id().unwrap().to_vec()).unwrap()
}

/// A proxy running as its own process (`smpp-proxy run`), killed with SIGKILL when dropped.
pub struct Proc(pub std::process::Child);

impl Proc {
    /// SIGKILL: no goodbye to anyone.
    pub fn kill(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Runs the binary on `config`.
pub fn spawn_proxy(config: &std::path::Path) -> Proc {
    use std::process::{Command, Stdio};
    Proc(
        Command::new(env!("CARGO_BIN_EXE_smpp-proxy"))
            .args(["run", "--config", config.to_str().unwrap()])
            .env("RUST_LOG", "warn")
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    )
}

/// Binds `shop` to `addr` as `kind` as soon as a proxy answers there (15 s at most).
pub async fn bind_when_up(addr: std::net::SocketAddr, kind: smpp_proxy::pdu::CommandId) -> smpp_proxy::esme::Esme {
    use smpp_proxy::esme::Esme;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        match Esme::bind(addr, kind, "shop", "secret").await {
            Ok(e) => return e,
            Err(e) if tokio::time::Instant::now() > deadline => panic!("proxy not up: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

/// A port of 127.0.0.1 free now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// query_sm, replace_sm and cancel_sm of message `id` through `esme`: each answered OK, the
/// query with the client's id.
pub async fn query_replace_cancel(esme: &mut smpp_proxy::esme::Esme, id: &str) {
    use smpp_proxy::pdu::body::{CancelSm, QuerySm, ReplaceSm};
    use smpp_proxy::pdu::{Body, COctetString, CommandId, CommandStatus, Pdu};
    let query = QuerySm {
        message_id: COctetString::from_text(id),
        source_addr_ton: 1,
        source_addr_npi: 1,
        source_addr: COctetString::from_text("1"),
    };
    esme.send(Pdu::new(Body::QuerySm(query))).await.unwrap();
    let resp = esme.recv(T).await.unwrap();
    assert_eq!(
        (resp.command_id(), resp.command_status),
        (CommandId::QUERY_SM_RESP, CommandStatus::ESME_ROK)
    );
    assert_eq!(
        resp.message_id().unwrap().as_str(),
        Some(id),
        "the answer carries the client's id"
    );
    let replace = ReplaceSm {
        message_id: COctetString::from_text(id),
        short_message: bytes::Bytes::from_static(b"new"),
        ..ReplaceSm::default()
    };
    esme.send(Pdu::new(Body::ReplaceSm(replace))).await.unwrap();
    let resp = esme.recv(T).await.unwrap();
    assert_eq!(
        (resp.command_id(), resp.command_status),
        (CommandId::REPLACE_SM_RESP, CommandStatus::ESME_ROK)
    );
    let cancel = CancelSm {
        message_id: COctetString::from_text(id),
        ..CancelSm::default()
    };
    esme.send(Pdu::new(Body::CancelSm(cancel))).await.unwrap();
    let resp = esme.recv(T).await.unwrap();
    assert_eq!(
        (resp.command_id(), resp.command_status),
        (CommandId::CANCEL_SM_RESP, CommandStatus::ESME_ROK)
    );
}
