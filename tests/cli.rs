//! `smpp-proxy pdu decode|encode` as a user runs it: every fixture through the real binary.

mod support;

use std::process::{Command, Stdio};
use support::run_cli;

#[test]
fn decode_then_encode_gives_back_every_valid_fixture() {
    for f in support::all_fixtures().iter().filter(|f| f.valid()) {
        let hex = f.json["hex"].as_str().unwrap();
        let (code, json, err) = run_cli(&["pdu", "decode", hex], None);
        assert_eq!(code, 0, "{}: {err}", f.name());
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(v["command"], f.json["expect"]["command"], "{}", f.name());
        assert_eq!(
            v["receipt"].is_object(),
            f.json["expect"]["receipt"].is_object(),
            "{}",
            f.name()
        );
        let (code, out, err) = run_cli(&["pdu", "encode"], Some(&json));
        assert_eq!(code, 0, "{}: {err}", f.name());
        assert_eq!(out.trim(), hex, "{}", f.name());
    }
}

#[test]
fn malformed_input_exits_1_with_one_line_naming_the_byte() {
    for f in support::all_fixtures().iter().filter(|f| !f.valid()) {
        let (code, out, err) = run_cli(&["pdu", "decode", f.json["hex"].as_str().unwrap()], None);
        assert_eq!(code, 1, "{}", f.name());
        assert!(out.is_empty(), "{}: {out}", f.name());
        assert_eq!(err.lines().count(), 1, "{}: {err}", f.name());
        assert!(err.contains("at byte"), "{}: {err}", f.name());
    }
    let (code, _, err) = run_cli(&["pdu", "decode", "00000010000000150000000000000001ff"], None);
    assert_eq!(code, 1);
    assert!(
        err.contains("1 octets after the PDU") && err.contains("at byte 16"),
        "{err}"
    );
    let (code, _, err) = run_cli(&["pdu", "decode", "xyz"], None);
    assert_eq!((code, err.lines().count()), (1, 1), "{err}");
}

#[test]
fn decode_shows_receipt_and_reads_stdin() {
    // The cloudhopper capture: decimal id in the text, hex id in the TLV.
    let f = support::fixtures("public")
        .into_iter()
        .find(|f| f.name() == "ch_deliver_sm_receipt_dec_text_hex_tlv")
        .unwrap();
    let (code, json, _) = run_cli(&["pdu", "decode"], Some(f.json["hex"].as_str().unwrap()));
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
    let (code, out, err) = run_cli(&["pdu", "encode"], Some(json));
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
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("proxy.toml");
    std::fs::write(
        &config,
        format!(
            "node_id = \"t\"\n[listen]\nsmpp = \"127.0.0.1:{port}\"\nadmin = \"127.0.0.1:0\"\n[store]\nbackend = \"memory\"\n[[clients]]\nsystem_id = \"shop\"\npassword = \"secret\"\n\
             [[upstreams]]\nname = \"sim\"\naddress = \"{}\"\nsystem_id = \"p\"\npassword = \"p\"\n",
            sim.local_addr()
        ),
    )
    .unwrap();
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_smpp-proxy"))
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
    let out = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
        .await
        .unwrap();
    assert!(out.status.success(), "{}", out.status);
    // Logs to a pipe: no colour codes, and JSON whose values are plain (an address, not
    // `Some(127.0.0.1:...)`), one object per line.
    let logs = String::from_utf8_lossy(&out.stderr);
    assert!(!logs.contains('\u{1b}'), "ANSI escapes in logs to a pipe: {logs}");
    let lines: Vec<serde_json::Value> = logs
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let admin = lines
        .iter()
        .find(|l| {
            l["fields"]["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("admin endpoint"))
        })
        .unwrap_or_else(|| panic!("no admin endpoint line in {logs}"));
    let addr = admin["fields"]["addr"].as_str().unwrap();
    assert!(addr.parse::<std::net::SocketAddr>().is_ok(), "{addr}");
}

#[test]
fn version_names_the_commit_and_the_config_is_found_where_documented() {
    let (code, out, _) = run_cli(&["--version"], None);
    assert_eq!(code, 0);
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    if root.join(".git").exists() {
        let head = Command::new("git")
            .args(["rev-parse", "--short=12", "HEAD"])
            .current_dir(root)
            .output()
            .unwrap();
        let head = String::from_utf8(head.stdout).unwrap();
        // Built from HEAD, or from a commit before it when the build is older than HEAD.
        let commit = out.split("(commit ").nth(1).unwrap().trim_end().trim_end_matches(')');
        assert!(
            commit.len() == 12 && commit.chars().all(|c| c.is_ascii_hexdigit()),
            "{out} (HEAD {head})"
        );
    }
    assert!(
        out.starts_with(&format!("smpp-proxy {} (commit ", env!("CARGO_PKG_VERSION"))),
        "{out}"
    );
    // SMPP_PROXY_CONFIG when --config is not given; --config first when both are.
    let good = root.join("config/smpp-proxy.toml");
    let run = |args: &[&str], env: Option<&std::path::Path>| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_smpp-proxy"));
        cmd.args(args).env_remove("SMPP_PROXY_CONFIG");
        if let Some(path) = env {
            cmd.env("SMPP_PROXY_CONFIG", path);
        }
        let out = cmd.output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
        )
    };
    let (code, text) = run(&["check"], Some(&good));
    assert_eq!(code, Some(0), "{text}");
    let nowhere = root.join("no-such-config.toml");
    let (code, text) = run(&["check", "--config", good.to_str().unwrap()], Some(&nowhere));
    assert_eq!(code, Some(0), "--config wins: {text}");
    let (code, text) = run(&["check"], Some(&nowhere));
    assert_eq!(code, Some(1));
    assert!(text.contains("no-such-config.toml"), "{text}");
    // Neither: the system's place.
    if !std::path::Path::new("/etc/smpp-proxy/smpp-proxy.toml").exists() {
        let (code, text) = run(&["check"], None);
        assert_eq!(code, Some(1));
        assert!(text.contains("/etc/smpp-proxy/smpp-proxy.toml"), "{text}");
    }
}

