//! The threads client sessions, upstream sessions and accounts run on: one single-threaded
//! runtime each, tasks placed on them in turn. A request and its answer cross between two
//! sessions; on one thread that is a queue push and a poll, across threads of a work-stealing
//! runtime it is a wake-up of the other core and cache lines moving with every message
//! (measured: the same load on two processes of one thread each cost a third less CPU per
//! message than on one process of two worker threads). The router prefers an upstream session
//! on its caller's thread ([`current`], [`SessionHandle::thread`](crate::upstream::SessionHandle)),
//! and an account a bind on its own, by [`prefer_near`].
//!
//! The listener, the store's and the cluster's tasks and the admin endpoint stay on the runtime
//! the proxy was started in. What runs here must not block: a thread has no other worker to
//! take its tasks over.

use std::cell::Cell;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tokio::runtime::Handle;
use tokio::sync::oneshot;
use tokio_util::task::TaskTracker;

thread_local! {
    /// This thread's number among the session threads, from 1; 0 elsewhere.
    static CURRENT: Cell<usize> = const { Cell::new(0) };
}

/// The session thread this code runs on (from 1), or 0 when it is not one.
pub fn current() -> usize {
    CURRENT.with(Cell::get)
}

/// Of `n` candidates with `free(i)` room each, the one with the most, unless one that is
/// `near` (on the caller's thread) has at least half of that: then the roomiest near one.
/// Among equals, the first from `start` on (pass a counter that moves, and ties take turns);
/// `None` if all are full. A near candidate thus takes the work until it holds about half its
/// room more than the emptiest elsewhere; at low rates, when all are nearly empty, nearly all
/// of it.
pub fn prefer_near(n: usize, free: impl Fn(usize) -> u32, near: impl Fn(usize) -> bool, start: usize) -> Option<usize> {
    let (mut best, mut chosen) = (0, None);
    let (mut best_near, mut chosen_near) = (0, None);
    for i in (0..n).map(|k| (start + k) % n) {
        let f = free(i);
        if f > best {
            (best, chosen) = (f, Some(i));
        }
        if f > best_near && near(i) {
            (best_near, chosen_near) = (f, Some(i));
        }
    }
    if chosen_near.is_some() && best_near.saturating_mul(2) >= best {
        chosen_near
    } else {
        chosen
    }
}

/// Where tasks are spawned: the session threads in turn. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Placement {
    handles: Arc<[Handle]>,
    next: Arc<AtomicUsize>,
}

impl Placement {
    /// Spawns `task` on `tracker`, on the next thread in turn.
    pub fn spawn<F>(&self, tracker: &TaskTracker, task: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let turn = self.next.fetch_add(1, Ordering::Relaxed) % self.handles.len();
        tracker.spawn_on(task, &self.handles[turn]);
    }

    /// How many threads tasks are spread over.
    pub fn threads(&self) -> usize {
        self.handles.len()
    }
}

/// The session threads: running until [`SessionThreads::stop`] or until dropped, which stops
/// them and drops whatever tasks they still hold.
#[derive(Debug)]
pub struct SessionThreads {
    placement: Placement,
    stops: Vec<oneshot::Sender<()>>,
    threads: Vec<JoinHandle<()>>,
}

