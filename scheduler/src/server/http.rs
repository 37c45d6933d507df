//! HTTP with axum: the extender (`/filter`, `/bind`), the webhook (`/webhook`, over TLS), health,
//! readiness and metrics, and the accept loop that serves a router over plain TCP or rustls with
//! graceful shutdown.
//!
//! | route | listener | answer |
//! |---|---|---|
//! | `POST /filter` | extender | `ExtenderFilterResult`; a body that is empty, does not decode, or has no `Pod` is HTTP 200 with `Error` set, as HAMi answers (an empty body: `EOF: ...`, Go's decoder error; HAMi's `checkBody` 400 never fires, Go's server never passes a nil body) |
//! | `POST /bind` | extender | `ExtenderBindingResult`, same error rules |
//! | `POST /webhook` | webhook (HTTPS) | `AdmissionReview` response; a body that is not an AdmissionReview is HTTP 400 with the reason |
//! | `GET /healthz` | all | 200 `ok`; 503 naming the background task that ended before shutdown |
//! | `GET /readyz` | all | 200 once the node and pod watches have synced and while [`Health`] sees no problem (API answering, no failed watch, not shutting down), body `ok` (with `--leader-elect`, `leader` or `standby`); else 503 naming each reason |
//! | `GET /metrics` | metrics | Prometheus text format |
//!
//! Limits: request bodies of at most [`EXTENDER_BODY_LIMIT`] (1 MiB, HAMi's) on the extender and
//! [`WEBHOOK_BODY_LIMIT`] (3 MiB, kube-apiserver's own request limit) on the webhook (HTTP 413
//! above); at most `max_in_flight` webhook reviews at once (default [`WEBHOOK_MAX_IN_FLIGHT`]): a
//! request over the limit waits up to [`WEBHOOK_QUEUE_WAIT`] for a slot, then is answered HTTP 429
//! with `Retry-After: 1`; request headers must arrive within [`HEADER_READ_TIMEOUT`]; a request is
//! answered within its router's timeout (HTTP 408 after). A bind continues after a timeout or a
//! hang-up: it runs in its own task.
//!
//! [`Health`] reaches the probe handlers as an axum `Extension` (the routers of `serve` carry one;
//! a router without it answers from the service's sync state alone).

use super::cluster::ClusterApi;
use super::extender::{self, ExtenderBindingResult, ExtenderFilterResult};
use super::health::Health;
use super::service::Scheduler;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Json, Response};
use axum::routing::{get, post};
use axum::{Extension, Router};
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
/// The webhook's body limit: kube-apiserver's own request body limit (3 MiB).
pub const WEBHOOK_BODY_LIMIT: usize = 3 << 20;
/// Webhook reviews served at once by default (`serve --webhook-max-in-flight`).
pub const WEBHOOK_MAX_IN_FLIGHT: usize = 64;
/// How long a webhook request over the in-flight limit waits for a slot before HTTP 429.
pub const WEBHOOK_QUEUE_WAIT: Duration = Duration::from_secs(1);
/// The extender's request timeout (kube-scheduler's `httpTimeout` in HAMi's chart is 30s).
pub const EXTENDER_TIMEOUT: Duration = Duration::from_secs(30);
/// The webhook's request timeout (HAMi's chart registers `timeoutSeconds: 10`).
pub const WEBHOOK_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a client may take to send the request headers (and the TLS handshake).
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

async fn healthz(health: Option<Extension<Arc<Health>>>) -> Response {
    match health.map_or(Ok(()), |Extension(h)| h.liveness()) {
        Ok(()) => (StatusCode::OK, "ok").into_response(),
        Err(why) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("unhealthy: {why}\n"),
        )
            .into_response(),
    }
}

async fn readyz<C: ClusterApi>(
    State(svc): State<Arc<Scheduler<C>>>,
    health: Option<Extension<Arc<Health>>>,
) -> Response {
    let mut reasons = Vec::new();
    if let Some(Extension(health)) = &health
        && let Err(why) = health.readiness()
    {
        reasons.push(why);
    }
    if !svc.is_ready() {
        let (nodes, pods) = svc.sync_state();
        reasons.push(format!(
            "node watch synced {nodes}, pod watch synced {pods}"
        ));
    }
    if reasons.is_empty() {
        // With leader election the body names the role; a standby is ready (it serves the webhook).
        let body = match svc.leadership().is_elected() {
            true if svc.leads() => "leader",
            true => "standby",
            false => "ok",
        };
        return (StatusCode::OK, body).into_response();
    }
    if let Some(Extension(health)) = &health {
        health.metrics().ready.set(0);
    }
    (
        StatusCode::SERVICE_UNAVAILABLE,
        format!("not ready: {}\n", reasons.join("; ")),
    )
        .into_response()
}

