//! The choices themselves, as pure functions over snapshots with the RNG and the time passed
//! in, so every one is tested deterministically: power of two choices for load balancing, the
//! round-robin baseline, the failover decision with its failback hysteresis, and the session
//! with the most room within one upstream.

use crate::config::{Failback, MAX_MEMBERS};
use rand::Rng;
use std::time::{Duration, Instant};

/// One member as a pick sees it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Candidate {
    /// Available and with room now.
    pub usable: bool,
    /// Expected cost of one more request (lower is better): latency x (outstanding + 1).
    pub score: f64,
    /// The chance it takes part in a pick (below 1 during slow start).
    pub ramp: f64,
}

impl Candidate {
    /// A usable candidate at full weight.
    pub fn new(score: f64) -> Candidate {
        Candidate {
            usable: true,
            score,
            ramp: 1.0,
        }
    }
}

/// The cost of sending one more request to an upstream with latency `rtt` (seconds) and
/// `outstanding` requests.
pub fn score(rtt: f64, outstanding: u32) -> f64 {
    rtt * f64::from(outstanding + 1)
}

/// Power of two choices: two distinct usable candidates at random, and of those two each wins
/// in proportion to the inverse square of its cost. Links about as good share the traffic (1.0
/// against 1.2 ms: 59 % to 41 % of their pairs) where a strict "cheaper wins" would send
/// everything to the marginally faster one; a link ten times costlier wins 1 % of its pairs,
/// nearly nothing. The best is not always taken (that herds everyone onto it). A candidate in
/// slow start takes part in a pick only with the chance of its ramp, so its share grows with
/// the ramp instead of jumping.
pub fn p2c(candidates: &[Candidate], rng: &mut impl Rng) -> Option<usize> {
    let mut in_pick = [false; MAX_MEMBERS];
    let n = candidates.len().min(in_pick.len());
    for (k, c) in candidates.iter().take(n).enumerate() {
        in_pick[k] = c.usable && (c.ramp >= 1.0 || rng.gen::<f64>() < c.ramp);
    }
    if !in_pick[..n].iter().any(|&u| u) {
        // Only ramping members are left: better them than nothing.
        for (k, c) in candidates.iter().take(n).enumerate() {
            in_pick[k] = c.usable;
        }
    }
    let usable = in_pick[..n].iter().filter(|&&u| u).count();
    let nth_usable = |nth: usize| (0..n).filter(|&k| in_pick[k]).nth(nth);
    match usable {
        0 => None,
        1 => nth_usable(0),
        n => {
            let a = rng.gen_range(0..n);
            let b = (a + rng.gen_range(1..n)) % n;
            let (a, b) = (nth_usable(a)?, nth_usable(b)?);
            let weight = |k: usize| candidates[k].score.max(1e-12).powi(-2);
            let (wa, wb) = (weight(a), weight(b));
            Some(if rng.gen::<f64>() * (wa + wb) < wa { a } else { b })
        }
    }
}

/// The first usable candidate at or after `start`, going round.
pub fn round_robin(candidates: &[Candidate], start: usize) -> Option<usize> {
    let n = candidates.len();
    (0..n).map(|k| (start + k) % n).find(|&i| candidates[i].usable)
}

/// A failover member as the decision sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Standing {
    /// Available now.
    pub available: bool,
    /// Since when, without interruption.
    pub since: Option<Instant>,
    /// Never lost since it first came up (it is starting, not flapping).
    pub fresh: bool,
    /// Lost at least once (as opposed to not up yet).
    pub failed: bool,
}

/// Which member of a failover group carries traffic: the active one while it is available,
/// else the first available in order of preference. With `Failback::Auto`, a more preferred
/// member takes over again once available without interruption for `failback_after`
/// (hysteresis: a link that flaps faster never gets traffic back). A more preferred member
/// that has never failed takes over as soon as it is up, whatever `failback` says: at start
/// the standby may simply have bound first, and that is no failure to recover from.
pub fn failover(
    members: &[Standing],
    active: usize,
    failback: Failback,
    failback_after: Duration,
    now: Instant,
) -> usize {
    let active = active.min(members.len().saturating_sub(1));
    if members.get(active).is_some_and(|m| m.available) {
        let settled = |m: &Standing| {
            m.available
                && (m.fresh
                    || failback == Failback::Auto
                        && m.since
                            .is_some_and(|s| now.saturating_duration_since(s) >= failback_after))
        };
        return members[..active].iter().position(settled).unwrap_or(active);
    }
    members.iter().position(|m| m.available).unwrap_or(active)
}

