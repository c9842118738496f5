//! `smpp-proxy store stats|outbox|reset`: what the durable store holds, and moving a damaged
//! file aside (run while the proxy is stopped: the store is locked by the running proxy).

use clap::Subcommand;
use smpp_proxy::config::Config;
use smpp_proxy::pdu::json::pdu_to_json;
use smpp_proxy::pdu::Pdu;
use smpp_proxy::receipt::Receipt;
use smpp_proxy::store::{DurableStore, StoreError};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Debug, Subcommand)]
pub(crate) enum StoreCommand {
    /// Correlations held and outbox entries per client.
    Stats {
        /// The configuration file (its `[store] path`).
        #[arg(long, short, env = "SMPP_PROXY_CONFIG", default_value = super::DEFAULT_CONFIG)]
        config: PathBuf,
    },
    /// What waits in one client's outbox, oldest first, one JSON object per line.
    Outbox {
        /// The configuration file (its `[store] path`).
        #[arg(long, short, env = "SMPP_PROXY_CONFIG", default_value = super::DEFAULT_CONFIG)]
        config: PathBuf,
        /// The client's system_id.
        #[arg(long)]
        client: String,
        /// At most this many entries.
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// Moves a damaged or empty store file aside (kept, renamed `*.damaged-TIME`), so the next
    /// start begins with an empty store. A store that opens fine is left alone unless --force.
    Reset {
        /// The configuration file (its `[store] path`).
        #[arg(long, short, env = "SMPP_PROXY_CONFIG", default_value = super::DEFAULT_CONFIG)]
        config: PathBuf,
        /// Move it aside even though it opens.
        #[arg(long)]
        force: bool,
    },
}

fn open(config: &Path) -> Result<DurableStore, String> {
    let c = Config::load(config).map_err(|e| e.in_file(config))?;
    DurableStore::open(&c.store_path).map_err(|e| e.to_string())
}

/// `store reset`: the file moved aside when it cannot be opened (or with `force`), never while
/// a proxy holds it.
fn reset(config: &Path, force: bool) -> Result<(), String> {
    let c = Config::load(config).map_err(|e| e.in_file(config))?;
    let file = c.store_path.join(smpp_proxy::store::durable::FILE);
    if !file.exists() {
        println!("{}: no store file; nothing to reset", file.display());
        return Ok(());
    }
    match DurableStore::open(&c.store_path) {
        Err(e @ StoreError::Locked(_)) => return Err(e.to_string()),
        Ok(_) if !force => {
            return Err(format!(
                "{} opens fine: nothing to reset (--force moves it aside anyway)",
                file.display()
            ))
        }
        Ok(_) | Err(_) => {}
    }
    let now = smpp_proxy::store::unix_now();
    // Its write-ahead files go with it, and first: applied to an empty store they would
    // renumber outbox entries their later records name. A reset stopped in between leaves the
    // database without them (the reset run again moves it too), never an empty store beside
    // an old file that the next start would replay into it.
    for name in [
        smpp_proxy::store::durable::WAL_FILE,
        smpp_proxy::store::durable::WAL_OLD,
    ] {
        let wal = c.store_path.join(name);
        if wal.exists() {
            let wal_aside = unused(c.store_path.join(format!("{name}.damaged-{now}")));
            std::fs::rename(&wal, &wal_aside).map_err(|e| format!("{}: {e}", wal.display()))?;
        }
    }
    let aside = unused(file.with_extension(format!("redb.damaged-{now}")));
    std::fs::rename(&file, &aside).map_err(|e| {
        format!(
            "{}: {e} (its write-ahead files are moved aside already: run store reset again before the proxy starts)",
            file.display()
        )
    })?;
    println!(
        "moved {} to {}; the next start begins with an empty store",
        file.display(),
        aside.display()
    );
    Ok(())
}

/// `path`, or `path.2`, `path.3`... whichever does not exist yet: two resets within one second
/// must not let the second one's rename replace the first damaged file (kept for forensics).
fn unused(path: PathBuf) -> PathBuf {
    if !path.exists() {
        return path;
    }
    let mut n = 2u32;
    loop {
        let mut name = path.clone().into_os_string();
        name.push(format!(".{n}"));
        let candidate = PathBuf::from(name);
        if !candidate.exists() {
            return candidate;
        }
        n += 1;
    }
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
            StoreCommand::Reset { config, force } => reset(&config, force),
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

#[cfg(test)]
mod tests {
    use super::unused;

    #[test]
    fn a_second_reset_in_the_same_second_keeps_the_first_damaged_file() {
        let dir = tempfile::tempdir().unwrap();
        let first = dir.path().join("store.redb.damaged-100");
        assert_eq!(unused(first.clone()), first);
        std::fs::write(&first, b"old").unwrap();
        let second = unused(first.clone());
        assert_eq!(second, dir.path().join("store.redb.damaged-100.2"));
        std::fs::write(&second, b"older").unwrap();
        assert_eq!(unused(first), dir.path().join("store.redb.damaged-100.3"));
    }
}
