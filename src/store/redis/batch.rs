//! The shared store's hot operations, batched: correlation writes, lookups and removals,
//! outbox writes and acknowledgements queue up while the last batches are out, and go out
//! together, as few commands as they can be: every correlation write of a batch in one script
//! call, every lookup in one `MGET`, every removal in one `UNLINK` (one of each per hash slot on
//! a Redis Cluster, where the keys of one upstream, or of one client, share a slot), in one
//! pipeline per slot. A batch that fails as a whole (the connection, a failover) is sent again
//! until `store_timeout` has passed since it was first sent, then its operations fail; every
//! operation is safe to send twice (outbox writes carry a marker that makes a second copy a
//! no-op); outbox acknowledgements are sent until they go through. A command refused fails
//! only its operations, unless the refusal says the server cannot take commands now
//! (`LOADING`, `READONLY`, ...): then the whole batch is sent again.

use super::conn::Conn;
use super::keys::tag;
use super::recent::Recent;
use super::Health;
use crate::store::record::decode;
use crate::store::{Correlation, OutboxId, Pushed, Reply, StoreError};
use redis::{Cmd, Pipeline, Value};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// A batch closes at this many operations.
const BATCH_MAX: usize = 1024;
/// Batches out at once.
const IN_FLIGHT: usize = 4;
/// The first wait before a failed batch is sent again (doubling to a second).
const RETRY_FIRST: Duration = Duration::from_millis(50);
const RETRY_MAX: Duration = Duration::from_secs(1);

/// Stores an entry in a client's outbox, once: the marker first (a second copy of the same
/// receipt, or a retry of this write, finds it and stops), then the outbox's cap, then the
/// entry; the doorbell tells the nodes. KEYS: outbox, marker. ARGV: cap, marker TTL (s), PDU,
/// bell channel, client.
pub(super) const PUSH: &str = r"
if not redis.call('SET', KEYS[2], '1', 'NX', 'EX', ARGV[2]) then
  return 'dup'
end
if redis.call('XLEN', KEYS[1]) >= tonumber(ARGV[1]) then
  redis.call('DEL', KEYS[2])
  return 'full'
end
local id = redis.call('XADD', KEYS[1], '*', 'p', ARGV[3])
redis.call('PUBLISH', ARGV[4], ARGV[5])
return id
";

