//! Summaries of runs: per run, the discretised curves and counters; per policy, statistics over the
//! seeds (mean ± sd and median at 100 % arrived, the median curve with its 25–75 % band), and the
//! table, JSON and CSV renderings the `trace` subcommand prints.

use super::metrics::{
    Curve, MAX_X, Stats, curve_stats, first_departure, frag_amount_curve, frag_rate_curve,
    unallocated_curve,
};
use super::replay::{ReplayConfig, RunResult};
use serde::Serialize;
use std::fmt::Write as _;

/// The arrived percentage the paper's bar charts read.
pub const SATURATION_X: usize = 100;

/// One run, summarised.
#[derive(Debug, Clone, Serialize)]
pub struct RunSummary {
    /// Seed.
    pub seed: u64,
    /// Unallocated GPU % per arrived % (0..=130).
    pub unallocated: Curve,
    /// Fragmentation amount (% of GPUs) per arrived %.
    pub frag_amount: Curve,
    /// Fragmentation rate (% of idle GPU) per arrived %.
    pub frag_rate: Curve,
    /// First arrived % where unallocated leaves the ideal line by more than 0.5 points.
    pub first_departure: Option<usize>,
    /// Pods submitted.
    pub submitted: u64,
    /// GPU pods that failed.
    pub failed_gpu: u64,
    /// CPU-only pods that failed.
    pub failed_cpu: u64,
    /// Placer decisions.
    pub decisions: u64,
    /// Seconds in decisions.
    pub decision_seconds: f64,
    /// Seconds for the whole run.
    pub wall_seconds: f64,
    /// Grants onto a GPU already holding 10 or more tasks.
    pub grants_beyond_default_split: u64,
    /// Most tasks on one GPU.
    pub max_tasks_per_gpu: u32,
}

impl RunSummary {
    /// Summarises a run of a fleet with `capacity_milli`.
    pub fn of(run: &RunResult, capacity_milli: u64) -> Self {
        let unallocated = unallocated_curve(&run.events, capacity_milli);
        RunSummary {
            seed: run.seed,
            first_departure: first_departure(&unallocated),
            unallocated,
            frag_amount: frag_amount_curve(&run.events, capacity_milli),
            frag_rate: frag_rate_curve(&run.events, capacity_milli),
            submitted: run.submitted,
            failed_gpu: run.failed_gpu,
            failed_cpu: run.failed_cpu,
            decisions: run.decisions,
            decision_seconds: run.decision_time.as_secs_f64(),
            wall_seconds: run.wall_time.as_secs_f64(),
            grants_beyond_default_split: run.grants_beyond_default_split,
            max_tasks_per_gpu: run.max_tasks_per_gpu,
        }
    }
}

/// Per-x median and 25/75 % quantiles.
#[derive(Debug, Clone, Serialize)]
pub struct Band {
    /// Median.
    pub median: Curve,
    /// 25th percentile.
    pub p25: Curve,
    /// 75th percentile.
    pub p75: Curve,
}

/// Linear-interpolation quantile of sorted values (numpy's default).
fn quantile(sorted: &[f64], q: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let pos = q * (sorted.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = pos.ceil() as usize;
    Some(sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64))
}

impl Band {
    /// The band of several curves.
    pub fn of(curves: &[&Curve]) -> Self {
        let mut median = Vec::with_capacity(MAX_X + 1);
        let mut p25 = Vec::with_capacity(MAX_X + 1);
        let mut p75 = Vec::with_capacity(MAX_X + 1);
        for x in 0..=MAX_X {
            let mut v: Vec<f64> = curves
                .iter()
                .filter_map(|c| c.get(x).copied().flatten())
                .collect();
            v.sort_by(f64::total_cmp);
            median.push(quantile(&v, 0.5));
            p25.push(quantile(&v, 0.25));
            p75.push(quantile(&v, 0.75));
        }
        Band { median, p25, p75 }
    }
}

/// One policy on one trace over all its seeds.
#[derive(Debug, Clone, Serialize)]
pub struct PolicySummary {
    /// Trace label.
    pub trace: String,
    /// Policy label.
    pub policy: String,
    /// The run configuration.
    pub config: ReplayConfig,
    /// Unallocated GPU % at 100 % arrived.
    pub unallocated_100: Option<Stats>,
    /// Fragmentation amount at 100 % arrived.
    pub frag_amount_100: Option<Stats>,
    /// Fragmentation rate at 100 % arrived.
    pub frag_rate_100: Option<Stats>,
    /// Failed pods per run.
    pub failed: Option<Stats>,
    /// First departure from the ideal line.
    pub first_departure: Option<Stats>,
    /// Wall seconds per run.
    pub wall_seconds: Option<Stats>,
    /// Decisions per second of decision time, per run.
    pub decisions_per_second: Option<Stats>,
    /// Grants that a split count of 10 would have refused, per run.
    pub grants_beyond_default_split: Option<Stats>,
    /// Unallocated GPU % band over the seeds.
    pub unallocated_band: Band,
    /// Mean unallocated curve.
    pub unallocated_mean: Vec<Option<Stats>>,
    /// The runs.
    pub runs: Vec<RunSummary>,
}

