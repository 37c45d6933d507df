//! `kind-harness conformance`: the seed lab's exercises and the GPU sharing it could not show,
//! each with a pass condition checked by code, on the embedded simulated cluster, on kind, or on
//! any cluster through a kubeconfig; the evidence written beside (see [`crate::evidence`]).
//!
//! A scenario ([`Scenario`]) runs in its own namespace (`sg-<scenario>-<run id>`), first reads the
//! cluster's state and checks its preconditions ([`precondition`]; an unmet one SKIPS it, naming
//! what it needed and what it saw), records checks with what it expected and what it saw
//! ([`context::Ctx::check`]), captures its pods and events, deletes what it created, and ends by
//! checking that no node holds `hami.io/mutex.lock`.
//!
//! The evidence is rewritten before and after every scenario, so SIGINT, SIGTERM or the run's
//! `--deadline` leave the report of the scenarios that finished, naming the one that was running.
//! Exit codes: 0 no scenario failed (skips allowed), 1 one failed or the deadline passed, 2 bad
//! flags or no cluster (a missing tool, Docker or image is named), 130/143 interrupted by
//! SIGINT/SIGTERM.

pub mod busy;
pub mod context;
pub mod observe;
pub mod precondition;
pub mod scenarios;

use crate::driver::{ClusterChoice, Driver, DriverError, DriverOptions, Waits};
use crate::evidence::{self, Report, ScenarioResult, Snapshots, Verdict};
use clap::Args;
use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, ListParams};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Run the conformance scenarios (the seed's three exercises and more) and write the evidence.
///
/// Each scenario creates pods through the API, lets the webhook, kube-scheduler, sliceguard (or
/// HAMi) and the kubelet do their work, and checks the outcome in code: phases, nodes, the
/// hami.io/vgpu-devices-allocated annotation, the scheduler's FilteringSucceed/FilteringFailed
/// events and their reasons, and the node locks. A failing scenario says what it expected and what
/// it saw. Scenarios: fractional, pending, placement, sharing, exclusive, selectors, multi-gpu,
/// churn, routing, locks (see the README section "Conformance: the seed's loop and ours").
#[derive(Debug, Args)]
#[command(
    after_help = "Scenarios (--list says what each proves):\n  fractional pending placement sharing exclusive selectors multi-gpu churn routing locks\n\nClusters:\n  sim         embedded simulated cluster, started in-process (default)\n  kind        the cluster of `kind-harness up` (exit 2 names missing docker/kind/kubectl)\n  kubeconfig  any cluster running sliceguard or HAMi (--kubeconfig FILE, else the usual)\n  k3s         a K3s cluster started with testcontainers, sliceguard deployed on it (needs Docker and the k3s image)\n\nA scenario whose precondition the cluster cannot meet (an idle GPU, room on two GPUs, ...) is SKIPPED,\nnaming the precondition and what it saw. The evidence is rewritten as scenarios end; SIGINT, SIGTERM\nor --deadline leave the report of what finished and name the scenario that was running.\n\nExit status: 0 no scenario failed (skips allowed), 1 a scenario failed or the deadline passed,\n2 bad flags or no cluster, 130/143 interrupted by SIGINT/SIGTERM.\n\nExamples:\n  # every scenario on the simulated cluster, evidence in evidence/<timestamp>/\n  kind-harness conformance\n  kind-harness conformance --scenario sharing --scenario churn\n  # a broken precondition on purpose: sharing fails, saying what it expected and saw\n  kind-harness conformance --scenario sharing --gpu-memory 40000\n  kind-harness conformance --cluster kind --evidence evidence/kind\n  # HAMi on an existing cluster\n  kind-harness conformance --cluster kubeconfig --kubeconfig lab.yaml \\\n      --scheduler-name hami-scheduler"
)]
pub struct ConformanceArgs {
    /// Which cluster to run on.
    #[arg(long, value_enum, default_value_t = ClusterChoice::Sim)]
    pub cluster: ClusterChoice,
    /// Scenario to run (repeatable; default: all, in the documented order).
    #[arg(long = "scenario", value_name = "NAME", value_parser = parse_scenario)]
    pub scenarios: Vec<String>,
    /// Evidence directory (default: evidence/<UTC timestamp>/).
    #[arg(long, value_name = "DIR")]
    pub evidence: Option<PathBuf>,
    /// kubeconfig file (--cluster kubeconfig or kind).
    #[arg(long, value_name = "FILE")]
    pub kubeconfig: Option<PathBuf>,
    /// kubeconfig context (--cluster kind: kind-<kind-name> unless given).
    #[arg(long)]
    pub context: Option<String>,
    /// kind cluster name (--cluster kind).
    #[arg(long, default_value = "sliceguard")]
    pub kind_name: String,
    /// The scheduler name GPU pods are routed to (hami-scheduler for HAMi).
    #[arg(long, default_value = "sliceguard-scheduler")]
    pub scheduler_name: String,
    /// Simulated cluster: GPU nodes.
    #[arg(long, default_value_t = 3)]
    pub nodes: usize,
    /// Simulated cluster: GPUs per node.
    #[arg(long, default_value_t = 8)]
    pub gpus_per_node: usize,
    /// Simulated cluster: MiB per GPU (the seed's fleet: 81920; set 40000 to watch `sharing` fail).
    #[arg(long, default_value_t = 81920, value_name = "MIB")]
    pub gpu_memory: u32,
    /// The most one wait may take, in seconds (default: 20 on sim, 300 elsewhere, which covers kube-scheduler's retry of unschedulable pods).
    #[arg(long, value_name = "SECS")]
    pub timeout: Option<u64>,
    /// How long "stays Pending" and "left alone" claims are watched, in milliseconds
    /// (default: 500 on sim, 5000 elsewhere).
    #[arg(long, value_name = "MS")]
    pub settle_ms: Option<u64>,
    /// Poll interval in milliseconds (default: 50 on sim, 500 elsewhere).
    #[arg(long, value_name = "MS")]
    pub poll_ms: Option<u64>,
    /// The most the whole run may take, in seconds; past it the run stops, writes the report of
    /// what finished (naming the scenario that was running) and exits 1.
    #[arg(long, value_name = "SECS")]
    pub deadline: Option<u64>,
    /// --cluster k3s: the K3s image (Kubernetes v1.33 or newer).
    #[arg(long, default_value = crate::driver::K3S_IMAGE, value_name = "IMAGE:TAG")]
    pub k3s_image: String,
    /// --cluster k3s: the sliceguard image built from the repository's Dockerfile and imported into K3s.
    #[arg(long, default_value = "sliceguard:dev", value_name = "IMAGE")]
    pub image: String,
    /// List the scenarios and what each proves, then exit.
    #[arg(long)]
    pub list: bool,
}

