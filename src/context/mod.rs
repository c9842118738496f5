//! What every task of a running proxy shares: the configuration, the accounts, the router over
//! the upstream sessions, the store, the id generator and the counters. [`Proxy`](crate::proxy::Proxy)
//! builds one [`Context`] at start and hands an `Arc` of it to the listener, the admin endpoint
//! and (as their [`InboundSink`](crate::upstream::InboundSink)) the upstream sessions.
//!
//! The receipt and MO path lives here too (`inbound`): what an upstream session receives is
//! matched to its client and handed to that client's account.

pub mod answers;
pub mod delivered;
pub mod history;
mod inbound;
pub mod reload;

pub(crate) use answers::DueKey;
pub use inbound::{lookups, EarlyReceipts, Lookup};

use crate::account::AccountHandle;
use crate::cluster::Cluster;
use crate::config::Config;
use crate::guard::Guard;
use crate::ids::IdGenerator;
use crate::routing::Router;
use crate::sharded::Counter;
use crate::store::Store;
use crate::upstream::SessionHandle;
use arc_swap::ArcSwap;
use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

/// Counters worth reporting.
#[derive(Debug)]
pub struct Stats {
    /// Receipts whose id matched no submission.
    pub unmatched_receipts: AtomicU64,
    /// Receipts matched and sent on to their client (per thread: one per message).
    pub matched_receipts: Counter,
    /// MO sent on to a client.
    pub mo_routed: AtomicU64,
    /// MO no route matched.
    pub mo_unroutable: AtomicU64,
    /// Part receipts not passed on because of the client's `multipart_receipts`.
    pub part_receipts_suppressed: AtomicU64,
    /// Receipts and MO refused to the SMSC for being longer than `sessions.max_pdu_len`.
    pub oversized_deliveries: AtomicU64,
    /// Receipts for a client this node's configuration does not name (see `to_unknown`).
    pub unknown_client_deliveries: AtomicU64,
    /// A submit's answer mapped (its correlation handed to the store at the end of that turn)
    /// -> durable, seconds.
    pub commit_latency: crate::histogram::Histogram,
}

impl Default for Stats {
    fn default() -> Stats {
        Stats {
            unmatched_receipts: AtomicU64::new(0),
            matched_receipts: Counter::default(),
            mo_routed: AtomicU64::new(0),
            mo_unroutable: AtomicU64::new(0),
            part_receipts_suppressed: AtomicU64::new(0),
            oversized_deliveries: AtomicU64::new(0),
            unknown_client_deliveries: AtomicU64::new(0),
            commit_latency: crate::histogram::Histogram::new(crate::histogram::LATENCY),
        }
    }
}

/// Accounts by system_id: looked up for every receipt and MO, so hashed with foldhash (SipHash
/// showed in the receipt path's profile).
pub type Accounts = HashMap<String, AccountHandle, foldhash::fast::RandomState>;

/// What a reload replaces, all at once: a task sees the configuration, accounts, router and
/// sessions of one generation, never a mix.
#[derive(Debug)]
pub struct Live {
    /// The configuration.
    pub config: Arc<Config>,
    /// Accounts by system_id.
    pub accounts: Accounts,
    /// The router over the upstream sessions.
    pub router: Router,
    /// Every upstream session running, those being retired too (for status).
    pub sessions: Vec<Arc<SessionHandle>>,
}

/// What the proxy's tasks share.
#[derive(Debug)]
pub struct Context {
    /// Configuration, accounts, router and sessions, swapped whole by a reload.
    pub live: ArcSwap<Live>,
    /// Correlations and outboxes.
    pub store: Arc<dyn Store>,
    /// Client message ids.
    pub ids: IdGenerator,
    /// Bind ids (per process).
    pub next_bind_id: AtomicU64,
    /// Counters.
    pub stats: Stats,
    /// Receipts that came before their correlation.
    pub early: EarlyReceipts,
    /// Submits whose answers are not written yet, and receipts that came before them.
    pub answers_due: answers::AnswersDue,
    /// Receipts waiting for a shared store's lookup (taken on by [`lookups`]).
    pub lookups: tokio::sync::mpsc::Sender<Lookup>,
    /// This node's place in a cluster (with a shared store).
    pub cluster: Option<Arc<Cluster>>,
    /// Connection caps and failed-bind bans of the SMPP listener.
    pub guard: Guard,
    /// The TLS listener's certificates, when there is one.
    pub tls: Option<Arc<crate::tls::server::ServerTls>>,
    /// Applies reloads of the configuration.
    pub reloader: reload::Reloader,
    /// The last minutes of each upstream, and recent changes (the status page's).
    pub history: history::History,
    /// The message trail (`[log] messages`), or none.
    pub trail: crate::trail::Trail,
    /// The last final receipts, for `GET /messages/{id}`.
    pub delivered: delivered::Delivered,
    /// Where client sessions, upstream sessions and accounts are spawned.
    pub sessions: crate::session::threads::Placement,
}

impl Context {
    /// The generation in force now; a quick look, not to be held across an `.await` (a reload
    /// would wait for nothing, but the caller would act on an old generation).
    pub fn live(&self) -> arc_swap::Guard<Arc<Live>> {
        self.live.load()
    }

    /// The configuration in force now.
    pub fn config(&self) -> Arc<Config> {
        self.live.load().config.clone()
    }

    /// Every client's system_id.
    pub fn client_ids(&self) -> Vec<String> {
        self.live().config.clients.keys().cloned().collect()
    }
}
