//! One consistent-enough reading of the proxy's counters and upstream health: atomics read
//! one after another, no locks. Rendered as JSON (`/status`, `smpp-proxy status`) and as the
//! Prometheus text format (`/metrics`).

use super::process::ProcessStatus;
use crate::cluster::ClusterStatus;
use crate::context::Context;
use crate::histogram::HistogramReading;
use crate::routing::{GroupFigures, UpstreamFigures};
use serde::{Deserialize, Serialize};
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
    /// Reloads of the configuration.
    #[serde(default)]
    pub config: ConfigStatus,
    /// This process (from `/proc/self`, where there is one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub process: Option<ProcessStatus>,
    /// The proxy's version and the git commit it was built from.
    #[serde(default)]
    pub version: String,
    /// See `version`.
    #[serde(default)]
    pub commit: String,
    /// A submit's answer mapped -> its correlation durable (for `/metrics` only).
    #[serde(skip)]
    pub commit_latency: HistogramReading,
}

/// Reloads of the configuration since start.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ConfigStatus {
    /// Reloads by result: `ok` (applied) or `failed` (refused; the running one stayed).
    pub reloads: std::collections::BTreeMap<String, u64>,
    /// When the last reload was applied (Unix seconds; 0: never).
    pub last_reload_success: u64,
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
    /// Receipts for a client this node's configuration does not name: put in its shared
    /// outbox, or (no shared store) left with the SMSC (ESME_RX_T_APPN).
    #[serde(default)]
    pub deliveries_unknown_client: u64,
    /// Receipts held now waiting for their submit's correlation, and their bytes.
    #[serde(default)]
    pub early_receipts: u64,
    /// Their bytes.
    #[serde(default)]
    pub early_receipts_bytes: u64,
    /// Receipts refused (ESME_RX_T_APPN) because `[limits] early_receipts_max(_bytes)` was reached.
    #[serde(default)]
    pub early_receipts_refused: u64,
    /// Receipts that came before their submit's correlation was recorded and were held for
    /// it, since the start.
    #[serde(default)]
    pub receipts_held_early: u64,
    /// Receipts that came before the client had its submit's answer and waited for it
    /// (found by the store, or among the answers on their way), since the start.
    #[serde(default)]
    pub receipts_waited_for_answer: u64,
    /// Receipts waiting now for their submit's answer to reach the client.
    #[serde(default)]
    pub receipts_waiting_for_answer: u64,
    /// Message trail lines lost: dropped while its writer was behind, or failed at its file.
    #[serde(default)]
    pub trail_lines_lost: u64,
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
    /// Bound sessions lost other than by the proxy's choice.
    #[serde(default)]
    pub sessions_lost: u64,
    /// Connects or binds that failed.
    #[serde(default)]
    pub connect_failures: u64,
    /// Submit -> response (for `/metrics` only).
    #[serde(skip)]
    pub latency: HistogramReading,
    /// Submit -> final receipt (for `/metrics` only).
    #[serde(skip)]
    pub receipt_delay: HistogramReading,
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
    /// Receipts and MO the session that matched them handed straight to a bind on its own
    /// thread (the account holding nothing waiting), since the start.
    #[serde(default)]
    pub delivered_direct: u64,
    /// How long the oldest entry held for it has waited, seconds (0: none held).
    #[serde(default)]
    pub outbox_oldest_age: u64,
    /// Submits answered, by command_status.
    #[serde(default)]
    pub submits: std::collections::BTreeMap<String, u64>,
    /// Submit read -> response written (for `/metrics` only).
    #[serde(skip)]
    pub latency: HistogramReading,
}

impl Snapshot {
    /// Reads the proxy's state now.
    pub fn take(ctx: &Context) -> Snapshot {
        let load = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
        let s = &ctx.stats;
        let live = ctx.live();
        let now = crate::store::unix_now();
        let mut upstreams: Vec<UpstreamStatus> = live
            .router
            .upstream_figures()
            .into_iter()
            .zip(live.router.upstream_infos())
            .map(|(figures, info)| UpstreamStatus {
                figures,
                sessions_bound: 0,
                sessions: 0,
                inflight: 0,
                delivers_refused: load(&info.load.counters.delivers_refused),
                sessions_lost: load(&info.load.counters.sessions_lost),
                connect_failures: load(&info.load.counters.connect_failures),
                latency: info.load.submit_latency.read(),
                receipt_delay: info.load.receipt_delay.read(),
                last_error: None,
            })
            .collect();
        for session in &live.sessions {
            if let Some(u) = upstreams.iter_mut().find(|u| *u.figures.name == *session.upstream.name) {
                u.sessions += 1;
                u.sessions_bound += u32::from(session.is_bound());
                u.inflight += session.inflight();
                if u.last_error.is_none() {
                    u.last_error = session.last_error();
                }
            }
        }
        let groups = live.router.group_figures();
        let mut clients: Vec<ClientStatus> = live
            .accounts
            .values()
            .map(|a| ClientStatus {
                system_id: a.system_id.to_string(),
                binds: a.binds.load(Ordering::Relaxed),
                outbox: load(&a.outbox_len) + a.lanes.inflight(),
                outbox_refused_full: load(&a.refused_full),
                outbox_expired: load(&a.expired),
                outbox_bytes: a.bytes.held().1,
                redelivered: load(&a.redelivered),
                dropped_refused: load(&a.dropped_refused),
                delivered_direct: a.lanes.handed(),
                outbox_oldest_age: match load(&a.oldest) {
                    0 => 0,
                    at => now.saturating_sub(at),
                },
                submits: a
                    .metrics
                    .by_status()
                    .into_iter()
                    .map(|(status, n)| (status.to_string(), n))
                    .collect(),
                latency: a.metrics.submit_latency.read(),
            })
            .collect();
        clients.sort_by(|a, b| a.system_id.cmp(&b.system_id));
        let (early_receipts, early_receipts_bytes, early_receipts_refused) = ctx.early.counts();
        Snapshot {
            node_id: live.config.node_id.clone(),
            correlations: ctx.store.correlations(),
            counters: Counters {
                receipts_matched: s.matched_receipts.get(),
                receipts_unmatched: load(&s.unmatched_receipts),
                part_receipts_suppressed: load(&s.part_receipts_suppressed),
                mo_routed: load(&s.mo_routed),
                mo_unroutable: load(&s.mo_unroutable),
                deliveries_oversized: load(&s.oversized_deliveries),
                deliveries_unknown_client: load(&s.unknown_client_deliveries),
                early_receipts,
                early_receipts_bytes,
                early_receipts_refused,
                receipts_held_early: ctx.early.held_total(),
                receipts_waited_for_answer: ctx.answers_due.parked(),
                receipts_waiting_for_answer: ctx.answers_due.parked_now() as u64,
                trail_lines_lost: ctx.trail.lost(),
            },
            upstreams,
            groups,
            concatenations_in_progress: live.router.concatenations_in_progress() as u64,
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
            config: {
                let counts = &ctx.reloader.counts;
                ConfigStatus {
                    reloads: [("ok", &counts.ok), ("failed", &counts.failed)]
                        .into_iter()
                        .map(|(result, n)| (result.to_owned(), load(n)))
                        .collect(),
                    last_reload_success: load(&counts.last_ok),
                }
            },
            process: ProcessStatus::read(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            commit: env!("SMPP_PROXY_COMMIT").to_owned(),
            commit_latency: s.commit_latency.read(),
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
