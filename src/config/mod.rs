//! The TOML configuration: parsed strictly (unknown keys are errors), then validated as a whole
//! so that every problem is reported at once, each with its key (`clients[1].window: …`).
//!
//! [`Config::from_toml`] is the one entry point; `smpp-proxy check` prints its problems and the
//! proxy refuses to start with any. What comes out is typed and checked: durations, socket
//! addresses, CIDR lists, references between sections (a client's `route` names a group, a
//! group's members name upstreams or groups).

mod raw;
mod routing;

pub use raw::{BindMode, ConcatFailover, Failback, MessageIdFormat, MultipartReceipts, StoreBackend, Strategy};
pub use routing::{GroupConfig, RouteConfig, RoutingConfig, MAX_MEMBERS};

use crate::receipt::id::IdMatch;
use serde::Deserialize;
use std::collections::{BTreeMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

/// Everything wrong with a configuration, one line per problem.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", .0.join("\n"))]
pub struct ConfigError(pub Vec<String>);

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// This node's id; part of every message id the proxy hands out.
    pub node_id: String,
    /// Where SMPP clients connect.
    pub listen: SocketAddr,
    /// Where the admin HTTP endpoint (`/metrics`, `/status`) listens, if anywhere.
    pub admin: Option<SocketAddr>,
    /// Where durable state lives.
    pub store_path: PathBuf,
    /// Which store holds correlations and held receipts.
    pub store_backend: StoreBackend,
    /// Settings for client sessions.
    pub client_sessions: ClientSessionConfig,
    /// Client accounts by system_id.
    pub clients: BTreeMap<String, ClientConfig>,
    /// Upstream SMSCs, in config order.
    pub upstreams: Vec<UpstreamConfig>,
    /// Routing groups by name.
    pub groups: BTreeMap<String, GroupConfig>,
    /// Rules choosing a group per message, before the client's own `route`.
    pub routes: Vec<RouteConfig>,
    /// Settings shared by every group.
    pub routing: RoutingConfig,
    /// MO routes: destination prefix → client system_id; `""` is the default.
    pub mo_routes: Vec<(String, String)>,
    /// Where receipts that match no submission go (a client system_id), if anywhere.
    pub unmatched_receipts_to: Option<String>,
    /// How long a receipt that came before its correlation is held before it is unmatched.
    pub early_receipt_wait: Duration,
    /// How long a correlation without a final receipt is kept.
    pub correlation_ttl: Duration,
}

/// Timers and limits that apply to every client session.
#[derive(Debug, Clone)]
pub struct ClientSessionConfig {
    /// A connection that has not bound by then is closed.
    pub bind_timeout: Duration,
    /// An idle bound session gets an enquire_link this often.
    pub enquire_link: Duration,
    /// How long the proxy waits for a response from the client.
    pub response_timeout: Duration,
    /// Largest PDU accepted.
    pub max_pdu_len: usize,
    /// How long a request within the client's window may wait for upstream window.
    pub queue_timeout: Duration,
}

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

/// One upstream SMSC.
#[derive(Debug, Clone)]
pub struct UpstreamConfig {
    /// Its name in groups, logs and correlations.
    pub name: String,
    /// `host:port`.
    pub address: String,
    /// Credentials for the bind.
    pub system_id: String,
    /// Credentials for the bind.
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
}

/// An IPv4 or IPv6 network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// Parses `10.0.0.0/8`, `::1/128`, or a bare address (a single host).
    pub fn parse(text: &str) -> Option<Cidr> {
        let (addr, prefix) = match text.split_once('/') {
            Some((a, p)) => (a.parse::<IpAddr>().ok()?, p.parse::<u8>().ok()?),
            None => {
                let a = text.parse::<IpAddr>().ok()?;
                (a, if a.is_ipv4() { 32 } else { 128 })
            }
        };
        let max = if addr.is_ipv4() { 32 } else { 128 };
        (prefix <= max).then_some(Cidr { addr, prefix })
    }

    /// `true` when `ip` is inside the network (IPv4-mapped IPv6 addresses count as IPv4).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(self.prefix)).unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX.checked_shl(128 - u32::from(self.prefix)).unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

