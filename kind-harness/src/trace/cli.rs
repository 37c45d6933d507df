//! The `kind-harness trace` subcommand: arguments, running the (policy × seed) jobs with a progress
//! bar, and printing the results.

use super::cluster::CpuPlacement;
use super::input::{read_nodes, read_pods};
use super::placer::{FragmentationTuning, PolicySpec, ProfileSource, SpecMatch};
use super::quality;
use super::replay::{DecisionPath, ReplayConfig, Trace, replay};
use super::summary::{PolicySummary, RunSummary, csv, table};
use anyhow::{Context, bail};
use clap::{Args, ValueEnum};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use rayon::prelude::*;
use sliceguard::fragmentation::Weighting;
use std::io::IsTerminal;
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// The subcommand's long help: what it does, examples, the data's terms.
const AFTER_HELP: &str = "\
Follows the FGD paper's recipe (USENIX ATC '23, \"Beware of Fragmentation\"): per seed, the tasks are
shuffled, resampled to --tune x the fleet's GPU capacity and submitted once each, in order, with no
retries and no deletions. GPU pods are decided by sliceguard's core (the same fit, scores and
decision as `sliceguard place` and the extender); CPU-only pods by kube-scheduler's scoring (or by
the policy, see --cpu-pods). Capacity invariants are checked after every placement; a violation
fails the run. Reports the unallocated GPU share at 100 % arrived workload (mean +- sd and median
over the seeds), fragmentation amount and rate, failed pods, time per seed and decisions per second.

Examples:
  kind-harness trace                               # HAMi's four pairs and fragmentation, seeds 42..51
  kind-harness trace --policy binpack/spread --seeds 42
  kind-harness trace --policy fragmentation --policy paper-fgd --seeds 1..6 --jobs 2
  kind-harness trace --pods ../shared/data/alibaba-openb/openb_pod_list_gpushare40.csv -o json
  kind-harness trace --quality-report bench/QUALITY.md --variants   # what `make quality` runs

Data: Alibaba cluster-trace-gpu-v2023 (github.com/alibaba/clusterdata), for research and study
use; cite Weng et al., \"Beware of Fragmentation: Scheduling GPU-Sharing Workloads with
Fragmentation Gradient Descent\", USENIX ATC '23.";

/// Where the trace lives relative to the repository root (a sibling checkout of `shared/`).
pub const DEFAULT_DATA_DIR: &str = "../shared/data/alibaba-openb";
/// The paper's fleet file.
pub const DEFAULT_NODES: &str = "openb_node_list_gpu_node.csv";
/// The paper's default trace.
pub const DEFAULT_PODS: &str = "openb_pod_list_default.csv";

/// Output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// A readable table.
    Table,
    /// Everything, as JSON (summaries, per-seed curves).
    Json,
    /// One row per trace, policy, seed and arrived percentage.
    Csv,
}

