//! One bind of the load generator, built so that it is never the limit of what it measures:
//! submits are copies of one encoded template with the sequence number written in, what
//! comes back is read in large chunks and handled in place (only a response's status and id
//! and a receipt's id are read: [`crate::pdu::peek`]), and everything it sends in a turn
//! goes out in one write. Counts go to [`Shared`] once per turn, not per message.

use super::{BenchConfig, Shared, Track};
use crate::esme::EsmeError;
use crate::pdu::peek::{self, Header, Next};
use crate::pdu::{CommandId, CommandStatus, Pdu, HEADER_LEN};
use crate::receipt::Receipt;
use bytes::{Buf, Bytes, BytesMut};
use dashmap::mapref::entry::Entry;
use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use tokio::io::{AsyncWriteExt, Interest};
use tokio::net::TcpStream;

/// The largest PDU read.
const MAX_PDU: usize = crate::pdu::codec::DEFAULT_MAX_LEN;
/// Read at most this much before handling it, so answers go out while more arrives.
const READ_CHUNK: usize = 256 * 1024;
/// A bind whose submits get no answer for this long gives up (what is out counts as
/// unanswered).
const STALL: Duration = Duration::from_secs(60);
/// How long a bind waits for its unbind_resp at the end.
const UNBIND_WAIT: Duration = Duration::from_secs(5);

/// What one bind saw.
pub(super) struct BindResult {
    pub errors: HashMap<CommandStatus, u64>,
    pub unanswered: u64,
    pub response_us: Vec<u64>,
    pub receipt_us: Vec<u64>,
    pub ids: Vec<String>,
    pub last_ack: Instant,
    /// Keys of the ids whose receipt matched, to tell a duplicate from an unknown id at the
    /// end (the map of ids in flight forgets them, so it stays small).
    pub done: Vec<u64>,
}

/// What a bind sends: the submit it copies, or (concatenated messages) how to make each.
pub(super) enum Template {
    /// One short message, encoded; each submit is a copy with its sequence number.
    Short(Vec<u8>),
    /// Three-part messages, encoded one by one.
    Long,
}

impl Template {
    pub(super) fn new(config: &BenchConfig) -> Template {
        if config.long {
            return Template::Long;
        }
        let pdu = crate::esme::submit_sm(
            "447700900000",
            "447700900123",
            b"smpp-proxy bench message",
            config.receipts,
        );
        Template::Short(pdu.to_bytes().map(|b| b.to_vec()).unwrap_or_default())
    }
}

/// A message id as the map of ids keys it: a 64-bit hash (the ids of one run never collide
/// in practice, and no id is copied).
fn key(id: &[u8]) -> u64 {
    foldhash::fast::FixedState::with_seed(0x5eed_cafe).hash_one(id)
}

/// The connection's bytes and the bind's own state.
struct Bind<'a> {
    config: &'a BenchConfig,
    shared: &'a Shared,
    start: Instant,
    stream: TcpStream,
    rd: BytesMut,
    /// To write; `wr[written..]` is not written yet.
    wr: Vec<u8>,
    written: usize,
    next_seq: u32,
    /// Submits sent and not answered: sequence number -> µs since start.
    outstanding: crate::session::InFlight<u64>,
    result: BindResult,
    /// Counts not yet added to `shared`.
    acked: u64,
    receipts: u64,
    last_receipt: Instant,
    /// A receipt came this turn.
    heard_receipt: bool,
    /// Answers (of any status) this turn, and when the last came: a bind whose submits get
    /// no answer for a minute gives up.
    answered: u64,
    last_answer: Instant,
    timer: std::pin::Pin<Box<tokio::time::Sleep>>,
    unbind_seq: Option<u32>,
    unbound: bool,
}

/// Why a turn ended the bind.
enum Gone {
    /// The peer closed the connection or broke the stream.
    Closed,
    /// The peer sent unbind (answered).
    Unbound,
}

