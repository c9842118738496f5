//! One consistent-enough reading of the proxy's counters and upstream health: atomics read
//! one after another, no locks. Rendered as JSON (`/status`, `smpp-proxy status`) and as the
//! Prometheus text format (`/metrics`).

use crate::cluster::ClusterStatus;
use crate::context::Context;
use crate::routing::{GroupFigures, UpstreamFigures};
use serde::{Deserialize, Serialize};
use std::fmt::Write;
use std::sync::atomic::Ordering;

/// Everything `/status` shows.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Snapshot {
    /// The node's id.
    pub node_id: String,
    /// Correlations held (submissions waiting for a final receipt), where the store can count
    /// them cheaply (not a shared one).
    pub correlations: Option<u64>,
    /// Receipt and MO counters.
    pub counters: Counters,
    /// Every upstream, in config order.
    pub upstreams: Vec<UpstreamStatus>,
    /// Every routing group.
    pub groups: Vec<GroupFigures>,
    /// Concatenated messages whose parts are being kept on one upstream.
    pub concatenations_in_progress: u64,
    /// Every client account, by system_id.
    pub clients: Vec<ClientStatus>,
    /// The store: `ok`, or `failed` while it refuses work (a write failed at the file, or the
    /// shared store does not answer).
    #[serde(default)]
    pub store: StoreStatus,
    /// The SMPP listener: connections against `[limits]`, refusals, failed binds.
    #[serde(default)]
    pub listener: ListenerStatus,
    /// The cluster this node is part of (with a shared store), as the store shows it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<ClusterStatus>,
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
    /// Receipts and MO refused to the SMSC for being longer than `sessions.max_pdu_len`.
    #[serde(default)]
    pub deliveries_oversized: u64,
    /// Receipts held now waiting for their submit's correlation, and their bytes.
    #[serde(default)]
    pub early_receipts: u64,
    /// Their bytes.
    #[serde(default)]
    pub early_receipts_bytes: u64,
    /// Receipts refused (ESME_RX_T_APPN) because `[limits] early_receipts_max(_bytes)` was reached.
    #[serde(default)]
    pub early_receipts_refused: u64,
}

/// The store's health.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct StoreStatus {
    /// `ok` or `failed`.
    pub state: String,
    /// Writes that failed at the file (embedded store).
    pub failures: u64,
    /// Times it opened again after one.
    pub reopens: u64,
}

/// The SMPP listener against its limits.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ListenerStatus {
    /// Client connections open now.
    pub connections: u32,
    /// Of them, not bound yet.
    pub unbound: u32,
    /// Connections closed at accept, by the limit that refused them.
    pub refused: std::collections::BTreeMap<String, u64>,
    /// Binds refused for their credentials or address.
    pub bind_failures: u64,
    /// Addresses banned for failed binds (each ban once).
    pub bans: u64,
    /// Log lines lost: the writer was behind, or stderr failed.
    pub log_lines_lost: u64,
    /// Connections that failed at TLS before their first PDU, by why.
    #[serde(default)]
    pub tls_failures: std::collections::BTreeMap<String, u64>,
}