#[test]
fn shipped_configs_pass_check_and_a_bad_one_lists_every_problem() {
    for file in ["config/smpp-proxy.toml", "config/demo.toml"] {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(file);
        let (code, out, err) = run_cli(&["check", "--config", path.to_str().unwrap()], None);
        assert_eq!(code, 0, "{file}: {err}");
        assert!(out.contains(": ok ("), "{out}");
    }
    let tmp = tempfile::tempdir().unwrap();
    let bad = tmp.path().join("bad.toml");
    std::fs::write(
        &bad,
        "node_id = \"a\"\ncolour = 1\n[listen]\nsmpp = \"nowhere\"\n[[clients]]\nsystem_id = \"s\"\npassword = \"p\"\nwindow = 0\n",
    )
    .unwrap();
    let (code, _, err) = run_cli(&["check", "--config", bad.to_str().unwrap()], None);
    assert_eq!(code, 1);
    for key in [
        "colour: unknown key",
        "listen.smpp:",
        "clients[0].window:",
        "upstreams:",
    ] {
        assert!(err.contains(key), "{key} missing in {err}");
    }
}

/// Type errors, unknown enum values and missing keys are each reported with their key, all of
/// them at once and together with what validation finds in the rest, each named once.
#[test]
fn check_names_the_key_of_every_type_error_bad_variant_and_missing_field() {
    let tmp = tempfile::tempdir().unwrap();
    let bad = tmp.path().join("bad.toml");
    std::fs::write(
        &bad,
        r#"
node_id = "a"
[listen]
smpp = "127.0.0.1:2775"
[[clients]]
system_id = "shop"
password = "secret"
window = -5
[[clients]]
system_id = "bank"
route = "nowhere"
[[upstreams]]
name = "a"
address = "127.0.0.1:2776"
system_id = "p"
password = "p"
bind = "trx"
[[upstreams]]
name = "b"
system_id = "p"
password = "p"
enquire_link = "soon"
[[groups]]
name = "g"
members = ["a", "zz"]
"#,
    )
    .unwrap();
    let file = bad.to_str().unwrap();
    let (code, out, err) = run_cli(&["check", "--config", file], None);
    assert_eq!(code, 1, "{out}");
    let lines: Vec<&str> = err.lines().collect();
    let expect = [
        // Types, variants and presence: what serde alone would stop at, the first of them.
        ("clients[0].window", "integer `-5`, expected u32"),
        ("upstreams[0].bind", "unknown variant `trx`"),
        ("clients[1].password", "missing"),
        ("upstreams[1].address", "missing"),
        // And what validation finds in the rest.
        ("upstreams[1].enquire_link", "not a duration"),
        ("groups[0].members[1]", "no upstream or group is called \"zz\""),
        ("clients[1].route", "no group is called \"nowhere\""),
    ];
    for (key, what) in expect {
        let line = format!("{file}: {key}: ");
        let found: Vec<&&str> = lines.iter().filter(|l| l.starts_with(&line)).collect();
        assert_eq!(found.len(), 1, "{key} once in:\n{err}");
        assert!(found[0].contains(what), "{key}: {what} in:\n{err}");
    }
    assert_eq!(lines.len(), expect.len(), "nothing else, nothing twice:\n{err}");
}

