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
