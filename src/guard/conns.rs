//! Connection caps (`[limits]`): how many connections the listener keeps at once, overall, per
//! source address and not yet bound. A connection over a cap is closed at once, before it costs
//! a task or a read buffer, and counted by reason.
//!
//! Each admitted connection carries an [`Admitted`] guard for its whole life: dropping it gives
//! its places back, so no path can leak one.

use crate::config::LimitsConfig;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Why a connection was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// `max_connections` reached.
    Total,
    /// `max_connections_per_ip` reached for its address.
    PerIp,
    /// `max_unbound` reached.
    Unbound,
    /// Its address is banned for failed binds.
    Banned,
}

impl Refusal {
    /// Every reason, in the order metrics list them.
    pub const ALL: [Refusal; 4] = [Refusal::Total, Refusal::PerIp, Refusal::Unbound, Refusal::Banned];

    /// The metrics label.
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::Total => "max_connections",
            Refusal::PerIp => "max_connections_per_ip",
            Refusal::Unbound => "max_unbound",
            Refusal::Banned => "banned",
        }
    }
}

/// The listener's connection counts against its caps.
#[derive(Debug)]
pub struct ConnLimits {
    max_total: u32,
    max_per_ip: u32,
    max_unbound: u32,
    total: AtomicU32,
    unbound: AtomicU32,
    per_ip: Mutex<HashMap<IpAddr, u32>>,
    refused: [AtomicU64; 4],
}

impl ConnLimits {
    /// Caps from `[limits]`.
    pub fn new(config: &LimitsConfig) -> ConnLimits {
        ConnLimits {
            max_total: config.max_connections,
            max_per_ip: config.max_connections_per_ip,
            max_unbound: config.max_unbound,
            total: AtomicU32::new(0),
            unbound: AtomicU32::new(0),
            per_ip: Mutex::new(HashMap::new()),
            refused: Default::default(),
        }
    }

    /// Takes a place for a new, unbound connection from `ip`, or says which cap is full.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<Admitted, Refusal> {
        if !take(&self.total, self.max_total) {
            return Err(self.refuse(Refusal::Total));
        }
        if !take(&self.unbound, self.max_unbound) {
            self.total.fetch_sub(1, Ordering::AcqRel);
            return Err(self.refuse(Refusal::Unbound));
        }
        {
            let mut per_ip = self.per_ip.lock().unwrap_or_else(|p| p.into_inner());
            let n = per_ip.entry(ip).or_insert(0);
            if *n < self.max_per_ip {
                *n += 1;
                return Ok(Admitted {
                    limits: self.clone(),
                    ip,
                    unbound: true,
                });
            }
        }
        self.total.fetch_sub(1, Ordering::AcqRel);
        self.unbound.fetch_sub(1, Ordering::AcqRel);
        Err(self.refuse(Refusal::PerIp))
    }

    /// Counts a refusal (also for those decided elsewhere, such as bans).
    pub fn refuse(&self, why: Refusal) -> Refusal {
        self.refused[why as usize].fetch_add(1, Ordering::Relaxed);
        why
    }

    /// Connections refused so far, by reason (in [`Refusal::ALL`]'s order).
    pub fn refused(&self) -> [u64; 4] {
        std::array::from_fn(|i| self.refused[i].load(Ordering::Relaxed))
    }

    /// Connections open now, and how many of them have not bound.
    pub fn open(&self) -> (u32, u32) {
        (self.total.load(Ordering::Relaxed), self.unbound.load(Ordering::Relaxed))
    }
}

/// Adds one to `count` unless it is at `max`.
fn take(count: &AtomicU32, max: u32) -> bool {
    count
        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < max).then_some(n + 1))
        .is_ok()
}

/// One connection's places in [`ConnLimits`], given back when dropped.
#[derive(Debug)]
pub struct Admitted {
    limits: Arc<ConnLimits>,
    ip: IpAddr,
    unbound: bool,
}

impl Admitted {
    /// The connection bound: it no longer counts against `max_unbound`.
    pub fn bound(&mut self) {
        if std::mem::take(&mut self.unbound) {
            self.limits.unbound.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        self.bound();
        self.limits.total.fetch_sub(1, Ordering::AcqRel);
        let mut per_ip = self.limits.per_ip.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = per_ip.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                per_ip.remove(&self.ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(total: u32, per_ip: u32, unbound: u32) -> Arc<ConnLimits> {
        Arc::new(ConnLimits {
            max_total: total,
            max_per_ip: per_ip,
            max_unbound: unbound,
            total: AtomicU32::new(0),
            unbound: AtomicU32::new(0),
            per_ip: Mutex::new(HashMap::new()),
            refused: Default::default(),
        })
    }

    #[test]
    fn each_cap_refuses_and_places_come_back_when_dropped() {
        let l = limits(3, 2, 2);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let mut first = l.admit(a).unwrap();
        let _second = l.admit(a).unwrap();
        // Two unbound already.
        assert_eq!(l.admit(b).unwrap_err(), Refusal::Unbound);
        first.bound();
        // Unbound has room again, but `a` has its two.
        assert_eq!(l.admit(a).unwrap_err(), Refusal::PerIp);
        let _third = l.admit(b).unwrap();
        assert_eq!(l.admit(b).unwrap_err(), Refusal::Total);
        drop(first);
        assert_eq!(l.open(), (2, 2));
        let _fourth = l.admit(b).unwrap_err();
        assert_eq!(l.refused(), [1, 1, 2, 0]);
        assert!(!l.per_ip.lock().unwrap().is_empty());
    }

    #[test]
    fn an_address_with_nothing_open_is_forgotten() {
        let l = limits(10, 10, 10);
        let a: IpAddr = "::1".parse().unwrap();
        let conns: Vec<Admitted> = (0..5).map(|_| l.admit(a).unwrap()).collect();
        drop(conns);
        assert_eq!(l.open(), (0, 0));
        assert!(l.per_ip.lock().unwrap().is_empty());
    }
}
