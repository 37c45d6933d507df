//! The replay on a small synthetic trace: deterministic per seed, every policy runs with its
//! invariants holding, the recipe's arrival model reaches `tune` × capacity, and the fast path
//! (offering the core only the nodes where the GPU part fits) makes exactly the same decisions as
//! offering every node, and `serve`'s decision path (the service's view fed as the watches would,
//! the filter machine) places every pod exactly where the bare core does.

mod common;

use kind_harness::trace::cluster::CpuPlacement;
use kind_harness::trace::metrics::unallocated_curve;
use kind_harness::trace::placer::{PolicySpec, ProfileSource, ReferencePolicy, SpecMatch};
use kind_harness::trace::replay::{DecisionPath, ReplayConfig, ReplayError, replay};

fn policies() -> Vec<(PolicySpec, CpuPlacement)> {
    let mut p: Vec<(PolicySpec, CpuPlacement)> = PolicySpec::hami_pairs()
        .into_iter()
        .map(|s| (s, CpuPlacement::KubeDefault))
        .collect();
    p.push((PolicySpec::fragmentation(), CpuPlacement::Policy));
    p.push((PolicySpec::fragmentation(), CpuPlacement::KubeMostAllocated));
    for policy in [
        ReferencePolicy::BestFit,
        ReferencePolicy::Fgd,
        ReferencePolicy::Random,
    ] {
        p.push((PolicySpec::Reference { policy }, CpuPlacement::Policy));
    }
    p
}

fn config(policy: PolicySpec, cpu_pods: CpuPlacement) -> ReplayConfig {
    ReplayConfig {
        cpu_pods,
        ..ReplayConfig::recipe(policy)
    }
}

#[test]
fn replay_is_deterministic_per_seed() {
    let trace = common::trace();
    for (policy, cpu) in [
        (
            PolicySpec::hami_pairs()[0].clone(),
            CpuPlacement::KubeDefault,
        ),
        (PolicySpec::fragmentation(), CpuPlacement::Policy),
        (
            PolicySpec::Reference {
                policy: ReferencePolicy::Random,
            },
            CpuPlacement::Policy,
        ),
    ] {
        let c = config(policy.clone(), cpu);
        let a = replay(&trace, &c, 7, &mut || {}).unwrap();
        let b = replay(&trace, &c, 7, &mut || {}).unwrap();
        assert_eq!(a.events, b.events, "{policy}");
        assert_eq!(a.digest, b.digest, "{policy}");
        let other = replay(&trace, &c, 8, &mut || {}).unwrap();
        assert_ne!(
            a.digest, other.digest,
            "{policy}: another seed, another run"
        );
    }
}

#[test]
fn every_policy_replays_with_invariants_holding() {
    let trace = common::trace();
    let capacity = trace.capacity_milli();
    for (policy, cpu) in policies() {
        let run = replay(&trace, &config(policy.clone(), cpu), 42, &mut || {})
            .unwrap_or_else(|e| panic!("{policy}: {e}"));
        let last = run.events.last().copied().unwrap();
        // The sequence is resampled to ~130 % of capacity and the cluster ends mostly full.
        assert!(
            last.arrived_milli as f64 >= 1.2 * capacity as f64,
            "{policy}"
        );
        assert!(
            last.arrived_milli as f64 <= 1.3 * capacity as f64,
            "{policy}"
        );
        assert!(last.used_milli <= capacity, "{policy}");
        assert!(
            last.used_milli as f64 >= 0.6 * capacity as f64,
            "{policy}: {last:?}"
        );
        assert_eq!(run.submitted as usize, run.events.len());
        assert!(run.failed() > 0, "{policy}: at 130 % some tasks must fail");
        assert!(run.decisions > 0, "{policy}");
        // Used milli never decreases: nothing is deleted.
        assert!(
            run.events
                .windows(2)
                .all(|w| w[0].used_milli <= w[1].used_milli)
        );
        let curve = unallocated_curve(&run.events, capacity);
        assert!(
            curve[100].is_some_and(|u| (0.0..=40.0).contains(&u)),
            "{policy}: {curve:?}"
        );
    }
}

#[test]
fn fast_path_makes_the_same_decisions() {
    let trace = common::trace();
    for (policy, cpu) in policies().into_iter().take(6) {
        for seed in [1, 2] {
            let fast = config(policy.clone(), cpu);
            let slow = ReplayConfig {
                fast_path: false,
                ..fast.clone()
            };
            let a = replay(&trace, &fast, seed, &mut || {}).unwrap();
            let b = replay(&trace, &slow, seed, &mut || {}).unwrap();
            assert_eq!(a.digest, b.digest, "{policy}, seed {seed}");
            assert_eq!(a.events, b.events, "{policy}, seed {seed}");
            assert!(a.decisions <= b.decisions);
        }
    }
}

#[test]
fn hami_substring_matching_selects_the_same_nodes_in_this_fleet() {
    let trace = common::trace();
    for policy in [
        PolicySpec::hami_pairs()[1].clone(),
        PolicySpec::fragmentation(),
    ] {
        let exact = config(policy.clone(), CpuPlacement::KubeDefault);
        let substring = ReplayConfig {
            spec_match: SpecMatch::HamiSubstring,
            ..exact.clone()
        };
        let a = replay(&trace, &exact, 3, &mut || {}).unwrap();
        let b = replay(&trace, &substring, 3, &mut || {}).unwrap();
        // No model name here is a substring of another, so both select the same nodes; the
        // fragmentation profile differs (it sees the selector only as an annotation), so only the
        // HAMi pair must decide identically.
        if !policy.is_fragmentation() {
            assert_eq!(a.digest, b.digest, "{policy}");
        }
        assert!(b.decisions > 0);
    }
}

