//! `sliceguard serve`: the scheduler against a cluster (see [`crate::server`]).
//!
//! Flags carry HAMi's names where HAMi has one (spec §10): `--scheduler-name`,
//! `--node-scheduler-policy`, `--gpu-scheduler-policy`, `--node-lock-timeout`,
//! `--force-overwrite-default-scheduler`, `--http_bind` (here the extender's HTTP listener; HAMi
//! serves the extender and the webhook on one), `--metrics-bind-address`, `--kube-timeout`.
//! Durations use Go's syntax (`5m`, `30s`, `1h30m`); addresses may be Go's `:port`.
//!
//! The extender (`--http_bind`) answers "bind this pod to that node" to anyone who can reach it, so
//! it must listen on a loopback address (kube-scheduler calls it from the same pod) unless
//! `--allow-non-loopback-extender` says otherwise: `serve` exits 2 naming that flag.

use super::Failure;
use crate::admission::LabelMatch;
use crate::bind::{BindSettings, ReleaseMode};
use crate::cluster_view::PodScope;
use crate::codec::go_duration;
use crate::decision::SchedulerSettings;
use crate::lease::LeaseSettings;
use crate::policy::{GpuPolicy, NodePolicy, PolicyDefaults};
use crate::server::api_client::ClientLimits;
use crate::server::health::HealthSettings;
use crate::server::http as sliceguard_http;
use crate::server::leader::{ElectionOptions, FollowOptions};
use crate::server::{self, KubeSource, SchedulerConfig, ServeLimits, ServeOptions};
use clap::{ArgAction, Args, ValueEnum};
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

