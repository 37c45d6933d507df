//! The filter's write-and-assume machine on every answer to its patch, on cancellation, and on the
//! one-minute read that settles a write whose answer was lost. Each test drives the machine over a
//! real [`ClusterView`] (two nodes `n1`, `n2` with one 8000 MiB GPU each, split 10) and ends with an
//! assertion on the ledger.

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::core::v1::Pod;
use sliceguard_core::annotations::{DEVICES_ALLOCATED, VGPU_NODE};
use sliceguard_core::bind::{ApiFailure, Effect, Observation, PodView};
use sliceguard_core::cluster_view::ClusterView;
use sliceguard_core::decision::{EventType, SchedulerSettings, prepare};
use sliceguard_core::filter::{
    FILTERING_FAILED, FilterError, FilterMachine, FilterOutcome, FilterRequest, FilterStep,
    FilterVerdict, UNCONFIRMED_SETTLE_AFTER,
};
use sliceguard_core::ledger::{LedgerEntry, UsageSource};
use sliceguard_core::model::DeviceUsage;
use sliceguard_core::objects::{FleetSpec, GpuAsk, fleet_devices, gpu_node, gpu_pod};
use std::collections::BTreeMap;

const T0: &str = "2025-06-01T12:00:00Z";

fn t0() -> Timestamp {
    T0.parse().unwrap()
}

fn at(secs: i64) -> Timestamp {
    t0() + SignedDuration::from_secs(secs)
}

/// A synced view of nodes `n1` and `n2`, one 8000 MiB GPU each (`GPU-n1-0`, `GPU-n2-0`).
fn fleet_view() -> ClusterView {
    let spec = FleetSpec {
        gpus_per_node: 1,
        memory_mib: 8000,
        ..FleetSpec::default()
    };
    let nodes: Vec<_> = ["n1", "n2"]
        .iter()
        .map(|n| gpu_node(n, &fleet_devices(n, &spec), t0()))
        .collect();
    let mut view = ClusterView::new();
    view.replace_nodes(&nodes, t0());
    view.replace_pods(&[]);
    view
}

/// Pod `default/<name>` (uid `uid-<name>`) asking one GPU with `memory` MiB and `cores` percent.
fn pod(name: &str, memory: u32, cores: u32) -> Pod {
    let mut pod = gpu_pod(name, &[], &[GpuAsk::fraction(memory, cores)]);
    pod.metadata.uid = Some(format!("uid-{name}"));
    pod
}

/// A filter of `pod` over the `offered` nodes.
fn machine(pod: &Pod, offered: &[&str]) -> FilterMachine {
    let prepared = prepare(pod, &SchedulerSettings::default()).unwrap();
    let request = FilterRequest {
        namespace: "default".into(),
        name: pod.metadata.name.clone().unwrap(),
        uid: pod.metadata.uid.clone().unwrap_or_default(),
        offered: offered.iter().map(|n| n.to_string()).collect(),
    };
    FilterMachine::new(request, prepared)
}

/// Drives the machine to its end, answering every effect with `answer`; returns the outcome and
/// the effects in order.
fn run(
    machine: &mut FilterMachine,
    view: &mut ClusterView,
    now: Timestamp,
    mut answer: impl FnMut(&Effect, &mut ClusterView) -> Observation,
) -> (FilterOutcome, Vec<Effect>) {
    let mut effects = Vec::new();
    let mut step = machine.start(view, now);
    loop {
        match step {
            FilterStep::Do(effect) => {
                let observation = answer(&effect, view);
                effects.push(effect);
                step = machine.observe(view, observation, now);
            }
            FilterStep::Done(outcome) => return (outcome, effects),
        }
    }
}

fn written() -> Observation {
    Observation::Written {
        resource_version: Some("7".into()),
    }
}

fn lost() -> Observation {
    Observation::Failed(ApiFailure::Indeterminate("injected lost response".into()))
}