#[test]
fn a_missing_config_file_is_named_once() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("nowhere.toml");
    let file = missing.to_str().unwrap();
    for command in ["check", "run"] {
        let (code, _, err) = run_cli(&[command, "--config", file], None);
        assert_eq!(code, 1, "{command}");
        assert_eq!(err.matches(file).count(), 1, "{command}: {err}");
        assert!(err.contains("No such file"), "{command}: {err}");
    }
}

/// A proxy that cannot listen says where; one whose store another proxy holds says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_failures_say_what_and_where() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    let config = |listen: &str| {
        format!(
            "node_id = \"t\"\n[listen]\nsmpp = \"{listen}\"\n[store]\npath = \"{}\"\n[[clients]]\nsystem_id = \"shop\"\n\
             password = \"secret\"\n[[upstreams]]\nname = \"a\"\naddress = \"127.0.0.1:1\"\nsystem_id = \"p\"\npassword = \"p\"\n",
            store.display()
        )
    };
    let busy = tmp.path().join("busy.toml");
    std::fs::write(&busy, config(&format!("127.0.0.1:{port}"))).unwrap();
    let (code, _, err) = run_cli(&["run", "--config", busy.to_str().unwrap()], None);
    assert_eq!(code, 1);
    assert!(
        err.contains(&format!("cannot listen for SMPP on 127.0.0.1:{port}")),
        "{err}"
    );

    // A running proxy holds the store: a second one, and the store tools, are told so.
    let ok = tmp.path().join("ok.toml");
    std::fs::write(&ok, config("127.0.0.1:0")).unwrap();
    let proxy = smpp_proxy::proxy::Proxy::start(smpp_proxy::config::Config::load(&ok).unwrap())
        .await
        .unwrap();
    let second = ok.to_str().unwrap().to_owned();
    let (code, out, err) = tokio::task::spawn_blocking(move || run_cli(&["store", "stats", "--config", &second], None))
        .await
        .unwrap();
    assert_eq!(code, 1, "{out}");
    let held = format!("another smpp-proxy holds {}; stop it", store.display());
    assert!(err.contains(&held), "{err}");
    proxy.shutdown().await;
    let (code, out, err) = run_cli(&["store", "stats", "--config", ok.to_str().unwrap()], None);
    assert_eq!(code, 0, "free once the proxy stopped: {err}");
    assert!(out.contains("correlations 0"), "{out}");
}

#[test]
fn hash_password_makes_a_hash_check_accepts_and_check_prints_warnings() {
    let (code, out, err) = run_cli(&["hash-password"], Some("s3cret\n"));
    assert_eq!(code, 0, "{err}");
    let hash = out.trim();
    assert!(hash.starts_with("$argon2id$"), "{out}");
    assert!(smpp_proxy::guard::auth::verify_hash(hash, b"s3cret"));
    let (code, _, _) = run_cli(&["hash-password"], Some("far-too-long\n"));
    assert_eq!(code, 1);
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("proxy.toml");
    std::fs::write(
        &config,
        format!(
            "node_id = \"t\"\n[listen]\nsmpp = \"127.0.0.1:2775\"\n[[clients]]\nsystem_id = \"shop\"\npassword_hash = \"{hash}\"\n\
             [[clients]]\nsystem_id = \"weak\"\npassword = \"abc\"\nallow = [\"10.0.0.0/8\"]\n\
             [[upstreams]]\nname = \"a\"\naddress = \"127.0.0.1:1\"\nsystem_id = \"p\"\npassword = \"p\"\n"
        ),
    )
    .unwrap();
    let (code, out, err) = run_cli(&["check", "--config", config.to_str().unwrap()], None);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("warning: clients[0].allow: not set"), "{out}");
    assert!(out.contains("warning: clients[1].password: 3 characters"), "{out}");
}

