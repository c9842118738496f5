//! An SMSC simulator, for users trying the proxy and for the tests and benchmarks: accepts
//! binds, answers submits with message ids in a chosen format, sends delivery receipts after a
//! delay (in the variants real SMSCs produce), and can be made slow, rate-capped, flaky
//! (drop the connection after N messages) or hostile (refuse binds). It also sends MO.
//!
//! Receipts and MO go to any receiver-capable session of the account, round robin, as real
//! SMSCs do, so they may arrive on a different session than the submit.

mod cap;
pub use cap::TpsWindow;
mod later;
mod receipt;
mod session;

use crate::tls::Stream;
use dashmap::DashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use bytes::Bytes;
use session::Batch;

/// How long a TLS client gets to finish its handshake.
const HANDSHAKE: Duration = Duration::from_secs(10);

/// The form of the ids the simulator gives out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SimIdFormat {
    /// Lower-case hex.
    #[default]
    Hex,
    /// Decimal.
    Decimal,
    /// A UUID.
    Uuid,
}

/// How receipts are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ReceiptVariant {
    /// Appendix B text with 10-digit dates, and the TLVs; the same id in both.
    #[default]
    Standard,
    /// The text id in decimal (zero-padded to 10) while the TLV id is hex, like many SMSCs.
    DecimalTextHexTlv,
    /// 12-digit dates (YYMMDDhhmmss), `Text:` capitalised.
    Dates12,
    /// Text only, no TLVs.
    TextOnly,
    /// The text in message_payload, sm_length 0.
    Payload,
}

/// What the simulator does.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Where it listens.
    pub listen: SocketAddr,
    /// Accepted system_id (any if `None`).
    pub system_id: Option<String>,
    /// Accepted password (any if `None`).
    pub password: Option<String>,
    /// Message id format.
    pub id_format: SimIdFormat,
    /// Send receipts when registered_delivery asks for one.
    pub receipts: bool,
    /// Delay before a receipt.
    pub receipt_delay: Duration,
    /// How receipts look.
    pub receipt_variant: ReceiptVariant,
    /// Delay before every response.
    pub latency: Duration,
    /// Submits per second accepted; beyond, ESME_RTHROTTLED. 0 = no cap.
    pub tps: u32,
    /// How `tps` is counted: a bucket with a quarter second's burst, or calendar seconds.
    pub tps_window: TpsWindow,
    /// Close each connection after this many submits.
    pub drop_after: Option<u64>,
    /// Refuse every bind with ESME_RBINDFAIL.
    pub refuse_binds: bool,
    /// Send an MO this often to any bound receiver.
    pub mo_every: Option<Duration>,
    /// Refuse submits to destinations starting with this prefix, with this status.
    pub reject: Option<(String, crate::pdu::CommandStatus)>,
    /// Send an ENROUTE receipt before each final one.
    pub intermediate_receipts: bool,
    /// Keep every accepted submit, for [`SimHandle::received`] (tests).
    pub record: bool,
    /// Speak TLS with this configuration ([`crate::tls::server::config`] makes one).
    pub tls: Option<Arc<rustls::ServerConfig>>,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            system_id: None,
            password: None,
            id_format: SimIdFormat::Hex,
            receipts: true,
            receipt_delay: Duration::from_millis(10),
            receipt_variant: ReceiptVariant::Standard,
            latency: Duration::ZERO,
            tps: 0,
            tps_window: TpsWindow::Bucket,
            drop_after: None,
            refuse_binds: false,
            mo_every: None,
            reject: None,
            intermediate_receipts: false,
            record: false,
            tls: None,
        }
    }
}

