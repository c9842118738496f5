//! The embedded store on a bad day: writes that fail at the file (a full disk, simulated with a
//! file-size limit on the proxy's process) and damaged files at start.

mod support;

use smpp_proxy::esme::{submit_sm, Esme};
use smpp_proxy::pdu::{CommandId, CommandStatus};
use smpp_proxy::sim::SimConfig;
use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;
use support::*;

/// A config for the binary on a durable store in `dir`: free ports for SMPP and admin.
fn config(dir: &Path, sims: &[smpp_proxy::sim::SimHandle]) -> (std::path::PathBuf, SocketAddr, SocketAddr) {
    let smpp: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let admin: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let toml = proxy_toml(sims, "", SHOP, "")
        .replace(
            "smpp = \"127.0.0.1:0\"",
            &format!("smpp = \"{smpp}\"\nadmin = \"{admin}\""),
        )
        .replace(
            "backend = \"memory\"",
            &format!("backend = \"embedded\"\npath = \"{}\"", dir.join("store").display()),
        );
    let path = dir.join("proxy.toml");
    std::fs::write(&path, toml).unwrap();
    (path, smpp, admin)
}

fn status(admin: SocketAddr) -> smpp_proxy::admin::Snapshot {
    serde_json::from_str(&smpp_proxy::admin::get(admin, "/status").unwrap()).unwrap()
}