/// The annotations and labels of a pod patch.
fn patch_of(effect: &Effect) -> (BTreeMap<String, String>, BTreeMap<String, String>) {
    match effect {
        Effect::PatchPodMetadata {
            annotations,
            labels,
            ..
        } => (annotations.clone(), labels.clone()),
        other => panic!("not a pod patch: {other:?}"),
    }
}

/// `pod` as the watch shows it after `effect` landed on it.
fn patched(pod: &Pod, effect: &Effect) -> Pod {
    let (annotations, labels) = patch_of(effect);
    let mut pod = pod.clone();
    pod.metadata
        .annotations
        .get_or_insert_with(BTreeMap::new)
        .extend(annotations);
    pod.metadata
        .labels
        .get_or_insert_with(BTreeMap::new)
        .extend(labels);
    pod
}

/// Places `pod` on one of `offered` (the patch succeeds) and lets the watch confirm it; returns the
/// pod as the API holds it.
fn place(view: &mut ClusterView, pod: &Pod, offered: &[&str]) -> Pod {
    let mut m = machine(pod, offered);
    let (outcome, effects) = run(&mut m, view, t0(), |_, _| written());
    assert!(
        matches!(outcome.verdict, FilterVerdict::Placed { .. }),
        "{outcome:?}"
    );
    let on_api = patched(pod, effects.last().unwrap());
    view.apply_pod(&on_api).unwrap();
    assert!(!view.is_assumed(&format!(
        "default/{}",
        pod.metadata.name.as_deref().unwrap()
    )));
    on_api
}

fn usage(view: &ClusterView, node: &str) -> DeviceUsage {
    view.ledger().device_usage(node, &format!("GPU-{node}-0"))
}

fn used(tasks: u64, memory: u64, cores: u64) -> DeviceUsage {
    DeviceUsage {
        used: tasks,
        usedmem: memory,
        usedcores: cores,
    }
}

/// Every ledger entry, by key.
fn entries(view: &ClusterView) -> BTreeMap<String, LedgerEntry> {
    view.ledger()
        .entries()
        .map(|(k, e)| (k.to_string(), e.clone()))
        .collect()
}

/// The ledger keys of the pod's unconfirmed writes.
fn unconfirmed(view: &ClusterView, key: &str) -> Vec<String> {
    let prefix = format!("{key}#unconfirmed-");
    entries(view)
        .into_keys()
        .filter(|k| k.starts_with(&prefix))
        .collect()
}

fn error_of(outcome: &FilterOutcome) -> &FilterError {
    match &outcome.verdict {
        FilterVerdict::Failed(error) => error,
        other => panic!("not a failure: {other:?}"),
    }
}

#[test]
fn a_written_patch_places_the_pod_and_keeps_the_assumption() {
    let mut view = fleet_view();
    let p = pod("p", 1000, 20);
    let mut m = machine(&p, &["n1", "n2"]);
    let (outcome, effects) = run(&mut m, &mut view, t0(), |_, _| written());
    assert_eq!(outcome.verdict, FilterVerdict::Placed { node: "n1".into() });
    assert_eq!(outcome.events.len(), 1);
    assert_eq!(outcome.events[0].reason, "FilteringSucceed");
    assert_eq!(outcome.verdict.label(), "scheduled");
    // One write: the decision's annotations and label, with the pod's uid as precondition.
    let kinds: Vec<&str> = effects.iter().map(Effect::kind).collect();
    assert_eq!(kinds, ["patch-pod-metadata"]);
    let body = effects[0].merge_patch().unwrap();
    assert_eq!(body["metadata"]["uid"], "uid-p");
    assert_eq!(body["metadata"]["labels"][VGPU_NODE], "n1");
    assert_eq!(body["metadata"]["annotations"][VGPU_NODE], "n1");
    assert_eq!(
        body["metadata"]["annotations"][DEVICES_ALLOCATED],
        "GPU-n1-0,NVIDIA,1000,20:;"
    );
    assert!(m.is_finished());
    // Assumed before the watch shows the pod; the watch then confirms it, counted once.
    assert!(view.is_assumed("default/p"));
    assert_eq!(usage(&view, "n1"), used(1, 1000, 20));
    view.apply_pod(&patched(&p, &effects[0])).unwrap();
    assert!(!view.is_assumed("default/p"));
    assert_eq!(usage(&view, "n1"), used(1, 1000, 20));
    assert_eq!(view.ledger().pod_count(), 1);
}

