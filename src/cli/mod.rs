//! The command line: argument parsing and the subcommands. Each subcommand is a thin layer over
//! the library; this module owns only I/O and exit codes.

mod check;
mod pdu;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// smpp-proxy: a high-availability SMPP proxy.
#[derive(Debug, Parser)]
#[command(name = "smpp-proxy", version, about)]
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
}

impl Cli {
    /// Runs the chosen subcommand.
    pub fn run(self) -> ExitCode {
        match self.command {
            Command::Pdu(cmd) => cmd.run(),
            Command::Check(args) => args.run(),
        }
    }
}
