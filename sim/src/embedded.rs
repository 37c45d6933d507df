//! The embedded cluster: a [`LiveCluster`] with sliceguard's own `serve` running in the same
//! process against it, connected the way a real deployment connects them: sliceguard reaches the
//! API through a kubeconfig (kube-rs, watches included), the API server calls sliceguard's webhook
//! over HTTPS with a certificate generated at start (the `caBundle`), and the kube-scheduler
//! stand-in calls the extender's `/filter` and `/bind` over HTTP on loopback.
//!
//! The API server's side of the webhook comes from the deployment itself: the MutatingWebhookConfiguration
//! of `kubectl kustomize deploy/overlays/fake-fleet` (its rules, selectors, failure policy and
//! path; see [`crate::deploy`]), not a copy.
//!
//! This is what `make conformance` and the end-to-end tests run against when no real cluster is
//! given. Nothing in it is a shortcut past sliceguard's interfaces.

use crate::deploy::{SIM_OVERLAY, WebhookScope, repo_root};
use crate::live::{LiveCluster, LiveOptions, WebhookTarget};
use crate::world::DevicePlugin;
use sliceguard::bind::{BindSettings, ReleaseMode};
use sliceguard::decision::SchedulerSettings;
use sliceguard::objects::FleetSpec;
use sliceguard::policy::{GpuPolicy, NodePolicy, PolicyDefaults};
use sliceguard::server::{KubeSource, SchedulerConfig, ServeOptions};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// How to start the embedded cluster.
#[derive(Debug, Clone)]
pub struct EmbeddedOptions {
    /// The fake GPU fleet created and registered at start.
    pub fleet: FleetSpec,
    /// How the nodes' device plugins answer Allocate.
    pub device_plugin: DevicePlugin,
    /// Who releases the node lock after a bind.
    pub lock_release: ReleaseMode,
    /// sliceguard's scheduler name.
    pub scheduler_name: String,
    /// sliceguard's default node policy.
    pub node_policy: NodePolicy,
    /// sliceguard's default GPU policy.
    pub gpu_policy: GpuPolicy,
    /// The façade's listen address.
    pub addr: String,
    /// Running GPU pods created already placed at start (see [`LiveOptions::preload_pods`]).
    pub preload_pods: usize,
    /// The overlay under `deploy/overlays/` whose rendered MutatingWebhookConfiguration scopes the
    /// webhook calls and names its path (default [`SIM_OVERLAY`]); `None`: every pod, `/webhook`.
    pub deploy_overlay: Option<String>,
    /// sliceguard's load limits, its API client's QPS among them (default: `serve`'s defaults).
    pub limits: sliceguard::server::ServeLimits,
    /// `serve --route-cpu-pods`: CPU-only pods with this label are routed to sliceguard and
    /// placed by its filter (default: off, as in `serve`).
    pub route_cpu_pods: Option<sliceguard::admission::LabelMatch>,
}

impl Default for EmbeddedOptions {
    fn default() -> Self {
        let defaults = PolicyDefaults::default();
        EmbeddedOptions {
            fleet: FleetSpec::default(),
            device_plugin: DevicePlugin::None,
            lock_release: ReleaseMode::AfterBind,
            scheduler_name: "sliceguard-scheduler".into(),
            node_policy: defaults.node,
            gpu_policy: defaults.gpu,
            addr: "127.0.0.1:0".into(),
            preload_pods: 0,
            deploy_overlay: Some(SIM_OVERLAY.into()),
            limits: sliceguard::server::ServeLimits::default(),
            route_cpu_pods: None,
        }
    }
}

/// A running embedded cluster.
pub struct Embedded {
    cluster: LiveCluster,
    /// sliceguard; `None` only while [`Embedded::restart_scheduler`] runs.
    scheduler: Option<sliceguard::server::Running>,
    client: kube::Client,
    dir: PathBuf,
    options: EmbeddedOptions,
    scope: Option<WebhookScope>,
}

impl std::fmt::Debug for Embedded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Embedded")
            .field("cluster", &self.cluster)
            .field("scheduler", &self.scheduler)
            .finish_non_exhaustive()
    }
}

static INSTANCES: AtomicU64 = AtomicU64::new(0);

