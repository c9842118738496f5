//! The shared store of a cluster of nodes: Redis (or Valkey, or a Redis Cluster). Every node
//! points at the same one; what one node records, any node finds.
//!
//! - Correlations: `SET key value EX ttl` (the TTL in the same command, never a separate
//!   EXPIRE), with an index from the client's id; removed when the final receipt is in
//!   custody. Writes, lookups, removals and outbox acknowledgements are batched into pipelines
//!   ([`batch`]), like the embedded store's group commit: the client's submit_sm_resp waits
//!   for Redis to have acknowledged its correlation.
//! - Outboxes: one stream per client with one consumer group; a node with binds of the client
//!   fetches entries (they are then its own until it acknowledges them, `XACK` + `XDEL`), and
//!   takes over what other nodes fetched and cannot deliver ([`outbox`]). An entry is written
//!   with a marker that names it, in one script, so a copy the SMSC sends again to another node
//!   is not stored twice; the script rings the doorbell (pub/sub `bell`) for the nodes.
//!
//! Durability is Redis's: with AOF and `appendfsync always` an acknowledged write survives a
//! Redis restart; with `everysec`, up to a second of them may not. When Redis cannot be
//! reached the store says so ([`Store::available`]): a write already sent keeps being tried
//! until `store_timeout`, then fails, and nothing is acknowledged without it; while the store
//! is known down, a receipt's lookup or an outbox write fails at once ([`StoreError::Down`]),
//! so the SMSC is told to try again later instead of waiting.

mod batch;
pub mod conn;
pub mod keys;
mod outbox;
mod recent;

use super::record::encode_into;
use super::{Commit, Correlation, Found, OutboxEntry, OutboxId, Pushed, SharedOutbox, Store, StoreError, Ticket};
use crate::config::{ClusterConfig, RedisConfig};
use crate::receipt::id::{canonical, lookup_keys, IdMatch};
use batch::Op;
use conn::Conn;
use keys::Keys;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tracing::{info, warn};

/// How often an unreachable store is tried while nothing else tries it.
const PROBE: Duration = Duration::from_millis(500);

/// Whether the store answers, as its last operations found.
#[derive(Debug)]
pub struct Health {
    up: AtomicBool,
    /// Times it went from answering to not, or back.
    changes: AtomicU64,
    /// When it last came back (ms after `born`).
    since: AtomicU64,
    born: Instant,
    /// Another run holds this node's id: this one takes no new work.
    fenced: AtomicBool,
}

impl Health {
    fn new() -> Health {
        Health {
            up: AtomicBool::new(true),
            changes: AtomicU64::new(0),
            since: AtomicU64::new(0),
            born: Instant::now(),
            fenced: AtomicBool::new(false),
        }
    }

    /// An operation worked.
    pub fn up(&self) {
        if self.up.load(Ordering::Acquire) {
            return;
        }
        // `since` before `up`: nobody sees the store up with the time of an older return.
        let ms = self.born.elapsed().as_millis() as u64;
        self.since.store(ms, Ordering::Release);
        if !self.up.swap(true, Ordering::AcqRel) {
            self.changes.fetch_add(1, Ordering::Relaxed);
            info!("shared store reachable again");
        }
    }

    /// An operation failed for want of the store (not for what it asked).
    pub fn down(&self, e: &StoreError) {
        if self.up.swap(false, Ordering::AcqRel) {
            self.changes.fetch_add(1, Ordering::Relaxed);
            warn!(error = %e, "shared store unreachable: new submits refused, receipts left with the SMSCs, until it answers again");
        }
    }

    /// Answering now.
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Acquire)
    }

    /// Answering, without a break, for at least `span`: long enough to judge other nodes by
    /// their heartbeats (after a break every node's may have lapsed, and each beats again
    /// within a heartbeat of its own return).
    pub fn steady(&self, span: Duration) -> bool {
        let since = Duration::from_millis(self.since.load(Ordering::Acquire));
        self.is_up() && self.born.elapsed().saturating_sub(since) >= span
    }

    /// Another run holds this node's id (`true`), or no longer does.
    pub fn fence(&self, fenced: bool) {
        self.fenced.store(fenced, Ordering::Release);
    }

    /// Whether this node may take new work: the store answers and the node's id is its own.
    pub fn serving(&self) -> bool {
        self.is_up() && !self.fenced.load(Ordering::Acquire)
    }

    /// Times it went down or came back since start.
    pub fn changes(&self) -> u64 {
        self.changes.load(Ordering::Relaxed)
    }
}

