//! Submits whose answers the client has not been given yet, and the receipts that wait for
//! those answers.
//!
//! A client session maps an upstream's answer, hands its correlation to the store at the end
//! of the turn, and writes the answer (with the client's id in it) once the store answers for
//! the write. A fast SMSC's receipt comes in that gap, on any thread: before the store can
//! find the correlation (the durable store at full load, about one receipt in eight here), or
//! after (stores make a write findable before they answer for it: the memory store at once,
//! the durable store's hot tier before its ticket). Delivered then, it would reach a client
//! that has not read the id yet, on this bind or another: a client with a transmitter and a
//! receiver bind, or one that files its ids from the answers, would read a receipt for an id
//! it was never given. So the session files each such submit here ([`AnswersDue::expect`])
//! before recording it, with its correlation; a receipt meanwhile is parked with it, found by
//! the store or, when the store cannot find it yet, here ([`AnswersDue::find`]: no need to
//! hold it as early and look again), and goes on the moment the session has written the
//! answer ([`Context::answer_written`](super::Context::answer_written)); if the store failed
//! and the client was told ESME_RSYSERR instead, its receipts go as unmatched.
//!
//! One map, so filing, parking and releasing are ordered by its shard locks: a receipt is
//! either parked before the answer is written (and released by it) or finds the entry gone.
//! Keyed by a hash of the upstream and the canonical form of its message id (the store's key,
//! so that every form of the id `id_match` allows finds it), holding every submit filed under
//! it: two that share a key (an SMSC that reuses ids, a hash collision) hold each other's
//! receipts until both are answered, never lose one, and a receipt is matched only to a
//! submit whose upstream and id are its own. A receipt parked longer than
//! `early_receipt_wait` (a commit that slow, or an answer never written: a session that
//! panicked, whose entries then stay) goes on with a warning ([`AnswersDue::overdue`]). A
//! session that ends announces the answers it put in its buffer as it leaves, flushed or not:
//! its receipts go to the account's other binds or its outbox. Not covered: submits that asked
//! for no receipt (not filed: an SMSC that sends one anyway may send it first, and it is held
//! as early), and a receipt matched on another node of a cluster (this map is the node's own).

use crate::messages::DeliverAck;
use crate::pdu::Pdu;
use crate::receipt::id::{canonical_key, lookup_keys, IdKey, IdMatch};
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
    /// Matched here ([`AnswersDue::find`]), not by the store: its correlation may never be
    /// recorded, so it is parked only while its submit is still filed, and one overdue is
    /// looked up before it goes on.
    pub(crate) found_here: bool,
}

/// Whether `a` and `b` are the correlation of one submit (a store may hand out its own copy).
fn same_submit(a: &Arc<Correlation>, b: &Arc<Correlation>) -> bool {
    Arc::ptr_eq(a, b) || (a.client == b.client && a.client_id == b.client_id)
}

/// Where a submit is filed: see the module's documentation. Made once, when it is filed, and
/// carried with its answer to where it is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct DueKey(u64);

impl DueKey {
    fn of(upstream: &str, id: &IdKey) -> DueKey {
        DueKey(FixedState::default().hash_one((upstream, id.as_bytes())))
    }
}

/// The submits filed under one key whose answers are not written yet, and the receipts parked
/// on them, each in the order they came.
#[derive(Debug, Default)]
struct Due {
    /// Nearly always one: inline, so filing allocates nothing past the map's entry.
    first: Option<Arc<Correlation>>,
    more: Vec<Arc<Correlation>>,
    parked: Vec<Parked>,
}

impl Due {
    fn file(&mut self, c: &Arc<Correlation>) {
        match self.first {
            None => self.first = Some(c.clone()),
            Some(_) => self.more.push(c.clone()),
        }
    }

    /// Takes `c` off (the one filed, not one equal to it).
    fn answered(&mut self, c: &Arc<Correlation>) {
        if self.first.as_ref().is_some_and(|f| Arc::ptr_eq(f, c)) {
            self.first = (!self.more.is_empty()).then(|| self.more.remove(0));
        } else if let Some(at) = self.more.iter().position(|m| Arc::ptr_eq(m, c)) {
            self.more.remove(at);
        }
    }

