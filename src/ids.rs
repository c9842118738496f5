//! The message ids the proxy hands to clients: unique across upstreams, restarts and nodes.
//!
//! A 64-bit value in the Snowflake layout: 41 bits of milliseconds since 2024-01-01, 10 bits of
//! node (a hash of `node_id`), 12 bits of sequence within the millisecond. The clock only moves
//! forward: when the sequence runs out within a millisecond, or the system clock steps back,
//! the generator borrows the next millisecond, so ids never repeat while the process lives and,
//! after a restart, continue from the wall clock. Rendered per client as hex (16 digits),
//! decimal, or a UUID (version 8, the id in its first 64 bits).

use crate::config::MessageIdFormat;
use compact_str::{format_compact, CompactString};
use std::sync::atomic::{AtomicU64, Ordering};

const EPOCH_MS: u64 = 1_704_067_200_000; // 2024-01-01T00:00:00Z
const SEQ_BITS: u32 = 12;
const NODE_BITS: u32 = 10;

/// Generates ids for one node.
#[derive(Debug)]
pub struct IdGenerator {
    node: u64,
    /// `(milliseconds << 12) | sequence` of the last id.
    last: AtomicU64,
}

/// The 10-bit node number derived from `node_id` (FNV-1a).
pub fn node_number(node_id: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in node_id.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h % (1 << NODE_BITS)
}

impl IdGenerator {
    /// A generator for `node_id`.
    pub fn new(node_id: &str) -> IdGenerator {
        IdGenerator {
            node: node_number(node_id),
            last: AtomicU64::new(0),
        }
    }

    /// The next 64-bit id.
    pub fn next_u64(&self) -> u64 {
        self.next_u64_at(crate::session::unix_ms())
    }

    fn next_u64_at(&self, unix_ms: u64) -> u64 {
        let now = unix_ms.saturating_sub(EPOCH_MS) << SEQ_BITS;
        let mut last = self.last.load(Ordering::Relaxed);
        loop {
            // Same or earlier millisecond: next sequence (which rolls into the next millisecond).
            let next = if now > last { now } else { last + 1 };
            match self
                .last
                .compare_exchange_weak(last, next, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => {
                    let ms = next >> SEQ_BITS;
                    let seq = next & ((1 << SEQ_BITS) - 1);
                    return (ms << (NODE_BITS + SEQ_BITS)) | (self.node << SEQ_BITS) | seq;
                }
                Err(actual) => last = actual,
            }
        }
    }

    /// The next id in `format` at `unix_ms` (the caller's clock read: a session reads it once
    /// per turn); `Passthrough` gives `upstream_id` back.
    pub fn next(&self, format: MessageIdFormat, upstream_id: &str, unix_ms: u64) -> CompactString {
        match format {
            MessageIdFormat::Passthrough => upstream_id.into(),
            other => render(self.next_u64_at(unix_ms), self.node, other),
        }
    }
}

/// `id` in `format` (hex, decimal or UUID).
/// (Hex and decimal fit a `CompactString` inline: no allocation per message.)
pub fn render(id: u64, node: u64, format: MessageIdFormat) -> CompactString {
    match format {
        MessageIdFormat::Hex | MessageIdFormat::Passthrough => format_compact!("{id:016x}"),
        MessageIdFormat::Decimal => format_compact!("{id}"),
        MessageIdFormat::Uuid => {
            // Version 8 (custom), variant 10; the low half repeats the node for readability.
            let hi = id;
            let lo = (0b10u64 << 62) | node;
            format_compact!(
                "{:08x}-{:04x}-8{:03x}-{:04x}-{:012x}",
                hi >> 32,
                (hi >> 16) & 0xffff,
                hi & 0xfff,
                (lo >> 48) & 0xffff,
                lo & 0xffff_ffff_ffff
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn ids_are_unique_and_increasing_under_contention() {
        let generator = std::sync::Arc::new(IdGenerator::new("a"));
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let g = generator.clone();
                std::thread::spawn(move || (0..50_000).map(|_| g.next_u64()).collect::<Vec<_>>())
            })
            .collect();
        let mut all = HashSet::new();
        for h in handles {
            let ids = h.join().unwrap();
            assert!(ids.windows(2).all(|w| w[0] < w[1]));
            for id in ids {
                assert!(all.insert(id), "duplicate {id}");
            }
        }
    }

    #[test]
    fn nodes_differ_and_formats_render() {
        let (a, b) = (IdGenerator::new("a"), IdGenerator::new("b"));
        assert_ne!(a.node, b.node);
        assert_ne!(a.next_u64() & 0x3f_f000, b.next_u64() & 0x3f_f000);
        let now = crate::session::unix_ms();
        let hex = a.next(MessageIdFormat::Hex, "x", now);
        assert_eq!(hex.len(), 16);
        assert!(hex.chars().all(|c| c.is_ascii_hexdigit()));
        assert!(a
            .next(MessageIdFormat::Decimal, "x", now)
            .chars()
            .all(|c| c.is_ascii_digit()));
        let uuid = a.next(MessageIdFormat::Uuid, "x", now);
        assert_eq!(uuid.len(), 36);
        assert_eq!(&uuid[14..15], "8");
        assert_eq!(a.next(MessageIdFormat::Passthrough, "SMSC-42", now), "SMSC-42");
    }
}
