//! The table sweep: correlations past their TTL leave the tables a bounded slice at a time,
//! each sweep going on from where the last stopped.

use super::{SWEEPS_PER_PASS, SWEEP_MAX, SWEEP_MIN};
use crate::store::hot::{Hot, Stage};
use crate::store::record::time_and_client_key;
use crate::store::StoreError;
use redb::{ReadableTable, ReadableTableMetadata, Table};
use std::ops::Bound;

/// One slice of the table sweep: drops correlations past their TTL from the tables, leaving
/// keys the hot tier (or this batch) has a newer say about.
pub(super) struct Sweep<'a> {
    pub(super) before: u64,
    pub(super) budget: Option<u64>,
    pub(super) from: &'a mut Option<Vec<u8>>,
    pub(super) hot: &'a Hot,
    pub(super) stage: &'a Stage,
}

impl Sweep<'_> {
    pub(super) fn run(
        self,
        up: &mut Table<&[u8], &[u8]>,
        by_client: &mut Table<&[u8], &[u8]>,
    ) -> Result<u64, StoreError> {
        let budget = self.budget.unwrap_or_else(|| {
            let len = up.len().unwrap_or(0);
            (len / SWEEPS_PER_PASS).clamp(SWEEP_MIN, SWEEP_MAX)
        });
        let from = match self.from.as_deref() {
            Some(k) => Bound::Excluded(k),
            None => Bound::Unbounded,
        };
        let mut due: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
        let mut read = 0;
        let mut last = None;
        for item in up.range::<&[u8]>((from, Bound::Unbounded))? {
            let (k, v) = item?;
            match time_and_client_key(v.value()) {
                Some((submitted_at, client_key))
                    if submitted_at < self.before && !self.stage.touches(self.hot, k.value()) =>
                {
                    due.push((k.value().to_vec(), client_key));
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
        *self.from = last;
        for (up_key, client_key) in &due {
            up.remove(up_key.as_slice())?;
            by_client.remove(client_key.as_slice())?;
        }
        Ok(due.len() as u64)
    }
}
