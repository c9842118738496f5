//! One group commit: every operation of a batch applied in one write transaction, each by its
//! own method, then one commit (one fsync, unless with a write-ahead file; or no transaction
//! at all, see below). Hot correlation writes are collected into the
//! batch's log row; direct ones (stamped with the batch's row number), removals of keys only
//! the tables hold, and outbox writes go to their tables. With a write-ahead file the commit has no
//! fsync unless one is due (`Writer::durability`), and notes the batch's number in `meta`;
//! and a batch with nothing for the tables but its log row commits nothing (`log_only`): the
//! row waits for the next transaction, which writes every row still waiting.

use super::sweep::Sweep;
use super::{guarded, Op, Reply, Writer, SAMPLE};
use crate::store::hot::UpKey;
use crate::store::record::{key, log_put, log_remove, restamp, stamp, time_and_client_key, unstamp};
use crate::store::tables::{CORR_CLIENT, CORR_UP, LOG, META, OUTBOX};
use crate::store::{Correlation, StoreError};
use redb::{Durability, ReadableDatabase, ReadableTable, Table, WriteTransaction};
use std::sync::Arc;

/// A table of bytes to bytes, open in a write transaction.
type BytesTable<'t> = Table<'t, &'static [u8], &'static [u8]>;

/// The tables one write transaction touches, each opened the first time an operation needs
/// it: most batches touch only `corr_up` (and the log, once, at the end).
struct Tables<'t> {
    txn: &'t WriteTransaction,
    up: BytesTable<'t>,
    by_client: Option<BytesTable<'t>>,
    outbox: Option<BytesTable<'t>>,
    /// The outbox sequence as the batch found it, and as it leaves it.
    outbox_seq: Option<(u64, u64)>,
}

impl<'t> Tables<'t> {
    fn open(txn: &'t WriteTransaction) -> Result<Tables<'t>, StoreError> {
        Ok(Tables {
            txn,
            up: txn.open_table(CORR_UP)?,
            by_client: None,
            outbox: None,
            outbox_seq: None,
        })
    }

    fn by_client(&mut self) -> Result<&mut BytesTable<'t>, StoreError> {
        Ok(self.up_and_by_client()?.1)
    }

    fn up_and_by_client(&mut self) -> Result<(&mut BytesTable<'t>, &mut BytesTable<'t>), StoreError> {
        let by_client = match &mut self.by_client {
            Some(t) => t,
            slot => slot.insert(self.txn.open_table(CORR_CLIENT)?),
        };
        Ok((&mut self.up, by_client))
    }

    fn outbox(&mut self) -> Result<&mut BytesTable<'t>, StoreError> {
        match &mut self.outbox {
            Some(t) => Ok(t),
            slot => Ok(slot.insert(self.txn.open_table(OUTBOX)?)),
        }
    }

    /// The next outbox sequence number (the last one is kept in `meta`).
    fn next_outbox_seq(&mut self) -> Result<u64, StoreError> {
        let (first, next) = match self.outbox_seq {
            Some(seqs) => seqs,
            None => {
                let last = self.txn.open_table(META)?.get("outbox_seq")?.map_or(0, |v| v.value());
                (last, last)
            }
        };
        self.outbox_seq = Some((first, next + 1));
        Ok(next + 1)
    }

    /// `corr_up` holds `k`.
    fn up_holds(&self, k: &[u8]) -> Result<bool, StoreError> {
        Ok(self.up.get(k)?.is_some())
    }

    /// `corr_up` holds `k` stamped `row` (written by this batch).
    fn stamped(&self, k: &[u8], row: u64) -> Result<bool, StoreError> {
        Ok(self.up.get(k)?.is_some_and(|v| stamp(v.value()) == row))
    }

    /// Writes what the batch changed that is written once (the outbox sequence).
    fn finish(self) -> Result<(), StoreError> {
        if let Some((_, next)) = self.outbox_seq.filter(|(first, next)| first != next) {
            self.txn.open_table(META)?.insert("outbox_seq", next)?;
        }
        Ok(())
    }
}

/// What a batch did to the correlations, for the generations and the direct/hot choice.
#[derive(Default)]
pub(super) struct Counts {
    /// Correlation writes, hot or direct.
    pub(super) writes: usize,
    /// Puts that went to the hot tier.
    pub(super) hot_puts: usize,
    /// Writes that went straight to the tables.
    pub(super) direct: usize,
    /// Nothing was written to the database: the batch's log row waits in `pending`.
    pub(super) unlogged: bool,
}

/// The most the log rows waiting in `pending` may hold before a batch commits them anyway.
const PENDING_MAX: usize = 4 << 20;

