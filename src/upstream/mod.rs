//! The proxy as an ESME: sessions to the upstream SMSCs.
//!
//! Each configured session is one task ([`session::run`]) that owns its socket, binds, keeps
//! the bind alive, and reconnects with jittered backoff; it never holds two sockets for one
//! configured session. Requests reach it through a bounded channel (capacity = its window),
//! each with an [`InFlight`] guard that counts it until it is done, whichever way that is;
//! the router reads its [`SessionHandle`] (bound? how much window free?) and its upstream's
//! [`Load`] to choose. Receipts and MO it receives go to an [`InboundSink`] (the proxy's
//! receipt path).
//!
//! An upstream's [`Mode`] is the operator's (admin API): drained, it takes no new traffic but
//! stays bound for answers and receipts; paused, its sessions unbind until it is enabled.
//! A session is retired (a reload removed or changed its upstream) through its own token: it
//! takes nothing new, waits for its answers, unbinds and ends.

pub mod load;
pub mod session;

use crate::config::{BindMode, UpstreamConfig};
use crate::messages::{DeliverAck, Forward};
use crate::pdu::CommandStatus;
use crate::pdu::Pdu;
use crate::session::{SharedBucket, TokenBucket};
use bytes::Bytes;
use load::Load;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU8, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

/// What every session of one upstream shares.
#[derive(Debug)]
pub struct UpstreamInfo {
    /// The upstream's name.
    pub name: Arc<str>,
    /// Its configuration.
    pub config: UpstreamConfig,
    /// Its tps cap, across its sessions.
    pub bucket: SharedBucket,
    /// What its traffic measures (latency, rate, throttles, errors), for the router; carried
    /// over when a reload changes the upstream.
    pub load: Arc<Load>,
    /// What the operator set (drain, pause); carried over when a reload changes the upstream.
    pub mode: Arc<ModeCell>,
    /// Cancelled once this version of the upstream is gone (removed or changed by a reload):
    /// ends what serves its bucket.
    pub retired: CancellationToken,
}

impl UpstreamInfo {
    /// An upstream as `config` says, taking from `bucket`; `before` is the version a reload
    /// replaces (its measurements and mode carry over).
    pub fn new(
        config: UpstreamConfig,
        bucket: SharedBucket,
        retired: CancellationToken,
        before: Option<&UpstreamInfo>,
    ) -> Arc<UpstreamInfo> {
        Arc::new(UpstreamInfo {
            name: Arc::from(config.name.as_str()),
            config,
            bucket,
            load: before.map_or_else(|| Arc::new(Load::new(Instant::now())), |b| b.load.clone()),
            mode: before.map_or_else(|| Arc::new(ModeCell::default()), |b| b.mode.clone()),
            retired,
        })
    }
}

/// What an operator set for an upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// In rotation (the usual).
    #[default]
    Enabled,
    /// No new traffic; bound, answers and receipts still read.
    Draining,
    /// Unbound until enabled.
    Paused,
}

impl Mode {
    /// As `/status` and the admin API say it.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Enabled => "enabled",
            Mode::Draining => "draining",
            Mode::Paused => "paused",
        }
    }

    /// From [`Mode::as_str`]'s words.
    pub fn parse(word: &str) -> Option<Mode> {
        [Mode::Enabled, Mode::Draining, Mode::Paused]
            .into_iter()
            .find(|m| m.as_str() == word)
    }
}

/// An upstream's [`Mode`]: read by the router on every pick (an atomic), watched by its
/// sessions (a pause unbinds them, an enable binds them again).
#[derive(Debug)]
pub struct ModeCell {
    now: AtomicU8,
    tx: watch::Sender<Mode>,
}

impl Default for ModeCell {
    fn default() -> ModeCell {
        ModeCell {
            now: AtomicU8::new(Mode::Enabled as u8),
            tx: watch::Sender::new(Mode::Enabled),
        }
    }
}

impl ModeCell {
    /// The mode now.
    pub fn get(&self) -> Mode {
        match self.now.load(Ordering::Acquire) {
            1 => Mode::Draining,
            2 => Mode::Paused,
            _ => Mode::Enabled,
        }
    }

