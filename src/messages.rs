//! What the tasks of the proxy send each other. Every channel is bounded; who sends what:
//!
//! - client session → upstream session: [`Forward`] (a request to send upstream);
//! - upstream session → client session: [`ClientEvent::Answer`] (its response, or why none);
//! - account → client session: [`ClientEvent::Deliver`] (a receipt or MO to hand over);
//! - upstream session → account: [`AccountMsg::Deliver`]; account → upstream session:
//!   [`UpstreamEvent::DeliverAck`] once the receipt is held, so the SMSC gets its response;
//! - the session that matched a receipt → client session (on its own thread first), past the account
//!   while it holds nothing waiting: [`ClientEvent::Direct`]; the client session answers the SMSC
//!   ([`UpstreamEvent::DeliverAck`]) when the client takes it, and hands it to the account
//!   ([`AccountMsg::Returned`], [`AccountMsg::Deliver`]) when not.

use crate::pdu::{peek, Body, COctetString, CommandId, CommandStatus, Pdu};
use crate::receipt::id::IdMatch;
use crate::store::Correlation;
use bytes::Bytes;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use tokio::sync::mpsc;

/// A client request on its way to an upstream: its frame as the client sent it, which the
/// upstream session copies onto its socket with only the sequence number changed. Not the
/// parsed PDU: a frame is one pointer to the bytes already read, where a `Pdu` is hundreds
/// of octets to move through each channel and to encode again.
#[derive(Debug)]
pub struct Forward {
    /// The request's frame, sequence number the client's: as read for submits (a whole frame
    /// the client session parsed), encoded again with the upstream's message id for
    /// query/cancel/replace.
    pub frame: Bytes,
    /// What its correlation needs (submits only), read while the client session had the
    /// request parsed.
    pub info: Option<RequestInfo>,
    /// Where the answer goes.
    pub reply: mpsc::Sender<ClientEvent>,
    /// How many times it was routed before (throttled or never written).
    pub attempt: u8,
    /// When the client session read it (for the client's latency figures).
    pub received: std::time::Instant,
}

impl Forward {
    /// The request's `command_id`.
    pub fn command_id(&self) -> CommandId {
        CommandId(peek::be32(&self.frame, 4))
    }

    /// The client's `sequence_number` of the request.
    pub fn client_seq(&self) -> u32 {
        peek::be32(&self.frame, 12)
    }

    /// The response to the request with `status` and an empty body (generic_nack for a
    /// request that has no response of its own).
    pub fn error_response(&self, status: CommandStatus) -> Pdu {
        Pdu::error_response_to(self.command_id(), self.client_seq(), status)
    }
}

/// How a forwarded request ended.
#[derive(Debug)]
pub enum Outcome {
    /// The upstream answered.
    Answered {
        /// Which upstream answered (its name).
        upstream: Arc<str>,
        /// How that upstream's receipt ids are matched (the key its correlation is filed under).
        id_match: IdMatch,
        /// What the correlation needs from the request (submits only).
        request: Option<RequestInfo>,
        /// The client's sequence number of the request (the response's is the upstream's).
        client_seq: u32,
        /// The response's frame as the upstream sent it (a parsed, whole PDU), or for a
        /// generic_nack the request's own response type with its status.
        resp: Bytes,
        /// When the client session read the request.
        received: std::time::Instant,
    },
    /// Never written (session died) or throttled by the SMSC: route it again.
    Retry(Forward),
    /// Failed with this status (written and unanswered, or no route).
    Failed {
        /// The client's sequence number.
        client_seq: u32,
        /// The request's command.
        command: CommandId,
        /// The status to answer with.
        status: CommandStatus,
    },
}

/// The fields of a submit the correlation keeps; the rest of the request is not carried back.
#[derive(Debug)]
pub struct RequestInfo {
    /// `registered_delivery`
    pub registered_delivery: u8,
    /// `source_addr`
    pub source_addr: COctetString,
    /// `destination_addr` (empty for submit_multi)
    pub destination_addr: COctetString,
    /// `(part, of)` for a part of a concatenated message.
    pub part: Option<(u8, u8)>,
}

