//! One decision path: for generated fleets, allocations built up pod by pod, and pods, the three
//! callers of the placement decision decide identically:
//!
//! - **place**: `sliceguard place` (`cli::place::place_all`: the webhook's mutation, then the decision
//!   over a `ClusterView` built from the nodes);
//! - **replay**: the placement-quality replay (`CorePlacer::place_gpu`, its own registry, ledger and
//!   placement index);
//! - **serve**: what `/filter` decides on (`ClusterView::decide` over the view the watches keep; each
//!   placed pod is applied back as the watch would deliver it).
//!
//! Identical means the same outcome, node, devices (the allocation annotations), the verdict of every
//! offered node (score, or HAMi's reason text) and the same event texts. Fleets are either small
//! (1–6 nodes: the scan answers) or large (64–72 nodes: the placement index answers for HAMi's
//! policies), so both siblings behind `decision::decide` are compared, and the run fails if either
//! kind of fleet or either outcome (placed, unschedulable) is rare.
//!
//! The `fragmentation` policy is left out on purpose: its inputs (the learned workload profile and
//! the nodes' CPU) are the replay's alone until `serve` learns them, so its decisions may differ.

use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kind_harness::trace::cluster::Cluster;
use kind_harness::trace::input::{NodeRow, PodRow};
use kind_harness::trace::placer::{
    CorePlacer, FragmentationTuning, Placer, SpecMatch, register_annotations, trace_pod,
};
use proptest::prelude::*;
use proptest::test_runner::{Config, FileFailurePersistence, TestRunner};
use serde_json::{Value, json};
use sliceguard::admission::WebhookSettings;
use sliceguard::cli::place::place_all;
use sliceguard::cluster_view::ClusterView;
use sliceguard::decision::{self, Decision, Outcome, SchedulerSettings, Verdict};
use sliceguard::policy::{GpuPolicy, NodePolicy, PolicyDefaults};
use std::cell::Cell;
use std::collections::BTreeMap;
use std::str::FromStr;

const MODELS: [&str; 3] = ["A10", "V100M32", "T4"];
const SPLIT: u32 = 4;

#[derive(Debug, Clone)]
struct Case {
    nodes: Vec<NodeRow>,
    pods: Vec<PodRow>,
    node_policy: &'static str,
    gpu_policy: &'static str,
    seed: u64,
}

fn node_rows() -> impl Strategy<Value = Vec<NodeRow>> {
    let count = prop_oneof![1 => 1usize..=6, 1 => 64usize..=72];
    count.prop_flat_map(|n| {
        prop::collection::vec((1u32..=4, 0..MODELS.len()), n).prop_map(|specs| {
            specs
                .into_iter()
                .enumerate()
                .map(|(i, (gpus, model))| NodeRow {
                    name: format!("n{i}"),
                    cpu_milli: 64_000,
                    memory_mib: 262_144,
                    gpus,
                    model: MODELS[model].to_string(),
                })
                .collect()
        })
    })
}

fn pod_rows() -> impl Strategy<Value = Vec<PodRow>> {
    let pod = (
        prop_oneof![4 => Just(1u32), 1 => Just(2u32), 1 => Just(3u32)],
        prop_oneof![Just(100u32), Just(250), Just(500), Just(700), Just(1000)],
        prop_oneof![4 => Just(None), 1 => (0..MODELS.len()).prop_map(Some)],
    );
    prop::collection::vec(pod, 1..12).prop_map(|pods| {
        pods.into_iter()
            .enumerate()
            .map(|(i, (num_gpu, milli, spec))| PodRow {
                name: format!("p{i}"),
                cpu_milli: 1000,
                memory_mib: 1024,
                num_gpu,
                // A multi-GPU task takes whole GPUs, as in the trace.
                gpu_milli: if num_gpu > 1 { 1000 } else { milli },
                gpu_spec: spec
                    .map(|m| vec![MODELS[m].to_string()])
                    .unwrap_or_default(),
            })
            .collect()
    })
}

fn cases() -> impl Strategy<Value = Case> {
    (
        node_rows(),
        pod_rows(),
        prop_oneof![Just("binpack"), Just("spread")],
        prop_oneof![Just("binpack"), Just("spread"), Just("mutex")],
        any::<u64>(),
    )
        .prop_map(|(nodes, pods, node_policy, gpu_policy, seed)| Case {
            nodes,
            pods,
            node_policy,
            gpu_policy,
            seed,
        })
}

/// The Node objects of the GPU nodes the replay registers for `cluster`, with the same annotations.
fn node_objects(cluster: &Cluster) -> Vec<Node> {
    cluster
        .nodes
        .iter()
        .filter(|n| !n.gpus.is_empty())
        .map(|n| Node {
            metadata: ObjectMeta {
                name: Some(n.name.clone()),
                annotations: Some(register_annotations(cluster, n)),
                ..Default::default()
            },
            ..Default::default()
        })
        .collect()
}

/// What the three callers are compared on, in `sliceguard place`'s JSON shape (scores rounded to
/// two decimals as it prints them).
fn comparable(decision: &Decision) -> Value {
    let verdicts: serde_json::Map<String, Value> = decision
        .verdicts
        .iter()
        .map(|(node, verdict)| {
            let v = match verdict {
                Verdict::Score(s) => json!({"score": (f64::from(*s) * 100.0).round() / 100.0}),
                Verdict::Rejected(r) => json!({"reasons": r.to_string()}),
            };
            (node.clone(), v)
        })
        .collect();
    json!({
        "node": decision.node(),
        "verdicts": verdicts,
        "events": decision.events.iter().map(|e| json!({"type": e.event_type, "reason": e.reason, "message": e.message})).collect::<Vec<_>>(),
        "annotations": decision.annotations,
    })
}

