//! One task per client account (system_id): holds the receipts and MO waiting for it (its
//! outbox) and hands them to its receiver-capable binds, at most `deliver_window` in flight per
//! bind, oldest first. An entry leaves only when the client answers it; one in flight on a bind
//! that goes away goes back to the front. Receipts reach this task from any upstream session,
//! so they arrive on whichever bind of the account is up, whichever session they came on.
//!
//! The outbox is bounded (`outbox_max`): when full, the SMSC is told ESME_RX_T_APPN and retries
//! later, so a client that does not read cannot grow memory and nothing is lost.
//!
//! Custody: the SMSC gets its deliver_sm_resp only once the client acknowledged the entry or the
//! entry is durable in the store. A bound client with room and nothing older waiting gets the
//! entry straight away and its answer goes to the SMSC (no store write); anything else, and any
//! direct entry the client does not take, is written to the store first (the task keeps serving
//! meanwhile) and removed from it when the client acknowledges it. On start the account reloads what the store holds
//! for it, oldest first, so receipts survive restarts and crashes.

use crate::config::ClientConfig;
use crate::messages::{AccountMsg, ClientEvent, DeliverAck};
use crate::pdu::{CommandStatus, Pdu};
use crate::receipt::id::IdMatch;
use crate::session::{SharedBucket, TokenBucket};
use crate::store::{unix_now, Commit, Correlation, OutboxEntry, Store, StoreError};
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::mpsc;
use tokio_util::task::TaskTracker;
use tracing::{debug, warn};

/// The handle other tasks use to reach an account.
#[derive(Debug, Clone)]
pub struct AccountHandle {
    /// Its configuration.
    pub config: Arc<ClientConfig>,
    /// Its system_id, shared by every correlation it makes.
    pub system_id: Arc<str>,
    /// Its task's mailbox.
    pub tx: mpsc::Sender<AccountMsg>,
    /// Binds open now (for `max_binds`).
    pub binds: Arc<AtomicU32>,
    /// Entries waiting or in flight.
    pub outbox_len: Arc<AtomicU64>,
    /// Receipts/MO refused because the outbox was at `outbox_max` (the SMSC retries them).
    pub refused_full: Arc<AtomicU64>,
    /// Entries dropped after `receipt_ttl` without the client taking them.
    pub expired: Arc<AtomicU64>,
    /// Submits per second across its binds.
    pub bucket: Arc<SharedBucket>,
    /// Its `route` as the router's group index (set when the proxy starts).
    pub group: usize,
}

/// One entry held for delivery.
struct Entry {
    /// Its outbox sequence number (order and identity); [`DIRECT`] bit set when not stored.
    seq: u64,
    /// When it was stored (Unix seconds), for `receipt_ttl`.
    stored_at: u64,
    pdu: Pdu,
    /// Not in the store: the SMSC is still waiting for its answer (given when the client
    /// answers), and the correlation to forget then.
    direct: Option<Direct>,
}

struct Direct {
    ack: Option<DeliverAck>,
    forget: Option<(Arc<Correlation>, IdMatch)>,
}

/// Ids of entries handed straight to a bound client without a store write; outbox sequence
/// numbers never reach this bit.
const DIRECT: u64 = 1 << 63;

struct Bind {
    tx: mpsc::Sender<ClientEvent>,
    inflight: HashMap<u64, Entry>,
}

/// An entry being written to the store; it joins `waiting` once durable.
struct Storing {
    commit: Commit,
    pdu: Pdu,
    ack: Option<DeliverAck>,
    forget: Option<(Arc<Correlation>, IdMatch)>,
}

struct Account {
    config: Arc<ClientConfig>,
    store: Arc<dyn Store>,
    storing: VecDeque<Storing>,
    waiting: VecDeque<Entry>,
    next_direct: u64,
    refused_full: Arc<AtomicU64>,
    expired: Arc<AtomicU64>,
    binds: Vec<(u64, Bind)>,
    next_bind: usize,
    outbox_len: Arc<AtomicU64>,
}

/// Starts the task of one account on `tasks`; it first reloads the outbox the store holds for
/// it, and ends when every handle is dropped.
pub fn spawn(config: ClientConfig, group: usize, store: Arc<dyn Store>, tasks: &TaskTracker) -> AccountHandle {
    let config = Arc::new(config);
    let (tx, rx) = mpsc::channel(4096);
    let outbox_len = Arc::new(AtomicU64::new(0));
    let (refused_full, expired) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let account = Account {
        config: config.clone(),
        store,
        storing: VecDeque::new(),
        waiting: VecDeque::new(),
        next_direct: DIRECT,
        refused_full: refused_full.clone(),
        expired: expired.clone(),
        binds: Vec::new(),
        next_bind: 0,
        outbox_len: outbox_len.clone(),
    };
    tasks.spawn(account.run(rx));
    AccountHandle {
        system_id: Arc::from(config.system_id.as_str()),
        bucket: Arc::new(SharedBucket::new(TokenBucket::per_second(config.tps, Instant::now()))),
        group,
        config,
        tx,
        binds: Arc::new(AtomicU32::new(0)),
        outbox_len,
        refused_full,
        expired,
    }
}

