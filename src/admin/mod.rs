//! The admin endpoint on `[listen] admin`, for operators and their tooling: axum's routing
//! over hyper's HTTP/1.1 (keep-alive, `HEAD`, `405` with `Allow`, query strings ignored):
//!
//! | request | what it does |
//! |---|---|
//! | `GET /` | the status page (and `/app.js`: its script; both in the binary) |
//! | `GET /history` | the last 15 minutes of each upstream, and recent changes |
//! | `GET /metrics` | the Prometheus text format |
//! | `GET /status` | the same figures as JSON (what `smpp-proxy status` prints) |
//! | `POST /upstreams/{name}/drain` | no new traffic; answers and receipts still read |
//! | `POST /upstreams/{name}/pause` | unbound until enabled |
//! | `POST /upstreams/{name}/enable` | back in rotation |
//! | `POST /clients/{system_id}/unbind` | every bind of the account unbound politely |
//! | `POST /groups/{name}/failback` | a failover group back to its first available member |
//! | `POST /reload` | the configuration file read again and applied |
//! | `GET /messages/{id}` | what happened to one message: client, upstream, SMSC id, receipt |
//!
//! `/metrics` and `/status` render one [`Snapshot`], so the two never disagree. In a cluster,
//! modes, unbinds and failbacks are told to every node.
//!
//! With `[admin] token_file`, actions need `Authorization: Bearer TOKEN` (401 without, 403
//! with a wrong one) and `/status` and `/metrics` show account names only to callers with it.
//! Without a token the endpoint must listen on loopback only (`check` refuses anything else).
//! Errors are JSON (`{"error": "..."}`) with the status that says why: 404 for a name nothing
//! has, 409 for a state that does not allow the action, 422 for a configuration refused.
//!
//! At most `[admin] max_connections` connections at once (others are closed at accept), and a
//! write deadline on each: it is meant for a scraper and an operator on a management network,
//! not for the public.

mod client;
mod exposition;
mod process;
mod snapshot;

pub use client::{get, post, request};
pub use process::ProcessStatus;
pub use snapshot::{ClientStatus, ConfigStatus, Counters, ListenerStatus, Snapshot, StoreStatus, UpstreamStatus};

use crate::cluster::bus::Control;
use crate::context::delivered::Done;
use crate::context::reload::ReloadError;
use crate::context::Context;
use crate::logging::Limiter;
use crate::routing::{FailBackError, ModeError};
use crate::session::Deadlined;
use crate::upstream::Mode;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get as on_get, post as on_post};
use axum::{Json, Router};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::warn;

/// A client that has not sent a request head by then is dropped.
const READ_TIMEOUT: Duration = Duration::from_secs(5);
/// A client that does not read its answer by then is dropped.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves the admin endpoint until `stop` is cancelled; connections beyond `[admin]
/// max_connections` are closed at accept.
pub async fn serve(ctx: Arc<Context>, listener: TcpListener, stop: CancellationToken) {
    let slots = Arc::new(Semaphore::new(ctx.config().admin_access.max_connections as usize));
    let app = app(ctx);
    let connections = TaskTracker::new();
    loop {
        let (socket, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    tracing::debug!(error = %e, "admin accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = stop.cancelled() => break,
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            static FULL: Limiter = Limiter::new(1);
            if let Some(suppressed) = FULL.allow() {
                warn!(%peer, suppressed, "admin connection refused: admin.max_connections reached");
            }
            continue;
        };
        connections.spawn(connection(socket, app.clone(), slot, stop.clone()));
    }
    connections.close();
    let _ = tokio::time::timeout(WRITE_TIMEOUT, connections.wait()).await;
}

/// The endpoint's routes over `ctx`.
fn app(ctx: Arc<Context>) -> Router {
    Router::new()
        .route("/", on_get(page))
        .route("/app.js", on_get(script))
        // Browsers ask for it; there is none (and no 404 in their console).
        .route("/favicon.ico", on_get(|| async { StatusCode::NO_CONTENT }))
        .route("/history", on_get(history))
        .route("/metrics", on_get(metrics))
        .route("/status", on_get(status))
        .route("/reload", on_post(reload))
        .route("/upstreams/{name}/{action}", on_post(upstream))
        .route("/clients/{system_id}/unbind", on_post(unbind))
        .route("/groups/{name}/failback", on_post(failback))
        .route("/messages/{id}", on_get(trace))
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "no such resource: see GET /status, GET /metrics") })
        .with_state(ctx)
}

/// Serves one connection (keep-alive, a client that half-closes after its request still gets
/// its answer), holding its place among `max_connections` until it closes.
async fn connection(socket: TcpStream, app: Router, _slot: OwnedSemaphorePermit, stop: CancellationToken) {
    let io = TokioIo::new(Deadlined::new(socket, WRITE_TIMEOUT));
    let served = hyper::server::conn::http1::Builder::new()
        .half_close(true)
        .timer(TokioTimer::new())
        .header_read_timeout(READ_TIMEOUT)
        .serve_connection(io, TowerToHyperService::new(app));
    tokio::pin!(served);
    tokio::select! {
        _ = served.as_mut() => {}
        _ = stop.cancelled() => {
            served.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(WRITE_TIMEOUT, served).await;
        }
    }
}

