//! The direct way from an upstream session to a client's bind, on the same session thread
//! when it has room, else on another.
//!
//! A matched receipt would otherwise cross the account's task twice (upstream session →
//! account → bind, and the client's answer bind → account → upstream session), each crossing a
//! wake-up of whichever thread the account runs on. While the account holds nothing waiting
//! for a slot, the session that matched the receipt (an upstream session; for a receipt that
//! came before its submit's answer, the client session that recorded the correlation; or a
//! task off the session threads, for a shared store's lookups) hands it to a bind of the
//! client with a free slot of its deliver window ([`Lanes::offer`]): one on its own thread
//! first (no wake-up of another thread on the way in), else one on another thread (one hop
//! where the account's way takes two, and two fewer on the client's answer). That bind's
//! session answers the SMSC when the client takes it and gives
//! the account what the client does not take (`AccountMsg::Returned`). Nothing is stored on
//! this way, as on the account's own direct hand-over: the SMSC holds the receipt until the
//! client answered.
//!
//! Each session thread has its own list: only tasks on that thread change it, others only
//! try its lock (and pass a lane in use rather than wait), so it is hardly ever contended;
//! it is never held across an `.await`.

use crate::messages::{ClientEvent, Direct, Slots};
use crate::session::threads;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;

/// The receiving binds of one account, by session thread.
#[derive(Debug)]
pub struct Lanes {
    /// Indexed by [`threads::current`] (0: not a session thread, as in tests).
    threads: Box<[Mutex<Vec<LaneBind>>]>,
    /// Deliveries handed over and not settled yet (part of the account's outbox).
    inflight: AtomicU64,
    /// Deliveries handed over since the start.
    handed: AtomicU64,
}

#[derive(Debug)]
struct LaneBind {
    bind_id: u64,
    tx: mpsc::Sender<ClientEvent>,
    slots: Arc<Slots>,
    /// The most deliveries its channel has room for.
    cap: usize,
}

impl Lanes {
    /// Lanes for `threads` session threads.
    pub fn new(threads: usize) -> Lanes {
        Lanes {
            threads: (0..=threads).map(|_| Mutex::default()).collect(),
            inflight: AtomicU64::new(0),
            handed: AtomicU64::new(0),
        }
    }