impl RequestInfo {
    /// From a submit_sm, data_sm or submit_multi; `None` for other requests.
    pub fn of(pdu: &Pdu) -> Option<RequestInfo> {
        let (registered_delivery, source_addr, destination_addr) = match &pdu.body {
            Body::SubmitSm(b) => (b.registered_delivery, &b.source_addr, &b.destination_addr),
            Body::DataSm(b) => (b.registered_delivery, &b.source_addr, &b.destination_addr),
            Body::SubmitMulti(b) => (b.registered_delivery, &b.source_addr, &COctetString::empty()),
            _ => return None,
        };
        Some(RequestInfo {
            registered_delivery,
            source_addr: source_addr.clone(),
            destination_addr: destination_addr.clone(),
            part: pdu.concatenation().map(|c| (c.seqnum, c.total)),
        })
    }
}

/// Something for a client session to act on.
#[derive(Debug)]
pub enum ClientEvent {
    /// The outcome of a forwarded request.
    Answer(Outcome),
    /// A deliver_sm / data_sm from the account's outbox, to send on this bind.
    Deliver {
        /// The outbox entry, reported back when the client answers.
        entry: u64,
        /// Its frame (the client session writes its own sequence number into its copy).
        frame: Bytes,
    },
    /// A receipt or MO from the session on this bind's thread that matched it, not held by
    /// the account: this session answers for it (see [`Direct`]).
    Direct(Direct),
}

/// A receipt or MO handed straight to a bind by the session that matched it
/// (`account::Lanes`), while its account holds nothing waiting: no hop through the account's
/// task, on whichever thread that runs, each way. The client session answers the SMSC and forgets
/// the correlation when the client takes it; anything else goes to the account, which holds
/// it as it would have from the start.
#[derive(Debug)]
pub struct Direct {
    /// Its frame, ids already rewritten, sequence number not yet the client's.
    pub frame: Bytes,
    /// Who to tell it is held.
    pub ack: Option<DeliverAck>,
    /// The correlation to forget once the client took this (final) receipt.
    pub forget: Forget,
    /// Its name in a shared outbox (see [`AccountMsg::Deliver`]).
    pub dedup: Option<String>,
    /// Its bytes in the account's outbox budget (`outbox_max_bytes`), while it is in flight.
    pub charge: Option<crate::budget::Charge>,
}

/// A receiving bind's deliveries in flight, from its account and from the lanes together,
/// against the account's `deliver_window`: taken by whoever hands one over, given back by the
/// client session when the client answers it (or does not, or it is not sent).
#[derive(Debug, Default)]
pub struct Slots(AtomicUsize);

impl Slots {
    /// How many are in flight.
    pub fn used(&self) -> usize {
        self.0.load(Ordering::Acquire)
    }

    /// Takes one if fewer than `max` are in flight.
    pub fn try_take(&self, max: usize) -> bool {
        self.0
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < max).then_some(n + 1))
            .is_ok()
    }

    /// Gives one back; how many were in flight before.
    pub fn give(&self) -> usize {
        match self
            .0
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1))
        {
            Ok(n) | Err(n) => n,
        }
    }
}

/// Something for an account (all binds of one system_id) to act on.
#[derive(Debug)]
pub enum AccountMsg {
    /// Hold this receipt / MO and deliver it; acknowledge to `ack` when held.
    Deliver {
        /// Its frame, ids already rewritten, sequence number not yet the client's.
        frame: Bytes,
        /// Who to tell it is held.
        ack: Option<DeliverAck>,
        /// A correlation to forget once this (final) receipt is held: never before, or a
        /// crash in between would leave the SMSC's retry with nothing to match.
        forget: Forget,
        /// The receipt's name (upstream, id, state) when the outbox is shared, so that a copy
        /// the SMSC sends again to another node is not stored twice.
        dedup: Option<String>,
    },
    /// New entries wait in the shared outbox (the doorbell).
    Bell,
    /// A receiver-capable bind came up.
    BindUp {
        /// The bind's id.
        bind_id: u64,
        /// Its event channel.
        tx: mpsc::Sender<ClientEvent>,
        /// The most deliveries its channel has room for (a reload raising `deliver_window`
        /// beyond it applies from the next bind).
        deliver_cap: usize,
        /// The session thread it runs on (see [`crate::session::threads`]).
        thread: usize,
        /// Its deliveries in flight, shared with the lanes.
        slots: Arc<Slots>,
    },
    /// A bind went away; what it had in flight goes back to the outbox.
    BindDown {
        /// The bind's id.
        bind_id: u64,
    },
    /// A direct delivery ([`ClientEvent::Direct`]) the client did not take: held now, by the
    /// policy for this outcome, as if the account had handed it over.
    Returned {
        /// The bind that had it.
        bind_id: u64,
        /// The delivery.
        direct: Direct,
        /// What the client did with it.
        outcome: Delivery,
    },
    /// A bind's slot came free while the account holds entries waiting, or on a bind that
    /// was full (the account may have found no room on its last turn): time to hand them out.
    Room,
    /// How a delivery went on a bind.
    Delivered {
        /// The bind's id.
        bind_id: u64,
        /// The outbox entry.
        entry: u64,
        /// What the client did with it.
        outcome: Delivery,
    },
}

