//! An account's side of a shared outbox (cluster mode): what to fetch, when. Entries are
//! fetched only as far as this node's binds have room, so what a node holds undelivered stays
//! small and the rest stays in the outbox for any node. One operation at a time: a fetch (this
//! node's own unfinished entries first, after a restart or a new first bind, then new ones), a
//! take-over of entries other nodes cannot deliver, or a trim of entries past `receipt_ttl`.

use crate::store::{OutboxEntry, OutboxId, Store, StoreError, Ticket};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::{Interval, MissedTickBehavior};
use tracing::{debug, warn};

/// Most entries one fetch asks for.
const FETCH_MAX: usize = 256;

/// What finished.
pub(super) enum Fetched {
    /// Entries for this node to deliver, in order.
    Entries(Vec<OutboxEntry>),
    /// A trim dropped this many entries past `receipt_ttl`.
    Trimmed(u64),
    /// Time to look at the outbox again.
    Tick,
}

enum Op {
    /// Asked for this many; own unfinished entries (`again`) or new ones.
    Fetch {
        asked: usize,
        again: bool,
        ticket: Ticket<Vec<OutboxEntry>>,
    },
    TakeOver(Ticket<Vec<OutboxEntry>>),
    Trim(Ticket<u64>),
}

pub(super) struct Fetcher {
    poll: Interval,
    op: Option<Op>,
    /// New entries are there (the doorbell rang, or the last fetch was full).
    wanted: bool,
    /// This node's own unfinished entries come first: those after this id.
    again: Option<OutboxId>,
    /// Take over what other nodes cannot deliver at the next chance.
    take_over: bool,
    /// The last fetch failed (logged once until one works again).
    failing: bool,
}

impl Fetcher {
    pub(super) fn new(poll: Duration) -> Fetcher {
        let mut poll = tokio::time::interval(poll);
        poll.set_missed_tick_behavior(MissedTickBehavior::Delay);
        Fetcher {
            poll,
            op: None,
            wanted: false,
            again: Some(OutboxId::stream(0, 0)),
            take_over: false,
            failing: false,
        }
    }

    /// The doorbell rang (or this node stored something): new entries wait.
    pub(super) fn rang(&mut self) {
        self.wanted = true;
    }

    /// The first bind on this node came up: own unfinished entries first, then new ones, and
    /// what others cannot deliver.
    pub(super) fn bound(&mut self) {
        self.again = Some(OutboxId::stream(0, 0));
        self.rang();
        self.take_over = true;
    }

    /// The last bind on this node went: nothing to fetch for.
    pub(super) fn unbound(&mut self) {
        self.wanted = false;
        self.again = Some(OutboxId::stream(0, 0));
    }

    /// Starts the next operation if none is out and there is one to do; `room` is how many
    /// entries this node's binds can take now.
    pub(super) fn fetch(&mut self, store: &Arc<dyn Store>, client: &str, room: usize) {
        let Some(shared) = store.shared() else { return };
        if self.op.is_some() || room == 0 {
            return;
        }
        let count = room.min(FETCH_MAX);
        if let Some(after) = self.again {
            self.op = Some(Op::Fetch {
                asked: count,
                again: true,
                ticket: shared.fetch(client, count, Some(after)),
            });
        } else if self.take_over {
            self.take_over = false;
            self.op = Some(Op::TakeOver(shared.take_over(client, count)));
        } else if self.wanted {
            self.wanted = false;
            self.op = Some(Op::Fetch {
                asked: count,
                again: false,
                ticket: shared.fetch(client, count, None),
            });
        }
    }

    /// Drops entries older than `max_age` seconds from the shared outbox (when nothing else is
    /// out: it runs every few seconds, a skipped one is no loss).
    pub(super) fn trim(&mut self, store: &Arc<dyn Store>, client: &str, max_age: u64) {
        if let (None, Some(shared)) = (&self.op, store.shared()) {
            self.op = Some(Op::Trim(shared.trim(client, max_age)));
        }
    }

    /// The next thing that finished, or the poll.
    async fn next(&mut self) -> Fetched {
        let Some(op) = &mut self.op else {
            self.poll.tick().await;
            self.on_poll();
            return Fetched::Tick;
        };
        let fetched = tokio::select! {
            result = async {
                match op {
                    Op::Fetch { ticket, .. } | Op::TakeOver(ticket) => ticket.await.map(Fetched::Entries),
                    Op::Trim(ticket) => ticket.await.map(Fetched::Trimmed),
                }
            } => result,
            _ = self.poll.tick() => {
                self.on_poll();
                return Fetched::Tick;
            }
        };
        let op = self.op.take();
        self.done(op, fetched)
    }

    fn on_poll(&mut self) {
        self.wanted = true;
        self.take_over = true;
    }

    fn done(&mut self, op: Option<Op>, fetched: Result<Fetched, StoreError>) -> Fetched {
        let fetched = match fetched {
            Ok(f) => {
                if self.failing {
                    self.failing = false;
                    debug!("shared outbox answering again");
                }
                f
            }
            Err(e) => {
                if !self.failing {
                    self.failing = true;
                    warn!(error = %e, "shared outbox: fetch failed; trying again at the next poll");
                }
                return Fetched::Tick;
            }
        };
        if let (Some(Op::Fetch { asked, again, .. }), Fetched::Entries(entries)) = (&op, &fetched) {
            let full = entries.len() >= *asked;
            match (again, full) {
                // More of this node's own may wait: go on after the last one.
                (true, true) => self.again = entries.last().map(|e| e.id),
                (true, false) => {
                    self.again = None;
                    self.wanted = true;
                }
                (false, full) => self.wanted |= full,
            }
        }
        fetched
    }
}

/// What the account's fetcher finished next; never, without one.
pub(super) async fn next(fetcher: &mut Option<Fetcher>) -> Fetched {
    match fetcher {
        Some(f) => f.next().await,
        None => std::future::pending().await,
    }
}
