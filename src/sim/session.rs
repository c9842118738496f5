//! One simulated SMSC session: the MC side of the state machine, answering what an ESME sends
//! and sending it receipts and MO.

use super::{ReceiptVariant, Shared, SimIdFormat};
use crate::pdu::body::{BindResp, MessageIdResp, QuerySmResp, SubmitMultiResp};
use crate::pdu::{tag, Body, COctetString, CommandId, CommandStatus, DeliverSm, Pdu, SmppCodec, Tlvs};
use crate::session::{Sequence, SessionState};
use crate::tls::Stream;
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_util::codec::Framed;
use tokio_util::sync::CancellationToken;
use tokio_util::time::DelayQueue;

/// A PDU the session must send on its own initiative (a receipt or MO); it sets the sequence.
#[derive(Debug)]
pub struct Outgoing(pub Pdu);

/// A response held back by the configured latency.
struct Delayed(Pdu);

/// An MO deliver_sm.
pub(crate) fn mo(source: &str, destination: &str, text: &[u8]) -> Outgoing {
    Outgoing(Pdu::new(Body::DeliverSm(DeliverSm::text(source, destination, text))))
}

/// `YYMMDDhhmm` or `YYMMDDhhmmss` for now (UTC).
fn receipt_date(with_seconds: bool) -> String {
    let secs = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let days = (secs / 86_400) as i64;
    let (h, m, s) = ((secs % 86_400) / 3600, (secs % 3600) / 60, secs % 60);
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let base = format!("{:02}{month:02}{day:02}{h:02}{m:02}", year % 100);
    if with_seconds {
        format!("{base}{s:02}")
    } else {
        base
    }
}

/// The id as given in submit_sm_resp, and as written in the receipt text.
fn ids(shared: &Shared, n: u64) -> (String, String) {
    match (shared.config.receipt_variant, shared.config.id_format) {
        (ReceiptVariant::DecimalTextHexTlv, _) => (format!("{n:x}"), format!("{:010}", n % 10_000_000_000)),
        (_, SimIdFormat::Hex) => (format!("{n:x}"), format!("{n:x}")),
        (_, SimIdFormat::Decimal) => (n.to_string(), n.to_string()),
        (_, SimIdFormat::Uuid) => {
            let id = format!(
                "{:08x}-{:04x}-4{:03x}-a{:03x}-{:012x}",
                n >> 32,
                (n >> 16) & 0xffff,
                n & 0xfff,
                (n >> 4) & 0xfff,
                n
            );
            (id.clone(), id)
        }
    }
}

fn receipt(
    shared: &Shared,
    n: u64,
    source: &COctetString,
    destination: &COctetString,
    message: &[u8],
    enroute: bool,
) -> Pdu {
    let (stat, state) = if enroute { ("ENROUTE", 1u8) } else { ("DELIVRD", 2u8) };
    let variant = shared.config.receipt_variant;
    let (id, text_id) = ids(shared, n);
    let dates12 = variant == ReceiptVariant::Dates12;
    let date = receipt_date(dates12);
    let label = if dates12 { "Text" } else { "text" };
    let mut text =
        format!("id:{text_id} sub:001 dlvrd:001 submit date:{date} done date:{date} stat:{stat} err:000 {label}:")
            .into_bytes();
    text.extend_from_slice(&message[..message.len().min(20)]);
    let mut tlv_pairs: Vec<(u16, Vec<u8>)> = Vec::new();
    if variant != ReceiptVariant::TextOnly {
        let mut rid = id.into_bytes();
        rid.push(0);
        tlv_pairs.push((tag::receipted_message_id, rid));
        tlv_pairs.push((tag::message_state, vec![state]));
    }
    let short_message = if variant == ReceiptVariant::Payload {
        tlv_pairs.push((tag::message_payload, text));
        Bytes::new()
    } else {
        text.truncate(255);
        Bytes::from(text)
    };
    Pdu::new(Body::DeliverSm(DeliverSm {
        source_addr_ton: 1,
        source_addr_npi: 1,
        source_addr: destination.clone(),
        dest_addr_ton: 1,
        dest_addr_npi: 1,
        destination_addr: source.clone(),
        esm_class: 0x04,
        short_message,
        ..DeliverSm::default()
    }))
    .with_tlvs(Tlvs::from_pairs(tlv_pairs.iter().map(|(t, v)| (*t, v.as_slice()))))
}

