//! Wiring: builds the accounts, upstream sessions, router and store from the configuration into
//! one [`Context`], starts their tasks, and stops them in order on shutdown: stop accepting,
//! unbind clients once their requests are answered, then unbind upstreams, then let the
//! accounts finish their store writes.
//!
//! Shutdown is two [`CancellationToken`]s, cancelled in that order, and a [`TaskTracker`] per
//! stage that shutdown waits on, so no task is left running behind a handle nobody holds.

mod nodes;

use crate::account;
use crate::admin::Snapshot;
use crate::cluster::members::NodeInfo;
use crate::cluster::{Cluster, JoinError};
use crate::config::{Config, StoreBackend};
use crate::context::reload::{self, ReloadError, ReloadReport, Reloader};
use crate::context::{Context, EarlyReceipts, Live, Stats};
use crate::guard::Guard;
use crate::ids::IdGenerator;
use crate::routing::Router;
use crate::session::threads::SessionThreads;
use crate::store::{DurableStore, MemoryStore, RedisStore, Store, StoreError};
use crate::tls::server::ServerTls;
use crate::trail::Trail;
use crate::upstream::SessionHandle;
use arc_swap::ArcSwap;
use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::info;

/// How often the store sweeps a slice of its correlations for `correlation_ttl`.
const CORRELATION_SWEEP: Duration = Duration::from_secs(10);
/// Receipts that may wait at once for a shared store's lookups (beyond, the SMSC is asked to
/// send them again later).
const LOOKUPS: usize = 16_384;
/// How long clients get to have their requests answered and unbind, at shutdown.
const CLIENTS_GRACE: Duration = Duration::from_secs(10);
/// How long upstream sessions get to answer their SMSCs and unbind, at shutdown.
const UPSTREAMS_GRACE: Duration = Duration::from_secs(10);
/// How long the message trail gets to write out what it holds, at shutdown.
const TRAIL_GRACE: Duration = Duration::from_secs(2);
/// How long accounts get to finish their store writes, at shutdown.
const ACCOUNTS_GRACE: Duration = Duration::from_secs(5);
/// How long the session threads get to end, dropping what still ran on them (the store is
/// let go of after them, see `Proxy::store`).
const THREADS_GRACE: Duration = Duration::from_secs(15);

/// Why the proxy did not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A listener could not be opened (address in use, not this host's, no permission).
    #[error("cannot listen for {what} on {addr}: {source}")]
    Listen {
        /// `SMPP` or `admin`.
        what: &'static str,
        /// The configured address.
        addr: SocketAddr,
        /// What the system said.
        source: std::io::Error,
    },
    /// The store could not be opened.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The cluster would not have this node (its id is taken).
    #[error(transparent)]
    Cluster(#[from] JoinError),
    /// The TLS listener's certificate, key or a client CA could not be read.
    #[error("TLS: {0}")]
    Tls(String),
    /// The message trail's file could not be opened.
    #[error("message trail: {0}")]
    Trail(String),
    /// The session threads could not be started.
    #[error("cannot start the session threads: {0}")]
    Threads(std::io::Error),
}

/// The listeners, open before anything else starts (so that a taken port is reported first).
struct Listeners {
    smpp: (TcpListener, SocketAddr),
    /// With the certificates it serves.
    smpp_tls: Option<(TcpListener, SocketAddr, Arc<ServerTls>)>,
    admin: Option<(TcpListener, SocketAddr)>,
}

impl Listeners {
    async fn open(config: &Config) -> Result<Listeners, StartError> {
        let smpp = listen("SMPP", config.listen).await?;
        let smpp_tls = match &config.listen_tls {
            Some(t) => {
                let certs = ServerTls::load(t.files.clone()).map_err(StartError::Tls)?;
                let (listener, addr) = listen("SMPP over TLS", t.addr).await?;
                Some((listener, addr, Arc::new(certs)))
            }
            None => None,
        };
        let admin = match config.admin {
            Some(a) => Some(listen("admin", a).await?),
            None => None,
        };
        Ok(Listeners { smpp, smpp_tls, admin })
    }
}

