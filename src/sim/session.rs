//! One simulated SMSC session: the MC side of the state machine, answering what an ESME sends
//! and sending it receipts and MO.

use super::receipt::{ids, number_of, receipt, Id, Message};
use super::Shared;
use crate::pdu::body::{BindResp, MessageIdResp, QuerySmResp, SubmitMultiResp};
use crate::pdu::codec::FrameCodec;
use crate::pdu::{Body, COctetString, CommandId, CommandStatus, DeliverSm, Pdu};
use crate::session::{Sequence, SessionState};
use crate::tls::Stream;
use bytes::{Buf, Bytes};
use futures_util::{SinkExt, StreamExt};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_util::codec::Framed;
use tokio_util::sync::CancellationToken;
use tokio_util::time::DelayQueue;

/// Frames (receipts, MO) handed to a session to send on its own initiative, each not before
/// its time; the session writes its own sequence number into each.
pub(crate) type Batch = Vec<(Instant, Bytes)>;

/// A response held back by the configured latency.
struct Delayed(Pdu);

/// An MO deliver_sm, encoded.
pub(crate) fn mo(source: &str, destination: &str, text: &[u8]) -> Bytes {
    Pdu::new(Body::DeliverSm(DeliverSm::text(source, destination, text)))
        .to_bytes()
        .unwrap_or_default()
}

struct SimSession {
    shared: Arc<Shared>,
    conn: Framed<Stream<TcpStream>, FrameCodec>,
    id: u64,
    state: SessionState,
    system_id: String,
    seq: Sequence,
    submits: u64,
    delayed: DelayQueue<Delayed>,
    tx: mpsc::Sender<Batch>,
    /// deliver_sm sent and not yet answered, as handed to the session.
    sent: crate::session::InFlight<Bytes>,
    /// Receipts made this turn, handed to the receiving sessions at its end.
    made: Batch,
    /// Receipts and MO handed to this session, waiting for their time.
    later: super::later::Later,
    /// The time at the start of this turn: what it makes is due from then.
    now: Instant,
    /// Where receipts are written: those of a turn share an allocation.
    arena: bytes::BytesMut,
}

/// How many PDUs a session handles in one turn before it writes what it has.
const TURN: usize = 512;

pub(crate) async fn run(stream: Stream<TcpStream>, shared: Arc<Shared>, stop: CancellationToken) {
    let mut unbind = shared.unbind.subscribe();
    let (tx, mut rx) = mpsc::channel(1024);
    let mut conn = Framed::new(stream, FrameCodec::default());
    // Answers of a whole turn go out in one write.
    conn.set_backpressure_boundary(256 * 1024);
    let mut s = SimSession {
        id: shared.session_id(),
        shared,
        conn,
        state: SessionState::Open,
        system_id: String::new(),
        seq: Sequence::default(),
        submits: 0,
        delayed: DelayQueue::new(),
        tx,
        sent: crate::session::InFlight::new(256),
        made: Vec::new(),
        later: Default::default(),
        now: Instant::now(),
        arena: bytes::BytesMut::new(),
    };
    loop {
        // Receipts due go out with the next turn's answers; the timer sends them only when no
        // turn came within a millisecond (an idle session), so a busy one writes once a turn.
        let next_due = s.later.next_due().map(|at| at + Duration::from_millis(1));
        let keep_going = tokio::select! {
            item = s.conn.next() => {
                s.now = Instant::now();
                let mut ok = s.item(item).await;
                // Whatever else is whole in the read buffer is handled in this turn too.
                if ok {
                    ok = s.buffered().await;
                }
                s.hand_off_receipts();
                // Receipts due go out with the answers, in the same write.
                s.write_due();
                // Flushed even when the session ends here: its last answer goes out first.
                let flushed = s.flush().await;
                ok && flushed
            }
            Some(batch) = rx.recv() => {
                s.take(batch);
                while let Ok(more) = rx.try_recv() {
                    s.take(more);
                }
                s.send_due().await
            }
            () = sleep_until(next_due), if next_due.is_some() => s.send_due().await,
            Some(expired) = s.delayed.next(), if !s.delayed.is_empty() => {
                let Delayed(pdu) = expired.into_inner();
                s.conn.send(&pdu).await.is_ok()
            }
            _ = unbind.changed() => {
                if s.state.is_bound() {
                    let seq = s.seq.next_number();
                    let _ = s.conn.send(&Pdu::new(Body::Unbind).with_sequence_number(seq)).await;
                    // Until the unbind_resp, answer what the ESME sent before it saw the unbind
                    // (a polite SMSC loses nothing); then hang up.
                    let _ = tokio::time::timeout(std::time::Duration::from_secs(2), async {
                        while let Some(Ok(frame)) = s.conn.next().await {
                            if frame.get(4..8) == Some(&CommandId::UNBIND_RESP.0.to_be_bytes()[..]) {
                                s.shared.stats.unbinds_answered.fetch_add(1, Ordering::Relaxed);
                                break;
                            }
                            s.now = Instant::now();
                            let ok = s.item(Some(Ok(frame))).await;
                            // Flushed even when the session ends here: its last answer goes first.
                            if !s.flush().await || !ok {
                                break;
                            }
                        }
                        while let Some(held) = s.delayed.next().await {
                            let Delayed(pdu) = held.into_inner();
                            let _ = s.conn.send(&pdu).await;
                        }
                    })
                    .await;
                    false
                } else {
                    true
                }
            }
            _ = stop.cancelled() => false,
        };
        if !keep_going {
            break;
        }
    }
    if s.state.is_bound() {
        s.shared.stats.bound_now.fetch_sub(1, Ordering::Relaxed);
    }
    s.shared.remove_receiver(s.id);
    s.hand_off_receipts();
    // Like a real SMSC: what the ESME never acknowledged is sent again, on another session.
    for (_, frame) in s.sent.drain() {
        s.shared.stats.redelivered.fetch_add(1, Ordering::Relaxed);
        s.shared
            .spool(s.system_id.clone(), frame, std::time::Duration::from_millis(100));
    }
    // Outgoing PDUs handed to this session but never written go elsewhere too.
    rx.close();
    while let Ok(batch) = rx.try_recv() {
        s.take(batch);
    }
    for frame in s.later.drain() {
        s.shared
            .spool(s.system_id.clone(), frame, std::time::Duration::from_millis(100));
    }
}

