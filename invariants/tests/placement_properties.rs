//! Tier 1 property tests of the placement path: generated fleets, existing allocations and
//! sequences of placements, deletions and status changes, driven through
//! `sliceguard_core::decision::filter` and the `Ledger` exactly as a driver would.
//!
//! | property | default sequences |
//! |---|---|
//! | capacity and agreement after every step | 3000 |
//! | scheduler and oracle agree at every placement (plus reasons and protocol) | 3000 |
//! | oversized requests rejected on every node with the exact reason, nothing written | 2500 |
//! | same input, same decision (re-run, registry and ledger rebuilt in reverse order) | 1500 |
//!
//! 10,000 generated sequences in all by default; `PROPTEST_CASES=<n>` runs `n` per property.
//! Failing seeds are saved in `proptest-regressions/<property>.txt` and replay first next time.

use proptest::prelude::*;
use sliceguard_core::decision::{Decision, Outcome, filter};
use sliceguard_core::ledger::{Ledger, Observed};
use sliceguard_invariants::checks::{
    DecisionInput, check_agreement, check_capacity, check_capacity_allowing, check_decision,
    check_no_addition_to_overfull,
};
use sliceguard_invariants::oracle;
use sliceguard_invariants::pods::strategies::pod;
use sliceguard_invariants::pods::{ContainerPlan, PodPlan, ResourceValue};
use sliceguard_invariants::scenario::strategies::scenario;
use sliceguard_invariants::scenario::{Scenario, Step, StepEffect, World, run, start_time};
use sliceguard_invariants::violation::{Invariant, Violation};
use sliceguard_invariants::{ensure, proptest_config, regression_file};

fn run_checked(
    scenario: &Scenario,
    check: impl FnMut(&World, Option<&StepEffect>) -> Vec<Violation>,
) -> Result<World, TestCaseError> {
    run(scenario, check).map_err(|failure| TestCaseError::fail(failure.to_string()))
}

/// Capacity (tolerating only what was over capacity before any decision, as it shrinks), the
/// ledger against the annotations, and no decision adding to an over-full device.
fn capacity_and_agreement(world: &World, effect: Option<&StepEffect>) -> Vec<Violation> {
    let pods = world.live_pods();
    let mut out = check_capacity_allowing(&world.registry, &pods, &world.ledger, &world.overcommit);
    out.extend(check_agreement(&pods, &world.ledger));
    if let Some(StepEffect::Placed {
        pod,
        before,
        decision,
        ..
    }) = effect
    {
        out.extend(check_no_addition_to_overfull(before, pod, decision));
    }
    out
}

proptest! {
    #![proptest_config(proptest_config(3000, regression_file!("capacity_and_agreement")))]

    /// Every capacity invariant holds and the ledger equals the annotations, after every step.
    #[test]
    fn capacity_and_agreement_hold_after_every_step(scenario in scenario(4, 12)) {
        run_checked(&scenario, capacity_and_agreement)?;
    }
}

proptest! {
    #![proptest_config(proptest_config(3000, regression_file!("oracle_agreement")))]

    /// At every placement: the scheduler places a pod on a node only where the oracle finds a
    /// packing, and (for pods with at most one GPU-requesting regular container) rejects a node
    /// only where the oracle finds none; exact reasons; the allocation is valid device by device.
    #[test]
    fn scheduler_and_oracle_agree_at_every_placement(scenario in scenario(4, 12)) {
        run_checked(&scenario, |world, effect| match effect {
            Some(StepEffect::Placed { pod, plan, before, decision, now }) => check_decision(
                DecisionInput { nodes: before, plan, pod, offered: &world.offered, now: *now },
                decision,
            ),
            _ => Vec::new(),
        })?;
    }
}

/// How the final pod of the rejection property exceeds the fleet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Oversize {
    /// Per-GPU memory above every device's free memory.
    Memory,
    /// More GPUs than any node has candidate devices.
    Count,
}

fn oversized_pod(
    world: &World,
    kind: Oversize,
    extra: u32,
    first_is_init: bool,
    template: &PodPlan,
    first: &ContainerPlan,
) -> PodPlan {
    let states = world.node_states();
    let mut big = first.clone();
    match kind {
        Oversize::Memory => {
            let max_free = states
                .iter()
                .flat_map(|n| n.devices.iter())
                .map(|d| u64::from(d.plan.devmem).saturating_sub(d.load.mem))
                .max()
                .unwrap_or(0);
            let mem = (max_free + 1 + u64::from(extra % 100_000)).min(i32::MAX as u64) as u32;
            big.mem = ResourceValue::limit(mem);
            if big.gpu.effective().unwrap_or(0) == 0 {
                big.gpu = ResourceValue::limit(1);
            }
        }
        Oversize::Count => {
            let max_candidates = states
                .iter()
                .map(|n| n.devices.iter().filter(|d| d.is_candidate()).count())
                .max()
                .unwrap_or(0) as u32;
            big.gpu = ResourceValue::limit(max_candidates + 1 + extra % 3);
        }
    }
    let mut plan = template.clone();
    // Only valid annotations: this property is about capacity, not about invalid pods.
    plan.annotations.retain(|k, v| {
        use sliceguard_core::annotations::{DEVICE_SCORING_WEIGHTS, NUMA_BIND};
        !matches!(
            (k.as_str(), v.as_str()),
            (NUMA_BIND, "yes") | (DEVICE_SCORING_WEIGHTS, "slot=1,core=2")
        )
    });
    if first_is_init {
        plan.init.insert(0, big);
    } else {
        plan.init.retain(|c| c.request().is_none());
        plan.app.insert(0, big);
    }
    plan
}