/// Run the scheduler: mutating webhook (HTTPS), scheduler extender (filter, bind), metrics.
///
/// Connects to the Kubernetes API (--kubeconfig, else $KUBECONFIG, ~/.kube/config, or the
/// in-cluster service account), watches nodes and pods (--watch-pods), and serves:
///   --webhook-bind-address   POST /webhook  (AdmissionReview v1/v1beta1; needs --tls-cert/--tls-key)
///   --http_bind              POST /filter, POST /bind  (kube-scheduler extender v1)
///   --metrics-bind-address   GET /metrics (Prometheus)
/// and GET /healthz, /readyz on each. Exits 2 when the API cannot be reached or the
/// configuration is unusable. On SIGTERM it stops accepting, lets binds in flight finish and
/// release their node locks, and exits 0.
#[derive(Debug, Args)]
#[command(
    after_help = "Example:\n  sliceguard serve --tls-cert /tls/tls.crt --tls-key /tls/tls.key --scheduler-name sliceguard-scheduler"
)]
pub struct ServeArgs {
    /// kubeconfig file (default: $KUBECONFIG, ~/.kube/config, or the in-cluster service account).
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
    /// kubeconfig context to use instead of the current one.
    #[arg(long)]
    context: Option<String>,
    /// API connect timeout, and the bound on the start-up reachability check (Go duration).
    #[arg(long, default_value = "10s", value_parser = parse_std_duration)]
    kube_timeout: Duration,
    /// Scheduler name written into routed pods' spec.schedulerName; also the events' source.
    #[arg(long, default_value = "sliceguard-scheduler")]
    scheduler_name: String,
    /// Default node policy: binpack (highest score wins), spread, or fragmentation; a pod's
    /// hami.io/node-scheduler-policy overrides it.
    #[arg(long, default_value = "binpack", value_parser = parse_node_policy)]
    node_scheduler_policy: NodePolicy,
    /// Default GPU policy: spread, binpack, mutex, topology-aware, or a comma chain; a pod's
    /// hami.io/gpu-scheduler-policy overrides it.
    #[arg(long, default_value = "spread", value_parser = parse_gpu_policy)]
    gpu_scheduler_policy: GpuPolicy,
    /// Node lock expiry: a hami.io/mutex.lock older than this is taken over (Go duration).
    #[arg(long, default_value = "5m", value_parser = parse_lock_timeout)]
    node_lock_timeout: jiff::SignedDuration,
    /// Who releases the node lock after a successful bind: after-bind (this scheduler, right after
    /// the Binding; for fake fleets and nodes without HAMi's device plugin) or device-plugin (HAMi's
    /// device plugin after Allocate; this scheduler's reaper releases it once the pod's bind-phase
    /// settles, the pod ends or is deleted, or the timeout passes).
    #[arg(long, value_enum, default_value_t = LockRelease::AfterBind)]
    lock_release: LockRelease,
    /// device-plugin mode: how long after its lock was taken a pod may stay bound, Pending and in
    /// bind-phase allocating before its device plugin counts as silent; the reaper then marks it
    /// failed and deletes it so the node's lock can pass on. Until then an expired lock of such a
    /// pod is not taken over (HAMi #3096). Go duration, at least --node-lock-timeout.
    #[arg(long, default_value = "15m", value_parser = parse_lock_timeout)]
    allocation_stall_timeout: jiff::SignedDuration,
    /// Also route pods whose schedulerName is default-scheduler (true or false).
    #[arg(long, default_value_t = true, action = ArgAction::Set, value_name = "BOOL")]
    force_overwrite_default_scheduler: bool,
    /// The only user that may add, change or remove scheduler-owned pod annotations and the
    /// hami.io/vgpu-node label (sliceguard's own ServiceAccount); the webhook denies anyone else.
    #[arg(long, default_value = crate::guard::DEFAULT_SCHEDULER_USER, value_name = "USER")]
    trusted_scheduler_user: String,
    /// A user that may change only hami.io/bind-phase and hami.io/vgpu-devices-to-allocate (HAMi's
    /// device plugin's ServiceAccount).
    #[arg(long, default_value = crate::guard::DEFAULT_DEVICE_PLUGIN_USER, value_name = "USER")]
    trusted_device_plugin_user: String,
    /// Webhook listener (HTTPS), HOST:PORT or :PORT.
    #[arg(long, visible_alias = "webhook-addr", default_value = "0.0.0.0:9443", value_parser = parse_address)]
    webhook_bind_address: SocketAddr,
    /// Webhook TLS certificate chain (PEM). Without --tls-cert and --tls-key the webhook is off.
    #[arg(long, requires = "tls_key", value_name = "FILE")]
    tls_cert: Option<PathBuf>,
    /// Webhook TLS private key (PEM: PKCS#8, PKCS#1 or SEC1).
    #[arg(long, requires = "tls_cert", value_name = "FILE")]
    tls_key: Option<PathBuf>,
    /// Extender listener (HTTP), HOST:PORT or :PORT; point kube-scheduler's extender urlPrefix here.
    /// Unauthenticated: a loopback address only, unless --allow-non-loopback-extender.
    #[arg(long = "http_bind", visible_aliases = ["http-bind", "extender-addr"], default_value = "127.0.0.1:8080", value_parser = parse_address)]
    http_bind: SocketAddr,
    /// Let --http_bind listen on a non-loopback address (the extender has no authentication: anyone
    /// who reaches it can bind any pod to any node).
    #[arg(long)]
    allow_non_loopback_extender: bool,
    /// Metrics listener (HTTP, /metrics), HOST:PORT or :PORT.
    #[arg(long, visible_alias = "metrics-addr", default_value = ":9395", value_parser = parse_address)]
    metrics_bind_address: SocketAddr,
    /// Which pods to watch: all (every pod's CPU request counts on its node, so the fragmentation
    /// policy sees which nodes' CPU strands their GPUs; a few numbers are kept per pod, never the
    /// objects) or gpu (only pods labelled hami.io/vgpu-node: less watch traffic in clusters with
    /// many CPU-only pods; the fragmentation policy then ignores CPU).
    #[arg(long, value_enum, default_value_t = WatchPods::All)]
    watch_pods: WatchPods,
    /// Opt-in route for CPU-only pods: the webhook also routes pods without GPU resources that
    /// carry this label (KEY or KEY=VALUE) to this scheduler, whose filter puts each where its CPU
    /// strands the fewest GPUs (the fragmentation policy's rule). Trade-off: this scheduler's
    /// kube-scheduler profile becomes the scheduler of those pods (its other plugins still filter
    /// and score nodes), so they wait while it is down. Needs --watch-pods all and a webhook
    /// configuration that sends such pods (deploy/components/cpu-pods).
    #[arg(long, value_name = "LABEL[=VALUE]", value_parser = parse_label_match)]
    route_cpu_pods: Option<LabelMatch>,
    /// How long /filter waits for the node and pod watches to sync before answering an error.
    #[arg(long, default_value = "25s", value_parser = parse_std_duration)]
    sync_timeout: Duration,
    /// How long shutdown waits for requests and binds in flight (Go duration).
    #[arg(long, default_value = "30s", value_parser = parse_std_duration)]
    shutdown_grace: Duration,
    /// Most API requests per second of the bind protocol and the filter, retries included
    /// (client-go's QPS limit; kube-scheduler uses 50).
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u64).range(1..))]
    kube_api_qps: u64,
    /// How many times one API request answered 429, 503 or 504 is retried, with exponential backoff
    /// and jitter (100ms to 5s) or the server's Retry-After.
    #[arg(long, default_value_t = 4)]
    kube_api_retries: u32,
    /// After SIGTERM, how long the listeners keep serving with /readyz already unready, so that
    /// Services stop routing here before the ports close (Go duration, 0s for none).
    #[arg(long, default_value = "0s", value_parser = parse_delay)]
    shutdown_delay: Duration,
    /// Webhook reviews served at once; more wait up to 1s for a slot, then get HTTP 429.
    #[arg(long, default_value_t = sliceguard_http::WEBHOOK_MAX_IN_FLIGHT, value_parser = parse_positive)]
    webhook_max_in_flight: usize,
    /// /readyz fails when the Kubernetes API has not answered for longer than this (Go duration);
    /// serve asks GET /version every third of it.
    #[arg(long, default_value = "30s", value_parser = parse_std_duration)]
    api_silence_limit: Duration,
    /// Log filter: a level (info, debug, ...) or per-target directives like info,kube=warn.
    #[arg(long, default_value = "info")]
    log_level: String,
    /// Log format.
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    /// Elect one leader among the replicas on a coordination.k8s.io/v1 Lease: only the leader
    /// answers /filter and /bind and writes; a standby answers them with an error kube-scheduler
    /// retries, still serves the webhook, and says `standby` on /readyz.
    #[arg(long, default_value_t = false)]
    leader_elect: bool,
    /// The Lease's name.
    #[arg(long, default_value = "sliceguard")]
    leader_elect_lease_name: String,
    /// The Lease's namespace (default: $POD_NAMESPACE, else sliceguard-system).
    #[arg(long)]
    leader_elect_namespace: Option<String>,
    /// This replica's holderIdentity (default: $POD_NAME, else the host name).
    #[arg(long)]
    leader_elect_identity: Option<String>,
    /// How long a Lease stays valid after it was last seen renewed (Go duration, whole seconds).
    #[arg(long, default_value = "15s", value_parser = parse_lock_timeout)]
    leader_elect_lease_duration: jiff::SignedDuration,
    /// How long the leader keeps leading after its last successful renew; shorter than the lease
    /// duration, so that it stops writing before another replica may take over.
    #[arg(long, default_value = "10s", value_parser = parse_lock_timeout)]
    leader_elect_renew_deadline: jiff::SignedDuration,
    /// How often a replica tries to acquire or renew the Lease.
    #[arg(long, default_value = "2s", value_parser = parse_lock_timeout)]
    leader_elect_retry_period: jiff::SignedDuration,
    /// Line up with the kube-scheduler in this pod: NAMESPACE/NAME of its leader-election Lease.
    /// While that Lease names a kube-scheduler in another pod (its identity is `<host>_<uuid>`,
    /// compared with $HOSTNAME), this replica takes no /filter or /bind work and, as the leader,
    /// steps down once its binds have finished, so that the sliceguard beside the active
    /// kube-scheduler leads. A missing or released Lease leaves the election as it is.
    #[arg(long, value_name = "NAMESPACE/NAME", requires = "leader_elect")]
    leader_elect_follow: Option<String>,
}