/// Sleeps until `at` (never called with `None`: the branch is off then).
async fn sleep_until(at: Option<Instant>) {
    if let Some(at) = at {
        tokio::time::sleep_until(at.into()).await;
    }
}

impl SimSession {
    /// One frame read from the connection (or why none could be).
    async fn item(&mut self, item: Option<Result<Bytes, crate::pdu::FrameError>>) -> bool {
        let Some(Ok(frame)) = item else { return false };
        if let Some(keep_going) = self.fast(&frame) {
            return keep_going;
        }
        match Pdu::parse(frame) {
            Ok(pdu) => self.incoming(pdu).await,
            Err(e) => match e.reply() {
                Some(r) => self.conn.feed(&r).await.is_ok(),
                None => true,
            },
        }
    }

    /// Handles the whole frames already in the read buffer (up to [`TURN`]), in place: the
    /// frames every message brings are read where they lie ([`Self::fast`]), only the others
    /// are cut off as their own `Bytes` and parsed. `false`: the session ends.
    async fn buffered(&mut self) -> bool {
        use crate::pdu::peek::{self, Next};
        let max = crate::pdu::codec::DEFAULT_MAX_LEN;
        let mut rd = std::mem::take(self.conn.read_buffer_mut());
        let (mut at, mut ok) = (0, true);
        for _ in 0..TURN {
            let Next::Frame(h) = peek::next_frame(&rd[at..], max) else {
                // Partial, or a bad length the codec answers on the next read.
                break;
            };
            match self.fast(&rd[at..at + h.len]) {
                Some(keep_going) => {
                    at += h.len;
                    ok = keep_going;
                }
                None => {
                    rd.advance(at);
                    at = 0;
                    let frame = rd.split_to(h.len).freeze();
                    ok = self.item(Some(Ok(frame))).await;
                }
            }
            if !ok {
                break;
            }
        }
        rd.advance(at);
        *self.conn.read_buffer_mut() = rd;
        ok
    }

    async fn flush(&mut self) -> bool {
        crate::pdu::codec::flush(&mut self.conn).await.is_ok()
    }

    /// The receipts made this turn, to the account's receiving sessions.
    fn hand_off_receipts(&mut self) {
        if !self.made.is_empty() {
            self.shared
                .to_receivers(&self.system_id, std::mem::take(&mut self.made));
        }
    }

