//! Reading the shared outboxes (one stream per client, consumer group `dlv`, one consumer per
//! node): fetching entries, taking over those another node cannot deliver, trimming those past
//! `receipt_ttl`, counting them. Each call is one client's and runs on its own, off the hot
//! path's batches.

use super::keys::GROUP;
use super::RedisStore;
use crate::store::{Commit, OutboxEntry, OutboxId, SharedOutbox, StoreError, Ticket};
use redis::streams::{
    StreamAutoClaimReply, StreamClaimReply, StreamId, StreamPendingCountReply, StreamPendingReply, StreamReadReply,
};
use redis::{ErrorKind, Value};
use std::time::{SystemTime, UNIX_EPOCH};

/// An entry as the account wants it; `None` for one deleted meanwhile (trimmed).
fn entry(id: &StreamId) -> Option<OutboxEntry> {
    let pdu = match id.map.get("p")? {
        Value::BulkString(bytes) => bytes.clone(),
        _ => return None,
    };
    let id = OutboxId::parse_stream(&id.id)?;
    Some(OutboxEntry {
        id,
        stored_at: id.ms() / 1000,
        pdu,
    })
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl RedisStore {
    /// Runs `work` on its own task and answers the ticket with what it gives.
    fn spawn<T, F>(&self, work: impl FnOnce(RedisStore2) -> F) -> Ticket<T>
    where
        T: Send + 'static,
        F: std::future::Future<Output = Result<T, StoreError>> + Send + 'static,
    {
        let (ticket, reply) = Ticket::channel();
        let fut = work(RedisStore2 {
            conn: self.conn.clone(),
            keys: self.keys.clone(),
            node: self.node.clone(),
            claim_idle_ms: self.claim_idle.as_millis() as u64,
            settle_ms: self.settle.as_millis() as u64,
            judge: self.health.steady(self.settle),
            judge_idle: self.health.steady(self.settle + self.claim_idle / 3),
        });
        self.runtime.spawn(async move {
            let _ = reply.send(fut.await);
        });
        ticket
    }
}

/// What the outbox calls need of the store, owned, for their task.
pub(super) struct RedisStore2 {
    conn: super::Conn,
    keys: super::Keys,
    node: std::sync::Arc<str>,
    claim_idle_ms: u64,
    /// A node's heartbeat TTL: what another node fetched this recently is not taken from it
    /// (its counts may not say yet that it has binds).
    settle_ms: u64,
    /// Other nodes may be judged by their heartbeats (see [`super::Health::steady`]).
    judge: bool,
    /// Entries may be judged by their idle time: every node has had the time to touch what it
    /// holds since the store came back.
    judge_idle: bool,
}

impl RedisStore2 {
    /// Makes sure `outbox` has the consumer group (from its start: nothing stored before the
    /// group was made is missed).
    async fn group(&mut self, outbox: &str) -> Result<(), StoreError> {
        let made: Result<(), redis::RedisError> = redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(outbox)
            .arg(GROUP)
            .arg("0")
            .arg("MKSTREAM")
            .query_async(&mut self.conn)
            .await;
        match made {
            Err(e) if e.code() != Some("BUSYGROUP") => Err(e.into()),
            _ => Ok(()),
        }
    }

    async fn read(&mut self, outbox: &str, count: usize, from: &str) -> Result<Vec<StreamId>, StoreError> {
        let mut cmd = redis::cmd("XREADGROUP");
        cmd.arg("GROUP")
            .arg(GROUP)
            .arg(&*self.node)
            .arg("COUNT")
            .arg(count)
            .arg("STREAMS")
            .arg(outbox)
            .arg(from);
        let read: Result<Option<StreamReadReply>, redis::RedisError> = cmd.query_async(&mut self.conn).await;
        let reply = match read {
            Ok(reply) => reply,
            // The group is gone (a Redis that lost its data): make it and read again.
            Err(e) if e.code() == Some("NOGROUP") => {
                self.group(outbox).await?;
                cmd.query_async(&mut self.conn).await?
            }
            Err(e) => return Err(e.into()),
        };
        Ok(reply
            .map(|r| r.keys.into_iter().flat_map(|k| k.ids).collect())
            .unwrap_or_default())
    }

    /// Acknowledges entries that are gone from the stream (trimmed), so they leave the
    /// group's pending list.
    async fn forget(&mut self, outbox: &str, ids: &[String]) -> Result<(), StoreError> {
        if ids.is_empty() {
            return Ok(());
        }
        let _: i64 = redis::cmd("XACK")
            .arg(outbox)
            .arg(GROUP)
            .arg(ids)
            .query_async(&mut self.conn)
            .await?;
        Ok(())
    }

    /// Entries read, those deleted meanwhile acknowledged away.
    async fn entries(&mut self, outbox: &str, ids: Vec<StreamId>) -> Result<Vec<OutboxEntry>, StoreError> {
        let mut out = Vec::with_capacity(ids.len());
        let mut gone = Vec::new();
        for id in &ids {
            match entry(id) {
                Some(e) => out.push(e),
                None => gone.push(id.id.clone()),
            }
        }
        self.forget(outbox, &gone).await?;
        Ok(out)
    }

    /// Whether `node` can deliver: its heartbeat is there, and it has receiver-capable binds
    /// of `client`.
    async fn can_deliver(&mut self, client: &str, node: &str) -> Result<bool, StoreError> {
        let alive: bool = redis::cmd("EXISTS")
            .arg(self.keys.node(node))
            .query_async(&mut self.conn)
            .await?;
        if !alive {
            return Ok(false);
        }
        let binds: Option<i64> = redis::cmd("HGET")
            .arg(self.keys.receivers(client))
            .arg(node)
            .query_async(&mut self.conn)
            .await?;
        Ok(binds.unwrap_or(0) > 0)
    }
}

/// Resets the idle time of the entries still this node's, and gives those that are not.
/// KEYS: outbox. ARGV: group, node, ids.
const TOUCH: &str = r"
local lost = {}
local claim = {KEYS[1], ARGV[1], ARGV[2], 0}
for i = 3, #ARGV do
  local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[i], ARGV[i], 1)
  if p[1] and p[1][2] == ARGV[2] then
    table.insert(claim, ARGV[i])
  else
    table.insert(lost, ARGV[i])
  end
