//! The I/O shell: `sliceguard serve` and `sliceguard register` talk to a cluster
//! through it.
//!
//! | module | owns |
//! |---|---|
//! | [`cluster`] | the [`ClusterApi`] trait: what the service asks of the Kubernetes API |
//! | [`kube_cluster`] | [`ClusterApi`] over kube-rs (merge patches with resourceVersion preconditions, `pods/binding`, core/v1 events) |
//! | [`service`] | the HTTP-free service: extender filter and bind, webhook review, lock reaper, the watch feed |
//! | [`state`] | the cluster view the watches maintain: registry, ledger, GPU pods, node locks, assumptions |
//! | [`watch`] | the kube-rs node and pod watches |
//! | [`leader`] | leader election on a Lease: the replica's leadership, the Lease requests, the election loop |
//! | [`extender`] | the kube-scheduler extender v1 wire format, decoded case-insensitively like Go (re-exported from [`sliceguard_core::wire`]) |
//! | [`review`] | AdmissionReview v1 and v1beta1 around [`crate::admission::mutate`] (re-exported from [`sliceguard_core::wire`]) |
//! | [`http`] | axum routers, body limits, the webhook's in-flight limit, timeouts, the TCP/TLS accept loop with graceful shutdown |
//! | [`tls`] | the webhook's certificate and key, reloaded when their files change |
//! | [`health`] | what `/healthz` and `/readyz` answer beyond the first sync; the API heartbeat |
//! | [`api_requests`] | a request's RBAC verb and resource; the kube client layer counting API answers and errors |
//! | [`metrics`] | Prometheus metrics |
//!
//! [`serve`] connects to the API (a clear error naming the address when it cannot, which the CLI
//! turns into exit code 2), loads the TLS certificate, binds the listeners, starts the watches, the
//! lock reaper and the three HTTP servers, and on SIGTERM or SIGINT turns `/readyz` unready at once,
//! keeps serving for [`ServeLimits::shutdown_delay`] (the Service stops routing meanwhile), then
//! stops accepting, lets requests and binds in flight finish (each releasing its lock), and returns.
//!
//! Deliberate differences from HAMi: the webhook (HTTPS) and the extender (plain HTTP, meant for
//! the kube-scheduler beside it on loopback) listen separately, where HAMi serves both on one TLS
//! listener (`--http_bind`); `/filter` waits at most `--sync-timeout` for the watches, where HAMi
//! waits without a bound; the metrics are sliceguard's own (see [`metrics`]), not HAMi's names.

pub mod api_client;
pub mod api_requests;
pub mod cluster;
pub mod health;
pub mod http;
pub mod kube_cluster;
pub mod leader;
pub mod metrics;
pub mod service;
pub mod tls;
pub mod watch;

pub use cluster::ClusterApi;
pub use service::{Scheduler, SchedulerConfig};
/// The decoders live in the sans-IO core ([`sliceguard_core::wire`]); re-exported under their old paths.
pub use sliceguard_core::wire::{admission_review as review, extender};
pub use tls::tls_acceptor;

use health::{Health, HealthSettings};

use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Where the Kubernetes client configuration comes from.
#[derive(Debug, Clone, Default)]
pub struct KubeSource {
    /// A kubeconfig file; otherwise `KUBECONFIG`, `~/.kube/config`, or the in-cluster service account.
    pub kubeconfig: Option<PathBuf>,
    /// A context of the kubeconfig other than its current one.
    pub context: Option<String>,
    /// Connect timeout, and the bound on the start-up reachability check.
    pub timeout: Duration,
}

/// Everything `serve` needs.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// The API client configuration.
    pub kube: KubeSource,
    /// Service settings.
    pub config: SchedulerConfig,
    /// Webhook listener (HTTPS).
    pub webhook_addr: SocketAddr,
    /// Certificate and key files (PEM) for the webhook; without them the webhook is not served.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// Extender listener (HTTP).
    pub extender_addr: SocketAddr,
    /// Metrics listener (HTTP).
    pub metrics_addr: SocketAddr,
    /// How long shutdown waits for requests and binds in flight.
    pub shutdown_grace: Duration,
    /// Load and health limits.
    pub limits: ServeLimits,
    /// Leader election (`--leader-elect`); without it this replica always leads.
    pub election: Option<leader::ElectionOptions>,
}

/// Load and health limits of `serve`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServeLimits {
    /// Webhook reviews served at once (more wait briefly, then get HTTP 429).
    pub webhook_max_in_flight: usize,
    /// Readiness thresholds.
    pub health: HealthSettings,
    /// How long the listeners keep serving after shutdown began, `/readyz` already unready.
    pub shutdown_delay: Duration,
    /// Retry and rate limits of the API client of the bind protocol and the filter.
    pub api: api_client::ClientLimits,
}