    fn take(&mut self, batch: Batch) {
        for (at, frame) in batch {
            self.later.push(at, frame);
        }
    }

    /// Writes the receipts and MO whose time has come.
    async fn send_due(&mut self) -> bool {
        self.write_due();
        self.flush().await
    }

    /// Queues the receipts and MO whose time has come.
    fn write_due(&mut self) {
        let now = Instant::now();
        while let Some(frame) = self.later.pop_due(now) {
            self.send_out(frame);
        }
    }

    /// Writes a receipt or MO with the next sequence number and remembers it until answered.
    fn send_out(&mut self, frame: Bytes) {
        let seq = self.seq.next_number();
        if frame.len() >= crate::pdu::HEADER_LEN {
            let out = self.conn.write_buffer_mut();
            out.extend_from_slice(&frame[..12]);
            out.extend_from_slice(&seq.to_be_bytes());
            out.extend_from_slice(&frame[16..]);
            self.sent.insert(seq, frame);
        }
    }

    async fn respond(&mut self, resp: Pdu) -> bool {
        let latency = Duration::from_micros(self.shared.latency_us.load(Ordering::Relaxed));
        if latency.is_zero() {
            self.conn.feed(&resp).await.is_ok()
        } else {
            self.delayed.insert(Delayed(resp), latency);
            true
        }
    }

    async fn incoming(&mut self, pdu: Pdu) -> bool {
        let id = pdu.command_id();
        if id.is_response() {
            if id == CommandId::DELIVER_SM_RESP {
                self.answered(pdu.sequence_number, pdu.command_status);
            }
            return true;
        }
        if let Err(status) = self.state.check_request(id) {
            let resp = pdu
                .error_response(status)
                .unwrap_or_else(|| Pdu::new(Body::GenericNack).with_status(status));
            return self.conn.feed(&resp).await.is_ok();
        }
        let seq = pdu.sequence_number;
        match &pdu.body {
            Body::BindTransmitter(b) | Body::BindReceiver(b) | Body::BindTransceiver(b) => {
                let c = &self.shared.config;
                let status = if c.refuse_binds {
                    CommandStatus::ESME_RBINDFAIL
                } else if c
                    .system_id
                    .as_ref()
                    .is_some_and(|want| want.as_bytes() != b.system_id.as_bytes())
                {
                    CommandStatus::ESME_RINVSYSID
                } else if c
                    .password
                    .as_ref()
                    .is_some_and(|want| want.as_bytes() != b.password.as_bytes())
                {
                    CommandStatus::ESME_RINVPASWD
                } else {
                    CommandStatus::ESME_ROK
                };
                if !status.is_ok() {
                    self.shared.stats.binds_refused.fetch_add(1, Ordering::Relaxed);
                    // Refused: answer, then hang up as SMSCs do.
                    let _ = self
                        .conn
                        .send(&pdu.error_response(status).expect("bind has a response"))
                        .await;
                    return false;
                }
                self.system_id = String::from_utf8_lossy(b.system_id.as_bytes()).into_owned();
                self.state = match id {
                    CommandId::BIND_TRANSMITTER => SessionState::BoundTx,
                    CommandId::BIND_RECEIVER => SessionState::BoundRx,
                    _ => SessionState::BoundTrx,
                };
                if self.state.can_receive() {
                    self.shared.add_receiver(&self.system_id, self.id, self.tx.clone());
                }
                self.shared.stats.binds.fetch_add(1, Ordering::Relaxed);
                self.shared.stats.bound_now.fetch_add(1, Ordering::Relaxed);
                let body = Some(BindResp {
                    system_id: COctetString::from_text("smpp-sim"),
                });
                let body = match id {
                    CommandId::BIND_TRANSMITTER => Body::BindTransmitterResp(body),
                    CommandId::BIND_RECEIVER => Body::BindReceiverResp(body),
                    _ => Body::BindTransceiverResp(body),
                };
                self.conn.send(&Pdu::new(body).with_sequence_number(seq)).await.is_ok()
            }
            Body::EnquireLink => self
                .conn
                .feed(&Pdu::new(Body::EnquireLinkResp).with_sequence_number(seq))
                .await
                .is_ok(),
            Body::Unbind => {
                self.shared.stats.unbinds.fetch_add(1, Ordering::Relaxed);
                let _ = self
                    .conn
                    .send(&Pdu::new(Body::UnbindResp).with_sequence_number(seq))
                    .await;
                false
            }
            Body::SubmitSm(_) | Body::DataSm(_) | Body::SubmitMulti(_) => self.submit(pdu).await,
            Body::QuerySm(_) | Body::CancelSm(_) | Body::ReplaceSm(_) => self.query(pdu).await,
            _ => {
                let resp = pdu
                    .error_response(CommandStatus::ESME_RINVCMDID)
                    .unwrap_or_else(|| Pdu::new(Body::GenericNack));
                self.conn.feed(&resp).await.is_ok()
            }
        }
    }

