//! What a bound client receives besides answers: receipts and MO its account hands over
//! (`ClientEvent::Deliver`), each written with the session's own sequence number and reported
//! back to the account when the client answers it (or does not, within `response_timeout`).

use super::{Client, Flow};
use crate::messages::{AccountMsg, ClientEvent, Delivery};
use crate::pdu::{CommandId, Pdu};
use futures_util::SinkExt;

/// How many events one wake-up takes before flushing.
const EVENTS_PER_WAKE: usize = 64;

impl Client {
    /// An event and whatever else is queued behind it (up to [`EVENTS_PER_WAKE`]), then one
    /// flush.
    pub(super) async fn events(&mut self, first: ClientEvent) -> Flow {
        self.event(first).await?;
        // Answers free upstream window: queued requests go first.
        if !self.queue.is_empty() {
            self.drain_queue().await?;
        }
        for _ in 0..EVENTS_PER_WAKE {
            let next = match &mut self.phase {
                super::Phase::Bound(b) => b.events_rx.try_recv().ok(),
                _ => None,
            };
            let Some(event) = next else { break };
            self.event(event).await?;
        }
        Ok(crate::pdu::codec::flush(&mut self.conn).await?)
    }

    async fn event(&mut self, event: ClientEvent) -> Flow {
        match event {
            ClientEvent::Answer(outcome) => self.outcome(outcome).await,
            ClientEvent::Deliver { entry, pdu } => self.deliver(entry, pdu).await,
        }
    }

    /// Writes a receipt or MO to the client, unless this bind cannot take it now (a
    /// transmitter, or shutting down): then it goes back to the account for another bind.
    async fn deliver(&mut self, entry: u64, mut pdu: Pdu) -> Flow {
        if !self.phase.state().can_receive() || self.draining.is_some() {
            self.delivered(entry, Delivery::NotSent).await;
            return Ok(());
        }
        let seq = self.seq.next_number();
        pdu.sequence_number = seq;
        self.deliveries.insert(seq, (entry, self.now));
        Ok(self.conn.feed(&pdu).await?)
    }

    /// A response from the client: to our enquire_link, or to a delivery.
    pub(super) async fn response(&mut self, pdu: Pdu) {
        match pdu.command_id() {
            CommandId::ENQUIRE_LINK_RESP => self.keep_alive.answered(),
            CommandId::DELIVER_SM_RESP | CommandId::DATA_SM_RESP | CommandId::GENERIC_NACK => {
                if let Some((entry, _)) = self.deliveries.remove(&pdu.sequence_number) {
                    let outcome = if pdu.command_id() == CommandId::GENERIC_NACK {
                        Delivery::Nacked(pdu.command_status)
                    } else {
                        Delivery::Answered(pdu.command_status)
                    };
                    self.delivered(entry, outcome).await;
                }
            }
            _ => {}
        }
    }

    /// Tells the account how delivery `entry` went.
    pub(super) async fn delivered(&mut self, entry: u64, outcome: Delivery) {
        if let Some(b) = self.phase.bound() {
            let msg = AccountMsg::Delivered {
                bind_id: b.bind_id,
                entry,
                outcome,
            };
            let _ = b.account.tx.send(msg).await;
        }
    }
}
