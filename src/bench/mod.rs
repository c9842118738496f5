//! The load generator behind `smpp-proxy bench` (also used by `demo` and the tests): N binds
//! submit with a window and an optional rate, and the report says what came back: responses by
//! status, receipts matched / unmatched / duplicated, throughput, and latency percentiles of
//! submit → response and submit → receipt, and the CPU the process under test spent per
//! message.
//!
//! Each bind ([`bind`]) copies one encoded submit and reads only what it counts, so it stays
//! well above what a proxy under test can do; the figure it reaches straight against the
//! simulator is what `scripts/bench.sh` prints beside every other one.

mod bind;

use crate::esme::{Esme, EsmeError};
use crate::pdu::{CommandId, CommandStatus};
use dashmap::DashMap;
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What to send.
#[derive(Debug, Clone)]
pub struct BenchConfig {
    /// Where to bind.
    pub connect: SocketAddr,
    /// More addresses to bind to (the nodes of a cluster): binds go to `connect` and these in
    /// turn, and receipts may come back on any of them.
    pub also: Vec<SocketAddr>,
    /// Credentials.
    pub system_id: String,
    /// Credentials.
    pub password: String,
    /// Transceiver binds submitting in parallel.
    pub binds: usize,
    /// Outstanding submits per bind.
    pub window: usize,
    /// Submits per second across binds; 0 = as fast as the window allows.
    pub rate: u32,
    /// Total submits (split across binds).
    pub count: Option<u64>,
    /// Or: submit for this long.
    pub duration: Option<Duration>,
    /// Ask for receipts and wait for them.
    pub receipts: bool,
    /// Send 3-part concatenated messages (UDH) instead of single ones.
    pub long: bool,
    /// How long to wait for receipts after the last response.
    pub receipt_wait: Duration,
    /// Print a progress line every second to stderr.
    pub progress: bool,
    /// Keep every id acknowledged in the report (tests).
    pub keep_ids: bool,
    /// The process under test: its CPU time over the run is reported per message.
    pub measure_pid: Option<u32>,
}

impl Default for BenchConfig {
    fn default() -> Self {
        BenchConfig {
            connect: SocketAddr::from(([127, 0, 0, 1], 2775)),
            also: Vec::new(),
            system_id: String::new(),
            password: String::new(),
            binds: 1,
            window: 50,
            rate: 0,
            count: Some(1000),
            duration: None,
            receipts: false,
            long: false,
            receipt_wait: Duration::from_secs(10),
            progress: false,
            keep_ids: false,
            measure_pid: None,
        }
    }
}

impl BenchConfig {
    /// `count` messages with receipts from the demo account (`shop` / `secret`) to `connect`,
    /// over 4 binds of window 50: the demo's load, and the allocation benchmark's.
    pub fn shop(connect: SocketAddr, count: u64) -> BenchConfig {
        BenchConfig {
            connect,
            system_id: "shop".into(),
            password: "secret".into(),
            binds: 4,
            window: 50,
            count: Some(count),
            receipts: true,
            ..BenchConfig::default()
        }
    }
}

/// Percentiles of a latency sample, in microseconds.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Latency {
    /// Samples.
    pub count: usize,
    /// Median.
    pub p50_us: u64,
    /// 90th percentile.
    pub p90_us: u64,
    /// 99th percentile.
    pub p99_us: u64,
    /// Maximum.
    pub max_us: u64,
}

impl Latency {
    fn of(mut samples: Vec<u64>) -> Latency {
        samples.sort_unstable();
        let at = |q: f64| {
            samples
                .get(((samples.len() as f64 - 1.0) * q).round() as usize)
                .copied()
                .unwrap_or(0)
        };
        Latency {
            count: samples.len(),
            p50_us: at(0.5),
            p90_us: at(0.9),
            p99_us: at(0.99),
            max_us: samples.last().copied().unwrap_or(0),
        }
    }
}