fn no_body() -> Response {
    (StatusCode::BAD_REQUEST, "Please send a request body\n").into_response()
}

/// HAMi's answer to an empty extender body: its JSON decoder's `EOF`, as `Error` with HTTP 200.
const EMPTY_BODY: &str = "EOF: the request body is empty";

async fn filter<C: ClusterApi>(State(svc): State<Arc<Scheduler<C>>>, body: Bytes) -> Response {
    let decoded = if body.is_empty() {
        Err(extender::WireError(format!("ExtenderArgs: {EMPTY_BODY}")))
    } else {
        extender::decode_args(&body)
    };
    let result = match decoded {
        Ok(args) => svc.filter(args).await,
        Err(e) => {
            svc.metrics().decision("error");
            ExtenderFilterResult::error(e.0)
        }
    };
    Json(result).into_response()
}

async fn bind<C: ClusterApi>(State(svc): State<Arc<Scheduler<C>>>, body: Bytes) -> Response {
    let decoded = if body.is_empty() {
        Err(extender::WireError(format!(
            "ExtenderBindingArgs: {EMPTY_BODY}"
        )))
    } else {
        extender::decode_binding_args(&body)
    };
    let result = match decoded {
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

async fn metrics<C: ClusterApi>(
    State(svc): State<Arc<Scheduler<C>>>,
    health: Option<Extension<Arc<Health>>>,
) -> Response {
    let text = match health {
        Some(Extension(health)) => {
            // The readiness gauge reflects this moment, not the last probe.
            let ready = health.readiness().is_ok() && svc.is_ready();
            health.metrics().ready.set(i64::from(ready));
            svc.metrics().encode_with(health.metrics())
        }
        None => svc.metrics().encode(),
    };
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    )
        .into_response()
}

/// Wraps `router`'s routes so that at most `max_in_flight` requests run at once; one over the
/// limit waits up to `wait` for a slot, then is answered HTTP 429 with `Retry-After: 1` and
/// `on_reject` is called. Requests are never dropped unanswered.
pub fn limit_in_flight<S: Clone + Send + Sync + 'static>(
    router: Router<S>,
    max_in_flight: usize,
    wait: Duration,
    on_reject: impl Fn() + Clone + Send + Sync + 'static,
) -> Router<S> {
    let slots = Arc::new(tokio::sync::Semaphore::new(max_in_flight.max(1)));
    router.route_layer(axum::middleware::from_fn(
        move |request: Request, next: Next| {
            let slots = slots.clone();
            let on_reject = on_reject.clone();
            async move {
                match tokio::time::timeout(wait, slots.acquire_owned()).await {
                    Ok(Ok(_permit)) => next.run(request).await,
                    _ => {
                        on_reject();
                        (
                            StatusCode::TOO_MANY_REQUESTS,
                            [(header::RETRY_AFTER, "1")],
                            "too many webhook requests in flight; retry\n",
                        )
                            .into_response()
                    }
                }
            }
        },
    ))
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
    webhook_router_with_limit(svc, WEBHOOK_MAX_IN_FLIGHT)
}

/// [`webhook_router`] serving at most `max_in_flight` reviews at once (see [`limit_in_flight`]).
pub fn webhook_router_with_limit<C: ClusterApi>(
    svc: Arc<Scheduler<C>>,
    max_in_flight: usize,
) -> Router {
    let counted = svc.clone();
    let reviews = limit_in_flight(
        Router::new().route("/webhook", post(webhook::<C>)),
        max_in_flight,
        WEBHOOK_QUEUE_WAIT,
        move || {
            counted
                .metrics()
                .webhook_rejected
                .get_or_create(&super::metrics::ReasonLabel {
                    reason: "overloaded",
                })
                .inc();
        },
    );
    probes(reviews)
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
