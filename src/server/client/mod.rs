//! One client session task: the proxy as an SMSC to one ESME connection.
//!
//! It owns the socket and the session's `Phase`: binds against the account's credentials,
//! enforces the state table ([`SessionState`]), the account's window and tps, forwards requests
//! to the router (`requests`), and writes back what comes in on its event channel: answers
//! from upstreams, receipts and MO from its account (`deliveries`). Message ids are mapped
//! here: an upstream's submit_sm_resp id is recorded with the id the client gets before the
//! client sees it; query/cancel/replace carrying the client's id go to the upstream that took
//! the message, with that upstream's id.

mod commits;
mod deliveries;
mod requests;

use super::tls::ClientStream;
use crate::account::AccountHandle;
use crate::config::{ClientConfig, Credential};
use crate::context::{Context, DueKey};
use crate::guard::{auth, Admitted, Denied};
use crate::logging::Limiter;
use crate::messages::{AccountMsg, ClientEvent, Direct, Forward, Slots};
use crate::pdu::body::BindResp;
use crate::pdu::codec::{parsed, Burst, FrameCodec};
use crate::pdu::{tag, Body, COctetString, CommandId, CommandStatus, FrameError, Pdu, SmppCodec, Tlvs};
use crate::session::{KeepAlive, KeepAliveAction, Sequence, SessionState, TurnClock};
use crate::store::Correlation;
use crate::tls::server::CertRefusal;
use bytes::Bytes;
use commits::Commits;
use deliveries::Pending;
use futures_util::{SinkExt, StreamExt};
use requests::Mapped;
use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio_util::codec::Framed;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

/// How often the session's timers are looked at.
const TICK: Duration = Duration::from_millis(250);
/// How long a bound client gets, at shutdown, to have its requests answered before unbind.
const DRAIN: Duration = Duration::from_secs(5);
/// How long a closing connection gets to take what is left to write.
const CLOSE_WAIT: Duration = Duration::from_secs(1);
/// How long an unbinding session waits for the client's unbind_resp and its answers to the
/// deliveries it was sent.
const UNBIND_WAIT: Duration = Duration::from_secs(2);
/// PDUs other than a bind an unbound connection may send (enquire_link, unbind, a stray
/// request answered ESME_RINVBNDSTS); past them it is closed: nothing but a bind needs more.
const BEFORE_BIND: u8 = 4;

/// Where the session is, with what belongs there (the account and the event channel exist
/// only while bound). The SMPP state table is [`SessionState`]; [`Phase::state`] maps onto it.
///
/// ```text
///  Open ──bind ok──▶ Bound ──unbind (either side)──▶ Unbound ──▶ closed
///   └── no bind before bind_deadline ──▶ closed
/// ```
enum Phase {
    /// Connected, not bound: a bind must come before `bind_deadline`.
    Open {
        /// When the connection is closed if it has not bound.
        bind_deadline: Instant,
    },
    /// Bound to an account.
    Bound(Bound),
    /// unbind sent or received; the bind has been given back.
    Unbound,
}

/// What a bound session has.
struct Bound {
    /// `BoundTx`, `BoundRx` or `BoundTrx`.
    mode: SessionState,
    account: AccountHandle,
    /// This bind's id, as its account knows it.
    bind_id: u64,
    /// Answers from upstreams, deliveries from the account and direct ones from upstream
    /// sessions on this thread come in here; the sender is cloned into every request
    /// forwarded.
    events_tx: mpsc::Sender<ClientEvent>,
    events_rx: mpsc::Receiver<ClientEvent>,
    /// The largest window its channel has room for (see [`WINDOW_HEADROOM`]).
    window_cap: u32,
    /// Its deliveries in flight, against the deliver window (shared with the account and
    /// the lanes that hand them over).
    slots: Arc<Slots>,
    /// The most deliveries its channel has room for.
    deliver_cap: usize,
    /// It holds a place in its account's `max_binds` (and `receivers`): until it unbinds.
    placed: bool,
}

impl Bound {
    /// The account's window now, within what this bind's channel has room for.
    fn window(&self) -> u32 {
        self.account.peek().window.min(self.window_cap)
    }
}

/// A bind's channel has room for at least this window, and this deliver window, so that a
/// reload can raise them for binds already up.
const WINDOW_HEADROOM: u32 = 1024;
const DELIVER_HEADROOM: u32 = 256;

impl Phase {
    fn state(&self) -> SessionState {
        match self {
            Phase::Open { .. } => SessionState::Open,
            Phase::Bound(b) => b.mode,
            Phase::Unbound => SessionState::Unbound,
        }
    }

    fn bound(&self) -> Option<&Bound> {
        match self {
            Phase::Bound(b) => Some(b),
            _ => None,
        }
    }
}