/// Under systemd (`Type=notify`): READY once serving, RELOADING then READY around a SIGHUP,
/// watchdog pings while it runs, STOPPING on SIGTERM; then it exits 0.
#[test]
fn run_tells_systemd_when_it_is_ready_reloading_and_stopping() {
    use std::os::unix::net::UnixDatagram;
    let tmp = tempfile::tempdir().unwrap();
    let socket_path = tmp.path().join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    socket
        .set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    let config = tmp.path().join("proxy.toml");
    std::fs::write(
        &config,
        "node_id = \"t\"\n[listen]\nsmpp = \"127.0.0.1:0\"\n[store]\nbackend = \"memory\"\n[[clients]]\nsystem_id = \"shop\"\npassword = \"secret\"\n\
         [[upstreams]]\nname = \"away\"\naddress = \"127.0.0.1:1\"\nsystem_id = \"p\"\npassword = \"p\"\n",
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_smpp-proxy"))
        .args(["run", "--config", config.to_str().unwrap()])
        .env("NOTIFY_SOCKET", &socket_path)
        .env("WATCHDOG_USEC", "200000")
        .env("RUST_LOG", "error")
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut buf = [0u8; 512];
    let mut next = || {
        let n = socket.recv(&mut buf).expect("a notification within 10 s");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    };
    // Watchdog pings may come between the others: wait for each state in turn.
    let mut wait_for = |state: &str| -> Vec<String> {
        let mut seen = Vec::new();
        loop {
            let message = next();
            let found = message.lines().any(|l| l == state);
            seen.push(message);
            if found {
                return seen;
            }
            assert!(seen.len() < 200, "no {state} in {seen:?}");
        }
    };
    let ready = wait_for("READY=1");
    assert!(
        ready.last().unwrap().contains("STATUS=serving SMPP on 127.0.0.1:"),
        "{ready:?}"
    );
    wait_for("WATCHDOG=1");
    let kill = |signal: &str| {
        assert!(Command::new("kill")
            .args([signal, &child.id().to_string()])
            .status()
            .unwrap()
            .success());
    };
    kill("-HUP");
    wait_for("RELOADING=1");
    wait_for("READY=1");
    kill("-TERM");
    wait_for("STOPPING=1");
    assert!(child.wait().unwrap().success());
}

/// The shipped unit file is one systemd accepts (`systemd-analyze verify`, where the machine
/// has it), with its commands pointing at this build.
#[test]
fn the_systemd_unit_verifies() {
    let Ok(probe) = Command::new("systemd-analyze").arg("--version").output() else {
        eprintln!("systemd-analyze not installed: unit not verified");
        return;
    };
    assert!(probe.status.success());
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let unit = std::fs::read_to_string(root.join("contrib/systemd/smpp-proxy.service")).unwrap();
    assert!(
        unit.contains("Type=notify")
            && unit.contains("ExecReload=")
            && unit.contains("ExecStartPre=/usr/bin/smpp-proxy check")
    );
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("smpp-proxy.service");
    std::fs::write(
        &path,
        unit.replace("/usr/bin/smpp-proxy", env!("CARGO_BIN_EXE_smpp-proxy")),
    )
    .unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .unwrap();
    // What it says of other units on the machine is not this test's business.
    let said = String::from_utf8_lossy(&out.stderr);
    let ours: Vec<&str> = said.lines().filter(|l| l.contains("smpp-proxy")).collect();
    assert!(out.status.success() && ours.is_empty(), "{said}");
}