/// Opens the shared store and joins the cluster on it.
async fn join(config: &Config, listeners: &Listeners) -> Result<(Arc<dyn Store>, Arc<Cluster>), StartError> {
    let Some(redis) = &config.store_redis else {
        return Err(StoreError::Unexpected("backend = redis without its settings").into());
    };
    let caps = config
        .clients
        .iter()
        .map(|(id, c)| (id.clone(), c.outbox_max))
        .collect();
    let store = RedisStore::open(redis, &config.cluster, &config.node_id, config.correlation_ttl, caps).await?;
    let info = NodeInfo {
        started: crate::store::unix_now(),
        listen: listeners.smpp.1.to_string(),
        admin: listeners.admin.as_ref().map(|(_, a)| a.to_string()),
        version: env!("CARGO_PKG_VERSION").to_owned(),
    };
    let clients: Vec<String> = config.clients.keys().cloned().collect();
    let cluster = Cluster::join(store.clone(), redis, &config.cluster, &config.node_id, info, &clients).await?;
    Ok((store, cluster))
}

async fn listen(what: &'static str, addr: SocketAddr) -> Result<(TcpListener, SocketAddr), StartError> {
    let bound = TcpListener::bind(addr).await.and_then(|l| {
        let local = l.local_addr()?;
        Ok((l, local))
    });
    bound.map_err(|source| StartError::Listen { what, addr, source })
}

/// A running proxy.
#[derive(Debug)]
pub struct Proxy {
    addr: SocketAddr,
    tls_addr: Option<SocketAddr>,
    admin_addr: Option<SocketAddr>,
    ctx: Arc<Context>,
    /// Cancelled first: stop accepting, unbind clients.
    clients_stop: CancellationToken,
    /// Cancelled once clients are gone: unbind upstreams, stop the admin endpoint and sweeps.
    upstreams_stop: CancellationToken,
    /// The listener, which waits for its client sessions.
    clients: TaskTracker,
    /// Upstream sessions, the admin endpoint, the sweeper.
    upstreams: TaskTracker,
    /// Account tasks: they end when the context is gone.
    accounts: TaskTracker,
    /// Where client sessions, upstream sessions and accounts run; stopped last (dropped, they
    /// stop too).
    threads: SessionThreads,
    /// The store, let go of after everything else: its last handle goes here, off the session
    /// threads, and a durable store's closing (its checkpoint) is waited for to the end.
    store: Arc<dyn Store>,
}

impl Proxy {
    /// Starts the proxy: listens, opens its store (with a shared store, joins the cluster),
    /// binds upstreams (in the background) and serves clients.
    pub async fn start(config: Config) -> Result<Proxy, StartError> {
        let listeners = Listeners::open(&config).await?;
        let (store, cluster): (Arc<dyn Store>, _) = match config.store_backend {
            StoreBackend::Memory => (Arc::new(MemoryStore::with_ttl(config.correlation_ttl)), None),
            StoreBackend::Embedded => {
                let (path, ttl, sync) = (config.store_path.clone(), config.correlation_ttl, config.store_sync);
                let opened = tokio::task::spawn_blocking(move || DurableStore::open_with(&path, ttl, sync))
                    .await
                    .map_err(|_| StoreError::WriterStopped)?;
                (Arc::new(opened?), None)
            }
            StoreBackend::Redis => {
                let (store, cluster) = join(&config, &listeners).await?;
                (store, Some(cluster))
            }
        };
        Self::run(config, store, cluster, listeners)
    }

    /// As [`Proxy::start`], with a given store (a node's own: no cluster).
    pub async fn start_with_store(config: Config, store: Arc<dyn Store>) -> Result<Proxy, StartError> {
        let listeners = Listeners::open(&config).await?;
        Self::run(config, store, None, listeners)
    }