impl Writer {
    /// Applies `batch` under log row `row`, in one transaction it commits (or in none, when
    /// [`log_only`](Self::log_only)); returns the outbox sequence given to each op (0 if none).
    pub(super) fn write(&mut self, batch: &mut [(Op, Reply)], row: u64) -> Result<(Vec<u64>, Counts), StoreError> {
        if self.log_only(batch) {
            return self.write_log_only(batch, row);
        }
        let txn = self.begin(self.durability)?;
        let mut seqs = Vec::with_capacity(batch.len());
        let mut counts = Counts::default();
        {
            let mut t = Tables::open(&txn)?;
            for (op, _) in batch.iter_mut() {
                let seq = match op {
                    Op::PutCorrelation {
                        up_key,
                        c,
                        value,
                        client_key,
                        ..
                    } => self.put_correlation(&mut t, row, up_key, c, value, client_key, &mut counts)?,
                    Op::RemoveCorrelation { up_key } => self.remove_correlation(&mut t, row, up_key, &mut counts)?,
                    Op::ExpireCorrelations { before, budget } => {
                        self.expire_correlations(&mut t, row, *before, *budget, &mut counts)?
                    }
                    Op::OutboxPush { client, pdu } => {
                        let seq = t.next_outbox_seq()?;
                        t.outbox()?
                            .insert(key(client, &seq.to_be_bytes()).as_slice(), pdu.as_slice())?;
                        seq
                    }
                    Op::OutboxRemove { client, seq } => {
                        t.outbox()?.remove(key(client, &seq.to_be_bytes()).as_slice())?;
                        0
                    }
                    Op::Checkpoint => 0,
                };
                seqs.push(seq);
            }
            if !self.row.is_empty() {
                txn.open_table(LOG)?.insert(row, self.row.as_slice())?;
            }
            t.finish()?;
        }
        self.commit(txn, (counts.direct > 0).then_some(row + 1), None)?;
        Ok((seqs, counts))
    }

    /// `true` when `batch` needs no write transaction: with a write-ahead file and no fsync due,
    /// a batch whose every write goes to the hot tier (correlation puts while they do, removals
    /// of keys it holds) has nothing for the tables but its log row, which can wait for the
    /// next transaction (the write-ahead file holds the batch: a crash loses nothing). That
    /// saves a B-tree commit per batch, most batches under load.
    fn log_only(&self, batch: &[(Op, Reply)]) -> bool {
        self.wal.is_some()
            && matches!(self.durability, Durability::None)
            && !self.direct
            && self.pending.bytes < PENDING_MAX
            && batch.iter().all(|(op, _)| match op {
                Op::PutCorrelation { .. } => true,
                Op::RemoveCorrelation { up_key } => self.hot.contains(up_key) || guarded(&self.flush, up_key),
                _ => false,
            })
    }

    /// Applies a batch [`log_only`](Self::log_only) allows: to the stage and the log row, the
    /// tables only read (whether they hold a key new here).
    fn write_log_only(&mut self, batch: &mut [(Op, Reply)], row: u64) -> Result<(Vec<u64>, Counts), StoreError> {
        let txn = self.db.begin_read()?;
        let up = txn.open_table(CORR_UP)?;
        let in_tables = |k: &[u8]| Ok::<_, StoreError>(up.get(k)?.is_some());
        let mut counts = Counts {
            unlogged: true,
            ..Counts::default()
        };
        for (op, _) in batch.iter_mut() {
            match op {
                Op::PutCorrelation {
                    up_key,
                    c,
                    value,
                    client_key,
                    ..
                } => {
                    counts.writes += 1;
                    self.puts += 1;
                    self.put_hot(row, up_key, c, value, client_key, &mut counts, || in_tables(up_key))?;
                }
                Op::RemoveCorrelation { up_key } => self.remove_hot(row, up_key, &mut counts, || in_tables(up_key))?,
                _ => {
                    debug_assert!(false, "log_only admits correlation writes only");
                    return Err(StoreError::WriterStopped);
                }
            }
        }
        Ok((vec![0; batch.len()], counts))
    }
    /// A correlation put: through the hot tier (and the log row) unless puts go straight to the
    /// tables now; a key the hot tier or a flush under way knows always goes through it, so
    /// that the log's order of writes to it holds.
    #[allow(clippy::too_many_arguments)]
    fn put_correlation(
        &mut self,
        t: &mut Tables,
        row: u64,
        up_key: &UpKey,
        c: &Arc<Correlation>,
        value: &mut Vec<u8>,
        client_key: &mut Vec<u8>,
        counts: &mut Counts,
    ) -> Result<u64, StoreError> {
        counts.writes += 1;
        self.puts += 1;
        let known = self.stage.has(up_key) || self.hot.contains(up_key) || guarded(&self.flush, up_key);
        // A sampled put stays direct when this batch wrote the key to the tables already: its
        // log row would carry the same number as that stamp, and a replay would skip it.
        let sampled = || Ok::<_, StoreError>(self.puts.is_multiple_of(SAMPLE) && !t.stamped(up_key, row)?);
        if known || !self.direct || sampled()? {
            self.put_hot(row, up_key, c, value, client_key, counts, || t.up_holds(up_key))?;
            return Ok(0);
        }
        restamp(value, row);
        let old = t.up.insert(&**up_key, value.as_slice())?;
        let old = old.and_then(|v| time_and_client_key(v.value()));
        let by_client = t.by_client()?;
        if let Some((_, old)) = old.filter(|(_, old)| old != client_key) {
            by_client.remove(old.as_slice())?;
        }
        by_client.insert(client_key.as_slice(), &**up_key)?;
        counts.direct += 1;
        Ok(0)
    }

