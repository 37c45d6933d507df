//! The placement-quality report, `bench/QUALITY.md`: runs the whole benchmark (the default trace
//! with HAMi's four policy pairs, sliceguard's fragmentation policy, its ablations and the paper's
//! re-implemented baselines; optionally every trace variant), measures decision latency at
//! 5,000 nodes × 8 GPUs, and writes the Markdown report, an SVG of the curves and a CSV of every
//! run's unallocated share at 100 % arrived. Every number in the report is computed here, except the
//! paper's, which are the artifact's cached results ([`PAPER`]).

use super::cli::{DEFAULT_NODES, DEFAULT_PODS, Job, TraceArgs, config_for, load_trace, run_jobs};
use super::cluster::CpuPlacement;
use super::floor::{Floor, floor};
use super::latency::{LatencyReport, REPORT_DECISIONS, REPORT_GPUS, REPORT_NODES, measure};
use super::metrics::Stats;
use super::placer::{FragmentationTuning, PolicySpec, ProfileSource, ReferencePolicy, SpecMatch};
use super::replay::{DecisionPath, ReplayConfig, Trace};
use super::summary::{PolicySummary, SATURATION_X, mean_sd, median};
use super::svg::{Chart, Series, render};
use anyhow::Context as _;
use sliceguard::fragmentation::Weighting;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// Where the paper's numbers come from.
pub const PAPER_SOURCE: &str = "`hkust-adsl/kubernetes-scheduler-simulator` (the paper's artifact) @ `1853fc0`, `experiments/analysis/expected_results/analysis_allo_discrete.csv`, rows `openb_pod_list_default`, column 100";

/// One of the paper's six policies on the default trace.
#[derive(Debug, Clone, Copy)]
pub struct PaperPolicy {
    /// Name as in the paper.
    pub name: &'static str,
    /// Unallocated GPU % at 100 % arrived, seeds 42..=51.
    pub at_100: [f64; 10],
    /// Median unallocated GPU % at arrived 75, 80, 85, 90, 95, 100, 110, 120, 130 (spec §3.1).
    pub curve: [f64; 9],
}

/// The arrived percentages of [`PaperPolicy::curve`].
pub const PAPER_CURVE_X: [f64; 9] = [75.0, 80.0, 85.0, 90.0, 95.0, 100.0, 110.0, 120.0, 130.0];

/// The paper's six policies (per-seed values read from the artifact's cached results; their medians
/// are the published 13.75, 9.45, 8.42, 8.20, 7.09 and 4.77).
pub const PAPER: [PaperPolicy; 6] = [
    PaperPolicy {
        name: "Random",
        at_100: [
            13.83, 13.21, 13.32, 13.67, 13.67, 13.87, 13.27, 14.07, 13.93, 14.13,
        ],
        curve: [
            25.97, 21.24, 16.85, 14.97, 14.32, 13.75, 13.23, 12.84, 12.62,
        ],
    },
    PaperPolicy {
        name: "DotProd",
        at_100: [9.66, 9.44, 9.17, 9.31, 9.45, 9.48, 9.0, 9.32, 9.47, 9.48],
        curve: [25.02, 19.99, 14.99, 10.02, 9.48, 9.45, 9.37, 9.29, 9.20],
    },
    PaperPolicy {
        name: "GpuClustering",
        at_100: [8.67, 8.31, 8.32, 7.25, 9.38, 8.8, 7.68, 7.91, 8.66, 8.52],
        curve: [25.02, 19.99, 14.99, 10.00, 8.47, 8.42, 8.34, 8.27, 8.21],
    },
    PaperPolicy {
        name: "GpuPacking",
        at_100: [8.63, 8.22, 8.09, 7.42, 8.88, 8.93, 7.49, 8.17, 8.54, 7.84],
        curve: [25.02, 19.99, 14.99, 10.00, 8.23, 8.20, 8.12, 8.05, 7.94],
    },
    PaperPolicy {
        name: "BestFit",
        at_100: [7.06, 7.03, 7.11, 7.07, 7.0, 7.16, 7.32, 6.96, 7.36, 7.31],
        curve: [25.02, 19.99, 14.99, 9.99, 7.14, 7.09, 7.02, 6.96, 6.89],
    },
    PaperPolicy {
        name: "FGD",
        at_100: [4.86, 4.94, 4.71, 4.62, 4.65, 4.86, 4.82, 4.7, 4.85, 4.72],
        curve: [25.02, 19.99, 14.99, 10.00, 5.09, 4.77, 4.68, 4.63, 4.60],
    },
];

/// A configuration in the report, with its role.
#[derive(Debug, Clone)]
struct Entry {
    label: &'static str,
    config: ReplayConfig,
}

fn core(
    args: &TraceArgs,
    policy: PolicySpec,
    cpu: CpuPlacement,
    profile: ProfileSource,
) -> ReplayConfig {
    let mut c = config_for(args, policy);
    c.cpu_pods = cpu;
    c.profile = profile;
    c
}

fn hami_labels() -> [&'static str; 4] {
    [
        "HAMi binpack/spread (HAMi's default)",
        "HAMi binpack/binpack",
        "HAMi spread/binpack",
        "HAMi spread/spread",
    ]
}

