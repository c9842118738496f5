//! The durable store's hot tier: correlations whose latest write is in the log but not yet in
//! the tables.
//!
//! A group commit writes its correlation puts and removals as one row of the `log` table (one
//! B-tree insert for the whole batch, durable when the commit returns; with `sync =
//! "periodic"`, the batch is in the write-ahead file first and the row may follow in a later
//! transaction) and then publishes them here, in memory, where readers look first. The writer folds them into the `corr_up` /
//! `corr_client` tables a generation later (see `writer`), so a correlation whose final receipt
//! comes back within that time, most of them on a fast SMSC, is put and removed here and never
//! costs a table write. What is here is bounded by the writer's generations, not by how many
//! correlations the store holds.

use super::record::client_key;
use super::Correlation;
use dashmap::DashMap;
use foldhash::fast::RandomState;
use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

/// A `corr_up` key, shared by the maps that name it.
pub(super) type UpKey = Arc<[u8]>;

/// The latest write to one `corr_up` key, and the log row (`seq`) it is in.
#[derive(Debug, Clone)]
pub(super) enum Entry {
    /// Recorded. `stored`: the tables hold an older version under this key, which the flush
    /// replaces (so removing this one must reach the tables too).
    Live {
        c: Arc<Correlation>,
        seq: u64,
        stored: bool,
    },
    /// Removed here while the tables still hold it: the flush deletes it there.
    Gone { seq: u64 },
}

impl Entry {
    pub(super) fn seq(&self) -> u64 {
        match self {
            Entry::Live { seq, .. } | Entry::Gone { seq } => *seq,
        }
    }
}

/// What a reader learns from the hot tier about one key.
#[derive(Debug)]
pub(super) enum Seen {
    Live(Arc<Correlation>),
    Gone,
    /// Nothing here: the tables know.
    NotHere,
}

/// The hot tier: written only by the store's writer, read by everyone.
#[derive(Debug, Default)]
pub(super) struct Hot {
    up: DashMap<UpKey, Entry, RandomState>,
    /// `corr_client` key → `corr_up` key, for the live correlations here.
    by_client: DashMap<Vec<u8>, UpKey, RandomState>,
    /// Correlations live here that the tables lack, minus those gone here that the tables hold:
    /// the store's count is the tables' plus this.
    delta: AtomicI64,
    /// Keys with a put on its way to a commit, and how many: a receipt for one of them came
    /// before its correlation, and waits for it without asking the tables (see [`Recording`]).
    recording: DashMap<UpKey, u32, RandomState>,
}

/// A key's mark in [`Hot::recording`] while its put waits for the writer: taken on the caller's
/// thread before the put is queued, dropped with the op once its commit is published (or has
/// failed), so it cannot outlive the put whatever happens to it.
#[derive(Debug)]
pub(in crate::store) struct Recording {
    hot: Arc<Hot>,
    key: UpKey,
}

impl Recording {
    pub(in crate::store) fn start(hot: &Arc<Hot>, key: UpKey) -> Recording {
        *hot.recording.entry(key.clone()).or_insert(0) += 1;
        Recording { hot: hot.clone(), key }
    }
}

impl Drop for Recording {
    fn drop(&mut self) {
        if let dashmap::Entry::Occupied(mut e) = self.hot.recording.entry(self.key.clone()) {
            match e.get_mut() {
                1 => {
                    e.remove();
                }
                n => *n -= 1,
            }
        }
    }
}

impl Hot {
    pub(super) fn get(&self, up_key: &[u8]) -> Seen {
        match self.up.get(up_key).as_deref() {
            Some(Entry::Live { c, .. }) => Seen::Live(c.clone()),
            Some(Entry::Gone { .. }) => Seen::Gone,
            None => Seen::NotHere,
        }
    }

    /// `true` while a put of `up_key` waits for its commit.
    pub(super) fn recording(&self, up_key: &[u8]) -> bool {
        self.recording.contains_key(up_key)
    }

    /// The `corr_up` key of a live correlation here, by its `corr_client` key.
    pub(super) fn up_key_of_client(&self, client_key: &[u8]) -> Option<UpKey> {
        self.by_client.get(client_key).map(|k| k.clone())
    }

    pub(super) fn delta(&self) -> i64 {
        self.delta.load(Ordering::Relaxed)
    }

    /// How many keys are held (live and gone).
    pub(super) fn len(&self) -> usize {
        self.up.len()
    }

    pub(super) fn contains(&self, up_key: &[u8]) -> bool {
        self.up.contains_key(up_key)
    }

    pub(super) fn entry(&self, up_key: &[u8]) -> Option<Entry> {
        self.up.get(up_key).map(|e| e.clone())
    }

    /// The keys whose latest write is in a log row up to `upto`: what a flush of those rows
    /// moves. Sorted, so that the flush writes each table page once rather than once per key
    /// (in hash order, every key lands on another page: measured 2.6 times the CPU).
    pub(super) fn due(&self, upto: u64) -> Vec<UpKey> {
        let mut keys: Vec<UpKey> = self
            .up
            .iter()
            .filter(|e| e.value().seq() <= upto)
            .map(|e| e.key().clone())
            .collect();
        keys.sort_unstable();
        keys
    }

