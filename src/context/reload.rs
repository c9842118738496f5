//! Reload: the configuration file read again and applied to the running proxy, without
//! dropping what did not change (SIGHUP, `POST /reload`, `smpp-proxy reload`).
//!
//! The new file is validated whole first; a file with any problem is refused and the running
//! configuration stays. Then the difference is applied and published as one new [`Live`]
//! generation (configuration, accounts, router, sessions swapped at once):
//! - upstreams added: their sessions start binding; removed: their sessions are retired (out
//!   of the router at once; answers and receipts still read, then unbound); changed: their
//!   sessions are replaced one at a time, each new one bound before the old one is retired
//!   (if the SMSC refuses the extra bind, the old one is retired after [`BIND_WAIT`] anyway
//!   and the new one binds at its next try), so an upstream
//!   with two sessions or more never leaves the rotation;
//! - clients added: their accounts start; removed: their binds are unbound politely; changed:
//!   a new password from the next bind on, window, tps and outbox limits at once;
//! - groups, routes and MO routes: the new router takes over in one swap, failover groups
//!   keeping their active member and concatenated messages their upstream.
//!
//! Settings a running proxy cannot change (listen addresses, store, node id, cluster, limits)
//! keep their running values and are reported as needing a restart.
//!
//! One reload at a time: the [`Topology`] lock is held until every replaced or removed
//! session has ended, so the next reload starts from a settled proxy.

use crate::account::{self, AccountHandle};
use crate::cluster::Cluster;
use crate::config::{Config, UpstreamConfig};
use crate::context::{Context, Live};
use crate::routing::Router;
use crate::upstream::{self, InboundSink, Request, SessionHandle, UpstreamInfo};
use serde::Serialize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, Mutex, OwnedMutexGuard};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{error, info, warn};

/// How long a replacement session gets to bind before the one it replaces is retired anyway.
const BIND_WAIT: Duration = Duration::from_secs(15);
/// Beyond its `response_timeout`, how long a retired session gets to unbind.
const UNBIND_WAIT: Duration = Duration::from_secs(5);
/// How long a reload waits for the last one to settle before it is refused (a SIGHUP is
/// handled where SIGTERM is: it must not wait long).
const SETTLED_WAIT: Duration = Duration::from_secs(2);

/// The upstreams and sessions running, in config order; what the router is built over.
#[derive(Debug, Default)]
pub struct Topology {
    upstreams: Vec<Arc<UpstreamInfo>>,
    sessions: Vec<Arc<SessionHandle>>,
}

/// Reloads so far.
#[derive(Debug, Default)]
pub struct ReloadCounts {
    /// Applied.
    pub ok: AtomicU64,
    /// Refused (an invalid file, an unreadable certificate).
    pub failed: AtomicU64,
    /// When the last one was applied (Unix seconds; 0: never).
    pub last_ok: AtomicU64,
}

/// What a reload changed.
#[derive(Debug, Default, Clone, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct ReloadReport {
    /// Upstreams that started binding.
    pub upstreams_added: Vec<String>,
    /// Upstreams being drained and unbound.
    pub upstreams_removed: Vec<String>,
    /// Upstreams whose sessions are being re-established, one at a time.
    pub upstreams_changed: Vec<String>,
    /// Accounts opened.
    pub clients_added: Vec<String>,
    /// Accounts closed (their binds unbound).
    pub clients_removed: Vec<String>,
    /// Accounts whose settings changed.
    pub clients_changed: Vec<String>,
    /// Groups, routes, MO routes or routing settings changed.
    pub routing_changed: bool,
    /// Keys whose new values wait for a restart (the running ones stay).
    pub restart_needed: Vec<String>,
}

impl ReloadReport {
    /// One line: what changed.
    pub fn summary(&self) -> String {
        let mut parts = Vec::new();
        let lists = [
            ("upstreams added", &self.upstreams_added),
            ("upstreams removed", &self.upstreams_removed),
            ("upstreams changed", &self.upstreams_changed),
            ("clients added", &self.clients_added),
            ("clients removed", &self.clients_removed),
            ("clients changed", &self.clients_changed),
            ("need a restart", &self.restart_needed),
        ];
        for (what, names) in lists {
            if !names.is_empty() {
                parts.push(format!("{what}: {}", names.join(", ")));
            }
        }
        if self.routing_changed {
            parts.push("routing changed".to_owned());
        }
        if parts.is_empty() {
            parts.push("nothing changed".to_owned());
        }
        format!("configuration reloaded ({})", parts.join("; "))
    }
}

