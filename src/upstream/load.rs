//! What the router knows about one upstream, measured from its own traffic: response latency
//! (a peak-sensitive EWMA), the rate it acknowledges, throttles and link errors, the adaptive
//! limit its throttling teaches (what it took in the second before a throttle, less a margin;
//! slow convex probing above it), and its health (ejected for errors; slow start after it
//! returns).
//!
//! The upstream's session tasks report every answer here; the router reads it for every pick
//! and advances it every tick (`Load::tick`). One small mutex per upstream, never held across
//! an await, guards what must change together; counters for status are plain atomics.

use crate::histogram::Histogram;
use crate::pdu::CommandStatus;
use crate::session::TokenBucket;
use crate::sharded::Counter;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Latency assumed before the first answer.
const INITIAL_RTT: f64 = 0.005;
/// How fast the latency estimate forgets a peak (seconds).
const RTT_DECAY: f64 = 2.0;
/// How much of the acknowledged rate each tick keeps (the rest is the newest tick's).
const RATE_KEEP: f64 = 0.7;
/// A throttle sets the adaptive rate this far below what the SMSC acknowledged in the second
/// before it (its cap, whether it counts calendar seconds or a bucket)…
const MARGIN: f64 = 0.02;
/// …cutting it by at least this share and at most that one…
const CUT_MIN: f64 = 0.03;
const CUT_MAX: f64 = 0.5;
/// …at most once in this long: the throttles that follow a cut teach nothing new (the rest of
/// an SMSC's calendar second is refused however little is sent, requests in flight were sent
/// at the old rate), and a cut already takes the last second's count as the cap.
const CUT_EVERY: Duration = Duration::from_millis(900);
/// The capacity believed is the second highest of the counts at this many last throttles.
const COUNTS_KEPT: usize = 5;
/// Each quiet tick, an adaptive rate that was used up grows back fast (this share of itself)
/// while below the capacity believed (less the margin)…
const RECOVER: f64 = 0.03;
/// …and probes beyond it slowly (this share of itself per tick: about 1 % a second at first), so an
/// SMSC whose cap rose is found again and one whose cap did not sees one short run of
/// throttles every few seconds at most.
const PROBE: f64 = 0.001;
/// The probing step grows by its first size for every this many seconds without a throttle.
const PROBE_SPEEDUP_EVERY: f64 = 10.0;
/// Requests a second during a run of throttles, to learn when it is over.
const TRICKLE: f64 = 20.0;
/// A limit counts as used up when the last second took at least this share of it.
const USED_UP: f64 = 0.95;
/// Quiet means no throttle for this long.
const QUIET_AFTER: Duration = Duration::from_millis(200);
/// The adaptive limit lets this share of a second's worth through at once (at least one), and
/// the rest at an even rate: requests that come together are not turned away, and no second
/// sees more than the limit.
const ADAPTIVE_BURST: f64 = 0.05;
/// An adaptive rate never goes below this many messages per second.
const MIN_RATE: f64 = 2.0;
/// After this long without a throttle, the adaptive rate is dropped (no cap again): the SMSC
/// may have been reconfigured. Long, since relearning costs a run of throttles.
const FORGET_LIMIT_AFTER: Duration = Duration::from_secs(300);
/// Acknowledged counts kept per tick, to tell what the last second took.
const HISTORY: usize = 16;
/// Link-error accounting keeps this share per tick (about a second of memory at 100 ms ticks).
const ERRORS_KEEP: f64 = 0.9;
/// Fewer answers than this (decayed) never eject.
const EJECT_MIN_ANSWERS: f64 = 5.0;
/// The slowest a returning upstream ramps from (share of its full weight).
const RAMP_FLOOR: f64 = 0.05;

