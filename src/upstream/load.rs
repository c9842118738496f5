//! What the router knows about one upstream, measured from its own traffic: response latency
//! (a peak-sensitive EWMA), the rate it acknowledges, throttles and link errors, the adaptive
//! rate its throttling teaches (multiplicative decrease, additive increase), and its health
//! (ejected for errors; slow start after it returns).
//!
//! The upstream's session tasks report every answer here; the router reads it for every pick
//! and advances it every tick (`Load::tick`). One small mutex per upstream, never held across
//! an await, guards what must change together; counters for status are plain atomics.

use crate::histogram::Histogram;
use crate::pdu::CommandStatus;
use crate::session::TokenBucket;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Latency assumed before the first answer.
const INITIAL_RTT: f64 = 0.005;
/// How fast the latency estimate forgets a peak (seconds).
const RTT_DECAY: f64 = 2.0;
/// How much of the acknowledged rate each tick keeps (the rest is the newest tick's).
const RATE_KEEP: f64 = 0.7;
/// A throttle sets the adaptive rate to this share of what the SMSC was acknowledging…
const DECREASE: f64 = 0.95;
/// …cutting it by at least this share and at most that one…
const CUT_MIN: f64 = 0.05;
const CUT_MAX: f64 = 0.5;
/// …at most once per this long (one burst of throttles is one signal).
const DECREASE_EVERY: Duration = Duration::from_millis(200);
/// Each tick without throttles, an adaptive rate that was used up grows by a fixed step: this
/// share of the rate the last throttle set (additive, and in proportion to the link's size).
const INCREASE: f64 = 0.03;
/// The adaptive rate lets this share of a second's worth through at once.
const ADAPTIVE_BURST: f64 = 0.05;
/// An adaptive rate never goes below this many messages per second.
const MIN_RATE: f64 = 2.0;
/// After this long without a throttle, the adaptive rate is dropped (no cap again).
const FORGET_LIMIT_AFTER: Duration = Duration::from_secs(30);
/// Link-error accounting keeps this share per tick (about a second of memory at 100 ms ticks).
const ERRORS_KEEP: f64 = 0.9;
/// Fewer answers than this (decayed) never eject.
const EJECT_MIN_ANSWERS: f64 = 5.0;
/// The slowest a returning upstream ramps from (share of its full weight).
const RAMP_FLOOR: f64 = 0.05;

/// Counters since start, for status and metrics.
#[derive(Debug, Default)]
pub struct LoadCounters {
    /// Requests the router handed to this upstream.
    pub picked: AtomicU64,
    /// Answers other than throttles and link errors (the SMSC took the request or judged it).
    pub acked: AtomicU64,
    /// ESME_RTHROTTLED / ESME_RMSGQFUL answers.
    pub throttled: AtomicU64,
    /// Response timeouts and ESME_RSYSERR answers.
    pub link_errors: AtomicU64,
    /// Bound sessions lost other than by the proxy's choice (closed, unbound or dead).
    pub sessions_lost: AtomicU64,
    /// Connects or binds that failed.
    pub connect_failures: AtomicU64,
    /// deliver_sm / data_sm answered ESME_RX_T_APPN at once: `[limits] unanswered_delivers`.
    pub delivers_refused: AtomicU64,
}

/// How an upstream's health changed in a tick (for the log).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Change {
    /// Usable (bound and not ejected): for the first time, or back (slow start begins).
    Available {
        /// It was available before: this is a return.
        returned: bool,
    },
    /// No bound session.
    Unbound,
    /// Taken out of rotation for its error rate.
    Ejected {
        /// The share of link errors that did it.
        error_rate: f64,
    },
}

/// A reading of an upstream's figures.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LoadView {
    /// Bound, not ejected.
    pub available: bool,
    /// Latency estimate, seconds.
    pub rtt: f64,
    /// Acknowledged per second (smoothed).
    pub rate: f64,
    /// The adaptive rate cap, if throttling set one.
    pub limit: Option<f64>,
    /// Share of its full weight while slowly starting (1 when not).
    pub ramp: f64,
    /// Ejected until this long from now.
    pub ejected_for: Option<Duration>,
    /// Available without interruption since (as of the last tick).
    pub since: Option<Instant>,
    /// Never lost since it first came up.
    pub fresh: bool,
}

