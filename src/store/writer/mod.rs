//! The durable store's one writer thread: group commits, the log, and folding the hot tier into
//! the tables a generation later.
//!
//! Callers hand it operations through a channel and get a [`Commit`](super::Commit) ticket; the
//! writer takes everything that queued up while it was committing (up to about 1000 operations:
//! a session turn's puts, queued as one message, are never split; when it is busy, it sleeps
//! 0.5 ms for more), applies it in one write transaction, commits once
//! (one fsync for the whole batch; with `sync = "periodic"`, the batch is appended to the
//! write-ahead file instead, which [`syncer`] fsyncs every `sync_interval`, see [`wal`]), publishes
//! the correlation writes to the hot tier, then answers every ticket. Hot correlation writes
//! go to the `log` table as one row per batch; outbox writes, and correlation writes in direct
//! mode, go straight to their tables (stamped with the batch's row number, so a replay knows
//! they are newer). With the write-ahead file, a batch of hot correlation writes only (most
//! under load) opens no write transaction at all: its log row waits in memory (`Pending`) for
//! the next transaction, whichever it is, which writes it before the database is made durable
//! (the write-ahead file keeps the batch until then).
//!
//! Direct mode: when a flushed generation shows that most of its hot puts were still live (late
//! receipts: the hot tier only adds work), puts go straight to the tables, except one in
//! `SAMPLE`, which keeps measuring; the next flushed generation may switch back. A removal of
//! a key only the tables hold is applied there at once, unless a flush under way still has log
//! rows naming it (`guarded`).
//!
//! Generations: log rows are counted into generations that close at `GEN_WRITES` correlation
//! writes or after `GEN_SPAN`. Once two have closed, the older is flushed: the hot entries
//! whose latest write is in its rows go to the tables, a slice at a time between group commits
//! (commits without fsync: until the last slice deletes the generation's rows, in the same
//! transaction, the log or the write-ahead file still has them), then leave the hot tier. So a correlation stays hot for
//! at least one whole generation, and the hot tier holds at most about three.

mod batch;
mod flush;
mod sweep;
mod syncer;
pub(super) mod wal;

use super::hot::{Hot, Recording, Stage, UpKey};
use super::record::{client_key, decode, log_ops, stamp, LogOp};
use super::tables::{CORR_UP, LOG, META};
use super::{ticket, Correlation, OutboxId, Pushed, StoreError};
use crate::config::StoreSync;
use redb::{Database, Durability, ReadableDatabase, ReadableTable, WriteTransaction};
use std::collections::VecDeque;
use std::ops::RangeInclusive;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc as std_mpsc, Arc};
use std::time::{Duration, Instant};
use wal::Wal;

/// The `meta` key of the last write-ahead record a commit holds.
const WAL_SEQ: &str = "wal_seq";
/// The `meta` key of the next log row number, written by every commit that stamps the tables
/// (and by every flush slice and durable commit): once the log is emptied, its rows no longer
/// say how far the numbers went, and a number given out again would be older than a stamp in
/// the tables (a replay would skip its write).
const NEXT_ROW: &str = "next_row";

/// A batch takes no more messages once it holds this many operations (a message of a session
/// turn's puts goes in whole, so a batch may hold one turn's more).
const BATCH_MAX: usize = 1000;
/// When the last batch had `BATCH_BUSY` operations or more, the writer waits this long for
/// more before it commits (otherwise at once: a lone synchronous client has nobody to wait for).
const BATCH_DELAY: Duration = Duration::from_micros(500);
const BATCH_BUSY: usize = 64;
/// A generation closes at this many correlation writes (what the hot tier holds is about three
/// generations: ~50 000 correlations at most, a few tens of MB)…
const GEN_WRITES: usize = 16_384;
/// …or this long after it opened, when it has any.
const GEN_SPAN: Duration = Duration::from_secs(20);
/// A flush moves at most this many keys between two group commits (~10 ms of the writer).
const FLUSH_SLICE: usize = 2048;
/// With `sync = "periodic"`, the database is made durable (and the write-ahead file emptied)
/// once the file holds this much (what a restart may have to replay)…
const WAL_DURABLE_AT: u64 = 16 << 20;
/// …or `DURABLE_EVERY` times `sync_interval` after the first commit that was not (at least
/// `DURABLE_MIN`: that commit's fsync writes what the database changed since the last, and
/// answers queued behind it wait, so it is kept rare).
const DURABLE_EVERY: u32 = 10;
const DURABLE_MIN: Duration = Duration::from_secs(2);
/// A quiet writer still wakes this often to close generations…
const IDLE_WAKE: Duration = Duration::from_secs(1);
/// …and this often to go on with a flush.
const IDLE_FLUSH: Duration = Duration::from_millis(50);
/// A sweep reads at least this many correlations (a few milliseconds of the writer)…
const SWEEP_MIN: u64 = 10_000;
/// …and at most this many, so one sweep never holds the writer for long…
const SWEEP_MAX: u64 = 100_000;
/// …and otherwise the number that makes a full pass in this many sweeps (every 10 s: an hour).
const SWEEPS_PER_PASS: u64 = 360;