fn parse_scenario(s: &str) -> Result<String, String> {
    if scenarios::names().contains(&s) {
        Ok(s.to_string())
    } else {
        Err(format!(
            "unknown scenario {s:?}: expected one of {}",
            scenarios::names().join(", ")
        ))
    }
}

/// One scenario: a name, what it proves, and its run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scenario {
    /// The name (`--scenario`).
    pub name: &'static str,
    /// What it proves.
    pub proves: &'static str,
}

impl Scenario {
    /// Every scenario, in run order.
    pub fn all() -> Vec<Scenario> {
        scenarios::ALL
            .iter()
            .map(|(name, proves)| Scenario { name, proves })
            .collect()
    }

    /// Runs the scenario on `driver` in namespace `sg-<name>-<run_id>`: setup, the scenario's own
    /// steps, capture, cleanup, and the lock check.
    pub async fn run(
        &self,
        driver: &Driver,
        run_id: &str,
    ) -> (
        ScenarioResult,
        Option<(Vec<serde_json::Value>, Vec<serde_json::Value>)>,
    ) {
        let started = Instant::now();
        let mut ctx = context::Ctx::new(driver, format!("sg-{}-{run_id}", self.name));
        let mut error = None;
        if let Err(e) = ctx.setup().await {
            error = Some(e);
        } else {
            if let Err(e) = scenarios::run(self.name, &mut ctx).await {
                error = Some(e);
            }
            if let Err(e) = ctx.capture().await {
                error.get_or_insert(e);
            }
            if let Err(e) = ctx.cleanup_and_check_locks().await {
                error.get_or_insert(e);
            }
        }
        let passed = error.is_none()
            && ctx.checks.iter().all(|c| c.passed)
            && !ctx.checks.is_empty()
            && ctx.skipped.is_none();
        let result = ScenarioResult {
            name: self.name.to_string(),
            proves: self.proves.to_string(),
            passed,
            skipped: ctx.skipped,
            outcome: Verdict::Fail,
            checks: ctx.checks,
            pods: ctx.rows,
            error,
            seconds: started.elapsed().as_secs_f64(),
        }
        .settled();
        (result, ctx.snapshot)
    }
}

