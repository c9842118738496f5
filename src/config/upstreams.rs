//! `[[upstreams]]`: the SMSCs the proxy binds to, and how.

use super::raw::RawUpstream;
use super::{BindMode, Problems};
use crate::receipt::id::IdMatch;
use std::collections::HashSet;
use std::time::Duration;

/// One upstream SMSC.
#[derive(Debug, Clone, PartialEq)]
pub struct UpstreamConfig {
    /// Its name in groups, logs and correlations.
    pub name: String,
    /// `host:port`.
    pub address: String,
    /// Credentials for the bind.
    pub system_id: String,
    /// Credentials for the bind (from `password`, `password_file` or `password_env`).
    pub password: String,
    /// `system_type` of the bind.
    pub system_type: String,
    /// Bind mode.
    pub bind: BindMode,
    /// Configured sessions (each a bind, or a transmitter + receiver pair).
    pub sessions: u32,
    /// Outstanding requests per session.
    pub window: u32,
    /// Requests per second across its sessions; 0 = unlimited.
    pub tps: u32,
    /// enquire_link interval on an idle session.
    pub enquire_link: Duration,
    /// How long a request may wait for its response.
    pub response_timeout: Duration,
    /// How receipt ids are matched to submit_sm_resp ids.
    pub id_match: IdMatch,
    /// TLS to it (`tls = true`): whom to trust, the name to expect, the proxy's certificate.
    pub tls: Option<crate::tls::client::ClientFiles>,
}

/// Validates every `[[upstreams]]`: unique names, `host:port`, SMPP's lengths, at least one
/// session and a window. Gives them in config order, with the set of their names.
pub(super) fn upstreams(raw: &[RawUpstream], p: &mut Problems) -> (Vec<UpstreamConfig>, HashSet<String>) {
    let mut upstreams = Vec::new();
    let mut names = HashSet::new();
    for (n, u) in raw.iter().enumerate() {
        let key = |field: &str| format!("upstreams[{n}].{field}");
        let prefix = format!("upstreams[{n}].");
        let password = p.password(
            &prefix,
            u.password.as_ref(),
            u.password_file.as_ref(),
            u.password_env.as_ref(),
            &[],
        );
        if password.is_none() && u.password.is_none() && u.password_file.is_none() && u.password_env.is_none() {
            p.add(key("password"), "missing: set password, password_file or password_env");
        }
        let password = password.unwrap_or_default();
        if u.name.is_empty() {
            p.add(key("name"), "must not be empty");
        } else if !names.insert(u.name.clone()) {
            p.add(key("name"), format!("{:?} is used twice", u.name));
        }
        if u.address
            .rsplit_once(':')
            .and_then(|(_, port)| port.parse::<u16>().ok())
            .is_none()
        {
            p.add(key("address"), format!("{:?} is not host:port", u.address));
        }
        if u.system_id.len() > 15 {
            p.add(
                key("system_id"),
                "at most 15 characters (SMPP 3.4 C-Octet String of 16)",
            );
        }
        p.positive(&key("sessions"), u.sessions);
        p.positive(&key("window"), u.window);
        upstreams.push(UpstreamConfig {
            name: u.name.clone(),
            address: u.address.clone(),
            system_id: u.system_id.clone(),
            password,
            system_type: u.system_type.clone(),
            bind: u.bind,
            sessions: u.sessions,
            window: u.window,
            tps: u.tps,
            enquire_link: p.duration(&key("enquire_link"), &u.enquire_link),
            response_timeout: p.duration(&key("response_timeout"), &u.response_timeout),
            id_match: u.id_match,
            tls: super::tls::upstream(u, n, p),
        });
    }
    if upstreams.is_empty() {
        p.add("upstreams", "at least one [[upstreams]] is needed");
    }
    (upstreams, names)
}