pub(in crate::store) enum Op {
    PutCorrelation {
        up_key: UpKey,
        c: Arc<Correlation>,
        /// `c` as a table value (its stamp filled in by the writer), and its `corr_client` key.
        value: Vec<u8>,
        client_key: Vec<u8>,
        /// The key's mark while the put waits, set when it is queued (none for a put replayed
        /// from the log); held for its `Drop`.
        #[allow(dead_code)]
        recording: Option<Recording>,
    },
    RemoveCorrelation {
        up_key: UpKey,
    },
    ExpireCorrelations {
        /// Correlations submitted before this (Unix seconds) are dropped.
        before: u64,
        /// How many table rows to read at most; `None`: by the table's size.
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
    /// Fold the whole hot tier into the tables and empty the log (answered once durable).
    Checkpoint,
}

/// What the store queues for the writer: one operation, or the correlation puts of one session
/// turn with one answer for them all (they go into the same batch, so they commit together).
pub(in crate::store) enum Queued {
    One(Op, Reply),
    Puts(Vec<Op>, Reply),
}

impl Queued {
    /// Adds the operations to `batch`, the answer with the last of them.
    fn into_batch(self, batch: &mut Vec<(Op, Reply)>) {
        match self {
            Queued::One(op, reply) => batch.push((op, reply)),
            Queued::Puts(ops, reply) => {
                let mut reply = Some(reply);
                let last = ops.len().saturating_sub(1);
                for (i, op) in ops.into_iter().enumerate() {
                    let answer = if i == last { reply.take() } else { None };
                    batch.push((op, answer.unwrap_or(Reply::Discard)));
                }
                // None to commit: answered at once.
                if let Some(reply) = reply {
                    reply.send(Ok(0));
                }
            }
        }
    }
}

/// Where the writer answers an operation: with a count or sequence number, or with how an
/// outbox write went.
pub(super) enum Reply {
    Count(ticket::Reply<u64>),
    Pushed(ticket::Reply<Pushed>),
    /// Nobody waits (a removal, a write-ahead record applied again at open, or a put of a
    /// session turn but its last, which answers for them all).
    Discard,
}

impl Reply {
    fn send(self, result: Result<u64, StoreError>) {
        // A caller that stopped waiting is no reason to fail the others.
        match self {
            Reply::Count(tx) => drop(tx.send(result)),
            Reply::Pushed(tx) => drop(tx.send(result.map(|seq| Pushed::Stored(OutboxId::seq(seq))))),
            Reply::Discard => {}
        }
    }
}

/// How the writer has been doing, for tests, benchmarks and metrics.
#[derive(Debug, Default)]
pub struct WriterStats {
    /// Group commits: batches written (with `sync = "periodic"`, to the write-ahead file, and
    /// to the database only when they have more than a log row for it).
    pub commits: AtomicU64,
    /// Operations applied.
    pub operations: AtomicU64,
    /// Correlation keys the flush wrote to (or deleted from) the tables; a correlation put and
    /// removed while hot never counts here.
    pub flushed: AtomicU64,
    /// Puts go straight to the tables (most of what the hot tier held outlived it).
    pub direct: AtomicBool,
    /// A write failed at the file: the database refuses everything until it is opened again.
    pub failed: AtomicBool,
    /// Group commits that failed.
    pub failures: AtomicU64,
    /// Times the database was opened again after a failure.
    pub reopens: AtomicU64,
    /// With `sync = "periodic"`: fsyncs of the write-ahead file.
    pub wal_syncs: AtomicU64,
}

/// Log rows of batches committed to the write-ahead file only (see `Writer::log_only`): the
/// next write transaction, whichever it is, writes them to the `log` table
/// ([`Writer::commit`]; a flush's last slice drops those in the range it deletes), and they
/// are cleared once it has committed.
#[derive(Default)]
struct Pending {
    rows: Vec<(u64, Vec<u8>)>,
    /// What the rows take in memory, in bytes.
    bytes: usize,
}

impl Pending {
    fn push(&mut self, row: u64, ops: Vec<u8>) {
        // What is allocated, not what is used: a row keeps the capacity of the largest batch.
        self.bytes += ops.capacity();
        self.rows.push((row, ops));
    }

    fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Writes the rows into `log`, but those in `deleted` (a flush's last slice deletes those
    /// rows in the same transaction: writing them would only add work).
    fn write(&self, log: &mut redb::Table<u64, &[u8]>, deleted: Option<RangeInclusive<u64>>) -> Result<(), StoreError> {
        for (row, ops) in &self.rows {
            if !deleted.as_ref().is_some_and(|d| d.contains(row)) {
                log.insert(*row, ops.as_slice())?;
            }
        }
        Ok(())
    }

    /// The rows are in the `log` table now (their transaction committed).
    fn clear(&mut self) {
        self.rows.clear();
        self.bytes = 0;
    }
}

struct Generation {
    first_row: u64,
    opened: Instant,
    /// Correlation writes, hot or direct.
    writes: usize,
    /// Puts that went to the hot tier.
    hot_puts: usize,
}

impl Generation {
    fn new(first_row: u64) -> Generation {
        Generation {
            first_row,
            opened: Instant::now(),
            writes: 0,
            hot_puts: 0,
        }
    }
}

struct Flush {
    first_row: u64,
    upto: u64,
    /// Sorted.
    keys: Vec<UpKey>,
    done: usize,
    /// The generation's hot puts, and how many of those were still live when flushed.
    puts: usize,
    live: usize,
}

/// `true` when a flush under way has moved `k` to the tables while its log rows still name it:
/// such a key keeps going through the hot tier (and the log), so that a replay cannot bring back
/// an older write over a table write that left no trace (a direct removal).
fn guarded(flush: &Option<Flush>, k: &[u8]) -> bool {
    flush
        .as_ref()
        .is_some_and(|f| f.keys[..f.done].binary_search_by(|x| (**x).cmp(k)).is_ok())
}

pub(super) struct Writer {
    db: Arc<Database>,
    hot: Arc<Hot>,
    stats: Arc<WriterStats>,
    /// Where the table sweep goes on: the last `corr_up` key it read.
    sweep_from: Option<Vec<u8>>,
    next_row: u64,
    gens: VecDeque<Generation>,
    flush: Option<Flush>,
    /// Puts go straight to the tables (the hot tier was not paying: most of what it held
    /// outlived it), but for every `SAMPLE`th, which keeps measuring.
    direct: bool,
    puts: u64,
    /// The batch being applied (kept for its capacity, like the log row it writes).
    stage: Stage,
    row: Vec<u8>,
    pending: Pending,
    /// With `sync = "periodic"`: the write-ahead file (fsynced by a thread of its own), the longest
    /// the database goes without being made durable, the last batch number, and since when it
    /// has not been (`None`: it is).
    wal: Option<Wal>,
    durable_every: Duration,
    wal_seq: u64,
    dirty_since: Option<Instant>,
    /// How the batch being applied commits.
    durability: Durability,
}

/// In direct mode, one put in this many still goes to the hot tier.
const SAMPLE: u64 = 32;
/// A flushed generation with at least this many hot puts decides the mode.
const DECIDE_MIN: usize = 256;

impl Writer {
    /// Replays the log into the hot tier (what the last run wrote but did not flush), so readers
    /// see the store as the last commit left it.
    pub(super) fn open(
        db: Arc<Database>,
        hot: Arc<Hot>,
        stats: Arc<WriterStats>,
        dir: &Path,
        sync: StoreSync,
    ) -> Result<Writer, StoreError> {
        let txn = db.begin_read()?;
        let meta = txn.open_table(META)?;
        let durable_seq = meta.get(WAL_SEQ)?.map_or(0, |v| v.value());
        let log = txn.open_table(LOG)?;
        let up = txn.open_table(CORR_UP)?;
        let kept_next_row = meta.get(NEXT_ROW)?.map(|v| v.value());
        let stamped_upto = match kept_next_row {
            Some(n) => n,
            // A store an earlier build wrote: its stamps say how far the numbers went (read
            // once: written below).
            None => up.iter()?.try_fold(0, |top, item| {
                let (_, v) = item?;
                Ok::<_, StoreError>(top.max(stamp(v.value()) + 1))
            })?,
        };
        // The log row the tables' version of `k` is as new as (`None`: not there). A log write
        // no newer than that is already in the tables (flushed, or superseded by a direct write).
        let stamp_of = |k: &[u8]| Ok::<_, StoreError>(up.get(k)?.map(|v| stamp(v.value())));
        let mut stage = Stage::default();
        let (mut first, mut last, mut writes) = (None, None, 0);
        for item in log.iter()? {
            let (row, ops) = item?;
            let row = row.value();
            first.get_or_insert(row);
            last = Some(row);
            for op in log_ops(ops.value())? {
                writes += 1;
                let (LogOp::Put { up_key, .. } | LogOp::Remove { up_key }) = op;
                let stamped = stamp_of(up_key)?;
                if stamped.is_some_and(|s| s >= row) {
                    continue;
                }
                let in_tables = || Ok::<_, StoreError>(stamped.is_some());
                match op {
                    LogOp::Put { up_key, value } => {
                        let c = Arc::new(decode(value)?);
                        let client_key = client_key(&c);
                        stage.put(&hot, &Arc::from(up_key), c, client_key, row, in_tables)?;
                    }
                    LogOp::Remove { up_key } => {
                        stage.remove(&hot, &Arc::from(up_key), row, in_tables)?;
                    }
                }
            }
        }
        stage.publish(&hot);
        let next_row = last.map_or(0, |r| r + 1).max(stamped_upto);
        let mut gens = VecDeque::new();
        if let Some(first_row) = first {
            gens.push_back(Generation {
                writes,
                ..Generation::new(first_row)
            });
        }
        gens.push_back(Generation::new(next_row));
        if writes > 0 {
            tracing::info!(writes, hot = hot.len(), "store: replayed the log");
        }
        drop((log, up, meta, txn));
        let wal_file = dir.join(wal::FILE);
        let (wal, durable_every) = match sync {
            StoreSync::Periodic { interval } => (
                Some(Wal::open(dir).map_err(wal_error)?),
                (interval * DURABLE_EVERY).max(DURABLE_MIN),
            ),
            // What a periodic run left is applied once, then the file goes.
            StoreSync::Always if wal_file.exists() || dir.join(wal::OLD).exists() => {
                (Some(Wal::open(dir).map_err(wal_error)?), Duration::ZERO)
            }
            StoreSync::Always => (None, Duration::ZERO),
        };
        let mut writer = Writer {
            db,
            hot,
            stats,
            sweep_from: None,
            next_row,
            gens,
            flush: None,
            direct: false,
            puts: 0,
            stage,
            row: Vec::new(),
            pending: Pending::default(),
            wal,
            durable_every,
            wal_seq: durable_seq,
            dirty_since: None,
            durability: Durability::Immediate,
        };
        writer.replay_wal(durable_seq)?;
        writer.durability = Durability::Immediate;
        // With a write-ahead file, `replay_wal` made the database durable, next row included.
        if kept_next_row.is_none() && writer.wal.is_none() {
            let txn = writer.begin(Durability::Immediate)?;
            writer.commit(txn, Some(writer.next_row), None)?;
        }
        if matches!(sync, StoreSync::Always) && writer.wal.take().is_some() {
            std::fs::remove_file(&wal_file).map_err(wal_error)?;
        }
        if let (StoreSync::Periodic { interval }, Some(wal)) = (sync, writer.wal.as_mut()) {
            wal.fsync_every(interval, writer.stats.clone()).map_err(wal_error)?;
        }
        Ok(writer)
    }