async fn oldest_commit(storing: &mut VecDeque<Storing>) -> Result<u64, StoreError> {
    match storing.front_mut() {
        Some(s) => (&mut s.commit).await,
        None => std::future::pending().await,
    }
}

impl Account {
    async fn run(mut self, mut rx: mpsc::Receiver<AccountMsg>) {
        self.reload().await;
        let mut sweep = tokio::time::interval(std::time::Duration::from_secs(10).min(self.config.receipt_ttl));
        loop {
            tokio::select! {
                _ = sweep.tick() => self.expire(),
                msg = rx.recv() => {
                    let Some(msg) = msg else { break };
                    self.handle(msg);
                    // Take whatever else is queued before pumping, so a burst is sent in one go.
                    while let Ok(msg) = rx.try_recv() {
                        self.handle(msg);
                    }
                }
                stored = oldest_commit(&mut self.storing), if !self.storing.is_empty() => self.on_stored(stored),
            }
            self.pump();
            self.outbox_len.store(self.held() as u64, Ordering::Relaxed);
        }
    }

    /// Drops entries that waited longer than `receipt_ttl` (in flight ones are left alone).
    fn expire(&mut self) {
        let ttl = self.config.receipt_ttl.as_secs();
        let now = unix_now();
        let before = self.waiting.len();
        let store = &self.store;
        let client = &self.config.system_id;
        self.waiting.retain(|e| {
            let keep = e.direct.is_some() || e.stored_at.saturating_add(ttl) > now;
            if !keep {
                drop(store.outbox_remove(client, e.seq));
            }
            keep
        });
        let dropped = before - self.waiting.len();
        if dropped > 0 {
            self.expired.fetch_add(dropped as u64, Ordering::Relaxed);
            warn!(client = %self.config.system_id, dropped, "outbox entries past receipt_ttl dropped");
        }
    }

    /// What survived a restart, oldest first (at most `outbox_max`).
    async fn reload(&mut self) {
        let store = self.store.clone();
        let client = self.config.system_id.clone();
        let max = self.config.outbox_max;
        let loaded = tokio::task::spawn_blocking(move || store.outbox_load(&client, 0, max)).await;
        match loaded {
            Ok(Ok(entries)) => {
                for OutboxEntry { seq, stored_at, pdu } in entries {
                    match Pdu::parse(bytes::Bytes::from(pdu)) {
                        Ok(pdu) => self.waiting.push_back(Entry {
                            seq,
                            stored_at,
                            pdu,
                            direct: None,
                        }),
                        Err(e) => {
                            warn!(client = %self.config.system_id, seq, error = %e, "unreadable outbox entry skipped")
                        }
                    }
                }
                if !self.waiting.is_empty() {
                    tracing::info!(client = %self.config.system_id, held = self.waiting.len(), "outbox reloaded");
                }
            }
            Ok(Err(e)) => warn!(client = %self.config.system_id, error = %e, "outbox not reloaded"),
            Err(e) => warn!(client = %self.config.system_id, error = %e, "outbox reload failed"),
        }
        self.outbox_len.store(self.held() as u64, Ordering::Relaxed);
    }

    /// The oldest write became durable (`first`), and maybe the ones behind it: acknowledge
    /// their SMSCs and queue them for delivery, in order.
    fn on_stored(&mut self, first: Result<u64, StoreError>) {
        let mut result = Some(first);
        while let Some(front) = self.storing.front_mut() {
            let outcome = match result.take() {
                Some(r) => r,
                None => match futures_util::FutureExt::now_or_never(&mut front.commit) {
                    Some(r) => r,
                    None => break,
                },
            };
            let Storing { pdu, ack, forget, .. } = self.storing.pop_front().expect("front exists");
            match outcome {
                Ok(seq) => {
                    self.waiting.push_back(Entry {
                        seq,
                        stored_at: unix_now(),
                        pdu,
                        direct: None,
                    });
                    if let Some((correlation, id_match)) = forget {
                        // The final receipt is in custody: its correlation has done its job.
                        drop(self.store.remove(&correlation, id_match));
                    }
                    if let Some(ack) = ack {
                        ack.send(CommandStatus::ESME_ROK);
                    }
                }
                Err(e) => {
                    // Not in custody: the SMSC keeps it and tries again.
                    warn!(client = %self.config.system_id, error = %e, "receipt not stored: SMSC asked to retry");
                    if let Some(ack) = ack {
                        ack.send(CommandStatus::ESME_RX_T_APPN);
                    }
                }
            }
        }
    }

    fn held(&self) -> usize {
        self.storing.len() + self.waiting.len() + self.binds.iter().map(|(_, b)| b.inflight.len()).sum::<usize>()
    }

