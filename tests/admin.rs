//! The admin endpoint: /metrics and /status show what happened on the wire, and
//! `smpp-proxy status` prints it.

mod support;

use smpp_proxy::admin::{self, Snapshot};
use smpp_proxy::esme::submit_sm;
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
    let mut tx = bind_shop(proxy.local_addr(), CommandId::BIND_TRANSMITTER).await;
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
    assert!(metrics.contains("# TYPE smpp_proxy_receipts_matched counter"));

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

/// Sends raw bytes as a request (then closes its side) and reads the whole answer.
fn raw_request(addr: std::net::SocketAddr, bytes: &[u8]) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(T)).unwrap();
    let _ = s.write_all(bytes);
    let _ = s.shutdown(std::net::Shutdown::Write);
    let mut answer = Vec::new();
    let _ = s.read_to_end(&mut answer);
    String::from_utf8_lossy(&answer).into_owned()
}

const TOKEN: &str = "0123456789abcdef0123";

async fn proxy_with_token(extra: &str) -> (smpp_proxy::proxy::Proxy, tempfile::TempDir) {
    let tmp = tempfile::tempdir().unwrap();
    let token_file = tmp.path().join("admin-token");
    std::fs::write(&token_file, format!("{TOKEN}\n")).unwrap();
    let sims = start_sims(1, quiet()).await;
    let toml = proxy_toml(
        &sims,
        "",
        SHOP,
        &format!("[admin]\ntoken_file = \"{}\"\n{extra}", token_file.display()),
    )
    .replace("[listen]\n", "[listen]\nadmin = \"127.0.0.1:0\"\n");
    (start_proxy(&toml).await, tmp)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_token_actions_need_it_and_names_are_hidden_without_it() {
    let (proxy, _tmp) = proxy_with_token("").await;
    let addr = proxy.admin_addr().unwrap();
    let ask = move |method: &'static str, path: &'static str, token: Option<&'static str>| {
        tokio::task::spawn_blocking(move || admin::request(addr, method, path, token))
    };
    // Without the token: figures, but no account names.
    let status: Snapshot = serde_json::from_str(&ask("GET", "/status", None).await.unwrap().unwrap()).unwrap();
    assert!(status.clients.is_empty() && !status.upstreams.is_empty());
    let metrics = ask("GET", "/metrics?fresh=1", None).await.unwrap().unwrap();
    assert!(metrics.contains("smpp_proxy_upstream_sessions_bound") && !metrics.contains("client=\"shop\""));
    // With it: everything.
    let status: Snapshot = serde_json::from_str(&ask("GET", "/status", Some(TOKEN)).await.unwrap().unwrap()).unwrap();
    assert_eq!(status.clients[0].system_id, "shop");
    // Actions: 401 without the token (with a challenge), 403 with a wrong one.
    let raw = tokio::task::spawn_blocking(move || raw_request(addr, b"POST /groups/default/failback HTTP/1.1\r\n\r\n"))
        .await
        .unwrap();
    assert!(
        raw.starts_with("HTTP/1.1 401") && raw.to_ascii_lowercase().contains("www-authenticate: bearer"),
        "{raw}"
    );
    let e = ask("POST", "/groups/default/failback", Some("0123456789abcdef0124"))
        .await
        .unwrap()
        .unwrap_err();
    assert!(e.to_string().contains("403"), "{e}");
    // With it, the action is taken (409: a load-balancing group has nothing to fail back).
    let e = ask("POST", "/groups/default/failback", Some(TOKEN))
        .await
        .unwrap()
        .unwrap_err();
    assert!(e.to_string().contains("409"), "{e}");
    // The empty group name that used to panic a task: 404.
    for path in ["/groups/failback", "/groups//failback", "/groups/"] {
        let e = ask("POST", path, Some(TOKEN)).await.unwrap().unwrap_err();
        assert!(e.to_string().contains("404"), "{path}: {e}");
    }
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_endpoint_caps_its_connections() {
    let (proxy, _tmp) = proxy_with_token("max_connections = 2\n").await;
    let addr = proxy.admin_addr().unwrap();
    // Two connections that send nothing hold both places; a third is closed at once.
    let idle: Vec<std::net::TcpStream> = (0..2).map(|_| std::net::TcpStream::connect(addr).unwrap()).collect();
    let third = tokio::task::spawn_blocking(move || raw_request(addr, b"GET /status HTTP/1.1\r\n\r\n"));
    assert_eq!(third.await.unwrap(), "", "answered beyond max_connections");
    drop(idle);
    let mut answered = false;
    let deadline = tokio::time::Instant::now() + T;
    while !answered && tokio::time::Instant::now() < deadline {
        answered = tokio::task::spawn_blocking(move || admin::get(addr, "/status"))
            .await
            .unwrap()
            .is_ok();
    }
    assert!(answered, "no answer once the idle connections went");
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_request_line_makes_the_admin_endpoint_fail() {
    use proptest::prelude::*;
    use proptest::test_runner::{Config, TestRunner};
    let (proxy, _tmp) = proxy_with_token("").await;
    let addr = proxy.admin_addr().unwrap();
    let method = prop::sample::select(vec!["GET", "POST", "HEAD", "PUT", "", "G\u{0}T", "POST "]);
    let path = prop_oneof![
        prop::sample::select(vec![
            "/groups/failback",
            "/groups//failback",
            "/groups/",
            "/groups/default/failback",
            "/groups/default/failback?x",
            "/status?",
            "?",
            "/metrics#",
            "",
        ])
        .prop_map(str::to_owned),
        "[/a-z?=%.]{0,40}",
    ];
    let header = prop_oneof![
        Just(String::new()),
        Just(format!("Authorization: Bearer {TOKEN}\r\n")),
        Just("Authorization: Bearer\r\n".to_owned()),
        Just("authorization:bearer  \r\n".to_owned()),
        Just("Authorization: Basic x\r\n".to_owned()),
        "[ -~]{0,60}\r\n",
    ];
    let structured = (method, path, header).prop_map(|(m, p, h)| format!("{m} {p} HTTP/1.1\r\n{h}\r\n").into_bytes());
    let anything = prop::collection::vec(any::<u8>(), 0..600);
    let request = prop_oneof![structured, anything];
    let mut runner = TestRunner::new(Config {
        cases: 300,
        failure_persistence: None,
        ..Config::default()
    });
    let outcome = tokio::task::spawn_blocking(move || {
        runner.run(&request, |bytes| {
            let answer = raw_request(addr, &bytes);
            // A request head that never ended (the client closed first) gets no answer: there
            // was no request. Anything else gets an HTTP one, a 400 for what is not HTTP.
            let ended = bytes.windows(2).any(|w| w == b"\n\n") || bytes.windows(4).any(|w| w == b"\r\n\r\n");
            prop_assert!(
                answer.starts_with("HTTP/1.1 ") || (!ended && answer.is_empty()),
                "no answer to {:?}: {answer:?}",
                String::from_utf8_lossy(&bytes)
            );
            Ok(())
        })
    })
    .await
    .unwrap();
    outcome.unwrap();
    // And it still serves.
    assert!(tokio::task::spawn_blocking(move || admin::get(addr, "/status"))
        .await
        .unwrap()
        .is_ok());
    proxy.shutdown().await;
}
