//! One task per client account (system_id) on each node: holds the receipts and MO waiting
//! for it (its outbox) and hands them to its receiver-capable binds on this node, at most
//! `deliver_window` in flight per bind, oldest first. An entry leaves only when the client
//! answers it; one in flight on a bind that goes away goes back to the front (one a lane
//! handed over comes back as a new one: to a bind with room, or to the store). Receipts reach
//! this task from any upstream session, so they arrive on whichever bind of the account is up,
//! whichever session they came on.
//!
//! The outbox is bounded (`outbox_max` entries, `outbox_max_bytes` bytes): when full, the SMSC
//! is told ESME_RX_T_APPN and retries later, so a client that does not read cannot grow memory
//! and nothing is lost.
//!
//! Custody: the SMSC gets its deliver_sm_resp only once the client acknowledged the entry or the
//! entry is durable in the store. A bound client with room and nothing older waiting gets the
//! entry straight away and its answer goes to the SMSC (no store write); anything else, and any
//! direct entry the client does not take, is written to the store first (the task keeps serving
//! meanwhile) and removed from it when the client acknowledges it. While the task holds
//! nothing waiting, the session that matched a receipt hands it to a bind itself (on its own
//! thread if one there has room, [`Lanes`]), and this task hears only of those the client did
//! not take.
//!
//! Where stored entries come from depends on the store ([`Store::shared`]):
//! - a node's own store (memory, embedded): what this task stored is its to deliver; on start
//!   it reloads what the store holds for it, oldest first;
//! - a shared outbox (Redis): every node stores into one outbox per client, and a node with a
//!   bind of the client fetches from it ([`shared`]): when told new entries are there (the
//!   doorbell), every `poll` anyway, and whatever another node fetched and cannot deliver.

mod lane;
mod metrics;
mod redelivery;
mod shared;

pub use lane::Lanes;
pub use metrics::ClientMetrics;

use crate::budget::{Budget, Charge};
use crate::config::ClientConfig;
use crate::messages::{AccountMsg, ClientEvent, DeliverAck, Delivery, Direct, Forget, Slots};
use crate::pdu::{CommandStatus, Pdu};
use crate::session::{threads, SharedBucket, TokenBucket};
use crate::store::{unix_now, OutboxEntry, OutboxId, Pushed, Store, StoreError, Ticket};
use arc_swap::ArcSwap;
use bytes::Bytes;
use redelivery::{Delayed, Tries, Verdict};
use shared::Fetcher;
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};
use tokio_util::task::TaskTracker;
use tracing::{debug, warn};

/// How often entries past `receipt_ttl` are looked for.
const SWEEP: Duration = Duration::from_secs(10);
/// Messages taken from the channel in one turn before the waiting entries are handed out. The
/// bound matters: SMSCs retrying receipts refused for a full outbox can keep the channel full
/// for good, and a turn that drained it to empty first never ended, so nothing was delivered,
/// the outbox never emptied, and every receipt was refused from then on.
const MESSAGES_PER_TURN: usize = 256;

/// The handle other tasks use to reach an account.
#[derive(Debug, Clone)]
pub struct AccountHandle {
    /// Its configuration (a reload swaps it: [`AccountHandle::reconfigure`]).
    config: Arc<ArcSwap<ClientConfig>>,
    /// Its system_id, shared by every correlation it makes.
    pub system_id: Arc<str>,
    /// Its task's mailbox.
    pub tx: mpsc::Sender<AccountMsg>,
    /// Binds open now on this node (for `max_binds`).
    pub binds: Arc<AtomicU32>,
    /// Those of them that can receive (receiver, transceiver).
    pub receivers: Arc<AtomicU32>,
    /// Entries this node holds for it: waiting, in flight, being stored.
    pub outbox_len: Arc<AtomicU64>,
    /// Of them, those waiting for a bind's slot (see [`AccountHandle::idle`]).
    waiting_len: Arc<AtomicU64>,
    /// Receipts/MO refused because the outbox was at `outbox_max` (the SMSC retries them).
    pub refused_full: Arc<AtomicU64>,
    /// Entries dropped after `receipt_ttl` without the client taking them.
    pub expired: Arc<AtomicU64>,
    /// Deliveries the client refused (or left unanswered), to be tried again after a wait.
    pub redelivered: Arc<AtomicU64>,
    /// Entries dropped because the client refused them for good (or too often).
    pub dropped_refused: Arc<AtomicU64>,
    /// The bytes this node holds for it (`outbox_max_bytes`).
    pub bytes: Arc<Budget>,
    /// Its submits' latency and statuses.
    pub metrics: Arc<ClientMetrics>,
    /// When the oldest entry it holds was stored (Unix seconds; 0: none held).
    pub oldest: Arc<AtomicU64>,
    /// Submits per second across its binds (a reload with another `tps` swaps it).
    pub bucket: Arc<ArcSwap<SharedBucket>>,
    /// Bumped to unbind every bind of the account on this node (the operator asked, or a
    /// reload removed the account); each bound session watches it.
    kick: Arc<watch::Sender<u64>>,
    /// Its receiving binds by session thread, for deliveries that skip this task.
    pub lanes: Arc<Lanes>,
}