#[test]
fn the_patch_carries_no_uid_when_the_pod_has_none() {
    let mut view = fleet_view();
    let mut p = pod("p", 1000, 20);
    p.metadata.uid = None;
    let mut m = machine(&p, &["n1"]);
    let step = m.start(&mut view, t0());
    let FilterStep::Do(effect) = step else {
        panic!("{step:?}")
    };
    let body = effect.merge_patch().unwrap();
    assert!(body["metadata"].get("uid").is_none(), "{body}");
    assert_eq!(body["metadata"]["labels"][VGPU_NODE], "n1");
    m.cancel(&mut view);
    assert_eq!(view.ledger().pod_count(), 1, "the patch may have landed");
}

#[test]
fn a_409_conflict_undoes_the_assumption_and_counts_nothing() {
    let mut view = fleet_view();
    let p = pod("p", 1000, 20);
    let mut m = machine(&p, &["n1", "n2"]);
    let (outcome, _) = run(&mut m, &mut view, t0(), |_, _| {
        Observation::Failed(ApiFailure::Conflict("pod changed".into()))
    });
    assert_eq!(
        error_of(&outcome).to_string(),
        "failed to patch pod default/p: conflict: pod changed"
    );
    assert_eq!(outcome.verdict.label(), "error");
    assert_eq!(outcome.events.len(), 1);
    assert_eq!(outcome.events[0].event_type, EventType::Warning);
    assert_eq!(outcome.events[0].reason, FILTERING_FAILED);
    assert!(!view.is_assumed("default/p"));
    assert_eq!(usage(&view, "n1"), DeviceUsage::default());
    assert_eq!(view.ledger().pod_count(), 0);
}

#[test]
fn a_422_for_a_re_created_pod_undoes_the_assumption_and_counts_nothing() {
    let mut view = fleet_view();
    let p = pod("p", 1000, 20);
    let mut m = machine(&p, &["n1"]);
    let (outcome, _) = run(&mut m, &mut view, t0(), |_, _| {
        Observation::Failed(ApiFailure::Rejected {
            code: 422,
            message: "metadata.uid: field is immutable".into(),
        })
    });
    assert!(matches!(
        error_of(&outcome),
        FilterError::PatchFailed {
            failure: ApiFailure::Rejected { code: 422, .. },
            ..
        }
    ));
    assert_eq!(view.ledger().pod_count(), 0);
    assert_eq!(usage(&view, "n1"), DeviceUsage::default());
}

#[test]
fn a_5xx_counts_the_write_as_unconfirmed() {
    let mut view = fleet_view();
    let p = pod("p", 1000, 20);
    let mut m = machine(&p, &["n1", "n2"]);
    let (outcome, _) = run(&mut m, &mut view, t0(), |_, _| {
        Observation::Failed(ApiFailure::Indeterminate(
            "500 Internal Server Error".into(),
        ))
    });
    assert_eq!(
        error_of(&outcome).to_string(),
        "failed to patch pod default/p: no definite answer: 500 Internal Server Error"
    );
    assert!(!view.is_assumed("default/p"));
    assert!(view.ledger().entry("default/p").is_none());
    let keys = unconfirmed(&view, "default/p");
    assert_eq!(keys.len(), 1);
    assert_eq!(view.ledger().entry(&keys[0]).unwrap().node.as_ref(), "n1");
    // Counted once, as the write that may have landed.
    assert_eq!(usage(&view, "n1"), used(1, 1000, 20));
    let settle = view.unconfirmed_older_than(SignedDuration::ZERO, t0());
    assert_eq!(settle.len(), 1);
    assert_eq!(settle[0].1.since, t0());
    assert_eq!(settle[0].1.allocated, "GPU-n1-0,NVIDIA,1000,20:;");
}

