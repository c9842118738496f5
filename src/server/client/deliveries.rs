//! What a bound client receives besides answers: receipts and MO its account hands over
//! (`ClientEvent::Deliver`), each written with the session's own sequence number and reported
//! back to the account when the client answers it (or does not, within `response_timeout`).

use super::{Client, Flow};
use crate::messages::{AccountMsg, ClientEvent, Delivery};
use crate::pdu::codec::put_frame;
use crate::pdu::{CommandId, Pdu};
use tokio::sync::mpsc::error::TrySendError;
use tracing::warn;

/// How many events one turn takes (its writes go out in one flush at the end of the turn).
const EVENTS_PER_WAKE: usize = 64;

impl Client {
    /// An event and whatever else is queued behind it (up to [`EVENTS_PER_WAKE`]).
    pub(super) fn events(&mut self, first: ClientEvent) -> Flow {
        self.event(first)?;
        // Answers free upstream window: queued requests go first.
        if !self.queue.is_empty() {
            self.drain_queue()?;
        }
        for _ in 0..EVENTS_PER_WAKE {
            let next = match &mut self.phase {
                super::Phase::Bound(b) => b.events_rx.try_recv().ok(),
                _ => None,
            };
            let Some(event) = next else { break };
            self.event(event)?;
        }
        Ok(())
    }

    fn event(&mut self, event: ClientEvent) -> Flow {
        match event {
            ClientEvent::Answer(outcome) => self.outcome(outcome),
            ClientEvent::Deliver { entry, frame } => self.deliver(entry, &frame),
        }
    }

    /// Writes a receipt or MO to the client, unless this bind cannot take it now (a
    /// transmitter, or shutting down): then it goes back to the account for another bind.
    /// The frame is copied as it is, with the session's sequence number written into the copy.
    fn deliver(&mut self, entry: u64, frame: &[u8]) -> Flow {
        if !self.phase.state().can_receive() || self.draining.is_some() {
            self.delivered(entry, Delivery::NotSent);
            return Ok(());
        }
        let seq = self.seq.next_number();
        if put_frame(self.conn.write_buffer_mut(), frame, seq) {
            self.deliveries.insert(seq, (entry, self.now));
        } else {
            // Never: the account hands over frames encoded or read whole. Taken as refused,
            // not as unsent (which would hand it to the next bind, and the next).
            warn!(entry, "delivery shorter than a PDU header: not sent");
            self.delivered(entry, Delivery::Nacked(crate::pdu::CommandStatus::ESME_RSYSERR));
        }
        Ok(())
    }

    /// A response from the client: to our enquire_link, or to a delivery.
    pub(super) fn response(&mut self, pdu: Pdu) {
        match pdu.command_id() {
            CommandId::ENQUIRE_LINK_RESP => self.keep_alive.answered(),
            CommandId::DELIVER_SM_RESP | CommandId::DATA_SM_RESP | CommandId::GENERIC_NACK => {
                if let Some((entry, _)) = self.deliveries.remove(&pdu.sequence_number) {
                    let outcome = if pdu.command_id() == CommandId::GENERIC_NACK {
                        Delivery::Nacked(pdu.command_status)
                    } else {
                        Delivery::Answered(pdu.command_status)
                    };
                    self.delivered(entry, outcome);
                }
            }
            _ => {}
        }
    }

    /// Tells the account how delivery `entry` went. Its channel full, the report waits (in
    /// order) for the end of the turn, which waits for room: the turn itself never waits.
    pub(super) fn delivered(&mut self, entry: u64, outcome: Delivery) {
        let Some(b) = self.phase.bound() else { return };
        let msg = AccountMsg::Delivered {
            bind_id: b.bind_id,
            entry,
            outcome,
        };
        if !self.to_account.is_empty() {
            self.to_account.push_back(msg);
            return;
        }
        if let Err(TrySendError::Full(msg)) = b.account.tx.try_send(msg) {
            self.to_account.push_back(msg);
        }
    }
}
