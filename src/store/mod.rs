//! Correlations between the ids clients get and the ids upstreams gave, and the outboxes of
//! receipts and MO waiting for their clients, behind one trait ([`Store`]) so that each backend
//! plugs in without touching the sessions: memory (tests, throwaway setups), the embedded
//! durable store (one node), and Redis (a cluster of nodes sharing everything).
//!
//! A correlation is written by the client session after the upstream's submit_sm_resp and
//! before the client gets its own; it is read when a receipt comes back (by upstream and
//! upstream id) and when a client queries, cancels or replaces a message (by client and
//! client id). Every operation returns a [`Ticket`]: stores that batch (the durable store's
//! writer thread, Redis pipelines) answer later, the others at once.
//!
//! An outbox entry is either this node's alone (memory and embedded stores: the account task
//! holds what it stored, and reloads it on start) or shared by every node ([`Store::shared`]:
//! any node with a bind of the client fetches entries, whoever stored them).

pub mod durable;
mod error;
mod hot;
mod memory;
mod record;
pub mod redis;
mod tables;
mod ticket;
mod writer;

pub use durable::DurableStore;
pub use error::StoreError;
pub use memory::MemoryStore;
pub use redis::RedisStore;
pub use ticket::{Commit, Found, Reply, Ticket};

use crate::receipt::id::{lookup_keys, IdMatch};
use compact_str::CompactString;
use std::collections::VecDeque;
use std::sync::Arc;

/// What the proxy remembers about one submitted message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Correlation {
    /// The upstream that took the message.
    pub upstream: Arc<str>,
    /// The upstream's message id (from its submit_sm_resp).
    pub upstream_id: CompactString,
    /// The client account that submitted it.
    pub client: Arc<str>,
    /// The id the client was given.
    pub client_id: CompactString,
    /// When it was submitted (seconds since the Unix epoch).
    pub submitted_at: u64,
    /// The submit's registered_delivery.
    pub registered_delivery: u8,
    /// The submit's source_addr.
    pub source_addr: CompactString,
    /// The submit's destination_addr.
    pub destination_addr: CompactString,
    /// `(part, of)` when the submit was one part of a concatenated message.
    pub part: Option<(u8, u8)>,
}

/// An outbox entry's identity and place in its outbox: a sequence number in a node's own
/// store, a stream id (milliseconds and a sequence) in a shared one. Ordered like the outbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct OutboxId(u128);

impl OutboxId {
    /// Entry `seq` of a node's own store.
    pub fn seq(seq: u64) -> OutboxId {
        OutboxId(u128::from(seq))
    }

    /// A stream entry `ms-seq`.
    pub fn stream(ms: u64, seq: u64) -> OutboxId {
        OutboxId((u128::from(ms) << 64) | u128::from(seq))
    }

    /// Parses a stream id as Redis writes it (`1700000000000-0`).
    pub fn parse_stream(text: &str) -> Option<OutboxId> {
        let (ms, seq) = text.split_once('-')?;
        Some(OutboxId::stream(ms.parse().ok()?, seq.parse().ok()?))
    }

    /// The sequence number (in a node's own store).
    pub fn as_seq(self) -> u64 {
        self.0 as u64
    }

    /// The milliseconds part of a stream id: when the entry was stored.
    pub fn ms(self) -> u64 {
        (self.0 >> 64) as u64
    }
}

/// Written as a stream id: `ms-seq` (`0-seq` for a node's own store).
impl std::fmt::Display for OutboxId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.ms(), self.as_seq())
    }
}

/// How an outbox write ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pushed {
    /// Stored under this id.
    Stored(OutboxId),
    /// The same receipt was stored before (an SMSC sending again what another node had
    /// already taken): nothing written, and nothing more to do.
    Duplicate,
    /// The outbox holds `outbox_max` entries (a shared outbox counts them itself).
    Full,
}

/// One entry of a client's outbox as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxEntry {
    /// Its identity and place.
    pub id: OutboxId,
    /// When it was stored (Unix seconds), for `receipt_ttl`.
    pub stored_at: u64,
    /// The PDU's wire form.
    pub pdu: Vec<u8>,
}

/// Now, in Unix seconds.
pub fn unix_now() -> u64 {
    crate::session::unix_ms() / 1000
}