#[test]
fn a_lost_answer_after_the_write_landed_is_settled_by_the_watch_and_counted_once() {
    let mut view = fleet_view();
    let p = pod("p", 1000, 20);
    let mut m = machine(&p, &["n1", "n2"]);
    let (outcome, effects) = run(&mut m, &mut view, t0(), |_, _| lost());
    assert!(matches!(
        error_of(&outcome),
        FilterError::PatchFailed {
            failure: ApiFailure::Indeterminate(_),
            ..
        }
    ));
    assert_eq!(unconfirmed(&view, "default/p").len(), 1);
    assert_eq!(usage(&view, "n1"), used(1, 1000, 20));
    // The watch delivers the pod carrying the write: it becomes the pod's own usage, once.
    view.apply_pod(&patched(&p, &effects[0])).unwrap();
    assert!(unconfirmed(&view, "default/p").is_empty());
    assert_eq!(
        view.ledger().entry("default/p").unwrap().node.as_ref(),
        "n1"
    );
    assert_eq!(usage(&view, "n1"), used(1, 1000, 20));
    assert_eq!(view.ledger().pod_count(), 1);
}

#[test]
fn a_lost_answer_on_a_re_filter_of_an_assumed_pod_is_settled_by_the_watch_and_counted_once() {
    let mut view = fleet_view();
    let p = pod("p", 8000, 100);
    // First filter: placed on n1 and assumed; the watch has not shown the patched pod yet.
    let mut first = machine(&p, &["n1"]);
    let (outcome, first_effects) = run(&mut first, &mut view, t0(), |_, _| written());
    assert_eq!(outcome.verdict, FilterVerdict::Placed { node: "n1".into() });
    assert!(view.is_assumed("default/p"));
    // kube-scheduler filters it again, offering n2: the patch lands but its answer is lost.
    let mut second = machine(&p, &["n2"]);
    let (_, second_effects) = run(&mut second, &mut view, at(1), |_, _| lost());
    // Either write may be the one on the API: both count.
    assert_eq!(usage(&view, "n1"), used(1, 8000, 100));
    assert_eq!(usage(&view, "n2"), used(1, 8000, 100));
    // The watch (here a re-list after a disconnect) shows the pod carrying the second write: the pod
    // holds n2 only.
    let on_api = patched(&patched(&p, &first_effects[0]), &second_effects[0]);
    view.replace_pods(&[on_api]);
    assert!(unconfirmed(&view, "default/p").is_empty());
    assert!(!view.is_assumed("default/p"));
    assert_eq!(
        view.ledger().entry("default/p").unwrap().node.as_ref(),
        "n2"
    );
    assert_eq!(usage(&view, "n2"), used(1, 8000, 100));
    assert_eq!(usage(&view, "n1"), DeviceUsage::default());
}

#[test]
fn a_refused_re_filter_restores_the_previous_allocation() {
    let mut view = fleet_view();
    let p = place(&mut view, &pod("p", 8000, 100), &["n1"]);
    let before = entries(&view);
    // Filtered again (say, its bind failed), offered n2: the patch is refused.
    let mut m = machine(&p, &["n2"]);
    let (outcome, effects) = run(&mut m, &mut view, at(1), |_, _| {
        Observation::Failed(ApiFailure::Conflict("pod changed".into()))
    });
    assert_eq!(patch_of(&effects[0]).0[VGPU_NODE], "n2");
    assert!(matches!(outcome.verdict, FilterVerdict::Failed(_)));
    // The API still carries the n1 allocation: it counts again, and nothing counts on n2.
    assert_eq!(entries(&view), before);
    assert_eq!(usage(&view, "n1"), used(1, 8000, 100));
    assert_eq!(usage(&view, "n2"), DeviceUsage::default());
}