impl PolicySummary {
    /// Summarises the runs of one policy on one trace.
    pub fn of(trace: &str, config: &ReplayConfig, runs: Vec<RunSummary>) -> Self {
        let at = |f: &dyn Fn(&RunSummary) -> Option<f64>| {
            Stats::of(&runs.iter().filter_map(f).collect::<Vec<f64>>())
        };
        let curves: Vec<&Curve> = runs.iter().map(|r| &r.unallocated).collect();
        PolicySummary {
            trace: trace.to_string(),
            policy: config_label(config),
            config: config.clone(),
            unallocated_100: at(&|r| r.unallocated[SATURATION_X]),
            frag_amount_100: at(&|r| r.frag_amount[SATURATION_X]),
            frag_rate_100: at(&|r| r.frag_rate[SATURATION_X]),
            failed: at(&|r| Some((r.failed_gpu + r.failed_cpu) as f64)),
            first_departure: at(&|r| r.first_departure.map(|x| x as f64)),
            wall_seconds: at(&|r| Some(r.wall_seconds)),
            decisions_per_second: at(&|r| {
                (r.decision_seconds > 0.0).then(|| r.decisions as f64 / r.decision_seconds)
            }),
            grants_beyond_default_split: at(&|r| Some(r.grants_beyond_default_split as f64)),
            unallocated_band: Band::of(&curves),
            unallocated_mean: curve_stats(&curves),
            runs,
        }
    }
}

/// The policy with what sets the run apart from the defaults, e.g. `fragmentation (scale 1 GPU)`.
pub fn config_label(config: &ReplayConfig) -> String {
    let mut label = config.policy.to_string();
    if config.policy.is_fragmentation() {
        let defaults = super::placer::FragmentationTuning::default();
        let mut notes = Vec::new();
        if config.profile != super::placer::ProfileSource::Learned {
            notes.push(format!("profile {}", config.profile));
        }
        let scale_words = |scale: f64| {
            if scale > 0.0 {
                format!("scale {scale} GPU")
            } else {
                "exact growth".to_string()
            }
        };
        let single = config.tuning.score_scale_gpus;
        let multi = config.tuning.multi_gpu_score_scale_gpus.unwrap_or(single);
        let single_changed = single != defaults.score_scale_gpus;
        let multi_changed =
            config.tuning.multi_gpu_score_scale_gpus != defaults.multi_gpu_score_scale_gpus;
        if single_changed && multi_changed && multi == single {
            notes.push(format!("{} for every pod", scale_words(single)));
        } else {
            if single_changed {
                notes.push(scale_words(single));
            }
            if multi_changed {
                notes.push(if multi > 0.0 {
                    format!("multi-GPU pods at scale {multi} GPU")
                } else {
                    "multi-GPU pods by exact growth".to_string()
                });
            }
        }
        if config.tuning.weighting != defaults.weighting {
            notes.push(format!(
                "{}-weighted",
                super::placer::weighting_name(config.tuning.weighting)
            ));
        }
        if !notes.is_empty() {
            label = format!("{label} ({})", notes.join(", "));
        }
    }
    label
}

/// `mean ± sd` with two decimals, or `–`.
pub fn mean_sd(s: Option<Stats>) -> String {
    s.map_or("–".into(), |s| format!("{:.2} ± {:.2}", s.mean, s.sd))
}

/// The median with two decimals, or `–`.
pub fn median(s: Option<Stats>) -> String {
    s.map_or("–".into(), |s| format!("{:.2}", s.median))
}

