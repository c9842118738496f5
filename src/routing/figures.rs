//! What the router shows of itself for `/status`, `/metrics` and `smpp-proxy status`: every
//! upstream's state and measurements, every group's strategy and active member.

use super::{Router, Slot, Target};
use crate::config::Strategy;
use crate::upstream::load;
use std::sync::atomic::Ordering;
use std::time::Instant;

impl Router {
    /// Every upstream's figures now, in config order.
    pub fn upstream_figures(&self) -> Vec<UpstreamFigures> {
        let now = Instant::now();
        let views: Vec<(load::LoadView, &Slot)> = self
            .upstreams
            .iter()
            .enumerate()
            .map(|(u, s)| {
                // Slow start as long as the longest of the groups it is directly in.
                let slow_start = self
                    .groups
                    .iter()
                    .filter(|g| g.members.contains(&Target::Upstream(u)))
                    .map(|g| g.config.slow_start)
                    .max()
                    .unwrap_or_default();
                let bound = s.sessions.iter().any(|x| x.is_bound());
                (s.info.load.view(now, bound, slow_start), s)
            })
            .collect();
        let total_rate: f64 = views.iter().map(|(v, _)| v.rate).sum();
        views
            .into_iter()
            .map(|(v, s)| {
                let c = &s.info.load.counters;
                let state = if v.ejected_for.is_some() {
                    "ejected"
                } else if !v.available {
                    "unbound"
                } else if v.ramp < 1.0 {
                    "slow-start"
                } else {
                    "available"
                };
                UpstreamFigures {
                    name: s.info.name.to_string(),
                    state,
                    rtt_ms: v.rtt * 1e3,
                    rate: v.rate,
                    share: if total_rate > 0.0 { v.rate / total_rate } else { 0.0 },
                    limit: v.limit,
                    picked: c.picked.load(Ordering::Relaxed),
                    acked: c.acked.load(Ordering::Relaxed),
                    throttled: c.throttled.load(Ordering::Relaxed),
                    link_errors: c.link_errors.load(Ordering::Relaxed),
                }
            })
            .collect()
    }

    /// Every group: its strategy and, for failover, the member carrying traffic.
    pub fn group_figures(&self) -> Vec<GroupFigures> {
        self.groups
            .iter()
            .enumerate()
            .map(|(gi, g)| GroupFigures {
                name: g.config.name.clone(),
                strategy: g.config.strategy,
                members: g.config.members.clone(),
                active: (g.config.strategy == Strategy::Failover)
                    .then(|| self.member_name(gi, g.active.load(Ordering::Relaxed)).to_owned()),
            })
            .collect()
    }

    /// Concatenated messages whose parts are being kept together.
    pub fn concatenations_in_progress(&self) -> usize {
        self.affinity.len()
    }
}

/// One upstream's health and load, for status and metrics.
#[derive(Debug, Clone)]
pub struct UpstreamFigures {
    /// Its name.
    pub name: String,
    /// `available`, `slow-start`, `ejected` or `unbound`.
    pub state: &'static str,
    /// Latency estimate (peak EWMA), milliseconds.
    pub rtt_ms: f64,
    /// Acknowledged per second, smoothed.
    pub rate: f64,
    /// Its share of all upstreams' acknowledged rate.
    pub share: f64,
    /// The adaptive rate cap its throttling set, if any.
    pub limit: Option<f64>,
    /// Requests routed to it since start.
    pub picked: u64,
    /// Answers (not throttles or link errors) since start.
    pub acked: u64,
    /// Throttle answers since start.
    pub throttled: u64,
    /// Timeouts and ESME_RSYSERR since start.
    pub link_errors: u64,
}

/// One group, for status.
#[derive(Debug, Clone)]
pub struct GroupFigures {
    /// Its name.
    pub name: String,
    /// Its strategy.
    pub strategy: Strategy,
    /// Its members.
    pub members: Vec<String>,
    /// The member carrying traffic (failover groups).
    pub active: Option<String>,
}
