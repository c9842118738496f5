//! Receipts and MO from the upstreams: find the client they belong to and hand them to its
//! account.
//!
//! A receipt is matched by its `receipted_message_id` first, then by the id in its text, each
//! tolerant of hex/decimal/zero-padding/case as the upstream's `id_match` says; its id is then
//! rewritten to the one the client got (TLV and text). MO goes by `mo_routes`. The SMSC gets its
//! deliver_sm_resp when the account holds the PDU (or an error it will retry on).
//!
//! The correlation is looked up in the store: at once with a node's own store; with a shared
//! one (Redis) the lookup is sent off and a worker ([`lookups`]) takes the receipt on when the
//! answer comes, in the order the receipts came. A store that cannot answer leaves the receipt
//! with the SMSC (ESME_RX_T_APPN: it sends it again later), never unmatched.
//!
//! Fast SMSCs send a receipt before the proxy has recorded its submit (often on another
//! session, or another node). Most come while the submit's answer is on its way to the client:
//! matched to the submit filed in [`AnswersDue`](super::answers::AnswersDue), they wait with it
//! and go on once the client has the answer. One that comes before even that (the SMSC's
//! answer not mapped yet, another node's submit) is held ([`EarlyReceipts`]) and matched the
//! moment the correlation is recorded on this node, or found by looking again (every half
//! second with a shared store, where another node may record it); after `early_receipt_wait`
//! without one it counts as unmatched.

use super::answers::{DueKey, Parked};
use super::Context;
use crate::budget::{Budget, Charge};
use crate::config::MultipartReceipts;
use crate::logging::Limiter;
use crate::messages::Forget;
use crate::messages::{AccountMsg, DeliverAck, Direct};
use crate::pdu::{Body, CommandStatus, EncodeError, Pdu};
use crate::receipt::id::{canonical_key, lookup_keys, IdKey};
use crate::receipt::{rewrite_receipt_frame, rewrite_receipt_id, Receipt};
use crate::store::{Correlation, Found, Pushed, StoreError};
use crate::upstream::{InboundSink, UpstreamInfo};
use bytes::Bytes;
use dashmap::DashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

type Key = (Arc<str>, IdKey);

/// A receipt waiting for its correlation, filed under every form its ids may be stored in.
#[derive(Debug)]
struct Early {
    /// The receipt and the SMSC's pending answer: the SMSC is acknowledged only when the
    /// receipt is in custody (matched and stored) or given up on, never while it waits here in
    /// memory, so a crash meanwhile makes the SMSC send it again.
    held: Mutex<Option<Held>>,
    keys: Vec<Key>,
    upstream: Arc<UpstreamInfo>,
    at: Instant,
    /// Its share of `[limits] early_receipts_max` / `_max_bytes`.
    _charge: Charge,
}

/// A held receipt as it came: its frame (its id is rewritten on a copy of it) and its parse,
/// kept so that matching it later costs no second parse or encode (at full load a few in a
/// hundred receipts come this early).
#[derive(Debug)]
struct Held {
    frame: Option<Bytes>,
    pdu: Pdu,
    receipt: Receipt,
    ack: DeliverAck,
}

impl Early {
    /// The receipt, to exactly one taker.
    fn take(&self) -> Option<Held> {
        self.held.lock().unwrap_or_else(|e| e.into_inner()).take()
    }

    /// The receipt's parse, if nobody took it yet (a copy: it shares the frame's bytes).
    fn peek(&self) -> Option<Receipt> {
        self.held
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .map(|held| held.receipt.clone())
    }
}

/// A receipt whose correlation a shared store is looking up.
#[derive(Debug)]
pub struct Lookup {
    upstream: Arc<UpstreamInfo>,
    frame: Bytes,
    pdu: Pdu,
    receipt: Receipt,
    ack: DeliverAck,
    ticket: Found,
}

