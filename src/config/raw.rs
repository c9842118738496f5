//! The TOML as written: serde structs with defaults, rejecting unknown keys. `mod.rs` validates
//! these into `Config`.

use crate::receipt::id::IdMatch;
use serde::Deserialize;
use std::path::PathBuf;

#[derive(Debug, Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    pub(super) node_id: String,
    pub(super) listen: RawListen,
    #[serde(default)]
    pub(super) store: RawStore,
    #[serde(default)]
    pub(super) cluster: Option<RawCluster>,
    #[serde(default)]
    pub(super) sessions: RawSessions,
    #[serde(default)]
    pub(super) limits: RawLimits,
    #[serde(default)]
    pub(super) admin: RawAdmin,
    #[serde(default)]
    pub(super) log: RawLog,
    #[serde(default)]
    pub(super) clients: Vec<RawClient>,
    #[serde(default)]
    pub(super) upstreams: Vec<RawUpstream>,
    #[serde(default)]
    pub(super) groups: Vec<RawGroup>,
    #[serde(default)]
    pub(super) routes: Vec<RawRoute>,
    #[serde(default)]
    pub(super) routing: RawRouting,
    #[serde(default)]
    pub(super) mo_routes: Vec<RawMoRoute>,
    #[serde(default)]
    pub(super) unmatched_receipts_to: Option<String>,
    #[serde(default = "default_early_receipt_wait")]
    pub(super) early_receipt_wait: String,
    #[serde(default = "default_correlation_ttl")]
    pub(super) correlation_ttl: String,
    #[serde(default = "default_correlation_ttl")]
    pub(super) receipt_ttl: String,
}

fn default_correlation_ttl() -> String {
    "72h".into()
}

fn default_early_receipt_wait() -> String {
    "60s".into()
}

#[derive(Debug, Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
#[serde(deny_unknown_fields)]
pub(super) struct RawListen {
    pub(super) smpp: String,
    #[serde(default)]
    pub(super) admin: Option<String>,
    #[serde(default)]
    pub(super) smpp_tls: Option<String>,
    #[serde(default)]
    pub(super) cert_file: Option<PathBuf>,
    #[serde(default)]
    pub(super) key_file: Option<PathBuf>,
}

#[derive(Debug, Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
#[serde(deny_unknown_fields)]
pub(super) struct RawStore {
    #[serde(default = "default_store_path")]
    pub(super) path: PathBuf,
    #[serde(default)]
    pub(super) backend: StoreBackend,
    #[serde(default)]
    pub(super) url: Option<String>,
    #[serde(default)]
    pub(super) password_file: Option<PathBuf>,
    #[serde(default)]
    pub(super) tls_ca_file: Option<PathBuf>,
    #[serde(default = "default_key_prefix")]
    pub(super) key_prefix: String,
    #[serde(default)]
    pub(super) redis_cluster: bool,
    #[serde(default)]
    pub(super) sync: SyncWhen,
    #[serde(default = "default_sync_interval")]
    pub(super) sync_interval: String,
}

fn default_sync_interval() -> String {
    "200ms".into()
}

/// When the embedded store's writes reach the disk (`[store] sync`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub(super) enum SyncWhen {
    /// Before every answer (an fsync per group commit).
    Always,
    /// Handed to the operating system before every answer, on disk every `sync_interval`.
    #[default]
    Periodic,
}

impl Default for RawStore {
    fn default() -> Self {
        RawStore {
            path: default_store_path(),
            backend: StoreBackend::default(),
            url: None,
            password_file: None,
            tls_ca_file: None,
            key_prefix: default_key_prefix(),
            redis_cluster: false,
            sync: SyncWhen::default(),
            sync_interval: default_sync_interval(),
        }
    }
}

fn default_key_prefix() -> String {
    "smpp-proxy:".into()
}

/// `[cluster]`: how the nodes sharing a Redis work together.
#[derive(Debug, Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawCluster {
    pub(super) heartbeat: String,
    pub(super) poll: String,
    pub(super) claim_idle: String,
    pub(super) dedup_window: String,
    pub(super) store_timeout: String,
    pub(super) store_down: StoreDown,
    pub(super) upstream_tps: UpstreamTps,
}

