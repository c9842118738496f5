//! `[store]` with `backend = "redis"`, and `[cluster]`: where the shared state of a cluster of
//! nodes lives and how the nodes work together. The same file serves every node but for
//! `node_id` and the listen addresses.

use super::raw::{RawCluster, RawStore, StoreBackend};
use super::Problems;
use std::time::Duration;

pub use super::raw::{StoreDown, UpstreamTps};

/// Where the shared store is and how to log in. Its `Debug` never shows the password.
#[derive(Clone, PartialEq, Eq)]
pub struct RedisConfig {
    /// `redis://host:port/db` or `rediss://` (TLS); user and password may be in it.
    pub url: String,
    /// The password, from `password_file` (it replaces one in the URL).
    pub password: Option<String>,
    /// The certificate authority (PEM) a `rediss://` server's certificate must come from,
    /// from `tls_ca_file` (without it: the system's).
    pub tls_ca: Option<Vec<u8>>,
    /// Put before every key, so that several proxies (or other tenants) can share a Redis.
    pub key_prefix: String,
    /// A Redis Cluster: `url` is one of its nodes, the others are found from it.
    pub cluster: bool,
}

impl std::fmt::Debug for RedisConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisConfig")
            .field("url", &redacted(&self.url))
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field("tls_ca", &self.tls_ca.as_ref().map(|c| c.len()))
            .field("key_prefix", &self.key_prefix)
            .field("cluster", &self.cluster)
            .finish()
    }
}

/// `url` with any password in it replaced by `***`, for logs.
pub fn redacted(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            let user = userinfo.split_once(':').map_or("", |(u, _)| u);
            format!("{}{user}:***{}", &url[..scheme + 3], &url[at..])
        }
        _ => url.to_owned(),
    }
}

/// How the nodes of a cluster work together.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterConfig {
    /// How often a node says it is alive; it counts as gone after five of these without.
    pub heartbeat: Duration,
    /// How often a node with binds of a client looks for its receipts without being told.
    pub poll: Duration,
    /// Entries a node fetched and has not delivered for this long are taken over by another
    /// (a node that died is taken over at once, once its heartbeat has stopped).
    pub claim_idle: Duration,
    /// How long a receipt is remembered, so a copy the SMSC sends again to another node is not
    /// delivered twice.
    pub dedup_window: Duration,
    /// How long a write waits for the store to come back before its request fails.
    pub store_timeout: Duration,
    /// What new submits get while the store is unreachable.
    pub store_down: StoreDown,
    /// How the nodes share an upstream's `tps`.
    pub upstream_tps: UpstreamTps,
}

impl ClusterConfig {
    /// How long a node's heartbeat lasts: five beats.
    pub fn heartbeat_ttl(&self) -> Duration {
        self.heartbeat * 5
    }
}