/// The configurations of the default trace.
fn default_entries(args: &TraceArgs) -> Vec<Entry> {
    let mut entries: Vec<Entry> = PolicySpec::hami_pairs()
        .into_iter()
        .zip(hami_labels())
        .map(|(p, label)| Entry {
            label,
            config: core(args, p, CpuPlacement::KubeDefault, ProfileSource::Learned),
        })
        .collect();
    let frag = PolicySpec::fragmentation();
    entries.push(Entry {
        label: "sliceguard fragmentation",
        config: core(
            args,
            frag.clone(),
            CpuPlacement::Policy,
            ProfileSource::Learned,
        ),
    });
    entries.push(Entry {
        label: "sliceguard fragmentation, CPU-only pods by kube-scheduler",
        config: core(
            args,
            frag.clone(),
            CpuPlacement::KubeDefault,
            ProfileSource::Learned,
        ),
    });
    entries.push(Entry {
        label: "sliceguard fragmentation, profile counted from the whole trace (core path)",
        config: ReplayConfig {
            path: DecisionPath::Core,
            ..core(args, frag, CpuPlacement::Policy, ProfileSource::Trace)
        },
    });
    entries.push(Entry {
        label: "HAMi binpack/binpack, kube-scheduler MostAllocated for CPU-only pods",
        config: core(
            args,
            PolicySpec::hami_pairs()[1].clone(),
            CpuPlacement::KubeMostAllocated,
            ProfileSource::Learned,
        ),
    });
    for (policy, label) in [
        (ReferencePolicy::BestFit, "paper BestFit, re-implemented"),
        (ReferencePolicy::Fgd, "paper FGD, re-implemented"),
        (ReferencePolicy::Random, "paper Random, re-implemented"),
    ] {
        entries.push(Entry {
            label,
            config: core(
                args,
                PolicySpec::Reference { policy },
                CpuPlacement::Policy,
                ProfileSource::Learned,
            ),
        });
    }
    let ablation = |label: &'static str, tuning: FragmentationTuning| {
        let mut config = core(
            args,
            PolicySpec::fragmentation(),
            CpuPlacement::Policy,
            ProfileSource::Learned,
        );
        config.tuning = tuning;
        config.path = DecisionPath::Core;
        Entry { label, config }
    };
    let ours = FragmentationTuning::default();
    let ablations = [
        ablation(
            "sliceguard fragmentation, FGD's 1-GPU score scale for every pod",
            FragmentationTuning {
                score_scale_gpus: 1.0,
                ..ours
            },
        ),
        ablation(
            "sliceguard fragmentation, growth compared exactly",
            FragmentationTuning {
                score_scale_gpus: 0.0,
                multi_gpu_score_scale_gpus: None,
                ..ours
            },
        ),
        ablation(
            "sliceguard fragmentation, shapes weighted by count (FGD's way)",
            FragmentationTuning {
                weighting: Weighting::Count,
                ..ours
            },
        ),
        ablation(
            "sliceguard fragmentation, 5-GPU score scale for 1-GPU pods",
            FragmentationTuning {
                score_scale_gpus: 5.0,
                ..ours
            },
        ),
    ];
    let former_defaults = [
        ablation(
            "sliceguard fragmentation, shapes weighted by GPU demand (the former default)",
            FragmentationTuning {
                weighting: Weighting::Demand,
                ..ours
            },
        ),
        ablation(
            "sliceguard fragmentation, multi-GPU pods on the 4-GPU scale too (the former default)",
            FragmentationTuning {
                multi_gpu_score_scale_gpus: None,
                ..ours
            },
        ),
        ablation(
            "sliceguard fragmentation, both former defaults (demand-weighted, 4-GPU scale for every pod)",
            FragmentationTuning {
                weighting: Weighting::Demand,
                multi_gpu_score_scale_gpus: None,
                ..ours
            },
        ),
    ];
    entries.push(Entry {
        label: "paper FGD, re-implemented, CPU-only pods by kube-scheduler",
        config: core(
            args,
            PolicySpec::Reference {
                policy: ReferencePolicy::Fgd,
            },
            CpuPlacement::KubeDefault,
            ProfileSource::Learned,
        ),
    });
    entries.extend(ablations);
    entries.extend(former_defaults);
    entries
}

/// The label of the default trace replayed with the held-out seeds.
const HOLDOUT_LABEL: &str = "default, held-out seeds";

/// Entries replayed with the held-out seeds: fragmentation, the re-implemented FGD, and
/// fragmentation with both former defaults.
const HOLDOUT_ENTRIES: [usize; 3] = [4, 9, 18];

/// Indices of the ablation entries in [`default_entries`].
const ABLATIONS: [usize; 10] = [4, 5, 6, 12, 13, 14, 15, 16, 17, 18];

/// The configurations of each variant: HAMi's four pairs and sliceguard's policy (both CPU modes),
/// the re-implemented FGD (index 6), and HAMi's four pairs with HAMi's own GPU-type selection
/// (`--gpu-spec-match hami-substring`, indices 7–10).
fn variant_entries(args: &TraceArgs) -> Vec<Entry> {
    let all = default_entries(args);
    let mut entries: Vec<Entry> = all.iter().take(6).cloned().collect();
    entries.push(all[9].clone());
    for (i, label) in HAMI_SUBSTRING_LABELS.iter().enumerate() {
        let mut hami = all[i].clone();
        hami.label = label;
        hami.config.spec_match = SpecMatch::HamiSubstring;
        entries.push(hami);
    }
    entries
}

/// HAMi's pairs with HAMi's GPU-type selection, in [`hami_labels`] order.
const HAMI_SUBSTRING_LABELS: [&str; 4] = [
    "HAMi binpack/spread, hami-substring",
    "HAMi binpack/binpack, hami-substring",
    "HAMi spread/binpack, hami-substring",
    "HAMi spread/spread, hami-substring",
];

/// The trace variants in `data`: every pod list but the default, in name order.
fn variant_files(data: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(data)
        .with_context(|| format!("cannot list {}", data.display()))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.file_name().and_then(|n| n.to_str()).is_some_and(|n| {
                n.starts_with("openb_pod_list_") && n.ends_with(".csv") && n != DEFAULT_PODS
            })
        })
        .collect();
    files.sort();
    Ok(files)
}

fn find<'a>(
    summaries: &'a [PolicySummary],
    trace: &str,
    config: &ReplayConfig,
) -> Option<&'a PolicySummary> {
    summaries
        .iter()
        .find(|s| s.trace == trace && s.config == *config)
}

/// Runs everything and writes the report, the SVG and the CSV beside it.
pub fn write_report(args: &TraceArgs, report: &Path) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    let default = load_trace(
        &args.data.join(DEFAULT_NODES),
        &args.data.join(DEFAULT_PODS),
    )?;
    let entries = default_entries(args);
    let seeds = &args.seeds.0;
    let jobs: Vec<Job<'_>> = entries
        .iter()
        .flat_map(|e| {
            let trace = &default;
            seeds.iter().map(move |&seed| Job {
                trace,
                config: e.config.clone(),
                seed,
            })
        })
        .collect();
    eprintln!("default trace: {} runs", jobs.len());
    let mut summaries = run_jobs(&jobs, args.jobs, args.quiet)?;

    let mut holdout = default.clone();
    holdout.label = HOLDOUT_LABEL.into();
    let jobs: Vec<Job<'_>> = HOLDOUT_ENTRIES
        .iter()
        .flat_map(|&i| {
            let trace = &holdout;
            let config = entries[i].config.clone();
            args.holdout_seeds.0.iter().map(move |&seed| Job {
                trace,
                config: config.clone(),
                seed,
            })
        })
        .collect();
    eprintln!("held-out seeds: {} runs", jobs.len());
    summaries.extend(run_jobs(&jobs, args.jobs, args.quiet)?);

    let mut variants: Vec<Trace> = Vec::new();
    if args.variants {
        for file in variant_files(&args.data)? {
            variants.push(load_trace(&args.data.join(DEFAULT_NODES), &file)?);
        }
        let ventries = variant_entries(args);
        let vseeds = args.variant_seeds.as_ref().map_or(seeds, |s| &s.0);
        let jobs: Vec<Job<'_>> = variants
            .iter()
            .flat_map(|trace| {
                ventries.iter().flat_map(move |e| {
                    vseeds.iter().map(move |&seed| Job {
                        trace,
                        config: e.config.clone(),
                        seed,
                    })
                })
            })
            .collect();
        eprintln!("{} variants: {} runs", variants.len(), jobs.len());
        summaries.extend(run_jobs(&jobs, args.jobs, args.quiet)?);
    }
    eprintln!("the floor: one linear program per trace and seed");
    let mut floors: Vec<(String, Vec<Floor>)> = Vec::new();
    let floors_of = |trace: &Trace, seeds: &[u64]| -> anyhow::Result<(String, Vec<Floor>)> {
        let per_seed = seeds
            .iter()
            .map(|&seed| floor(trace, seed, args.tune, args.gpu_spec_match, 100))
            .collect::<Result<Vec<_>, _>>()
            .map_err(anyhow::Error::msg)?;
        Ok((trace.label.clone(), per_seed))
    };
    floors.push(floors_of(&default, seeds)?);
    floors.push(floors_of(&holdout, &args.holdout_seeds.0)?);
    for trace in &variants {
        let vseeds = args.variant_seeds.as_ref().map_or(seeds, |s| &s.0);
        floors.push(floors_of(trace, vseeds)?);
    }
    eprintln!("decision latency at 5,000 nodes × 8 GPUs");
    let latency =
        measure(REPORT_NODES, REPORT_GPUS, REPORT_DECISIONS).map_err(anyhow::Error::msg)?;

    let dir = report.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let svg_name = "quality-unallocated.svg";
    let csv_name = "quality-runs.csv";
    std::fs::write(
        dir.join(svg_name),
        render(&curve_chart(&default, &entries, &summaries, seeds.len())),
    )
    .with_context(|| format!("cannot write {}", dir.join(svg_name).display()))?;
    std::fs::write(dir.join(csv_name), runs_csv(&summaries)?)
        .with_context(|| format!("cannot write {}", dir.join(csv_name).display()))?;
    let context = Report {
        args,
        default: &default,
        entries: &entries,
        variants: &variants,
        summaries: &summaries,
        floors: &floors,
        latency: &latency,
        svg_name,
        csv_name,
        elapsed: started.elapsed().as_secs_f64(),
    };
    std::fs::write(report, markdown(&context))
        .with_context(|| format!("cannot write {}", report.display()))?;
    eprintln!("wrote {}", report.display());
    Ok(())
}