impl Default for RawCluster {
    fn default() -> Self {
        RawCluster {
            heartbeat: "1s".into(),
            poll: "1s".into(),
            claim_idle: "60s".into(),
            dedup_window: "10m".into(),
            store_timeout: "10s".into(),
            store_down: StoreDown::default(),
            upstream_tps: UpstreamTps::default(),
        }
    }
}

/// What new submits get while the shared store is unreachable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum StoreDown {
    /// ESME_RTHROTTLED: clients slow down and try again.
    #[default]
    Throttle,
    /// ESME_RSYSERR.
    Syserr,
}

/// How the nodes share an upstream's `tps`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum UpstreamTps {
    /// One token bucket in Redis; each node takes a few tokens at a time as it needs them.
    #[default]
    Shared,
    /// Each node takes `tps` divided by the nodes alive.
    Split,
}

/// Where correlations and held receipts live.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum StoreBackend {
    /// The embedded crash-safe store (redb) under `path`.
    #[default]
    Embedded,
    /// Memory only: lost on restart (tests, throwaway setups).
    Memory,
    /// A Redis (or Valkey) server or cluster at `url`, shared by every node of a cluster.
    Redis,
}

fn default_store_path() -> PathBuf {
    PathBuf::from("var/smpp-proxy")
}

#[derive(Debug, Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawSessions {
    pub(super) bind_timeout: String,
    pub(super) enquire_link: String,
    pub(super) response_timeout: String,
    pub(super) max_pdu_len: usize,
    pub(super) queue_timeout: String,
    pub(super) write_timeout: String,
    pub(super) threads: usize,
}

impl Default for RawSessions {
    fn default() -> Self {
        RawSessions {
            bind_timeout: "10s".into(),
            enquire_link: "30s".into(),
            response_timeout: "30s".into(),
            max_pdu_len: crate::pdu::codec::DEFAULT_MAX_LEN,
            queue_timeout: "5s".into(),
            write_timeout: "30s".into(),
            threads: 0,
        }
    }
}

/// `[limits]`: what one address, or everyone together, may hold of the proxy.
#[derive(Debug, Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawLimits {
    pub(super) max_connections: u32,
    pub(super) max_connections_per_ip: u32,
    pub(super) max_unbound: u32,
    pub(super) max_auth_failures: u32,
    pub(super) auth_window: String,
    pub(super) auth_ban: String,
    pub(super) early_receipts_max: u32,
    pub(super) early_receipts_max_bytes: String,
    pub(super) unanswered_delivers: u32,
}

impl Default for RawLimits {
    fn default() -> Self {
        RawLimits {
            max_connections: 4096,
            max_connections_per_ip: 256,
            max_unbound: 512,
            max_auth_failures: 10,
            auth_window: "60s".into(),
            auth_ban: "30s".into(),
            early_receipts_max: 10_000,
            early_receipts_max_bytes: "16MiB".into(),
            unanswered_delivers: 1000,
        }
    }
}

/// `[log]`: what is written besides the log on stderr.
#[derive(Debug, Deserialize, Default)]
#[cfg_attr(test, derive(serde::Serialize))]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawLog {
    pub(super) messages: Option<PathBuf>,
}

/// `[admin]`: who may use the admin endpoint.
#[derive(Debug, Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawAdmin {
    pub(super) token_file: Option<PathBuf>,
    pub(super) max_connections: u32,
}

impl Default for RawAdmin {
    fn default() -> Self {
        RawAdmin {
            token_file: None,
            max_connections: 16,
        }
    }
}

/// The form of the message ids a client gets in submit_sm_resp and receipts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum MessageIdFormat {
    /// 16 lower-case hex digits.
    #[default]
    Hex,
    /// Up to 20 decimal digits, for clients that store ids as numbers.
    Decimal,
    /// A UUID.
    Uuid,
    /// The upstream's own id, unchanged.
    Passthrough,
}

