//! The proxy as an SMSC: the listener and the client-side tasks.
//!
//! [`serve`] accepts connections and gives each its session task ([`client::run`]). What must
//! be delivered to each client system_id is held by its account ([`crate::account`]).

pub mod client;

use crate::context::Context;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing::{info, warn};

/// Accepts clients until shutdown, then waits for their sessions to unbind and end.
pub async fn serve(ctx: Arc<Context>, listener: TcpListener, mut shutdown: watch::Receiver<bool>) {
    let mut sessions = JoinSet::new();
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
            Some(_) = sessions.join_next(), if !sessions.is_empty() => {}
            changed = shutdown.changed() => if changed.is_err() || *shutdown.borrow() { break },
        }
    }
    drop(listener);
    info!(sessions = sessions.len(), "listener closed; unbinding clients");
    while sessions.join_next().await.is_some() {}
}
