//! Cluster drivers: one [`Driver`] over a `kube::Client`, whatever the cluster behind it.
//!
//! - `sim`: the embedded simulated cluster ([`sliceguard_sim::embedded`]) started in-process;
//!   the client talks to its REST façade over loopback HTTP, exactly as to a real API server;
//! - `kind`: the kind cluster made by `kind-harness up` (context `kind-<name>` of the usual
//!   kubeconfig), after the preflight of [`crate::kind::preflight`];
//! - `kubeconfig`: any existing cluster (`--kubeconfig FILE`, else `KUBECONFIG`, `~/.kube/config`
//!   or the in-cluster service account), running HAMi or sliceguard;
//! - `k3s`: a K3s cluster started in Docker with the `testcontainers` crate, sliceguard deployed on
//!   it ([`k3s`]); without Docker or the K3s image it fails naming which is missing.
//!
//! The driver also carries the waiting policy ([`Waits`]): the simulated cluster answers in
//! milliseconds, a real one in seconds, so every timeout is a flag.

pub mod k3s;

pub use k3s::K3S_IMAGE;
use sliceguard::server::{KubeSource, connect};
use std::path::PathBuf;
use std::time::Duration;

/// Which cluster a run drives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ClusterChoice {
    /// The embedded simulated cluster, started in-process (the default; needs nothing installed).
    Sim,
    /// The kind cluster of `kind-harness up` (needs docker, kind and kubectl).
    Kind,
    /// Any existing cluster through a kubeconfig (`--kubeconfig`, else the usual environment).
    Kubeconfig,
    /// A K3s cluster started with testcontainers, sliceguard deployed on it (needs Docker and the image).
    K3s,
}

impl ClusterChoice {
    /// The flag value.
    pub fn as_str(self) -> &'static str {
        match self {
            ClusterChoice::Sim => "sim",
            ClusterChoice::Kind => "kind",
            ClusterChoice::Kubeconfig => "kubeconfig",
            ClusterChoice::K3s => "k3s",
        }
    }
}

/// How long to wait for what, and how often to look.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Waits {
    /// The most one wait (a pod Running, an event appearing, locks clearing) may take.
    pub timeout: Duration,
    /// The interval between two looks.
    pub poll: Duration,
    /// How long a "nothing happens" claim (a pod stays Pending, the webhook leaves a pod alone) is
    /// watched after the scheduler has answered.
    pub settle: Duration,
    /// After how long a wait says what it is waiting for (and again as often after).
    pub patience: Duration,
}

impl Waits {
    /// Defaults for a cluster: the simulated one is fast, real ones are not.
    pub fn for_cluster(cluster: ClusterChoice) -> Waits {
        match cluster {
            ClusterChoice::Sim => Waits {
                timeout: Duration::from_secs(20),
                poll: Duration::from_millis(50),
                settle: Duration::from_millis(500),
                patience: Duration::from_secs(5),
            },
            ClusterChoice::Kind | ClusterChoice::Kubeconfig | ClusterChoice::K3s => Waits {
                timeout: Duration::from_secs(300),
                poll: Duration::from_millis(500),
                settle: Duration::from_secs(5),
                patience: Duration::from_secs(15),
            },
        }
    }
}

/// What a driver needs to connect.
#[derive(Debug, Clone)]
pub struct DriverOptions {
    /// Which cluster.
    pub cluster: ClusterChoice,
    /// kubeconfig file for `kubeconfig` (else the environment's).
    pub kubeconfig: Option<PathBuf>,
    /// kubeconfig context (for `kind`: `kind-<name>` unless given).
    pub context: Option<String>,
    /// kind cluster name.
    pub kind_name: String,
    /// The scheduler name sliceguard (or HAMi) routes GPU pods to.
    pub scheduler_name: String,
    /// `sim` only: the simulated fleet.
    pub fleet: sliceguard::objects::FleetSpec,
    /// Waiting policy.
    pub waits: Waits,
    /// `k3s` only: the K3s image (`NAME:TAG`).
    pub k3s_image: String,
    /// `k3s` only: the sliceguard image built and imported into K3s.
    pub image: String,
}

/// Why a driver could not start.
#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    /// Tools the cluster needs are not on PATH (exit 2).
    #[error("missing tools: {}", .0.join(", "))]
    MissingTools(Vec<String>),
    /// The flags do not fit the cluster (exit 2).
    #[error("{0}")]
    Usage(String),
    /// The cluster could not be reached or started (exit 2).
    #[error("{0}")]
    Connect(String),
    /// The evidence could not be written (exit 2).
    #[error("{0}")]
    Evidence(String),
}

/// A connected cluster.
pub struct Driver {
    /// The client every scenario uses.
    pub client: kube::Client,
    /// Which cluster, in words (`sim (embedded, http://127.0.0.1:PORT)`, `kind (kind-sliceguard)`).
    pub description: String,
    /// Which cluster.
    pub cluster: ClusterChoice,
    /// The scheduler name GPU pods are routed to.
    pub scheduler_name: String,
    /// Waiting policy.
    pub waits: Waits,
    embedded: Option<EmbeddedCluster>,
    k3s: Option<k3s::K3sCluster>,
}