struct Report<'a> {
    args: &'a TraceArgs,
    default: &'a Trace,
    entries: &'a [Entry],
    variants: &'a [Trace],
    summaries: &'a [PolicySummary],
    /// The floor per trace label, one per seed.
    floors: &'a [(String, Vec<Floor>)],
    latency: &'a LatencyReport,
    svg_name: &'a str,
    csv_name: &'a str,
    elapsed: f64,
}

impl Report<'_> {
    /// The floor's statistics over a trace's seeds (unallocated GPU %).
    fn floor(&self, trace: &str) -> Option<Stats> {
        let (_, per_seed) = self.floors.iter().find(|(t, _)| t == trace)?;
        let values: Vec<f64> = per_seed.iter().map(Floor::unallocated_percent).collect();
        Stats::of(&values)
    }

    fn summary(&self, i: usize) -> Option<&PolicySummary> {
        find(
            self.summaries,
            &self.default.label,
            &self.entries.get(i)?.config,
        )
    }
}

fn paper_stats(p: &PaperPolicy) -> Option<Stats> {
    Stats::of(&p.at_100)
}

fn yes(met: bool) -> &'static str {
    if met { "**met**" } else { "**missed**" }
}

fn curve_chart(
    default: &Trace,
    entries: &[Entry],
    summaries: &[PolicySummary],
    seeds: usize,
) -> Chart {
    let xs = 75..=120usize;
    let mut series = vec![Series {
        label: "ideal".into(),
        points: xs
            .clone()
            .map(|x| (x as f64, (100.0 - x as f64).max(0.0)))
            .collect(),
        color: "#999999".into(),
        dashed: false,
        markers: false,
        band: vec![],
    }];
    let paper_colors = [
        "#c7c7c7", "#aec7e8", "#98df8a", "#ffbb78", "#ff9896", "#c5b0d5",
    ];
    for (p, color) in PAPER.iter().zip(paper_colors) {
        series.push(Series {
            label: format!("paper {}", p.name),
            points: PAPER_CURVE_X.iter().copied().zip(p.curve).collect(),
            color: color.into(),
            dashed: true,
            markers: true,
            band: vec![],
        });
    }
    let ours_colors = ["#1f77b4", "#2ca02c", "#ff7f0e", "#9467bd", "#d62728"];
    for (i, color) in ours_colors.iter().enumerate() {
        let Some(s) = entries
            .get(i)
            .and_then(|e| find(summaries, &default.label, &e.config))
        else {
            continue;
        };
        let band = &s.unallocated_band;
        let at = |c: &[Option<f64>], x: usize| c.get(x).copied().flatten();
        series.push(Series {
            label: entries[i].label.replace(" (HAMi's default)", " (default)"),
            points: xs
                .clone()
                .filter_map(|x| at(&band.median, x).map(|v| (x as f64, v)))
                .collect(),
            color: (*color).into(),
            dashed: false,
            markers: false,
            band: if i == 4 {
                xs.clone()
                    .filter_map(|x| Some((x as f64, at(&band.p25, x)?, at(&band.p75, x)?)))
                    .collect()
            } else {
                vec![]
            },
        });
    }
    Chart {
        title: format!(
            "Unallocated GPU vs arrived workload, Alibaba openb default trace (median of {seeds} seeds)"
        ),
        x_label: "arrived GPU workload (% of cluster GPU capacity)".into(),
        y_label: "unallocated GPU (%)".into(),
        x_range: (75.0, 120.0),
        y_range: (0.0, 27.0),
        x_step: 5.0,
        y_step: 5.0,
        series,
    }
}

/// One row per run at 100 % arrived. Labels hold commas ("default, held-out seeds"), so fields are
/// quoted as CSV requires.
fn runs_csv(summaries: &[PolicySummary]) -> anyhow::Result<Vec<u8>> {
    let mut out = csv::Writer::from_writer(Vec::new());
    out.write_record([
        "trace",
        "policy",
        "cpu_pods",
        "profile",
        "seed",
        "unallocated_at_100",
        "frag_amount_at_100",
        "frag_rate_at_100",
        "failed_pods",
        "wall_seconds",
        "decisions",
        "decision_seconds",
        "grants_beyond_split_10",
    ])?;
    let cell = |v: Option<f64>| v.map_or(String::new(), |v| format!("{v:.4}"));
    for s in summaries {
        for r in &s.runs {
            out.write_record([
                s.trace.clone(),
                s.policy.clone(),
                s.config.cpu_pods.to_string(),
                s.config.profile.to_string(),
                r.seed.to_string(),
                cell(r.unallocated[SATURATION_X]),
                cell(r.frag_amount[SATURATION_X]),
                cell(r.frag_rate[SATURATION_X]),
                (r.failed_gpu + r.failed_cpu).to_string(),
                format!("{:.3}", r.wall_seconds),
                r.decisions.to_string(),
                format!("{:.3}", r.decision_seconds),
                r.grants_beyond_default_split.to_string(),
            ])?;
        }
    }
    Ok(out.into_inner()?)
}

fn seed_range(seeds: &[u64]) -> String {
    match (seeds.first(), seeds.last()) {
        (Some(a), Some(b)) if seeds.len() > 1 => format!("{a}–{b}"),
        (Some(a), _) => a.to_string(),
        _ => "none".into(),
    }
}

