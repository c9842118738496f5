//! The embedded, crash-safe store (redb) under `[store] path`: correlations and client outboxes
//! survive restarts and `kill -9`.
//!
//! One writer thread owns every write. Callers hand it operations through a bounded channel and
//! get a [`Commit`] ticket; the writer takes everything that queued up while it was committing
//! (up to 1000 operations; when that is under 16 it waits at most 0.5 ms for more), applies it
//! in one write transaction, commits once (one fsync for the whole batch), then answers every
//! ticket. Reads run on the caller's thread in their own read
//! transactions (redb readers never block the writer). Nothing is loaded into memory at open.
//!
//! Tables (keys are `name \0 rest`, so one client's or upstream's entries are one range):
//! - `corr_up`: `upstream \0 canonical upstream id` → encoded [`Correlation`];
//! - `corr_client`: `client \0 client id` → the `corr_up` key;
//! - `outbox`: `client \0 seq (u64 BE)` → the PDU to deliver, oldest first;
//! - `meta`: `outbox_seq` → the last outbox sequence number.
//!
//! Correlations without a final receipt expire by a sweep, not an index: the writer walks
//! `corr_up` from where the last sweep stopped, a bounded slice per call (a full pass at
//! least every hour), and drops what is past the TTL. An expiry index would cost two more
//! B-tree writes per message (measured: ~15% of the writer's CPU) to save a walk that runs in
//! the background anyway.

use super::{Correlation, OutboxEntry, Store, StoreError};
use crate::receipt::id::{canonical, IdMatch};
use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};
use std::ops::Bound;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc as std_mpsc, Arc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

const CORR_UP: TableDefinition<&[u8], &[u8]> = TableDefinition::new("corr_up");
const CORR_CLIENT: TableDefinition<&[u8], &[u8]> = TableDefinition::new("corr_client");
const OUTBOX: TableDefinition<&[u8], &[u8]> = TableDefinition::new("outbox");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");

/// How long a correlation without a final receipt is kept unless configured otherwise.
pub const DEFAULT_CORRELATION_TTL: Duration = Duration::from_secs(72 * 3600);
/// A sweep reads at least this many correlations (a few milliseconds of the writer)…
const SWEEP_MIN: u64 = 10_000;
/// …and at most this many, so one sweep never holds the writer for long…
const SWEEP_MAX: u64 = 100_000;
/// …and otherwise the number that makes a full pass in this many sweeps (every 10 s: an hour).
const SWEEPS_PER_PASS: u64 = 360;

/// A batch closes at this many operations…
const BATCH_MAX: usize = 1000;
/// …or this long after its first one, when fewer than `BATCH_SMALL` were waiting.
const BATCH_DELAY: Duration = Duration::from_micros(500);
/// A batch this big is committed at once.
const BATCH_SMALL: usize = 16;

fn err(e: impl std::fmt::Display) -> StoreError {
    StoreError(e.to_string())
}

/// `name \0 rest`.
fn key(name: &str, rest: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(name.len() + 1 + rest.len());
    k.extend_from_slice(name.as_bytes());
    k.push(0);
    k.extend_from_slice(rest);
    k
}

/// The waiting side of a write: resolves when the write is durable (or failed).
#[derive(Debug)]
pub struct Commit(CommitState);

#[derive(Debug)]
enum CommitState {
    Done(Option<Result<u64, StoreError>>),
    Pending(oneshot::Receiver<Result<u64, StoreError>>),
}

/// A `Commit` is also a future, so a session can keep serving while its writes are committed.
impl std::future::Future for Commit {
    type Output = Result<u64, StoreError>;