/// What became of a receipt or MO handed to a bind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// The client answered with its deliver_sm_resp / data_sm_resp and this status.
    Answered(CommandStatus),
    /// The client answered with generic_nack and this status.
    Nacked(CommandStatus),
    /// No answer within `response_timeout`.
    NoAnswer,
    /// Never written (the bind cannot receive, or is closing), or refused after an unbind for
    /// being unbound (see `Client::response_while_unbinding`). Not the client's doing.
    NotSent,
}

/// A correlation to forget once a final receipt is in custody, with how its key is formed.
pub type Forget = Option<(Arc<Correlation>, IdMatch)>;

/// Where an account (or, for a direct delivery, the client session) confirms that it holds
/// an inbound PDU.
#[derive(Debug, Clone)]
pub struct DeliverAck {
    /// The upstream session's event channel.
    pub tx: mpsc::Sender<UpstreamEvent>,
    /// The SMSC's sequence number of the deliver_sm / data_sm.
    pub sequence_number: u32,
    /// deliver_sm or data_sm.
    pub command: CommandId,
    /// The session's count of deliver_sm in the proxy's hands: one while this ack lives.
    unanswered: Arc<AtomicUsize>,
}

impl DeliverAck {
    /// The ack of deliver_sm / data_sm `sequence_number`, counted in `unanswered` until it is
    /// dropped, whether it was sent or given up: no path can leave the count high.
    pub fn new(
        tx: mpsc::Sender<UpstreamEvent>,
        sequence_number: u32,
        command: CommandId,
        unanswered: Arc<AtomicUsize>,
    ) -> DeliverAck {
        unanswered.fetch_add(1, Ordering::AcqRel);
        DeliverAck {
            tx,
            sequence_number,
            command,
            unanswered,
        }
    }

    /// Tells the upstream session to answer the SMSC with `status`.
    pub fn send(&self, status: CommandStatus) {
        let event = UpstreamEvent::DeliverAck {
            sequence_number: self.sequence_number,
            command: self.command,
            status,
        };
        if self.tx.try_send(event).is_err() {
            // The session is gone or swamped: the SMSC gets no answer and will retry.
            tracing::debug!(seq = self.sequence_number, "deliver ack dropped: upstream session gone");
        }
    }
}

impl Drop for DeliverAck {
    fn drop(&mut self) {
        self.unanswered.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Something for an upstream session to act on besides its socket and requests.
#[derive(Debug)]
pub enum UpstreamEvent {
    /// Answer the SMSC's deliver_sm / data_sm `sequence_number` with `status`.
    DeliverAck {
        /// The SMSC's sequence number.
        sequence_number: u32,
        /// deliver_sm or data_sm.
        command: CommandId,
        /// The status.
        status: CommandStatus,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_ack_counts_itself_out_whether_sent_or_dropped() {
        let (tx, mut rx) = mpsc::channel(4);
        let unanswered = Arc::new(AtomicUsize::new(0));
        let sent = DeliverAck::new(tx.clone(), 1, CommandId::DELIVER_SM, unanswered.clone());
        let dropped = DeliverAck::new(tx, 2, CommandId::DATA_SM, unanswered.clone());
        assert_eq!(unanswered.load(Ordering::Acquire), 2);
        sent.send(CommandStatus::ESME_ROK);
        drop(sent);
        drop(dropped);
        assert_eq!(unanswered.load(Ordering::Acquire), 0);
        assert!(matches!(
            rx.try_recv(),
            Ok(UpstreamEvent::DeliverAck { sequence_number: 1, .. })
        ));
        assert!(rx.try_recv().is_err(), "only the one sent");
    }
}
