//! `smpp-proxy bench`: a load generator against any SMPP server, or `--compare`: the same load
//! directly against a simulator and through the proxy, in one run, with the ratio.

use clap::Args;
use smpp_proxy::bench::{self, BenchConfig, BenchReport};
use smpp_proxy::config::{parse_duration, Config};
use smpp_proxy::proxy::Proxy;
use smpp_proxy::sim::{self, SimConfig};
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

fn duration(text: &str) -> Result<Duration, String> {
    parse_duration(text).ok_or_else(|| format!("{text:?} is not a duration like 10s"))
}

#[derive(Debug, Args)]
pub(crate) struct BenchArgs {
    /// The server to load (the proxy, or an SMSC); several (the nodes of a cluster): binds go
    /// to each in turn.
    #[arg(long, required_unless_present = "compare", num_args = 1.., value_delimiter = ',')]
    connect: Vec<SocketAddr>,
    /// Credentials.
    #[arg(long, default_value = "shop")]
    system_id: String,
    /// Credentials.
    #[arg(long, default_value = "secret")]
    password: String,
    /// Transceiver binds in parallel.
    #[arg(long, default_value_t = 4)]
    binds: usize,
    /// Outstanding submits per bind.
    #[arg(long, default_value_t = 50)]
    window: usize,
    /// Submits per second in total; 0 = as fast as the window allows.
    #[arg(long, default_value_t = 0)]
    rate: u32,
    /// Total submits.
    #[arg(long, conflicts_with = "duration")]
    count: Option<u64>,
    /// Or: submit for this long.
    #[arg(long, value_parser = duration)]
    duration: Option<Duration>,
    /// Ask for receipts and wait for them.
    #[arg(long)]
    receipts: bool,
    /// How long to wait for the last receipts after the last answer (with --receipts; short
    /// to leave correlations stored, as scripts/memory.sh does).
    #[arg(long, value_parser = duration, default_value = "10s")]
    receipt_wait: Duration,
    /// 3-part concatenated messages.
    #[arg(long)]
    long: bool,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
    /// The process under test (the proxy's PID): its CPU time per message is reported, read
    /// from /proc.
    #[arg(long)]
    measure_pid: Option<u32>,
    /// Worker threads (0: one per core). One runs everything on one thread, with no wake-ups
    /// across threads: the cheapest for a simulator or load generator that shares the machine
    /// with what it measures.
    #[arg(long, default_value_t = 1)]
    threads: usize,

    /// Start a simulator and a proxy in this process and run the load directly against the
    /// simulator, then through the proxy; print both and the ratio.
    #[arg(long)]
    compare: bool,
}

impl BenchArgs {
    fn config(&self, connect: SocketAddr) -> BenchConfig {
        BenchConfig {
            connect,
            also: self.connect.iter().skip(1).copied().collect(),
            system_id: self.system_id.clone(),
            password: self.password.clone(),
            binds: self.binds,
            window: self.window,
            rate: self.rate,
            count: if self.duration.is_some() {
                None
            } else {
                Some(self.count.unwrap_or(10_000))
            },
            duration: self.duration,
            receipts: self.receipts,
            long: self.long,
            receipt_wait: self.receipt_wait,
            progress: !self.json,
            keep_ids: false,
            measure_pid: self.measure_pid,
        }
    }

    pub(crate) fn run(self) -> ExitCode {
        // --compare runs the proxy in this process: on every core, as it is deployed.
        let threads = if self.compare { 0 } else { self.threads };
        super::runtime_with(threads).block_on(async move {
            let result = if self.compare {
                self.compare().await
            } else {
                self.single().await
            };
            match result {
                Ok(ok) => ok,
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::FAILURE
                }
            }
        })
    }

    async fn single(&self) -> Result<ExitCode, String> {
        let report = bench::run(self.config(*self.connect.first().ok_or("--connect is needed")?))
            .await
            .map_err(|e| e.to_string())?;
        if self.json {
            println!("{}", serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?);
        } else {
            println!("{}", report.summary());
        }
        Ok(if report.acked == report.sent {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        })
    }

    async fn compare(&self) -> Result<ExitCode, String> {
        let sim = sim::start(SimConfig {
            receipt_delay: Duration::ZERO,
            ..SimConfig::default()
        })
        .await
        .map_err(|e| e.to_string())?;
        let toml = format!(
            "node_id = \"bench\"\n[listen]\nsmpp = \"127.0.0.1:0\"\n[store]\nbackend = \"memory\"\n[[clients]]\nsystem_id = \"{}\"\npassword = \"{}\"\nwindow = {}\n\
             deliver_window = {}\n[[upstreams]]\nname = \"sim\"\naddress = \"{}\"\nsystem_id = \"proxy\"\npassword = \"pw\"\n\
             sessions = {}\nwindow = {}\n",
            self.system_id,
            self.password,
            self.window * 2,
            self.window,
            sim.local_addr(),
            self.binds,
            self.window * 2
        );
        let config = Config::from_toml(&toml).map_err(|e| e.to_string())?;
        let proxy = Proxy::start(config).await.map_err(|e| e.to_string())?;
        if !proxy.wait_bound(Duration::from_secs(10)).await {
            return Err("proxy did not bind to the simulator".into());
        }
        eprintln!("direct: {} binds against the simulator", self.binds);
        let direct = bench::run(self.config(sim.local_addr()))
            .await
            .map_err(|e| e.to_string())?;
        eprintln!("through smpp-proxy: same load");
        let proxied = bench::run(self.config(proxy.local_addr()))
            .await
            .map_err(|e| e.to_string())?;
        proxy.shutdown().await;
        sim.stop().await;
        let ratio = proxied.acked_per_second / direct.acked_per_second.max(1e-9);
        if self.json {
            let out = serde_json::json!({ "direct": direct, "proxied": proxied, "ratio": ratio });
            println!("{}", serde_json::to_string_pretty(&out).map_err(|e| e.to_string())?);
        } else {
            print_side(&direct, "direct to simulator");
            print_side(&proxied, "through smpp-proxy");
            println!(
                "\nproxy throughput = {:.2} x direct ({:.0} vs {:.0} msg/s)",
                ratio, proxied.acked_per_second, direct.acked_per_second
            );
        }
        Ok(if proxied.acked == proxied.sent {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        })
    }
}

fn print_side(report: &BenchReport, title: &str) {
    println!("\n== {title}\n{}", report.summary());
}
