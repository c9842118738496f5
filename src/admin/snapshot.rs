//! One consistent-enough reading of the proxy's counters and upstream health: atomics read
//! one after another, no locks. Rendered as JSON (`/status`, `smpp-proxy status`) and as the
//! Prometheus text format (`/metrics`).

use crate::proxy::Context;
use serde::{Deserialize, Serialize};
use std::fmt::Write;
use std::sync::atomic::Ordering;

/// Everything `/status` shows.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Snapshot {
    /// The node's id.
    pub node_id: String,
    /// Correlations held (submissions waiting for a final receipt).
    pub correlations: u64,
    /// Receipt and MO counters.
    pub counters: Counters,
    /// Every upstream, in config order.
    pub upstreams: Vec<UpstreamStatus>,
    /// Every routing group.
    pub groups: Vec<GroupStatus>,
    /// Concatenated messages whose parts are being kept on one upstream.
    pub concatenations_in_progress: u64,
    /// Every client account, by system_id.
    pub clients: Vec<ClientStatus>,
}

/// Receipt and MO counters since start.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Counters {
    /// Receipts matched to a submission and passed on.
    pub receipts_matched: u64,
    /// Receipts whose id matched no submission.
    pub receipts_unmatched: u64,
    /// Part receipts held back by a client's `multipart_receipts`.
    pub part_receipts_suppressed: u64,
    /// MO passed on to a client.
    pub mo_routed: u64,
    /// MO no route matched.
    pub mo_unroutable: u64,
}

/// One upstream.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UpstreamStatus {
    /// Its name.
    pub name: String,
    /// Sessions bound now.
    pub sessions_bound: u32,
    /// Sessions configured (a `pair` counts two).
    pub sessions: u32,
    /// Requests in flight across its sessions.
    pub inflight: u32,
    /// `available`, `slow-start`, `ejected` or `unbound`.
    pub state: String,
    /// Latency estimate (peak EWMA), milliseconds.
    pub rtt_ms: f64,
    /// Acknowledged per second, smoothed.
    pub rate: f64,
    /// Its share of all upstreams' acknowledged rate (0..1).
    pub share: f64,
    /// The rate cap its throttling taught, if any (messages per second).
    pub adaptive_limit: Option<f64>,
    /// Requests routed to it since start.
    pub picked: u64,
    /// Answers since start (other than throttles and link errors).
    pub acked: u64,
    /// ESME_RTHROTTLED / ESME_RMSGQFUL answers since start.
    pub throttled: u64,
    /// Response timeouts and ESME_RSYSERR since start.
    pub link_errors: u64,
}

/// One routing group.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GroupStatus {
    /// Its name.
    pub name: String,
    /// `load-balance`, `failover` or `round-robin`.
    pub strategy: String,
    /// Its members (upstreams or groups).
    pub members: Vec<String>,
    /// For failover groups: the member carrying traffic.
    pub active: Option<String>,
}

/// One client account.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClientStatus {
    /// Its system_id.
    pub system_id: String,
    /// Binds open now.
    pub binds: u32,
    /// Receipts and MO waiting for it (or in flight to it).
    pub outbox: u64,
    /// Receipts and MO refused because its outbox was at `outbox_max`.
    pub outbox_refused_full: u64,
    /// Entries dropped after `receipt_ttl`.
    pub outbox_expired: u64,
}

impl Snapshot {
    /// Reads the proxy's state now.
    pub fn take(ctx: &Context) -> Snapshot {
        let load = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
        let s = &ctx.stats;
        let mut upstreams: Vec<UpstreamStatus> = ctx
            .router
            .upstream_figures()
            .into_iter()
            .map(|f| UpstreamStatus {
                name: f.name,
                sessions_bound: 0,
                sessions: 0,
                inflight: 0,
                state: f.state.to_owned(),
                rtt_ms: f.rtt_ms,
                rate: f.rate,
                share: f.share,
                adaptive_limit: f.limit,
                picked: f.picked,
                acked: f.acked,
                throttled: f.throttled,
                link_errors: f.link_errors,
            })
            .collect();
        for session in &ctx.sessions {
            if let Some(u) = upstreams.iter_mut().find(|u| *u.name == *session.upstream.name) {
                u.sessions += 1;
                u.sessions_bound += u32::from(session.is_bound());
                u.inflight += session.inflight();
            }
        }
        let groups = ctx
            .router
            .group_figures()
            .into_iter()
            .map(|g| GroupStatus {
                name: g.name,
                strategy: g.strategy.as_str().to_owned(),
                members: g.members,
                active: g.active,
            })
            .collect();
        let mut clients: Vec<ClientStatus> = ctx
            .accounts
            .values()
            .map(|a| ClientStatus {
                system_id: a.system_id.to_string(),
                binds: a.binds.load(Ordering::Relaxed),
                outbox: load(&a.outbox_len),
                outbox_refused_full: load(&a.refused_full),
                outbox_expired: load(&a.expired),
            })
            .collect();
        clients.sort_by(|a, b| a.system_id.cmp(&b.system_id));
        Snapshot {
            node_id: ctx.config.node_id.clone(),
            correlations: ctx.store.len() as u64,
            counters: Counters {
                receipts_matched: load(&s.matched_receipts),
                receipts_unmatched: load(&s.unmatched_receipts),
                part_receipts_suppressed: load(&s.part_receipts_suppressed),
                mo_routed: load(&s.mo_routed),
                mo_unroutable: load(&s.mo_unroutable),
            },
            upstreams,
            groups,
            concatenations_in_progress: ctx.router.concatenations_in_progress() as u64,
            clients,
        }
    }

