//! One upstream session task: connect, bind, carry requests, keep alive, reconnect.
//!
//! ```text
//! connect ─▶ bind ─ok─▶ BOUND (requests, receipts, enquire_link) ─▶ closed/unbound/dead
//!    ▲         └refused/timeout─┐                                        │
//!    └──────── backoff (1 s doubling to 60 s, jittered) ◀───────────────┘
//! ```
//!
//! Requests never written (still queued when the session dies) go back to their client session
//! to be routed again; requests written and unanswered fail with ESME_RSYSERR, never re-sent,
//! so nothing is duplicated. ESME_RTHROTTLED / ESME_RMSGQFUL from the SMSC send the request
//! back to be routed again; the upstream's [`Load`](crate::upstream::load::Load) hears of it
//! (and of every answer's latency, and of timeouts) and the router adapts its rate.
//!
//! Retired (a reload) or paused (the operator), a bound session closes gently: what reaches
//! it goes back to be routed elsewhere, answers to what it wrote and receipts are still read
//! (for at most `response_timeout`), then it unbinds. Retired, it ends; paused, it waits to be
//! enabled and binds again at once.

use super::{InboundSink, Mode, Request, SessionHandle, SessionKind};
use crate::messages::{ClientEvent, DeliverAck, Forward, Outcome, UpstreamEvent};
use crate::pdu::body::Bind;
use crate::pdu::codec::{parsed, put_frame, Burst, FrameCodec};
use crate::pdu::{Body, COctetString, CommandId, CommandStatus, FrameError, Pdu, SmppCodec};
use crate::session::{Backoff, KeepAlive, KeepAliveAction, Sequence, TurnClock};
use crate::tls::client::Connector;
use crate::tls::Stream;
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use rand::rngs::SmallRng;
use rand::SeedableRng;
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};
use tokio::time::timeout;
use tokio_util::codec::Framed;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

/// Frames as they came, each parsed where it is handled: a response goes back to its client
/// as it came.
type Conn = Framed<Stream<TcpStream>, FrameCodec>;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// A session that stayed bound this long resets its reconnect backoff.
const HEALTHY_AFTER: Duration = Duration::from_secs(10);

/// Why a bound session ended.
#[derive(Debug)]
enum End {
    Shutdown,
    /// Retired by a reload: drained and unbound.
    Retired,
    /// Paused by the operator: drained and unbound.
    Paused,
    Closed,
    Unbound,
    Dead(&'static str),
    Io(String),
}

impl std::fmt::Display for End {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            End::Shutdown => f.write_str("shutdown"),
            End::Retired => f.write_str("retired by a reload"),
            End::Paused => f.write_str("paused"),
            End::Closed => f.write_str("closed by the SMSC"),
            End::Unbound => f.write_str("unbound by the SMSC"),
            End::Dead(why) => write!(f, "dead: {why}"),
            End::Io(e) => write!(f, "I/O: {e}"),
        }
    }
}

/// Sends a request back to its client session to be routed again; its in-flight guard goes
/// first (it is no longer this session's).
fn bounce(Request { fwd, inflight }: Request) {
    drop(inflight);
    retry(fwd);
}

/// Sends a request back to its client session to be routed again.
fn retry(fwd: Forward) {
    let reply = fwd.reply.clone();
    let _ = reply.try_send(ClientEvent::Answer(Outcome::Retry(fwd)));
}

/// Answers a request with `status`; its in-flight guard goes first, so a client that hears of
/// it finds the slot free.
fn fail(Request { fwd, inflight }: Request, status: CommandStatus) {
    drop(inflight);
    tell_failed(fwd, status);
}

/// Tells the client session its request failed with `status`.
fn tell_failed(fwd: Forward, status: CommandStatus) {
    let outcome = Outcome::Failed {
        client_seq: fwd.client_seq(),
        command: fwd.command_id(),
        status,
    };
    let _ = fwd.reply.try_send(ClientEvent::Answer(outcome));
}

