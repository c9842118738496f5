//! Receipts and MO from the upstreams: find the client they belong to and hand them to its
//! account.
//!
//! A receipt is matched by its `receipted_message_id` first, then by the id in its text, each
//! tolerant of hex/decimal/zero-padding/case as the upstream's `id_match` says; its id is then
//! rewritten to the one the client got (TLV and text). MO goes by `mo_routes`. The SMSC gets its
//! deliver_sm_resp when the account holds the PDU (or an error it will retry on).
//!
//! Fast SMSCs send a receipt before the proxy has recorded its submit (often on another
//! session). Such a receipt is held ([`EarlyReceipts`]) and matched the moment the correlation
//! is recorded; after `early_receipt_wait` without one it counts as unmatched.

use super::Context;
use crate::config::MultipartReceipts;
use crate::messages::{AccountMsg, DeliverAck};
use crate::pdu::{Body, CommandStatus, Pdu};
use crate::receipt::id::{canonical, lookup_keys, IdMatch};
use crate::receipt::{rewrite_receipt_id, Receipt};
use crate::store::Correlation;
use crate::upstream::{InboundSink, UpstreamInfo};
use dashmap::DashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tracing::{debug, warn};

type Key = (Arc<str>, String);

/// A receipt waiting for its correlation, filed under every form its ids may be stored in.
#[derive(Debug)]
struct Early {
    /// The receipt and the SMSC's pending answer: the SMSC is acknowledged only when the
    /// receipt is in custody (matched and stored) or given up on, never while it waits here in
    /// memory, so a crash meanwhile makes the SMSC send it again.
    held: Mutex<Option<(Pdu, DeliverAck)>>,
    keys: Vec<Key>,
    upstream: Arc<UpstreamInfo>,
    at: Instant,
}

impl Early {
    /// The receipt, to exactly one taker.
    fn take(&self) -> Option<(Pdu, DeliverAck)> {
        self.held.lock().unwrap_or_else(|e| e.into_inner()).take()
    }
}

/// Receipts that arrived before their correlation.
#[derive(Debug, Default)]
pub struct EarlyReceipts {
    by_key: DashMap<Key, Arc<Early>>,
    /// Entries in `by_key`: checked on every recorded correlation, where `DashMap::is_empty`
    /// would lock every shard.
    keys: AtomicUsize,
}

impl EarlyReceipts {
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
    fn to_account(&self, client: &str, pdu: Pdu, ack: Option<DeliverAck>, forget: Option<(Arc<Correlation>, IdMatch)>) {
        let Some(account) = self.accounts.get(client) else {
            if let Some(ack) = ack {
                ack.send(CommandStatus::ESME_RX_P_APPN);
            }
            return;
        };
        // The account swamped or gone: the SMSC is told to retry later.
        let msg = AccountMsg::Deliver { pdu, ack, forget };
        if let Err(tokio::sync::mpsc::error::TrySendError::Full(AccountMsg::Deliver { ack, .. })) =
            account.tx.try_send(msg)
        {
            match ack {
                Some(ack) => ack.send(CommandStatus::ESME_RX_T_APPN),
                None => warn!(client, "account swamped: a held receipt could not be queued"),
            }
        }
    }

    fn find(&self, upstream: &UpstreamInfo, receipt: &Receipt) -> Option<Arc<Correlation>> {
        let ids = [receipt.tlv_id.as_ref(), receipt.text_id.as_ref()];
        for id in ids.into_iter().flatten().filter(|id| !id.is_empty()) {
            match self
                .store
                .find_by_upstream(&upstream.name, id, upstream.config.id_match)
            {
                Ok(Some(c)) => return Some(c),
                Ok(None) => {}
                Err(e) => warn!(error = %e, "store lookup failed"),
            }
        }
        None
    }

    /// `true` when the client's `multipart_receipts` skips this part's receipt.
    fn suppressed_part(&self, c: &Correlation) -> bool {
        let Some((part, of)) = c.part else { return false };
        let policy = self
            .accounts
            .get(&*c.client)
            .map_or(MultipartReceipts::All, |a| a.config.multipart_receipts);
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
        pdu: Pdu,
        receipt: &Receipt,
        correlation: Arc<Correlation>,
        ack: Option<DeliverAck>,
    ) {
        let is_final = final_state(receipt);
        if self.suppressed_part(&correlation) {
            // The client wants one receipt per message, not per part: this one is not it.
            self.stats.part_receipts_suppressed.fetch_add(1, Ordering::Relaxed);
            if is_final {
                drop(self.store.remove(&correlation, upstream.config.id_match));
            }
            if let Some(ack) = ack {
                ack.send(CommandStatus::ESME_ROK);
            }
            return;
        }
        let out = match rewrite_receipt_id(&pdu, receipt, correlation.client_id.as_bytes()) {
            Ok(out) => out,
            Err(e) => {
                warn!(error = %e, "receipt id not rewritten; delivered as received");
                pdu
            }
        };
        self.stats.matched_receipts.fetch_add(1, Ordering::Relaxed);
        let client = correlation.client.clone();
        let forget = is_final.then_some((correlation, upstream.config.id_match));
        self.to_account(&client, out, ack, forget);
    }

