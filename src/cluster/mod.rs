//! A cluster of nodes on one shared store (Redis): the nodes know each other, and the limits
//! that are promises to others (a client's `max_binds` and `tps`, an upstream's `tps`) hold
//! for the cluster, not per node.
//!
//! - Membership ([`members`]): each node holds a heartbeat key with a TTL (five beats); a
//!   `node_id` held by another live node refuses to start; nodes alive, and who holds what, is
//!   read from the store for `/status`.
//! - Binds ([`binds`]): one hash per client of binds per node, checked against `max_binds` in a
//!   script at each bind; a node's entries go with it (at a clean stop, or when its heartbeat
//!   is found gone). A client's `tps` is split among the nodes by where its binds are.
//! - An upstream's `tps` ([`tps`]): a token bucket in the store that every node takes a few
//!   tokens from at a time (`shared`), or `tps` divided by the nodes alive (`split`).
//! - Messages for every node ([`bus`]): the doorbell of the shared outboxes (a client's new
//!   entries) and commands (failback) over pub/sub; a lost message only delays (the accounts
//!   poll), so pub/sub's at-most-once is enough.

pub mod binds;
pub mod bus;
pub mod members;
pub mod tps;

use crate::config::{ClusterConfig, RedisConfig};
use crate::store::RedisStore;
use std::sync::Arc;

pub use binds::Here;
pub use members::{ClusterStatus, JoinError, NodeStatus};

/// This node's place in the cluster.
#[derive(Debug)]
pub struct Cluster {
    store: Arc<RedisStore>,
    redis: RedisConfig,
    config: ClusterConfig,
    node: Arc<str>,
    /// This run of the node (a restart is a new run).
    run: String,
    /// What other nodes see of this one.
    info: String,
}

impl Cluster {
    /// The shared store.
    pub fn store(&self) -> &Arc<RedisStore> {
        &self.store
    }

    /// This node's id.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// The cluster settings.
    pub fn config(&self) -> &ClusterConfig {
        &self.config
    }
}
