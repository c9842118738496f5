//! The embedded, crash-safe store (redb) under `[store] path`: correlations and client outboxes
//! survive restarts and `kill -9`.
//!
//! Writes go to one writer thread (`writer`) as group commits; a caller gets a [`Commit`] ticket
//! that resolves once its write is durable. Correlation writes are logged (one `log` row per
//! group commit; with `sync = "periodic"`, written by a later transaction while the write-ahead
//! file holds them) and kept in the hot tier (`hot`) until a generation later, when the writer
//! folds what is still live into the tables; reads look in the hot tier first, then in the
//! tables, in their own read transactions on the caller's thread (redb readers never block the
//! writer). On open, the log is replayed into the hot tier; nothing else is loaded.
//!
//! Tables (keys are `name \0 rest`, so one client's or upstream's entries are one range):
//! - `corr_up`: `upstream \0 canonical upstream id` → encoded [`Correlation`];
//! - `corr_client`: `client \0 client id` → the `corr_up` key;
//! - `log`: row number → the correlation writes of one group commit not yet in the tables;
//! - `outbox`: `client \0 seq (u64 BE)` → the PDU to deliver, oldest first;
//! - `meta`: `outbox_seq` → the last outbox sequence number.
//!
//! Correlations without a final receipt expire by a sweep, not an index: each call walks a
//! bounded slice of `corr_up` from where the last stopped (a full pass at least every hour) and
//! the hot tier, and drops what is past the TTL. An expiry index would cost two more B-tree
//! writes per message to save a walk that runs in the background anyway.

use super::hot::{Hot, Recording, Seen, UpKey};
use super::record::{client_key, decode_stamped, encode_stamped, key, with_key};
use super::tables::{CORR_CLIENT, CORR_UP, LOG, META, OUTBOX};
pub use super::writer::WriterStats;
use super::writer::{Op, Queued, Reply, Writer};
use super::{Commit, Correlation, Found, OutboxEntry, OutboxId, Pushed, Store, StoreError, Ticket};
use crate::config::StoreSync;
use crate::receipt::id::{canonical_key, lookup_keys, IdMatch};
use arc_swap::ArcSwapOption;
use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata};
use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{mpsc as std_mpsc, Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// A `corr_up` key (`upstream \0 id`), built in its one allocation.
fn up_key(upstream: &str, canonical_id: &str) -> UpKey {
    let bytes = upstream.bytes().chain([0]).chain(canonical_id.bytes());
    bytes.collect()
}

/// The durable store.
///
/// A write that fails at the file (a full disk, a file-size limit, an I/O error) leaves redb
/// refusing every later operation until the database is opened again. So the store then
/// reports itself unavailable (the proxy refuses new work cleanly), and its reopener thread opens
/// it again, as a restart would, once a second until that works: what was acknowledged is in
/// the file, and the log is replayed into a new hot tier.
#[derive(Debug)]
pub struct DurableStore {
    shared: Arc<Shared>,
    correlation_ttl: u64,
    reopener: Option<JoinHandle<()>>,
}

/// What the store and its reopener share.
#[derive(Debug)]
struct Shared {
    path: PathBuf,
    sync: StoreSync,
    /// `None` while the database is being opened again after a failure. Read for every
    /// operation from every session thread: an `ArcSwap` load touches no shared counter (a
    /// `RwLock` read and an `Arc` clone did, about 1% of the proxy's CPU at full load).
    engine: ArcSwapOption<Engine>,
    stats: Arc<WriterStats>,
    /// Set when the store is dropped: the reopener stops.
    closing: Mutex<bool>,
    wake: Condvar,
}

/// One open database and its writer: what a reopen replaces.
#[derive(Debug)]
struct Engine {
    db: Arc<Database>,
    hot: Arc<Hot>,
    /// Unbounded on purpose: a bounded one would block the async task that writes when full.
    /// What waits here is bounded by the proxy's windows and outbox caps.
    tx: Option<std_mpsc::Sender<Queued>>,
    writer: Option<JoinHandle<()>>,
}

/// A correlation put, encoded here, on the caller's thread: the writer is one thread for
/// everyone.
pub(super) fn put_op(c: Arc<Correlation>, canonical_id: &str) -> Op {
    let mut value = Vec::with_capacity(128);
    encode_stamped(&mut value, &c, 0);
    Op::PutCorrelation {
        recording: None,
        up_key: up_key(&c.upstream, canonical_id),
        client_key: client_key(&c),
        value,
        c,
    }
}

/// A correlation put under the key its upstream id is matched by.
fn record_op(c: Arc<Correlation>, id_match: IdMatch) -> Op {
    let id = canonical_key(c.upstream_id.as_bytes(), id_match);
    put_op(c, id.as_str())
}

/// How often a failed store tries to open again.
const REOPEN_EVERY: Duration = Duration::from_secs(1);

impl Engine {
    /// Opens (or creates) the database in `dir`, its tables, and its writer.
    fn open(dir: &Path, stats: Arc<WriterStats>, sync: StoreSync) -> Result<Engine, StoreError> {
        let file = dir.join(FILE);
        let damaged = |why: String| StoreError::Damaged {
            path: file.clone(),
            why,
        };
        // An empty file is not a new store: one was here, and what it held is gone. Starting
        // empty would lose the receipts in custody without a word.
        if std::fs::metadata(&file).is_ok_and(|m| m.len() == 0) {
            return Err(damaged("the file is empty (0 bytes)".into()));
        }
        // Every page's checksum is verified at open: a plain open trusts the file and a page
        // damaged outside redb panics later, in whichever task reads it. The check reads the
        // whole file once: 1 M correlations (277 MB) took 0.5 s from the page cache, 1.1 s from
        // disk here. redb may still panic on some damage rather than report it.
        let opened = std::panic::catch_unwind(|| Database::builder().set_check_integrity_on_open(true).create(&file))
            .map_err(|_| damaged("the database cannot be read (redb failed opening it)".into()))?;
        let db = match opened {
            Ok(db) => Arc::new(db),
            Err(redb::DatabaseError::DatabaseAlreadyOpen) => return Err(StoreError::Locked(dir.to_owned())),
            Err(redb::DatabaseError::Storage(redb::StorageError::Corrupted(why))) => return Err(damaged(why)),
            Err(e) => return Err(e.into()),
        };
        // Create the tables so that readers find them.
        let txn = db.begin_write()?;
        {
            txn.open_table(CORR_UP)?;
            txn.open_table(CORR_CLIENT)?;
            txn.open_table(LOG)?;
            txn.open_table(OUTBOX)?;
            txn.open_table(META)?;
        }
        txn.commit()?;
        let (tx, rx) = std_mpsc::channel();
        let hot = Arc::new(Hot::default());
        let writer = Writer::open(db.clone(), hot.clone(), stats, dir, sync)?;
        let writer = std::thread::Builder::new()
            .name("store-writer".into())
            .spawn(move || writer.run(rx))
            .map_err(|_| StoreError::WriterStopped)?;
        Ok(Engine {
            db,
            hot,
            tx: Some(tx),
            writer: Some(writer),
        })
    }

    /// Queues `op` for the writer; `ticket` is answered through `reply`. A put's key is marked
    /// as being recorded until the op is done with (see [`Recording`]).
    fn send<T>(&self, mut op: Op, reply: Reply, ticket: Ticket<T>) -> Ticket<T> {
        self.mark(&mut op);
        self.queue(Queued::One(op, reply), ticket)
    }

    /// Queues a session turn's correlation puts as one message with one ticket.
    fn send_puts(&self, mut ops: Vec<Op>) -> Commit {
        ops.iter_mut().for_each(|op| self.mark(op));
        let (ticket, reply) = Commit::channel();
        self.queue(Queued::Puts(ops, Reply::Count(reply)), ticket)
    }

    /// Marks a put's key as being recorded until the writer is done with the op.
    fn mark(&self, op: &mut Op) {
        if let Op::PutCorrelation { up_key, recording, .. } = op {
            *recording = Some(Recording::start(&self.hot, up_key.clone()));
        }
    }

    fn queue<T>(&self, queued: Queued, ticket: Ticket<T>) -> Ticket<T> {
        match self.tx.as_ref().map(|tx| tx.send(queued)) {
            Some(Ok(())) => ticket,
            _ => Ticket::done(Err(StoreError::WriterStopped)),
        }
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        // The writer checkpoints after what is queued (and logs if it cannot), then stops when
        // the channel closes.
        if let Some(tx) = &self.tx {
            let (_, reply) = Commit::channel();
            let _ = tx.send(Queued::One(Op::Checkpoint, Reply::Count(reply)));
        }
        self.tx.take();
        if let Some(w) = self.writer.take() {
            let _ = w.join();
        }
    }
}

/// A loaded engine: a guard of the `ArcSwap`, known to hold one. Kept only for one operation (a
/// thread has few cheap guards; one kept longer makes the others take the slow path).
struct EngineRef(arc_swap::Guard<Option<Arc<Engine>>>);

impl std::ops::Deref for EngineRef {
    type Target = Engine;

    fn deref(&self) -> &Engine {
        // Built only from a guard that holds an engine (`Shared::engine`).
        self.0
            .as_deref()
            .unwrap_or_else(|| unreachable!("EngineRef without an engine"))
    }
}

impl Shared {
    /// The engine, for one read or one send (not to be kept: see [`EngineRef`]).
    fn engine(&self) -> Result<EngineRef, StoreError> {
        let engine = self.engine.load();
        match *engine {
            Some(_) => Ok(EngineRef(engine)),
            None => Err(StoreError::Failed),
        }
    }

    /// Until the store closes: once a second, if a write failed, opens the database again.
    fn reopen_when_failed(&self) {
        let mut closing = self.closing.lock().unwrap_or_else(|p| p.into_inner());
        while !*closing {
            closing = self
                .wake
                .wait_timeout(closing, REOPEN_EVERY)
                .unwrap_or_else(|p| p.into_inner())
                .0;
            if *closing || !self.stats.failed.load(Ordering::Acquire) {
                continue;
            }
            drop(closing);
            self.reopen();
            closing = self.closing.lock().unwrap_or_else(|p| p.into_inner());
        }
    }

    /// Takes the engine out and drops it here once nobody else holds it: its teardown (a
    /// checkpoint, the writer thread's end) runs on this thread, never on a caller's (a tokio
    /// worker), and the file is free to be opened again when this returns.
    fn retire(&self) {
        if let Some(engine) = self.engine.swap(None) {
            // Callers hold it for one read or one send (a guard still out counts here: taking
            // the value out of the `ArcSwap` turned it into a strong count).
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            while Arc::strong_count(&engine) > 1 && std::time::Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(1));
            }
            drop(engine);
        }
    }

    fn reopen(&self) {
        self.retire();
        match Engine::open(&self.path, self.stats.clone(), self.sync) {
            Ok(engine) => {
                // Cleared before the engine is back, so a failure its threads report from then
                // on stands.
                self.stats.failed.store(false, Ordering::Release);
                self.engine.store(Some(Arc::new(engine)));
                self.stats.reopens.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(path = %self.path.display(), "store: opened again after a failed write; taking work again");
            }
            Err(e) => tracing::debug!(error = %e, "store: not open yet; trying again in a second"),
        }
    }
}