/// Why a session ended (for the log).
#[derive(Debug)]
enum Close {
    /// Closed by the client (EOF or reset).
    ClosedByClient,
    /// The client unbound.
    UnboundByClient,
    /// The proxy shut down; the client was unbound once its requests were answered (or it was
    /// not bound).
    Shutdown,
    /// No bind within `bind_timeout`.
    BindTimeout,
    /// More than [`BEFORE_BIND`] PDUs and still no bind.
    TooMuchBeforeBind,
    /// The bind was refused; a refused connection gets no second try.
    BindRefused,
    /// Our enquire_link went unanswered.
    KeepAliveDead,
    /// A frame that cannot be cut from the stream (a bad `command_length`): answered with
    /// generic_nack, then closed, since the stream cannot be resynchronised.
    Framing(FrameError),
    /// Writing to the client failed.
    WriteFailed(FrameError),
}

impl std::fmt::Display for Close {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Close::ClosedByClient => f.write_str("closed by the client"),
            Close::UnboundByClient => f.write_str("unbound by the client"),
            Close::Shutdown => f.write_str("proxy shutting down"),
            Close::BindTimeout => f.write_str("no bind in time"),
            Close::TooMuchBeforeBind => f.write_str("too many PDUs before a bind"),
            Close::BindRefused => f.write_str("bind refused"),
            Close::KeepAliveDead => f.write_str("enquire_link unanswered"),
            Close::Framing(e) => write!(f, "framing error: {e}"),
            Close::WriteFailed(e) => write!(f, "write failed: {e}"),
        }
    }
}

/// A write that fails ends the session.
impl From<FrameError> for Close {
    fn from(e: FrameError) -> Close {
        Close::WriteFailed(e)
    }
}

/// What each step of the session gives: `Err` ends it, and says why.
type Flow = Result<(), Close>;

struct Client {
    ctx: Arc<Context>,
    conn: Framed<ClientStream, FrameCodec>,
    peer: SocketAddr,
    /// Its places in the listener's connection caps.
    admitted: Admitted,
    phase: Phase,
    /// PDUs other than a bind received while unbound.
    before_bind: u8,
    /// Requests forwarded and not yet answered (the client's window).
    outstanding: u32,
    seq: Sequence,
    /// deliver_sm / data_sm sent to the client: where each came from, and when.
    deliveries: HashMap<u32, (Pending, Instant), foldhash::fast::RandomState>,
    /// query/cancel/replace in flight, by the client's sequence number.
    mapped: HashMap<u32, Mapped, foldhash::fast::RandomState>,
    /// Requests within the client's window waiting for upstream window (oldest first), with
    /// when they started waiting. Bounded by the window; past `queue_timeout`: ESME_RTHROTTLED.
    queue: VecDeque<(Forward, Instant)>,
    /// Answers waiting for their correlations to be durable, oldest first. The session goes on
    /// serving meanwhile; each is written when its commit resolves.
    committing: Commits,
    /// Answers written to the buffer this turn, with where they are filed among the answers
    /// due and whether their correlations were recorded: announced once flushed (receipts
    /// that came before them wait for that).
    answered: Vec<(Arc<Correlation>, Option<DueKey>, bool)>,
    keep_alive: KeepAlive,
    /// The time as of the last tick (timers are coarse; a clock read per PDU is not free).
    now: Instant,
    /// The time this turn of the loop sees (when requests came, answers were mapped).
    clock: TurnClock,
    /// Shutting down, or the client unbinding: new requests are refused, answers still flow
    /// until the unbind (or its unbind_resp), at the latest at this time.
    draining: Option<Instant>,
    /// The client's unbind (its sequence number), answered once what it sent before is.
    client_unbind: Option<u32>,
    /// Bound: resolves when the bind is to be unbound (the operator asked, or a reload removed
    /// the account). Made once at the bind and polled in place: a future made anew on every
    /// turn of the session's loop would register with the account's watch every time.
    kicked: Option<Pin<Box<dyn Future<Output = ()> + Send + Sync>>>,
    /// Reports for the account that found its channel full: sent, in order, at the end of the
    /// turn (a turn's handlers never wait; see [`Client::serve`]).
    to_account: VecDeque<AccountMsg>,
}

/// Serves one connection until it closes or the proxy shuts down; it must bind by
/// `bind_deadline` (its writes already end there).
pub async fn run(
    ctx: Arc<Context>,
    stream: ClientStream,
    bind_deadline: Instant,
    peer: SocketAddr,
    admitted: Admitted,
    shutdown: CancellationToken,
) {
    let codec = FrameCodec::from(SmppCodec::with_max_len(ctx.live().config.client_sessions.max_pdu_len));
    let now = Instant::now();
    let mut client = Client {
        ctx,
        conn: Framed::new(stream, codec),
        peer,
        admitted,
        phase: Phase::Open { bind_deadline },
        before_bind: 0,
        outstanding: 0,
        seq: Sequence::default(),
        deliveries: HashMap::default(),
        mapped: HashMap::default(),
        queue: VecDeque::new(),
        committing: Commits::default(),
        answered: Vec::new(),
        keep_alive: KeepAlive::new(now),
        now,
        clock: TurnClock::default(),
        draining: None,
        client_unbind: None,
        kicked: None,
        to_account: VecDeque::new(),
    };
    let close = client.serve(shutdown).await;
    debug!(peer = %peer, client = client.system_id(), reason = %close, "client connection closed");
    client.leave().await;
    // What is written goes out, and a TLS client gets its close_notify (a bare close looks
    // like a truncation attack to it); a peer that does not read gets a second at most.
    let _ = tokio::time::timeout(CLOSE_WAIT, client.conn.close()).await;
}