impl Default for ServeLimits {
    fn default() -> Self {
        ServeLimits {
            webhook_max_in_flight: http::WEBHOOK_MAX_IN_FLIGHT,
            health: HealthSettings::default(),
            shutdown_delay: Duration::ZERO,
            api: api_client::ClientLimits::default(),
        }
    }
}

/// Why `serve` (or `register`) stopped.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// No usable client configuration.
    #[error("cannot load the Kubernetes client configuration: {0}")]
    KubeConfig(String),
    /// The API server did not answer.
    #[error("cannot reach the Kubernetes API at {address}: {detail}")]
    ApiUnreachable {
        /// The server URL.
        address: String,
        /// What went wrong.
        detail: String,
    },
    /// The certificate or key does not load.
    #[error("cannot load TLS {what} from {path}: {detail}")]
    Tls {
        /// `certificate` or `key`.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// What went wrong.
        detail: String,
    },
    /// A listener cannot be bound.
    #[error("cannot listen for the {what} on {address}: {detail}")]
    Listen {
        /// `extender`, `webhook` or `metrics`.
        what: &'static str,
        /// The address.
        address: SocketAddr,
        /// What went wrong.
        detail: String,
    },
    /// An API request failed.
    #[error("{0}")]
    Api(String),
}

impl ServeError {
    /// The process exit code: 2 for configuration and reachability problems, 1 otherwise.
    pub fn exit_code(&self) -> u8 {
        match self {
            ServeError::KubeConfig(_)
            | ServeError::ApiUnreachable { .. }
            | ServeError::Tls { .. } => 2,
            ServeError::Listen { .. } | ServeError::Api(_) => 1,
        }
    }
}

/// How long one API request of the bind protocol may take before it counts as lost.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Builds a client and checks that the API server answers (`GET /version`) within the timeout.
/// Returns the client (long read timeout, fit for watches) and its configuration.
pub async fn connect(source: &KubeSource) -> Result<(Client, Config), ServeError> {
    let config = client_config(source).await?;
    let client =
        Client::try_from(config.clone()).map_err(|e| ServeError::KubeConfig(e.to_string()))?;
    check_reachable(&client, &config, source.timeout).await?;
    Ok((client, config))
}

/// A client over `config` whose answers are reported to `health` (API errors by verb and code,
/// and the last time the API answered).
pub fn observed_client(config: Config, health: &Arc<Health>) -> Result<Client, ServeError> {
    let builder = kube::client::ClientBuilder::try_from(config)
        .map_err(|e| ServeError::KubeConfig(e.to_string()))?;
    Ok(builder
        .with_layer(&api_requests::ApiObserverLayer::new(health.clone()))
        .build())
}

async fn check_reachable(
    client: &Client,
    config: &Config,
    timeout: Duration,
) -> Result<(), ServeError> {
    let address = config.cluster_url.to_string();
    match tokio::time::timeout(timeout, client.apiserver_version()).await {
        Ok(Ok(version)) => {
            tracing::info!(%address, version = %version.git_version, "connected to the Kubernetes API");
            Ok(())
        }
        Ok(Err(e)) => Err(ServeError::ApiUnreachable {
            address,
            detail: error_chain(&e),
        }),
        Err(_) => Err(ServeError::ApiUnreachable {
            address,
            detail: format!("no answer within {timeout:?}"),
        }),
    }
}

/// The client configuration `source` names, with its connect timeout.
pub async fn client_config(source: &KubeSource) -> Result<Config, ServeError> {
    let options = KubeConfigOptions {
        context: source.context.clone(),
        ..Default::default()
    };
    let mut config = match &source.kubeconfig {
        Some(path) => {
            let kubeconfig = Kubeconfig::read_from(path)
                .map_err(|e| ServeError::KubeConfig(format!("{}: {e}", path.display())))?;
            Config::from_custom_kubeconfig(kubeconfig, &options)
                .await
                .map_err(|e| ServeError::KubeConfig(format!("{}: {e}", path.display())))?
        }
        None if source.context.is_some() => Config::from_kubeconfig(&options)
            .await
            .map_err(|e| ServeError::KubeConfig(e.to_string()))?,
        None => Config::infer()
            .await
            .map_err(|e| ServeError::KubeConfig(e.to_string()))?,
    };
    config.connect_timeout = Some(source.timeout);
    Ok(config)
}

/// An error and its causes, `outer: inner: innermost` (kube-rs hides the cause of a failed connect).
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