/// What the simulator counted.
#[derive(Debug, Default)]
pub struct SimStats {
    /// Binds accepted.
    pub binds: AtomicU64,
    /// Binds refused.
    pub binds_refused: AtomicU64,
    /// submit_sm / data_sm / submit_multi accepted.
    pub submits: AtomicU64,
    /// Submits answered ESME_RTHROTTLED.
    pub throttled: AtomicU64,
    /// Submits refused by `reject`.
    pub rejected: AtomicU64,
    /// unbind received from the ESME (answered).
    pub unbinds: AtomicU64,
    /// unbind_resp received for the sim's own unbind.
    pub unbinds_answered: AtomicU64,
    /// Receipts and MO sent again: unanswered when a session closed, or refused for now.
    pub redelivered: AtomicU64,
    /// The status of the last receipt or MO refused for now (0: none yet).
    pub last_refusal: AtomicU32,
    /// Receipts sent.
    pub receipts: AtomicU64,
    /// MO sent.
    pub mo: AtomicU64,
    /// query_sm / cancel_sm / replace_sm answered.
    pub queries: AtomicU64,
    /// Sessions bound now.
    pub bound_now: AtomicUsize,
}

/// Shared by the simulator's sessions.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) config: SimConfig,
    pub(crate) stats: Arc<SimStats>,
    pub(crate) cap: cap::Cap,
    /// Response latency now, microseconds (starts as `config.latency`; tests change it).
    pub(crate) latency_us: AtomicU64,
    /// Accepted submits, when `config.record`.
    pub(crate) received: Mutex<Vec<crate::pdu::Pdu>>,
    next_id: AtomicU64,
    first_id: u64,
    /// Receiver-capable sessions by system_id.
    receivers: Mutex<Vec<(String, u64, mpsc::Sender<Batch>)>>,
    next_receiver: AtomicUsize,
    next_session: AtomicU64,
    /// Message number (the id's) → message_state where it is not ENROUTE (cancelled), for
    /// query/cancel/replace.
    pub(crate) messages: DashMap<u64, u8, foldhash::fast::RandomState>,
    /// Bumped to make every bound session send unbind (an SMSC going down for maintenance).
    pub(crate) unbind: watch::Sender<u64>,
    /// Receipts waiting to be sent (the spooler task retries them, like a real SMSC).
    spool: mpsc::UnboundedSender<(String, Bytes, Duration)>,
}

impl Shared {
    pub(crate) fn next_number(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Whether `n` is the number of an id given out.
    pub(crate) fn issued(&self, n: u64) -> bool {
        (self.first_id..self.next_id.load(Ordering::Relaxed)).contains(&n)
    }

    /// Every bound session sends unbind (see [`SimHandle::unbind_all`]).
    fn unbind_all(&self) {
        self.unbind.send_modify(|n| *n += 1);
    }

    pub(crate) fn session_id(&self) -> u64 {
        self.next_session.fetch_add(1, Ordering::Relaxed)
    }

    pub(crate) fn add_receiver(&self, system_id: &str, session: u64, tx: mpsc::Sender<Batch>) {
        self.receivers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((system_id.to_owned(), session, tx));
    }

    pub(crate) fn remove_receiver(&self, session: u64) {
        self.receivers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|(_, s, _)| *s != session);
    }

    /// Sends to a receiver-capable session of `system_id` (any account if `None`), round robin;
    /// gives the frame back if none can take it now.
    pub(crate) fn to_receiver(&self, system_id: Option<&str>, frame: Bytes) -> Result<(), Bytes> {
        let receivers = self.receivers.lock().unwrap_or_else(|e| e.into_inner());
        let candidates: Vec<&mpsc::Sender<Batch>> = receivers
            .iter()
            .filter(|(id, _, _)| system_id.is_none_or(|want| want == id))
            .map(|(_, _, tx)| tx)
            .collect();
        let start = self.next_receiver.fetch_add(1, Ordering::Relaxed);
        let mut batch = vec![(std::time::Instant::now(), frame)];
        for k in 0..candidates.len() {
            match candidates[(start + k) % candidates.len()].try_send(batch) {
                Ok(()) => return Ok(()),
                Err(e) => batch = e.into_inner(),
            }
        }
        Err(batch.pop().expect("one").1)
    }

