//! `kind-harness sim`: seeded simulation campaigns in sliceguard's simulated cluster, and
//! `kind-harness sim serve`, the simulated cluster as a Kubernetes REST subset on loopback.
//!
//! A campaign runs `--seeds` seeds of `--steps` random operations each (pod creations and
//! deletions, node changes, scheduler crashes, waits) with the named faults injected at a seeded
//! rate, checks every invariant after every step and liveness once faults stop. On a violation it
//! shrinks the operation sequence, writes a replay file, prints the seed, the shrunk trace and the
//! exact command that replays it, and exits 1.

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use jiff::SignedDuration;
use sliceguard::bind::ReleaseMode;
use sliceguard::objects::FleetSpec;
use sliceguard_sim::campaign::{self, Replay};
use sliceguard_sim::world::{DevicePlugin, Fault, SimConfig};
use std::path::PathBuf;
use std::time::Instant;

/// Run seeded simulation campaigns with fault injection (or serve the simulated cluster).
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  kind-harness sim --seeds 200 --steps 2000 --faults all\n  kind-harness sim --seed 42 --steps 500 --device-plugin hami --lock-release device-plugin\n  kind-harness sim --replay sim-failures/seed-42.json\n  kind-harness sim serve --addr 127.0.0.1:6443 --kubeconfig-out sim.kubeconfig"
)]
pub struct SimArgs {
    #[command(subcommand)]
    command: Option<SimCommand>,
    /// Number of seeds to run (seeds start at --seed).
    #[arg(long, default_value_t = 20)]
    seeds: u64,
    /// The first seed.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Operations per seed (each is followed by at least one one-second step).
    #[arg(long, default_value_t = 500)]
    steps: usize,
    /// Faults to inject: `all`, `none`, or a comma list of conflict, server-error, lost-response,
    /// crash, node-deletion, pod-deletion, plugin-silent, watch-disconnect, clock-jump, throttle,
    /// filter-timeout, bind-timeout, tenant, rolling-update, lease-expiry, replica-pause,
    /// replica-partition, stale-bind, node-shrink, concurrent-bind, stale-view, cpu-resize,
    /// cpu-only-pod.
    #[arg(long, default_value = "all", value_parser = parse_faults)]
    faults: std::collections::BTreeSet<Fault>,
    /// Replays spent shrinking a failing seed's operations (0: save and print it unshrunk). The
    /// unshrunk run is saved first either way (`seed-N.unshrunk.json` in --out), so stopping a long
    /// shrink loses nothing.
    #[arg(long, default_value_t = 400)]
    shrink_runs: usize,
    /// Chance of each enabled fault at each opportunity, in thousandths.
    #[arg(long, default_value_t = 30)]
    fault_rate: u64,
    /// Device plugin on every node: none (fake fleet), hami (releases the lock after Allocate), mock (never does).
    #[arg(long, default_value = "none", value_parser = DevicePlugin::parse)]
    device_plugin: DevicePlugin,
    /// After every step the invariants are checked on what the step changed, from sums the world
    /// keeps up to date; every N steps (and at the end of each seed) those sums are recounted from
    /// scratch, a difference is the `books` violation, and every device and pod is checked. 1:
    /// recount at every step (slow); 0: only at the end of each seed.
    #[arg(long, value_name = "N", default_value_t = sliceguard_sim::world::DEFAULT_RECOUNT_EVERY)]
    recount_every: u64,
    /// The binder's lock release: after-bind or device-plugin.
    #[arg(long, default_value = "after-bind", value_parser = parse_release)]
    lock_release: ReleaseMode,
    /// Initial nodes.
    #[arg(long, default_value_t = 3)]
    nodes: usize,
    /// GPUs per initial node.
    #[arg(long, default_value_t = 2)]
    gpus_per_node: usize,
    /// MiB per GPU of the initial nodes.
    #[arg(long, default_value_t = 16384)]
    memory: u32,
    /// Replay a saved failure instead of running a campaign.
    #[arg(long)]
    replay: Option<PathBuf>,
    /// Where failing runs are saved.
    #[arg(long, default_value = "sim-failures")]
    out: PathBuf,
    /// Print the whole trace of each failing (or replayed) run.
    #[arg(long)]
    verbose: bool,
    /// Seeds run in parallel (default: the machine's cores). Each seed's run is deterministic, and
    /// the lowest failing seed is the one reported, whatever the number of jobs.
    #[arg(long)]
    jobs: Option<usize>,
}

