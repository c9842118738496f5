//! `smpp-proxy run --config FILE`: the proxy, until SIGTERM or Ctrl-C; then it stops accepting,
//! unbinds clients once their requests are answered, and unbinds upstreams.

use clap::Args;
use smpp_proxy::config::Config;
use smpp_proxy::proxy::Proxy;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, Args)]
pub(crate) struct RunArgs {
    /// The configuration file.
    #[arg(long, short, default_value = "config/smpp-proxy.toml")]
    config: PathBuf,
    /// Log format.
    #[arg(long, value_enum, default_value_t = super::LogFormat::Human)]
    log_format: super::LogFormat,
}

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
        super::runtime().block_on(async move {
            let proxy = match Proxy::start(config).await {
                Ok(p) => p,
                Err(e) => {
                    tracing::error!("{e}");
                    return ExitCode::FAILURE;
                }
            };
            terminated().await;
            tracing::info!("shutting down");
            proxy.shutdown().await;
            ExitCode::SUCCESS
        })
    }
}
