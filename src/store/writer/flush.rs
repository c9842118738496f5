//! Folding the hot tier into the tables: a generation's flush a slice at a time between group
//! commits (commits without fsync; the log, or the write-ahead file for rows not written yet,
//! keeps the writes until the last slice deletes its rows), and the checkpoint that folds
//! everything on a clean stop.

use super::{Flush, Generation, Writer, FLUSH_SLICE};
use crate::store::hot::Entry;
use crate::store::record::{client_key, encode_stamped, time_and_client_key};
use crate::store::tables::{CORR_CLIENT, CORR_UP, LOG};
use crate::store::StoreError;
use redb::Durability;
use std::sync::atomic::Ordering;

impl Writer {
    /// Folds the whole hot tier into the tables and empties the log, durably.
    pub(super) fn checkpoint(&mut self) -> Result<(), StoreError> {
        // A flush under way covers a prefix of the rows: finish it, then take all the rest.
        while self.flush.is_some() {
            if self.flush_slice(false)? {
                self.flush = None;
                self.gens.pop_front();
            }
        }
        let upto = self.next_row.saturating_sub(1);
        self.flush = Some(Flush {
            first_row: self.gens.front().map_or(self.next_row, |g| g.first_row),
            upto,
            keys: self.hot.due(upto),
            done: 0,
            puts: 0,
            live: 0,
        });
        while !self.flush_slice(true)? {}
        self.flush = None;
        self.gens.clear();
        self.gens.push_back(Generation::new(self.next_row));
        Ok(())
    }

    /// Writes the next slice of the flush to the tables; `true` when the flush is complete.
    /// `durable`: the last slice is committed with an fsync.
    pub(super) fn flush_slice(&mut self, durable: bool) -> Result<bool, StoreError> {
        let Some(mut f) = self.flush.take() else {
            return Ok(true);
        };
        let last = self.write_slice(&mut f, durable);
        self.flush = Some(f);
        last
    }

    fn write_slice(&mut self, f: &mut Flush, durable: bool) -> Result<bool, StoreError> {
        let end = (f.done + FLUSH_SLICE).min(f.keys.len());
        let last = end == f.keys.len();
        // No fsync but for a durable last slice: the log (or the write-ahead file) holds these
        // writes until the last slice deletes its rows, and the next durable commit makes this
        // one durable with it.
        let txn = self.begin(if durable && last {
            Durability::Immediate
        } else {
            Durability::None
        })?;
        let mut value = Vec::new();
        {
            let mut up = txn.open_table(CORR_UP)?;
            let mut by_client = txn.open_table(CORR_CLIENT)?;
            for k in &f.keys[f.done..end] {
                let entry = match self.hot.entry(k) {
                    Some(e) if e.seq() <= f.upto => e,
                    // Written since: a later generation's flush takes it.
                    _ => continue,
                };
                if matches!(entry, Entry::Gone { .. } | Entry::Live { stored: true, .. }) {
                    // The version the tables hold goes first, with its client id.
                    let old = up.remove(&**k)?;
                    if let Some((_, ck)) = old.and_then(|v| time_and_client_key(v.value())) {
                        by_client.remove(ck.as_slice())?;
                    }
                }
                if let Entry::Live { c, seq, .. } = &entry {
                    f.live += 1;
                    value.clear();
                    encode_stamped(&mut value, c, *seq);
                    up.insert(&**k, value.as_slice())?;
                    by_client.insert(client_key(c).as_slice(), &**k)?;
                }
            }
            if last {
                txn.open_table(LOG)?.retain_in(f.first_row..=f.upto, |_, _| false)?;
            }
        }
        self.commit(txn, Some(self.next_row), last.then_some(f.first_row..=f.upto))?;
        for k in &f.keys[f.done..end] {
            self.hot.flushed(k, f.upto);
        }
        self.stats.flushed.fetch_add((end - f.done) as u64, Ordering::Relaxed);
        f.done = end;
        Ok(last)
    }
}
