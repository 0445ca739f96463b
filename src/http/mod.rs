//! The HTTP endpoints of the service, served with axum on a listener the caller binds.
//!
//! | route | answers | token |
//! |---|---|---|
//! | `GET /metrics` | the Prometheus registry, text format 0.0.4 | required when configured |
//! | `GET /healthz` | `200 ok`: the process is alive and serving | never |
//! | `GET /readyz` | `200 ready`, or `503` and the reason ([`Readiness`]) | never |
//! | `GET /api/v1/storms` | `{"active": [...], "recently_ended": [...]}` ([`StormBoard`]) | required when configured |
//! | anything else | `404` (`405` for another method on a known path) | required when configured |
//!
//! Access control: with `http.bearer_token` set, everything but the two probes needs
//! `Authorization: Bearer <token>` (see [`auth`] for why `/metrics` is protected too and the
//! probes are not); without it the endpoints are open, and the default listen address is
//! loopback so that nothing is exposed by accident.
//!
//! Hardening, with what axum and tokio give (no tower-http): only `GET` (and `HEAD`) is routed;
//! a request declaring a body over [`MAX_BODY_BYTES`] is refused with `413` before routing (and
//! [`DefaultBodyLimit`] caps any extractor); every request is bounded by [`REQUEST_TIMEOUT`];
//! responses carry `Cache-Control: no-store`; and a graceful shutdown waits at most
//! [`SHUTDOWN_GRACE`] for open connections. Limits: `axum::serve` gives hyper no timer, so
//! there is no header-read timeout: a client that stalls mid-headers holds its connection until
//! it goes away (or until shutdown, bounded by the grace period); the timeout covers handling.
//! Keep the listener on loopback or behind a proxy when that matters. Nothing here logs or returns a sender address: the
//! board holds only what [`crate::engine::StormSnapshot`] and [`crate::alert::Alert`] carry
//! without senders, and request logs name the method, path, status and duration only.
//!
//! Layout: [`auth`] (bearer token, constant-time compare), [`board`] (the storms list),
//! [`readiness`] (the `/readyz` conditions); this file holds the state, routes and server.

pub mod auth;
pub mod board;
pub mod readiness;

pub use auth::{BearerToken, TokenError};
pub use board::{LastHour, StormBoard, StormRecord, StormsView, RECENTLY_ENDED};
pub use readiness::Readiness;

use crate::metrics::Metrics;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use std::future::{Future, IntoFuture};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpListener;

/// Largest request body accepted (no route takes a body; this bounds what a client may send).
pub const MAX_BODY_BYTES: usize = 16 * 1024;
/// Longest a request may take before it is answered `503`.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest a graceful shutdown waits for open connections before `serve` returns anyway.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// Longest path written to a log line (paths are client input).
const MAX_LOGGED_PATH: usize = 128;

/// Why the HTTP state could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HttpError {
    /// `http.bearer_token` is set but unusable.
    #[error(transparent)]
    BearerToken(#[from] TokenError),
}

/// What the handlers share: metrics, the storm board, readiness and the optional token. Cheap
/// to clone (one `Arc`). The service keeps clones of [`board`](Self::board) and
/// [`readiness`](Self::readiness) to publish into them.
#[derive(Clone, Debug)]
pub struct HttpState {
    inner: Arc<SharedState>,
}

#[derive(Debug)]
struct SharedState {
    metrics: Arc<Metrics>,
    board: Arc<StormBoard>,
    readiness: Arc<Readiness>,
    token: Option<BearerToken>,
}

impl HttpState {
    /// State with an empty board, not ready, and `bearer_token` (from `http.bearer_token`)
    /// protecting everything but the probes when set. An empty or non-ASCII token is an error,
    /// not "no token".
    pub fn new(metrics: Arc<Metrics>, bearer_token: Option<String>) -> Result<Self, HttpError> {
        let token = bearer_token.as_deref().map(BearerToken::new).transpose()?;
        Ok(Self {
            inner: Arc::new(SharedState {
                metrics,
                board: Arc::new(StormBoard::new()),
                readiness: Arc::new(Readiness::new()),
                token,
            }),
        })
    }

    /// The metrics `/metrics` exports.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.inner.metrics
    }

    /// The storm board `/api/v1/storms` shows; the detection thread updates it.
    pub fn board(&self) -> &Arc<StormBoard> {
        &self.inner.board
    }

    /// The readiness `/readyz` reports; the service loop sets it.
    pub fn readiness(&self) -> &Arc<Readiness> {
        &self.inner.readiness
    }

    /// Whether a bearer token is configured.
    pub fn requires_token(&self) -> bool {
        self.inner.token.is_some()
    }

    /// Whether a request for `path` with this `Authorization` header may proceed.
    fn authorized(&self, path: &str, authorization: Option<&HeaderValue>) -> bool {
        match &self.inner.token {
            None => true,
            Some(_) if auth::is_probe(path) => true,
            Some(token) => token.accepts(authorization),
        }
    }
}

