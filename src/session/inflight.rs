//! Requests in flight on one session, by sequence number: a ring indexed by the number (a
//! session gives its numbers out in order, so the ring is a direct lookup with no hashing),
//! with a map for the few whose answer is so late that the ring came round to their slot.

use std::collections::HashMap;

/// What waits for an answer, by the request's sequence number.
#[derive(Debug)]
pub struct InFlight<T> {
    ring: Vec<Option<(u32, T)>>,
    behind: HashMap<u32, T, foldhash::fast::RandomState>,
    len: usize,
}

impl<T> InFlight<T> {
    /// Room for about `window` requests before any goes to the map.
    pub fn new(window: usize) -> InFlight<T> {
        InFlight {
            ring: std::iter::repeat_with(|| None)
                .take((window.max(1) * 4).next_power_of_two())
                .collect(),
            behind: HashMap::default(),
            len: 0,
        }
    }

    fn slot(&self, seq: u32) -> usize {
        seq as usize & (self.ring.len() - 1)
    }

    /// Files a request sent with `seq`.
    pub fn insert(&mut self, seq: u32, value: T) {
        let slot = self.slot(seq);
        if let Some((old, value)) = self.ring[slot].replace((seq, value)) {
            if let Some(_replaced) = self.behind.insert(old, value) {
                self.len -= 1;
            }
        }
        self.len += 1;
    }

    /// Takes the request answered with `seq`.
    pub fn remove(&mut self, seq: u32) -> Option<T> {
        let slot = self.slot(seq);
        let value = match &self.ring[slot] {
            Some((s, _)) if *s == seq => self.ring[slot].take().map(|(_, v)| v),
            _ if self.behind.is_empty() => None,
            _ => self.behind.remove(&seq),
        };
        self.len -= usize::from(value.is_some());
        value
    }

    /// Requests waiting.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether none waits.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Takes every request still waiting.
    pub fn drain(&mut self) -> impl Iterator<Item = (u32, T)> + '_ {
        self.len = 0;
        self.ring.iter_mut().filter_map(Option::take).chain(self.behind.drain())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn late_answers_are_found_after_the_ring_came_round() {
        let mut f = InFlight::new(2); // a ring of 8
        for seq in 1..=20u32 {
            f.insert(seq, seq * 10);
            if seq != 3 {
                assert_eq!(f.remove(seq), Some(seq * 10));
            }
        }
        assert_eq!(f.len(), 1);
        assert_eq!(f.remove(3), Some(30), "kept aside when its slot was taken");
        assert_eq!(f.remove(3), None);
        assert!(f.is_empty());
        f.insert(5, 1);
        f.insert(13, 2);
        let mut left: Vec<_> = f.drain().collect();
        left.sort();
        assert_eq!(left, vec![(5, 1), (13, 2)]);
        assert!(f.is_empty());
    }
}