/// Of `n` sessions with `free(i)` room each, the index of the one with the most; among equals
/// the first from `start` on (pass a counter that moves, and ties take turns); `None` if all
/// are full.
pub fn most_free(n: usize, free: impl Fn(usize) -> u32, start: usize) -> Option<usize> {
    // One pass: the figures move under us.
    let (mut best, mut chosen) = (0, None);
    for i in (0..n).map(|k| (start + k) % n) {
        let f = free(i);
        if f > best {
            (best, chosen) = (f, Some(i));
        }
    }
    chosen
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::SmallRng;
    use rand::SeedableRng;

    fn c(score: f64) -> Candidate {
        Candidate::new(score)
    }

    fn off(score: f64) -> Candidate {
        Candidate {
            usable: false,
            ..c(score)
        }
    }

    #[test]
    fn p2c_favours_cheap_starves_the_costly_and_skips_unusable() {
        let mut rng = SmallRng::seed_from_u64(7);
        let cands = [c(1.0), c(2.0), c(10.0), off(0.1)];
        let mut seen = [0; 4];
        for _ in 0..30_000 {
            seen[p2c(&cands, &mut rng).unwrap()] += 1;
        }
        // Pairs {0,1},{0,2},{1,2} equally likely, each won by 1/cost²: 0 takes 0.80 and 0.99
        // of its pairs, 1 takes 0.20 and 0.96, 2 takes 0.01 and 0.04.
        assert_eq!(seen[3], 0, "unusable");
        assert!(seen[2] < 700, "ten times the cost: nearly nothing: {seen:?}");
        assert!((17_000..18_800).contains(&seen[0]), "{seen:?}");
        assert!((10_800..12_400).contains(&seen[1]), "{seen:?}");
        // Near-equal links share.
        let close = [c(1.0), c(1.2)];
        let first = (0..10_000).filter(|_| p2c(&close, &mut rng) == Some(0)).count();
        assert!((5_600..6_200).contains(&first), "{first}");
        assert_eq!(p2c(&[c(5.0)], &mut rng), Some(0));
        assert_eq!(p2c(&[off(1.0)], &mut rng), None);
    }

    #[test]
    fn scores_grow_with_latency_and_queue() {
        assert!(score(0.01, 0) < score(0.1, 0));
        assert!(score(0.01, 0) < score(0.01, 5));
        assert!((score(0.01, 4) - 0.05).abs() < 1e-12);
    }

    #[test]
    fn a_ramping_candidate_takes_part_by_its_ramp() {
        let mut rng = SmallRng::seed_from_u64(3);
        let count = |ramp: f64, rng: &mut SmallRng| {
            let cands = [c(1.0), c(1.0), Candidate { ramp, ..c(0.5) }];
            (0..10_000).filter(|_| p2c(&cands, rng) == Some(2)).count()
        };
        let (low, high, full) = (count(0.1, &mut rng), count(0.5, &mut rng), count(1.0, &mut rng));
        // In two of three pairs at full weight, winning 0.8 of them (half the others' cost).
        assert!((5_000..5_700).contains(&full), "{full}");
        assert!(low < high && high < full, "{low} {high} {full}");
        assert!((350..750).contains(&low), "{low}");
        let alone = [Candidate { ramp: 0.0, ..c(1.0) }];
        assert_eq!(p2c(&alone, &mut rng), Some(0), "alone it still serves");
    }

    #[test]
    fn round_robin_goes_round_and_skips() {
        let cands = [c(1.0), off(1.0), c(1.0)];
        let picks: Vec<_> = (0..4).map(|s| round_robin(&cands, s).unwrap()).collect();
        assert_eq!(picks, [0, 2, 2, 0]);
    }

    #[test]
    fn failover_moves_at_once_and_fails_back_only_after_a_quiet_period() {
        let t0 = Instant::now();
        let after = Duration::from_secs(30);
        let up = |since: Instant| Standing {
            available: true,
            since: Some(since),
            fresh: false,
            failed: true,
        };
        let down = Standing {
            available: false,
            since: None,
            fresh: false,
            failed: true,
        };
        // At start the standby bound first: the primary takes over as soon as it is up.
        let starting = Standing {
            fresh: true,
            failed: false,
            ..up(t0)
        };
        assert_eq!(failover(&[starting, up(t0)], 1, Failback::Auto, after, t0), 0);
        assert_eq!(failover(&[starting, up(t0)], 1, Failback::Manual, after, t0), 0);
        // Primary down: the standby at once.
        assert_eq!(failover(&[down, up(t0)], 0, Failback::Auto, after, t0), 1);
        // Primary back 10 s: not yet.
        let now = t0 + Duration::from_secs(100);
        assert_eq!(
            failover(
                &[up(now - Duration::from_secs(10)), up(t0)],
                1,
                Failback::Auto,
                after,
                now
            ),
            1
        );
        // Back 30 s: fail back.
        assert_eq!(failover(&[up(now - after), up(t0)], 1, Failback::Auto, after, now), 0);
        // Manual: stays.
        assert_eq!(failover(&[up(t0), up(t0)], 1, Failback::Manual, after, now), 1);
        // Nothing available: stays where it was.
        assert_eq!(failover(&[down, down], 1, Failback::Auto, after, now), 1);
        // A flapping primary (up for 2 s at a time) never gets it back.
        let mut active = 1;
        for k in 0..30u64 {
            let at = t0 + Duration::from_secs(4 * k);
            for (avail, since) in [(true, at), (false, at)] {
                let primary = Standing {
                    available: avail,
                    since: avail.then_some(since),
                    fresh: false,
                    failed: true,
                };
                active = failover(
                    &[primary, up(t0)],
                    active,
                    Failback::Auto,
                    after,
                    at + Duration::from_secs(2),
                );
                assert_eq!(active, 1);
            }
        }
    }

    #[test]
    fn most_free_wins_ties_take_turns_full_is_none() {
        let of = |f: &'static [u32]| move |i: usize| f[i];
        assert_eq!(most_free(3, of(&[3, 9, 2]), 2), Some(1));
        let mut seen = [0; 3];
        for start in 0..999 {
            seen[most_free(3, of(&[5, 0, 5]), start).unwrap()] += 1;
        }
        assert_eq!(seen[1], 0, "the full one never");
        assert!(seen[0] >= 333 && seen[2] >= 333, "the others by turns: {seen:?}");
        assert_eq!(most_free(1, of(&[0]), 7), None);
        assert_eq!(most_free(0, of(&[]), 7), None);
    }
}
