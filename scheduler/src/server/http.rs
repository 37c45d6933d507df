//! HTTP with axum: the extender (`/filter`, `/bind`), the webhook (`/webhook`, over TLS), health,
//! readiness and metrics, and the accept loop that serves a router over plain TCP or rustls with
//! graceful shutdown.
//!
//! | route | listener | answer |
//! |---|---|---|
//! | `POST /filter` | extender | `ExtenderFilterResult`; an empty body is HTTP 400 `Please send a request body`; a body that does not decode, or has no `Pod`, is HTTP 200 with `Error` set (HAMi) |
//! | `POST /bind` | extender | `ExtenderBindingResult`, same error rules |
//! | `POST /webhook` | webhook (HTTPS) | `AdmissionReview` response; a body that is not an AdmissionReview is HTTP 400 with the reason |
//! | `GET /healthz` | all | 200 `ok` |
//! | `GET /readyz` | all | 200 once the node and pod watches have synced (body `ok`; with `--leader-elect`, `leader` or `standby`), else 503 naming what is missing |
//! | `GET /metrics` | metrics | Prometheus text format |
//!
//! Limits: request bodies of at most [`EXTENDER_BODY_LIMIT`] (1 MiB, HAMi's) on the extender and
//! [`WEBHOOK_BODY_LIMIT`] on the webhook (HTTP 413 above); request headers must arrive within
//! [`HEADER_READ_TIMEOUT`]; a request is answered within its router's timeout (HTTP 408 after).
//! A bind continues after a timeout or a hang-up: it runs in its own task.

use super::cluster::ClusterApi;
use super::extender::{self, ExtenderBindingResult, ExtenderFilterResult};
use super::service::Scheduler;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::{get, post};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tower_http::timeout::TimeoutLayer;

/// The extender's body limit (HAMi's `http.MaxBytesReader` of 1 MiB).
pub const EXTENDER_BODY_LIMIT: usize = 1 << 20;
/// The webhook's body limit: room for a pod and its old version at the API server's 3 MiB limit.
pub const WEBHOOK_BODY_LIMIT: usize = 7 << 20;
/// The extender's request timeout (kube-scheduler's `httpTimeout` in HAMi's chart is 30s).
pub const EXTENDER_TIMEOUT: Duration = Duration::from_secs(30);
/// The webhook's request timeout (HAMi's chart registers `timeoutSeconds: 10`).
pub const WEBHOOK_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a client may take to send the request headers (and the TLS handshake).
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

async fn healthz() -> &'static str {
    "ok"
}

async fn readyz<C: ClusterApi>(State(svc): State<Arc<Scheduler<C>>>) -> Response {
    if svc.is_ready() {
        // With leader election the body names the role; a standby is ready (it serves the webhook).
        let body = match svc.leadership().is_elected() {
            true if svc.leads() => "leader",
            true => "standby",
            false => "ok",
        };
        return (StatusCode::OK, body).into_response();
    }
    let (nodes, pods) = svc.sync_state();
    (
        StatusCode::SERVICE_UNAVAILABLE,
        format!("not ready: node watch synced {nodes}, pod watch synced {pods}\n"),
    )
        .into_response()
}

fn no_body() -> Response {
    (StatusCode::BAD_REQUEST, "Please send a request body\n").into_response()
}

async fn filter<C: ClusterApi>(State(svc): State<Arc<Scheduler<C>>>, body: Bytes) -> Response {
    if body.is_empty() {
        return no_body();
    }
    let result = match extender::decode_args(&body) {
        Ok(args) => svc.filter(args).await,
        Err(e) => {
            svc.metrics().decision("error");
            ExtenderFilterResult::error(e.0)
        }
    };
    Json(result).into_response()
}