/// The database file in the store's directory.
pub const FILE: &str = "smpp-proxy.redb";

/// The write-ahead file of `sync = "periodic"` beside it.
pub const WAL_FILE: &str = super::writer::wal::FILE;
/// The write-ahead file emptied a moment ago, until it is removed (a replay reads it too).
pub const WAL_OLD: &str = super::writer::wal::OLD;

/// Counts for `smpp-proxy store stats`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoreCounts {
    /// Correlations held.
    pub correlations: u64,
    /// Outbox entries per client.
    pub outbox: Vec<(String, u64)>,
}

impl DurableStore {
    /// Opens (or creates) the store in directory `dir` to read it and for tools: correlations
    /// never expire by age (the proxy opens it with its `correlation_ttl`).
    pub fn open(dir: &Path) -> Result<DurableStore, StoreError> {
        DurableStore::open_with_ttl(dir, Duration::MAX)
    }

    /// Opens (or creates) the store, keeping correlations without a final receipt for `ttl`,
    /// every write durable before it is answered.
    pub fn open_with_ttl(dir: &Path, ttl: Duration) -> Result<DurableStore, StoreError> {
        DurableStore::open_with(dir, ttl, StoreSync::Always)
    }

    /// Opens (or creates) the store, keeping correlations without a final receipt for `ttl`,
    /// made durable as `sync` says.
    pub fn open_with(dir: &Path, ttl: Duration, sync: StoreSync) -> Result<DurableStore, StoreError> {
        std::fs::create_dir_all(dir).map_err(|e| StoreError::Dir {
            path: dir.to_owned(),
            source: Arc::new(e),
        })?;
        let stats = Arc::new(WriterStats::default());
        let engine = Engine::open(dir, stats.clone(), sync)?;
        let shared = Arc::new(Shared {
            path: dir.to_owned(),
            sync,
            engine: ArcSwapOption::from_pointee(engine),
            stats,
            closing: Mutex::new(false),
            wake: Condvar::new(),
        });
        let reopener = {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name("store-reopen".into())
                .spawn(move || shared.reopen_when_failed())
                .map_err(|_| StoreError::WriterStopped)?
        };
        Ok(DurableStore {
            shared,
            correlation_ttl: ttl.as_secs(),
            reopener: Some(reopener),
        })
    }

