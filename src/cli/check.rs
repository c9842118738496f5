//! `smpp-proxy check --config FILE`.

use clap::Args;
use smpp_proxy::config::Config;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, Args)]
pub(crate) struct CheckArgs {
    /// The configuration file.
    #[arg(long, short, env = "SMPP_PROXY_CONFIG", default_value = super::DEFAULT_CONFIG)]
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
                for warning in &c.warnings {
                    println!("{}: warning: {warning}", self.config.display());
                }
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{}", e.in_file(&self.config));
                ExitCode::FAILURE
            }
        }
    }
}

/// `smpp-proxy hash-password`: reads a password on standard input (its first line) and prints
/// its argon2 hash, for a client's `password_hash`.
#[derive(Debug, Args)]
pub(crate) struct HashPasswordArgs {}

impl HashPasswordArgs {
    pub(crate) fn run(self) -> ExitCode {
        let mut line = String::new();
        if std::io::stdin().read_line(&mut line).is_err() {
            eprintln!("error: cannot read a password on standard input");
            return ExitCode::FAILURE;
        }
        let password = line.trim_end_matches(['\n', '\r']);
        if password.is_empty() || password.len() > 8 {
            eprintln!("error: an SMPP password has 1 to 8 characters");
            return ExitCode::FAILURE;
        }
        match smpp_proxy::guard::auth::hash_password(password.as_bytes()) {
            Ok(hash) => {
                println!("{hash}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        }
    }
}
