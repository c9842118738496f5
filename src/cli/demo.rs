//! `smpp-proxy demo`: the proxy doing its job in one command. Three simulated SMSCs (one writes
//! receipt ids in another format, one is slower), the proxy with `config/demo.toml` in front of
//! them, and the load generator as the client: every submit answered with the proxy's id, every
//! receipt back with that id, the share each SMSC carried, and, halfway, one SMSC going down
//! for maintenance without a client noticing.

use clap::Args;
use smpp_proxy::bench::{self, BenchConfig};
use smpp_proxy::config::Config;
use smpp_proxy::proxy::Proxy;
use smpp_proxy::sim::{self, ReceiptVariant, SimConfig};
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::time::Duration;

const DEMO_TOML: &str = include_str!("../../config/demo.toml");

#[derive(Debug, Args)]
pub(crate) struct DemoArgs {
    /// Messages to send.
    #[arg(long, default_value_t = 50_000)]
    count: u64,
    /// Two nodes on a local redis-server (installed: apt-get install redis-server), one of
    /// them killed halfway.
    #[arg(long)]
    cluster: bool,
}

impl DemoArgs {
    pub(crate) fn run(self) -> ExitCode {
        super::runtime().block_on(async move {
            match demo(self.count, self.cluster).await {
                Ok(code) => code,
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::FAILURE
                }
            }
        })
    }
}

async fn demo(count: u64, cluster: bool) -> Result<ExitCode, String> {
    let mut config = Config::from_toml(DEMO_TOML).map_err(|e| e.to_string())?;
    let variants = [
        SimConfig::default(),
        SimConfig {
            receipt_variant: ReceiptVariant::DecimalTextHexTlv,
            ..SimConfig::default()
        },
        SimConfig {
            latency: Duration::from_millis(2),
            ..SimConfig::default()
        },
    ];
    let mut sims = Vec::new();
    for (upstream, sim_config) in config.upstreams.iter_mut().zip(variants) {
        let sim = sim::start(sim_config).await.map_err(|e| e.to_string())?;
        upstream.address = sim.local_addr().to_string();
        println!("simulated SMSC {:7} on {}", upstream.name, upstream.address);
        sims.push(sim);
    }
    if cluster {
        return super::demo_cluster::cluster(count, DEMO_TOML, &sims).await;
    }
    config.listen = "127.0.0.1:0".parse().expect("address");
    // A store of its own, removed afterwards: the demo runs the real crash-safe store.
    let store_dir = std::env::temp_dir().join(format!("smpp-proxy-demo-{}", std::process::id()));
    config.store_path = store_dir.clone();
    let names: Vec<String> = config.upstreams.iter().map(|u| u.name.clone()).collect();
    let proxy = Proxy::start(config).await.map_err(|e| e.to_string())?;
    println!("smpp-proxy listening on {}", proxy.local_addr());
    if !proxy.wait_bound(Duration::from_secs(10)).await {
        return Err("the proxy could not bind to the simulators".into());
    }
    println!("all upstream sessions bound; sending {count} messages with receipts from 4 client binds\n");
    // Halfway, smsc-b unbinds everyone (maintenance) and takes binds again a moment later.
    let maintenance = {
        let counters: Vec<_> = sims.iter().map(|s| s.stats().clone()).collect();
        let unbind = sims[1].unbinder();
        tokio::spawn(async move {
            loop {
                let sent: u64 = counters.iter().map(|c| c.submits.load(Ordering::Relaxed)).sum();
                if sent >= count / 2 {
                    println!("  -- smsc-b goes down for maintenance (unbinds every session) --");
                    unbind();
                    return;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };
    let report = bench::run(BenchConfig {
        progress: true,
        ..BenchConfig::shop(proxy.local_addr(), count)
    })
    .await
    .map_err(|e| e.to_string())?;
    maintenance.abort();
    println!("\n{}\n", report.summary());
    let total: u64 = sims.iter().map(|s| s.stats().submits.load(Ordering::Relaxed)).sum();
    println!("share per upstream:");
    for (name, sim) in names.iter().zip(&sims) {
        let n = sim.stats().submits.load(Ordering::Relaxed);
        println!(
            "  {name:7} {n:7} submits ({:5.1}%)",
            100.0 * n as f64 / total.max(1) as f64
        );
    }
    let status = smpp_proxy::admin::Snapshot::take(proxy.context());
    println!("\nupstream state (as `smpp-proxy status` shows it):");
    for u in status.upstreams.iter().map(|u| &u.figures) {
        println!(
            "  {:7} {:10} latency {:5.2} ms, picked {:6}, throttled {}, link errors {}",
            u.name, u.state, u.rtt_ms, u.picked, u.throttled, u.link_errors
        );
    }
    let stats = &proxy.context().stats;
    println!(
        "receipts matched by the proxy: {} (unmatched {}); correlations held: {}",
        stats.matched_receipts.get(),
        stats.unmatched_receipts.load(Ordering::Relaxed),
        proxy.context().store.correlations().unwrap_or(0)
    );
    proxy.shutdown().await;
    for sim in sims {
        sim.stop().await;
    }
    let _ = std::fs::remove_dir_all(&store_dir);
    let ok = report.acked == count && report.receipts_matched == count && report.receipts_duplicated == 0;
    Ok(super::verdict(
        ok,
        "OK: every message answered, every receipt back to its client with the proxy's id.",
    ))
}