/// This container's host name, as kube-scheduler's `os.Hostname()` reads it: `$HOSTNAME`, else
/// `/etc/hostname`.
fn host_name() -> Option<String> {
    std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|h| h.trim().to_string())
                .filter(|h| !h.is_empty())
        })
}

/// The `--leader-elect-*` flags as election options (`None` without `--leader-elect`).
fn election(args: &ServeArgs) -> Result<Option<ElectionOptions>, Failure> {
    if !args.leader_elect {
        return Ok(None);
    }
    let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    let identity = args
        .leader_elect_identity
        .clone()
        .or_else(|| env("POD_NAME"))
        .or_else(host_name)
        .ok_or_else(|| {
            Failure::input("--leader-elect-identity: no $POD_NAME and no host name; give one")
        })?;
    let settings = LeaseSettings {
        identity,
        lease_duration: args.leader_elect_lease_duration,
        renew_deadline: args.leader_elect_renew_deadline,
        retry_period: args.leader_elect_retry_period,
    };
    settings
        .validate()
        .map_err(|e| Failure::input(e.to_string()))?;
    if args.leader_elect_lease_name.is_empty() {
        return Err(Failure::input(
            "--leader-elect-lease-name must not be empty",
        ));
    }
    let follow = match &args.leader_elect_follow {
        None => None,
        Some(raw) => {
            let Some((namespace, lease_name)) = raw
                .split_once('/')
                .filter(|(ns, name)| !ns.is_empty() && !name.is_empty() && !name.contains('/'))
            else {
                return Err(Failure::input(format!(
                    "--leader-elect-follow: expected NAMESPACE/NAME, got {raw:?}"
                )));
            };
            let host = host_name()
                .ok_or_else(|| {
                    Failure::input("--leader-elect-follow: no $HOSTNAME and no /etc/hostname to compare kube-scheduler's identity with")
                })?;
            Some(FollowOptions {
                namespace: namespace.to_string(),
                lease_name: lease_name.to_string(),
                host,
            })
        }
    };
    Ok(Some(ElectionOptions {
        lease_name: args.leader_elect_lease_name.clone(),
        namespace: args
            .leader_elect_namespace
            .clone()
            .or_else(|| env("POD_NAMESPACE"))
            .unwrap_or_else(|| "sliceguard-system".into()),
        settings,
        follow,
    }))
}