/// Submits with a window of 20 until an answer is not OK (or `max` are answered): the ids of
/// those answered OK, and the first other status.
async fn submit_until_refused(esme: &mut Esme, max: usize) -> (Vec<String>, Option<CommandStatus>) {
    let mut ok = Vec::new();
    let (mut sent, mut answered) = (0, 0);
    let mut refused = None;
    while answered < max {
        while refused.is_none() && sent < max && sent - answered < 20 {
            esme.feed(submit_sm("4477", "447700900123", b"x", true)).await.unwrap();
            sent += 1;
        }
        esme.flush().await.unwrap();
        if sent == answered {
            break;
        }
        let resp = esme.recv(T).await.unwrap();
        answered += 1;
        if resp.command_status.is_ok() {
            ok.push(resp.message_id().unwrap().as_str().unwrap().to_owned());
        } else {
            refused.get_or_insert(resp.command_status);
        }
    }
    (ok, refused)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_failing_at_the_file_refuse_work_cleanly_and_the_store_reopens_when_they_work() {
    let tmp = tempfile::tempdir().unwrap();
    let sims = start_sims(
        1,
        SimConfig {
            receipt_delay: Duration::from_millis(50),
            ..SimConfig::default()
        },
    )
    .await;
    let (config, smpp, admin) = config(tmp.path(), &sims);
    // The store as a first start leaves it; then the proxy runs with little room to grow it.
    drop(smpp_proxy::store::DurableStore::open(&tmp.path().join("store")).unwrap());
    let file = tmp.path().join("store").join(smpp_proxy::store::durable::FILE);
    let limit = std::fs::metadata(&file).unwrap().len() + 512 * 1024;
    let mut proxy = Proc(
        Command::new("prlimit")
            .arg(format!("--fsize={limit}:unlimited"))
            .arg(env!("CARGO_BIN_EXE_smpp-proxy"))
            .args(["run", "--config", config.to_str().unwrap()])
            .env("RUST_LOG", "warn")
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let mut tx = bind_when_up(smpp, CommandId::BIND_TRANSMITTER).await;
    let (mut acked, refused) = submit_until_refused(&mut tx, 300_000).await;
    assert!(
        refused.is_some(),
        "the file never reached its limit ({} answered)",
        acked.len()
    );
    // Refused cleanly: the process lives, the session stays, status says why.
    assert!(proxy.0.try_wait().unwrap().is_none(), "the proxy died");
    let s = status(admin);
    assert!(s.store.state == "failed" && s.store.failures >= 1, "{:?}", s.store);
    tx.send(submit_sm("1", "2", b"x", true)).await.unwrap();
    let resp = tx.recv(T).await.unwrap();
    assert_eq!(
        resp.command_status,
        CommandStatus::ESME_RTHROTTLED,
        "a new submit while failed"
    );

    // Room again: the store opens by itself and takes work, on the same session.
    let lifted = Command::new("prlimit")
        .args(["--pid", &proxy.0.id().to_string(), "--fsize=unlimited:unlimited"])
        .status()
        .unwrap();
    assert!(lifted.success());
    let mut back = false;
    let deadline = tokio::time::Instant::now() + T;
    while !back && tokio::time::Instant::now() < deadline {
        tx.send(submit_sm("4477", "447700900123", b"x", true)).await.unwrap();
        let resp = tx.recv(T).await.unwrap();
        if resp.command_status.is_ok() {
            acked.push(resp.message_id().unwrap().as_str().unwrap().to_owned());
            back = true;
        } else {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    assert!(back, "the store did not come back");
    let (more, refused) = submit_until_refused(&mut tx, 200).await;
    assert_eq!((more.len(), refused), (200, None));
    acked.extend(more);
    let s = status(admin);
    assert!(s.store.state == "ok" && s.store.reopens >= 1, "{:?}", s.store);

    // Every submit answered OK gets its receipt: nothing acknowledged was lost.
    let mut rx = bind_when_up(smpp, CommandId::BIND_RECEIVER).await;
    let want: HashSet<String> = acked.into_iter().collect();
    let mut got = HashSet::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while !want.is_subset(&got) && tokio::time::Instant::now() < deadline {
        let Ok(pdu) = rx.recv(Duration::from_secs(1)).await else {
            continue;
        };
        rx.ack(&pdu).await.unwrap();
        if pdu.command_id() == CommandId::DELIVER_SM {
            got.insert(receipt_id(&pdu));
        }
    }
    let lost = want.difference(&got).count();
    assert_eq!(lost, 0, "{lost} of {} answered messages got no receipt", want.len());
}

/// `smpp-proxy run` on `config`: its exit code and what it wrote to stderr, or `None` if it
/// was still running after a few seconds (it started).
fn run_briefly(config: &Path) -> Option<(i32, String)> {
    use std::io::Read;
    let mut child = Command::new(env!("CARGO_BIN_EXE_smpp-proxy"))
        .args(["run", "--config", config.to_str().unwrap()])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while std::time::Instant::now() < deadline {
        if let Some(status) = child.try_wait().unwrap() {
            let mut err = String::new();
            child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
            return Some((status.code().unwrap_or(-1), err));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_or_damaged_store_file_is_refused_at_start_and_reset_moves_it_aside() {
    let tmp = tempfile::tempdir().unwrap();
    let sims = start_sims(1, SimConfig::default()).await;
    let (config, _, _) = config(tmp.path(), &sims);
    let dir = tmp.path().join("store");
    let file = dir.join(smpp_proxy::store::durable::FILE);
    let config_arg = config.to_str().unwrap().to_owned();
    let aside = |dir: &Path| {
        std::fs::read_dir(dir)
            .unwrap()
            .filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().contains(".damaged-"))
            .count()
    };

    // Zero bytes: not a new store, a lost one.
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(&file, b"").unwrap();
    let (code, err) = tokio::task::spawn_blocking({
        let config = config.clone();
        move || run_briefly(&config)
    })
    .await
    .unwrap()
    .expect("started on an empty store file");
    assert_eq!(code, 1);
    assert!(
        err.contains("is damaged: the file is empty") && err.contains("smpp-proxy store reset"),
        "{err}"
    );
    let (code, out, err) = run_cli(&["store", "reset", "--config", &config_arg], None);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("the next start begins with an empty store"), "{out}");
    assert_eq!(aside(&dir), 1);
    assert!(!file.exists());

    // A store with something in it, 64 KiB of garbage in the middle.
    {
        let store = smpp_proxy::store::DurableStore::open(&dir).unwrap();
        let mut tickets = Vec::new();
        for n in 0..20_000u32 {
            let c = smpp_proxy::store::Correlation {
                upstream: "smsc-0".into(),
                upstream_id: format!("{n:x}").into(),
                client: "shop".into(),
                client_id: format!("{n:016x}").into(),
                submitted_at: 0,
                registered_delivery: 1,
                source_addr: "1".into(),
                destination_addr: "2".into(),
                part: None,
            };
            tickets.push(store.put_correlation(std::sync::Arc::new(c), &format!("{n:x}")));
        }
        for t in tickets {
            t.wait().await.unwrap();
        }
    }
    let mut bytes = std::fs::read(&file).unwrap();
    let middle = bytes.len() / 2;
    let mut x: u32 = 0x9E37_79B9;
    for b in &mut bytes[middle..middle + 65_536] {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        *b = x as u8;
    }
    std::fs::write(&file, &bytes).unwrap();
    let outcome = tokio::task::spawn_blocking({
        let config = config.clone();
        move || run_briefly(&config)
    })
    .await
    .unwrap();
    let (code, err) = outcome.expect("started on a damaged store file");
    assert_eq!(code, 1);
    assert!(err.contains("is damaged"), "{err}");
    // A healthy store is not reset without --force; a damaged one is, with the write-ahead
    // file a killed run left beside it (applied to an empty store it would renumber outboxes).
    let wal = dir.join(smpp_proxy::store::durable::WAL_FILE);
    std::fs::write(&wal, b"records of a killed run").unwrap();
    let (code, _, err) = run_cli(&["store", "reset", "--config", &config_arg], None);
    assert_eq!(code, 0, "{err}");
    assert_eq!(aside(&dir), 3, "the database and its write-ahead file");
    assert!(!wal.exists());
    drop(smpp_proxy::store::DurableStore::open(&dir).unwrap());
    let (code, _, err) = run_cli(&["store", "reset", "--config", &config_arg], None);
    assert_eq!(code, 1);
    assert!(err.contains("opens fine"), "{err}");
    assert!(run_briefly(&config).is_none(), "does not start on a fresh store");
}
