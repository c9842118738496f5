//! Picks the upstream session for a request. The choice itself ([`pick`]) is a pure function
//! over snapshots with the RNG passed in, so tests are deterministic; [`Router::dispatch`]
//! takes the snapshots, applies the per-upstream rate limits and hands the request over.
//!
//! This version spreads a group's traffic by free window: the session with the most room
//! takes the next request (ties broken at random). Measured-throughput balancing and failover
//! come with the routing issue and plug in here.

// A refused request is handed back by value (no allocation) so the caller can answer or retry it.
#![allow(clippy::result_large_err)]

use crate::pdu::CommandStatus;
use crate::proxy::messages::Forward;
use crate::upstream::SessionHandle;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// One candidate session as the router sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct View {
    /// Requests it can take now (window minus in flight); 0 when not usable.
    pub free: u32,
}

/// The index of the candidate with the most free window; ties at random; `None` if all are full.
pub fn pick(views: &[View], rng: &mut impl Rng) -> Option<usize> {
    let best = views.iter().map(|v| v.free).max().filter(|&f| f > 0)?;
    let ties = views.iter().filter(|v| v.free == best).count();
    let nth = rng.gen_range(0..ties);
    views
        .iter()
        .enumerate()
        .filter(|(_, v)| v.free == best)
        .nth(nth)
        .map(|(i, _)| i)
}

/// Routes requests to the sessions of a group or of one upstream.
#[derive(Debug)]
pub struct Router {
    groups: HashMap<String, Vec<Arc<SessionHandle>>>,
    upstreams: HashMap<String, Vec<Arc<SessionHandle>>>,
    rng: Mutex<SmallRng>,
}

impl Router {
    /// A router over `sessions`, grouped as `groups` (group name → upstream names).
    pub fn new(sessions: &[Arc<SessionHandle>], groups: &HashMap<String, Vec<String>>, seed: u64) -> Router {
        let mut upstreams: HashMap<String, Vec<Arc<SessionHandle>>> = HashMap::new();
        for s in sessions.iter().filter(|s| s.can_submit()) {
            upstreams
                .entry(s.upstream.name.to_string())
                .or_default()
                .push(s.clone());
        }
        let groups = groups
            .iter()
            .map(|(name, members)| {
                let sessions = members
                    .iter()
                    .flat_map(|m| upstreams.get(m).into_iter().flatten().cloned())
                    .collect();
                (name.clone(), sessions)
            })
            .collect();
        Router {
            groups,
            upstreams,
            rng: Mutex::new(SmallRng::seed_from_u64(seed)),
        }
    }

    /// Sends `fwd` to a session of `group`; gives it back with the status to answer if none can
    /// take it (ESME_RTHROTTLED while sessions are bound but full or throttled, else ESME_RSYSERR).
    pub fn dispatch(&self, group: &str, fwd: Forward) -> Result<(), (Forward, CommandStatus)> {
        let sessions = self.groups.get(group).map_or(&[][..], Vec::as_slice);
        self.dispatch_among(sessions, fwd)
    }

    /// Sends `fwd` to a session of one upstream (query/cancel/replace go where the message went).
    pub fn dispatch_to_upstream(&self, upstream: &str, fwd: Forward) -> Result<(), (Forward, CommandStatus)> {
        let sessions = self.upstreams.get(upstream).map_or(&[][..], Vec::as_slice);
        self.dispatch_among(sessions, fwd)
    }

    fn dispatch_among(
        &self,
        sessions: &[Arc<SessionHandle>],
        mut fwd: Forward,
    ) -> Result<(), (Forward, CommandStatus)> {
        let mut views: Vec<View> = sessions.iter().map(|s| View { free: s.free_window() }).collect();
        loop {
            let chosen = {
                let mut rng = self.rng.lock().unwrap_or_else(|e| e.into_inner());
                pick(&views, &mut *rng)
            };
            let Some(i) = chosen else {
                let status = if sessions.iter().any(|s| s.is_bound()) {
                    CommandStatus::ESME_RTHROTTLED
                } else {
                    CommandStatus::ESME_RSYSERR
                };
                return Err((fwd, status));
            };
            let session = &sessions[i];
            if !session.upstream.bucket.try_take() {
                // This upstream is at its tps cap: none of its sessions may take it.
                for (view, s) in views.iter_mut().zip(sessions) {
                    if Arc::ptr_eq(&s.upstream, &session.upstream) {
                        view.free = 0;
                    }
                }
                continue;
            }
            match session.offer(fwd) {
                Ok(()) => return Ok(()),
                Err(back) => {
                    session.upstream.bucket.give_back();
                    views[i].free = 0;
                    fwd = back;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn most_free_wins_ties_are_spread_full_is_none() {
        let mut rng = SmallRng::seed_from_u64(1);
        let views = [View { free: 3 }, View { free: 9 }, View { free: 2 }];
        assert_eq!(pick(&views, &mut rng), Some(1));
        let tied = [View { free: 5 }, View { free: 0 }, View { free: 5 }];
        let mut seen = [0; 3];
        for _ in 0..1000 {
            seen[pick(&tied, &mut rng).unwrap()] += 1;
        }
        assert_eq!(seen[1], 0);
        assert!(seen[0] > 400 && seen[2] > 400, "{seen:?}");
        assert_eq!(pick(&[View { free: 0 }], &mut rng), None);
        assert_eq!(pick(&[], &mut rng), None);
    }
}