    fn pending(&self) -> bool {
        self.first.is_some()
    }

    fn filed(&self, c: &Arc<Correlation>) -> bool {
        self.first.iter().chain(&self.more).any(|f| Arc::ptr_eq(f, c))
    }

    /// The newest submit filed here from `upstream` whose id is `id` under `mode` (the store's
    /// match: the last put under a key is the one found).
    fn newest(&self, upstream: &str, id: &IdKey, mode: IdMatch) -> Option<&Arc<Correlation>> {
        self.more
            .iter()
            .rev()
            .chain(self.first.as_ref())
            .find(|c| &*c.upstream == upstream && canonical_key(c.upstream_id.as_bytes(), mode) == *id)
    }
}

/// What writing one answer left to do.
#[derive(Debug, Default)]
pub(crate) struct Written {
    /// No answer is pending under its key and receipts are parked there: hand them on with
    /// [`AnswersDue::release`].
    pub(crate) release: bool,
    /// The receipts parked for this submit when its correlation was not recorded (the client
    /// was told ESME_RSYSERR: it has no id to match them to).
    pub(crate) orphaned: Vec<Parked>,
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

impl AnswersDue {
    /// Files a submit whose answer waits for its commit; called before its correlation is
    /// handed to the store. Its key, for when the answer is written (none: not filed).
    pub(crate) fn expect(&self, c: &Arc<Correlation>, mode: IdMatch) -> Option<DueKey> {
        if !tracked(c) {
            return None;
        }
        let key = DueKey::of(&c.upstream, &canonical_key(c.upstream_id.as_bytes(), mode));
        self.due.entry(key.0).or_default().file(c);
        Some(key)
    }

    /// Where a receipt matched to `c` must wait: an answer under its key is not written yet,
    /// or the receipts parked there are still being handed on. None: deliver it.
    pub(crate) fn due(&self, c: &Correlation, mode: IdMatch) -> Option<DueKey> {
        if !tracked(c) {
            return None;
        }
        let key = DueKey::of(&c.upstream, &canonical_key(c.upstream_id.as_bytes(), mode));
        self.due.contains_key(&key.0).then_some(key)
    }

    /// The submit a receipt the store cannot find yet belongs to, among those whose answers
    /// are on their way: by every form of its ids, as the store looks.
    pub(crate) fn find(&self, upstream: &str, receipt: &Receipt, mode: IdMatch) -> Option<(DueKey, Arc<Correlation>)> {
        for id in [receipt.tlv_id(), receipt.text_id()].into_iter().flatten() {
            for form in lookup_keys(id, mode) {
                let key = DueKey::of(upstream, &form);
                if let Some(c) = self
                    .due
                    .get(&key.0)
                    .and_then(|d| d.newest(upstream, &form, mode).cloned())
                {
                    return Some((key, c));
                }
            }
        }
        None
    }

    /// Parks a receipt with the submits filed under `key`; gives it back when the entry went
    /// meanwhile (the answer is written: deliver it now), or, for one [`AnswersDue::find`]
    /// matched, when its submit was answered meanwhile (recorded or not: the store knows).
    pub(crate) fn park(&self, key: DueKey, receipt: Parked) -> Result<(), Parked> {
        match self.due.get_mut(&key.0) {
            Some(due) if receipt.found_here && !due.filed(&receipt.correlation) => Err(receipt),
            Some(mut due) => {
                due.parked.push(receipt);
                self.parked_now.fetch_add(1, Ordering::Relaxed);
                self.parked_total.fetch_add(1, Ordering::Relaxed);
                Ok(())
            }
            None => Err(receipt),
        }
    }

    /// The answer of `c`, filed under `key`, is written (or will never be); `recorded`: its
    /// correlation is in the store, the client got its id. With none parked (most of the
    /// time) and no other answer pending there, the entry goes in the same step.
    pub(crate) fn written(&self, key: DueKey, c: &Arc<Correlation>, recorded: bool) -> Written {
        let mut written = Written::default();
        self.due.remove_if_mut(&key.0, |_, due| {
            due.answered(c);
            if !recorded && due.parked.iter().any(|p| same_submit(&p.correlation, c)) {
                let (orphaned, kept) = std::mem::take(&mut due.parked)
                    .into_iter()
                    .partition(|p| same_submit(&p.correlation, c));
                due.parked = kept;
                written.orphaned = orphaned;
            }
            written.release = !due.pending() && !due.parked.is_empty();
            !due.pending() && due.parked.is_empty()
        });
        self.parked_now.fetch_sub(written.orphaned.len(), Ordering::Relaxed);
        written
    }