/// The Redis store.
#[derive(Debug)]
pub struct RedisStore {
    conn: Conn,
    keys: Keys,
    /// This node: its name as an outbox consumer.
    node: Arc<str>,
    /// Names entries that have no name of their own (MO), unique across restarts.
    run: u64,
    next_name: AtomicU64,
    correlation_ttl: u64,
    dedup_ttl: u64,
    claim_idle: Duration,
    /// A node's heartbeat TTL.
    settle: Duration,
    bell: Arc<str>,
    /// `outbox_max` per client (a reload may change them).
    caps: std::sync::RwLock<HashMap<String, usize>>,
    ops: mpsc::UnboundedSender<Op>,
    health: Arc<Health>,
    /// Clients whose outbox has this node's consumer group for sure.
    grouped: dashmap::DashSet<String>,
    /// Correlations this node recorded lately: receipts coming back here need no lookup.
    recent: Arc<recent::Recent>,
    /// The runtime the store was opened on: its own tasks go there, not onto the session
    /// thread of whichever session or account called it.
    runtime: tokio::runtime::Handle,
}

impl RedisStore {
    /// Connects (the connection is made before this returns) and starts the batching task.
    /// `caps`: each client's `outbox_max`.
    pub async fn open(
        redis: &RedisConfig,
        cluster: &ClusterConfig,
        node: &str,
        correlation_ttl: Duration,
        caps: HashMap<String, usize>,
    ) -> Result<Arc<RedisStore>, StoreError> {
        let conn = conn::connect(redis).await?;
        let keys = Keys::new(&redis.key_prefix);
        let (ops, rx) = mpsc::unbounded_channel();
        let health = Arc::new(Health::new());
        let recent = Arc::new(recent::Recent::new());
        tokio::spawn(batch::run(
            conn.clone(),
            rx,
            health.clone(),
            recent.clone(),
            cluster.store_timeout,
        ));
        let store = Arc::new(RedisStore {
            bell: Arc::from(keys.bell()),
            keys,
            node: Arc::from(node),
            run: rand::random(),
            next_name: AtomicU64::new(0),
            correlation_ttl: correlation_ttl.as_secs().max(1),
            dedup_ttl: cluster.dedup_window.as_secs().max(1),
            claim_idle: cluster.claim_idle,
            settle: cluster.heartbeat_ttl(),
            caps: std::sync::RwLock::new(caps),
            ops,
            health,
            conn,
            grouped: dashmap::DashSet::new(),
            recent,
            runtime: tokio::runtime::Handle::current(),
        });
        tokio::spawn(probe(Arc::downgrade(&store)));
        info!(store = %conn::describe(redis), "shared store connected");
        Ok(store)
    }

    /// The connection (the cluster's membership, binds and buckets use it too).
    pub fn conn(&self) -> &Conn {
        &self.conn
    }

    /// `cmd`'s answer, asked from the runtime the store was opened on: for callers on a
    /// session thread, so that a reconnect (whose driver task the connection spawns where the
    /// failing call ran) never moves the node's Redis connection onto one.
    pub async fn query<T: redis::FromRedisValue + Send + 'static>(&self, cmd: redis::Cmd) -> Result<T, StoreError> {
        let mut conn = self.conn.clone();
        let asked = self.runtime.spawn(async move { cmd.query_async::<T>(&mut conn).await });
        match asked.await {
            Ok(answer) => Ok(answer?),
            // Its runtime is shutting down.
            Err(_) => Err(StoreError::Down),
        }
    }

    /// The key names.
    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    /// Whether the store answers.
    pub fn health(&self) -> &Arc<Health> {
        &self.health
    }

    fn submit<T>(&self, op: Op, ticket: Ticket<T>) -> Ticket<T> {
        match self.ops.send(op) {
            Ok(()) => ticket,
            Err(_) => Ticket::done(Err(StoreError::WriterStopped)),
        }
    }

    /// A name for an entry that has none of its own, for the marker that makes sending it
    /// twice harmless.
    fn fresh_name(&self) -> String {
        let n = self.next_name.fetch_add(1, Ordering::Relaxed);
        format!("~{}:{:x}:{n:x}", self.node, self.run)
    }
}

/// While the store is marked down and nothing else tries it, asks it now and then.
async fn probe(store: std::sync::Weak<RedisStore>) {
    loop {
        tokio::time::sleep(PROBE).await;
        let Some(store) = store.upgrade() else { return };
        if store.health.is_up() {
            continue;
        }
        let mut conn = store.conn.clone();
        let pong: Result<String, _> = redis::cmd("PING").query_async(&mut conn).await;
        if pong.is_ok() {
            store.health.up();
        }
    }
}

impl Store for RedisStore {
    fn set_outbox_caps(&self, caps: HashMap<String, usize>) {
        *self.caps.write().unwrap_or_else(|e| e.into_inner()) = caps;
    }

