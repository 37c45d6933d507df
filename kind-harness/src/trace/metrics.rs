//! The recipe's metrics (`shared/spec/placement-quality-benchmark.md` §1.1, §1.2, §5.7), computed from
//! the events a replay records after every pod.
//!
//! - **GPU allocation ratio** = used milli-GPU / (1000 · GPUs) · 100; **unallocated GPU %** = 100 − it.
//! - **Arrived workload** = cumulative GPU request of every submitted pod (placed or failed) / capacity.
//! - **Discretisation** (the artifact's `merge_alloc_discrete.py`): for each integer x in 0..=130, the
//!   mean over the events whose `round(arrived %)` is x; when there is none, over the events with
//!   x−1 ≤ round(arrived %) ≤ x+1; when there is none either, no value. `round` is half-to-even, as
//!   numpy's.
//! - **Fragmentation** (FGD's definition, with host CPU): typical tasks are the most frequent
//!   (cpu, gpu_milli, num_gpu, gpu_spec) keys of the original trace, CPU-only tasks included, until
//!   they cover 95 % of tasks, renormalised. For a node, `frag(m)` is the milli-GPU left on GPUs with
//!   less than `gpu_milli` left when the node can host m (GPUs and CPU), otherwise all its milli-GPU
//!   left (CPU-only task, model not allowed, GPU or CPU short). F_n = Σ p_m frag_n(m).
//!   **Fragmentation amount** = Σ F_n / (1000 · GPUs) · 100; **fragmentation rate** = Σ F_n / Σ idle
//!   milli-GPU · 100 (0 when nothing is idle). Both are discretised like the allocation ratio (mean
//!   of the per-event values).
//! - **Across seeds**: mean, sample standard deviation (n − 1) and median.

use super::cluster::ClusterNode;
use super::input::PodRow;
use serde::Serialize;
use std::collections::HashMap;

/// Largest arrived percentage the curves cover.
pub const MAX_X: usize = 130;

/// What the replay records after each pod.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Event {
    /// Cumulative GPU request of every pod submitted so far (milli-GPU).
    pub arrived_milli: u64,
    /// Milli-GPU allocated.
    pub used_milli: u64,
    /// Σ_n F_n (milli-GPU).
    pub frag_milli: f64,
    /// Σ_n milli-GPU left.
    pub idle_milli: u64,
}

/// A metric per integer arrived percentage 0..=130 (`None` where no event is near).
pub type Curve = Vec<Option<f64>>;

/// Python/numpy rounding: half to even.
pub fn round_half_even(x: f64) -> i64 {
    x.round_ties_even() as i64
}

/// Discretises `value(event)` over the arrived percentage (see the module rules).
pub fn discretise(events: &[Event], capacity_milli: u64, value: impl Fn(&Event) -> f64) -> Curve {
    let mut sums = vec![(0.0f64, 0u64); MAX_X + 1];
    if capacity_milli == 0 {
        return vec![None; MAX_X + 1];
    }
    for e in events {
        let x = round_half_even(e.arrived_milli as f64 * 100.0 / capacity_milli as f64);
        if let Ok(x) = usize::try_from(x)
            && x <= MAX_X
        {
            sums[x].0 += value(e);
            sums[x].1 += 1;
        }
    }
    (0..=MAX_X)
        .map(|x| {
            let (s, n) = sums[x];
            if n > 0 {
                return Some(s / n as f64);
            }
            let lo = x.saturating_sub(1);
            let hi = (x + 1).min(MAX_X);
            let (s, n) = sums[lo..=hi]
                .iter()
                .fold((0.0, 0), |(s, n), (ds, dn)| (s + ds, n + dn));
            (n > 0).then(|| s / n as f64)
        })
        .collect()
}

/// Unallocated GPU % per arrived % (100 − allocation ratio).
pub fn unallocated_curve(events: &[Event], capacity_milli: u64) -> Curve {
    discretise(events, capacity_milli, |e| {
        100.0 - e.used_milli as f64 * 100.0 / capacity_milli as f64
    })
}