/// Sets every key to its value with one TTL, in one call. KEYS: the keys. ARGV: the values,
/// then the TTL (s).
const SET_ALL: &str = r"
local ttl = ARGV[#ARGV]
for i = 1, #KEYS do
  redis.call('SET', KEYS[i], ARGV[i], 'EX', ttl)
end
return #KEYS
";

/// One hot operation and where its answer goes.
pub(super) enum Op {
    /// The correlation, and the index from the client's id to it, both with the TTL.
    Record {
        corr: String,
        cid: String,
        value: Vec<u8>,
        ttl: u64,
        reply: Reply<u64>,
    },
    /// The forms a receipt's ids may be filed under; the first one there.
    Find {
        keys: Vec<String>,
        reply: Reply<Option<Arc<Correlation>>>,
    },
    /// The correlation and its index.
    Remove {
        corr: String,
        cid: String,
        reply: Reply<u64>,
    },
    /// The push script.
    Push {
        outbox: String,
        seen: String,
        seen_ttl: u64,
        cap: usize,
        pdu: Vec<u8>,
        bell: Arc<str>,
        client: Arc<str>,
        reply: Reply<Pushed>,
    },
    /// `XACK`, `XDEL`.
    Ack {
        outbox: String,
        id: OutboxId,
        reply: Reply<u64>,
    },
}

impl Op {
    fn fail(self, e: StoreError) {
        match self {
            Op::Record { reply, .. } | Op::Remove { reply, .. } | Op::Ack { reply, .. } => drop(reply.send(Err(e))),
            Op::Find { reply, .. } => drop(reply.send(Err(e))),
            Op::Push { reply, .. } => drop(reply.send(Err(e))),
        }
    }
}

/// A refusal that says nothing about the command but that the server cannot take commands
/// now (loading its data, a replica, a primary without its replicas, a script running, a
/// cluster resharding or down): the whole batch is sent again, as for a lost connection.
fn transient(v: &Value) -> Option<StoreError> {
    match v {
        Value::ServerError(e)
            if matches!(
                e.code(),
                "LOADING" | "READONLY" | "MASTERDOWN" | "BUSY" | "TRYAGAIN" | "CLUSTERDOWN"
            ) =>
        {
            Some(redis::RedisError::from(e.clone()).into())
        }
        _ => None,
    }
}

fn server_error(v: &Value) -> Option<StoreError> {
    match v {
        Value::ServerError(e) => Some(redis::RedisError::from(e.clone()).into()),
        _ => None,
    }
}

/// Serves `rx` until every sender is gone: up to `IN_FLIGHT` batches out at once (their
/// commands go out in order on one connection, so Redis applies them in order), each taking
/// what queued up since the last one went.
pub(super) async fn run(
    conn: Conn,
    mut rx: mpsc::UnboundedReceiver<Op>,
    health: Arc<Health>,
    recent: Arc<Recent>,
    timeout: Duration,
) {
    let mut out = futures_util::stream::FuturesUnordered::new();
    let mut open = true;
    while open || !out.is_empty() {
        tokio::select! {
            first = rx.recv(), if open && out.len() < IN_FLIGHT => {
                let Some(first) = first else {
                    open = false;
                    continue;
                };
                let mut batch = Vec::with_capacity(64);
                batch.push(first);
                while batch.len() < BATCH_MAX {
                    match rx.try_recv() {
                        Ok(op) => batch.push(op),
                        Err(_) => break,
                    }
                }
                out.push(complete(conn.clone(), batch, health.clone(), recent.clone(), timeout));
            }
            Some(()) = futures_util::StreamExt::next(&mut out), if !out.is_empty() => {}
        }
    }
}

/// Sends `batch` until it goes through or `timeout` has passed, and answers its operations.
/// Outbox acknowledgements are not given up on: the client has its entry, and an entry left
/// pending would be delivered again; they go on being sent, on a task of their own (so they do
/// not hold a place of the batches in flight), until the store answers.
async fn complete(conn: Conn, batch: Vec<Op>, health: Arc<Health>, recent: Arc<Recent>, timeout: Duration) {
    let deadline = Some(Instant::now() + timeout);
    let Err((batch, e)) = send_until(&conn, batch, &health, &recent, deadline).await else {
        return;
    };
    let (acks, others): (Vec<Op>, Vec<Op>) = batch.into_iter().partition(|op| matches!(op, Op::Ack { .. }));
    for op in others {
        op.fail(e.clone());
    }
    if !acks.is_empty() {
        tokio::spawn(async move { send_until(&conn, acks, &health, &recent, None).await });
    }
}

/// Sends `batch` until it goes through (and answers its operations) or `deadline` would pass
/// before the next try (and gives it back, with the last error).
async fn send_until(
    conn: &Conn,
    batch: Vec<Op>,
    health: &Health,
    recent: &Recent,
    deadline: Option<Instant>,
) -> Result<(), (Vec<Op>, StoreError)> {
    let mut wait = RETRY_FIRST;
    let plan = Plan::of(&batch, conn.is_cluster());
    loop {
        match plan.send(conn).await {
            Ok(replies) => {
                health.up();
                plan.answer(batch, replies, recent);
                return Ok(());
            }
            Err(e) => {
                health.down(&e);
                if deadline.is_some_and(|d| Instant::now() + wait >= d) {
                    return Err((batch, e));
                }
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(RETRY_MAX);
            }
        }
    }
}

/// Which command of which pipeline answers for an operation, and how.
#[derive(Clone, Copy)]
enum Part {
    /// A command whose success is the operation's (one of its parts).
    Done { pipe: usize, cmd: usize },
    /// Values `from..from + n` of an `MGET`.
    Values {
        pipe: usize,
        cmd: usize,
        from: usize,
        n: usize,
    },
    /// A command of its own whose reply is the operation's answer.
    Own { pipe: usize, cmd: usize },
}

/// A batch as commands: grouped by hash slot (one group without a cluster), one script call
/// for every correlation write of a group, one `MGET` for every lookup, one `UNLINK` for every
/// removal; outbox writes and acknowledgements as commands of their own.
struct Plan {
    pipes: Vec<Pipeline>,
    /// Each operation's parts, in the batch's order.
    parts: Vec<Vec<Part>>,
}

/// A group's aggregated commands as they are being built.
#[derive(Default)]
struct Group {
    set_keys: Vec<String>,
    set_values: Vec<Vec<u8>>,
    set_ops: Vec<usize>,
    get_keys: Vec<String>,
    get_ops: Vec<(usize, usize, usize)>,
    unlink_keys: Vec<String>,
    unlink_ops: Vec<usize>,
    own: Vec<(usize, Cmd)>,
}

/// The group of `key` (its slot's on a cluster, the one group otherwise), made on first use.
fn group_of<'a>(
    groups: &'a mut HashMap<String, Group>,
    order: &mut Vec<String>,
    key: &str,
    cluster: bool,
) -> &'a mut Group {
    let t = if cluster { tag(key) } else { "" };
    if !groups.contains_key(t) {
        order.push(t.to_owned());
    }
    groups.entry(t.to_owned()).or_default()
}