/// An error answer: `{"error": "..."}` with its status (and a challenge with 401).
#[derive(Debug)]
struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, message: impl std::fmt::Display) -> ApiError {
        ApiError {
            status,
            message: message.to_string(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, Json(json!({ "error": self.message }))).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"smpp-proxy\""),
            );
        }
        response
    }
}

type Answer = Result<Response, ApiError>;

/// What a request's `Authorization` header proves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Access {
    /// No token is configured (the endpoint is loopback-only): everything is open.
    Open,
    /// The right bearer token.
    Granted,
    /// No token given.
    Anonymous,
}

/// Who is asking: a wrong token is refused outright (403).
fn access(ctx: &Context, headers: &HeaderMap) -> Result<Access, ApiError> {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim());
    match (&ctx.live().config.admin_access.token, bearer) {
        (None, _) => Ok(Access::Open),
        (Some(_), None) => Ok(Access::Anonymous),
        (Some(token), Some(given)) if crate::guard::auth::same_token(token.as_bytes(), given.as_bytes()) => {
            Ok(Access::Granted)
        }
        (Some(_), Some(_)) => Err(ApiError::new(StatusCode::FORBIDDEN, "wrong token")),
    }
}

/// Actions need the token, when there is one, and never come from another site's page: a
/// browser adds `Origin` to a cross-site POST (which needs no preflight without a body), so an
/// endpoint open on loopback cannot be driven by a page the operator happens to visit.
fn may_act(ctx: &Context, headers: &HeaderMap) -> Result<(), ApiError> {
    if let Some(origin) = headers.get(header::ORIGIN) {
        let host = headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or_default();
        let origin = origin.to_str().unwrap_or_default();
        let own = ["http://", "https://"]
            .iter()
            .any(|scheme| origin.strip_prefix(scheme) == Some(host));
        if !own {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "a request from another site's page: refused",
            ));
        }
    }
    match access(ctx, headers)? {
        Access::Anonymous => Err(ApiError::new(StatusCode::UNAUTHORIZED, "a bearer token is needed")),
        Access::Open | Access::Granted => Ok(()),
    }
}

/// The snapshot served; account names only with the token.
async fn snapshot(ctx: &Context, headers: &HeaderMap) -> Result<Snapshot, ApiError> {
    let names = access(ctx, headers)? != Access::Anonymous;
    let mut snapshot = Snapshot::take_with_cluster(ctx).await;
    if !names {
        snapshot.hide_names();
    }
    Ok(snapshot)
}

/// What the page may load and talk to: itself only.
const PAGE_POLICY: &str =
    "default-src 'none'; script-src 'self'; style-src 'unsafe-inline'; connect-src 'self'; img-src 'self'; frame-ancestors 'none'";

async fn page() -> Response {
    let headers = [
        (header::CONTENT_TYPE, "text/html; charset=utf-8"),
        (header::CONTENT_SECURITY_POLICY, PAGE_POLICY),
        (header::CACHE_CONTROL, "no-cache"),
    ];
    (headers, include_str!("page/index.html")).into_response()
}

async fn script() -> Response {
    let headers = [
        (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
        (header::CACHE_CONTROL, "no-cache"),
    ];
    (headers, include_str!("page/app.js")).into_response()
}

async fn history(State(ctx): State<Arc<Context>>, headers: HeaderMap) -> Answer {
    let names = access(&ctx, &headers)? != Access::Anonymous;
    Ok(Json(ctx.history.recent(names)).into_response())
}

async fn metrics(State(ctx): State<Arc<Context>>, headers: HeaderMap) -> Answer {
    let text = snapshot(&ctx, &headers).await?.prometheus();
    Ok(([(header::CONTENT_TYPE, exposition::CONTENT_TYPE)], text).into_response())
}

async fn status(State(ctx): State<Arc<Context>>, headers: HeaderMap) -> Answer {
    Ok(Json(snapshot(&ctx, &headers).await?).into_response())
}

async fn reload(State(ctx): State<Arc<Context>>, headers: HeaderMap) -> Answer {
    may_act(&ctx, &headers)?;
    match ctx.reloader.reload_file(&ctx).await {
        Ok(report) => Ok(Json(report).into_response()),
        Err(e @ (ReloadError::NoFile | ReloadError::Busy)) => Err(ApiError::new(StatusCode::CONFLICT, e)),
        Err(e) => Err(ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, e)),
    }
}

/// Tells every node of a cluster (this one has done it already); says how that went.
async fn tell_cluster(ctx: &Context, command: Control) -> &'static str {
    match &ctx.cluster {
        Some(cluster) => match cluster.broadcast(&command).await {
            Ok(()) => " (every node told)",
            Err(_) => " (the other nodes could not be told: the store does not answer)",
        },
        None => "",
    }
}

