//! The TOML configuration: parsed strictly (unknown keys are errors), then validated as a whole
//! so that every problem is reported at once, each with its key (`clients[1].window: …`).
//!
//! [`Config::from_toml`] is the one entry point; `smpp-proxy check` prints its problems and the
//! proxy refuses to start with any. What comes out is typed and checked: durations, socket
//! addresses, CIDR lists, references between sections (a client's `route` names a group, a
//! group's members name upstreams or groups).

mod clients;
mod cluster;
#[cfg(test)]
mod documented;
mod limits;
mod parse;
mod raw;
mod routing;
mod tls;
mod upstreams;
mod values;

pub use clients::{ClientConfig, Credential};
pub use cluster::{redacted, ClusterConfig, RedisConfig, StoreDown, UpstreamTps};
pub use limits::LimitsConfig;
pub use raw::{
    BindMode, ConcatFailover, Failback, MessageIdFormat, MultipartReceipts, StoreBackend, Strategy, DEFAULT_OUTBOX_MAX,
};
pub use routing::{GroupConfig, RouteConfig, RoutingConfig, MAX_MEMBERS};
pub use tls::TlsListen;
pub use upstreams::UpstreamConfig;
pub use values::{parse_duration, parse_size, Cidr};

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Everything wrong with a configuration, one line per problem.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", .0.join("\n"))]
pub struct ConfigError(pub Vec<String>);

impl ConfigError {
    /// Every problem on its own line, after the file's name (as compilers do).
    pub fn in_file(&self, file: &Path) -> String {
        let file = file.display();
        self.0
            .iter()
            .map(|problem| format!("{file}: {problem}"))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it was read from (what a reload reads again), if any.
    pub file: Option<PathBuf>,
    /// This node's id; part of every message id the proxy hands out.
    pub node_id: String,
    /// Where SMPP clients connect.
    pub listen: SocketAddr,
    /// Where SMPP clients connect over TLS, with what certificate, if anywhere.
    pub listen_tls: Option<TlsListen>,
    /// Where the admin HTTP endpoint (`/metrics`, `/status`) listens, if anywhere.
    pub admin: Option<SocketAddr>,
    /// Who may use it.
    pub admin_access: AdminConfig,
    /// Where the message trail is appended (one JSON line per submit and receipt), if anywhere.
    pub log_messages: Option<PathBuf>,
    /// Where durable state lives.
    pub store_path: PathBuf,
    /// Which store holds correlations and held receipts.
    pub store_backend: StoreBackend,
    /// When the embedded store's writes reach the disk.
    pub store_sync: StoreSync,
    /// The shared store, with `backend = "redis"`.
    pub store_redis: Option<RedisConfig>,
    /// How the nodes of a cluster work together (with `backend = "redis"`).
    pub cluster: ClusterConfig,
    /// Settings for client sessions.
    pub client_sessions: ClientSessionConfig,
    /// Connection caps and failed-bind bans.
    pub limits: LimitsConfig,
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
    /// What is allowed but unwise (`check` prints them, `run` logs them): short passwords,
    /// accounts open to every address.
    pub warnings: Vec<String>,
}

/// `[admin]`: the admin endpoint's token and connection cap.
#[derive(Clone)]
pub struct AdminConfig {
    /// The bearer token actions (and account names) need, from `token_file`. Without it the
    /// endpoint must listen on loopback only.
    pub token: Option<String>,
    /// Connections open at once.
    pub max_connections: u32,
}

impl std::fmt::Debug for AdminConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminConfig")
            .field("token", &self.token.as_ref().map(|_| "***"))
            .field("max_connections", &self.max_connections)
            .finish()
    }
}

/// Most session threads: more than cores only adds switches between them.
const MAX_THREADS: usize = 256;

/// Shortest admin token accepted.
const MIN_TOKEN: usize = 16;

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
    /// A client that has read nothing of what the proxy sent for this long is closed.
    pub write_timeout: Duration,
    /// Threads that run client sessions, upstream sessions and accounts (0: one per core).
    pub threads: usize,
}