    /// Sets it; gives the one it replaced.
    pub fn set(&self, mode: Mode) -> Mode {
        self.now.store(mode as u8, Ordering::Release);
        self.tx.send_replace(mode)
    }

    /// Told of every change.
    pub fn subscribe(&self) -> watch::Receiver<Mode> {
        self.tx.subscribe()
    }
}

/// Where receipts and MO from upstreams go.
pub trait InboundSink: Send + Sync + std::fmt::Debug {
    /// Handles a deliver_sm / data_sm from `upstream` (`pdu`, parsed from `frame`); `ack`
    /// answers the SMSC when it is held.
    fn inbound(&self, upstream: &Arc<UpstreamInfo>, frame: Bytes, pdu: Pdu, ack: DeliverAck);
    /// How many a session may have handed over and not yet answered; past it the session
    /// answers ESME_RX_T_APPN itself, so an SMSC cannot make the proxy hold without bound.
    fn max_unanswered(&self) -> usize {
        usize::MAX
    }
}

/// Which bind a session makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionKind {
    /// bind_transmitter
    Transmitter,
    /// bind_receiver
    Receiver,
    /// bind_transceiver
    Transceiver,
}

/// The router's view of one session, written by the session task.
#[derive(Debug)]
pub struct SessionHandle {
    /// The upstream it belongs to.
    pub upstream: Arc<UpstreamInfo>,
    /// Its number among the upstream's sessions (for logs).
    pub index: usize,
    /// Its bind.
    pub kind: SessionKind,
    tx: mpsc::Sender<Request>,
    bound: AtomicBool,
    /// Live [`InFlight`] guards: nothing else changes it.
    inflight: AtomicU32,
    /// Why its last connect or bind failed, until it binds (what `/status` shows).
    last_error: std::sync::Mutex<Option<String>>,
    /// Its first connect and bind has ended (bound or not), or it was never to try (paused,
    /// retired): until then the router holds requests for it rather than refusing them.
    settled: AtomicBool,
    /// The session thread its task runs on (see [`crate::session::threads`]); 0 until it runs.
    thread: AtomicUsize,
    /// Cancelled to retire it: nothing new, answers awaited, unbind, end.
    pub retire: CancellationToken,
    /// Cancelled when its task has ended.
    pub ended: CancellationToken,
}

/// A request handed to a session task, and the guard that counts it.
#[derive(Debug)]
pub struct Request {
    /// The request.
    pub fwd: Forward,
    /// Counts it in its session's in-flight figure until dropped.
    pub inflight: InFlight,
}

/// One request in its session's in-flight figure, from the moment the router hands it to the
/// session until this guard is dropped: answered, timed out, failed with its session, sent
/// back to be routed again, or never written. Nothing counts down by hand, so no path can
/// leave the figure (and with it the router's cost, latency x (in flight + 1)) skewed.
/// What it is dropped after is told first: [`InFlight::answered`] feeds the upstream's latency
/// and throttle figures, [`InFlight::timed_out`] its link errors. (tower's `load` handles.)
#[derive(Debug)]
pub struct InFlight(Arc<SessionHandle>);

impl InFlight {
    fn new(session: Arc<SessionHandle>) -> InFlight {
        session.inflight.fetch_add(1, Ordering::AcqRel);
        InFlight(session)
    }

    /// Answered with `status`, `rtt` after it was written.
    pub fn answered(self, status: CommandStatus, rtt: Duration, now: Instant) {
        self.0.upstream.load.on_answer(status, rtt, now);
        self.0.upstream.load.submit_latency.observe_duration(rtt);
    }

    /// Unanswered for the response timeout.
    pub fn timed_out(self) {
        self.0.upstream.load.on_timeout();
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.inflight.fetch_sub(1, Ordering::AcqRel);
    }
}

impl SessionHandle {
    /// May carry submits (transmitter or transceiver).
    pub fn can_submit(&self) -> bool {
        self.kind != SessionKind::Receiver
    }

    /// Being retired (or ended).
    pub fn is_retired(&self) -> bool {
        self.retire.is_cancelled()
    }

    /// Bound right now.
    pub fn is_bound(&self) -> bool {
        self.bound.load(Ordering::Acquire)
    }

    /// Its first connect and bind has ended, either way (see `settled`).
    pub fn is_settled(&self) -> bool {
        self.settled.load(Ordering::Acquire)
    }

