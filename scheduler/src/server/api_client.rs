//! The Kubernetes client of the bind protocol and the filter: how it retries and how fast it may go.
//!
//! kube-rs's default stack retries 429, 503 and 504 up to 15 times with delays growing to 1000 s,
//! which would hold a bind (and kube-scheduler's binding cycle) for minutes under throttling. The
//! client built here instead:
//! - retries 429, 503 and 504 at most [`ClientLimits::max_retries`] times, with exponential backoff
//!   and jitter from [`ClientLimits::min_backoff`] to [`ClientLimits::max_backoff`], honouring the
//!   server's `Retry-After` (kube-rs's [`RetryPolicy`] with `server_retry`);
//! - sends at most [`ClientLimits::qps`] requests per second (client-go's QPS limit: kube-scheduler
//!   uses 50), retries included, so a retry storm cannot amplify load on a throttling API server.
//!
//! What is left after the retries reaches the machines as an [`crate::bind::ApiFailure`]: a 429 as
//! `Rejected` (kube-apiserver's max-in-flight filter refuses before the handler runs, so it was not
//! applied), a 503/504 as `Indeterminate` (see [`super::kube_cluster::failure`]).

use super::api_requests::ApiObserverLayer;
use super::health::Health;
use kube::client::ClientBuilder;
use kube::client::retry::RetryPolicy;
use kube::{Client, Config};
use std::sync::Arc;
use std::time::Duration;
use tower::buffer::BufferLayer;
use tower::limit::RateLimitLayer;
use tower::retry::RetryLayer;

/// Retry and rate limits of the request client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientLimits {
    /// Requests per second, retries included (at least 1).
    pub qps: u64,
    /// Retries of a 429 / 503 / 504 answer.
    pub max_retries: u32,
    /// First backoff delay.
    pub min_backoff: Duration,
    /// Largest backoff delay (a server's `Retry-After` may ask for more and is honoured).
    pub max_backoff: Duration,
}

impl Default for ClientLimits {
    fn default() -> Self {
        ClientLimits {
            qps: 50,
            max_retries: 4,
            min_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(5),
        }
    }
}

/// Why the client could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ClientBuildError {
    /// The backoff bounds are unusable (min above max, or zero).
    #[error("invalid API client backoff {min:?}..{max:?}: {problem}")]
    Backoff {
        /// First delay.
        min: Duration,
        /// Largest delay.
        max: Duration,
        /// What tower said.
        problem: String,
    },
    /// kube-rs refused the configuration.
    #[error("kube client: {0}")]
    Kube(#[from] kube::Error),
}

/// Builds the request client: `config`'s connection and authentication, every attempt reported to
/// `health` (API errors by verb and code, the last answer), kube-rs's own retry replaced by the
/// bounded one of `limits`, and the QPS limit.
pub fn request_client(
    mut config: Config,
    limits: ClientLimits,
    health: &Arc<Health>,
) -> Result<Client, ClientBuildError> {
    let policy = RetryPolicy::new(
        limits.min_backoff,
        limits.max_backoff,
        limits.max_retries,
        true,
    )
    .map_err(|e| ClientBuildError::Backoff {
        min: limits.min_backoff,
        max: limits.max_backoff,
        problem: e.to_string(),
    })?;
    config.default_retry = false;
    let client = ClientBuilder::try_from(config)?
        .with_layer(&ApiObserverLayer::new(Arc::clone(health)))
        .with_layer(&RateLimitLayer::new(
            limits.qps.max(1),
            Duration::from_secs(1),
        ))
        .with_layer(&BufferLayer::new(1024))
        .with_layer(&RetryLayer::new(policy))
        .build();
    Ok(client)
}

#[cfg(test)]
mod tests {
    //! The client against a loopback stub of the API server that throttles.
    use super::super::health::HealthSettings;
    use super::*;
    use axum::http::{HeaderValue, StatusCode, header};
    use axum::response::{IntoResponse, Response};
    use k8s_openapi::api::core::v1::Pod;
    use kube::Api;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Instant;