/// Takes receipts on as their lookups come back, in the order they came in. It holds the
/// context weakly: the channel's sender is the context's, so the context going ends it.
pub async fn lookups(ctx: std::sync::Weak<Context>, mut rx: mpsc::Receiver<Lookup>) {
    while let Some(Lookup {
        upstream,
        frame,
        pdu,
        receipt,
        ack,
        ticket,
    }) = rx.recv().await
    {
        let found = ticket.await;
        match ctx.upgrade() {
            Some(ctx) => ctx.on_found(&upstream, &frame, pdu, &receipt, ack, found),
            // Shutting down: the SMSC sends it again to whoever runs next.
            None => ack.send(CommandStatus::ESME_RX_T_APPN),
        }
    }
}

/// Receipts that arrived before their correlation.
#[derive(Debug)]
pub struct EarlyReceipts {
    by_key: DashMap<Key, Arc<Early>, foldhash::fast::RandomState>,
    /// Entries in `by_key`: checked on every recorded correlation, where `DashMap::is_empty`
    /// would lock every shard.
    keys: AtomicUsize,
    /// Receipts held and their bytes, against `[limits]`.
    budget: Arc<Budget>,
    /// Receipts refused (ESME_RX_T_APPN) because the budget was spent.
    refused: AtomicU64,
    /// Receipts held, since the start.
    held_total: AtomicU64,
}

impl EarlyReceipts {
    /// Holding at most `max` receipts of `max_bytes` together.
    pub fn new(max: u32, max_bytes: u64) -> EarlyReceipts {
        EarlyReceipts {
            by_key: DashMap::default(),
            keys: AtomicUsize::new(0),
            budget: Budget::new(u64::from(max), max_bytes),
            refused: AtomicU64::new(0),
            held_total: AtomicU64::new(0),
        }
    }

    /// Receipts held now, their bytes, and receipts refused for want of room so far.
    pub fn counts(&self) -> (u64, u64, u64) {
        let (held, bytes) = self.budget.held();
        (held, bytes, self.refused.load(Ordering::Relaxed))
    }

    /// Receipts held waiting for their correlation, since the start.
    pub fn held_total(&self) -> u64 {
        self.held_total.load(Ordering::Relaxed)
    }

    /// Whether any receipt is held waiting for its correlation.
    pub fn holding(&self) -> bool {
        self.keys.load(Ordering::Acquire) > 0
    }

    fn file(&self, early: &Arc<Early>) {
        for key in &early.keys {
            if self.by_key.insert(key.clone(), early.clone()).is_none() {
                self.keys.fetch_add(1, Ordering::AcqRel);
            }
        }
    }

    fn forget(&self, early: &Early) {
        for key in &early.keys {
            if self
                .by_key
                .remove_if(key, |_, e| std::ptr::eq(Arc::as_ptr(e), early))
                .is_some()
            {
                self.keys.fetch_sub(1, Ordering::AcqRel);
            }
        }
    }
}

fn final_state(receipt: &Receipt) -> bool {
    receipt.state.is_some_and(|s| s.is_final())
}

impl Context {
    /// Hands a receipt or MO (ids already rewritten) to its client's account, encoded once
    /// here: the account, its outbox and the client session carry the frame, not the PDU
    /// (whose fields would keep the upstream's read buffer shared across tasks).
    fn to_account(
        &self,
        client: &str,
        frame: Result<Bytes, EncodeError>,
        ack: DeliverAck,
        forget: Forget,
        dedup: Option<String>,
    ) {
        let live = self.live();
        let frame = match frame {
            Ok(frame) => frame,
            Err(e) => {
                warn!(client, error = %e, "delivery cannot be encoded: SMSC asked to retry (ESME_RX_T_APPN)");
                ack.send(CommandStatus::ESME_RX_T_APPN);
                return;
            }
        };
        let Some(account) = live.accounts.get(client) else {
            self.to_unknown(client, frame, ack, forget, dedup);
            return;
        };
        let (len, max) = (frame.len(), live.config.client_sessions.max_pdu_len);
        if len > max {
            // Past what a client may be sent (a rewritten id can add a few octets to a PDU that
            // was at the limit): the SMSC hears why, and nothing is cut.
            self.stats.oversized_deliveries.fetch_add(1, Ordering::Relaxed);
            warn!(
                client,
                len, max, "delivery longer than sessions.max_pdu_len: refused (ESME_RINVMSGLEN)"
            );
            ack.send(CommandStatus::ESME_RINVMSGLEN);
            return;
        }
        if account.refuses_full() {
            ack.send(CommandStatus::ESME_RX_T_APPN);
            return;
        }
        let direct = Direct {
            frame,
            ack: Some(ack),
            forget,
            dedup,
            charge: None,
        };
        // Holding nothing waiting, the account has nothing this could overtake: straight to a
        // bind with room, this thread's first.
        let Err(Direct {
            frame,
            ack,
            forget,
            dedup,
            ..
        }) = account.offer(direct)
        else {
            return;
        };
        // The account swamped or gone: the SMSC is told to retry later.
        let msg = AccountMsg::Deliver {
            frame,
            ack,
            forget,
            dedup,
        };
        if let Err(tokio::sync::mpsc::error::TrySendError::Full(AccountMsg::Deliver { ack, .. })) =
            account.tx.try_send(msg)
        {
            match ack {
                Some(ack) => ack.send(CommandStatus::ESME_RX_T_APPN),
                None => warn!(client, "account swamped: a held receipt could not be queued"),
            }
        }
    }