/// Runs the session until `shutdown` is cancelled or it is retired.
pub async fn run(
    handle: Arc<SessionHandle>,
    mut rx: mpsc::Receiver<Request>,
    inbound: Arc<dyn InboundSink>,
    shutdown: CancellationToken,
) {
    let _ended = handle.ended.clone().drop_guard();
    handle.runs_here();
    // Polling a token's future locks the token's mutex: a child of its own keeps that on this
    // session's thread instead of on the one token every session on every core polls.
    let shutdown = shutdown.child_token();
    let mut rng = SmallRng::from_entropy();
    let mut backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(60));
    let mut mode = handle.upstream.mode.subscribe();
    let name = handle.upstream.name.clone();
    let index = handle.index;
    let stop = Stop {
        shutdown: &shutdown,
        retire: &handle.retire,
    };
    loop {
        if stop.now() {
            break;
        }
        if *mode.borrow_and_update() == Mode::Paused {
            handle.set_settled();
            if idle(&mut rx, None, &mut mode, &stop).await {
                continue;
            }
            break;
        }
        let connected = tokio::select! {
            connected = connect_and_bind(&handle) => connected,
            _ = stop.wait() => break,
        };
        match connected {
            Ok(conn) => {
                let since = Instant::now();
                handle.set_last_error(None);
                handle.set_bound(true);
                handle.set_settled();
                info!(upstream = %name, session = index, kind = ?handle.kind, "bound");
                let end = Bound::new(&handle, conn, &inbound).run(&mut rx, &stop, &mut mode).await;
                handle.set_bound(false);
                match &end {
                    End::Shutdown | End::Retired | End::Paused => {
                        info!(upstream = %name, session = index, reason = %end, "unbound");
                        if matches!(end, End::Paused) {
                            continue;
                        }
                        break;
                    }
                    other => {
                        // Whatever the router saw of it, this upstream has now failed once.
                        handle.upstream.load.lost();
                        handle
                            .upstream
                            .load
                            .counters
                            .sessions_lost
                            .fetch_add(1, Ordering::Relaxed);
                        warn!(upstream = %name, session = index, reason = %other, "session lost")
                    }
                }
                if since.elapsed() >= HEALTHY_AFTER {
                    backoff.reset();
                }
            }
            Err(e) => {
                handle
                    .upstream
                    .load
                    .counters
                    .connect_failures
                    .fetch_add(1, Ordering::Relaxed);
                warn!(upstream = %name, session = index, error = %e, "connect/bind failed");
                handle.set_last_error(Some(e));
                // The router now knows: after a failed first try it refuses, no longer holds.
                handle.set_settled();
            }
        }
        let delay = backoff.next_delay(&mut rng);
        debug!(upstream = %name, session = index, ?delay, "reconnecting after");
        if !idle(&mut rx, Some(delay), &mut mode, &stop).await {
            break;
        }
    }
    handle.set_settled();
    rx.close();
    while let Some(request) = rx.recv().await {
        bounce(request);
    }
}

/// Resolves once the upstream is paused (never, if the mode can no longer change).
async fn until_paused(mode: &mut watch::Receiver<Mode>) {
    loop {
        if mode.changed().await.is_err() {
            return std::future::pending().await;
        }
        if *mode.borrow_and_update() == Mode::Paused {
            return;
        }
    }
}

/// What ends a session: the proxy's shutdown, or its own retirement.
struct Stop<'a> {
    shutdown: &'a CancellationToken,
    retire: &'a CancellationToken,
}

impl Stop<'_> {
    fn now(&self) -> bool {
        self.shutdown.is_cancelled() || self.retire.is_cancelled()
    }

    async fn wait(&self) {
        tokio::select! {
            _ = self.shutdown.cancelled() => {}
            _ = self.retire.cancelled() => {}
        }
    }
}

/// Waits unbound, sending what reaches the session back to be routed elsewhere: for `delay`,
/// or (`None`) until the upstream is no longer paused. `false`: the session must end.
async fn idle(
    rx: &mut mpsc::Receiver<Request>,
    delay: Option<Duration>,
    mode: &mut watch::Receiver<Mode>,
    stop: &Stop<'_>,
) -> bool {
    let sleep = tokio::time::sleep(delay.unwrap_or(Duration::MAX / 4));
    tokio::pin!(sleep);
    loop {
        tokio::select! {
            _ = &mut sleep => return true,
            Some(request) = rx.recv() => bounce(request),
            changed = mode.changed() => {
                if changed.is_err() {
                    return false;
                }
                if delay.is_none() && *mode.borrow_and_update() != Mode::Paused {
                    return true;
                }
            }
            _ = stop.wait() => return false,
        }
    }
}

