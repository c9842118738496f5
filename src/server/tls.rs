//! A client connection up to its first PDU: the socket's write deadlines, and on the TLS
//! listener the handshake, all within `bind_timeout`. A plaintext SMPP client on the TLS port
//! is told so (its bind refused, in plaintext) rather than left to time out.

use crate::context::Context;
use crate::logging::Limiter;
use crate::pdu::{Body, CommandId, CommandStatus, Pdu, SmppCodec};
use crate::session::Deadlined;
use crate::tls::{looks_like_tls, Stream};
use futures_util::{SinkExt, StreamExt};
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use tokio::net::TcpStream;
use tokio::time::timeout_at;
use tokio_rustls::TlsAcceptor;
use tokio_util::codec::Framed;
use tokio_util::sync::CancellationToken;
use tracing::warn;

/// What a client session reads and writes.
pub type ClientStream = Stream<Deadlined<TcpStream>>;

/// How long a plaintext client on the TLS port gets to send its bind, to be answered.
const PLAINTEXT_WAIT: Duration = Duration::from_secs(1);

/// The connection ready for SMPP, and when it must have bound; `None` when it failed the
/// handshake (logged, counted), closed, or the proxy is shutting down.
pub(super) async fn open(
    ctx: &Context,
    stream: TcpStream,
    peer: SocketAddr,
    tls: Option<TlsAcceptor>,
    shutdown: &CancellationToken,
) -> Option<(ClientStream, Instant)> {
    let _ = stream.set_nodelay(true);
    // Copied out: the generation is not held across the awaits below.
    let timers = ctx.config().client_sessions.clone();
    let bind_deadline = Instant::now() + timers.bind_timeout;
    // Unbound, not even a blocked write (a handshake's included) outlives the bind deadline.
    let mut io = Deadlined::new(stream, timers.write_timeout);
    io.set_hard_deadline(Some(bind_deadline));
    let Some(acceptor) = tls else {
        return Some((Stream::Plain(io), bind_deadline));
    };
    // An unbound session would close at once on shutdown: so does one still at TLS.
    shutdown
        .run_until_cancelled(handshake(ctx, io, peer, acceptor, bind_deadline))
        .await
        .flatten()
}

async fn handshake(
    ctx: &Context,
    io: Deadlined<TcpStream>,
    peer: SocketAddr,
    acceptor: TlsAcceptor,
    bind_deadline: Instant,
) -> Option<(ClientStream, Instant)> {
    let timers = ctx.config().client_sessions.clone();
    let deadline = tokio::time::Instant::from_std(bind_deadline);
    static FAILED: Limiter = Limiter::new(5);
    let mut first = [0u8; 1];
    match timeout_at(deadline, io.get_ref().peek(&mut first)).await {
        Ok(Ok(1)) => {}
        Ok(_) => return None,
        Err(_) => {
            ctx.guard.tls.handshake.fetch_add(1, Ordering::Relaxed);
            if let Some(suppressed) = FAILED.allow() {
                warn!(%peer, suppressed, "TLS handshake failed: nothing sent by bind_timeout");
            }
            return None;
        }
    }
    if !looks_like_tls(first[0]) {
        ctx.guard.tls.plaintext.fetch_add(1, Ordering::Relaxed);
        if let Some(suppressed) = FAILED.allow() {
            warn!(%peer, suppressed, "plaintext SMPP on the TLS listener: refused (connect to the plain listener, or use TLS)");
        }
        refuse_plaintext(io, timers.max_pdu_len, deadline).await;
        return None;
    }
    match timeout_at(deadline, acceptor.accept(io)).await {
        Ok(Ok(tls)) => Some((tls.into(), bind_deadline)),
        failed => {
            ctx.guard.tls.handshake.fetch_add(1, Ordering::Relaxed);
            if let Some(suppressed) = FAILED.allow() {
                let error = match failed {
                    Ok(Err(e)) => e.to_string(),
                    _ => "not finished by bind_timeout".to_owned(),
                };
                warn!(%peer, %error, suppressed, "TLS handshake failed");
            }
            None
        }
    }
}

/// Answers a plaintext client's first PDU in plaintext: a bind with ESME_RBINDFAIL, anything
/// else with generic_nack ESME_RINVBNDSTS; then the connection closes.
async fn refuse_plaintext(io: Deadlined<TcpStream>, max_pdu_len: usize, deadline: tokio::time::Instant) {
    let mut conn = Framed::new(io, SmppCodec::with_max_len(max_pdu_len));
    let wait = deadline.min(tokio::time::Instant::now() + PLAINTEXT_WAIT);
    let Ok(Some(Ok(Ok(pdu)))) = timeout_at(wait, conn.next()).await else {
        return;
    };
    let reply = match pdu.command_id() {
        CommandId::BIND_TRANSMITTER | CommandId::BIND_RECEIVER | CommandId::BIND_TRANSCEIVER => {
            let body = match pdu.command_id() {
                CommandId::BIND_TRANSMITTER => Body::BindTransmitterResp(None),
                CommandId::BIND_RECEIVER => Body::BindReceiverResp(None),
                _ => Body::BindTransceiverResp(None),
            };
            Pdu::new(body).with_status(CommandStatus::ESME_RBINDFAIL)
        }
        _ => Pdu::new(Body::GenericNack).with_status(CommandStatus::ESME_RINVBNDSTS),
    };
    let _ = timeout_at(wait, conn.send(&reply.with_sequence_number(pdu.sequence_number))).await;
}
