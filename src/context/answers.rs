//! Submits whose correlations a receipt can already find but whose submit_sm_resp the client
//! has not been given yet, and the receipts that wait for those answers.
//!
//! A client session maps an upstream's answer, hands its correlation to the store at the end
//! of the turn, and writes the answer (with the client's id in it) once the store answers for
//! the write. Stores make a write findable before that (the memory store at once; the durable
//! store's writer publishes to its hot tier, then answers), so a fast SMSC's receipt can be
//! matched in the gap, on any thread, and handed to any bind of the account: a client with a
//! transmitter and a receiver bind, or one that files its ids from the answers, would read a
//! receipt for an id it was never given. So the session files each such submit here
//! ([`AnswersDue::expect`]) before recording it; a receipt matched meanwhile is parked with
//! it, and goes on the moment the session has written the answer
//! ([`Context::answer_written`](super::Context::answer_written)).
//!
//! One map, so filing, parking and releasing are ordered by its shard locks: a receipt is
//! either parked before the answer is written (and released by it) or finds the entry gone.
//! Keyed by a hash of the upstream and its message id, with a count of the submits filed under
//! it: two that share a key (an SMSC that reuses ids, a hash collision) hold each other's
//! receipts until both are answered, never lose one. A receipt parked longer than
//! `early_receipt_wait` (a commit that slow, or an answer never written: a session that
//! panicked, whose entries then stay) goes on with a warning ([`AnswersDue::overdue`]). A
//! session that ends announces the answers it put in its buffer as it leaves, flushed or not:
//! its receipts go to the account's other binds or its outbox. Not covered: submits that asked for no receipt
//! (not filed: an SMSC that sends one anyway may send it first), and a receipt matched on
//! another node of a cluster (this map is the node's own).

use crate::messages::DeliverAck;
use crate::pdu::Pdu;
use crate::receipt::Receipt;
use crate::store::Correlation;
use crate::upstream::UpstreamInfo;
use bytes::Bytes;
use dashmap::mapref::entry::Entry;
use dashmap::DashMap;
use foldhash::fast::{FixedState, RandomState};
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A receipt matched before its submit's answer was written: all that delivering it needs.
#[derive(Debug)]
pub(crate) struct Parked {
    pub(crate) upstream: Arc<UpstreamInfo>,
    /// The frame the SMSC sent, when there is one (its id is rewritten in a copy).
    pub(crate) frame: Option<Bytes>,
    pub(crate) pdu: Pdu,
    /// Its parse (shares the PDU's bytes: not parsed again).
    pub(crate) receipt: Receipt,
    pub(crate) correlation: Arc<Correlation>,
    pub(crate) ack: DeliverAck,
    pub(crate) at: Instant,
}

/// The submits filed under one key and the receipts parked on them, in the order they came.
#[derive(Debug, Default)]
struct Due {
    pending: u32,
    parked: Vec<Parked>,
}

/// See the module's documentation.
#[derive(Debug, Default)]
pub struct AnswersDue {
    due: DashMap<u64, Due, RandomState>,
    parked_total: AtomicU64,
    /// Receipts parked now (the sweep looks only when there are some).
    parked_now: AtomicUsize,
}

/// Only submits that asked for a receipt are filed: the others are not expecting one.
fn tracked(c: &Correlation) -> bool {
    c.registered_delivery != 0
}

fn key(c: &Correlation) -> u64 {
    FixedState::default().hash_one((&*c.upstream, c.upstream_id.as_bytes()))
}

impl AnswersDue {
    /// Files a submit whose answer waits for its commit; called before its correlation is
    /// handed to the store.
    pub(crate) fn expect(&self, c: &Correlation) {
        if tracked(c) {
            self.due.entry(key(c)).or_default().pending += 1;
        }
    }

    /// Whether a receipt matched to `c` must wait (an answer under its key is not written yet,
    /// or the receipts parked there are still being handed on).
    pub(crate) fn is_due(&self, c: &Correlation) -> bool {
        tracked(c) && self.due.contains_key(&key(c))
    }

    /// Parks a receipt with its submit's entry; gives it back when the entry went meanwhile
    /// (deliver it now).
    pub(crate) fn park(&self, receipt: Parked) -> Result<(), Parked> {
        match self.due.get_mut(&key(&receipt.correlation)) {
            Some(mut due) => {
                due.parked.push(receipt);
                self.parked_now.fetch_add(1, Ordering::Relaxed);
                self.parked_total.fetch_add(1, Ordering::Relaxed);
                Ok(())
            }
            None => Err(receipt),
        }
    }

