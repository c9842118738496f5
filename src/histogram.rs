//! Histograms for `/metrics`, written on the hot path: a fixed set of bucket bounds and one
//! atomic count per bucket, so an observation is a short scan and two relaxed additions (no
//! lock, no allocation), to the observing thread's own copy ([`crate::sharded`]). `/metrics` reads them as they are ([`Histogram::read`]); the counts
//! of one reading may be a few observations apart from its sum, as Prometheus tolerates.

use crate::sharded::{shard, Padded, SHARDS};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Bounds for submit -> response and store commit latencies (seconds).
pub const LATENCY: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Bounds for submit -> receipt delays (seconds): from a second to a day.
pub const DELAY: &[f64] = &[1.0, 5.0, 15.0, 30.0, 60.0, 300.0, 900.0, 3600.0, 14_400.0, 86_400.0];

/// Buckets a histogram can have (one past its bounds): with the sum, one 128-byte line.
const MAX_BUCKETS: usize = 15;
const _: () = assert!(LATENCY.len() < MAX_BUCKETS && DELAY.len() < MAX_BUCKETS);

/// Observations counted by bucket, with their sum; one copy per thread ([`crate::sharded`]).
#[derive(Debug)]
pub struct Histogram {
    bounds: &'static [f64],
    shards: Box<[Padded<Shard>; SHARDS]>,
}

#[derive(Debug, Default)]
struct Shard {
    /// One per bound, and one past the last (`+Inf`).
    counts: [AtomicU64; MAX_BUCKETS],
    /// In millionths, so that it can be an atomic integer.
    sum_micros: AtomicU64,
}

/// A histogram as read: `(upper bound, count in that bucket)` with `f64::MAX` for `+Inf`
/// (not cumulative), the sum and the count.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HistogramReading {
    /// Per bucket, not cumulative.
    pub buckets: Vec<(f64, u64)>,
    /// Sum of the observations.
    pub sum: f64,
    /// How many.
    pub count: u64,
}

impl Histogram {
    /// An empty histogram over `bounds` (ascending, at most 14: the consts above).
    pub fn new(bounds: &'static [f64]) -> Histogram {
        assert!(
            bounds.len() < MAX_BUCKETS,
            "a histogram has at most {} bounds",
            MAX_BUCKETS - 1
        );
        Histogram {
            bounds,
            shards: Box::default(),
        }
    }

    /// Counts `value` (in the bounds' unit).
    pub fn observe(&self, value: f64) {
        let i = self
            .bounds
            .iter()
            .position(|&b| value <= b)
            .unwrap_or(self.bounds.len());
        let shard = &self.shards[shard()].0;
        shard.counts[i].fetch_add(1, Ordering::Relaxed);
        shard
            .sum_micros
            .fetch_add((value.max(0.0) * 1e6) as u64, Ordering::Relaxed);
    }

    /// Counts a duration, in seconds.
    pub fn observe_duration(&self, d: Duration) {
        self.observe(d.as_secs_f64());
    }

    /// The histogram now (the threads' copies added up).
    pub fn read(&self) -> HistogramReading {
        let count = |i: usize| -> u64 { self.shards.iter().map(|s| s.0.counts[i].load(Ordering::Relaxed)).sum() };
        let buckets: Vec<(f64, u64)> = self
            .bounds
            .iter()
            .copied()
            .chain(std::iter::once(f64::MAX))
            .enumerate()
            .map(|(i, bound)| (bound, count(i)))
            .collect();
        let sum: u64 = self.shards.iter().map(|s| s.0.sum_micros.load(Ordering::Relaxed)).sum();
        HistogramReading {
            count: buckets.iter().map(|(_, n)| n).sum(),
            sum: sum as f64 / 1e6,
            buckets,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_observation_lands_in_the_first_bucket_that_holds_it() {
        let h = Histogram::new(&[1.0, 10.0]);
        for v in [0.5, 1.0, 1.5, 10.0, 11.0, 1e9] {
            h.observe(v);
        }
        let r = h.read();
        assert_eq!(r.buckets, vec![(1.0, 2), (10.0, 2), (f64::MAX, 2)]);
        assert_eq!(r.count, 6);
        assert!((r.sum - (0.5 + 1.0 + 1.5 + 10.0 + 11.0 + 1e9)).abs() < 1e-3);
    }
}