impl Config {
    /// Reads and validates a file. A file that cannot be read is one problem, naming the file
    /// (problems inside it name their keys; the caller names the file).
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError(vec![format!("cannot read it: {e}")]))?;
        let mut config = Config::from_toml(&text)?;
        config.file = Some(path.to_path_buf());
        Ok(config)
    }

    /// The admin endpoint's address and token as `path` gives them, even when the file has
    /// problems elsewhere: what `smpp-proxy reload` needs to ask a running proxy to read a
    /// file that will be refused (and to hear why).
    pub fn admin_of(path: &Path) -> (Option<SocketAddr>, Option<String>) {
        let table = std::fs::read_to_string(path)
            .ok()
            .and_then(|text| toml::from_str::<toml::Table>(&text).ok());
        let Some(table) = table else {
            return (None, None);
        };
        let addr = table
            .get("listen")
            .and_then(|l| l.get("admin"))
            .and_then(|a| a.as_str())
            .and_then(|a| a.parse().ok());
        let token = table
            .get("admin")
            .and_then(|a| a.get("token_file"))
            .and_then(|f| f.as_str())
            .and_then(|f| std::fs::read_to_string(f).ok())
            .map(|text| text.lines().next().unwrap_or_default().to_owned());
        (addr, token)
    }

    /// Parses and validates TOML text, reporting every problem found: unknown keys, values of
    /// the wrong type, missing keys, and what validation finds in the rest.
    pub fn from_toml(text: &str) -> Result<Config, ConfigError> {
        let mut table: toml::value::Table =
            toml::from_str(text).map_err(|e| ConfigError(vec![raw::describe_toml_error(&e, text)]))?;
        let mut problems = raw::take_unknown_keys(&mut table);
        let parsed = parse::deserialize(table);
        let reported: Vec<String> = parsed.problems.iter().map(|(k, _)| k.clone()).collect();
        problems.extend(parsed.problems.into_iter().map(|(k, what)| format!("{k}: {what}")));
        let Some(raw) = parsed.raw else {
            return Err(ConfigError(problems));
        };
        match validate(raw) {
            Ok(config) if problems.is_empty() => Ok(config),
            Ok(_) => Err(ConfigError(problems)),
            Err(ConfigError(more)) => {
                // A key already reported holds a stand-in: what validation says of it is noise.
                let fresh = more.into_iter().filter(|line| !about_any(line, &reported));
                problems.extend(fresh);
                Err(ConfigError(problems))
            }
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

/// `true` when problem `line` (`key: what`) is about one of `keys` or something inside it.
fn about_any(line: &str, keys: &[String]) -> bool {
    let key = line.split_once(": ").map_or(line, |(k, _)| k);
    keys.iter().any(|k| {
        key.strip_prefix(k.as_str())
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('.') || rest.starts_with('['))
    })
}

/// The problems found so far, each `key: what`.
struct Problems(Vec<String>);

/// When the embedded store's writes reach the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreSync {
    /// Every group commit is fsynced before its operations are answered: nothing answered is
    /// lost even to a power loss.
    Always,
    /// Every group commit is written to the operating system (a write-ahead file) before its
    /// operations are answered, and that file fsynced every `interval`: a killed process loses
    /// nothing, a power loss about `interval` of answered writes. (The database itself is made
    /// durable every ten intervals, at least 2 s, or 16 MiB of the file.)
    Periodic {
        /// `[store] sync_interval`.
        interval: Duration,
    },
}