    async fn submit(&mut self, pdu: Pdu) -> bool {
        if let Some((prefix, status)) = &self.shared.config.reject {
            let destination = match &pdu.body {
                Body::SubmitSm(b) => b.destination_addr.as_bytes(),
                Body::DataSm(b) => b.destination_addr.as_bytes(),
                _ => b"",
            };
            if destination.starts_with(prefix.as_bytes()) {
                self.shared.stats.rejected.fetch_add(1, Ordering::Relaxed);
                return self
                    .respond(pdu.error_response(*status).expect("submit has a response"))
                    .await;
            }
        }
        if !self.shared.cap.admit(std::time::Instant::now) {
            self.shared.stats.throttled.fetch_add(1, Ordering::Relaxed);
            return self
                .conn
                .feed(
                    &pdu.error_response(CommandStatus::ESME_RTHROTTLED)
                        .expect("submit has a response"),
                )
                .await
                .is_ok();
        }
        self.submits += 1;
        self.shared.stats.submits.fetch_add(1, Ordering::Relaxed);
        if self.shared.config.record {
            self.shared
                .received
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(pdu.clone());
        }
        let n = self.shared.next_number();
        let (id, text_id) = ids(&self.shared.config, n);
        let message_id = MessageIdResp {
            message_id: COctetString::from_text(id.as_str()),
        };
        let (resp_body, wants_receipt, source, destination, text) = match &pdu.body {
            Body::SubmitSm(b) => (
                Body::SubmitSmResp(Some(message_id)),
                b.registered_delivery & 0x03 != 0,
                &b.source_addr,
                &b.destination_addr,
                b.short_message.clone(),
            ),
            Body::DataSm(b) => (
                Body::DataSmResp(Some(message_id)),
                b.registered_delivery & 0x03 != 0,
                &b.source_addr,
                &b.destination_addr,
                Bytes::new(),
            ),
            Body::SubmitMulti(b) => {
                let resp = SubmitMultiResp {
                    message_id: message_id.message_id,
                    unsuccess_smes: Vec::new(),
                };
                (
                    Body::SubmitMultiResp(Some(resp)),
                    false,
                    &b.source_addr,
                    &b.source_addr,
                    Bytes::new(),
                )
            }
            _ => return true,
        };
        let resp = Pdu::new(resp_body).with_sequence_number(pdu.sequence_number);
        if wants_receipt {
            let message = Message {
                source: source.as_bytes(),
                destination: destination.as_bytes(),
                text: &text,
            };
            self.make_receipts((&id, &text_id), &message);
        }
        let ok = self.respond(resp).await;
        if self.shared.config.drop_after.is_some_and(|n| self.submits >= n) {
            // Flaky SMSC: answer the Nth, then hang up (what is still delayed is never sent).
            return false;
        }
        ok
    }

    /// The receipts of one message (an ENROUTE one first, if configured), handed to the
    /// receiving sessions at the end of the turn.
    fn make_receipts(&mut self, ids: (&Id, &Id), message: &Message<'_>) {
        let config = &self.shared.config;
        if !config.receipts {
            return;
        }
        let delay = config.latency + config.receipt_delay;
        let now = self.now;
        if config.intermediate_receipts {
            let r = receipt(&mut self.arena, config, ids, message, true);
            self.made.push((now + delay, r));
        }
        // The final one a little later, so it comes after the intermediate one.
        let later = if config.intermediate_receipts {
            delay + Duration::from_millis(50)
        } else {
            delay
        };
        let r = receipt(&mut self.arena, config, ids, message, false);
        self.made.push((now + later, r));
    }