/// One upstream: the router's figures, and its sessions.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UpstreamStatus {
    /// Health and load, as the router measures them.
    #[serde(flatten)]
    pub figures: UpstreamFigures,
    /// Sessions bound now.
    pub sessions_bound: u32,
    /// Sessions configured (a `pair` counts two).
    pub sessions: u32,
    /// Requests in flight across its sessions.
    pub inflight: u32,
    /// deliver_sm / data_sm answered ESME_RX_T_APPN at once (`[limits] unanswered_delivers`).
    #[serde(default)]
    pub delivers_refused: u64,
    /// Why a session of it last failed to connect or bind, while one has not bound since
    /// (`TLS handshake with ...: invalid peer certificate: UnknownIssuer`, `bind refused: ...`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
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
    /// The bytes its outbox holds on this node (`outbox_max_bytes`).
    #[serde(default)]
    pub outbox_bytes: u64,
    /// Deliveries it refused or left unanswered, tried again after a wait.
    #[serde(default)]
    pub redelivered: u64,
    /// Entries dropped because it refused them for good, or too often.
    #[serde(default)]
    pub dropped_refused: u64,
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
            .map(|figures| UpstreamStatus {
                figures,
                sessions_bound: 0,
                sessions: 0,
                inflight: 0,
                delivers_refused: 0,
                last_error: None,
            })
            .collect();
        for session in &ctx.sessions {
            if let Some(u) = upstreams.iter_mut().find(|u| *u.figures.name == *session.upstream.name) {
                u.sessions += 1;
                u.sessions_bound += u32::from(session.is_bound());
                u.inflight += session.inflight();
                u.delivers_refused += session.refused_delivers.load(Ordering::Relaxed);
                if u.last_error.is_none() {
                    u.last_error = session.last_error();
                }
            }
        }
        let groups = ctx.router.group_figures();
        let mut clients: Vec<ClientStatus> = ctx
            .accounts
            .values()
            .map(|a| ClientStatus {
                system_id: a.system_id.to_string(),
                binds: a.binds.load(Ordering::Relaxed),
                outbox: load(&a.outbox_len),
                outbox_refused_full: load(&a.refused_full),
                outbox_expired: load(&a.expired),
                outbox_bytes: a.bytes.held().1,
                redelivered: load(&a.redelivered),
                dropped_refused: load(&a.dropped_refused),
            })
            .collect();
        clients.sort_by(|a, b| a.system_id.cmp(&b.system_id));
        let (early_receipts, early_receipts_bytes, early_receipts_refused) = ctx.early.counts();
        Snapshot {
            node_id: ctx.config.node_id.clone(),
            correlations: ctx.store.correlations(),
            counters: Counters {
                receipts_matched: load(&s.matched_receipts),
                receipts_unmatched: load(&s.unmatched_receipts),
                part_receipts_suppressed: load(&s.part_receipts_suppressed),
                mo_routed: load(&s.mo_routed),
                mo_unroutable: load(&s.mo_unroutable),
                deliveries_oversized: load(&s.oversized_deliveries),
                early_receipts,
                early_receipts_bytes,
                early_receipts_refused,
            },
            upstreams,
            groups,
            concatenations_in_progress: ctx.router.concatenations_in_progress() as u64,
            clients,
            store: {
                let (failures, reopens) = ctx.store.fault_counts();
                let state = if ctx.store.available() { "ok" } else { "failed" };
                StoreStatus {
                    state: state.to_owned(),
                    failures,
                    reopens,
                }
            },
            listener: listener(ctx),
            cluster: None,
        }
    }

    /// Leaves out what names client accounts (for callers without the admin token).
    pub fn hide_names(&mut self) {
        self.clients.clear();
        if let Some(cluster) = &mut self.cluster {
            cluster.clients.clear();
        }
    }

    /// [`Snapshot::take`], and the cluster as the shared store shows it (a store that does not
    /// answer leaves `cluster` out, and says so in the log).
    pub async fn take_with_cluster(ctx: &Context) -> Snapshot {
        let mut snapshot = Snapshot::take(ctx);
        if let Some(cluster) = &ctx.cluster {
            match cluster.status(&ctx.client_ids()).await {
                Ok(status) => snapshot.cluster = Some(status),
                Err(e) => tracing::warn!(error = %e, "cluster status: the store did not answer"),
            }
        }
        snapshot
    }

    /// The Prometheus text exposition format (version 0.0.4).
    pub fn prometheus(&self) -> String {
        let c = &self.counters;
        let totals: [(&str, &str, &str, Option<u64>); 10] = [
            (
                "early_receipts",
                "gauge",
                "Receipts held waiting for their submit's correlation.",
                Some(c.early_receipts),
            ),
            (
                "early_receipts_bytes",
                "gauge",
                "Bytes of the receipts held waiting for their submit's correlation.",
                Some(c.early_receipts_bytes),
            ),
            (
                "early_receipts_refused_total",
                "counter",
                "Receipts the SMSC was asked to send again because early_receipts_max(_bytes) was reached.",
                Some(c.early_receipts_refused),
            ),
            (
                "correlations",
                "gauge",
                "Submissions waiting for a final receipt.",
                self.correlations,
            ),
            (
                "receipts_matched_total",
                "counter",
                "Receipts matched to a submission and passed on.",
                Some(c.receipts_matched),
            ),
            (
                "receipts_unmatched_total",
                "counter",
                "Receipts whose id matched no submission.",
                Some(c.receipts_unmatched),
            ),
            (
                "part_receipts_suppressed_total",
                "counter",
                "Part receipts held back by a client's multipart_receipts.",
                Some(c.part_receipts_suppressed),
            ),
            (
                "mo_routed_total",
                "counter",
                "Mobile-originated messages passed on to a client.",
                Some(c.mo_routed),
            ),
            (
                "mo_unroutable_total",
                "counter",
                "Mobile-originated messages no route matched.",
                Some(c.mo_unroutable),
            ),
            (
                "deliveries_oversized_total",
                "counter",
                "Receipts and MO refused to the SMSC (ESME_RINVMSGLEN) for being longer than sessions.max_pdu_len.",
                Some(c.deliveries_oversized),
            ),
        ];
        type PerClient = fn(&ClientStatus) -> f64;
        let per_client: [(&str, &str, &str, PerClient); 7] = [
            (
                "outbox_bytes",
                "gauge",
                "Bytes of the receipts and MO this node holds for a client.",
                |c| c.outbox_bytes as f64,
            ),
            ("client_binds", "gauge", "Binds open per client account.", |c| {
                f64::from(c.binds)
            }),
            (
                "outbox_entries",
                "gauge",
                "Receipts and MO waiting for a client.",
                |c| c.outbox as f64,
            ),
            (
                "outbox_refused_full_total",
                "counter",
                "Receipts and MO refused because the client's outbox was at outbox_max.",
                |c| c.outbox_refused_full as f64,
            ),
            (
                "outbox_expired_total",
                "counter",
                "Receipts and MO dropped after receipt_ttl.",
                |c| c.outbox_expired as f64,
            ),
            (
                "redeliveries_total",
                "counter",
                "Receipts and MO a client refused or left unanswered, tried again after a backoff.",
                |c| c.redelivered as f64,
            ),
            (
                "deliveries_dropped_total",
                "counter",
                "Receipts and MO dropped because the client refused them for good or too often.",
                |c| c.dropped_refused as f64,
            ),
        ];
        type PerUpstream = fn(&UpstreamStatus) -> f64;
        let per_upstream: [(&str, &str, &str, PerUpstream); 12] = [
            (
                "upstream_delivers_refused_total",
                "counter",
                "deliver_sm / data_sm answered ESME_RX_T_APPN at once: unanswered_delivers reached.",
                |u| u.delivers_refused as f64,
            ),
            (
                "upstream_sessions_bound",
                "gauge",
                "Upstream sessions bound now.",
                |u| f64::from(u.sessions_bound),
            ),
            (
                "upstream_inflight",
                "gauge",
                "Requests in flight to an upstream.",
                |u| f64::from(u.inflight),
            ),
            (
                "upstream_available",
                "gauge",
                "1 while an upstream is in rotation (bound, not ejected).",
                |u| f64::from(u8::from(u.figures.state.in_rotation())),
            ),
            (
                "upstream_picked_total",
                "counter",
                "Requests routed to an upstream.",
                |u| u.figures.picked as f64,
            ),
            (
                "upstream_acked_total",
                "counter",
                "Answers from an upstream other than throttles and link errors.",
                |u| u.figures.acked as f64,
            ),
            (
                "upstream_throttled_total",
                "counter",
                "ESME_RTHROTTLED / ESME_RMSGQFUL from an upstream.",
                |u| u.figures.throttled as f64,
            ),
            (
                "upstream_link_errors_total",
                "counter",
                "Response timeouts and ESME_RSYSERR from an upstream.",
                |u| u.figures.link_errors as f64,
            ),
            (
                "upstream_latency_seconds",
                "gauge",
                "Latency estimate of an upstream (peak EWMA).",
                |u| u.figures.rtt_ms / 1e3,
            ),
            (
                "upstream_rate",
                "gauge",
                "Messages per second an upstream acknowledges (smoothed).",
                |u| u.figures.rate,
            ),
            (
                "upstream_share",
                "gauge",
                "An upstream's share of all acknowledged traffic.",
                |u| u.figures.share,
            ),
            (
                "upstream_adaptive_limit",
                "gauge",
                "The rate an upstream's throttling taught (0: none).",
                |u| u.figures.adaptive_limit.unwrap_or(0.0),
            ),
        ];
        let mut out = String::with_capacity(8192);
        for (name, kind, help, value) in totals {
            let Some(value) = value else { continue };
            head(&mut out, name, kind, help);
            let _ = writeln!(out, "smpp_proxy_{name} {value}");
        }
        for (name, kind, help, f) in per_client {
            head(&mut out, name, kind, help);
            for cl in &self.clients {
                let _ = writeln!(
                    out,
                    "smpp_proxy_{name}{{client=\"{}\"}} {}",
                    escape(&cl.system_id),
                    f(cl)
                );
            }
        }
        for (name, kind, help, f) in per_upstream {
            head(&mut out, name, kind, help);
            for u in &self.upstreams {
                let _ = writeln!(
                    out,
                    "smpp_proxy_{name}{{upstream=\"{}\"}} {}",
                    escape(&u.figures.name),
                    f(u)
                );
            }
        }
        self.listener_metrics(&mut out);
        if let Some(cluster) = &self.cluster {
            self.cluster_metrics(&mut out, cluster);
        }
        out
    }
}