    /// Applies the write-ahead records the database's durable state lacks (a killed process,
    /// or a power loss: up to the first torn record), then makes it all durable.
    fn replay_wal(&mut self, durable_seq: u64) -> Result<(), StoreError> {
        let Some(wal) = &self.wal else {
            return Ok(());
        };
        let (records, damaged) = wal.records_after(durable_seq)?;
        if damaged {
            tracing::warn!(
                "store: the write-ahead file ends in a damaged record (a power loss?); what followed it is lost"
            );
        }
        let batches = records.len();
        for (seq, ops) in records {
            let mut batch: Vec<(Op, Reply)> = ops.into_iter().map(|op| (op, Reply::Discard)).collect();
            self.wal_seq = seq;
            self.durability = Durability::None;
            self.apply(&mut batch, false)?;
        }
        if batches > 0 {
            tracing::info!(batches, "store: replayed the write-ahead file");
        }
        self.make_durable()?;
        if let Some(wal) = &self.wal {
            // What an old file beside it held is durable in the database now.
            wal.remove_old().map_err(wal_error)?;
        }
        if damaged {
            self.wal
                .as_mut()
                .map_or(Ok(()), Wal::clear_durably)
                .map_err(wal_error)?;
        }
        Ok(())
    }

    /// Makes every commit so far durable (one fsync) and empties the write-ahead file.
    fn make_durable(&mut self) -> Result<(), StoreError> {
        if self.wal.is_none() {
            return Ok(());
        }
        let txn = self.begin(Durability::Immediate)?;
        self.commit(txn, Some(self.next_row), None)?;
        self.dirty_since = None;
        self.wal.as_mut().map_or(Ok(()), Wal::clear).map_err(wal_error)
    }