#[derive(Debug, Subcommand)]
enum SimCommand {
    /// Serve the simulated cluster's REST façade on loopback, for kubectl and kube-rs.
    Serve(ServeArgs),
}

/// Serve the simulated cluster on loopback: the Kubernetes REST subset kubectl and kube-rs use, with
/// admission through a mutating webhook, a kube-scheduler stand-in calling an extender, kubelets
/// and device plugins. A test tier, not Kubernetes.
///
/// Two ways to use it. With `--embedded`, sliceguard's own `serve` runs inside this process against
/// the cluster (webhook over HTTPS with a generated certificate, extender over HTTP): a whole GPU
/// cluster in one command. Without it, the cluster calls a sliceguard you run yourself:
/// `--tls-out DIR` writes a certificate and key for its webhook (the cluster trusts that
/// certificate), `--webhook-url` and `--extender-url` default to `sliceguard serve`'s own defaults.
#[derive(Debug, Args)]
#[command(after_help = "\
Examples:
  # everything in one process
  kind-harness sim serve --embedded --kubeconfig-out sim.kubeconfig
  kubectl --kubeconfig sim.kubeconfig apply --validate=false -f examples/seed/
  kubectl --kubeconfig sim.kubeconfig get pods -o wide

  # sliceguard as a separate process, as in a real deployment
  kind-harness sim serve --kubeconfig-out sim.kubeconfig --scheduler-kubeconfig-out sliceguard.kubeconfig --tls-out sim-tls &
  sliceguard serve --kubeconfig sliceguard.kubeconfig --tls-cert sim-tls/tls.crt --tls-key sim-tls/tls.key \\
      --webhook-bind-address 127.0.0.1:9443 --metrics-bind-address 127.0.0.1:9395")]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:6443")]
    addr: String,
    /// Where to write a kubeconfig pointing at it (as the cluster admin, kubectl's user).
    #[arg(long)]
    kubeconfig_out: Option<PathBuf>,
    /// Where to write a kubeconfig for a `sliceguard serve` you run yourself: as sliceguard's
    /// ServiceAccount, the one user its webhook lets write scheduler-owned annotations.
    #[arg(long, value_name = "FILE")]
    scheduler_kubeconfig_out: Option<PathBuf>,
    /// Fake GPU nodes to create.
    #[arg(long, default_value_t = 3)]
    nodes: usize,
    /// GPUs per node.
    #[arg(long, default_value_t = 8)]
    gpus_per_node: usize,
    /// MiB per GPU.
    #[arg(long, default_value_t = 81920)]
    memory: u32,
    /// Split count per GPU (tasks that may share one).
    #[arg(long, default_value_t = 10)]
    split: u32,
    /// Run sliceguard's `serve` inside this process against the cluster.
    #[arg(long)]
    embedded: bool,
    /// Device plugin on every node: none (fake fleet), hami (releases the lock after Allocate), mock.
    #[arg(long, default_value = "none", value_parser = DevicePlugin::parse)]
    device_plugin: DevicePlugin,
    /// The webhook the API server calls on pod creation (without --embedded).
    #[arg(long, default_value = "https://127.0.0.1:9443/webhook")]
    webhook_url: String,
    /// CA bundle (PEM) the webhook's certificate must chain to (without --embedded).
    #[arg(long, conflicts_with = "tls_out")]
    webhook_ca: Option<PathBuf>,
    /// Generate a webhook certificate and key into DIR (tls.crt, tls.key) and trust it.
    #[arg(long, value_name = "DIR")]
    tls_out: Option<PathBuf>,
    /// Call no webhook: pods are stored as submitted.
    #[arg(long, conflicts_with_all = ["webhook_ca", "tls_out"])]
    no_webhook: bool,
    /// The extender's URL prefix the kube-scheduler stand-in calls (without --embedded).
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    extender_url: String,
    /// The scheduler name whose pods go to the extender.
    #[arg(long, default_value = "sliceguard-scheduler")]
    scheduler_name: String,
    /// Running GPU pods (1024 MiB, 5 cores) created already placed at start, round robin over the
    /// devices: a large cluster's steady state (e.g. --nodes 20000 --pods 100000).
    #[arg(long, default_value_t = 0)]
    pods: usize,
    /// Preload other work, as on a cluster in use: fractional and whole-GPU pods on some GPUs of
    /// every node, a cordoned device, and a node with a second GPU model (see the conformance
    /// module `busy`).
    #[arg(long)]
    busy: bool,
}

