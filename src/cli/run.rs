//! `smpp-proxy run --config FILE`: the proxy, until SIGTERM or Ctrl-C; then it stops accepting,
//! unbinds clients once their requests are answered, and unbinds upstreams.

use super::notify::Notifier;
use clap::Args;
use smpp_proxy::config::Config;
use smpp_proxy::proxy::Proxy;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, Args)]
pub(crate) struct RunArgs {
    /// The configuration file.
    #[arg(long, short, env = "SMPP_PROXY_CONFIG", default_value = super::DEFAULT_CONFIG)]
    config: PathBuf,
    /// Log format.
    #[arg(long, value_enum, default_value_t = super::LogFormat::Human)]
    log_format: super::LogFormat,
}

/// SIGXFSZ on Linux: sent when a write passes the file-size limit.
#[cfg(target_os = "linux")]
const SIGXFSZ: i32 = 25;

/// Resolves on SIGTERM or Ctrl-C.
pub(crate) async fn terminated() {
    #[cfg(unix)]
    {
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
}

/// SIGHUP and SIGUSR1, taken over from the start (their default is to end the process, and a
/// `systemctl reload` or a logrotate may come while the proxy is still starting).
#[cfg(unix)]
type Hangup = Option<(tokio::signal::unix::Signal, tokio::signal::unix::Signal)>;
#[cfg(not(unix))]
type Hangup = Option<()>;

fn hangup() -> Hangup {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        signal(SignalKind::hangup())
            .ok()
            .zip(signal(SignalKind::user_defined1()).ok())
    }
    #[cfg(not(unix))]
    None
}

/// Waits for SIGTERM or Ctrl-C; meanwhile each SIGHUP reloads the configuration file (and the
/// TLS listener's certificate, key and client CAs; binds of what did not change stay up), told
/// to systemd as a reload, and opens the message trail again; a file with problems is refused
/// whole and logged. SIGUSR1 only opens the message trail again (logrotate).
async fn until_terminated(proxy: &Proxy, hup: Hangup, systemd: &Notifier) {
    let stop = terminated();
    tokio::pin!(stop);
    #[cfg(unix)]
    {
        let Some((mut hup, mut usr1)) = hup else {
            return stop.await;
        };
        loop {
            tokio::select! {
                _ = &mut stop => return,
                _ = hup.recv() => {
                    systemd.send("RELOADING=1");
                    proxy.reopen_trail();
                    // Applied or refused, the reload logs what it did.
                    let _ = proxy.reload().await;
                    systemd.send("READY=1");
                }
                _ = usr1.recv() => proxy.reopen_trail(),
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = (hup, systemd);
        stop.await;
    }
}

/// Pings systemd's watchdog while the runtime runs tasks, if it asked for pings.
fn watchdog(systemd: &std::sync::Arc<Notifier>) {
    if let Some(every) = systemd.watchdog() {
        let systemd = systemd.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tick.tick().await;
                systemd.send("WATCHDOG=1");
            }
        });
    }
}

impl RunArgs {
    pub(crate) fn run(self) -> ExitCode {
        super::init_logging(self.log_format);
        let config = match Config::load(&self.config) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("{}", e.in_file(&self.config));
                return ExitCode::FAILURE;
            }
        };
        for warning in &config.warnings {
            tracing::warn!("{}: {warning}", self.config.display());
        }
        let code = super::runtime().block_on(async move {
            // A write past the file-size limit must fail with EFBIG (and the store cope), not
            // kill the process, which is what SIGXFSZ does by default.
            #[cfg(target_os = "linux")]
            let _xfsz = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::from_raw(SIGXFSZ));
            let hup = hangup();
            let systemd = std::sync::Arc::new(Notifier::from_env());
            let proxy = match Proxy::start(config).await {
                Ok(p) => p,
                Err(e) => {
                    tracing::error!("{e}");
                    return ExitCode::FAILURE;
                }
            };
            watchdog(&systemd);
            systemd.send(&format!("READY=1\nSTATUS=serving SMPP on {}", proxy.local_addr()));
            until_terminated(&proxy, hup, &systemd).await;
            systemd.send("STOPPING=1\nSTATUS=unbinding clients and upstreams");
            tracing::info!("shutting down");
            proxy.shutdown().await;
            ExitCode::SUCCESS
        });
        smpp_proxy::logging::flush(std::time::Duration::from_secs(2));
        code
    }
}