/// Who answers for an entry.
enum Custody {
    /// Not stored: the SMSC waits for the client's answer, and then the correlation goes. If
    /// the client does not take it, it is stored under its `dedup` name (so that a copy the
    /// SMSC sent meanwhile to another node is not stored twice).
    Direct {
        ack: Option<DeliverAck>,
        forget: Forget,
        dedup: Option<String>,
    },
    /// In the store under this id.
    Stored(OutboxId),
}

/// One entry held for delivery.
struct Entry {
    custody: Custody,
    /// When it was stored (Unix seconds), for `receipt_ttl`.
    stored_at: u64,
    /// Its frame, as the client is sent it (but for the sequence number).
    frame: Bytes,
    /// How often the client refused it so far.
    tries: Tries,
    /// Its bytes in the account's budget.
    charge: Charge,
}

struct Bind {
    tx: mpsc::Sender<ClientEvent>,
    /// The most deliveries in flight its channel has room for; 0 once it said it is closing
    /// (a delivery it could not send).
    cap: usize,
    /// Entries handed to this bind, by the key the client session reports back.
    inflight: HashMap<u64, Entry>,
    /// Its deliveries in flight, these and the lanes' (the deliver window is for both).
    slots: Arc<Slots>,
    /// Its session runs on this account's thread: preferred while it has about as much room
    /// as the others (a hand-over there wakes no other core).
    near: bool,
}

impl Bind {
    /// How many more deliveries it can take now, with the account's `deliver_window`.
    fn free(&self, window: usize) -> usize {
        window.min(self.cap).saturating_sub(self.slots.used())
    }
}

/// An entry being written to the store; the SMSC is answered once it is durable.
struct Storing {
    ticket: Ticket<Pushed>,
    frame: Bytes,
    ack: Option<DeliverAck>,
    forget: Forget,
    /// Refusals so far (a direct entry the client refused is stored, then waits its turn).
    tries: Tries,
    charge: Charge,
}

struct Account {
    config: Arc<ArcSwap<ClientConfig>>,
    store: Arc<dyn Store>,
    storing: VecDeque<Storing>,
    waiting: VecDeque<Entry>,
    /// Entries the client refused, each with when it may go again.
    delayed: Delayed<Entry>,
    /// The key of the next entry handed to a bind.
    next_key: u64,
    refused_full: Arc<AtomicU64>,
    expired: Arc<AtomicU64>,
    redelivered: Arc<AtomicU64>,
    dropped_refused: Arc<AtomicU64>,
    bytes: Arc<Budget>,
    binds: Vec<(u64, Bind)>,
    next_bind: usize,
    outbox_len: Arc<AtomicU64>,
    waiting_len: Arc<AtomicU64>,
    oldest: Arc<AtomicU64>,
    /// Fetching from a shared outbox; `None` with a node's own store.
    fetcher: Option<Fetcher>,
    /// What the lanes have in flight counts against `outbox_max` too.
    lanes: Arc<Lanes>,
}

/// Starts the task of one account on `tasks`; it first reloads what a node's own store holds
/// for it, and ends when every handle is dropped. `poll` is how often a shared outbox is
/// looked at without a doorbell.
pub fn spawn(
    config: ClientConfig,
    store: Arc<dyn Store>,
    poll: Duration,
    tasks: &TaskTracker,
    place: &threads::Placement,
) -> AccountHandle {
    let config = Arc::new(ArcSwap::from_pointee(config));
    let (tx, rx) = mpsc::channel(4096);
    let outbox_len = Arc::new(AtomicU64::new(0));
    let waiting_len = Arc::new(AtomicU64::new(0));
    let oldest = Arc::new(AtomicU64::new(0));
    let (refused_full, expired) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let (redelivered, dropped_refused) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let bytes = Budget::new(u64::MAX, config.load().outbox_max_bytes);
    let lanes = Arc::new(Lanes::new(place.threads()));
    let mut account = Account {
        config: config.clone(),
        store,
        storing: VecDeque::new(),
        waiting: VecDeque::new(),
        delayed: Delayed::default(),
        next_key: 1,
        refused_full: refused_full.clone(),
        expired: expired.clone(),
        redelivered: redelivered.clone(),
        dropped_refused: dropped_refused.clone(),
        bytes: bytes.clone(),
        binds: Vec::new(),
        next_bind: 0,
        outbox_len: outbox_len.clone(),
        waiting_len: waiting_len.clone(),
        oldest: oldest.clone(),
        fetcher: None,
        lanes: lanes.clone(),
    };
    place.spawn(tasks, async move {
        // Made here: its timers belong to the runtime that polls them.
        account.fetcher = account.store.shared().map(|shared| Fetcher::new(poll, shared));
        account.run(rx).await
    });
    let (system_id, tps) = {
        let c = config.load();
        (Arc::from(c.system_id.as_str()), c.tps)
    };
    AccountHandle {
        system_id,
        bucket: Arc::new(ArcSwap::from_pointee(client_bucket(tps))),
        kick: Arc::new(watch::Sender::new(0)),
        lanes,
        metrics: Arc::default(),
        oldest,
        config,
        tx,
        binds: Arc::new(AtomicU32::new(0)),
        receivers: Arc::new(AtomicU32::new(0)),
        outbox_len,
        waiting_len,
        refused_full,
        expired,
        redelivered,
        dropped_refused,
        bytes,
    }
}