    /// The writer's counters.
    pub fn writer_stats(&self) -> &WriterStats {
        &self.shared.stats
    }

    fn submit(&self, op: Op) -> Commit {
        let (ticket, reply) = Commit::channel();
        self.send(op, Reply::Count(reply), ticket)
    }

    /// Queues `op` for the writer; `ticket` is answered through `reply`.
    fn send<T>(&self, op: Op, reply: Reply, ticket: Ticket<T>) -> Ticket<T> {
        match self.shared.engine() {
            Ok(engine) => engine.send(op, reply, ticket),
            Err(e) => Ticket::done(Err(e)),
        }
    }

    /// Records a correlation under `canonical_id` (the upstream id in the form it is matched by).
    pub fn put_correlation(&self, c: Arc<Correlation>, canonical_id: &str) -> Commit {
        self.submit(put_op(c, canonical_id))
    }

    /// Forgets a correlation.
    pub fn remove_correlation(&self, c: &Correlation, canonical_id: &str) -> Commit {
        self.submit(Op::RemoveCorrelation {
            up_key: up_key(&c.upstream, canonical_id),
        })
    }

    /// Folds the hot tier into the tables and empties the log (a clean stop does this, so the
    /// next start has nothing to replay).
    pub fn checkpoint(&self) -> Commit {
        self.submit(Op::Checkpoint)
    }

    /// Sweeps the next slice of correlations (see the module notes) and forgets those whose TTL
    /// ended before `now` (Unix seconds); the ticket gives how many.
    pub fn expire_correlations(&self, now: u64) -> Commit {
        self.sweep(now, None)
    }

    /// [`expire_correlations`](Self::expire_correlations) reading at most `budget` records.
    pub fn sweep(&self, now: u64, budget: Option<u64>) -> Commit {
        self.submit(Op::ExpireCorrelations {
            before: now.saturating_sub(self.correlation_ttl),
            budget,
        })
    }

    /// The correlation filed under `upstream` and `canonical_id`.
    pub fn correlation_by_upstream(
        &self,
        upstream: &str,
        canonical_id: &str,
    ) -> Result<Option<Arc<Correlation>>, StoreError> {
        self.by_up_key(&key(upstream, canonical_id.as_bytes()))
    }

    fn by_up_key(&self, up_key: &[u8]) -> Result<Option<Arc<Correlation>>, StoreError> {
        // The hot tier first, then the tables: a flush commits to the tables before it forgets
        // a key here, so a key is always in one of the two when looked for in this order.
        let engine = self.shared.engine()?;
        match engine.hot.get(up_key) {
            Seen::Live(c) => return Ok(Some(c)),
            Seen::Gone => return Ok(None),
            Seen::NotHere => {}
        }
        let txn = engine.db.begin_read()?;
        let table = txn.open_table(CORR_UP)?;
        let found = table.get(up_key)?;
        found.map(|v| decode_stamped(v.value()).map(Arc::new)).transpose()
    }

