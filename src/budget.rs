//! Memory held on the SMSC's behalf, bounded in bytes as well as in count: an outbox of 60 KB
//! MO costs what its bytes cost, not what its entry count suggests.
//!
//! A [`Budget`] counts what is held; each thing held carries a [`Charge`] that gives its share
//! back when dropped, wherever it is dropped (delivered, expired, refused, a task ending), so
//! the count cannot drift.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Items and bytes held, against their caps.
#[derive(Debug)]
pub struct Budget {
    max_items: u64,
    /// A reload may change it.
    max_bytes: AtomicU64,
    items: AtomicU64,
    bytes: AtomicU64,
}

impl Budget {
    /// A budget of `max_items` things and `max_bytes` bytes.
    pub fn new(max_items: u64, max_bytes: u64) -> Arc<Budget> {
        Arc::new(Budget {
            max_items,
            max_bytes: AtomicU64::new(max_bytes),
            items: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
        })
    }

    /// One more thing of `bytes`, if both caps have room for it.
    pub fn try_charge(self: &Arc<Self>, bytes: u64) -> Option<Charge> {
        let fits = |cap: u64, add: u64| move |held: u64| held.checked_add(add).filter(|&n| n <= cap);
        self.items
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, fits(self.max_items, 1))
            .ok()?;
        if self
            .bytes
            .fetch_update(
                Ordering::AcqRel,
                Ordering::Acquire,
                fits(self.max_bytes.load(Ordering::Relaxed), bytes),
            )
            .is_err()
        {
            self.items.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        Some(Charge {
            budget: self.clone(),
            bytes,
        })
    }

    /// One more thing of `bytes` whatever the caps (what is already in custody and must be
    /// held anyway, such as entries read back from the store).
    pub fn charge(self: &Arc<Self>, bytes: u64) -> Charge {
        self.items.fetch_add(1, Ordering::AcqRel);
        self.bytes.fetch_add(bytes, Ordering::AcqRel);
        Charge {
            budget: self.clone(),
            bytes,
        }
    }

    /// A new byte cap from now on (what is held stays held).
    pub fn set_max_bytes(&self, max_bytes: u64) {
        self.max_bytes.store(max_bytes, Ordering::Relaxed);
    }

    /// Things and bytes held now.
    pub fn held(&self) -> (u64, u64) {
        (self.items.load(Ordering::Relaxed), self.bytes.load(Ordering::Relaxed))
    }
}

/// One thing's share of a [`Budget`], given back when dropped.
#[derive(Debug)]
pub struct Charge {
    budget: Arc<Budget>,
    bytes: u64,
}

impl Drop for Charge {
    fn drop(&mut self) {
        self.budget.items.fetch_sub(1, Ordering::AcqRel);
        self.budget.bytes.fetch_sub(self.bytes, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_caps_hold_and_drops_give_back() {
        let b = Budget::new(3, 100);
        let a = b.try_charge(60).unwrap();
        assert!(b.try_charge(41).is_none(), "bytes");
        assert_eq!(b.held(), (1, 60), "a refusal holds nothing");
        let c = b.try_charge(40).unwrap();
        let d = b.try_charge(0).unwrap();
        assert!(b.try_charge(0).is_none(), "items");
        drop((a, c));
        assert_eq!(b.held(), (1, 0));
        let forced = b.charge(500);
        assert_eq!(b.held(), (2, 500));
        drop((d, forced));
        assert_eq!(b.held(), (0, 0));
    }
}
