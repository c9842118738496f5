//! One client session task: the proxy as an SMSC to one ESME connection.
//!
//! It owns the socket and the session state ([`SessionState`]): binds against the account's
//! credentials, enforces the state table, the account's window and tps, forwards requests to the
//! router, and writes back what comes in on its event channel (answers from upstreams, receipts
//! and MO from its account). Message ids are mapped here: an upstream's submit_sm_resp id is
//! recorded with the id the client gets before the client sees it; query/cancel/replace
//! carrying the client's id go to the upstream that took the message, with that upstream's id.

use crate::account::AccountHandle;
use crate::context::Context;
use crate::messages::{AccountMsg, ClientEvent, Forward, Outcome, RequestInfo};
use crate::pdu::body::{BindResp, MessageIdResp};
use crate::pdu::{tag, Body, COctetString, CommandId, CommandStatus, FrameError, Pdu, SmppCodec, Tlvs};
use crate::receipt::id::IdMatch;
use crate::session::{KeepAlive, KeepAliveAction, Sequence, SessionState};
use crate::store::{Commit, Correlation, StoreError};
use futures_util::{SinkExt, StreamExt};
use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};
use tokio_util::codec::Framed;
use tracing::{debug, info, warn};

/// A request routed this often (throttled by SMSCs or bounced each time) is answered
/// ESME_RTHROTTLED.
const MAX_ATTEMPTS: u8 = 32;
/// How often queued requests look for upstream window again (answers also wake them).
const QUEUE_RETRY: Duration = Duration::from_millis(2);

/// An answer held until its correlation is durable.
struct Committing {
    resp: Pdu,
    commit: Commit,
    correlation: Arc<Correlation>,
}

/// Where a query/cancel/replace in flight must go, and the client's id to put back.
struct Mapped {
    upstream: Arc<str>,
    client_id: COctetString,
}

struct Client {
    ctx: Arc<Context>,
    conn: Framed<TcpStream, SmppCodec>,
    peer: SocketAddr,
    state: SessionState,
    account: Option<AccountHandle>,
    bind_id: u64,
    events: Option<(mpsc::Sender<ClientEvent>, mpsc::Receiver<ClientEvent>)>,
    outstanding: u32,
    seq: Sequence,
    deliveries: HashMap<u32, (u64, Instant)>,
    mapped: HashMap<u32, Mapped>,
    /// Requests within the client's window waiting for upstream window (oldest first), with
    /// when they started waiting. Bounded by the window; past `queue_timeout`: ESME_RTHROTTLED.
    queue: VecDeque<(Forward, Instant)>,
    /// Answers waiting for their correlations to be durable, oldest first. The session goes on
    /// serving meanwhile; each is written when its commit resolves.
    committing: VecDeque<Committing>,
    keep_alive: KeepAlive,
    /// The time as of the last tick (timers are coarse; a clock read per PDU is not free).
    now: Instant,
    draining: bool,
}

/// Serves one connection until it closes or the proxy shuts down.
pub async fn run(ctx: Arc<Context>, stream: TcpStream, peer: SocketAddr, shutdown: watch::Receiver<bool>) {
    let _ = stream.set_nodelay(true);
    let codec = SmppCodec::with_max_len(ctx.config.client_sessions.max_pdu_len);
    let mut client = Client {
        ctx,
        conn: Framed::new(stream, codec),
        peer,
        state: SessionState::Open,
        account: None,
        bind_id: 0,
        events: None,
        outstanding: 0,
        seq: Sequence::default(),
        deliveries: HashMap::new(),
        mapped: HashMap::new(),
        queue: VecDeque::new(),
        committing: VecDeque::new(),
        keep_alive: KeepAlive::new(Instant::now()),
        now: Instant::now(),
        draining: false,
    };
    let reason = client.serve(shutdown).await;
    debug!(peer = %peer, reason, "client connection closed");
    client.release().await;
}

async fn oldest_commit(committing: &mut VecDeque<Committing>) -> Result<u64, StoreError> {
    match committing.front_mut() {
        Some(c) => (&mut c.commit).await,
        None => std::future::pending().await,
    }
}

