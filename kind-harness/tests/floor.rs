//! The floor (`kind_harness::trace::floor`): hand-checked cases where host CPU binds and where
//! shares that no GPU can hold together bind, and on the synthetic trace, a bound no policy beats,
//! seed by seed.

mod common;

use kind_harness::trace::cluster::CpuPlacement;
use kind_harness::trace::floor::floor;
use kind_harness::trace::input::{NodeRow, PodRow};
use kind_harness::trace::metrics::unallocated_curve;
use kind_harness::trace::placer::{PolicySpec, ReferencePolicy, SpecMatch};
use kind_harness::trace::replay::{ReplayConfig, Trace, replay};

fn node(name: &str, gpus: u32, cpu: u64, model: &str) -> NodeRow {
    NodeRow {
        name: name.into(),
        cpu_milli: cpu,
        memory_mib: 1 << 20,
        gpus,
        model: model.into(),
    }
}

fn task(name: &str, num_gpu: u32, gpu_milli: u32, cpu: u64, spec: &[&str]) -> PodRow {
    PodRow {
        name: name.into(),
        cpu_milli: cpu,
        memory_mib: 1024,
        num_gpu,
        gpu_milli,
        gpu_spec: spec.iter().map(|s| s.to_string()).collect(),
    }
}

/// One node of two GPUs and 4 CPUs; half-GPU tasks of 2 CPUs each: CPU lets two of them in, so
/// at least half the GPU stays unallocated whatever the scheduler does. Tasks that no pool may
/// take (a model the fleet lacks, more GPUs than any node has) add nothing.
#[test]
fn host_cpu_and_allowed_models_bound_what_can_be_allocated() {
    let nodes = vec![node("a", 2, 4000, "T4")];
    let mut pods: Vec<PodRow> = (0..4)
        .map(|i| task(&format!("half-{i}"), 1, 500, 2000, &[]))
        .collect();
    let cpu_bound = Trace::new("cpu-bound", nodes.clone(), pods.clone());
    let f = floor(&cpu_bound, 1, 1.0, SpecMatch::Exact, 100).unwrap();
    assert_eq!(f.capacity_milli, 2000);
    assert_eq!(f.arrived_milli, 2000, "all four arrived by 100 %");
    assert!((f.allocatable_milli - 1000.0).abs() < 1e-3, "{f:?}");
    assert!((f.unallocated_percent() - 50.0).abs() < 1e-4);

    // With CPU to spare everything fits: the floor is 0.
    let roomy = Trace::new("roomy", vec![node("a", 2, 16_000, "T4")], pods.clone());
    let f = floor(&roomy, 1, 1.0, SpecMatch::Exact, 100).unwrap();
    assert!(f.unallocated_percent().abs() < 1e-6, "{f:?}");

    // Only tasks no pool can take: nothing can be allocated.
    pods = vec![
        task("elsewhere", 1, 1000, 100, &["A100"]),
        task("too-wide", 4, 1000, 100, &[]),
    ];
    let impossible = Trace::new("impossible", vec![node("a", 2, 16_000, "T4")], pods);
    let f = floor(&impossible, 1, 1.0, SpecMatch::Exact, 100).unwrap();
    assert_eq!(f.allocatable_milli, 0.0);
    assert_eq!(f.unallocated_percent(), 100.0);
}

/// Two GPUs with CPU to spare. Three 0.6-GPU tasks (the fourth is dropped to keep the arrivals
/// within capacity): their 1.8 GPUs fit the GPU total, but no GPU holds two of them, so at most two
/// are allocated and 40 % stays unallocated (the packing cut; without it the floor said 10 %).
/// 0.6 and 0.4 tasks that pair up exactly are not held back: the floor is 0.
#[test]
fn shares_no_gpu_can_hold_together_bound_what_can_be_allocated() {
    let nodes = vec![node("a", 2, 64_000, "T4")];
    let big: Vec<PodRow> = (0..4)
        .map(|i| task(&format!("big-{i}"), 1, 600, 1000, &[]))
        .collect();
    let f = floor(
        &Trace::new("big", nodes.clone(), big),
        1,
        1.0,
        SpecMatch::Exact,
        100,
    )
    .unwrap();
    assert_eq!(f.arrived_milli, 1800, "{f:?}");
    assert!((f.allocatable_milli - 1200.0).abs() < 1e-3, "{f:?}");
    assert!((f.unallocated_percent() - 40.0).abs() < 1e-4);

    let pairs: Vec<PodRow> = (0..4)
        .map(|i| {
            task(
                &format!("pair-{i}"),
                1,
                if i % 2 == 0 { 600 } else { 400 },
                1000,
                &[],
            )
        })
        .collect();
    let f = floor(
        &Trace::new("pairs", nodes, pairs),
        1,
        1.0,
        SpecMatch::Exact,
        100,
    )
    .unwrap();
    assert_eq!(f.arrived_milli, 2000, "{f:?}");
    assert!(f.unallocated_percent().abs() < 1e-6, "{f:?}");
}

/// On the synthetic trace, for every policy and seed, the replay's unallocated GPU at 100 %
/// arrived is never below the floor of that seed (the floor is a bound), and the bound is not
/// vacuous: it is above 0 on some seed and within the policies' range.
#[test]
fn no_policy_beats_the_floor_on_any_seed() {
    let trace = common::trace();
    let capacity = trace.capacity_milli();
    let mut policies: Vec<(PolicySpec, CpuPlacement)> = PolicySpec::hami_pairs()
        .into_iter()
        .map(|p| (p, CpuPlacement::KubeDefault))
        .collect();
    policies.push((PolicySpec::fragmentation(), CpuPlacement::Policy));
    policies.push((
        PolicySpec::Reference {
            policy: ReferencePolicy::Fgd,
        },
        CpuPlacement::Policy,
    ));
    let mut best_gap = f64::INFINITY;
    let mut compared = 0;
    for seed in [1, 2, 3, 4, 5] {
        let config = ReplayConfig::recipe(PolicySpec::fragmentation());
        let f = floor(&trace, seed, config.tune, config.spec_match, 100).unwrap();
        assert!(f.arrived_milli as f64 <= 1.015 * capacity as f64);
        for (policy, cpu) in &policies {
            let config = ReplayConfig {
                cpu_pods: *cpu,
                ..ReplayConfig::recipe(policy.clone())
            };
            let run = replay(&trace, &config, seed, &mut || {}).unwrap();
            // Big tasks can jump over 99–101 %: then the metric has no value here to bound.
            let Some(at_100) = unallocated_curve(&run.events, capacity)[100] else {
                continue;
            };
            compared += 1;
            assert!(
                at_100 >= f.unallocated_percent() - 1e-9,
                "{policy}, seed {seed}: {at_100} below the floor {}",
                f.unallocated_percent()
            );
            best_gap = best_gap.min(at_100 - f.unallocated_percent());
        }
    }
    assert!(compared >= 6, "only {compared} runs had a value at 100 %");
    assert!(
        best_gap < 25.0,
        "the floor is not vacuous: best gap {best_gap}"
    );
}
