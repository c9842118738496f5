//! Correlations between the ids clients get and the ids upstreams gave, and the outboxes of
//! receipts and MO waiting for their clients, behind one trait ([`Store`]) so that each backend
//! (memory, the embedded durable store) plugs in without touching the sessions.
//!
//! A correlation is written by the client session after the upstream's submit_sm_resp and
//! before the client gets its own; it is read when a receipt comes back (by upstream and
//! upstream id) and when a client queries, cancels or replaces a message (by client and
//! client id).

mod commit;
pub mod durable;
mod error;
mod hot;
mod record;
mod tables;
mod writer;

pub use commit::Commit;
pub use durable::DurableStore;
pub use error::StoreError;

use crate::receipt::id::{canonical, lookup_keys, IdMatch};
use dashmap::DashMap;
use std::sync::Arc;

/// What the proxy remembers about one submitted message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Correlation {
    /// The upstream that took the message.
    pub upstream: Arc<str>,
    /// The upstream's message id (from its submit_sm_resp).
    pub upstream_id: String,
    /// The client account that submitted it.
    pub client: Arc<str>,
    /// The id the client was given.
    pub client_id: String,
    /// When it was submitted (seconds since the Unix epoch).
    pub submitted_at: u64,
    /// The submit's registered_delivery.
    pub registered_delivery: u8,
    /// The submit's source_addr.
    pub source_addr: String,
    /// The submit's destination_addr.
    pub destination_addr: String,
    /// `(part, of)` when the submit was one part of a concatenated message.
    pub part: Option<(u8, u8)>,
}

/// One entry of a client's outbox as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxEntry {
    /// Its sequence number: order and identity.
    pub seq: u64,
    /// When it was stored (Unix seconds), for `receipt_ttl`.
    pub stored_at: u64,
    /// The PDU's wire form.
    pub pdu: Vec<u8>,
}

/// Now, in Unix seconds.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Where correlations live. Writes return a [`Commit`] ticket that resolves once the write is
/// durable, so callers can hand many writes to a group-committing store and wait once.
pub trait Store: Send + Sync + std::fmt::Debug {
    /// Records a correlation; `id_match` decides the key its upstream id is filed under.
    fn record(&self, c: Arc<Correlation>, id_match: IdMatch) -> Commit;
    /// The correlation a receipt id from `upstream` refers to, trying each matching form.
    fn find_by_upstream(
        &self,
        upstream: &str,
        receipt_id: &[u8],
        id_match: IdMatch,
    ) -> Result<Option<Arc<Correlation>>, StoreError> {
        for key in lookup_keys(receipt_id, id_match) {
            if let Some(c) = self.get_by_upstream_key(upstream, &key)? {
                return Ok(Some(c));
            }
        }
        Ok(None)
    }
    /// The correlation filed under `upstream` and one exact key (a [`canonical`] form).
    fn get_by_upstream_key(&self, upstream: &str, key: &str) -> Result<Option<Arc<Correlation>>, StoreError>;
    /// The correlation of the id a client holds.
    fn find_by_client(&self, client: &str, client_id: &str) -> Result<Option<Arc<Correlation>>, StoreError>;
    /// Forgets a correlation (after its final receipt).
    fn remove(&self, c: &Correlation, id_match: IdMatch) -> Commit;
    /// How many correlations are held.
    fn len(&self) -> usize;
    /// Appends a PDU (its wire form) to `client`'s outbox; the ticket gives its sequence number.
    fn outbox_push(&self, client: &str, pdu: &[u8]) -> Commit;
    /// Removes an outbox entry the client acknowledged.
    fn outbox_remove(&self, client: &str, seq: u64) -> Commit;
    /// Forgets correlations whose TTL ended before `now` (Unix seconds), a bounded slice per
    /// call (called every few seconds); the ticket gives how many.
    fn expire(&self, now: u64) -> Commit;
    /// Up to `limit` outbox entries of `client` after `after`, oldest first (what survived a
    /// restart; a memory store has none).
    fn outbox_load(&self, client: &str, after: u64, limit: usize) -> Result<Vec<OutboxEntry>, StoreError>;
    /// `true` when none are held.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Correlations in memory: for tests and for a proxy that accepts losing them on restart.
#[derive(Debug)]
pub struct MemoryStore {
    correlation_ttl: std::time::Duration,
    by_upstream: DashMap<(Arc<str>, String), Arc<Correlation>>,
    by_client: DashMap<(Arc<str>, String), Arc<Correlation>>,
    /// Outbox sequence numbers (the entries themselves stay with the account).
    outbox_seq: std::sync::atomic::AtomicU64,
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
            by_upstream: DashMap::new(),
            by_client: DashMap::new(),
            outbox_seq: Default::default(),
        }
    }
}