impl std::fmt::Debug for Driver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Driver")
            .field("description", &self.description)
            .field("cluster", &self.cluster)
            .field("scheduler_name", &self.scheduler_name)
            .field("waits", &self.waits)
            .finish_non_exhaustive()
    }
}

impl Driver {
    /// Connects (for `sim`: starts the embedded cluster first).
    pub async fn connect(options: &DriverOptions) -> Result<Driver, DriverError> {
        match options.cluster {
            ClusterChoice::Sim => {
                if options.kubeconfig.is_some() || options.context.is_some() {
                    return Err(DriverError::Usage(
                        "--kubeconfig and --context need --cluster kubeconfig (or kind); the sim cluster is started in-process".into(),
                    ));
                }
                let embedded = EmbeddedCluster::start(options).await.map_err(|e| {
                    DriverError::Connect(format!("starting the embedded cluster: {e}"))
                })?;
                Ok(Driver {
                    client: embedded.client(),
                    description: format!("sim (embedded, {})", embedded.api_url()),
                    cluster: ClusterChoice::Sim,
                    scheduler_name: options.scheduler_name.clone(),
                    waits: options.waits,
                    embedded: Some(embedded),
                    k3s: None,
                })
            }
            ClusterChoice::K3s => {
                if options.kubeconfig.is_some() || options.context.is_some() {
                    return Err(DriverError::Usage(
                        "--kubeconfig and --context need --cluster kubeconfig (or kind); --cluster k3s starts its own cluster".into(),
                    ));
                }
                let repo = std::env::current_dir().map_err(|e| {
                    DriverError::Connect(format!("reading the current directory: {e}"))
                })?;
                let cluster = k3s::start(options, &repo).await?;
                let mut driver =
                    Self::from_kubeconfig(options, Some(cluster.kubeconfig.clone()), None).await?;
                driver.k3s = Some(cluster);
                Ok(driver)
            }
            ClusterChoice::Kind => {
                crate::kind::preflight_or_error(&crate::kind::KIND_TOOLS)?;
                let context = options
                    .context
                    .clone()
                    .unwrap_or_else(|| format!("kind-{}", options.kind_name));
                Self::from_kubeconfig(options, options.kubeconfig.clone(), Some(context)).await
            }
            ClusterChoice::Kubeconfig => {
                Self::from_kubeconfig(options, options.kubeconfig.clone(), options.context.clone())
                    .await
            }
        }
    }

    async fn from_kubeconfig(
        options: &DriverOptions,
        kubeconfig: Option<PathBuf>,
        context: Option<String>,
    ) -> Result<Driver, DriverError> {
        let (client, config) =
            connect_kubeconfig(kubeconfig, context.clone(), options.waits.timeout)
                .await
                .map_err(DriverError::Connect)?;
        Ok(Driver {
            client,
            description: format!(
                "{} ({}{})",
                options.cluster.as_str(),
                config,
                context
                    .map(|c| format!(", context {c}"))
                    .unwrap_or_default()
            ),
            cluster: options.cluster,
            scheduler_name: options.scheduler_name.clone(),
            waits: options.waits,
            embedded: None,
            k3s: None,
        })
    }

    /// A kubeconfig (YAML text) for kubectl, where the driver can give one (the embedded cluster).
    pub fn kubeconfig(&self) -> Option<String> {
        self.embedded.as_ref().map(|e| e.kubeconfig())
    }

    /// Stops what the driver started (the embedded cluster); a no-op for real clusters.
    pub async fn stop(self) {
        if let Some(embedded) = self.embedded {
            embedded.stop().await;
        }
        if let Some(cluster) = self.k3s {
            cluster.stop().await;
        }
    }
}

/// A client for a kubeconfig file (or the environment's), checked to answer within `timeout`.
/// Returns the client and the API server URL.
pub async fn connect_kubeconfig(
    kubeconfig: Option<PathBuf>,
    context: Option<String>,
    timeout: Duration,
) -> Result<(kube::Client, String), String> {
    let source = KubeSource {
        kubeconfig,
        context,
        timeout,
    };
    let (client, config) = connect(&source).await.map_err(|e| e.to_string())?;
    Ok((client, config.cluster_url.to_string()))
}

/// The embedded simulated cluster behind the `sim` driver.
#[derive(Debug)]
struct EmbeddedCluster(sliceguard_sim::embedded::Embedded);

impl EmbeddedCluster {
    async fn start(options: &DriverOptions) -> Result<EmbeddedCluster, String> {
        let embedded =
            sliceguard_sim::embedded::Embedded::start(sliceguard_sim::embedded::EmbeddedOptions {
                fleet: options.fleet.clone(),
                scheduler_name: options.scheduler_name.clone(),
                ..Default::default()
            })
            .await?;
        Ok(EmbeddedCluster(embedded))
    }

    fn client(&self) -> kube::Client {
        self.0.client()
    }

    fn api_url(&self) -> &str {
        self.0.api_url()
    }

    fn kubeconfig(&self) -> String {
        self.0.kubeconfig()
    }

    async fn stop(self) {
        self.0.stop().await;
    }
}