/// The store ids of the entries held: waiting, delayed, and in flight on `binds`.
fn stored_ids<'a>(
    waiting: &'a VecDeque<Entry>,
    delayed: &'a Delayed<Entry>,
    binds: &'a [(u64, Bind)],
) -> impl Iterator<Item = OutboxId> + 'a {
    let inflight = binds.iter().flat_map(|(_, b)| b.inflight.values());
    waiting
        .iter()
        .chain(delayed.iter())
        .chain(inflight)
        .filter_map(|e| match e.custody {
            Custody::Stored(id) => Some(id),
            Custody::Direct { .. } => None,
        })
}

/// When the first delayed entry may go again; never, when none waits.
async fn next_due(delayed: &Delayed<Entry>) {
    match delayed.next_due() {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// The oldest store write's outcome; never, when none waits.
async fn oldest_stored(storing: &mut VecDeque<Storing>) -> Result<Pushed, StoreError> {
    match storing.front_mut() {
        Some(s) => (&mut s.ticket).await,
        None => std::future::pending().await,
    }
}

/// What a client's `tps` allows across its binds.
fn client_bucket(tps: u32) -> SharedBucket {
    SharedBucket::new(TokenBucket::per_second(tps, Instant::now()))
}

/// Counts a receipt or MO refused for a full outbox, here or before the account's queue
/// ([`AccountHandle::refuses_full`]). Once per receipt an SMSC retries, possibly thousands a
/// second: counted in the metrics, logged at most a few times a second.
fn refused_full(count: &AtomicU64, config: &ClientConfig) {
    count.fetch_add(1, Ordering::Relaxed);
    static FULL: crate::logging::Limiter = crate::logging::Limiter::new(5);
    if let Some(suppressed) = FULL.allow() {
        warn!(client = %config.system_id, max = config.outbox_max, suppressed, "outbox full: SMSC asked to retry later");
    }
}

impl AccountHandle {
    /// Whether the outbox (as of the account's last turn, with what the lanes have in flight
    /// now) was at `outbox_max`; counted as a
    /// refusal when so. The inbound path asks before queueing a receipt: an SMSC that retries
    /// at once would otherwise keep the account's queue full of receipts to refuse, ahead of
    /// the client's answers that empty the outbox (the account checks again, exactly).
    pub fn refuses_full(&self) -> bool {
        let config = self.peek();
        let held = self.outbox_len.load(Ordering::Relaxed) + self.lanes.inflight();
        let full = held as usize >= config.outbox_max;
        if full {
            refused_full(&self.refused_full, &config);
        }
        full
    }

    /// Whether nothing waited for a bind's slot as of the account's last turn: receipts may
    /// then skip it ([`Lanes`]) without taking the slots its entries wait for. (Entries in
    /// flight, being stored or waiting out a backoff are not overtaken in any sense that
    /// matters: receipts of different messages carry no order between them.)
    pub fn idle(&self) -> bool {
        self.waiting_len.load(Ordering::Relaxed) == 0
    }

    /// Hands `direct` straight to a bind ([`Lanes`]: the caller's thread's first) if the
    /// account holds nothing waiting and the outbox's byte budget has room for it; gives it
    /// back otherwise, for the account.
    pub fn offer(&self, mut direct: Direct) -> Result<(), Direct> {
        if !self.idle() {
            return Err(direct);
        }
        let Some(charge) = self.bytes.try_charge(direct.frame.len() as u64) else {
            return Err(direct);
        };
        direct.charge = Some(charge);
        self.lanes
            .offer(direct, self.peek().deliver_window as usize)
            .map_err(|mut direct| {
                direct.charge = None;
                direct
            })
    }

    /// Its configuration now.
    pub fn config(&self) -> Arc<ClientConfig> {
        self.config.load_full()
    }

    /// Its configuration now, for a quick look (not to be held across an `.await`).
    pub fn peek(&self) -> arc_swap::Guard<Arc<ClientConfig>> {
        self.config.load()
    }

    /// Applies a reloaded configuration: a new password from the next bind on; `window`,
    /// `tps`, the outbox caps, deliver window and timers at once.
    pub fn reconfigure(&self, config: ClientConfig) {
        if config.tps != self.peek().tps {
            self.bucket.store(Arc::new(client_bucket(config.tps)));
        }
        self.bytes.set_max_bytes(config.outbox_max_bytes);
        self.config.store(Arc::new(config));
    }

    /// Unbinds every bind of the account on this node (each once what it forwarded is
    /// answered); binds made afterwards are not affected.
    pub fn unbind_all(&self) {
        self.kick.send_modify(|n| *n += 1);
    }

    /// What a bound session watches for [`AccountHandle::unbind_all`].
    pub fn kicks(&self) -> watch::Receiver<u64> {
        self.kick.subscribe()
    }

    /// Its binds on this node, as the cluster is told them.
    pub fn here(&self) -> crate::cluster::Here {
        crate::cluster::Here {
            binds: self.binds.load(Ordering::Acquire),
            receivers: self.receivers.load(Ordering::Acquire),
        }
    }
}

impl Account {
    async fn run(mut self, mut rx: mpsc::Receiver<AccountMsg>) {
        if self.fetcher.is_none() {
            self.reload().await;
        }
        let mut sweep = tokio::time::interval(SWEEP.min(self.config.load().receipt_ttl));
        loop {
            tokio::select! {
                _ = sweep.tick() => self.expire(),
                msg = rx.recv() => {
                    let Some(msg) = msg else { break };
                    self.handle(msg);
                    // Take what else is queued before pumping, so a burst is sent in one go.
                    for _ in 0..MESSAGES_PER_TURN {
                        match rx.try_recv() {
                            Ok(msg) => self.handle(msg),
                            Err(_) => break,
                        }
                    }
                }
                stored = oldest_stored(&mut self.storing), if !self.storing.is_empty() => self.on_stored(stored),
                fetched = shared::next(&mut self.fetcher) => self.on_fetched(fetched),
                _ = next_due(&self.delayed) => self.release_due(),
            }
            self.pump();
            self.fetch();
            self.outbox_len.store(self.held() as u64, Ordering::Relaxed);
            self.waiting_len.store(self.waiting_for_slots(), Ordering::Relaxed);
            self.oldest.store(self.oldest_held(), Ordering::Relaxed);
        }
    }

    /// When the oldest entry waiting or in flight was stored (0: none). Waiting entries are in
    /// order; those in flight are at most a deliver window per bind.
    fn oldest_held(&self) -> u64 {
        let inflight = self.binds.iter().flat_map(|(_, b)| b.inflight.values());
        self.waiting
            .front()
            .into_iter()
            .chain(inflight)
            .map(|e| e.stored_at)
            .min()
            .unwrap_or(0)
    }

    /// Drops entries that waited longer than `receipt_ttl` (in flight ones are left alone); a
    /// shared outbox is trimmed where it is kept.
    fn expire(&mut self) {
        let ttl = self.config.load().receipt_ttl.as_secs();
        let now = unix_now();
        let before = self.waiting.len();
        let store = &self.store;
        let client = &self.config.load().system_id;
        // Keeps an entry within its TTL; one past it leaves the store too.
        let keep = |e: &Entry| match e.custody {
            Custody::Direct { .. } => true,
            Custody::Stored(id) => {
                let keep = e.stored_at.saturating_add(ttl) > now;
                if !keep {
                    drop(store.outbox_remove(client, id));
                }
                keep
            }
        };
        self.waiting.retain(keep);
        let delayed_before = self.delayed.len();
        self.delayed.retain(keep);
        let dropped = (before - self.waiting.len() + delayed_before - self.delayed.len()) as u64;
        self.count_expired(dropped);
        if let Some(fetcher) = &mut self.fetcher {
            fetcher.trim(&self.store, client, ttl);
        }
    }

    fn count_expired(&self, dropped: u64) {
        if dropped > 0 {
            self.expired.fetch_add(dropped, Ordering::Relaxed);
            warn!(client = %self.config.load().system_id, dropped, "outbox entries past receipt_ttl dropped");
        }
    }

    /// What survived a restart in this node's own store, oldest first (at most `outbox_max`).
    async fn reload(&mut self) {
        let store = self.store.clone();
        let client = self.config.load().system_id.clone();
        let max = self.config.load().outbox_max;
        let loaded = tokio::task::spawn_blocking(move || store.outbox_load(&client, max)).await;
        match loaded {
            Ok(Ok(entries)) => {
                self.take(entries);
                if !self.waiting.is_empty() {
                    tracing::info!(client = %self.config.load().system_id, held = self.waiting.len(), "outbox reloaded");
                }
            }
            Ok(Err(e)) => warn!(client = %self.config.load().system_id, error = %e, "outbox not reloaded"),
            Err(e) => warn!(client = %self.config.load().system_id, error = %e, "outbox reload failed"),
        }
        self.outbox_len.store(self.held() as u64, Ordering::Relaxed);
        self.waiting_len.store(self.waiting_for_slots(), Ordering::Relaxed);
    }

    /// Entries waiting for a bind's slot: those queued here, and one for a shared outbox
    /// this node is to fetch from (its entries would wait behind direct deliveries that
    /// took every slot).
    fn waiting_for_slots(&self) -> u64 {
        let fetch = self.fetcher.as_ref().is_some_and(Fetcher::pending);
        self.waiting.len() as u64 + u64::from(fetch)
    }

    /// Stored entries to deliver, in order. From a shared outbox, one this node holds already
    /// (fetched again after a bind came back, or its own taken back after sitting long) is
    /// not taken twice.
    fn take(&mut self, entries: Vec<OutboxEntry>) {
        let mut held: HashSet<OutboxId> = match self.fetcher {
            Some(_) => stored_ids(&self.waiting, &self.delayed, &self.binds).collect(),
            None => HashSet::new(),
        };
        for OutboxEntry { id, stored_at, pdu } in entries {
            if self.fetcher.is_some() && !held.insert(id) {
                continue;
            }
            let charge = self.bytes.charge(pdu.len() as u64);
            let frame = Bytes::from(pdu);
            match readable(&frame) {
                Ok(()) => self.waiting.push_back(Entry {
                    custody: Custody::Stored(id),
                    stored_at,
                    frame,
                    tries: Tries::default(),
                    charge,
                }),
                Err(e) => {
                    warn!(client = %self.config.load().system_id, %id, error = %e, "unreadable outbox entry dropped");
                    drop(self.store.outbox_remove(&self.config.load().system_id, id));
                }
            }
        }
    }

    /// The oldest write became durable (`first`), and maybe the ones behind it: acknowledge
    /// their SMSCs, in order. With a node's own store the entries are this task's to deliver;
    /// a shared outbox's are fetched like everyone else's.
    fn on_stored(&mut self, first: Result<Pushed, StoreError>) {
        let mut result = Some(first);
        while let Some(front) = self.storing.front_mut() {
            let outcome = match result.take() {
                Some(r) => r,
                None => match futures_util::FutureExt::now_or_never(&mut front.ticket) {
                    Some(r) => r,
                    None => break,
                },
            };
            let Some(Storing {
                frame,
                ack,
                forget,
                tries,
                charge,
                ..
            }) = self.storing.pop_front()
            else {
                break;
            };
            let status = match outcome {
                Ok(Pushed::Stored(id)) => {
                    match &mut self.fetcher {
                        Some(fetcher) => fetcher.rang(),
                        None => self.wait_turn(Entry {
                            custody: Custody::Stored(id),
                            stored_at: unix_now(),
                            frame,
                            tries,
                            charge,
                        }),
                    }
                    self.forget(forget);
                    CommandStatus::ESME_ROK
                }
                Ok(Pushed::Duplicate) => {
                    // Already in custody (stored through another node before this copy came).
                    debug!(client = %self.config.load().system_id, "receipt stored before: not stored twice");
                    self.forget(forget);
                    CommandStatus::ESME_ROK
                }
                Ok(Pushed::Full) => {
                    self.refuse_full();
                    CommandStatus::ESME_RX_T_APPN
                }
                Err(e) => {
                    // Not in custody: the SMSC keeps it and tries again. A store known to be
                    // down was logged once when it went.
                    if matches!(e, StoreError::Down) {
                        debug!(client = %self.config.load().system_id, "store down: receipt left with the SMSC");
                    } else {
                        warn!(client = %self.config.load().system_id, error = %e, "receipt not stored: SMSC asked to retry");
                    }
                    CommandStatus::ESME_RX_T_APPN
                }
            };
            if let Some(ack) = ack {
                ack.send(status);
            }
        }
    }

    /// A final receipt is in custody: its correlation has done its job.
    fn forget(&self, forget: Forget) {
        if let Some((correlation, id_match)) = forget {
            self.store.remove(&correlation, id_match);
        }
    }

    fn refuse_full(&self) {
        refused_full(&self.refused_full, &self.config.load());
    }

    fn held(&self) -> usize {
        self.storing.len() + self.waiting.len() + self.delayed.len() + self.inflight()
    }

    fn inflight(&self) -> usize {
        self.binds.iter().map(|(_, b)| b.inflight.len()).sum()
    }

    /// How many more entries this node's binds can take now.
    fn room(&self) -> usize {
        let window = self.config.load().deliver_window as usize;
        // Free slots: what the lanes have in flight is taken too.
        let room: usize = self.binds.iter().map(|(_, b)| b.free(window)).sum();
        room.saturating_sub(self.waiting.len())
    }

    fn handle(&mut self, msg: AccountMsg) {
        match msg {
            AccountMsg::Deliver {
                frame,
                ack,
                forget,
                dedup,
            } => {
                let held = self.held() + self.lanes.inflight() as usize;
                let charge = match held < self.config.load().outbox_max {
                    true => self.bytes.try_charge(frame.len() as u64),
                    false => None,
                };
                let Some(charge) = charge else {
                    self.refuse_full();
                    if let Some(ack) = ack {
                        ack.send(CommandStatus::ESME_RX_T_APPN);
                    }
                    return;
                };
                self.admit(frame, ack, forget, dedup, charge);
            }
            AccountMsg::BindUp {
                bind_id,
                tx,
                deliver_cap,
                thread,
                slots,
            } => {
                if self.binds.is_empty() {
                    if let Some(fetcher) = &mut self.fetcher {
                        fetcher.bound();
                    }
                }
                self.binds.push((
                    bind_id,
                    Bind {
                        tx,
                        inflight: HashMap::new(),
                        slots,
                        cap: deliver_cap,
                        near: thread != 0 && thread == threads::current(),
                    },
                ));
            }
            AccountMsg::BindDown { bind_id } => self.bind_down(bind_id),
            AccountMsg::Returned {
                bind_id,
                direct,
                outcome,
            } => self.returned(bind_id, direct, outcome),
            // The turn pumps after every message.
            AccountMsg::Room => {}
            AccountMsg::Delivered {
                bind_id,
                entry,
                outcome,
            } => self.delivered(bind_id, entry, outcome),
            AccountMsg::Bell => {
                if let Some(fetcher) = &mut self.fetcher {
                    fetcher.rang();
                }
            }
        }
    }

    /// An entry accepted into the outbox (counted, charged). A bound client with room and
    /// nothing waiting for it here gets it straight away, and the SMSC is answered when the
    /// client answers (no store write). Entries still being stored (or, in a cluster, stored
    /// by another node and not fetched yet) may then reach the client after it: receipts of
    /// different messages carry no order between them. Anything else goes through the store.
    fn admit(&mut self, frame: Bytes, ack: Option<DeliverAck>, forget: Forget, dedup: Option<String>, charge: Charge) {
        let window = self.config.load().deliver_window as usize;
        let room = self.binds.iter().any(|(_, b)| b.free(window) > 0);
        if room && self.waiting.is_empty() {
            self.waiting.push_back(Entry {
                custody: Custody::Direct { ack, forget, dedup },
                stored_at: unix_now(),
                frame,
                tries: Tries::default(),
                charge,
            });
            // Now, not after the burst: the next receipt of the burst must find the queue
            // empty again to go direct too.
            self.pump();
        } else {
            self.store_entry(frame, ack, forget, dedup.as_deref(), Tries::default(), charge);
        }
    }

    /// A bind went away: what it had in flight goes back to the front, in order. With no bind
    /// left on this node, direct entries need custody, and a shared outbox's entries are left
    /// to the nodes that have binds.
    fn bind_down(&mut self, bind_id: u64) {
        let Some(pos) = self.binds.iter().position(|(id, _)| *id == bind_id) else {
            return;
        };
        let (_, bind) = self.binds.remove(pos);
        let mut back: Vec<(u64, Entry)> = bind.inflight.into_iter().collect();
        back.sort_by_key(|(key, _)| std::cmp::Reverse(*key));
        for (_, entry) in back {
            self.waiting.push_front(entry);
        }
        if !self.binds.is_empty() {
            return;
        }
        for entry in std::mem::take(&mut self.waiting) {
            match entry.custody {
                // The client may be gone for long: now it needs custody.
                Custody::Direct { ack, forget, dedup } => {
                    self.store_entry(entry.frame, ack, forget, dedup.as_deref(), entry.tries, entry.charge)
                }
                Custody::Stored(_) if self.fetcher.is_some() => {}
                Custody::Stored(_) => self.waiting.push_back(entry),
            }
        }
        if self.fetcher.is_some() {
            // A shared outbox's entries are left to the nodes with binds, delayed ones too.
            self.delayed.retain(|e| matches!(e.custody, Custody::Direct { .. }));
        }
        if let Some(fetcher) = &mut self.fetcher {
            fetcher.unbound();
        }
    }

    /// How entry `key` went on bind `bind_id`, by the policy of [`redelivery`].
    fn delivered(&mut self, bind_id: u64, key: u64, outcome: Delivery) {
        if matches!(outcome, Delivery::NotSent) {
            self.closing(bind_id);
        }
        let Some((_, bind)) = self.binds.iter_mut().find(|(id, _)| *id == bind_id) else {
            return;
        };
        let Some(entry) = bind.inflight.remove(&key) else {
            return;
        };
        self.settle(entry, outcome);
    }

    /// A bind could not send a delivery: it is closing (its BindDown follows). Nothing more
    /// for it, or the entry, back at the front, would go to it again (it has the most room,
    /// perhaps on this thread).
    fn closing(&mut self, bind_id: u64) {
        if let Some((_, bind)) = self.binds.iter_mut().find(|(id, _)| *id == bind_id) {
            bind.cap = 0;
        }
    }

    /// A direct delivery the client did not take on its bind's lane: not sent, it goes on as
    /// a new one would (to a bind with room, or to the store); refused or unanswered, by the
    /// policy, as an entry this task handed over.
    fn returned(&mut self, bind_id: u64, direct: Direct, outcome: Delivery) {
        let Direct {
            frame,
            ack,
            forget,
            dedup,
            charge,
        } = direct;
        let charge = charge.unwrap_or_else(|| self.bytes.charge(frame.len() as u64));
        if outcome == Delivery::NotSent {
            self.closing(bind_id);
            // Accepted already: not counted against outbox_max again.
            return self.admit(frame, ack, forget, dedup, charge);
        }
        self.settle(
            Entry {
                custody: Custody::Direct { ack, forget, dedup },
                stored_at: unix_now(),
                frame,
                tries: Tries::default(),
                charge,
            },
            outcome,
        );
    }

    /// What becomes of an entry after a delivery, by the policy of [`redelivery`].
    fn settle(&mut self, mut entry: Entry, outcome: Delivery) {
        let verdict = redelivery::verdict(outcome, &mut entry.tries, self.config.load().redelivery_attempts);
        let Entry {
            custody,
            stored_at,
            frame,
            tries,
            charge,
        } = entry;
        match (verdict, custody) {
            // Handed over directly: the client's answer is the SMSC's answer.
            (Verdict::Done | Verdict::Drop, Custody::Direct { ack, forget, .. }) => {
                if verdict == Verdict::Drop {
                    self.count_dropped(outcome, tries);
                }
                if let Some(ack) = ack {
                    ack.send(match outcome {
                        Delivery::Answered(status) | Delivery::Nacked(status) => status,
                        _ => CommandStatus::ESME_RX_P_APPN,
                    });
                }
                self.forget(forget);
            }
            // Not waited for: if the removal is lost in a crash, the entry is delivered again
            // after the restart (at least once, never lost).
            (Verdict::Done | Verdict::Drop, Custody::Stored(id)) => {
                if verdict == Verdict::Drop {
                    self.count_dropped(outcome, tries);
                }
                drop(self.store.outbox_remove(&self.config.load().system_id, id));
            }
            // The client did not take it: it needs custody while it waits.
            (Verdict::Later | Verdict::Again, Custody::Direct { ack, forget, dedup }) => {
                if verdict == Verdict::Later {
                    self.redelivered.fetch_add(1, Ordering::Relaxed);
                }
                self.store_entry(frame, ack, forget, dedup.as_deref(), tries, charge)
            }
            (Verdict::Later, custody @ Custody::Stored(_)) => {
                self.redelivered.fetch_add(1, Ordering::Relaxed);
                debug!(client = %self.config.load().system_id, ?outcome, refused = tries.refused, "delivery to retry");
                self.wait_turn(Entry {
                    custody,
                    stored_at,
                    frame,
                    tries,
                    charge,
                });
            }
            (Verdict::Again, custody @ Custody::Stored(_)) => self.waiting.push_front(Entry {
                custody,
                stored_at,
                frame,
                tries,
                charge,
            }),
        }
    }

    fn count_dropped(&self, outcome: Delivery, tries: Tries) {
        self.dropped_refused.fetch_add(1, Ordering::Relaxed);
        warn!(client = %self.config.load().system_id, ?outcome, refused = tries.refused, "client refused a delivery for good: dropped");
    }

    /// Queues an entry: at once if the client never refused it, else after its backoff.
    fn wait_turn(&mut self, entry: Entry) {
        if entry.tries.refused == 0 {
            self.waiting.push_back(entry);
            return;
        }
        let c = self.config.load();
        let wait = redelivery::backoff(entry.tries.refused, c.redelivery_backoff, c.redelivery_backoff_max);
        self.delayed.push(tokio::time::Instant::now() + wait, entry);
    }

    /// Delayed entries whose wait is over go to the front, the longest due first.
    fn release_due(&mut self) {
        let now = tokio::time::Instant::now();
        let mut due = Vec::new();
        while let Some(entry) = self.delayed.pop_due(now) {
            due.push(entry);
        }
        for entry in due.into_iter().rev() {
            self.waiting.push_front(entry);
        }
    }

    /// Writes an entry to the store; the SMSC is answered once it is durable.
    fn store_entry(
        &mut self,
        frame: Bytes,
        ack: Option<DeliverAck>,
        forget: Forget,
        dedup: Option<&str>,
        tries: Tries,
        charge: Charge,
    ) {
        let ticket = self.store.outbox_push(&self.config.load().system_id, &frame, dedup);
        self.storing.push_back(Storing {
            ticket,
            frame,
            ack,
            forget,
            tries,
            charge,
        });
    }

    /// Hands waiting entries to binds with room, round robin.
    fn pump(&mut self) {
        let window = self.config.load().deliver_window as usize;
        while !self.waiting.is_empty() && !self.binds.is_empty() {
            let binds = &self.binds;
            let free = |i: usize| binds[i].1.free(window) as u32;
            let Some(i) = threads::prefer_near(binds.len(), free, |i| binds[i].1.near, self.next_bind) else {
                return;
            };
            self.next_bind = (i + 1) % binds.len();
            let bind = &mut self.binds[i].1;
            // A lane on the bind's thread may have taken the slot since.
            if !bind.slots.try_take(window.min(bind.cap)) {
                return;
            }
            let Some(entry) = self.waiting.pop_front() else {
                bind.slots.give();
                return;
            };
            let key = self.next_key;
            match bind.tx.try_send(ClientEvent::Deliver {
                entry: key,
                frame: entry.frame.clone(),
            }) {
                Ok(()) => {
                    self.next_key += 1;
                    bind.inflight.insert(key, entry);
                }
                Err(_) => {
                    // That bind's session is busy or closing; keep the order and try later.
                    bind.slots.give();
                    self.waiting.push_front(entry);
                    return;
                }
            }
        }
    }

    /// Asks a shared outbox for what this node's binds have room for, when it is time to.
    fn fetch(&mut self) {
        let room = self.room();
        if let Some(fetcher) = &mut self.fetcher {
            if !self.binds.is_empty() {
                let (waiting, delayed, binds) = (&self.waiting, &self.delayed, &self.binds);
                let held = || stored_ids(waiting, delayed, binds).collect();
                fetcher.fetch(&self.store, &self.config.load().system_id, room, held);
            }
        }
    }

    /// Entries fetched from a shared outbox (or taken over from another node), or the trim's
    /// count.
    fn on_fetched(&mut self, fetched: shared::Fetched) {
        match fetched {
            shared::Fetched::Entries(entries) if self.binds.is_empty() => {
                // Fetched while the last bind went: they stay this node's in the outbox until
                // another node takes them over, or a bind comes back and fetches them again.
                debug!(client = %self.config.load().system_id, n = entries.len(), "fetched with no bind left");
            }
            shared::Fetched::Entries(entries) => self.take(entries),
            shared::Fetched::Trimmed(n) => self.count_expired(n),
            shared::Fetched::Lost(ids) => {
                // Another node has them now and delivers them; those already in flight here
                // are past stopping.
                let lost = |e: &Entry| matches!(e.custody, Custody::Stored(id) if ids.contains(&id));
                let before = self.waiting.len() + self.delayed.len();
                self.waiting.retain(|e| !lost(e));
                // Waiting out a backoff here, and delivered there meanwhile: not here too.
                self.delayed.retain(|e| !lost(e));
                // Those in flight may just have been acknowledged: no news.
                let dropped = before - self.waiting.len() - self.delayed.len();
                if dropped > 0 {
                    warn!(client = %self.config.load().system_id, dropped, "entries held here were taken over by another node");
                }
            }
            shared::Fetched::Tick => {}
        }
    }
}

/// Whether a stored entry is a PDU a client can read. Checked once, at load: the frame is
/// copied onto the client's stream as it is, so its `command_length` must be its length too
/// (which the parse alone does not look at).
fn readable(frame: &Bytes) -> Result<(), String> {
    match crate::pdu::peek::next_frame(frame, frame.len()) {
        crate::pdu::peek::Next::Frame(h) if h.len == frame.len() => {
            Pdu::parse(frame.clone()).map(drop).map_err(|e| e.to_string())
        }
        _ => Err(format!("its command_length is not its length ({} octets)", frame.len())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pdu::{Body, DeliverSm};
    use crate::store::MemoryStore;

    /// An account on a session thread with two binds, one on its thread and one elsewhere.
    async fn account_with_two_binds() -> (threads::SessionThreads, AccountHandle, [mpsc::Receiver<ClientEvent>; 2]) {
        let threads = threads::SessionThreads::start(1).unwrap();
        let text = "node_id = \"t\"\n[listen]\nsmpp = \"127.0.0.1:0\"\n[[clients]]\nsystem_id = \"shop\"\n\
                    password = \"secret\"\n[[upstreams]]\nname = \"a\"\naddress = \"127.0.0.1:1\"\n\
                    system_id = \"p\"\npassword = \"pw\"\n";
        let config = crate::config::Config::from_toml(text).unwrap();
        let client = config.clients.values().next().unwrap().clone();
        let store: Arc<dyn Store> = Arc::new(MemoryStore::default());
        let account = spawn(
            client,
            store,
            Duration::from_secs(1),
            &TaskTracker::new(),
            &threads.placement(),
        );
        let mut rxs = Vec::new();
        // Bind 1 on the account's thread (the only session thread, number 1), bind 2 not.
        for (bind_id, thread) in [(1, 1), (2, 0)] {
            let (tx, rx) = mpsc::channel(16);
            account
                .tx
                .send(AccountMsg::BindUp {
                    bind_id,
                    tx,
                    deliver_cap: 16,
                    thread,
                    slots: Arc::default(),
                })
                .await
                .unwrap();
            rxs.push(rx);
        }
        let [near, far] = <[_; 2]>::try_from(rxs).unwrap();
        (threads, account, [near, far])
    }

    fn mo() -> Bytes {
        Pdu::new(Body::DeliverSm(DeliverSm::text("447700900123", "4477", b"mo")))
            .to_bytes()
            .unwrap()
    }

    async fn next(rx: &mut mpsc::Receiver<ClientEvent>) -> Option<u64> {
        match tokio::time::timeout(Duration::from_secs(5), rx.recv()).await {
            Ok(Some(ClientEvent::Deliver { entry, .. })) => Some(entry),
            _ => None,
        }
    }

    #[tokio::test]
    async fn deliveries_go_to_the_bind_on_the_accounts_thread_and_leave_it_when_it_closes() {
        let (_threads, account, [mut near, mut far]) = account_with_two_binds().await;
        for _ in 0..3 {
            let msg = AccountMsg::Deliver {
                frame: mo(),
                ack: None,
                forget: None,
                dedup: None,
            };
            account.tx.send(msg).await.unwrap();
        }
        let mut keys = Vec::new();
        for _ in 0..3 {
            keys.push(next(&mut near).await.expect("to the bind on the account's thread"));
        }
        assert!(far.try_recv().is_err(), "nothing elsewhere while it has room");
        // The near bind is closing: what it could not send goes to the other, not back to it.
        for entry in keys {
            let msg = AccountMsg::Delivered {
                bind_id: 1,
                entry,
                outcome: Delivery::NotSent,
            };
            account.tx.send(msg).await.unwrap();
        }
        for _ in 0..3 {
            assert!(next(&mut far).await.is_some(), "to the other bind");
        }
        assert!(near.try_recv().is_err(), "never back to the closing bind");
    }

    #[test]
    fn a_stored_entry_is_readable_only_if_its_command_length_is_its_length() {
        let frame = Pdu::new(Body::DeliverSm(DeliverSm::text("447700900123", "4477", b"mo")))
            .to_bytes()
            .unwrap();
        assert_eq!(readable(&frame), Ok(()));
        let mut longer = frame.to_vec();
        longer.push(0);
        assert!(
            readable(&Bytes::from(longer)).is_err(),
            "an octet past its command_length"
        );
        assert!(readable(&frame.slice(..frame.len() - 1)).is_err(), "cut short");
        let mut garbled = frame.to_vec();
        garbled.truncate(18);
        garbled[..4].copy_from_slice(&18u32.to_be_bytes());
        assert!(readable(&Bytes::from(garbled)).is_err(), "framed, but no deliver_sm");
    }
}