struct SimSession {
    shared: Arc<Shared>,
    conn: Framed<Stream<TcpStream>, SmppCodec>,
    id: u64,
    state: SessionState,
    system_id: String,
    seq: Sequence,
    submits: u64,
    delayed: DelayQueue<Delayed>,
    tx: mpsc::Sender<Outgoing>,
    /// deliver_sm sent and not yet answered.
    sent: std::collections::HashMap<u32, Pdu>,
}

pub(crate) async fn run(stream: Stream<TcpStream>, shared: Arc<Shared>, stop: CancellationToken) {
    let mut unbind = shared.unbind.subscribe();
    let (tx, mut rx) = mpsc::channel(4096);
    let mut s = SimSession {
        id: shared.session_id(),
        shared,
        conn: Framed::new(stream, SmppCodec::default()),
        state: SessionState::Open,
        system_id: String::new(),
        seq: Sequence::default(),
        submits: 0,
        delayed: DelayQueue::new(),
        tx,
        sent: std::collections::HashMap::new(),
    };
    loop {
        let keep_going = tokio::select! {
            item = s.conn.next() => match item {
                Some(Ok(Ok(pdu))) => s.incoming(pdu).await,
                Some(Ok(Err(e))) => match e.reply() {
                    Some(r) => s.conn.send(&r).await.is_ok(),
                    None => true,
                },
                _ => false,
            },
            Some(Outgoing(pdu)) = rx.recv() => {
                let mut ok = s.send_out(pdu).await;
                while let (true, Ok(Outgoing(more))) = (ok, rx.try_recv()) {
                    ok = s.send_out(more).await;
                }
                ok && crate::pdu::codec::flush(&mut s.conn).await.is_ok()
            }
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
                        while let Some(Ok(Ok(pdu))) = s.conn.next().await {
                            if pdu.command_id() == CommandId::UNBIND_RESP {
                                s.shared.stats.unbinds_answered.fetch_add(1, Ordering::Relaxed);
                                break;
                            }
                            if !s.incoming(pdu).await {
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
    // Like a real SMSC: what the ESME never acknowledged is sent again, on another session.
    for (_, pdu) in s.sent.drain() {
        s.shared.stats.redelivered.fetch_add(1, Ordering::Relaxed);
        s.shared
            .spool(s.system_id.clone(), pdu, std::time::Duration::from_millis(100));
    }
    // Outgoing PDUs queued for this session but never written go elsewhere too.
    rx.close();
    while let Ok(Outgoing(pdu)) = rx.try_recv() {
        s.shared
            .spool(s.system_id.clone(), pdu, std::time::Duration::from_millis(100));
    }
}

impl SimSession {
    /// Writes a receipt or MO with the next sequence number and remembers it until answered.
    async fn send_out(&mut self, mut pdu: Pdu) -> bool {
        pdu.sequence_number = self.seq.next_number();
        let ok = self.conn.feed(&pdu).await.is_ok();
        self.sent.insert(pdu.sequence_number, pdu);
        ok
    }

    async fn respond(&mut self, resp: Pdu) -> bool {
        let latency = Duration::from_micros(self.shared.latency_us.load(Ordering::Relaxed));
        if latency.is_zero() {
            self.conn.send(&resp).await.is_ok()
        } else {
            self.delayed.insert(Delayed(resp), latency);
            true
        }
    }

    async fn incoming(&mut self, pdu: Pdu) -> bool {
        let id = pdu.command_id();
        if id.is_response() {
            if id == CommandId::DELIVER_SM_RESP {
                if let Some(sent) = self.sent.remove(&pdu.sequence_number) {
                    let status = pdu.command_status;
                    let permanent = matches!(status, CommandStatus::ESME_RX_P_APPN | CommandStatus::ESME_RX_R_APPN);
                    if !status.is_ok() && !permanent {
                        // Temporary refusal: try again a little later.
                        self.shared.stats.redelivered.fetch_add(1, Ordering::Relaxed);
                        self.shared.stats.last_refusal.store(status.0, Ordering::Relaxed);
                        self.shared
                            .spool(self.system_id.clone(), sent, std::time::Duration::from_millis(500));
                    }
                }
            }
            return true;
        }
        if let Err(status) = self.state.check_request(id) {
            let resp = pdu
                .error_response(status)
                .unwrap_or_else(|| Pdu::new(Body::GenericNack).with_status(status));
            return self.conn.send(&resp).await.is_ok();
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
                .send(&Pdu::new(Body::EnquireLinkResp).with_sequence_number(seq))
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
                self.conn.send(&resp).await.is_ok()
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
        if !self.shared.bucket.try_take(std::time::Instant::now) {
            self.shared.stats.throttled.fetch_add(1, Ordering::Relaxed);
            return self
                .conn
                .send(
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
        let (id, _) = ids(&self.shared, n);
        self.shared.messages.insert(id.clone(), 1);
        if self.shared.messages.len() > 1_000_000 {
            self.shared.messages.clear(); // a simulator, not a store: keep memory bounded
        }
        let message_id = MessageIdResp {
            message_id: COctetString::from_text(&id),
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
        if wants_receipt && self.shared.config.receipts {
            let delay = self.shared.config.latency + self.shared.config.receipt_delay;
            if self.shared.config.intermediate_receipts {
                let r = receipt(&self.shared, n, source, destination, &text, true);
                self.shared.spool(self.system_id.clone(), r, delay);
            }
            // The final one a little later, so it comes after the intermediate one.
            let r = receipt(&self.shared, n, source, destination, &text, false);
            let later = if self.shared.config.intermediate_receipts {
                delay + std::time::Duration::from_millis(50)
            } else {
                delay
            };
            self.shared.spool(self.system_id.clone(), r, later);
        }
        let ok = self.respond(resp).await;
        if self.shared.config.drop_after.is_some_and(|n| self.submits >= n) {
            // Flaky SMSC: answer the Nth, then hang up (what is still delayed is never sent).
            return false;
        }
        ok
    }

    async fn query(&mut self, pdu: Pdu) -> bool {
        self.shared.stats.queries.fetch_add(1, Ordering::Relaxed);
        let id = pdu
            .message_id()
            .map(|m| String::from_utf8_lossy(m.as_bytes()).into_owned())
            .unwrap_or_default();
        let known = self.shared.messages.get(&id).map(|s| *s);
        let resp = match (&pdu.body, known) {
            (Body::QuerySm(_), Some(state)) => Pdu::new(Body::QuerySmResp(Some(QuerySmResp {
                message_id: COctetString::from_text(&id),
                final_date: COctetString::empty(),
                message_state: state,
                error_code: 0,
            }))),
            (Body::QuerySm(_), None) => pdu.error_response(CommandStatus::ESME_RQUERYFAIL).expect("resp"),
            (Body::CancelSm(_), Some(_)) => {
                self.shared.messages.insert(id, 4);
                Pdu::new(Body::CancelSmResp)
            }
            (Body::CancelSm(_), None) => pdu.error_response(CommandStatus::ESME_RCANCELFAIL).expect("resp"),
            (Body::ReplaceSm(_), Some(_)) => Pdu::new(Body::ReplaceSmResp),
            (_, _) => pdu.error_response(CommandStatus::ESME_RREPLACEFAIL).expect("resp"),
        };
        self.respond(resp.with_sequence_number(pdu.sequence_number)).await
    }
}
