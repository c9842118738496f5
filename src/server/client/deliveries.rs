//! What a bound client receives besides answers: receipts and MO its account hands over
//! (`ClientEvent::Deliver`), reported back to the account when the client answers them (or
//! does not, within `response_timeout`), and receipts the session that matched them (on
//! this thread, or another when no bind here had room) handed over directly (`ClientEvent::Direct`, see `account::Lanes`), which this session
//! answers the SMSC for when the client takes them, and gives the account when not. Each is
//! written with the session's own sequence number.

use super::{Client, Flow};
use crate::messages::{AccountMsg, ClientEvent, Delivery, Direct};
use crate::pdu::codec::put_frame;
use crate::pdu::{CommandId, CommandStatus, Pdu};
use tokio::sync::mpsc::error::TrySendError;
use tracing::warn;

/// How many events one turn takes (its writes go out in one flush at the end of the turn).
const EVENTS_PER_WAKE: usize = 64;

/// A delivery written to the client and not answered yet: where it came from.
#[derive(Debug)]
pub(super) enum Pending {
    /// The account's entry with this key.
    Entry(u64),
    /// Handed over by the session that matched it (`account::Lanes`).
    Direct(Direct),
}

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
            ClientEvent::Answer(outcome) => return self.outcome(outcome),
            ClientEvent::Deliver { entry, frame } => {
                let written = self.write_delivery(&frame);
                self.track(Pending::Entry(entry), written);
            }
            ClientEvent::Direct(direct) => {
                let written = self.write_delivery(&direct.frame);
                self.track(Pending::Direct(direct), written);
            }
        }
        Ok(())
    }

    /// Writes a receipt or MO to the client, unless this bind cannot take it now (a
    /// transmitter, or shutting down). The frame is copied as it is, with the session's
    /// sequence number written into the copy. The sequence number, or why it was not sent.
    fn write_delivery(&mut self, frame: &[u8]) -> Result<u32, Delivery> {
        if !self.phase.state().can_receive() || self.draining.is_some() {
            // To another bind (a direct one: to the account, which may store it).
            return Err(Delivery::NotSent);
        }
        let seq = self.seq.next_number();
        if put_frame(self.conn.write_buffer_mut(), frame, seq) {
            Ok(seq)
        } else {
            // Never: what is handed over is encoded or read whole. Taken as refused, not as
            // unsent (which would hand it to the next bind, and the next).
            warn!("delivery shorter than a PDU header: not sent");
            Err(Delivery::Nacked(CommandStatus::ESME_RSYSERR))
        }
    }

    /// A delivery written waits for the client's answer; one not written is over.
    fn track(&mut self, pending: Pending, written: Result<u32, Delivery>) {
        match written {
            Ok(seq) => {
                self.deliveries.insert(seq, (pending, self.now));
            }
            Err(outcome) => self.settle(pending, outcome),
        }
    }

    /// A response from the client: to our enquire_link, or to a delivery.
    pub(super) fn response(&mut self, pdu: Pdu) {
        match pdu.command_id() {
            CommandId::ENQUIRE_LINK_RESP => self.keep_alive.answered(),
            CommandId::DELIVER_SM_RESP | CommandId::DATA_SM_RESP | CommandId::GENERIC_NACK => {
                if let Some((pending, _)) = self.deliveries.remove(&pdu.sequence_number) {
                    let outcome = if pdu.command_id() == CommandId::GENERIC_NACK {
                        Delivery::Nacked(pdu.command_status)
                    } else {
                        Delivery::Answered(pdu.command_status)
                    };
                    self.settle(pending, outcome);
                }
            }
            _ => {}
        }
    }

    /// A response that comes while the session unbinds. ESME_RINVBNDSTS (in a
    /// deliver_sm_resp, data_sm_resp or generic_nack) says only that the client takes itself
    /// as unbound, nothing about the message: the delivery counts as not sent, to another
    /// bind at once, with no backoff and no attempt counted. Any other answer counts as usual.
    pub(super) fn response_while_unbinding(&mut self, pdu: Pdu) {
        let unbound = matches!(
            pdu.command_id(),
            CommandId::DELIVER_SM_RESP | CommandId::DATA_SM_RESP | CommandId::GENERIC_NACK
        ) && pdu.command_status == CommandStatus::ESME_RINVBNDSTS;
        if !unbound {
            return self.response(pdu);
        }
        if let Some((pending, _)) = self.deliveries.remove(&pdu.sequence_number) {
            self.settle(pending, Delivery::NotSent);
        }
    }

    /// A delivery handed over while the session unbinds: not written, it goes back (which
    /// tells the account this bind takes no more). An answer from the upstream is mapped
    /// and its correlation stored ([`Client::late_answer`]).
    pub(super) fn not_now(&mut self, event: ClientEvent) {
        let pending = match event {
            ClientEvent::Answer(outcome) => return self.late_answer(outcome),
            ClientEvent::Deliver { entry, .. } => Pending::Entry(entry),
            ClientEvent::Direct(direct) => Pending::Direct(direct),
        };
        self.settle(pending, Delivery::NotSent);
    }

    /// A delivery is over on this bind (answered, unanswered, or not sent): its slot is free.
    /// The account hears how its entry went; a direct one the client took is answered to the
    /// SMSC from here, one it did not take goes to the account.
    pub(super) fn settle(&mut self, pending: Pending, outcome: Delivery) {
        // Deliveries are tracked only while bound (`leave` takes them before it unbinds).
        let Some(b) = self.phase.bound() else { return };
        let was = b.slots.give();
        // The account may have found this bind full on its last turn and be waiting for a
        // slot with entries queued: a slot that comes free on a full bind wakes it.
        let was_full = was >= (b.account.peek().deliver_window as usize).min(b.deliver_cap);
        if outcome == Delivery::NotSent {
            // Closing, or cannot receive: no more direct ones for it.
            b.account.lanes.leave(b.bind_id);
        }
        let msg = match pending {
            Pending::Entry(entry) => AccountMsg::Delivered {
                bind_id: b.bind_id,
                entry,
                outcome,
            },
            Pending::Direct(direct) => {
                b.account.lanes.settled();
                match outcome {
                    Delivery::Answered(status) if status.is_ok() => {
                        if let Some(ack) = &direct.ack {
                            ack.send(status);
                        }
                        if let Some((correlation, id_match)) = &direct.forget {
                            self.ctx.store.remove(correlation, *id_match);
                        }
                        if b.account.idle() && !was_full {
                            return;
                        }
                        AccountMsg::Room
                    }
                    outcome => AccountMsg::Returned {
                        bind_id: b.bind_id,
                        direct,
                        outcome,
                    },
                }
            }
        };
        self.report(msg);
    }

    /// Sends a report to the account. Its channel full, the report waits (in order) for the
    /// end of the turn, which waits for room: the turn itself never waits.
    fn report(&mut self, msg: AccountMsg) {
        let Some(b) = self.phase.bound() else { return };
        if !self.to_account.is_empty() {
            self.to_account.push_back(msg);
            return;
        }
        if let Err(TrySendError::Full(msg)) = b.account.tx.try_send(msg) {
            if !matches!(msg, AccountMsg::Room) {
                self.to_account.push_back(msg);
            }
        }
    }
}