/// Resolves when a bound session is to be unbound; never, when not bound.
async fn kicked(kicked: &mut Option<Pin<Box<dyn Future<Output = ()> + Send + Sync>>>) {
    match kicked {
        Some(kick) => kick.as_mut().await,
        None => std::future::pending().await,
    }
}

/// The next event of a bound session; never, when not bound.
async fn next_event(phase: &mut Phase) -> Option<ClientEvent> {
    match phase {
        Phase::Bound(b) => b.events_rx.recv().await,
        _ => std::future::pending().await,
    }
}

impl Client {
    fn system_id(&self) -> &str {
        self.phase.bound().map_or("-", |b| &*b.account.system_id)
    }

    /// Whether `e` is what a TLS ClientHello looks like to a plaintext session: the first
    /// "command_length" opening with a TLS handshake record.
    fn tls_hello(&self, e: &FrameError) -> bool {
        let first = matches!(self.phase, Phase::Open { .. }) && self.before_bind == 0 && !self.conn.get_ref().is_tls();
        first
            && matches!(e, FrameError::InvalidLength { command_length, .. } if crate::tls::looks_like_tls(command_length.to_be_bytes()[0]))
    }

    /// Counts a PDU other than a bind while unbound: past [`BEFORE_BIND`], the session ends.
    fn count_before_bind(&mut self) -> Flow {
        if !matches!(self.phase, Phase::Open { .. }) {
            return Ok(());
        }
        self.before_bind += 1;
        if self.before_bind > BEFORE_BIND {
            return Err(Close::TooMuchBeforeBind);
        }
        Ok(())
    }

    /// The session's loop. Each turn handles what woke it without waiting (answers, requests
    /// and deliveries are written into the connection's buffer), then [`Client::end_turn`]
    /// flushes once. The handlers of the hot paths are plain functions on purpose: an async
    /// handler's future is built and moved into this one's state on every call, and those
    /// futures were kilobytes (binds, store lookups): a memcpy of them per PDU showed in
    /// profiles. What must wait (a bind, an unbind, a store lookup) is boxed.
    async fn serve(&mut self, shutdown: CancellationToken) -> Close {
        let mut tick = tokio::time::interval(TICK);
        // Made once (registering with the token once), polled on every turn. Each poll locks
        // the token's mutex: a child of its own keeps that lock on this session's thread (the
        // shared token's, locked by every session on every core, showed in profiles).
        let shutdown = shutdown.child_token();
        let stopping = shutdown.cancelled();
        tokio::pin!(stopping);
        // The queue's retry: one timer, armed when the queue holds requests and it is not
        // already running, so a client that keeps sending does not keep putting it off.
        let retry = tokio::time::sleep(Duration::ZERO);
        tokio::pin!(retry);
        let mut retry_armed = false;
        loop {
            self.clock.tick();
            let flow = tokio::select! {
                _ = &mut stopping, if self.draining.is_none() => self.on_shutdown(),
                _ = kicked(&mut self.kicked), if self.draining.is_none() => {
                    info!(peer = %self.peer, client = self.system_id(), "unbinding: asked for, or the account was removed");
                    self.on_shutdown()
                }
                item = self.conn.next() => {
                    // What the read brought: this frame, then those already whole behind it.
                    let (mut item, mut burst) = (item, Burst::started());
                    loop {
                        let flow = match item {
                            None => Err(Close::ClosedByClient),
                            Some(Err(e)) if self.tls_hello(&e) => {
                                // A TLS client: a plaintext nack would mean nothing to it.
                                self.ctx.guard.tls.tls_on_plaintext.fetch_add(1, Ordering::Relaxed);
                                static HELLO: Limiter = Limiter::new(5);
                                if let Some(suppressed) = HELLO.allow() {
                                    warn!(peer = %self.peer, suppressed, "a TLS handshake on the plaintext SMPP listener: closing (TLS clients connect to listen.smpp_tls)");
                                }
                                Err(Close::Framing(e))
                            }
                            Some(Err(e)) => {
                                if let Some(reply) = e.reply() {
                                    let _ = self.conn.send(&reply).await;
                                }
                                static FRAMING: Limiter = Limiter::new(5);
                                if let Some(suppressed) = FRAMING.allow() {
                                    warn!(peer = %self.peer, client = self.system_id(), error = %e, suppressed, "framing error: closing");
                                }
                                Err(Close::Framing(e))
                            }
                            Some(Ok(frame)) => match Pdu::parse(frame.clone()) {
                                Err(e) => {
                                    debug!(peer = %self.peer, error = %e, "malformed PDU");
                                    match (self.count_before_bind(), e.reply()) {
                                        (Err(close), _) => Err(close),
                                        (Ok(()), Some(reply)) => self.put(&reply),
                                        (Ok(()), None) => Ok(()),
                                    }
                                }
                                Ok(pdu) => {
                                    self.keep_alive.heard(self.now);
                                    match self.incoming(frame, pdu) {
                                        Ok(Some(slow)) => {
                                            let flow = Box::pin(self.slow(slow)).await;
                                            self.clock.tick();
                                            flow
                                        }
                                        other => other.map(drop),
                                    }
                                }
                            },
                        };
                        if flow.is_err() {
                            break flow;
                        }
                        match burst.next(&mut self.conn) {
                            Some(next) => item = Some(next),
                            None => break flow,
                        }
                    }
                }
                Some(event) = next_event(&mut self.phase) => self.events(event),
                committed = self.committing.oldest(), if self.committing.in_store() => {
                    self.on_committed(Some(committed))
                }
                () = &mut retry, if retry_armed => {
                    retry_armed = false;
                    self.drain_queue()
                }
                _ = tick.tick() => self.on_tick(),
            };
            if !retry_armed && !self.queue.is_empty() {
                retry
                    .as_mut()
                    .reset(tokio::time::Instant::now() + requests::QUEUE_RETRY);
                retry_armed = true;
            }
            // What the turn mapped goes to the store in one go (even when the session ends
            // here: the upstream took those messages); answers a store gave at once go out in
            // this turn's flush.
            self.committing.record(&*self.ctx.store);
            let flow = flow.and_then(|()| self.on_committed(None));
            let flow = match flow {
                Ok(()) if !self.conn.write_buffer().is_empty() || !self.to_account.is_empty() => self.end_turn().await,
                other => other,
            };
            // Flushed (or the session ends: a receipt goes to another bind or the outbox).
            self.announce_answers();
            if let Err(close) = flow {
                return close;
            }
            if let Some(deadline) = self.draining {
                if (self.outstanding == 0 && self.committing.is_empty()) || Instant::now() >= deadline {
                    // Requests still waiting for upstream window were never sent: the client
                    // hears so before the unbind (or its unbind_resp).
                    for (fwd, _) in std::mem::take(&mut self.queue) {
                        if let Err(close) = self.give_up(&fwd, CommandStatus::ESME_RTHROTTLED) {
                            return close;
                        }
                    }
                    if let Some(seq) = self.client_unbind {
                        return Box::pin(self.unbound_by_client(seq)).await;
                    }
                    self.unbind().await;
                    return Close::Shutdown;
                }
            }
        }
    }