    /// A receipt for a client this node's configuration does not name: one added on another
    /// node first (a rolling reload), or removed. With a shared store it goes into the
    /// client's outbox, for the nodes that know it; otherwise the SMSC keeps it and sends it
    /// again (ESME_RX_T_APPN), so a client re-added by a reload still gets it. Never dropped
    /// here: which of the two it is, this node cannot tell.
    fn to_unknown(&self, client: &str, frame: Bytes, ack: DeliverAck, forget: Forget, dedup: Option<String>) {
        self.stats.unknown_client_deliveries.fetch_add(1, Ordering::Relaxed);
        static UNKNOWN: Limiter = Limiter::new(5);
        if self.store.shared().is_none() {
            if let Some(suppressed) = UNKNOWN.allow() {
                warn!(
                    client,
                    suppressed, "receipt for a client not in the configuration: SMSC asked to retry (ESME_RX_T_APPN)"
                );
            }
            ack.send(CommandStatus::ESME_RX_T_APPN);
            return;
        }
        if let Some(suppressed) = UNKNOWN.allow() {
            info!(
                client,
                suppressed, "receipt for a client this node does not know: put in its shared outbox"
            );
        }
        let ticket = self.store.outbox_push(client, &frame, dedup.as_deref());
        let store = self.store.clone();
        tokio::spawn(async move {
            let status = match ticket.await {
                Ok(Pushed::Stored(_) | Pushed::Duplicate) => {
                    if let Some((correlation, id_match)) = forget {
                        store.remove(&correlation, id_match);
                    }
                    CommandStatus::ESME_ROK
                }
                Ok(Pushed::Full) | Err(_) => CommandStatus::ESME_RX_T_APPN,
            };
            ack.send(status);
        });
    }

    /// Looks up the correlation of a receipt's ids (TLV first, then text).
    fn lookup(&self, upstream: &UpstreamInfo, receipt: &Receipt) -> Found {
        let (tlv, text) = (receipt.tlv_id(), receipt.text_id());
        let ids: &[&[u8]] = match (tlv, text) {
            (Some(a), Some(b)) => &[a, b],
            (Some(a), None) | (None, Some(a)) => &[a],
            (None, None) => &[],
        };
        self.store
            .find_by_upstream(&upstream.name, ids, upstream.config.id_match)
    }

    /// A receipt's lookup came back.
    fn on_found(
        &self,
        upstream: &Arc<UpstreamInfo>,
        frame: &Bytes,
        pdu: Pdu,
        receipt: &Receipt,
        ack: DeliverAck,
        found: Result<Option<Arc<Correlation>>, StoreError>,
    ) {
        match found {
            Ok(Some(correlation)) => self.matched(upstream, Some(frame), pdu, receipt, correlation, ack),
            Ok(None) if receipt.id().is_some() => self.not_found(upstream, frame, pdu, receipt, ack),
            Ok(None) => self.unmatched(upstream, pdu, ack),
            Err(e) => {
                // Not matched, not lost: the SMSC keeps it and sends it again. A store known
                // to be down was logged once when it went.
                if matches!(e, StoreError::Down) {
                    debug!(upstream = %upstream.name, "store down: receipt left with the SMSC");
                } else {
                    warn!(upstream = %upstream.name, error = %e, "store lookup failed: SMSC asked to retry");
                }
                ack.send(CommandStatus::ESME_RX_T_APPN);
            }
        }
    }

