//! The admin endpoint: a small HTTP/1.1 server on `[listen] admin` for operators and their
//! tooling. `GET /metrics` is the Prometheus text format, `GET /status` the same figures as JSON
//! (what `smpp-proxy status` prints). Both render one [`Snapshot`] of the proxy's counters and
//! upstream health, so the two never disagree.
//!
//! One action: `POST /groups/NAME/failback` moves a failover group back to its first available
//! member (what `failback = "manual"` waits for; `smpp-proxy failback` sends it).
//!
//! One request per connection, bounded reads and a timeout: it is meant for a scraper and an
//! operator on a management network, not for the public.

mod snapshot;

pub use snapshot::{ClientStatus, Counters, Snapshot, UpstreamStatus};

use crate::cluster::bus::Control;
use crate::context::Context;
use crate::routing::FailBackError;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tracing::debug;

/// Longest request head read.
const MAX_REQUEST: usize = 8 * 1024;
/// A client that has not sent its request by then is dropped.
const READ_TIMEOUT: Duration = Duration::from_secs(5);

/// Serves the admin endpoint until `stop` is cancelled.
pub async fn serve(ctx: Arc<Context>, listener: TcpListener, stop: CancellationToken) {
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((socket, peer)) => {
                    let ctx = ctx.clone();
                    tokio::spawn(async move {
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

async fn answer(ctx: &Context, mut socket: TcpStream) -> std::io::Result<()> {
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
    let line = head.split(|&b| b == b'\r').next().unwrap_or_default();
    let mut words = line.split(|&b| b == b' ');
    let (method, path) = (words.next().unwrap_or_default(), words.next().unwrap_or_default());
    let (status, kind, body) = match (method, path) {
        (b"GET", b"/metrics") => (
            "200 OK",
            "text/plain; version=0.0.4",
            Snapshot::take_with_cluster(ctx).await.prometheus(),
        ),
        (b"GET", b"/status") => (
            "200 OK",
            "application/json",
            serde_json::to_string_pretty(&Snapshot::take_with_cluster(ctx).await).unwrap_or_default(),
        ),
        (b"POST", p) if p.starts_with(b"/groups/") && p.ends_with(b"/failback") => {
            let name = String::from_utf8_lossy(&p[b"/groups/".len()..p.len() - b"/failback".len()]);
            match ctx.router.fail_back(&name) {
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
        (b"GET", _) => ("404 Not Found", "text/plain", "try /metrics or /status\n".to_owned()),
        _ => (
            "405 Method Not Allowed",
            "text/plain",
            "GET /metrics, GET /status, POST /groups/NAME/failback\n".to_owned(),
        ),
    };
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    socket.write_all(response.as_bytes()).await?;
    socket.shutdown().await
}

/// Fetches `path` from an admin endpoint at `addr` (for `smpp-proxy status` and tests): the
/// body of a 200 answer, else an error naming the status line and the body.
pub fn get(addr: std::net::SocketAddr, path: &str) -> std::io::Result<String> {
    request(addr, "GET", path)
}

/// Sends `POST path` to an admin endpoint (for `smpp-proxy failback`), as [`get`].
pub fn post(addr: std::net::SocketAddr, path: &str) -> std::io::Result<String> {
    request(addr, "POST", path)
}

fn request(addr: std::net::SocketAddr, method: &str, path: &str) -> std::io::Result<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
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