/// Fragmentation amount (% of cluster GPU) per arrived %.
pub fn frag_amount_curve(events: &[Event], capacity_milli: u64) -> Curve {
    discretise(events, capacity_milli, |e| {
        e.frag_milli * 100.0 / capacity_milli as f64
    })
}

/// Fragmentation rate (% of idle GPU that is fragmented) per arrived %.
pub fn frag_rate_curve(events: &[Event], capacity_milli: u64) -> Curve {
    discretise(events, capacity_milli, |e| {
        if e.idle_milli == 0 {
            0.0
        } else {
            e.frag_milli * 100.0 / e.idle_milli as f64
        }
    })
}

/// The first integer arrived % where unallocated exceeds the ideal (100 − x) by more than 0.5 points.
pub fn first_departure(unallocated: &Curve) -> Option<usize> {
    unallocated.iter().enumerate().find_map(|(x, v)| {
        let ideal = (100.0 - x as f64).max(0.0);
        v.filter(|v| *v > ideal + 0.5).map(|_| x)
    })
}

/// Mean, sample standard deviation and median of some values.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Stats {
    /// Number of values.
    pub n: usize,
    /// Mean.
    pub mean: f64,
    /// Sample standard deviation (n − 1; 0 for one value).
    pub sd: f64,
    /// Median (mean of the two middle values for an even count).
    pub median: f64,
    /// Smallest.
    pub min: f64,
    /// Largest.
    pub max: f64,
}

impl Stats {
    /// The statistics of `values`; `None` when there is none (NaNs are ignored).
    pub fn of(values: &[f64]) -> Option<Stats> {
        let mut v: Vec<f64> = values.iter().copied().filter(|x| !x.is_nan()).collect();
        if v.is_empty() {
            return None;
        }
        v.sort_by(f64::total_cmp);
        let n = v.len();
        let mean = v.iter().sum::<f64>() / n as f64;
        let sd = if n > 1 {
            (v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1) as f64).sqrt()
        } else {
            0.0
        };
        let median = if n % 2 == 1 {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) / 2.0
        };
        Some(Stats {
            n,
            mean,
            sd,
            median,
            min: v[0],
            max: v[n - 1],
        })
    }
}

/// Per-x statistics over several runs' curves.
pub fn curve_stats(curves: &[&Curve]) -> Vec<Option<Stats>> {
    (0..=MAX_X)
        .map(|x| {
            let values: Vec<f64> = curves
                .iter()
                .filter_map(|c| c.get(x).copied().flatten())
                .collect();
            Stats::of(&values)
        })
        .collect()
}

/// A typical task of the fragmentation metric: the FGD key and its probability.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TypicalTask {
    /// CPU request (millicores).
    pub cpu_milli: u64,
    /// GPU share per GPU (milli; 0 for CPU-only).
    pub gpu_milli: u32,
    /// GPUs.
    pub num_gpu: u32,
    /// Allowed models (empty: any).
    pub gpu_spec: Vec<String>,
    /// Probability.
    pub p: f64,
}

/// The typical tasks of the original trace (before resampling): most frequent keys first until they
/// cover `coverage` of the tasks, renormalised. Ties are broken by the larger key first, as the
/// artifact's reverse sort does.
pub fn typical_tasks(rows: &[PodRow], coverage: f64) -> Vec<TypicalTask> {
    type Key = (u64, u32, u32, Vec<String>);
    let mut counts: HashMap<Key, u64> = HashMap::new();
    for r in rows {
        *counts
            .entry((r.cpu_milli, r.gpu_milli, r.num_gpu, r.gpu_spec.clone()))
            .or_default() += 1;
    }
    let mut ranked: Vec<(Key, u64)> = counts.into_iter().collect();
    ranked.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| b.0.cmp(&a.0)));
    let total = rows.len() as f64;
    let mut covered = 0u64;
    let mut chosen = Vec::new();
    for (key, n) in ranked {
        if covered as f64 >= coverage * total {
            break;
        }
        covered += n;
        chosen.push((key, n));
    }
    chosen
        .into_iter()
        .map(
            |((cpu_milli, gpu_milli, num_gpu, gpu_spec), n)| TypicalTask {
                cpu_milli,
                gpu_milli,
                num_gpu,
                gpu_spec,
                p: n as f64 / covered as f64,
            },
        )
        .collect()
}