/// Replay a production GPU trace through sliceguard's scheduler and measure placement quality.
#[derive(Debug, Clone, Args)]
#[command(after_help = AFTER_HELP)]
pub struct TraceArgs {
    /// Folder holding the trace's CSV files.
    #[arg(long, default_value = DEFAULT_DATA_DIR)]
    pub data: PathBuf,
    /// Node list (default: DATA/openb_node_list_gpu_node.csv, the paper's 1,213 GPU nodes).
    #[arg(long)]
    pub nodes: Option<PathBuf>,
    /// Pod list (default: DATA/openb_pod_list_default.csv).
    #[arg(long)]
    pub pods: Option<PathBuf>,
    /// Policies to replay, repeatable: NODE/GPU for HAMi's pairs through sliceguard's core (node:
    /// binpack or spread; GPU: binpack, spread or mutex), `fragmentation` for sliceguard's
    /// fragmentation-aware policy, or a paper baseline re-implemented for calibration:
    /// paper-bestfit, paper-fgd, paper-random. Default: HAMi's four pairs and fragmentation.
    #[arg(long = "policy", value_name = "POLICY")]
    pub policies: Vec<PolicySpec>,
    /// Seeds: a range `A..B` (inclusive) or a comma list.
    #[arg(long, default_value = "42..51", value_parser = parse_seeds)]
    pub seeds: Seeds,
    /// Resample each trace to this multiple of the fleet's GPU capacity (the paper: 1.3).
    #[arg(long, default_value_t = 1.3, value_parser = parse_tune)]
    pub tune: f64,
    /// Split count per GPU. 20 never binds before cores or memory on this trace (the smallest
    /// share is 50 milli = 5 % cores); runs still count how often HAMi's default of 10 would bind.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub split: u32,
    /// Pods a node accepts (kube's NodeResourcesFit pod count; the paper: 1001).
    #[arg(long, default_value_t = 1001)]
    pub max_pods: u32,
    /// How a task's gpu_spec restricts GPU models: exact model names (node affinity), or HAMi's
    /// nvidia.com/use-gputype, a case-insensitive substring match (A10 also matches A100).
    #[arg(long, value_enum, default_value_t = SpecMatch::Exact)]
    pub gpu_spec_match: SpecMatch,
    /// Who places CPU-only pods: kube-scheduler's default profile (spreads), its MostAllocated
    /// strategy (packs), or the policy itself (the paper's setting; sliceguard's fragmentation
    /// policy can, HAMi's pairs cannot). Default: kube-default for HAMi's pairs, policy for
    /// fragmentation and the paper baselines.
    #[arg(long, value_enum)]
    pub cpu_pods: Option<CpuPlacement>,
    /// Where the fragmentation policy's typical workload comes from: learned online from the GPU
    /// pods seen so far, or counted from the whole trace in advance (the paper's FGD; comparison only).
    #[arg(long, value_enum, default_value_t = ProfileSource::Learned)]
    pub profile: ProfileSource,
    /// Ablation: the fragmentation policy's score scale in GPUs (sliceguard: 4; FGD's: 1; 0
    /// compares the growth exactly).
    #[arg(long, default_value_t = sliceguard::fragmentation::SCORE_SCALE_GPUS, value_parser = parse_scale)]
    pub fragmentation_scale: f64,
    /// Ablation: weight the fragmentation policy's typical shapes by frequency alone (FGD's way)
    /// instead of by frequency x sqrt(GPU demand) (the same as --weighting-exponent 0).
    #[arg(long, conflicts_with = "weighting_exponent")]
    pub count_weighted: bool,
    /// Ablation: weight each typical shape by frequency x GPU demand^E, E in 0..=1 in steps of
    /// 0.01 (sliceguard: 0.5; 1: demand weighting; 0: FGD's count weighting). Needs
    /// --decision-path core.
    #[arg(long, value_name = "E", value_parser = parse_weighting_exponent)]
    pub weighting_exponent: Option<Weighting>,
    /// Ablation: the fragmentation policy's score scale (GPUs) for pods that take more than one
    /// GPU (sliceguard: 1, FGD's scale; the same as --fragmentation-scale scores them like every
    /// other pod). Needs --decision-path core.
    #[arg(long, value_name = "GPUS", default_value_t = sliceguard::fragmentation::MULTI_GPU_SCORE_SCALE_GPUS, value_parser = parse_scale)]
    pub multi_gpu_scale: f64,
    /// The path sliceguard's policies decide through: service (serve's own: the service's view fed
    /// as its watches would, the learned workload and host CPU read from it, the filter machine) or
    /// core (the decision called directly on the harness's registry and ledger; needed with
    /// --profile trace and the tuning ablations, which serve has no setting for).
    #[arg(long, value_enum, default_value_t = DecisionPath::Service)]
    pub decision_path: DecisionPath,
    /// Print, for each seed, the floor: the least unallocated GPU % any scheduler can reach at
    /// 100 % arrived on that seed's arrivals (a linear-program relaxation that knows every arrived
    /// task), instead of replaying policies.
    #[arg(long)]
    pub floor: bool,
    /// Measure only the decision latency of the quality report (5,000 nodes × 8 GPUs, each policy;
    /// `serve`'s per-pod filter work on a steady fleet, see `trace/latency.rs`), instead of
    /// replaying the trace: a minute, where `make quality` takes most of an hour.
    #[arg(long, conflicts_with_all = ["floor", "quality_report"])]
    pub latency: bool,
    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value_t = Format::Table)]
    pub output: Format,
    /// Runs in parallel (each run is single-threaded).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=256))]
    pub jobs: u32,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
    /// Offer the scheduler every node that passes kube-scheduler's filters, instead of only those
    /// where the pod's GPU part fits (same decisions, much slower: every rejected node gets its
    /// HAMi reason list).
    #[arg(long)]
    pub no_fast_path: bool,
    /// Run the whole benchmark and write this Markdown report (plus SVG plots beside it). Uses
    /// --data, --seeds, --tune, --split, --jobs; ignores --nodes, --pods, --policy, --cpu-pods.
    #[arg(long, value_name = "FILE")]
    pub quality_report: Option<PathBuf>,
    /// With --quality-report: also replay every trace variant in --data (gpushare*, multigpu*,
    /// gpuspec*) with HAMi's pairs and fragmentation.
    #[arg(long)]
    pub variants: bool,
    /// With --variants: the seeds each variant is replayed with (default: --seeds).
    #[arg(long, value_parser = parse_seeds)]
    pub variant_seeds: Option<Seeds>,
    /// With --quality-report: seeds never used while designing the policy, on which
    /// fragmentation and the re-implemented FGD are also compared.
    #[arg(long, default_value = "100..109", value_parser = parse_seeds)]
    pub holdout_seeds: Seeds,
}