fn place_comparable(placement: &Value) -> Value {
    json!({
        "node": placement["node"],
        "verdicts": placement["verdicts"],
        "events": placement.get("events").cloned().unwrap_or(json!([])),
        "annotations": placement["annotations"],
    })
}

#[derive(Debug, Default)]
struct Coverage {
    small_fleets: Cell<u32>,
    large_fleets: Cell<u32>,
    placed: Cell<u32>,
    unschedulable: Cell<u32>,
    placed_on_large_fleets: Cell<u32>,
}

fn check(case: &Case, coverage: &Coverage) -> Result<(), TestCaseError> {
    let cluster = Cluster::new(&case.nodes, SPLIT, 110, case.seed);
    let settings = SchedulerSettings {
        policies: PolicyDefaults {
            node: NodePolicy::from_str(case.node_policy).map_err(TestCaseError::fail)?,
            gpu: GpuPolicy::from_str(case.gpu_policy).map_err(TestCaseError::fail)?,
        },
        ..SchedulerSettings::default()
    };
    let mut replay = CorePlacer::new(
        &cluster,
        case.node_policy,
        case.gpu_policy,
        SpecMatch::HamiSubstring,
        None,
        FragmentationTuning::default(),
    )
    .map_err(TestCaseError::fail)?;
    let nodes = node_objects(&cluster);
    let offered_names: Vec<String> = cluster.nodes.iter().map(|n| n.name.clone()).collect();
    let offered_index: Vec<usize> = (0..cluster.nodes.len()).collect();
    let large = offered_names.len() >= decision::INDEX_MIN_OFFERED;
    let counter = if large {
        &coverage.large_fleets
    } else {
        &coverage.small_fleets
    };
    counter.set(counter.get() + 1);

    let now = jiff::Timestamp::UNIX_EPOCH;
    let pods: Vec<Pod> = case
        .pods
        .iter()
        .map(|row| trace_pod(row, &row.name, SpecMatch::HamiSubstring))
        .collect();
    let placed = place_all(
        &nodes,
        &pods,
        &[],
        &settings,
        &WebhookSettings::default(),
        now,
    )
    .map_err(|e| TestCaseError::fail(e.to_string()))?;
    let placed: Vec<Value> = placed
        .iter()
        .map(|p| serde_json::to_value(p).expect("placements serialise"))
        .collect();

    let mut view = ClusterView::new();
    for node in &nodes {
        view.apply_node(node, now)
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
    }
    for (i, (row, pod)) in case.pods.iter().zip(&pods).enumerate() {
        let prepared =
            decision::prepare(pod, &settings).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let served = view.decide(&prepared, &offered_names, now);
        replay
            .place_gpu(&cluster, row, &row.name, &offered_index)
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        let replayed = replay
            .last_decision()
            .ok_or_else(|| TestCaseError::fail("the replay made no decision"))?;
        let serve_view = comparable(&served);
        prop_assert_eq!(
            &serve_view,
            &comparable(replayed),
            "pod {} ({:?}): serve and the replay decided differently",
            i,
            row
        );
        prop_assert_eq!(
            &serve_view,
            &place_comparable(&placed[i]),
            "pod {} ({:?}): serve and place decided differently",
            i,
            row
        );
        match &served.outcome {
            Outcome::Scheduled { node, .. } => {
                coverage.placed.set(coverage.placed.get() + 1);
                if large {
                    coverage
                        .placed_on_large_fleets
                        .set(coverage.placed_on_large_fleets.get() + 1);
                }
                // What the watch delivers after the filter's patch and the binding.
                let mut written = pod.clone();
                written
                    .metadata
                    .annotations
                    .get_or_insert_with(BTreeMap::new)
                    .extend(served.annotations.clone());
                written
                    .metadata
                    .labels
                    .get_or_insert_with(BTreeMap::new)
                    .extend(served.labels.clone());
                if let Some(spec) = written.spec.as_mut() {
                    spec.node_name = Some(node.clone());
                }
                view.apply_pod(&written)
                    .map_err(|e| TestCaseError::fail(e.to_string()))?;
            }
            Outcome::Unschedulable => coverage.unschedulable.set(coverage.unschedulable.get() + 1),
            other => return Err(TestCaseError::fail(format!("unexpected outcome {other:?}"))),
        }
    }
    Ok(())
}

#[test]
fn place_the_replay_and_serve_decide_identically() {
    let case_count: u32 = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(48);
    let mut runner = TestRunner::new(Config {
        cases: case_count,
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../proptest-regressions/kind-harness-one_decision_path.txt"
        )))),
        ..Config::default()
    });
    let coverage = Coverage::default();
    let result = runner.run(&cases(), |case| check(&case, &coverage));
    if let Err(e) = result {
        panic!("{e}");
    }
    let floor = case_count / 6;
    for (what, count) in [
        (
            "small fleets (the scan answers)",
            coverage.small_fleets.get(),
        ),
        (
            "large fleets (the index answers)",
            coverage.large_fleets.get(),
        ),
        ("placed pods", coverage.placed.get()),
        ("unschedulable pods", coverage.unschedulable.get()),
        (
            "pods placed on large fleets",
            coverage.placed_on_large_fleets.get(),
        ),
    ] {
        assert!(
            count >= floor,
            "the generator reached {what} only {count} times in {case_count} cases (at least {floor} wanted)"
        );
    }
}