impl Bind<'_> {
    fn seq(&mut self) -> u32 {
        let seq = self.next_seq;
        self.next_seq = if seq >= 0x7FFF_FFFF { 1 } else { seq + 1 };
        seq
    }

    fn now_us(&self) -> u64 {
        self.start.elapsed().as_micros() as u64
    }

    fn queue_submit(&mut self, template: &Template, n: u64, part: u8, now: u64) {
        let seq = self.seq();
        match template {
            Template::Short(bytes) => {
                let at = self.wr.len();
                self.wr.extend_from_slice(bytes);
                self.wr[at + 12..at + 16].copy_from_slice(&seq.to_be_bytes());
            }
            Template::Long => {
                let mut m = vec![0x05, 0x00, 0x03, (n & 0xff) as u8, 3, part];
                m.extend_from_slice(format!("part {part} of long message {n} ").repeat(4).as_bytes());
                m.truncate(140);
                let mut pdu = crate::esme::submit_sm("447700900000", "447700900123", b"", self.config.receipts);
                if let crate::pdu::Body::SubmitSm(b) = &mut pdu.body {
                    b.esm_class = 0x40;
                    b.short_message = Bytes::from(m);
                }
                let pdu = pdu.with_sequence_number(seq);
                if let Ok(bytes) = pdu.to_bytes() {
                    self.wr.extend_from_slice(&bytes);
                }
            }
        }
        self.outstanding.insert(seq, now);
    }

    fn queue_header(&mut self, len: usize, id: CommandId, seq: u32) {
        peek::put_header(&mut self.wr, len, id, CommandStatus::ESME_ROK, seq);
    }

    /// Writes what is queued, as far as the socket takes it now.
    fn write(&mut self) -> Result<(), Gone> {
        while self.written < self.wr.len() {
            match self.stream.try_write(&self.wr[self.written..]) {
                Ok(n) => self.written += n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Ok(()),
                Err(_) => return Err(Gone::Closed),
            }
        }
        self.wr.clear();
        self.written = 0;
        Ok(())
    }

    /// Reads what is there (up to [`READ_CHUNK`]) and handles every whole frame.
    fn read(&mut self) -> Result<(), Gone> {
        let mut got = 0;
        // What came before the peer closed is handled before the bind ends.
        let mut closed = false;
        while got < READ_CHUNK {
            self.rd.reserve(64 * 1024);
            match self.stream.try_read_buf(&mut self.rd) {
                Ok(0) => closed = true,
                Ok(n) => got += n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(_) => closed = true,
            }
            if closed {
                break;
            }
        }
        let now = self.now_us();
        let mut at = 0;
        let rd = std::mem::take(&mut self.rd);
        let outcome = loop {
            match peek::next_frame(&rd[at..], MAX_PDU) {
                Next::Partial => break Ok(()),
                Next::BadLength { .. } => break Err(Gone::Closed),
                Next::Frame(h) => {
                    if let Err(gone) = self.frame(h, &rd[at..at + h.len], now) {
                        break Err(gone);
                    }
                    at += h.len;
                }
            }
        };
        self.rd = rd;
        self.rd.advance(at);
        self.publish();
        match outcome {
            Ok(()) if closed => Err(Gone::Closed),
            outcome => outcome,
        }
    }

    fn frame(&mut self, h: Header, frame: &[u8], now: u64) -> Result<(), Gone> {
        let body = &frame[HEADER_LEN..];
        match h.id {
            CommandId::SUBMIT_SM_RESP | CommandId::DATA_SM_RESP | CommandId::GENERIC_NACK => {
                if let Some(sent_at) = self.outstanding.remove(h.seq) {
                    self.response(h.status, peek::response_id(body).unwrap_or_default(), sent_at, now);
                }
            }
            CommandId::DELIVER_SM | CommandId::DATA_SM => {
                // Unanswered, it comes again through another bind: answered before anything else.
                let resp = if h.id == CommandId::DELIVER_SM {
                    CommandId::DELIVER_SM_RESP
                } else {
                    CommandId::DATA_SM_RESP
                };
                self.queue_header(HEADER_LEN + 1, resp, h.seq);
                self.wr.push(0);
                // A receipt with its id in the TLV is read in place; anything else (MO, an
                // empty TLV, data_sm) is parsed as the proxy would.
                let fast = (h.id == CommandId::DELIVER_SM)
                    .then(|| peek::short_message(body))
                    .flatten()
                    .filter(|sm| crate::receipt::is_receipt_esm_class(sm.esm_class))
                    .and_then(|_| peek::receipted_message_id(body))
                    .filter(|id| !id.is_empty());
                match fast {
                    Some(id) => self.receipt(id, now),
                    None => {
                        let pdu = Pdu::parse(Bytes::copy_from_slice(frame));
                        if let Some(r) = pdu.ok().as_ref().and_then(Receipt::from_pdu) {
                            self.receipt(r.id().map_or(&[][..], |b| b), now);
                        }
                    }
                }
            }
            CommandId::ENQUIRE_LINK => self.queue_header(HEADER_LEN, CommandId::ENQUIRE_LINK_RESP, h.seq),
            CommandId::UNBIND => {
                self.queue_header(HEADER_LEN, CommandId::UNBIND_RESP, h.seq);
                let _ = self.write();
                return Err(Gone::Unbound);
            }
            CommandId::UNBIND_RESP if self.unbind_seq == Some(h.seq) => self.unbound = true,
            _ => {}
        }
        Ok(())
    }

    fn response(&mut self, status: CommandStatus, id: &[u8], sent_at: u64, now: u64) {
        self.result.response_us.push(now.saturating_sub(sent_at));
        self.answered += 1;
        if !status.is_ok() {
            *self.result.errors.entry(status).or_default() += 1;
            return;
        }
        self.acked += 1;
        if self.config.receipts {
            match self.shared.ids.entry(key(id)) {
                Entry::Vacant(v) => {
                    v.insert(Track::Sent(sent_at));
                }
                Entry::Occupied(o) => {
                    if let Track::Early(at) = *o.get() {
                        let (key, _) = o.remove_entry();
                        self.result.done.push(key);
                        self.receipts += 1;
                        self.result.receipt_us.push(at.saturating_sub(sent_at));
                    }
                }
            }
        }
        if self.config.keep_ids {
            self.result.ids.push(String::from_utf8_lossy(id).into_owned());
        }
    }

    fn receipt(&mut self, id: &[u8], now: u64) {
        self.heard_receipt = true;
        match self.shared.ids.entry(key(id)) {
            // A receipt can beat its submit_sm_resp to this bind: remember it.
            Entry::Vacant(v) => {
                v.insert(Track::Early(now));
            }
            Entry::Occupied(o) => match *o.get() {
                Track::Sent(sent_at) => {
                    let (key, _) = o.remove_entry();
                    self.result.done.push(key);
                    self.receipts += 1;
                    self.result.receipt_us.push(now.saturating_sub(sent_at));
                }
                Track::Early(_) => {
                    self.shared.duplicated.fetch_add(1, Ordering::Relaxed);
                }
            },
        }
    }

    /// Adds this turn's counts to the shared ones.
    fn publish(&mut self) {
        if std::mem::take(&mut self.answered) > 0 {
            self.last_answer = Instant::now();
        }
        if self.acked > 0 {
            self.result.last_ack = Instant::now();
            self.shared
                .acked
                .fetch_add(std::mem::take(&mut self.acked), Ordering::Relaxed);
        }
        if std::mem::take(&mut self.heard_receipt) {
            self.last_receipt = Instant::now();
        }
        if self.receipts > 0 {
            self.shared
                .receipts
                .fetch_add(std::mem::take(&mut self.receipts), Ordering::Relaxed);
        }
    }

    /// Waits until the socket can be read (or written, with something to write) or `until`.
    async fn turn(&mut self, until: Instant) -> Result<(), Gone> {
        let interest = if self.written < self.wr.len() {
            Interest::READABLE | Interest::WRITABLE
        } else {
            Interest::READABLE
        };
        // One timer for the bind, moved only when it must ring sooner or has rung.
        let until = tokio::time::Instant::from(until);
        if self.timer.is_elapsed() || until < self.timer.deadline() {
            self.timer.as_mut().reset(until);
        }
        let ready = tokio::select! {
            ready = self.stream.ready(interest) => ready.map_err(|_| Gone::Closed)?,
            () = &mut self.timer => return Ok(()),
        };
        if ready.is_readable() || ready.is_read_closed() {
            self.read()?;
        }
        // What reading queued (answers to deliver_sm) goes out with the next submits, in one
        // write; only a write the socket held back is retried here.
        if ready.is_writable() {
            self.write()?;
        }
        Ok(())
    }

    fn receipts_pending(&self) -> bool {
        self.config.receipts && self.shared.receipts.load(Ordering::Relaxed) < self.shared.acked.load(Ordering::Relaxed)
    }

    /// Unbinds, handling what still comes until the unbind_resp (or [`UNBIND_WAIT`]).
    async fn unbind(&mut self) {
        let seq = self.seq();
        self.unbind_seq = Some(seq);
        self.queue_header(HEADER_LEN, CommandId::UNBIND, seq);
        let until = Instant::now() + UNBIND_WAIT;
        while !self.unbound && Instant::now() < until {
            if self.write().is_err() || self.turn(until).await.is_err() {
                return;
            }
        }
        // The answers to deliveries read with the unbind_resp, all of them: unanswered, they
        // would be sent again on another bind (and counted as duplicates there).
        let rest = &self.wr[self.written.min(self.wr.len())..];
        if !rest.is_empty() {
            let _ = tokio::time::timeout(UNBIND_WAIT, self.stream.write_all(rest)).await;
        }
    }
}

