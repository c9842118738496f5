//! The simulator's submit cap (`tps`), counted the two ways SMSCs count: a token bucket with a
//! quarter second's burst, or fixed calendar seconds (the N+1-th submit of a wall-clock second
//! is throttled, however the N before it were spread, as many SMSCs do). Every submit path of a
//! session asks [`Cap::admit`] before it takes a message.

use crate::session::{SharedBucket, TokenBucket};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// How a `tps` cap counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TpsWindow {
    /// A token bucket: `tps` a second, a quarter second's worth at once.
    #[default]
    Bucket,
    /// At most `tps` in each calendar second.
    Fixed,
}

/// A simulator's cap on submits.
#[derive(Debug)]
pub(crate) enum Cap {
    Bucket(SharedBucket),
    /// The current second (high 32 bits) and how many it took (low 32 bits), in one word so
    /// the second's change and the count move together.
    Fixed {
        tps: u32,
        window: AtomicU64,
    },
}

impl Cap {
    pub(crate) fn new(tps: u32, how: TpsWindow) -> Cap {
        match (tps, how) {
            (0, _) | (_, TpsWindow::Bucket) => Cap::Bucket(SharedBucket::new(match tps {
                0 => TokenBucket::unlimited(Instant::now()),
                n => TokenBucket::new(f64::from(n), f64::from(n) / 4.0, Instant::now()),
            })),
            (tps, TpsWindow::Fixed) => Cap::Fixed {
                tps,
                window: AtomicU64::new(0),
            },
        }
    }

    /// Whether one more submit is taken at `now` (read only by a bucket).
    pub(crate) fn admit(&self, now: impl FnOnce() -> Instant) -> bool {
        match self {
            Cap::Bucket(bucket) => bucket.try_take(now),
            Cap::Fixed { tps, window } => {
                let second = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs() & 0xffff_ffff);
                take_in_window(window, second, *tps)
            }
        }
    }
}

/// Counts one more in `second` if fewer than `tps` were counted in it.
fn take_in_window(window: &AtomicU64, second: u64, tps: u32) -> bool {
    window
        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |w| {
            let count = if w >> 32 == second { w & 0xffff_ffff } else { 0 };
            (count < u64::from(tps)).then_some(second << 32 | (count + 1))
        })
        .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fixed_window_takes_tps_per_second_however_they_come() {
        let w = AtomicU64::new(0);
        assert_eq!((0..10).filter(|_| take_in_window(&w, 7, 3)).count(), 3);
        // The next second starts from nothing, even right after a full one.
        assert_eq!((0..10).filter(|_| take_in_window(&w, 8, 3)).count(), 3);
        assert!(!take_in_window(&w, 8, 3));
        assert!(take_in_window(&w, 9, 3));
    }

    #[test]
    fn no_tps_is_no_cap_either_way() {
        for how in [TpsWindow::Bucket, TpsWindow::Fixed] {
            let cap = Cap::new(0, how);
            assert!((0..10_000).all(|_| cap.admit(|| unreachable!("no clock without a cap"))));
        }
    }
}
