//! Counters written on every message from every session thread, kept per thread.
//!
//! An atomic that several cores add to moves its cache line from core to core on every
//! addition; at full load the proxy's shared counters and histograms cost more than the work
//! they count. So each is split into [`SHARDS`] copies on cache lines of their own, a thread
//! adds to its own copy (session thread `i` to copy `1 + (i - 1) % (SHARDS - 1)`, set by
//! [`enter`]; any other thread to copy 0: up to 7 session threads each have one of their own),
//! and a reader (`/metrics`, `/status`) adds the copies up.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};

/// Copies of each counter.
pub const SHARDS: usize = 8;

thread_local! {
    static SHARD: Cell<usize> = const { Cell::new(0) };
}

/// Session thread `index` (from 1) writes its copy from now on.
pub fn enter(index: usize) {
    SHARD.with(|s| s.set(1 + index.saturating_sub(1) % (SHARDS - 1)));
}

/// The copy this thread writes.
pub fn shard() -> usize {
    SHARD.with(Cell::get)
}

/// A value alone on its cache line (two lines: adjacent-line prefetch pairs them).
#[derive(Debug, Default)]
#[repr(align(128))]
pub struct Padded<T>(pub T);

/// A count kept per thread.
#[derive(Debug, Default)]
pub struct Counter {
    shards: [Padded<AtomicU64>; SHARDS],
}

impl Counter {
    /// Adds `n`.
    pub fn add(&self, n: u64) {
        self.shards[shard()].0.fetch_add(n, Ordering::Relaxed);
    }

    /// Adds one to this thread's copy and returns what it was: turns taken in order by each
    /// thread (round robin per thread, with no line shared between threads).
    pub fn next_turn(&self) -> u64 {
        self.shards[shard()].0.fetch_add(1, Ordering::Relaxed)
    }

    /// The total (the copies are read one after the other, not at one instant).
    pub fn get(&self) -> u64 {
        self.shards.iter().map(|s| s.0.load(Ordering::Relaxed)).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn threads_add_to_their_own_copy_and_a_read_adds_them_up() {
        let c = std::sync::Arc::new(Counter::default());
        c.add(1);
        let threads: Vec<_> = [1, 2, 8]
            .into_iter()
            .map(|i| {
                let c = c.clone();
                std::thread::spawn(move || {
                    enter(i);
                    for _ in 0..100 {
                        c.add(2);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(c.get(), 601);
        let copies: Vec<u64> = c.shards.iter().map(|s| s.0.load(Ordering::Relaxed)).collect();
        // Thread 8 shares thread 1's copy; copy 0 is the other threads'.
        assert_eq!(copies[..4], [1, 400, 200, 0]);
        assert_eq!(std::mem::align_of::<Padded<AtomicU64>>(), 128);
    }
}