    /// A write transaction that commits with `durability`; [`commit`](Self::commit) commits it.
    fn begin(&self, durability: Durability) -> Result<WriteTransaction, StoreError> {
        let mut txn = self.db.begin_write()?;
        txn.set_durability(durability)?;
        Ok(txn)
    }

    /// Commits `txn` with what every write transaction carries: the log rows waiting in memory
    /// (but those in `deleted`, which it deletes), the next log row number when it stamps the
    /// tables (every stamp it writes is below `next_row`), and which write-ahead records the
    /// database holds once this is durable. One place, so that no transaction can be made
    /// durable without them: rows left waiting behind a durable commit could be in neither the
    /// log nor the emptied write-ahead file, and stamps above the kept row number would
    /// outrank later writes.
    fn commit(
        &mut self,
        txn: WriteTransaction,
        next_row: Option<u64>,
        deleted: Option<RangeInclusive<u64>>,
    ) -> Result<(), StoreError> {
        if !self.pending.is_empty() {
            self.pending.write(&mut txn.open_table(LOG)?, deleted)?;
        }
        if next_row.is_some() || self.wal.is_some() {
            let mut meta = txn.open_table(META)?;
            if let Some(next_row) = next_row {
                meta.insert(NEXT_ROW, next_row)?;
            }
            if self.wal.is_some() {
                meta.insert(WAL_SEQ, self.wal_seq)?;
            }
        }
        txn.commit()?;
        self.pending.clear();
        Ok(())
    }

    /// Makes the database durable when `durable_every` has passed since a commit without.
    fn make_durable_when_due(&mut self) {
        if self.dirty_since.is_some_and(|t| t.elapsed() >= self.durable_every) {
            if let Err(e) = self.make_durable() {
                // A database that cannot be made durable is failing: no new work until it is
                // opened again (which replays the write-ahead file).
                self.failed(&e);
            }
        }
    }

    /// A write failed at the file: the store refuses work until it is opened again.
    fn failed(&self, e: &StoreError) {
        if matches!(e, StoreError::Redb(_)) && !self.stats.failed.swap(true, Ordering::AcqRel) {
            self.stats.failures.fetch_add(1, Ordering::Relaxed);
            tracing::error!(error = %e, "store: a write failed; refusing new work until the store opens again");
        }
    }