    /// One submit's answer filed under `c`'s key is written (or will never be). `true` when
    /// none is left pending there and receipts are parked: then [`AnswersDue::release`] hands
    /// them on. With none parked (most of the time), the entry goes in the same step.
    pub(crate) fn written(&self, c: &Correlation) -> bool {
        if !tracked(c) {
            return false;
        }
        let mut parked = false;
        self.due.remove_if_mut(&key(c), |_, due| {
            due.pending = due.pending.saturating_sub(1);
            parked = due.pending == 0 && !due.parked.is_empty();
            due.pending == 0 && due.parked.is_empty()
        });
        parked
    }

    /// The receipts parked under `c`'s key, once no answer there is pending; called until it
    /// gives none, which removes the entry (receipts parked while the last were being handed
    /// on follow them, in order, instead of overtaking them).
    pub(crate) fn release(&self, c: &Correlation) -> Vec<Parked> {
        // Looked at and removed under one lock: a receipt parked in between would have nobody
        // to release it.
        match self.due.entry(key(c)) {
            Entry::Occupied(mut due) if due.get().pending == 0 => {
                if due.get().parked.is_empty() {
                    due.remove();
                    return Vec::new();
                }
                let taken = std::mem::take(&mut due.get_mut().parked);
                self.parked_now.fetch_sub(taken.len(), Ordering::Relaxed);
                taken
            }
            _ => Vec::new(),
        }
    }

    /// Receipts parked longer than `wait`: their answers are overdue (a session that ended
    /// without writing them), so they go on without waiting more.
    pub(crate) fn overdue(&self, wait: Duration) -> Vec<Parked> {
        if self.parked_now.load(Ordering::Relaxed) == 0 {
            return Vec::new();
        }
        let mut overdue = Vec::new();
        for mut due in self.due.iter_mut() {
            if due.parked.iter().any(|p| p.at.elapsed() >= wait) {
                overdue.append(&mut due.parked);
            }
        }
        self.parked_now.fetch_sub(overdue.len(), Ordering::Relaxed);
        overdue
    }

    /// Receipts that have waited for their submit's answer, since the start.
    pub fn parked(&self) -> u64 {
        self.parked_total.load(Ordering::Relaxed)
    }

    /// Receipts waiting now.
    pub fn parked_now(&self) -> usize {
        self.parked_now.load(Ordering::Relaxed)
    }

    /// Keys filed now.
    pub fn len(&self) -> usize {
        self.due.len()
    }

    /// Whether none is filed.
    pub fn is_empty(&self) -> bool {
        self.due.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn correlation(upstream: &str, id: &str, registered_delivery: u8) -> Correlation {
        Correlation {
            upstream: upstream.into(),
            upstream_id: id.into(),
            client: "shop".into(),
            client_id: "c1".into(),
            submitted_at: 0,
            registered_delivery,
            source_addr: "".into(),
            destination_addr: "".into(),
            part: None,
        }
    }

    #[test]
    fn a_submit_is_due_from_filing_until_its_answer_is_written() {
        let due = AnswersDue::default();
        let c = correlation("smsc-0", "u1", 1);
        assert!(!due.is_due(&c));
        due.expect(&c);
        assert!(due.is_due(&c));
        assert!(!due.is_due(&correlation("smsc-1", "u1", 1)), "another upstream's id");
        assert!(!due.written(&c), "nothing parked to hand on");
        assert!(!due.is_due(&c) && due.is_empty());
    }

    #[test]
    fn two_submits_under_one_key_are_due_until_both_are_answered() {
        let due = AnswersDue::default();
        let c = correlation("smsc-0", "u1", 1);
        due.expect(&c);
        due.expect(&c);
        assert!(!due.written(&c), "one still pending");
        assert!(due.release(&c).is_empty() && due.is_due(&c));
        assert!(!due.written(&c));
        assert!(!due.is_due(&c) && due.is_empty());
    }

    #[test]
    fn a_submit_without_a_receipt_asked_is_never_filed() {
        let due = AnswersDue::default();
        let c = correlation("smsc-0", "u1", 0);
        due.expect(&c);
        assert!(!due.is_due(&c) && due.is_empty());
    }
}