    /// The proxy is shutting down: an unbound session just closes; a bound one stops taking
    /// requests and unbinds once what it forwarded is answered (or after [`DRAIN`]).
    fn on_shutdown(&mut self) -> Flow {
        if self.phase.bound().is_none() {
            return Err(Close::Shutdown);
        }
        self.draining = Some(Instant::now() + DRAIN);
        Ok(())
    }

    /// What a turn wrote goes out in one flush; reports the account's full channel held back
    /// are sent, waiting for room.
    async fn end_turn(&mut self) -> Flow {
        if !self.conn.write_buffer().is_empty() {
            crate::pdu::codec::flush(&mut self.conn).await?;
        }
        self.send_to_account().await;
        Ok(())
    }

    /// Sends the reports held back in `to_account`, waiting for room (in order).
    async fn send_to_account(&mut self) {
        let Some(tx) = self.phase.bound().map(|b| b.account.tx.clone()) else {
            self.to_account.clear();
            return;
        };
        while let Some(msg) = self.to_account.pop_front() {
            if tx.send(msg).await.is_err() {
                self.to_account.clear();
            }
        }
    }

    /// Appends `pdu` to the connection's write buffer; the end of the turn flushes it.
    fn put(&mut self, pdu: &Pdu) -> Flow {
        pdu.encode(self.conn.write_buffer_mut()).map_err(FrameError::from)?;
        Ok(())
    }

    fn on_tick(&mut self) -> Flow {
        let now = Instant::now();
        self.now = now;
        let timers = self.ctx.config().client_sessions.clone();
        if let Phase::Open { bind_deadline } = self.phase {
            if now >= bind_deadline {
                static NO_BIND: Limiter = Limiter::new(5);
                if let Some(suppressed) = NO_BIND.allow() {
                    info!(peer = %self.peer, suppressed, "no bind in time: closing");
                }
                return Err(Close::BindTimeout);
            }
        }
        let response_timeout = timers.response_timeout;
        let expired: Vec<u32> = self
            .deliveries
            .iter()
            .filter(|(_, (_, at))| now.duration_since(*at) >= response_timeout)
            .map(|(s, _)| *s)
            .collect();
        for seq in expired {
            if let Some((pending, _)) = self.deliveries.remove(&seq) {
                self.settle(pending, crate::messages::Delivery::NoAnswer);
            }
        }
        if self.phase.bound().is_some() {
            match self.keep_alive.check(now, timers.enquire_link, timers.response_timeout) {
                KeepAliveAction::Dead => return Err(Close::KeepAliveDead),
                KeepAliveAction::SendEnquireLink => {
                    let seq = self.seq.next_number();
                    self.put(&Pdu::new(Body::EnquireLink).with_sequence_number(seq))?;
                }
                KeepAliveAction::Wait => {}
            }
        }
        Ok(())
    }