/// Why a reload was refused (the running configuration stays).
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The proxy was started from no file.
    #[error("the configuration was not read from a file: nothing to read again")]
    NoFile,
    /// The file has problems (every one, with its key).
    #[error("{0}")]
    Invalid(String),
    /// The TLS listener's new files could not be read.
    #[error("TLS: {0}")]
    Tls(String),
    /// The last reload is still settling (sessions being re-established or drained).
    #[error("the last reload is still settling (upstream sessions being re-established or drained): try again when it is done")]
    Busy,
}

/// Applies reloads; held by the [`Context`].
#[derive(Debug)]
pub struct Reloader {
    topology: Arc<Mutex<Topology>>,
    /// Where upstream session tasks run (shutdown waits for them).
    upstream_tasks: TaskTracker,
    /// Where account tasks run.
    account_tasks: TaskTracker,
    /// Cancelled when upstreams stop (shutdown).
    stop: CancellationToken,
    /// Reloads so far.
    pub counts: ReloadCounts,
}

/// An upstream as `config` says, with its bucket (this node's own, or the cluster's), serving
/// until the proxy stops or the upstream is retired; `before` is the version it replaces.
pub(crate) fn upstream_info(
    config: &UpstreamConfig,
    cluster: Option<&Arc<Cluster>>,
    stop: &CancellationToken,
    before: Option<&UpstreamInfo>,
) -> Arc<UpstreamInfo> {
    let retired = stop.child_token();
    let bucket = match cluster {
        Some(cluster) => cluster.upstream_bucket(config, &retired),
        None => upstream::own_bucket(config),
    };
    UpstreamInfo::new(config.clone(), bucket, retired, before)
}

/// Every session of `info` with its request channel, for [`Reloader::start_sessions`].
pub(crate) fn sessions_of(info: &Arc<UpstreamInfo>) -> Vec<(Arc<SessionHandle>, mpsc::Receiver<Request>)> {
    (0..info.config.sessions as usize)
        .flat_map(|n| upstream::sessions_at(info, n))
        .collect()
}

impl Reloader {
    /// A reloader over what the proxy started with.
    pub(crate) fn new(
        upstreams: Vec<Arc<UpstreamInfo>>,
        sessions: Vec<Arc<SessionHandle>>,
        upstream_tasks: TaskTracker,
        account_tasks: TaskTracker,
        stop: CancellationToken,
    ) -> Reloader {
        Reloader {
            topology: Arc::new(Mutex::new(Topology { upstreams, sessions })),
            upstream_tasks,
            account_tasks,
            stop,
            counts: ReloadCounts::default(),
        }
    }

    /// Starts the tasks of `sessions` (their requests come through their channels).
    pub(crate) fn start_sessions(
        &self,
        ctx: &Arc<Context>,
        sessions: Vec<(Arc<SessionHandle>, mpsc::Receiver<Request>)>,
    ) -> Vec<Arc<SessionHandle>> {
        start_sessions(ctx, &self.upstream_tasks, &self.stop, sessions)
    }

    /// Reads the file the proxy was started from again and applies it.
    pub async fn reload_file(&self, ctx: &Arc<Context>) -> Result<ReloadReport, ReloadError> {
        let Some(path) = ctx.config().file.clone() else {
            return Err(self.refused(ReloadError::NoFile));
        };
        let read = {
            let path = path.clone();
            tokio::task::spawn_blocking(move || Config::load(&path)).await
        };
        match read {
            Ok(Ok(config)) => self.apply(ctx, config).await,
            Ok(Err(e)) => Err(self.refused(ReloadError::Invalid(e.in_file(&path)))),
            Err(e) => Err(self.refused(ReloadError::Invalid(format!("{}: {e}", path.display())))),
        }
    }

    fn refused(&self, e: ReloadError) -> ReloadError {
        self.counts.failed.fetch_add(1, Ordering::Relaxed);
        for line in e.to_string().lines() {
            error!("reload refused, the running configuration stays: {line}");
        }
        e
    }

