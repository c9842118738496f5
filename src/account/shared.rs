//! An account's side of a shared outbox (cluster mode): what to fetch, when. Entries are
//! fetched only as far as this node's binds have room, so what a node holds undelivered stays
//! small and the rest stays in the outbox for any node. One operation at a time: a fetch (this
//! node's own unfinished entries first, after a restart or a new first bind, then new ones), a
//! take-over of entries other nodes cannot deliver, a trim of entries past `receipt_ttl`, or a
//! touch of the entries this node holds (every third of `claim_idle`, so that no other node
//! takes them for sat on; those another node took over all the same are given up here).
//! Results of operations started before the last bind went are dropped: a bind that comes
//! back fetches this node's unfinished entries again anyway.

use crate::store::{OutboxEntry, OutboxId, SharedOutbox, Store, StoreError, Ticket};
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
    /// Entries this node held that another node has taken over: not to be delivered here.
    Lost(Vec<OutboxId>),
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
    Touch(Ticket<Vec<OutboxId>>),
}

pub(super) struct Fetcher {
    poll: Interval,
    touch: Interval,
    /// The operation out, and the `generation` it was started in.
    op: Option<(Op, u64)>,
    /// Counts the times the last bind went.
    generation: u64,
    /// Time to touch the entries held.
    touch_due: bool,
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
    pub(super) fn new(poll: Duration, shared: &dyn SharedOutbox) -> Fetcher {
        let mut poll = tokio::time::interval(poll);
        poll.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let every = (shared.claim_idle() / 3).max(Duration::from_millis(100));
        let mut touch = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        touch.set_missed_tick_behavior(MissedTickBehavior::Delay);
        Fetcher {
            poll,
            touch,
            op: None,
            generation: 0,
            touch_due: false,
            wanted: false,
            again: Some(OutboxId::stream(0, 0)),
            take_over: false,
            failing: false,
        }
    }

    /// The doorbell rang (or this node stored something): new entries wait.
    /// Whether there is (or may be) something to fetch.
    pub(super) fn pending(&self) -> bool {
        self.wanted || self.take_over || self.again.is_some()
    }

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
        self.generation += 1;
    }

    /// Starts the next operation if none is out and there is one to do; `room` is how many
    /// entries this node's binds can take now, `held` the entries it holds.
    pub(super) fn fetch(
        &mut self,
        store: &Arc<dyn Store>,
        client: &str,
        room: usize,
        held: impl FnOnce() -> Vec<OutboxId>,
    ) {
        let Some(shared) = store.shared() else { return };
        // Nothing while the store is down (it would fail) or this node's id is another run's
        // (that run fetches and touches under the same name).
        if self.op.is_some() || !store.available() {
            return;
        }
        if std::mem::take(&mut self.touch_due) {
            let ids = held();
            if !ids.is_empty() {
                self.start(Op::Touch(shared.touch(client, ids)));
                return;
            }
        }
        if room == 0 {
            return;
        }
        let count = room.min(FETCH_MAX);
        if let Some(after) = self.again {
            self.start(Op::Fetch {
                asked: count,
                again: true,
                ticket: shared.fetch(client, count, Some(after)),
            });
        } else if self.take_over {
            self.take_over = false;
            self.start(Op::TakeOver(shared.take_over(client, count)));
        } else if self.wanted {
            self.wanted = false;
            self.start(Op::Fetch {
                asked: count,
                again: false,
                ticket: shared.fetch(client, count, None),
            });
        }
    }

    fn start(&mut self, op: Op) {
        self.op = Some((op, self.generation));
    }

    /// Drops entries older than `max_age` seconds from the shared outbox (when nothing else is
    /// out: it runs every few seconds, a skipped one is no loss).
    pub(super) fn trim(&mut self, store: &Arc<dyn Store>, client: &str, max_age: u64) {
        if let (None, Some(shared)) = (&self.op, store.shared()) {
            self.start(Op::Trim(shared.trim(client, max_age)));
        }
    }

    /// The next thing that finished, or the poll.
    async fn next(&mut self) -> Fetched {
        let Some((op, _)) = &mut self.op else {
            tokio::select! {
                _ = self.poll.tick() => self.on_poll(),
                _ = self.touch.tick() => self.touch_due = true,
            }
            return Fetched::Tick;
        };
        let fetched = tokio::select! {
            result = async {
                match op {
                    Op::Fetch { ticket, .. } | Op::TakeOver(ticket) => ticket.await.map(Fetched::Entries),
                    Op::Trim(ticket) => ticket.await.map(Fetched::Trimmed),
                    Op::Touch(ticket) => ticket.await.map(Fetched::Lost),
                }
            } => result,
            _ = self.poll.tick() => {
                self.on_poll();
                return Fetched::Tick;
            }
            _ = self.touch.tick() => {
                self.touch_due = true;
                return Fetched::Tick;
            }
        };
        let Some((op, generation)) = self.op.take() else {
            return Fetched::Tick;
        };
        if generation != self.generation {
            // Started before the last bind went: a new bind fetches again from the start.
            return Fetched::Tick;
        }
        self.done(op, fetched)
    }

    fn on_poll(&mut self) {
        self.wanted = true;
        self.take_over = true;
    }

    fn done(&mut self, op: Op, fetched: Result<Fetched, StoreError>) -> Fetched {
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
        if let (Op::Fetch { asked, again, .. }, Fetched::Entries(entries)) = (&op, &fetched) {
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