impl Plan {
    fn of(batch: &[Op], cluster: bool) -> Plan {
        let mut order: Vec<String> = Vec::new();
        let mut groups: HashMap<String, Group> = HashMap::new();
        let mut ttl = 0;
        for (i, op) in batch.iter().enumerate() {
            match op {
                Op::Record {
                    corr,
                    cid,
                    value,
                    ttl: t,
                    ..
                } => {
                    ttl = *t;
                    let g = group_of(&mut groups, &mut order, corr, cluster);
                    g.set_keys.push(corr.clone());
                    g.set_values.push(value.clone());
                    g.set_ops.push(i);
                    let g = group_of(&mut groups, &mut order, cid, cluster);
                    g.set_keys.push(cid.clone());
                    g.set_values.push(corr.clone().into_bytes());
                    g.set_ops.push(i);
                }
                Op::Find { keys, .. } => {
                    // The forms of one receipt's ids are one upstream's: one slot.
                    let g = group_of(&mut groups, &mut order, &keys[0], cluster);
                    g.get_ops.push((i, g.get_keys.len(), keys.len()));
                    g.get_keys.extend(keys.iter().cloned());
                }
                Op::Remove { corr, cid, .. } => {
                    for key in [corr, cid] {
                        let g = group_of(&mut groups, &mut order, key, cluster);
                        g.unlink_keys.push(key.clone());
                        g.unlink_ops.push(i);
                    }
                }
                Op::Push {
                    outbox,
                    seen,
                    seen_ttl,
                    cap,
                    pdu,
                    bell,
                    client,
                    ..
                } => {
                    // EVAL, not EVALSHA: a Redis restarted (or a new cluster master) has no
                    // scripts loaded, and the server caches the compiled script anyway.
                    let mut eval = redis::cmd("EVAL");
                    eval.arg(PUSH)
                        .arg(2)
                        .arg(outbox)
                        .arg(seen)
                        .arg(*cap)
                        .arg(*seen_ttl)
                        .arg(pdu.as_slice())
                        .arg(&**bell)
                        .arg(&**client);
                    group_of(&mut groups, &mut order, outbox, cluster).own.push((i, eval));
                }
                Op::Ack { outbox, id, .. } => {
                    let id = id.to_string();
                    let mut ack = redis::cmd("XACK");
                    ack.arg(outbox).arg(super::keys::GROUP).arg(&id);
                    let mut del = redis::cmd("XDEL");
                    del.arg(outbox).arg(&id);
                    let g = group_of(&mut groups, &mut order, outbox, cluster);
                    g.own.push((i, ack));
                    g.own.push((i, del));
                }
            }
        }
        let mut parts: Vec<Vec<Part>> = vec![Vec::new(); batch.len()];
        let mut pipes: Vec<Pipeline> = Vec::new();
        for t in order {
            let Some(g) = groups.remove(&t) else { continue };
            // One pipeline per group on a cluster; one in all otherwise.
            if pipes.is_empty() || cluster {
                let mut pipe = redis::pipe();
                pipe.ignore_errors();
                pipes.push(pipe);
            }
            let p = pipes.len() - 1;
            let pipe = &mut pipes[p];
            let mut next = pipe.cmd_iter().count();
            if !g.set_keys.is_empty() {
                let mut eval = redis::cmd("EVAL");
                eval.arg(SET_ALL).arg(g.set_keys.len()).arg(&g.set_keys);
                for v in &g.set_values {
                    eval.arg(v.as_slice());
                }
                eval.arg(ttl);
                pipe.add_command(eval);
                for i in g.set_ops {
                    parts[i].push(Part::Done { pipe: p, cmd: next });
                }
                next += 1;
            }
            if !g.get_keys.is_empty() {
                pipe.cmd("MGET").arg(&g.get_keys);
                for (i, from, n) in g.get_ops {
                    parts[i].push(Part::Values {
                        pipe: p,
                        cmd: next,
                        from,
                        n,
                    });
                }
                next += 1;
            }
            if !g.unlink_keys.is_empty() {
                pipe.cmd("UNLINK").arg(&g.unlink_keys);
                for i in g.unlink_ops {
                    parts[i].push(Part::Done { pipe: p, cmd: next });
                }
                next += 1;
            }
            for (i, cmd) in g.own {
                pipe.add_command(cmd);
                parts[i].push(Part::Own { pipe: p, cmd: next });
                next += 1;
            }
        }
        Plan { pipes, parts }
    }