    fn poll(mut self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<Self::Output> {
        match &mut self.0 {
            CommitState::Done(result) => std::task::Poll::Ready(
                result
                    .take()
                    .unwrap_or_else(|| Err(StoreError("commit polled twice".into()))),
            ),
            CommitState::Pending(rx) => std::pin::Pin::new(rx)
                .poll(cx)
                .map(|r| r.unwrap_or_else(|_| Err(StoreError("store writer stopped".into())))),
        }
    }
}

impl Commit {
    /// A write that is already durable (stores without a writer, like the memory store).
    pub fn done(result: Result<u64, StoreError>) -> Commit {
        Commit(CommitState::Done(Some(result)))
    }

    /// Waits until the write is durable; the value is the outbox sequence number where one was
    /// assigned (0 otherwise).
    pub async fn wait(self) -> Result<u64, StoreError> {
        self.await
    }

    /// Blocks the thread until the write is durable (for tools, not for async tasks).
    pub fn wait_blocking(self) -> Result<u64, StoreError> {
        match self.0 {
            CommitState::Done(r) => r.unwrap_or_else(|| Err(StoreError("commit polled twice".into()))),
            CommitState::Pending(rx) => rx
                .blocking_recv()
                .unwrap_or_else(|_| Err(StoreError("store writer stopped".into()))),
        }
    }
}

enum Op {
    PutCorrelation {
        up_key: Vec<u8>,
        client_key: Vec<u8>,
        value: Vec<u8>,
    },
    RemoveCorrelation {
        up_key: Vec<u8>,
        client_key: Vec<u8>,
    },
    ExpireCorrelations {
        /// Correlations submitted before this (Unix seconds) are dropped.
        before: u64,
        /// How many to read at most; `None`: by the table's size.
        budget: Option<u64>,
    },
    OutboxPush {
        client: String,
        pdu: Vec<u8>,
    },
    OutboxRemove {
        client: String,
        seq: u64,
    },
}

type Reply = oneshot::Sender<Result<u64, StoreError>>;

/// How the writer has been doing, for tests and metrics.
#[derive(Debug, Default)]
pub struct WriterStats {
    /// Write transactions committed.
    pub commits: AtomicU64,
    /// Operations applied.
    pub operations: AtomicU64,
}

/// The durable store.
#[derive(Debug)]
pub struct DurableStore {
    db: Arc<Database>,
    correlation_ttl: u64,
    /// Unbounded on purpose: a bounded one would block the async task that writes when full.
    /// What waits here is bounded by the proxy's windows and outbox caps.
    tx: Option<std_mpsc::Sender<(Op, Reply)>>,
    writer: Option<JoinHandle<()>>,
    stats: Arc<WriterStats>,
}

/// Counts for `smpp-proxy store stats`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoreCounts {
    /// Correlations held.
    pub correlations: u64,
    /// Outbox entries per client.
    pub outbox: Vec<(String, u64)>,
}

impl DurableStore {
    /// Opens (or creates) the store in directory `dir`, keeping correlations 72 hours.
    pub fn open(dir: &Path) -> Result<DurableStore, StoreError> {
        DurableStore::open_with_ttl(dir, DEFAULT_CORRELATION_TTL)
    }

    /// Opens (or creates) the store, keeping correlations without a final receipt for `ttl`.
    pub fn open_with_ttl(dir: &Path, ttl: Duration) -> Result<DurableStore, StoreError> {
        std::fs::create_dir_all(dir).map_err(|e| StoreError(format!("{}: {e}", dir.display())))?;
        let db = Arc::new(Database::create(dir.join("smpp-proxy.redb")).map_err(err)?);
        // Create the tables so that readers find them.
        let txn = db.begin_write().map_err(err)?;
        {
            txn.open_table(CORR_UP).map_err(err)?;
            txn.open_table(CORR_CLIENT).map_err(err)?;
            txn.open_table(OUTBOX).map_err(err)?;
            txn.open_table(META).map_err(err)?;
        }
        txn.commit().map_err(err)?;
        let (tx, rx) = std_mpsc::channel();
        let stats = Arc::new(WriterStats::default());
        let writer = {
            let db = db.clone();
            let stats = stats.clone();
            std::thread::Builder::new()
                .name("store-writer".into())
                .spawn(move || writer(db, rx, stats))
                .map_err(|e| StoreError(format!("store writer thread: {e}")))?
        };
        Ok(DurableStore {
            db,
            correlation_ttl: ttl.as_secs(),
            tx: Some(tx),
            writer: Some(writer),
            stats,
        })
    }