async fn connect_and_bind(handle: &SessionHandle) -> Result<Conn, String> {
    let c = &handle.upstream.config;
    let stream = timeout(CONNECT_TIMEOUT, TcpStream::connect(&c.address))
        .await
        .map_err(|_| format!("connect to {} timed out", c.address))?
        .map_err(|e| format!("connect to {}: {e}", c.address))?;
    let _ = stream.set_nodelay(true);
    let stream = match &c.tls {
        None => Stream::Plain(stream),
        Some(files) => {
            // Read at every connect (a certificate renewed on disk is used from the next one),
            // off the async threads: the system's CAs are a directory of files.
            let files = files.clone();
            let connector = tokio::task::spawn_blocking(move || Connector::new(&files))
                .await
                .map_err(|e| e.to_string())?
                .map_err(|e| e.to_string())?;
            timeout(CONNECT_TIMEOUT, connector.connect(stream))
                .await
                .map_err(|_| format!("TLS handshake with {} timed out", c.address))?
                .map_err(|e| format!("TLS handshake with {}: {e}", c.address))?
        }
    };
    let mut conn = Framed::new(stream, FrameCodec::from(SmppCodec::default()));
    let string = |s: &str| COctetString::new(s.as_bytes().to_vec()).map_err(|e| e.to_string());
    let bind = Bind {
        system_id: string(&c.system_id)?,
        password: string(&c.password)?,
        system_type: string(&c.system_type)?,
        interface_version: 0x34,
        addr_ton: 0,
        addr_npi: 0,
        address_range: COctetString::empty(),
    };
    let body = match handle.kind {
        SessionKind::Transmitter => Body::BindTransmitter(bind),
        SessionKind::Receiver => Body::BindReceiver(bind),
        SessionKind::Transceiver => Body::BindTransceiver(bind),
    };
    let request = Pdu::new(body).with_sequence_number(1);
    conn.send(&request).await.map_err(|e| e.to_string())?;
    let deadline = tokio::time::Instant::now() + c.response_timeout;
    loop {
        let item = tokio::time::timeout_at(deadline, conn.next())
            .await
            .map(parsed)
            .map_err(|_| "no bind response".to_owned())?;
        match item {
            None => return Err("closed during bind".into()),
            Some(Err(e)) => return Err(e.to_string()),
            Some(Ok(Err(e))) => debug!(error = %e, "malformed PDU during bind"),
            Some(Ok(Ok((_, pdu)))) if pdu.command_id() == request.command_id().response().unwrap_or(CommandId(0)) => {
                return if pdu.command_status.is_ok() {
                    Ok(conn)
                } else {
                    Err(format!("bind refused: {}", pdu.command_status))
                };
            }
            Some(Ok(Ok((_, pdu)))) if pdu.command_id() == CommandId::ENQUIRE_LINK => {
                let resp = Pdu::new(Body::EnquireLinkResp).with_sequence_number(pdu.sequence_number);
                conn.send(&resp).await.map_err(|e| e.to_string())?;
            }
            Some(Ok(Ok((_, pdu)))) => debug!(command = %pdu.command_id(), "ignored before bind"),
        }
    }
}

struct Written {
    request: Request,
    sent_at: Instant,
}

/// A bound session's state, owned by its task.
struct Bound<'a> {
    handle: &'a Arc<SessionHandle>,
    conn: Conn,
    inbound: &'a Arc<dyn InboundSink>,
    seq: Sequence,
    inflight: HashMap<u32, Written, foldhash::fast::RandomState>,
    /// The requests written into the buffer this turn: our sequence number, and where its
    /// frame starts. A flush that fails sends them back to be routed again if none of their
    /// bytes left (instead of failing them with the rest of what is in flight).
    turn: Vec<(u32, usize)>,
    keep_alive: KeepAlive,
    /// The time as of the last tick: timers here are seconds long, and a clock read per PDU
    /// showed in profiles.
    now: Instant,
    /// The time this turn of the loop sees (when requests were written, answers came).
    clock: TurnClock,
    events_tx: mpsc::Sender<UpstreamEvent>,
    events_rx: mpsc::Receiver<UpstreamEvent>,
    /// deliver_sm / data_sm received whose [`DeliverAck`] is alive (their receipts being
    /// stored or delivered); each ack counts itself out when dropped.
    unanswered: Arc<AtomicUsize>,
}