    /// Answers request `pdu` with `status` (its own response type, else generic_nack).
    fn reply(&mut self, pdu: &Pdu, status: CommandStatus) -> Flow {
        let resp = pdu.error_response(status).unwrap_or_else(|| {
            Pdu::new(Body::GenericNack)
                .with_status(status)
                .with_sequence_number(pdu.sequence_number)
        });
        self.put(&resp)
    }

    /// A PDU from the client, handled as far as it goes without waiting; a bind, an unbind and
    /// a query/cancel/replace (a store lookup) come back for [`Client::slow`]. `frame` is the
    /// octets `pdu` was parsed from.
    fn incoming(&mut self, frame: Bytes, pdu: Pdu) -> Result<Option<Pdu>, Close> {
        let id = pdu.command_id();
        if id.is_response() {
            match self.client_unbind {
                Some(_) => self.response_while_unbinding(pdu),
                None => self.response(pdu),
            }
            return Ok(None);
        }
        let is_bind = matches!(
            id,
            CommandId::BIND_TRANSMITTER | CommandId::BIND_RECEIVER | CommandId::BIND_TRANSCEIVER
        );
        if !is_bind {
            self.count_before_bind()?;
        }
        if let Err(status) = self.phase.state().check_request(id) {
            return self.reply(&pdu, status).map(|()| None);
        }
        match id {
            CommandId::BIND_TRANSMITTER
            | CommandId::BIND_RECEIVER
            | CommandId::BIND_TRANSCEIVER
            | CommandId::UNBIND => Ok(Some(pdu)),
            CommandId::ENQUIRE_LINK => self
                .put(&Pdu::new(Body::EnquireLinkResp).with_sequence_number(pdu.sequence_number))
                .map(|()| None),
            // The client unbinding: its state allows no more. The proxy stopping: not now.
            _ if self.client_unbind.is_some() => self.reply(&pdu, CommandStatus::ESME_RINVBNDSTS).map(|()| None),
            _ if self.draining.is_some() => self.reply(&pdu, CommandStatus::ESME_RSYSERR).map(|()| None),
            CommandId::QUERY_SM | CommandId::CANCEL_SM | CommandId::REPLACE_SM => Ok(Some(pdu)),
            _ => self.forward(frame, pdu).map(|()| None),
        }
    }

    /// What [`Client::incoming`] left to wait for: a bind, an unbind, a query/cancel/replace.
    async fn slow(&mut self, pdu: Pdu) -> Flow {
        match pdu.command_id() {
            CommandId::BIND_TRANSMITTER | CommandId::BIND_RECEIVER | CommandId::BIND_TRANSCEIVER => {
                self.bind(pdu).await
            }
            CommandId::UNBIND if self.client_unbind.is_some() => self.reply(&pdu, CommandStatus::ESME_RINVBNDSTS),
            CommandId::UNBIND if self.outstanding == 0 && self.committing.is_empty() => {
                Err(self.unbound_by_client(pdu.sequence_number).await)
            }
            CommandId::UNBIND => {
                // Submits in flight: the upstream took them, and their receipts can be matched
                // only once their answers are mapped and stored. Those answers go to the
                // client first (it reads until its unbind_resp), within UNBIND_WAIT.
                self.client_unbind = Some(pdu.sequence_number);
                self.give_back_place().await;
                let by = Instant::now() + UNBIND_WAIT;
                self.draining = Some(self.draining.map_or(by, |d| d.min(by)));
                Ok(())
            }
            _ => self.forward_mapped(pdu).await,
        }
    }