fn store_sync(raw: &raw::RawStore, p: &mut Problems) -> StoreSync {
    match raw.sync {
        raw::SyncWhen::Always => StoreSync::Always,
        raw::SyncWhen::Periodic => {
            let interval = p.duration("store.sync_interval", &raw.sync_interval);
            if interval > Duration::from_secs(60) {
                p.add("store.sync_interval", "is over 60s: a power loss could lose that much");
            }
            StoreSync::Periodic { interval }
        }
    }
}

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

    fn size(&mut self, key: &str, text: &str) -> u64 {
        match parse_size(text) {
            Some(n) if n > 0 => n,
            _ => {
                self.add(
                    key,
                    format!("{text:?} is not a size like \"65536\", \"512KiB\", \"64MiB\""),
                );
                1
            }
        }
    }

    /// The secret of `{prefix}password`, `{prefix}password_file` or `{prefix}password_env`
    /// (exactly one of them; `others` names further keys that may stand in for all three).
    fn password(
        &mut self,
        prefix: &str,
        plain: Option<&String>,
        file: Option<&PathBuf>,
        env: Option<&String>,
        others: &[&str],
    ) -> Option<String> {
        let given = [plain.is_some(), file.is_some(), env.is_some()];
        let n = given.iter().filter(|&&g| g).count();
        let mut names = vec!["password", "password_file", "password_env"];
        names.extend_from_slice(others);
        if n > 1 {
            self.add(
                format!("{prefix}password"),
                format!("set only one of {}", names.join(", ")),
            );
            return None;
        }
        if let Some(text) = plain {
            return Some(text.clone());
        }
        if let Some(path) = file {
            return self.secret_file(&format!("{prefix}password_file"), path);
        }
        if let Some(var) = env {
            return match std::env::var(var) {
                Ok(value) => Some(value),
                Err(_) => {
                    self.add(format!("{prefix}password_env"), format!("the environment has no {var}"));
                    None
                }
            };
        }
        None
    }

    /// A secret kept in a file (its first line, without the line end); a file that cannot be
    /// read is a problem of `key`.
    fn secret_file(&mut self, key: &str, path: &Path) -> Option<String> {
        match std::fs::read_to_string(path) {
            Ok(text) => Some(text.lines().next().unwrap_or_default().to_owned()),
            Err(e) => {
                self.add(key, format!("{}: {e}", path.display()));
                None
            }
        }
    }

    fn positive(&mut self, key: &str, value: u32) {
        if value == 0 {
            self.add(key, "must be at least 1");
        }
    }

    fn address(&mut self, key: &str, text: &str, example: &str) -> Option<SocketAddr> {
        let parsed = text.parse::<SocketAddr>().ok();
        if parsed.is_none() {
            self.add(key, format!("{text:?} is not an address like {example:?}"));
        }
        parsed
    }
}

/// Checks the raw configuration section by section, each problem with its key.
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
    let listen = p
        .address("listen.smpp", &raw.listen.smpp, "127.0.0.1:2775")
        .unwrap_or(SocketAddr::from(([127, 0, 0, 1], 2775)));
    let admin = raw
        .listen
        .admin
        .as_ref()
        .and_then(|a| p.address("listen.admin", a, "127.0.0.1:9090"));
    let admin_access = admin_access(&raw.admin, admin, &mut p);
    let log_messages = raw.log.messages.clone();
    if let Some(path) = &log_messages {
        let dir = path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        if !dir.is_dir() {
            p.add("log.messages", format!("{}: no such directory", dir.display()));
        }
    }
    let client_sessions = sessions(&raw.sessions, &mut p);
    let limits = limits::limits(&raw.limits, &mut p);
    let (store_redis, cluster) = cluster::cluster(&raw.store, raw.cluster.as_ref(), &mut p);
    let (upstreams, upstream_names) = upstreams::upstreams(&raw.upstreams, &mut p);
    let mut groups = routing::groups(&raw.groups, &upstream_names, &mut p);
    // Without a group called "default", "default" means every upstream.
    groups
        .entry("default".to_owned())
        .or_insert_with(|| GroupConfig::load_balance("default", upstreams.iter().map(|u| u.name.clone()).collect()));
    let receipt_ttl = p.duration("receipt_ttl", &raw.receipt_ttl);
    let mut warnings = Vec::new();
    let clients = clients::clients(&raw.clients, &groups, receipt_ttl, &mut p, &mut warnings);
    // A budget smaller than one PDU would refuse that PDU forever.
    let max_pdu = client_sessions.max_pdu_len as u64;
    if limits.early_receipts_max_bytes < max_pdu {
        p.add(
            "limits.early_receipts_max_bytes",
            format!("is less than sessions.max_pdu_len ({max_pdu}): a receipt that long could never be held"),
        );
    }
    for (n, c) in raw.clients.iter().enumerate() {
        if clients.get(&c.system_id).is_some_and(|c| c.outbox_max_bytes < max_pdu) {
            p.add(
                format!("clients[{n}].outbox_max_bytes"),
                format!("is less than sessions.max_pdu_len ({max_pdu}): an MO that long could never be held"),
            );
        }
    }
    let client_keys = raw
        .clients
        .iter()
        .enumerate()
        .map(|(n, c)| (c.system_id.clone(), n))
        .collect();
    let listen_tls = tls::listen(&raw.listen, &clients, &client_keys, &mut p);
    let client_names = clients.keys().map(String::as_str).collect();
    let routes = routing::routes(&raw.routes, &groups, &client_names, &mut p);
    let routing = routing::routing(&raw.routing, &mut p);
    let early_receipt_wait = p.duration("early_receipt_wait", &raw.early_receipt_wait);
    let correlation_ttl = p.duration("correlation_ttl", &raw.correlation_ttl);
    let store_sync = store_sync(&raw.store, &mut p);
    let mo_routes = mo_routes(&raw.mo_routes, &clients, &mut p);
    if let Some(to) = &raw.unmatched_receipts_to {
        if !clients.contains_key(to) {
            p.add("unmatched_receipts_to", format!("no client has system_id {to:?}"));
        }
    }
    if !p.0.is_empty() {
        return Err(ConfigError(p.0));
    }
    Ok(Config {
        file: None,
        node_id: raw.node_id,
        listen,
        listen_tls,
        admin,
        admin_access,
        log_messages,
        store_path: raw.store.path,
        store_backend: raw.store.backend,
        store_sync,
        store_redis,
        cluster,
        client_sessions,
        limits,
        clients,
        upstreams,
        groups,
        routes,
        routing,
        mo_routes,
        unmatched_receipts_to: raw.unmatched_receipts_to,
        early_receipt_wait,
        correlation_ttl,
        warnings,
    })
}