    fn here(&self) -> Option<std::sync::MutexGuard<'_, Vec<LaneBind>>> {
        let lane = self.threads.get(threads::current())?;
        Some(lane.lock().unwrap_or_else(|poisoned| poisoned.into_inner()))
    }

    /// A bind on the caller's thread can take direct deliveries.
    pub fn join(&self, bind_id: u64, tx: mpsc::Sender<ClientEvent>, slots: Arc<Slots>, cap: usize) {
        if let Some(mut lane) = self.here() {
            lane.push(LaneBind {
                bind_id,
                tx,
                slots,
                cap,
            });
        }
    }

    /// The bind (on the caller's thread) takes no more.
    pub fn leave(&self, bind_id: u64) {
        if let Some(mut lane) = self.here() {
            lane.retain(|b| b.bind_id != bind_id);
        }
    }

    /// A delivery handed over is settled: taken, or given to the account.
    pub fn settled(&self) {
        let _ = self
            .inflight
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
    }

    /// Deliveries handed over and not settled yet.
    pub fn inflight(&self) -> u64 {
        self.inflight.load(Ordering::Relaxed)
    }

    /// Deliveries handed over since the start.
    pub fn handed(&self) -> u64 {
        self.handed.load(Ordering::Relaxed)
    }

    /// Hands `direct` to the bind with the most free slots of `window` on the caller's thread,
    /// or else on another thread (one hop, where the account's way takes two: to the
    /// account's task, then to the bind); gives it back when none has room.
    pub fn offer(&self, mut direct: Direct, window: usize) -> Result<(), Direct> {
        let here = threads::current();
        let n = self.threads.len();
        for t in (0..n).map(|i| (here + i) % n) {
            let lane = match self.threads[t].try_lock() {
                Ok(lane) => lane,
                Err(std::sync::TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
                // Another thread's lane in use right now: not worth a wait.
                Err(std::sync::TryLockError::WouldBlock) if t != here => continue,
                Err(std::sync::TryLockError::WouldBlock) => self.threads[t].lock().unwrap_or_else(|p| p.into_inner()),
            };
            match self.offer_to(&lane, direct, window) {
                Ok(()) => return Ok(()),
                Err(back) => direct = back,
            }
        }
        Err(direct)
    }

    fn offer_to(&self, lane: &[LaneBind], direct: Direct, window: usize) -> Result<(), Direct> {
        let free = |b: &&LaneBind| window.min(b.cap).saturating_sub(b.slots.used());
        // A full one fails the take (as one filled since the look would).
        let Some(bind) = lane.iter().max_by_key(free) else {
            return Err(direct);
        };
        if !bind.slots.try_take(window.min(bind.cap)) {
            return Err(direct);
        }
        // Counted before it is sent: settled on another thread (lane 0), it could be settled
        // before a count made after.
        self.inflight.fetch_add(1, Ordering::Relaxed);
        match bind.tx.try_send(ClientEvent::Direct(direct)) {
            Ok(()) => {
                self.handed.fetch_add(1, Ordering::Relaxed);
                Ok(())
            }
            Err(e) => {
                self.settled();
                bind.slots.give();
                match e.into_inner() {
                    ClientEvent::Direct(direct) => Err(direct),
                    _ => unreachable!("the event sent was a direct delivery"),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn direct(n: u8) -> Direct {
        Direct {
            frame: Bytes::from(vec![n]),
            ack: None,
            forget: None,
            dedup: None,
            charge: None,
        }
    }

    #[test]
    fn offers_go_to_the_roomiest_bind_within_the_window_and_none_once_it_left() {
        let lanes = Lanes::new(0);
        let (tx1, mut rx1) = mpsc::channel(8);
        let (tx2, mut rx2) = mpsc::channel(8);
        let (s1, s2) = (Arc::new(Slots::default()), Arc::new(Slots::default()));
        lanes.join(1, tx1, s1.clone(), 8);
        lanes.join(2, tx2, s2.clone(), 8);
        assert!(s1.try_take(8));
        assert!(lanes.offer(direct(1), 2).is_ok());
        assert!(
            matches!(rx2.try_recv(), Ok(ClientEvent::Direct(d)) if d.frame[..] == [1]),
            "the emptier bind"
        );
        assert!(lanes.offer(direct(2), 2).is_ok());
        assert!(lanes.offer(direct(3), 2).is_ok());
        assert_eq!((s1.used(), s2.used()), (2, 2));
        assert_eq!((lanes.inflight(), lanes.handed()), (3, 3));
        lanes.settled();
        assert_eq!((lanes.inflight(), lanes.handed()), (2, 3));
        let back = lanes.offer(direct(4), 2).expect_err("both windows full");
        assert_eq!(back.frame[..], [4], "given back whole");
        s1.give();
        lanes.leave(1);
        assert!(lanes.offer(direct(5), 2).is_err(), "the bind with room left");
        assert!(rx1.try_recv().is_ok());
    }

    /// Full binds on this thread: a bind with room on another thread takes it, not the account;
    /// with room here again, a bind here takes it.
    #[test]
    fn a_bind_on_another_thread_takes_what_this_one_has_no_room_for() {
        let threads = threads::SessionThreads::start(2).unwrap();
        let (placement, tracker) = (threads.placement(), tokio_util::task::TaskTracker::new());
        let lanes = Arc::new(Lanes::new(2));
        let (tx_near, mut rx_near) = mpsc::channel(8);
        let (tx_far, mut rx_far) = mpsc::channel(8);
        let (full, room) = (Arc::new(Slots::default()), Arc::new(Slots::default()));
        assert!(full.try_take(1));
        let (done, joined) = std::sync::mpsc::channel();
        // Runs `task` on the next session thread in turn (1, 2, 1, 2...): which, and its answer.
        let on_thread = |task: Box<dyn FnOnce() -> bool + Send>| {
            let done = done.clone();
            placement.spawn(
                &tracker,
                async move { done.send((threads::current(), task())).unwrap() },
            );
            joined.recv_timeout(std::time::Duration::from_secs(5)).unwrap()
        };
        let (l, f) = (lanes.clone(), full.clone());
        let joined_near = on_thread(Box::new(move || {
            l.join(1, tx_near, f, 8);
            true
        }));
        assert_eq!(joined_near, (1, true));
        let (l, r) = (lanes.clone(), room.clone());
        let joined_far = on_thread(Box::new(move || {
            l.join(2, tx_far, r, 8);
            true
        }));
        assert_eq!(joined_far, (2, true));
        let offer = |n: u8| {
            let l = lanes.clone();
            on_thread(Box::new(move || l.offer(direct(n), 1).is_ok()))
        };
        assert_eq!(offer(1), (1, true), "offered on thread 1, handed over");
        assert!(matches!(rx_far.try_recv(), Ok(ClientEvent::Direct(d)) if d.frame[..] == [1]));
        assert!(rx_near.try_recv().is_err());
        assert_eq!((lanes.inflight(), lanes.handed()), (1, 1));
        // Room on both threads now: the caller's own first.
        full.give();
        room.give();
        assert_eq!(on_thread(Box::new(|| true)).0, 2, "thread 2's turn, passed");
        assert_eq!(offer(3), (1, true));
        assert!(rx_far.try_recv().is_err());
        assert!(matches!(rx_near.try_recv(), Ok(ClientEvent::Direct(d)) if d.frame[..] == [3]));
    }

    #[test]
    fn a_closed_bind_gives_the_delivery_and_its_slot_back() {
        let lanes = Lanes::new(0);
        let (tx, rx) = mpsc::channel(8);
        let slots = Arc::new(Slots::default());
        lanes.join(1, tx, slots.clone(), 8);
        drop(rx);
        assert!(lanes.offer(direct(1), 4).is_err());
        assert_eq!((slots.used(), lanes.inflight(), lanes.handed()), (0, 0, 0));
    }
}
