//! What happens to a receipt or MO the client did not take: the policy, as a pure function of
//! the client's answer and the entry's history, and the growing wait before the next try.
//!
//! | the client's answer | what happens |
//! |---|---|
//! | OK | delivered: the entry leaves the outbox |
//! | ESME_RX_P_APPN, ESME_RX_R_APPN | dropped at once (the client said never) |
//! | ESME_RX_T_APPN, ESME_RTHROTTLED, ESME_RMSGQFUL, no answer | tried again after the backoff, until `receipt_ttl` |
//! | anything else (generic_nack, ESME_RSYSERR, ...) | tried again after the backoff, dropped after `redelivery_attempts` such answers |
//! | not sent (the bind cannot receive, or is closing; or, after an unbind, ESME_RINVBNDSTS) | to another bind at once, no penalty |

use crate::messages::Delivery;
use crate::pdu::CommandStatus;
use std::collections::BTreeMap;
use std::time::Duration;
use tokio::time::Instant;

/// What to do with an entry after a delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Verdict {
    /// Taken: remove it.
    Done,
    /// Refused for good: remove it, and count it.
    Drop,
    /// Try again after `backoff(tries)`.
    Later,
    /// Not the client's doing: try again now.
    Again,
}

/// How many times an entry was refused, by kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Tries {
    /// Every refusal and missing answer (what the backoff grows with).
    pub(super) refused: u32,
    /// Of them, answers that do not say "try later".
    pub(super) failed: u32,
}

/// The policy in the module's table. `tries` is updated with this delivery.
pub(super) fn verdict(outcome: Delivery, tries: &mut Tries, max_failed: u32) -> Verdict {
    let temporary = |s: CommandStatus| {
        matches!(
            s,
            CommandStatus::ESME_RX_T_APPN | CommandStatus::ESME_RTHROTTLED | CommandStatus::ESME_RMSGQFUL
        )
    };
    let failed = match outcome {
        Delivery::NotSent => return Verdict::Again,
        Delivery::Answered(s) if s.is_ok() => return Verdict::Done,
        Delivery::Answered(CommandStatus::ESME_RX_P_APPN | CommandStatus::ESME_RX_R_APPN) => return Verdict::Drop,
        Delivery::NoAnswer => false,
        Delivery::Answered(s) | Delivery::Nacked(s) => !temporary(s),
    };
    tries.refused = tries.refused.saturating_add(1);
    if failed {
        tries.failed += 1;
        if tries.failed >= max_failed {
            return Verdict::Drop;
        }
    }
    Verdict::Later
}

/// The wait before try `refused + 1`: `first`, doubled per refusal, at most `max`.
pub(super) fn backoff(refused: u32, first: Duration, max: Duration) -> Duration {
    let doublings = refused.saturating_sub(1).min(31);
    first.saturating_mul(1 << doublings).min(max)
}

/// Entries waiting out their backoff, by when each may go again: the next one is found
/// without looking at the others (a client refusing everything can have many waiting).
#[derive(Debug)]
pub(super) struct Delayed<T> {
    /// By due time, then arrival (two entries may be due at the same instant).
    by_due: BTreeMap<(Instant, u64), T>,
    arrivals: u64,
}

impl<T> Default for Delayed<T> {
    fn default() -> Self {
        Delayed {
            by_due: BTreeMap::new(),
            arrivals: 0,
        }
    }
}

impl<T> Delayed<T> {
    pub(super) fn push(&mut self, due: Instant, item: T) {
        self.arrivals += 1;
        self.by_due.insert((due, self.arrivals), item);
    }

    /// When the first one is due.
    pub(super) fn next_due(&self) -> Option<Instant> {
        self.by_due.first_key_value().map(|((due, _), _)| *due)
    }

    /// The first one, if it is due by `now`.
    pub(super) fn pop_due(&mut self, now: Instant) -> Option<T> {
        match self.next_due() {
            Some(due) if due <= now => self.by_due.pop_first().map(|(_, item)| item),
            _ => None,
        }
    }

    pub(super) fn retain(&mut self, mut keep: impl FnMut(&T) -> bool) {
        self.by_due.retain(|_, item| keep(item));
    }

    pub(super) fn len(&self) -> usize {
        self.by_due.len()
    }

    pub(super) fn iter(&self) -> impl Iterator<Item = &T> {
        self.by_due.values()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_policy_table() {
        let mut t = Tries::default();
        assert_eq!(
            verdict(Delivery::Answered(CommandStatus::ESME_ROK), &mut t, 3),
            Verdict::Done
        );
        assert_eq!(verdict(Delivery::NotSent, &mut t, 3), Verdict::Again);
        assert_eq!(t, Tries::default(), "neither counts as a refusal");
        assert_eq!(
            verdict(Delivery::Answered(CommandStatus::ESME_RX_P_APPN), &mut t, 3),
            Verdict::Drop
        );
        // "Try later" and silence: again and again, never dropped here (receipt_ttl does that).
        for _ in 0..100 {
            assert_eq!(
                verdict(Delivery::Answered(CommandStatus::ESME_RX_T_APPN), &mut t, 3),
                Verdict::Later
            );
            assert_eq!(verdict(Delivery::NoAnswer, &mut t, 3), Verdict::Later);
            assert_eq!(
                verdict(Delivery::Nacked(CommandStatus::ESME_RTHROTTLED), &mut t, 3),
                Verdict::Later
            );
        }
        assert_eq!(
            t,
            Tries {
                refused: 300,
                failed: 0
            }
        );
        // Anything else: dropped at the third.
        assert_eq!(
            verdict(Delivery::Nacked(CommandStatus::ESME_RINVCMDID), &mut t, 3),
            Verdict::Later
        );
        assert_eq!(
            verdict(Delivery::Answered(CommandStatus::ESME_RSYSERR), &mut t, 3),
            Verdict::Later
        );
        assert_eq!(
            verdict(Delivery::Nacked(CommandStatus::ESME_ROK), &mut t, 3),
            Verdict::Drop
        );
    }

    #[test]
    fn delayed_entries_come_out_by_due_time_and_only_when_due() {
        let t0 = Instant::now();
        let mut d = Delayed::default();
        d.push(t0 + Duration::from_secs(3), "c");
        d.push(t0 + Duration::from_secs(1), "a");
        d.push(t0 + Duration::from_secs(1), "b");
        assert_eq!(d.next_due(), Some(t0 + Duration::from_secs(1)));
        assert_eq!(d.pop_due(t0), None);
        let now = t0 + Duration::from_secs(2);
        assert_eq!(
            (d.pop_due(now), d.pop_due(now), d.pop_due(now)),
            (Some("a"), Some("b"), None)
        );
        d.retain(|s| *s != "c");
        assert_eq!((d.len(), d.next_due()), (0, None));
    }

    #[test]
    fn the_wait_doubles_up_to_its_cap() {
        let (first, max) = (Duration::from_secs(1), Duration::from_secs(300));
        let waits: Vec<u64> = (1..=11).map(|n| backoff(n, first, max).as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300]);
        assert_eq!(backoff(u32::MAX, first, max), max);
    }
}
