//! The durable store's writer on its own: correlations put and removed in waves the size of a
//! proxy's windows, against the memory store in the same run. Prints messages per second and
//! the process CPU per message (what competes with the sessions on a small machine).
//! `cargo bench --bench store [-- MESSAGES]`

use smpp_proxy::receipt::id::IdMatch;
use smpp_proxy::store::{Commit, Correlation, DurableStore, MemoryStore, Store};
use std::sync::Arc;
use std::time::Instant;

const WAVE: usize = 400;

fn cpu_seconds() -> f64 {
    // /proc/self/stat fields 14 and 15: user and system clock ticks.
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit(')').next().unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

fn correlation(i: u64) -> Arc<Correlation> {
    Arc::new(Correlation {
        upstream: "smsc-a".into(),
        upstream_id: format!("{:x}", 0x5f00_0000_0000u64 + i * 7919).into(),
        client: "shop".into(),
        client_id: format!("{:016x}", 0x0123_4567_0000_0000u64 + i).into(),
        submitted_at: smpp_proxy::store::unix_now(),
        registered_delivery: 1,
        source_addr: "Shop".into(),
        destination_addr: format!("4479{i:08}").into(),
        part: None,
    })
}

/// Puts `n` correlations and removes each `lag` waves later, as receipts would; returns
/// (msg/s, CPU us per msg). Removals have no ticket: each wave queues its removals before its
/// puts, and the writer takes them in order, so a wave's puts answered means its removals are
/// applied too (the last ones are followed by one more put, waited for).
fn run(store: &dyn Store, n: u64, lag: usize) -> (f64, f64) {
    let (t0, c0) = (Instant::now(), cpu_seconds());
    let mut waiting: std::collections::VecDeque<Vec<Arc<Correlation>>> = Default::default();
    let mut i = 0;
    while i < n {
        if waiting.len() >= lag {
            for c in waiting.pop_front().unwrap_or_default() {
                store.remove(&c, IdMatch::Exact);
            }
        }
        let wave: Vec<Arc<Correlation>> = (i..(i + WAVE as u64).min(n)).map(correlation).collect();
        let tickets: Vec<Commit> = wave.iter().map(|c| store.record(c.clone(), IdMatch::Exact)).collect();
        for t in tickets {
            t.wait_blocking().expect("store write");
        }
        i += wave.len() as u64;
        waiting.push_back(wave);
    }
    for c in waiting.iter().flatten() {
        store.remove(c, IdMatch::Exact);
    }
    let last = correlation(n);
    store
        .record(last.clone(), IdMatch::Exact)
        .wait_blocking()
        .expect("store write");
    store.remove(&last, IdMatch::Exact);
    let secs = t0.elapsed().as_secs_f64();
    (n as f64 / secs, (cpu_seconds() - c0) * 1e6 / n as f64)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    // `cargo test --all-targets` runs this without `--bench`: a quick smoke run then.
    let default = if args.iter().any(|a| a == "--bench") {
        200_000
    } else {
        2_000
    };
    let n: u64 = args.iter().find_map(|a| a.parse().ok()).unwrap_or(default);
    let dir = std::env::temp_dir().join(format!("smpp-proxy-store-bench-{}", std::process::id()));
    println!("store      receipts after    msg/s   CPU us/msg   ({n} messages, put in waves of {WAVE})");
    // Receipts for the next wave (a fast SMSC), and 200 waves (80 000 messages) later (a store
    // that holds many more correlations when each is removed).
    for lag in [1, 200] {
        let dir = dir.join(lag.to_string());
        let durable = DurableStore::open(&dir).expect("open store");
        let (d_rate, d_cpu) = run(&durable, n, lag);
        let flushed = durable
            .writer_stats()
            .flushed
            .load(std::sync::atomic::Ordering::Relaxed);
        drop(durable);
        let _ = std::fs::remove_dir_all(&dir);
        let (m_rate, m_cpu) = run(&MemoryStore::default(), n, lag);
        let after = format!("{} msgs", lag * WAVE);
        println!("durable {after:>17} {d_rate:>9.0} {d_cpu:>10.1}   ({flushed} moved from the hot tier to the tables)");
        println!("memory  {after:>17} {m_rate:>9.0} {m_cpu:>10.1}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
