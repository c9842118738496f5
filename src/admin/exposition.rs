//! `/metrics`: a [`Snapshot`] written out by `prometheus-client` in the OpenMetrics text format
//! (what Prometheus asks for; counters end in `_total`, the text ends in `# EOF`).
//!
//! Everything is read at scrape time (the snapshot is the collector), so the figures cost
//! nothing between scrapes. Names follow Prometheus conventions: `smpp_proxy_` first, base
//! units (`_seconds`, `_bytes`), `_total` for counters; the process's own figures carry the
//! usual `process_` names.

use super::snapshot::{ClientStatus, Snapshot, UpstreamStatus};
use crate::histogram::HistogramReading;
use crate::routing::UpstreamState;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
use std::fmt::Error;

/// What `/metrics` answers with.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// A sample's labels.
type Labels = Vec<(&'static str, String)>;

impl Snapshot {
    /// The snapshot in the OpenMetrics text format.
    pub fn prometheus(&self) -> String {
        let mut registry = Registry::default();
        registry.register_collector(Box::new(Process(self.process.clone())));
        registry
            .sub_registry_with_prefix("smpp_proxy")
            .register_collector(Box::new(Proxy(self.clone())));
        let mut out = String::with_capacity(16 * 1024);
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &registry);
        out
    }
}

/// Writes one family: its descriptor, then each sample.
fn family(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    kind: MetricType,
    samples: impl IntoIterator<Item = (Labels, f64)>,
) -> Result<(), Error> {
    let mut metric = enc.encode_descriptor(name, help, None, kind)?;
    // Whole numbers are written as such (`5`, not `5.0`): most figures are counts.
    let write = |sample: &mut MetricEncoder, value: f64| {
        let whole = value.fract() == 0.0 && value.abs() < 1e15;
        match (kind, whole) {
            (MetricType::Counter, true) => sample.encode_counter::<NoLabelSet, u64, f64>(&(value as u64), None),
            (MetricType::Counter, false) => sample.encode_counter::<NoLabelSet, f64, f64>(&value, None),
            (_, true) => sample.encode_gauge(&(value as i64)),
            (_, false) => sample.encode_gauge(&value),
        }
    };
    for (labels, value) in samples {
        // Without labels, the sample is written bare (`name value`, not `name{} value`).
        if labels.is_empty() {
            write(&mut metric, value)?;
        } else {
            write(&mut metric.encode_family(&labels)?, value)?;
        }
    }
    Ok(())
}

/// A family of one sample without labels.
fn single(enc: &mut DescriptorEncoder, name: &str, help: &str, kind: MetricType, value: f64) -> Result<(), Error> {
    family(enc, name, help, kind, [(Labels::new(), value)])
}

/// A histogram family.
fn histograms<'a>(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    samples: impl IntoIterator<Item = (Labels, &'a HistogramReading)>,
) -> Result<(), Error> {
    let mut metric = enc.encode_descriptor(name, help, None, MetricType::Histogram)?;
    for (labels, h) in samples {
        if labels.is_empty() {
            metric.encode_histogram::<NoLabelSet>(h.sum, h.count, &h.buckets, None)?;
        } else {
            let mut sample = metric.encode_family(&labels)?;
            sample.encode_histogram::<NoLabelSet>(h.sum, h.count, &h.buckets, None)?;
        }
    }
    Ok(())
}

fn upstream(u: &UpstreamStatus) -> Labels {
    vec![("upstream", u.figures.name.clone())]
}

fn client(c: &ClientStatus) -> Labels {
    vec![("client", c.system_id.clone())]
}

/// The proxy's own figures.
#[derive(Debug)]
struct Proxy(Snapshot);

/// The process's figures.
#[derive(Debug)]
struct Process(Option<super::ProcessStatus>);

impl Collector for Process {
    fn encode(&self, mut enc: DescriptorEncoder) -> Result<(), Error> {
        let Some(p) = &self.0 else { return Ok(()) };
        use MetricType::{Counter, Gauge};
        let figures: [(&str, &str, MetricType, f64); 5] = [
            (
                "process_resident_memory_bytes",
                "Resident memory size in bytes.",
                Gauge,
                p.resident_memory_bytes as f64,
            ),
            (
                "process_virtual_memory_bytes",
                "Virtual memory size in bytes.",
                Gauge,
                p.virtual_memory_bytes as f64,
            ),
            (
                "process_open_fds",
                "Number of open file descriptors.",
                Gauge,
                p.open_fds as f64,
            ),
            (
                "process_cpu_seconds",
                "Total user and system CPU time spent in seconds.",
                Counter,
                p.cpu_seconds,
            ),
            (
                "process_start_time_seconds",
                "Start time of the process since unix epoch in seconds.",
                Gauge,
                p.start_time_seconds,
            ),
        ];
        for (name, help, kind, value) in figures {
            single(&mut enc, name, help, kind, value)?;
        }
        Ok(())
    }
}