impl Store for MemoryStore {
    fn record(&self, c: Arc<Correlation>, id_match: IdMatch) -> Commit {
        self.by_upstream.insert(
            (c.upstream.clone(), canonical(c.upstream_id.as_bytes(), id_match)),
            c.clone(),
        );
        self.by_client.insert((c.client.clone(), c.client_id.clone()), c);
        Commit::done(Ok(0))
    }

    fn get_by_upstream_key(&self, upstream: &str, key: &str) -> Result<Option<Arc<Correlation>>, StoreError> {
        Ok(self
            .by_upstream
            .get(&(Arc::from(upstream), key.to_owned()))
            .map(|c| c.clone()))
    }

    fn find_by_client(&self, client: &str, client_id: &str) -> Result<Option<Arc<Correlation>>, StoreError> {
        Ok(self
            .by_client
            .get(&(Arc::from(client), client_id.to_owned()))
            .map(|c| c.clone()))
    }

    fn remove(&self, c: &Correlation, id_match: IdMatch) -> Commit {
        self.by_upstream
            .remove(&(c.upstream.clone(), canonical(c.upstream_id.as_bytes(), id_match)));
        self.by_client.remove(&(c.client.clone(), c.client_id.clone()));
        Commit::done(Ok(0))
    }

    fn len(&self) -> usize {
        self.by_upstream.len()
    }

    fn outbox_push(&self, _client: &str, _pdu: &[u8]) -> Commit {
        Commit::done(Ok(
            self.outbox_seq.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1
        ))
    }

    fn outbox_remove(&self, _client: &str, _seq: u64) -> Commit {
        Commit::done(Ok(0))
    }

    fn expire(&self, now: u64) -> Commit {
        let ttl = self.correlation_ttl.as_secs();
        let before = self.by_upstream.len();
        self.by_upstream.retain(|_, c| c.submitted_at.saturating_add(ttl) > now);
        self.by_client.retain(|_, c| c.submitted_at.saturating_add(ttl) > now);
        Commit::done(Ok(before.saturating_sub(self.by_upstream.len()) as u64))
    }

    fn outbox_load(&self, _client: &str, _after: u64, _limit: usize) -> Result<Vec<OutboxEntry>, StoreError> {
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
                .find_by_upstream("smsc-a", b"0059113978", IdMatch::Numeric)
                .unwrap(),
            Some(c.clone())
        );
        assert_eq!(
            store.find_by_upstream("smsc-b", b"38601fa", IdMatch::Numeric).unwrap(),
            None
        );
        assert_eq!(store.find_by_client("shop", "0001").unwrap(), Some(c.clone()));
        store.remove(&c, IdMatch::Numeric).wait_blocking().unwrap();
        assert!(store.is_empty());
        // TTL: kept while young, gone once `submitted_at + ttl` has passed.
        let store = MemoryStore::with_ttl(std::time::Duration::from_secs(100));
        store.record(c.clone(), IdMatch::Numeric).wait_blocking().unwrap();
        assert_eq!(store.expire(50).wait_blocking().unwrap(), 0);
        assert_eq!(store.expire(101).wait_blocking().unwrap(), 1);
        assert!(store.find_by_client("shop", "0001").unwrap().is_none());
    }
}