async fn bind<C: ClusterApi>(State(svc): State<Arc<Scheduler<C>>>, body: Bytes) -> Response {
    if body.is_empty() {
        return no_body();
    }
    let result = match extender::decode_binding_args(&body) {
        Ok(args) => svc.bind(args).await,
        Err(e) => {
            svc.metrics().bind_outcome("malformed");
            ExtenderBindingResult { error: e.0 }
        }
    };
    Json(result).into_response()
}

async fn webhook<C: ClusterApi>(State(svc): State<Arc<Scheduler<C>>>, body: Bytes) -> Response {
    if body.is_empty() {
        return no_body();
    }
    match svc.admit(&body) {
        Ok(answer) => Json(answer).into_response(),
        Err(e) => (StatusCode::BAD_REQUEST, format!("{e}\n")).into_response(),
    }
}

async fn metrics<C: ClusterApi>(State(svc): State<Arc<Scheduler<C>>>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        svc.metrics().encode(),
    )
        .into_response()
}

fn probes<C: ClusterApi>(router: Router<Arc<Scheduler<C>>>) -> Router<Arc<Scheduler<C>>> {
    router
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz::<C>))
}

/// The extender: `/filter`, `/bind`, `/healthz`, `/readyz`.
pub fn extender_router<C: ClusterApi>(svc: Arc<Scheduler<C>>) -> Router {
    extender_router_with_timeout(svc, EXTENDER_TIMEOUT)
}

/// [`extender_router`] with another request timeout.
pub fn extender_router_with_timeout<C: ClusterApi>(
    svc: Arc<Scheduler<C>>,
    timeout: Duration,
) -> Router {
    probes(Router::new())
        .route("/filter", post(filter::<C>))
        .route("/bind", post(bind::<C>))
        .layer(DefaultBodyLimit::max(EXTENDER_BODY_LIMIT))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            timeout,
        ))
        .with_state(svc)
}

/// The webhook: `/webhook`, `/healthz`, `/readyz`.
pub fn webhook_router<C: ClusterApi>(svc: Arc<Scheduler<C>>) -> Router {
    probes(Router::new())
        .route("/webhook", post(webhook::<C>))
        .layer(DefaultBodyLimit::max(WEBHOOK_BODY_LIMIT))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            WEBHOOK_TIMEOUT,
        ))
        .with_state(svc)
}

/// Metrics and probes: `/metrics`, `/healthz`, `/readyz`.
pub fn metrics_router<C: ClusterApi>(svc: Arc<Scheduler<C>>) -> Router {
    probes(Router::new())
        .route("/metrics", get(metrics::<C>))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            WEBHOOK_TIMEOUT,
        ))
        .with_state(svc)
}

/// Serves `router` on `listener` (over TLS when `tls` is given) until `shutdown`; then stops
/// accepting and waits up to `grace` for open connections to finish their requests.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    tls: Option<TlsAcceptor>,
    shutdown: CancellationToken,
    grace: Duration,
) {
    let graceful = GracefulShutdown::new();
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = shutdown.cancelled() => break,
        };
        let service = TowerToHyperService::new(router.clone());
        let watcher = graceful.watcher();
        let tls = tls.clone();
        tokio::spawn(async move {
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_READ_TIMEOUT);
            let result = match tls {
                None => {
                    let conn = builder.serve_connection(TokioIo::new(stream), service);
                    watcher.watch(conn).await
                }
                Some(acceptor) => {
                    let stream =
                        match tokio::time::timeout(HEADER_READ_TIMEOUT, acceptor.accept(stream))
                            .await
                        {
                            Ok(Ok(stream)) => stream,
                            Ok(Err(e)) => {
                                tracing::debug!(%peer, error = %e, "TLS handshake failed");
                                return;
                            }
                            Err(_) => {
                                tracing::debug!(%peer, "TLS handshake timed out");
                                return;
                            }
                        };
                    let conn = builder.serve_connection(TokioIo::new(stream), service);
                    watcher.watch(conn).await
                }
            };
            if let Err(e) = result {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("connections still open after the shutdown grace period");
    }
}