proptest! {
    #![proptest_config(proptest_config(2500, regression_file!("oversized_rejection")))]

    /// A pod whose per-GPU memory exceeds every device's free memory, or whose GPU count exceeds
    /// every node's candidate devices, is rejected on every node with exactly HAMi's reason, and
    /// nothing is written or counted.
    #[test]
    fn oversized_requests_are_rejected_everywhere_with_the_exact_reason(
        scenario in scenario(4, 8),
        kind in prop_oneof![Just(Oversize::Memory), Just(Oversize::Count)],
        extra in any::<u32>(),
        first_is_init in prop::bool::weighted(0.3),
        template in pod(),
        first in sliceguard_invariants::pods::strategies::container(0.9),
    ) {
        let mut world = run_checked(&scenario, |_, _| Vec::new())?;
        let plan = oversized_pod(&world, kind, extra, first_is_init, &template, &first);
        prop_assert!(oracle::selectors(&plan).is_ok(), "the generator made an invalid pod: {:?}", plan);
        let name = world.next_pod_name();
        let pod = plan.to_pod(&name);
        let states = world.node_states();
        let now = start_time();
        let decision = filter(sliceguard_core::decision::Fleet::scanned(&world.registry, &world.ledger), &world.settings, &pod, &world.offered, now);
        let mut violations = Vec::new();
        let fail = |detail: String| Violation::new(Invariant::Rejection, detail).with_pods([format!("default/{name}")]);
        if decision.outcome != Outcome::Unschedulable {
            violations.push(fail(format!("{kind:?}-oversized pod {plan:?}: outcome {:?}", decision.outcome)));
        }
        if !decision.annotations.is_empty() || !decision.labels.is_empty() {
            violations.push(fail(format!("annotations {:?} / labels {:?} written for a rejected pod", decision.annotations, decision.labels)));
        }
        for state in &states {
            let expected = oracle::first_container_rejection(state, &plan);
            let got = decision.verdicts.get(&state.name);
            match (&expected, got) {
                (Some(reason), Some(verdict)) if verdict.reasons().as_ref() == Some(reason) => {}
                _ => violations.push(fail(format!(
                    "{kind:?}: expected reason {expected:?}, got {got:?}; devices {:?}", state.devices
                )).on_node(&state.name)),
            }
        }
        let key = format!("default/{name}");
        let mut written = pod.clone();
        written.metadata.annotations.get_or_insert_with(Default::default).extend(decision.annotations.clone());
        let counted_before = world.ledger.pod_count();
        match world.ledger.observe(&written) {
            Ok(Observed::NotCounted) if world.ledger.pod_count() == counted_before && world.ledger.entry(&key).is_none() => {}
            other => violations.push(fail(format!("the ledger counted a rejected pod: {other:?}"))),
        }
        ensure(&violations)?;
    }
}

fn rebuilt_ledger(world: &World) -> Ledger {
    let mut ledger = Ledger::new();
    for pod in world.pods.values().rev() {
        let _ = ledger.observe(pod);
    }
    ledger
}

proptest! {
    #![proptest_config(proptest_config(1500, regression_file!("determinism")))]

    /// The same input gives the same decision: twice in a row, and with the registry and ledger
    /// rebuilt in reverse order and the offered nodes reversed and repeated.
    #[test]
    fn the_same_input_gives_the_same_decision(scenario in scenario(3, 8)) {
        let mut world = World::new(&scenario).map_err(TestCaseError::fail)?;
        for (i, step) in scenario.steps.iter().enumerate() {
            let now = start_time() + jiff::SignedDuration::from_secs(i as i64);
            if let Step::Place(plan) = step {
                let pod = plan.to_pod(&world.next_pod_name());
                let decide = |registry, ledger: &Ledger, offered: &[String]| -> Decision {
                    filter(sliceguard_core::decision::Fleet::scanned(registry, ledger), &world.settings, &pod, offered, now)
                };
                let first = decide(&world.registry, &world.ledger, &world.offered);
                let again = decide(&world.registry, &world.ledger, &world.offered);
                let registry = world.fleet.registry_in_order(world.fleet.nodes.iter().rev()).map_err(TestCaseError::fail)?;
                let mut offered: Vec<String> = world.offered.iter().rev().cloned().collect();
                offered.extend(world.offered.iter().cloned());
                let rebuilt = decide(&registry, &rebuilt_ledger(&world), &offered);
                prop_assert_eq!(&first, &again, "step {}: a second call decided differently", i);
                prop_assert_eq!(&first, &rebuilt, "step {}: rebuilt registry/ledger decided differently", i);
                let StepEffect::Placed { decision, .. } = world.apply(step, now).map_err(TestCaseError::fail)? else {
                    return Err(TestCaseError::fail("a placement step did not place"));
                };
                prop_assert_eq!(&first, &*decision, "step {}: the world's own call decided differently", i);
            } else {
                world.apply(step, now).map_err(TestCaseError::fail)?;
            }
        }
    }
}