    /// The writer's counters.
    pub fn writer_stats(&self) -> &WriterStats {
        &self.stats
    }

    fn submit(&self, op: Op) -> Commit {
        let (reply, rx) = oneshot::channel();
        match self.tx.as_ref().map(|tx| tx.send((op, reply))) {
            Some(Ok(())) => Commit(CommitState::Pending(rx)),
            _ => Commit::done(Err(StoreError("store writer stopped".into()))),
        }
    }

    /// Records a correlation under `canonical_id` (the upstream id in the form it is matched by).
    pub fn put_correlation(&self, c: &Correlation, canonical_id: &str) -> Commit {
        self.submit(Op::PutCorrelation {
            up_key: key(&c.upstream, canonical_id.as_bytes()),
            client_key: key(&c.client, c.client_id.as_bytes()),
            value: encode(c),
        })
    }

    /// Forgets a correlation.
    pub fn remove_correlation(&self, c: &Correlation, canonical_id: &str) -> Commit {
        self.submit(Op::RemoveCorrelation {
            up_key: key(&c.upstream, canonical_id.as_bytes()),
            client_key: key(&c.client, c.client_id.as_bytes()),
        })
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
    ) -> Result<Option<Correlation>, StoreError> {
        let txn = self.db.begin_read().map_err(err)?;
        let table = txn.open_table(CORR_UP).map_err(err)?;
        let found = table
            .get(key(upstream, canonical_id.as_bytes()).as_slice())
            .map_err(err)?;
        found.map(|v| decode(v.value())).transpose()
    }

    /// The correlation of the id `client` was given.
    pub fn correlation_by_client(&self, client: &str, client_id: &str) -> Result<Option<Correlation>, StoreError> {
        let txn = self.db.begin_read().map_err(err)?;
        let by_client = txn.open_table(CORR_CLIENT).map_err(err)?;
        let Some(up_key) = by_client
            .get(key(client, client_id.as_bytes()).as_slice())
            .map_err(err)?
        else {
            return Ok(None);
        };
        let by_up = txn.open_table(CORR_UP).map_err(err)?;
        let found = by_up.get(up_key.value()).map_err(err)?;
        found.map(|v| decode(v.value())).transpose()
    }

    /// Appends a PDU to `client`'s outbox, stamped with the time; the ticket gives its sequence
    /// number once durable.
    pub fn outbox_push(&self, client: &str, pdu: &[u8]) -> Commit {
        let mut value = Vec::with_capacity(8 + pdu.len());
        value.extend_from_slice(&super::unix_now().to_be_bytes());
        value.extend_from_slice(pdu);
        self.submit(Op::OutboxPush {
            client: client.to_owned(),
            pdu: value,
        })
    }

    /// Removes an entry once the client acknowledged it.
    pub fn outbox_remove(&self, client: &str, seq: u64) -> Commit {
        self.submit(Op::OutboxRemove {
            client: client.to_owned(),
            seq,
        })
    }