    /// A receipt matched to `correlation`: delivered, unless the client has not been given
    /// the message's id yet; then it waits for that answer ([`Context::answer_written`]).
    fn matched(
        &self,
        upstream: &Arc<UpstreamInfo>,
        frame: Option<&Bytes>,
        pdu: Pdu,
        receipt: &Receipt,
        correlation: Arc<Correlation>,
        ack: DeliverAck,
    ) {
        let Some(key) = self.answers_due.due(&correlation, upstream.config.id_match) else {
            return self.deliver_matched(upstream, frame.map(|f| &f[..]), pdu, receipt, correlation, ack);
        };
        let parked = Parked {
            upstream: upstream.clone(),
            frame: frame.cloned(),
            pdu,
            receipt: receipt.clone(),
            correlation,
            ack,
            at: Instant::now(),
            found_here: false,
        };
        match self.answers_due.park(key, parked) {
            Ok(()) => debug!(upstream = %upstream.name, "receipt waits for its submit's answer"),
            // Written meanwhile.
            Err(p) => self.deliver_matched(upstream, p.frame.as_deref(), p.pdu, receipt, p.correlation, p.ack),
        }
    }

    /// A receipt the store cannot find. Most often its submit's answer is on its way to the
    /// client, its correlation not recorded yet: it waits with that answer, matched to the
    /// submit it was filed with ([`AnswersDue::find`]). Otherwise (the upstream's answer not
    /// mapped yet, another node's submit, an unknown id) it is held until its correlation is
    /// recorded or `early_receipt_wait` runs out.
    ///
    /// [`AnswersDue::find`]: super::answers::AnswersDue::find
    fn not_found(&self, upstream: &Arc<UpstreamInfo>, frame: &Bytes, pdu: Pdu, receipt: &Receipt, ack: DeliverAck) {
        let Some((key, correlation)) = self.answers_due.find(&upstream.name, receipt, upstream.config.id_match) else {
            return self.hold_early(upstream, Some(frame), receipt, pdu, ack);
        };
        let parked = Parked {
            upstream: upstream.clone(),
            frame: Some(frame.clone()),
            pdu,
            receipt: receipt.clone(),
            correlation,
            ack,
            at: Instant::now(),
            found_here: true,
        };
        if let Err(p) = self.answers_due.park(key, parked) {
            // Answered meanwhile: recorded by now (found when held), or never to be.
            self.hold_early(upstream, p.frame.as_ref(), receipt, p.pdu, p.ack);
        }
    }

    /// `true` when the client's `multipart_receipts` skips this part's receipt.
    fn suppressed_part(&self, c: &Correlation) -> bool {
        let Some((part, of)) = c.part else { return false };
        let policy = self
            .live()
            .accounts
            .get(&*c.client)
            .map_or(MultipartReceipts::All, |a| a.peek().multipart_receipts);
        match policy {
            MultipartReceipts::All => false,
            MultipartReceipts::First => part != 1,
            MultipartReceipts::Last => part != of,
        }
    }