    fn unmatched(&self, upstream: &UpstreamInfo, pdu: Pdu, ack: Option<DeliverAck>) {
        self.stats.unmatched_receipts.fetch_add(1, Ordering::Relaxed);
        let receipt = Receipt::from_pdu(&pdu);
        warn!(
            upstream = %upstream.name,
            receipted_message_id = ?receipt.as_ref().and_then(|r| r.tlv_id.as_deref()).map(String::from_utf8_lossy),
            text_id = ?receipt.as_ref().and_then(|r| r.text_id.as_deref()).map(String::from_utf8_lossy),
            "receipt matches no submission"
        );
        match &self.config.unmatched_receipts_to {
            Some(client) => self.to_account(client, pdu, ack, None),
            None => {
                if let Some(ack) = ack {
                    ack.send(CommandStatus::ESME_ROK);
                }
            }
        }
    }

    /// Holds a receipt whose correlation is not recorded yet.
    fn hold_early(&self, upstream: &Arc<UpstreamInfo>, receipt: &Receipt, pdu: Pdu, ack: DeliverAck) {
        let mode = upstream.config.id_match;
        let mut keys: Vec<Key> = Vec::new();
        for id in [receipt.tlv_id.as_ref(), receipt.text_id.as_ref()]
            .into_iter()
            .flatten()
        {
            for key in lookup_keys(id, mode) {
                let key = (upstream.name.clone(), key);
                if !keys.contains(&key) {
                    keys.push(key);
                }
            }
        }
        let early = Arc::new(Early {
            held: Mutex::new(Some((pdu, ack))),
            keys,
            upstream: upstream.clone(),
            at: Instant::now(),
        });
        self.early.file(&early);
        // The correlation may have landed between the lookup and the filing above.
        if let Some(correlation) = self.find(upstream, receipt) {
            if let Some((pdu, ack)) = early.take() {
                self.early.forget(&early);
                self.deliver_matched(upstream, pdu, receipt, correlation, Some(ack));
            }
        }
    }

    /// Called after a correlation is recorded: delivers a receipt that was waiting for it.
    pub(crate) fn correlation_recorded(&self, c: &Arc<Correlation>) {
        if self.early.keys.load(Ordering::Acquire) == 0 {
            return;
        }
        let Some(upstream) = self
            .sessions
            .iter()
            .find(|s| s.upstream.name == c.upstream)
            .map(|s| s.upstream.clone())
        else {
            return;
        };
        let key = (
            c.upstream.clone(),
            canonical(c.upstream_id.as_bytes(), upstream.config.id_match),
        );
        let Some(early) = self.early.by_key.get(&key).map(|e| e.clone()) else {
            return;
        };
        if let Some((pdu, ack)) = early.take() {
            self.early.forget(&early);
            debug!(upstream = %c.upstream, id = %c.upstream_id, "early receipt matched");
            // Read again: the rare path, not worth keeping every held receipt's parse around.
            match Receipt::from_pdu(&pdu) {
                Some(receipt) => self.deliver_matched(&upstream, pdu, &receipt, c.clone(), Some(ack)),
                None => self.unmatched(&upstream, pdu, Some(ack)),
            }
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

    /// Treats receipts held longer than `wait` as unmatched.
    pub(crate) fn expire_early(&self, wait: Duration) {
        let expired: Vec<Arc<Early>> = self
            .early
            .by_key
            .iter()
            .filter(|e| e.at.elapsed() >= wait)
            .map(|e| e.value().clone())
            .collect();
        for early in expired {
            self.early.forget(&early);
            if let Some((pdu, ack)) = early.take() {
                self.unmatched(&early.upstream, pdu, Some(ack));
            }
        }
    }
}

impl InboundSink for Context {
    fn inbound(&self, upstream: &Arc<UpstreamInfo>, pdu: Pdu, ack: DeliverAck) {
        if let Some(receipt) = Receipt::from_pdu(&pdu) {
            match self.find(upstream, &receipt) {
                Some(correlation) => self.deliver_matched(upstream, pdu, &receipt, correlation, Some(ack)),
                None if receipt.id().is_some() => self.hold_early(upstream, &receipt, pdu, ack),
                None => self.unmatched(upstream, pdu, Some(ack)),
            }
            return;
        }
        let destination = match &pdu.body {
            Body::DeliverSm(b) => b.destination_addr.as_bytes(),
            Body::DataSm(b) => b.destination_addr.as_bytes(),
            _ => b"",
        };
        match self.config.mo_client(destination) {
            Some(client) => {
                self.stats.mo_routed.fetch_add(1, Ordering::Relaxed);
                let client = client.to_owned();
                self.to_account(&client, pdu, Some(ack), None);
            }
            None => {
                self.stats.mo_unroutable.fetch_add(1, Ordering::Relaxed);
                debug!(upstream = %upstream.name, destination = %String::from_utf8_lossy(destination), "MO matches no mo_routes");
                ack.send(CommandStatus::ESME_RX_P_APPN);
            }
        }
    }
}