    /// The receipts parked under `key`, once no answer there is pending; called until it
    /// gives none, which removes the entry (receipts parked while the last were being handed
    /// on follow them, in order, instead of overtaking them).
    pub(crate) fn release(&self, key: DueKey) -> Vec<Parked> {
        // Looked at and removed under one lock: a receipt parked in between would have nobody
        // to release it.
        match self.due.entry(key.0) {
            Entry::Occupied(mut due) if !due.get().pending() => {
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
    use crate::pdu::{Body, CommandId, DeliverSm};

    const MODE: IdMatch = IdMatch::Numeric;

    static NEXT: AtomicU64 = AtomicU64::new(1);

    fn correlation(upstream: &str, id: &str, registered_delivery: u8) -> Arc<Correlation> {
        Arc::new(Correlation {
            upstream: upstream.into(),
            upstream_id: id.into(),
            client: "shop".into(),
            // Each submit its own id, as the proxy gives them.
            client_id: format!("c{}", NEXT.fetch_add(1, Ordering::Relaxed)).into(),
            submitted_at: 0,
            registered_delivery,
            source_addr: "".into(),
            destination_addr: "".into(),
            part: None,
        })
    }

    fn receipt(text_id: &str) -> (Pdu, Receipt) {
        let pdu = Pdu::new(Body::DeliverSm(DeliverSm {
            esm_class: 0x04,
            short_message: format!(
                "id:{text_id} sub:001 dlvrd:001 submit date:2401011200 done date:2401011201 stat:DELIVRD err:000 text:"
            )
            .into_bytes()
            .into(),
            ..DeliverSm::default()
        }));
        let receipt = Receipt::from_pdu(&pdu).unwrap();
        (pdu, receipt)
    }

    fn parked(c: &Arc<Correlation>) -> Parked {
        let text = format!(
            "node_id = \"t\"\n[listen]\nsmpp = \"127.0.0.1:0\"\n[[clients]]\nsystem_id = \"shop\"\npassword = \"pw\"\n\
             [[upstreams]]\nname = \"{}\"\naddress = \"127.0.0.1:1\"\nsystem_id = \"proxy\"\npassword = \"pw\"\n",
            c.upstream
        );
        let config = crate::config::Config::from_toml(&text).unwrap().upstreams.remove(0);
        let (session, _) = crate::upstream::build_sessions(&[config], |u, _| crate::upstream::own_bucket(u)).remove(0);
        let (pdu, receipt) = receipt(&c.upstream_id);
        let (tx, _) = tokio::sync::mpsc::channel(1);
        Parked {
            upstream: session.upstream.clone(),
            frame: None,
            pdu,
            receipt,
            correlation: c.clone(),
            ack: DeliverAck::new(tx, 1, CommandId::DELIVER_SM, Arc::default()),
            at: Instant::now(),
            found_here: false,
        }
    }

    #[test]
    fn a_submit_is_due_from_filing_until_its_answer_is_written() {
        let due = AnswersDue::default();
        let c = correlation("smsc-0", "u1", 1);
        assert!(due.due(&c, MODE).is_none());
        let key = due.expect(&c, MODE).unwrap();
        assert_eq!(due.due(&c, MODE), Some(key));
        assert!(
            due.due(&correlation("smsc-1", "u1", 1), MODE).is_none(),
            "another upstream's id"
        );
        let written = due.written(key, &c, true);
        assert!(
            !written.release && written.orphaned.is_empty(),
            "nothing parked to hand on"
        );
        assert!(due.due(&c, MODE).is_none() && due.is_empty());
    }

    #[test]
    fn two_submits_under_one_key_are_due_until_both_are_answered() {
        let due = AnswersDue::default();
        let (a, b) = (correlation("smsc-0", "u1", 1), correlation("smsc-0", "u1", 1));
        let key = due.expect(&a, MODE).unwrap();
        assert_eq!(due.expect(&b, MODE), Some(key));
        assert!(due.park(key, parked(&a)).is_ok());
        assert!(!due.written(key, &a, true).release, "one still pending");
        assert!(due.release(key).is_empty() && due.due(&a, MODE).is_some());
        assert!(due.written(key, &b, true).release);
        assert_eq!(due.release(key).len(), 1);
        assert!(due.release(key).is_empty());
        assert!(due.due(&a, MODE).is_none() && due.is_empty());
    }

    #[test]
    fn a_submit_without_a_receipt_asked_is_never_filed() {
        let due = AnswersDue::default();
        let c = correlation("smsc-0", "u1", 0);
        assert!(due.expect(&c, MODE).is_none());
        assert!(due.due(&c, MODE).is_none() && due.is_empty());
    }

    #[test]
    fn a_receipt_finds_its_submit_by_any_form_of_its_id_and_only_its_own() {
        let due = AnswersDue::default();
        // Stored as the SMSC answered: hex; the receipt's text says it in decimal, padded.
        let c = correlation("smsc-0", "38601fa", 1);
        let key = due.expect(&c, MODE).unwrap();
        let (_, decimal) = receipt("0059113978");
        let (found_key, found) = due.find("smsc-0", &decimal, MODE).unwrap();
        assert!(found_key == key && Arc::ptr_eq(&found, &c));
        assert!(due.find("smsc-1", &decimal, MODE).is_none(), "another upstream's");
        assert!(due.find("smsc-0", &receipt("59113979").1, MODE).is_none(), "another id");
        // Two filed under one id: the newest, as the store would find.
        let newer = correlation("smsc-0", "38601FA", 1);
        assert_eq!(due.expect(&newer, MODE), Some(key));
        assert!(Arc::ptr_eq(&due.find("smsc-0", &decimal, MODE).unwrap().1, &newer));
        due.written(key, &newer, true);
        assert!(Arc::ptr_eq(&due.find("smsc-0", &decimal, MODE).unwrap().1, &c));
        due.written(key, &c, true);
        assert!(due.find("smsc-0", &decimal, MODE).is_none() && due.is_empty());
    }

    #[test]
    fn a_receipt_found_here_is_not_parked_once_its_submit_was_answered() {
        let due = AnswersDue::default();
        let (a, b) = (correlation("smsc-0", "u1", 1), correlation("smsc-0", "u1", 1));
        let key = due.expect(&a, MODE).unwrap();
        due.expect(&b, MODE);
        let (_, r) = receipt("u1");
        let (found_key, found) = due.find("smsc-0", &r, MODE).unwrap();
        assert!(found_key == key && Arc::ptr_eq(&found, &b), "the newest");
        // b is answered (its commit failed) between the find and the park; a keeps the entry.
        assert!(due.written(key, &b, false).orphaned.is_empty());
        let mut late = parked(&b);
        late.found_here = true;
        assert!(due.park(key, late).is_err(), "parked with a submit no longer filed");
        // One the store matched waits with whatever is pending under its key.
        assert!(due.park(key, parked(&b)).is_ok());
        assert!(due.written(key, &a, true).release);
        assert_eq!(due.release(key).len(), 1);
    }

    #[test]
    fn a_submit_whose_correlation_was_not_recorded_gives_back_only_its_own_receipts() {
        let due = AnswersDue::default();
        let (a, b) = (correlation("smsc-0", "u1", 1), correlation("smsc-0", "u1", 1));
        let key = due.expect(&a, MODE).unwrap();
        due.expect(&b, MODE);
        assert!(due.park(key, parked(&a)).is_ok() && due.park(key, parked(&b)).is_ok());
        let written = due.written(key, &a, false);
        assert!(!written.release, "b is pending");
        assert_eq!(written.orphaned.len(), 1);
        assert!(Arc::ptr_eq(&written.orphaned[0].correlation, &a));
        assert_eq!(due.parked_now(), 1);
        assert!(due.written(key, &b, true).release);
        let released = due.release(key);
        assert!(released.len() == 1 && Arc::ptr_eq(&released[0].correlation, &b));
        assert!(due.release(key).is_empty() && due.is_empty() && due.parked_now() == 0);
    }
}
