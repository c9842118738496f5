//! The final receipts of recent messages, by the id their client was given: what
//! `GET /messages/{id}` (`smpp-proxy trace`) says of a message whose correlation is gone.
//!
//! A direct-mapped cache written on the receipt path, once per final receipt: the id's hash
//! picks one of [`SLOTS`] slots, each behind its own lock, and a receipt takes its slot from
//! whatever was there. Each slot holds a copy of what a trace shows, inline: no allocation, and
//! no message kept alive on the heap (keeping the correlations themselves fragmented the heap
//! and cost the memory path several percent in profiles). The price: a recent message can lose
//! its place to a newer one with the same slot, and fields longer than SMPP allows are cut.
//! Older messages are in the message trail, if one is kept.

use crate::store::Correlation;
use std::hash::BuildHasher;
use std::sync::Mutex;

/// Slots: about the last this many final receipts are remembered (under 300 bytes each).
pub const SLOTS: usize = 16_384;

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

/// The slots.
#[derive(Debug)]
pub struct Delivered {
    slots: Box<[Mutex<Option<Done>>]>,
    hasher: foldhash::fast::FixedState,
}

impl Default for Delivered {
    fn default() -> Delivered {
        Delivered {
            slots: (0..SLOTS).map(|_| Mutex::new(None)).collect(),
            hasher: foldhash::fast::FixedState::default(),
        }
    }
}

impl Delivered {
    fn slot(&self, id: &[u8]) -> &Mutex<Option<Done>> {
        &self.slots[self.hasher.hash_one(id) as usize % SLOTS]
    }

    /// Remembers `done` in its slot.
    pub fn remember(&self, done: Done) {
        *self.slot(done.id.as_bytes()).lock().unwrap_or_else(|e| e.into_inner()) = Some(done);
    }

    /// The message the client knows as `id`, with its final receipt, if still remembered.
    pub fn get(&self, id: &str) -> Option<Done> {
        let slot = *self.slot(id.as_bytes()).lock().unwrap_or_else(|e| e.into_inner());
        slot.filter(|d| d.id.as_bytes() == id.as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn done(id: usize) -> Done {
        let c = Correlation {
            upstream: Arc::from("u"),
            upstream_id: format!("u{id}"),
            client: Arc::from("c"),
            client_id: format!("{id}"),
            submitted_at: 0,
            registered_delivery: 1,
            source_addr: String::new(),
            destination_addr: String::new(),
            part: None,
        };
        Done::of(&c, Some(Receipt::new(Some(b"DELIVRD"), None, 5)))
    }

    #[test]
    fn recent_receipts_are_found_by_their_id() {
        let d = Delivered::default();
        for id in 0..1000 {
            d.remember(done(id));
        }
        // 1000 ids in 16 384 slots: nearly all kept; each found is the right one.
        let found = (0..1000).filter_map(|id| d.get(&id.to_string())).count();
        assert!(found > 950, "{found}");
        assert_eq!(d.get("999").map(|x| x.smsc_id.text()), Some("u999".into()));
        assert!(d.get("nope").is_none());
        let receipt = d.get("999").unwrap().receipt.unwrap();
        assert_eq!((receipt.state.unwrap().text(), receipt.at), ("DELIVRD".into(), 5));
        assert_eq!(Inline::<15>::new(b"0123456789abcdefXYZ").text(), "0123456789abcde");
    }
}