impl Collector for Proxy {
    fn encode(&self, mut enc: DescriptorEncoder) -> Result<(), Error> {
        let s = &self.0;
        let mut info = enc.encode_descriptor("build", "The proxy's version and git commit.", None, MetricType::Info)?;
        info.encode_info(&vec![("version", s.version.clone()), ("commit", s.commit.clone())])?;
        self.totals(&mut enc)?;
        self.clients(&mut enc)?;
        self.upstreams(&mut enc)?;
        self.listener(&mut enc)?;
        self.cluster(&mut enc)
    }
}

impl Proxy {
    fn totals(&self, enc: &mut DescriptorEncoder) -> Result<(), Error> {
        let s = &self.0;
        let c = &s.counters;
        use MetricType::{Counter, Gauge};
        let totals: [(&str, MetricType, &str, u64); 14] = [
            (
                "early_receipts",
                Gauge,
                "Receipts held waiting for their submit's correlation.",
                c.early_receipts,
            ),
            (
                "early_receipts_bytes",
                Gauge,
                "Bytes of the receipts held waiting for their submit's correlation.",
                c.early_receipts_bytes,
            ),
            (
                "early_receipts_refused",
                Counter,
                "Receipts the SMSC was asked to send again because early_receipts_max(_bytes) was reached.",
                c.early_receipts_refused,
            ),
            (
                "receipts_held_early",
                Counter,
                "Receipts that came before their submit's correlation was recorded and were held for it.",
                c.receipts_held_early,
            ),
            (
                "receipts_waiting_for_answer",
                Gauge,
                "Receipts waiting now for their submit's answer to reach the client.",
                c.receipts_waiting_for_answer,
            ),
            (
                "receipts_waited_for_answer",
                Counter,
                "Receipts that came before the client had its submit's answer and waited for it.",
                c.receipts_waited_for_answer,
            ),
            (
                "receipts_matched",
                Counter,
                "Receipts matched to a submission and passed on.",
                c.receipts_matched,
            ),
            (
                "receipts_unmatched",
                Counter,
                "Receipts whose id matched no submission.",
                c.receipts_unmatched,
            ),
            (
                "part_receipts_suppressed",
                Counter,
                "Part receipts held back by a client's multipart_receipts.",
                c.part_receipts_suppressed,
            ),
            (
                "mo_routed",
                Counter,
                "Mobile-originated messages passed on to a client.",
                c.mo_routed,
            ),
            (
                "mo_unroutable",
                Counter,
                "Mobile-originated messages no route matched.",
                c.mo_unroutable,
            ),
            (
                "deliveries_oversized",
                Counter,
                "Receipts and MO refused to the SMSC (ESME_RINVMSGLEN) for being longer than sessions.max_pdu_len.",
                c.deliveries_oversized,
            ),
            (
                "deliveries_unknown_client",
                Counter,
                "Receipts for a client this node's configuration does not name: put in its shared outbox, or without a shared store left with the SMSC (ESME_RX_T_APPN).",
                c.deliveries_unknown_client,
            ),
            (
                "trail_lines_lost",
                Counter,
                "Message trail lines dropped (its writer behind) or failed at its file.",
                c.trail_lines_lost,
            ),
        ];
        for (name, kind, help, value) in totals {
            single(enc, name, help, kind, value as f64)?;
        }
        if let Some(n) = s.correlations {
            single(
                enc,
                "correlations",
                "Submissions waiting for a final receipt.",
                Gauge,
                n as f64,
            )?;
        }
        histograms(
            enc,
            "store_commit_duration_seconds",
            "From a submit's answer mapped to its correlation durable (what the answer waits for).",
            [(Labels::new(), &s.commit_latency)],
        )?;
        family(
            enc,
            "config_reloads",
            "Reloads of the configuration: ok (applied), failed (refused; the running configuration stayed).",
            Counter,
            s.config
                .reloads
                .iter()
                .map(|(result, n)| (vec![("result", result.clone())], *n as f64)),
        )?;
        single(
            enc,
            "config_last_reload_success_timestamp_seconds",
            "When the configuration was last reloaded (Unix time; 0: never).",
            Gauge,
            s.config.last_reload_success as f64,
        )
    }

