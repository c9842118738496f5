//! What client and upstream sessions share: the state table ([`SessionState`]), sequence
//! numbers ([`Sequence`]), keep-alive bookkeeping ([`KeepAlive`]), reconnect backoff
//! ([`Backoff`]), token buckets ([`TokenBucket`], [`SharedBucket`]), sockets whose writes
//! cannot wait forever ([`Deadlined`]), requests awaiting answers ([`InFlight`]) and the
//! time as one turn of a session's loop sees it ([`TurnClock`], over the wall clock
//! [`unix_ms`]). Plain values: the session tasks own them and feed them the time.

mod bucket;
mod deadline;
mod inflight;
pub mod state;
pub mod threads;

use std::time::{Duration, Instant};

pub use bucket::{Lease, SharedBucket, TokenBucket};
pub use deadline::Deadlined;
pub use inflight::InFlight;
pub use state::SessionState;

/// The time as one turn of a session's loop sees it: each clock read at most once per turn. A
/// clock read costs tens of nanoseconds, and a turn that handles a burst read them several
/// times per message (when it came, when it was answered, when its correlation was made).
#[derive(Debug, Default)]
pub struct TurnClock {
    instant: Option<Instant>,
    unix_ms: Option<u64>,
}

impl TurnClock {
    /// A new turn (or the same one after it waited): the next reads read the clocks again.
    pub fn tick(&mut self) {
        *self = TurnClock::default();
    }

    /// The monotonic time of this turn.
    pub fn instant(&mut self) -> Instant {
        *self.instant.get_or_insert_with(Instant::now)
    }

    /// The wall-clock time of this turn, in milliseconds since the Unix epoch.
    pub fn unix_ms(&mut self) -> u64 {
        *self.unix_ms.get_or_insert_with(unix_ms)
    }
}

/// Now, in Unix milliseconds (the wall clock every part of the proxy reads: the store's
/// seconds, message ids, a turn's clock).
pub fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Sequence numbers for the requests one side of a session sends: 1..=0x7FFFFFFF, wrapping.
#[derive(Debug, Default)]
pub struct Sequence(u32);

impl Sequence {
    /// The next number.
    pub fn next_number(&mut self) -> u32 {
        self.0 = if self.0 >= 0x7FFF_FFFF { 1 } else { self.0 + 1 };
        self.0
    }
}

/// What a session's keep-alive wants done now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeepAliveAction {
    /// Nothing.
    Wait,
    /// Send an enquire_link (the session has been idle for the interval).
    SendEnquireLink,
    /// The last enquire_link went unanswered: the session is dead.
    Dead,
}

/// enquire_link bookkeeping shared by client and upstream sessions: send one after `interval`
/// of silence; no response within `timeout` means the peer is gone.
#[derive(Debug, Clone, Copy)]
pub struct KeepAlive {
    last_heard: Instant,
    enquire_sent: Option<Instant>,
}

impl KeepAlive {
    /// Starts counting silence from `now`.
    pub fn new(now: Instant) -> KeepAlive {
        KeepAlive {
            last_heard: now,
            enquire_sent: None,
        }
    }

    /// Something arrived from the peer.
    pub fn heard(&mut self, now: Instant) {
        self.last_heard = now;
    }

    /// Our enquire_link was answered.
    pub fn answered(&mut self) {
        self.enquire_sent = None;
    }

    /// What to do at `now`; after `SendEnquireLink` the caller sends one.
    pub fn check(&mut self, now: Instant, interval: Duration, timeout: Duration) -> KeepAliveAction {
        match self.enquire_sent {
            Some(at) if now.duration_since(at) >= timeout => KeepAliveAction::Dead,
            None if now.duration_since(self.last_heard) >= interval => {
                self.enquire_sent = Some(now);
                KeepAliveAction::SendEnquireLink
            }
            _ => KeepAliveAction::Wait,
        }
    }
}

/// Jittered exponential backoff: `base` doubling to `max`, each delay drawn from [d/2, d].
#[derive(Debug)]
pub struct Backoff {
    base: Duration,
    max: Duration,
    current: Duration,
}

impl Backoff {
    /// A backoff from `base` to `max`.
    pub fn new(base: Duration, max: Duration) -> Backoff {
        Backoff {
            base,
            max,
            current: base,
        }
    }

    /// The next delay.
    pub fn next_delay(&mut self, rng: &mut impl rand::Rng) -> Duration {
        let d = self.current;
        self.current = (self.current * 2).min(self.max);
        let half = d / 2;
        half + Duration::from_secs_f64(rng.gen::<f64>() * half.as_secs_f64())
    }

    /// Back to `base` (after a session that worked).
    pub fn reset(&mut self) {
        self.current = self.base;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn a_turn_reads_each_clock_once() {
        let mut clock = TurnClock::default();
        let (at, ms) = (clock.instant(), clock.unix_ms());
        std::thread::sleep(Duration::from_millis(3));
        assert_eq!((clock.instant(), clock.unix_ms()), (at, ms), "the same turn");
        clock.tick();
        assert!(
            clock.instant() >= at + Duration::from_millis(3),
            "read again after a tick"
        );
    }

    #[test]
    fn keep_alive_asks_once_then_declares_dead() {
        let t0 = Instant::now();
        let (interval, timeout) = (Duration::from_secs(30), Duration::from_secs(10));
        let mut k = KeepAlive::new(t0);
        assert_eq!(
            k.check(t0 + Duration::from_secs(29), interval, timeout),
            KeepAliveAction::Wait
        );
        assert_eq!(
            k.check(t0 + Duration::from_secs(30), interval, timeout),
            KeepAliveAction::SendEnquireLink
        );
        assert_eq!(
            k.check(t0 + Duration::from_secs(35), interval, timeout),
            KeepAliveAction::Wait
        );
        assert_eq!(
            k.check(t0 + Duration::from_secs(40), interval, timeout),
            KeepAliveAction::Dead
        );
        k.answered();
        k.heard(t0 + Duration::from_secs(40));
        assert_eq!(
            k.check(t0 + Duration::from_secs(41), interval, timeout),
            KeepAliveAction::Wait
        );
    }

    #[test]
    fn sequence_wraps_to_one() {
        let mut s = Sequence(0x7FFF_FFFE);
        assert_eq!(s.next_number(), 0x7FFF_FFFF);
        assert_eq!(s.next_number(), 1);
    }

    #[test]
    fn backoff_doubles_to_the_cap_with_jitter() {
        let mut rng = rand::rngs::SmallRng::seed_from_u64(7);
        let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(60));
        let delays: Vec<Duration> = (0..10).map(|_| b.next_delay(&mut rng)).collect();
        assert!(delays[0] >= Duration::from_millis(500) && delays[0] <= Duration::from_secs(1));
        assert!(delays[9] >= Duration::from_secs(30) && delays[9] <= Duration::from_secs(60));
        b.reset();
        assert!(b.next_delay(&mut rng) <= Duration::from_secs(1));
    }
}