#[derive(Debug, Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
#[serde(deny_unknown_fields)]
pub(super) struct RawClient {
    pub(super) system_id: String,
    #[serde(default)]
    pub(super) password: Option<String>,
    #[serde(default)]
    pub(super) password_file: Option<PathBuf>,
    #[serde(default)]
    pub(super) password_env: Option<String>,
    #[serde(default)]
    pub(super) password_hash: Option<String>,
    #[serde(default)]
    pub(super) allow: Option<Vec<String>>,
    #[serde(default = "default_route")]
    pub(super) route: String,
    #[serde(default = "default_client_window")]
    pub(super) window: u32,
    #[serde(default)]
    pub(super) tps: u32,
    #[serde(default = "default_max_binds")]
    pub(super) max_binds: u32,
    #[serde(default)]
    pub(super) message_id_format: MessageIdFormat,
    #[serde(default = "default_deliver_window")]
    pub(super) deliver_window: u32,
    #[serde(default = "default_outbox_max")]
    pub(super) outbox_max: usize,
    #[serde(default = "default_outbox_max_bytes")]
    pub(super) outbox_max_bytes: String,
    #[serde(default)]
    pub(super) receipt_ttl: Option<String>,
    #[serde(default)]
    pub(super) multipart_receipts: MultipartReceipts,
    #[serde(default = "default_redelivery_backoff")]
    pub(super) redelivery_backoff: String,
    #[serde(default = "default_redelivery_backoff_max")]
    pub(super) redelivery_backoff_max: String,
    #[serde(default = "default_redelivery_attempts")]
    pub(super) redelivery_attempts: u32,
    #[serde(default)]
    pub(super) tls_required: bool,
    #[serde(default)]
    pub(super) tls_client_ca: Option<PathBuf>,
}

fn default_redelivery_backoff() -> String {
    "1s".into()
}
fn default_redelivery_backoff_max() -> String {
    "5m".into()
}
fn default_redelivery_attempts() -> u32 {
    10
}

/// Which receipts of a concatenated message's parts a client gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum MultipartReceipts {
    /// One per part (each part has its own id).
    #[default]
    All,
    /// Only the first part's.
    First,
    /// Only the last part's.
    Last,
}

fn default_route() -> String {
    "default".into()
}
fn default_client_window() -> u32 {
    100
}
fn default_max_binds() -> u32 {
    8
}
/// As many receipts in flight to a bind as a client may have submits in flight (`window`):
/// with 10, a client taking 100 000 submits a second got its receipts at a fraction of that
/// and the outbox filled (issue 14); with 100 it stays at a few hundred entries.
fn default_deliver_window() -> u32 {
    100
}
fn default_outbox_max() -> usize {
    DEFAULT_OUTBOX_MAX
}

/// A client's `outbox_max` when it sets none; also the cap of a shared outbox a node holds
/// receipts in for a client its configuration does not name.
pub const DEFAULT_OUTBOX_MAX: usize = 100_000;
fn default_outbox_max_bytes() -> String {
    "64MiB".into()
}

/// How an upstream session binds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum BindMode {
    /// bind_transmitter: submits only.
    Transmitter,
    /// bind_receiver: receipts and MO only.
    Receiver,
    /// bind_transceiver: both.
    #[default]
    Transceiver,
    /// A transmitter and a receiver, two connections.
    Pair,
}

#[derive(Debug, Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
#[serde(deny_unknown_fields)]
pub(super) struct RawUpstream {
    pub(super) name: String,
    pub(super) address: String,
    pub(super) system_id: String,
    #[serde(default)]
    pub(super) password: Option<String>,
    #[serde(default)]
    pub(super) password_file: Option<PathBuf>,
    #[serde(default)]
    pub(super) password_env: Option<String>,
    #[serde(default)]
    pub(super) system_type: String,
    #[serde(default)]
    pub(super) bind: BindMode,
    #[serde(default = "one")]
    pub(super) sessions: u32,
    #[serde(default = "default_upstream_window")]
    pub(super) window: u32,
    #[serde(default)]
    pub(super) tps: u32,
    #[serde(default = "default_enquire_link")]
    pub(super) enquire_link: String,
    #[serde(default = "default_response_timeout")]
    pub(super) response_timeout: String,
    #[serde(default)]
    pub(super) id_match: IdMatch,
    #[serde(default)]
    pub(super) tls: bool,
    #[serde(default)]
    pub(super) ca_file: Option<PathBuf>,
    #[serde(default)]
    pub(super) server_name: Option<String>,
    #[serde(default)]
    pub(super) cert_file: Option<PathBuf>,
    #[serde(default)]
    pub(super) key_file: Option<PathBuf>,
}

