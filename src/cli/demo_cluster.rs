//! `smpp-proxy demo --cluster`: the same three simulated SMSCs, two proxy nodes (this binary,
//! as two processes) sharing a local redis-server, the client's binds spread over both, and,
//! halfway, node a killed with SIGKILL. Every message node a or b answered still gets its
//! receipt, through node b.

use smpp_proxy::bench::{self, BenchConfig};
use smpp_proxy::sim::SimHandle;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// A child process killed (SIGKILL) when dropped.
struct Kill(Child);

impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> Result<u16, String> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    Ok(listener.local_addr().map_err(|e| e.to_string())?.port())
}

/// Waits until `ready` holds (or `within` passes).
fn wait(within: Duration, what: &str, mut ready: impl FnMut() -> bool) -> Result<(), String> {
    let deadline = Instant::now() + within;
    while !ready() {
        if Instant::now() > deadline {
            return Err(format!("{what} did not come up"));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

fn redis_answers(port: u16) -> bool {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let mut buf = [0u8; 16];
    s.write_all(b"PING\r\n").is_ok() && s.read(&mut buf).is_ok_and(|n| buf[..n].starts_with(b"+PONG"))
}

/// A redis-server of its own in `dir`, with AOF and `appendfsync always`.
fn start_redis(dir: &Path) -> Result<(Kill, u16), String> {
    let port = free_port()?;
    let child = Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", ""])
        .args(["--appendonly", "yes", "--appendfsync", "always"])
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| {
            format!(
                "cannot start redis-server ({e}); on Debian: apt-get install redis-server \
                 (scripts/test.sh installs it too)"
            )
        })?;
    let redis = Kill(child);
    wait(Duration::from_secs(10), "redis-server", || redis_answers(port))?;
    Ok((redis, port))
}

/// Writes node `id`'s configuration (the demo's, on the shared store) and runs it.
fn start_node(dir: &Path, id: &str, base: &str, sims: &[SimHandle], redis: u16) -> Result<(Kill, SocketAddr), String> {
    let (port, admin) = (free_port()?, free_port()?);
    let mut toml = base
        .replace("node_id = \"demo\"", &format!("node_id = \"{id}\""))
        .replace(
            "smpp = \"127.0.0.1:2775\"",
            &format!("smpp = \"127.0.0.1:{port}\"\nadmin = \"127.0.0.1:{admin}\""),
        );
    for (n, sim) in sims.iter().enumerate() {
        toml = toml.replace(&format!("127.0.0.1:{}", 2776 + n), &sim.local_addr().to_string());
    }
    toml.push_str(&format!(
        "\n[store]\nbackend = \"redis\"\nurl = \"redis://127.0.0.1:{redis}/0\"\n\n[cluster]\nheartbeat = \"250ms\"\n"
    ));
    let config: PathBuf = dir.join(format!("{id}.toml"));
    std::fs::write(&config, toml).map_err(|e| e.to_string())?;
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let log = std::fs::File::create(dir.join(format!("{id}.log"))).map_err(|e| e.to_string())?;
    let child = Command::new(exe)
        .args(["run", "--config", &config.to_string_lossy()])
        .env("RUST_LOG", "warn")
        .stderr(log)
        .spawn()
        .map_err(|e| e.to_string())?;
    let node = Kill(child);
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().map_err(|e| format!("{e}"))?;
    wait(Duration::from_secs(15), &format!("node {id}"), || {
        TcpStream::connect(addr).is_ok()
    })?;
    println!("node {id} listening on {addr} (admin 127.0.0.1:{admin})");
    Ok((node, addr))
}

pub(super) async fn cluster(count: u64, base: &str, sims: &[SimHandle]) -> Result<ExitCode, String> {
    let dir = std::env::temp_dir().join(format!("smpp-proxy-demo-cluster-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let (redis, redis_port) = start_redis(&dir)?;
    println!("redis-server on 127.0.0.1:{redis_port} (AOF, appendfsync always)");
    let (mut a, a_addr) = start_node(&dir, "a", base, sims, redis_port)?;
    let (b, b_addr) = start_node(&dir, "b", base, sims, redis_port)?;
    // Upstream sessions bind in the background: give them a moment, as a balancer's health
    // check would.
    tokio::time::sleep(Duration::from_secs(2)).await;
    println!("sending {count} messages with receipts from 4 client binds, 2 on each node\n");
    let killer = {
        let counters: Vec<_> = sims.iter().map(|s| s.stats().clone()).collect();
        tokio::spawn(async move {
            loop {
                let sent: u64 = counters.iter().map(|c| c.submits.load(Ordering::Relaxed)).sum();
                if sent >= count / 2 {
                    println!("  -- node a killed (SIGKILL), with requests and receipts in flight --");
                    let _ = a.0.kill();
                    let _ = a.0.wait();
                    return a;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };
    let report = bench::run(BenchConfig {
        also: vec![b_addr],
        receipt_wait: Duration::from_secs(15),
        progress: true,
        ..BenchConfig::shop(a_addr, count)
    })
    .await
    .map_err(|e| e.to_string())?;
    killer.abort();
    println!("\n{}\n", report.summary());
    println!(
        "answered OK: {}; left unanswered when node a died: {} (the client would send them again)",
        report.acked, report.unanswered
    );
    println!(
        "receipts back for answered messages: {} of {}; duplicated: {}",
        report.receipts_matched, report.acked, report.receipts_duplicated
    );
    let status = Command::new(std::env::current_exe().map_err(|e| e.to_string())?)
        .args(["status", "--config", &dir.join("b.toml").to_string_lossy()])
        .output()
        .map_err(|e| e.to_string())?;
    let table = String::from_utf8_lossy(&status.stdout);
    if let Some(cluster) = table.split("\ncluster ").nth(1) {
        println!("\nthe cluster as node b shows it (smpp-proxy status):\ncluster {cluster}");
    }
    drop(b);
    drop(redis);
    let _ = std::fs::remove_dir_all(&dir);
    let ok = report.acked > 0 && report.receipts_matched == report.acked;
    Ok(super::verdict(
        ok,
        "OK: every answered message got its receipt, though the node that answered it died.",
    ))
}