impl Embedded {
    /// Starts the cluster, then sliceguard against it, and waits until sliceguard is ready.
    pub async fn start(options: EmbeddedOptions) -> Result<Embedded, String> {
        let scope = match &options.deploy_overlay {
            Some(overlay) => Some(WebhookScope::from_overlay(&repo_root(), overlay)?),
            None => None,
        };
        let cluster = LiveCluster::start(LiveOptions {
            addr: options.addr.clone(),
            fleet: options.fleet.clone(),
            scheduler_name: options.scheduler_name.clone(),
            device_plugin: options.device_plugin,
            preload_pods: options.preload_pods,
            ..LiveOptions::default()
        })
        .await?;
        let dir = std::env::temp_dir().join(format!(
            "sliceguard-embedded-{}-{}",
            std::process::id(),
            INSTANCES.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let scheduler = launch(&cluster, &options, scope.as_ref(), &dir).await?;
        let url: hyper::Uri = cluster
            .url()
            .parse()
            .map_err(|e| format!("façade URL: {e}"))?;
        let client = kube::Client::try_from(kube::Config::new(url))
            .map_err(|e| format!("kube client: {e}"))?;
        Ok(Embedded {
            cluster,
            scheduler: Some(scheduler),
            client,
            dir,
            options,
            scope,
        })
    }

    /// Stops sliceguard (as a rollout or a crash-loop restart would: binds in flight finish) and
    /// starts a new one against the same cluster, which lists everything afresh; returns once the
    /// new one is ready.
    pub async fn restart_scheduler(&mut self) -> Result<(), String> {
        if let Some(old) = self.scheduler.take() {
            old.stop().await;
        }
        let fresh = launch(&self.cluster, &self.options, self.scope.as_ref(), &self.dir).await?;
        self.scheduler = Some(fresh);
        Ok(())
    }

    /// A kube-rs client talking to the façade over HTTP.
    pub fn client(&self) -> kube::Client {
        self.client.clone()
    }

    /// A kubeconfig (YAML) for kubectl.
    pub fn kubeconfig(&self) -> String {
        self.cluster.kubeconfig()
    }

    /// `http://127.0.0.1:PORT`.
    pub fn api_url(&self) -> &str {
        self.cluster.url()
    }

    /// The live cluster (its store, for checks and planted faults).
    pub fn cluster(&self) -> &LiveCluster {
        &self.cluster
    }

    /// The sliceguard instance running in this process.
    pub fn scheduler(&self) -> &sliceguard::server::Running {
        self.scheduler
            .as_ref()
            .unwrap_or_else(|| unreachable!("only restart_scheduler takes it, and puts one back"))
    }

    /// Stops sliceguard (letting binds in flight release their locks), then the cluster.
    pub async fn stop(self) {
        if let Some(scheduler) = self.scheduler {
            scheduler.stop().await;
        }
        self.cluster.stop().await;
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Starts sliceguard against `cluster` (certificate and kubeconfig written under `dir`), points the
/// cluster's webhook and kube-scheduler stand-in at it, and waits until it is ready.
async fn launch(
    cluster: &LiveCluster,
    options: &EmbeddedOptions,
    scope: Option<&WebhookScope>,
    dir: &std::path::Path,
) -> Result<sliceguard::server::Running, String> {
    let certified =
        rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()])
            .map_err(|e| format!("generating the webhook certificate: {e}"))?;
    let ca_pem = certified.cert.pem();
    let write = |name: &str, text: &str| {
        let path = dir.join(name);
        std::fs::write(&path, text)
            .map(|()| path.clone())
            .map_err(|e| format!("{}: {e}", path.display()))
    };
    let cert = write("tls.crt", &ca_pem)?;
    let key = write("tls.key", &certified.signing_key.serialize_pem())?;
    // sliceguard connects as its own ServiceAccount, the one user its webhook lets write
    // scheduler-owned annotations.
    let kubeconfig = write(
        "kubeconfig",
        &cluster.kubeconfig_as(sliceguard::guard::DEFAULT_SCHEDULER_USER),
    )?;
    let loopback = "127.0.0.1:0".parse().map_err(|e| format!("{e}"))?;
    let config = SchedulerConfig {
        scheduler_name: options.scheduler_name.clone(),
        decision: SchedulerSettings {
            policies: PolicyDefaults {
                node: options.node_policy,
                gpu: options.gpu_policy.clone(),
            },
            ..SchedulerSettings::default()
        },
        webhook: sliceguard::admission::WebhookSettings {
            scheduler_name: options.scheduler_name.clone(),
            cpu_pod_route: options.route_cpu_pods.clone(),
            ..Default::default()
        },
        bind: BindSettings {
            release_mode: options.lock_release,
            ..BindSettings::default()
        },
        sync_wait: Duration::from_secs(10),
        place_cpu_pods: options.route_cpu_pods.is_some(),
        ..SchedulerConfig::default()
    };
    let scheduler = sliceguard::server::start(ServeOptions {
        kube: KubeSource {
            kubeconfig: Some(kubeconfig),
            context: None,
            timeout: Duration::from_secs(5),
        },
        config,
        webhook_addr: loopback,
        tls: Some((cert, key)),
        extender_addr: loopback,
        metrics_addr: loopback,
        shutdown_grace: Duration::from_secs(2),
        limits: options.limits,
        election: None,
    })
    .await
    .map_err(|e| format!("starting sliceguard: {e}"))?;
    let webhook_port = scheduler
        .webhook_addr
        .map(|a| a.port())
        .ok_or("sliceguard started without its webhook")?;
    let path = scope.map_or("/webhook", |s| s.path.as_str());
    cluster.configure(
        Some(WebhookTarget {
            url: format!("https://127.0.0.1:{webhook_port}{path}"),
            ca_pem: Some(ca_pem),
            ignore_failures: scope.is_some_and(|s| s.ignore_failures),
            scope: scope.cloned(),
        }),
        Some(format!("http://{}", scheduler.extender_addr)),
    )?;
    let deadline = Instant::now() + Duration::from_secs(15 + options.preload_pods as u64 / 2_000);
    while !scheduler.service.is_ready() {
        if Instant::now() > deadline {
            let (nodes, pods) = scheduler.service.sync_state();
            return Err(format!(
                "sliceguard did not become ready in time (node watch synced {nodes}, pod watch synced {pods})"
            ));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(scheduler)
}