    /// Hands receipts, each due at its time, to the receiver-capable sessions of `system_id`,
    /// round robin, one batch per session; what none can take now goes to the spooler.
    pub(crate) fn to_receivers(&self, system_id: &str, batch: Batch) {
        let receivers = self.receivers.lock().unwrap_or_else(|e| e.into_inner());
        let candidates: Vec<&mpsc::Sender<Batch>> = receivers
            .iter()
            .filter(|(id, _, _)| id == system_id)
            .map(|(_, _, tx)| tx)
            .collect();
        let n = batch.len() as u64;
        let mut left = Vec::new();
        if candidates.is_empty() {
            left = batch;
        } else {
            let start = self.next_receiver.fetch_add(batch.len(), Ordering::Relaxed);
            let mut shares: Vec<Batch> = (0..candidates.len()).map(|_| Vec::new()).collect();
            for (k, item) in batch.into_iter().enumerate() {
                shares[(start + k) % candidates.len()].push(item);
            }
            for (tx, share) in candidates.iter().zip(shares) {
                if share.is_empty() {
                    continue;
                }
                if let Err(e) = tx.try_send(share) {
                    left.extend(e.into_inner());
                }
            }
        }
        drop(receivers);
        self.stats.receipts.fetch_add(n - left.len() as u64, Ordering::Relaxed);
        let now = std::time::Instant::now();
        for (at, frame) in left {
            self.spool(system_id.to_owned(), frame, at.saturating_duration_since(now));
        }
    }

    /// Queues a receipt or MO for `system_id`, sent after `delay` and retried until a receiver
    /// takes it.
    pub(crate) fn spool(&self, system_id: String, frame: Bytes, delay: Duration) {
        let _ = self.spool.send((system_id, frame, delay));
    }
}

/// A running simulator.
#[derive(Debug)]
pub struct SimHandle {
    addr: SocketAddr,
    shared: Arc<Shared>,
    stop: CancellationToken,
    tasks: TaskTracker,
}

impl SimHandle {
    /// Where it listens.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Its counters.
    pub fn stats(&self) -> &Arc<SimStats> {
        &self.shared.stats
    }

    /// The id the next submit it accepts will get (as in its submit_sm_resp): a test can send
    /// a receipt for it ahead of the answer, as some SMSCs do.
    pub fn next_message_id(&self) -> String {
        let n = self.shared.next_id.load(Ordering::Relaxed);
        receipt::ids(&self.shared.config, n).0.as_str().to_owned()
    }

    /// Sends any PDU (say, a receipt for an id never issued) to a receiver-capable session of
    /// `system_id`; `false` if none is bound.
    pub fn send_pdu(&self, system_id: Option<&str>, pdu: crate::pdu::Pdu) -> bool {
        let Ok(frame) = pdu.to_bytes() else { return false };
        self.shared.to_receiver(system_id, frame).is_ok()
    }

    /// Sends an MO to a receiver-capable session of `system_id`; `false` if none is bound.
    pub fn send_mo(&self, system_id: Option<&str>, source: &str, destination: &str, text: &[u8]) -> bool {
        let sent = self
            .shared
            .to_receiver(system_id, session::mo(source, destination, text))
            .is_ok();
        if sent {
            self.shared.stats.mo.fetch_add(1, Ordering::Relaxed);
        }
        sent
    }

    /// Changes the latency of every response from now on (an SMSC getting slow).
    pub fn set_latency(&self, latency: Duration) {
        self.shared
            .latency_us
            .store(latency.as_micros() as u64, Ordering::Relaxed);
    }

    /// The submits accepted so far, in order (with `record`).
    pub fn received(&self) -> Vec<crate::pdu::Pdu> {
        self.shared.received.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Makes every bound session send unbind and close once answered, as an SMSC does before
    /// maintenance; clients may bind again right away.
    pub fn unbind_all(&self) {
        self.shared.unbind_all();
    }

    /// [`unbind_all`](Self::unbind_all) as a function another task can keep.
    pub fn unbinder(&self) -> impl Fn() + Send + 'static {
        let shared = self.shared.clone();
        move || shared.unbind_all()
    }

    /// Stops listening and closes every session.
    pub async fn stop(self) {
        self.stop.cancel();
        self.tasks.wait().await;
    }
}

