//! Where each request goes: `[[routes]]` choose a group per message, the group's strategy
//! chooses a member (an upstream or another group), and within an upstream the session with
//! the most room takes it. Parts of one concatenated message stay on one upstream.
//!
//! - `load-balance`: a random choice weighted by members' measured cost (peak-EWMA latency x
//!   (outstanding + 1)) and the capacity their throttling taught; a member back from an outage
//!   weighs a share that ramps up over `slow_start`; members whose adaptive rate (what the SMSC's throttling taught) or
//!   window is used up, or that are over a `max_share` cap, sit out the pick; unavailable ones
//!   (no bound session, ejected for errors) are skipped.
//! - `failover`: the active member takes everything; when it becomes unavailable the next
//!   available one takes over at once; failback after `failback_after` of uninterrupted health.
//! - `round-robin`: members in turn, blind to measurements (a baseline).
//!
//! The choices themselves are pure functions in [`pick`]; this module takes the snapshots
//! ([`Load`](crate::upstream::load::Load) per upstream, written by the session tasks), applies the rate limits and
//! hands the request to a session's channel. [`Router::tick`] (every 100 ms) advances the
//! measurements, ejects and readmits upstreams, fails back, and logs every change.

// A refused request is handed back by value (no allocation) so the caller can answer or retry it.
#![allow(clippy::result_large_err)]

pub mod concat;
mod figures;
pub mod pick;
pub mod routes;

pub use figures::{GroupFigures, UpstreamFigures, UpstreamState};

use crate::config::{ConcatFailover, Config, GroupConfig, RoutingConfig, Strategy, MAX_MEMBERS};
use crate::messages::Forward;
use crate::pdu::{CommandStatus, Pdu};
use crate::session::threads;
use crate::sharded::Counter;
use crate::upstream::load::Change;
use crate::upstream::{Mode, SessionHandle, UpstreamInfo};
use pick::{Candidate, Standing};
use rand::rngs::SmallRng;
use rand::SeedableRng;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tracing::{info, warn};

/// How often [`Router::tick`] should run.
pub const TICK: Duration = Duration::from_millis(100);
/// Each tick, a group's pick counts keep this share (about a second of memory), for `max_share`.
const PICKS_KEEP: f64 = 0.9;
/// Below this many recent picks a group's shares are not judged.
const SHARE_MIN_PICKS: f64 = 50.0;

type Refused = (Forward, CommandStatus);

/// Why a group could not be failed back.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FailBackError {
    /// No group has that name.
    #[error("no group is called {0:?}")]
    NoSuchGroup(String),
    /// The group balances its members; there is nothing to fail back.
    #[error("{0:?} is not a failover group")]
    NotFailover(String),
    /// None of the group's members can take traffic now.
    #[error("no member of {0:?} is available")]
    NoneAvailable(String),
}

/// Why an upstream's mode could not be set.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ModeError {
    /// No upstream has that name.
    #[error("no upstream is called {0:?}")]
    NoSuchUpstream(String),
    /// It is in that mode already.
    #[error("{0:?} is {1} already")]
    Already(String, &'static str),
}

/// A group member or route target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    Upstream(usize),
    Group(usize),
}

#[derive(Debug)]
struct Slot {
    info: Arc<UpstreamInfo>,
    /// Its sessions that can submit.
    sessions: Vec<Arc<SessionHandle>>,
    /// Whose turn it is among its sessions with equal room (each thread takes its own turns).
    turn: Counter,
}

#[derive(Debug)]
struct Group {
    config: GroupConfig,
    members: Vec<Target>,
    caps: Vec<Option<f64>>,
    /// The member carrying traffic (failover).
    active: AtomicUsize,
    /// The next member's turn (round robin).
    next: AtomicUsize,
    /// Recent picks per member (f64 bits), decayed every tick.
    picks: Vec<AtomicU64>,
}

/// Enabled, and none of its sessions (those that carry submits: a receiver-only upstream has
/// none, and never starts) has finished a first connect and bind yet. Read before whether a
/// session is bound: a session is bound before it is settled, so a settled one seen here is
/// seen bound after.
fn starting(slot: &Slot) -> bool {
    !slot.sessions.is_empty() && slot.info.mode.get() == Mode::Enabled && !slot.sessions.iter().any(|s| s.is_settled())
}