/// `[admin]`: a token of some length, and one at all unless the endpoint is loopback-only
/// (what Redis's protected mode insists on).
fn admin_access(raw: &raw::RawAdmin, listen: Option<SocketAddr>, p: &mut Problems) -> AdminConfig {
    p.positive("admin.max_connections", raw.max_connections);
    let token = raw
        .token_file
        .as_ref()
        .and_then(|path| p.secret_file("admin.token_file", path));
    if let Some(token) = &token {
        if token.len() < MIN_TOKEN {
            p.add(
                "admin.token_file",
                format!(
                    "the token has {} characters; use at least {MIN_TOKEN} (e.g. `openssl rand -hex 16`)",
                    token.len()
                ),
            );
        }
    }
    if let Some(addr) = listen {
        if token.is_none() && raw.token_file.is_none() && !addr.ip().is_loopback() {
            p.add(
                "listen.admin",
                format!("{addr} is reachable from other hosts: set admin.token_file, or listen on 127.0.0.1"),
            );
        }
    }
    AdminConfig {
        token,
        max_connections: raw.max_connections,
    }
}

/// `[sessions]`: timers and limits of every client session.
fn sessions(s: &raw::RawSessions, p: &mut Problems) -> ClientSessionConfig {
    if !(1024..=16 * 1024 * 1024).contains(&s.max_pdu_len) {
        p.add("sessions.max_pdu_len", "must be between 1024 and 16777216");
    }
    if s.threads > MAX_THREADS {
        p.add(
            "sessions.threads",
            format!("must be at most {MAX_THREADS} (0: one per core)"),
        );
    }
    ClientSessionConfig {
        bind_timeout: p.duration("sessions.bind_timeout", &s.bind_timeout),
        enquire_link: p.duration("sessions.enquire_link", &s.enquire_link),
        response_timeout: p.duration("sessions.response_timeout", &s.response_timeout),
        max_pdu_len: s.max_pdu_len,
        queue_timeout: p.duration("sessions.queue_timeout", &s.queue_timeout),
        write_timeout: p.duration("sessions.write_timeout", &s.write_timeout),
        threads: s.threads,
    }
}

