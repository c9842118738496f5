//! The command line: argument parsing and the subcommands. Each subcommand is a thin layer over
//! the library; this module owns only I/O and exit codes.

mod admin;
mod bench;
mod check;
mod demo;
mod demo_cluster;
mod notify;
mod pdu;
mod run;
mod sim;
mod store;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// smpp-proxy: a high-availability SMPP proxy.
#[derive(Debug, Parser)]
#[command(name = "smpp-proxy", version = concat!(env!("CARGO_PKG_VERSION"), " (commit ", env!("SMPP_PROXY_COMMIT"), ")"), about)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Read and write single PDUs (hex <-> JSON), e.g. from a capture.
    #[command(subcommand)]
    Pdu(pdu::PduCommand),
    /// Validate a configuration file: every problem, with its key; exit 1 if any.
    Check(check::CheckArgs),
    /// Run the proxy.
    Run(run::RunArgs),
    /// Run an SMSC simulator.
    Sim(sim::SimArgs),
    /// Load an SMPP server (or compare direct vs through the proxy with --compare).
    Bench(bench::BenchArgs),
    /// Three simulated SMSCs, the proxy, and traffic through it: the proxy doing its job.
    Demo(demo::DemoArgs),
    /// A running proxy's upstreams, clients and counters (from its admin endpoint).
    Status(admin::StatusArgs),
    /// Move a failover group back to its first available member (for `failback = "manual"`).
    Failback(admin::FailbackArgs),
    /// Drain, pause or enable an upstream of a running proxy: `upstream drain smsc-b`.
    Upstream(admin::UpstreamArgs),
    /// Unbind every bind of a client account: `client unbind shop`.
    Client(admin::ClientArgs),
    /// Make a running proxy read its configuration file again and apply it.
    Reload(admin::ReloadArgs),
    /// What happened to one message: `trace 0a1b2c...` (client, upstream, SMSC id, receipt).
    Trace(admin::TraceArgs),
    /// Hash a client password (read on standard input) for `password_hash`.
    HashPassword(check::HashPasswordArgs),
    /// Read the durable store (while the proxy is stopped).
    #[command(subcommand)]
    Store(store::StoreCommand),
}

/// Where the configuration is when neither `--config` nor `SMPP_PROXY_CONFIG` says.
pub(crate) const DEFAULT_CONFIG: &str = "/etc/smpp-proxy/smpp-proxy.toml";

/// How logs are written.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub(crate) enum LogFormat {
    /// For people.
    Human,
    /// One JSON object per line.
    Json,
}

/// Logs to stderr through [`smpp_proxy::logging`] (never blocking, never panicking);
/// `RUST_LOG` overrides the default level (info). Colours only for a terminal, and not with
/// `NO_COLOR` set (journald, files and pipes get plain text).
pub(crate) fn init_logging(format: LogFormat) {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let colours = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(colours)
        .with_writer(smpp_proxy::logging::init())
        // Its report of a failed write goes through eprintln!, which panics when stderr is gone.
        .log_internal_errors(false);
    match format {
        LogFormat::Human => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// A demo's last line and exit code: `good` when it showed what it set out to, else a pointer
/// to what it printed.
pub(crate) fn verdict(ok: bool, good: &str) -> ExitCode {
    println!("\n{}", if ok { good } else { "NOT OK: see above." });
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// The multi-threaded runtime every long-running command uses.
pub(crate) fn runtime() -> tokio::runtime::Runtime {
    runtime_with(0)
}

/// A runtime of `threads` workers (0: one per core). One runs everything on the calling
/// thread: no wake-ups across threads, which is what a load generator or a simulator sharing
/// the machine with what it measures wants.
pub(crate) fn runtime_with(threads: usize) -> tokio::runtime::Runtime {
    let mut builder = match threads {
        1 => tokio::runtime::Builder::new_current_thread(),
        _ => tokio::runtime::Builder::new_multi_thread(),
    };
    if threads > 1 {
        builder.worker_threads(threads);
    }
    builder.enable_all().build().expect("tokio runtime")
}

impl Cli {
    /// Runs the chosen subcommand.
    pub fn run(self) -> ExitCode {
        match self.command {
            Command::Pdu(cmd) => cmd.run(),
            Command::Check(args) => args.run(),
            Command::Run(args) => args.run(),
            Command::Sim(args) => args.run(),
            Command::Bench(args) => args.run(),
            Command::Demo(args) => args.run(),
            Command::Status(args) => args.run(),
            Command::Failback(args) => args.run(),
            Command::Upstream(args) => args.run(),
            Command::Client(args) => args.run(),
            Command::Reload(args) => args.run(),
            Command::Trace(args) => args.run(),
            Command::Store(cmd) => cmd.run(),
            Command::HashPassword(args) => args.run(),
        }
    }
}
