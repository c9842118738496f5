//! The admin endpoint: a small HTTP/1.1 server on `[listen] admin` for operators and their
//! tooling. `GET /metrics` is the Prometheus text format, `GET /status` the same figures as JSON
//! (what `smpp-proxy status` prints). Both render one [`Snapshot`] of the proxy's counters and
//! upstream health, so the two never disagree.
//!
//! One action: `POST /groups/NAME/failback` moves a failover group back to its first available
//! member (what `failback = "manual"` waits for; `smpp-proxy failback` sends it).
//!
//! With `[admin] token_file`, actions need `Authorization: Bearer TOKEN` (401 without, 403
//! with a wrong one) and `/status` and `/metrics` show account names only to callers with it.
//! Without a token the endpoint must listen on loopback only (`check` refuses anything else).
//!
//! One request per connection, bounded reads, read and write timeouts, and at most
//! `[admin] max_connections` at once: it is meant for a scraper and an operator on a
//! management network, not for the public.

mod snapshot;

pub use snapshot::{ClientStatus, Counters, ListenerStatus, Snapshot, StoreStatus, UpstreamStatus};

use crate::cluster::bus::Control;
use crate::context::Context;
use crate::logging::Limiter;
use crate::routing::FailBackError;
use crate::session::Deadlined;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

/// Longest request head read.
const MAX_REQUEST: usize = 8 * 1024;
/// A client that has not sent its request by then is dropped.
const READ_TIMEOUT: Duration = Duration::from_secs(5);
/// A client that does not read its answer by then is dropped.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves the admin endpoint until `stop` is cancelled, at most `[admin] max_connections`
/// connections at once (others are closed at accept).
pub async fn serve(ctx: Arc<Context>, listener: TcpListener, stop: CancellationToken) {
    let slots = Arc::new(Semaphore::new(ctx.config.admin_access.max_connections as usize));
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((socket, peer)) => {
                    let Ok(slot) = slots.clone().try_acquire_owned() else {
                        static FULL: Limiter = Limiter::new(1);
                        if let Some(suppressed) = FULL.allow() {
                            warn!(%peer, suppressed, "admin connection refused: admin.max_connections reached");
                        }
                        continue;
                    };
                    let ctx = ctx.clone();
                    tokio::spawn(async move {
                        let _slot = slot;
                        let socket = Deadlined::new(socket, WRITE_TIMEOUT);
                        if let Err(e) = answer(&ctx, socket).await {
                            debug!(%peer, error = %e, "admin request failed");
                        }
                    });
                }
                Err(e) => {
                    debug!(error = %e, "admin accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            _ = stop.cancelled() => return,
        }
    }
}

/// What a request's `Authorization` header proves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Access {
    /// No token is configured (the endpoint is loopback-only): everything is open.
    Open,
    /// The right bearer token.
    Granted,
    /// No token given.
    Anonymous,
    /// A token given, and wrong.
    Refused,
}

/// A request head as far as the endpoint reads it.
#[derive(Debug)]
struct Head<'a> {
    method: &'a [u8],
    /// Without its query string.
    path: &'a [u8],
    bearer: Option<&'a [u8]>,
}

fn parse_head(head: &[u8]) -> Head<'_> {
    let mut lines = head.split(|&b| b == b'\n').map(|l| l.strip_suffix(b"\r").unwrap_or(l));
    let line = lines.next().unwrap_or_default();
    let mut words = line.split(|&b| b == b' ');
    let method = words.next().unwrap_or_default();
    let target = words.next().unwrap_or_default();
    let path = target.split(|&b| b == b'?').next().unwrap_or_default();
    let bearer = lines.take_while(|l| !l.is_empty()).find_map(|l| {
        let (name, value) = l.split_at(l.iter().position(|&b| b == b':')?);
        if !name.eq_ignore_ascii_case(b"authorization") {
            return None;
        }
        let value = value[1..].trim_ascii();
        let (scheme, token) = value.split_at(value.iter().position(|&b| b == b' ')?);
        scheme.eq_ignore_ascii_case(b"bearer").then(|| token.trim_ascii())
    });
    Head { method, path, bearer }
}

fn access(ctx: &Context, bearer: Option<&[u8]>) -> Access {
    match (&ctx.config.admin_access.token, bearer) {
        (None, _) => Access::Open,
        (Some(_), None) => Access::Anonymous,
        (Some(token), Some(given)) if crate::guard::auth::same_token(token.as_bytes(), given) => Access::Granted,
        (Some(_), Some(_)) => Access::Refused,
    }
}

/// An answer: status line, content type, body.
type Answer = (&'static str, &'static str, String);

