//! One handle to the shared store, whether it is one Redis (a multiplexed connection that
//! reconnects by itself) or a Redis Cluster (which routes each command to the master of its
//! slot, and follows the cluster as it changes). Cheap to clone: every clone shares the
//! connection.

use crate::config::{redacted, RedisConfig};
use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, ConnectionInfo, IntoConnectionInfo, Pipeline, RedisFuture, RedisResult, TlsCertificates, Value};
use std::time::Duration;

/// How long a command may take before it counts as failed (and the batch is tried again).
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(2);
/// How long connecting may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// A connection to the shared store.
#[derive(Clone)]
pub enum Conn {
    /// One server (or a primary behind a proxy).
    Single(ConnectionManager),
    /// A Redis Cluster.
    Cluster(ClusterConnection),
}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Conn::Single(_) => "Conn::Single",
            Conn::Cluster(_) => "Conn::Cluster",
        })
    }
}

/// The TLS of `rediss://` needs one cryptography provider for the process.
fn tls_provider() {
    // An error only says one is installed already.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Where and how to connect: the URL, with the password of `password_file` in it.
fn info(config: &RedisConfig) -> RedisResult<ConnectionInfo> {
    tls_provider();
    let mut info = config.url.as_str().into_connection_info()?;
    if let Some(password) = &config.password {
        let settings = info.redis_settings().clone().set_password(password);
        info = info.set_redis_settings(settings);
    }
    Ok(info)
}

/// The certificate authority of `tls_ca_file`, for a `rediss://` server.
fn certificates(config: &RedisConfig) -> Option<TlsCertificates> {
    config.tls_ca.as_ref().map(|ca| TlsCertificates {
        client_tls: None,
        root_cert: Some(ca.clone()),
    })
}

/// Connects as `config` says. The connection is made before this returns, so that a wrong
/// address or password is reported at start.
pub async fn connect(config: &RedisConfig) -> RedisResult<Conn> {
    let info = info(config)?;
    if config.cluster {
        let mut builder = ClusterClientBuilder::new(vec![info.clone()])
            .connection_timeout(CONNECT_TIMEOUT)
            .response_timeout(RESPONSE_TIMEOUT);
        if let Some(password) = info.redis_settings().password() {
            builder = builder.password(password);
        }
        if let Some(user) = info.redis_settings().username() {
            builder = builder.username(user);
        }
        if let Some(certs) = certificates(config) {
            builder = builder.certs(certs);
        }
        let client = builder.build()?;
        return Ok(Conn::Cluster(client.get_async_connection().await?));
    }
    let manager = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(CONNECT_TIMEOUT))
        .set_response_timeout(Some(RESPONSE_TIMEOUT))
        .set_max_delay(Duration::from_secs(2));
    Ok(Conn::Single(
        ConnectionManager::new_with_config(client(config)?, manager).await?,
    ))
}

/// A client for what cannot share the multiplexed connection (a subscription), to the server
/// `config` names (in a cluster, that node: what is published reaches every node).
pub fn client(config: &RedisConfig) -> RedisResult<redis::Client> {
    let info = info(config)?;
    match certificates(config) {
        Some(certs) => redis::Client::build_with_tls(info, certs),
        None => redis::Client::open(info),
    }
}

/// `config`'s address, for logs (no password).
pub fn describe(config: &RedisConfig) -> String {
    let kind = if config.cluster { "Redis Cluster" } else { "Redis" };
    format!("{kind} at {}", redacted(&config.url))
}

impl Conn {
    /// A cluster (pipelines must stay within one hash slot).
    pub fn is_cluster(&self) -> bool {
        matches!(self, Conn::Cluster(_))
    }
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Single(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Single(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
        }
    }
}
