//! Receipts and MO from the upstreams: find the client they belong to and hand them to its
//! account.
//!
//! A receipt is matched by its `receipted_message_id` first, then by the id in its text, each
//! tolerant of hex/decimal/zero-padding/case as the upstream's `id_match` says; its id is then
//! rewritten to the one the client got (TLV and text). MO goes by `mo_routes`. The SMSC gets its
//! deliver_sm_resp when the account holds the PDU (or an error it will retry on).

use super::messages::{AccountMsg, DeliverAck};
use super::Context;
use crate::pdu::{Body, CommandStatus, Pdu};
use crate::receipt::{rewrite_id, Receipt};
use crate::store::Correlation;
use crate::upstream::{InboundSink, UpstreamInfo};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use tracing::{debug, warn};

impl Context {
    fn to_account(&self, client: &str, pdu: Pdu, ack: DeliverAck) {
        let Some(account) = self.accounts.get(client) else {
            ack.send(CommandStatus::ESME_RX_P_APPN);
            return;
        };
        // The account swamped or gone: the SMSC is told to retry later.
        let msg = AccountMsg::Deliver {
            pdu,
            ack: Some(ack),
        };
        if let Err(tokio::sync::mpsc::error::TrySendError::Full(AccountMsg::Deliver {
            ack: Some(ack),
            ..
        })) = account.tx.try_send(msg)
        {
            ack.send(CommandStatus::ESME_RX_T_APPN);
        }
    }

    fn find(&self, upstream: &UpstreamInfo, receipt: &Receipt) -> Option<Correlation> {
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
}

impl InboundSink for Context {
    fn inbound(&self, upstream: &Arc<UpstreamInfo>, pdu: Pdu, ack: DeliverAck) {
        if let Some(receipt) = Receipt::from_pdu(&pdu) {
            let Some(correlation) = self.find(upstream, &receipt) else {
                self.stats
                    .unmatched_receipts
                    .fetch_add(1, Ordering::Relaxed);
                warn!(
                    upstream = %upstream.name,
                    receipted_message_id = ?receipt.tlv_id.as_deref().map(String::from_utf8_lossy),
                    text_id = ?receipt.text_id.as_deref().map(String::from_utf8_lossy),
                    "receipt matches no submission"
                );
                match &self.config.unmatched_receipts_to {
                    Some(client) => self.to_account(client, pdu, ack),
                    None => ack.send(CommandStatus::ESME_ROK),
                }
                return;
            };
            let out = match rewrite_id(&pdu, correlation.client_id.as_bytes()) {
                Ok(out) => out,
                Err(e) => {
                    warn!(error = %e, "receipt id not rewritten; delivered as received");
                    pdu
                }
            };
            self.stats.matched_receipts.fetch_add(1, Ordering::Relaxed);
            if receipt.state.is_some_and(|s| s.is_final()) {
                let _ = self.store.remove(&correlation, upstream.config.id_match);
            }
            self.to_account(&correlation.client, out, ack);
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
                self.to_account(&client, pdu, ack);
            }
            None => {
                self.stats.mo_unroutable.fetch_add(1, Ordering::Relaxed);
                debug!(upstream = %upstream.name, destination = %String::from_utf8_lossy(destination), "MO matches no mo_routes");
                ack.send(CommandStatus::ESME_RX_P_APPN);
            }
        }
    }
}
