//! The last 15 minutes of each upstream (state, share, latency, rate), sampled every few
//! seconds, and the changes worth a line (an upstream's state, a group's active member,
//! operator actions, reloads): what the status page charts and lists (`GET /history`).
//! Bounded: a fixed number of samples and events, the oldest dropped.

use crate::routing::{GroupFigures, UpstreamFigures};
use serde::Serialize;
use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

/// How often a sample is taken (by the proxy's sweep).
pub const EVERY: Duration = Duration::from_secs(5);
/// Samples kept: 15 minutes' worth.
const SAMPLES: usize = 15 * 60 / 5;
/// Events kept.
const EVENTS: usize = 100;

/// One upstream at one moment.
#[derive(Debug, Clone, Serialize)]
pub struct Point {
    /// Its name.
    pub name: String,
    /// Its state (`available`, `unbound`, `draining`...).
    pub state: String,
    /// Its share of the traffic.
    pub share: f64,
    /// Its latency estimate, ms.
    pub rtt_ms: f64,
    /// Messages per second it acknowledges.
    pub rate: f64,
}

/// Every upstream at one moment.
#[derive(Debug, Clone, Serialize)]
pub struct Sample {
    /// Unix milliseconds.
    pub t: u64,
    /// In config order.
    pub upstreams: Vec<Point>,
}

/// A change worth a line.
#[derive(Debug, Clone, Serialize)]
pub struct Event {
    /// Unix milliseconds.
    pub t: u64,
    /// What happened.
    pub what: String,
    /// It names client accounts (shown only to callers with the admin token).
    #[serde(skip)]
    pub names_clients: bool,
}

/// What `GET /history` serves.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Recent {
    /// Oldest first.
    pub samples: Vec<Sample>,
    /// Oldest first.
    pub events: Vec<Event>,
}

/// The history, written by the sweep and by the admin endpoint.
#[derive(Debug, Default)]
pub struct History {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    samples: VecDeque<Sample>,
    events: VecDeque<Event>,
    /// Each upstream's state, and each group's active member, as last sampled.
    states: HashMap<String, String>,
    active: HashMap<String, Option<String>>,
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl Inner {
    fn note(&mut self, t: u64, what: String, names_clients: bool) {
        if self.events.len() == EVENTS {
            self.events.pop_front();
        }
        self.events.push_back(Event { t, what, names_clients });
    }
}

impl History {
    /// Samples `upstreams`, and notes every state (and `groups`' active member) that changed
    /// since the last.
    pub fn record(&self, upstreams: &[UpstreamFigures], groups: &[GroupFigures]) {
        let t = now_ms();
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        for u in upstreams {
            let state = u.state.as_str();
            let was = inner.states.insert(u.name.clone(), state.to_owned());
            if let Some(was) = was.filter(|w| w != state) {
                inner.note(t, format!("upstream {}: {was} -> {state}", u.name), false);
            }
        }
        for g in groups {
            let was = inner.active.insert(g.name.clone(), g.active.clone());
            if let Some(was) = was.filter(|w| *w != g.active) {
                let name = |m: &Option<String>| m.clone().unwrap_or_else(|| "-".to_owned());
                inner.note(
                    t,
                    format!("group {}: active {} -> {}", g.name, name(&was), name(&g.active)),
                    false,
                );
            }
        }
        if inner.samples.len() == SAMPLES {
            inner.samples.pop_front();
        }
        let upstreams = upstreams
            .iter()
            .map(|u| Point {
                name: u.name.clone(),
                state: u.state.as_str().to_owned(),
                share: u.share,
                rtt_ms: u.rtt_ms,
                rate: u.rate,
            })
            .collect();
        inner.samples.push_back(Sample { t, upstreams });
    }

    /// Notes something an operator or a reload did; `names_clients` when `what` names client
    /// accounts.
    pub fn note(&self, what: String, names_clients: bool) {
        self.inner
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .note(now_ms(), what, names_clients);
    }

    /// Samples and events, oldest first; events naming clients only if `names`.
    pub fn recent(&self, names: bool) -> Recent {
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        Recent {
            samples: inner.samples.iter().cloned().collect(),
            events: inner
                .events
                .iter()
                .filter(|e| names || !e.names_clients)
                .cloned()
                .collect(),
        }
    }
}