    /// A matched receipt: the client's id in, then to the client's account.
    fn deliver_matched(
        &self,
        upstream: &UpstreamInfo,
        frame: Option<&[u8]>,
        pdu: Pdu,
        receipt: &Receipt,
        correlation: Arc<Correlation>,
        ack: DeliverAck,
    ) {
        let is_final = final_state(receipt);
        if is_final {
            let now = crate::store::unix_now();
            upstream
                .load
                .receipt_delay
                .observe(now.saturating_sub(correlation.submitted_at) as f64);
            use super::delivered::{Done, Receipt};
            let got = Receipt::new(receipt.stat(), receipt.err(), now);
            self.delivered.remember(Done::of(&correlation, Some(got)));
        }
        // The trail's `stat:` and `err:` share the receipt's bytes: no copy on this path.
        if self.trail.on() {
            self.trail.record(crate::trail::TrailEvent::Receipt {
                correlation: correlation.clone(),
                state: receipt.stat_shared(),
                err: receipt.err_shared(),
            });
        }
        if self.suppressed_part(&correlation) {
            // The client wants one receipt per message, not per part: this one is not it.
            self.stats.part_receipts_suppressed.fetch_add(1, Ordering::Relaxed);
            if is_final {
                self.store.remove(&correlation, upstream.config.id_match);
            }
            ack.send(CommandStatus::ESME_ROK);
            return;
        }
        let id = correlation.client_id.as_bytes();
        // On the frame the SMSC sent when there is one; else the parsed PDU, encoded again.
        let rewritten = match frame.and_then(|frame| rewrite_receipt_frame(frame, &pdu, receipt, id)) {
            Some(rewritten) => rewritten.map(Ok),
            None => rewrite_receipt_id(&pdu, receipt, id).map(|out| out.to_bytes()),
        };
        let out = match rewritten {
            Ok(out) => out,
            Err(e) => {
                warn!(error = %e, "receipt id not rewritten; delivered as received");
                pdu.to_bytes()
            }
        };
        self.stats.matched_receipts.add(1);
        let client = correlation.client.clone();
        // A shared outbox tells a copy the SMSC sends again (to another node) from a new one.
        let dedup = self.store.shared().map(|_| {
            let id = canonical_key(correlation.upstream_id.as_bytes(), upstream.config.id_match);
            let id = id.as_str();
            let stat = receipt.stat().map(String::from_utf8_lossy).unwrap_or_default();
            format!("{}:{id}:{stat}", upstream.name)
        });
        let forget = is_final.then_some((correlation, upstream.config.id_match));
        self.to_account(&client, out, ack, forget, dedup);
    }

    fn unmatched(&self, upstream: &UpstreamInfo, pdu: Pdu, ack: DeliverAck) {
        self.unmatched_because(upstream, pdu, ack, "receipt matches no submission");
    }

    /// [`Context::unmatched`], logged as `why`.
    fn unmatched_because(&self, upstream: &UpstreamInfo, pdu: Pdu, ack: DeliverAck, why: &'static str) {
        self.stats.unmatched_receipts.fetch_add(1, Ordering::Relaxed);
        let receipt = Receipt::from_pdu(&pdu);
        // Plain values (an absent id is empty), not Option's Debug: JSON logs stay queryable.
        let id = |field: fn(&Receipt) -> Option<&[u8]>| {
            receipt
                .as_ref()
                .and_then(field)
                .map(String::from_utf8_lossy)
                .unwrap_or_default()
        };
        warn!(
            upstream = %upstream.name,
            receipted_message_id = %id(Receipt::tlv_id),
            text_id = %id(Receipt::text_id),
            "{why}"
        );
        match &self.live().config.unmatched_receipts_to {
            Some(client) => self.to_account(client, pdu.to_bytes(), ack, None, None),
            None => ack.send(CommandStatus::ESME_ROK),
        }
    }

    /// Holds a receipt whose correlation is not recorded yet.
    fn hold_early(
        &self,
        upstream: &Arc<UpstreamInfo>,
        frame: Option<&Bytes>,
        receipt: &Receipt,
        pdu: Pdu,
        ack: DeliverAck,
    ) {
        let Some(charge) = self.early.budget.try_charge(pdu.encoded_len() as u64) else {
            // Held in memory only, so bounded: the SMSC keeps it and sends it again later.
            self.early.refused.fetch_add(1, Ordering::Relaxed);
            static FULL: Limiter = Limiter::new(1);
            if let Some(suppressed) = FULL.allow() {
                warn!(upstream = %upstream.name, suppressed, "early receipts at their limit: SMSC asked to retry");
            }
            ack.send(CommandStatus::ESME_RX_T_APPN);
            return;
        };
        let mode = upstream.config.id_match;
        let mut keys: Vec<Key> = Vec::new();
        for id in [receipt.tlv_id(), receipt.text_id()].into_iter().flatten() {
            for key in lookup_keys(id, mode) {
                let key = (upstream.name.clone(), key);
                if !keys.contains(&key) {
                    keys.push(key);
                }
            }
        }
        let early = Arc::new(Early {
            held: Mutex::new(Some(Held {
                frame: frame.cloned(),
                pdu,
                receipt: receipt.clone(),
                ack,
            })),
            keys,
            upstream: upstream.clone(),
            at: Instant::now(),
            _charge: charge,
        });
        self.early.file(&early);
        self.early.held_total.fetch_add(1, Ordering::Relaxed);
        // The correlation may have landed between the lookup and the filing above (a shared
        // store is looked at again by `recheck_early`).
        if let Ok(Ok(Some(correlation))) = self.lookup(upstream, receipt).now() {
            if let Some(held) = early.take() {
                self.early.forget(&early);
                self.matched(upstream, held.frame.as_ref(), held.pdu, receipt, correlation, held.ack);
            }
        }
    }