/// Validates `[store]`'s Redis keys and `[cluster]`.
pub(super) fn cluster(
    store: &RawStore,
    cluster: Option<&RawCluster>,
    p: &mut Problems,
) -> (Option<RedisConfig>, ClusterConfig) {
    let redis = store.backend == StoreBackend::Redis;
    let only = |p: &mut Problems, key: &str| p.add(key, "only with [store] backend = \"redis\"");
    if !redis {
        for (key, set) in [
            ("store.url", store.url.is_some()),
            ("store.password_file", store.password_file.is_some()),
            ("store.tls_ca_file", store.tls_ca_file.is_some()),
            ("store.redis_cluster", store.redis_cluster),
            ("cluster", cluster.is_some()),
        ] {
            if set {
                only(p, key);
            }
        }
    }
    let defaults = RawCluster::default();
    let c = cluster.unwrap_or(&defaults);
    let config = ClusterConfig {
        heartbeat: p.duration("cluster.heartbeat", &c.heartbeat),
        poll: p.duration("cluster.poll", &c.poll),
        claim_idle: p.duration("cluster.claim_idle", &c.claim_idle),
        dedup_window: p.duration("cluster.dedup_window", &c.dedup_window),
        store_timeout: p.duration("cluster.store_timeout", &c.store_timeout),
        store_down: c.store_down,
        upstream_tps: c.upstream_tps,
    };
    if !redis {
        return (None, config);
    }
    let url = match &store.url {
        Some(url) if url.starts_with("redis://") || url.starts_with("rediss://") => url.clone(),
        Some(url) => {
            p.add(
                "store.url",
                format!("{:?} is not a redis:// or rediss:// URL", redacted(url)),
            );
            String::new()
        }
        None => {
            p.add(
                "store.url",
                "needed with backend = \"redis\" (like \"redis://127.0.0.1:6379/0\")",
            );
            String::new()
        }
    };
    let password = store
        .password_file
        .as_ref()
        .and_then(|path| p.secret_file("store.password_file", path));
    let tls_ca = store.tls_ca_file.as_ref().and_then(|path| {
        if !url.starts_with("rediss://") {
            p.add("store.tls_ca_file", "only with a rediss:// url");
        }
        match std::fs::read(path) {
            Ok(pem) => Some(pem),
            Err(e) => {
                p.add("store.tls_ca_file", format!("{}: {e}", path.display()));
                None
            }
        }
    });
    if store.key_prefix.contains(['{', '}']) {
        p.add(
            "store.key_prefix",
            "no { or } (they would change the hash tags that keep a client's or an upstream's keys in one Redis Cluster slot)",
        );
    }
    let redis = RedisConfig {
        url,
        password,
        tls_ca,
        key_prefix: store.key_prefix.clone(),
        cluster: store.redis_cluster,
    };
    (Some(redis), config)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    #[test]
    fn passwords_never_show() {
        assert_eq!(redacted("redis://u:secret@h:6379/0"), "redis://u:***@h:6379/0");
        assert_eq!(redacted("rediss://:secret@h:6379"), "rediss://:***@h:6379");
        assert_eq!(redacted("redis://h:6379"), "redis://h:6379");
        let c = RedisConfig {
            url: "redis://:pw@h".into(),
            password: Some("pw".into()),
            tls_ca: None,
            key_prefix: "p:".into(),
            cluster: false,
        };
        assert!(!format!("{c:?}").contains("pw\""), "{c:?}");
    }

    #[test]
    fn redis_settings_are_checked_with_their_keys() {
        let base = crate::config::tests::MINIMAL;
        let ok = base.replace(
            "[listen]",
            "[store]\nbackend = \"redis\"\nurl = \"redis://127.0.0.1:6379/0\"\n[listen]",
        );
        let c = Config::from_toml(&ok).unwrap();
        let redis = c.store_redis.unwrap();
        assert_eq!(
            (redis.url.as_str(), redis.key_prefix.as_str()),
            ("redis://127.0.0.1:6379/0", "smpp-proxy:")
        );
        assert_eq!(c.cluster.heartbeat_ttl(), Duration::from_secs(5));

        let missing = base.replace("[listen]", "[store]\nbackend = \"redis\"\n[listen]");
        let err = Config::from_toml(&missing).unwrap_err();
        assert!(err.0.iter().any(|l| l.starts_with("store.url: needed")), "{err}");

        let stray = base.replace(
            "[listen]",
            "[store]\nurl = \"redis://h\"\n[cluster]\npoll = \"2s\"\n[listen]",
        );
        let err = Config::from_toml(&stray).unwrap_err();
        assert!(err.0.iter().any(|l| l.starts_with("store.url: only with")), "{err}");
        assert!(err.0.iter().any(|l| l.starts_with("cluster: only with")), "{err}");

        let bad = base.replace(
            "[listen]",
            "[store]\nbackend = \"redis\"\nurl = \"http://h\"\npassword_file = \"/nonexistent/pw\"\nkey_prefix = \"{x}:\"\n[cluster]\npoll = \"soon\"\n[listen]",
        );
        let err = Config::from_toml(&bad).unwrap_err();
        for key in [
            "store.url:",
            "store.password_file:",
            "store.key_prefix:",
            "cluster.poll:",
        ] {
            assert!(err.0.iter().any(|l| l.starts_with(key)), "{key} in {err}");
        }
    }
}