    /// Sends every pipeline at once; their replies, by pipeline.
    async fn send(&self, conn: &Conn) -> Result<Vec<Vec<Value>>, StoreError> {
        let sent = self.pipes.iter().map(|pipe| {
            let mut conn = conn.clone();
            async move { pipe.query_async::<Vec<Value>>(&mut conn).await }
        });
        let mut replies = Vec::with_capacity(self.pipes.len());
        for reply in futures_util::future::join_all(sent).await {
            let reply = reply?;
            if let Some(e) = reply.iter().find_map(transient) {
                return Err(e);
            }
            replies.push(reply);
        }
        Ok(replies)
    }

    /// Answers each operation from its parts of the replies.
    fn answer(&self, batch: Vec<Op>, replies: Vec<Vec<Value>>, recent: &Recent) {
        let reply = |pipe: usize, cmd: usize| replies.get(pipe).and_then(|r| r.get(cmd)).unwrap_or(&Value::Nil);
        for (op, parts) in batch.into_iter().zip(&self.parts) {
            let failed = parts.iter().find_map(|part| match *part {
                Part::Done { pipe, cmd } | Part::Values { pipe, cmd, .. } | Part::Own { pipe, cmd } => {
                    server_error(reply(pipe, cmd))
                }
            });
            if let Some(e) = failed {
                op.fail(e);
                continue;
            }
            match op {
                Op::Record { corr, reply, .. } => {
                    // Only now: a receipt matched here before Redis has the correlation could
                    // reach the client before its submit_sm_resp, or for a submit that failed.
                    recent.acknowledged(&corr);
                    let _ = reply.send(Ok(0));
                }
                Op::Remove { reply, .. } | Op::Ack { reply, .. } => {
                    let _ = reply.send(Ok(0));
                }
                Op::Find { reply: answer, .. } => {
                    let found = parts.iter().find_map(|part| match *part {
                        Part::Values { pipe, cmd, from, n } => match reply(pipe, cmd) {
                            Value::Array(values) => values.iter().skip(from).take(n).find_map(|v| match v {
                                Value::BulkString(bytes) => Some(decode(bytes).map(|c| Some(Arc::new(c)))),
                                _ => None,
                            }),
                            _ => None,
                        },
                        _ => None,
                    });
                    let _ = answer.send(found.unwrap_or(Ok(None)));
                }
                Op::Push { reply: answer, .. } => {
                    let value = parts.iter().find_map(|part| match *part {
                        Part::Own { pipe, cmd } => Some(reply(pipe, cmd)),
                        _ => None,
                    });
                    let pushed = match value {
                        Some(Value::SimpleString(s)) if s == "dup" => Ok(Pushed::Duplicate),
                        Some(Value::SimpleString(s)) if s == "full" => Ok(Pushed::Full),
                        Some(Value::BulkString(b)) if b == b"dup" => Ok(Pushed::Duplicate),
                        Some(Value::BulkString(b)) if b == b"full" => Ok(Pushed::Full),
                        Some(Value::BulkString(id)) => std::str::from_utf8(id)
                            .ok()
                            .and_then(OutboxId::parse_stream)
                            .map(Pushed::Stored)
                            .ok_or(StoreError::Unexpected("an outbox write")),
                        _ => Err(StoreError::Unexpected("an outbox write")),
                    };
                    let _ = answer.send(pushed);
                }
            }
        }
    }
}