/// Runs one bind's share of the load.
pub(super) async fn run(
    (stream, leftover): (TcpStream, BytesMut),
    config: &BenchConfig,
    shared: &Shared,
    template: &Template,
    (quota, deadline): (Option<u64>, Option<Instant>),
    start: Instant,
) -> Result<BindResult, EsmeError> {
    let mut b = Bind {
        config,
        shared,
        start,
        stream,
        rd: leftover,
        wr: Vec::with_capacity(64 * 1024),
        written: 0,
        // The bind took 1.
        next_seq: 2,
        outstanding: crate::session::InFlight::new(config.window),
        result: BindResult {
            errors: HashMap::new(),
            unanswered: 0,
            response_us: Vec::new(),
            receipt_us: Vec::new(),
            ids: Vec::new(),
            last_ack: start,
            done: Vec::new(),
        },
        acked: 0,
        receipts: 0,
        last_receipt: Instant::now(),
        heard_receipt: false,
        answered: 0,
        last_answer: Instant::now(),
        timer: Box::pin(tokio::time::sleep(Duration::ZERO)),
        unbind_seq: None,
        unbound: false,
    };
    let mut sent = 0u64;
    let mut part = 0u8;
    let rate_per_bind = f64::from(config.rate) / config.binds.max(1) as f64;
    let parts = if config.long { 3 } else { 1 };
    let done_sending = |sent: u64| quota.is_some_and(|q| sent >= q) || deadline.is_some_and(|d| Instant::now() >= d);
    loop {
        // Submit while the window and the rate allow.
        let mut next_due = None;
        let before = sent;
        let now = b.now_us();
        // The window is refilled a quarter at a time: submits go out in bursts, as they do
        // from a busy client, and every write and read on both sides carries many PDUs.
        let burst = (config.window / 4).max(1);
        let room = config.window.saturating_sub(b.outstanding.len());
        let refill = room >= burst || b.outstanding.is_empty();
        while refill && b.outstanding.len() < config.window && !done_sending(sent) {
            if rate_per_bind > 0.0 {
                let due = start + Duration::from_secs_f64(sent as f64 / rate_per_bind);
                if Instant::now() < due {
                    next_due = Some(due);
                    break;
                }
            }
            part = part % parts + 1;
            b.queue_submit(template, sent / parts as u64, part, now);
            sent += 1;
        }
        if sent > before {
            shared.sent.fetch_add(sent - before, Ordering::Relaxed);
        }
        let gone = b.write().err();
        let finished = done_sending(sent) && b.outstanding.is_empty();
        if finished && (!b.receipts_pending() || b.last_receipt.elapsed() >= config.receipt_wait) {
            b.unbind().await;
            break;
        }
        let until = next_due.unwrap_or_else(|| Instant::now() + Duration::from_millis(200));
        let gone = match gone {
            Some(gone) => Some(gone),
            None => b.turn(until).await.err(),
        };
        if let Some(gone) = gone {
            if !matches!(gone, Gone::Unbound) && (!b.outstanding.is_empty() || b.receipts_pending()) {
                // The connection is gone (a node died): what was outstanding stays unanswered.
                b.result.unanswered += b.outstanding.len() as u64;
                return Ok(b.result);
            }
            break;
        }
        if !b.outstanding.is_empty() && b.last_answer.elapsed() > STALL {
            break;
        }
    }
    b.result.unanswered += b.outstanding.len() as u64;
    Ok(b.result)
}