fn f2(v: Option<f64>) -> String {
    v.map_or("–".into(), |v| format!("{v:.2}"))
}

fn markdown(c: &Report<'_>) -> String {
    let mut m = String::new();
    let seeds = &c.args.seeds.0;
    let seed_text = match (seeds.first(), seeds.last()) {
        (Some(a), Some(b)) if seeds.len() > 1 => format!("{a}–{b} ({} seeds)", seeds.len()),
        (Some(a), _) => format!("{a}"),
        _ => "none".into(),
    };
    let ours = c.summary(4);
    let ours_kube = c.summary(5);
    let ours_trace = c.summary(6);
    let bestfit = c.summary(8);
    let fgd = c.summary(9);
    let random = c.summary(10);
    let fgd_kube = c.summary(11);
    let hami: Vec<Option<&PolicySummary>> = (0..4).map(|i| c.summary(i)).collect();
    let best_hami = hami
        .iter()
        .flatten()
        .filter_map(|s| s.unallocated_100.map(|u| (s, u)))
        .min_by(|a, b| a.1.median.total_cmp(&b.1.median));
    let med = |s: Option<&PolicySummary>| s.and_then(|s| s.unallocated_100).map(|u| u.median);

    // ── README-ready section ────────────────────────────────────────────────────────────────
    let _ = writeln!(m, "# Placement quality on a production trace\n");
    let _ = writeln!(
        m,
        "<!-- Generated by `make quality` (kind-harness trace --quality-report); do not edit by hand. -->\n"
    );
    let _ = writeln!(m, "## Headline (README-ready)\n");
    let _ = writeln!(
        m,
        "Alibaba published the trace of a 6,212-GPU sharing cluster (1,213 GPU nodes, 8,152 tasks) with the USENIX ATC '23 paper \
*Beware of Fragmentation: Scheduling GPU-Sharing Workloads with Fragmentation Gradient Descent* (Weng et al.; data: \
`alibaba/clusterdata`, `cluster-trace-gpu-v2023`, for research and study use). Replayed the way the paper does it \
(each seed shuffles the tasks and resamples them to 130 % of GPU capacity; every task is tried once; nothing leaves), \
this is the share of GPUs left unallocated when the arrived workload equals the cluster's GPU capacity — lower is better. \
HAMi's policies and sliceguard's are measured by this repository's replay through sliceguard's real scheduler core; \
the paper's six are the paper's own results.\n"
    );
    let _ = writeln!(
        m,
        "| scheduler and policy | unallocated GPU at 100 % arrived, mean ± sd | median | source |"
    );
    let _ = writeln!(m, "|---|---|---|---|");
    for p in &PAPER {
        let _ = writeln!(
            m,
            "| paper: {} | {} | {} | ATC '23 artifact |",
            p.name,
            mean_sd(paper_stats(p)),
            median(paper_stats(p))
        );
    }
    for (i, s) in hami.iter().enumerate() {
        let _ = writeln!(
            m,
            "| {} | {} | {} | this replay |",
            hami_labels()[i],
            mean_sd(s.and_then(|s| s.unallocated_100)),
            median(s.and_then(|s| s.unallocated_100))
        );
    }
    let _ = writeln!(
        m,
        "| **sliceguard `fragmentation`** | **{}** | **{}** | this replay |",
        mean_sd(ours.and_then(|s| s.unallocated_100)),
        median(ours.and_then(|s| s.unallocated_100))
    );
    let floor_default = c.floor(&c.default.label);
    let _ = writeln!(
        m,
        "| floor: no scheduler can leave less (a relaxation that knows every arrived task, see below) | {} | {} | this replay's bound |",
        mean_sd(floor_default),
        median(floor_default)
    );
    let _ = writeln!(
        m,
        "\nSeeds {seed_text}. HAMi's pairs are node policy/GPU policy; CPU-only tasks are placed by kube-scheduler's default \
scoring, as in a HAMi cluster (HAMi's filter passes every node for a pod without GPUs). sliceguard's `fragmentation` \
(`hami.io/gpu-scheduler-policy: fragmentation`) places each pod where the expected fragmentation of the workload it has \
learned so far grows least, counting the nodes' CPU; its row has CPU-only tasks routed to it as well (with them left to \
kube-scheduler it scores {}, median {}). Curve: [{}]({}). Details, calibration and every trace variant: \
[`bench/QUALITY.md`](QUALITY.md).\n",
        mean_sd(ours_kube.and_then(|s| s.unallocated_100)),
        median(ours_kube.and_then(|s| s.unallocated_100)),
        c.svg_name,
        c.svg_name
    );
    if let (Some((best, b)), Some(o)) = (best_hami, ours.and_then(|s| s.unallocated_100)) {
        let gpus = c.default.capacity_milli() as f64 / 1000.0;
        let _ = writeln!(
            m,
            "Against HAMi's best pair on this trace ({}, median {:.2} %), `fragmentation` leaves {:.0} % fewer GPUs \
unallocated at 100 % arrived: {:.0} more of the {:.0} GPUs in use (medians).\n",
            best.policy,
            b.median,
            (1.0 - o.median / b.median) * 100.0,
            (b.median - o.median) / 100.0 * gpus,
            gpus
        );
    }
    let _ = writeln!(
        m,
        "![Unallocated GPU vs arrived workload]({})\n",
        c.svg_name
    );

    // ── Targets ─────────────────────────────────────────────────────────────────────────────
    let _ = writeln!(m, "## Targets\n");
    let _ = writeln!(m, "| target | measured | status |");
    let _ = writeln!(m, "|---|---|---|");
    if let Some(b) = med(bestfit) {
        let _ = writeln!(
            m,
            "| replay calibrated: re-implemented BestFit within 0.5 points of the paper's 7.09 % (median) | {b:.2} % | {} |",
            yes((b - 7.09).abs() <= 0.5)
        );
    }
    if let Some(o) = med(ours) {
        let _ = writeln!(
            m,
            "| `fragmentation` ≤ 4.77 % (FGD's median), median over the seeds | {o:.2} % | {} |",
            yes(o <= 4.77)
        );
        let _ = writeln!(
            m,
            "| below 4.5 % on the default trace (median) | {o:.2} % | {} |",
            yes(o < 4.5)
        );
    }
    // ≤ the re-implemented FGD on every trace: the default trace and each variant (medians).
    let mut fgd_rows: Vec<(String, f64, f64)> = Vec::new();
    if let (Some(o), Some(f)) = (med(ours), med(fgd)) {
        fgd_rows.push((c.default.label.clone(), o, f));
    }
    for r in &variant_table(c) {
        if let (Some(o), Some(f)) = (r.ours, r.fgd) {
            fgd_rows.push((r.trace.clone(), o.median, f.median));
        }
    }
    let behind: Vec<String> = fgd_rows
        .iter()
        .filter(|(_, o, f)| o > f)
        .map(|(t, o, f)| format!("{t} ({o:.2} vs {f:.2})"))
        .collect();
    let _ = writeln!(
        m,
        "| `fragmentation` ≤ the re-implemented FGD on every trace (medians) | {} of {} traces not worse{} | {} |",
        fgd_rows.len() - behind.len(),
        fgd_rows.len(),
        if behind.is_empty() {
            String::new()
        } else {
            format!("; behind on {}", behind.join(", "))
        },
        yes(behind.is_empty() && fgd_rows.len() == 1 + c.variants.len())
    );
    match (floor_default, med(ours)) {
        (Some(f), Some(o)) => {
            let _ = writeln!(
                m,
                "| the floor (default trace, median): reported next to every policy | {:.2} %; `fragmentation` is {:.2} points above it | **met** |",
                f.median,
                o - f.median
            );
        }
        _ => {
            let _ = writeln!(m, "| the floor | not computed | **missed** |");
        }
    }
    let holdout = |i: usize| {
        find(c.summaries, HOLDOUT_LABEL, &c.entries[i].config).and_then(|s| s.unallocated_100)
    };
    if let (Some(o), Some(f)) = (holdout(4), holdout(9)) {
        let _ = writeln!(
            m,
            "| (check) on held-out seeds {}, `fragmentation` ≤ the re-implemented FGD (medians) | {:.2} % vs {:.2} % | {} |",
            seed_range(&c.args.holdout_seeds.0),
            o.median,
            f.median,
            yes(o.median <= f.median)
        );
    }
    let variant_rows = variant_table(c);
    if !c.variants.is_empty() {
        let worse = variant_rows.iter().filter(|r| !r.not_worse).count();
        let _ = writeln!(
            m,
            "| never worse than HAMi's best pair on any trace variant (median) | {} of {} variants not worse | {} |",
            variant_rows.len() - worse,
            variant_rows.len(),
            yes(worse == 0)
        );
    } else {
        let _ = writeln!(
            m,
            "| never worse than HAMi's best pair on any trace variant | not run (add `--variants`) | **not measured** |"
        );
    }
    if let Some(r) = c.latency.ratio() {
        let _ = writeln!(
            m,
            "| decision latency at 5,000 nodes × 8 GPUs within 3× binpack's | {r:.2}× | {} |",
            yes(r <= 3.0)
        );
    }
    if let Some(s) = ours {
        let wall = s.wall_seconds.map_or(f64::NAN, |w| w.mean);
        let _ = writeln!(
            m,
            "| one seed of the default trace replays in seconds | {wall:.1} s per seed (`fragmentation`) | {} |",
            yes(wall < 60.0)
        );
    }

    // ── Method ──────────────────────────────────────────────────────────────────────────────
    let _ = writeln!(m, "\n## How it was measured\n");
    let _ = writeln!(
        m,
        "Regenerate with `make quality` (equivalently `cargo run --release -p sliceguard-kind-harness -- trace --quality-report bench/QUALITY.md --variants`; \
the data folder is `--data`, default `{}`). This run: seeds {seed_text}, tune {}, split count {}, {} parallel runs, {:.0} s in all.\n",
        super::cli::DEFAULT_DATA_DIR,
        c.args.tune,
        c.args.split,
        c.args.jobs,
        c.elapsed
    );
    let _ = writeln!(
        m,
        "The recipe is `shared/spec/placement-quality-benchmark.md` §5, followed as written:\n\n\
- **Fleet**: `openb_node_list_gpu_node.csv`, {fleet}. Each GPU registers with the core as a HAMi device (`NVIDIA-<model>`, 100 cores, \
the model's memory from the data README; G2/G3 use the simulator's 20000/30000 MiB) with split count {split}.\n\
- **Tasks**: a sharing task (`num_gpu` 1, `gpu_milli` < 1000) is a pod asking `nvidia.com/gpu: 1`, `nvidia.com/gpucores` = \
`nvidia.com/gpumem-percentage` = `gpu_milli`/10; a whole-GPU task asks `nvidia.com/gpu: n` with 100 cores and 100 % memory \
(exclusive). CPU and memory become the container's requests.\n\
- **Arrivals**: per seed, the rows are shuffled (a seeded xoshiro256**; Go's `math/rand` stream cannot be reproduced, so \
distributions over seeds are compared, not single runs), then clones drawn with replacement are appended while the total \
GPU request stays within 1.3 × capacity (a trace above it loses random rows instead). Each task is submitted once; one \
that no node takes fails for good; nothing is deleted.\n\
- **kube-scheduler's part**: a node is offered to the scheduler only if NodeResourcesFit passes (CPU, memory, at most 1001 pods), \
it has GPUs, and its model is allowed. `gpu_spec` is matched **exactly**, as node affinity on a model label would (HAMi's \
`nvidia.com/use-gputype` is a case-insensitive substring match, so `A10` would also select `A100`; the replay's \
`--gpu-spec-match hami-substring` uses it instead, and in this fleet both select the same nodes). Node names carry a seeded \
random rank (`0417-openb-node-0032`), as the paper's simulator renames them, so that ties between equal scores fall to a random \
but fixed node order per seed. kube-scheduler is assumed to consider every node (`percentageOfNodesToScore: 100`, as in the paper).\n\
- **CPU-only tasks** (13 % of tasks, 18 % of CPU) never reach HAMi: its filter passes every node for a pod without GPU \
requests, so kube-scheduler's default profile places them: NodeResourcesFit `LeastAllocated` plus `NodeResourcesBalancedAllocation`, \
weight 1 each, which spreads them; ties to the node order. That is what a HAMi cluster does, so HAMi's four pairs are \
measured that way. sliceguard's `fragmentation` row has them routed to sliceguard, which places them with \
`fragmentation::choose_node_for_cpu_pod` (where their CPU strands the fewest GPUs); its ablation leaves them to kube-scheduler. \
The paper's policies place CPU-only tasks themselves.\n\
- **GPU decisions** go through sliceguard's core: a `Registry` built from `hami.io/node-nvidia-register` annotations, a \
`Ledger` of allocations, `decision::prepare` on the real `Pod` object and `decision::decide`, as `sliceguard place` \
and the extender do. The replay offers the core only the nodes where the pod's GPU part fits (same decision: a node the fit \
rejects is never chosen and no node's verdict depends on another's; `kind-harness/tests/replay.rs` compares both paths decision by \
decision, and `--no-fast-path` offers every node).\n\
- **Invariants** are checked after every placement: per GPU memory ≤ device memory, cores ≤ 100, tasks ≤ split count, an \
exclusive task alone; per node CPU, memory and pods within capacity; and the core's ledger equals the replay's own accounting on \
every GPU of the node. Any violation fails the run; none did.\n\
- **Metrics** (recipe §1.1, §1.2): after every task, arrived and allocated milli-GPU and Σ_n F_n (FGD's fragmentation with host CPU, \
typical tasks = the most frequent (cpu, gpu_milli, num_gpu, gpu_spec) keys of the original trace covering 95 %). Each run is \
discretised per integer arrived % (mean of the events whose arrived % rounds to x, half to even; x ± 1 when there is none). \
Across seeds: mean ± sample sd and median; curves are medians with the 25–75 % band.\n",
        fleet = super::input::FleetTotals::of(&c.default.nodes),
        split = c.args.split,
    );

    let _ = writeln!(
        m,
        "**The floor** (`kind-harness/src/trace/floor.rs`): for each seed, the tasks arrived when the curve's 100 % point is \
taken (every task up to the last event that point averages) are given to a linear program that places them fractionally into pools \
of identical nodes (model, GPU count, CPU, memory), maximising the GPU placed under each pool's GPU, CPU and memory and each \
task's allowed models and GPU count, and under packing cuts: for six of Fekete and Schepers' dual-feasible functions `u` of a \
task's share of one GPU, the tasks in a pool weigh at most its GPU count, since tasks that share a GPU weigh at most 1 \
(without the cuts the program fills GPUs with slices no GPU can hold together, e.g. three 0.6-GPU tasks on two GPUs, and the \
floor was 0 % on 14 of the 15 traces). Everything a scheduler must respect is kept and everything it relaxes (splitting a \
task beyond what the cuts forbid, the arrival order, placing CPU-only tasks at all) only widens the choice, so no scheduler \
allocates more on that arrival sequence: capacity minus the optimum is a floor on unallocated GPU. It is a bound, not a \
schedule: the gap to it bounds what a better policy could still gain.\n"
    );
    let _ = writeln!(
        m,
        "**Decision paths.** sliceguard's rows go through `serve`'s own decision path (path `service`: the service's view \
fed with Node and Pod objects as its watches deliver them, the learned workload and host CPU read from that view, the \
filter machine's learn, take, decide, assume and patch; `kind-harness/tests/replay.rs` checks that it places every pod \
where the core called directly does), except the rows that need a setting `serve` does not have (the profile counted \
from the whole trace, the tuning ablations), which call the core directly (path `core`). The paper's re-implemented \
policies run in the harness.\n"
    );

    // ── Calibration ─────────────────────────────────────────────────────────────────────────
    let _ = writeln!(m, "## Calibration against the paper\n");
    let _ = writeln!(
        m,
        "The paper's BestFit, FGD and Random were re-implemented from the artifact's code (`best_fit_score.go`, `fgd_score.go`, \
`random_score.go`, `open_gpu_share.go`: integer 0–100 scores, ties to the node order, \"best\" GPU inside the node, CPU-only tasks \
placed by the policy) and replayed by the same harness; they do not go through sliceguard's core. If the replay's arrival \
model, filters and metric match the paper's, they land on the paper's numbers.\n"
    );
    let _ = writeln!(
        m,
        "| policy | paper, mean ± sd | paper median | this replay, mean ± sd | this replay median | Δ median |"
    );
    let _ = writeln!(m, "|---|---|---|---|---|---|");
    for (name, ours_s) in [("BestFit", bestfit), ("FGD", fgd), ("Random", random)] {
        if let Some(p) = PAPER.iter().find(|p| p.name == name) {
            let ps = paper_stats(p);
            let d = match (ps, ours_s.and_then(|s| s.unallocated_100)) {
                (Some(a), Some(b)) => format!("{:+.2}", b.median - a.median),
                _ => "–".into(),
            };
            let _ = writeln!(
                m,
                "| {name} | {} | {} | {} | {} | {d} |",
                mean_sd(ps),
                median(ps),
                mean_sd(ours_s.and_then(|s| s.unallocated_100)),
                median(ours_s.and_then(|s| s.unallocated_100))
            );
        }
    }
    let _ = writeln!(
        m,
        "\nWho places the CPU-only tasks matters as much as the GPU policy: the same re-implemented FGD with CPU-only tasks left to \
kube-scheduler's spreading leaves {} unallocated (median {}), against {} when it places them itself. This is why the HAMi \
rows and the paper's rows differ in more than the GPU policy, and why sliceguard's policy takes the CPU-only tasks too.\n",
        mean_sd(fgd_kube.and_then(|s| s.unallocated_100)),
        median(fgd_kube.and_then(|s| s.unallocated_100)),
        median(fgd.and_then(|s| s.unallocated_100)),
    );

    // ── Default trace, full table ───────────────────────────────────────────────────────────
    let _ = writeln!(m, "## Default trace: every configuration\n");
    let _ = writeln!(
        m,
        "Unallocated GPU, fragmentation amount (Σ F_n as % of cluster GPU) and fragmentation rate (Σ F_n as % of idle GPU) at 100 % arrived; \
failed tasks per run; the arrived % where the curve first leaves the ideal line by more than 0.5 points (median); wall time per \
seed and decisions per second of decision time (mean over seeds).\n"
    );
    let _ = writeln!(
        m,
        "| configuration | path | CPU-only tasks | unallocated, mean ± sd | median | above the floor (median, points) | frag amount | frag rate | failed | leaves ideal at | s/seed | decisions/s |"
    );
    let _ = writeln!(m, "|---|---|---|---|---|---|---|---|---|---|---|---|");
    for (i, e) in c.entries.iter().enumerate() {
        let Some(s) = c.summary(i) else { continue };
        let path = match e.config.policy {
            PolicySpec::Reference { .. } => "harness".to_string(),
            PolicySpec::Core { .. } => e.config.path.to_string(),
        };
        let _ = writeln!(
            m,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            e.label,
            path,
            e.config.cpu_pods,
            mean_sd(s.unallocated_100),
            median(s.unallocated_100),
            match (s.unallocated_100, floor_default) {
                (Some(u), Some(f)) => format!("{:+.2}", u.median - f.median),
                _ => "–".into(),
            },
            mean_sd(s.frag_amount_100),
            mean_sd(s.frag_rate_100),
            s.failed.map_or("–".into(), |f| format!("{:.0}", f.mean)),
            s.first_departure
                .map_or("–".into(), |f| format!("{:.1}", f.median)),
            f2(s.wall_seconds.map(|w| w.mean)),
            s.decisions_per_second
                .map_or("–".into(), |d| format!("{:.0}", d.mean)),
        );
    }
    if let Some(t) = ours_trace.and_then(|s| s.unallocated_100) {
        let _ = writeln!(
            m,
            "\nThe learned profile costs nothing measurable against FGD's oracle, a profile counted from the whole trace in advance \
(median {:.2} learned, {:.2} oracle).",
            med(ours).unwrap_or(f64::NAN),
            t.median
        );
    }

    // ── Ablations ───────────────────────────────────────────────────────────────────────────
    let _ = writeln!(m, "\n## What each change to FGD is worth\n");
    let _ = writeln!(
        m,
        "sliceguard's policy with one thing changed at a time, same seeds. The 4-GPU score scale was chosen while developing \
the policy by replaying seeds 42–45 (which are among the reported seeds) and then seeds 1–6 (which are not); the √demand \
weighting and the 1-GPU scale for multi-GPU pods (the last three rows undo them) were chosen on seeds 42–45 of ten of the \
trace's variants and checked on seeds 200–203 (`bench/FGD-GAP.md`). The scale is sensitive (see the 5-GPU row), so the \
section below also replays seeds the design never saw.\n"
    );
    let _ = writeln!(
        m,
        "| configuration | unallocated, mean ± sd | median | Δ median vs `fragmentation` |"
    );
    let _ = writeln!(m, "|---|---|---|---|");
    let base = med(ours);
    for &i in &ABLATIONS {
        let Some(s) = c.summary(i) else { continue };
        let d = match (s.unallocated_100, base) {
            (Some(u), Some(b)) => format!("{:+.2}", u.median - b),
            _ => "–".into(),
        };
        let _ = writeln!(
            m,
            "| {} | {} | {} | {d} |",
            c.entries[i].label,
            mean_sd(s.unallocated_100),
            median(s.unallocated_100)
        );
    }
    let _ = writeln!(m, "\n### Held-out seeds\n");
    let _ = writeln!(
        m,
        "Seeds {} were never replayed while designing the policy.\n",
        seed_range(&c.args.holdout_seeds.0)
    );
    let _ = writeln!(m, "| configuration | unallocated, mean ± sd | median |");
    let _ = writeln!(m, "|---|---|---|");
    for &i in &HOLDOUT_ENTRIES {
        let s = holdout(i);
        let _ = writeln!(
            m,
            "| {} | {} | {} |",
            c.entries[i].label,
            mean_sd(s),
            median(s)
        );
    }

    // ── Curve ───────────────────────────────────────────────────────────────────────────────
    let _ = writeln!(m, "\n## The curve from 75 % to 120 % arrived\n");
    let _ = writeln!(
        m,
        "Median unallocated GPU % over the seeds (the paper's medians where it published them).\n"
    );
    let xs = [75usize, 80, 85, 90, 95, 100, 105, 110, 115, 120];
    let _ = write!(m, "| policy |");
    for x in xs {
        let _ = write!(m, " {x} |");
    }
    let _ = writeln!(m);
    let _ = write!(m, "|---|");
    for _ in xs {
        let _ = write!(m, "---|");
    }
    let _ = writeln!(m);
    let _ = write!(m, "| ideal |");
    for x in xs {
        let _ = write!(m, " {:.2} |", (100.0 - x as f64).max(0.0));
    }
    let _ = writeln!(m);
    for p in &PAPER {
        let _ = write!(m, "| paper {} |", p.name);
        for x in xs {
            let v = PAPER_CURVE_X
                .iter()
                .position(|px| (*px - x as f64).abs() < 1e-9)
                .map(|i| p.curve[i]);
            let _ = write!(m, " {} |", f2(v));
        }
        let _ = writeln!(m);
    }
    for i in 0..5 {
        let Some(s) = c.summary(i) else { continue };
        let _ = write!(m, "| {} |", c.entries[i].label);
        for x in xs {
            let _ = write!(
                m,
                " {} |",
                f2(s.unallocated_band.median.get(x).copied().flatten())
            );
        }
        let _ = writeln!(m);
    }
    let _ = writeln!(m, "\n![curve]({})\n", c.svg_name);

    // ── Variants ────────────────────────────────────────────────────────────────────────────
    let _ = writeln!(m, "## Trace variants\n");
    if c.variants.is_empty() {
        let _ = writeln!(m, "Not run in this report (add `--variants`).\n");
    } else {
        let _ = writeln!(
            m,
            "Every other pod list in the data folder (the paper's Figs. 11–13: GPU-sharing share, multi-GPU share, GPU-type \
constraints), same fleet and settings, seeds {}. HAMi's best pair is the one with the lowest median on that trace.\n",
            seed_range(
                c.args
                    .variant_seeds
                    .as_ref()
                    .map_or(&c.args.seeds.0, |s| &s.0)
            )
        );
        let _ = writeln!(
            m,
            "| trace | demand | HAMi's best pair | its unallocated, mean ± sd (median) | `fragmentation`, mean ± sd (median) | Δ median | not worse | `fragmentation` with CPU-only tasks by kube-scheduler (median) | re-implemented FGD (median) | HAMi's best pair, hami-substring (median) | floor (median) |"
        );
        let _ = writeln!(m, "|---|---|---|---|---|---|---|---|---|---|---|");
        for r in &variant_rows {
            let _ = writeln!(
                m,
                "| {} | {:.0} % | {} | {} ({}) | {} ({}) | {:+.2} | {} | {} | {} | {} | {} |",
                r.trace,
                r.demand,
                r.best_label,
                mean_sd(r.best),
                median(r.best),
                mean_sd(r.ours),
                median(r.ours),
                r.ours.map_or(f64::NAN, |o| o.median) - r.best.map_or(f64::NAN, |b| b.median),
                if r.not_worse { "yes" } else { "**no**" },
                median(r.ours_kube),
                median(r.fgd),
                median(r.best_substring),
                median(c.floor(&r.trace)),
            );
        }
        let _ = writeln!(m);
    }

    // ── Speed ───────────────────────────────────────────────────────────────────────────────
    let _ = writeln!(m, "## Speed\n");
    let _ = writeln!(
        m,
        "One seed of the default trace is ~10,800 tasks on 1,213 nodes (wall time per seed and decisions per second are in the \
table above; they include the replay's own bookkeeping and checks, and this machine's other load). Decision latency of the \
core at {} nodes × {} GPUs, about half used, every node offered, pods from a mix of sharing and whole-GPU requests \
(`kind-harness/src/trace/latency.rs`; `kind-harness trace --latency` measures only this, and the divan bench \
`cargo bench -p sliceguard-kind-harness --bench decision_latency` the same fixture). Each timed decision is what `serve`'s \
filter does for one pod on a steady cluster: learn the pod into the workload profile (which has seen one pod per task in the \
fleet), decide, and assume the placement (ledger and index updated, so the next decision sees one node changed). \
`fragmentation` remembers every node's verdict per pod shape across decisions, with the nodes that fit ranked, and \
re-evaluates only the nodes that changed since the shape's last decision (`scheduler/core/src/score_memo.rs`; the profile \
derives its typical workload again only when the counts drift by 1/32); from 64 offered nodes up it takes the best-ranked \
offered node without visiting the others and returns only its verdict, as the index does for HAMi's policies. The fixture \
has 8 pod shapes; a cluster with more shapes, or CPU requests that differ per pod, finds fewer verdicts remembered (the hit \
rate is printed below: verdicts a decision relied on without evaluating them). The mean includes the first decision of each \
shape, which evaluates every node:\n",
        c.latency.nodes, c.latency.gpus
    );
    let _ = writeln!(m, "{}", c.latency.table());

    // ── Split count ─────────────────────────────────────────────────────────────────────────
    let _ = writeln!(m, "## Split count\n");
    let _ = writeln!(
        m,
        "The replay registers each GPU with split count {} — with the smallest share in the trace (50 milli = 5 cores) at most \
20 tasks fit a GPU by cores, so 20 never binds before cores or memory. HAMi's default is 10; each run counts the grants that \
landed on a GPU already holding 10 or more tasks, i.e. that a split count of 10 would have refused:\n",
        c.args.split
    );
    let _ = writeln!(
        m,
        "| configuration | grants per run beyond 10 tasks/GPU (mean) | most tasks on one GPU |"
    );
    let _ = writeln!(m, "|---|---|---|");
    for (i, e) in c.entries.iter().enumerate().take(5) {
        let Some(s) = c.summary(i) else { continue };
        let most = s
            .runs
            .iter()
            .map(|r| r.max_tasks_per_gpu)
            .max()
            .unwrap_or(0);
        let _ = writeln!(
            m,
            "| {} | {} | {most} |",
            e.label,
            s.grants_beyond_default_split
                .map_or("–".into(), |g| format!("{:.1}", g.mean)),
        );
    }

    // ── Policy ──────────────────────────────────────────────────────────────────────────────
    let _ = writeln!(m, "\n## sliceguard's `fragmentation` policy\n");
    let _ = writeln!(
        m,
        "`hami.io/gpu-scheduler-policy: fragmentation` (or `--gpu-scheduler-policy fragmentation`) is one combined policy: it \
chooses the node and the GPUs (`scheduler/core/src/fragmentation/`). From FGD it takes the expected fragmentation of a node \
under the typical workload, F = Σ_m p_m · frag(m), where frag(m) is the free GPU share no GPU of task shape m can use (all \
of it if the node cannot host m at all, for lack of GPUs or CPU). Each decision is per node, O(shapes × GPUs):\n\n\
- **Devices**: each fitting GPU is keyed by F after it takes one GPU of the request; the least is taken (ties: busiest first).\n\
- **Nodes**: score ⌊100·σ(−ΔF/4 GPU)⌋ (on a 1-GPU scale, ⌊100·σ(−ΔF)⌋, for a pod taking several GPUs), 0–100, \
50 = unchanged, higher wins; equal scores go to the node order.\n\
- **CPU-only pods** routed to sliceguard: the node where their CPU strands the least GPU, then the one with the least free \
GPU, then the tightest CPU fit.\n\n\
Changed from FGD (each change's worth is in the ablation table): the typical workload is **learned online** \
from the GPU pods the scheduler has seen (shapes = GPUs, share, cores, type selectors and CPU; the most frequent covering 95 %), \
never read from the future of the trace; shapes are **weighted by frequency × √(GPUs taken)**, between FGD's count and the \
GPU demand, because the objective is allocated GPU; and a pod taking one GPU or less is compared on a **4-GPU scale** instead \
of FGD's 1 GPU, so differences under ~0.16 GPU tie and fall to a fixed node order (which packs: equally good nodes are filled \
one after another), while a multi-GPU pod, which moves fragmentation in whole GPUs, keeps FGD's scale. The fit semantics are HAMi's (split \
count, memory in MiB or %, cores, exclusivity, type selectors), and host CPU is read through a `HostSource` the extender can \
fill from Node allocatable and the pods bound to each node.\n"
    );
    let _ = writeln!(
        m,
        "## Files\n\n- `{}`: every run's value at 100 % arrived (and failed tasks, timings).\n- `{}`: the curves above.\n- Per-seed \
curves: `kind-harness trace -o csv` or `-o json`.\n",
        c.csv_name, c.svg_name
    );
    m
}