#[test]
fn an_unschedulable_re_filter_restores_the_previous_allocation_and_writes_nothing() {
    let mut view = fleet_view();
    let p = place(&mut view, &pod("p", 8000, 100), &["n1"]);
    place(&mut view, &pod("q", 8000, 100), &["n2"]);
    let before = entries(&view);
    let mut m = machine(&p, &["n2"]);
    let (outcome, effects) = run(&mut m, &mut view, at(1), |e, _| panic!("no effect: {e:?}"));
    assert!(effects.is_empty());
    let FilterVerdict::Unschedulable { failed_nodes } = &outcome.verdict else {
        panic!("{outcome:?}")
    };
    assert_eq!(failed_nodes.keys().collect::<Vec<_>>(), ["n2"]);
    assert_eq!(outcome.events[0].reason, FILTERING_FAILED);
    assert_eq!(entries(&view), before);
}

#[test]
fn cancelled_before_the_patch_was_handed_out_leaves_the_view_as_it_was() {
    let mut view = fleet_view();
    // The pod holds n1 from an earlier filter.
    let p = place(&mut view, &pod("p", 1000, 20), &["n1"]);
    // Another pod's write was lost two minutes ago: the filter starts by reading that pod.
    let q = pod("q", 1000, 20);
    let mut lost_q = machine(&q, &["n2"]);
    run(&mut lost_q, &mut view, at(-120), |_, _| lost());
    let before = entries(&view);
    assert_eq!(before.len(), 2);

    // Cancelled before it even started.
    let mut m = machine(&p, &["n1", "n2"]);
    m.cancel(&mut view);
    assert_eq!(entries(&view), before);

    // Cancelled during the settle read, before the decision and the patch.
    let mut m = machine(&p, &["n1", "n2"]);
    let step = m.start(&mut view, t0());
    assert_eq!(
        step,
        FilterStep::Do(Effect::GetPod {
            namespace: "default".into(),
            name: "q".into()
        })
    );
    m.cancel(&mut view);
    assert!(m.is_finished());
    assert_eq!(entries(&view), before);
    assert!(!view.is_assumed("default/p"));
    assert_eq!(usage(&view, "n1"), used(1, 1000, 20));
    assert_eq!(unconfirmed(&view, "default/q").len(), 1);
    // The machine is over: a late answer changes nothing.
    let late = m.observe(&mut view, Observation::Pod(PodView::default()), t0());
    assert!(matches!(
        late,
        FilterStep::Done(FilterOutcome {
            verdict: FilterVerdict::Failed(FilterError::Cancelled { .. }),
            ..
        })
    ));
    assert_eq!(entries(&view), before);
}

#[test]
fn cancelled_after_the_patch_was_handed_out_counts_the_write_as_unconfirmed() {
    let mut view = fleet_view();
    let p = place(&mut view, &pod("p", 8000, 100), &["n1"]);
    let mut m = machine(&p, &["n2"]);
    let step = m.start(&mut view, at(5));
    let FilterStep::Do(effect) = step else {
        panic!("{step:?}")
    };
    assert_eq!(effect.kind(), "patch-pod-metadata");
    m.cancel(&mut view);
    // The previous allocation is back (the patch may not have landed) and the new write counts as
    // unconfirmed (it may have): not as a confirmed assumption, and not lost.
    assert!(!view.is_assumed("default/p"));
    assert_eq!(
        view.ledger().entry("default/p").unwrap().node.as_ref(),
        "n1"
    );
    let keys = unconfirmed(&view, "default/p");
    assert_eq!(keys.len(), 1);
    assert_eq!(view.ledger().entry(&keys[0]).unwrap().node.as_ref(), "n2");
    assert_eq!(usage(&view, "n1"), used(1, 8000, 100));
    assert_eq!(usage(&view, "n2"), used(1, 8000, 100));
    let settle = view.unconfirmed_older_than(SignedDuration::ZERO, at(5));
    assert_eq!(
        settle[0].1.since,
        at(5),
        "counted from when the patch was sent"
    );
    // A second cancel and a late answer change nothing.
    let after = entries(&view);
    m.cancel(&mut view);
    let late = m.observe(&mut view, written(), at(6));
    assert!(matches!(late, FilterStep::Done(_)));
    assert_eq!(entries(&view), after);
}

