//! A client's binds across the cluster: `binds:{c/CLIENT}` maps node → binds there (for
//! `max_binds`), `rx:{c/CLIENT}` node → receiver-capable binds there (the nodes that can
//! deliver the client's outbox). Each node writes its own counts as absolute values, never
//! increments: at each bind (in one script that first sums the other nodes', so `max_binds`
//! holds for the cluster), at each unbind, and again at every upkeep, so a count lost (a node
//! taken for gone during a store outage) or missed (a bind counted while the store was down)
//! comes right by itself. A node's counts go when it leaves, and when the other nodes find its
//! heartbeat gone.

use super::members::int;
use super::Cluster;
use crate::store::StoreError;
use redis::Value;
use std::collections::BTreeMap;

/// Lua: sets this node's two counts (ARGV[1] the node, ARGV[2] and ARGV[3] the counts; 0
/// drops the field). Both scripts end with it.
macro_rules! set_counts {
    () => {
        r"
for i = 1, 2 do
  local n = tonumber(ARGV[i + 1])
  if n > 0 then
    redis.call('HSET', KEYS[i], ARGV[1], n)
  else
    redis.call('HDEL', KEYS[i], ARGV[1])
  end
end
return 1
"
    };
}

/// Sets this node's counts unless the other nodes' binds and this node's reach more than the
/// limit. KEYS: binds hash, receivers hash. ARGV: node, binds here, receivers here, max.
const BIND: &str = concat!(
    r"
local others = 0
local all = redis.call('HGETALL', KEYS[1])
for i = 1, #all, 2 do
  if all[i] ~= ARGV[1] then
    others = others + tonumber(all[i + 1])
  end
end
if others + tonumber(ARGV[2]) > tonumber(ARGV[4]) then
  return 0
end",
    set_counts!()
);

/// Sets this node's counts. KEYS: binds hash, receivers hash. ARGV: node, binds here,
/// receivers here.
const SET: &str = set_counts!();

/// A client's binds on this node, as this node counts them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Here {
    /// All its binds here.
    pub binds: u32,
    /// Those that can receive (receiver, transceiver).
    pub receivers: u32,
}

impl Cluster {
    async fn script(&self, script: &str, client: &str, args: &[String]) -> Result<Value, StoreError> {
        let keys = self.store.keys();
        let mut cmd = redis::cmd("EVAL");
        cmd.arg(script)
            .arg(2)
            .arg(keys.binds(client))
            .arg(keys.receivers(client))
            .arg(&*self.node);
        for a in args {
            cmd.arg(a);
        }
        // Client sessions call this from their session thread.
        self.store.query(cmd).await
    }

    /// Counts a bind of `client` on this node (`here` has it already) unless the cluster then
    /// has more than `max`.
    pub async fn bind(&self, client: &str, max: u32, here: Here) -> Result<bool, StoreError> {
        let args = [here.binds.to_string(), here.receivers.to_string(), max.to_string()];
        let counted = self.script(BIND, client, &args).await?;
        Ok(int(&counted) == Some(1))
    }

    /// Sets `client`'s counts on this node (after an unbind; at every upkeep).
    pub async fn set_binds(&self, client: &str, here: Here) -> Result<(), StoreError> {
        let args = [here.binds.to_string(), here.receivers.to_string()];
        self.script(SET, client, &args).await.map(drop)
    }

    /// `client`'s binds per node.
    pub async fn binds_of(&self, client: &str) -> Result<BTreeMap<String, u32>, StoreError> {
        let mut conn = self.store.conn().clone();
        let all: BTreeMap<String, u32> = redis::cmd("HGETALL")
            .arg(self.store.keys().binds(client))
            .query_async(&mut conn)
            .await?;
        Ok(all)
    }

    /// Drops `node`'s counts of `client`.
    async fn drop_binds(&self, client: &str, node: &str) -> Result<(), StoreError> {
        let keys = self.store.keys();
        let mut conn = self.store.conn().clone();
        // Both keys share the client's hash tag: one pipeline, one slot.
        redis::pipe()
            .cmd("HDEL")
            .arg(keys.binds(client))
            .arg(node)
            .ignore()
            .cmd("HDEL")
            .arg(keys.receivers(client))
            .arg(node)
            .ignore()
            .query_async::<()>(&mut conn)
            .await?;
        Ok(())
    }

    /// Forgets this node's binds of every client (at start: a run before this one may have
    /// died with some counted; at a clean stop).
    pub(super) async fn forget_binds(&self, clients: &[String]) -> Result<(), StoreError> {
        for client in clients {
            self.drop_binds(client, &self.node).await?;
        }
        Ok(())
    }

    /// The upkeep of the counts: this node's own written again (`here` gives a client's as
    /// they are at that moment), and, when `judge` (the store has answered long enough for
    /// every live node to have beaten since), those of nodes whose heartbeat is gone dropped.
    /// Gives each client's binds per node as they stand after it.
    pub async fn upkeep_binds(
        &self,
        clients: &[String],
        here: impl Fn(&str) -> Option<Here>,
        judge: bool,
    ) -> Result<BTreeMap<String, BTreeMap<String, u32>>, StoreError> {
        let alive = if judge { Some(self.alive().await?) } else { None };
        let mut out = BTreeMap::new();
        for client in clients {
            if let Some(counts) = here(client) {
                self.set_binds(client, counts).await?;
            }
            let mut binds = self.binds_of(client).await?;
            if let Some(alive) = &alive {
                let dead: Vec<String> = binds.keys().filter(|n| !alive.contains(n)).cloned().collect();
                for node in &dead {
                    self.drop_binds(client, node).await?;
                    binds.remove(node);
                    tracing::info!(client, node, "binds of a node gone from the cluster forgotten");
                }
            }
            out.insert(client.clone(), binds);
        }
        Ok(out)
    }
}
