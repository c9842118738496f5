//! `smpp-proxy sim`: an SMSC simulator on the command line.

use clap::{Args, ValueEnum};
use smpp_proxy::config::parse_duration;
use smpp_proxy::sim::{self, ReceiptVariant, SimConfig, SimIdFormat, TpsWindow};
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

#[derive(Debug, Clone, Copy, ValueEnum)]
enum IdFormat {
    Hex,
    Decimal,
    Uuid,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Window {
    Bucket,
    Fixed,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Variant {
    /// Appendix B text with 10-digit dates plus TLVs.
    Standard,
    /// Text id decimal (10 digits) while the TLV id is hex.
    DecimalTextHexTlv,
    /// 12-digit dates and `Text:`.
    Dates12,
    /// No TLVs.
    TextOnly,
    /// Text in message_payload.
    Payload,
}

fn duration(text: &str) -> Result<Duration, String> {
    parse_duration(text).ok_or_else(|| format!("{text:?} is not a duration like 10ms, 2s"))
}

#[derive(Debug, Args)]
pub(crate) struct SimArgs {
    /// Where to listen.
    #[arg(long, default_value = "127.0.0.1:2776")]
    listen: SocketAddr,
    /// Accept only this system_id.
    #[arg(long)]
    system_id: Option<String>,
    /// Accept only this password.
    #[arg(long)]
    password: Option<String>,
    /// Message id format.
    #[arg(long, value_enum, default_value_t = IdFormat::Hex)]
    id_format: IdFormat,
    /// Do not send receipts.
    #[arg(long)]
    no_receipts: bool,
    /// Delay before a receipt.
    #[arg(long, value_parser = duration, default_value = "10ms")]
    receipt_delay: Duration,
    /// How receipts look.
    #[arg(long, value_enum, default_value_t = Variant::Standard)]
    receipt_variant: Variant,
    /// Delay before every response.
    #[arg(long, value_parser = duration)]
    latency: Option<Duration>,
    /// Submits per second; above, ESME_RTHROTTLED.
    #[arg(long, default_value_t = 0)]
    tps: u32,
    /// How --tps counts: `bucket` (a quarter second's burst, then the rate) or `fixed` (at most
    /// --tps in each calendar second, as many SMSCs count).
    #[arg(long, value_enum, default_value_t = Window::Bucket)]
    tps_window: Window,
    /// Drop each connection after this many submits.
    #[arg(long)]
    drop_after: Option<u64>,
    /// Refuse every bind.
    #[arg(long)]
    refuse_binds: bool,
    /// Send an MO this often.
    #[arg(long, value_parser = duration)]
    mo_every: Option<Duration>,
    /// Refuse submits to destinations starting with this prefix (ESME_RINVDSTADR).
    #[arg(long)]
    reject_prefix: Option<String>,
    /// Send an ENROUTE receipt before each final one.
    #[arg(long)]
    intermediate_receipts: bool,
    /// Speak TLS with this certificate chain (PEM; with --tls-key).
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<std::path::PathBuf>,
    /// The TLS certificate's private key (PEM).
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<std::path::PathBuf>,
    /// Worker threads (0: one per core). One runs everything on one thread, with no wake-ups
    /// across threads: the cheapest for a simulator or load generator that shares the machine
    /// with what it measures.
    #[arg(long, default_value_t = 1)]
    threads: usize,
}

impl SimArgs {
    pub(crate) fn run(self) -> ExitCode {
        super::init_logging(super::LogFormat::Human);
        let tls = match (self.tls_cert, self.tls_key) {
            (Some(cert), Some(key)) => match smpp_proxy::tls::server::config(cert, key) {
                Ok(tls) => Some(tls),
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::FAILURE;
                }
            },
            _ => None,
        };
        let config = SimConfig {
            listen: self.listen,
            system_id: self.system_id,
            password: self.password,
            id_format: match self.id_format {
                IdFormat::Hex => SimIdFormat::Hex,
                IdFormat::Decimal => SimIdFormat::Decimal,
                IdFormat::Uuid => SimIdFormat::Uuid,
            },
            receipts: !self.no_receipts,
            receipt_delay: self.receipt_delay,
            receipt_variant: match self.receipt_variant {
                Variant::Standard => ReceiptVariant::Standard,
                Variant::DecimalTextHexTlv => ReceiptVariant::DecimalTextHexTlv,
                Variant::Dates12 => ReceiptVariant::Dates12,
                Variant::TextOnly => ReceiptVariant::TextOnly,
                Variant::Payload => ReceiptVariant::Payload,
            },
            latency: self.latency.unwrap_or(Duration::ZERO),
            tps: self.tps,
            tps_window: match self.tps_window {
                Window::Bucket => TpsWindow::Bucket,
                Window::Fixed => TpsWindow::Fixed,
            },
            drop_after: self.drop_after,
            refuse_binds: self.refuse_binds,
            mo_every: self.mo_every,
            reject: self
                .reject_prefix
                .map(|p| (p, smpp_proxy::pdu::CommandStatus::ESME_RINVDSTADR)),
            intermediate_receipts: self.intermediate_receipts,
            record: false,
            tls,
        };
        let listen = config.listen;
        super::runtime_with(self.threads).block_on(async move {
            let sim = match sim::start(config).await {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("error: cannot listen on {listen}: {e}");
                    return ExitCode::FAILURE;
                }
            };
            eprintln!("smpp-proxy sim listening on {}", sim.local_addr());
            super::run::terminated().await;
            let stats = sim.stats().clone();
            sim.stop().await;
            eprintln!(
                "sim: {} binds, {} submits, {} throttled, {} receipts, {} MO",
                stats.binds.load(std::sync::atomic::Ordering::Relaxed),
                stats.submits.load(std::sync::atomic::Ordering::Relaxed),
                stats.throttled.load(std::sync::atomic::Ordering::Relaxed),
                stats.receipts.load(std::sync::atomic::Ordering::Relaxed),
                stats.mo.load(std::sync::atomic::Ordering::Relaxed),
            );
            ExitCode::SUCCESS
        })
    }
}