/// The over-full checker can fail, and says what it found: a fleet of one 10,000 MiB device that a
/// pod written by someone else already over-fills (12,000 MiB), and a decision made as if that pod
/// did not exist (a scheduler whose arithmetic forgets the excess) adding 2,000 MiB there. The
/// capacity check tolerates the pre-existing 12,000 MiB but not a MiB more; the decision check
/// names the pod, the device and both amounts.
#[test]
fn an_addition_to_an_overfull_device_is_named_as_such() {
    use sliceguard_invariants::fleet::{DevicePlan, FleetPlan, NodePlan, Registration};
    use sliceguard_invariants::recount::Entry;
    use sliceguard_invariants::scenario::ExistingPod;
    let fleet = FleetPlan {
        nodes: vec![NodePlan {
            name: "n0".into(),
            devices: vec![DevicePlan {
                id: "GPU-n0-0".into(),
                index: 0,
                count: 10,
                devmem: 10_000,
                devcore: 100,
                device_type: "NVIDIA-A100".into(),
                numa: 0,
                mode: "hami-core".into(),
                health: true,
            }],
            cordoned: vec![],
            registration: Registration::Json,
        }],
    };
    let overfull = ExistingPod {
        node: "n0".into(),
        init: vec![],
        app: vec![vec![Entry {
            uuid: "GPU-n0-0".into(),
            backend: "NVIDIA".into(),
            mem: 12_000,
            cores: 0,
        }]],
        raw_annotation: None,
        overfull: true,
    };
    let pod = PodPlan {
        init: vec![],
        app: vec![ContainerPlan::fraction(1, 2_000, 10)],
        annotations: Default::default(),
    };
    let scenario = |existing: Vec<ExistingPod>| Scenario {
        fleet: fleet.clone(),
        existing,
        offer_ghost: false,
        steps: vec![Step::Place(pod.clone())],
    };
    // The real scheduler refuses the device: nothing to report.
    let honest = run(&scenario(vec![overfull.clone()]), capacity_and_agreement);
    assert!(
        honest.is_ok(),
        "{}",
        honest.err().map(|f| f.to_string()).unwrap_or_default()
    );

    // A decision that ignored the excess, judged against the world that has it.
    let mut blind = World::new(&scenario(vec![])).expect("world");
    let Ok(StepEffect::Placed { decision, .. }) =
        blind.apply(&Step::Place(pod.clone()), start_time())
    else {
        panic!("the blind world places the pod");
    };
    let seen = World::new(&scenario(vec![overfull])).expect("world");
    assert_eq!(seen.overcommit.len(), 1, "{:?}", seen.overcommit);
    let found = sliceguard_invariants::checks::check_no_addition_to_overfull(
        &seen.node_states(),
        "default/p1",
        &decision,
    );
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].invariant, Invariant::OverfullDecision);
    let text = found[0].to_string();
    for needle in [
        "default/p1",
        "GPU-n0-0",
        "2000 MiB",
        "12000 MiB",
        "10000 MiB",
        "overfull-decision",
    ] {
        assert!(text.contains(needle), "{needle:?} missing from {text}");
    }
    // And the capacity check lets the excess stand but not a MiB more.
    let mut pods: Vec<k8s_openapi::api::core::v1::Pod> =
        seen.live_pods().into_iter().cloned().collect();
    let mut placed = blind.pods.values().next().cloned().expect("placed pod");
    placed.metadata.name = Some("p1".into());
    pods.push(placed);
    let refs: Vec<&k8s_openapi::api::core::v1::Pod> = pods.iter().collect();
    let capacity = check_capacity_allowing(&seen.registry, &refs, &seen.ledger, &seen.overcommit);
    assert!(
        capacity.iter().any(|v| v.invariant == Invariant::Capacity
            && v.to_string()
                .contains("over-committed before any decision up to 12000")),
        "{capacity:?}"
    );
    let alone: Vec<&k8s_openapi::api::core::v1::Pod> = seen.live_pods();
    assert!(
        check_capacity_allowing(&seen.registry, &alone, &seen.ledger, &seen.overcommit).is_empty()
    );
    assert!(!check_capacity(&seen.registry, &alone, &seen.ledger).is_empty());
}