/// Starts a simulator.
pub async fn start(config: SimConfig) -> std::io::Result<SimHandle> {
    let listener = TcpListener::bind(config.listen).await?;
    let addr = listener.local_addr()?;
    let base = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_secs())
        << 24
        // Simulators started in the same second give out different ids (one of 256 blocks of
        // 65 536): a query for another's id is answered ESME_RQUERYFAIL, as an SMSC would.
        | (rand::random::<u64>() & 0xff_0000);
    let (spool, spool_rx) = mpsc::unbounded_channel();
    let shared = Arc::new(Shared {
        unbind: watch::channel(0).0,
        spool,
        cap: cap::Cap::new(config.tps, config.tps_window),
        latency_us: AtomicU64::new(config.latency.as_micros() as u64),
        received: Mutex::new(Vec::new()),
        config,
        stats: Arc::new(SimStats::default()),
        next_id: AtomicU64::new(base),
        first_id: base,
        receivers: Mutex::new(Vec::new()),
        next_receiver: AtomicUsize::new(0),
        next_session: AtomicU64::new(1),
        messages: DashMap::default(),
    });
    let (stop, tasks) = (CancellationToken::new(), TaskTracker::new());
    tasks.spawn(spooler(spool_rx, shared.clone(), stop.clone()));
    tasks.spawn(accept_loop(listener, shared.clone(), stop.clone()));
    tasks.close();
    Ok(SimHandle {
        addr,
        shared,
        stop,
        tasks,
    })
}

/// Sends spooled receipts when due; one no receiver can take now is tried again every 50 ms
/// for up to 10 minutes (a real SMSC keeps trying for hours).
async fn spooler(
    mut rx: mpsc::UnboundedReceiver<(String, Bytes, Duration)>,
    shared: Arc<Shared>,
    stop: CancellationToken,
) {
    use futures_util::StreamExt;
    const RETRY: Duration = Duration::from_millis(50);
    const TRIES: u32 = 12_000;
    let mut queue = tokio_util::time::DelayQueue::new();
    loop {
        tokio::select! {
            Some((system_id, frame, delay)) = rx.recv() => {
                queue.insert((system_id, frame, 0u32), delay);
            }
            Some(due) = queue.next(), if !queue.is_empty() => {
                let (system_id, frame, tries) = due.into_inner();
                match shared.to_receiver(Some(&system_id), frame) {
                    Ok(()) => {
                        shared.stats.receipts.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(frame) if tries < TRIES => {
                        queue.insert((system_id, frame, tries + 1), RETRY);
                    }
                    Err(_) => {}
                }
            }
            _ = stop.cancelled() => break,
        }
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>, stop: CancellationToken) {
    let sessions = TaskTracker::new();
    if let Some(every) = shared.config.mo_every {
        let shared = shared.clone();
        let stop = stop.clone();
        sessions.spawn(async move {
            let mut tick = tokio::time::interval(every);
            let mut n = 0u64;
            loop {
                tokio::select! {
                    _ = tick.tick() => {
                        n += 1;
                        let text = format!("MO message {n}");
                        if shared.to_receiver(None, session::mo("447700900999", "447700900001", text.as_bytes())).is_ok() {
                            shared.stats.mo.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    _ = stop.cancelled() => break,
                }
            }
        });
    }
    let acceptor = shared.config.tls.clone().map(tokio_rustls::TlsAcceptor::from);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                if let Ok((stream, _)) = accepted {
                    let _ = stream.set_nodelay(true);
                    let (shared, stop, acceptor) = (shared.clone(), stop.clone(), acceptor.clone());
                    sessions.spawn(async move {
                        let stream = match acceptor {
                            None => Stream::Plain(stream),
                            Some(acceptor) => match tokio::time::timeout(HANDSHAKE, acceptor.accept(stream)).await {
                                Ok(Ok(tls)) => tls.into(),
                                Ok(Err(e)) => {
                                    tracing::debug!(error = %e, "sim: TLS handshake failed");
                                    return;
                                }
                                Err(_) => return,
                            },
                        };
                        session::run(stream, shared, stop).await;
                    });
                }
            }
            _ = stop.cancelled() => break,
        }
    }
    // Every session sees `stop` too and closes its connection.
    sessions.close();
    sessions.wait().await;
}