    pub(crate) fn set_settled(&self) {
        self.settled.store(true, Ordering::Release);
    }

    /// Requests in flight (handed to the session, not yet answered).
    pub fn inflight(&self) -> u32 {
        self.inflight.load(Ordering::Acquire)
    }

    /// The session thread its task runs on (0: not on one, or not started).
    pub fn thread(&self) -> usize {
        self.thread.load(Ordering::Relaxed)
    }

    /// Notes the session thread its task runs on: the router prefers it for requests from the
    /// same thread.
    pub fn runs_here(&self) {
        self.thread.store(crate::session::threads::current(), Ordering::Relaxed);
    }

    /// Room for more requests now; 0 when unbound or full.
    pub fn free_window(&self) -> u32 {
        if !self.is_bound() || !self.can_submit() {
            return 0;
        }
        self.upstream.config.window.saturating_sub(self.inflight())
    }

    /// Hands a request to the session, counted in flight until it is done; gives it back (by
    /// value: no allocation) if the session cannot take it.
    #[allow(clippy::result_large_err)]
    pub fn offer(self: &Arc<Self>, fwd: Forward) -> Result<(), Forward> {
        let inflight = InFlight::new(self.clone());
        self.tx
            .try_send(Request { fwd, inflight })
            .map_err(|e| e.into_inner().fwd)
    }

    pub(crate) fn set_bound(&self, bound: bool) {
        self.bound.store(bound, Ordering::Release);
    }

    /// Why its last connect or bind failed, if it has not bound since.
    pub fn last_error(&self) -> Option<String> {
        self.last_error.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub(crate) fn set_last_error(&self, error: Option<String>) {
        *self.last_error.lock().unwrap_or_else(|e| e.into_inner()) = error;
    }
}

/// This node's own bucket for an upstream's `tps` (at most a twentieth of a second at once).
pub fn own_bucket(config: &UpstreamConfig) -> SharedBucket {
    SharedBucket::new(TokenBucket::smooth(config.tps, Instant::now()))
}

/// The handle and request channel of each bind the `index`th configured session of `info`
/// makes (one, or a transmitter and a receiver for `pair`).
pub fn sessions_at(info: &Arc<UpstreamInfo>, index: usize) -> Vec<(Arc<SessionHandle>, mpsc::Receiver<Request>)> {
    let kinds: &[SessionKind] = match info.config.bind {
        BindMode::Transmitter => &[SessionKind::Transmitter],
        BindMode::Receiver => &[SessionKind::Receiver],
        BindMode::Transceiver => &[SessionKind::Transceiver],
        BindMode::Pair => &[SessionKind::Transmitter, SessionKind::Receiver],
    };
    kinds
        .iter()
        .map(|&kind| {
            let (tx, rx) = mpsc::channel(info.config.window.max(1) as usize);
            let handle = Arc::new(SessionHandle {
                upstream: info.clone(),
                index,
                kind,
                tx,
                bound: AtomicBool::new(false),
                inflight: AtomicU32::new(0),
                last_error: std::sync::Mutex::new(None),
                settled: AtomicBool::new(false),
                thread: AtomicUsize::new(0),
                retire: CancellationToken::new(),
                ended: CancellationToken::new(),
            });
            (handle, rx)
        })
        .collect()
}

/// Creates the handles and request channels for every configured upstream session, each
/// upstream with the bucket `bucket` gives it for its `tps` (this node's own, or shared by a
/// cluster; it serves until the upstream's `retired` token). `pair` binds become a
/// transmitter and a receiver handle.
pub fn build_sessions(
    upstreams: &[UpstreamConfig],
    bucket: impl Fn(&UpstreamConfig, &CancellationToken) -> SharedBucket,
) -> Vec<(Arc<SessionHandle>, mpsc::Receiver<Request>)> {
    let mut out = Vec::new();
    for config in upstreams {
        let retired = CancellationToken::new();
        let info = UpstreamInfo::new(config.clone(), bucket(config, &retired), retired, None);
        for n in 0..config.sessions as usize {
            out.extend(sessions_at(&info, n));
        }
    }
    out
}

#[cfg(test)]
mod tests;