async fn listen(what: &'static str, address: SocketAddr) -> Result<TcpListener, ServeError> {
    TcpListener::bind(address)
        .await
        .map_err(|e| ServeError::Listen {
            what,
            address,
            detail: e.to_string(),
        })
}

/// Resolves on SIGTERM or SIGINT.
pub async fn termination_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// A started scheduler: its listeners are bound and its watches, reaper and servers run until
/// [`Running::stop`].
pub struct Running {
    /// The extender's bound address (the real port when the option asked for port 0).
    pub extender_addr: SocketAddr,
    /// The metrics listener's bound address.
    pub metrics_addr: SocketAddr,
    /// The webhook's bound address, when TLS was configured.
    pub webhook_addr: Option<SocketAddr>,
    /// The service, for callers in the same process (tests, the embedded cluster).
    pub service: Arc<Scheduler<kube_cluster::KubeCluster>>,
    /// What `/healthz` and `/readyz` consult beyond the service's sync state.
    pub health: Arc<Health>,
    shutdown: CancellationToken,
    grace: Duration,
    shutdown_delay: Duration,
    servers: Vec<tokio::task::JoinHandle<()>>,
    background: Vec<tokio::task::JoinHandle<()>>,
    election: Option<(tokio::task::JoinHandle<()>, Arc<leader::KubeLease>)>,
    stop_election: CancellationToken,
}

impl std::fmt::Debug for Running {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Running")
            .field("extender_addr", &self.extender_addr)
            .field("metrics_addr", &self.metrics_addr)
            .field("webhook_addr", &self.webhook_addr)
            .finish_non_exhaustive()
    }
}

/// Spawns a background task that holds a [`health::TaskGuard`] for its whole life.
fn spawn_guarded(
    health: &Arc<Health>,
    task: &'static str,
    future: impl std::future::Future<Output = ()> + Send + 'static,
) -> tokio::task::JoinHandle<()> {
    let guard = health.task_guard(task);
    tokio::spawn(async move {
        let _guard = guard;
        future.await;
    })
}