/// A list of seeds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seeds(pub Vec<u64>);

/// Parses `A..B` (inclusive) or `a,b,c`.
pub fn parse_seeds(s: &str) -> Result<Seeds, String> {
    let seeds: Vec<u64> = if let Some((a, b)) = s.split_once("..") {
        let a: u64 = a
            .trim()
            .parse()
            .map_err(|_| format!("{a:?} is not a seed"))?;
        let b: u64 = b
            .trim()
            .trim_start_matches('=')
            .parse()
            .map_err(|_| format!("{b:?} is not a seed"))?;
        if b < a {
            return Err(format!("empty seed range {s:?}"));
        }
        if b - a >= 10_000 {
            return Err(format!("{s:?}: at most 10,000 seeds"));
        }
        RangeInclusive::new(a, b).collect()
    } else {
        s.split(',')
            .map(|x| x.trim().parse().map_err(|_| format!("{x:?} is not a seed")))
            .collect::<Result<_, _>>()?
    };
    if seeds.is_empty() {
        return Err("no seed".into());
    }
    Ok(Seeds(seeds))
}

fn parse_scale(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(t) if t.is_finite() && (0.0..=1000.0).contains(&t) => Ok(t),
        _ => Err(format!("{s:?}: expected a number of GPUs in [0, 1000]")),
    }
}

/// `--weighting-exponent`: 1 is demand weighting, 0 count weighting, anything between a power of
/// the demand (rounded to hundredths).
fn parse_weighting_exponent(s: &str) -> Result<Weighting, String> {
    match s.parse::<f64>() {
        Ok(e) if (0.0..=1.0).contains(&e) => Ok(match (e * 100.0).round() as u8 {
            0 => Weighting::Count,
            100 => Weighting::Demand,
            percent => Weighting::DemandPower(percent),
        }),
        _ => Err(format!("{s:?}: expected an exponent in [0, 1]")),
    }
}

fn parse_tune(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(t) if t.is_finite() && t > 0.0 && t <= 10.0 => Ok(t),
        _ => Err(format!("{s:?}: expected a number in (0, 10]")),
    }
}

/// One unit of work: a trace, a configuration, a seed.
#[derive(Debug, Clone)]
pub struct Job<'a> {
    /// The trace.
    pub trace: &'a Trace,
    /// The configuration.
    pub config: ReplayConfig,
    /// The seed.
    pub seed: u64,
}