/// Parses `500ms`, `30s`, `2m`, `72h`, `1d`.
pub fn parse_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit())?;
    let (number, unit) = text.split_at(split);
    let n: u64 = number.parse().ok()?;
    Some(match unit {
        "ms" => Duration::from_millis(n),
        "s" => Duration::from_secs(n),
        "m" => Duration::from_secs(n.checked_mul(60)?),
        "h" => Duration::from_secs(n.checked_mul(3600)?),
        "d" => Duration::from_secs(n.checked_mul(86_400)?),
        _ => return None,
    })
}

impl Config {
    /// Reads and validates a file.
    pub fn load(path: &std::path::Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError(vec![format!("{}: {e}", path.display())]))?;
        Config::from_toml(&text)
    }

    /// Parses and validates TOML text, reporting every problem found.
    pub fn from_toml(text: &str) -> Result<Config, ConfigError> {
        let mut table: toml::value::Table =
            toml::from_str(text).map_err(|e| ConfigError(vec![raw::describe_toml_error(&e, text)]))?;
        // Unknown keys are reported together with everything else that is wrong.
        let unknown = raw::take_unknown_keys(&mut table);
        let raw = raw::RawConfig::deserialize(toml::Value::Table(table)).map_err(|e| {
            let mut problems = unknown.clone();
            problems.push(e.message().replace('\n', " "));
            ConfigError(problems)
        })?;
        match (validate(raw), unknown.is_empty()) {
            (Ok(config), true) => Ok(config),
            (Ok(_), false) => Err(ConfigError(unknown)),
            (Err(ConfigError(more)), _) => Err(ConfigError(unknown.into_iter().chain(more).collect())),
        }
    }

    /// The upstream called `name`.
    pub fn upstream(&self, name: &str) -> Option<&UpstreamConfig> {
        self.upstreams.iter().find(|u| u.name == name)
    }

    /// The client that MO for `destination` goes to: longest matching prefix, `""` as default.
    pub fn mo_client(&self, destination: &[u8]) -> Option<&str> {
        self.mo_routes
            .iter()
            .filter(|(prefix, _)| destination.starts_with(prefix.as_bytes()))
            .max_by_key(|(prefix, _)| prefix.len())
            .map(|(_, client)| client.as_str())
    }
}

struct Problems(Vec<String>);

impl Problems {
    fn add(&mut self, key: impl std::fmt::Display, what: impl std::fmt::Display) {
        self.0.push(format!("{key}: {what}"));
    }

    fn duration(&mut self, key: &str, text: &str) -> Duration {
        match parse_duration(text) {
            Some(d) if !d.is_zero() => d,
            _ => {
                self.add(
                    key,
                    format!("{text:?} is not a duration like \"500ms\", \"30s\", \"2m\", \"72h\""),
                );
                Duration::from_secs(1)
            }
        }
    }

    fn positive(&mut self, key: &str, value: u32) {
        if value == 0 {
            self.add(key, "must be at least 1");
        }
    }
}

