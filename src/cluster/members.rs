//! Who is in the cluster: each node's heartbeat key (`node:ID`, value `RUN INFO`, TTL five
//! beats), refreshed every beat by the run that holds it. A node starting with a `node_id`
//! whose key another run holds waits out one TTL (the holder may have just died) and then
//! refuses: two nodes with one id would hand out the same message ids. A running node that
//! finds its key held by another run (its own lapsed, and a node with its id joined) takes no
//! new work until the key is its own again.

use super::Cluster;
use crate::config::{ClusterConfig, RedisConfig};
use crate::store::{RedisStore, StoreError};
use redis::Value;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tracing::{error, info};

/// Claims (or refreshes) a node's key for one run. KEYS: node key. ARGV: the run's prefix,
/// the full value, TTL (ms). Returns the holder's value when another run holds it.
const CLAIM: &str = r"
local cur = redis.call('GET', KEYS[1])
if cur and string.sub(cur, 1, string.len(ARGV[1])) ~= ARGV[1] then
  return cur
end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
return false
";

/// Drops a node's key if this run holds it. KEYS: node key. ARGV: the run's prefix.
const RELEASE: &str = r"
local cur = redis.call('GET', KEYS[1])
if cur and string.sub(cur, 1, string.len(ARGV[1])) == ARGV[1] then
  redis.call('DEL', KEYS[1])
end
return 0
";

/// Why a node could not join.
#[derive(Debug, thiserror::Error)]
pub enum JoinError {
    /// Another running node holds this node's id.
    #[error("node_id {node:?} is in use by another running node ({holder}); give each node its own node_id")]
    Taken {
        /// The id.
        node: String,
        /// What the other node says of itself.
        holder: String,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What a node says of itself in its heartbeat.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeInfo {
    /// Unix seconds it started.
    pub started: u64,
    /// Where SMPP clients bind to it.
    pub listen: String,
    /// Its admin endpoint, if any.
    pub admin: Option<String>,
    /// The version it runs.
    pub version: String,
}

/// One node, as `/status` shows the cluster.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeStatus {
    /// Its id.
    pub id: String,
    /// Its heartbeat is there.
    pub alive: bool,
    /// This node (the one answering).
    pub this: bool,
    /// What it says of itself (alive nodes).
    pub info: Option<NodeInfo>,
}

/// One client across the cluster.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClientClusterStatus {
    /// Its system_id.
    pub system_id: String,
    /// Its binds, per node.
    pub binds: BTreeMap<String, u32>,
    /// Receipts and MO waiting for it in the shared outbox.
    pub outbox: u64,
}

/// The cluster as `/status` shows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClusterStatus {
    /// Every node seen, alive or not.
    pub nodes: Vec<NodeStatus>,
    /// Every client.
    pub clients: Vec<ClientClusterStatus>,
    /// Whether the shared store answers now.
    pub store_up: bool,
    /// Times the store went down or came back since this node started.
    pub store_changes: u64,
}

async fn eval<T: redis::FromRedisValue>(
    store: &RedisStore,
    script: &str,
    key: &str,
    args: &[&str],
) -> Result<T, StoreError> {
    let mut cmd = redis::cmd("EVAL");
    cmd.arg(script).arg(1).arg(key);
    for a in args {
        cmd.arg(*a);
    }
    Ok(cmd.query_async(&mut store.conn().clone()).await?)
}

impl Cluster {
    /// Joins the cluster as `node`: claims its id (waiting out one heartbeat TTL if another
    /// run holds it), and forgets binds a previous run of it left behind.
    pub async fn join(
        store: Arc<RedisStore>,
        redis: &RedisConfig,
        config: &ClusterConfig,
        node: &str,
        info: NodeInfo,
        clients: &[String],
    ) -> Result<Arc<Cluster>, JoinError> {
        let run = format!("{:016x}", rand::random::<u64>());
        let info = serde_json::to_string(&info).unwrap_or_default();
        let cluster = Arc::new(Cluster {
            store,
            redis: redis.clone(),
            config: config.clone(),
            node: Arc::from(node),
            run,
            info,
        });
        let deadline = Instant::now() + config.heartbeat_ttl() + config.heartbeat;
        let mut waited = false;
        loop {
            match cluster.claim().await? {
                None => break,
                Some(holder) if Instant::now() < deadline => {
                    if !waited {
                        info!(node, holder = %holder, "node_id held by another run: waiting for its heartbeat to end");
                        waited = true;
                    }
                    tokio::time::sleep(config.heartbeat).await;
                }
                Some(holder) => {
                    return Err(JoinError::Taken {
                        node: node.to_owned(),
                        holder,
                    })
                }
            }
        }
        let mut conn = cluster.store.conn().clone();
        let _: i64 = redis::cmd("SADD")
            .arg(cluster.store.keys().nodes())
            .arg(node)
            .query_async(&mut conn)
            .await
            .map_err(StoreError::from)?;
        cluster.forget_binds(clients).await?;
        info!(node, "joined the cluster");
        Ok(cluster)
    }