/// `[[mo_routes]]`: each prefix once, each to a client that exists.
fn mo_routes(
    raw: &[raw::RawMoRoute],
    clients: &BTreeMap<String, ClientConfig>,
    p: &mut Problems,
) -> Vec<(String, String)> {
    let mut mo_routes: Vec<(String, String)> = Vec::new();
    for (n, r) in raw.iter().enumerate() {
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
    mo_routes
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
            [sessions]
            threads = 1000
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
            "sessions.threads:",
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
        assert_eq!(err.0.len(), 11, "{err}");
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
    fn an_admin_endpoint_off_loopback_needs_a_token_of_some_length() {
        let open = MINIMAL.replace("[listen]\n", "[listen]\nadmin = \"0.0.0.0:9090\"\n");
        let err = Config::from_toml(&open).unwrap_err();
        assert!(err.0[0].starts_with("listen.admin: 0.0.0.0:9090 is reachable"), "{err}");
        let local = MINIMAL.replace("[listen]\n", "[listen]\nadmin = \"127.0.0.1:9090\"\n");
        assert!(Config::from_toml(&local).unwrap().admin_access.token.is_none());
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("token");
        std::fs::write(&file, "short\n").unwrap();
        let with = format!("{open}\n[admin]\ntoken_file = \"{}\"\n", file.display());
        let err = Config::from_toml(&with).unwrap_err();
        assert_eq!(err.0.len(), 1, "{err}");
        assert!(
            err.0[0].starts_with("admin.token_file: the token has 5 characters"),
            "{err}"
        );
        std::fs::write(&file, "0123456789abcdef\n").unwrap();
        let c = Config::from_toml(&with).unwrap();
        assert_eq!(c.admin_access.token.as_deref(), Some("0123456789abcdef"));
        assert!(
            !format!("{c:?}").contains("0123456789abcdef"),
            "the token in Debug output"
        );
    }

    #[test]
    fn secrets_come_from_the_file_the_environment_or_a_hash_and_only_one_of_them() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pw");
        std::fs::write(&file, "fromfile\n").unwrap();
        std::env::set_var("SMPP_PROXY_TEST_UPSTREAM_PW", "fromenv");
        let text = MINIMAL
            .replace(
                "password = \"secret\"",
                &format!("password_file = \"{}\"", file.display()),
            )
            .replace("password = \"pw\"", "password_env = \"SMPP_PROXY_TEST_UPSTREAM_PW\"");
        let c = Config::from_toml(&text).unwrap();
        assert_eq!(c.clients["shop"].password, Credential::Plain("fromfile".into()));
        assert_eq!(c.upstreams[0].password, "fromenv");
        assert!(!format!("{c:?}").contains("fromfile"), "a password in Debug output");
        let hash = crate::guard::auth::hash_password(b"secret").unwrap();
        let hashed = MINIMAL.replace("password = \"secret\"", &format!("password_hash = \"{hash}\""));
        assert!(matches!(
            Config::from_toml(&hashed).unwrap().clients["shop"].password,
            Credential::Hash(_)
        ));

        let both = MINIMAL.replace("password = \"secret\"", "password = \"secret\"\npassword_env = \"X\"");
        let err = Config::from_toml(&both).unwrap_err();
        assert!(err.0[0].starts_with("clients[0].password: set only one of"), "{err}");
        let missing = MINIMAL
            .replace("password = \"secret\"", "password_env = \"SMPP_PROXY_TEST_NOT_SET\"")
            .replace("password = \"pw\"", "");
        let err = Config::from_toml(&missing).unwrap_err();
        assert_eq!(err.0.len(), 2, "{err}");
        assert!(err
            .0
            .iter()
            .any(|l| l == "clients[0].password_env: the environment has no SMPP_PROXY_TEST_NOT_SET"));
        assert!(err.0.iter().any(|l| l.starts_with("upstreams[0].password: missing")));
        let empty = MINIMAL.replace("password = \"secret\"", "password = \"\"");
        assert!(Config::from_toml(&empty).unwrap_err().0[0].contains("is empty"));
        let bad = MINIMAL.replace("password = \"secret\"", "password_hash = \"secret\"");
        assert!(Config::from_toml(&bad).unwrap_err().0[0].starts_with("clients[0].password_hash: not an argon2"));
    }

    #[test]
    fn short_passwords_and_open_accounts_are_warned_about() {
        let c = Config::from_toml(&MINIMAL.replace("\"secret\"", "\"abc\"")).unwrap();
        assert_eq!(
            c.warnings,
            [
                "clients[0].password: 3 characters: easy to guess (SMPP allows 8)",
                "clients[0].allow: not set: this account may bind from any address"
            ]
        );
        let c = Config::from_toml(&MINIMAL.replace(
            "password = \"secret\"",
            "password = \"secret\"\nallow = [\"10.0.0.0/8\"]",
        ))
        .unwrap();
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    }

    #[test]
    fn a_byte_budget_smaller_than_one_pdu_is_refused() {
        let text = MINIMAL.replace(
            "password = \"secret\"",
            "password = \"secret\"\noutbox_max_bytes = \"1KiB\"",
        ) + "[limits]\nearly_receipts_max_bytes = \"4KiB\"\n";
        let err = Config::from_toml(&text).unwrap_err();
        assert_eq!(err.0.len(), 2, "{err}");
        assert!(err.0[0].starts_with("limits.early_receipts_max_bytes: is less than sessions.max_pdu_len (65536)"));
        assert!(err.0[1].starts_with("clients[0].outbox_max_bytes: is less than"));
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
        assert_eq!(parse_size("64MiB"), Some(64 << 20));
        assert_eq!(parse_size("65536"), Some(65_536));
        assert_eq!(parse_size("2 GB"), Some(2_000_000_000));
        assert_eq!(parse_size("5 parsecs"), None);
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