    /// The keys of live correlations submitted before `before` (Unix seconds).
    pub(super) fn expired(&self, before: u64) -> Vec<UpKey> {
        self.up
            .iter()
            .filter(|e| matches!(e.value(), Entry::Live { c, .. } if c.submitted_at < before))
            .map(|e| e.key().clone())
            .collect()
    }

    /// The flush made `up_key` as the tables hold it: forget it here, unless written after `upto`.
    pub(super) fn flushed(&self, up_key: &[u8], upto: u64) {
        let Some((_, entry)) = self.up.remove_if(up_key, |_, e| e.seq() <= upto) else {
            return;
        };
        match entry {
            Entry::Live { c, stored, .. } => {
                self.by_client.remove_if(&client_key(&c), |_, k| **k == *up_key);
                if !stored {
                    self.delta.fetch_sub(1, Ordering::Relaxed);
                }
            }
            Entry::Gone { .. } => {
                self.delta.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// A key's state as a batch sees it.
enum Now {
    Live {
        c: Arc<Correlation>,
        stored: bool,
    },
    Gone,
    /// Known to be nowhere (removed earlier in this batch, and never in the tables).
    Absent,
    /// Not here: the tables know.
    Unknown,
}

/// One group commit's changes to the hot tier, published once the batch is durable (committed,
/// or in the write-ahead file): readers never see a write that a crash could still undo.
/// The writer keeps one and reuses it (`publish` empties it).
#[derive(Debug, Default)]
pub(super) struct Stage {
    /// Final state per key; `None`: delete it here.
    entries: HashMap<UpKey, Option<Entry>, RandomState>,
    /// The client id of a correlation → `corr_up` key: map it under its `corr_client` key
    /// (`Some`: the put's own, moved here rather than built again), or unmap if it still points
    /// there.
    clients: Vec<(Arc<Correlation>, UpKey, Option<Vec<u8>>)>,
    delta: i64,
    /// Room to build a client key in.
    scratch: Vec<u8>,
}

impl Stage {
    fn now(&self, hot: &Hot, up_key: &[u8]) -> Now {
        let entry = match self.entries.get(up_key) {
            Some(None) => return Now::Absent,
            Some(Some(e)) => Some(e.clone()),
            None => hot.entry(up_key),
        };
        match entry {
            Some(Entry::Live { c, stored, .. }) => Now::Live { c, stored },
            Some(Entry::Gone { .. }) => Now::Gone,
            None => Now::Unknown,
        }
    }

    /// `true` when this batch wrote `up_key`.
    pub(super) fn has(&self, up_key: &[u8]) -> bool {
        self.entries.contains_key(up_key)
    }

    /// `true` when this batch or the hot tier has a say about `up_key` (the table sweep leaves
    /// such keys alone).
    pub(super) fn touches(&self, hot: &Hot, up_key: &[u8]) -> bool {
        self.has(up_key) || hot.contains(up_key)
    }

    /// Records `c` under `up_key` in log row `seq` (`client_key`: its `corr_client` key);
    /// `in_tables` says whether the tables hold the key (asked only when nothing here knows).
    pub(super) fn put<E>(
        &mut self,
        hot: &Hot,
        up_key: &UpKey,
        c: Arc<Correlation>,
        client_key: Vec<u8>,
        seq: u64,
        in_tables: impl FnOnce() -> Result<bool, E>,
    ) -> Result<(), E> {
        let stored = match self.now(hot, up_key) {
            Now::Live { c: old, stored } => {
                if old.client != c.client || old.client_id != c.client_id {
                    self.clients.push((old, up_key.clone(), None));
                }
                stored
            }
            Now::Gone => {
                self.delta += 1;
                true
            }
            Now::Absent => {
                self.delta += 1;
                false
            }
            Now::Unknown => {
                let stored = in_tables()?;
                self.delta += i64::from(!stored);
                stored
            }
        };
        self.clients.push((c.clone(), up_key.clone(), Some(client_key)));
        self.entries
            .insert(up_key.clone(), Some(Entry::Live { c, seq, stored }));
        Ok(())
    }

    /// Removes what `up_key` holds, in log row `seq`; `false` when nothing was there.
    pub(super) fn remove<E>(
        &mut self,
        hot: &Hot,
        up_key: &UpKey,
        seq: u64,
        in_tables: impl FnOnce() -> Result<bool, E>,
    ) -> Result<bool, E> {
        let after = match self.now(hot, up_key) {
            Now::Live { c, stored } => {
                self.clients.push((c, up_key.clone(), None));
                stored.then_some(Entry::Gone { seq })
            }
            Now::Gone | Now::Absent => return Ok(false),
            Now::Unknown => {
                if !in_tables()? {
                    return Ok(false);
                }
                Some(Entry::Gone { seq })
            }
        };
        self.delta -= 1;
        self.entries.insert(up_key.clone(), after);
        Ok(true)
    }

    /// Makes the batch visible (after its commit), and empties the stage for the next one.
    pub(super) fn publish(&mut self, hot: &Hot) {
        for (key, entry) in self.entries.drain() {
            match entry {
                Some(e) => {
                    hot.up.insert(key, e);
                }
                None => {
                    hot.up.remove(&key);
                }
            }
        }
        for (c, up_key, map) in self.clients.drain(..) {
            if let Some(client_key) = map {
                hot.by_client.insert(client_key, up_key);
            } else {
                self.scratch.clear();
                self.scratch.extend_from_slice(c.client.as_bytes());
                self.scratch.push(0);
                self.scratch.extend_from_slice(c.client_id.as_bytes());
                hot.by_client.remove_if(self.scratch.as_slice(), |_, k| *k == up_key);
            }
        }
        hot.delta.fetch_add(std::mem::take(&mut self.delta), Ordering::Relaxed);
    }

    /// Forgets what was staged (the commit failed).
    pub(super) fn clear(&mut self) {
        self.entries.clear();
        self.clients.clear();
        self.delta = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::convert::Infallible;

    fn c(client_id: &str) -> Arc<Correlation> {
        Arc::new(Correlation {
            upstream: "u".into(),
            upstream_id: "1".into(),
            client: "shop".into(),
            client_id: client_id.into(),
            submitted_at: 100,
            registered_delivery: 1,
            source_addr: Default::default(),
            destination_addr: Default::default(),
            part: None,
        })
    }

    fn ck(client_id: &str) -> Vec<u8> {
        client_key(&c(client_id))
    }

    fn k(key: &[u8]) -> UpKey {
        Arc::from(key)
    }

    fn yes() -> Result<bool, Infallible> {
        Ok(true)
    }
    fn no() -> Result<bool, Infallible> {
        Ok(false)
    }

    #[test]
    fn a_put_and_its_removal_cancel_and_touch_nothing_else() {
        let hot = Hot::default();
        let mut s = Stage::default();
        s.put(&hot, &k(b"u\x001"), c("a"), ck("a"), 1, no).unwrap();
        assert!(matches!(hot.get(b"u\x001"), Seen::NotHere), "invisible until published");
        s.publish(&hot);
        assert!(matches!(hot.get(b"u\x001"), Seen::Live(_)));
        assert_eq!(hot.up_key_of_client(b"shop\0a").as_deref(), Some(&b"u\x001"[..]));
        assert_eq!(hot.delta(), 1);
        let mut s = Stage::default();
        let asked = std::cell::Cell::new(false);
        let removed = s
            .remove(&hot, &k(b"u\x001"), 2, || {
                asked.set(true);
                yes()
            })
            .unwrap();
        assert!(removed && !asked.get(), "the hot tier knew; the tables were not asked");
        s.publish(&hot);
        assert_eq!((hot.len(), hot.delta()), (0, 0));
        assert!(hot.up_key_of_client(b"shop\0a").is_none());
    }

    #[test]
    fn what_the_tables_hold_is_replaced_and_removed_through_them() {
        let hot = Hot::default();
        let mut s = Stage::default();
        // An older version in the tables: overwritten here, then removed.
        s.put(&hot, &k(b"u\x001"), c("new"), ck("new"), 1, yes).unwrap();
        s.publish(&hot);
        assert_eq!(hot.delta(), 0, "same count: a replacement");
        let mut s = Stage::default();
        assert!(s.remove(&hot, &k(b"u\x001"), 2, no).unwrap());
        s.publish(&hot);
        assert!(
            matches!(hot.get(b"u\x001"), Seen::Gone),
            "the flush must delete it there"
        );
        assert_eq!(hot.delta(), -1);
        assert_eq!(hot.due(1), Vec::<UpKey>::new(), "written in row 2");
        assert_eq!(hot.due(2), vec![k(b"u\x001")]);
        hot.flushed(b"u\x001", 2);
        assert_eq!((hot.len(), hot.delta()), (0, 0));
        // Removing what nobody holds changes nothing.
        let mut s = Stage::default();
        assert!(!s.remove(&hot, &k(b"u\x002"), 3, no).unwrap());
        assert!(s.entries.is_empty());
    }

    #[test]
    fn later_writes_survive_the_flush_of_earlier_rows() {
        let hot = Hot::default();
        let mut s = Stage::default();
        s.put(&hot, &k(b"u\x001"), c("a"), ck("a"), 1, no).unwrap();
        // A second write to the same key in the same batch sees the first.
        s.put(
            &hot,
            &k(b"u\x001"),
            c("b"),
            ck("b"),
            1,
            || -> Result<bool, Infallible> { panic!("the stage knew") },
        )
        .unwrap();
        s.publish(&hot);
        assert!(
            hot.up_key_of_client(b"shop\0a").is_none(),
            "the replaced id is unmapped"
        );
        let mut s = Stage::default();
        s.put(&hot, &k(b"u\x001"), c("c"), ck("c"), 5, no).unwrap();
        s.publish(&hot);
        hot.flushed(b"u\x001", 4);
        assert!(matches!(hot.get(b"u\x001"), Seen::Live(c) if c.client_id == "c"));
        assert_eq!(hot.expired(101), vec![k(b"u\x001")]);
        assert!(hot.expired(100).is_empty());
    }
}
