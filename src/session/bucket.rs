//! Token buckets: how every rate in the proxy is held to (a client's `tps` across its binds, an
//! upstream's `tps` across its sessions, the adaptive rate an SMSC's throttling teaches, the
//! simulator's cap). The caller says what time it is, so the arithmetic is a pure function of
//! its inputs and tests give it whatever clock they like.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tokio::sync::Notify;

/// `rate` tokens a second, at most `burst` saved up; an infinite rate never runs out.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    at: Instant,
}

impl TokenBucket {
    /// A bucket that never runs out.
    pub fn unlimited(now: Instant) -> TokenBucket {
        TokenBucket {
            rate: f64::INFINITY,
            burst: f64::INFINITY,
            tokens: 0.0,
            at: now,
        }
    }

    /// `rate` a second with bursts of up to `burst` (at least one), starting full.
    pub fn new(rate: f64, burst: f64, now: Instant) -> TokenBucket {
        let burst = burst.max(1.0);
        TokenBucket {
            rate,
            burst,
            tokens: burst,
            at: now,
        }
    }

    /// What a client's `tps` allows: a second's worth at once, then the rate. 0: no limit.
    pub fn per_second(tps: u32, now: Instant) -> TokenBucket {
        match tps {
            0 => TokenBucket::unlimited(now),
            n => TokenBucket::new(f64::from(n), f64::from(n), now),
        }
    }

    /// What an upstream's `tps` (and an SMSC's cap) means: at most a twentieth of a second's
    /// worth at once, so no second ever sees more than `tps` and a twentieth. 0: no limit.
    pub fn smooth(tps: u32, now: Instant) -> TokenBucket {
        match tps {
            0 => TokenBucket::unlimited(now),
            n => TokenBucket::new(f64::from(n), f64::from(n) / 20.0, now),
        }
    }

    /// The rate, when there is one.
    pub fn rate(&self) -> Option<f64> {
        self.rate.is_finite().then_some(self.rate)
    }

    /// Takes a token if there is one at `now`.
    pub fn try_take(&mut self, now: Instant) -> bool {
        if !self.rate.is_finite() {
            return true;
        }
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Gives back a token taken for a request that was not sent after all.
    pub fn give_back(&mut self) {
        if self.rate.is_finite() {
            self.tokens = (self.tokens + 1.0).min(self.burst);
        }
    }

    /// A new rate and burst from now on (`f64::INFINITY`: no limit); what is saved up is kept
    /// within the new burst.
    pub fn set_rate(&mut self, rate: f64, burst: f64) {
        self.rate = rate;
        self.burst = burst.max(1.0);
        self.tokens = self.tokens.min(self.burst);
    }

    /// Keeps at most `max` tokens saved (after a throttle: no burst right after it).
    pub fn spend_down_to(&mut self, max: f64) {
        self.tokens = self.tokens.min(max);
    }
}

/// A rate several tasks take from (the binds of one account, the sessions of one upstream):
/// no limit (never locked), this node's own [`TokenBucket`] (a std mutex: the critical section
/// is a few float operations, never held across `.await`), or tokens leased from a bucket
/// every node of a cluster shares ([`Lease`]).
#[derive(Debug)]
pub enum SharedBucket {
    /// No limit.
    Unlimited,
    /// This node's own bucket.
    Local(Mutex<TokenBucket>),
    /// Tokens a shared bucket granted this node.
    Leased(Arc<Lease>),
}

impl SharedBucket {
    /// Shares `bucket` (no limit: never locked).
    pub fn new(bucket: TokenBucket) -> SharedBucket {
        match bucket.rate() {
            Some(_) => SharedBucket::Local(Mutex::new(bucket)),
            None => SharedBucket::Unlimited,
        }
    }

    /// Takes a token if there is one at `now` (a clock read only for a local bucket).
    pub fn try_take(&self, now: impl FnOnce() -> Instant) -> bool {
        match self {
            SharedBucket::Unlimited => true,
            SharedBucket::Local(m) => m.lock().unwrap_or_else(|e| e.into_inner()).try_take(now()),
            SharedBucket::Leased(lease) => lease.try_take(),
        }
    }

    /// Gives back a token taken for a request that was not sent after all.
    pub fn give_back(&self) {
        match self {
            SharedBucket::Unlimited => {}
            SharedBucket::Local(m) => m.lock().unwrap_or_else(|e| e.into_inner()).give_back(),
            SharedBucket::Leased(lease) => lease.deposit(1),
        }
    }

