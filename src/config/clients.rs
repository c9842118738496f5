//! `[[clients]]`: the accounts ESMEs bind with, and what each may do.

use super::raw::RawClient;
use super::{Cidr, MessageIdFormat, MultipartReceipts, Problems};
use std::collections::BTreeMap;
use std::time::Duration;

/// One client account.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// The account's system_id.
    pub system_id: String,
    /// Its password (never logged).
    pub password: String,
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
    /// Receipts and MO held for it at most.
    pub outbox_max: usize,
    /// How long a receipt or MO waits for it before it is dropped.
    pub receipt_ttl: Duration,
    /// Which part receipts of a concatenated message it gets.
    pub multipart_receipts: MultipartReceipts,
}

/// Validates every `[[clients]]`: credentials within SMPP's lengths, networks, a route that
/// names a group, limits of at least one. `receipt_ttl` is the global one, for clients that set
/// none.
pub(super) fn clients(
    raw: &[RawClient],
    groups: &BTreeMap<String, super::GroupConfig>,
    receipt_ttl: Duration,
    p: &mut Problems,
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
        if c.password.len() > 8 {
            p.add(key("password"), "at most 8 characters (SMPP 3.4 C-Octet String of 9)");
        }
        let mut allow = Vec::new();
        for (m, net) in c.allow.iter().enumerate() {
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
        let receipt_ttl = match &c.receipt_ttl {
            Some(text) => p.duration(&key("receipt_ttl"), text),
            None => receipt_ttl,
        };
        clients.insert(
            c.system_id.clone(),
            ClientConfig {
                system_id: c.system_id.clone(),
                password: c.password.clone(),
                allow,
                route: c.route.clone(),
                window: c.window,
                tps: c.tps,
                max_binds: c.max_binds,
                message_id_format: c.message_id_format,
                deliver_window: c.deliver_window,
                outbox_max: c.outbox_max,
                receipt_ttl,
                multipart_receipts: c.multipart_receipts,
            },
        );
    }
    if clients.is_empty() {
        p.add("clients", "at least one [[clients]] is needed");
    }
    clients
}
