//! The load generator behind `smpp-proxy bench` (also used by `demo` and the tests): N binds
//! submit with a window and an optional rate, and the report says what came back: responses by
//! status, receipts matched / unmatched / duplicated, throughput, and latency percentiles of
//! submit → response and submit → receipt.

use crate::esme::{submit_sm, Esme, EsmeError};
use crate::pdu::{CommandId, CommandStatus};
use crate::receipt::Receipt;
use bytes::Bytes;
use dashmap::mapref::entry::Entry;
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
    /// The ids acknowledged (not in JSON; for tests).
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
             submit->receipt p50 {:.2}ms p90 {:.2}ms p99 {:.2}ms max {:.2}ms",
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
    /// Receipt matched.
    Done,
}

#[derive(Debug, Default)]
struct Shared {
    /// One entry per id; the entry API makes each step atomic even when the response and the
    /// receipt arrive on two binds at once.
    ids: DashMap<String, Track>,
    sent: AtomicU64,
    acked: AtomicU64,
    receipts: AtomicU64,
    duplicated: AtomicU64,
}

struct BindResult {
    errors: HashMap<CommandStatus, u64>,
    unanswered: u64,
    response_us: Vec<u64>,
    receipt_us: Vec<u64>,
    ids: Vec<String>,
    last_ack: Instant,
}

/// Runs the load and reports.
pub async fn run(config: BenchConfig) -> Result<BenchReport, EsmeError> {
    let shared = Arc::new(Shared::default());
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
            .await?,
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
        tasks.push(tokio::spawn(bind_task(
            esme,
            config.clone(),
            shared.clone(),
            quota,
            deadline,
            start,
        )));
    }
    let mut report = BenchReport::default();
    let mut errors: HashMap<CommandStatus, u64> = HashMap::new();
    let (mut response_us, mut receipt_us) = (Vec::new(), Vec::new());
    let mut last_ack = start;
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
    }
    if let Some(p) = progress {
        p.abort();
    }
    report.sent = shared.sent.load(Ordering::Relaxed);
    report.acked = shared.acked.load(Ordering::Relaxed);
    report.errors = errors.into_iter().map(|(s, n)| (s.to_string(), n)).collect();
    report.receipts_matched = shared.receipts.load(Ordering::Relaxed);
    // Receipts for ids no response ever gave.
    report.receipts_unmatched = shared
        .ids
        .iter()
        .filter(|e| matches!(*e.value(), Track::Early(_)))
        .count() as u64;
    report.receipts_duplicated = shared.duplicated.load(Ordering::Relaxed);
    report.seconds = last_ack.duration_since(start).as_secs_f64().max(1e-6);
    report.acked_per_second = report.acked as f64 / report.seconds;
    report.response_latency = Latency::of(response_us);
    report.receipt_latency = Latency::of(receipt_us);
    Ok(report)
}

fn message(n: u64, long: bool) -> Vec<Vec<u8>> {
    if !long {
        return vec![format!("smpp-proxy bench message {n}").into_bytes()];
    }
    (1..=3u8)
        .map(|part| {
            let mut m = vec![0x05, 0x00, 0x03, (n & 0xff) as u8, 3, part];
            m.extend_from_slice(format!("part {part} of long message {n} ").repeat(4).as_bytes());
            m.truncate(140);
            m
        })
        .collect()
}

