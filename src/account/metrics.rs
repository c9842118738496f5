//! What `/metrics` shows of one account's submits: how long the proxy took to answer each (read
//! to response written, so it includes routing, the SMSC and the correlation's commit) and how
//! many were answered with each command_status. Written by the account's client sessions.

use crate::histogram::Histogram;
use crate::pdu::CommandStatus;
use crate::sharded::Counter;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// Statuses below this are counted in an array (no lock); the rare others (vendor codes) in a
/// map.
const COMMON: usize = 0x100;

/// One account's submit figures.
#[derive(Debug)]
pub struct ClientMetrics {
    /// Submit read -> response written, seconds.
    pub submit_latency: Histogram,
    /// ESME_ROK, nearly every answer: per thread.
    ok: Counter,
    common: Box<[AtomicU64]>,
    rare: Mutex<BTreeMap<u32, u64>>,
}

impl Default for ClientMetrics {
    fn default() -> ClientMetrics {
        ClientMetrics {
            submit_latency: Histogram::new(crate::histogram::LATENCY),
            ok: Counter::default(),
            common: (0..COMMON).map(|_| AtomicU64::new(0)).collect(),
            rare: Mutex::new(BTreeMap::new()),
        }
    }
}

impl ClientMetrics {
    /// A submit answered with `status`, `took` after it was read (none: answered at once).
    pub fn answered(&self, status: CommandStatus, took: Option<Duration>) {
        match self.common.get(status.0 as usize) {
            _ if status == CommandStatus::ESME_ROK => self.ok.add(1),
            Some(n) => {
                n.fetch_add(1, Ordering::Relaxed);
            }
            None => {
                *self
                    .rare
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .entry(status.0)
                    .or_default() += 1
            }
        }
        if let Some(took) = took {
            self.submit_latency.observe_duration(took);
        }
    }

    /// Submits answered so far, by status (those seen only).
    pub fn by_status(&self) -> Vec<(CommandStatus, u64)> {
        let common = self.common.iter().enumerate().filter_map(|(code, n)| {
            let n = if code == 0 {
                self.ok.get()
            } else {
                n.load(Ordering::Relaxed)
            };
            (n > 0).then_some((CommandStatus(code as u32), n))
        });
        let rare = self.rare.lock().unwrap_or_else(|e| e.into_inner()).clone();
        common
            .chain(rare.into_iter().map(|(code, n)| (CommandStatus(code), n)))
            .collect()
    }
}