    /// The first of a receipt's keys (every form of each of its ids, in order) that names a
    /// live correlation. The hot tier is asked about every key before one read transaction
    /// answers for those it does not hold: a transaction costs more than the B-tree walk
    /// (measured: a transaction per key was a sixth of the proxy's CPU under load, since a
    /// receipt that comes before its correlation misses on every form of both its ids), and
    /// opening it after the hot tier was asked keeps the order that makes a key always in one
    /// of the two.
    fn by_up_keys(
        &self,
        upstream: &str,
        ids: &[&[u8]],
        id_match: IdMatch,
    ) -> Result<Option<Arc<Correlation>>, StoreError> {
        let engine = self.shared.engine()?;
        let mut seen = Vec::new();
        'forms: for id in ids.iter().filter(|id| !id.is_empty()) {
            for form in lookup_keys(id, id_match) {
                let found = with_key(upstream, form.as_str().as_bytes(), |up_key| {
                    match engine.hot.get(up_key) {
                        // Every key before it is gone: nothing the tables hold comes first.
                        Seen::Live(c) if seen.iter().all(|(_, s)| matches!(s, Seen::Gone)) => Some(Some(c)),
                        // Being recorded: the receipt came before its correlation and waits for
                        // that write; the keys after it in the order are not looked at, those
                        // before it still are (in the tables too).
                        Seen::NotHere if engine.hot.recording(up_key) => Some(None),
                        s => {
                            seen.push((up_key.to_vec(), s));
                            None
                        }
                    }
                });
                match found {
                    Some(Some(c)) => return Ok(Some(c)),
                    Some(None) => break 'forms,
                    None => {}
                }
            }
        }
        if !seen.iter().any(|(_, s)| matches!(s, Seen::NotHere)) {
            return Ok(seen.into_iter().find_map(|(_, s)| match s {
                Seen::Live(c) => Some(c),
                _ => None,
            }));
        }
        let txn = engine.db.begin_read()?;
        let table = txn.open_table(CORR_UP)?;
        for (up_key, s) in seen {
            match s {
                Seen::Live(c) => return Ok(Some(c)),
                Seen::Gone => {}
                Seen::NotHere => {
                    if let Some(v) = table.get(up_key.as_slice())? {
                        return decode_stamped(v.value()).map(|c| Some(Arc::new(c)));
                    }
                }
            }
        }
        Ok(None)
    }

    /// The correlation of the id `client` was given.
    pub fn correlation_by_client(&self, client: &str, client_id: &str) -> Result<Option<Arc<Correlation>>, StoreError> {
        let client_key = key(client, client_id.as_bytes());
        let engine = self.shared.engine()?;
        let up_key = match engine.hot.up_key_of_client(&client_key) {
            Some(k) => k,
            None => {
                let txn = engine.db.begin_read()?;
                let by_client = txn.open_table(CORR_CLIENT)?;
                match by_client.get(client_key.as_slice())? {
                    Some(k) => UpKey::from(k.value()),
                    None => return Ok(None),
                }
            }
        };
        // The key may since hold another message (an upstream that reuses ids).
        Ok(self
            .by_up_key(&up_key)?
            .filter(|c| &*c.client == client && c.client_id == client_id))
    }

    /// Appends a PDU to `client`'s outbox, stamped with the time; the ticket gives its sequence
    /// number once durable.
    pub fn outbox_push(&self, client: &str, pdu: &[u8]) -> Commit {
        self.submit(self.outbox_op(client, pdu))
    }

    fn outbox_op(&self, client: &str, pdu: &[u8]) -> Op {
        let mut value = Vec::with_capacity(8 + pdu.len());
        value.extend_from_slice(&super::unix_now().to_be_bytes());
        value.extend_from_slice(pdu);
        Op::OutboxPush {
            client: client.to_owned(),
            pdu: value,
        }
    }

    /// Removes an entry once the client acknowledged it.
    pub fn outbox_remove(&self, client: &str, seq: u64) -> Commit {
        self.submit(Op::OutboxRemove {
            client: client.to_owned(),
            seq,
        })
    }

    /// Up to `limit` entries of `client`'s outbox with a sequence number above `after`, oldest
    /// first.
    pub fn outbox_after(&self, client: &str, after: u64, limit: usize) -> Result<Vec<OutboxEntry>, StoreError> {
        let txn = self.shared.engine()?.db.begin_read()?;
        let table = txn.open_table(OUTBOX)?;
        let start = key(client, &(after.saturating_add(1)).to_be_bytes());
        let end = key(client, &u64::MAX.to_be_bytes());
        let mut out = Vec::new();
        for item in table.range(start.as_slice()..=end.as_slice())? {
            let (k, v) = item?;
            let k = k.value();
            let seq = k
                .len()
                .checked_sub(8)
                .and_then(|at| k[at..].try_into().ok())
                .map(u64::from_be_bytes)
                .ok_or_else(|| StoreError::Corrupt(format!("outbox key of {client}")))?;
            let v = v.value();
            let Some((stored_at, pdu)) = v.split_first_chunk::<8>() else {
                return Err(StoreError::Corrupt(format!("outbox entry {seq} of {client}")));
            };
            out.push(OutboxEntry {
                id: OutboxId::seq(seq),
                stored_at: u64::from_be_bytes(*stored_at),
                pdu: pdu.to_vec(),
            });
            if out.len() >= limit {
                break;
            }
        }
        Ok(out)
    }

    /// Correlations held and outbox entries per client.
    pub fn counts(&self) -> Result<StoreCounts, StoreError> {
        let engine = self.shared.engine()?;
        let txn = engine.db.begin_read()?;
        let correlations = txn.open_table(CORR_UP)?.len()?;
        let correlations = correlations.saturating_add_signed(engine.hot.delta());
        let outbox = txn.open_table(OUTBOX)?;
        let mut per_client: Vec<(String, u64)> = Vec::new();
        for item in outbox.iter()? {
            let (k, _) = item?;
            let k = k.value();
            let name = String::from_utf8_lossy(&k[..k.len().saturating_sub(9)]).into_owned();
            match per_client.last_mut() {
                Some((last, n)) if *last == name => *n += 1,
                _ => per_client.push((name, 1)),
            }
        }
        Ok(StoreCounts {
            correlations,
            outbox: per_client,
        })
    }
}

impl Store for DurableStore {
    fn record(&self, c: Arc<Correlation>, id_match: IdMatch) -> Commit {
        self.submit(record_op(c, id_match))
    }

    fn record_all(&self, batch: &[(Arc<Correlation>, IdMatch)], tickets: &mut VecDeque<(Commit, usize)>) {
        let ops = batch
            .iter()
            .map(|(c, id_match)| record_op(c.clone(), *id_match))
            .collect();
        let commit = match self.shared.engine() {
            Ok(engine) => engine.send_puts(ops),
            Err(e) => Commit::done(Err(e)),
        };
        tickets.push_back((commit, batch.len()));
    }

    fn find_by_upstream(&self, upstream: &str, ids: &[&[u8]], id_match: IdMatch) -> Found {
        Found::done(self.by_up_keys(upstream, ids, id_match))
    }

    fn find_by_client(&self, client: &str, client_id: &str) -> Found {
        Found::done(self.correlation_by_client(client, client_id))
    }

    fn remove(&self, c: &Correlation, id_match: IdMatch) {
        let id = canonical_key(c.upstream_id.as_bytes(), id_match);
        let op = Op::RemoveCorrelation {
            up_key: up_key(&c.upstream, id.as_str()),
        };
        // A stopped or failed writer: the removal is lost with whatever else it had queued, and
        // the sweep ends the correlation.
        drop(self.send(op, Reply::Discard, Commit::done(Ok(0))));
    }

    fn correlations(&self) -> Option<u64> {
        let read = || -> Result<u64, StoreError> {
            let engine = self.shared.engine()?;
            let txn = engine.db.begin_read()?;
            let n = txn.open_table(CORR_UP)?.len()?;
            Ok(n.saturating_add_signed(engine.hot.delta()))
        };
        read().ok()
    }

    fn outbox_push(&self, client: &str, pdu: &[u8], _dedup: Option<&str>) -> Ticket<Pushed> {
        let (ticket, reply) = Ticket::channel();
        self.send(self.outbox_op(client, pdu), Reply::Pushed(reply), ticket)
    }

    fn expire(&self, now: u64) -> Commit {
        self.expire_correlations(now)
    }

    fn outbox_remove(&self, client: &str, id: OutboxId) -> Commit {
        DurableStore::outbox_remove(self, client, id.as_seq())
    }

    fn outbox_load(&self, client: &str, limit: usize) -> Result<Vec<OutboxEntry>, StoreError> {
        self.outbox_after(client, 0, limit)
    }

    fn available(&self) -> bool {
        !self.shared.stats.failed.load(Ordering::Acquire)
    }

    fn fault_counts(&self) -> (u64, u64) {
        let stats = &self.shared.stats;
        (
            stats.failures.load(Ordering::Relaxed),
            stats.reopens.load(Ordering::Relaxed),
        )
    }
}

impl Drop for DurableStore {
    fn drop(&mut self) {
        *self.shared.closing.lock().unwrap_or_else(|p| p.into_inner()) = true;
        self.shared.wake.notify_all();
        if let Some(r) = self.reopener.take() {
            let _ = r.join();
        }
        self.shared.retire();
    }
}

#[cfg(test)]
impl DurableStore {
    fn hot_len(&self) -> usize {
        self.shared.engine().map_or(0, |e| e.hot.len())
    }

