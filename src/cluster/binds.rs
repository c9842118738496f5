//! A client's binds across the cluster: `binds:{c/CLIENT}` maps node → binds there. A bind is
//! counted in one script that first sums every node's (`max_binds` holds for the cluster); a
//! node's counts go when it leaves, and when other nodes find its heartbeat gone.

use super::members::int;
use super::Cluster;
use crate::store::StoreError;
use redis::Value;
use std::collections::BTreeMap;

/// Counts a bind unless the client has `max` already. KEYS: binds hash. ARGV: node, max.
const BIND: &str = r"
local total = 0
for _, v in ipairs(redis.call('HVALS', KEYS[1])) do
  total = total + tonumber(v)
end
if total >= tonumber(ARGV[2]) then
  return 0
end
redis.call('HINCRBY', KEYS[1], ARGV[1], 1)
return 1
";

/// Counts an unbind. KEYS: binds hash. ARGV: node.
const UNBIND: &str = r"
local n = redis.call('HINCRBY', KEYS[1], ARGV[1], -1)
if n <= 0 then
  redis.call('HDEL', KEYS[1], ARGV[1])
end
return n
";

impl Cluster {
    async fn script(&self, script: &str, client: &str, args: &[&str]) -> Result<Value, StoreError> {
        let mut cmd = redis::cmd("EVAL");
        cmd.arg(script).arg(1).arg(self.store.keys().binds(client));
        for a in args {
            cmd.arg(*a);
        }
        Ok(cmd.query_async(&mut self.store.conn().clone()).await?)
    }

    /// Counts a bind of `client` on this node unless the cluster has `max` of them already.
    pub async fn bind(&self, client: &str, max: u32) -> Result<bool, StoreError> {
        let counted = self.script(BIND, client, &[&self.node, &max.to_string()]).await?;
        Ok(int(&counted) == Some(1))
    }

    /// Counts an unbind of `client` on this node.
    pub async fn unbind(&self, client: &str) -> Result<(), StoreError> {
        self.script(UNBIND, client, &[&self.node]).await.map(drop)
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

    /// Forgets this node's binds of every client (at start: a run before this one may have
    /// died with some counted; at a clean stop).
    pub(super) async fn forget_binds(&self, clients: &[String]) -> Result<(), StoreError> {
        let mut pipe = redis::pipe();
        for client in clients {
            pipe.cmd("HDEL")
                .arg(self.store.keys().binds(client))
                .arg(&*self.node)
                .ignore();
        }
        if self.store.conn().is_cluster() {
            // One slot per client on a cluster: one command at a time.
            let mut conn = self.store.conn().clone();
            for client in clients {
                let _: i64 = redis::cmd("HDEL")
                    .arg(self.store.keys().binds(client))
                    .arg(&*self.node)
                    .query_async(&mut conn)
                    .await?;
            }
            return Ok(());
        }
        pipe.query_async::<()>(&mut self.store.conn().clone()).await?;
        Ok(())
    }

    /// Drops the binds of nodes whose heartbeat is gone, for every client; gives the clients'
    /// binds per node as they stand after it.
    pub async fn sweep_binds(&self, clients: &[String]) -> Result<BTreeMap<String, BTreeMap<String, u32>>, StoreError> {
        let alive = self.alive().await?;
        let mut out = BTreeMap::new();
        let mut conn = self.store.conn().clone();
        for client in clients {
            let mut binds = self.binds_of(client).await?;
            let dead: Vec<String> = binds.keys().filter(|n| !alive.contains(n)).cloned().collect();
            for node in &dead {
                let _: i64 = redis::cmd("HDEL")
                    .arg(self.store.keys().binds(client))
                    .arg(node)
                    .query_async(&mut conn)
                    .await?;
                binds.remove(node);
                tracing::info!(client, node, "binds of a node gone from the cluster forgotten");
            }
            out.insert(client.clone(), binds);
        }
        Ok(out)
    }
}