/// One row of the variants table.
#[derive(Debug, Clone)]
struct VariantRow {
    trace: String,
    demand: f64,
    best_label: String,
    best: Option<Stats>,
    ours: Option<Stats>,
    ours_kube: Option<Stats>,
    /// The re-implemented FGD.
    fgd: Option<Stats>,
    /// HAMi's best pair with HAMi's GPU-type selection.
    best_substring: Option<Stats>,
    not_worse: bool,
}

fn variant_table(c: &Report<'_>) -> Vec<VariantRow> {
    let entries = variant_entries(c.args);
    c.variants
        .iter()
        .map(|t| {
            let stats = |i: usize| {
                find(c.summaries, &t.label, &entries[i].config).and_then(|s| s.unallocated_100)
            };
            let best = (0..4)
                .filter_map(|i| stats(i).map(|s| (i, s)))
                .min_by(|a, b| a.1.median.total_cmp(&b.1.median));
            let ours = stats(4);
            let not_worse = match (best, ours) {
                (Some((_, b)), Some(o)) => o.median <= b.median,
                _ => false,
            };
            VariantRow {
                trace: t.label.clone(),
                demand: t.demand_percent(),
                best_label: best
                    .map_or("–".into(), |(i, _)| entries[i].config.policy.to_string()),
                best: best.map(|(_, s)| s),
                ours,
                ours_kube: stats(5),
                fgd: stats(6),
                best_substring: (7..11)
                    .filter_map(stats)
                    .min_by(|a, b| a.median.total_cmp(&b.median)),
                not_worse,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The index constants name the entries the report's sections say they are: the held-out rows
    /// are sliceguard's default, the re-implemented FGD and the former defaults, and every
    /// ablation is sliceguard's policy with the tuning (or the profile, or the CPU-only route)
    /// changed from the default row.
    #[test]
    fn the_report_sections_pick_the_entries_they_name() {
        use clap::Parser;
        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            trace: TraceArgs,
        }
        let entries = default_entries(&Cli::try_parse_from(["t"]).unwrap().trace);
        let ours = &entries[HOLDOUT_ENTRIES[0]];
        assert_eq!(ours.label, "sliceguard fragmentation");
        assert_eq!(ours.config.tuning, FragmentationTuning::default());
        assert_eq!(ours.config.path, DecisionPath::Service);
        assert_eq!(
            entries[HOLDOUT_ENTRIES[1]].label,
            "paper FGD, re-implemented"
        );
        let former = &entries[HOLDOUT_ENTRIES[2]].config.tuning;
        assert_eq!(
            (former.weighting, former.multi_gpu_score_scale_gpus),
            (Weighting::Demand, None)
        );
        assert_eq!(ABLATIONS[0], HOLDOUT_ENTRIES[0]);
        for &i in &ABLATIONS[1..] {
            let e = &entries[i].config;
            assert!(e.policy.is_fragmentation(), "{}", entries[i].label);
            let changed = [
                e.tuning != ours.config.tuning,
                e.profile != ours.config.profile,
                e.cpu_pods != ours.config.cpu_pods,
            ];
            assert!(changed.contains(&true), "{}", entries[i].label);
        }
        let labels: std::collections::BTreeSet<&str> =
            ABLATIONS.iter().map(|&i| entries[i].label).collect();
        assert_eq!(labels.len(), ABLATIONS.len(), "each ablation once");
    }

    #[test]
    fn paper_medians_are_the_published_ones() {
        // The per-seed values read from the artifact reproduce the published medians (§3.1), which
        // round 9.445 and 8.195 up.
        for p in &PAPER {
            let median = paper_stats(p).unwrap().median;
            assert!(
                (median - p.curve[5]).abs() <= 0.005 + 1e-9,
                "{}: {median}",
                p.name
            );
        }
        assert_eq!(
            PAPER.map(|p| p.name),
            [
                "Random",
                "DotProd",
                "GpuClustering",
                "GpuPacking",
                "BestFit",
                "FGD"
            ]
        );
    }
}