    /// Serves the channel until every sender is gone.
    pub(super) fn run(mut self, rx: std_mpsc::Receiver<Queued>) {
        let mut batch: Vec<(Op, Reply)> = Vec::with_capacity(BATCH_MAX);
        let mut last = 0;
        loop {
            // A flush under way goes on between requests, and also when there are none.
            let mut idle = if self.flush.is_some() { IDLE_FLUSH } else { IDLE_WAKE };
            if let Some(since) = self.dirty_since {
                idle = idle.min(self.durable_every.saturating_sub(since.elapsed()));
            }
            let first = match rx.recv_timeout(idle) {
                Ok(op) => op,
                Err(std_mpsc::RecvTimeoutError::Timeout) => {
                    self.make_durable_when_due();
                    self.maintain();
                    continue;
                }
                Err(std_mpsc::RecvTimeoutError::Disconnected) => break,
            };
            first.into_batch(&mut batch);
            // Take what queued up while the last batch was committing. A commit costs about the
            // same for ten operations as for five hundred, so when the writer is busy (its last
            // batch was big) it waits a moment for more: asleep, not on the channel, so senders
            // do not have to wake it for each one.
            drain(&rx, &mut batch);
            if last >= BATCH_BUSY && batch.len() < BATCH_MAX / 2 {
                std::thread::sleep(BATCH_DELAY);
                drain(&rx, &mut batch);
            }
            last = batch.len();
            let t0 = Instant::now();
            let mut results = self.apply(&mut batch, true);
            if results.is_ok() && batch.iter().any(|(op, _)| matches!(op, Op::Checkpoint)) {
                if let Err(e) = self.checkpoint() {
                    tracing::warn!(error = %e, "store: checkpoint failed; the log keeps what it holds");
                    results = Err(e);
                }
            }
            // Fields are only computed when this debug line is enabled.
            tracing::debug!(batch = batch.len(), us = t0.elapsed().as_micros() as u64, kinds = ?op_kinds(&batch), "commit");
            self.stats.commits.fetch_add(1, Ordering::Relaxed);
            self.stats.operations.fetch_add(batch.len() as u64, Ordering::Relaxed);
            match results {
                // Each op (a put's recording mark with it) goes before its answer: whoever
                // holds the ticket finds the mark gone.
                Ok(seqs) => {
                    for ((op, reply), seq) in batch.drain(..).zip(seqs) {
                        drop(op);
                        reply.send(Ok(seq));
                    }
                }
                Err(e) => {
                    self.failed(&e);
                    for (op, reply) in batch.drain(..) {
                        drop(op);
                        reply.send(Err(e.clone()));
                    }
                }
            }
            self.make_durable_when_due();
            self.maintain();
        }
        // A clean stop leaves nothing to replay.
        if let Err(e) = self.make_durable() {
            tracing::warn!(error = %e, "store: making the database durable at stop failed; the write-ahead file keeps it");
        }
    }

    /// Applies a batch in one transaction; returns the outbox sequence given to each op (0 if
    /// none). With a write-ahead file, the batch is appended to it first (when `record`) and
    /// the commit has no fsync unless one is due.
    fn apply(&mut self, batch: &mut [(Op, Reply)], record: bool) -> Result<Vec<u64>, StoreError> {
        let mut undo = None;
        if let (Some(wal), true) = (self.wal.as_mut(), record) {
            let at = wal.len();
            if wal
                .append(self.wal_seq + 1, batch.iter().map(|(op, _)| op))
                .map_err(wal_error)?
            {
                undo = Some(at);
            }
            self.wal_seq += 1;
            // The file is fsynced on its own (`syncer`): the database is made durable only
            // when the file has grown large (a restart replays it) or after `durable_every`.
            self.durability = match self.dirty_since {
                Some(t) if t.elapsed() >= self.durable_every || wal.len() >= WAL_DURABLE_AT => Durability::Immediate,
                _ => Durability::None,
            };
        }
        let applied = self.apply_to_tables(batch);
        match (&applied, self.wal.as_mut()) {
            (Err(_), Some(wal)) => {
                // Not committed (answered as failed): not to be replayed either. If even that
                // fails, the store must be opened again before it takes more work.
                // The record may have been fsynced already (`syncer`): its undoing is fsynced
                // here, or a power loss could bring back a batch answered as failed. A rare
                // path, so it may wait for the disk.
                let undone = undo.map(|at| wal.undo(at).and_then(|()| wal.sync()));
                if let Some(Err(e)) = undone {
                    let e = wal_error(e);
                    self.failed(&e);
                }
            }
            (Ok(_), Some(wal)) if matches!(self.durability, Durability::Immediate) => {
                self.dirty_since = None;
                // Committed and durable: the answers stand whatever the file does; what it
                // still holds is at or below the durable batch number, skipped by a replay.
                if let Err(e) = wal.clear() {
                    // Failing to turn to a new file can leave the old one under a name a
                    // replay does not read: no new work until the store opens again (a clean
                    // stop makes everything durable in the database first).
                    self.failed(&wal_error(e));
                }
            }
            (Ok(_), Some(_)) => {
                self.dirty_since.get_or_insert_with(Instant::now);
            }
            (_, None) => {}
        }
        applied
    }

