//! Heap allocations per forwarded message: the simulator, the load generator and the proxy in
//! one process under a counting allocator; the same load straight to the simulator and through
//! the proxy (memory store, then the durable store with each `sync`), and the difference per
//! message is the proxy's. A message here is the whole round: submit_sm, its resp, the
//! receipt (deliver_sm) and its resp.
//!
//! `cargo bench --bench alloc [-- MESSAGES]` (default 200 000, after 20 000 to warm up).
#![allow(unsafe_code)]

use smpp_proxy::bench::{self, BenchConfig};
use smpp_proxy::config::Config;
use smpp_proxy::proxy::Proxy;
use smpp_proxy::sim::{self, SimConfig};
use std::alloc::{GlobalAlloc, Layout, System};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);
static BYTES: AtomicU64 = AtomicU64::new(0);

// SAFETY: forwards every call to the system allocator unchanged; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        BYTES.fetch_add(layout.size() as u64, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        BYTES.fetch_add(new_size as u64, Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Allocations and bytes allocated while `count` messages go to `to`, with receipts.
async fn counted(to: SocketAddr, count: u64) -> (u64, u64) {
    let (a, b) = (ALLOCATIONS.load(Ordering::Relaxed), BYTES.load(Ordering::Relaxed));
    let report = bench::run(BenchConfig::shop(to, count)).await.expect("load ran");
    assert_eq!(report.receipts_matched, count, "every receipt came back");
    (
        ALLOCATIONS.load(Ordering::Relaxed) - a,
        BYTES.load(Ordering::Relaxed) - b,
    )
}

fn main() {
    let messages: u64 = std::env::args().skip(1).find_map(|a| a.parse().ok()).unwrap_or(200_000);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async move {
        let sim = sim::start(SimConfig {
            receipt_delay: Duration::from_millis(1),
            ..SimConfig::default()
        })
        .await
        .expect("simulator");
        let store = tempfile::tempdir().expect("temp dir");
        println!("heap allocations per message (submit, resp, receipt, resp), {messages} messages, 4 binds, window 50");
        println!("{:<28} {:>12} {:>14}", "path", "allocations", "bytes");
        counted(sim.local_addr(), messages / 10).await;
        let (direct, direct_bytes) = counted(sim.local_addr(), messages).await;
        let per = |n: u64| n as f64 / messages as f64;
        println!(
            "{:<28} {:>12.2} {:>14.0}   (the simulator and the load generator)",
            "direct",
            per(direct),
            per(direct_bytes)
        );
        let stores = [
            ("memory store", "backend = \"memory\"".to_owned()),
            (
                "durable, sync periodic",
                format!("backend = \"embedded\"\npath = \"{}\"", store.path().join("periodic").display()),
            ),
            (
                "durable, sync always",
                format!(
                    "backend = \"embedded\"\nsync = \"always\"\npath = \"{}\"",
                    store.path().join("always").display()
                ),
            ),
        ];
        for (name, store) in stores {
            let toml = format!(
                "node_id = \"alloc\"\n[listen]\nsmpp = \"127.0.0.1:0\"\n[store]\n{store}\n[[clients]]\nsystem_id = \"shop\"\n\
                 password = \"secret\"\nwindow = 100\ndeliver_window = 50\n[[upstreams]]\nname = \"sim\"\naddress = \"{}\"\n\
                 system_id = \"proxy\"\npassword = \"pw\"\nsessions = 4\nwindow = 100\n",
                sim.local_addr()
            );
            let proxy = Proxy::start(Config::from_toml(&toml).expect("config")).await.expect("proxy");
            assert!(proxy.wait_bound(Duration::from_secs(10)).await, "bound to the simulator");
            counted(proxy.local_addr(), messages / 10).await;
            let (through, bytes) = counted(proxy.local_addr(), messages).await;
            println!(
                "{:<28} {:>12.2} {:>14.0}   the proxy's own: {:.2} allocations, {:.0} bytes",
                name,
                per(through),
                per(bytes),
                per(through.saturating_sub(direct)),
                per(bytes.saturating_sub(direct_bytes))
            );
            proxy.shutdown().await;
        }
        sim.stop().await;
    });
}
