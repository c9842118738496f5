//! What the SMPP listener lets in: connection caps ([`ConnLimits`]), bind authentication in
//! the order that gives nothing away ([`auth::check`]) and bans for addresses that keep
//! failing it ([`AuthFailures`]). The listener and the client sessions apply them; the counts
//! go to `/status` and `/metrics`.

pub mod auth;
mod conns;

pub use auth::{AuthFailures, Denied};
pub use conns::{Admitted, ConnLimits, Refusal};

use crate::config::LimitsConfig;
use std::sync::Arc;

/// The listener's caps and the bans, shared by the listener and every client session.
#[derive(Debug)]
pub struct Guard {
    /// Connections open against their caps.
    pub conns: Arc<ConnLimits>,
    /// Failed binds per address.
    pub auth: AuthFailures,
    /// Connections to the TLS listener that never got as far as a bind.
    pub tls: TlsFailures,
}

/// Connections that failed at TLS before their first PDU, by why.
#[derive(Debug, Default)]
pub struct TlsFailures {
    /// Plaintext SMPP on the TLS listener.
    pub plaintext: std::sync::atomic::AtomicU64,
    /// A TLS handshake on the plaintext listener.
    pub tls_on_plaintext: std::sync::atomic::AtomicU64,
    /// The handshake failed (no common version or cipher, a certificate the client refused, a
    /// client certificate no account's CA issued) or did not finish by `bind_timeout`.
    pub handshake: std::sync::atomic::AtomicU64,
}

impl TlsFailures {
    /// Each count with its label.
    pub fn counts(&self) -> [(&'static str, u64); 3] {
        use std::sync::atomic::Ordering::Relaxed;
        [
            ("plaintext", self.plaintext.load(Relaxed)),
            ("tls_on_plaintext", self.tls_on_plaintext.load(Relaxed)),
            ("handshake", self.handshake.load(Relaxed)),
        ]
    }
}

impl Guard {
    /// From `[limits]`.
    pub fn new(config: &LimitsConfig) -> Guard {
        Guard {
            conns: Arc::new(ConnLimits::new(config)),
            auth: AuthFailures::new(config),
            tls: TlsFailures::default(),
        }
    }
}
