//! Correlations in memory: for tests and for a proxy that accepts losing them on restart.

use super::record::with_key;
use super::{find_each, Commit, Correlation, Found, OutboxEntry, OutboxId, Pushed, Store, StoreError, Ticket};
use crate::receipt::id::{canonical_key, IdMatch};
use compact_str::CompactString;
use dashmap::DashMap;
use foldhash::fast::RandomState;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// The memory store.
#[derive(Debug)]
pub struct MemoryStore {
    correlation_ttl: std::time::Duration,
    // foldhash (seeded per process): SipHash of these keys showed in full-load profiles.
    // Keyed `name \0 id`: kept inline up to 24 bytes (most are), looked up with a key built
    // on the stack.
    by_upstream: DashMap<CompactString, Arc<Correlation>, RandomState>,
    by_client: DashMap<CompactString, Arc<Correlation>, RandomState>,
    /// Outbox sequence numbers (the entries themselves stay with the account).
    outbox_seq: AtomicU64,
}

/// A memory store whose correlations never expire by age.
impl Default for MemoryStore {
    fn default() -> Self {
        MemoryStore::with_ttl(std::time::Duration::MAX)
    }
}

impl MemoryStore {
    /// A memory store keeping correlations without a final receipt for `ttl`.
    pub fn with_ttl(correlation_ttl: std::time::Duration) -> MemoryStore {
        MemoryStore {
            correlation_ttl,
            by_upstream: DashMap::default(),
            by_client: DashMap::default(),
            outbox_seq: Default::default(),
        }
    }
}

/// `name \0 id`, to keep.
fn key(name: &str, id: &str) -> CompactString {
    let mut k = CompactString::with_capacity(name.len() + 1 + id.len());
    k.push_str(name);
    k.push('\0');
    k.push_str(id);
    k
}

/// Calls `f` with `name \0 id` built on the stack (a lookup per form of every receipt's id; a
/// `CompactString` of more than 24 bytes would be on the heap).
fn with_lookup_key<R>(name: &str, id: &str, f: impl FnOnce(&str) -> R) -> R {
    with_key(name, id.as_bytes(), |k| match std::str::from_utf8(k) {
        Ok(k) => f(k),
        // Two strings and a NUL are UTF-8: not reached.
        Err(_) => f(&key(name, id)),
    })
}

impl Store for MemoryStore {
    fn record(&self, c: Arc<Correlation>, id_match: IdMatch) -> Commit {
        let id = canonical_key(c.upstream_id.as_bytes(), id_match);
        self.by_upstream.insert(key(&c.upstream, id.as_str()), c.clone());
        self.by_client.insert(key(&c.client, &c.client_id), c);
        Commit::done(Ok(0))
    }

    fn find_by_upstream(&self, upstream: &str, ids: &[&[u8]], id_match: IdMatch) -> Found {
        find_each(ids, id_match, |form| {
            Ok(with_lookup_key(upstream, form, |k| {
                self.by_upstream.get(k).map(|c| c.clone())
            }))
        })
    }

    fn find_by_client(&self, client: &str, client_id: &str) -> Found {
        Found::done(Ok(with_lookup_key(client, client_id, |k| {
            self.by_client.get(k).map(|c| c.clone())
        })))
    }

    fn remove(&self, c: &Correlation, id_match: IdMatch) {
        let id = canonical_key(c.upstream_id.as_bytes(), id_match);
        with_lookup_key(&c.upstream, id.as_str(), |k| self.by_upstream.remove(k));
        with_lookup_key(&c.client, &c.client_id, |k| self.by_client.remove(k));
    }

    fn correlations(&self) -> Option<u64> {
        Some(self.by_upstream.len() as u64)
    }

    fn outbox_push(&self, _client: &str, _pdu: &[u8], _dedup: Option<&str>) -> Ticket<Pushed> {
        let seq = self.outbox_seq.fetch_add(1, Ordering::Relaxed) + 1;
        Ticket::done(Ok(Pushed::Stored(OutboxId::seq(seq))))
    }

    fn outbox_remove(&self, _client: &str, _id: OutboxId) -> Commit {
        Commit::done(Ok(0))
    }

    fn expire(&self, now: u64) -> Commit {
        let ttl = self.correlation_ttl.as_secs();
        let before = self.by_upstream.len();
        self.by_upstream.retain(|_, c| c.submitted_at.saturating_add(ttl) > now);
        self.by_client.retain(|_, c| c.submitted_at.saturating_add(ttl) > now);
        Commit::done(Ok(before.saturating_sub(self.by_upstream.len()) as u64))
    }

    fn outbox_load(&self, _client: &str, _limit: usize) -> Result<Vec<OutboxEntry>, StoreError> {
        Ok(Vec::new())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn found_by_either_id_and_across_hex_decimal() {
        let store = MemoryStore::default();
        let c = Correlation {
            upstream: "smsc-a".into(),
            upstream_id: "38601fa".into(),
            client: "shop".into(),
            client_id: "0001".into(),
            submitted_at: 0,
            registered_delivery: 1,
            source_addr: "a".into(),
            destination_addr: "b".into(),
            part: None,
        };
        let c = Arc::new(c);
        store.record(c.clone(), IdMatch::Numeric).wait_blocking().unwrap();
        assert_eq!(
            store
                .find_by_upstream("smsc-a", &[b"0059113978"], IdMatch::Numeric)
                .wait_blocking()
                .unwrap(),
            Some(c.clone())
        );
        assert_eq!(
            store
                .find_by_upstream("smsc-b", &[b"38601fa"], IdMatch::Numeric)
                .wait_blocking()
                .unwrap(),
            None
        );
        assert_eq!(
            store.find_by_client("shop", "0001").wait_blocking().unwrap(),
            Some(c.clone())
        );
        store.remove(&c, IdMatch::Numeric);
        assert_eq!(store.correlations(), Some(0));
        // TTL: kept while young, gone once `submitted_at + ttl` has passed.
        let store = MemoryStore::with_ttl(std::time::Duration::from_secs(100));
        store.record(c.clone(), IdMatch::Numeric).wait_blocking().unwrap();
        assert_eq!(store.expire(50).wait_blocking().unwrap(), 0);
        assert_eq!(store.expire(101).wait_blocking().unwrap(), 1);
        assert!(store.find_by_client("shop", "0001").wait_blocking().unwrap().is_none());
    }
}