/// One member as the router sees it now.
#[derive(Debug, Clone, Copy)]
struct View {
    available: bool,
    room: bool,
    score: f64,
    ramp: f64,
    since: Option<Instant>,
    /// Available and never lost since it first came up.
    fresh: bool,
    /// Lost at least once (as opposed to not up yet).
    failed: bool,
    /// The rate its SMSC's throttling taught, if any.
    capacity: Option<f64>,
    /// Enabled, and its first connect and bind still under way (a proxy just started, an
    /// upstream just added): requests wait for it (queued by the client session for
    /// `queue_timeout`) rather than being refused.
    starting: bool,
}

/// Routes requests over the upstream sessions.
#[derive(Debug)]
pub struct Router {
    upstreams: Vec<Slot>,
    groups: Vec<Group>,
    names: HashMap<String, Target>,
    rules: Vec<routes::Rule>,
    /// Each client's own `route`, as a group index.
    client_groups: HashMap<String, usize>,
    /// Concatenated messages in progress (a reload's router starts from a copy).
    affinity: concat::Affinity,
    config: RoutingConfig,
    rng: Mutex<SmallRng>,
    /// When the last tick ran, and how many have.
    last_tick: Mutex<(Instant, u64)>,
}

impl Router {
    /// A router over `sessions` as `config` groups and routes them; `seed` feeds its RNG.
    pub fn new(sessions: &[Arc<SessionHandle>], config: &Config, seed: u64) -> Router {
        let mut infos: Vec<Arc<UpstreamInfo>> = Vec::new();
        for s in sessions {
            if !infos.iter().any(|i| i.name == s.upstream.name) {
                infos.push(s.upstream.clone());
            }
        }
        Router::build(&infos, sessions, config, seed, None)
    }

    /// A router over `upstreams` (config order) and their `sessions`, as `config` groups and
    /// routes them. A session joins its upstream by name: while a reload re-establishes an
    /// upstream, its old and new sessions serve side by side under the new settings. `before`
    /// is the router this one replaces: each failover group keeps its active member (by name)
    /// and messages in progress keep their upstream.
    pub fn build(
        upstreams: &[Arc<UpstreamInfo>],
        sessions: &[Arc<SessionHandle>],
        config: &Config,
        seed: u64,
        before: Option<&Router>,
    ) -> Router {
        let mut names = HashMap::new();
        let upstreams: Vec<Slot> = upstreams
            .iter()
            .enumerate()
            .map(|(u, info)| {
                names.insert(info.name.to_string(), Target::Upstream(u));
                Slot {
                    info: info.clone(),
                    sessions: sessions
                        .iter()
                        .filter(|s| s.upstream.name == info.name && s.can_submit() && !s.is_retired())
                        .cloned()
                        .collect(),
                    turn: Counter::default(),
                }
            })
            .collect();
        for (n, name) in config.groups.keys().enumerate() {
            names.insert(name.clone(), Target::Group(n));
        }
        let groups = config
            .groups
            .values()
            .map(|g| Group {
                members: g.members.iter().filter_map(|m| names.get(m).copied()).collect(),
                caps: g.members.iter().map(|m| g.max_share.get(m).copied()).collect(),
                active: AtomicUsize::new(before.map_or(0, |b| b.active_member(g))),
                next: AtomicUsize::new(0),
                picks: g.members.iter().map(|_| AtomicU64::new(0)).collect(),
                config: g.clone(),
            })
            .collect();
        let rules = config
            .routes
            .iter()
            .filter_map(|r| {
                let Some(Target::Group(group)) = names.get(&r.group).copied() else {
                    return None;
                };
                Some(routes::Rule {
                    group,
                    client: r.system_id.clone(),
                    destination_prefix: r.destination_prefix.as_ref().map(|p| p.as_bytes().to_vec()),
                    source: r.source_addr.as_ref().map(|s| s.as_bytes().to_vec()),
                    service_type: r.service_type.as_ref().map(|s| s.as_bytes().to_vec()),
                })
            })
            .collect();
        let client_groups = config
            .clients
            .iter()
            .filter_map(|(id, c)| match names.get(&c.route) {
                Some(Target::Group(g)) => Some((id.clone(), *g)),
                _ => None,
            })
            .collect();
        let affinity = match before {
            Some(b) => {
                let moved = |u: usize| b.upstreams.get(u).and_then(|s| names.get(&*s.info.name));
                b.affinity.remapped(|u| match moved(u) {
                    Some(Target::Upstream(n)) => Some(*n),
                    _ => None,
                })
            }
            None => concat::Affinity::default(),
        };
        Router {
            upstreams,
            groups,
            names,
            rules,
            client_groups,
            affinity,
            config: config.routing.clone(),
            rng: Mutex::new(SmallRng::seed_from_u64(seed)),
            last_tick: Mutex::new(before.map_or((Instant::now(), 0), |b| {
                *b.last_tick.lock().unwrap_or_else(|e| e.into_inner())
            })),
        }
    }