/// What came back.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct BenchReport {
    /// Submits sent.
    pub sent: u64,
    /// Responses with ESME_ROK.
    pub acked: u64,
    /// Error responses by status name.
    pub errors: BTreeMap<String, u64>,
    /// Submits never answered (connection lost).
    pub unanswered: u64,
    /// Receipts whose id was one we were given, first time.
    pub receipts_matched: u64,
    /// Receipts whose id we were never given.
    pub receipts_unmatched: u64,
    /// Receipts for an id already receipted.
    pub receipts_duplicated: u64,
    /// Seconds from first submit to last response.
    pub seconds: f64,
    /// Acknowledged submits per second.
    pub acked_per_second: f64,
    /// submit → response.
    pub response_latency: Latency,
    /// submit → receipt.
    pub receipt_latency: Latency,
    /// CPU time (user + system) of the process under test per acknowledged message, in µs.
    pub cpu_us_per_message: Option<f64>,
    /// The load generator's own CPU time per acknowledged message, in µs.
    pub generator_cpu_us_per_message: Option<f64>,
    /// The ids acknowledged, with `keep_ids` (not in JSON; for tests).
    #[serde(skip)]
    pub ids: Vec<String>,
}

impl BenchReport {
    /// The summary as lines of text.
    pub fn summary(&self) -> String {
        let errors = if self.errors.is_empty() {
            "none".to_owned()
        } else {
            self.errors
                .iter()
                .map(|(k, v)| format!("{k} {v}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let l = &self.response_latency;
        let r = &self.receipt_latency;
        format!(
            "sent {} acked {} errors: {errors}; unanswered {}\n\
             receipts matched {} unmatched {} duplicated {}\n\
             {:.0} msg/s over {:.2}s\n\
             submit->resp   p50 {:.2}ms p90 {:.2}ms p99 {:.2}ms max {:.2}ms\n\
             submit->receipt p50 {:.2}ms p90 {:.2}ms p99 {:.2}ms max {:.2}ms{}",
            self.sent,
            self.acked,
            self.unanswered,
            self.receipts_matched,
            self.receipts_unmatched,
            self.receipts_duplicated,
            self.acked_per_second,
            self.seconds,
            l.p50_us as f64 / 1e3,
            l.p90_us as f64 / 1e3,
            l.p99_us as f64 / 1e3,
            l.max_us as f64 / 1e3,
            r.p50_us as f64 / 1e3,
            r.p90_us as f64 / 1e3,
            r.p99_us as f64 / 1e3,
            r.max_us as f64 / 1e3,
            match self.cpu_us_per_message {
                Some(cpu) => format!("\nCPU of the process under test: {cpu:.1} us/msg"),
                None => String::new(),
            },
        )
    }
}

/// Where one message id is, as seen by the load generator.
#[derive(Debug, Clone, Copy)]
enum Track {
    /// Answered; its submit went out at this time (µs since start); receipt not seen yet.
    Sent(u64),
    /// Its receipt came before its submit_sm_resp (at this time): fast SMSCs do that.
    Early(u64),
}

#[derive(Debug, Default)]
struct Shared {
    /// One entry per id (keyed by its hash); the entry API makes each step atomic even when
    /// the response and the receipt arrive on two binds at once.
    ids: DashMap<u64, Track, foldhash::fast::RandomState>,
    sent: AtomicU64,
    acked: AtomicU64,
    receipts: AtomicU64,
    duplicated: AtomicU64,
}

/// CPU µs per message between two readings of [`cpu_seconds`].
fn per_message(before: Option<f64>, after: Option<f64>, messages: u64) -> Option<f64> {
    let spent = after? - before?;
    (messages > 0).then(|| spent * 1e6 / messages as f64)
}

/// User + system CPU seconds of a process so far (`/proc/PID/stat`).
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which may hold spaces: state is field 3, utime 14.
    let mut fields = stat.rsplit_once(')')?.1.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    // USER_HZ: 100 on every Linux ABI the proxy builds for.
    Some((utime + stime) as f64 / 100.0)
}

/// Runs the load and reports.
pub async fn run(config: BenchConfig) -> Result<BenchReport, EsmeError> {
    let shared = Arc::new(Shared::default());
    let measured = config.measure_pid.and_then(cpu_seconds);
    let own = cpu_seconds(std::process::id());
    let template = Arc::new(bind::Template::new(&config));
    let start = Instant::now();
    let deadline = config.duration.map(|d| start + d);
    let mut esmes = Vec::new();
    let addrs: Vec<SocketAddr> = std::iter::once(config.connect)
        .chain(config.also.iter().copied())
        .collect();
    for n in 0..config.binds.max(1) {
        esmes.push(
            Esme::bind(
                addrs[n % addrs.len()],
                CommandId::BIND_TRANSCEIVER,
                &config.system_id,
                &config.password,
            )
            .await?
            .into_parts(),
        );
    }
    let progress = config.progress.then(|| {
        let shared = shared.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            tick.tick().await;
            loop {
                tick.tick().await;
                let secs = start.elapsed().as_secs_f64();
                let acked = shared.acked.load(Ordering::Relaxed);
                eprintln!(
                    "  {secs:5.1}s sent {} acked {acked} receipts {} ({:.0} msg/s)",
                    shared.sent.load(Ordering::Relaxed),
                    shared.receipts.load(Ordering::Relaxed),
                    acked as f64 / secs
                );
            }
        })
    });
    let mut tasks = Vec::new();
    for (n, esme) in esmes.into_iter().enumerate() {
        // Split the count exactly: the first `total % binds` binds take one more.
        let binds = config.binds.max(1) as u64;
        let quota = config
            .count
            .map(|total| total / binds + u64::from((n as u64) < total % binds));
        let (config, shared, template) = (config.clone(), shared.clone(), template.clone());
        tasks.push(tokio::spawn(async move {
            let crate::tls::Stream::Plain(stream) = esme.0 else {
                return Err(EsmeError::NoResponse("the load generator speaks plain TCP only"));
            };
            bind::run((stream, esme.1), &config, &shared, &template, (quota, deadline), start).await
        }));
    }
    let mut report = BenchReport::default();
    let mut errors: HashMap<CommandStatus, u64> = HashMap::new();
    let (mut response_us, mut receipt_us) = (Vec::new(), Vec::new());
    let mut last_ack = start;
    let mut done = std::collections::HashSet::new();
    for task in tasks {
        let r = task.await.map_err(|e| {
            EsmeError::NoResponse(if e.is_panic() {
                "bind task panicked"
            } else {
                "bind task cancelled"
            })
        })??;
        for (status, n) in r.errors {
            *errors.entry(status).or_default() += n;
        }
        report.unanswered += r.unanswered;
        response_us.extend(r.response_us);
        receipt_us.extend(r.receipt_us);
        report.ids.extend(r.ids);
        last_ack = last_ack.max(r.last_ack);
        done.extend(r.done);
    }
    if let Some(p) = progress {
        p.abort();
    }
    // Before the figures are worked out: what that costs is not the load's.
    let measured_after = config.measure_pid.and_then(cpu_seconds);
    let own_after = cpu_seconds(std::process::id());
    report.sent = shared.sent.load(Ordering::Relaxed);
    report.acked = shared.acked.load(Ordering::Relaxed);
    report.errors = errors.into_iter().map(|(s, n)| (s.to_string(), n)).collect();
    report.receipts_matched = shared.receipts.load(Ordering::Relaxed);
    // Receipts left waiting for a response: for an id already receipted (a duplicate), or
    // for an id no response ever gave.
    let (again, unknown): (Vec<u64>, Vec<u64>) = shared
        .ids
        .iter()
        .filter(|e| matches!(*e.value(), Track::Early(_)))
        .map(|e| *e.key())
        .partition(|key| done.contains(key));
    report.receipts_unmatched = unknown.len() as u64;
    report.receipts_duplicated = shared.duplicated.load(Ordering::Relaxed) + again.len() as u64;
    report.seconds = last_ack.duration_since(start).as_secs_f64().max(1e-6);
    report.acked_per_second = report.acked as f64 / report.seconds;
    report.response_latency = Latency::of(response_us);
    report.receipt_latency = Latency::of(receipt_us);
    report.cpu_us_per_message = per_message(measured, measured_after, report.acked);
    report.generator_cpu_us_per_message = per_message(own, own_after, report.acked);
    Ok(report)
}