fn listener(ctx: &Context) -> ListenerStatus {
    let (connections, unbound) = ctx.guard.conns.open();
    let refused = crate::guard::Refusal::ALL
        .iter()
        .zip(ctx.guard.conns.refused())
        .map(|(why, n)| (why.as_str().to_owned(), n))
        .collect();
    let (bind_failures, bans) = ctx.guard.auth.counts();
    ListenerStatus {
        connections,
        unbound,
        refused,
        bind_failures,
        bans,
        log_lines_lost: crate::logging::lines_lost(),
        tls_failures: ctx
            .guard
            .tls
            .counts()
            .into_iter()
            .map(|(why, n)| (why.to_owned(), n))
            .collect(),
    }
}

impl Snapshot {
    fn listener_metrics(&self, out: &mut String) {
        let l = &self.listener;
        let plain: [(&str, &str, &str, u64); 8] = [
            (
                "store_up",
                "gauge",
                "1 while the store takes work.",
                u64::from(self.store.state == "ok"),
            ),
            (
                "store_failures_total",
                "counter",
                "Writes that failed at the store's file.",
                self.store.failures,
            ),
            (
                "store_reopens_total",
                "counter",
                "Times the store opened again after a failed write.",
                self.store.reopens,
            ),
            (
                "connections",
                "gauge",
                "Client connections open.",
                u64::from(l.connections),
            ),
            (
                "connections_unbound",
                "gauge",
                "Client connections not bound yet.",
                u64::from(l.unbound),
            ),
            (
                "bind_failures_total",
                "counter",
                "Binds refused for their credentials, address or TLS.",
                l.bind_failures,
            ),
            (
                "auth_bans_total",
                "counter",
                "Addresses banned for failed binds.",
                l.bans,
            ),
            (
                "log_lines_lost_total",
                "counter",
                "Log lines dropped or failed by stderr.",
                l.log_lines_lost,
            ),
        ];
        for (name, kind, help, value) in plain {
            head(out, name, kind, help);
            let _ = writeln!(out, "smpp_proxy_{name} {value}");
        }
        by_reason(
            out,
            "connections_refused_total",
            "Client connections closed at accept, by limit.",
            &l.refused,
        );
        by_reason(
            out,
            "tls_handshake_failures_total",
            "Connections that failed at TLS before their first PDU: plaintext on the TLS listener, TLS on the plaintext one, handshakes.",
            &l.tls_failures,
        );
    }
}