fn parse_faults(s: &str) -> Result<std::collections::BTreeSet<Fault>, String> {
    Fault::parse_list(s)
}

fn parse_release(s: &str) -> Result<ReleaseMode, String> {
    match s {
        "after-bind" => Ok(ReleaseMode::AfterBind),
        "device-plugin" => Ok(ReleaseMode::DevicePlugin),
        o => Err(format!(
            "unknown lock release {o:?}: expected after-bind or device-plugin"
        )),
    }
}

/// Runs the subcommand; the exit code is 0 (no violation), 1 (a violation) or 2 (bad input).
pub fn run(args: &SimArgs) -> Result<u8> {
    if let Some(SimCommand::Serve(serve)) = &args.command {
        return serve_cluster(serve).map(|()| 0);
    }
    if let Some(path) = &args.replay {
        return replay(path, args.verbose);
    }
    if args.nodes == 0 || args.gpus_per_node == 0 || args.memory == 0 {
        bail!("--nodes, --gpus-per-node and --memory must be positive");
    }
    let started = Instant::now();
    let bar = ProgressBar::new(args.seeds);
    bar.set_style(
        ProgressStyle::with_template("{spinner} seeds {pos}/{len} [{elapsed_precise}] {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let config_for = |seed: u64| SimConfig {
        seed,
        fleet: FleetSpec {
            nodes: args.nodes,
            gpus_per_node: args.gpus_per_node,
            memory_mib: args.memory,
            ..FleetSpec::default()
        },
        device_plugin: args.device_plugin,
        lock_release: args.lock_release,
        lock_timeout: SignedDuration::from_mins(5),
        faults: args.faults.clone(),
        fault_per_mille: args.fault_rate,
        scheduler_name: "sliceguard-scheduler".into(),
        recount_every: args.recount_every,
    };
    // Seeds run in parallel (each world is single-threaded and independent); the first failing seed
    // in seed order is the one reported, so the outcome does not depend on the number of jobs.
    let jobs = args.jobs.unwrap_or_else(|| {
        std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
    });
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(jobs.max(1))
        .build()
        .context("starting the campaign's worker threads")?;
    let total_steps = std::sync::atomic::AtomicU64::new(0);
    let coverage = std::sync::Mutex::new(std::collections::BTreeMap::<String, u64>::new());
    let first_failure = std::sync::atomic::AtomicU64::new(u64::MAX);
    let failures: Vec<(u64, Vec<campaign::Op>, campaign::RunReport)> = pool.install(|| {
        use rayon::prelude::*;
        (args.seed..args.seed + args.seeds)
            .into_par_iter()
            .filter_map(|seed| {
                // Seeds after a known failure cannot change the answer.
                if seed > first_failure.load(std::sync::atomic::Ordering::Relaxed) {
                    return None;
                }
                let ops = campaign::generate(seed, args.steps);
                let report = campaign::run(&config_for(seed), &ops, true);
                let steps = total_steps
                    .fetch_add(report.steps, std::sync::atomic::Ordering::Relaxed)
                    + report.steps;
                {
                    let mut sums = coverage
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                    for (what, n) in campaign::coverage(&report.trace) {
                        *sums.entry(what).or_insert(0) += n;
                    }
                    *sums.entry(campaign::MEMO_COVERAGE.to_string()).or_insert(0) +=
                        report.memo_verdicts_checked;
                    *sums
                        .entry(campaign::HOST_CPU_COVERAGE.to_string())
                        .or_insert(0) += report.host_cpu_comparisons;
                }
                bar.set_message(format!("{steps} steps"));
                bar.inc(1);
                if report.violations.is_empty() {
                    return None;
                }
                first_failure.fetch_min(seed, std::sync::atomic::Ordering::Relaxed);
                Some((seed, ops, report))
            })
            .collect()
    });
    let total_steps = total_steps.into_inner();
    if let Some((seed, ops, report)) = failures.into_iter().min_by_key(|(seed, _, _)| *seed) {
        let config = config_for(seed);
        if let Some(first) = report.violations.first() {
            bar.finish_and_clear();
            eprintln!("seed {seed}: {first}");
            std::fs::create_dir_all(&args.out)
                .with_context(|| format!("creating {}", args.out.display()))?;
            let unshrunk = args.out.join(format!("seed-{seed}.unshrunk.json"));
            std::fs::write(
                &unshrunk,
                serde_json::to_string_pretty(&Replay::new(&config, ops.clone(), true))?,
            )
            .with_context(|| format!("writing {}", unshrunk.display()))?;
            eprintln!(
                "saved before shrinking: kind-harness sim --replay {}",
                unshrunk.display()
            );
            let shrink_runs = args.shrink_runs;
            eprintln!(
                "shrinking {} operations (at most {shrink_runs} replays; --shrink-runs 0 skips it) ...",
                ops.len()
            );
            let shrinking = ProgressBar::new(shrink_runs as u64);
            shrinking.set_style(
                ProgressStyle::with_template(
                    "{spinner} shrinking {pos}/{len} runs [{elapsed_precise}] {msg}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            shrinking.set_message(format!("{} operations", ops.len()));
            let shrunk = if shrink_runs == 0 {
                ops.clone()
            } else {
                campaign::shrink(
                    &config,
                    &ops,
                    first.invariant,
                    true,
                    shrink_runs,
                    &|runs, smallest| {
                        shrinking.set_position(runs as u64);
                        shrinking.set_message(format!(
                            "smallest failing sequence {smallest} of {} operations",
                            ops.len()
                        ));
                    },
                )
            };
            shrinking.finish_and_clear();
            let again = campaign::run(&config, &shrunk, true);
            let file = args.out.join(format!("seed-{seed}.json"));
            let saved = Replay::new(&config, shrunk.clone(), true);
            std::fs::write(&file, serde_json::to_string_pretty(&saved)?)
                .with_context(|| format!("writing {}", file.display()))?;
            println!(
                "VIOLATION with seed {seed} after {} of {} operations",
                shrunk.len(),
                ops.len()
            );
            for v in &again.violations {
                println!("  {v}");
            }
            println!("shrunk operations:");
            for op in &shrunk {
                println!("  {}", serde_json::to_string(op)?);
            }
            println!("trace of the shrunk run (last 40 lines):");
            let skip = again
                .trace
                .len()
                .saturating_sub(if args.verbose { usize::MAX } else { 40 });
            for line in again.trace.iter().skip(skip) {
                println!("  {line}");
            }
            println!("replay: kind-harness sim --replay {}", file.display());
            return Ok(1);
        }
    }
    bar.finish_and_clear();
    println!(
        "{} seeds × {} operations ({} steps, faults: {}, device plugin {}, lock release {}): no violation in {:.1} s ({} jobs)",
        args.seeds,
        args.steps,
        total_steps,
        if args.faults.is_empty() {
            "none".to_string()
        } else {
            args.faults
                .iter()
                .map(|f| f.as_str())
                .collect::<Vec<_>>()
                .join(",")
        },
        args.device_plugin.as_str(),
        args.lock_release.as_str(),
        started.elapsed().as_secs_f64(),
        jobs.max(1)
    );
    let coverage = coverage
        .into_inner()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let mut line = String::from("coverage:");
    for fault in &args.faults {
        let key = format!("fault {}", fault.as_str());
        line.push_str(&format!(
            " {key} {},",
            coverage.get(&key).copied().unwrap_or(0)
        ));
    }
    for (what, n) in coverage.iter().filter(|(k, _)| !k.starts_with("fault ")) {
        line.push_str(&format!(" {what} {n},"));
    }
    println!("{}", line.trim_end_matches(','));
    Ok(0)
}

fn replay(path: &PathBuf, verbose: bool) -> Result<u8> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let saved: Replay = serde_json::from_str(&text)
        .with_context(|| format!("{} is not a replay file", path.display()))?;
    let config = saved.config().map_err(anyhow::Error::msg)?;
    let report = campaign::run(&config, &saved.ops, saved.liveness);
    if verbose {
        for line in &report.trace {
            println!("{line}");
        }
    }
    if report.violations.is_empty() {
        println!("replayed {} operations: no violation", saved.ops.len());
        return Ok(0);
    }
    for v in &report.violations {
        println!("{v}");
    }
    Ok(1)
}

fn serve_cluster(args: &ServeArgs) -> Result<()> {
    if args.nodes == 0 || args.gpus_per_node == 0 || args.memory == 0 || args.split == 0 {
        bail!("--nodes, --gpus-per-node, --memory and --split must be positive");
    }
    let fleet = FleetSpec {
        nodes: args.nodes,
        gpus_per_node: args.gpus_per_node,
        memory_mib: args.memory,
        split: args.split,
        ..FleetSpec::default()
    };
    let busy_fleet = fleet.clone();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let (served, banner) = if args.embedded {
            let cluster = sliceguard_sim::embedded::Embedded::start(
                sliceguard_sim::embedded::EmbeddedOptions {
                    fleet,
                    device_plugin: args.device_plugin,
                    scheduler_name: args.scheduler_name.clone(),
                    addr: args.addr.clone(),
                    preload_pods: args.pods,
                    ..Default::default()
                },
            )
            .await
            .map_err(anyhow::Error::msg)?;
            let banner = format!(
                "simulated cluster serving at {} with sliceguard inside (extender {}, webhook {:?})",
                cluster.api_url(),
                cluster.scheduler().extender_addr,
                cluster.scheduler().webhook_addr
            );
            (Served::Embedded(Box::new(cluster)), banner)
        } else {
            let cluster =
                sliceguard_sim::live::LiveCluster::start(sliceguard_sim::live::LiveOptions {
                    addr: args.addr.clone(),
                    fleet,
                    scheduler_name: args.scheduler_name.clone(),
                    webhook: webhook_target(args)?,
                    extender_url: Some(args.extender_url.clone()),
                    device_plugin: args.device_plugin,
                    preload_pods: args.pods,
                    ..Default::default()
                })
                .await
                .map_err(anyhow::Error::msg)?;
            let banner = format!(
                "simulated cluster serving at {} (webhook {}, extender {})",
                cluster.url(),
                if args.no_webhook { "off" } else { args.webhook_url.as_str() },
                args.extender_url
            );
            (Served::Live(cluster), banner)
        };
        if args.busy {
            let shared = match &served {
                Served::Embedded(cluster) => cluster.cluster().shared(),
                Served::Live(cluster) => cluster.shared(),
            };
            let done = shared
                .write(|s| crate::conformance::busy::preload(s, &busy_fleet, &args.scheduler_name))
                .map_err(anyhow::Error::msg)?;
            eprintln!(
                "busy cluster: {} pods of other work in namespace {}, device {} cordoned, node {} of a second GPU model",
                done.pods,
                crate::conformance::busy::NAMESPACE,
                done.cordoned,
                done.nodes.join(", ")
            );
        }
        if let Some(path) = &args.kubeconfig_out {
            let text = match &served {
                Served::Embedded(cluster) => cluster.kubeconfig(),
                Served::Live(cluster) => cluster.kubeconfig(),
            };
            std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
            eprintln!("kubeconfig written to {}", path.display());
        }
        if let Some(path) = &args.scheduler_kubeconfig_out {
            let user = sliceguard::guard::DEFAULT_SCHEDULER_USER;
            let text = match &served {
                Served::Embedded(cluster) => cluster.cluster().kubeconfig_as(user),
                Served::Live(cluster) => cluster.kubeconfig_as(user),
            };
            std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
            eprintln!("kubeconfig for sliceguard ({user}) written to {}", path.display());
        }
        eprintln!("{banner}; Ctrl-C stops it. A test tier, not Kubernetes.");
        let _ = tokio::signal::ctrl_c().await;
        match served {
            Served::Embedded(cluster) => cluster.stop().await,
            Served::Live(cluster) => cluster.stop().await,
        }
        Ok(())
    })
}