    /// Serves `GET /api/v1/namespaces/default/pods/p`: the first `throttled` requests get 429 with
    /// `Retry-After: 1`, the rest the pod. Returns the base URL and the request counter.
    async fn stub(throttled: usize) -> (String, Arc<AtomicUsize>) {
        let seen = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&seen);
        let app = axum::Router::new().route(
            "/api/v1/namespaces/default/pods/p",
            axum::routing::get(move || {
                let n = counter.fetch_add(1, Ordering::SeqCst);
                async move {
                    if n < throttled {
                        let mut answer: Response = (
                            StatusCode::TOO_MANY_REQUESTS,
                            axum::Json(serde_json::json!({"kind": "Status", "apiVersion": "v1",
                                "status": "Failure", "reason": "TooManyRequests", "code": 429,
                                "message": "Too many requests, please try again later."})),
                        )
                            .into_response();
                        answer
                            .headers_mut()
                            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
                        answer
                    } else {
                        axum::Json(serde_json::json!({"apiVersion": "v1", "kind": "Pod",
                            "metadata": {"name": "p", "namespace": "default"}}))
                        .into_response()
                    }
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        (url, seen)
    }

    fn client(url: &str, limits: ClientLimits) -> Client {
        let config = Config::new(url.parse().unwrap());
        request_client(config, limits, &Health::new(HealthSettings::default())).unwrap()
    }

    const FAST: ClientLimits = ClientLimits {
        qps: 1000,
        max_retries: 4,
        min_backoff: Duration::from_millis(10),
        max_backoff: Duration::from_millis(20),
    };

    #[tokio::test]
    async fn a_throttled_request_is_retried_after_the_servers_retry_after() {
        let (url, seen) = stub(2).await;
        let pods: Api<Pod> = Api::namespaced(client(&url, FAST), "default");
        let started = Instant::now();
        let pod = pods.get("p").await.expect("answered after two 429s");
        assert_eq!(pod.metadata.name.as_deref(), Some("p"));
        assert_eq!(seen.load(Ordering::SeqCst), 3, "two retries");
        // Backoff alone would wait at most 2 × 20 ms; Retry-After: 1 asks for a second each time.
        assert!(
            started.elapsed() >= Duration::from_millis(1900),
            "Retry-After honoured: {:?}",
            started.elapsed()
        );
    }

    #[tokio::test]
    async fn retries_stop_at_the_limit_and_the_429_reaches_the_caller() {
        let (url, seen) = stub(usize::MAX).await;
        let limits = ClientLimits {
            max_retries: 2,
            ..FAST
        };
        let pods: Api<Pod> = Api::namespaced(client(&url, limits), "default");
        match pods.get("p").await {
            Err(kube::Error::Api(status)) => assert_eq!(status.code, 429, "{status:?}"),
            other => panic!("expected the 429, got {other:?}"),
        }
        assert_eq!(seen.load(Ordering::SeqCst), 3, "one try and two retries");
    }

    #[tokio::test]
    async fn requests_are_paced_by_the_qps_limit() {
        let (url, seen) = stub(0).await;
        let limits = ClientLimits { qps: 4, ..FAST };
        let pods: Api<Pod> = Api::namespaced(client(&url, limits), "default");
        let started = Instant::now();
        for _ in 0..9 {
            pods.get("p").await.unwrap();
        }
        assert_eq!(seen.load(Ordering::SeqCst), 9);
        // Four per second: the ninth request goes out in the third one-second window.
        assert!(
            started.elapsed() >= Duration::from_secs(2),
            "paced: {:?}",
            started.elapsed()
        );
    }

    #[test]
    fn unusable_backoff_bounds_are_refused_naming_them() {
        let limits = ClientLimits {
            min_backoff: Duration::from_secs(5),
            max_backoff: Duration::from_secs(1),
            ..FAST
        };
        let config = Config::new("http://127.0.0.1:1".parse().unwrap());
        let Err(error) = request_client(config, limits, &Health::new(HealthSettings::default()))
        else {
            panic!("a minimum backoff above the maximum is refused");
        };
        let error = error.to_string();
        assert!(error.contains("5s") && error.contains("1s"), "{error}");
    }
}
