//! `[limits]`: connection caps, and how failed binds are answered over time.

use super::raw::RawLimits;
use super::Problems;
use std::time::Duration;

/// What one address, or everyone together, may hold of the proxy.
#[derive(Debug, Clone, PartialEq)]
pub struct LimitsConfig {
    /// SMPP connections open at once, bound or not.
    pub max_connections: u32,
    /// SMPP connections open at once from one address.
    pub max_connections_per_ip: u32,
    /// SMPP connections open at once that have not bound yet.
    pub max_unbound: u32,
    /// Failed binds from one address within `auth_window` before it is refused for a while.
    pub max_auth_failures: u32,
    /// The window failed binds are counted over.
    pub auth_window: Duration,
    /// How long an address is refused the first time; each further ban doubles it (up to 64x).
    pub auth_ban: Duration,
    /// Receipts held waiting for their submit's correlation, at most…
    pub early_receipts_max: u32,
    /// …and their bytes.
    pub early_receipts_max_bytes: u64,
    /// deliver_sm / data_sm from an SMSC in the proxy's hands and not yet answered, per
    /// upstream session; beyond, ESME_RX_T_APPN at once.
    pub unanswered_delivers: u32,
}

/// Checks `[limits]`: every cap at least one.
pub(super) fn limits(raw: &RawLimits, p: &mut Problems) -> LimitsConfig {
    for (key, value) in [
        ("limits.max_connections", raw.max_connections),
        ("limits.max_connections_per_ip", raw.max_connections_per_ip),
        ("limits.max_unbound", raw.max_unbound),
        ("limits.max_auth_failures", raw.max_auth_failures),
        ("limits.early_receipts_max", raw.early_receipts_max),
        ("limits.unanswered_delivers", raw.unanswered_delivers),
    ] {
        p.positive(key, value);
    }
    if raw.max_connections_per_ip > raw.max_connections {
        p.add(
            "limits.max_connections_per_ip",
            format!(
                "{} is more than max_connections ({})",
                raw.max_connections_per_ip, raw.max_connections
            ),
        );
    }
    LimitsConfig {
        max_connections: raw.max_connections,
        max_connections_per_ip: raw.max_connections_per_ip,
        max_unbound: raw.max_unbound,
        max_auth_failures: raw.max_auth_failures,
        auth_window: p.duration("limits.auth_window", &raw.auth_window),
        auth_ban: p.duration("limits.auth_ban", &raw.auth_ban),
        early_receipts_max: raw.early_receipts_max,
        early_receipts_max_bytes: p.size("limits.early_receipts_max_bytes", &raw.early_receipts_max_bytes),
        unanswered_delivers: raw.unanswered_delivers,
    }
}