    fn run(
        config: Config,
        store: Arc<dyn Store>,
        cluster: Option<Arc<Cluster>>,
        listeners: Listeners,
    ) -> Result<Proxy, StartError> {
        let Listeners {
            smpp: (listener, addr),
            smpp_tls,
            admin,
        } = listeners;
        let tls_addr = smpp_tls.as_ref().map(|(_, a, _)| *a);
        let admin_addr = admin.as_ref().map(|(_, a)| *a);
        let trail = match &config.log_messages {
            Some(path) => Trail::open(path).map_err(|e| StartError::Trail(format!("{}: {e}", path.display())))?,
            None => Trail::default(),
        };
        let threads = SessionThreads::start(config.client_sessions.threads).map_err(StartError::Threads)?;
        let config = Arc::new(config);
        let (clients_stop, upstreams_stop) = (CancellationToken::new(), CancellationToken::new());
        let infos: Vec<_> = config
            .upstreams
            .iter()
            .map(|u| reload::upstream_info(u, cluster.as_ref(), &upstreams_stop, None))
            .collect();
        let sessions: Vec<_> = infos.iter().flat_map(reload::sessions_of).collect();
        let handles: Vec<Arc<SessionHandle>> = sessions.iter().map(|(h, _)| h.clone()).collect();
        let router = Router::build(&infos, &handles, &config, rand::random(), None);
        let accounts_tasks = TaskTracker::new();
        let accounts = config
            .clients
            .iter()
            .map(|(id, c)| {
                let handle = account::spawn(
                    c.clone(),
                    store.clone(),
                    config.cluster.poll,
                    &accounts_tasks,
                    &threads.placement(),
                );
                (id.clone(), handle)
            })
            .collect();
        let upstreams = TaskTracker::new();
        let reloader = Reloader::new(
            infos,
            handles.clone(),
            upstreams.clone(),
            accounts_tasks.clone(),
            upstreams_stop.clone(),
        );
        let (lookups, lookups_rx) = tokio::sync::mpsc::channel(LOOKUPS);
        let kept = store.clone();
        let ctx = Arc::new(Context {
            lookups,
            ids: IdGenerator::new(&config.node_id),
            live: ArcSwap::from_pointee(Live {
                config: config.clone(),
                accounts,
                router,
                sessions: handles,
            }),
            store,
            next_bind_id: AtomicU64::new(1),
            stats: Stats::default(),
            early: EarlyReceipts::new(config.limits.early_receipts_max, config.limits.early_receipts_max_bytes),
            answers_due: Default::default(),
            cluster,
            guard: Guard::new(&config.limits),
            tls: smpp_tls.as_ref().map(|(_, _, certs)| certs.clone()),
            reloader,
            history: crate::context::history::History::default(),
            trail,
            delivered: crate::context::delivered::Delivered::new(threads.placement().threads()),
            sessions: threads.placement(),
        });
        upstreams.spawn(sweep(ctx.clone(), upstreams_stop.clone()));
        if let Some(cluster) = &ctx.cluster {
            nodes::spawn(&ctx, cluster, &upstreams, &upstreams_stop);
        }
        // Ends when the context (the channel's last sender) goes, like the accounts.
        accounts_tasks.spawn(crate::context::lookups(Arc::downgrade(&ctx), lookups_rx));
        ctx.reloader.start_sessions(&ctx, sessions);
        if let Some((admin, _)) = admin {
            upstreams.spawn(crate::admin::serve(ctx.clone(), admin, upstreams_stop.clone()));
            if let Some(addr) = admin_addr {
                info!(%addr, "admin endpoint: /metrics, /status");
            }
        }
        upstreams.close();
        accounts_tasks.close();
        let clients = TaskTracker::new();
        clients.spawn(crate::server::serve(ctx.clone(), listener, None, clients_stop.clone()));
        if let Some((listener, tls_addr, certs)) = smpp_tls {
            clients.spawn(crate::server::serve(
                ctx.clone(),
                listener,
                Some(certs),
                clients_stop.clone(),
            ));
            info!(%tls_addr, "smpp-proxy listening for TLS");
        }
        clients.close();
        info!(%addr, upstreams = config.upstreams.len(), clients = config.clients.len(), "smpp-proxy listening");
        Ok(Proxy {
            addr,
            tls_addr,
            admin_addr,
            ctx,
            clients_stop,
            upstreams_stop,
            clients,
            upstreams,
            accounts: accounts_tasks,
            threads,
            store: kept,
        })
    }

