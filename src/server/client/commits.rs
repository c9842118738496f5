//! A session's submit answers that wait for their correlations to be durable.
//!
//! An answer mapped during a turn ([`Client::map_answer`](super::Client)) waits here, and its
//! correlation with it; at the end of the turn the turn's correlations go to the store in one
//! call (`Store::record_all`: one operation and one ticket per turn for the durable store),
//! and the tickets come back as runs, each covering the next answers in order. The session
//! writes an answer once its run's ticket resolves (`requests::on_committed`); a receipt
//! matched before that waits for it (`context::answers`).

use crate::context::{Context, DueKey};
use crate::pdu::CommandId;
use crate::receipt::id::IdMatch;
use crate::store::{Commit, Correlation, Store, StoreError};
use bytes::Bytes;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

/// An answer held until its correlation is durable.
pub(super) struct Committing {
    /// The upstream's response frame, its id to be replaced by the correlation's client id.
    pub(super) resp: Bytes,
    pub(super) client_seq: u32,
    pub(super) command: CommandId,
    pub(super) correlation: Arc<Correlation>,
    /// Where it is filed among the answers due (none: its submit asked for no receipt).
    pub(super) due: Option<DueKey>,
    /// When the client's submit was read, and when its answer was mapped.
    pub(super) received: Instant,
    pub(super) mapped: Instant,
}

/// The answers waiting, oldest first, and the tickets of those handed to the store.
#[derive(Default)]
pub(super) struct Commits {
    waiting: VecDeque<Committing>,
    /// The correlations of the newest answers, not yet handed to the store (this turn's).
    unrecorded: Vec<(Arc<Correlation>, IdMatch)>,
    /// One ticket per run of answers, oldest first, with how many answers it covers; they cover
    /// every waiting answer but the unrecorded ones.
    runs: VecDeque<(Commit, usize)>,
}

impl Commits {
    /// Whether no answer waits (the session may unbind).
    pub(super) fn is_empty(&self) -> bool {
        self.waiting.is_empty()
    }

    /// Whether a ticket is out (worth waiting on).
    pub(super) fn in_store(&self) -> bool {
        !self.runs.is_empty()
    }

    /// Holds `answer` until its correlation is recorded, under the key `id_match` gives.
    pub(super) fn push(&mut self, answer: Committing, id_match: IdMatch) {
        self.unrecorded.push((answer.correlation.clone(), id_match));
        self.waiting.push_back(answer);
    }

    /// Hands the unrecorded correlations to the store, in one call.
    pub(super) fn record(&mut self, store: &dyn Store) {
        if self.unrecorded.is_empty() {
            return;
        }
        #[cfg(debug_assertions)]
        let before: usize = self.runs.iter().map(|(_, n)| n).sum();
        store.record_all(&self.unrecorded, &mut self.runs);
        #[cfg(debug_assertions)]
        assert_eq!(
            self.runs.iter().map(|(_, n)| n).sum::<usize>(),
            before + self.unrecorded.len(),
            "a store's tickets must cover what it was given"
        );
        self.unrecorded.clear();
    }

    /// The oldest ticket's outcome; never, when none is out.
    pub(super) async fn oldest(&mut self) -> Result<u64, StoreError> {
        match self.runs.front_mut() {
            Some((ticket, _)) => ticket.await,
            None => std::future::pending().await,
        }
    }

    /// The outcome of the oldest run and how many answers it covers, if it is known: `awaited`
    /// is its outcome when [`Commits::oldest`] gave it; otherwise the ticket is asked without
    /// waiting. The run's answers are then taken with [`Commits::pop`].
    pub(super) fn done(
        &mut self,
        awaited: Option<Result<u64, StoreError>>,
    ) -> Option<(Result<u64, StoreError>, usize)> {
        let (ticket, n) = self.runs.front_mut()?;
        let outcome = match awaited {
            Some(outcome) => outcome,
            None => ticket.ready()?,
        };
        let n = *n;
        self.runs.pop_front();
        Some((outcome, n))
    }

