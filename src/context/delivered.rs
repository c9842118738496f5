//! The final receipts of recent messages, by the id their client was given: what
//! `GET /messages/{id}` (`smpp-proxy trace`) says of a message whose correlation is gone.
//!
//! Written on the receipt path, once per final receipt, read only by a trace. So the writes
//! are what must be cheap: each session thread has a ring of its own (others share ring 0) and
//! writes the next place in it, under a lock nobody else takes but a trace. A copy of what a
//! trace shows is held inline: no allocation, and no message kept alive on the heap (keeping
//! the correlations themselves fragmented the heap and cost the memory path several percent in
//! profiles). A trace scans the rings, newest first (a few milliseconds at most). An earlier
//! version put each receipt in a slot picked by the id's hash: every write then missed the
//! cache, a couple of percent of the proxy's CPU at full load. The price of either: about the
//! last [`SLOTS`] final receipts are remembered, and fields longer than SMPP allows are cut.
//! Older messages are in the message trail, if one is kept.

use crate::session::threads;
use crate::sharded::Padded;
use crate::store::Correlation;
use std::sync::Mutex;

/// About the last this many final receipts are remembered (under 300 bytes each), shared out
/// among the session threads' rings…
pub const SLOTS: usize = 16_384;
/// …but a ring holds at least this many: receipts come on the threads of the upstream
/// sessions, which may be fewer than the threads…
pub const RING_MIN: usize = SLOTS / 4;
/// …while all of them hold at most this many (about 18 MiB).
pub const SLOTS_MAX: usize = SLOTS * 4;

/// Up to `N` bytes of text, inline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Inline<const N: usize> {
    len: u8,
    bytes: [u8; N],
}

impl<const N: usize> Inline<N> {
    /// The first `N` bytes of `text`.
    pub fn new(text: &[u8]) -> Inline<N> {
        let mut bytes = [0; N];
        let n = text.len().min(N).min(usize::from(u8::MAX));
        bytes[..n].copy_from_slice(&text[..n]);
        Inline { len: n as u8, bytes }
    }

    /// The bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }

    /// As text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(self.as_bytes()).into_owned()
    }
}

/// What a trace shows of a message, and of its final receipt once there is one.
#[derive(Debug, Clone, Copy)]
pub struct Done {
    /// The id its client was given (SMPP ids are at most 64 octets).
    pub id: Inline<64>,
    /// Its client's system_id.
    pub client: Inline<16>,
    /// The upstream that took it.
    pub upstream: Inline<32>,
    /// The SMSC's id for it.
    pub smsc_id: Inline<64>,
    /// Its addresses (at most 20 digits).
    pub source: Inline<21>,
    /// See `source`.
    pub destination: Inline<21>,
    /// `(part, of)` of a concatenated message.
    pub part: Option<(u8, u8)>,
    /// Its registered_delivery.
    pub registered_delivery: u8,
    /// When it was submitted (Unix seconds).
    pub submitted_at: u64,
    /// Its final receipt, once there is one.
    pub receipt: Option<Receipt>,
}

/// A final receipt as a trace shows it.
#[derive(Debug, Clone, Copy)]
pub struct Receipt {
    /// Its `stat:` (`DELIVRD`, `UNDELIV`...).
    pub state: Option<Inline<15>>,
    /// Its `err:`.
    pub err: Option<Inline<7>>,
    /// When it came (Unix seconds).
    pub at: u64,
}

impl Receipt {
    /// From a receipt's `stat:` and `err:`, come `at`.
    pub fn new(state: Option<&[u8]>, err: Option<&[u8]>, at: u64) -> Receipt {
        Receipt {
            state: state.map(Inline::new),
            err: err.map(Inline::new),
            at,
        }
    }
}

impl Done {
    /// What a trace shows of `c`, with its final receipt if given.
    pub fn of(c: &Correlation, receipt: Option<Receipt>) -> Done {
        Done {
            id: Inline::new(c.client_id.as_bytes()),
            client: Inline::new(c.client.as_bytes()),
            upstream: Inline::new(c.upstream.as_bytes()),
            smsc_id: Inline::new(c.upstream_id.as_bytes()),
            source: Inline::new(c.source_addr.as_bytes()),
            destination: Inline::new(c.destination_addr.as_bytes()),
            part: c.part,
            registered_delivery: c.registered_delivery,
            submitted_at: c.submitted_at,
            receipt,
        }
    }
}

/// The rings, one per session thread and ring 0 for any other thread.
#[derive(Debug)]
pub struct Delivered {
    /// Each on lines of its own: rings of two threads side by side would share a line.
    rings: Box<[Padded<Mutex<Ring>>]>,
}

#[derive(Debug, Default)]
struct Ring {
    /// Grows to `cap`, then `next` goes round (a ring no thread writes takes no memory).
    done: Vec<Done>,
    next: usize,
    cap: usize,
}

impl Delivered {
    /// Rings for `threads` session threads, [`SLOTS`] places shared among them, at least
    /// [`RING_MIN`] each, [`SLOTS_MAX`] in all at most (taken only as a thread writes).
    pub fn new(threads: usize) -> Delivered {
        let threads = threads.max(1);
        let cap = (SLOTS / threads).max(RING_MIN).min(SLOTS_MAX / threads);
        Delivered {
            rings: (0..=threads)
                .map(|_| Padded(Mutex::new(Ring { cap, ..Ring::default() })))
                .collect(),
        }
    }

    /// Remembers `done` in this thread's ring.
    pub fn remember(&self, done: Done) {
        let ring = &self.rings[threads::current().min(self.rings.len() - 1)].0;
        let mut ring = ring.lock().unwrap_or_else(|e| e.into_inner());
        let at = ring.next;
        if ring.done.capacity() == 0 {
            // Once, and whole: no reallocation under the lock on the receipt path.
            let cap = ring.cap;
            ring.done.reserve_exact(cap);
        }
        match ring.done.get_mut(at) {
            Some(place) => *place = done,
            None => ring.done.push(done),
        }
        ring.next = (at + 1) % ring.cap;
    }