/// `--lock-release` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum LockRelease {
    /// Release right after the Binding.
    AfterBind,
    /// Hold for HAMi's device plugin.
    DevicePlugin,
}

fn parse_label_match(text: &str) -> Result<LabelMatch, String> {
    text.parse()
}

/// `--watch-pods` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum WatchPods {
    /// Every pod (host CPU tracked).
    All,
    /// Only pods labelled hami.io/vgpu-node.
    Gpu,
}

/// `--log-format` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

fn parse_node_policy(s: &str) -> Result<NodePolicy, String> {
    s.parse()
}

fn parse_gpu_policy(s: &str) -> Result<GpuPolicy, String> {
    s.parse()
}

fn parse_lock_timeout(s: &str) -> Result<jiff::SignedDuration, String> {
    let d = go_duration::parse(s).map_err(|e| e.to_string())?;
    if d <= jiff::SignedDuration::ZERO {
        return Err(format!("{s:?} must be positive"));
    }
    Ok(d)
}

fn parse_positive(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(format!("{s:?} must be a whole number of 1 or more")),
    }
}

/// A Go duration that may be zero (`0s`).
fn parse_delay(s: &str) -> Result<Duration, String> {
    if matches!(s, "0" | "0s") {
        return Ok(Duration::ZERO);
    }
    parse_std_duration(s)
}

/// Refuses a non-loopback extender address unless `allowed`.
pub(crate) fn check_extender_address(address: SocketAddr, allowed: bool) -> Result<(), Failure> {
    if address.ip().is_loopback() || allowed {
        return Ok(());
    }
    Err(Failure::input(format!(
        "--http_bind {address} is not a loopback address: the extender has no authentication, so anyone who reaches it can bind any pod to any node; listen on 127.0.0.1 (kube-scheduler calls it from the same pod) or pass --allow-non-loopback-extender to expose it deliberately"
    )))
}

pub(crate) fn parse_std_duration(s: &str) -> Result<Duration, String> {
    let d = parse_lock_timeout(s)?;
    Duration::try_from(d).map_err(|e| format!("{s:?}: {e}"))
}

/// `HOST:PORT`, `[V6]:PORT`, or Go's `:PORT` (all interfaces).
pub(crate) fn parse_address(s: &str) -> Result<SocketAddr, String> {
    let full = if s.starts_with(':') {
        format!("0.0.0.0{s}")
    } else {
        s.to_string()
    };
    if let Ok(addr) = full.parse::<SocketAddr>() {
        return Ok(addr);
    }
    full.to_socket_addrs()
        .ok()
        .and_then(|mut addrs| addrs.next())
        .ok_or_else(|| {
            format!("{s:?} is not HOST:PORT (e.g. 0.0.0.0:9443, 127.0.0.1:8080 or :9395)")
        })
}

