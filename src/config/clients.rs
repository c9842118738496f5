//! `[[clients]]`: the accounts ESMEs bind with, and what each may do.

use super::raw::RawClient;
use super::{Cidr, MessageIdFormat, MultipartReceipts, Problems};
use std::collections::BTreeMap;
use std::time::Duration;

/// How a client account's password is checked.
#[derive(Clone, PartialEq, Eq)]
pub enum Credential {
    /// The password itself (from `password`, `password_file` or `password_env`).
    Plain(String),
    /// An argon2 hash of it in PHC form (`password_hash`; `smpp-proxy hash-password` makes one).
    Hash(String),
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Credential::Plain(_) => "Plain(***)",
            Credential::Hash(_) => "Hash(***)",
        })
    }
}

/// One client account.
#[derive(Debug, Clone, PartialEq)]
pub struct ClientConfig {
    /// The account's system_id.
    pub system_id: String,
    /// Its password, or its hash (never logged).
    pub password: Credential,
    /// Networks it may connect from.
    pub allow: Vec<Cidr>,
    /// The routing group its messages go to.
    pub route: String,
    /// Outstanding submits per bind.
    pub window: u32,
    /// Submits per second across its binds; 0 = unlimited.
    pub tps: u32,
    /// Concurrent binds.
    pub max_binds: u32,
    /// The form of the message ids it gets.
    pub message_id_format: MessageIdFormat,
    /// Outstanding deliver_sm per receiver-capable bind.
    pub deliver_window: u32,
    /// Receipts and MO held for it at most…
    pub outbox_max: usize,
    /// …and their bytes at most.
    pub outbox_max_bytes: u64,
    /// How long a receipt or MO waits for it before it is dropped.
    pub receipt_ttl: Duration,
    /// Which part receipts of a concatenated message it gets.
    pub multipart_receipts: MultipartReceipts,
    /// The wait before a delivery the client refused goes again; doubled at each refusal.
    pub redelivery_backoff: Duration,
    /// The longest such wait.
    pub redelivery_backoff_max: Duration,
    /// Refusals that are not "try later" (generic_nack, ESME_RSYSERR, ...) a delivery gets
    /// before it is dropped.
    pub redelivery_attempts: u32,
    /// Binds only over TLS (`tls_required`, or implied by `tls_client_ca`).
    pub tls_required: bool,
    /// Binds only with a client certificate issued by this CA (PEM).
    pub tls_client_ca: Option<std::path::PathBuf>,
}

/// Plain passwords shorter than this get a warning.
const SHORT_PASSWORD: usize = 6;

/// Validates every `[[clients]]`: credentials within SMPP's lengths, networks, a route that
/// names a group, limits of at least one. `receipt_ttl` is the global one, for clients that set
/// none.
pub(super) fn clients(
    raw: &[RawClient],
    groups: &BTreeMap<String, super::GroupConfig>,
    receipt_ttl: Duration,
    p: &mut Problems,
    warnings: &mut Vec<String>,
) -> BTreeMap<String, ClientConfig> {
    let mut clients = BTreeMap::new();
    for (n, c) in raw.iter().enumerate() {
        let key = |field: &str| format!("clients[{n}].{field}");
        if c.system_id.is_empty() || c.system_id.len() > 15 {
            p.add(key("system_id"), "must be 1 to 15 characters");
        }
        if clients.contains_key(&c.system_id) {
            p.add(key("system_id"), format!("{:?} is used twice", c.system_id));
        }
        let prefix = format!("clients[{n}].");
        let plain = p.password(
            &prefix,
            c.password.as_ref(),
            c.password_file.as_ref(),
            c.password_env.as_ref(),
            &["password_hash"],
        );
        let password = match (plain, &c.password_hash) {
            (Some(_), Some(_)) => {
                p.add(
                    key("password"),
                    "set only one of password, password_file, password_env, password_hash",
                );
                Credential::Plain(String::new())
            }
            (Some(plain), None) => {
                if plain.is_empty() {
                    p.add(key("password"), "is empty: every client needs a password");
                } else if plain.len() > 8 {
                    p.add(key("password"), "at most 8 characters (SMPP 3.4 C-Octet String of 9)");
                } else if plain.len() < SHORT_PASSWORD {
                    warnings.push(format!(
                        "{}: {} characters: easy to guess (SMPP allows 8)",
                        key("password"),
                        plain.len()
                    ));
                }
                Credential::Plain(plain)
            }
            (None, Some(hash)) => {
                if argon2::PasswordHash::new(hash).is_err() {
                    p.add(
                        key("password_hash"),
                        "not an argon2 hash in PHC form (make one with `smpp-proxy hash-password`)",
                    );
                }
                Credential::Hash(hash.clone())
            }
            (None, None) => {
                if c.password.is_none() && c.password_file.is_none() && c.password_env.is_none() {
                    p.add(
                        key("password"),
                        "missing: set password, password_file, password_env or password_hash",
                    );
                }
                Credential::Plain(String::new())
            }
        };
        let everywhere = ["0.0.0.0/0".to_owned(), "::/0".to_owned()];
        let nets = match &c.allow {
            Some(nets) => nets.as_slice(),
            None => {
                warnings.push(format!(
                    "{}: not set: this account may bind from any address",
                    key("allow")
                ));
                &everywhere[..]
            }
        };
        let mut allow = Vec::new();
        for (m, net) in nets.iter().enumerate() {
            match Cidr::parse(net) {
                Some(cidr) => allow.push(cidr),
                None => p.add(
                    format!("clients[{n}].allow[{m}]"),
                    format!("{net:?} is not an address or network like \"10.0.0.0/8\""),
                ),
            }
        }
        if !groups.contains_key(&c.route) {
            p.add(key("route"), format!("no group is called {:?}", c.route));
        }
        p.positive(&key("window"), c.window);
        p.positive(&key("max_binds"), c.max_binds);
        p.positive(&key("deliver_window"), c.deliver_window);
        p.positive(&key("redelivery_attempts"), c.redelivery_attempts);
        let redelivery_backoff = p.duration(&key("redelivery_backoff"), &c.redelivery_backoff);
        let redelivery_backoff_max = p.duration(&key("redelivery_backoff_max"), &c.redelivery_backoff_max);
        if redelivery_backoff_max < redelivery_backoff {
            p.add(key("redelivery_backoff_max"), "is shorter than redelivery_backoff");
        }
        let receipt_ttl = match &c.receipt_ttl {
            Some(text) => p.duration(&key("receipt_ttl"), text),
            None => receipt_ttl,
        };
        clients.insert(
            c.system_id.clone(),
            ClientConfig {
                system_id: c.system_id.clone(),
                password,
                allow,
                route: c.route.clone(),
                window: c.window,
                tps: c.tps,
                max_binds: c.max_binds,
                message_id_format: c.message_id_format,
                deliver_window: c.deliver_window,
                outbox_max: c.outbox_max,
                outbox_max_bytes: p.size(&key("outbox_max_bytes"), &c.outbox_max_bytes),
                receipt_ttl,
                multipart_receipts: c.multipart_receipts,
                redelivery_backoff,
                redelivery_backoff_max,
                redelivery_attempts: c.redelivery_attempts,
                tls_required: c.tls_required || c.tls_client_ca.is_some(),
                tls_client_ca: c.tls_client_ca.clone(),
            },
        );
    }
    if clients.is_empty() {
        p.add("clients", "at least one [[clients]] is needed");
    }
    clients
}
