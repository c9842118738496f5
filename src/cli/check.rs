//! `smpp-proxy check --config FILE`.

use clap::Args;
use smpp_proxy::config::Config;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, Args)]
pub(crate) struct CheckArgs {
    /// The configuration file.
    #[arg(long, short, default_value = "config/smpp-proxy.toml")]
    config: PathBuf,
}

impl CheckArgs {
    pub(crate) fn run(self) -> ExitCode {
        match Config::load(&self.config) {
            Ok(c) => {
                println!(
                    "{}: ok ({} clients, {} upstreams, {} groups, {} routes, {} MO routes)",
                    self.config.display(),
                    c.clients.len(),
                    c.upstreams.len(),
                    c.groups.len(),
                    c.routes.len(),
                    c.mo_routes.len()
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{}", e.in_file(&self.config));
                ExitCode::FAILURE
            }
        }
    }
}