async fn answer<S: AsyncRead + AsyncWrite + Unpin>(ctx: &Context, mut socket: S) -> std::io::Result<()> {
    let mut head = Vec::with_capacity(512);
    let read = async {
        let mut buf = [0u8; 1024];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < MAX_REQUEST {
            let n = socket.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            head.extend_from_slice(&buf[..n]);
        }
        Ok::<_, std::io::Error>(())
    };
    tokio::time::timeout(READ_TIMEOUT, read)
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "request not sent in time"))??;
    let head = parse_head(&head);
    let access = access(ctx, head.bearer);
    let (status, kind, body) = route(ctx, &head, access).await;
    let challenge = if status.starts_with("401") {
        "WWW-Authenticate: Bearer realm=\"smpp-proxy\"\r\n"
    } else {
        ""
    };
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\n{challenge}Connection: close\r\n\r\n{body}",
        body.len()
    );
    socket.write_all(response.as_bytes()).await?;
    socket.shutdown().await
}

async fn route(ctx: &Context, head: &Head<'_>, access: Access) -> Answer {
    if access == Access::Refused {
        return ("403 Forbidden", "text/plain", "wrong token\n".to_owned());
    }
    // Without the token, account names stay hidden.
    let names = access != Access::Anonymous;
    match (head.method, head.path) {
        (b"GET", b"/metrics") => (
            "200 OK",
            "text/plain; version=0.0.4",
            snapshot(ctx, names).await.prometheus(),
        ),
        (b"GET", b"/status") => (
            "200 OK",
            "application/json",
            serde_json::to_string_pretty(&snapshot(ctx, names).await).unwrap_or_default(),
        ),
        (b"POST", p) if p.starts_with(b"/groups/") => {
            if access == Access::Anonymous {
                return (
                    "401 Unauthorized",
                    "text/plain",
                    "a bearer token is needed\n".to_owned(),
                );
            }
            match p.strip_prefix(b"/groups/").and_then(|p| p.strip_suffix(b"/failback")) {
                Some(name) if !name.is_empty() => fail_back(ctx, &String::from_utf8_lossy(name)).await,
                _ => ("404 Not Found", "text/plain", "POST /groups/NAME/failback\n".to_owned()),
            }
        }
        (b"GET", _) => ("404 Not Found", "text/plain", "try /metrics or /status\n".to_owned()),
        _ => (
            "405 Method Not Allowed",
            "text/plain",
            "GET /metrics, GET /status, POST /groups/NAME/failback\n".to_owned(),
        ),
    }
}

/// The snapshot served, with or without account names.
async fn snapshot(ctx: &Context, names: bool) -> Snapshot {
    let mut snapshot = Snapshot::take_with_cluster(ctx).await;
    if !names {
        snapshot.hide_names();
    }
    snapshot
}

async fn fail_back(ctx: &Context, name: &str) -> Answer {
    match ctx.router.fail_back(name) {
        Ok(member) => {
            // Every node of a cluster fails back with this one.
            let told = match &ctx.cluster {
                Some(cluster) => match cluster.broadcast(&Control::FailBack(name.to_string())).await {
                    Ok(()) => " (every node told)",
                    Err(_) => " (the other nodes could not be told: the store does not answer)",
                },
                None => "",
            };
            ("200 OK", "text/plain", format!("{name}: traffic on {member}{told}\n"))
        }
        Err(e @ FailBackError::NoSuchGroup(_)) => ("404 Not Found", "text/plain", format!("{e}\n")),
        Err(e) => ("409 Conflict", "text/plain", format!("{e}\n")),
    }
}

/// Fetches `path` from an admin endpoint at `addr` (for `smpp-proxy status` and tests): the
/// body of a 200 answer, else an error naming the status line and the body.
pub fn get(addr: std::net::SocketAddr, path: &str) -> std::io::Result<String> {
    request(addr, "GET", path, None)
}

/// Sends `POST path` to an admin endpoint (for `smpp-proxy failback`), as [`get`].
pub fn post(addr: std::net::SocketAddr, path: &str) -> std::io::Result<String> {
    request(addr, "POST", path, None)
}

/// Sends `method path` with the bearer `token` (if any), as [`get`].
pub fn request(addr: std::net::SocketAddr, method: &str, path: &str, token: Option<&str>) -> std::io::Result<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Content-Length: 0\r\nConnection: close\r\n\r\n"
    )?;
    let mut text = String::new();
    s.read_to_string(&mut text)?;
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| std::io::Error::other("not an HTTP answer"))?;
    let status = head.lines().next().unwrap_or_default();
    if !status.contains(" 200 ") {
        return Err(std::io::Error::other(format!("{status}: {}", body.trim())));
    }
    Ok(body.to_owned())
}
