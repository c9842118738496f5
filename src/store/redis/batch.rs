//! The shared store's hot operations, batched: correlation writes, lookups and removals,
//! outbox writes and acknowledgements queue up while the last batch is out, and go as one
//! pipeline (one per hash slot on a Redis Cluster: the keys of one upstream or one client
//! share one). A batch that fails as a whole (the connection, a failover) is sent again until
//! `store_timeout` has passed since it was first sent, then its operations fail; every
//! operation is safe to send twice (outbox writes carry a marker that makes a second copy a
//! no-op). A batch's own failures (a command refused) fail only that operation.

use super::keys::tag;
use super::Health;
use crate::store::record::decode;
use crate::store::{Correlation, OutboxId, Pushed, Reply, StoreError};
use redis::{Pipeline, Value};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

use super::conn::Conn;

/// A batch closes at this many operations.
const BATCH_MAX: usize = 1024;
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

/// One hot operation and where its answer goes.
pub(super) enum Op {
    /// `SET corr value EX ttl`, `SET cid corr EX ttl`.
    Record {
        corr: String,
        cid: String,
        value: Vec<u8>,
        ttl: u64,
        reply: Reply<u64>,
    },
    /// `GET` each key (the forms a receipt's ids may be filed under) until one is there.
    Find {
        keys: Vec<String>,
        reply: Reply<Option<Arc<Correlation>>>,
    },
    /// `UNLINK corr`, `UNLINK cid`.
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
    /// Its commands, each with the hash tag of its key (a cluster sends the commands of one tag
    /// in one pipeline; a correlation write touches an upstream's slot and a client's).
    fn commands(&self) -> Vec<(&str, redis::Cmd)> {
        let mut out = Vec::with_capacity(2);
        match self {
            Op::Record {
                corr, cid, value, ttl, ..
            } => {
                let mut set = redis::cmd("SET");
                set.arg(corr).arg(value).arg("EX").arg(*ttl);
                out.push((tag(corr), set));
                let mut index = redis::cmd("SET");
                index.arg(cid).arg(corr).arg("EX").arg(*ttl);
                out.push((tag(cid), index));
            }
            Op::Find { keys, .. } => {
                for key in keys {
                    let mut get = redis::cmd("GET");
                    get.arg(key);
                    out.push((tag(key), get));
                }
            }
            Op::Remove { corr, cid, .. } => {
                for key in [corr, cid] {
                    let mut unlink = redis::cmd("UNLINK");
                    unlink.arg(key);
                    out.push((tag(key), unlink));
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
                // EVAL, not EVALSHA: a Redis restarted (or a new cluster master) has no scripts
                // loaded, and the server caches the compiled script anyway.
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
                out.push((tag(outbox), eval));
            }
            Op::Ack { outbox, id, .. } => {
                let id = id.to_string();
                let mut ack = redis::cmd("XACK");
                ack.arg(outbox).arg(super::keys::GROUP).arg(&id);
                out.push((tag(outbox), ack));
                let mut del = redis::cmd("XDEL");
                del.arg(outbox).arg(&id);
                out.push((tag(outbox), del));
            }
        }
        out
    }

    /// Answers with this operation's replies (one per command, in order).
    fn answer(self, values: &[Value]) {
        if let Some(e) = values.iter().find_map(server_error) {
            return self.fail(e);
        }
        match self {
            Op::Record { reply, .. } | Op::Remove { reply, .. } | Op::Ack { reply, .. } => {
                let _ = reply.send(Ok(0));
            }
            Op::Find { reply, .. } => {
                let found = values.iter().find_map(|v| match v {
                    Value::BulkString(bytes) => Some(decode(bytes).map(|c| Some(Arc::new(c)))),
                    _ => None,
                });
                let _ = reply.send(found.unwrap_or(Ok(None)));
            }
            Op::Push { reply, .. } => {
                let pushed = match values.first() {
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
                let _ = reply.send(pushed);
            }
        }
    }

    fn fail(self, e: StoreError) {
        match self {
            Op::Record { reply, .. } | Op::Remove { reply, .. } | Op::Ack { reply, .. } => drop(reply.send(Err(e))),
            Op::Find { reply, .. } => drop(reply.send(Err(e))),
            Op::Push { reply, .. } => drop(reply.send(Err(e))),
        }
    }
}

fn server_error(v: &Value) -> Option<StoreError> {
    match v {
        Value::ServerError(e) => Some(redis::RedisError::from(e.clone()).into()),
        _ => None,
    }
}

/// Serves `rx` until every sender is gone.
pub(super) async fn run(conn: Conn, mut rx: mpsc::UnboundedReceiver<Op>, health: Arc<Health>, timeout: Duration) {
    let mut batch: Vec<Op> = Vec::with_capacity(BATCH_MAX);
    while let Some(first) = rx.recv().await {
        batch.push(first);
        while batch.len() < BATCH_MAX {
            match rx.try_recv() {
                Ok(op) => batch.push(op),
                Err(_) => break,
            }
        }
        let since = Instant::now();
        let mut wait = RETRY_FIRST;
        loop {
            match send(&conn, &batch).await {
                Ok(replies) => {
                    health.up();
                    for (op, values) in batch.drain(..).zip(replies) {
                        op.answer(&values);
                    }
                    break;
                }
                Err(e) => {
                    health.down(&e);
                    if since.elapsed() + wait >= timeout {
                        for op in batch.drain(..) {
                            op.fail(e.clone());
                        }
                        break;
                    }
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(RETRY_MAX);
                }
            }
        }
    }
}

/// Sends a batch; gives each operation its replies, in its commands' order.
async fn send(conn: &Conn, batch: &[Op]) -> Result<Vec<Vec<Value>>, StoreError> {
    // One pipeline, or one per hash tag on a cluster, all out at once. `place[k]`: which
    // pipeline the k-th command of the batch went to.
    let mut pipes: Vec<Pipeline> = Vec::new();
    let mut by_tag: HashMap<&str, usize> = HashMap::new();
    let mut place: Vec<usize> = Vec::new();
    let mut counts: Vec<usize> = Vec::with_capacity(batch.len());
    for op in batch {
        let commands = op.commands();
        counts.push(commands.len());
        for (tag, cmd) in commands {
            let p = match (conn.is_cluster(), pipes.is_empty()) {
                (false, false) => 0,
                (false, true) => {
                    pipes.push(new_pipeline());
                    0
                }
                (true, _) => *by_tag.entry(tag).or_insert_with(|| {
                    pipes.push(new_pipeline());
                    pipes.len() - 1
                }),
            };
            pipes[p].add_command(cmd);
            place.push(p);
        }
    }
    let sent = pipes.iter().map(|pipe| {
        let mut conn = conn.clone();
        async move { pipe.query_async::<Vec<Value>>(&mut conn).await }
    });
    let mut answers = Vec::with_capacity(pipes.len());
    for answer in futures_util::future::join_all(sent).await {
        answers.push(answer?.into_iter());
    }
    let mut places = place.into_iter();
    let mut out = Vec::with_capacity(batch.len());
    for n in counts {
        let values = places
            .by_ref()
            .take(n)
            .map(|p| answers[p].next().unwrap_or(Value::Nil))
            .collect();
        out.push(values);
    }
    Ok(out)
}

fn new_pipeline() -> Pipeline {
    let mut pipe = redis::pipe();
    pipe.ignore_errors();
    pipe
}
