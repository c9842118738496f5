//! The proxy as an SMSC: the listener and the client-side tasks.
//!
//! [`serve`] accepts connections within `[limits]` ([`crate::guard`]), on the TLS listener
//! completes the handshake ([`tls`]), and gives each its session task ([`client::run`]). What
//! must be delivered to each client system_id is held by its account ([`crate::account`]).

pub mod client;
mod tls;

use crate::context::Context;
use crate::guard::Refusal;
use crate::logging::Limiter;
use crate::tls::server::ServerTls;
use std::sync::Arc;
use std::time::Instant;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

/// Accepts clients until `shutdown`, then waits for their sessions to unbind and end. With
/// `tls`, every connection is TLS with its certificate.
pub async fn serve(ctx: Arc<Context>, listener: TcpListener, tls: Option<Arc<ServerTls>>, shutdown: CancellationToken) {
    let sessions = TaskTracker::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let admitted = match ctx.guard.auth.banned(peer.ip(), Instant::now()) {
                        Some(_) => Err(ctx.guard.conns.refuse(Refusal::Banned)),
                        None => ctx.guard.conns.admit(peer.ip()),
                    };
                    match admitted {
                        Ok(admitted) => {
                            let (ctx, shutdown) = (ctx.clone(), shutdown.clone());
                            let acceptor = tls.as_ref().map(|t| t.acceptor());
                            // Moved to a session thread's reactor there.
                            let Ok(stream) = stream.into_std() else { continue };
                            let placement = ctx.sessions.clone();
                            placement.spawn(&sessions, async move {
                                let Ok(stream) = TcpStream::from_std(stream) else { return };
                                let Some((stream, bind_deadline)) = tls::open(&ctx, stream, peer, acceptor, &shutdown).await else {
                                    return;
                                };
                                client::run(ctx, stream, bind_deadline, peer, admitted, shutdown).await;
                            });
                        }
                        Err(why) => {
                            // Closed at once (dropped): no task, no buffer.
                            static REFUSED: Limiter = Limiter::new(5);
                            if let Some(suppressed) = REFUSED.allow() {
                                warn!(%peer, limit = why.as_str(), suppressed, "connection refused");
                            }
                        }
                    }
                }
                Err(e) => {
                    // Out of file descriptors and the like: wait a little rather than spin.
                    static FAILED: Limiter = Limiter::new(1);
                    if let Some(suppressed) = FAILED.allow() {
                        warn!(error = %e, suppressed, "accept failed");
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            },
            _ = shutdown.cancelled() => break,
        }
    }
    drop(listener);
    info!(sessions = sessions.len(), "listener closed; unbinding clients");
    sessions.close();
    sessions.wait().await;
}
