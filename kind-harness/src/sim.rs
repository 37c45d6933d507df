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
    /// crash, node-deletion, pod-deletion, plugin-silent, watch-disconnect, clock-jump.
    #[arg(long, default_value = "all", value_parser = parse_faults)]
    faults: std::collections::BTreeSet<Fault>,
    /// Chance of each enabled fault at each opportunity, in thousandths.
    #[arg(long, default_value_t = 30)]
    fault_rate: u64,
    /// Device plugin on every node: none (fake fleet), hami (releases the lock after Allocate), mock (never does).
    #[arg(long, default_value = "none", value_parser = DevicePlugin::parse)]
    device_plugin: DevicePlugin,
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
}

#[derive(Debug, Subcommand)]
enum SimCommand {
    /// Serve the simulated cluster's REST façade on loopback, for kubectl and kube-rs.
    Serve(ServeArgs),
}

/// Serve the simulated cluster as a Kubernetes REST subset.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:6443")]
    addr: String,
    /// Where to write a kubeconfig pointing at it.
    #[arg(long)]
    kubeconfig_out: Option<PathBuf>,
    /// Fake GPU nodes to create.
    #[arg(long, default_value_t = 3)]
    nodes: usize,
    /// GPUs per node.
    #[arg(long, default_value_t = 8)]
    gpus_per_node: usize,
    /// MiB per GPU.
    #[arg(long, default_value_t = 81920)]
    memory: u32,
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
    let mut total_steps = 0u64;
    for seed in args.seed..args.seed + args.seeds {
        let config = SimConfig {
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
        };
        let ops = campaign::generate(seed, args.steps);
        let report = campaign::run(&config, &ops, true);
        total_steps += report.steps;
        bar.set_message(format!("{total_steps} steps"));
        bar.inc(1);
        if let Some(first) = report.violations.first() {
            bar.finish_and_clear();
            eprintln!("seed {seed}: {first}");
            eprintln!("shrinking {} operations ...", ops.len());
            let shrunk = campaign::shrink(&config, &ops, first.invariant, true, 400);
            let again = campaign::run(&config, &shrunk, true);
            std::fs::create_dir_all(&args.out)
                .with_context(|| format!("creating {}", args.out.display()))?;
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
        "{} seeds × {} operations ({} steps, faults: {}, device plugin {}, lock release {}): no violation in {:.1} s",
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
        started.elapsed().as_secs_f64()
    );
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
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let now = jiff::Timestamp::now();
        let mut store = sliceguard_sim::store::Store::new(now);
        let spec = FleetSpec { nodes: args.nodes, gpus_per_node: args.gpus_per_node, memory_mib: args.memory, ..FleetSpec::default() };
        for node in sliceguard::objects::fleet(&spec, now) {
            store
                .create(sliceguard_sim::store::Resource::Nodes, None, serde_json::to_value(node)?)
                .map_err(|e| anyhow::anyhow!("{e}"))?;
        }
        let shared = sliceguard_sim::http::SharedStore::new(store);
        let clock = {
            let shared = shared.clone();
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
                    shared.write(|s| s.set_time(jiff::Timestamp::now()));
                }
            })
        };
        let api = sliceguard_sim::http::serve(shared, None, &args.addr).await.with_context(|| format!("listening on {}", args.addr))?;
        if let Some(path) = &args.kubeconfig_out {
            std::fs::write(path, sliceguard_sim::http::kubeconfig(&api.url)).with_context(|| format!("writing {}", path.display()))?;
            eprintln!("kubeconfig written to {}", path.display());
        }
        eprintln!("simulated cluster serving at {} (Ctrl-C stops it); this is a test tier, not Kubernetes", api.url);
        let _ = tokio::signal::ctrl_c().await;
        clock.abort();
        let _ = api.shutdown.send(());
        Ok(())
    })
}