    /// A correlation removal: in the hot tier (and the log row) when it knows the key, else
    /// straight from the tables, which are then the only place that had it.
    fn remove_correlation(
        &mut self,
        t: &mut Tables,
        row: u64,
        up_key: &UpKey,
        counts: &mut Counts,
    ) -> Result<u64, StoreError> {
        if self.stage.has(up_key) || self.hot.contains(up_key) || guarded(&self.flush, up_key) {
            self.remove_hot(row, up_key, counts, || t.up_holds(up_key))?;
            return Ok(0);
        }
        let old = t.up.remove(&**up_key)?;
        if let Some((_, client_key)) = old.and_then(|v| time_and_client_key(v.value())) {
            t.by_client()?.remove(client_key.as_slice())?;
            counts.writes += 1;
            counts.direct += 1;
        }
        Ok(0)
    }

    /// A put to the stage and the log row; `in_tables` says whether the tables hold the key.
    #[allow(clippy::too_many_arguments)]
    fn put_hot(
        &mut self,
        row: u64,
        up_key: &UpKey,
        c: &Arc<Correlation>,
        value: &[u8],
        client_key: &mut Vec<u8>,
        counts: &mut Counts,
        in_tables: impl FnOnce() -> Result<bool, StoreError>,
    ) -> Result<(), StoreError> {
        // The key moves to the hot tier's client map: the op is done with it.
        let client_key = std::mem::take(client_key);
        self.stage
            .put(&self.hot, up_key, c.clone(), client_key, row, in_tables)?;
        log_put(&mut self.row, up_key, unstamp(value).1);
        counts.hot_puts += 1;
        Ok(())
    }

    /// A removal from the stage and the log row (when there was something to remove).
    fn remove_hot(
        &mut self,
        row: u64,
        up_key: &UpKey,
        counts: &mut Counts,
        in_tables: impl FnOnce() -> Result<bool, StoreError>,
    ) -> Result<(), StoreError> {
        if self.stage.remove(&self.hot, up_key, row, in_tables)? {
            log_remove(&mut self.row, up_key);
            counts.writes += 1;
        }
        Ok(())
    }

    /// Correlations past their TTL: every one the hot tier holds, and a bounded slice of the
    /// tables; gives how many went.
    fn expire_correlations(
        &mut self,
        t: &mut Tables,
        row: u64,
        before: u64,
        budget: Option<u64>,
        counts: &mut Counts,
    ) -> Result<u64, StoreError> {
        let mut n = 0;
        for k in self.hot.expired(before) {
            if !self.stage.has(&k) && self.stage.remove(&self.hot, &k, row, || t.up_holds(&k))? {
                log_remove(&mut self.row, &k);
                counts.writes += 1;
                n += 1;
            }
        }
        let (up, by_client) = t.up_and_by_client()?;
        let sweep = Sweep {
            before,
            budget,
            from: &mut self.sweep_from,
            hot: &self.hot,
            stage: &self.stage,
        };
        Ok(n + sweep.run(up, by_client)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::StoreSync;
    use crate::store::durable::{put_op, DurableStore, FILE};
    use crate::store::hot::Hot;
    use crate::store::writer::WriterStats;
    use redb::Database;

    /// In direct mode, a key put twice in one batch (straight to the tables, then as the put
    /// sampled into the hot tier) keeps the newer value across a crash.
    #[test]
    fn a_key_put_twice_in_one_direct_batch_keeps_the_newer_value_across_a_crash() {
        let dir = tempfile::tempdir().unwrap();
        drop(DurableStore::open(dir.path()).unwrap());
        let put = |client_id: &str| {
            let c = Correlation {
                upstream: "smsc-a".into(),
                upstream_id: "7".into(),
                client: "shop".into(),
                client_id: client_id.into(),
                submitted_at: 1_700_000_000,
                registered_delivery: 1,
                source_addr: "4477".into(),
                destination_addr: "447700900123".into(),
                part: None,
            };
            (put_op(Arc::new(c), "7"), Reply::Discard)
        };
        {
            let db = Arc::new(Database::create(dir.path().join(FILE)).unwrap());
            let stats = Arc::new(WriterStats::default());
            let mut w = Writer::open(db, Arc::new(Hot::default()), stats, dir.path(), StoreSync::Always).unwrap();
            w.direct = true;
            // The first put goes straight to the tables, the second is the sampled one.
            w.puts = SAMPLE - 2;
            w.apply(&mut [put("older"), put("newer")], true).unwrap();
            assert_eq!(w.puts, SAMPLE, "the second put was the sampled one");
            // Dropped without a stop: as a crash leaves it.
        }
        let store = DurableStore::open(dir.path()).unwrap();
        let found = store.correlation_by_upstream("smsc-a", "7").unwrap().unwrap();
        assert_eq!(&*found.client_id, "newer");
    }
}
