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
}

impl Guard {
    /// From `[limits]`.
    pub fn new(config: &LimitsConfig) -> Guard {
        Guard {
            conns: Arc::new(ConnLimits::new(config)),
            auth: AuthFailures::new(config),
        }
    }
}