fn one() -> u32 {
    1
}
fn default_upstream_window() -> u32 {
    50
}
fn default_enquire_link() -> String {
    "30s".into()
}
fn default_response_timeout() -> String {
    "30s".into()
}

/// How a group's members share traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Strategy {
    /// All members at once, each by what it measurably delivers.
    #[default]
    LoadBalance,
    /// One at a time, in order.
    Failover,
    /// All members in turn, blind to how they perform (a baseline, and for SMSCs that insist).
    RoundRobin,
}

impl Strategy {
    /// As written in the configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            Strategy::LoadBalance => "load-balance",
            Strategy::Failover => "failover",
            Strategy::RoundRobin => "round-robin",
        }
    }
}

impl std::fmt::Display for Strategy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

/// Whether a failover group returns to a preferred member by itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Failback {
    /// Once the preferred member has been healthy for `failback_after`.
    #[default]
    Auto,
    /// Only when an operator asks (`smpp-proxy failback`).
    Manual,
}

/// What the remaining parts of a concatenated message do when their upstream is lost.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ConcatFailover {
    /// Go together to another upstream of the group.
    #[default]
    Reroute,
    /// Are refused (ESME_RSUBMITFAIL), so the client sends the whole message again.
    Reject,
}

#[derive(Debug, Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
#[serde(deny_unknown_fields)]
pub(super) struct RawGroup {
    pub(super) name: String,
    #[serde(default)]
    pub(super) strategy: Strategy,
    pub(super) members: Vec<String>,
    #[serde(default)]
    pub(super) max_share: std::collections::BTreeMap<String, f64>,
    #[serde(default = "default_slow_start")]
    pub(super) slow_start: String,
    #[serde(default)]
    pub(super) failback: Failback,
    #[serde(default = "default_failback_after")]
    pub(super) failback_after: String,
}

fn default_slow_start() -> String {
    "10s".into()
}
fn default_failback_after() -> String {
    "30s".into()
}

#[derive(Debug, Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
#[serde(deny_unknown_fields)]
pub(super) struct RawRoute {
    pub(super) group: String,
    #[serde(default)]
    pub(super) system_id: Option<String>,
    #[serde(default)]
    pub(super) destination_prefix: Option<String>,
    #[serde(default)]
    pub(super) source_addr: Option<String>,
    #[serde(default)]
    pub(super) service_type: Option<String>,
}

#[derive(Debug, Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
#[serde(deny_unknown_fields)]
pub(super) struct RawRouting {
    #[serde(default)]
    pub(super) concat_failover: ConcatFailover,
    #[serde(default = "default_concat_ttl")]
    pub(super) concat_ttl: String,
    #[serde(default = "default_eject_error_rate")]
    pub(super) eject_error_rate: f64,
    #[serde(default = "default_eject_for")]
    pub(super) eject_for: String,
}

impl Default for RawRouting {
    fn default() -> Self {
        RawRouting {
            concat_failover: ConcatFailover::default(),
            concat_ttl: default_concat_ttl(),
            eject_error_rate: default_eject_error_rate(),
            eject_for: default_eject_for(),
        }
    }
}

fn default_concat_ttl() -> String {
    "5m".into()
}
fn default_eject_error_rate() -> f64 {
    0.5
}
fn default_eject_for() -> String {
    "10s".into()
}

#[derive(Debug, Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
#[serde(deny_unknown_fields)]
pub(super) struct RawMoRoute {
    pub(super) destination_prefix: String,
    pub(super) client: String,
}