    /// The member of `group` (as configured now) that this router's group of that name has
    /// active, by name; the first when it has none or that member is gone.
    fn active_member(&self, group: &GroupConfig) -> usize {
        let Some(gi) = self.group(&group.name) else {
            return 0;
        };
        let name = self.member_name(gi, self.groups[gi].active.load(Ordering::Acquire));
        group.members.iter().position(|m| m == name).unwrap_or(0)
    }

    /// The index of the group called `name`.
    pub fn group(&self, name: &str) -> Option<usize> {
        match self.names.get(name) {
            Some(Target::Group(g)) => Some(*g),
            _ => None,
        }
    }

    /// Sends a request from `client` where the routes (else the client's own `route`) say,
    /// keeping the parts of a concatenated message together. Gives it back with the status to
    /// answer when it cannot go now: ESME_RTHROTTLED while upstreams are available but full
    /// (the client session queues it) or while none is yet but one's first bind is under way,
    /// ESME_RSYSERR when none is available (or the client is no longer configured), ESME_RSUBMITFAIL for a part whose message lost its upstream
    /// under `concat_failover = "reject"`.
    ///
    /// `request` is `fwd`'s frame parsed (routes and concatenation read its fields).
    pub fn dispatch(&self, client: &str, request: &Pdu, fwd: Forward) -> Result<(), Refused> {
        let now = Instant::now();
        let keys = routes::Keys::of(client, request);
        let group = match routes::select(&self.rules, &keys) {
            Some(group) => group,
            None => match self.client_groups.get(client) {
                Some(&group) => group,
                None => return Err((fwd, CommandStatus::ESME_RSYSERR)),
            },
        };
        let Some((key, part, total)) = concat::key_of(client, request) else {
            return self.to_target(Target::Group(group), fwd, now).map(drop);
        };
        if let Some(u) = self.affinity.pinned(key).filter(|&u| u < self.upstreams.len()) {
            if self.view(Target::Upstream(u), now, Duration::ZERO).available {
                let u = self.to_upstream(u, fwd, now, true)?;
                self.affinity.routed(key, part, total, u, now);
                return Ok(());
            }
            if self.config.concat_failover == ConcatFailover::Reject {
                return Err((fwd, CommandStatus::ESME_RSUBMITFAIL));
            }
            info!(client, upstream = %self.upstreams[u].info.name, "upstream lost between parts: the rest of the message goes elsewhere");
        }
        let u = self.to_target(Target::Group(group), fwd, now)?;
        self.affinity.routed(key, part, total, u, now);
        Ok(())
    }

    /// Sends a request to one upstream by name (query/cancel/replace go where the message went).
    pub fn dispatch_to_upstream(&self, name: &str, fwd: Forward) -> Result<(), Refused> {
        match self.names.get(name) {
            Some(&Target::Upstream(u)) => self.to_upstream(u, fwd, Instant::now(), false).map(drop),
            _ => Err((fwd, CommandStatus::ESME_RSYSERR)),
        }
    }