    /// Called once a submit's answer is written to its client (or never will be): delivers
    /// the receipts that were waiting for it, matched before it ([`AnswersDue`]) or before
    /// its correlation was recorded (`recorded`: they can be now).
    ///
    /// [`AnswersDue`]: super::answers::AnswersDue
    pub(crate) fn answer_written(&self, c: &Arc<Correlation>, due: Option<DueKey>, recorded: bool) {
        if let Some(key) = due {
            let written = self.answers_due.written(key, c, recorded);
            for p in written.orphaned {
                self.unmatched_because(
                    &p.upstream,
                    p.pdu,
                    p.ack,
                    "receipt for a submit the client was told failed (its correlation could not be stored)",
                );
            }
            if written.release {
                loop {
                    let parked = self.answers_due.release(key);
                    if parked.is_empty() {
                        break;
                    }
                    parked.into_iter().for_each(|p| self.deliver_parked(p));
                }
            }
        }
        if recorded {
            self.correlation_recorded(c);
        }
    }

    fn deliver_parked(&self, p: Parked) {
        let Parked {
            upstream,
            frame,
            pdu,
            receipt,
            correlation,
            ack,
            ..
        } = p;
        self.deliver_matched(&upstream, frame.as_deref(), pdu, &receipt, correlation, ack);
    }

    /// Receipts that waited longer than `wait` for their submit's answer go on: the SMSC waits
    /// for theirs, and the answer is that late (a stalled store) or will not come (its session
    /// ended without writing it). One the store had not found goes on only if it finds it now:
    /// unmatched if it says there is none, back to the SMSC if it cannot say yet.
    pub(crate) fn expire_parked(&self, wait: Duration) {
        let overdue = self.answers_due.overdue(wait);
        if !overdue.is_empty() {
            warn!(
                receipts = overdue.len(),
                "receipts waited longer than early_receipt_wait for their submit's answer (a store that slow, or a session that ended without writing it): delivered, or looked up first if the store had not found them"
            );
        }
        for p in overdue {
            if !p.found_here {
                self.deliver_parked(p);
                continue;
            }
            match self.lookup(&p.upstream, &p.receipt).now() {
                Ok(Ok(Some(correlation))) => {
                    self.deliver_matched(&p.upstream, p.frame.as_deref(), p.pdu, &p.receipt, correlation, p.ack)
                }
                Ok(Ok(None)) => self.unmatched_because(
                    &p.upstream,
                    p.pdu,
                    p.ack,
                    "receipt whose submit's correlation was never recorded (its answer overdue)",
                ),
                // Nobody can say yet: the SMSC sends it again later.
                Ok(Err(_)) | Err(_) => p.ack.send(CommandStatus::ESME_RX_T_APPN),
            }
        }
    }

    /// Called after a correlation is recorded: delivers a receipt that was waiting for it.
    fn correlation_recorded(&self, c: &Arc<Correlation>) {
        if self.early.keys.load(Ordering::Acquire) == 0 {
            return;
        }
        let Some(upstream) = self
            .live()
            .sessions
            .iter()
            .find(|s| s.upstream.name == c.upstream)
            .map(|s| s.upstream.clone())
        else {
            return;
        };
        let key = (
            c.upstream.clone(),
            canonical_key(c.upstream_id.as_bytes(), upstream.config.id_match),
        );
        let Some(early) = self.early.by_key.get(&key).map(|e| e.clone()) else {
            return;
        };
        if let Some(held) = early.take() {
            self.early.forget(&early);
            debug!(upstream = %c.upstream, id = %c.upstream_id, "early receipt matched");
            let Held {
                frame,
                pdu,
                receipt,
                ack,
            } = held;
            self.deliver_matched(&upstream, frame.as_deref(), pdu, &receipt, c.clone(), ack);
        }
    }