    fn apply_to_tables(&mut self, batch: &mut [(Op, Reply)]) -> Result<Vec<u64>, StoreError> {
        self.row.clear();
        // This batch's log row number, also the stamp of what it writes straight to the tables:
        // it is used up if either happens, so later log rows are always newer.
        let row = self.next_row;
        let (seqs, counts) = match self.write(batch, row) {
            Ok(written) => written,
            Err(e) => {
                self.stage.clear();
                return Err(e);
            }
        };
        self.stage.publish(&self.hot);
        if !self.row.is_empty() || counts.direct > 0 {
            self.next_row += 1;
        }
        if counts.unlogged && !self.row.is_empty() {
            // A buffer of the same size for the next batch: one allocation, no copy.
            let next = Vec::with_capacity(self.row.capacity());
            self.pending.push(row, std::mem::replace(&mut self.row, next));
        }
        if let Some(g) = self.gens.back_mut() {
            g.writes += counts.writes;
            g.hot_puts += counts.hot_puts;
        }
        Ok(seqs)
    }

    /// Closes the open generation when it is full or old, and moves a flush on by a slice.
    fn maintain(&mut self) {
        let now = Instant::now();
        if let Some(g) = self.gens.back() {
            if g.writes >= GEN_WRITES || (g.writes > 0 && now.duration_since(g.opened) >= GEN_SPAN) {
                self.gens.push_back(Generation::new(self.next_row));
            }
        }
        if self.flush.is_none() && self.gens.len() >= 3 {
            let first_row = self.gens[0].first_row;
            let upto = self.gens[1].first_row.saturating_sub(1);
            self.flush = Some(Flush {
                first_row,
                upto,
                keys: self.hot.due(upto),
                done: 0,
                puts: self.gens[0].hot_puts,
                live: 0,
            });
        }
        if self.flush.is_some() {
            match self.flush_slice(false) {
                Ok(true) => {
                    if let Some(f) = self.flush.take() {
                        self.decide(&f);
                    }
                    self.gens.pop_front();
                }
                Ok(false) => {}
                // The log still has everything; the next call tries again.
                Err(e) => tracing::warn!(error = %e, "store: flushing the hot tier failed"),
            }
        }
    }

    /// Puts go straight to the tables while most of what the hot tier held outlived it (late
    /// receipts: holding them first only adds work), through the hot tier otherwise.
    fn decide(&mut self, f: &Flush) {
        if f.puts < DECIDE_MIN {
            return;
        }
        let direct = f.live * 2 > f.puts;
        if direct != self.direct {
            self.direct = direct;
            self.stats.direct.store(direct, Ordering::Relaxed);
            tracing::info!(
                direct,
                kept = f.live,
                of = f.puts,
                "store: correlations now go {}",
                if direct {
                    "straight to the tables"
                } else {
                    "through the hot tier"
                }
            );
        }
    }
}

/// A failure of the write-ahead file counts as the store's disk failing.
fn wal_error(e: std::io::Error) -> StoreError {
    StoreError::Redb(Arc::new(redb::Error::Io(e)))
}

/// Moves what waits in the channel into the batch, until it holds `BATCH_MAX` or more.
fn drain(rx: &std_mpsc::Receiver<Queued>, batch: &mut Vec<(Op, Reply)>) {
    while batch.len() < BATCH_MAX {
        match rx.try_recv() {
            Ok(queued) => queued.into_batch(batch),
            Err(_) => break,
        }
    }
}

/// How many of each operation a batch holds: correlation puts, removals, expiry sweeps, outbox
/// pushes, outbox removals and checkpoints (for `RUST_LOG=smpp_proxy::store=debug`).
fn op_kinds(batch: &[(Op, Reply)]) -> [usize; 5] {
    batch.iter().fold([0; 5], |mut k, (op, _)| {
        k[match op {
            Op::PutCorrelation { .. } => 0,
            Op::RemoveCorrelation { .. } => 1,
            Op::ExpireCorrelations { .. } => 2,
            Op::OutboxPush { .. } => 3,
            Op::OutboxRemove { .. } | Op::Checkpoint => 4,
        }] += 1;
        k
    })
}