/// Runs `jobs` on `threads` threads with one progress bar; returns one summary per (trace, config),
/// in first-appearance order.
pub fn run_jobs(jobs: &[Job<'_>], threads: u32, quiet: bool) -> anyhow::Result<Vec<PolicySummary>> {
    let total: u64 = jobs
        .iter()
        .map(|j| {
            super::arrival::arrival_sequence(
                &j.trace.pods,
                j.trace.capacity_milli(),
                j.config.tune,
                j.seed,
            )
            .len() as u64
        })
        .sum();
    // A terminal gets the bar; a log (CI, `make quality > file`) gets a plain line every 5 %.
    let plain = !quiet && !std::io::stderr().is_terminal();
    let bar = if quiet || plain {
        ProgressBar::hidden()
    } else {
        ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr())
    };
    let lines = PlainProgress::new(total, plain);
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} pods ({per_sec}, eta {eta}) {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.set_message(format!("{} runs", jobs.len()));
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads as usize)
        .build()
        .context("cannot start the worker threads")?;
    let results: Vec<anyhow::Result<RunSummary>> = pool.install(|| {
        jobs.par_iter()
            .map(|job| {
                let bar = bar.clone();
                let lines = &lines;
                let mut tick = move || {
                    bar.inc(1);
                    lines.tick(&bar);
                };
                let run =
                    replay(job.trace, &job.config, job.seed, &mut tick).with_context(|| {
                        format!(
                            "trace {}, policy {}, seed {}",
                            job.trace.label, job.config.policy, job.seed
                        )
                    })?;
                Ok(RunSummary::of(&run, job.trace.capacity_milli()))
            })
            .collect()
    });
    bar.finish_and_clear();
    let mut groups: Vec<(&str, ReplayConfig, Vec<RunSummary>)> = Vec::new();
    for (job, result) in jobs.iter().zip(results) {
        let run = result?;
        match groups
            .iter_mut()
            .find(|(t, c, _)| *t == job.trace.label && *c == job.config)
        {
            Some((_, _, runs)) => runs.push(run),
            None => groups.push((&job.trace.label, job.config.clone(), vec![run])),
        }
    }
    Ok(groups
        .into_iter()
        .map(|(trace, config, runs)| PolicySummary::of(trace, &config, runs))
        .collect())
}

/// Progress for a stderr that is not a terminal: one line each time another 5 % of the pods is
/// submitted, read from the (hidden) progress bar's own count and clock.
struct PlainProgress {
    enabled: bool,
    total: u64,
    step: u64,
    /// The next count that earns a line; claimed by one thread with a compare-and-swap.
    next: AtomicU64,
}

impl PlainProgress {
    fn new(total: u64, enabled: bool) -> Self {
        let step = (total / 20).max(1);
        PlainProgress {
            enabled,
            total,
            step,
            next: AtomicU64::new(step),
        }
    }

    /// Prints the line `bar`'s count has earned, if any.
    fn tick(&self, bar: &ProgressBar) {
        if !self.enabled {
            return;
        }
        if let Some(line) = self.line(bar.position(), bar.elapsed()) {
            eprintln!("{line}");
        }
    }

    /// The line for `done` pods after `elapsed`, once per 5 % step, or `None`.
    fn line(&self, done: u64, elapsed: Duration) -> Option<String> {
        let next = self.next.load(Ordering::Relaxed);
        if done < next
            || self
                .next
                .compare_exchange(next, next + self.step, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            return None;
        }
        let elapsed = elapsed.as_secs_f64();
        let left = elapsed * self.total.saturating_sub(done) as f64 / done.max(1) as f64;
        Some(format!(
            "  {done}/{} pods ({:.0} %), {elapsed:.0} s elapsed, about {left:.0} s left",
            self.total,
            100.0 * done as f64 / self.total.max(1) as f64,
        ))
    }
}

/// Reads a trace from its two files; the label is the pod file's stem.
pub fn load_trace(nodes: &Path, pods: &Path) -> anyhow::Result<Trace> {
    let node_rows = read_nodes(nodes)?;
    let pod_rows = read_pods(pods)?;
    let label = pods
        .file_stem()
        .map(|s| {
            s.to_string_lossy()
                .trim_start_matches("openb_pod_list_")
                .to_string()
        })
        .unwrap_or_else(|| "trace".into());
    if node_rows.iter().all(|n| n.gpus == 0) {
        bail!("{}: no node has a GPU", nodes.display());
    }
    Ok(Trace::new(label, node_rows, pod_rows))
}