impl Snapshot {
    fn cluster_metrics(&self, out: &mut String, cluster: &ClusterStatus) {
        head(
            out,
            "cluster_nodes_alive",
            "gauge",
            "Nodes of the cluster with a heartbeat.",
        );
        let alive = cluster.nodes.iter().filter(|n| n.alive).count();
        let _ = writeln!(out, "smpp_proxy_cluster_nodes_alive {alive}");
        head(out, "cluster_store_up", "gauge", "1 while the shared store answers.");
        let _ = writeln!(out, "smpp_proxy_cluster_store_up {}", u8::from(cluster.store_up));
        head(
            out,
            "cluster_store_changes_total",
            "counter",
            "Times the shared store stopped or started answering.",
        );
        let _ = writeln!(out, "smpp_proxy_cluster_store_changes_total {}", cluster.store_changes);
        head(
            out,
            "cluster_client_binds",
            "gauge",
            "Binds per client per node, across the cluster.",
        );
        for c in &cluster.clients {
            for (node, n) in &c.binds {
                let _ = writeln!(
                    out,
                    "smpp_proxy_cluster_client_binds{{client=\"{}\",node=\"{}\"}} {n}",
                    escape(&c.system_id),
                    escape(node)
                );
            }
        }
        head(
            out,
            "cluster_outbox_entries",
            "gauge",
            "Receipts and MO waiting for a client in the shared outbox.",
        );
        for c in &cluster.clients {
            let _ = writeln!(
                out,
                "smpp_proxy_cluster_outbox_entries{{client=\"{}\"}} {}",
                escape(&c.system_id),
                c.outbox
            );
        }
    }
}

/// The `# HELP` and `# TYPE` lines of metric `smpp_proxy_{name}`.
fn head(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP smpp_proxy_{name} {help}\n# TYPE smpp_proxy_{name} {kind}");
}

/// Counter `smpp_proxy_{name}` with one line per `reason` label.
fn by_reason(out: &mut String, name: &str, help: &str, counts: &std::collections::BTreeMap<String, u64>) {
    head(out, name, "counter", help);
    for (reason, n) in counts {
        let _ = writeln!(out, "smpp_proxy_{name}{{reason=\"{reason}\"}} {n}");
    }
}

/// A label value with `\`, `"` and newlines escaped, as the format asks.
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}