    /// Applies `new` to the running proxy (see the module's doc). Returns once the new
    /// generation is in force; replaced and removed sessions finish in the background.
    pub async fn apply(&self, ctx: &Arc<Context>, mut new: Config) -> Result<ReloadReport, ReloadError> {
        let Ok(mut topology) = tokio::time::timeout(SETTLED_WAIT, self.topology.clone().lock_owned()).await else {
            return Err(self.refused(ReloadError::Busy));
        };
        let before = ctx.live.load_full();
        let old = &before.config;
        let mut report = ReloadReport {
            restart_needed: keep_running(old, &mut new),
            routing_changed: routing_changed(old, &new),
            ..ReloadReport::default()
        };
        // The file was checked against its own admin address; the running one stays.
        if let Some(addr) = new.admin.filter(|a| !a.ip().is_loopback()) {
            if new.admin_access.token.is_none() {
                return Err(self.refused(ReloadError::Invalid(format!(
                    "admin.token_file: the admin endpoint stays on {addr} until a restart, reachable from other hosts: it keeps needing a token"
                ))));
            }
        }
        if let (Some(tls), Some(listen)) = (&ctx.tls, &new.listen_tls) {
            tls.reload_from(listen.files.clone())
                .map_err(|e| self.refused(ReloadError::Tls(e)))?;
        }
        // Upstreams: by name.
        let mut upstreams = Vec::with_capacity(new.upstreams.len());
        let mut changed = Vec::new();
        let mut started = Vec::new();
        for config in &new.upstreams {
            match topology.upstreams.iter().find(|u| u.config.name == config.name) {
                Some(u) if u.config == *config => upstreams.push(u.clone()),
                Some(u) => {
                    let fresh = upstream_info(config, ctx.cluster.as_ref(), &self.stop, Some(u));
                    report.upstreams_changed.push(config.name.clone());
                    changed.push((u.clone(), fresh.clone()));
                    upstreams.push(fresh);
                }
                None => {
                    let fresh = upstream_info(config, ctx.cluster.as_ref(), &self.stop, None);
                    report.upstreams_added.push(config.name.clone());
                    started.extend(sessions_of(&fresh));
                    upstreams.push(fresh);
                }
            }
        }
        let removed: Vec<Arc<UpstreamInfo>> = topology
            .upstreams
            .iter()
            .filter(|u| !new.upstreams.iter().any(|c| c.name == u.config.name))
            .cloned()
            .collect();
        report.upstreams_removed = removed.iter().map(|u| u.config.name.clone()).collect();
        let retiring: Vec<Arc<SessionHandle>> = topology
            .sessions
            .iter()
            .filter(|s| removed.iter().any(|u| u.name == s.upstream.name))
            .cloned()
            .collect();
        for s in &retiring {
            s.retire.cancel();
        }
        // Clients: by system_id.
        let mut accounts = super::Accounts::with_capacity_and_hasher(new.clients.len(), Default::default());
        for (id, config) in &new.clients {
            match before.accounts.get(id) {
                Some(a) => {
                    if **a.peek() != *config {
                        a.reconfigure(config.clone());
                        report.clients_changed.push(id.clone());
                    }
                    accounts.insert(id.clone(), a.clone());
                }
                None => {
                    let a = account::spawn(
                        config.clone(),
                        ctx.store.clone(),
                        new.cluster.poll,
                        &self.account_tasks,
                        &ctx.sessions,
                    );
                    report.clients_added.push(id.clone());
                    accounts.insert(id.clone(), a);
                }
            }
        }
        let gone: Vec<AccountHandle> = before
            .accounts
            .iter()
            .filter(|(id, _)| !new.clients.contains_key(*id))
            .map(|(_, a)| a.clone())
            .collect();
        report.clients_removed = gone.iter().map(|a| a.system_id.to_string()).collect();
        ctx.store
            .set_outbox_caps(new.clients.iter().map(|(id, c)| (id.clone(), c.outbox_max)).collect());
        let started = self.start_sessions(ctx, started);
        topology.upstreams = upstreams;
        topology.sessions.extend(started);
        publish(ctx, &topology, Arc::new(new), accounts);
        for a in &gone {
            a.unbind_all();
        }
        self.counts.ok.fetch_add(1, Ordering::Relaxed);
        self.counts.last_ok.store(crate::store::unix_now(), Ordering::Relaxed);
        info!(
            added = ?report.upstreams_added,
            removed = ?report.upstreams_removed,
            changed = ?report.upstreams_changed,
            clients_added = ?report.clients_added,
            clients_removed = ?report.clients_removed,
            clients_changed = ?report.clients_changed,
            routing_changed = report.routing_changed,
            "configuration reloaded"
        );
        for key in &report.restart_needed {
            warn!(key, "reload: this change needs a restart; the running value stays");
        }
        let names_clients = !(report.clients_added.is_empty()
            && report.clients_removed.is_empty()
            && report.clients_changed.is_empty());
        ctx.history.note(report.summary(), names_clients);
        let settle = Settle {
            ctx: ctx.clone(),
            tasks: self.upstream_tasks.clone(),
            stop: self.stop.clone(),
            changed,
            retiring,
            removed,
        };
        self.upstream_tasks.spawn(settle.run(topology));
        Ok(report)
    }
}