    /// Checks a bind against the accounts; bound, the session gets its account and events.
    async fn bind(&mut self, pdu: Pdu) -> Flow {
        let (Body::BindTransmitter(b) | Body::BindReceiver(b) | Body::BindTransceiver(b)) = &pdu.body else {
            return Ok(());
        };
        let system_id = String::from_utf8_lossy(b.system_id.as_bytes()).into_owned();
        let receives = pdu.command_id() != CommandId::BIND_TRANSMITTER;
        let ip = self.peer.ip();
        let now = Instant::now();
        let account = self.ctx.live().accounts.get(&system_id).cloned();
        // Watched from before the account is checked again: a reload that removes it
        // afterwards unbinds this bind too; one that removed it before is seen here.
        let kicks = account.as_ref().map(AccountHandle::kicks);
        let account = account.filter(|_| self.ctx.live().accounts.contains_key(&system_id));
        let checked = match self.ctx.guard.auth.banned(ip, now) {
            Some(_) => Err(Denied::Banned),
            None => {
                let config = account.as_ref().map(|a| a.config());
                let checked = self.check_credentials(config.clone(), ip, b.password.as_bytes()).await;
                checked.and_then(|()| config.map_or(Ok(()), |c| self.check_tls(&c)))
            }
        };
        if let Err(why) = checked {
            // Every refusal sounds the same to the caller; the log says which it was.
            let ban = match why {
                Denied::Banned | Denied::Busy => None,
                _ => self.ctx.guard.auth.failed(ip, now),
            };
            static REFUSED: Limiter = Limiter::new(10);
            if let Some(suppressed) = REFUSED.allow() {
                info!(peer = %self.peer, system_id, reason = %why, suppressed, "bind refused");
            }
            if let Some(ban) = ban {
                warn!(%ip, ?ban, "too many failed binds: address banned");
            }
            self.reply(&pdu, CommandStatus::ESME_RBINDFAIL)?;
            return Err(Close::BindRefused);
        }
        let Some(a) = account else {
            return Err(Close::BindRefused);
        };
        let status = if a.binds.fetch_add(1, Ordering::AcqRel) >= a.peek().max_binds {
            a.binds.fetch_sub(1, Ordering::AcqRel);
            CommandStatus::ESME_RBINDFAIL
        } else {
            if receives {
                a.receivers.fetch_add(1, Ordering::AcqRel);
            }
            let status = self.cluster_bind(&a).await;
            if !status.is_ok() {
                a.binds.fetch_sub(1, Ordering::AcqRel);
                if receives {
                    a.receivers.fetch_sub(1, Ordering::AcqRel);
                }
            }
            status
        };
        if !status.is_ok() {
            info!(peer = %self.peer, system_id, %status, "bind refused: max_binds reached");
            self.reply(&pdu, status)?;
            return Err(Close::BindRefused);
        }
        let account = a;
        let mode = match pdu.command_id() {
            CommandId::BIND_TRANSMITTER => SessionState::BoundTx,
            CommandId::BIND_RECEIVER => SessionState::BoundRx,
            _ => SessionState::BoundTrx,
        };
        // Room for two answers per request in the window and a delivery per deliver_window
        // slot, with headroom for a reload that raises either (an mpsc channel allocates as it
        // fills, so headroom costs nothing until used). Beyond it, a raise applies from the
        // next bind: an answer must never find the channel full.
        let (window_cap, deliver_cap) = {
            let c = account.peek();
            (
                c.window.max(WINDOW_HEADROOM),
                c.deliver_window.max(DELIVER_HEADROOM) as usize,
            )
        };
        let capacity = window_cap as usize * 2 + deliver_cap + 64;
        let (events_tx, events_rx) = mpsc::channel(capacity);
        let bind_id = self.ctx.next_bind_id.fetch_add(1, Ordering::Relaxed);
        let slots = Arc::new(Slots::default());
        if mode.can_receive() {
            let up = AccountMsg::BindUp {
                bind_id,
                tx: events_tx.clone(),
                deliver_cap,
                thread: crate::session::threads::current(),
                slots: slots.clone(),
            };
            let _ = account.tx.send(up).await;
            account
                .lanes
                .join(bind_id, events_tx.clone(), slots.clone(), deliver_cap);
        }
        info!(peer = %self.peer, system_id, state = ?mode, "client bound");
        self.admitted.bound();
        self.conn.get_mut().io_mut().set_hard_deadline(None);
        self.phase = Phase::Bound(Bound {
            mode,
            account,
            bind_id,
            events_tx,
            events_rx,
            window_cap,
            slots,
            deliver_cap,
            placed: true,
        });
        self.kicked = kicks.map(|mut kicks| {
            let kick: Pin<Box<dyn Future<Output = ()> + Send + Sync>> = Box::pin(async move {
                if kicks.changed().await.is_err() {
                    std::future::pending::<()>().await;
                }
            });
            kick
        });
        let body = BindResp {
            system_id: COctetString::from_static("smpp-proxy"),
        };
        let body = match pdu.command_id() {
            CommandId::BIND_TRANSMITTER => Body::BindTransmitterResp(Some(body)),
            CommandId::BIND_RECEIVER => Body::BindReceiverResp(Some(body)),
            _ => Body::BindTransceiverResp(Some(body)),
        };
        let tlvs = Tlvs::from_pairs([(tag::sc_interface_version, &[0x34][..])]);
        Ok(self
            .conn
            .send(&Pdu::new(body).with_sequence_number(pdu.sequence_number).with_tlvs(tlvs))
            .await?)
    }

