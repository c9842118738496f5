//! Frames a session sends on its own initiative (receipts, MO), each not before its time.
//! Nearly all come in the order they fall due (one fixed receipt delay): those wait in a
//! queue, first in first out; the few that come out of order (an ENROUTE receipt's final one,
//! a retry) wait in a heap beside it.

use bytes::Bytes;
use std::cmp::Ordering;
use std::collections::{BinaryHeap, VecDeque};
use std::time::Instant;

/// A frame waiting for its time; `n` keeps the order of arrival among equal times.
#[derive(Debug)]
struct Timed {
    at: Instant,
    n: u64,
    frame: Bytes,
}

impl PartialEq for Timed {
    fn eq(&self, other: &Timed) -> bool {
        (self.at, self.n) == (other.at, other.n)
    }
}
impl Eq for Timed {}
impl PartialOrd for Timed {
    fn partial_cmp(&self, other: &Timed) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Timed {
    fn cmp(&self, other: &Timed) -> Ordering {
        // Reversed: `BinaryHeap` is a max-heap, the earliest must come out first.
        (other.at, other.n).cmp(&(self.at, self.n))
    }
}

/// Frames by the time they are due.
#[derive(Debug, Default)]
pub(crate) struct Later {
    queue: VecDeque<Timed>,
    heap: BinaryHeap<Timed>,
    arrived: u64,
}

impl Later {
    pub(crate) fn push(&mut self, at: Instant, frame: Bytes) {
        self.arrived += 1;
        let timed = Timed {
            at,
            n: self.arrived,
            frame,
        };
        match self.queue.back() {
            Some(last) if at < last.at => self.heap.push(timed),
            _ => self.queue.push_back(timed),
        }
    }

    /// When the next one is due.
    pub(crate) fn next_due(&self) -> Option<Instant> {
        match (self.queue.front(), self.heap.peek()) {
            (Some(a), Some(b)) => Some(a.at.min(b.at)),
            (a, b) => a.or(b).map(|t| t.at),
        }
    }

    /// The next frame due by `now`, earliest first.
    pub(crate) fn pop_due(&mut self, now: Instant) -> Option<Bytes> {
        let from_heap = match (self.queue.front(), self.heap.peek()) {
            (Some(a), Some(b)) => b > a,
            (None, Some(_)) => true,
            _ => false,
        };
        let source_at = if from_heap {
            self.heap.peek().map(|t| t.at)
        } else {
            self.queue.front().map(|t| t.at)
        };
        if source_at? > now {
            return None;
        }
        let timed = if from_heap {
            self.heap.pop()
        } else {
            self.queue.pop_front()
        };
        timed.map(|t| t.frame)
    }

    /// Everything still waiting.
    pub(crate) fn drain(&mut self) -> impl Iterator<Item = Bytes> + '_ {
        self.queue.drain(..).chain(self.heap.drain()).map(|t| t.frame)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn comes_out_by_time_whatever_the_order_in() {
        let t = Instant::now();
        let mut later = Later::default();
        let at = |ms| t + Duration::from_millis(ms);
        for (ms, tag) in [(10, "a"), (60, "b"), (11, "c"), (12, "d"), (61, "e"), (12, "f")] {
            later.push(at(ms), Bytes::from_static(tag.as_bytes()));
        }
        assert_eq!(later.next_due(), Some(at(10)));
        assert_eq!(later.pop_due(at(9)), None);
        let mut out = Vec::new();
        while let Some(f) = later.pop_due(at(100)) {
            out.push(f);
        }
        assert_eq!(
            out,
            ["a", "c", "d", "f", "b", "e"].map(|s| Bytes::from_static(s.as_bytes()))
        );
        assert_eq!(later.next_due(), None);
    }
}