    /// The message the client knows as `id`, with its final receipt, if still remembered (the
    /// latest receipt of any ring when more than one has it).
    pub fn get(&self, id: &str) -> Option<Done> {
        let id = id.as_bytes();
        self.rings
            .iter()
            .filter_map(|ring| {
                let ring = ring.0.lock().unwrap_or_else(|e| e.into_inner());
                // Before `next`, the latest writes; from it on, those the ring has yet to go over.
                let (recent, old) = ring.done.split_at(ring.next.min(ring.done.len()));
                old.iter().chain(recent).rev().find(|d| d.id.as_bytes() == id).copied()
            })
            .max_by_key(|d| d.receipt.map_or(0, |r| r.at))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn done(id: usize) -> Done {
        let c = Correlation {
            upstream: Arc::from("u"),
            upstream_id: format!("u{id}").into(),
            client: Arc::from("c"),
            client_id: format!("{id}").into(),
            submitted_at: 0,
            registered_delivery: 1,
            source_addr: Default::default(),
            destination_addr: Default::default(),
            part: None,
        };
        Done::of(&c, Some(Receipt::new(Some(b"DELIVRD"), None, 5)))
    }

    #[test]
    fn recent_receipts_are_found_by_their_id() {
        let d = Delivered::new(1);
        for id in 0..SLOTS + 1000 {
            d.remember(done(id));
        }
        // The last SLOTS are kept, the 1000 before them are gone; each found is the right one.
        let sample = || (0..SLOTS + 1000).step_by(97);
        let found: Vec<usize> = sample().filter(|id| d.get(&id.to_string()).is_some()).collect();
        assert_eq!(found, sample().filter(|&id| id >= 1000).collect::<Vec<_>>());
        assert!(d.get("999").is_none());
        assert_eq!(d.get("1000").map(|x| x.smsc_id.text()), Some("u1000".into()));
        assert_eq!(
            d.get(&(SLOTS + 999).to_string()).map(|x| x.smsc_id.text()),
            Some(format!("u{}", SLOTS + 999))
        );
        assert!(d.get("nope").is_none());
        let receipt = d.get("1000").unwrap().receipt.unwrap();
        assert_eq!((receipt.state.unwrap().text(), receipt.at), ("DELIVRD".into(), 5));
        assert_eq!(Inline::<15>::new(b"0123456789abcdefXYZ").text(), "0123456789abcde");
    }

    #[test]
    fn a_ring_finds_the_latest_of_an_id_written_twice_also_across_its_wrap() {
        let cap = |threads: usize| Delivered::new(threads).rings[0].0.lock().unwrap().cap;
        assert_eq!(
            (cap(1), cap(2), cap(8), cap(64)),
            (SLOTS, SLOTS / 2, RING_MIN, SLOTS_MAX / 64)
        );
        let d = Delivered::new(4);
        let cap = cap(4);
        let with_at = |id: usize, at: u64| {
            let mut x = done(id);
            x.receipt = Some(Receipt::new(Some(b"DELIVRD"), None, at));
            x
        };
        d.remember(with_at(5, 1));
        d.remember(with_at(5, 2));
        assert_eq!(d.get("5").and_then(|x| x.receipt).map(|r| r.at), Some(2));
        // Id 7 in the ring's last place, then again in its first once it has gone round: the
        // later one is before `next`, the earlier at the end.
        for id in 2..cap - 1 {
            d.remember(with_at(1_000_000 + id, 3));
        }
        d.remember(with_at(7, 4));
        d.remember(with_at(7, 5));
        assert_eq!(d.get("7").and_then(|x| x.receipt).map(|r| r.at), Some(5));
        assert!(
            d.get("5").map(|x| x.receipt.unwrap().at) != Some(1),
            "overwritten by the wrap"
        );
    }

    #[tokio::test]
    async fn each_session_thread_writes_its_own_ring_and_a_trace_reads_them_all() {
        let threads = crate::session::threads::SessionThreads::start(2).unwrap();
        let place = threads.placement();
        let d = Arc::new(Delivered::new(place.threads()));
        let tracker = tokio_util::task::TaskTracker::new();
        // Tasks go to threads 1, 2, 1, 2 in turn: id 7 is written on both, later on thread 2.
        for (id, at) in [(1, 1), (2, 2), (7, 3), (7, 4)] {
            let d = d.clone();
            place.spawn(&tracker, async move {
                let mut x = done(id);
                x.receipt = Some(Receipt::new(Some(b"DELIVRD"), None, at));
                d.remember(x);
            });
            // In order: the last write of id 7 is the later one.
            tracker.close();
            tracker.wait().await;
            tracker.reopen();
        }
        let len = |i: usize| d.rings[i].0.lock().unwrap().done.len();
        assert_eq!(
            (len(0), len(1), len(2)),
            (0, 2, 2),
            "written on the session threads' own rings"
        );
        assert_eq!(d.rings[1].0.lock().unwrap().cap, SLOTS / 2);
        assert_eq!(d.get("1").and_then(|x| x.receipt).map(|r| r.at), Some(1));
        assert_eq!(d.get("2").and_then(|x| x.receipt).map(|r| r.at), Some(2));
        assert_eq!(
            d.get("7").and_then(|x| x.receipt).map(|r| r.at),
            Some(4),
            "the latest receipt of the two rings"
        );
        // Off the session threads: ring 0.
        d.remember(done(9));
        assert_eq!(len(0), 1);
        assert!(d.get("9").is_some());
    }
}