async fn next_event(
    events: &mut Option<(mpsc::Sender<ClientEvent>, mpsc::Receiver<ClientEvent>)>,
) -> Option<ClientEvent> {
    match events {
        Some((_, rx)) => rx.recv().await,
        None => std::future::pending().await,
    }
}

impl Client {
    fn system_id(&self) -> &str {
        self.account.as_ref().map_or("-", |a| a.config.system_id.as_str())
    }

    async fn serve(&mut self, mut shutdown: watch::Receiver<bool>) -> &'static str {
        let timers = self.ctx.config.client_sessions.clone();
        let bind_deadline = Instant::now() + timers.bind_timeout;
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        let mut drain_deadline: Option<Instant> = None;
        loop {
            let result: Result<Option<&'static str>, FrameError> = tokio::select! {
                changed = shutdown.changed(), if !self.draining => {
                    if changed.is_err() || *shutdown.borrow() {
                        if !self.state.is_bound() {
                            return "shutdown";
                        }
                        self.draining = true;
                        drain_deadline = Some(Instant::now() + Duration::from_secs(5));
                    }
                    Ok(None)
                }
                item = self.conn.next() => match item {
                    None => return "closed by client",
                    Some(Err(e)) => {
                        if let Some(reply) = e.reply() {
                            let _ = self.conn.send(&reply).await;
                        }
                        warn!(peer = %self.peer, client = self.system_id(), error = %e, "framing error: closing");
                        return "framing error";
                    }
                    Some(Ok(Err(e))) => {
                        debug!(peer = %self.peer, error = %e, "malformed PDU");
                        match e.reply() {
                            Some(reply) => self.conn.send(&reply).await.map(|_| None),
                            None => Ok(None),
                        }
                    }
                    Some(Ok(Ok(pdu))) => {
                        self.keep_alive.heard(self.now);
                        self.incoming(pdu).await
                    }
                },
                Some(event) = next_event(&mut self.events) => self.events(event).await.map(|_| None),
                committed = oldest_commit(&mut self.committing), if !self.committing.is_empty() => {
                    self.on_committed(committed).await.map(|_| None)
                }
                _ = tokio::time::sleep(QUEUE_RETRY), if !self.queue.is_empty() => self.drain_queue().await.map(|_| None),
                _ = tick.tick() => self.on_tick(bind_deadline, &timers).await,
            };
            match result {
                Ok(None) => {}
                Ok(Some(reason)) => return reason,
                Err(e) => {
                    debug!(peer = %self.peer, error = %e, "write failed");
                    return "write failed";
                }
            }
            if let Some(deadline) = drain_deadline {
                if (self.outstanding == 0 && self.committing.is_empty()) || Instant::now() >= deadline {
                    self.unbind().await;
                    return "unbound for shutdown";
                }
            }
        }
    }

    async fn on_tick(
        &mut self,
        bind_deadline: Instant,
        timers: &crate::config::ClientSessionConfig,
    ) -> Result<Option<&'static str>, FrameError> {
        let now = Instant::now();
        self.now = now;
        if self.state == SessionState::Open && now >= bind_deadline {
            info!(peer = %self.peer, "no bind in time: closing");
            return Ok(Some("bind timeout"));
        }
        let expired: Vec<u32> = self
            .deliveries
            .iter()
            .filter(|(_, (_, at))| now.duration_since(*at) >= timers.response_timeout)
            .map(|(s, _)| *s)
            .collect();
        for seq in expired {
            if let Some((entry, _)) = self.deliveries.remove(&seq) {
                self.delivered(entry, CommandStatus::ESME_RX_T_APPN).await;
            }
        }
        if self.state.is_bound() {
            match self.keep_alive.check(now, timers.enquire_link, timers.response_timeout) {
                KeepAliveAction::Dead => return Ok(Some("enquire_link unanswered")),
                KeepAliveAction::SendEnquireLink => {
                    let seq = self.seq.next_number();
                    self.conn
                        .send(&Pdu::new(Body::EnquireLink).with_sequence_number(seq))
                        .await?;
                }
                KeepAliveAction::Wait => {}
            }
        }
        Ok(None)
    }

    async fn reply(&mut self, pdu: &Pdu, status: CommandStatus) -> Result<(), FrameError> {
        let resp = pdu.error_response(status).unwrap_or_else(|| {
            Pdu::new(Body::GenericNack)
                .with_status(status)
                .with_sequence_number(pdu.sequence_number)
        });
        self.conn.send(&resp).await
    }

    async fn incoming(&mut self, pdu: Pdu) -> Result<Option<&'static str>, FrameError> {
        let id = pdu.command_id();
        if id.is_response() {
            self.response(pdu).await;
            return Ok(None);
        }
        if let Err(status) = self.state.check_request(id) {
            self.reply(&pdu, status).await?;
            return Ok(None);
        }
        match id {
            CommandId::BIND_TRANSMITTER | CommandId::BIND_RECEIVER | CommandId::BIND_TRANSCEIVER => {
                self.bind(pdu).await?
            }
            CommandId::ENQUIRE_LINK => {
                self.conn
                    .send(&Pdu::new(Body::EnquireLinkResp).with_sequence_number(pdu.sequence_number))
                    .await?
            }
            CommandId::UNBIND => {
                self.conn
                    .send(&Pdu::new(Body::UnbindResp).with_sequence_number(pdu.sequence_number))
                    .await?;
                self.state = SessionState::Unbound;
                return Ok(Some("unbound by client"));
            }
            _ if self.draining => self.reply(&pdu, CommandStatus::ESME_RSYSERR).await?,
            CommandId::QUERY_SM | CommandId::CANCEL_SM | CommandId::REPLACE_SM => self.forward_mapped(pdu).await?,
            _ => self.forward(pdu).await?,
        }
        Ok(None)
    }

    async fn bind(&mut self, pdu: Pdu) -> Result<(), FrameError> {
        let (Body::BindTransmitter(b) | Body::BindReceiver(b) | Body::BindTransceiver(b)) = &pdu.body else {
            return Ok(());
        };
        let system_id = String::from_utf8_lossy(b.system_id.as_bytes()).into_owned();
        let status = match self.ctx.accounts.get(&system_id) {
            None => CommandStatus::ESME_RINVSYSID,
            Some(a) if a.config.password.as_bytes() != b.password.as_bytes() => CommandStatus::ESME_RINVPASWD,
            Some(a) if !a.config.allow.iter().any(|net| net.contains(self.peer.ip())) => CommandStatus::ESME_RBINDFAIL,
            Some(a) if a.binds.fetch_add(1, Ordering::AcqRel) >= a.config.max_binds => {
                a.binds.fetch_sub(1, Ordering::AcqRel);
                CommandStatus::ESME_RBINDFAIL
            }
            Some(_) => CommandStatus::ESME_ROK,
        };
        if !status.is_ok() {
            // Never the password: the system_id and why.
            info!(peer = %self.peer, system_id, %status, "bind refused");
            return self.reply(&pdu, status).await;
        }
        let account = self.ctx.accounts[&system_id].clone();
        self.state = match pdu.command_id() {
            CommandId::BIND_TRANSMITTER => SessionState::BoundTx,
            CommandId::BIND_RECEIVER => SessionState::BoundRx,
            _ => SessionState::BoundTrx,
        };
        let capacity = (account.config.window as usize) * 2 + account.config.deliver_window as usize + 64;
        let (tx, rx) = mpsc::channel(capacity);
        self.bind_id = self.ctx.next_bind_id.fetch_add(1, Ordering::Relaxed);
        if self.state.can_receive() {
            let _ = account
                .tx
                .send(AccountMsg::BindUp {
                    bind_id: self.bind_id,
                    tx: tx.clone(),
                })
                .await;
        }
        self.events = Some((tx, rx));
        self.account = Some(account);
        info!(peer = %self.peer, system_id, state = ?self.state, "client bound");
        let body = BindResp {
            system_id: COctetString::from_static("smpp-proxy"),
        };
        let body = match pdu.command_id() {
            CommandId::BIND_TRANSMITTER => Body::BindTransmitterResp(Some(body)),
            CommandId::BIND_RECEIVER => Body::BindReceiverResp(Some(body)),
            _ => Body::BindTransceiverResp(Some(body)),
        };
        let tlvs = Tlvs::from_pairs([(tag::sc_interface_version, &[0x34][..])]);
        self.conn
            .send(&Pdu::new(body).with_sequence_number(pdu.sequence_number).with_tlvs(tlvs))
            .await
    }

    fn new_forward(&self, pdu: Pdu) -> Forward {
        let reply = self.events.as_ref().expect("bound").0.clone();
        Forward { pdu, reply, attempt: 0 }
    }

    /// submit_sm, data_sm, submit_multi and the broadcast family: to the account's group.
    async fn forward(&mut self, pdu: Pdu) -> Result<(), FrameError> {
        let account = self.account.as_ref().expect("bound");
        if self.outstanding >= account.config.window || !account.bucket.try_take() {
            return self.reply(&pdu, CommandStatus::ESME_RTHROTTLED).await;
        }
        self.outstanding += 1;
        let fwd = self.new_forward(pdu);
        self.send_or_queue(fwd).await?;
        crate::pdu::codec::flush(&mut self.conn).await
    }

    /// Hands a request to the router: the SMSC that took the message for query/cancel/replace,
    /// the account's group otherwise.
    fn route(&self, fwd: Forward) -> Result<(), (Forward, CommandStatus)> {
        match self.mapped.get(&fwd.pdu.sequence_number) {
            Some(m) => self.ctx.router.dispatch_to_upstream(&m.upstream, fwd),
            None => match self.account.as_ref() {
                Some(a) => self.ctx.router.dispatch(&a.system_id, a.group, fwd),
                None => Err((fwd, CommandStatus::ESME_RINVBNDSTS)),
            },
        }
    }

    /// Routes a request (already counted in `outstanding`), or queues it while every upstream
    /// session is full or throttled: the client's window bounds the queue, so the client is told
    /// ESME_RTHROTTLED only for its own limits or an upstream stuck for `queue_timeout`.
    async fn send_or_queue(&mut self, fwd: Forward) -> Result<(), FrameError> {
        if !self.queue.is_empty() {
            self.queue.push_back((fwd, self.now));
            return Ok(());
        }
        match self.route(fwd) {
            Ok(()) => Ok(()),
            Err((fwd, CommandStatus::ESME_RTHROTTLED)) => {
                self.queue.push_back((fwd, self.now));
                Ok(())
            }
            Err((fwd, status)) => self.give_up(&fwd, status).await,
        }
    }

    /// Routes what waits in the queue, oldest first, as far as upstream window allows.
    async fn drain_queue(&mut self) -> Result<(), FrameError> {
        let timeout = self.ctx.config.client_sessions.queue_timeout;
        while let Some((fwd, since)) = self.queue.pop_front() {
            if since.elapsed() >= timeout {
                self.give_up(&fwd, CommandStatus::ESME_RTHROTTLED).await?;
                continue;
            }
            match self.route(fwd) {
                Ok(()) => {}
                Err((fwd, CommandStatus::ESME_RTHROTTLED)) => {
                    self.queue.push_front((fwd, since));
                    break;
                }
                Err((fwd, status)) => self.give_up(&fwd, status).await?,
            }
        }
        crate::pdu::codec::flush(&mut self.conn).await
    }

    /// Answers a request that will not be sent with `status`.
    async fn give_up(&mut self, fwd: &Forward, status: CommandStatus) -> Result<(), FrameError> {
        self.outstanding = self.outstanding.saturating_sub(1);
        self.mapped.remove(&fwd.pdu.sequence_number);
        let resp = fwd
            .pdu
            .error_response(status)
            .unwrap_or_else(|| Pdu::new(Body::GenericNack).with_status(status));
        self.conn.feed(&resp).await
    }

    /// query_sm, cancel_sm, replace_sm: to the upstream that took the message, with its id.
    async fn forward_mapped(&mut self, mut pdu: Pdu) -> Result<(), FrameError> {
        let account = self.account.as_ref().expect("bound");
        if self.outstanding >= account.config.window {
            return self.reply(&pdu, CommandStatus::ESME_RTHROTTLED).await;
        }
        let client_id = pdu.message_id().cloned().unwrap_or_default();
        let found = self.ctx.store.find_by_client(
            &account.config.system_id,
            &String::from_utf8_lossy(client_id.as_bytes()),
        );
        let correlation = match found {
            Ok(Some(c)) => c,
            Ok(None) => return self.reply(&pdu, CommandStatus::ESME_RINVMSGID).await,
            Err(e) => {
                warn!(error = %e, "store lookup failed");
                return self.reply(&pdu, CommandStatus::ESME_RSYSERR).await;
            }
        };
        let upstream_id = COctetString::new(correlation.upstream_id.clone().into_bytes()).unwrap_or_default();
        match &mut pdu.body {
            Body::QuerySm(b) => b.message_id = upstream_id,
            Body::CancelSm(b) => b.message_id = upstream_id,
            Body::ReplaceSm(b) => b.message_id = upstream_id,
            _ => {}
        }
        self.mapped.insert(
            pdu.sequence_number,
            Mapped {
                upstream: correlation.upstream.clone(),
                client_id,
            },
        );
        self.outstanding += 1;
        let fwd = self.new_forward(pdu);
        self.send_or_queue(fwd).await?;
        crate::pdu::codec::flush(&mut self.conn).await
    }

    async fn response(&mut self, pdu: Pdu) {
        match pdu.command_id() {
            CommandId::ENQUIRE_LINK_RESP => self.keep_alive.answered(),
            CommandId::DELIVER_SM_RESP | CommandId::DATA_SM_RESP | CommandId::GENERIC_NACK => {
                if let Some((entry, _)) = self.deliveries.remove(&pdu.sequence_number) {
                    let status = if pdu.command_id() == CommandId::GENERIC_NACK {
                        CommandStatus::ESME_RX_T_APPN
                    } else {
                        pdu.command_status
                    };
                    self.delivered(entry, status).await;
                }
            }
            _ => {}
        }
    }

    async fn delivered(&mut self, entry: u64, status: CommandStatus) {
        if let Some(a) = &self.account {
            let _ =
                a.tx.send(AccountMsg::Delivered {
                    bind_id: self.bind_id,
                    entry,
                    status,
                })
                .await;
        }
    }

    async fn events(&mut self, first: ClientEvent) -> Result<(), FrameError> {
        self.event(first).await?;
        // Answers free upstream window: queued requests go first.
        if !self.queue.is_empty() {
            self.drain_queue().await?;
        }
        for _ in 0..64 {
            let Some(Ok(event)) = self.events.as_mut().map(|(_, rx)| rx.try_recv()) else {
                break;
            };
            self.event(event).await?;
        }
        crate::pdu::codec::flush(&mut self.conn).await
    }

    async fn event(&mut self, event: ClientEvent) -> Result<(), FrameError> {
        match event {
            ClientEvent::Answer(Outcome::Answered {
                upstream,
                id_match,
                request,
                resp,
            }) => {
                self.outstanding = self.outstanding.saturating_sub(1);
                match self.map_answer(upstream, id_match, request, resp) {
                    Some(resp) => self.conn.feed(&resp).await,
                    None => Ok(()),
                }
            }
            ClientEvent::Answer(Outcome::Failed {
                client_seq,
                command,
                status,
            }) => {
                self.outstanding = self.outstanding.saturating_sub(1);
                self.mapped.remove(&client_seq);
                let resp = command
                    .response()
                    .and_then(Body::empty_response)
                    .map_or_else(|| Pdu::new(Body::GenericNack), Pdu::new)
                    .with_status(status)
                    .with_sequence_number(client_seq);
                self.conn.feed(&resp).await
            }
            ClientEvent::Answer(Outcome::Retry(mut fwd)) => {
                fwd.attempt += 1;
                if fwd.attempt > MAX_ATTEMPTS {
                    return self.give_up(&fwd, CommandStatus::ESME_RTHROTTLED).await;
                }
                self.send_or_queue(fwd).await
            }
            ClientEvent::Deliver { entry, mut pdu } => {
                if !self.state.can_receive() || self.draining {
                    self.delivered(entry, CommandStatus::ESME_RX_T_APPN).await;
                    return Ok(());
                }
                let seq = self.seq.next_number();
                pdu.sequence_number = seq;
                self.deliveries.insert(seq, (entry, self.now));
                self.conn.feed(&pdu).await
            }
        }
    }

    /// The upstream's answer as the client must see it: its sequence number (already set), and
    /// the client's message id in place of the upstream's.
    /// `None` when the answer waits for its correlation to be stored (`self.committing`).
    fn map_answer(
        &mut self,
        upstream: Arc<str>,
        id_match: IdMatch,
        request: Option<RequestInfo>,
        mut resp: Pdu,
    ) -> Option<Pdu> {
        if let Some(m) = self.mapped.remove(&resp.sequence_number) {
            if let Body::QuerySmResp(Some(b)) = &mut resp.body {
                b.message_id = m.client_id;
            }
            return Some(resp);
        }
        if !resp.command_status.is_ok() {
            return Some(resp);
        }
        let Some(upstream_id) = resp
            .message_id()
            .map(|id| String::from_utf8_lossy(id.as_bytes()).into_owned())
        else {
            return Some(resp);
        };
        let account = self.account.as_ref().expect("bound");
        let client_id = self.ctx.ids.next(account.config.message_id_format, &upstream_id);
        let Some(RequestInfo {
            registered_delivery,
            source_addr,
            destination_addr,
            part,
        }) = request
        else {
            return Some(resp);
        };
        let correlation = Arc::new(Correlation {
            upstream,
            upstream_id,
            client: account.system_id.clone(),
            client_id: client_id.clone(),
            submitted_at: SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()),
            registered_delivery,
            source_addr: String::from_utf8_lossy(source_addr.as_bytes()).into_owned(),
            destination_addr: String::from_utf8_lossy(destination_addr.as_bytes()).into_owned(),
            part,
        });
        let commit = self.ctx.store.record(correlation.clone(), id_match);
        let id = COctetString::new(client_id.into_bytes()).unwrap_or_default();
        match &mut resp.body {
            Body::SubmitSmResp(Some(b)) | Body::DataSmResp(Some(b)) => *b = MessageIdResp { message_id: id },
            Body::SubmitMultiResp(Some(b)) => b.message_id = id,
            _ => {}
        }
        // The client sees the id only once the correlation is durable (see `finish_commits`),
        // so a receipt can never outrun it.
        self.committing.push_back(Committing {
            resp,
            commit,
            correlation,
        });
        None
    }

    /// Writes the answers whose correlations are now durable, oldest first; `first` is the
    /// outcome of the oldest one's commit. The store commits in groups, so the ones behind it
    /// are usually done too.
    async fn on_committed(&mut self, first: Result<u64, StoreError>) -> Result<(), FrameError> {
        let mut result = Some(first);
        while let Some(front) = self.committing.front_mut() {
            let outcome = match result.take() {
                Some(r) => r,
                None => match futures_util::FutureExt::now_or_never(&mut front.commit) {
                    Some(r) => r,
                    None => break,
                },
            };
            let Committing { resp, correlation, .. } = self.committing.pop_front().expect("front exists");
            match outcome {
                Ok(_) => {
                    self.ctx.correlation_recorded(&correlation);
                    self.conn.feed(&resp).await?;
                }
                Err(e) => {
                    warn!(error = %e, "correlation not recorded: client told ESME_RSYSERR");
                    let failed = Body::empty_response(resp.command_id()).map(|body| {
                        Pdu::new(body)
                            .with_status(CommandStatus::ESME_RSYSERR)
                            .with_sequence_number(resp.sequence_number)
                    });
                    self.conn.feed(&failed.unwrap_or(resp)).await?;
                }
            }
        }
        crate::pdu::codec::flush(&mut self.conn).await
    }

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
        self.state = SessionState::Unbound;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
        while let Ok(Some(Ok(Ok(pdu)))) = tokio::time::timeout_at(deadline, self.conn.next()).await {
            if pdu.command_id() == CommandId::UNBIND_RESP {
                return;
            }
        }
    }

    /// Gives back what this bind held: its place in `max_binds` and its deliveries in flight.
    async fn release(&mut self) {
        if let Some(account) = self.account.take() {
            account.binds.fetch_sub(1, Ordering::AcqRel);
            if self.bind_id != 0 {
                let _ = account.tx.send(AccountMsg::BindDown { bind_id: self.bind_id }).await;
            }
        }
    }
}