/// The keys each section accepts; `unknown_keys` reports all the others at once (serde alone
/// stops at the first).
pub(super) const SECTIONS: &[(&str, &[&str])] = &[
    (
        "",
        &[
            "node_id",
            "listen",
            "store",
            "cluster",
            "sessions",
            "limits",
            "admin",
            "log",
            "clients",
            "upstreams",
            "groups",
            "routes",
            "routing",
            "mo_routes",
            "unmatched_receipts_to",
            "early_receipt_wait",
            "correlation_ttl",
            "receipt_ttl",
        ],
    ),
    ("listen", &["smpp", "admin", "smpp_tls", "cert_file", "key_file"]),
    (
        "store",
        &[
            "path",
            "backend",
            "url",
            "password_file",
            "tls_ca_file",
            "key_prefix",
            "redis_cluster",
            "sync",
            "sync_interval",
        ],
    ),
    (
        "cluster",
        &[
            "heartbeat",
            "poll",
            "claim_idle",
            "dedup_window",
            "store_timeout",
            "store_down",
            "upstream_tps",
        ],
    ),
    (
        "sessions",
        &[
            "bind_timeout",
            "enquire_link",
            "response_timeout",
            "max_pdu_len",
            "queue_timeout",
            "write_timeout",
            "threads",
        ],
    ),
    (
        "limits",
        &[
            "max_connections",
            "max_connections_per_ip",
            "max_unbound",
            "max_auth_failures",
            "auth_window",
            "auth_ban",
            "early_receipts_max",
            "early_receipts_max_bytes",
            "unanswered_delivers",
        ],
    ),
    ("admin", &["token_file", "max_connections"]),
    ("log", &["messages"]),
    (
        "clients",
        &[
            "system_id",
            "password",
            "password_file",
            "password_env",
            "password_hash",
            "allow",
            "route",
            "window",
            "tps",
            "max_binds",
            "message_id_format",
            "deliver_window",
            "outbox_max",
            "outbox_max_bytes",
            "receipt_ttl",
            "multipart_receipts",
            "redelivery_backoff",
            "redelivery_backoff_max",
            "redelivery_attempts",
            "tls_required",
            "tls_client_ca",
        ],
    ),
    (
        "upstreams",
        &[
            "name",
            "address",
            "system_id",
            "password",
            "password_file",
            "password_env",
            "system_type",
            "bind",
            "sessions",
            "window",
            "tps",
            "enquire_link",
            "response_timeout",
            "id_match",
            "tls",
            "ca_file",
            "server_name",
            "cert_file",
            "key_file",
        ],
    ),
    (
        "groups",
        &[
            "name",
            "strategy",
            "members",
            "max_share",
            "slow_start",
            "failback",
            "failback_after",
        ],
    ),
    (
        "routes",
        &[
            "group",
            "system_id",
            "destination_prefix",
            "source_addr",
            "service_type",
        ],
    ),
    (
        "routing",
        &["concat_failover", "concat_ttl", "eject_error_rate", "eject_for"],
    ),
    ("mo_routes", &["destination_prefix", "client"]),
];

fn known(section: &str) -> &'static [&'static str] {
    SECTIONS
        .iter()
        .find(|(name, _)| *name == section)
        .map_or(&[], |(_, keys)| keys)
}

/// Removes every key the configuration does not define from `top`, and says which, as
/// `section[n].key: unknown key`.
pub(super) fn take_unknown_keys(top: &mut toml::value::Table) -> Vec<String> {
    let mut problems = Vec::new();
    let mut check = |path: String, section: &str, table: &mut toml::value::Table| {
        table.retain(|key, _| {
            let ok = known(section).contains(&key);
            if !ok {
                let at = if path.is_empty() {
                    key.to_string()
                } else {
                    format!("{path}.{key}")
                };
                problems.push(format!(
                    "{at}: unknown key (expected one of: {})",
                    known(section).join(", ")
                ));
            }
            ok
        });
    };
    check(String::new(), "", top);
    for (section, value) in top.iter_mut() {
        match value {
            toml::Value::Table(t) => check(section.clone(), section, t),
            toml::Value::Array(items) => {
                for (n, item) in items.iter_mut().enumerate() {
                    if let toml::Value::Table(t) = item {
                        check(format!("{section}[{n}]"), section, t);
                    }
                }
            }
            _ => {}
        }
    }
    problems
}

/// A TOML error as one line: the message with its line number.
pub(super) fn describe_toml_error(e: &toml::de::Error, text: &str) -> String {
    let message = e.message().replace('\n', " ");
    match e.span() {
        Some(span) => {
            let line = text[..span.start.min(text.len())].matches('\n').count() + 1;
            format!("line {line}: {message}")
        }
        None => message,
    }
}