    /// The address clients connect to.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The address clients connect to over TLS, when configured.
    pub fn tls_addr(&self) -> Option<SocketAddr> {
        self.tls_addr
    }

    /// Reads the configuration file again and applies it (SIGHUP, `POST /reload`): see
    /// [`reload`]. The TLS listener's certificate, key and client CAs are read again too
    /// (connections from now on get them; those up keep theirs). On an error nothing changes.
    pub async fn reload(&self) -> Result<ReloadReport, ReloadError> {
        self.ctx.reloader.reload_file(&self.ctx).await
    }

    /// Reads the TLS listener's certificate, key and client CAs again, and nothing else:
    /// connections from now on get them; those up keep theirs. On an error the old ones stay.
    /// `false`: there is no TLS listener.
    pub fn reload_tls(&self) -> Result<bool, String> {
        match &self.ctx.tls {
            Some(tls) => tls.reload().map(|()| true),
            None => Ok(false),
        }
    }

    /// Closes the message trail's file and opens it again (SIGHUP, SIGUSR1: after logrotate).
    pub fn reopen_trail(&self) {
        self.ctx.trail.reopen();
    }

    /// The address of the admin endpoint, when configured.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin_addr
    }

    /// The shared context (accounts, sessions, router, store).
    pub fn context(&self) -> &Arc<Context> {
        &self.ctx
    }

    /// The proxy's counters and health now: what `/status` serves.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot::take(&self.ctx)
    }

    /// Waits until every upstream session is bound (or `timeout` passes); `true` if all are.
    pub async fn wait_bound(&self, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if self.ctx.live().sessions.iter().all(|s| s.is_bound()) {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Stops accepting, unbinds clients once their requests are answered, then unbinds
    /// upstreams; the accounts finish their store writes last.
    pub async fn shutdown(self) {
        self.clients_stop.cancel();
        let _ = tokio::time::timeout(CLIENTS_GRACE, self.clients.wait()).await;
        self.upstreams_stop.cancel();
        let _ = tokio::time::timeout(UPSTREAMS_GRACE, self.upstreams.wait()).await;
        if let Some(cluster) = &self.ctx.cluster {
            // Said last: until now this node delivered what it held.
            cluster.leave(&self.ctx.client_ids()).await;
        }
        self.ctx.trail.flush(TRAIL_GRACE).await;
        // Accounts end when the last handle goes; then only `self.store` holds the store, and
        // it closes when that goes, last.
        drop(self.ctx);
        let _ = tokio::time::timeout(ACCOUNTS_GRACE, self.accounts.wait()).await;
        self.threads.stop(THREADS_GRACE).await;
        let store = self.store;
        let _ = tokio::task::spawn_blocking(move || drop(store)).await;
        info!("smpp-proxy stopped");
    }
}

/// The proxy's clockwork, until `stop`: the router's tick (measurements, health, failback),
/// receipts that waited too long for their correlation, and correlations past their TTL.
async fn sweep(ctx: Arc<Context>, stop: CancellationToken) {
    let mut tick = tokio::time::interval(crate::routing::TICK);
    let (mut last_early, mut last_sweep) = (tokio::time::Instant::now(), tokio::time::Instant::now());
    let mut last_sample: Option<tokio::time::Instant> = None;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.cancelled() => return,
        }
        ctx.live().router.tick();
        // Read every tick: a reload may change it.
        let wait = ctx.config().early_receipt_wait;
        if last_early.elapsed() >= Duration::from_millis(500).min(wait) {
            last_early = tokio::time::Instant::now();
            ctx.recheck_early().await;
            ctx.expire_early(wait);
            ctx.expire_parked(wait);
        }
        if last_sample.is_none_or(|at| at.elapsed() >= crate::context::history::EVERY) {
            last_sample = Some(tokio::time::Instant::now());
            let live = ctx.live();
            ctx.history
                .record(&live.router.upstream_figures(), &live.router.group_figures());
        }
        if last_sweep.elapsed() >= CORRELATION_SWEEP {
            last_sweep = tokio::time::Instant::now();
            ctx.expire_correlations().await;
        }
    }
}