/// The configuration of `policy` under the command's settings.
pub fn config_for(args: &TraceArgs, policy: PolicySpec) -> ReplayConfig {
    let cpu_pods = args.cpu_pods.unwrap_or(match policy {
        PolicySpec::Reference { .. } => CpuPlacement::Policy,
        PolicySpec::Core { .. } if policy.is_fragmentation() => CpuPlacement::Policy,
        PolicySpec::Core { .. } => CpuPlacement::KubeDefault,
    });
    let profile = args.profile;
    ReplayConfig {
        policy,
        tune: args.tune,
        split: args.split,
        max_pods: args.max_pods,
        spec_match: args.gpu_spec_match,
        cpu_pods,
        profile,
        tuning: FragmentationTuning {
            score_scale_gpus: args.fragmentation_scale,
            multi_gpu_score_scale_gpus: Some(args.multi_gpu_scale),
            weighting: match (args.count_weighted, args.weighting_exponent) {
                (true, _) => Weighting::Count,
                (false, Some(weighting)) => weighting,
                (false, None) => Weighting::default(),
            },
        },
        path: args.decision_path,
        fast_path: !args.no_fast_path,
    }
}

/// Runs the subcommand.
pub fn run(args: &TraceArgs) -> anyhow::Result<()> {
    if let Some(report) = &args.quality_report {
        return quality::write_report(args, report);
    }
    if args.latency {
        let report = super::latency::measure(
            super::latency::REPORT_NODES,
            super::latency::REPORT_GPUS,
            super::latency::REPORT_DECISIONS,
        )
        .map_err(anyhow::Error::msg)?;
        match args.output {
            Format::Json => println!("{}", serde_json::to_string_pretty(&report)?),
            Format::Table | Format::Csv => print!("{}", report.table()),
        }
        return Ok(());
    }
    let nodes = args
        .nodes
        .clone()
        .unwrap_or_else(|| args.data.join(DEFAULT_NODES));
    let pods = args
        .pods
        .clone()
        .unwrap_or_else(|| args.data.join(DEFAULT_PODS));
    let trace = load_trace(&nodes, &pods)?;
    if args.floor {
        let floors = args
            .seeds
            .0
            .iter()
            .map(|&seed| super::floor::floor(&trace, seed, args.tune, args.gpu_spec_match, 100))
            .collect::<Result<Vec<_>, _>>()
            .map_err(anyhow::Error::msg)?;
        match args.output {
            Format::Json => println!("{}", serde_json::to_string_pretty(&floors)?),
            Format::Table | Format::Csv => {
                println!(
                    "seed,arrived_milli,allocatable_milli,capacity_milli,floor_unallocated_percent"
                );
                for f in &floors {
                    println!(
                        "{},{},{:.0},{},{:.3}",
                        f.seed,
                        f.arrived_milli,
                        f.allocatable_milli,
                        f.capacity_milli,
                        f.unallocated_percent()
                    );
                }
            }
        }
        return Ok(());
    }
    let policies = if args.policies.is_empty() {
        let mut p = PolicySpec::hami_pairs();
        p.push(PolicySpec::fragmentation());
        p
    } else {
        args.policies.clone()
    };
    let jobs: Vec<Job<'_>> = policies
        .iter()
        .flat_map(|p| {
            let config = config_for(args, p.clone());
            let trace = &trace;
            args.seeds.0.iter().map(move |&seed| Job {
                trace,
                config: config.clone(),
                seed,
            })
        })
        .collect();
    let summaries = run_jobs(&jobs, args.jobs, args.quiet)?;
    match args.output {
        Format::Table => print!("{}", table(&summaries)),
        Format::Json => println!("{}", serde_json::to_string_pretty(&summaries)?),
        Format::Csv => std::io::Write::write_all(&mut std::io::stdout(), &csv(&summaries)?)?,
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeds() {
        assert_eq!(parse_seeds("42..44").unwrap().0, [42, 43, 44]);
        assert_eq!(parse_seeds("42..=43").unwrap().0, [42, 43]);
        assert_eq!(parse_seeds("7, 9").unwrap().0, [7, 9]);
        assert!(parse_seeds("5..4").is_err());
        assert!(parse_seeds("x").is_err());
        assert!(parse_seeds("0..100000").is_err());
        assert!(
            parse_tune("0").is_err() && parse_tune("nan").is_err() && parse_tune("1.3").is_ok()
        );
    }

    /// The tuning flags reach the replay's configuration and its label, and conflict where they
    /// would contradict each other (the service path's refusal is tested in tests/replay.rs).
    #[test]
    fn weighting_exponent_and_multi_gpu_scale() {
        use clap::Parser;
        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            trace: TraceArgs,
        }
        assert_eq!(parse_weighting_exponent("1"), Ok(Weighting::Demand));
        assert_eq!(parse_weighting_exponent("0"), Ok(Weighting::Count));
        assert_eq!(
            parse_weighting_exponent("0.5"),
            Ok(Weighting::DemandPower(50))
        );
        assert_eq!(
            parse_weighting_exponent("0.333"),
            Ok(Weighting::DemandPower(33))
        );
        for bad in ["1.5", "-0.1", "nan", "x"] {
            let err = parse_weighting_exponent(bad).unwrap_err();
            assert!(err.contains(bad), "{err}");
        }
        let args = Cli::try_parse_from([
            "t",
            "--weighting-exponent",
            "1",
            "--multi-gpu-scale",
            "4",
            "--decision-path",
            "core",
        ])
        .unwrap()
        .trace;
        let config = config_for(&args, PolicySpec::fragmentation());
        assert_eq!(config.tuning.weighting, Weighting::Demand);
        assert_eq!(config.tuning.multi_gpu_score_scale_gpus, Some(4.0));
        assert_eq!(
            super::super::summary::config_label(&config),
            "fragmentation (multi-GPU pods at scale 4 GPU, demand-weighted)"
        );
        assert!(
            Cli::try_parse_from(["t", "--count-weighted", "--weighting-exponent", "0.5"]).is_err(),
            "the two weightings conflict"
        );
        assert!(
            Cli::try_parse_from(["t", "--latency"])
                .unwrap()
                .trace
                .latency
        );
        for other in ["--floor", "--quality-report=r.md"] {
            assert!(
                Cli::try_parse_from(["t", "--latency", other]).is_err(),
                "--latency measures alone, not with {other}"
            );
        }
        let defaults = Cli::try_parse_from(["t"]).unwrap().trace;
        let config = config_for(&defaults, PolicySpec::fragmentation());
        assert_eq!(config.tuning, FragmentationTuning::default());
        assert_eq!(
            (
                config.tuning.weighting,
                config.tuning.multi_gpu_score_scale_gpus
            ),
            (Weighting::DemandPower(50), Some(1.0)),
            "the replay's defaults are the core's"
        );
        assert_eq!(
            super::super::summary::config_label(&config),
            "fragmentation"
        );
    }

    /// A log gets one line per 5 % step, even when the count jumps past a step or is read twice
    /// (two threads), and the estimate of the rest scales with the time so far.
    #[test]
    fn plain_progress_writes_one_line_per_step() {
        let p = PlainProgress::new(200, true);
        let second = Duration::from_secs(1);
        assert_eq!(p.line(9, second), None);
        assert_eq!(
            p.line(10, second).as_deref(),
            Some("  10/200 pods (5 %), 1 s elapsed, about 19 s left")
        );
        assert_eq!(p.line(10, second), None, "the same count earns one line");
        let lines = (11..=200).filter_map(|done| p.line(done, second)).count();
        assert_eq!(lines, 19, "steps 20, 30, ..., 200");
        let few = PlainProgress::new(3, true);
        assert_eq!((1..=3).filter_map(|d| few.line(d, second)).count(), 3);
    }
}