    /// Whether the connection is the TLS the account requires (`tls_required`,
    /// `tls_client_ca`), checked once its credentials are.
    fn check_tls(&self, account: &ClientConfig) -> Result<(), Denied> {
        if !account.tls_required {
            return Ok(());
        }
        let stream = self.conn.get_ref();
        let Some(tls) = stream.is_tls().then_some(self.ctx.tls.as_ref()).flatten() else {
            return Err(Denied::TlsRequired);
        };
        if account.tls_client_ca.is_none() {
            return Ok(());
        }
        tls.check_client(&account.system_id, stream.peer_certificates())
            .map_err(|refusal| match refusal {
                CertRefusal::Missing => Denied::CertificateMissing,
                CertRefusal::NotTrusted => Denied::CertificateNotTrusted,
            })
    }

    /// [`auth::check`]; an argon2 hash is checked on a blocking thread (tens of
    /// milliseconds), and when any account is hashed an unknown system_id costs the same.
    async fn check_credentials(
        &self,
        account: Option<Arc<ClientConfig>>,
        ip: std::net::IpAddr,
        password: &[u8],
    ) -> Result<(), Denied> {
        let hashed = |c: &ClientConfig| matches!(c.password, Credential::Hash(_));
        let slow = match &account {
            Some(a) => hashed(a),
            None => self.ctx.live().config.clients.values().any(hashed),
        };
        if !slow {
            return auth::check(account.as_deref(), ip, password);
        }
        // Each check takes ~19 MiB and tens of milliseconds: a few at a time, whoever asks.
        static HASHING: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(4);
        let Ok(_permit) = HASHING.try_acquire() else {
            return Err(Denied::Busy);
        };
        let password = password.to_vec();
        tokio::task::spawn_blocking(move || {
            if account.is_none() {
                auth::verify_nothing(&password);
            }
            auth::check(account.as_deref(), ip, &password)
        })
        .await
        .unwrap_or(Err(Denied::WrongPassword))
    }

    /// Answers the client's unbind (sequence number `seq`) and ends the session once the
    /// client answered what it was sent.
    async fn unbound_by_client(&mut self, seq: u32) -> Close {
        // Before the client reads its unbind_resp: it may bind again at once.
        self.give_back_place().await;
        let answered = self.put(&Pdu::new(Body::UnbindResp).with_sequence_number(seq));
        if let Err(close) = answered {
            return close;
        }
        if let Err(e) = crate::pdu::codec::flush(&mut self.conn).await {
            return e.into();
        }
        self.leave_after_answers(None).await;
        Close::UnboundByClient
    }

    /// Unbinds the client (a stop, `client unbind`, the account removed) and waits briefly
    /// for its unbind_resp, taking the answers to deliveries that come meanwhile.
    async fn unbind(&mut self) {
        let seq = self.seq.next_number();
        if self
            .conn
            .send(&Pdu::new(Body::Unbind).with_sequence_number(seq))
            .await
            .is_err()
        {
            return;
        }
        self.leave_after_answers(Some(seq)).await;
    }

    /// [`Client::leave`] once the client answered what it was sent. The session is unbinding
    /// (the client's unbind answered, or ours sent with sequence number `ours`), and the
    /// client may still answer deliveries it read before: while it waits for its unbind_resp,
    /// or before it sends the one to ours. Those answers are taken (until every delivery is
    /// answered and our unbind's unbind_resp came, the client closed, or [`UNBIND_WAIT`]
    /// passed), so that what the client took is not handed to another bind again: only what
    /// stays unanswered goes back to the account. No delivery is written meanwhile: one
    /// handed over goes back at once, which tells the account this bind takes no more.
    async fn leave_after_answers(&mut self, ours: Option<u32>) {
        self.give_back_place().await;
        let mut unbound = ours.is_none();
        let deadline = tokio::time::Instant::now() + UNBIND_WAIT;
        while !(unbound && self.deliveries.is_empty()) {
            let flow = tokio::select! {
                read = tokio::time::timeout_at(deadline, self.conn.next()) => match read.map(parsed) {
                    Ok(Some(Ok(Ok((_, pdu))))) => self.while_unbinding(pdu, ours, &mut unbound),
                    // Malformed: not an answer to anything.
                    Ok(Some(Ok(Err(_)))) => Ok(()),
                    // Closed, unreadable, or out of time.
                    _ => break,
                },
                Some(event) = next_event(&mut self.phase) => {
                    self.not_now(event);
                    Ok(())
                }
                // Late answers (see `not_now`) whose correlations are now stored.
                committed = self.committing.oldest(), if self.committing.in_store() => {
                    self.on_committed(Some(committed))
                }
            };
            if flow.is_err() {
                break;
            }
            // Within the wait: a client that sends but does not read holds no stop up.
            if !self.conn.write_buffer().is_empty()
                && !matches!(
                    tokio::time::timeout_at(deadline, crate::pdu::codec::flush(&mut self.conn)).await,
                    Ok(Ok(()))
                )
            {
                break;
            }
            self.announce_answers();
            self.send_to_account().await;
        }
        self.leave().await;
    }