    /// Claims or refreshes this node's heartbeat; the holder's value if another run holds it.
    async fn claim(&self) -> Result<Option<String>, StoreError> {
        let prefix = format!("{} ", self.run);
        let value = format!("{prefix}{}", self.info);
        let ttl = self.config.heartbeat_ttl().as_millis().to_string();
        let holder: Option<String> = eval(
            &self.store,
            CLAIM,
            &self.store.keys().node(&self.node),
            &[&prefix, &value, &ttl],
        )
        .await?;
        Ok(holder.map(|h| h.split_once(' ').map_or(h.clone(), |(_, info)| info.to_owned())))
    }

    /// Refreshes the heartbeat every beat until `stop`; says loudly if another run took the id.
    pub async fn heartbeat(self: Arc<Self>, stop: tokio_util::sync::CancellationToken) {
        let mut beat = tokio::time::interval(self.config.heartbeat);
        beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut taken = false;
        loop {
            tokio::select! {
                _ = beat.tick() => {}
                _ = stop.cancelled() => return,
            }
            // The heartbeat is the store's pulse too: a store gone is noticed within a beat,
            // and new submits are refused from then on rather than after a write times out.
            // A run that finds its id held by another (its heartbeat lapsed, and a node with
            // the same node_id joined meanwhile) stands down: the two would hand out the same
            // message ids. It takes no new submits or receipts until the id is its own again.
            match self.claim().await {
                Ok(holder) => {
                    let health = self.store.health();
                    health.up();
                    match (&holder, taken) {
                        (Some(holder), false) => {
                            error!(node = %self.node, holder = %holder, "another run holds this node's id: taking no new work")
                        }
                        (None, true) => info!(node = %self.node, "this node's id is its own again"),
                        _ => {}
                    }
                    taken = holder.is_some();
                    health.fence(taken);
                }
                Err(e) => self.store.health().down(&e),
            }
        }
    }

    /// Leaves the cluster (a clean stop): the heartbeat and this node's binds go, so other
    /// nodes take over what it held at once.
    pub async fn leave(&self, clients: &[String]) {
        let prefix = format!("{} ", self.run);
        let released: Result<i64, _> =
            eval(&self.store, RELEASE, &self.store.keys().node(&self.node), &[&prefix]).await;
        if let Err(e) = released.and(self.forget_binds(clients).await) {
            tracing::warn!(error = %e, "leaving the cluster: the store did not hear it (the heartbeat will expire)");
        }
    }

    /// Nodes with a heartbeat now.
    pub async fn alive(&self) -> Result<Vec<String>, StoreError> {
        Ok(self
            .nodes()
            .await?
            .into_iter()
            .filter(|(_, v)| v.is_some())
            .map(|(id, _)| id)
            .collect())
    }

    /// Every node seen, with its heartbeat's value when it is alive.
    async fn nodes(&self) -> Result<Vec<(String, Option<String>)>, StoreError> {
        let mut conn = self.store.conn().clone();
        let mut ids: Vec<String> = redis::cmd("SMEMBERS")
            .arg(self.store.keys().nodes())
            .query_async(&mut conn)
            .await?;
        ids.sort();
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            let value: Option<String> = redis::cmd("GET")
                .arg(self.store.keys().node(&id))
                .query_async(&mut conn)
                .await?;
            out.push((id, value));
        }
        Ok(out)
    }

    /// The cluster for `/status`: nodes, and per client its binds per node and its outbox.
    pub async fn status(&self, clients: &[String]) -> Result<ClusterStatus, StoreError> {
        let nodes = self
            .nodes()
            .await?
            .into_iter()
            .map(|(id, value)| NodeStatus {
                this: *id == *self.node,
                alive: value.is_some(),
                info: value
                    .as_deref()
                    .and_then(|v| v.split_once(' '))
                    .and_then(|(_, info)| serde_json::from_str(info).ok()),
                id,
            })
            .collect();
        let mut out = Vec::with_capacity(clients.len());
        let mut conn = self.store.conn().clone();
        for client in clients {
            let outbox: u64 = redis::cmd("XLEN")
                .arg(self.store.keys().outbox(client))
                .query_async(&mut conn)
                .await?;
            out.push(ClientClusterStatus {
                system_id: client.clone(),
                binds: self.binds_of(client).await?,
                outbox,
            });
        }
        let health = self.store.health();
        Ok(ClusterStatus {
            nodes,
            clients: out,
            store_up: health.is_up(),
            store_changes: health.changes(),
        })
    }
}

/// A reply's integer, if it is one.
pub(super) fn int(v: &Value) -> Option<i64> {
    match v {
        Value::Int(n) => Some(*n),
        Value::BulkString(b) => std::str::from_utf8(b).ok()?.parse().ok(),
        _ => None,
    }
}

/// How long to wait between attempts when the store does not answer.
pub(super) const RETRY: Duration = Duration::from_millis(500);