/// Installs the tracing subscriber writing to standard error.
pub(crate) fn init_logging(filter: &str, json: bool) -> Result<(), Failure> {
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    let targets: tracing_subscriber::filter::Targets = filter
        .parse()
        .map_err(|e| Failure::input(format!("--log-level {filter:?}: {e}")))?;
    let layer = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let registry = tracing_subscriber::registry().with(targets);
    // A second initialisation (tests running several commands in one process) is not an error.
    let _ = if json {
        registry.with(layer.json()).try_init()
    } else {
        registry.with(layer).try_init()
    };
    Ok(())
}

pub(crate) fn runtime() -> Result<tokio::runtime::Runtime, Failure> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure {
            code: 1,
            message: format!("cannot start the async runtime: {e}"),
        })
}

pub fn run(args: &ServeArgs) -> Result<(), Failure> {
    init_logging(&args.log_level, args.log_format == LogFormat::Json)?;
    if args.scheduler_name.is_empty() {
        return Err(Failure::input("--scheduler-name must not be empty"));
    }
    check_extender_address(args.http_bind, args.allow_non_loopback_extender)?;
    if args.route_cpu_pods.is_some() && args.watch_pods == WatchPods::Gpu {
        return Err(Failure::input(
            "--route-cpu-pods needs --watch-pods all: placing a CPU-only pod reads every node's CPU, which only the watch of every pod shows",
        ));
    }
    if args.trusted_scheduler_user.is_empty() {
        return Err(Failure::input(
            "--trusted-scheduler-user must not be empty (sliceguard's own writes would be denied)",
        ));
    }
    if args.allocation_stall_timeout < args.node_lock_timeout {
        return Err(Failure::input(format!(
            "--allocation-stall-timeout {} is shorter than --node-lock-timeout {}: a holder must be given at least the lock's own time to be allocated",
            go_duration::format(args.allocation_stall_timeout),
            go_duration::format(args.node_lock_timeout)
        )));
    }
    let release_mode = match args.lock_release {
        LockRelease::AfterBind => ReleaseMode::AfterBind,
        LockRelease::DevicePlugin => ReleaseMode::DevicePlugin,
    };
    let decision = SchedulerSettings {
        policies: PolicyDefaults {
            node: args.node_scheduler_policy,
            gpu: args.gpu_scheduler_policy.clone(),
        },
        ..SchedulerSettings::default()
    };
    let config = SchedulerConfig {
        scheduler_name: args.scheduler_name.clone(),
        webhook: crate::admission::WebhookSettings {
            scheduler_name: args.scheduler_name.clone(),
            force_overwrite_default_scheduler: args.force_overwrite_default_scheduler,
            requests: decision.requests,
            trusted: crate::guard::TrustedUsers {
                scheduler: args.trusted_scheduler_user.clone(),
                device_plugin: args.trusted_device_plugin_user.clone(),
            },
            cpu_pod_route: args.route_cpu_pods.clone(),
            ..Default::default()
        },
        decision,
        bind: BindSettings {
            lock_timeout: args.node_lock_timeout,
            release_mode,
            allocation_stall_timeout: args.allocation_stall_timeout,
            ..BindSettings::default()
        },
        sync_wait: args.sync_timeout,
        pod_scope: match args.watch_pods {
            WatchPods::All => PodScope::All,
            WatchPods::Gpu => PodScope::Gpu,
        },
        place_cpu_pods: args.route_cpu_pods.is_some(),
        ..SchedulerConfig::default()
    };
    let options = ServeOptions {
        kube: KubeSource {
            kubeconfig: args.kubeconfig.clone(),
            context: args.context.clone(),
            timeout: args.kube_timeout,
        },
        config,
        webhook_addr: args.webhook_bind_address,
        tls: args.tls_cert.clone().zip(args.tls_key.clone()),
        extender_addr: args.http_bind,
        metrics_addr: args.metrics_bind_address,
        shutdown_grace: args.shutdown_grace,
        limits: ServeLimits {
            webhook_max_in_flight: args.webhook_max_in_flight,
            health: HealthSettings {
                api_silence_limit: args.api_silence_limit,
            },
            shutdown_delay: args.shutdown_delay,
            api: ClientLimits {
                qps: args.kube_api_qps,
                max_retries: args.kube_api_retries,
                ..ClientLimits::default()
            },
        },
        election: election(args)?,
    };
    runtime()?
        .block_on(server::serve(options))
        .map_err(|e| Failure {
            code: e.exit_code(),
            message: e.to_string(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_accept_gos_port_only_form() {
        assert_eq!(
            parse_address(":9395").unwrap(),
            "0.0.0.0:9395".parse().unwrap()
        );
        assert_eq!(
            parse_address("127.0.0.1:8080").unwrap(),
            "127.0.0.1:8080".parse().unwrap()
        );
        assert_eq!(
            parse_address("[::1]:1").unwrap(),
            "[::1]:1".parse().unwrap()
        );
        let err = parse_address("nonsense").unwrap_err();
        assert!(err.contains("\"nonsense\" is not HOST:PORT"), "{err}");
    }

    #[test]
    fn the_extender_listens_on_loopback_unless_allowed() {
        let any: SocketAddr = "0.0.0.0:8080".parse().unwrap();
        let err = check_extender_address(any, false).unwrap_err();
        assert_eq!(err.code, 2);
        assert!(
            err.message.contains("--allow-non-loopback-extender"),
            "{}",
            err.message
        );
        assert!(err.message.contains("0.0.0.0:8080"), "{}", err.message);
        assert!(check_extender_address(any, true).is_ok());
        for ok in ["127.0.0.1:8080", "[::1]:8080", "127.0.0.2:1"] {
            assert!(
                check_extender_address(ok.parse().unwrap(), false).is_ok(),
                "{ok}"
            );
        }
        assert_eq!(parse_delay("0s"), Ok(Duration::ZERO));
        assert_eq!(parse_delay("2s"), Ok(Duration::from_secs(2)));
    }

    #[test]
    fn durations_are_go_durations() {
        assert_eq!(parse_std_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert!(
            parse_std_duration("0s")
                .unwrap_err()
                .contains("must be positive")
        );
        assert!(parse_std_duration("5 minutes").is_err());
    }

    #[derive(Debug, clap::Parser)]
    struct Wrapper {
        #[command(flatten)]
        serve: ServeArgs,
    }

    #[test]
    fn trusted_users_default_to_the_service_accounts_and_may_be_set() {
        use clap::Parser as _;
        let w = Wrapper::try_parse_from(["serve"]).unwrap();
        assert_eq!(
            w.serve.trusted_scheduler_user,
            "system:serviceaccount:sliceguard-system:sliceguard"
        );
        assert_eq!(
            w.serve.trusted_device_plugin_user,
            "system:serviceaccount:kube-system:hami-device-plugin"
        );
        let w = Wrapper::try_parse_from([
            "serve",
            "--trusted-scheduler-user",
            "sched",
            "--trusted-device-plugin-user",
            "",
        ])
        .unwrap();
        assert_eq!(w.serve.trusted_scheduler_user, "sched");
        assert_eq!(w.serve.trusted_device_plugin_user, "");
        let empty = Wrapper::try_parse_from(["serve", "--trusted-scheduler-user", ""]).unwrap();
        let err = run(&empty.serve).unwrap_err();
        assert!(
            err.message
                .contains("--trusted-scheduler-user must not be empty"),
            "{}",
            err.message
        );
    }

    #[test]
    fn leader_elect_follow_needs_leader_elect_and_a_namespaced_name() {
        use clap::Parser as _;
        let alone = Wrapper::try_parse_from(["serve", "--leader-elect-follow=ns/lease"]);
        let error = alone
            .expect_err("--leader-elect-follow without --leader-elect")
            .to_string();
        assert!(error.contains("--leader-elect"), "{error}");
        let w = Wrapper::try_parse_from([
            "serve",
            "--leader-elect",
            "--leader-elect-identity=replica-a",
            "--leader-elect-follow=sliceguard-system/sliceguard-kube-scheduler",
        ])
        .unwrap();
        let follow = election(&w.serve).unwrap().unwrap().follow.unwrap();
        assert_eq!(
            (follow.namespace.as_str(), follow.lease_name.as_str()),
            ("sliceguard-system", "sliceguard-kube-scheduler")
        );
        for bad in ["lease", "/lease", "ns/", "ns/a/b"] {
            let w = Wrapper::try_parse_from([
                "serve",
                "--leader-elect",
                "--leader-elect-identity=replica-a",
                &format!("--leader-elect-follow={bad}"),
            ])
            .unwrap();
            let error = election(&w.serve).expect_err(bad).message;
            assert!(
                error.contains("NAMESPACE/NAME") && error.contains(bad),
                "{error}"
            );
        }
    }
}