impl SessionThreads {
    /// Starts `n` threads (0: one per core).
    pub fn start(n: usize) -> std::io::Result<SessionThreads> {
        let n = match n {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        };
        let mut started = SessionThreads {
            placement: Placement {
                handles: Arc::new([]),
                next: Arc::new(AtomicUsize::new(0)),
            },
            stops: Vec::with_capacity(n),
            threads: Vec::with_capacity(n),
        };
        let mut handles = Vec::with_capacity(n);
        for i in 1..=n {
            let (stop, stopped) = oneshot::channel::<()>();
            let (ready, handle) = std::sync::mpsc::sync_channel(1);
            // The runtime is built, run and dropped on its own thread: a runtime dropped in an
            // async context (a failed start here) would panic.
            let thread = std::thread::Builder::new()
                .name(format!("sessions-{i}"))
                .spawn(move || {
                    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                        Ok(runtime) => runtime,
                        Err(e) => {
                            let _ = ready.send(Err(e));
                            return;
                        }
                    };
                    CURRENT.with(|c| c.set(i));
                    crate::sharded::enter(i);
                    let _ = ready.send(Ok(runtime.handle().clone()));
                    // Ends when the sender is dropped too.
                    let _ = runtime.block_on(stopped);
                    // Without waiting for blocking calls (a bind's password check) to finish.
                    runtime.shutdown_background();
                })?;
            started.stops.push(stop);
            started.threads.push(thread);
            let handle = handle
                .recv()
                .map_err(|_| std::io::Error::other("a session thread ended at start"))??;
            handles.push(handle);
        }
        started.placement.handles = handles.into();
        Ok(started)
    }

    /// Where to spawn tasks.
    pub fn placement(&self) -> Placement {
        self.placement.clone()
    }

    /// Stops the threads, dropping what still runs on them, and waits up to `limit` for them
    /// to end (a task busy in a blocking call ends its thread only when the call returns).
    pub async fn stop(mut self, limit: Duration) {
        self.stops.clear();
        let threads = std::mem::take(&mut self.threads);
        let deadline = Instant::now() + limit;
        let joined = tokio::task::spawn_blocking(move || {
            for thread in threads {
                while !thread.is_finished() && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(5));
                }
                if thread.is_finished() {
                    let _ = thread.join();
                }
            }
        });
        let _ = joined.await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn with_none_near_the_most_free_wins_ties_take_turns_full_is_none() {
        let of = |f: &'static [u32]| move |i: usize| f[i];
        let none = |_: usize| false;
        assert_eq!(prefer_near(3, of(&[3, 9, 2]), none, 2), Some(1));
        let mut seen = [0; 3];
        for start in 0..999 {
            seen[prefer_near(3, of(&[5, 0, 5]), none, start).unwrap()] += 1;
        }
        assert_eq!(seen[1], 0, "the full one never");
        assert!(seen[0] >= 333 && seen[2] >= 333, "the others by turns: {seen:?}");
        assert_eq!(prefer_near(1, of(&[0]), none, 7), None);
        assert_eq!(prefer_near(0, of(&[]), none, 7), None);
    }

    #[test]
    fn a_near_one_is_chosen_while_it_has_half_the_best_room() {
        let of = |f: &'static [u32]| move |i: usize| f[i];
        let near = |set: &'static [usize]| move |i: usize| set.contains(&i);
        // Near with half the best room or more: near.
        assert_eq!(prefer_near(3, of(&[10, 5, 3]), near(&[1]), 0), Some(1));
        // Less than half: the best, wherever it is.
        assert_eq!(prefer_near(3, of(&[10, 4, 3]), near(&[1]), 0), Some(0));
        // The roomiest of the near ones.
        assert_eq!(prefer_near(4, of(&[10, 6, 9, 1]), near(&[1, 2]), 0), Some(2));
        // A full near session is never chosen.
        assert_eq!(prefer_near(2, of(&[0, 3]), near(&[0]), 0), Some(1));
        assert_eq!(prefer_near(2, of(&[3, 7]), near(&[]), 0), Some(1));
        assert_eq!(prefer_near(2, of(&[0, 0]), near(&[0]), 0), None);
        // Near ones of equal room take turns.
        let mut seen = [0; 3];
        for start in 0..600 {
            seen[prefer_near(3, of(&[5, 5, 9]), near(&[0, 1]), start).unwrap()] += 1;
        }
        assert!(seen[0] >= 200 && seen[1] >= 200 && seen[2] == 0, "{seen:?}");
    }

    #[tokio::test]
    async fn sessions_are_placed_on_the_threads_in_turn_and_know_which() {
        assert_eq!(current(), 0, "the test's own runtime is not a session thread");
        let threads = SessionThreads::start(2).unwrap();
        let place = threads.placement();
        assert_eq!(place.threads(), 2);
        let tracker = TaskTracker::new();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        for task in 0..6 {
            let tx = tx.clone();
            place.spawn(&tracker, async move {
                let name = std::thread::current().name().map(str::to_owned);
                assert_eq!(crate::sharded::shard(), current(), "each writes its own counter copies");
                tx.send((task, current(), name)).unwrap();
            });
        }
        tracker.close();
        tracker.wait().await;
        drop(tx);
        let mut seen = Vec::new();
        while let Some(s) = rx.recv().await {
            seen.push(s);
        }
        seen.sort();
        let expected: Vec<_> = (0..6)
            .map(|task| {
                let thread = task % 2 + 1;
                (task, thread, Some(format!("sessions-{thread}")))
            })
            .collect();
        assert_eq!(seen, expected);
    }

    #[tokio::test]
    async fn dropping_the_threads_stops_what_runs_on_them() {
        let threads = SessionThreads::start(1).unwrap();
        let tracker = TaskTracker::new();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        threads.placement().spawn(&tracker, async move {
            // Holds its sender until dropped: never sends.
            let _tx = tx;
            std::future::pending::<()>().await;
        });
        drop(threads);
        tokio::time::timeout(std::time::Duration::from_secs(10), rx)
            .await
            .expect("the task was dropped")
            .expect_err("it never sent");
    }
}