async fn bind_task(
    mut esme: Esme,
    config: BenchConfig,
    shared: Arc<Shared>,
    quota: Option<u64>,
    deadline: Option<Instant>,
    start: Instant,
) -> Result<BindResult, EsmeError> {
    let mut result = BindResult {
        errors: HashMap::new(),
        unanswered: 0,
        response_us: Vec::new(),
        receipt_us: Vec::new(),
        ids: Vec::new(),
        last_ack: start,
    };
    let mut outstanding: HashMap<u32, u64> = HashMap::new();
    let mut sent = 0u64;
    let mut queue: Vec<Vec<u8>> = Vec::new();
    let rate_per_bind = f64::from(config.rate) / config.binds.max(1) as f64;
    let mut last_receipt_progress = Instant::now();
    let done_sending = |sent: u64| quota.is_some_and(|q| sent >= q) || deadline.is_some_and(|d| Instant::now() >= d);
    loop {
        // Send while the window and the rate allow.
        let mut fed = false;
        while outstanding.len() < config.window && !done_sending(sent) {
            if rate_per_bind > 0.0 {
                let due = start + Duration::from_secs_f64(sent as f64 / rate_per_bind);
                if Instant::now() < due {
                    break;
                }
            }
            if queue.is_empty() {
                queue = message(sent, config.long);
                queue.reverse();
            }
            let Some(text) = queue.pop() else { break };
            let mut pdu = submit_sm("447700900000", "447700900123", &text, config.receipts);
            if config.long {
                if let crate::pdu::Body::SubmitSm(b) = &mut pdu.body {
                    b.esm_class = 0x40;
                    b.short_message = Bytes::from(text);
                }
            }
            let Ok(seq) = esme.feed(pdu).await else {
                // The connection is gone (a node died): what was outstanding stays unanswered.
                result.unanswered += outstanding.len() as u64;
                return Ok(result);
            };
            outstanding.insert(seq, start.elapsed().as_micros() as u64);
            sent += 1;
            shared.sent.fetch_add(1, Ordering::Relaxed);
            fed = true;
        }
        if fed && esme.flush().await.is_err() {
            result.unanswered += outstanding.len() as u64;
            return Ok(result);
        }
        let receipts_pending =
            config.receipts && shared.receipts.load(Ordering::Relaxed) < shared.acked.load(Ordering::Relaxed);
        if done_sending(sent)
            && outstanding.is_empty()
            && (!receipts_pending || last_receipt_progress.elapsed() >= config.receipt_wait)
        {
            break;
        }
        let wait = if rate_per_bind > 0.0 && outstanding.len() < config.window && !done_sending(sent) {
            Duration::from_millis(1)
        } else {
            Duration::from_millis(200)
        };
        let pdu = match esme.recv(wait).await {
            Ok(pdu) => pdu,
            Err(EsmeError::NoResponse("timeout")) => {
                if !outstanding.is_empty()
                    && Instant::now().duration_since(result.last_ack.max(start)) > Duration::from_secs(60)
                {
                    break;
                }
                continue;
            }
            // The connection is gone: whatever was outstanding stays unanswered.
            Err(_) if outstanding.is_empty() && !receipts_pending => break,
            Err(_) => {
                result.unanswered += outstanding.len() as u64;
                return Ok(result);
            }
        };
        let now = start.elapsed().as_micros() as u64;
        match pdu.command_id() {
            CommandId::SUBMIT_SM_RESP => {
                let Some(sent_at) = outstanding.remove(&pdu.sequence_number) else {
                    continue;
                };
                result.response_us.push(now.saturating_sub(sent_at));
                if pdu.command_status.is_ok() {
                    shared.acked.fetch_add(1, Ordering::Relaxed);
                    result.last_ack = Instant::now();
                    let id = pdu
                        .message_id()
                        .map(|m| String::from_utf8_lossy(m.as_bytes()).into_owned())
                        .unwrap_or_default();
                    if config.receipts {
                        match shared.ids.entry(id.clone()) {
                            Entry::Vacant(v) => {
                                v.insert(Track::Sent(sent_at));
                            }
                            Entry::Occupied(mut o) => {
                                if let Track::Early(at) = *o.get() {
                                    o.insert(Track::Done);
                                    shared.receipts.fetch_add(1, Ordering::Relaxed);
                                    result.receipt_us.push(at.saturating_sub(sent_at));
                                }
                            }
                        }
                    }
                    result.ids.push(id);
                } else {
                    *result.errors.entry(pdu.command_status).or_default() += 1;
                }
            }
            CommandId::DELIVER_SM | CommandId::DATA_SM => {
                // Unanswered, it comes again through another bind: not counted here.
                if esme.ack(&pdu).await.is_err() {
                    result.unanswered += outstanding.len() as u64;
                    return Ok(result);
                }
                if let Some(r) = Receipt::from_pdu(&pdu) {
                    last_receipt_progress = Instant::now();
                    let id = r
                        .id()
                        .map(|b| String::from_utf8_lossy(b).into_owned())
                        .unwrap_or_default();
                    match shared.ids.entry(id) {
                        // A receipt can beat its submit_sm_resp to this bind: remember it.
                        Entry::Vacant(v) => {
                            v.insert(Track::Early(now));
                        }
                        Entry::Occupied(mut o) => match *o.get() {
                            Track::Sent(sent_at) => {
                                o.insert(Track::Done);
                                shared.receipts.fetch_add(1, Ordering::Relaxed);
                                result.receipt_us.push(now.saturating_sub(sent_at));
                            }
                            Track::Early(_) | Track::Done => {
                                shared.duplicated.fetch_add(1, Ordering::Relaxed);
                            }
                        },
                    }
                }
            }
            CommandId::ENQUIRE_LINK | CommandId::UNBIND => esme.ack(&pdu).await?,
            _ => {}
        }
    }
    result.unanswered += outstanding.len() as u64;
    let _ = esme.unbind().await;
    Ok(result)
}