end
if #claim > 4 then
  table.insert(claim, 'JUSTID')
  redis.call('XCLAIM', unpack(claim))
end
return lost
";

impl SharedOutbox for RedisStore {
    fn fetch(&self, client: &str, count: usize, pending_after: Option<OutboxId>) -> Ticket<Vec<OutboxEntry>> {
        let outbox = self.keys.outbox(client);
        let first = !self.grouped.contains(client);
        if first {
            self.grouped.insert(client.to_owned());
        }
        self.spawn(move |mut s| async move {
            if first {
                s.group(&outbox).await?;
            }
            let from = pending_after.map_or_else(|| ">".to_owned(), |id| id.to_string());
            let ids = s.read(&outbox, count, &from).await?;
            s.entries(&outbox, ids).await
        })
    }

    fn take_over(&self, client: &str, count: usize) -> Ticket<Vec<OutboxEntry>> {
        let outbox = self.keys.outbox(client);
        let client = client.to_owned();
        self.spawn(move |mut s| async move {
            let mut taken = Vec::new();
            // Entries of nodes that cannot deliver them (gone, or no receiver of this client):
            // now, unless the store has just come back (every heartbeat may have lapsed).
            let pending: StreamPendingReply = redis::cmd("XPENDING")
                .arg(&outbox)
                .arg(GROUP)
                .query_async(&mut s.conn)
                .await
                .or_else(|e: redis::RedisError| match e.code() {
                    Some("NOGROUP") => Ok(StreamPendingReply::Empty),
                    _ => Err(e),
                })?;
            let StreamPendingReply::Data(data) = pending else {
                return Ok(taken);
            };
            let me = s.node.clone();
            let judge = s.judge;
            let others = data
                .consumers
                .iter()
                .filter(|c| judge && *c.name != *me && c.pending > 0);
            for consumer in others {
                if taken.len() >= count || s.can_deliver(&client, &consumer.name).await? {
                    continue;
                }
                let theirs: StreamPendingCountReply = redis::cmd("XPENDING")
                    .arg(&outbox)
                    .arg(GROUP)
                    .arg("-")
                    .arg("+")
                    .arg(count - taken.len())
                    .arg(&consumer.name)
                    .query_async(&mut s.conn)
                    .await?;
                let ids: Vec<String> = theirs.ids.into_iter().map(|p| p.id).collect();
                if ids.is_empty() {
                    continue;
                }
                let claimed: StreamClaimReply = redis::cmd("XCLAIM")
                    .arg(&outbox)
                    .arg(GROUP)
                    .arg(&*s.node)
                    .arg(s.settle_ms)
                    .arg(&ids)
                    .query_async(&mut s.conn)
                    .await?;
                // Ids not claimed sat idle less than `settle` (the next round takes them), or
                // were trimmed meanwhile (Redis 7 drops them from the pending list; earlier
                // versions give them without their entry, and `entries` acknowledges them).
                taken.extend(s.entries(&outbox, claimed.ids).await?);
            }
            // Entries a live node fetched and has not touched for `claim_idle` (it lost track
            // of them).
            if s.judge_idle && taken.len() < count {
                let auto: Result<StreamAutoClaimReply, redis::RedisError> = redis::cmd("XAUTOCLAIM")
                    .arg(&outbox)
                    .arg(GROUP)
                    .arg(&*s.node)
                    .arg(s.claim_idle_ms)
                    .arg("0-0")
                    .arg("COUNT")
                    .arg(count - taken.len())
                    .query_async(&mut s.conn)
                    .await;
                match auto {
                    Ok(reply) => {
                        s.forget(&outbox, &reply.deleted_ids).await?;
                        taken.extend(s.entries(&outbox, reply.claimed).await?);
                    }
                    Err(e)
                        if e.kind() == ErrorKind::Server(redis::ServerErrorKind::ResponseError)
                            && e.code() == Some("NOGROUP") => {}
                    Err(e) => return Err(e.into()),
                }
            }
            taken.sort_by_key(|e| e.id);
            Ok(taken)
        })
    }