    /// Forgets correlations past `correlation_ttl` through the store's writer (a bounded slice
    /// per call, so sessions never wait long behind it).
    pub(crate) async fn expire_correlations(&self) {
        match self.store.expire(crate::store::unix_now()).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(expired = n, "correlations past correlation_ttl forgotten"),
            Err(e) => warn!(error = %e, "correlation expiry failed"),
        }
    }

    /// Looks again for the correlations of the receipts held (with a shared store, another
    /// node records them and no hook here hears of it).
    pub(crate) async fn recheck_early(&self) {
        if self.store.shared().is_none() || self.early.keys.load(Ordering::Acquire) == 0 {
            return;
        }
        let mut held: Vec<Arc<Early>> = Vec::new();
        for e in self.early.by_key.iter() {
            if !held.iter().any(|h| Arc::ptr_eq(h, e.value())) {
                held.push(e.value().clone());
            }
        }
        for early in held {
            let Some(receipt) = early.peek() else { continue };
            if let Ok(Some(correlation)) = self.lookup(&early.upstream, &receipt).await {
                if let Some(held) = early.take() {
                    self.early.forget(&early);
                    let frame = held.frame.as_ref();
                    self.matched(&early.upstream, frame, held.pdu, &receipt, correlation, held.ack);
                }
            }
        }
    }

    /// Treats receipts held longer than `wait` as unmatched; while the store cannot be asked,
    /// nobody can say, so they go back to the SMSC (ESME_RX_T_APPN) to be sent again.
    pub(crate) fn expire_early(&self, wait: Duration) {
        let expired: Vec<Arc<Early>> = self
            .early
            .by_key
            .iter()
            .filter(|e| e.at.elapsed() >= wait)
            .map(|e| e.value().clone())
            .collect();
        let known = self.store.available();
        for early in expired {
            self.early.forget(&early);
            match early.take() {
                Some(held) if known => self.unmatched(&early.upstream, held.pdu, held.ack),
                Some(held) => held.ack.send(CommandStatus::ESME_RX_T_APPN),
                None => {}
            }
        }
    }
}

impl InboundSink for Context {
    fn max_unanswered(&self) -> usize {
        self.live().config.limits.unanswered_delivers as usize
    }

    fn inbound(&self, upstream: &Arc<UpstreamInfo>, frame: Bytes, pdu: Pdu, ack: DeliverAck) {
        if let Some(receipt) = Receipt::from_pdu(&pdu) {
            match self.lookup(upstream, &receipt).now() {
                Ok(found) => self.on_found(upstream, &frame, pdu, &receipt, ack, found),
                Err(ticket) => {
                    let pending = Lookup {
                        upstream: upstream.clone(),
                        frame,
                        pdu,
                        receipt,
                        ack,
                        ticket,
                    };
                    if let Err(e) = self.lookups.try_send(pending) {
                        // Swamped: the SMSC sends it again later.
                        let Lookup { ack, .. } = e.into_inner();
                        ack.send(CommandStatus::ESME_RX_T_APPN);
                    }
                }
            }
            return;
        }
        let destination = match &pdu.body {
            Body::DeliverSm(b) => b.destination_addr.as_bytes(),
            Body::DataSm(b) => b.destination_addr.as_bytes(),
            _ => b"",
        };
        match self.live().config.mo_client(destination) {
            Some(client) => {
                self.stats.mo_routed.fetch_add(1, Ordering::Relaxed);
                let client = client.to_owned();
                self.to_account(&client, pdu.to_bytes(), ack, None, None);
            }
            None => {
                self.stats.mo_unroutable.fetch_add(1, Ordering::Relaxed);
                debug!(upstream = %upstream.name, destination = %String::from_utf8_lossy(destination), "MO matches no mo_routes");
                ack.send(CommandStatus::ESME_RX_P_APPN);
            }
        }
    }
}
