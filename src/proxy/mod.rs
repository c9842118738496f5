//! Wiring: builds the accounts, upstream sessions, router and store from the configuration into
//! one [`Context`], starts their tasks, and stops them in order on shutdown (stop accepting,
//! unbind clients after their requests are answered, then unbind upstreams).

use crate::account;
use crate::config::{Config, StoreBackend};
use crate::context::{Context, EarlyReceipts, Stats};
use crate::ids::IdGenerator;
use crate::routing::Router;
use crate::store::{DurableStore, MemoryStore, Store};
use crate::upstream::{self, InboundSink, SessionHandle};
use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::info;

/// How often the store sweeps a slice of its correlations for `correlation_ttl`.
const CORRELATION_SWEEP: Duration = Duration::from_secs(10);

/// A running proxy.
#[derive(Debug)]
pub struct Proxy {
    addr: SocketAddr,
    admin_addr: Option<SocketAddr>,
    ctx: Arc<Context>,
    clients_stop: watch::Sender<bool>,
    upstreams_stop: watch::Sender<bool>,
    server: JoinHandle<()>,
    upstream_tasks: Vec<JoinHandle<()>>,
    sweeper: JoinHandle<()>,
    account_tasks: Vec<JoinHandle<()>>,
}

impl Proxy {
    /// Starts the proxy: opens its store, listens, binds upstreams (in the background) and
    /// serves clients.
    pub async fn start(config: Config) -> std::io::Result<Proxy> {
        let store: Arc<dyn Store> = match config.store_backend {
            StoreBackend::Memory => Arc::new(MemoryStore::with_ttl(config.correlation_ttl)),
            StoreBackend::Embedded => {
                let (path, ttl) = (config.store_path.clone(), config.correlation_ttl);
                let opened = tokio::task::spawn_blocking(move || DurableStore::open_with_ttl(&path, ttl))
                    .await
                    .map_err(std::io::Error::other)?;
                Arc::new(
                    opened.map_err(|e| std::io::Error::other(format!("store {}: {e}", config.store_path.display())))?,
                )
            }
        };
        Self::start_with_store(config, store).await
    }

    /// As [`Proxy::start`], with a given store.
    pub async fn start_with_store(config: Config, store: Arc<dyn Store>) -> std::io::Result<Proxy> {
        let listener = TcpListener::bind(config.listen).await?;
        let addr = listener.local_addr()?;
        let admin = match config.admin {
            Some(a) => Some(TcpListener::bind(a).await?),
            None => None,
        };
        let admin_addr = admin.as_ref().map(TcpListener::local_addr).transpose()?;
        let config = Arc::new(config);
        let sessions = upstream::build_sessions(&config.upstreams);
        let handles: Vec<Arc<SessionHandle>> = sessions.iter().map(|(h, _)| h.clone()).collect();
        let router = Router::new(&handles, &config, rand::random());
        let mut account_tasks = Vec::new();
        let accounts = config
            .clients
            .iter()
            .map(|(id, c)| {
                // Validation made sure every route names a group.
                let group = router.group(&c.route).unwrap_or_default();
                let (handle, task) = account::spawn(c.clone(), group, store.clone());
                account_tasks.push(task);
                (id.clone(), handle)
            })
            .collect();
        let ctx = Arc::new(Context {
            ids: IdGenerator::new(&config.node_id),
            config: config.clone(),
            accounts,
            router,
            store,
            next_bind_id: AtomicU64::new(1),
            stats: Stats::default(),
            sessions: handles,
            early: EarlyReceipts::default(),
        });
        let sweeper = {
            let ctx = ctx.clone();
            let wait = config.early_receipt_wait;
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(crate::routing::TICK);
                let (mut last_early, mut last_sweep) = (tokio::time::Instant::now(), tokio::time::Instant::now());
                loop {
                    tick.tick().await;
                    ctx.router.tick();
                    if last_early.elapsed() >= Duration::from_millis(500).min(wait) {
                        last_early = tokio::time::Instant::now();
                        ctx.expire_early(wait);
                    }
                    if last_sweep.elapsed() >= CORRELATION_SWEEP {
                        last_sweep = tokio::time::Instant::now();
                        ctx.expire_correlations().await;
                    }
                }
            })
        };
        let (upstreams_stop, upstreams_rx) = watch::channel(false);
        let inbound: Arc<dyn InboundSink> = ctx.clone();
        let upstream_tasks = sessions
            .into_iter()
            .map(|(handle, rx)| {
                tokio::spawn(upstream::session::run(
                    handle,
                    rx,
                    inbound.clone(),
                    upstreams_rx.clone(),
                ))
            })
            .collect();
        let (clients_stop, clients_rx) = watch::channel(false);
        let server = tokio::spawn(crate::server::serve(ctx.clone(), listener, clients_rx));
        if let Some(admin) = admin {
            tokio::spawn(crate::admin::serve(ctx.clone(), admin, upstreams_rx.clone()));
            info!(addr = ?admin_addr, "admin endpoint: /metrics, /status");
        }
        info!(%addr, upstreams = config.upstreams.len(), clients = config.clients.len(), "smpp-proxy listening");
        Ok(Proxy {
            addr,
            admin_addr,
            ctx,
            clients_stop,
            upstreams_stop,
            server,
            upstream_tasks,
            sweeper,
            account_tasks,
        })
    }

    /// The address clients connect to.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The address of the admin endpoint, when configured.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin_addr
    }

    /// The shared context (stats, sessions, store).
    pub fn context(&self) -> &Arc<Context> {
        &self.ctx
    }

    /// Waits until every upstream session is bound (or `timeout` passes); `true` if all are.
    pub async fn wait_bound(&self, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if self.ctx.sessions.iter().all(|s| s.is_bound()) {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Stops accepting, unbinds clients once their requests are answered, then unbinds upstreams.
    pub async fn shutdown(self) {
        let _ = self.clients_stop.send(true);
        let _ = tokio::time::timeout(Duration::from_secs(10), self.server).await;
        let _ = self.upstreams_stop.send(true);
        for task in self.upstream_tasks {
            let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
        }
        self.sweeper.abort();
        // Accounts end when the last handle goes; then nothing holds the store and it closes.
        drop(self.ctx);
        for task in self.account_tasks {
            let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
        }
        info!("smpp-proxy stopped");
    }
}