    fn touch(&self, client: &str, ids: Vec<OutboxId>) -> Ticket<Vec<OutboxId>> {
        let outbox = self.keys.outbox(client);
        self.spawn(move |mut s| async move {
            let mut lost = Vec::new();
            // A few hundred at most (what one node holds for a client); Lua's unpack takes
            // some thousands.
            for chunk in ids.chunks(512) {
                let mut cmd = redis::cmd("EVAL");
                cmd.arg(TOUCH).arg(1).arg(&outbox).arg(GROUP).arg(&*s.node);
                for id in chunk {
                    cmd.arg(id.to_string());
                }
                let gone: Vec<String> = cmd.query_async(&mut s.conn).await?;
                lost.extend(gone.iter().filter_map(|id| OutboxId::parse_stream(id)));
            }
            Ok(lost)
        })
    }

    fn claim_idle(&self) -> std::time::Duration {
        self.claim_idle
    }

    fn trim(&self, client: &str, max_age: u64) -> Commit {
        let outbox = self.keys.outbox(client);
        self.spawn(move |mut s| async move {
            let oldest = now_ms().saturating_sub(max_age.saturating_mul(1000));
            let trimmed: u64 = redis::cmd("XTRIM")
                .arg(&outbox)
                .arg("MINID")
                .arg(oldest)
                .query_async(&mut s.conn)
                .await?;
            Ok(trimmed)
        })
    }

    fn depth(&self, client: &str) -> Ticket<u64> {
        let outbox = self.keys.outbox(client);
        self.spawn(move |mut s| async move { Ok(redis::cmd("XLEN").arg(&outbox).query_async(&mut s.conn).await?) })
    }
}