    fn clients(&self, enc: &mut DescriptorEncoder) -> Result<(), Error> {
        let clients = &self.0.clients;
        use MetricType::{Counter, Gauge};
        type PerClient = fn(&ClientStatus) -> f64;
        let per_client: [(&str, MetricType, &str, PerClient); 9] = [
            ("client_binds", Gauge, "Binds open per client account.", |c| {
                f64::from(c.binds)
            }),
            ("outbox_entries", Gauge, "Receipts and MO waiting for a client.", |c| {
                c.outbox as f64
            }),
            (
                "outbox_bytes",
                Gauge,
                "Bytes of the receipts and MO this node holds for a client.",
                |c| c.outbox_bytes as f64,
            ),
            (
                "outbox_oldest_age_seconds",
                Gauge,
                "How long the oldest receipt or MO held for a client has waited (0: none held).",
                |c| c.outbox_oldest_age as f64,
            ),
            (
                "outbox_refused_full",
                Counter,
                "Receipts and MO refused because the client's outbox was at outbox_max.",
                |c| c.outbox_refused_full as f64,
            ),
            (
                "outbox_expired",
                Counter,
                "Receipts and MO dropped after receipt_ttl.",
                |c| c.outbox_expired as f64,
            ),
            (
                "redeliveries",
                Counter,
                "Receipts and MO a client refused or left unanswered, tried again after a backoff.",
                |c| c.redelivered as f64,
            ),
            (
                "deliveries_direct",
                Counter,
                "Receipts and MO handed straight to a bind by the session that matched them.",
                |c| c.delivered_direct as f64,
            ),
            (
                "deliveries_dropped",
                Counter,
                "Receipts and MO dropped because the client refused them for good or too often.",
                |c| c.dropped_refused as f64,
            ),
        ];
        for (name, kind, help, f) in per_client {
            family(enc, name, help, kind, clients.iter().map(|c| (client(c), f(c))))?;
        }
        family(
            enc,
            "client_submits",
            "Submits answered to a client, by command_status.",
            Counter,
            clients.iter().flat_map(|c| {
                c.submits.iter().map(|(status, n)| {
                    let mut labels = client(c);
                    labels.push(("status", status.clone()));
                    (labels, *n as f64)
                })
            }),
        )?;
        histograms(
            enc,
            "client_submit_duration_seconds",
            "From a client's submit read to its answer written (routing, the SMSC, the correlation's commit).",
            clients.iter().map(|c| (client(c), &c.latency)),
        )
    }

    fn upstreams(&self, enc: &mut DescriptorEncoder) -> Result<(), Error> {
        let upstreams = &self.0.upstreams;
        use MetricType::{Counter, Gauge};
        type PerUpstream = fn(&UpstreamStatus) -> f64;
        let per_upstream: [(&str, MetricType, &str, PerUpstream); 14] = [
            ("upstream_sessions_bound", Gauge, "Upstream sessions bound now.", |u| {
                f64::from(u.sessions_bound)
            }),
            ("upstream_inflight", Gauge, "Requests in flight to an upstream.", |u| {
                f64::from(u.inflight)
            }),
            (
                "upstream_available",
                Gauge,
                "1 while an upstream is in rotation (bound, not ejected, drained or paused).",
                |u| f64::from(u8::from(u.figures.state.in_rotation())),
            ),
            ("upstream_picked", Counter, "Requests routed to an upstream.", |u| {
                u.figures.picked as f64
            }),
            (
                "upstream_acked",
                Counter,
                "Answers from an upstream other than throttles and link errors.",
                |u| u.figures.acked as f64,
            ),
            (
                "upstream_throttled",
                Counter,
                "ESME_RTHROTTLED / ESME_RMSGQFUL from an upstream.",
                |u| u.figures.throttled as f64,
            ),
            (
                "upstream_link_errors",
                Counter,
                "Response timeouts and ESME_RSYSERR from an upstream.",
                |u| u.figures.link_errors as f64,
            ),
            (
                "upstream_delivers_refused",
                Counter,
                "deliver_sm / data_sm answered ESME_RX_T_APPN at once: unanswered_delivers reached.",
                |u| u.delivers_refused as f64,
            ),
            (
                "upstream_sessions_lost",
                Counter,
                "Bound upstream sessions lost (closed, unbound or dead), each followed by a reconnect.",
                |u| u.sessions_lost as f64,
            ),
            (
                "upstream_connect_failures",
                Counter,
                "Connects or binds to an upstream that failed.",
                |u| u.connect_failures as f64,
            ),
            (
                "upstream_latency_seconds",
                Gauge,
                "Latency estimate of an upstream (peak EWMA), what the router weighs.",
                |u| u.figures.rtt_ms / 1e3,
            ),
            (
                "upstream_rate",
                Gauge,
                "Messages per second an upstream acknowledges (smoothed).",
                |u| u.figures.rate,
            ),
            (
                "upstream_share",
                Gauge,
                "An upstream's share of all acknowledged traffic.",
                |u| u.figures.share,
            ),
            (
                "upstream_adaptive_limit",
                Gauge,
                "The rate an upstream's throttling taught (0: none).",
                |u| u.figures.adaptive_limit.unwrap_or(0.0),
            ),
        ];
        for (name, kind, help, f) in per_upstream {
            family(enc, name, help, kind, upstreams.iter().map(|u| (upstream(u), f(u))))?;
        }
        const STATES: [UpstreamState; 6] = [
            UpstreamState::Available,
            UpstreamState::SlowStart,
            UpstreamState::Ejected,
            UpstreamState::Unbound,
            UpstreamState::Draining,
            UpstreamState::Paused,
        ];
        family(
            enc,
            "upstream_state",
            "1 for the state an upstream is in, 0 for the others.",
            Gauge,
            upstreams.iter().flat_map(|u| {
                STATES.iter().map(|state| {
                    let mut labels = upstream(u);
                    labels.push(("state", state.as_str().to_owned()));
                    (labels, f64::from(u8::from(u.figures.state == *state)))
                })
            }),
        )?;
        histograms(
            enc,
            "upstream_submit_duration_seconds",
            "From a request written to an upstream to its answer read.",
            upstreams.iter().map(|u| (upstream(u), &u.latency)),
        )?;
        histograms(
            enc,
            "upstream_receipt_delay_seconds",
            "From a submit to its final receipt, per upstream.",
            upstreams.iter().map(|u| (upstream(u), &u.receipt_delay)),
        )
    }