/// Counters since start, for status and metrics.
#[derive(Debug, Default)]
pub struct LoadCounters {
    /// Requests the router handed to this upstream (per thread: every session thread adds).
    pub picked: Counter,
    /// Answers other than throttles and link errors (the SMSC took the request or judged it).
    pub acked: Counter,
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
    /// What its throttling taught it takes (messages/s), if it throttled: the weight of its
    /// share.
    pub capacity: Option<f64>,
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
    /// The most the SMSC is sent in any second, once its throttling taught one…
    limit: Option<f64>,
    /// …kept by this bucket (the limit less a small burst, at the rate).
    adaptive: TokenBucket,
    /// A run of throttles began then and has not ended (no request sent since got through):
    /// only `trickle` goes to it meanwhile. An SMSC counting calendar seconds refuses the rest
    /// of its second whatever is sent, and a bucket refuses until it refills.
    run_since: Option<Instant>,
    trickle: TokenBucket,
    /// The last cut and the last throttle.
    last_decrease: Option<Instant>,
    last_throttle: Option<Instant>,
    /// What the SMSC takes: the second highest of the counts at its last few throttles, so one
    /// odd count (a first second that straddled two of its windows, a throttle from a moment's
    /// jitter) moves neither its share nor its limit.
    capacity: Option<f64>,
    /// The counts at the last throttles, newest last.
    counts: std::collections::VecDeque<f64>,
    /// (tick time, acknowledged so far), oldest first, for the last second's count.
    history: std::collections::VecDeque<(Instant, u64)>,
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
                limit: None,
                adaptive: TokenBucket::unlimited(now),
                run_since: None,
                trickle: TokenBucket::new(TRICKLE, 1.0, now),
                last_decrease: None,
                last_throttle: None,
                capacity: None,
                counts: std::collections::VecDeque::with_capacity(COUNTS_KEPT),
                history: std::collections::VecDeque::from([(now, 0)]),
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
            i.last_throttle = Some(now);
            i.run_since.get_or_insert(now);
            if i.last_decrease.is_none_or(|t| now.duration_since(t) >= CUT_EVERY) {
                let acked = self.counters.acked.get();
                let counted = i.last_second(acked, now);
                i.capacity = Some(i.believe(counted).max(MIN_RATE));
                let taken = counted * (1.0 - MARGIN);
                let limit = match i.limit {
                    Some(limit) => taken.clamp(limit * (1.0 - CUT_MAX), limit * (1.0 - CUT_MIN)),
                    None => taken,
                }
                .max(MIN_RATE);
                i.set_limit(limit);
                i.adaptive.spend_down_to(1.0);
                i.last_decrease = Some(now);
            }
            return;
        }
        if status == CommandStatus::ESME_RSYSERR {
            self.counters.link_errors.fetch_add(1, Ordering::Relaxed);
            return;
        }
        self.counters.acked.add(1);
        let sample = rtt.as_secs_f64();
        let mut i = self.lock();
        // A request sent after the run of throttles began got through: the run is over. (One
        // sent before it says nothing: the SMSC may have counted it before its cap was hit.)
        if i.run_since
            .is_some_and(|since| now.checked_sub(rtt).is_some_and(|sent| sent >= since))
        {
            i.run_since = None;
        }
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
        if i.run_since.is_some() {
            return i.trickle.try_take(now);
        }
        let taken = i.adaptive.try_take(now);
        i.limited |= !taken;
        taken
    }

    /// Returns a unit taken for a request that was not sent after all.
    pub fn give_back(&self) {
        let mut i = self.lock();
        match i.run_since {
            Some(_) => i.trickle.give_back(),
            None => i.adaptive.give_back(),
        }
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
            limit: i.limit,
            // The share follows what it takes now: a capacity believed from an early high count
            // is held to the limit the latest throttle set (which grows when used up).
            capacity: i.capacity.map(|c| i.limit.map_or(c, |l| c.min(l / (1.0 - MARGIN)))),
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
        let acked = self.counters.acked.get();
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
        if i.history.len() == HISTORY {
            i.history.pop_front();
        }
        i.history.push_back((now, acked));
        if let Some(limit) = i.limit {
            let quiet = i.last_throttle.is_none_or(|t| now.duration_since(t) >= QUIET_AFTER);
            // Used up: turned requests away, and took nearly the limit over the last second (a
            // bucket emptied by a moment's bunching of requests is no demand above it). A small
            // limit's bucket runs a whole burst token below it: nearly is within half of one.
            let bucket_rate = i.adaptive.rate().unwrap_or(limit);
            let used_up = i.limited && i.last_second(acked, now) >= (limit * USED_UP).min(bucket_rate - 0.5);
            if quiet && used_up {
                let settled = i.capacity.map_or(limit, |c| c * (1.0 - MARGIN));
                let grown = if limit < settled {
                    (limit * (1.0 + RECOVER)).min(settled)
                } else {
                    // Slowly near the last throttle, faster the longer none came (convex, as
                    // TCP's CUBIC): a cap that rose is found in seconds, not minutes.
                    let quiet_for = i.last_throttle.map_or(0.0, |t| now.duration_since(t).as_secs_f64());
                    limit * (1.0 + PROBE * (1.0 + quiet_for / PROBE_SPEEDUP_EVERY))
                };
                i.set_limit(grown.max(limit + 0.01));
            }
            if i.last_throttle
                .is_none_or(|t| now.duration_since(t) >= FORGET_LIMIT_AFTER)
            {
                i.set_limit(f64::INFINITY);
                i.capacity = None;
                i.counts.clear();
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
    /// Adds the count at a throttle; the capacity it now believes: the second highest of the
    /// counts kept. Too high corrects itself (a bigger share draws throttles, whose counts
    /// replace it); too low would not (a smaller share never uses its limit up, so nothing
    /// is learnt), and a count after a run of throttles or off by a tick reads low.
    fn believe(&mut self, counted: f64) -> f64 {
        if self.counts.len() == COUNTS_KEPT {
            self.counts.pop_front();
        }
        self.counts.push_back(counted);
        let mut sorted = [0.0; COUNTS_KEPT];
        let n = self.counts.len();
        for (k, c) in self.counts.iter().enumerate() {
            sorted[k] = *c;
        }
        sorted[..n].sort_by(f64::total_cmp);
        sorted[n.saturating_sub(2)]
    }

    /// Acknowledged in the second before `now` (`acked` so far), from the tick history: the
    /// best measure of an SMSC's cap at the moment it throttles. For one that counts calendar
    /// seconds it is the cap exactly (the second before the first refusal reaches back to the
    /// previous second's first refusal); for a bucket, its rate plus a little burst.
    fn last_second(&self, acked: u64, now: Instant) -> f64 {
        let from = now.checked_sub(Duration::from_secs(1)).unwrap_or(now);
        // The acknowledged count at `from`, between the two ticks around it.
        let after = self.history.iter().position(|(t, _)| *t > from);
        let at_from = match after {
            None => {
                // Every tick is older than a second (ticks stalled): the rate since the last.
                let (t, n) = self.history.back().copied().unwrap_or((from, 0));
                let span = now.saturating_duration_since(t).as_secs_f64().max(1.0);
                return acked.saturating_sub(n) as f64 / span;
            }
            Some(0) => {
                // Less than a second of history: what it took so far, as a rate (at least a
                // quarter second's worth, so a burst at the start does not read as a flood).
                let (t0, n0) = self.history.front().copied().unwrap_or((now, 0));
                let span = now.saturating_duration_since(t0).as_secs_f64().clamp(0.25, 1.0);
                return acked.saturating_sub(n0) as f64 / span;
            }
            Some(k) => {
                let ((t0, n0), (t1, n1)) = (self.history[k - 1], self.history[k]);
                let span = t1.saturating_duration_since(t0).as_secs_f64().max(1e-6);
                let part = from.saturating_duration_since(t0).as_secs_f64() / span;
                n0 as f64 + (n1.saturating_sub(n0)) as f64 * part.clamp(0.0, 1.0)
            }
        };
        (acked as f64 - at_from).max(0.0)
    }

    /// The adaptive rate from now on, with a small burst: an SMSC counting per second sees an
    /// even flow, not a spike: the rate and the burst together stay within `limit` in any
    /// second.
    fn set_limit(&mut self, limit: f64) {
        if limit.is_finite() {
            let burst = (limit * ADAPTIVE_BURST).max(1.0);
            self.adaptive.set_rate((limit - burst).max(MIN_RATE), burst);
            self.limit = Some(limit);
        } else {
            self.adaptive.set_rate(f64::INFINITY, f64::INFINITY);
            self.limit = None;
        }
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
        assert!(
            (975.0..985.0).contains(&limit),
            "98 % of the last second's 1000: {limit}"
        );
        // A second throttle in the same burst does not cut again.
        load.on_answer(
            CommandStatus::ESME_RTHROTTLED,
            Duration::ZERO,
            at + Duration::from_millis(10),
        );
        assert_eq!(load.view(at, true, Duration::ZERO).limit, Some(limit));
        // Until a request sent after the throttle gets through, only a trickle goes.
        let during = (0..1000)
            .filter(|ms| load.try_take(at + Duration::from_millis(*ms)))
            .count();
        assert!((19..=21).contains(&during), "{during} a second during the run");
        let later = at + Duration::from_millis(200);
        load.on_answer(OK, Duration::from_millis(300), later);
        assert!(
            !load.try_take(later),
            "an answer to a request sent before the run ends nothing"
        );
        // Used up (it took more than the limit over the last second) and quiet: grows.
        for _ in 0..1000 {
            load.on_answer(OK, Duration::from_millis(1), later);
        }
        while load.try_take(later) {}
        load.tick(
            at + Duration::from_millis(300),
            tick,
            true,
            0.5,
            Duration::from_secs(10),
        );
        assert!(load.view(at, true, Duration::ZERO).limit.unwrap() > limit);
        // Long quiet: no cap at all.
        load.tick(at + Duration::from_secs(301), tick, true, 0.5, Duration::from_secs(10));
        assert_eq!(load.view(at, true, Duration::ZERO).limit, None);
    }

    #[test]
    fn a_small_limit_that_is_used_up_grows_too() {
        let t0 = Instant::now();
        let load = Load::new(t0);
        let tick = Duration::from_millis(100);
        let mut at = t0;
        for _ in 0..20 {
            at += tick;
            load.on_answer(OK, Duration::ZERO, at);
            load.tick(at, tick, true, 0.5, Duration::from_secs(10));
        }
        load.on_answer(CommandStatus::ESME_RTHROTTLED, Duration::ZERO, at);
        load.on_answer(OK, Duration::ZERO, at);
        let limit = load.view(at, true, Duration::ZERO).limit.unwrap();
        assert!(limit < 11.0, "{limit}");
        // Taking all it allows (its bucket runs a burst token below the limit) for 5 s.
        for _ in 0..50 {
            for ms in 0..100 {
                let now = at + Duration::from_millis(ms);
                while load.try_take(now) {
                    load.on_answer(OK, Duration::ZERO, now);
                }
            }
            at += tick;
            load.tick(at, tick, true, 0.5, Duration::from_secs(10));
        }
        let grown = load.view(at, true, Duration::ZERO).limit.unwrap();
        // Each quiet tick of the 50 grows it (by 0.1 % and more): over 4 %, not now and then.
        assert!(grown > limit * 1.04, "{limit} -> {grown}");
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
        load.on_answer(OK, Duration::ZERO, t0);
        // Over 10 s at most limit x 10 + the small burst.
        let taken = (0..10_000)
            .filter(|n| load.try_take(t0 + Duration::from_millis(*n)))
            .count();
        assert!((19..=21).contains(&taken), "{taken}");
    }

    /// An SMSC that takes `cap` a calendar second, fed `offered` a second through the adaptive
    /// rate for `seconds` (simulated, 1 ms steps): (accepted, throttled) in the last ten.
    fn against_calendar_seconds(cap: u32, offered: f64, seconds: u64) -> (u32, u32) {
        let t0 = Instant::now();
        let load = Load::new(t0);
        let (mut window, mut count, mut due) = (0, 0, 0.0);
        let (mut accepted, mut throttled) = (0, 0);
        for ms in 0..seconds * 1000 {
            let now = t0 + Duration::from_millis(ms);
            if ms % 100 == 0 {
                load.tick(now, Duration::from_millis(100), true, 0.5, Duration::from_secs(10));
            }
            due += offered / 1000.0;
            while due >= 1.0 && load.try_take(now) {
                due -= 1.0;
                if ms / 1000 != window {
                    (window, count) = (ms / 1000, 0);
                }
                let counted = ms >= (seconds - 10) * 1000;
                if count < cap {
                    count += 1;
                    accepted += u32::from(counted);
                    load.on_answer(OK, Duration::from_micros(100), now);
                } else {
                    throttled += u32::from(counted);
                    load.on_answer(CommandStatus::ESME_RTHROTTLED, Duration::ZERO, now);
                }
            }
            // What could not go waits (the router would send it elsewhere).
            due = due.min(1.0);
        }
        (accepted, throttled)
    }

    #[test]
    fn an_smsc_counting_calendar_seconds_is_learnt_and_then_hardly_throttles() {
        for (cap, offered) in [(100, 180.0), (300, 1000.0), (50, 51.0)] {
            let (accepted, throttled) = against_calendar_seconds(cap, offered, 30);
            let sent = accepted + throttled;
            assert!(
                throttled * 100 <= sent,
                "cap {cap}, {offered}/s offered: {throttled} of {sent} throttled"
            );
            assert!(
                f64::from(accepted) >= 10.0 * f64::from(cap) * 0.95,
                "cap {cap}: only {accepted} accepted in 10 s"
            );
        }
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