/// Connects, binds the listeners and starts the scheduler; returns once it serves.
pub async fn start(options: ServeOptions) -> Result<Running, ServeError> {
    let health = Health::new(options.limits.health);
    let config = client_config(&options.kube).await?;
    let client = observed_client(config.clone(), &health)?;
    check_reachable(&client, &config, options.kube.timeout).await?;
    // Requests of the bind protocol and the filter get a short read timeout (a lost answer is an
    // indeterminate result the machine resolves); watches keep the client's long one.
    let mut request_config = config;
    request_config.read_timeout = Some(REQUEST_TIMEOUT);
    let request_client = api_client::request_client(request_config, options.limits.api, &health)
        .map_err(|e| ServeError::KubeConfig(e.to_string()))?;
    let tls = match &options.tls {
        Some((cert, key)) => Some(tls_acceptor(cert, key)?),
        None => None,
    };
    let extender_listener = listen("extender", options.extender_addr).await?;
    let metrics_listener = listen("metrics", options.metrics_addr).await?;
    let webhook_listener = match tls {
        Some(_) => Some(listen("webhook", options.webhook_addr).await?),
        None => None,
    };
    let bound = |listener: &TcpListener, what: &'static str, address: SocketAddr| {
        listener.local_addr().map_err(|e| ServeError::Listen {
            what,
            address,
            detail: e.to_string(),
        })
    };
    let extender_addr = bound(&extender_listener, "extender", options.extender_addr)?;
    let metrics_addr = bound(&metrics_listener, "metrics", options.metrics_addr)?;
    let webhook_addr = match &webhook_listener {
        Some(listener) => Some(bound(listener, "webhook", options.webhook_addr)?),
        None => None,
    };
    let instance = std::env::var("POD_NAME")
        .or_else(|_| std::env::var("HOSTNAME"))
        .unwrap_or_else(|_| "sliceguard".into());
    let cluster = kube_cluster::KubeCluster::new(
        request_client.clone(),
        options.config.scheduler_name.clone(),
        instance,
    );
    let mut service = Scheduler::new(cluster, options.config.clone(), service::system_clock());
    if let Some(election) = &options.election {
        service = service.with_leader_election(election.settings.clone());
    }
    let svc = Arc::new(service);
    let shutdown = CancellationToken::new();
    let grace = options.shutdown_grace;
    // The election keeps renewing until the binds in flight have finished (see `Running::stop`).
    let stop_election = CancellationToken::new();
    let lease = options.election.as_ref().map(|e| {
        Arc::new(leader::KubeLease::new(
            client.clone(),
            &e.namespace,
            &e.lease_name,
        ))
    });
    let election_task = match (&options.election, &lease) {
        (Some(e), Some(api)) => {
            tracing::info!(identity = %e.settings.identity, lease = %format!("{}/{}", e.namespace, e.lease_name), "leader election on");
            let retry =
                Duration::try_from(e.settings.retry_period).unwrap_or(Duration::from_secs(2));
            let follow = e.follow.as_ref().map(|f| {
                tracing::info!(lease = %format!("{}/{}", f.namespace, f.lease_name), host = %f.host, "leader election follows kube-scheduler's Lease");
                (
                    Arc::new(leader::KubeLease::new(
                        client.clone(),
                        &f.namespace,
                        &f.lease_name,
                    )),
                    f.host.clone(),
                )
            });
            Some(tokio::spawn(svc.clone().run_election(
                api.clone(),
                follow,
                retry,
                stop_election.clone(),
            )))
        }
        _ => None,
    };

    let background = vec![
        spawn_guarded(
            &health,
            "node watch",
            watch::watch_nodes(
                client.clone(),
                svc.clone(),
                shutdown.clone(),
                Some(health.clone()),
            ),
        ),
        spawn_guarded(
            &health,
            "pod watch",
            watch::watch_pods(client, svc.clone(), shutdown.clone(), Some(health.clone())),
        ),
        spawn_guarded(
            &health,
            "lock reaper",
            svc.clone().run_reaper(shutdown.clone()),
        ),
        spawn_guarded(
            &health,
            "API heartbeat",
            health::api_heartbeat(request_client, health.clone(), shutdown.clone()),
        ),
    ];
    let with_health = |router: axum::Router| router.layer(axum::Extension(health.clone()));
    let mut servers = vec![
        tokio::spawn(http::serve(
            extender_listener,
            with_health(http::extender_router(svc.clone())),
            None,
            shutdown.clone(),
            grace,
        )),
        tokio::spawn(http::serve(
            metrics_listener,
            with_health(http::metrics_router(svc.clone())),
            None,
            shutdown.clone(),
            grace,
        )),
    ];
    tracing::info!(address = %extender_addr, "extender listening (HTTP)");
    tracing::info!(address = %metrics_addr, "metrics listening (HTTP)");
    if let (Some(listener), Some(acceptor)) = (webhook_listener, tls) {
        tracing::info!(address = ?webhook_addr, "webhook listening (HTTPS)");
        servers.push(tokio::spawn(http::serve(
            listener,
            with_health(http::webhook_router_with_limit(
                svc.clone(),
                options.limits.webhook_max_in_flight,
            )),
            Some(acceptor),
            shutdown.clone(),
            grace,
        )));
    } else {
        tracing::warn!("no --tls-cert/--tls-key: the webhook is not served");
    }
    Ok(Running {
        extender_addr,
        metrics_addr,
        webhook_addr,
        service: svc,
        health,
        shutdown,
        grace,
        shutdown_delay: options.limits.shutdown_delay,
        servers,
        background,
        election: election_task.zip(lease),
        stop_election,
    })
}

impl Running {
    /// Turns `/readyz` unready, keeps serving for the shutdown delay, then stops accepting, lets
    /// requests and binds in flight finish (each releasing its lock) within the grace period, and
    /// stops the watches.
    pub async fn stop(self) {
        self.health.begin_shutdown();
        if !self.shutdown_delay.is_zero() {
            tracing::info!(
                delay = ?self.shutdown_delay,
                "shutting down: /readyz unready; still serving for the shutdown delay"
            );
            tokio::time::sleep(self.shutdown_delay).await;
        }
        tracing::info!(
            binds_in_flight = self.service.binds_in_flight(),
            "shutting down: no new connections; requests and binds in flight finish"
        );
        self.shutdown.cancel();
        for server in self.servers {
            let _ = server.await;
        }
        if !self.service.drain_binds(self.grace).await {
            tracing::warn!(
                "binds still running after the grace period; their locks expire by rule"
            );
        }
        self.stop_election.cancel();
        if let Some((task, lease)) = self.election {
            let _ = task.await;
            let now = jiff::Timestamp::now();
            self.service.leadership().release(lease.as_ref(), now).await;
        }
        for task in self.background {
            task.abort();
        }
        tracing::info!("stopped");
    }
}

/// Runs the scheduler until SIGTERM or SIGINT.
pub async fn serve(options: ServeOptions) -> Result<(), ServeError> {
    let running = start(options).await?;
    termination_signal().await;
    running.stop().await;
    Ok(())
}