    /// The Prometheus text exposition format (version 0.0.4).
    pub fn prometheus(&self) -> String {
        let mut out = String::with_capacity(4096);
        let c = &self.counters;
        let mut metric = |name: &str, kind: &str, help: &str, samples: &[(String, u64)]| {
            let _ = writeln!(out, "# HELP smpp_proxy_{name} {help}\n# TYPE smpp_proxy_{name} {kind}");
            for (labels, value) in samples {
                let _ = writeln!(out, "smpp_proxy_{name}{labels} {value}");
            }
        };
        let one = |v: u64| [(String::new(), v)];
        metric(
            "correlations",
            "gauge",
            "Submissions waiting for a final receipt.",
            &one(self.correlations),
        );
        metric(
            "receipts_matched_total",
            "counter",
            "Receipts matched to a submission and passed on.",
            &one(c.receipts_matched),
        );
        metric(
            "receipts_unmatched_total",
            "counter",
            "Receipts whose id matched no submission.",
            &one(c.receipts_unmatched),
        );
        metric(
            "part_receipts_suppressed_total",
            "counter",
            "Part receipts held back by a client's multipart_receipts.",
            &one(c.part_receipts_suppressed),
        );
        metric(
            "mo_routed_total",
            "counter",
            "Mobile-originated messages passed on to a client.",
            &one(c.mo_routed),
        );
        metric(
            "mo_unroutable_total",
            "counter",
            "Mobile-originated messages no route matched.",
            &one(c.mo_unroutable),
        );
        let per_client = |f: fn(&ClientStatus) -> u64| -> Vec<(String, u64)> {
            self.clients
                .iter()
                .map(|cl| (format!("{{client=\"{}\"}}", escape(&cl.system_id)), f(cl)))
                .collect()
        };
        metric(
            "client_binds",
            "gauge",
            "Binds open per client account.",
            &per_client(|c| u64::from(c.binds)),
        );
        metric(
            "outbox_entries",
            "gauge",
            "Receipts and MO waiting for a client.",
            &per_client(|c| c.outbox),
        );
        metric(
            "outbox_refused_full_total",
            "counter",
            "Receipts and MO refused because the client's outbox was at outbox_max.",
            &per_client(|c| c.outbox_refused_full),
        );
        metric(
            "outbox_expired_total",
            "counter",
            "Receipts and MO dropped after receipt_ttl.",
            &per_client(|c| c.outbox_expired),
        );
        let per_upstream = |f: fn(&UpstreamStatus) -> u64| -> Vec<(String, u64)> {
            self.upstreams
                .iter()
                .map(|u| (format!("{{upstream=\"{}\"}}", escape(&u.name)), f(u)))
                .collect()
        };
        metric(
            "upstream_sessions_bound",
            "gauge",
            "Upstream sessions bound now.",
            &per_upstream(|u| u64::from(u.sessions_bound)),
        );
        metric(
            "upstream_inflight",
            "gauge",
            "Requests in flight to an upstream.",
            &per_upstream(|u| u64::from(u.inflight)),
        );
        metric(
            "upstream_available",
            "gauge",
            "1 while an upstream is in rotation (bound, not ejected).",
            &per_upstream(|u| u64::from(u.state == "available" || u.state == "slow-start")),
        );
        metric(
            "upstream_picked_total",
            "counter",
            "Requests routed to an upstream.",
            &per_upstream(|u| u.picked),
        );
        metric(
            "upstream_acked_total",
            "counter",
            "Answers from an upstream other than throttles and link errors.",
            &per_upstream(|u| u.acked),
        );
        metric(
            "upstream_throttled_total",
            "counter",
            "ESME_RTHROTTLED / ESME_RMSGQFUL from an upstream.",
            &per_upstream(|u| u.throttled),
        );
        metric(
            "upstream_link_errors_total",
            "counter",
            "Response timeouts and ESME_RSYSERR from an upstream.",
            &per_upstream(|u| u.link_errors),
        );
        let gauge = |name: &str, help: &str, f: fn(&UpstreamStatus) -> f64, out: &mut String| {
            let _ = writeln!(out, "# HELP smpp_proxy_{name} {help}\n# TYPE smpp_proxy_{name} gauge");
            for u in &self.upstreams {
                let _ = writeln!(out, "smpp_proxy_{name}{{upstream=\"{}\"}} {}", escape(&u.name), f(u));
            }
        };
        gauge(
            "upstream_latency_seconds",
            "Latency estimate of an upstream (peak EWMA).",
            |u| u.rtt_ms / 1e3,
            &mut out,
        );
        gauge(
            "upstream_rate",
            "Messages per second an upstream acknowledges (smoothed).",
            |u| u.rate,
            &mut out,
        );
        gauge(
            "upstream_share",
            "An upstream's share of all acknowledged traffic.",
            |u| u.share,
            &mut out,
        );
        out
    }
}

/// A label value with `\`, `"` and newlines escaped, as the format asks.
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}