    /// Up to `limit` entries of `client`'s outbox with a sequence number above `after`, oldest first.
    pub fn outbox_after(&self, client: &str, after: u64, limit: usize) -> Result<Vec<OutboxEntry>, StoreError> {
        let txn = self.db.begin_read().map_err(err)?;
        let table = txn.open_table(OUTBOX).map_err(err)?;
        let start = key(client, &(after.saturating_add(1)).to_be_bytes());
        let end = key(client, &u64::MAX.to_be_bytes());
        let mut out = Vec::new();
        for item in table.range(start.as_slice()..=end.as_slice()).map_err(err)? {
            let (k, v) = item.map_err(err)?;
            let k = k.value();
            let seq = u64::from_be_bytes(k[k.len() - 8..].try_into().map_err(err)?);
            let v = v.value();
            let Some((stored_at, pdu)) = v.split_first_chunk::<8>() else {
                return Err(StoreError(format!("outbox entry {seq} of {client}: corrupt")));
            };
            out.push(OutboxEntry {
                seq,
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
        let txn = self.db.begin_read().map_err(err)?;
        let correlations = txn.open_table(CORR_UP).map_err(err)?.len().map_err(err)?;
        let outbox = txn.open_table(OUTBOX).map_err(err)?;
        let mut per_client: Vec<(String, u64)> = Vec::new();
        for item in outbox.iter().map_err(err)? {
            let (k, _) = item.map_err(err)?;
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
        self.put_correlation(&c, &canonical(c.upstream_id.as_bytes(), id_match))
    }

    fn get_by_upstream_key(&self, upstream: &str, key: &str) -> Result<Option<Arc<Correlation>>, StoreError> {
        Ok(self.correlation_by_upstream(upstream, key)?.map(Arc::new))
    }

    fn find_by_client(&self, client: &str, client_id: &str) -> Result<Option<Arc<Correlation>>, StoreError> {
        Ok(self.correlation_by_client(client, client_id)?.map(Arc::new))
    }

    fn remove(&self, c: &Correlation, id_match: IdMatch) -> Commit {
        self.remove_correlation(c, &canonical(c.upstream_id.as_bytes(), id_match))
    }

    fn len(&self) -> usize {
        let read = || -> Result<u64, StoreError> {
            let txn = self.db.begin_read().map_err(err)?;
            let n = txn.open_table(CORR_UP).map_err(err)?.len().map_err(err)?;
            Ok(n)
        };
        read().unwrap_or(0) as usize
    }

    fn outbox_push(&self, client: &str, pdu: &[u8]) -> Commit {
        DurableStore::outbox_push(self, client, pdu)
    }

    fn expire(&self, now: u64) -> Commit {
        self.expire_correlations(now)
    }

    fn outbox_remove(&self, client: &str, seq: u64) -> Commit {
        DurableStore::outbox_remove(self, client, seq)
    }

    fn outbox_load(&self, client: &str, after: u64, limit: usize) -> Result<Vec<OutboxEntry>, StoreError> {
        self.outbox_after(client, after, limit)
    }
}

impl Drop for DurableStore {
    fn drop(&mut self) {
        // Closing the channel lets the writer finish what is queued and stop.
        self.tx.take();
        if let Some(w) = self.writer.take() {
            let _ = w.join();
        }
    }
}

fn writer(db: Arc<Database>, rx: std_mpsc::Receiver<(Op, Reply)>, stats: Arc<WriterStats>) {
    let mut batch: Vec<(Op, Reply)> = Vec::with_capacity(BATCH_MAX);
    // Where the expiry sweep goes on: the last `corr_up` key it read.
    let mut sweep_from: Option<Vec<u8>> = None;
    while let Ok(first) = rx.recv() {
        batch.push(first);
        // Take what queued up while the last batch was committing; wait (briefly) for more only
        // when that is little, so a busy proxy never waits and a quiet one still batches.
        while batch.len() < BATCH_MAX {
            match rx.try_recv() {
                Ok(op) => batch.push(op),
                Err(_) => break,
            }
        }
        if batch.len() < BATCH_SMALL {
            let deadline = Instant::now() + BATCH_DELAY;
            while batch.len() < BATCH_MAX {
                let left = deadline.saturating_duration_since(Instant::now());
                match rx.recv_timeout(left) {
                    Ok(op) => batch.push(op),
                    Err(_) => break,
                }
            }
        }
        let t0 = Instant::now();
        let results = apply(&db, &batch, &mut sweep_from);
        // Fields are only computed when this debug line is enabled.
        tracing::debug!(batch = batch.len(), us = t0.elapsed().as_micros() as u64, kinds = ?op_kinds(&batch), "commit");
        stats.commits.fetch_add(1, Ordering::Relaxed);
        stats.operations.fetch_add(batch.len() as u64, Ordering::Relaxed);
        match results {
            Ok(seqs) => {
                for ((_, reply), seq) in batch.drain(..).zip(seqs) {
                    let _ = reply.send(Ok(seq));
                }
            }
            Err(e) => {
                for (_, reply) in batch.drain(..) {
                    let _ = reply.send(Err(e.clone()));
                }
            }
        }
    }
}

/// How many of each operation a batch holds: correlation puts, removals, expiry sweeps, outbox
/// pushes, outbox removals (for `RUST_LOG=smpp_proxy::store=debug`).
fn op_kinds(batch: &[(Op, Reply)]) -> [usize; 5] {
    batch.iter().fold([0; 5], |mut k, (op, _)| {
        k[match op {
            Op::PutCorrelation { .. } => 0,
            Op::RemoveCorrelation { .. } => 1,
            Op::ExpireCorrelations { .. } => 2,
            Op::OutboxPush { .. } => 3,
            Op::OutboxRemove { .. } => 4,
        }] += 1;
        k
    })
}

/// Applies a batch in one transaction; returns the outbox sequence given to each op (0 if none).
fn apply(db: &Database, batch: &[(Op, Reply)], sweep_from: &mut Option<Vec<u8>>) -> Result<Vec<u64>, StoreError> {
    let txn = db.begin_write().map_err(err)?;
    let mut seqs = Vec::with_capacity(batch.len());
    {
        let mut up = txn.open_table(CORR_UP).map_err(err)?;
        let mut by_client = txn.open_table(CORR_CLIENT).map_err(err)?;
        let mut outbox = txn.open_table(OUTBOX).map_err(err)?;
        let mut meta = txn.open_table(META).map_err(err)?;
        let mut next = meta.get("outbox_seq").map_err(err)?.map_or(0, |v| v.value());
        for (op, _) in batch {
            let seq = match op {
                Op::PutCorrelation {
                    up_key,
                    client_key,
                    value,
                } => {
                    up.insert(up_key.as_slice(), value.as_slice()).map_err(err)?;
                    by_client
                        .insert(client_key.as_slice(), up_key.as_slice())
                        .map_err(err)?;
                    0
                }
                Op::RemoveCorrelation { up_key, client_key } => {
                    up.remove(up_key.as_slice()).map_err(err)?;
                    by_client.remove(client_key.as_slice()).map_err(err)?;
                    0
                }
                Op::ExpireCorrelations { before, budget } => {
                    let budget = budget.unwrap_or_else(|| {
                        let len = up.len().unwrap_or(0);
                        (len / SWEEPS_PER_PASS).clamp(SWEEP_MIN, SWEEP_MAX)
                    });
                    let from = match sweep_from.as_deref() {
                        Some(k) => Bound::Excluded(k),
                        None => Bound::Unbounded,
                    };
                    let mut due: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
                    let mut read = 0;
                    let mut last = None;
                    for item in up.range::<&[u8]>((from, Bound::Unbounded)).map_err(err)? {
                        let (k, v) = item.map_err(err)?;
                        match time_and_client_key(v.value()) {
                            Some((submitted_at, client_key)) if submitted_at < *before => {
                                due.push((k.value().to_vec(), client_key()));
                            }
                            _ => {}
                        }
                        read += 1;
                        if read >= budget {
                            last = Some(k.value().to_vec());
                            break;
                        }
                    }
                    // At the end of the table the next sweep starts a new pass.
                    *sweep_from = last;
                    for (up_key, client_key) in &due {
                        up.remove(up_key.as_slice()).map_err(err)?;
                        by_client.remove(client_key.as_slice()).map_err(err)?;
                    }
                    due.len() as u64
                }
                Op::OutboxPush { client, pdu } => {
                    next += 1;
                    outbox
                        .insert(key(client, &next.to_be_bytes()).as_slice(), pdu.as_slice())
                        .map_err(err)?;
                    next
                }
                Op::OutboxRemove { client, seq } => {
                    outbox.remove(key(client, &seq.to_be_bytes()).as_slice()).map_err(err)?;
                    0
                }
            };
            seqs.push(seq);
        }
        meta.insert("outbox_seq", next).map_err(err)?;
    }
    txn.commit().map_err(err)?;
    Ok(seqs)
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u32).to_be_bytes());
    out.extend_from_slice(s.as_bytes());
}

/// A correlation as stored: format version, then length-prefixed strings and integers.
fn encode(c: &Correlation) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + c.upstream_id.len() + c.client_id.len());
    out.push(1);
    put_str(&mut out, &c.upstream);
    put_str(&mut out, &c.upstream_id);
    put_str(&mut out, &c.client);
    put_str(&mut out, &c.client_id);
    out.extend_from_slice(&c.submitted_at.to_be_bytes());
    out.push(c.registered_delivery);
    put_str(&mut out, &c.source_addr);
    put_str(&mut out, &c.destination_addr);
    match c.part {
        Some((part, of)) => out.extend_from_slice(&[1, part, of]),
        None => out.push(0),
    }
    out
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], StoreError> {
        if self.0.len() < n {
            return Err(StoreError("corrupt correlation record".into()));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }
    fn bytes(&mut self) -> Result<&'a [u8], StoreError> {
        let len = u32::from_be_bytes(self.take(4)?.try_into().map_err(err)?) as usize;
        self.take(len)
    }
    fn string(&mut self) -> Result<String, StoreError> {
        Ok(String::from_utf8_lossy(self.bytes()?).into_owned())
    }
}