/// FGD's expected fragmentation of one node, in milli-GPU (see the module rules).
pub fn node_frag(node: &ClusterNode, typical: &[TypicalTask]) -> f64 {
    let left: u64 = node.milli_left();
    if left == 0 {
        return 0.0;
    }
    let cpu_left = node.cpu_left();
    typical
        .iter()
        .map(|t| {
            let all = left as f64;
            let frag = if t.num_gpu == 0
                || (!t.gpu_spec.is_empty() && !t.gpu_spec.contains(&node.model))
            {
                all
            } else {
                let hosting = node
                    .gpus
                    .iter()
                    .filter(|g| g.milli_left() >= t.gpu_milli)
                    .count();
                if hosting >= t.num_gpu as usize && cpu_left >= t.cpu_milli {
                    node.gpus
                        .iter()
                        .map(|g| g.milli_left())
                        .filter(|&l| l < t.gpu_milli)
                        .map(f64::from)
                        .sum()
                } else {
                    all
                }
            };
            t.p * frag
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::cluster::GpuSlot;

    fn event(arrived: u64, used: u64) -> Event {
        Event {
            arrived_milli: arrived,
            used_milli: used,
            frag_milli: 0.0,
            idle_milli: 0,
        }
    }

    #[test]
    fn discretisation_averages_per_rounded_percent_and_falls_back_to_neighbours() {
        // Capacity 10 GPUs = 10,000 milli: 1 % is 100 milli.
        let events = [
            event(100, 100), // 1 %: 99 % unallocated
            event(140, 100), // 1.4 % → 1: 99 %
            event(150, 150), // 1.5 % → 2 (half to even): 98.5 %
            event(250, 200), // 2.5 % → 2 (half to even): 98 %
            event(500, 300), // 5 %: 97 %
        ];
        let c = unallocated_curve(&events, 10_000);
        assert_eq!(c[1], Some(99.0));
        assert_eq!(c[2], Some(98.25));
        // 3 has no event: neighbours 2..=4 → the two events at 2.
        assert_eq!(c[3], Some(98.25));
        assert_eq!(c[4], Some(97.0), "falls back to 5");
        assert_eq!(c[0], Some(99.0), "falls back to 1");
        assert_eq!(c[7], None);
        assert_eq!(c.len(), MAX_X + 1);
        assert_eq!(unallocated_curve(&events, 0)[1], None);
    }

    #[test]
    fn fragmentation_curves_and_departure() {
        let events = [Event {
            arrived_milli: 5000,
            used_milli: 4000,
            frag_milli: 1500.0,
            idle_milli: 6000,
        }];
        assert_eq!(frag_amount_curve(&events, 10_000)[50], Some(15.0));
        assert_eq!(frag_rate_curve(&events, 10_000)[50], Some(25.0));
        let full = [Event {
            idle_milli: 0,
            ..events[0]
        }];
        assert_eq!(frag_rate_curve(&full, 10_000)[50], Some(0.0));
        let mut curve: Curve = (0..=MAX_X)
            .map(|x| Some((100.0 - x as f64).max(0.0)))
            .collect();
        assert_eq!(first_departure(&curve), None);
        curve[90] = Some(10.4);
        assert_eq!(first_departure(&curve), None, "within 0.5 points");
        curve[93] = Some(7.6);
        assert_eq!(first_departure(&curve), Some(93));
    }

    #[test]
    fn stats_by_hand() {
        let s = Stats::of(&[2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0]).unwrap();
        assert_eq!(
            (s.n, s.mean, s.median, s.min, s.max),
            (8, 5.0, 4.5, 2.0, 9.0)
        );
        assert!((s.sd - (32.0f64 / 7.0).sqrt()).abs() < 1e-12);
        let one = Stats::of(&[3.0]).unwrap();
        assert_eq!((one.sd, one.median), (0.0, 3.0));
        assert_eq!(Stats::of(&[1.0, 2.0, 10.0]).unwrap().median, 2.0);
        assert!(Stats::of(&[]).is_none());
        assert!(Stats::of(&[f64::NAN]).is_none());
        let a: Curve = vec![Some(1.0); MAX_X + 1];
        let b: Curve = vec![Some(3.0); MAX_X + 1];
        assert_eq!(curve_stats(&[&a, &b])[10].unwrap().mean, 2.0);
    }

    fn row(cpu: u64, num_gpu: u32, milli: u32) -> PodRow {
        PodRow {
            name: String::new(),
            cpu_milli: cpu,
            memory_mib: 0,
            num_gpu,
            gpu_milli: milli,
            gpu_spec: vec![],
        }
    }

    #[test]
    fn typical_tasks_cover_the_frequent_keys() {
        let mut rows = vec![row(1000, 1, 500); 6];
        rows.extend(vec![row(2000, 1, 1000); 3]);
        rows.push(row(500, 0, 0));
        let t = typical_tasks(&rows, 0.9);
        assert_eq!(t.len(), 2);
        assert_eq!((t[0].gpu_milli, t[1].gpu_milli), (500, 1000));
        assert!((t[0].p - 6.0 / 9.0).abs() < 1e-12);
        assert_eq!(typical_tasks(&rows, 1.0).len(), 3);
    }

    #[test]
    fn node_frag_by_hand() {
        let slot = |used: u32| GpuSlot {
            milli: used,
            cores: used / 10,
            memory_mib: 0,
            tasks: u32::from(used > 0),
            exclusive: used == 1000,
        };
        let node = ClusterNode {
            row: 0,
            name: "n".into(),
            model: "T4".into(),
            devmem: 15109,
            cpu_capacity: 10_000,
            memory_capacity: 1,
            cpu_requested: 6_000,
            memory_requested: 0,
            cpu_nonzero: 0,
            memory_nonzero: 0,
            pods: 1,
            gpus: vec![slot(500), slot(800), slot(0)],
        };
        // Left: 500, 200, 1000 (1700). CPU left 4000.
        let task = |cpu, num_gpu, milli, spec: &[&str], p| TypicalTask {
            cpu_milli: cpu,
            gpu_milli: milli,
            num_gpu,
            gpu_spec: spec.iter().map(|s| s.to_string()).collect(),
            p,
        };
        let cases = [
            (task(1000, 1, 300, &[], 1.0), 200.0), // Q3: only the 200 left is too small
            (task(1000, 1, 1000, &[], 1.0), 700.0), // whole GPU: partly used GPUs
            (task(5000, 1, 300, &[], 1.0), 1700.0), // CPU short (Q4): everything
            (task(1000, 2, 1000, &[], 1.0), 1700.0), // GPU short (Q2): everything
            (task(1000, 0, 0, &[], 1.0), 1700.0),  // CPU-only task: everything
            (task(1000, 1, 300, &["V100M16"], 1.0), 1700.0), // model not allowed
            (task(1000, 1, 300, &["T4"], 1.0), 200.0),
        ];
        for (t, expected) in cases {
            assert_eq!(
                node_frag(&node, std::slice::from_ref(&t)),
                expected,
                "{t:?}"
            );
        }
        let mix = [
            task(1000, 1, 300, &[], 0.25),
            task(1000, 1, 1000, &[], 0.75),
        ];
        assert_eq!(node_frag(&node, &mix), 0.25 * 200.0 + 0.75 * 700.0);
    }
}