/// The whole run's outcome.
#[derive(Debug)]
pub struct Outcome {
    /// The report.
    pub report: Report,
    /// Where the evidence went.
    pub evidence: PathBuf,
    /// Set when a signal or the deadline stopped the run: the exit code to end with.
    pub interrupted: Option<u8>,
}

/// The report and snapshots so far, rewritten to the evidence directory as the run goes.
struct Progress {
    report: Report,
    snapshots: Snapshots,
    dir: PathBuf,
}

impl Progress {
    /// Writes what is known now; a failure is reported and the run goes on (the final write's
    /// failure is an error).
    fn save(&self) {
        if let Err(e) = evidence::write(&self.dir, &self.report, &self.snapshots) {
            eprintln!("warning: writing the evidence so far: {e}");
        }
    }
}

/// Runs the scenarios one by one, saving the evidence before each (naming it as running) and
/// after each (with its result and snapshots).
async fn run_scenarios(
    driver: &Driver,
    selected: &[Scenario],
    run_id: &str,
    progress: &mut Progress,
) {
    for scenario in selected {
        progress.report.running = Some(scenario.name.to_string());
        progress.save();
        eprintln!("running {} ...", scenario.name);
        let (result, snapshot) = if scenario.name == "locks" {
            locks_scenario(driver, scenario, &progress.report).await
        } else {
            scenario.run(driver, run_id).await
        };
        eprintln!(
            "  {} {} ({:.2} s)",
            scenario.name,
            result.verdict().word(),
            result.seconds
        );
        if let Some((pods, events)) = snapshot {
            progress
                .snapshots
                .scenarios
                .push((scenario.name.to_string(), pods, events));
        }
        progress.report.scenarios.push(result);
        progress.report.running = None;
        progress.save();
    }
}

