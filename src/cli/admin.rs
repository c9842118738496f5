//! The commands that talk to a running proxy's admin endpoint (`[listen] admin`):
//! `smpp-proxy status` (upstreams, groups, clients and counters), `failback`, `upstream
//! drain|pause|enable`, `client unbind` and `reload`.

use clap::Args;
use smpp_proxy::admin::{self, Snapshot};
use smpp_proxy::config::Config;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

/// Where the admin endpoint is.
#[derive(Debug, Args)]
pub(crate) struct Endpoint {
    /// The admin endpoint's address; by default the `[listen] admin` of --config.
    #[arg(long)]
    admin: Option<SocketAddr>,
    /// The configuration file (its `[listen] admin`, and `[admin] token_file`).
    #[arg(long, short, env = "SMPP_PROXY_CONFIG", default_value = super::DEFAULT_CONFIG)]
    config: PathBuf,
}

impl Endpoint {
    /// The address, and the token `[admin] token_file` holds (read only from the config; a
    /// file with problems elsewhere still gives them, so that `reload` can hear why it is
    /// refused).
    fn addr(&self) -> Result<(SocketAddr, Option<String>), String> {
        let (admin, token) = match Config::load(&self.config) {
            Ok(c) => (c.admin, c.admin_access.token),
            Err(e) => match Config::admin_of(&self.config) {
                (Some(admin), token) => (Some(admin), token),
                (None, token) if self.admin.is_some() => (None, token),
                (None, _) => return Err(e.in_file(&self.config)),
            },
        };
        match self.admin.or(admin) {
            Some(a) => Ok((a, token)),
            None => Err(format!(
                "{}: no [listen] admin; give --admin ADDR",
                self.config.display()
            )),
        }
    }
}

#[derive(Debug, Args)]
pub(crate) struct StatusArgs {
    #[command(flatten)]
    endpoint: Endpoint,
    /// Print the JSON as served by /status.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
pub(crate) struct FailbackArgs {
    #[command(flatten)]
    endpoint: Endpoint,
    /// The failover group to move back to its first available member.
    #[arg(long)]
    group: String,
}

impl FailbackArgs {
    pub(crate) fn run(self) -> ExitCode {
        self.endpoint.act(&format!("/groups/{}/failback", self.group))
    }
}

/// What to do with an upstream.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub(crate) enum UpstreamAction {
    /// No new traffic; answers and receipts still read (maintenance).
    Drain,
    /// Unbind its sessions until it is enabled.
    Pause,
    /// Back in rotation.
    Enable,
}

#[derive(Debug, Args)]
pub(crate) struct UpstreamArgs {
    /// drain, pause or enable.
    #[arg(value_enum)]
    action: UpstreamAction,
    /// The upstream's name.
    name: String,
    #[command(flatten)]
    endpoint: Endpoint,
}

impl UpstreamArgs {
    pub(crate) fn run(self) -> ExitCode {
        let action = match self.action {
            UpstreamAction::Drain => "drain",
            UpstreamAction::Pause => "pause",
            UpstreamAction::Enable => "enable",
        };
        self.endpoint.act(&format!("/upstreams/{}/{action}", self.name))
    }
}

/// What to do with a client account.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub(crate) enum ClientAction {
    /// Unbind every bind of it, once what each forwarded is answered.
    Unbind,
}

#[derive(Debug, Args)]
pub(crate) struct ClientArgs {
    /// unbind.
    #[arg(value_enum)]
    action: ClientAction,
    /// The account's system_id.
    system_id: String,
    #[command(flatten)]
    endpoint: Endpoint,
}

impl ClientArgs {
    pub(crate) fn run(self) -> ExitCode {
        let ClientAction::Unbind = self.action;
        self.endpoint.act(&format!("/clients/{}/unbind", self.system_id))
    }
}

#[derive(Debug, Args)]
pub(crate) struct TraceArgs {
    /// The message id the client was given.
    id: String,
    #[command(flatten)]
    endpoint: Endpoint,
    /// Print the JSON as served by /messages/ID.
    #[arg(long)]
    json: bool,
}

impl TraceArgs {
    pub(crate) fn run(self) -> ExitCode {
        let answer = self.endpoint.addr().and_then(|(addr, token)| {
            let path = format!("/messages/{}", self.id);
            admin::request(addr, "GET", &path, token.as_deref()).map_err(|e| format!("{addr}: {e}"))
        });
        let text = match answer {
            Ok(text) => text,
            Err(e) => {
                eprintln!("{e}");
                return ExitCode::FAILURE;
            }
        };
        let v: serde_json::Value = match serde_json::from_str(&text) {
            Ok(v) if !self.json => v,
            _ => {
                println!("{}", text.trim());
                return ExitCode::SUCCESS;
            }
        };
        let s = |k: &str| v[k].as_str().unwrap_or("-").to_owned();
        let part = v["part"].as_str().map(|p| format!(" (part {p})")).unwrap_or_default();
        println!(
            "message {}{part}: client {}, upstream {} (SMSC id {}), submitted {} ({}), {} -> {}",
            s("id"),
            s("client"),
            s("upstream"),
            s("smsc_id"),
            s("submitted_at"),
            s("submit_status"),
            s("source"),
            s("destination")
        );
        match v["receipt"].as_object() {
            Some(r) => println!(
                "receipt: {} (err {}) at {}, {} s after the submit",
                r["state"].as_str().unwrap_or("-"),
                r["err"].as_str().unwrap_or("-"),
                r["received_at"].as_str().unwrap_or("-"),
                r["delay_s"]
            ),
            None if v["receipt_requested"] == true => println!("receipt: none yet (waiting for it)"),
            None => println!("receipt: none asked for"),
        }
        ExitCode::SUCCESS
    }
}