async fn upstream(
    State(ctx): State<Arc<Context>>,
    headers: HeaderMap,
    Path((name, action)): Path<(String, String)>,
) -> Answer {
    may_act(&ctx, &headers)?;
    let mode = match action.as_str() {
        "drain" => Mode::Draining,
        "pause" => Mode::Paused,
        "enable" => Mode::Enabled,
        _ => {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                "POST /upstreams/NAME/drain, /pause or /enable",
            ))
        }
    };
    let was = ctx.live().router.set_mode(&name, mode).map_err(|e| match e {
        ModeError::NoSuchUpstream(_) => ApiError::new(StatusCode::NOT_FOUND, e),
        ModeError::Already(..) => ApiError::new(StatusCode::CONFLICT, e),
    })?;
    let what = format!(
        "upstream {name}: {} by the operator (was {})",
        mode.as_str(),
        was.as_str()
    );
    ctx.history.note(what, false);
    let told = tell_cluster(&ctx, Control::Mode(name.clone(), mode)).await;
    Ok(Json(json!({
        "upstream": name,
        "mode": mode.as_str(),
        "was": was.as_str(),
        "message": format!("{name}: {}{told}", mode.as_str()),
    }))
    .into_response())
}

async fn unbind(State(ctx): State<Arc<Context>>, headers: HeaderMap, Path(system_id): Path<String>) -> Answer {
    may_act(&ctx, &headers)?;
    let Some(account) = ctx.live().accounts.get(&system_id).cloned() else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("no client is called {system_id:?}"),
        ));
    };
    let binds = account.here().binds;
    // In a cluster its binds may be on other nodes: told, whatever this one holds.
    if binds == 0 && ctx.cluster.is_none() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!("{system_id:?} is not bound"),
        ));
    }
    account.unbind_all();
    ctx.history
        .note(format!("client {system_id}: unbound by the operator"), true);
    let told = tell_cluster(&ctx, Control::Unbind(system_id.clone())).await;
    Ok(Json(json!({
        "client": system_id,
        "binds": binds,
        "message": format!("{system_id}: {binds} bind(s) here unbinding{told}"),
    }))
    .into_response())
}

async fn failback(State(ctx): State<Arc<Context>>, headers: HeaderMap, Path(name): Path<String>) -> Answer {
    may_act(&ctx, &headers)?;
    let member = ctx.live().router.fail_back(&name).map_err(|e| match e {
        FailBackError::NoSuchGroup(_) => ApiError::new(StatusCode::NOT_FOUND, e),
        _ => ApiError::new(StatusCode::CONFLICT, e),
    })?;
    ctx.history
        .note(format!("group {name}: failed back to {member} by the operator"), false);
    // Every node of a cluster fails back with this one.
    let told = tell_cluster(&ctx, Control::FailBack(name.clone())).await;
    Ok(Json(json!({
        "group": name,
        "active": member,
        "message": format!("{name}: traffic on {member}{told}"),
    }))
    .into_response())
}

/// `2026-11-30T08:20:01.000Z` for Unix seconds.
fn iso(secs: u64) -> String {
    crate::trail::timestamp(std::time::UNIX_EPOCH + Duration::from_secs(secs))
}

/// What happened to the message its client knows as `id`: its correlation while it waits for
/// a final receipt (from the store, so any node of a cluster answers), else its final receipt
/// if this node remembers it. Names clients: the token is needed, when there is one.
async fn trace(State(ctx): State<Arc<Context>>, headers: HeaderMap, Path(id): Path<String>) -> Answer {
    may_act(&ctx, &headers)?;
    let clients: Vec<String> = ctx.live().accounts.keys().cloned().collect();
    let mut pending = None;
    for client in &clients {
        match ctx.store.find_by_client(client, &id).await {
            Ok(Some(c)) => {
                pending = Some(c);
                break;
            }
            Ok(None) => {}
            Err(e) => {
                return Err(ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("the store: {e}"),
                ))
            }
        }
    }
    let Some(m) = pending.map(|c| Done::of(&c, None)).or_else(|| ctx.delivered.get(&id)) else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!(
                "no message {id:?}: not waiting for a receipt, and not among the last final receipts here (about {}, kept per session thread; see the message trail)",
                crate::context::delivered::SLOTS
            ),
        ));
    };
    let receipt = m.receipt.map(|r| {
        json!({
            "state": r.state.map(|s| s.text()),
            "err": r.err.map(|s| s.text()),
            "received_at": iso(r.at),
            "delay_s": r.at.saturating_sub(m.submitted_at),
        })
    });
    Ok(Json(json!({
        "id": m.id.text(),
        "client": m.client.text(),
        "upstream": m.upstream.text(),
        "smsc_id": m.smsc_id.text(),
        "submitted_at": iso(m.submitted_at),
        "submit_status": "ESME_ROK",
        "source": m.source.text(),
        "destination": m.destination.text(),
        "part": m.part.map(|(part, of)| format!("{part}/{of}")),
        "receipt_requested": m.registered_delivery & 0x03 != 0,
        "waiting_for_receipt": receipt.is_none(),
        "receipt": receipt,
    }))
    .into_response())
}