    /// A PDU from a client that is unbinding (see [`Client::leave_after_answers`]). Answers
    /// settle their deliveries; of requests, an enquire_link is answered, an unbind that
    /// crosses ours is answered and ends the wait as its unbind_resp would, and the rest are
    /// refused as the state allows them no more.
    fn while_unbinding(&mut self, pdu: Pdu, ours: Option<u32>, unbound: &mut bool) -> Flow {
        let id = pdu.command_id();
        match id {
            CommandId::UNBIND_RESP => *unbound = true,
            // Our unbind refused: the client is done with the session all the same.
            CommandId::GENERIC_NACK if ours == Some(pdu.sequence_number) => *unbound = true,
            _ if id.is_response() => self.response_while_unbinding(pdu),
            CommandId::ENQUIRE_LINK => return self.reply(&pdu, CommandStatus::ESME_ROK),
            CommandId::UNBIND if ours.is_some() => {
                *unbound = true;
                return self.reply(&pdu, CommandStatus::ESME_ROK);
            }
            _ => return self.reply(&pdu, CommandStatus::ESME_RINVBNDSTS),
        }
        Ok(())
    }

    /// In a cluster, `max_binds` holds for all nodes: the bind is counted there too (this
    /// node's counts already have it). A store that does not answer leaves it to this node's
    /// limit; the next upkeep tells the cluster.
    async fn cluster_bind(&self, account: &AccountHandle) -> CommandStatus {
        let Some(cluster) = &self.ctx.cluster else {
            return CommandStatus::ESME_ROK;
        };
        match cluster
            .bind(&account.system_id, account.peek().max_binds, account.here())
            .await
        {
            Ok(true) => CommandStatus::ESME_ROK,
            Ok(false) => CommandStatus::ESME_RBINDFAIL,
            Err(e) => {
                warn!(error = %e, "cluster binds not counted (store unreachable): this node's limit applies");
                CommandStatus::ESME_ROK
            }
        }
    }

    /// Leaves the bound phase (if bound): gives back the bind's place in `max_binds` (on this
    /// node and in the cluster) and, to the account, what it had in flight to this bind.
    async fn leave(&mut self) {
        let returned = self.take_direct();
        self.announce_answers();
        self.send_to_account().await;
        self.give_back_place().await;
        // Answers still waiting for their commits will not be written; what their commits
        // release (receipts held for those correlations) must still be released.
        self.committing.record(&*self.ctx.store);
        if !self.committing.is_empty() {
            tokio::spawn(std::mem::take(&mut self.committing).release(self.ctx.clone()));
        }
        if let Phase::Bound(b) = std::mem::replace(&mut self.phase, Phase::Unbound) {
            let _ = b.account.tx.send(AccountMsg::BindDown { bind_id: b.bind_id }).await;
            // After the bind is gone from the account: they go to another bind, or the store.
            for direct in returned {
                let msg = AccountMsg::Returned {
                    bind_id: b.bind_id,
                    direct,
                    outcome: crate::messages::Delivery::NotSent,
                };
                let _ = b.account.tx.send(msg).await;
            }
        }
    }

    /// Gives back the bind's place in `max_binds` (on this node and in the cluster), once, and
    /// takes no more direct deliveries. An unbinding session takes nothing new, and its client
    /// may already be binding again (a client with `max_binds = 1` that unbinds and binds at
    /// once must not be refused). In a cluster, this count may reach the store after another
    /// node counted the new bind; the next upkeep sets it right.
    async fn give_back_place(&mut self) {
        let Phase::Bound(b) = &mut self.phase else { return };
        b.account.lanes.leave(b.bind_id);
        if !std::mem::take(&mut b.placed) {
            return;
        }
        b.account.binds.fetch_sub(1, Ordering::AcqRel);
        if b.mode.can_receive() {
            b.account.receivers.fetch_sub(1, Ordering::AcqRel);
        }
        if let Some(cluster) = &self.ctx.cluster {
            if let Err(e) = cluster.set_binds(&b.account.system_id, b.account.here()).await {
                warn!(error = %e, "cluster unbind not counted (store unreachable): the next upkeep tells it");
            }
        }
    }

    /// The direct deliveries this bind holds as it goes, sent or not: none is lost with it.
    /// The lane takes no more first, and the channel closes, so none can come after.
    fn take_direct(&mut self) -> Vec<Direct> {
        let Phase::Bound(b) = &mut self.phase else {
            return Vec::new();
        };
        b.account.lanes.leave(b.bind_id);
        b.events_rx.close();
        let (mut returned, mut answers) = (Vec::new(), Vec::new());
        while let Ok(event) = b.events_rx.try_recv() {
            match event {
                ClientEvent::Direct(direct) => returned.push(direct),
                ClientEvent::Answer(outcome) => answers.push(outcome),
                ClientEvent::Deliver { .. } => {}
            }
        }
        for (_, (pending, _)) in self.deliveries.drain() {
            if let Pending::Direct(direct) = pending {
                returned.push(direct);
            }
        }
        for _ in &returned {
            b.account.lanes.settled();
        }
        for outcome in answers {
            self.late_answer(outcome);
        }
        returned
    }
}