/// Starts the tasks of `sessions` on `tasks`, until `stop`.
fn start_sessions(
    ctx: &Arc<Context>,
    tasks: &TaskTracker,
    stop: &CancellationToken,
    sessions: Vec<(Arc<SessionHandle>, mpsc::Receiver<Request>)>,
) -> Vec<Arc<SessionHandle>> {
    let inbound: Arc<dyn InboundSink> = ctx.clone();
    sessions
        .into_iter()
        .map(|(handle, rx)| {
            let task = upstream::session::run(handle.clone(), rx, inbound.clone(), stop.clone());
            ctx.sessions.spawn(tasks, task);
            handle
        })
        .collect()
}

/// The background part of a reload: changed upstreams re-established one session at a time,
/// removed ones waited for; the topology stays locked until it is done.
struct Settle {
    ctx: Arc<Context>,
    tasks: TaskTracker,
    stop: CancellationToken,
    /// (running version, new version) of each changed upstream.
    changed: Vec<(Arc<UpstreamInfo>, Arc<UpstreamInfo>)>,
    /// Sessions of removed upstreams, retired already.
    retiring: Vec<Arc<SessionHandle>>,
    removed: Vec<Arc<UpstreamInfo>>,
}

impl Settle {
    async fn run(self, mut topology: OwnedMutexGuard<Topology>) {
        for (old, new) in &self.changed {
            let slots = old.config.sessions.max(new.config.sessions) as usize;
            for n in 0..slots {
                if n < new.config.sessions as usize {
                    let fresh = self.start(upstream::sessions_at(new, n));
                    topology.sessions.extend(fresh.iter().cloned());
                    self.publish(&topology);
                    if !self.bound(&fresh).await {
                        warn!(upstream = %new.name, session = n, "reload: the new session did not bind in time; retiring the old one anyway");
                    }
                }
                let olds: Vec<Arc<SessionHandle>> = topology
                    .sessions
                    .iter()
                    .filter(|s| Arc::ptr_eq(&s.upstream, old) && s.index == n)
                    .cloned()
                    .collect();
                self.retire(&mut topology, &olds).await;
            }
            old.retired.cancel();
            info!(upstream = %new.name, "reload: sessions re-established");
        }
        let retiring = self.retiring.clone();
        self.retire(&mut topology, &retiring).await;
        for u in &self.removed {
            u.retired.cancel();
            info!(upstream = %u.name, "reload: upstream drained and unbound");
        }
    }

    fn start(&self, sessions: Vec<(Arc<SessionHandle>, mpsc::Receiver<Request>)>) -> Vec<Arc<SessionHandle>> {
        start_sessions(&self.ctx, &self.tasks, &self.stop, sessions)
    }