/// Resolves when the run must stop: SIGINT (130), SIGTERM (143) or the deadline (1); says which.
async fn stop_request(deadline: Option<(Instant, u64)>) -> (String, u8) {
    let interrupt = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    let terminate = async {
        #[cfg(unix)]
        if let Some(term) = term.as_mut() {
            term.recv().await;
            return;
        }
        std::future::pending::<()>().await
    };
    let late = async {
        match deadline {
            Some((at, _)) => tokio::time::sleep_until(at.into()).await,
            None => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        () = interrupt => ("SIGINT".to_string(), 130),
        () = terminate => ("SIGTERM".to_string(), 143),
        () = late => (
            format!("the run's deadline (--deadline {} s)", deadline.map_or(0, |(_, s)| s)),
            1,
        ),
    }
}

/// The waits for the flags and cluster.
pub fn waits(args: &ConformanceArgs) -> Waits {
    let mut w = Waits::for_cluster(args.cluster);
    if let Some(t) = args.timeout {
        w.timeout = Duration::from_secs(t);
    }
    if let Some(s) = args.settle_ms {
        w.settle = Duration::from_millis(s);
    }
    if let Some(p) = args.poll_ms {
        w.poll = Duration::from_millis(p.max(1));
    }
    w
}

/// Runs the scenarios and writes the evidence.
pub async fn run_async(args: &ConformanceArgs) -> Result<Outcome, DriverError> {
    let deadline = args
        .deadline
        .map(|s| (Instant::now() + Duration::from_secs(s), s));
    if args.cluster == ClusterChoice::Sim
        && (args.nodes == 0 || args.gpus_per_node == 0 || args.gpu_memory == 0)
    {
        return Err(DriverError::Usage(format!(
            "--nodes ({}), --gpus-per-node ({}) and --gpu-memory ({}) must be positive",
            args.nodes, args.gpus_per_node, args.gpu_memory
        )));
    }
    let fleet = sliceguard::objects::FleetSpec {
        nodes: args.nodes,
        gpus_per_node: args.gpus_per_node,
        memory_mib: args.gpu_memory,
        ..Default::default()
    };
    let default_fleet = sliceguard::objects::FleetSpec::default();
    if args.cluster != ClusterChoice::Sim
        && (fleet.nodes != default_fleet.nodes
            || fleet.gpus_per_node != default_fleet.gpus_per_node
            || fleet.memory_mib != default_fleet.memory_mib)
    {
        return Err(DriverError::Usage(
            "--nodes, --gpus-per-node and --gpu-memory shape the simulated fleet only; on kind use `kind-harness up --gpu-memory`, elsewhere `sliceguard register`".into(),
        ));
    }
    let options = DriverOptions {
        cluster: args.cluster,
        kubeconfig: args.kubeconfig.clone(),
        context: args.context.clone(),
        kind_name: args.kind_name.clone(),
        scheduler_name: args.scheduler_name.clone(),
        fleet,
        waits: waits(args),
        k3s_image: args.k3s_image.clone(),
        image: args.image.clone(),
    };
    let driver = Driver::connect(&options).await?;
    let now = jiff::Timestamp::now();
    let run_id = format!("{:x}", now.as_second() % 0x1_0000_0000);
    let evidence_dir = args.evidence.clone().unwrap_or_else(|| {
        PathBuf::from("evidence").join(now.strftime("%Y%m%d-%H%M%S").to_string())
    });
    let nodes_api: Api<Node> = Api::all(driver.client.clone());
    let inventory = match nodes_api.list(&ListParams::default()).await {
        Ok(list) => observe::Inventory::from_nodes(&list.items).summary(),
        Err(e) => format!("cannot list nodes: {e}"),
    };
    let selected: Vec<Scenario> = Scenario::all()
        .into_iter()
        .filter(|s| args.scenarios.is_empty() || args.scenarios.iter().any(|n| n == s.name))
        .collect();
    let report = Report {
        cluster: driver.description.clone(),
        inventory,
        started: now.to_string(),
        scenarios: Vec::new(),
        running: None,
        interrupted: None,
    };
    if let Some(kubeconfig) = driver.kubeconfig() {
        let _ = std::fs::create_dir_all(&evidence_dir);
        let _ = std::fs::write(evidence_dir.join("sim.kubeconfig"), kubeconfig);
    }
    let mut progress = Progress {
        report,
        snapshots: Snapshots::default(),
        dir: evidence_dir.clone(),
    };
    let stop = stop_request(deadline);
    let interrupted = tokio::select! {
        () = run_scenarios(&driver, &selected, &run_id, &mut progress) => None,
        stop = stop => Some(stop),
    };
    if let Some((why, _)) = &interrupted {
        let report = &mut progress.report;
        report.interrupted = Some(match &report.running {
            Some(running) => format!(
                "{why} while running {running} (its pods in namespace sg-{running}-{run_id} may remain)"
            ),
            None => format!("{why} between scenarios"),
        });
        eprintln!("stopped: {}", report.interrupted.as_deref().unwrap_or(""));
    }
    // The nodes as they are at the end (bounded: an interrupted run must end promptly).
    if let Ok(Ok(list)) = tokio::time::timeout(
        Duration::from_secs(5),
        nodes_api.list(&ListParams::default()),
    )
    .await
    {
        progress.snapshots.nodes = list
            .items
            .iter()
            .filter_map(|n| serde_json::to_value(n).ok())
            .collect();
    }
    let _ = tokio::time::timeout(Duration::from_secs(10), driver.stop()).await;
    evidence::write(&evidence_dir, &progress.report, &progress.snapshots)
        .map_err(DriverError::Evidence)?;
    Ok(Outcome {
        report: progress.report,
        evidence: evidence_dir,
        interrupted: interrupted.map(|(_, code)| code),
    })
}

/// The `locks` scenario: no lock anywhere at the end of the run (waiting up to the timeout),
/// and every earlier scenario's own end-of-scenario lock check held.
async fn locks_scenario(
    driver: &Driver,
    scenario: &Scenario,
    so_far: &Report,
) -> (
    ScenarioResult,
    Option<(Vec<serde_json::Value>, Vec<serde_json::Value>)>,
) {
    let started = Instant::now();
    let mut ctx = context::Ctx::new(driver, "default".into());
    let mut error = None;
    for s in &so_far.scenarios {
        if let Some(c) = s
            .checks
            .iter()
            .find(|c| c.what.contains("hami.io/mutex.lock"))
        {
            ctx.check(
                format!("{}: no lock at its end", s.name),
                c.passed,
                c.expected.clone(),
                c.seen.clone(),
            );
        }
    }
    let deadline = Instant::now() + driver.waits.timeout;
    let mut patience = context::Patience::new(driver.waits.patience);
    loop {
        match ctx.nodes().await {
            Ok(nodes) => {
                let locks = observe::node_locks(&nodes);
                patience.note(|| format!("hami.io/mutex.lock to be released: {locks:?}"));
                if locks.is_empty() || Instant::now() >= deadline {
                    ctx.check(
                        "no node holds hami.io/mutex.lock at the end of the run",
                        locks.is_empty(),
                        "no lock",
                        if locks.is_empty() {
                            "no lock".to_string()
                        } else {
                            format!("{locks:?}")
                        },
                    );
                    break;
                }
            }
            Err(e) => {
                error = Some(e);
                break;
            }
        }
        tokio::time::sleep(driver.waits.poll).await;
    }
    let passed = error.is_none() && ctx.checks.iter().all(|c| c.passed);
    (
        ScenarioResult {
            name: scenario.name.to_string(),
            proves: scenario.proves.to_string(),
            passed,
            skipped: None,
            outcome: Verdict::Fail,
            checks: ctx.checks,
            pods: Vec::new(),
            error,
            seconds: started.elapsed().as_secs_f64(),
        }
        .settled(),
        None,
    )
}

/// `kind-harness conformance`: prints the table, writes the evidence; returns the exit code.
pub fn run(args: &ConformanceArgs) -> u8 {
    if args.list {
        for s in Scenario::all() {
            println!("{:<11} {}", s.name, s.proves);
        }
        return 0;
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: starting the async runtime: {e}");
            return 2;
        }
    };
    match runtime.block_on(run_async(args)) {
        Ok(outcome) => {
            print!("{}", evidence::terminal_table(&outcome.report));
            println!("evidence: {}", outcome.evidence.display());
            match outcome.interrupted {
                Some(code) => code,
                None if outcome.report.count(Verdict::Fail) == 0 => 0,
                None => 1,
            }
        }
        Err(DriverError::MissingTools(missing)) => {
            eprintln!("{}", crate::kind::missing_tools_message(&missing));
            2
        }
        Err(e) => {
            eprintln!("error: {e}");
            2
        }
    }
}
