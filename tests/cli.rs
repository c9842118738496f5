//! `smpp-proxy pdu decode|encode` as a user runs it: every fixture through the real binary.

mod support;

use std::io::Write;
use std::process::{Command, Stdio};

fn smpp_proxy(args: &[&str], stdin: Option<&str>) -> (i32, String, String) {
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
        out.status.code().unwrap(),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

#[test]
fn decode_then_encode_gives_back_every_valid_fixture() {
    for f in support::all_fixtures().iter().filter(|f| f.valid()) {
        let hex = f.json["hex"].as_str().unwrap();
        let (code, json, err) = smpp_proxy(&["pdu", "decode", hex], None);
        assert_eq!(code, 0, "{}: {err}", f.name());
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(v["command"], f.json["expect"]["command"], "{}", f.name());
        assert_eq!(
            v["receipt"].is_object(),
            f.json["expect"]["receipt"].is_object(),
            "{}",
            f.name()
        );
        let (code, out, err) = smpp_proxy(&["pdu", "encode"], Some(&json));
        assert_eq!(code, 0, "{}: {err}", f.name());
        assert_eq!(out.trim(), hex, "{}", f.name());
    }
}

#[test]
fn malformed_input_exits_1_with_one_line_naming_the_byte() {
    for f in support::all_fixtures().iter().filter(|f| !f.valid()) {
        let (code, out, err) = smpp_proxy(&["pdu", "decode", f.json["hex"].as_str().unwrap()], None);
        assert_eq!(code, 1, "{}", f.name());
        assert!(out.is_empty(), "{}: {out}", f.name());
        assert_eq!(err.lines().count(), 1, "{}: {err}", f.name());
        assert!(err.contains("at byte"), "{}: {err}", f.name());
    }
    let (code, _, err) = smpp_proxy(&["pdu", "decode", "00000010000000150000000000000001ff"], None);
    assert_eq!(code, 1);
    assert!(
        err.contains("1 octets after the PDU") && err.contains("at byte 16"),
        "{err}"
    );
    let (code, _, err) = smpp_proxy(&["pdu", "decode", "xyz"], None);
    assert_eq!((code, err.lines().count()), (1, 1), "{err}");
}

#[test]
fn decode_shows_receipt_and_reads_stdin() {
    // The cloudhopper capture: decimal id in the text, hex id in the TLV.
    let f = support::fixtures("public")
        .into_iter()
        .find(|f| f.name() == "ch_deliver_sm_receipt_dec_text_hex_tlv")
        .unwrap();
    let (code, json, _) = smpp_proxy(&["pdu", "decode"], Some(f.json["hex"].as_str().unwrap()));
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["command"], "deliver_sm");
    assert_eq!(v["command_id"], 5);
    assert_eq!(v["status"], "ESME_ROK");
    assert_eq!(v["receipt"]["id"], "38601fa");
    assert_eq!(v["receipt"]["text_id"], "0059113978");
    assert_eq!(v["receipt"]["state"], "DELIVRD");
    assert_eq!(v["receipt"]["submit_date_iso"], "2010-02-10T17:30");
    assert_eq!(
        v["body"]["short_message_text"].as_str().unwrap().get(..13),
        Some("id:0059113978")
    );
    assert_eq!(v["tlvs"][2]["name"], "receipted_message_id");
}

#[test]
fn encode_lists_every_problem_with_its_key() {
    let json = r#"{"command": "submit_sm", "sequence_number": 1, "body": {"service_type": "", "source_addr_ton": 999,
        "colour": "red"}, "tlvs": [{"tag": "0xzz", "value_hex": "00"}]}"#;
    let (code, out, err) = smpp_proxy(&["pdu", "encode"], Some(json));
    assert_eq!(code, 1);
    assert!(out.is_empty());
    for key in [
        "body.source_addr_ton",
        "body.colour",
        "body.destination_addr: missing",
        "tlvs[0].tag",
    ] {
        assert!(err.contains(key), "{key} not in {err}");
    }
}

/// `smpp-proxy run` as an operator starts it: serves clients, and on SIGTERM unbinds them and exits 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_serves_and_stops_cleanly_on_sigterm() {
    use smpp_proxy::esme::{submit_sm, Esme};
    use smpp_proxy::pdu::{CommandId, CommandStatus};
    let sim = smpp_proxy::sim::start(Default::default()).await.unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = std::env::temp_dir().join(format!("smpp-proxy-run-{}.toml", std::process::id()));
    std::fs::write(
        &config,
        format!(
            "node_id = \"t\"\n[listen]\nsmpp = \"127.0.0.1:{port}\"\n[store]\nbackend = \"memory\"\n[[clients]]\nsystem_id = \"shop\"\npassword = \"secret\"\n\
             [[upstreams]]\nname = \"sim\"\naddress = \"{}\"\nsystem_id = \"p\"\npassword = \"p\"\n",
            sim.local_addr()
        ),
    )
    .unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_smpp-proxy"))
        .args(["run", "--config", config.to_str().unwrap(), "--log-format", "json"])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let mut esme = loop {
        match Esme::bind(addr, CommandId::BIND_TRANSCEIVER, "shop", "secret").await {
            Ok(e) => break e,
            Err(_) if std::time::Instant::now() < deadline => {
                tokio::time::sleep(std::time::Duration::from_millis(50)).await
            }
            Err(e) => panic!("proxy not up: {e}"),
        }
    };
    // Wait until the upstream is bound, then a submit goes through.
    let answered = loop {
        esme.send(submit_sm("1", "2", b"x", false)).await.unwrap();
        let status = esme
            .recv(std::time::Duration::from_secs(5))
            .await
            .unwrap()
            .command_status;
        if status.is_ok() || std::time::Instant::now() > deadline {
            break status;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert_eq!(answered, CommandStatus::ESME_ROK);
    assert!(Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap()
        .success());
    let unbind = esme.recv(std::time::Duration::from_secs(10)).await.unwrap();
    assert_eq!(unbind.command_id(), CommandId::UNBIND);
    esme.ack(&unbind).await.unwrap();
    let status = tokio::task::spawn_blocking(move || child.wait().unwrap())
        .await
        .unwrap();
    assert!(status.success(), "{status}");
    let _ = std::fs::remove_file(config);
}

#[test]
fn shipped_configs_pass_check_and_a_bad_one_lists_every_problem() {
    for file in ["config/smpp-proxy.toml", "config/demo.toml"] {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(file);
        let (code, out, err) = smpp_proxy(&["check", "--config", path.to_str().unwrap()], None);
        assert_eq!(code, 0, "{file}: {err}");
        assert!(out.contains(": ok ("), "{out}");
    }
    let bad = std::env::temp_dir().join(format!("smpp-proxy-bad-{}.toml", std::process::id()));
    std::fs::write(
        &bad,
        "node_id = \"a\"\ncolour = 1\n[listen]\nsmpp = \"nowhere\"\n[[clients]]\nsystem_id = \"s\"\npassword = \"p\"\nwindow = 0\n",
    )
    .unwrap();
    let (code, _, err) = smpp_proxy(&["check", "--config", bad.to_str().unwrap()], None);
    assert_eq!(code, 1);
    for key in [
        "colour: unknown key",
        "listen.smpp:",
        "clients[0].window:",
        "upstreams:",
    ] {
        assert!(err.contains(key), "{key} missing in {err}");
    }
    let _ = std::fs::remove_file(bad);
}