/// The measured state of one upstream.
#[derive(Debug)]
pub struct Load {
    inner: Mutex<Inner>,
    /// Counters since start.
    pub counters: LoadCounters,
    /// Submit written -> response read, seconds.
    pub submit_latency: Histogram,
    /// Submit -> its final receipt, seconds.
    pub receipt_delay: Histogram,
}

#[derive(Debug)]
struct Inner {
    rtt: f64,
    rtt_at: Instant,
    rate: f64,
    last_acked: u64,
    /// The adaptive rate; unlimited while the SMSC has not throttled.
    adaptive: TokenBucket,
    last_decrease: Option<Instant>,
    /// What each quiet tick adds to the adaptive rate (set by the last throttle).
    step: f64,
    /// The adaptive rate ran out since the last tick (demand is above it).
    limited: bool,
    answers: f64,
    errors: f64,
    last_answers: u64,
    last_errors: u64,
    ejected_until: Option<Instant>,
    /// When it last became available; `None` while it is not.
    available_since: Option<Instant>,
    /// It was available once and then was not: its next availability ramps up (slow start).
    returned: bool,
}

impl Load {
    /// A fresh upstream: no measurements, no cap, not yet available.
    pub fn new(now: Instant) -> Load {
        Load {
            inner: Mutex::new(Inner {
                rtt: INITIAL_RTT,
                rtt_at: now,
                rate: 0.0,
                last_acked: 0,
                adaptive: TokenBucket::unlimited(now),
                last_decrease: None,
                step: 1.0,
                limited: false,
                answers: 0.0,
                errors: 0.0,
                last_answers: 0,
                last_errors: 0,
                ejected_until: None,
                available_since: None,
                returned: false,
            }),
            counters: LoadCounters::default(),
            submit_latency: Histogram::new(crate::histogram::LATENCY),
            receipt_delay: Histogram::new(crate::histogram::DELAY),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A bound session of it was lost: from now on it counts as having failed (its returns are
    /// slow-started and failback waits for its hysteresis), even if no tick saw it down.
    pub fn lost(&self) {
        self.lock().returned = true;
    }

    /// An answer came `rtt` after its request was written.
    pub fn on_answer(&self, status: CommandStatus, rtt: Duration, now: Instant) {
        if status == CommandStatus::ESME_RTHROTTLED || status == CommandStatus::ESME_RMSGQFUL {
            self.counters.throttled.fetch_add(1, Ordering::Relaxed);
            let mut i = self.lock();
            if i.last_decrease.is_none_or(|t| now.duration_since(t) >= DECREASE_EVERY) {
                // What it acknowledged is the best guess of what it takes.
                let taken = i.rate * DECREASE;
                let limit = match i.adaptive.rate() {
                    Some(limit) => taken.clamp(limit * (1.0 - CUT_MAX), limit * (1.0 - CUT_MIN)),
                    None => taken,
                }
                .max(MIN_RATE);
                i.set_limit(limit);
                i.adaptive.spend_down_to(1.0);
                i.last_decrease = Some(now);
                i.step = (limit * INCREASE).max(1.0);
            }
            return;
        }
        if status == CommandStatus::ESME_RSYSERR {
            self.counters.link_errors.fetch_add(1, Ordering::Relaxed);
            return;
        }
        self.counters.acked.fetch_add(1, Ordering::Relaxed);
        let sample = rtt.as_secs_f64();
        let mut i = self.lock();
        // Peak-sensitive: a slower answer counts at once, a faster one is averaged in.
        if sample > i.rtt {
            i.rtt = sample;
        } else {
            let elapsed = now.saturating_duration_since(i.rtt_at).as_secs_f64();
            let keep = (-elapsed / RTT_DECAY).exp();
            i.rtt = i.rtt * keep + sample * (1.0 - keep);
        }
        i.rtt_at = now;
    }

    /// A request written to it went unanswered for the response timeout.
    pub fn on_timeout(&self) {
        self.counters.link_errors.fetch_add(1, Ordering::Relaxed);
    }

    /// Takes one unit of the adaptive rate; `false` when it is used up for now.
    pub fn try_take(&self, now: Instant) -> bool {
        let mut i = self.lock();
        let taken = i.adaptive.try_take(now);
        i.limited |= !taken;
        taken
    }

    /// Returns a unit taken for a request that was not sent after all.
    pub fn give_back(&self) {
        self.lock().adaptive.give_back();
    }

    /// Its figures now; `bound` says whether a session that can submit is bound.
    pub fn view(&self, now: Instant, bound: bool, slow_start: Duration) -> LoadView {
        let i = self.lock();
        let ejected_for = i
            .ejected_until
            .and_then(|t| t.checked_duration_since(now))
            .filter(|d| !d.is_zero());
        let available = bound && ejected_for.is_none();
        // The first bind is no return: everyone starts at full weight together.
        let ramp = match (i.returned && available, i.available_since) {
            (false, _) => 1.0,
            (true, Some(since)) => ramp(now.saturating_duration_since(since), slow_start),
            // Back since the last tick: the smallest share until the tick notes it.
            (true, None) => RAMP_FLOOR,
        };
        // Without answers the estimate fades, so an idle upstream gets a probe now and then
        // instead of being judged forever by its last bad moment.
        let idle = now.saturating_duration_since(i.rtt_at).as_secs_f64();
        LoadView {
            available,
            rtt: i.rtt * (-idle / RTT_DECAY).exp(),
            rate: i.rate,
            limit: i.adaptive.rate(),
            ramp,
            ejected_for,
            since: i.available_since,
            fresh: !i.returned,
        }
    }

    /// Advances the measurements by one tick of `dt`: the acknowledged rate, the adaptive rate,
    /// error-rate ejection and availability. Says what changed, for the log.
    pub fn tick(
        &self,
        now: Instant,
        dt: Duration,
        bound: bool,
        eject_rate: f64,
        eject_for: Duration,
    ) -> Option<Change> {
        let acked = self.counters.acked.load(Ordering::Relaxed);
        let errors = self.counters.link_errors.load(Ordering::Relaxed);
        let answers = acked + errors;
        let mut i = self.lock();
        let dt = dt.as_secs_f64().max(1e-3);
        let new_rate = acked.saturating_sub(i.last_acked) as f64 / dt;
        i.rate = i.rate * RATE_KEEP + new_rate * (1.0 - RATE_KEEP);
        i.last_acked = acked;
        i.answers = i.answers * ERRORS_KEEP + answers.saturating_sub(i.last_answers) as f64;
        i.errors = i.errors * ERRORS_KEEP + errors.saturating_sub(i.last_errors) as f64;
        i.last_answers = answers;
        i.last_errors = errors;
        if let Some(limit) = i.adaptive.rate() {
            let quiet = i.last_decrease.is_none_or(|t| now.duration_since(t) >= DECREASE_EVERY);
            if quiet && i.limited {
                let step = i.step;
                i.set_limit(limit + step);
            }
            if i.last_decrease
                .is_none_or(|t| now.duration_since(t) >= FORGET_LIMIT_AFTER)
            {
                i.set_limit(f64::INFINITY);
            }
        }
        i.limited = false;
        let was_available = i.available_since.is_some();
        let ejected = i.ejected_until.is_some_and(|t| now < t);
        if !ejected && i.answers >= EJECT_MIN_ANSWERS && i.errors / i.answers > eject_rate {
            let error_rate = i.errors / i.answers;
            i.ejected_until = Some(now + eject_for);
            i.available_since = None;
            i.returned = true;
            // It starts its next chance with a clean slate.
            (i.answers, i.errors) = (0.0, 0.0);
            return Some(Change::Ejected { error_rate });
        }
        let available = bound && !ejected;
        match (was_available, available) {
            (false, true) => {
                i.available_since = Some(now);
                Some(Change::Available { returned: i.returned })
            }
            (true, false) => {
                i.available_since = None;
                i.returned = true;
                (!bound).then_some(Change::Unbound)
            }
            _ => None,
        }
    }
}

impl Inner {
    /// The adaptive rate from now on, with a small burst: an SMSC counting per second sees an
    /// even flow, not a spike.
    fn set_limit(&mut self, limit: f64) {
        self.adaptive.set_rate(limit, limit * ADAPTIVE_BURST);
    }
}

/// A returning upstream's share of its full weight, `slow_start` after it returned: linear
/// from a small floor to 1.
pub fn ramp(since: Duration, slow_start: Duration) -> f64 {
    if slow_start.is_zero() {
        return 1.0;
    }
    (since.as_secs_f64() / slow_start.as_secs_f64()).clamp(RAMP_FLOOR, 1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const OK: CommandStatus = CommandStatus::ESME_ROK;

    #[test]
    fn latency_rises_at_once_and_falls_gradually() {
        let t0 = Instant::now();
        let load = Load::new(t0);
        load.on_answer(OK, Duration::from_millis(100), t0);
        assert!((load.view(t0, true, Duration::ZERO).rtt - 0.1).abs() < 1e-9);
        // One fast answer half a second later moves it only part of the way down.
        load.on_answer(OK, Duration::from_millis(10), t0 + Duration::from_millis(500));
        let rtt = load.view(t0, true, Duration::ZERO).rtt;
        assert!(rtt > 0.05 && rtt < 0.1, "{rtt}");
    }

    #[test]
    fn throttles_cut_the_rate_and_quiet_ticks_grow_it_back() {
        let t0 = Instant::now();
        let load = Load::new(t0);
        let tick = Duration::from_millis(100);
        // 100 acks per tick: 1000/s measured.
        for n in 1..=20u32 {
            for _ in 0..100 {
                load.on_answer(OK, Duration::from_millis(1), t0);
            }
            load.tick(t0 + tick * n, tick, true, 0.5, Duration::from_secs(10));
        }
        let at = t0 + Duration::from_secs(2);
        load.on_answer(CommandStatus::ESME_RTHROTTLED, Duration::ZERO, at);
        let limit = load.view(at, true, Duration::ZERO).limit.unwrap();
        assert!((900.0..960.0).contains(&limit), "{limit}");
        // A second throttle in the same burst does not cut again.
        load.on_answer(
            CommandStatus::ESME_RTHROTTLED,
            Duration::ZERO,
            at + Duration::from_millis(10),
        );
        assert_eq!(load.view(at, true, Duration::ZERO).limit, Some(limit));
        // Used up and quiet: grows.
        while load.try_take(at) {}
        load.tick(
            at + Duration::from_millis(300),
            tick,
            true,
            0.5,
            Duration::from_secs(10),
        );
        assert!(load.view(at, true, Duration::ZERO).limit.unwrap() > limit);
        // Long quiet: no cap at all.
        load.tick(at + Duration::from_secs(31), tick, true, 0.5, Duration::from_secs(10));
        assert_eq!(load.view(at, true, Duration::ZERO).limit, None);
    }

    #[test]
    fn the_adaptive_rate_is_respected() {
        let t0 = Instant::now();
        let load = Load::new(t0);
        for _ in 0..10 {
            load.tick(t0, Duration::from_millis(100), true, 0.5, Duration::from_secs(10));
        }
        load.on_answer(CommandStatus::ESME_RTHROTTLED, Duration::ZERO, t0);
        let limit = load.view(t0, true, Duration::ZERO).limit.unwrap();
        assert_eq!(limit, MIN_RATE);
        // Over 10 s at most limit x 10 + the small burst.
        let taken = (0..10_000)
            .filter(|n| load.try_take(t0 + Duration::from_millis(*n)))
            .count();
        assert!((19..=21).contains(&taken), "{taken}");
    }

    #[test]
    fn errors_eject_and_slow_start_follows() {
        let t0 = Instant::now();
        let load = Load::new(t0);
        let tick = Duration::from_millis(100);
        let slow = Duration::from_secs(10);
        assert_eq!(
            load.tick(t0, tick, true, 0.5, Duration::from_secs(1)),
            Some(Change::Available { returned: false })
        );
        assert_eq!(load.view(t0, true, slow).ramp, 1.0, "the first bind is no return");
        for _ in 0..4 {
            load.on_answer(OK, Duration::from_millis(1), t0);
        }
        for _ in 0..6 {
            load.on_timeout();
        }
        let Some(Change::Ejected { error_rate }) = load.tick(t0 + tick, tick, true, 0.5, Duration::from_secs(1)) else {
            panic!("not ejected")
        };
        assert!((error_rate - 0.6).abs() < 1e-9);
        assert!(!load.view(t0 + tick * 2, true, Duration::ZERO).available);
        let back = t0 + Duration::from_millis(1200);
        assert_eq!(
            load.view(back, true, slow).ramp,
            RAMP_FLOOR,
            "back before the tick saw it"
        );
        assert_eq!(
            load.tick(back, tick, true, 0.5, Duration::from_secs(1)),
            Some(Change::Available { returned: true })
        );
        assert!((load.view(back + Duration::from_secs(1), true, slow).ramp - 0.1).abs() < 1e-9);
        assert_eq!(load.view(back + Duration::from_secs(20), true, slow).ramp, 1.0);
        assert_eq!(
            load.tick(back + tick, tick, false, 0.5, Duration::from_secs(1)),
            Some(Change::Unbound)
        );
    }
}