    fn listener(&self, enc: &mut DescriptorEncoder) -> Result<(), Error> {
        let s = &self.0;
        let l = &s.listener;
        use MetricType::{Counter, Gauge};
        let plain: [(&str, MetricType, &str, u64); 8] = [
            (
                "store_up",
                Gauge,
                "1 while the store takes work.",
                u64::from(s.store.state == "ok"),
            ),
            (
                "store_failures",
                Counter,
                "Writes that failed at the store's file.",
                s.store.failures,
            ),
            (
                "store_reopens",
                Counter,
                "Times the store opened again after a failed write.",
                s.store.reopens,
            ),
            (
                "connections",
                Gauge,
                "Client connections open.",
                u64::from(l.connections),
            ),
            (
                "connections_unbound",
                Gauge,
                "Client connections not bound yet.",
                u64::from(l.unbound),
            ),
            (
                "bind_failures",
                Counter,
                "Binds refused for their credentials, address or TLS.",
                l.bind_failures,
            ),
            ("auth_bans", Counter, "Addresses banned for failed binds.", l.bans),
            (
                "log_lines_lost",
                Counter,
                "Log lines dropped or failed by stderr.",
                l.log_lines_lost,
            ),
        ];
        for (name, kind, help, value) in plain {
            single(enc, name, help, kind, value as f64)?;
        }
        let by_reason = |counts: &std::collections::BTreeMap<String, u64>| {
            counts
                .iter()
                .map(|(reason, n)| (vec![("reason", reason.clone())], *n as f64))
                .collect::<Vec<_>>()
        };
        family(
            enc,
            "connections_refused",
            "Client connections closed at accept, by limit.",
            Counter,
            by_reason(&l.refused),
        )?;
        family(
            enc,
            "tls_handshake_failures",
            "Connections that failed at TLS before their first PDU: plaintext on the TLS listener, TLS on the plaintext one, handshakes.",
            Counter,
            by_reason(&l.tls_failures),
        )
    }

    fn cluster(&self, enc: &mut DescriptorEncoder) -> Result<(), Error> {
        let Some(cluster) = &self.0.cluster else {
            return Ok(());
        };
        use MetricType::{Counter, Gauge};
        let alive = cluster.nodes.iter().filter(|n| n.alive).count();
        single(
            enc,
            "cluster_nodes_alive",
            "Nodes of the cluster with a heartbeat.",
            Gauge,
            alive as f64,
        )?;
        single(
            enc,
            "cluster_store_up",
            "1 while the shared store answers.",
            Gauge,
            f64::from(u8::from(cluster.store_up)),
        )?;
        single(
            enc,
            "cluster_store_changes",
            "Times the shared store stopped or started answering.",
            Counter,
            cluster.store_changes as f64,
        )?;
        family(
            enc,
            "cluster_client_binds",
            "Binds per client per node, across the cluster.",
            Gauge,
            cluster.clients.iter().flat_map(|c| {
                c.binds.iter().map(|(node, n)| {
                    (
                        vec![("client", c.system_id.clone()), ("node", node.clone())],
                        f64::from(*n),
                    )
                })
            }),
        )?;
        family(
            enc,
            "cluster_outbox_entries",
            "Receipts and MO waiting for a client in the shared outbox.",
            Gauge,
            cluster
                .clients
                .iter()
                .map(|c| (vec![("client", c.system_id.clone())], c.outbox as f64)),
        )
    }
}