    /// Stops the writer without the checkpoint a clean stop makes: the store's files as a crash
    /// leaves them (every answered write committed, the log not folded).
    fn stop_like_a_crash(self) {
        if let Some(engine) = self.shared.engine.swap(None) {
            let mut engine = Arc::into_inner(engine).expect("no reader left");
            engine.tx.take();
            if let Some(w) = engine.writer.take() {
                let _ = w.join();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::writer::wal::Wal;
    use super::*;
    use std::sync::atomic::Ordering;

    fn correlation(n: u32) -> Arc<Correlation> {
        Arc::new(Correlation {
            upstream: "smsc-a".into(),
            upstream_id: format!("{n:x}").into(),
            client: "shop".into(),
            client_id: format!("c{n}").into(),
            submitted_at: 1_700_000_000 + u64::from(n),
            registered_delivery: 1,
            source_addr: "4477".into(),
            destination_addr: "447700900123".into(),
            part: if n.is_multiple_of(2) { Some((1, 3)) } else { None },
        })
    }

    fn dir(name: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("smpp-proxy-store-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    fn put_all(store: &DurableStore, ns: impl Iterator<Item = u32>) {
        let tickets: Vec<Commit> = ns
            .map(|n| store.put_correlation(correlation(n), &format!("{n:x}")))
            .collect();
        for t in tickets {
            t.wait_blocking().unwrap();
        }
    }

    fn remove_all(store: &DurableStore, ns: impl Iterator<Item = u32>) {
        let tickets: Vec<Commit> = ns
            .map(|n| store.remove_correlation(&correlation(n), &format!("{n:x}")))
            .collect();
        for t in tickets {
            t.wait_blocking().unwrap();
        }
    }

    /// Checks `store`, stops it as a crash would, checks it again reopened, and cleans up.
    fn check_across_a_crash(store: DurableStore, d: &std::path::Path, check: impl Fn(&DurableStore)) {
        check(&store);
        store.stop_like_a_crash();
        let store = DurableStore::open(d).unwrap();
        check(&store);
        drop(store);
        let _ = std::fs::remove_dir_all(d);
    }

    fn assert_holds_2000_but_7(store: &DurableStore) {
        assert_eq!(
            store.correlation_by_upstream("smsc-a", "1f").unwrap(),
            Some(correlation(31))
        );
        assert_eq!(
            store.correlation_by_client("shop", "c31").unwrap(),
            Some(correlation(31))
        );
        assert_eq!(store.correlation_by_upstream("smsc-a", "7").unwrap(), None);
        assert_eq!(store.correlation_by_client("shop", "c7").unwrap(), None);
        assert_eq!(store.counts().unwrap().correlations, 1999);
    }

    #[test]
    fn a_receipt_for_a_key_being_recorded_waits_for_it_instead_of_reading_the_tables() {
        let d = dir("recording");
        let store = DurableStore::open(&d).unwrap();
        // 255 in the tables, filed under its hex id "ff".
        put_all(&store, 255..256);
        store.checkpoint().wait_blocking().unwrap();
        assert_eq!(store.hot_len(), 0, "in the tables, not the hot tier");
        let engine = store.shared.engine().unwrap();
        assert!(
            !engine.hot.recording(&key("smsc-a", b"ff")),
            "the put's mark went with its commit"
        );
        let find = |id: &str| {
            store
                .find_by_upstream("smsc-a", &[id.as_bytes()], IdMatch::Numeric)
                .now()
                .ok()
                .unwrap()
                .unwrap()
        };
        // A receipt saying "255" (decimal) names "ff" too: found in the tables.
        assert_eq!(find("255"), Some(correlation(255)));
        // A put under "255" itself is on its way: the receipt waits for that newer message.
        let mark = Recording::start(&engine.hot, key("smsc-a", b"255").into());
        assert_eq!(find("255"), None);
        drop(mark);
        assert!(!engine.hot.recording(&key("smsc-a", b"255")));
        assert_eq!(find("255"), Some(correlation(255)));
        // A form after the one in the tables being recorded ("255" read as hex is 597): the
        // earlier form still wins, the tables are read for it.
        let mark = Recording::start(&engine.hot, key("smsc-a", b"597").into());
        assert_eq!(find("255"), Some(correlation(255)));
        drop(mark);
        drop(engine);
        drop(store);
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn a_sessions_turn_of_puts_is_one_operation_with_one_ticket() {
        let d = dir("turn");
        let store = DurableStore::open(&d).unwrap();
        let batch: Vec<_> = (0..40).map(|n| (correlation(n), IdMatch::Exact)).collect();
        let stats = store.writer_stats();
        let (commits, operations) = (
            stats.commits.load(Ordering::Relaxed),
            stats.operations.load(Ordering::Relaxed),
        );
        let mut tickets = VecDeque::new();
        store.record_all(&batch, &mut tickets);
        assert_eq!(tickets.len(), 1, "one ticket for the turn");
        let (ticket, covers) = tickets.pop_front().unwrap();
        assert_eq!(covers, 40);
        ticket.wait_blocking().unwrap();
        assert_eq!(stats.commits.load(Ordering::Relaxed) - commits, 1, "one group commit");
        assert_eq!(stats.operations.load(Ordering::Relaxed) - operations, 40, "a put each");
        let engine = store.shared.engine().unwrap();
        for n in 0..40u32 {
            assert!(
                !engine.hot.recording(&key("smsc-a", format!("{n:x}").as_bytes())),
                "mark of {n} dropped"
            );
        }
        drop(engine);
        // Nothing to record: answered at once, covering nothing.
        store.record_all(&[], &mut tickets);
        let (empty, covers) = tickets.pop_front().unwrap();
        assert_eq!((empty.wait_blocking().unwrap(), covers), (0, 0));
        check_across_a_crash(store, &d, |store| {
            for n in 0..40u32 {
                let found = store.correlation_by_upstream("smsc-a", &format!("{n:x}")).unwrap();
                assert_eq!(found, Some(correlation(n)), "{n}");
            }
        });
    }

    /// Both ways writes are made durable: every batch committed with an fsync (`always`), or
    /// appended to the write-ahead file, most batches' log rows left to a later transaction
    /// (`periodic`; its database is made durable ten intervals later, after these tests).
    const SYNCS: [(&str, StoreSync); 2] = [
        ("always", StoreSync::Always),
        (
            "periodic",
            StoreSync::Periodic {
                interval: Duration::from_secs(1),
            },
        ),
    ];

    fn open_sync(d: &Path, sync: StoreSync) -> DurableStore {
        DurableStore::open_with(d, Duration::MAX, sync).unwrap()
    }

    #[test]
    fn correlations_survive_a_crash_and_a_clean_stop_and_writes_are_group_committed() {
        for (name, sync) in SYNCS {
            survive_a_crash_and_a_clean_stop(&dir(&format!("corr-{name}")), sync);
        }
    }

    fn survive_a_crash_and_a_clean_stop(d: &Path, sync: StoreSync) {
        let store = open_sync(d, sync);
        put_all(&store, 0..2000);
        let s = store.writer_stats();
        assert_eq!(s.operations.load(Ordering::Relaxed), 2000);
        assert!(
            s.commits.load(Ordering::Relaxed) <= 20,
            "one fsync per batch, not per record: {}",
            s.commits.load(Ordering::Relaxed)
        );
        store.remove_correlation(&correlation(7), "7").wait_blocking().unwrap();
        assert_holds_2000_but_7(&store);
        // All of it is still in the log (hot): after a crash, the replay brings it back.
        store.stop_like_a_crash();
        let store = open_sync(d, sync);
        assert_holds_2000_but_7(&store);
        // A clean stop folds the log into the tables.
        drop(store);
        let store = open_sync(d, sync);
        assert_eq!(store.hot_len(), 0, "nothing to replay after a clean stop");
        assert_holds_2000_but_7(&store);
        drop(store);
        let _ = std::fs::remove_dir_all(d);
    }

    #[test]
    fn puts_go_straight_to_the_tables_while_receipts_come_late_and_back_when_they_are_fast() {
        let d = dir("direct");
        let store = DurableStore::open(&d).unwrap();
        let stats = store.writer_stats();
        // Nothing removed: every correlation outlives the hot tier.
        for wave in 0..120 {
            put_all(&store, wave * 1000..(wave + 1) * 1000);
        }
        assert!(
            stats.direct.load(Ordering::Relaxed),
            "late receipts: straight to the tables"
        );
        let flushed = stats.flushed.load(Ordering::Relaxed);
        assert!(
            flushed < 80_000,
            "after the first generations only a sample goes through the hot tier: {flushed} of 120000"
        );
        // Removed at once (fast receipts): the sampled ones never reach the tables, so the
        // hot tier is used again.
        for wave in 120..240 {
            let ns = wave * 1000..(wave + 1) * 1000;
            put_all(&store, ns.clone());
            remove_all(&store, ns);
        }
        assert!(
            !stats.direct.load(Ordering::Relaxed),
            "fast receipts: through the hot tier"
        );
        // Both kinds, and removals of what went straight to the tables, survive a crash.
        remove_all(&store, 0..1000);
        let check = |store: &DurableStore| {
            assert_eq!(store.counts().unwrap().correlations, 119_000);
            for n in (0..240_000).step_by(991) {
                let found = store.correlation_by_client("shop", &format!("c{n}")).unwrap();
                assert_eq!(found, (1000..120_000).contains(&n).then(|| correlation(n)), "c{n}");
            }
        };
        check_across_a_crash(store, &d, check);
    }

    /// An upstream that reuses ids: after a clean stop the log is empty, and its row numbers
    /// must still go on past the stamps the tables hold, or a replay would skip the newer write.
    #[test]
    fn a_key_written_again_after_a_clean_stop_survives_a_crash() {
        written_again_after_a_clean_stop("rows", false, StoreSync::Always);
    }

    /// An earlier build kept no next row number: the stamps in the tables say it, and the
    /// open keeps it (with a write-ahead file, the replay's durable commit does; without, a
    /// commit of its own).
    #[test]
    fn a_store_an_earlier_build_wrote_numbers_its_rows_past_its_stamps() {
        for (name, sync) in SYNCS {
            written_again_after_a_clean_stop(&format!("rows-old-{name}"), true, sync);
        }
    }

    fn written_again_after_a_clean_stop(name: &str, earlier_build: bool, sync: StoreSync) {
        let d = dir(name);
        let store = open_sync(&d, sync);
        for n in 0..50 {
            put_all(&store, [n].into_iter());
        }
        // Folded into the tables, stamped with rows up to 49; the log empty.
        drop(store);
        if earlier_build {
            let db = Database::create(d.join(FILE)).unwrap();
            let txn = db.begin_write().unwrap();
            assert!(txn.open_table(META).unwrap().remove("next_row").unwrap().is_some());
            txn.commit().unwrap();
        }
        let store = open_sync(&d, sync);
        let engine = store.shared.engine().unwrap();
        let kept = engine
            .db
            .begin_read()
            .unwrap()
            .open_table(META)
            .unwrap()
            .get("next_row")
            .unwrap();
        assert!(
            kept.is_some_and(|n| n.value() >= 50),
            "the next row number is kept at open"
        );
        drop(engine);
        let newer = Arc::new(Correlation {
            client_id: "again".into(),
            ..(*correlation(7)).clone()
        });
        store.put_correlation(newer.clone(), "7").wait_blocking().unwrap();
        check_across_a_crash(store, &d, |store| {
            assert_eq!(
                store.correlation_by_upstream("smsc-a", "7").unwrap(),
                Some(newer.clone())
            );
        });
    }

    #[test]
    fn a_replay_never_brings_back_what_the_tables_hold_newer() {
        use super::super::record::{encode_into, log_put, log_remove};
        let d = dir("stamps");
        DurableStore::open(&d).unwrap().stop_like_a_crash();
        let (a, b, c) = (correlation(1), correlation(2), correlation(3));
        {
            // As a crash can leave it: a key put and removed in the log, then put again straight
            // into the tables (row 10); a key the tables hold from row 2, removed in row 5; a key
            // only the log has.
            let db = Database::create(d.join("smpp-proxy.redb")).unwrap();
            let txn = db.begin_write().unwrap();
            {
                let mut up = txn.open_table(CORR_UP).unwrap();
                let mut value = Vec::new();
                encode_stamped(&mut value, &a, 10);
                up.insert(&*up_key("smsc-a", "1"), value.as_slice()).unwrap();
                value.clear();
                encode_stamped(&mut value, &b, 2);
                up.insert(&*up_key("smsc-a", "2"), value.as_slice()).unwrap();
                let mut log = txn.open_table(LOG).unwrap();
                let mut row = Vec::new();
                let mut record = Vec::new();
                encode_into(&mut record, &a);
                log_put(&mut row, &up_key("smsc-a", "1"), &record);
                log.insert(3, row.as_slice()).unwrap();
                row.clear();
                log_remove(&mut row, &up_key("smsc-a", "1"));
                log_remove(&mut row, &up_key("smsc-a", "2"));
                log.insert(5, row.as_slice()).unwrap();
                row.clear();
                record.clear();
                encode_into(&mut record, &c);
                log_put(&mut row, &up_key("smsc-a", "3"), &record);
                log.insert(6, row.as_slice()).unwrap();
            }
            txn.commit().unwrap();
        }
        let store = DurableStore::open(&d).unwrap();
        assert_eq!(store.correlation_by_upstream("smsc-a", "1").unwrap(), Some(a));
        assert_eq!(store.correlation_by_upstream("smsc-a", "2").unwrap(), None);
        assert_eq!(store.correlation_by_upstream("smsc-a", "3").unwrap(), Some(c));
        assert_eq!(store.counts().unwrap().correlations, 2);
        drop(store);
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn only_what_outlives_a_generation_reaches_the_tables() {
        for (name, sync) in SYNCS {
            outlive_a_generation(&dir(&format!("gens-{name}")), sync);
        }
    }

    /// With `periodic`, the flushes' last slices also meet log rows still waiting to be written
    /// (those their flush deletes are never written).
    fn outlive_a_generation(d: &Path, sync: StoreSync) {
        let store = open_sync(d, sync);
        // Waves of 1000, the even half removed at once (a fast receipt), the odd half kept:
        // 90 000 writes, several generations, so earlier ones are flushed while this runs.
        for wave in 0..60 {
            let ns = wave * 1000..(wave + 1) * 1000;
            put_all(&store, ns.clone());
            remove_all(&store, ns.filter(|n| n.is_multiple_of(2)));
        }
        let flushed = store.writer_stats().flushed.load(Ordering::Relaxed);
        assert!(
            flushed > 0 && flushed <= 30_000,
            "only kept correlations are flushed, and some were: {flushed}"
        );
        assert!(store.hot_len() < 60_000, "the hot tier is bounded: {}", store.hot_len());
        let check = |store: &DurableStore| {
            assert_eq!(store.counts().unwrap().correlations, 30_000);
            for n in (0..60_000).step_by(997) {
                let found = store.correlation_by_client("shop", &format!("c{n}")).unwrap();
                assert_eq!(found.is_some(), n % 2 == 1, "c{n}");
                let found = store.correlation_by_upstream("smsc-a", &format!("{n:x}")).unwrap();
                assert_eq!(found, (n % 2 == 1).then(|| correlation(n)), "{n:x}");
            }
        };
        check(&store);
        // Removing what the tables hold works the same; and all of it survives a crash.
        store.remove_correlation(&correlation(1), "1").wait_blocking().unwrap();
        put_all(&store, [1].into_iter());
        check_across_a_crash(store, d, check);
    }

    /// A store in `d` with `sync = "periodic"` at `interval`, and its write-ahead file.
    fn open_periodic(d: &Path, interval: Duration) -> (DurableStore, PathBuf) {
        let store = DurableStore::open_with(d, Duration::MAX, StoreSync::Periodic { interval }).unwrap();
        (store, d.join(super::super::writer::wal::FILE))
    }

    /// What a killed `sync = "periodic"` run leaves (records after the durable state) is
    /// applied at the next open, even one with `sync = "always"`, which then removes the file.
    #[test]
    fn a_write_ahead_file_left_by_a_killed_run_is_applied_at_open() {
        let d = dir("wal");
        let (store, wal_file) = open_periodic(&d, Duration::from_secs(60));
        put_all(&store, 0..10);
        store.outbox_push("shop", b"before").wait_blocking().unwrap();
        drop(store);
        assert_eq!(
            std::fs::metadata(&wal_file).unwrap().len(),
            0,
            "a clean stop leaves nothing to replay"
        );
        // The records a run killed before its next sync would have left (numbered well past
        // the batches of the first run).
        let mut wal = Wal::open(&d).unwrap();
        let push = Op::OutboxPush {
            client: "shop".into(),
            pdu: [&[0u8; 8][..], b"after"].concat(),
        };
        wal.append(1_000, [put_op(correlation(10), "a"), push].iter()).unwrap();
        let remove = Op::RemoveCorrelation {
            up_key: up_key("smsc-a", "3"),
        };
        wal.append(1_001, [remove].iter()).unwrap();
        // A record the durable state already holds (batch 1) is not applied again.
        let old = Op::RemoveCorrelation {
            up_key: up_key("smsc-a", "4"),
        };
        wal.append(1, [old].iter()).unwrap();
        drop(wal);
        let store = DurableStore::open(&d).unwrap();
        let found = |id: &str| store.correlation_by_upstream("smsc-a", id).unwrap().is_some();
        assert!(found("a"), "the put in the file");
        assert!(!found("3"), "the removal in the file");
        assert!(
            found("4") && found("9"),
            "what the database held, bar a record it already had"
        );
        let outbox = store.outbox_after("shop", 0, 10).unwrap();
        let pdus: Vec<&[u8]> = outbox.iter().map(|e| e.pdu.as_slice()).collect();
        assert_eq!(pdus, [&b"before"[..], b"after"]);
        assert!(!wal_file.exists(), "sync = always keeps no write-ahead file");
    }

    /// `sync = "periodic"`: the write-ahead file is fsynced every `sync_interval` by a thread of
    /// its own, while the database is left to be made durable much later (the file is not
    /// emptied), so no answer waits for the database's fsync.
    #[test]
    fn with_periodic_sync_the_write_ahead_file_is_fsynced_on_its_own_and_the_database_later() {
        let d = dir("walsync");
        // The database is made durable ten intervals after the first write: the checks below
        // have 10 s to see the file fsynced and still growing.
        let (store, wal_file) = open_periodic(&d, Duration::from_secs(1));
        let syncs = || store.writer_stats().wal_syncs.load(Ordering::Relaxed);
        let wait_for = |what: &str, done: &dyn Fn() -> bool| {
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            while !done() {
                assert!(std::time::Instant::now() < deadline, "{what}");
                std::thread::sleep(Duration::from_millis(5));
            }
        };
        // Nothing written: nothing to fsync.
        std::thread::sleep(Duration::from_millis(1100));
        assert_eq!(syncs(), 0, "an idle file is not fsynced");
        put_all(&store, 0..10);
        wait_for("the appended records are fsynced", &|| syncs() >= 1);
        let len = std::fs::metadata(&wal_file).unwrap().len();
        assert!(len > 0, "the database was not made durable in the meantime");
        put_all(&store, 10..20);
        let before = syncs();
        wait_for("and again after more", &|| syncs() > before);
        assert!(
            std::fs::metadata(&wal_file).unwrap().len() > len,
            "still not made durable: the file grows"
        );
        // That a restart applies what the file holds: a_write_ahead_file_left_by_a_killed_run….
        drop(store);
        let _ = std::fs::remove_dir_all(&d);
    }

    /// `sync = "periodic"`: a batch of hot correlation writes is committed to the write-ahead
    /// file only; its log row waits for the next write transaction (any), or for the database
    /// to be made durable, and a restart finds it in the log.
    #[test]
    fn with_periodic_sync_hot_batches_leave_their_log_rows_to_the_next_transaction() {
        let d = dir("pending");
        let (store, wal_file) = open_periodic(&d, Duration::from_secs(60));
        let log_rows = || {
            let engine = store.shared.engine().unwrap();
            let txn = engine.db.begin_read().unwrap();
            txn.open_table(LOG).unwrap().len().unwrap()
        };
        put_all(&store, 0..100);
        remove_all(&store, 0..50);
        assert_eq!(log_rows(), 0, "no transaction yet: the rows wait");
        let found = |store: &DurableStore, n: u32| {
            store
                .correlation_by_upstream("smsc-a", &format!("{n:x}"))
                .unwrap()
                .is_some()
        };
        assert!(!found(&store, 49) && found(&store, 50), "the hot tier has them");
        store.outbox_push("shop", b"x").wait_blocking().unwrap();
        assert!(log_rows() > 0, "the next transaction wrote them");
        let written = log_rows();
        put_all(&store, 100..110);
        assert_eq!(log_rows(), written, "these wait again");
        // Stopped without a checkpoint: the database made durable takes the waiting rows and
        // empties the write-ahead file, so the log alone brings them back.
        store.stop_like_a_crash();
        assert_eq!(std::fs::metadata(&wal_file).unwrap().len(), 0);
        let (store, _) = open_periodic(&d, Duration::from_secs(60));
        assert_eq!(store.counts().unwrap().correlations, 60);
        assert!((0..50).all(|n| !found(&store, n)) && (50..110).all(|n| found(&store, n)));
        drop(store);
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn outbox_is_ordered_per_client_and_survives_reopen() {
        let d = dir("outbox");
        let seqs: Vec<u64> = {
            let store = DurableStore::open(&d).unwrap();
            let tickets: Vec<Commit> = (0..10)
                .map(|n: u32| {
                    store.outbox_push(
                        if n.is_multiple_of(2) { "shop" } else { "bank" },
                        format!("pdu{n}").as_bytes(),
                    )
                })
                .collect();
            tickets.into_iter().map(|t| t.wait_blocking().unwrap()).collect()
        };
        assert!(seqs.windows(2).all(|w| w[0] < w[1]));
        let store = DurableStore::open(&d).unwrap();
        let shop = store.outbox_after("shop", 0, 100).unwrap();
        let texts: Vec<String> = shop.iter().map(|e| String::from_utf8(e.pdu.clone()).unwrap()).collect();
        assert!(
            shop.iter().all(|e| e.stored_at > 1_700_000_000),
            "stamped with the time"
        );
        assert_eq!(texts, ["pdu0", "pdu2", "pdu4", "pdu6", "pdu8"]);
        store
            .outbox_remove("shop", shop[0].id.as_seq())
            .wait_blocking()
            .unwrap();
        assert_eq!(store.outbox_after("shop", 0, 2).unwrap().len(), 2);
        assert_eq!(store.outbox_after("shop", shop[3].id.as_seq(), 100).unwrap().len(), 1);
        assert_eq!(
            store.counts().unwrap().outbox,
            vec![("bank".to_owned(), 5), ("shop".to_owned(), 4)]
        );
        // New entries continue after the old ones (the sequence is durable too).
        let next = store.outbox_push("shop", b"later").wait_blocking().unwrap();
        assert!(next > *seqs.iter().max().unwrap());
        drop(store);
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn correlations_expire_by_ttl_a_slice_at_a_time() {
        let d = dir("ttl");
        let store = DurableStore::open_with_ttl(&d, Duration::from_secs(100)).unwrap();
        // 1500 old ones (submitted at 1_700_000_000 + n) and one fresh, in the tables.
        put_all(&store, 0..1500);
        let mut fresh = (*correlation(99_999)).clone();
        fresh.submitted_at = 1_800_000_000;
        let fresh = Arc::new(fresh);
        store.put_correlation(fresh.clone(), "fresh").wait_blocking().unwrap();
        // A removed one is not expired again.
        store.remove_correlation(&correlation(3), "3").wait_blocking().unwrap();
        store.checkpoint().wait_blocking().unwrap();
        assert_eq!(store.hot_len(), 0);
        // And two hot ones: 3 again (old), and one submitted later.
        put_all(&store, [3, 1_000_000].into_iter());
        // Only those submitted before now - ttl go: 0..1000 of them (3 from the hot tier, at once).
        let now = 1_700_000_000 + 100 + 1000;
        let first = store.sweep(now, Some(600)).wait_blocking().unwrap();
        let second = store.sweep(now, Some(600)).wait_blocking().unwrap();
        let third = store.sweep(now, Some(600)).wait_blocking().unwrap();
        assert!(
            first > 1 && first <= 601 && second <= 600,
            "a slice reads at most its budget of the tables: {first}"
        );
        assert_eq!(first + second + third, 1000, "one pass over 1500 in three slices");
        assert_eq!(
            store.sweep(now, Some(600)).wait_blocking().unwrap(),
            0,
            "a new pass finds none"
        );
        assert!(store.correlation_by_client("shop", "c7").unwrap().is_none());
        assert!(store.correlation_by_client("shop", "c3").unwrap().is_none());
        assert!(store.correlation_by_client("shop", "c1000000").unwrap().is_some());
        assert_eq!(
            store.correlation_by_client("shop", "c1200").unwrap(),
            Some(correlation(1200))
        );
        // Past everyone's TTL but the fresh one's, the default budget takes the rest at once.
        assert_eq!(store.expire_correlations(1_800_000_000).wait_blocking().unwrap(), 501);
        assert_eq!(store.counts().unwrap().correlations, 1);
        assert_eq!(store.correlation_by_upstream("smsc-a", "fresh").unwrap(), Some(fresh));
        drop(store);
        let _ = std::fs::remove_dir_all(&d);
    }
}