/// What `sim serve` runs: the live cluster alone, or with sliceguard inside.
enum Served {
    Embedded(Box<sliceguard_sim::embedded::Embedded>),
    Live(sliceguard_sim::live::LiveCluster),
}

/// The mutating webhook the live cluster calls: none with `--no-webhook`; over HTTPS it needs the
/// CA, read from `--webhook-ca` or generated with the certificate into `--tls-out`.
fn webhook_target(args: &ServeArgs) -> Result<Option<sliceguard_sim::live::WebhookTarget>> {
    if args.no_webhook {
        return Ok(None);
    }
    let ca_pem = match (&args.webhook_ca, &args.tls_out) {
        (Some(path), _) => Some(
            std::fs::read_to_string(path)
                .with_context(|| format!("reading --webhook-ca {}", path.display()))?,
        ),
        (None, Some(dir)) => Some(write_webhook_certificate(dir)?),
        (None, None) if args.webhook_url.starts_with("https://") => bail!(
            "the webhook {} is HTTPS: give --tls-out DIR (to generate its certificate), --webhook-ca FILE, or --no-webhook",
            args.webhook_url
        ),
        (None, None) => None,
    };
    Ok(Some(sliceguard_sim::live::WebhookTarget {
        url: args.webhook_url.clone(),
        ca_pem,
        ignore_failures: false,
        scope: None,
    }))
}

/// Writes `DIR/tls.crt` and `DIR/tls.key` for `localhost` and `127.0.0.1`; returns the certificate.
fn write_webhook_certificate(dir: &std::path::Path) -> Result<String> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let certified =
        rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()])
            .context("generating the webhook certificate")?;
    let cert = certified.cert.pem();
    for (name, text) in [
        ("tls.crt", cert.clone()),
        ("tls.key", certified.signing_key.serialize_pem()),
    ] {
        let path = dir.join(name);
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    eprintln!(
        "webhook certificate written to {0}/tls.crt and {0}/tls.key",
        dir.display()
    );
    Ok(cert)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{Args, Command};

    #[test]
    fn the_faults_help_names_every_fault() {
        let command = SimArgs::augment_args(Command::new("sim"));
        let help = command
            .get_arguments()
            .find(|a| a.get_id() == "faults")
            .and_then(|a| a.get_help())
            .map(ToString::to_string)
            .unwrap_or_default();
        let missing: Vec<&str> = Fault::ALL
            .iter()
            .map(|f| f.as_str())
            .filter(|name| !help.contains(name))
            .collect();
        assert!(
            missing.is_empty(),
            "--faults help misses {missing:?}: {help}"
        );
    }
}