/// A plain-text table of summaries.
pub fn table(summaries: &[PolicySummary]) -> String {
    let header = [
        "trace",
        "policy",
        "cpu pods",
        "unalloc@100 mean±sd",
        "median",
        "frag@100",
        "frag rate@100",
        "failed",
        "leaves ideal at",
        "s/seed",
        "decisions/s",
        ">10 tasks/GPU",
    ];
    let rows: Vec<Vec<String>> = summaries
        .iter()
        .map(|s| {
            vec![
                s.trace.clone(),
                s.policy.clone(),
                s.config.cpu_pods.to_string(),
                mean_sd(s.unallocated_100),
                median(s.unallocated_100),
                mean_sd(s.frag_amount_100),
                mean_sd(s.frag_rate_100),
                s.failed.map_or("–".into(), |f| format!("{:.0}", f.mean)),
                s.first_departure
                    .map_or("–".into(), |f| format!("{:.1}", f.median)),
                s.wall_seconds
                    .map_or("–".into(), |f| format!("{:.2}", f.mean)),
                s.decisions_per_second
                    .map_or("–".into(), |f| format!("{:.0}", f.mean)),
                s.grants_beyond_default_split
                    .map_or("–".into(), |f| format!("{:.0}", f.mean)),
            ]
        })
        .collect();
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for r in &rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    let line = |cells: Vec<String>, out: &mut String| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c}{}", " ".repeat(w - c.chars().count())))
            .collect();
        let _ = writeln!(out, "{}", padded.join("  ").trim_end());
    };
    line(header.iter().map(|h| h.to_string()).collect(), &mut out);
    for r in rows {
        line(r, &mut out);
    }
    out
}

/// Long CSV: one row per (trace, policy, seed, arrived %); a label holding a comma is quoted.
pub fn csv(summaries: &[PolicySummary]) -> anyhow::Result<Vec<u8>> {
    let mut out = csv::Writer::from_writer(Vec::new());
    out.write_record([
        "trace",
        "policy",
        "cpu_pods",
        "seed",
        "arrived_percent",
        "unallocated_percent",
        "frag_amount_percent",
        "frag_rate_percent",
    ])?;
    let cell = |v: Option<f64>| v.map_or(String::new(), |v| format!("{v:.4}"));
    for s in summaries {
        for r in &s.runs {
            for x in 0..=MAX_X {
                out.write_record([
                    s.trace.clone(),
                    s.policy.clone(),
                    s.config.cpu_pods.to_string(),
                    r.seed.to_string(),
                    x.to_string(),
                    cell(r.unallocated[x]),
                    cell(r.frag_amount[x]),
                    cell(r.frag_rate[x]),
                ])?;
            }
        }
    }
    Ok(out.into_inner()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::placer::{FragmentationTuning, PolicySpec};

    /// A tuning ablation is named by what it changes, and a scale both kinds of pod share is named
    /// once ("exact growth for every pod", not "multi-GPU pods at scale 0 GPU").
    #[test]
    fn ablation_labels_name_what_changed() {
        let with = |tuning: FragmentationTuning| {
            config_label(&ReplayConfig {
                tuning,
                ..ReplayConfig::recipe(PolicySpec::fragmentation())
            })
        };
        let defaults = FragmentationTuning::default();
        assert_eq!(with(defaults), "fragmentation");
        let exact_for_all = FragmentationTuning {
            score_scale_gpus: 0.0,
            multi_gpu_score_scale_gpus: None,
            ..defaults
        };
        assert_eq!(
            with(exact_for_all),
            "fragmentation (exact growth for every pod)"
        );
        let one_gpu_for_all = FragmentationTuning {
            score_scale_gpus: 1.0,
            multi_gpu_score_scale_gpus: None,
            ..defaults
        };
        assert_eq!(
            with(one_gpu_for_all),
            "fragmentation (scale 1 GPU for every pod)"
        );
        let single_only = FragmentationTuning {
            score_scale_gpus: 5.0,
            ..defaults
        };
        assert_eq!(with(single_only), "fragmentation (scale 5 GPU)");
        let multi_only = FragmentationTuning {
            multi_gpu_score_scale_gpus: Some(0.0),
            ..defaults
        };
        assert_eq!(
            with(multi_only),
            "fragmentation (multi-GPU pods by exact growth)"
        );
    }

    #[test]
    fn quantiles_interpolate_like_numpy() {
        let v = [1.0, 2.0, 3.0, 4.0];
        assert_eq!(quantile(&v, 0.5), Some(2.5));
        assert_eq!(quantile(&v, 0.25), Some(1.75));
        assert_eq!(quantile(&v, 0.75), Some(3.25));
        assert_eq!(quantile(&[], 0.5), None);
        let a: Curve = vec![Some(1.0); MAX_X + 1];
        let b: Curve = vec![Some(5.0); MAX_X + 1];
        let band = Band::of(&[&a, &b]);
        assert_eq!(
            (band.median[3], band.p25[3], band.p75[3]),
            (Some(3.0), Some(2.0), Some(4.0))
        );
    }

    #[test]
    fn renderings() {
        assert_eq!(mean_sd(Stats::of(&[1.0, 3.0])), "2.00 ± 1.41");
        assert_eq!(median(None), "–");
    }
}