/// The submission time and `corr_client` key of a stored correlation, read without decoding the
/// rest (the expiry sweep reads many). `None` for a record it cannot read.
fn time_and_client_key(bytes: &[u8]) -> Option<(u64, impl FnOnce() -> Vec<u8> + '_)> {
    let mut r = Reader(bytes);
    if r.take(1).ok()? != [1] {
        return None;
    }
    r.bytes().ok()?;
    r.bytes().ok()?;
    let client = r.bytes().ok()?;
    let client_id = r.bytes().ok()?;
    let submitted_at = u64::from_be_bytes(r.take(8).ok()?.try_into().ok()?);
    Some((submitted_at, move || {
        let mut k = Vec::with_capacity(client.len() + 1 + client_id.len());
        k.extend_from_slice(client);
        k.push(0);
        k.extend_from_slice(client_id);
        k
    }))
}

fn decode(bytes: &[u8]) -> Result<Correlation, StoreError> {
    let mut r = Reader(bytes);
    if r.take(1)? != [1] {
        return Err(StoreError("unknown correlation record version".into()));
    }
    Ok(Correlation {
        upstream: Arc::from(r.string()?.as_str()),
        upstream_id: r.string()?,
        client: Arc::from(r.string()?.as_str()),
        client_id: r.string()?,
        submitted_at: u64::from_be_bytes(r.take(8)?.try_into().map_err(err)?),
        registered_delivery: r.take(1)?[0],
        source_addr: r.string()?,
        destination_addr: r.string()?,
        part: match r.take(1)? {
            [1] => {
                let p = r.take(2)?;
                Some((p[0], p[1]))
            }
            _ => None,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn correlation(n: u32) -> Correlation {
        Correlation {
            upstream: "smsc-a".into(),
            upstream_id: format!("{n:x}"),
            client: "shop".into(),
            client_id: format!("c{n}"),
            submitted_at: 1_700_000_000 + u64::from(n),
            registered_delivery: 1,
            source_addr: "4477".into(),
            destination_addr: "447700900123".into(),
            part: if n % 2 == 0 { Some((1, 3)) } else { None },
        }
    }

    fn dir(name: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("smpp-proxy-store-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn correlations_survive_reopen_and_writes_are_group_committed() {
        let d = dir("corr");
        {
            let store = DurableStore::open(&d).unwrap();
            let commits: Vec<Commit> = (0..2000)
                .map(|n| store.put_correlation(&correlation(n), &format!("{n:x}")))
                .collect();
            for c in commits {
                c.wait_blocking().unwrap();
            }
            let s = store.writer_stats();
            assert_eq!(s.operations.load(Ordering::Relaxed), 2000);
            assert!(
                s.commits.load(Ordering::Relaxed) <= 20,
                "one fsync per batch, not per record: {}",
                s.commits.load(Ordering::Relaxed)
            );
            store.remove_correlation(&correlation(7), "7").wait_blocking().unwrap();
        }
        let store = DurableStore::open(&d).unwrap();
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
        drop(store);
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn outbox_is_ordered_per_client_and_survives_reopen() {
        let d = dir("outbox");
        let seqs: Vec<u64> = {
            let store = DurableStore::open(&d).unwrap();
            let tickets: Vec<Commit> = (0..10)
                .map(|n| store.outbox_push(if n % 2 == 0 { "shop" } else { "bank" }, format!("pdu{n}").as_bytes()))
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
        store.outbox_remove("shop", shop[0].seq).wait_blocking().unwrap();
        assert_eq!(store.outbox_after("shop", 0, 2).unwrap().len(), 2);
        assert_eq!(store.outbox_after("shop", shop[3].seq, 100).unwrap().len(), 1);
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
        // 1500 old ones (submitted at 1_700_000_000 + n) and one fresh.
        let tickets: Vec<Commit> = (0..1500)
            .map(|n| store.put_correlation(&correlation(n), &format!("{n:x}")))
            .collect();
        for t in tickets {
            t.wait_blocking().unwrap();
        }
        let mut fresh = correlation(99_999);
        fresh.submitted_at = 1_800_000_000;
        store.put_correlation(&fresh, "fresh").wait_blocking().unwrap();
        // A removed one is not expired again.
        store.remove_correlation(&correlation(3), "3").wait_blocking().unwrap();
        // Only those submitted before now - ttl go: 0..1000 of them.
        let now = 1_700_000_000 + 100 + 1000;
        let first = store.sweep(now, Some(600)).wait_blocking().unwrap();
        let second = store.sweep(now, Some(600)).wait_blocking().unwrap();
        let third = store.sweep(now, Some(600)).wait_blocking().unwrap();
        assert!(
            first > 0 && first <= 600 && second <= 600,
            "a slice reads at most its budget: {first}"
        );
        assert_eq!(first + second + third, 999, "one pass over 1500 in three slices");
        assert_eq!(
            store.sweep(now, Some(600)).wait_blocking().unwrap(),
            0,
            "a new pass finds none"
        );
        assert!(store.correlation_by_client("shop", "c7").unwrap().is_none());
        assert_eq!(
            store.correlation_by_client("shop", "c1200").unwrap(),
            Some(correlation(1200))
        );
        // Past everyone's TTL but the fresh one's, the default budget takes the rest at once.
        assert_eq!(store.expire_correlations(1_800_000_000).wait_blocking().unwrap(), 500);
        assert_eq!(store.counts().unwrap().correlations, 1);
        assert_eq!(store.correlation_by_upstream("smsc-a", "fresh").unwrap(), Some(fresh));
        drop(store);
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn records_decode_what_they_encode_and_reject_garbage() {
        let c = correlation(42);
        assert_eq!(decode(&encode(&c)).unwrap(), c);
        assert!(decode(&[1, 0, 0]).is_err());
        assert!(decode(&[9]).is_err());
    }
}