    /// The frames every message brings, handled without parsing them whole: submit_sm (when
    /// no option needs the parsed PDU) and deliver_sm_resp. `None`: parse it.
    fn fast(&mut self, frame: &[u8]) -> Option<bool> {
        use crate::pdu::peek::{self, Next};
        let Next::Frame(h) = peek::next_frame(frame, usize::MAX) else {
            return None;
        };
        match h.id {
            CommandId::DELIVER_SM_RESP => {
                self.answered(h.seq, h.status);
                Some(true)
            }
            CommandId::SUBMIT_SM => {
                let config = &self.shared.config;
                let plain = config.reject.is_none()
                    && !config.record
                    && self.shared.latency_us.load(Ordering::Relaxed) == 0
                    && self.state.check_request(h.id).is_ok();
                if !plain {
                    return None;
                }
                let sm = peek::short_message(&frame[crate::pdu::HEADER_LEN..])?;
                let out = self.conn.write_buffer_mut();
                let now = self.now;
                if !self.shared.cap.admit(|| now) {
                    self.shared.stats.throttled.fetch_add(1, Ordering::Relaxed);
                    let status = CommandStatus::ESME_RTHROTTLED;
                    peek::put_header(out, crate::pdu::HEADER_LEN, CommandId::SUBMIT_SM_RESP, status, h.seq);
                    return Some(true);
                }
                self.submits += 1;
                self.shared.stats.submits.fetch_add(1, Ordering::Relaxed);
                let n = self.shared.next_number();
                let (id, text_id) = ids(&self.shared.config, n);
                let len = crate::pdu::HEADER_LEN + id.as_bytes().len() + 1;
                peek::put_header(out, len, CommandId::SUBMIT_SM_RESP, CommandStatus::ESME_ROK, h.seq);
                out.extend_from_slice(id.as_bytes());
                out.extend_from_slice(&[0]);
                if sm.registered_delivery & 0x03 != 0 {
                    let message = Message {
                        source: sm.source,
                        destination: sm.destination,
                        text: sm.short_message,
                    };
                    self.make_receipts((&id, &text_id), &message);
                }
                // Flaky SMSC: answer the Nth, then hang up.
                Some(self.shared.config.drop_after.is_none_or(|n| self.submits < n))
            }
            _ => None,
        }
    }

    /// The ESME answered a deliver_sm: forgotten, or (refused for now) sent again later.
    fn answered(&mut self, seq: u32, status: CommandStatus) {
        let Some(sent) = self.sent.remove(seq) else { return };
        let permanent = matches!(status, CommandStatus::ESME_RX_P_APPN | CommandStatus::ESME_RX_R_APPN);
        if !status.is_ok() && !permanent {
            // Temporary refusal: try again a little later.
            self.shared.stats.redelivered.fetch_add(1, Ordering::Relaxed);
            self.shared.stats.last_refusal.store(status.0, Ordering::Relaxed);
            self.shared
                .spool(self.system_id.clone(), sent, Duration::from_millis(500));
        }
    }

    async fn query(&mut self, pdu: Pdu) -> bool {
        self.shared.stats.queries.fetch_add(1, Ordering::Relaxed);
        let id = pdu
            .message_id()
            .map(|m| String::from_utf8_lossy(m.as_bytes()).into_owned())
            .unwrap_or_default();
        let number = number_of(&self.shared.config, &id);
        // Every id given out is ENROUTE unless cancelled since.
        let known = number
            .filter(|&n| self.shared.issued(n))
            .map(|n| self.shared.messages.get(&n).map_or(1, |s| *s));
        let resp = match (&pdu.body, known) {
            (Body::QuerySm(_), Some(state)) => Pdu::new(Body::QuerySmResp(Some(QuerySmResp {
                message_id: COctetString::from_text(&id),
                final_date: COctetString::empty(),
                message_state: state,
                error_code: 0,
            }))),
            (Body::QuerySm(_), None) => pdu.error_response(CommandStatus::ESME_RQUERYFAIL).expect("resp"),
            (Body::CancelSm(_), Some(_)) => {
                if let Some(n) = number {
                    self.shared.messages.insert(n, 4);
                }
                Pdu::new(Body::CancelSmResp)
            }
            (Body::CancelSm(_), None) => pdu.error_response(CommandStatus::ESME_RCANCELFAIL).expect("resp"),
            (Body::ReplaceSm(_), Some(_)) => Pdu::new(Body::ReplaceSmResp),
            (_, _) => pdu.error_response(CommandStatus::ESME_RREPLACEFAIL).expect("resp"),
        };
        self.respond(resp.with_sequence_number(pdu.sequence_number)).await
    }
}