    /// Waits until every one of `sessions` is bound (`false`: not within [`BIND_WAIT`]).
    async fn bound(&self, sessions: &[Arc<SessionHandle>]) -> bool {
        let deadline = tokio::time::Instant::now() + BIND_WAIT;
        while !sessions.iter().all(|s| s.is_bound()) {
            if tokio::time::Instant::now() >= deadline || self.stop.is_cancelled() {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        true
    }

    /// Retires `sessions` (out of the router at once), waits for them to end, and forgets them.
    async fn retire(&self, topology: &mut Topology, sessions: &[Arc<SessionHandle>]) {
        for s in sessions {
            s.retire.cancel();
        }
        self.publish(topology);
        for s in sessions {
            let within = s.upstream.config.response_timeout + UNBIND_WAIT;
            tokio::select! {
                _ = s.ended.cancelled() => {}
                _ = tokio::time::sleep(within) => {
                    warn!(upstream = %s.upstream.name, session = s.index, "reload: a retired session is still ending");
                }
                _ = self.stop.cancelled() => return,
            }
        }
        topology
            .sessions
            .retain(|s| !sessions.iter().any(|r| Arc::ptr_eq(r, s)));
        self.publish(topology);
    }

    /// A new generation with the topology as it is now (same configuration and accounts).
    fn publish(&self, topology: &Topology) {
        let live = self.ctx.live.load_full();
        publish(&self.ctx, topology, live.config.clone(), live.accounts.clone());
    }
}

/// Puts a new generation in force: `config`, `accounts`, and a router over `topology` that
/// takes over the running one's state.
fn publish(ctx: &Context, topology: &Topology, config: Arc<Config>, accounts: super::Accounts) {
    let before = ctx.live.load_full();
    let router = Router::build(
        &topology.upstreams,
        &topology.sessions,
        &config,
        rand::random(),
        Some(&before.router),
    );
    ctx.live.store(Arc::new(Live {
        config,
        accounts,
        router,
        sessions: topology.sessions.clone(),
    }));
}

/// Keeps the running values of what a running proxy cannot change; names each that `new`
/// changed.
fn keep_running(old: &Config, new: &mut Config) -> Vec<String> {
    let mut keys = Vec::new();
    let mut keep = |key: &str, differs: bool| {
        if differs {
            keys.push(key.to_owned());
        }
        differs
    };
    if keep("node_id", old.node_id != new.node_id) {
        new.node_id = old.node_id.clone();
    }
    if keep("listen.smpp", old.listen != new.listen) {
        new.listen = old.listen;
    }
    let tls_addr = |c: &Config| c.listen_tls.as_ref().map(|t| t.addr);
    if keep("listen.smpp_tls", tls_addr(old) != tls_addr(new)) {
        match (&old.listen_tls, &mut new.listen_tls) {
            (Some(o), Some(n)) => n.addr = o.addr,
            (None, n) => *n = None,
            // The listener stays, serving the files it has.
            (Some(o), n) => *n = Some(o.clone()),
        }
    }
    if keep(
        "sessions.threads",
        old.client_sessions.threads != new.client_sessions.threads,
    ) {
        new.client_sessions.threads = old.client_sessions.threads;
    }
    if keep("listen.admin", old.admin != new.admin) {
        new.admin = old.admin;
    }
    if keep(
        "admin.max_connections",
        old.admin_access.max_connections != new.admin_access.max_connections,
    ) {
        new.admin_access.max_connections = old.admin_access.max_connections;
    }
    let store_differs = old.store_backend != new.store_backend
        || old.store_path != new.store_path
        || old.store_sync != new.store_sync
        || old.store_redis != new.store_redis;
    if keep("store", store_differs) {
        new.store_backend = old.store_backend;
        new.store_sync = old.store_sync;
        new.store_path = old.store_path.clone();
        new.store_redis = old.store_redis.clone();
    }
    if keep("cluster", old.cluster != new.cluster) {
        new.cluster = old.cluster.clone();
    }
    if keep("limits", old.limits != new.limits) {
        new.limits = old.limits.clone();
    }
    if keep("correlation_ttl", old.correlation_ttl != new.correlation_ttl) {
        new.correlation_ttl = old.correlation_ttl;
    }
    if keep("log.messages", old.log_messages != new.log_messages) {
        new.log_messages = old.log_messages.clone();
    }
    keys
}

fn routing_changed(old: &Config, new: &Config) -> bool {
    old.groups != new.groups
        || old.routes != new.routes
        || old.mo_routes != new.mo_routes
        || old.routing != new.routing
        || old
            .clients
            .iter()
            .map(|(k, c)| (k, &c.route))
            .ne(new.clients.iter().map(|(k, c)| (k, &c.route)))
}