    /// A new rate for a local bucket (a cluster re-splits a rate as nodes and binds come and
    /// go); `burst` as for [`TokenBucket::set_rate`].
    pub fn set_rate(&self, rate: f64, burst: f64) {
        if let SharedBucket::Local(m) = self {
            m.lock().unwrap_or_else(|e| e.into_inner()).set_rate(rate, burst);
        }
    }
}

/// Tokens a bucket shared by every node granted this node, a few at a time: taking one is an
/// atomic decrement; when few are left, whoever refills (a task that asks the shared bucket)
/// is told. Tokens held and not used are the only way a cluster can exceed the shared rate, so
/// the holder keeps few.
#[derive(Debug)]
pub struct Lease {
    tokens: AtomicU32,
    /// Below this many, more are wanted.
    low: u32,
    wanted: Notify,
}

impl Lease {
    /// An empty lease that wants more when under `low` tokens.
    pub fn new(low: u32) -> Lease {
        Lease {
            tokens: AtomicU32::new(0),
            low,
            wanted: Notify::new(),
        }
    }

    /// Takes a token if one is held.
    pub fn try_take(&self) -> bool {
        let before = self
            .tokens
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |t| t.checked_sub(1));
        let left = before.map_or(0, |t| t - 1);
        if left < self.low {
            self.wanted.notify_one();
        }
        before.is_ok()
    }

    /// Adds `n` tokens.
    pub fn deposit(&self, n: u32) {
        self.tokens.fetch_add(n, Ordering::AcqRel);
    }

    /// Tokens held now.
    pub fn held(&self) -> u32 {
        self.tokens.load(Ordering::Acquire)
    }

    /// Resolves when someone found the lease low (or it was low already).
    pub async fn wanted(&self) {
        if self.held() < self.low {
            return;
        }
        self.wanted.notified().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn taken_in(bucket: &mut TokenBucket, from: Instant, span: Duration, tries: u32) -> usize {
        (0..tries).filter(|k| bucket.try_take(from + span * *k / tries)).count()
    }

    #[test]
    fn a_burst_then_the_rate() {
        let t0 = Instant::now();
        // A client's 10 a second: ten at once, then one every 100 ms.
        let mut b = TokenBucket::per_second(10, t0);
        assert_eq!((0..100).filter(|_| b.try_take(t0)).count(), 10);
        assert!(!b.try_take(t0 + Duration::from_millis(50)));
        assert!(b.try_take(t0 + Duration::from_millis(100)));
        // Smooth: a twentieth of a second at once, then the rate: ~100 in half a second.
        let mut s = TokenBucket::smooth(200, t0);
        assert_eq!((0..100).filter(|_| s.try_take(t0)).count(), 10);
        let taken = taken_in(&mut s, t0, Duration::from_millis(500), 10_000);
        assert!((99..=101).contains(&taken), "{taken}");
        // 0 is no limit.
        let mut free = TokenBucket::per_second(0, t0);
        assert!((0..1000).all(|_| free.try_take(t0)));
        assert_eq!(free.rate(), None);
    }

    #[test]
    fn given_back_and_rate_changes() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(10.0, 2.0, t0);
        assert!(b.try_take(t0) && b.try_take(t0) && !b.try_take(t0));
        b.give_back();
        assert!(b.try_take(t0));
        // From no limit to a limit: at most the new burst at once, then the rate.
        let mut b = TokenBucket::unlimited(t0);
        b.set_rate(100.0, 5.0);
        let t1 = t0 + Duration::from_secs(10);
        assert_eq!((0..100).filter(|_| b.try_take(t1)).count(), 5);
        // After a throttle: no burst, the rate only.
        b.spend_down_to(0.0);
        assert!(!b.try_take(t1));
        let taken = taken_in(&mut b, t1, Duration::from_secs(1), 1000);
        assert!((99..=100).contains(&taken), "{taken}");
        b.set_rate(f64::INFINITY, f64::INFINITY);
        assert!((0..1000).all(|_| b.try_take(t0)));
    }

    #[test]
    fn a_lease_hands_out_what_was_deposited_and_asks_for_more_when_low() {
        let lease = Lease::new(2);
        assert!(!lease.try_take());
        lease.deposit(3);
        assert!(lease.try_take() && lease.try_take() && lease.try_take() && !lease.try_take());
        let shared = SharedBucket::Leased(Arc::new(Lease::new(1)));
        assert!(!shared.try_take(|| unreachable!("a lease reads no clock")));
        shared.give_back();
        assert!(shared.try_take(Instant::now));
    }

    #[test]
    fn shared_without_a_limit_never_reads_the_clock() {
        let free = SharedBucket::new(TokenBucket::per_second(0, Instant::now()));
        assert!(free.try_take(|| unreachable!("no clock read without a limit")));
        let t0 = Instant::now();
        let limited = SharedBucket::new(TokenBucket::per_second(1, t0));
        assert!(limited.try_take(|| t0) && !limited.try_take(|| t0));
        limited.give_back();
        assert!(limited.try_take(|| t0));
    }
}