fn validate(raw: raw::RawConfig) -> Result<Config, ConfigError> {
    let mut p = Problems(Vec::new());
    if raw.node_id.is_empty()
        || !raw
            .node_id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        p.add("node_id", "must be non-empty letters, digits, '-' or '_'");
    }
    let listen = raw.listen.smpp.parse::<SocketAddr>().unwrap_or_else(|_| {
        p.add(
            "listen.smpp",
            format!("{:?} is not an address like \"127.0.0.1:2775\"", raw.listen.smpp),
        );
        SocketAddr::from(([127, 0, 0, 1], 2775))
    });
    let admin = raw.listen.admin.as_ref().and_then(|a| match a.parse::<SocketAddr>() {
        Ok(addr) => Some(addr),
        Err(_) => {
            p.add(
                "listen.admin",
                format!("{a:?} is not an address like \"127.0.0.1:9090\""),
            );
            None
        }
    });
    let s = &raw.sessions;
    let client_sessions = ClientSessionConfig {
        bind_timeout: p.duration("sessions.bind_timeout", &s.bind_timeout),
        enquire_link: p.duration("sessions.enquire_link", &s.enquire_link),
        response_timeout: p.duration("sessions.response_timeout", &s.response_timeout),
        max_pdu_len: s.max_pdu_len,
        queue_timeout: p.duration("sessions.queue_timeout", &s.queue_timeout),
    };
    if !(1024..=16 * 1024 * 1024).contains(&s.max_pdu_len) {
        p.add("sessions.max_pdu_len", "must be between 1024 and 16777216");
    }

    let mut upstreams = Vec::new();
    let mut upstream_names = HashSet::new();
    for (n, u) in raw.upstreams.iter().enumerate() {
        let key = |field: &str| format!("upstreams[{n}].{field}");
        if u.name.is_empty() {
            p.add(key("name"), "must not be empty");
        } else if !upstream_names.insert(u.name.clone()) {
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
            password: u.password.clone(),
            system_type: u.system_type.clone(),
            bind: u.bind,
            sessions: u.sessions,
            window: u.window,
            tps: u.tps,
            enquire_link: p.duration(&key("enquire_link"), &u.enquire_link),
            response_timeout: p.duration(&key("response_timeout"), &u.response_timeout),
            id_match: u.id_match,
        });
    }
    if upstreams.is_empty() {
        p.add("upstreams", "at least one [[upstreams]] is needed");
    }

    let mut groups = routing::groups(&raw.groups, &upstream_names, &mut p);
    // Without a group called "default", "default" means every upstream.
    groups
        .entry("default".to_owned())
        .or_insert_with(|| GroupConfig::load_balance("default", upstreams.iter().map(|u| u.name.clone()).collect()));

    let receipt_ttl = p.duration("receipt_ttl", &raw.receipt_ttl);
    let mut clients = BTreeMap::new();
    for (n, c) in raw.clients.iter().enumerate() {
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
                multipart_receipts: c.multipart_receipts,
                receipt_ttl: match &c.receipt_ttl {
                    Some(text) => p.duration(&key("receipt_ttl"), text),
                    None => receipt_ttl,
                },
            },
        );
    }
    if clients.is_empty() {
        p.add("clients", "at least one [[clients]] is needed");
    }

    let client_names: HashSet<&str> = clients.keys().map(String::as_str).collect();
    let routes = routing::routes(&raw.routes, &groups, &client_names, &mut p);
    let routing = routing::routing(&raw.routing, &mut p);
    let early_receipt_wait = p.duration("early_receipt_wait", &raw.early_receipt_wait);
    let correlation_ttl = p.duration("correlation_ttl", &raw.correlation_ttl);
    let mut mo_routes = Vec::new();
    for (n, r) in raw.mo_routes.iter().enumerate() {
        if !clients.contains_key(&r.client) {
            p.add(
                format!("mo_routes[{n}].client"),
                format!("no client has system_id {:?}", r.client),
            );
        }
        if mo_routes.iter().any(|(prefix, _)| prefix == &r.destination_prefix) {
            p.add(
                format!("mo_routes[{n}].destination_prefix"),
                format!("{:?} is routed twice", r.destination_prefix),
            );
        }
        mo_routes.push((r.destination_prefix.clone(), r.client.clone()));
    }
    if let Some(to) = &raw.unmatched_receipts_to {
        if !clients.contains_key(to) {
            p.add("unmatched_receipts_to", format!("no client has system_id {to:?}"));
        }
    }

    if !p.0.is_empty() {
        return Err(ConfigError(p.0));
    }
    Ok(Config {
        node_id: raw.node_id,
        listen,
        admin,
        store_path: raw.store.path,
        store_backend: raw.store.backend,
        client_sessions,
        clients,
        upstreams,
        groups,
        routes,
        routing,
        mo_routes,
        unmatched_receipts_to: raw.unmatched_receipts_to,
        early_receipt_wait,
        correlation_ttl,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(super) const MINIMAL: &str = r#"
        node_id = "a"
        [listen]
        smpp = "127.0.0.1:2775"
        [[clients]]
        system_id = "shop"
        password = "secret"
        [[upstreams]]
        name = "smsc-a"
        address = "127.0.0.1:2776"
        system_id = "proxy"
        password = "pw"
    "#;

    #[test]
    fn defaults_fill_a_minimal_file() {
        let c = Config::from_toml(MINIMAL).unwrap();
        let shop = &c.clients["shop"];
        assert_eq!(
            (shop.window, shop.tps, shop.max_binds, shop.route.as_str()),
            (100, 0, 8, "default")
        );
        assert_eq!(shop.message_id_format, MessageIdFormat::Hex);
        assert!(shop.allow.iter().any(|n| n.contains("127.0.0.1".parse().unwrap())));
        let up = &c.upstreams[0];
        assert_eq!((up.sessions, up.window, up.bind), (1, 50, BindMode::Transceiver));
        assert_eq!(up.enquire_link, Duration::from_secs(30));
        assert_eq!(c.groups["default"].members, ["smsc-a"]);
    }

    #[test]
    fn every_problem_is_listed_with_its_key() {
        let text = r#"
            node_id = ""
            [listen]
            smpp = "nowhere"
            [[clients]]
            system_id = "shop"
            password = "far-too-long"
            allow = ["10.0.0.0/33"]
            route = "missing"
            window = 0
            [[upstreams]]
            name = "a"
            address = "localhost"
            system_id = "p"
            password = "p"
            enquire_link = "soon"
            [[groups]]
            name = "g"
            members = ["a", "b"]
            [[mo_routes]]
            destination_prefix = "44"
            client = "nobody"
        "#;
        let err = Config::from_toml(text).unwrap_err();
        for key in [
            "node_id:",
            "listen.smpp:",
            "clients[0].password:",
            "clients[0].allow[0]:",
            "clients[0].route:",
            "clients[0].window:",
            "upstreams[0].address:",
            "upstreams[0].enquire_link:",
            "groups[0].members[1]:",
            "mo_routes[0].client:",
        ] {
            assert!(
                err.0.iter().any(|line| line.starts_with(key)),
                "{key} missing from {err}"
            );
        }
        assert_eq!(err.0.len(), 10, "{err}");
    }

    #[test]
    fn unknown_keys_are_errors_with_their_place() {
        let text = MINIMAL
            .replace("password = \"pw\"", "password = \"pw\"\ncolour = 1")
            .replace("[listen]", "speed = 3\n[listen]");
        let err = Config::from_toml(&text).unwrap_err();
        assert!(
            err.0.iter().any(|l| l.starts_with("upstreams[0].colour: unknown key")),
            "{err}"
        );
        assert!(err.0.iter().any(|l| l.starts_with("speed: unknown key")), "{err}");
        assert_eq!(err.0.len(), 2);
        // Unknown keys and other problems come in one report.
        let text = text.replace("\"127.0.0.1:2775\"", "\"nowhere\"");
        assert_eq!(Config::from_toml(&text).unwrap_err().0.len(), 3);
    }

    #[test]
    fn cidr_and_durations() {
        let net = Cidr::parse("10.1.0.0/16").unwrap();
        assert!(net.contains("10.1.200.3".parse().unwrap()));
        assert!(!net.contains("10.2.0.1".parse().unwrap()));
        assert!(net.contains("::ffff:10.1.0.9".parse().unwrap()));
        assert!(Cidr::parse("0.0.0.0/0").unwrap().contains("8.8.8.8".parse().unwrap()));
        assert!(Cidr::parse("::1").unwrap().contains("::1".parse().unwrap()));
        assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_duration("72h"), Some(Duration::from_secs(72 * 3600)));
        assert_eq!(parse_duration("5"), None);
    }

    #[test]
    fn mo_routes_longest_prefix_wins_and_empty_is_default() {
        let text = format!(
            "{MINIMAL}\n[[clients]]\nsystem_id = \"bank\"\npassword = \"x\"\n[[mo_routes]]\ndestination_prefix = \"44\"\nclient = \"shop\"\n[[mo_routes]]\ndestination_prefix = \"4477\"\nclient = \"bank\"\n[[mo_routes]]\ndestination_prefix = \"\"\nclient = \"shop\"\n"
        );
        let c = Config::from_toml(&text).unwrap();
        assert_eq!(c.mo_client(b"447700900"), Some("bank"));
        assert_eq!(c.mo_client(b"4420"), Some("shop"));
        assert_eq!(c.mo_client(b"1555"), Some("shop"));
    }
}
