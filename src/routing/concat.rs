//! Keeps the parts of one concatenated message together: the first part routed (whichever it
//! is) pins the message to its upstream, and every later part of it from the same client, in
//! any order and interleaved with other traffic, goes there too. A message is known by client,
//! source, destination and reference number (UDH 8- or 16-bit, or SAR).
//!
//! A pin outlives its last part for a short while, so a part that comes back to be routed
//! again (throttled by the SMSC) still finds it; otherwise pins expire after `concat_ttl`.

use crate::pdu::Pdu;
use dashmap::DashMap;
use std::hash::{Hash, Hasher};
use std::time::{Duration, Instant};

/// How long a pin stays after its last part was routed.
const LINGER: Duration = Duration::from_secs(30);

/// Identifies one concatenated message of one client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MessageKey(u64);

/// The message a part belongs to, and which part it is; `None` for a single message.
pub fn key_of(client: &str, pdu: &Pdu) -> Option<(MessageKey, u8, u8)> {
    let c = pdu.concatenation()?;
    if c.total < 2 {
        return None;
    }
    let keys = super::routes::Keys::of(client, pdu);
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (client, keys.source, keys.destination, c.reference).hash(&mut h);
    Some((MessageKey(h.finish()), c.seqnum, c.total))
}

#[derive(Debug, Clone, Copy)]
struct Pin {
    upstream: usize,
    /// Parts routed, as a bit set (part numbers 1..=255).
    parts: [u64; 4],
    total: u8,
    at: Instant,
}

impl Pin {
    fn complete(&self) -> bool {
        let seen: u32 = self.parts.iter().map(|w| w.count_ones()).sum();
        seen >= u32::from(self.total)
    }
}

/// Pins of messages in progress.
#[derive(Debug, Default)]
pub struct Affinity {
    pins: DashMap<MessageKey, Pin, foldhash::fast::RandomState>,
}

impl Affinity {
    /// The upstream the message is pinned to.
    pub fn pinned(&self, key: MessageKey) -> Option<usize> {
        self.pins.get(&key).map(|p| p.upstream)
    }

    /// Records that `part` of `total` went to `upstream` (pinning the message there, or moving
    /// the pin when the message had to leave a lost upstream).
    pub fn routed(&self, key: MessageKey, part: u8, total: u8, upstream: usize, now: Instant) {
        let mut pin = self.pins.entry(key).or_insert_with(|| Pin {
            upstream,
            parts: [0; 4],
            total,
            at: now,
        });
        pin.upstream = upstream;
        pin.parts[usize::from(part / 64)] |= 1 << (part % 64);
        pin.at = now;
    }

    /// The pins as a new router's, each upstream at its index there (`None`: the upstream is
    /// gone, and so is the pin; the message's next part is routed afresh). A copy: the router
    /// being replaced keeps its own, with its own indices, while requests still use it.
    pub fn remapped(&self, new_index: impl Fn(usize) -> Option<usize>) -> Affinity {
        let pins = DashMap::default();
        for entry in self.pins.iter() {
            if let Some(upstream) = new_index(entry.upstream) {
                pins.insert(
                    *entry.key(),
                    Pin {
                        upstream,
                        ..*entry.value()
                    },
                );
            }
        }
        Affinity { pins }
    }

    /// Forgets pins past `ttl`, or past a short linger once every part was routed.
    pub fn expire(&self, now: Instant, ttl: Duration) {
        self.pins.retain(|_, p| {
            let age = now.saturating_duration_since(p.at);
            age < ttl && !(p.complete() && age >= LINGER)
        });
    }

    /// Messages in progress.
    pub fn len(&self) -> usize {
        self.pins.len()
    }

    /// `true` when none are.
    pub fn is_empty(&self) -> bool {
        self.pins.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pdu::Body;

    fn part(reference: u8, seq: u8, destination: &str) -> Pdu {
        let mut pdu = crate::esme::submit_sm("4477", destination, b"", false);
        if let Body::SubmitSm(b) = &mut pdu.body {
            b.esm_class = 0x40;
            b.short_message = bytes::Bytes::from(vec![0x05, 0x00, 0x03, reference, 3, seq, b'x']);
        }
        pdu
    }

    #[test]
    fn parts_share_a_key_other_messages_do_not() {
        let (k1, p1, t) = key_of("shop", &part(7, 1, "4477")).unwrap();
        let (k3, p3, _) = key_of("shop", &part(7, 3, "4477")).unwrap();
        assert_eq!((k1, p1, p3, t), (k3, 1, 3, 3));
        assert_ne!(k1, key_of("bank", &part(7, 1, "4477")).unwrap().0);
        assert_ne!(k1, key_of("shop", &part(8, 1, "4477")).unwrap().0);
        assert_ne!(k1, key_of("shop", &part(7, 1, "4478")).unwrap().0);
        assert!(key_of("shop", &crate::esme::submit_sm("1", "2", b"single", false)).is_none());
    }

    #[test]
    fn pins_follow_moves_and_expire() {
        let t0 = Instant::now();
        let a = Affinity::default();
        let (k, ..) = key_of("shop", &part(7, 2, "4477")).unwrap();
        a.routed(k, 2, 3, 1, t0);
        assert_eq!(a.pinned(k), Some(1));
        a.routed(k, 3, 3, 2, t0);
        assert_eq!(a.pinned(k), Some(2), "moved with the remaining parts");
        a.expire(t0 + LINGER, Duration::from_secs(300));
        assert_eq!(a.len(), 1, "part 1 not routed yet");
        a.routed(k, 1, 3, 2, t0);
        a.expire(t0 + Duration::from_secs(1), Duration::from_secs(300));
        assert_eq!(a.len(), 1, "lingers for retries");
        a.expire(t0 + LINGER, Duration::from_secs(300));
        assert!(a.is_empty());
        a.routed(k, 1, 3, 0, t0);
        a.expire(t0 + Duration::from_secs(300), Duration::from_secs(300));
        assert!(a.is_empty(), "ttl");
    }
}