impl<'a> Bound<'a> {
    fn new(handle: &'a Arc<SessionHandle>, conn: Conn, inbound: &'a Arc<dyn InboundSink>) -> Bound<'a> {
        // Room for every ack the session may have out, so none is lost to a full channel.
        let acks = inbound.max_unanswered().min(1 << 16);
        let (events_tx, events_rx) = mpsc::channel(acks + 64);
        let mut seq = Sequence::default();
        seq.next_number(); // 1 was the bind
        Bound {
            handle,
            conn,
            inbound,
            seq,
            inflight: HashMap::default(),
            turn: Vec::new(),
            keep_alive: KeepAlive::new(Instant::now()),
            now: Instant::now(),
            clock: TurnClock::default(),
            events_tx,
            events_rx,
            unanswered: Arc::new(AtomicUsize::new(0)),
        }
    }

    async fn run(mut self, rx: &mut mpsc::Receiver<Request>, stop: &Stop<'_>, mode: &mut watch::Receiver<Mode>) -> End {
        let end = self.serve(rx, stop, mode).await;
        // Written and unanswered: fail (a re-send could duplicate). Queued: route again.
        for (_, w) in self.inflight.drain() {
            fail(w.request, CommandStatus::ESME_RSYSERR);
        }
        while let Ok(request) = rx.try_recv() {
            bounce(request);
        }
        // Out of the rotation first; then what is written goes out, and a TLS SMSC gets its
        // close_notify (one that does not read gets a second at most).
        self.handle.set_bound(false);
        let _ = tokio::time::timeout(Duration::from_secs(1), self.conn.close()).await;
        end
    }

    async fn serve(
        &mut self,
        rx: &mut mpsc::Receiver<Request>,
        stop: &Stop<'_>,
        mode: &mut watch::Receiver<Mode>,
    ) -> End {
        let config = &self.handle.upstream.config;
        let mut tick = tokio::time::interval(Duration::from_millis(250).min(config.enquire_link));
        // Retired or paused: how it ends, and by when its answers must be in.
        let mut closing: Option<(End, tokio::time::Instant)> = None;
        let closing_at = || tokio::time::Instant::now() + config.response_timeout;
        // Made once and polled in place: futures made anew on every turn of the loop would
        // register with their token or watch every time.
        let (shutdown, retired, paused) = (stop.shutdown.cancelled(), stop.retire.cancelled(), until_paused(mode));
        tokio::pin!(shutdown, retired, paused);
        loop {
            if let Some((_, by)) = &closing {
                if self.inflight.is_empty() || tokio::time::Instant::now() >= *by {
                    self.unbind().await;
                    return closing.map_or(End::Shutdown, |(end, _)| end);
                }
            }
            self.clock.tick();
            let result = tokio::select! {
                _ = &mut shutdown => {
                    self.unbind().await;
                    return End::Shutdown;
                }
                _ = &mut retired, if closing.is_none() => {
                    closing = Some((End::Retired, closing_at()));
                    Ok(None)
                }
                _ = &mut paused, if closing.is_none() => {
                    closing = Some((End::Paused, closing_at()));
                    Ok(None)
                }
                item = self.conn.next() => {
                    // What the read brought: this frame, then those already whole behind it.
                    let (mut item, mut burst) = (item, Burst::started());
                    loop {
                        let result = match item {
                            None => return End::Closed,
                            Some(Err(FrameError::Io(e))) => return End::Io(e.to_string()),
                            Some(Err(e)) => {
                                if let Some(reply) = e.reply() {
                                    let _ = self.conn.send(&reply).await;
                                }
                                return End::Io(e.to_string());
                            }
                            Some(Ok(frame)) => match Pdu::parse(frame.clone()) {
                                Err(e) => {
                                    debug!(upstream = %self.handle.upstream.name, error = %e, "malformed PDU from SMSC");
                                    match e.reply() {
                                        Some(reply) => self.put(&reply).map(|_| None),
                                        None => Ok(None),
                                    }
                                }
                                Ok(pdu) => {
                                    self.keep_alive.heard(self.now);
                                    self.incoming(frame, pdu)
                                }
                            },
                        };
                        if !matches!(result, Ok(None)) {
                            break result;
                        }
                        match burst.next(&mut self.conn) {
                            Some(next) => item = Some(next),
                            None => break result,
                        }
                    }
                }
                Some(request) = rx.recv() => match closing {
                    None => {
                        self.write_requests(request, rx);
                        Ok(None)
                    }
                    Some(_) => {
                        bounce(request);
                        Ok(None)
                    }
                },
                Some(event) = self.events_rx.recv() => self.write_events(event).map(|_| None),
                _ = tick.tick() => self.on_tick(),
            };
            // What the turn wrote goes out in one flush (see `incoming`).
            let result = match result {
                Ok(end) if !self.conn.write_buffer().is_empty() => {
                    let pending = self.conn.write_buffer().len();
                    let flushed = crate::pdu::codec::flush(&mut self.conn).await;
                    if flushed.is_err() {
                        self.unsent(pending);
                    }
                    flushed.map(|()| end)
                }
                other => other,
            };
            self.turn.clear();
            match result {
                Ok(None) => {}
                Ok(Some(End::Unbound)) => {
                    // Nothing new goes out; answers to what was already written may still come.
                    Box::pin(self.drain_answers(Duration::from_secs(2))).await;
                    return End::Unbound;
                }
                Ok(Some(end)) => return end,
                Err(e) => return End::Io(e.to_string()),
            }
        }
    }

    /// After a failed flush of `pending` octets: the requests of this turn none of whose
    /// octets left go back to be routed again (never on the wire, so never duplicated).
    /// Plain TCP only: a TLS write that fails may already have sent records of what it was
    /// given, so what is left in the buffer does not say what left.
    fn unsent(&mut self, pending: usize) {
        if self.conn.get_ref().is_tls() {
            return;
        }
        let sent = pending.saturating_sub(self.conn.write_buffer().len());
        // Out of the rotation first, so what goes back is not routed here again.
        self.handle.set_bound(false);
        for &(seq, start) in &self.turn {
            if start >= sent {
                if let Some(w) = self.inflight.remove(&seq) {
                    bounce(w.request);
                }
            }
        }
        // The session ends; the close must not send what was just routed elsewhere.
        self.conn.write_buffer_mut().clear();
    }

    /// Appends `pdu` to the connection's write buffer; the end of the turn flushes it.
    fn put(&mut self, pdu: &Pdu) -> Result<(), FrameError> {
        Ok(pdu.encode(self.conn.write_buffer_mut())?)
    }

    /// A request and everything already queued behind it (up to 64), written into the buffer
    /// the end of the turn flushes.
    ///
    /// The handlers of a turn (this, `write_events`, `incoming`, `on_tick`) are plain functions:
    /// an async one's future is built and moved into the session's state on every call, a
    /// memcpy of a kilobyte or more per PDU that profiles showed.
    fn write_requests(&mut self, first: Request, rx: &mut mpsc::Receiver<Request>) {
        // Latency is measured from here.
        let at = self.clock.instant();
        self.write_request(first, at);
        for _ in 0..64 {
            match rx.try_recv() {
                Ok(request) => self.write_request(request, at),
                Err(_) => break,
            }
        }
    }

    /// The client's frame as it came, with our sequence number in place of the client's.
    fn write_request(&mut self, request: Request, at: Instant) {
        let ours = self.seq.next_number();
        let start = self.conn.write_buffer().len();
        if !put_frame(self.conn.write_buffer_mut(), &request.fwd.frame, ours) {
            // Never: the client session forwards only frames it parsed.
            fail(request, CommandStatus::ESME_RSYSERR);
            return;
        }
        self.inflight.insert(ours, Written { request, sent_at: at });
        self.turn.push((ours, start));
    }

    fn write_events(&mut self, first: UpstreamEvent) -> Result<(), FrameError> {
        let mut next = Some(first);
        let mut n = 0;
        while let Some(UpstreamEvent::DeliverAck {
            sequence_number,
            command,
            status,
        }) = next
        {
            let resp_id = command.response().unwrap_or(CommandId::DELIVER_SM_RESP);
            let body = Body::empty_response(resp_id).unwrap_or(Body::GenericNack);
            // deliver_sm_resp / data_sm_resp carry an empty message_id (SMPP 3.4 §4.6.2).
            let body = match body {
                Body::DeliverSmResp(None) => Body::DeliverSmResp(Some(Default::default())),
                Body::DataSmResp(None) => Body::DataSmResp(Some(Default::default())),
                other => other,
            };
            self.put(&Pdu::new(body).with_status(status).with_sequence_number(sequence_number))?;
            n += 1;
            next = if n < 64 { self.events_rx.try_recv().ok() } else { None };
        }
        Ok(())
    }

    /// A PDU from the SMSC. An unbind is answered here; the caller flushes, then drains the
    /// answers still due (`End::Unbound`).
    fn incoming(&mut self, frame: Bytes, pdu: Pdu) -> Result<Option<End>, FrameError> {
        let id = pdu.command_id();
        if id.is_response() {
            match id {
                CommandId::ENQUIRE_LINK_RESP => self.keep_alive.answered(),
                CommandId::UNBIND_RESP => {}
                _ => self.response(frame, &pdu),
            }
            return Ok(None);
        }
        match id {
            CommandId::ENQUIRE_LINK => {
                self.put(&Pdu::new(Body::EnquireLinkResp).with_sequence_number(pdu.sequence_number))?;
            }
            CommandId::UNBIND => {
                self.put(&Pdu::new(Body::UnbindResp).with_sequence_number(pdu.sequence_number))?;
                return Ok(Some(End::Unbound));
            }
            CommandId::DELIVER_SM | CommandId::DATA_SM
                if self.unanswered.load(Ordering::Acquire) >= self.inbound.max_unanswered() =>
            {
                self.handle
                    .upstream
                    .load
                    .counters
                    .delivers_refused
                    .fetch_add(1, Ordering::Relaxed);
                if let Some(resp) = pdu.error_response(CommandStatus::ESME_RX_T_APPN) {
                    self.put(&resp)?;
                }
            }
            CommandId::DELIVER_SM | CommandId::DATA_SM => {
                let ack = DeliverAck::new(self.events_tx.clone(), pdu.sequence_number, id, self.unanswered.clone());
                self.inbound.inbound(&self.handle.upstream, frame, pdu, ack);
            }
            CommandId::ALERT_NOTIFICATION => {
                debug!(upstream = %self.handle.upstream.name, "alert_notification ignored")
            }
            _ => {
                if let Some(resp) = pdu.error_response(CommandStatus::ESME_RINVBNDSTS) {
                    self.put(&resp)?;
                }
            }
        }
        Ok(None)
    }

    /// A response from the SMSC (`frame`, parsed as `resp`): to its client, as it came.
    fn response(&mut self, frame: Bytes, resp: &Pdu) {
        let Some(w) = self.inflight.remove(&resp.sequence_number) else {
            debug!(upstream = %self.handle.upstream.name, seq = resp.sequence_number, "response to no request: dropped");
            return;
        };
        let Written {
            request: Request { fwd, inflight },
            sent_at,
        } = w;
        let status = resp.command_status;
        let now = self.clock.instant();
        inflight.answered(status, now.saturating_duration_since(sent_at), now);
        if status == CommandStatus::ESME_RTHROTTLED || status == CommandStatus::ESME_RMSGQFUL {
            debug!(upstream = %self.handle.upstream.name, "throttled by SMSC: routed again");
            retry(fwd);
            return;
        }
        let resp = if resp.command_id() == CommandId::GENERIC_NACK && fwd.command_id().response().is_some() {
            // Answer the client in its request's own response type (rare: encoded here).
            match fwd.error_response(status).to_bytes() {
                Ok(own) => own,
                Err(_) => frame,
            }
        } else {
            frame
        };
        let upstream = &self.handle.upstream;
        let client_seq = fwd.client_seq();
        let _ = fwd.reply.try_send(ClientEvent::Answer(Outcome::Answered {
            upstream: upstream.name.clone(),
            id_match: upstream.config.id_match,
            request: fwd.info,
            client_seq,
            resp,
            received: fwd.received,
        }));
    }

    fn on_tick(&mut self) -> Result<Option<End>, FrameError> {
        let config = &self.handle.upstream.config;
        let now = Instant::now();
        self.now = now;
        let expired: Vec<u32> = self
            .inflight
            .iter()
            .filter(|(_, w)| now.duration_since(w.sent_at) >= config.response_timeout)
            .map(|(s, _)| *s)
            .collect();
        for seq in expired {
            if let Some(w) = self.inflight.remove(&seq) {
                let Request { fwd, inflight } = w.request;
                inflight.timed_out();
                warn!(upstream = %self.handle.upstream.name, seq, "no response in time: request failed, not re-sent");
                tell_failed(fwd, CommandStatus::ESME_RSYSERR);
            }
        }
        match self.keep_alive.check(now, config.enquire_link, config.response_timeout) {
            KeepAliveAction::Dead => return Ok(Some(End::Dead("enquire_link unanswered"))),
            KeepAliveAction::SendEnquireLink => {
                let seq = self.seq.next_number();
                self.put(&Pdu::new(Body::EnquireLink).with_sequence_number(seq))?;
            }
            KeepAliveAction::Wait => {}
        }
        Ok(None)
    }

    /// Reads answers to requests in flight until there are none or `within` passes.
    async fn drain_answers(&mut self, within: Duration) {
        let deadline = tokio::time::Instant::now() + within;
        while !self.inflight.is_empty() {
            match tokio::time::timeout_at(deadline, self.conn.next()).await.map(parsed) {
                Ok(Some(Ok(Ok((frame, pdu))))) if pdu.command_id().is_response() => {
                    // After a wait: a new turn.
                    self.clock.tick();
                    self.response(frame, &pdu)
                }
                Ok(Some(Ok(_))) => {}
                _ => return,
            }
        }
    }

    async fn unbind(&mut self) {
        // Answer the SMSC for what is being stored first, or it would send it all again.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
        loop {
            // An ack is queued before it is dropped: with none alive, what is queued is all.
            let event = if self.unanswered.load(Ordering::Acquire) == 0 {
                match self.events_rx.try_recv() {
                    Ok(event) => event,
                    Err(_) => break,
                }
            } else {
                match tokio::time::timeout_at(deadline, self.events_rx.recv()).await {
                    Ok(Some(event)) => event,
                    _ => break,
                }
            };
            if self.write_events(event).is_err() || crate::pdu::codec::flush(&mut self.conn).await.is_err() {
                return;
            }
        }
        let seq = self.seq.next_number();
        if self
            .conn
            .send(&Pdu::new(Body::Unbind).with_sequence_number(seq))
            .await
            .is_err()
        {
            return;
        }
        // Wait briefly for unbind_resp and the answers to what is in flight (an SMSC may
        // answer the unbind first). A deliver_sm meanwhile is not answered: the SMSC sends it
        // again, on another session, rather than to one that can no longer take custody.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
        let mut unbound = false;
        while !(unbound && self.inflight.is_empty()) {
            let (frame, pdu) = match tokio::time::timeout_at(deadline, self.conn.next()).await.map(parsed) {
                Ok(Some(Ok(Ok(read)))) => read,
                // Malformed: not an answer to anything.
                Ok(Some(Ok(Err(_)))) => continue,
                // Closed, unreadable, or out of time.
                _ => return,
            };
            let answer = match pdu.command_id() {
                CommandId::UNBIND_RESP => {
                    unbound = true;
                    false
                }
                // Our unbind refused: the SMSC is done with the session all the same.
                CommandId::GENERIC_NACK if pdu.sequence_number == seq => {
                    unbound = true;
                    false
                }
                id if id.is_response() => {
                    self.clock.tick();
                    self.response(frame, &pdu);
                    false
                }
                CommandId::ENQUIRE_LINK => true,
                // Its unbind crossed ours.
                CommandId::UNBIND => {
                    unbound = true;
                    true
                }
                _ => false,
            };
            let Some(resp) = pdu.error_response(CommandStatus::ESME_ROK).filter(|_| answer) else {
                continue;
            };
            if !matches!(
                tokio::time::timeout_at(deadline, self.conn.send(&resp)).await,
                Ok(Ok(()))
            ) {
                return;
            }
        }
    }
}