/// The routes, with the guard middleware (size limit, token, timeout, headers, request log).
pub fn router(state: HttpState) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/api/v1/storms", get(storms))
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(state.clone(), guard))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}

/// Serves the endpoints on `listener` until `shutdown` completes, then stops accepting, marks
/// the instance not ready, lets open requests finish for up to [`SHUTDOWN_GRACE`] and returns.
pub async fn serve(
    listener: TcpListener,
    state: HttpState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let address = listener.local_addr()?;
    tracing::info!(%address, token = state.requires_token(), "HTTP endpoints listening");
    let (stopping_tx, mut stopping_rx) = tokio::sync::watch::channel(false);
    let readiness = Arc::clone(state.readiness());
    let signal = async move {
        shutdown.await;
        readiness.set_shutting_down();
        tracing::info!(%address, "HTTP endpoints shutting down");
        // The receiver lives until `serve` returns; an error only means nobody waits.
        let _ = stopping_tx.send(true);
    };
    let server = axum::serve(listener, router(state)).with_graceful_shutdown(signal);
    let grace = async move {
        if stopping_rx.wait_for(|stopping| *stopping).await.is_err() {
            // The signal was dropped with the server, which has then already returned.
            std::future::pending::<()>().await;
        }
        tokio::time::sleep(SHUTDOWN_GRACE).await;
    };
    tokio::select! {
        result = server.into_future() => result,
        () = grace => {
            tracing::warn!(
                %address,
                grace_seconds = SHUTDOWN_GRACE.as_secs(),
                "HTTP connections still open after the shutdown grace period; closing"
            );
            Ok(())
        }
    }
}

/// Refuses oversized bodies and missing tokens, bounds the handler's time, adds the common
/// headers and logs the request (method, path, status, duration; never headers or query).
async fn guard(State(state): State<HttpState>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let declared_body = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.trim().parse::<u64>().ok());

    let mut response = if declared_body.is_some_and(|n| n > MAX_BODY_BYTES as u64) {
        (StatusCode::PAYLOAD_TOO_LARGE, "request body too large\n").into_response()
    } else if !state.authorized(&path, request.headers().get(header::AUTHORIZATION)) {
        tracing::debug!(path = %loggable(&path), "HTTP request without a valid bearer token");
        unauthorized()
    } else {
        match tokio::time::timeout(REQUEST_TIMEOUT, next.run(request)).await {
            Ok(response) => response,
            Err(_) => {
                tracing::warn!(path = %loggable(&path), "HTTP request timed out");
                (StatusCode::SERVICE_UNAVAILABLE, "request timed out\n").into_response()
            }
        }
    };
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    tracing::debug!(
        %method,
        path = %loggable(&path),
        status = response.status().as_u16(),
        elapsed_us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX),
        "HTTP request"
    );
    response
}

/// A path cut to [`MAX_LOGGED_PATH`] characters for logs.
fn loggable(path: &str) -> &str {
    match path.char_indices().nth(MAX_LOGGED_PATH) {
        Some((end, _)) => &path[..end],
        None => path,
    }
}

/// `401` with the challenge RFC 6750 asks for.
fn unauthorized() -> Response {
    (
        StatusCode::UNAUTHORIZED,
        [(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"stormwatch\""),
        )],
        "unauthorized\n",
    )
        .into_response()
}

/// `GET /metrics`: the registry in the text exposition format.
async fn metrics(State(state): State<HttpState>) -> Response {
    let families = state.metrics().registry.gather();
    match prometheus::TextEncoder::new().encode_to_string(&families) {
        Ok(body) => (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static(prometheus::TEXT_FORMAT),
            )],
            body,
        )
            .into_response(),
        Err(error) => {
            tracing::error!(%error, "cannot encode metrics");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "metrics encoding failed\n",
            )
                .into_response()
        }
    }
}

/// `GET /healthz`: the process is alive and answering.
async fn healthz() -> &'static str {
    "ok"
}

/// `GET /readyz`: `200 ready` or `503` with the reason.
async fn readyz(State(state): State<HttpState>) -> Response {
    match state.readiness().check() {
        Ok(()) => (StatusCode::OK, "ready").into_response(),
        Err(reason) => (StatusCode::SERVICE_UNAVAILABLE, reason).into_response(),
    }
}

/// `GET /api/v1/storms`: active and recently ended storms.
async fn storms(State(state): State<HttpState>) -> Json<StormsView> {
    Json(state.board().view())
}

/// Any other path.
async fn not_found() -> (StatusCode, &'static str) {
    (StatusCode::NOT_FOUND, "not found\n")
}
