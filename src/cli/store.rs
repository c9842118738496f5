//! `smpp-proxy store stats|outbox`: what the durable store holds (run while the proxy is
//! stopped: the store is locked by the running proxy).

use clap::Subcommand;
use smpp_proxy::config::Config;
use smpp_proxy::pdu::json::pdu_to_json;
use smpp_proxy::pdu::Pdu;
use smpp_proxy::receipt::Receipt;
use smpp_proxy::store::DurableStore;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Debug, Subcommand)]
pub(crate) enum StoreCommand {
    /// Correlations held and outbox entries per client.
    Stats {
        /// The configuration file (its `[store] path`).
        #[arg(long, short, default_value = "config/smpp-proxy.toml")]
        config: PathBuf,
    },
    /// What waits in one client's outbox, oldest first, one JSON object per line.
    Outbox {
        /// The configuration file (its `[store] path`).
        #[arg(long, short, default_value = "config/smpp-proxy.toml")]
        config: PathBuf,
        /// The client's system_id.
        #[arg(long)]
        client: String,
        /// At most this many entries.
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
}

fn open(config: &Path) -> Result<DurableStore, String> {
    let c = Config::load(config).map_err(|e| e.in_file(config))?;
    DurableStore::open(&c.store_path).map_err(|e| e.to_string())
}

impl StoreCommand {
    pub(crate) fn run(self) -> ExitCode {
        let result = match self {
            StoreCommand::Stats { config } => open(&config).and_then(|store| {
                let counts = store.counts().map_err(|e| e.to_string())?;
                println!("correlations {}", counts.correlations);
                for (client, n) in counts.outbox {
                    println!("outbox {client} {n}");
                }
                Ok(())
            }),
            StoreCommand::Outbox { config, client, limit } => open(&config).and_then(|store| {
                for entry in store.outbox_after(&client, 0, limit).map_err(|e| e.to_string())? {
                    let pdu = Pdu::parse(entry.pdu.into()).map_err(|e| e.to_string())?;
                    let mut json = pdu_to_json(&pdu);
                    json.insert("outbox_seq".into(), entry.id.as_seq().into());
                    json.insert("stored_at".into(), entry.stored_at.into());
                    if let Some(r) = Receipt::from_pdu(&pdu) {
                        json.insert("receipt".into(), serde_json::Value::Object(r.to_json()));
                    }
                    println!("{}", serde_json::Value::Object(json));
                }
                Ok(())
            }),
        };
        match result {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        }
    }
}
