//! The proxy as an SMSC: the listener and the client-side tasks.
//!
//! [`serve`] accepts connections and gives each its session task ([`client::run`]). What must
//! be delivered to each client system_id is held by its account ([`crate::account`]).

pub mod client;

use crate::context::Context;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

/// Accepts clients until `shutdown`, then waits for their sessions to unbind and end.
pub async fn serve(ctx: Arc<Context>, listener: TcpListener, shutdown: CancellationToken) {
    let sessions = TaskTracker::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    sessions.spawn(client::run(ctx.clone(), stream, peer, shutdown.clone()));
                }
                Err(e) => {
                    // Out of file descriptors and the like: wait a little rather than spin.
                    warn!(error = %e, "accept failed");
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