#[derive(Debug, Args)]
pub(crate) struct ReloadArgs {
    #[command(flatten)]
    endpoint: Endpoint,
}

impl ReloadArgs {
    pub(crate) fn run(self) -> ExitCode {
        self.endpoint.act("/reload")
    }
}

impl Endpoint {
    /// `POST path`; prints what the proxy says it did (its `message`, else the JSON).
    fn act(&self, path: &str) -> ExitCode {
        let answer = self.addr().and_then(|(addr, token)| {
            admin::request(addr, "POST", path, token.as_deref()).map_err(|e| format!("{addr}: {e}"))
        });
        match answer {
            Ok(text) => {
                let json = serde_json::from_str::<serde_json::Value>(&text).ok();
                match json.as_ref().and_then(|v| v.get("message")).and_then(|m| m.as_str()) {
                    Some(message) => println!("{message}"),
                    None => println!("{}", text.trim()),
                }
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{e}");
                ExitCode::FAILURE
            }
        }
    }
}

impl StatusArgs {
    pub(crate) fn run(self) -> ExitCode {
        let (addr, token) = match self.endpoint.addr() {
            Ok(a) => a,
            Err(e) => {
                eprintln!("{e}");
                return ExitCode::FAILURE;
            }
        };
        let body = match admin::request(addr, "GET", "/status", token.as_deref()) {
            Ok(b) => b,
            Err(e) => {
                eprintln!("{addr}: {e}");
                return ExitCode::FAILURE;
            }
        };
        if self.json {
            println!("{body}");
            return ExitCode::SUCCESS;
        }
        match serde_json::from_str::<Snapshot>(&body) {
            Ok(s) => {
                print!("{}", table(&s));
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{addr}: unexpected /status answer: {e}");
                ExitCode::FAILURE
            }
        }
    }
}

fn table(s: &Snapshot) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let c = &s.counters;
    let _ = writeln!(
        out,
        "node {}: {} correlations held; receipts {} matched, {} unmatched, {} parts suppressed; MO {} routed, {} unroutable\n",
        s.node_id, s.correlations.map_or_else(|| "-".to_owned(), |n| n.to_string()), c.receipts_matched, c.receipts_unmatched, c.part_receipts_suppressed, c.mo_routed, c.mo_unroutable
    );
    let _ = writeln!(
        out,
        "{:<16} {:<10} {:>6} {:>8} {:>9} {:>9} {:>6} {:>10} {:>10} {:>8}",
        "upstream", "state", "bound", "inflight", "rtt ms", "msg/s", "share", "limit/s", "throttled", "errors"
    );
    for status in &s.upstreams {
        let u = &status.figures;
        let limit = u.adaptive_limit.map_or_else(|| "-".to_owned(), |l| format!("{l:.0}"));
        let _ = writeln!(
            out,
            "{:<16} {:<10} {:>6} {:>8} {:>9.1} {:>9.0} {:>5.0}% {:>10} {:>10} {:>8}",
            u.name,
            u.state,
            format!("{}/{}", status.sessions_bound, status.sessions),
            status.inflight,
            u.rtt_ms,
            u.rate,
            u.share * 100.0,
            limit,
            u.throttled,
            u.link_errors
        );
    }
    let _ = writeln!(out, "\n{:<16} {:<13} {:<12} members", "group", "strategy", "active");
    for g in &s.groups {
        let active = g.active.as_deref().unwrap_or("-");
        let _ = writeln!(
            out,
            "{:<16} {:<13} {:<12} {}",
            g.name,
            g.strategy,
            active,
            g.members.join(", ")
        );
    }
    let _ = writeln!(
        out,
        "\n{:<20} {:>6} {:>8} {:>13} {:>8}",
        "client", "binds", "outbox", "refused_full", "expired"
    );
    for cl in &s.clients {
        let _ = writeln!(
            out,
            "{:<20} {:>6} {:>8} {:>13} {:>8}",
            cl.system_id, cl.binds, cl.outbox, cl.outbox_refused_full, cl.outbox_expired
        );
    }
    if let Some(cluster) = &s.cluster {
        let store = if cluster.store_up { "answering" } else { "NOT ANSWERING" };
        let _ = writeln!(out, "\ncluster (shared store {store}):");
        let _ = writeln!(out, "{:<16} {:<6} {:<22} up", "node", "alive", "listen");
        let now = smpp_proxy::store::unix_now();
        for n in &cluster.nodes {
            let mark = if n.this { " (this one)" } else { "" };
            let listen = n.info.as_ref().map_or("-", |i| i.listen.as_str());
            let up = n
                .info
                .as_ref()
                .map_or_else(|| "-".to_owned(), |i| format!("{}s", now.saturating_sub(i.started)));
            let alive = if n.alive { "yes" } else { "no" };
            let _ = writeln!(out, "{:<16} {:<6} {:<22} {up}{mark}", n.id, alive, listen);
        }
        let _ = writeln!(out, "\n{:<20} {:>8}  binds per node", "client", "outbox");
        for c in &cluster.clients {
            let binds: Vec<String> = c.binds.iter().map(|(node, n)| format!("{node}: {n}")).collect();
            let _ = writeln!(out, "{:<20} {:>8}  {}", c.system_id, c.outbox, binds.join(", "));
        }
    }
    out
}