/// Where correlations and outboxes live.
pub trait Store: Send + Sync + std::fmt::Debug {
    /// Records a correlation; `id_match` decides the key its upstream id is filed under.
    fn record(&self, c: Arc<Correlation>, id_match: IdMatch) -> Commit;
    /// Records what a session turn mapped, in order; `tickets` gets one ticket for each run of
    /// them that commits together, with how many it covers. Stores whose writes batch anyway
    /// (the durable store's writer) take the lot as one operation with one ticket: a ticket,
    /// a channel send and a wake-up per turn, not per message. The others record each.
    fn record_all(&self, batch: &[(Arc<Correlation>, IdMatch)], tickets: &mut VecDeque<(Commit, usize)>) {
        tickets.extend(batch.iter().map(|(c, id_match)| (self.record(c.clone(), *id_match), 1)));
    }
    /// The correlation one of a receipt's ids (`ids`: its TLV id, its text id) from `upstream`
    /// refers to, trying each matching form of each.
    fn find_by_upstream(&self, upstream: &str, ids: &[&[u8]], id_match: IdMatch) -> Found;
    /// The correlation of the id a client holds.
    fn find_by_client(&self, client: &str, client_id: &str) -> Found;
    /// Forgets a correlation (after its final receipt). Nobody waits for it: the receipt has
    /// been answered by then, and a removal a crash loses leaves a correlation the TTL sweep
    /// ends. So the durable store queues it without a ticket (no channel per message).
    fn remove(&self, c: &Correlation, id_match: IdMatch);
    /// How many correlations are held, where the store can say so cheaply.
    fn correlations(&self) -> Option<u64>;
    /// Appends a PDU (its wire form) to `client`'s outbox. `dedup` names the receipt (upstream,
    /// id, state) for stores that can tell it was stored before by another node.
    fn outbox_push(&self, client: &str, pdu: &[u8], dedup: Option<&str>) -> Ticket<Pushed>;
    /// Removes an outbox entry the client acknowledged.
    fn outbox_remove(&self, client: &str, id: OutboxId) -> Commit;
    /// Forgets correlations whose TTL ended before `now` (Unix seconds), a bounded slice per
    /// call (called every few seconds); the ticket gives how many.
    fn expire(&self, now: u64) -> Commit;
    /// Up to `limit` entries of `client`'s own outbox, oldest first (what survived a restart;
    /// a memory store has none, a shared outbox is fetched instead).
    fn outbox_load(&self, client: &str, limit: usize) -> Result<Vec<OutboxEntry>, StoreError>;
    /// The outboxes every node shares, when this store has them.
    fn shared(&self) -> Option<&dyn SharedOutbox> {
        None
    }
    /// Reachable and answering, as far as the store knows now.
    fn available(&self) -> bool {
        true
    }
    /// Writes that failed at the file, and times the store opened again after one (embedded
    /// store only).
    fn fault_counts(&self) -> (u64, u64) {
        (0, 0)
    }
    /// Each client's `outbox_max` after a reload (a shared outbox is trimmed to it where it is
    /// kept; a node's own store holds what its accounts hand it).
    fn set_outbox_caps(&self, _caps: std::collections::HashMap<String, usize>) {}
}

/// Outboxes shared by every node of a cluster: an entry stored by one node is fetched by any
/// node that has a bind of its client, and stays that node's until acknowledged
/// ([`Store::outbox_remove`]) or taken over by another.
pub trait SharedOutbox: Send + Sync + std::fmt::Debug {
    /// Up to `count` entries of `client` for this node to deliver: with `pending_after`, those
    /// this node fetched before and has not acknowledged (after a restart), after that id;
    /// without, new ones.
    fn fetch(&self, client: &str, count: usize, pending_after: Option<OutboxId>) -> Ticket<Vec<OutboxEntry>>;
    /// Up to `count` entries other nodes fetched and cannot deliver (they died, or have no bind
    /// of `client` any more, or have sat on them too long), now this node's.
    fn take_over(&self, client: &str, count: usize) -> Ticket<Vec<OutboxEntry>>;
    /// Drops `client`'s entries older than `max_age` seconds; the ticket gives how many.
    fn trim(&self, client: &str, max_age: u64) -> Commit;
    /// Entries waiting for `client` across the cluster.
    fn depth(&self, client: &str) -> Ticket<u64>;
    /// Tells the store this node still holds `ids` (so no other node takes them for sat on);
    /// the ticket gives those that are no longer this node's (another node took them over).
    fn touch(&self, client: &str, ids: Vec<OutboxId>) -> Ticket<Vec<OutboxId>>;
    /// How long an entry may sit untouched before another node takes it over.
    fn claim_idle(&self) -> std::time::Duration;
}

/// [`Store::find_by_upstream`] for stores that look up one key at a time, at once.
fn find_each(
    ids: &[&[u8]],
    id_match: IdMatch,
    mut get: impl FnMut(&str) -> Result<Option<Arc<Correlation>>, StoreError>,
) -> Found {
    for id in ids.iter().filter(|id| !id.is_empty()) {
        for key in lookup_keys(id, id_match) {
            match get(key.as_str()) {
                Ok(None) => {}
                found => return Found::done(found),
            }
        }
    }
    Found::done(Ok(None))
}