#[test]
fn cancel_after_the_outcome_changes_nothing() {
    let mut view = fleet_view();
    let p = pod("p", 1000, 20);
    let mut m = machine(&p, &["n1"]);
    let (outcome, _) = run(&mut m, &mut view, t0(), |_, _| written());
    let after = entries(&view);
    m.cancel(&mut view);
    assert_eq!(entries(&view), after);
    assert!(view.is_assumed("default/p"));
    // The machine still answers with its outcome.
    let again = m.observe(&mut view, written(), t0());
    assert_eq!(again, FilterStep::Done(outcome));
}

/// A lost write of pod `a` on n1 at T0 (it did not land), and the pod as the API holds it.
fn view_with_lost_write() -> (ClusterView, Pod, String) {
    let mut view = fleet_view();
    let a = pod("a", 8000, 100);
    let mut m = machine(&a, &["n1"]);
    let (_, effects) = run(&mut m, &mut view, t0(), |_, _| lost());
    let allocated = patch_of(&effects[0]).0[DEVICES_ALLOCATED].clone();
    assert_eq!(unconfirmed(&view, "default/a").len(), 1);
    (view, a, allocated)
}

/// Filters pod `b` (the whole n1 GPU) at `now`, answering the settle read of pod `a` with `read`;
/// returns the effects.
fn filter_b(view: &mut ClusterView, now: Timestamp, read: Observation) -> Vec<Effect> {
    let b = pod("b", 8000, 100);
    let mut m = machine(&b, &["n1"]);
    let (_, effects) = run(&mut m, view, now, |effect, _| match effect {
        Effect::GetPod { .. } => read.clone(),
        _ => written(),
    });
    effects
}

#[test]
fn no_settle_read_before_a_minute() {
    let (mut view, _, _) = view_with_lost_write();
    let effects = filter_b(&mut view, at(59), Observation::Pod(PodView::default()));
    // No read: the write could still land. It holds n1, so b does not fit and nothing is written.
    assert!(effects.is_empty(), "{effects:?}");
    assert_eq!(unconfirmed(&view, "default/a").len(), 1);
    assert_eq!(usage(&view, "n1"), used(1, 8000, 100));
}

#[test]
fn the_settle_read_drops_a_write_that_did_not_land() {
    let (mut view, _, _) = view_with_lost_write();
    let seconds = UNCONFIRMED_SETTLE_AFTER.as_secs();
    let effects = filter_b(&mut view, at(seconds), Observation::Pod(PodView::default()));
    let kinds: Vec<&str> = effects.iter().map(Effect::kind).collect();
    assert_eq!(kinds, ["get-pod", "patch-pod-metadata"]);
    assert_eq!(
        effects[0],
        Effect::GetPod {
            namespace: "default".into(),
            name: "a".into()
        }
    );
    // a's write is gone; b holds n1 instead.
    assert!(unconfirmed(&view, "default/a").is_empty());
    assert_eq!(
        view.ledger().entry("default/b").unwrap().node.as_ref(),
        "n1"
    );
    assert_eq!(usage(&view, "n1"), used(1, 8000, 100));
}

#[test]
fn the_settle_read_drops_the_write_of_a_deleted_pod() {
    let (mut view, _, _) = view_with_lost_write();
    let effects = filter_b(&mut view, at(60), Observation::Failed(ApiFailure::NotFound));
    assert_eq!(effects.len(), 2);
    assert!(unconfirmed(&view, "default/a").is_empty());
    assert_eq!(usage(&view, "n1"), used(1, 8000, 100));
    assert_eq!(view.ledger().pod_count(), 1);
}