    fn to_target(&self, target: Target, fwd: Forward, now: Instant) -> Result<usize, Refused> {
        match target {
            Target::Upstream(u) => self.to_upstream(u, fwd, now, true),
            Target::Group(g) => self.to_group(g, fwd, now),
        }
    }

    fn to_group(&self, gi: usize, mut fwd: Forward, now: Instant) -> Result<usize, Refused> {
        let g = &self.groups[gi];
        let n = g.members.len().min(MAX_MEMBERS);
        let mut views = [View {
            available: false,
            room: false,
            score: 0.0,
            ramp: 1.0,
            since: None,
            fresh: false,
            failed: false,
            capacity: None,
            starting: false,
        }; MAX_MEMBERS];
        for (k, m) in g.members.iter().take(n).enumerate() {
            views[k] = self.view(*m, now, g.config.slow_start);
        }
        let any_available = views[..n].iter().any(|v| v.available);
        if !any_available {
            let status = if views[..n].iter().any(|v| v.starting) {
                CommandStatus::ESME_RTHROTTLED
            } else {
                CommandStatus::ESME_RSYSERR
            };
            return Err((fwd, status));
        }
        if g.config.strategy == Strategy::Failover {
            let k = self.failover_member(gi, &views[..n]);
            return self.to_target(g.members[k], fwd, now);
        }
        let adaptive = g.config.strategy == Strategy::LoadBalance;
        let total: f64 = g.picks.iter().map(|p| f64::from_bits(p.load(Ordering::Relaxed))).sum();
        let mut cands = [Candidate::new(0.0); MAX_MEMBERS];
        for k in 0..n {
            let over_cap = g.caps[k].is_some_and(|cap| {
                total >= SHARE_MIN_PICKS && f64::from_bits(g.picks[k].load(Ordering::Relaxed)) / total > cap
            });
            cands[k] = Candidate {
                usable: views[k].available && (views[k].room || !adaptive) && !over_cap,
                score: views[k].score,
                ramp: views[k].ramp,
                capacity: views[k].capacity,
            };
        }
        let start = g.next.fetch_add(1, Ordering::Relaxed);
        loop {
            let chosen = match g.config.strategy {
                Strategy::RoundRobin => pick::round_robin(&cands[..n], start),
                _ => pick::weighted(&cands[..n], &mut *self.rng.lock().unwrap_or_else(|e| e.into_inner())),
            };
            let Some(k) = chosen else {
                return Err((fwd, CommandStatus::ESME_RTHROTTLED));
            };
            let sent = match g.members[k] {
                Target::Upstream(u) => self.to_upstream(u, fwd, now, adaptive),
                group => self.to_target(group, fwd, now),
            };
            match sent {
                Ok(u) => {
                    let p = &g.picks[k];
                    let _ = p.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| {
                        Some((f64::from_bits(b) + 1.0).to_bits())
                    });
                    return Ok(u);
                }
                Err((back, _)) => {
                    cands[k].usable = false;
                    fwd = back;
                }
            }
        }
    }

    /// The failover member to use now: the active one if available, else the first available
    /// (switching at once, logged). Failback is the tick's job.
    fn failover_member(&self, gi: usize, views: &[View]) -> usize {
        let g = &self.groups[gi];
        let active = g.active.load(Ordering::Acquire);
        if views.get(active).is_some_and(|v| v.available) {
            return active;
        }
        let Some(next) = views.iter().position(|v| v.available) else {
            return active;
        };
        if g.active
            .compare_exchange(active, next, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            warn!(group = %g.config.name, from = %self.member_name(gi, active), to = %self.member_name(gi, next), "failover: active member unavailable");
        }
        next
    }

    fn member_name(&self, gi: usize, k: usize) -> &str {
        self.groups[gi].config.members.get(k).map_or("?", String::as_str)
    }

    /// Hands `fwd` to the session of upstream `u` with the most room, within its tps cap and
    /// (when `adaptive`) the rate its throttling taught; gives back the upstream's index.
    fn to_upstream(&self, u: usize, mut fwd: Forward, now: Instant, adaptive: bool) -> Result<usize, Refused> {
        let slot = &self.upstreams[u];
        let sessions = &slot.sessions;
        let starting = starting(slot);
        if !sessions.iter().any(|s| s.is_bound()) {
            let status = if starting {
                CommandStatus::ESME_RTHROTTLED
            } else {
                CommandStatus::ESME_RSYSERR
            };
            return Err((fwd, status));
        }
        if !slot.info.bucket.try_take(|| now) {
            return Err((fwd, CommandStatus::ESME_RTHROTTLED));
        }
        if adaptive && !slot.info.load.try_take(now) {
            slot.info.bucket.give_back();
            return Err((fwd, CommandStatus::ESME_RTHROTTLED));
        }
        let turn = slot.turn.next_turn() as usize;
        let here = threads::current();
        let near = |i: usize| here != 0 && sessions[i].thread() == here;
        let first = threads::prefer_near(sessions.len(), |i| sessions[i].free_window(), near, turn);
        // The fullest-first order after the first choice hardly matters: refusals are rare
        // (the channel is as deep as the window).
        let order = first
            .into_iter()
            .chain((0..sessions.len()).filter(|&i| Some(i) != first));
        for i in order {
            if sessions[i].free_window() == 0 {
                continue;
            }
            match sessions[i].offer(fwd) {
                Ok(()) => {
                    slot.info.load.counters.picked.add(1);
                    return Ok(u);
                }
                Err(back) => fwd = back,
            }
        }
        slot.info.bucket.give_back();
        if adaptive {
            slot.info.load.give_back();
        }
        Err((fwd, CommandStatus::ESME_RTHROTTLED))
    }

    fn view(&self, target: Target, now: Instant, slow_start: Duration) -> View {
        match target {
            Target::Upstream(u) => {
                let slot = &self.upstreams[u];
                let starting = starting(slot);
                let bound = slot.sessions.iter().any(|s| s.is_bound());
                let lv = slot.info.load.view(now, bound, slow_start);
                let outstanding: u32 = slot.sessions.iter().map(|s| s.inflight()).sum();
                View {
                    // Drained or paused by the operator: out of every pick.
                    available: lv.available && slot.info.mode.get() == Mode::Enabled,
                    room: slot.sessions.iter().any(|s| s.free_window() > 0),
                    score: pick::score(lv.rtt, outstanding),
                    ramp: lv.ramp,
                    since: lv.since,
                    fresh: lv.available && lv.fresh,
                    failed: !lv.fresh,
                    capacity: lv.capacity,
                    starting,
                }
            }
            Target::Group(gi) => {
                let g = &self.groups[gi];
                let mut out = View {
                    available: false,
                    room: false,
                    score: f64::INFINITY,
                    ramp: 0.0,
                    since: None,
                    fresh: true,
                    failed: false,
                    capacity: None,
                    starting: false,
                };
                let active = g.active.load(Ordering::Relaxed);
                for (k, m) in g.members.iter().enumerate() {
                    let v = self.view(*m, now, g.config.slow_start);
                    out.failed |= v.failed;
                    out.starting |= v.starting;
                    if !v.available {
                        continue;
                    }
                    let counts = g.config.strategy != Strategy::Failover || k == active || !out.available;
                    out.available = true;
                    out.fresh &= v.fresh;
                    out.since = match (out.since, v.since) {
                        (Some(a), Some(b)) => Some(a.min(b)),
                        (a, b) => a.or(b),
                    };
                    if counts {
                        out.room |= v.room;
                        out.score = out.score.min(v.score);
                        out.ramp = out.ramp.max(v.ramp);
                    }
                }
                out.fresh &= out.available;
                out
            }
        }
    }

    /// Advances measurements, health and failback; expires concatenation pins. Run every
    /// [`TICK`].
    pub fn tick(&self) {
        let now = Instant::now();
        let (dt, ticks) = {
            let mut last = self.last_tick.lock().unwrap_or_else(|e| e.into_inner());
            let dt = now.saturating_duration_since(last.0);
            *last = (now, last.1 + 1);
            (dt, last.1)
        };
        for slot in &self.upstreams {
            let bound = slot.sessions.iter().any(|s| s.is_bound());
            let change = slot
                .info
                .load
                .tick(now, dt, bound, self.config.eject_error_rate, self.config.eject_for);
            let name = &slot.info.name;
            match change {
                Some(Change::Available { returned: false }) => {
                    info!(upstream = %name, "upstream available: in rotation")
                }
                Some(Change::Available { returned: true }) => {
                    info!(upstream = %name, "upstream back: in rotation again, with slow start")
                }
                Some(Change::Unbound) => warn!(upstream = %name, "upstream unavailable: no bound session"),
                Some(Change::Ejected { error_rate }) => warn!(
                    upstream = %name,
                    error_rate = format_args!("{:.0}%", error_rate * 100.0),
                    eject_for = ?self.config.eject_for,
                    "upstream ejected: link errors over the threshold"
                ),
                None => {}
            }
        }
        for (gi, g) in self.groups.iter().enumerate() {
            for p in &g.picks {
                let _ = p.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| {
                    Some((f64::from_bits(b) * PICKS_KEEP).to_bits())
                });
            }
            if g.config.strategy != Strategy::Failover {
                continue;
            }
            let standings: Vec<Standing> = g
                .members
                .iter()
                .map(|m| {
                    let v = self.view(*m, now, g.config.slow_start);
                    Standing {
                        available: v.available,
                        since: v.since,
                        fresh: v.fresh,
                        failed: v.failed,
                    }
                })
                .collect();
            let active = g.active.load(Ordering::Acquire);
            let chosen = pick::failover(&standings, active, g.config.failback, g.config.failback_after, now);
            // Away from an active member only when it failed: one that is not up yet (at start
            // the standby may bind first) keeps its place until a request needs another.
            let failed = standings.get(active).is_some_and(|s| !s.available && s.failed);
            if chosen != active
                && (chosen < active || failed)
                && g.active
                    .compare_exchange(active, chosen, Ordering::AcqRel, Ordering::Acquire)
                    .is_ok()
            {
                let how = if chosen < active { "failback" } else { "failover" };
                warn!(group = %g.config.name, from = %self.member_name(gi, active), to = %self.member_name(gi, chosen), "{how}");
            }
        }
        // Pins live for minutes: a pass over them every second is plenty.
        if ticks.is_multiple_of(10) {
            self.affinity.expire(now, self.config.concat_ttl);
        }
    }

    /// Sets upstream `name`'s mode (drain, pause, enable); gives the one it replaced. The mode
    /// outlives reloads that keep the upstream.
    pub fn set_mode(&self, name: &str, mode: Mode) -> Result<Mode, ModeError> {
        let Some(&Target::Upstream(u)) = self.names.get(name) else {
            return Err(ModeError::NoSuchUpstream(name.to_owned()));
        };
        let cell = &self.upstreams[u].info.mode;
        if cell.get() == mode {
            return Err(ModeError::Already(name.to_owned(), mode.as_str()));
        }
        let was = cell.set(mode);
        warn!(
            upstream = name,
            from = was.as_str(),
            to = mode.as_str(),
            "upstream mode set by the operator"
        );
        Ok(was)
    }

    /// Moves a failover group back to its first available member (what `failback = "manual"`
    /// waits for); says which member carries its traffic now.
    pub fn fail_back(&self, group: &str) -> Result<String, FailBackError> {
        let gi = self
            .group(group)
            .ok_or_else(|| FailBackError::NoSuchGroup(group.to_owned()))?;
        let g = &self.groups[gi];
        if g.config.strategy != Strategy::Failover {
            return Err(FailBackError::NotFailover(group.to_owned()));
        }
        let now = Instant::now();
        let first = g
            .members
            .iter()
            .position(|m| self.view(*m, now, g.config.slow_start).available)
            .ok_or_else(|| FailBackError::NoneAvailable(group.to_owned()))?;
        let was = g.active.swap(first, Ordering::AcqRel);
        if was != first {
            warn!(group, from = %self.member_name(gi, was), to = %self.member_name(gi, first), "failback (asked for)");
        }
        Ok(self.member_name(gi, first).to_owned())
    }
}
