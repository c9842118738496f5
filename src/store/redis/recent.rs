//! The correlations this node recorded in the last minute or so, kept beside Redis: a receipt
//! that comes back to the node that sent its message (every receipt, with one node; about half
//! with two) is matched without asking Redis. Only this node's own writes are here, each once
//! Redis has acknowledged it, and each leaves when this node removes it; one removed by another node (its final receipt came back
//! there) may linger here until its generation goes, at most `SPAN` twice, which matters only
//! if the SMSC sends that receipt again, to this node, in that time: then it is delivered
//! again, as a copy in flight at a node's death would be.

use crate::store::Correlation;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A generation closes at this many entries…
const SIZE: usize = 1 << 16;
/// …or this long after it opened.
const SPAN: Duration = Duration::from_secs(30);

/// A correlation, and whether Redis has acknowledged it (only then is it matched here).
type Held = (Arc<Correlation>, bool);

#[derive(Debug)]
struct Generations {
    current: HashMap<String, Held>,
    previous: HashMap<String, Held>,
    opened: Instant,
}

/// Recently recorded correlations, by their Redis key: two generations, so each entry lives
/// between one and two of them, and memory is bounded by two full ones. An entry goes in when
/// its write is sent and counts once Redis has acknowledged it, so that a removal that comes
/// first (its receipt matched through Redis) is never undone by the acknowledgement.
#[derive(Debug)]
pub(super) struct Recent(Mutex<Generations>);

impl Recent {
    pub(super) fn new() -> Recent {
        Recent(Mutex::new(Generations {
            current: HashMap::new(),
            previous: HashMap::new(),
            opened: Instant::now(),
        }))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Generations> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A correlation being written: not matched until [`Recent::acknowledged`].
    pub(super) fn put(&self, key: &str, c: &Arc<Correlation>) {
        let mut g = self.lock();
        let age = g.opened.elapsed();
        if age >= SPAN * 2 {
            // Quiet for two spans: both generations are past their time.
            g.previous.clear();
            g.current.clear();
            g.opened = Instant::now();
        } else if g.current.len() >= SIZE || age >= SPAN {
            g.previous = std::mem::take(&mut g.current);
            g.opened = Instant::now();
        }
        g.current.insert(key.to_owned(), (c.clone(), false));
    }

    /// Redis has the correlation under `key` (if it was not removed meanwhile).
    pub(super) fn acknowledged(&self, key: &str) {
        let mut g = self.lock();
        let g = &mut *g;
        if let Some(held) = g.current.get_mut(key).or_else(|| g.previous.get_mut(key)) {
            held.1 = true;
        }
    }

    /// The first of `keys` held and acknowledged.
    pub(super) fn get(&self, keys: &[String]) -> Option<Arc<Correlation>> {
        let g = self.lock();
        // Generations age as if writes kept coming, so that nothing outlives two spans on a
        // node gone quiet: the current one would have become the previous at one span and
        // gone at two; the previous one goes at one.
        let age = g.opened.elapsed();
        let (current, previous) = (age < SPAN * 2, age < SPAN);
        keys.iter().find_map(|k| {
            current
                .then(|| g.current.get(k))
                .flatten()
                .or_else(|| previous.then(|| g.previous.get(k)).flatten())
                .filter(|(_, acknowledged)| *acknowledged)
                .map(|(c, _)| c.clone())
        })
    }

    pub(super) fn remove(&self, key: &str) {
        let mut g = self.lock();
        if g.current.remove(key).is_none() {
            g.previous.remove(key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(id: &str) -> Arc<Correlation> {
        Arc::new(Correlation {
            upstream: "u".into(),
            upstream_id: id.into(),
            client: "c".into(),
            client_id: id.into(),
            submitted_at: 0,
            registered_delivery: 1,
            source_addr: Default::default(),
            destination_addr: Default::default(),
            part: None,
        })
    }

    #[test]
    fn kept_for_a_generation_or_two_then_gone() {
        let r = Recent::new();
        r.put("a", &c("a"));
        assert!(r.get(&["a".into()]).is_none(), "not before Redis has it");
        r.acknowledged("a");
        assert_eq!(
            r.get(&["x".into(), "a".into()]).map(|c| c.upstream_id.clone()),
            Some("a".into())
        );
        r.remove("a");
        assert!(r.get(&["a".into()]).is_none());
        // Removed before Redis acknowledged it: the acknowledgement does not bring it back.
        r.put("z", &c("z"));
        r.remove("z");
        r.acknowledged("z");
        assert!(r.get(&["z".into()]).is_none());
        // Filling two generations pushes the oldest out.
        r.put("b", &c("b"));
        r.acknowledged("b");
        for n in 0..SIZE * 2 {
            r.put(&n.to_string(), &c("n"));
            r.acknowledged(&n.to_string());
        }
        assert!(r.get(&["b".into()]).is_none());
        assert!(r.get(&[(SIZE * 2 - 1).to_string()]).is_some());
    }

    #[test]
    fn a_quiet_node_forgets_by_age_alone() {
        let r = Recent::new();
        r.put("a", &c("a"));
        r.acknowledged("a");
        let age = |by: Duration| {
            let mut g = r.lock();
            g.opened = g.opened.checked_sub(by).expect("the clock is past two spans");
        };
        // As if it had become the previous generation: still there.
        age(SPAN + Duration::from_secs(1));
        assert!(r.get(&["a".into()]).is_some());
        // Two spans: gone, though no write came to swap it out, and a write then does not
        // bring it back.
        age(SPAN);
        assert!(r.get(&["a".into()]).is_none());
        r.put("b", &c("b"));
        assert!(r.get(&["a".into()]).is_none());
    }
}