#[test]
fn the_settle_read_keeps_a_write_that_landed() {
    let (mut view, _, allocated) = view_with_lost_write();
    let read = Observation::Pod(PodView {
        uid: "uid-a".into(),
        devices_allocated: Some(allocated),
        ..Default::default()
    });
    let effects = filter_b(&mut view, at(60), read);
    // Kept until the watch delivers it: n1 stays taken, b is not placed.
    let kinds: Vec<&str> = effects.iter().map(Effect::kind).collect();
    assert_eq!(kinds, ["get-pod"]);
    assert_eq!(unconfirmed(&view, "default/a").len(), 1);
    assert!(view.ledger().entry("default/b").is_none());
    assert_eq!(usage(&view, "n1"), used(1, 8000, 100));
}

#[test]
fn a_failed_settle_read_keeps_the_write() {
    let (mut view, _, _) = view_with_lost_write();
    let effects = filter_b(
        &mut view,
        at(60),
        Observation::Failed(ApiFailure::Indeterminate("timeout".into())),
    );
    assert_eq!(effects.len(), 1);
    assert_eq!(unconfirmed(&view, "default/a").len(), 1);
    assert!(view.ledger().entry("default/b").is_none());
    assert_eq!(usage(&view, "n1"), used(1, 8000, 100));
}

#[test]
fn one_read_settles_every_due_write_of_a_pod() {
    let mut view = fleet_view();
    let a = pod("a", 8000, 100);
    for node in ["n1", "n2"] {
        let mut m = machine(&a, &[node]);
        run(&mut m, &mut view, t0(), |_, _| lost());
    }
    assert_eq!(unconfirmed(&view, "default/a").len(), 2);
    let effects = filter_b(&mut view, at(61), Observation::Pod(PodView::default()));
    let kinds: Vec<&str> = effects.iter().map(Effect::kind).collect();
    assert_eq!(kinds, ["get-pod", "patch-pod-metadata"]);
    assert!(unconfirmed(&view, "default/a").is_empty());
    assert_eq!(usage(&view, "n2"), DeviceUsage::default());
    assert_eq!(usage(&view, "n1"), used(1, 8000, 100));
}

#[test]
fn each_pod_with_due_writes_gets_its_own_read() {
    let mut view = fleet_view();
    for (name, node) in [("a", "n1"), ("c", "n2")] {
        let p = pod(name, 8000, 100);
        let mut m = machine(&p, &[node]);
        run(&mut m, &mut view, t0(), |_, _| lost());
    }
    let effects = filter_b(&mut view, at(61), Observation::Pod(PodView::default()));
    let reads: Vec<&Effect> = effects.iter().filter(|e| e.kind() == "get-pod").collect();
    assert_eq!(
        reads,
        [
            &Effect::GetPod {
                namespace: "default".into(),
                name: "a".into()
            },
            &Effect::GetPod {
                namespace: "default".into(),
                name: "c".into()
            }
        ]
    );
    assert!(unconfirmed(&view, "default/a").is_empty());
    assert!(unconfirmed(&view, "default/c").is_empty());
}

#[test]
fn a_pod_without_a_gpu_request_passes_with_no_events_and_no_write() {
    let mut view = fleet_view();
    let plain = gpu_pod("plain", &[], &[GpuAsk::default()]);
    let mut m = machine(&plain, &["n1", "n2"]);
    assert!(!m.is_finished());
    let (outcome, effects) = run(&mut m, &mut view, t0(), |_, _| written());
    assert!(m.is_finished());
    assert_eq!(outcome.verdict, FilterVerdict::NoGpuRequest);
    assert!(outcome.events.is_empty(), "{:?}", outcome.events);
    assert!(effects.is_empty(), "{effects:?}");
    assert_eq!(view.ledger().pod_count(), 0);
}
