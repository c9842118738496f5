//! What the router shows of itself for `/status`, `/metrics` and `smpp-proxy status`: every
//! upstream's state and measurements, every group's strategy and active member. These are the
//! types `/status` serialises; the admin snapshot adds what the router does not know (session
//! counts).

use super::{Router, Slot, Target};
use crate::config::Strategy;
use crate::upstream::{load, Mode};
use serde::{Deserialize, Serialize};
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
                let state = if s.info.mode.get() == Mode::Paused {
                    UpstreamState::Paused
                } else if s.info.mode.get() == Mode::Draining {
                    UpstreamState::Draining
                } else if v.ejected_for.is_some() {
                    UpstreamState::Ejected
                } else if !v.available {
                    UpstreamState::Unbound
                } else if v.ramp < 1.0 {
                    UpstreamState::SlowStart
                } else {
                    UpstreamState::Available
                };
                UpstreamFigures {
                    name: s.info.name.to_string(),
                    state,
                    rtt_ms: v.rtt * 1e3,
                    rate: v.rate,
                    share: if total_rate > 0.0 { v.rate / total_rate } else { 0.0 },
                    adaptive_limit: v.limit,
                    picked: c.picked.get(),
                    acked: c.acked.get(),
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

    /// Every upstream (what its sessions share: configuration, `tps` bucket, load).
    pub fn upstream_infos(&self) -> impl Iterator<Item = &crate::upstream::UpstreamInfo> {
        self.upstreams.iter().map(|s| &*s.info)
    }

    /// Concatenated messages whose parts are being kept together.
    pub fn concatenations_in_progress(&self) -> usize {
        self.affinity.len()
    }
}

/// Where an upstream stands in the rotation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum UpstreamState {
    /// Bound and taking its full share.
    Available,
    /// Back from an outage, its share ramping up over `slow_start`.
    SlowStart,
    /// Taken out for its error rate, until `eject_for` has passed.
    Ejected,
    /// No session bound that can submit.
    Unbound,
    /// Drained by the operator: bound, no new traffic.
    Draining,
    /// Paused by the operator: unbound.
    Paused,
}

impl UpstreamState {
    /// As `/status` writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            UpstreamState::Available => "available",
            UpstreamState::SlowStart => "slow-start",
            UpstreamState::Ejected => "ejected",
            UpstreamState::Unbound => "unbound",
            UpstreamState::Draining => "draining",
            UpstreamState::Paused => "paused",
        }
    }

    /// Takes traffic (available or slowly starting).
    pub fn in_rotation(self) -> bool {
        matches!(self, UpstreamState::Available | UpstreamState::SlowStart)
    }
}

impl std::fmt::Display for UpstreamState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // `pad`, so that tables can give it a width.
        f.pad(self.as_str())
    }
}

/// One upstream's health and load, for status and metrics.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UpstreamFigures {
    /// Its name.
    pub name: String,
    /// Where it stands in the rotation.
    pub state: UpstreamState,
    /// Latency estimate (peak EWMA), milliseconds.
    pub rtt_ms: f64,
    /// Acknowledged per second, smoothed.
    pub rate: f64,
    /// Its share of all upstreams' acknowledged rate.
    pub share: f64,
    /// The rate cap its throttling taught, if any (messages per second).
    pub adaptive_limit: Option<f64>,
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
#[derive(Debug, Clone, Serialize, Deserialize)]
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