    fn record(&self, c: Arc<Correlation>, id_match: IdMatch) -> Commit {
        let mut value = Vec::with_capacity(128);
        encode_into(&mut value, &c);
        let corr = self
            .keys
            .corr(&c.upstream, &canonical(c.upstream_id.as_bytes(), id_match));
        let cid = self.keys.client_id(&c.client, &c.client_id);
        self.recent.put(&corr, &c);
        let (ticket, reply) = Commit::channel();
        let op = Op::Record {
            corr,
            cid,
            value,
            ttl: self.correlation_ttl,
            reply,
        };
        self.submit(op, ticket)
    }

    fn find_by_upstream(&self, upstream: &str, ids: &[&[u8]], id_match: IdMatch) -> Found {
        let mut keys: Vec<String> = Vec::new();
        for id in ids.iter().filter(|id| !id.is_empty()) {
            for form in lookup_keys(id, id_match) {
                let key = self.keys.corr(upstream, form.as_str());
                if !keys.contains(&key) {
                    keys.push(key);
                }
            }
        }
        if keys.is_empty() {
            return Found::done(Ok(None));
        }
        if let Some(c) = self.recent.get(&keys) {
            return Found::done(Ok(Some(c)));
        }
        if !self.health.serving() {
            // The SMSC is told to send the receipt again later, not kept waiting.
            return Found::done(Err(StoreError::Down));
        }
        let (ticket, reply) = Found::channel();
        self.submit(Op::Find { keys, reply }, ticket)
    }

    fn find_by_client(&self, client: &str, client_id: &str) -> Found {
        if !self.health.serving() {
            return Found::done(Err(StoreError::Down));
        }
        let (ticket, reply) = Found::channel();
        let (mut conn, cid) = (self.conn.clone(), self.keys.client_id(client, client_id));
        self.runtime.spawn(async move {
            let found = async {
                let corr: Option<Vec<u8>> = redis::cmd("GET").arg(&cid).query_async(&mut conn).await?;
                let Some(corr) = corr else { return Ok(None) };
                let value: Option<Vec<u8>> = redis::cmd("GET").arg(corr).query_async(&mut conn).await?;
                value.map(|v| super::record::decode(&v).map(Arc::new)).transpose()
            };
            let _ = reply.send(found.await);
        });
        ticket
    }

    fn remove(&self, c: &Correlation, id_match: IdMatch) {
        let corr = self
            .keys
            .corr(&c.upstream, &canonical(c.upstream_id.as_bytes(), id_match));
        let cid = self.keys.client_id(&c.client, &c.client_id);
        self.recent.remove(&corr);
        let (ticket, reply) = Commit::channel();
        drop(self.submit(Op::Remove { corr, cid, reply }, ticket));
    }

    fn correlations(&self) -> Option<u64> {
        None
    }

    fn outbox_push(&self, client: &str, pdu: &[u8], dedup: Option<&str>) -> Ticket<Pushed> {
        if !self.health.serving() {
            // Not in custody: the SMSC keeps it and sends it again later (ESME_RX_T_APPN),
            // instead of waiting `store_timeout` for an answer.
            return Ticket::done(Err(StoreError::Down));
        }
        let name = dedup.map_or_else(|| self.fresh_name(), str::to_owned);
        let (ticket, reply) = Ticket::channel();
        let op = Op::Push {
            outbox: self.keys.outbox(client),
            seen: self.keys.seen(client, &name),
            seen_ttl: self.dedup_ttl,
            cap: self
                .caps
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .get(client)
                .copied()
                // A client this node does not know (see `Context::to_unknown`).
                .unwrap_or(crate::config::DEFAULT_OUTBOX_MAX),
            pdu: pdu.to_vec(),
            bell: self.bell.clone(),
            client: Arc::from(client),
            reply,
        };
        self.submit(op, ticket)
    }

    fn outbox_remove(&self, client: &str, id: OutboxId) -> Commit {
        let (ticket, reply) = Commit::channel();
        let op = Op::Ack {
            outbox: self.keys.outbox(client),
            id,
            reply,
        };
        self.submit(op, ticket)
    }

    fn expire(&self, _now: u64) -> Commit {
        // Correlations carry their TTL in Redis.
        Commit::done(Ok(0))
    }

    fn outbox_load(&self, _client: &str, _limit: usize) -> Result<Vec<OutboxEntry>, StoreError> {
        Ok(Vec::new())
    }

    fn shared(&self) -> Option<&dyn SharedOutbox> {
        Some(self)
    }

    fn available(&self) -> bool {
        self.health.serving()
    }
}