    fn handle(&mut self, msg: AccountMsg) {
        match msg {
            AccountMsg::Deliver { pdu, ack, forget } => {
                if self.held() >= self.config.outbox_max {
                    self.refused_full.fetch_add(1, Ordering::Relaxed);
                    warn!(client = %self.config.system_id, max = self.config.outbox_max, "outbox full: SMSC asked to retry later");
                    if let Some(ack) = ack {
                        ack.send(CommandStatus::ESME_RX_T_APPN);
                    }
                    return;
                }
                // A bound client with room and nothing waiting for it: hand it over straight
                // away, and answer the SMSC when the client answers (no store write). Entries
                // still being stored may then reach the client after it: receipts of different
                // messages carry no order between them. Anything else goes through the store.
                let window = self.config.deliver_window as usize;
                let room = self.binds.iter().any(|(_, b)| b.inflight.len() < window);
                if room && self.waiting.is_empty() {
                    let seq = self.next_direct;
                    self.next_direct += 1;
                    let direct = Some(Direct { ack, forget });
                    self.waiting.push_back(Entry {
                        seq,
                        stored_at: unix_now(),
                        pdu,
                        direct,
                    });
                    // Now, not after the burst: the next receipt of the burst must find the
                    // queue empty again to go direct too.
                    self.pump();
                } else {
                    self.store_entry(pdu, ack, forget);
                }
            }
            AccountMsg::BindUp { bind_id, tx } => self.binds.push((
                bind_id,
                Bind {
                    tx,
                    inflight: HashMap::new(),
                },
            )),
            AccountMsg::BindDown { bind_id } => {
                if let Some(pos) = self.binds.iter().position(|(id, _)| *id == bind_id) {
                    let (_, bind) = self.binds.remove(pos);
                    let mut back: Vec<Entry> = bind.inflight.into_values().collect();
                    back.sort_by_key(|e| std::cmp::Reverse(e.seq));
                    for item in back {
                        match item.direct {
                            // The client may be gone for long: now it needs custody.
                            Some(Direct { ack, forget }) => self.store_entry(item.pdu, ack, forget),
                            None => self.waiting.push_front(item),
                        }
                    }
                }
            }
            AccountMsg::Delivered { bind_id, entry, status } => {
                let Some((_, bind)) = self.binds.iter_mut().find(|(id, _)| *id == bind_id) else {
                    return;
                };
                let Some(item) = bind.inflight.remove(&entry) else {
                    return;
                };
                let permanent = matches!(status, CommandStatus::ESME_RX_P_APPN | CommandStatus::ESME_RX_R_APPN);
                if permanent {
                    warn!(client = %self.config.system_id, %status, "client refused a delivery for good: dropped");
                }
                let Entry {
                    seq,
                    stored_at,
                    pdu,
                    direct,
                } = item;
                match (direct, status.is_ok() || permanent) {
                    // Handed over directly: the client's answer is the SMSC's answer.
                    (Some(Direct { ack, forget }), true) => {
                        if let Some(ack) = ack {
                            ack.send(status);
                        }
                        if let Some((correlation, id_match)) = forget {
                            drop(self.store.remove(&correlation, id_match));
                        }
                    }
                    (Some(Direct { ack, forget }), false) => self.store_entry(pdu, ack, forget),
                    // Not waited for: if the removal is lost in a crash, the entry is delivered
                    // again after the restart (at least once, never lost).
                    (None, true) => drop(self.store.outbox_remove(&self.config.system_id, entry)),
                    (None, false) => {
                        debug!(client = %self.config.system_id, %status, "delivery to retry");
                        self.waiting.push_back(Entry {
                            seq,
                            stored_at,
                            pdu,
                            direct: None,
                        });
                    }
                }
            }
        }
    }

    /// Writes an entry to the store; the SMSC is answered once it is durable.
    fn store_entry(&mut self, pdu: Pdu, ack: Option<DeliverAck>, forget: Option<(Arc<Correlation>, IdMatch)>) {
        let commit = match pdu.to_bytes() {
            Ok(bytes) => self.store.outbox_push(&self.config.system_id, &bytes),
            Err(e) => Commit::done(Err(e.into())),
        };
        self.storing.push_back(Storing {
            commit,
            pdu,
            ack,
            forget,
        });
    }

    /// Hands waiting entries to binds with room, round robin.
    fn pump(&mut self) {
        let window = self.config.deliver_window as usize;
        while !self.waiting.is_empty() && !self.binds.is_empty() {
            let n = self.binds.len();
            let Some(offset) = (0..n).find(|k| self.binds[(self.next_bind + k) % n].1.inflight.len() < window) else {
                return;
            };
            let i = (self.next_bind + offset) % n;
            self.next_bind = (i + 1) % n;
            let item = self.waiting.pop_front().expect("not empty");
            let bind = &mut self.binds[i].1;
            match bind.tx.try_send(ClientEvent::Deliver {
                entry: item.seq,
                pdu: item.pdu.clone(),
            }) {
                Ok(()) => {
                    bind.inflight.insert(item.seq, item);
                }
                Err(_) => {
                    // That bind's session is busy or closing; keep the order and try later.
                    self.waiting.push_front(item);
                    return;
                }
            }
        }
    }
}
