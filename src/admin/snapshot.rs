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
            .map(|figures| UpstreamStatus {
                figures,
                sessions_bound: 0,
                sessions: 0,
                inflight: 0,
            })
            .collect();
        for session in &ctx.sessions {
            if let Some(u) = upstreams.iter_mut().find(|u| *u.figures.name == *session.upstream.name) {
                u.sessions += 1;
                u.sessions_bound += u32::from(session.is_bound());
                u.inflight += session.inflight();
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
            })
            .collect();
        clients.sort_by(|a, b| a.system_id.cmp(&b.system_id));
        Snapshot {
            node_id: ctx.config.node_id.clone(),
            correlations: ctx.store.correlations(),
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
            cluster: None,
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
        let totals: [(&str, &str, &str, Option<u64>); 6] = [
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
        ];
        type PerClient = fn(&ClientStatus) -> f64;
        let per_client: [(&str, &str, &str, PerClient); 4] = [
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
        ];
        type PerUpstream = fn(&UpstreamStatus) -> f64;
        let per_upstream: [(&str, &str, &str, PerUpstream); 11] = [
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
        let head = |out: &mut String, name: &str, kind: &str, help: &str| {
            let _ = writeln!(out, "# HELP smpp_proxy_{name} {help}\n# TYPE smpp_proxy_{name} {kind}");
        };
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
        if let Some(cluster) = &self.cluster {
            self.cluster_metrics(&mut out, cluster);
        }
        out
    }
}

impl Snapshot {
    fn cluster_metrics(&self, out: &mut String, cluster: &ClusterStatus) {
        let head = |out: &mut String, name: &str, kind: &str, help: &str| {
            let _ = writeln!(out, "# HELP smpp_proxy_{name} {help}\n# TYPE smpp_proxy_{name} {kind}");
        };
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

/// A label value with `\`, `"` and newlines escaped, as the format asks.
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}
