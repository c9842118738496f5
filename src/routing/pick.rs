//! The choices themselves, as pure functions over snapshots with the RNG and the time passed
//! in, so every one is tested deterministically: a weighted random choice for load balancing, the
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
    /// Its share of a full weight while slowly starting (1 when not).
    pub ramp: f64,
    /// The rate it was found to take (messages/s), when its throttling taught one.
    pub capacity: Option<f64>,
}

impl Candidate {
    /// A usable candidate at full weight, with no known capacity.
    pub fn new(score: f64) -> Candidate {
        Candidate {
            usable: true,
            score,
            ramp: 1.0,
            capacity: None,
        }
    }
}

/// The cost of sending one more request to an upstream with latency `rtt` (seconds) and
/// `outstanding` requests.
pub fn score(rtt: f64, outstanding: u32) -> f64 {
    rtt * f64::from(outstanding + 1)
}

/// Where others taught capacities, a member that never throttled weighs this many times the
/// largest: it took all it was given so far, and a share clearly above the others' finds its
/// own cap quickly (at twice, it could sit just under it for long, the others' shares wrong).
const UNTAUGHT: f64 = 4.0;

/// A usable candidate at random, each with a chance in proportion to its weight: the inverse
/// square of its cost times its capacity. Links about as good share (1.0
/// against 1.2 ms: 59 % to 41 %) where a strict "cheaper wins" would send everything to the
/// marginally faster one and herd; a link ten times costlier gets about 1 %. Where SMSCs
/// taught capacities, shares follow them (100, 200 and 300 msg/s: 1:2:3), so every link runs
/// equally far below its cap instead of the smallest at its edge; a member that never
/// throttled counts as [`UNTAUGHT`] times the largest capacity taught.
/// A member in slow start takes part in a pick with the chance of its ramp, so its traffic
/// grows with the ramp.
pub fn weighted(candidates: &[Candidate], rng: &mut impl Rng) -> Option<usize> {
    let known = candidates
        .iter()
        .filter(|c| c.usable)
        .filter_map(|c| c.capacity)
        .fold(0.0_f64, f64::max);
    let untaught = if known > 0.0 { UNTAUGHT * known } else { 1.0 };
    let n = candidates.len().min(MAX_MEMBERS);
    // A member in slow start takes part with the chance of its ramp: its share is bounded by
    // the ramp whatever its weight (an idle member's latency estimate has faded, which would
    // otherwise make it the favourite at once).
    let mut in_pick = [false; MAX_MEMBERS];
    for (k, c) in candidates.iter().take(n).enumerate() {
        in_pick[k] = c.usable && (c.ramp >= 1.0 || rng.gen::<f64>() < c.ramp);
    }
    if !in_pick[..n].iter().any(|&p| p) {
        // Only ramping members are left: better them than nothing.
        for (k, c) in candidates.iter().take(n).enumerate() {
            in_pick[k] = c.usable;
        }
    }
    let mut weights = [0.0_f64; MAX_MEMBERS];
    for (k, c) in candidates.iter().take(n).enumerate() {
        if in_pick[k] {
            weights[k] = c.score.max(1e-12).powi(-2) * c.capacity.unwrap_or(untaught);
        }
    }
    let total: f64 = weights[..n].iter().sum();
    if !(total > 0.0 && total.is_finite()) {
        // Figures out of range: any usable one.
        let usable = candidates.iter().take(n).filter(|c| c.usable).count();
        let nth = rng.gen_range(0..usable.max(1));
        return (0..n).filter(|&k| candidates[k].usable).nth(nth);
    }
    let mut at = rng.gen::<f64>() * total;
    for (k, w) in weights[..n].iter().enumerate() {
        if *w > 0.0 {
            if at < *w {
                return Some(k);
            }
            at -= w;
        }
    }
    weights[..n].iter().rposition(|w| *w > 0.0)
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
    fn cheap_links_take_most_the_costly_nearly_nothing_unusable_none() {
        let mut rng = SmallRng::seed_from_u64(7);
        let cands = [c(1.0), c(2.0), c(10.0), off(0.1)];
        let mut seen = [0; 4];
        for _ in 0..30_000 {
            seen[weighted(&cands, &mut rng).unwrap()] += 1;
        }
        // Weights 1, 1/4, 1/100: 0.794, 0.198, 0.008.
        assert_eq!(seen[3], 0, "unusable");
        assert!(seen[2] < 450, "ten times the cost: nearly nothing: {seen:?}");
        assert!((23_200..24_400).contains(&seen[0]), "{seen:?}");
        assert!((5_500..6_400).contains(&seen[1]), "{seen:?}");
        // Near-equal links share.
        let close = [c(1.0), c(1.2)];
        let first = (0..10_000).filter(|_| weighted(&close, &mut rng) == Some(0)).count();
        assert!((5_600..6_200).contains(&first), "{first}");
        assert_eq!(weighted(&[c(5.0)], &mut rng), Some(0));
        assert_eq!(weighted(&[off(1.0)], &mut rng), None);
    }

    #[test]
    fn taught_capacities_set_the_shares_and_an_untaught_member_counts_as_bigger() {
        let mut rng = SmallRng::seed_from_u64(11);
        let cap = |capacity: Option<f64>| Candidate { capacity, ..c(1.0) };
        let mut share = |cands: &[Candidate]| {
            let mut seen = [0u32; 3];
            for _ in 0..60_000 {
                seen[weighted(cands, &mut rng).unwrap()] += 1;
            }
            seen.map(|n| f64::from(n) / 60_000.0)
        };
        let taught = share(&[cap(Some(100.0)), cap(Some(200.0)), cap(Some(300.0))]);
        for (got, want) in taught.iter().zip([1.0 / 6.0, 2.0 / 6.0, 3.0 / 6.0]) {
            assert!((got / want - 1.0).abs() < 0.03, "{taught:?}");
        }
        // 100 and 200 taught, the third never throttled: weighed as 800.
        let partly = share(&[cap(Some(100.0)), cap(Some(200.0)), cap(None)]);
        assert!((partly[2] / (8.0 / 11.0) - 1.0).abs() < 0.03, "{partly:?}");
        // Nothing taught: equal.
        let none = share(&[cap(None), cap(None), cap(None)]);
        assert!(none.iter().all(|s| (s * 3.0 - 1.0).abs() < 0.03), "{none:?}");
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
            (0..10_000).filter(|_| weighted(&cands, rng) == Some(2)).count()
        };
        let (low, high, full) = (count(0.1, &mut rng), count(0.5, &mut rng), count(1.0, &mut rng));
        // Weights 1, 1, 4: 2/3 of the picks it takes part in, which is the ramp's share.
        assert!((6_350..6_950).contains(&full), "{full}");
        assert!(low < high && high < full, "{low} {high} {full}");
        assert!((500..850).contains(&low), "{low}");
        let alone = [Candidate { ramp: 0.0, ..c(1.0) }];
        assert_eq!(weighted(&alone, &mut rng), Some(0), "alone it still serves");
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
}