    /// The oldest answer.
    pub(super) fn pop(&mut self) -> Option<Committing> {
        self.waiting.pop_front()
    }

    /// For a session that leaves with answers still waiting (all handed to the store): waits
    /// for their tickets and tells `ctx` of each answer as writing it would have, so that
    /// receipts held for them are delivered.
    pub(super) async fn release(mut self, ctx: Arc<Context>) {
        while let Some((ticket, n)) = self.runs.pop_front() {
            let recorded = ticket.await.is_ok();
            for answer in self.waiting.drain(..n.min(self.waiting.len())) {
                ctx.answer_written(&answer.correlation, answer.due, recorded);
            }
        }
        // None is left (tickets cover every answer handed over); were one left, the receipts
        // waiting for it must not wait for ever.
        for answer in self.waiting.drain(..) {
            ctx.answer_written(&answer.correlation, answer.due, false);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{DurableStore, MemoryStore};

    fn answer(n: u32) -> Committing {
        Committing {
            resp: Bytes::new(),
            client_seq: n,
            command: CommandId::SUBMIT_SM_RESP,
            correlation: Arc::new(Correlation {
                upstream: "smsc".into(),
                upstream_id: format!("u{n}").into(),
                client: "shop".into(),
                client_id: format!("c{n}").into(),
                submitted_at: 1_700_000_000,
                registered_delivery: 1,
                source_addr: "4477".into(),
                destination_addr: "447700900123".into(),
                part: None,
            }),
            due: None,
            received: Instant::now(),
            mapped: Instant::now(),
        }
    }

    /// Takes what is done, in order: the client sequence numbers of the answers popped.
    fn take_done(commits: &mut Commits, mut awaited: Option<Result<u64, StoreError>>) -> Vec<u32> {
        let mut seqs = Vec::new();
        while let Some((outcome, n)) = commits.done(awaited.take()) {
            assert!(outcome.is_ok());
            seqs.extend((0..n).map_while(|_| commits.pop()).map(|a| a.client_seq));
        }
        seqs
    }

    #[test]
    fn a_store_that_answers_at_once_lets_the_turn_write_its_answers() {
        let store = MemoryStore::default();
        let mut commits = Commits::default();
        (1..=3).for_each(|n| commits.push(answer(n), IdMatch::Exact));
        assert!(!commits.in_store(), "nothing handed over before the turn ends");
        assert_eq!(take_done(&mut commits, None), Vec::<u32>::new());
        commits.record(&store);
        assert_eq!(take_done(&mut commits, None), [1, 2, 3]);
        assert!(commits.is_empty() && !commits.in_store());
        assert!(store
            .find_by_client("shop", "c2")
            .now()
            .ok()
            .unwrap()
            .unwrap()
            .is_some());
    }

    #[tokio::test]
    async fn a_turn_waits_on_one_ticket_and_answers_in_order() {
        let d = std::env::temp_dir().join(format!("smpp-proxy-commits-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        let store = DurableStore::open(&d).unwrap();
        let mut commits = Commits::default();
        (1..=3).for_each(|n| commits.push(answer(n), IdMatch::Exact));
        commits.record(&store);
        // The next turn's answer waits behind the first turn's, unrecorded.
        commits.push(answer(4), IdMatch::Exact);
        let outcome = tokio::time::timeout(std::time::Duration::from_secs(10), commits.oldest())
            .await
            .expect("committed");
        assert_eq!(
            take_done(&mut commits, Some(outcome)),
            [1, 2, 3],
            "the run covers its turn only"
        );
        assert!(!commits.in_store() && !commits.is_empty());
        commits.record(&store);
        let outcome = tokio::time::timeout(std::time::Duration::from_secs(10), commits.oldest())
            .await
            .expect("committed");
        assert_eq!(take_done(&mut commits, Some(outcome)), [4]);
        assert!(commits.is_empty());
        drop(store);
        let _ = std::fs::remove_dir_all(&d);
    }
}