#[test]
fn configurations_that_cannot_run_are_errors() {
    let trace = common::trace();
    let hami_cpu = config(PolicySpec::hami_pairs()[0].clone(), CpuPlacement::Policy);
    let e = replay(&trace, &hami_cpu, 1, &mut || {}).unwrap_err();
    assert!(matches!(e, ReplayError::Setup(_)));
    assert!(
        e.to_string().contains("does not place CPU-only pods"),
        "{e}"
    );
}

#[test]
fn the_trace_profile_and_the_learned_profile_both_run() {
    let trace = common::trace();
    let learned = config(PolicySpec::fragmentation(), CpuPlacement::Policy);
    let oracle = ReplayConfig {
        profile: ProfileSource::Trace,
        path: DecisionPath::Core,
        ..learned.clone()
    };
    let on_the_service_path = ReplayConfig {
        path: DecisionPath::Service,
        ..oracle.clone()
    };
    let e = replay(&trace, &on_the_service_path, 5, &mut || {}).unwrap_err();
    assert!(
        matches!(&e, ReplayError::Setup(m) if m.contains("--decision-path core")),
        "serve cannot read the future of the trace: {e}"
    );
    let a = replay(&trace, &learned, 5, &mut || {}).unwrap();
    let b = replay(&trace, &oracle, 5, &mut || {}).unwrap();
    assert_eq!(a.events.len(), b.events.len());
    assert!(a.decisions > 0 && b.decisions > 0);
}

/// The tuning ablations run on the core path; the service path refuses them naming the flags
/// (serve has no setting for them), together with an oracle profile when both are asked.
#[test]
fn the_tuning_ablations_run_on_the_core_path_only() {
    use kind_harness::trace::placer::FragmentationTuning;
    use sliceguard::fragmentation::Weighting;
    let trace = common::trace();
    let tuned = ReplayConfig {
        tuning: FragmentationTuning {
            // The former defaults: sliceguard's own are Some(1.0) and DemandPower(50).
            multi_gpu_score_scale_gpus: Some(4.0),
            weighting: Weighting::Demand,
            ..FragmentationTuning::default()
        },
        path: DecisionPath::Core,
        ..config(PolicySpec::fragmentation(), CpuPlacement::Policy)
    };
    let run = replay(&trace, &tuned, 5, &mut || {}).unwrap();
    assert!(run.decisions > 0);
    let on_the_service_path = ReplayConfig {
        path: DecisionPath::Service,
        ..tuned.clone()
    };
    let e = replay(&trace, &on_the_service_path, 5, &mut || {}).unwrap_err();
    let message = e.to_string();
    for flag in [
        "--multi-gpu-scale",
        "--weighting-exponent",
        "--decision-path core",
    ] {
        assert!(message.contains(flag), "{message}");
    }
    assert!(!message.contains("--profile"), "{message}");
    let both = ReplayConfig {
        profile: ProfileSource::Trace,
        ..on_the_service_path
    };
    let message = replay(&trace, &both, 5, &mut || {})
        .unwrap_err()
        .to_string();
    assert!(
        message.contains("--profile trace") && message.contains("--weighting-exponent"),
        "{message}"
    );
}

#[test]
fn split_count_binding_is_counted() {
    // Tiny tasks only: 50 milli = 5 cores, so up to 20 share a GPU and split 10 would bind.
    let mut pods = common::pods();
    for p in &mut pods {
        p.num_gpu = 1;
        p.gpu_milli = 50;
        p.gpu_spec.clear();
        p.cpu_milli = 100;
        p.memory_mib = 100;
    }
    let trace = kind_harness::trace::replay::Trace::new("tiny", common::nodes(), pods);
    let c = config(
        PolicySpec::hami_pairs()[1].clone(),
        CpuPlacement::KubeDefault,
    );
    let run = replay(&trace, &c, 1, &mut || {}).unwrap();
    assert!(run.grants_beyond_default_split > 0);
    assert_eq!(run.max_tasks_per_gpu, 20);
    let capped = ReplayConfig { split: 10, ..c };
    let run = replay(&trace, &capped, 1, &mut || {}).unwrap();
    assert_eq!(run.grants_beyond_default_split, 0);
    assert_eq!(run.max_tasks_per_gpu, 10);
}

/// The service path (the service's view fed with Node and Pod objects as `serve`'s watches deliver
/// them, host CPU and the learned workload read from that view, the filter machine's learn, take,
/// decide, assume and patch) places every pod where the bare core does (its own registry, ledger
/// and profile, the harness's CPU accounting), CPU-only pods routed to the policy included; the
/// service's view is audited against the cluster mirror (devices and host CPU) after every pod.
#[test]
fn the_service_path_places_every_pod_where_the_bare_core_does() {
    let trace = common::trace();
    let mut compared = 0;
    for (policy, cpu) in policies().into_iter().take(6) {
        for seed in [42, 43] {
            let service = config(policy.clone(), cpu);
            assert_eq!(service.path, DecisionPath::Service, "the recipe's path");
            let core = ReplayConfig {
                path: DecisionPath::Core,
                ..service.clone()
            };
            let a = replay(&trace, &service, seed, &mut || {})
                .unwrap_or_else(|e| panic!("{policy}, seed {seed}, service path: {e}"));
            let b = replay(&trace, &core, seed, &mut || {}).unwrap();
            assert_eq!(a.digest, b.digest, "{policy}, seed {seed}");
            assert_eq!(a.events, b.events, "{policy}, seed {seed}");
            assert_eq!(a.decisions, b.decisions, "{policy}, seed {seed}");
            assert!(a.failed() > 0 && a.decisions > 0);
            compared += 1;
        }
    }
    assert_eq!(
        compared, 12,
        "four HAMi pairs and fragmentation two ways, two seeds each"
    );
}
