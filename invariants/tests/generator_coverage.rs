//! The generators reach the interesting cases: over a fixed-seed sample of generated scenarios, run
//! through the real core, every class below occurs at least `MIN_PER_CLASS` times. A generator
//! change that starves a class fails here, with the table printed.

use proptest::strategy::{Strategy, ValueTree};
use proptest::test_runner::TestRunner;
use sliceguard_core::decision::Outcome;
use sliceguard_invariants::fleet::Registration;
use sliceguard_invariants::oracle::{self, Refusal};
use sliceguard_invariants::scenario::strategies::scenario;
use sliceguard_invariants::scenario::{Step, StepEffect, World, start_time};
use std::collections::BTreeMap;

const SAMPLE: usize = 600;
const MIN_PER_CLASS: usize = 5;

const CLASSES: &[&str] = &[
    "fleet: several nodes",
    "fleet: a node with 8 GPUs",
    "fleet: unhealthy device",
    "fleet: cordoned device",
    "fleet: mig-mode device",
    "fleet: non-NVIDIA device",
    "fleet: devcore other than 100",
    "fleet: split count 1",
    "fleet: NUMA node 1",
    "fleet: legacy text registration",
    "fleet: broken registration",
    "existing: allocations",
    "existing: undecodable allocation",
    "existing: stale device",
    "existing: full device (memory, tasks or exclusive)",
    "existing: device over its registered capacity",
    "pod: multi-GPU container",
    "pod: GPU init container",
    "pod: two GPU init containers",
    "pod: two or more GPU app containers",
    "pod: exclusive request (cores >= 100)",
    "pod: cores 0",
    "pod: cores above 100",
    "pod: memory in percent",
    "pod: whole card (no memory given)",
    "pod: requests only (no limits)",
    "pod: init container larger than every app container",
    "pod: GPU-less app container between GPU ones",
    "pod: memory percent exactly 0",
    "pod: memory percent exactly 100",
    "pod: no GPU request",
    "pod: more GPUs than any node",
    "pod: use-gputype",
    "pod: uuid selector",
    "pod: numa-bind",
    "pod: mutex policy",
    "pod: spread node policy",
    "pod: invalid annotation",
    "pod: selectors exclude every device",
    "step: delete",
    "step: finish init containers",
    "step: finish pod",
    "step: mark terminating",
    "step: same pod (same UID) removed and re-added",
    "outcome: scheduled",
    "outcome: scheduled on a multi-GPU container",
    "outcome: unschedulable",
    "outcome: invalid",
    "outcome: device full after placement",
    "outcome: placed on a node with a device over capacity",
    "reason: CardInsufficientMemory",
    "reason: NodeInsufficientDevice",
    "reason: CardTimeSlicingExhausted",
    "reason: ExclusiveDeviceAllocateConflict",
    "reason: CardInsufficientCore",
    "reason: CardComputeUnitsExhausted",
    "reason: CardTypeMismatch",
    "reason: CardUuidMismatch",
    "reason: CardNotHealth",
    "reason: AllocatedCardsInsufficientRequest",
    "reason: node unregistered",
];

fn device_full(world: &World) -> bool {
    world.node_states().iter().any(|n| {
        n.devices.iter().any(|d| {
            d.load.tasks > 0
                && (d.load.mem >= u64::from(d.plan.devmem)
                    || d.load.tasks >= u64::from(d.plan.count)
                    || (d.plan.devcore == 100 && d.load.cores >= 100))
        })
    })
}

#[test]
fn generators_reach_every_interesting_class() {
    let mut runner = TestRunner::deterministic();
    let strategy = scenario(4, 12);
    let mut counts: BTreeMap<&str, usize> = CLASSES.iter().map(|c| (*c, 0)).collect();
    let mut hit = |class: &'static str, yes: bool| {
        if yes {
            *counts.get_mut(class).expect("listed class") += 1;
        }
    };
    for _ in 0..SAMPLE {
        let scenario = strategy.new_tree(&mut runner).expect("tree").current();
        let fleet = &scenario.fleet;
        let devices = || fleet.nodes.iter().flat_map(|n| n.devices.iter());
        hit("fleet: several nodes", fleet.nodes.len() > 1);
        hit(
            "fleet: a node with 8 GPUs",
            fleet.nodes.iter().any(|n| n.devices.len() == 8),
        );
        hit("fleet: unhealthy device", devices().any(|d| !d.health));
        hit(
            "fleet: cordoned device",
            fleet.nodes.iter().any(|n| !n.cordoned.is_empty()),
        );
        hit("fleet: mig-mode device", devices().any(|d| d.mode == "mig"));
        hit(
            "fleet: non-NVIDIA device",
            devices().any(|d| !d.device_type.to_lowercase().contains("nvidia")),
        );
        hit(
            "fleet: devcore other than 100",
            devices().any(|d| d.devcore != 100),
        );
        hit("fleet: split count 1", devices().any(|d| d.count == 1));
        hit("fleet: NUMA node 1", devices().any(|d| d.numa == 1));
        hit(
            "fleet: legacy text registration",
            fleet
                .nodes
                .iter()
                .any(|n| n.registration == Registration::Text),
        );
        hit(
            "fleet: broken registration",
            fleet
                .nodes
                .iter()
                .any(|n| n.registration == Registration::Broken),
        );
        hit("existing: allocations", !scenario.existing.is_empty());
        hit(
            "existing: undecodable allocation",
            scenario.existing.iter().any(|e| e.raw_annotation.is_some()),
        );
        hit(
            "existing: stale device",
            scenario
                .existing
                .iter()
                .any(|e| e.app.iter().flatten().any(|x| x.uuid.ends_with("-gone"))),
        );

        let mut world = World::new(&scenario).expect("world");
        hit(
            "existing: device over its registered capacity",
            scenario.existing.iter().any(|e| e.overfull) && !world.overcommit.is_empty(),
        );
        hit(
            "existing: full device (memory, tasks or exclusive)",
            device_full(&world),
        );
        let max_candidates = world
            .node_states()
            .iter()
            .map(|n| n.devices.iter().filter(|d| d.is_candidate()).count())
            .max()
            .unwrap_or(0) as u32;
        for (i, step) in scenario.steps.iter().enumerate() {
            match step {
                Step::Place(plan) => {
                    let requests = plan.requests();
                    let gpu = |c: &sliceguard_invariants::pods::ContainerPlan| c.request();
                    hit(
                        "pod: multi-GPU container",
                        requests.iter().flatten().any(|r| r.nums > 1),
                    );
                    hit(
                        "pod: GPU init container",
                        plan.init.iter().any(|c| gpu(c).is_some()),
                    );
                    hit(
                        "pod: two GPU init containers",
                        plan.init.iter().filter(|c| gpu(c).is_some()).count() >= 2,
                    );
                    hit(
                        "pod: two or more GPU app containers",
                        plan.gpu_app_containers() >= 2,
                    );
                    hit(
                        "pod: exclusive request (cores >= 100)",
                        requests.iter().flatten().any(|r| r.cores >= 100),
                    );
                    hit(
                        "pod: cores 0",
                        requests.iter().flatten().any(|r| r.cores == 0),
                    );
                    hit(
                        "pod: cores above 100",
                        requests.iter().flatten().any(|r| r.cores > 100),
                    );
                    hit(
                        "pod: memory in percent",
                        requests
                            .iter()
                            .flatten()
                            .any(|r| r.mem_mib == 0 && r.mem_percent < 100),
                    );
                    hit(
                        "pod: whole card (no memory given)",
                        requests
                            .iter()
                            .flatten()
                            .any(|r| r.mem_mib == 0 && r.mem_percent == 100),
                    );
                    hit(
                        "pod: requests only (no limits)",
                        plan.init
                            .iter()
                            .chain(&plan.app)
                            .any(|c| c.gpu.limit.is_none() && c.gpu.request.is_some()),
                    );
                    hit("pod: no GPU request", !plan.has_gpu_request());
                    let scale = sliceguard_invariants::pods::strategies::LARGE_INIT_SCALE;
                    let peak = |list: &[sliceguard_invariants::pods::ContainerPlan]| {
                        list.iter()
                            .filter_map(|c| c.request())
                            .map(|r| r.mib_on(scale))
                            .max()
                    };
                    hit(
                        "pod: init container larger than every app container",
                        matches!((peak(&plan.init), peak(&plan.app)), (Some(i), Some(a)) if i > a),
                    );
                    hit(
                        "pod: GPU-less app container between GPU ones",
                        plan.app.windows(3).any(|w| {
                            gpu(&w[0]).is_some() && gpu(&w[1]).is_none() && gpu(&w[2]).is_some()
                        }),
                    );
                    let percent = |p: u32| {
                        plan.init
                            .iter()
                            .chain(&plan.app)
                            .any(|c| gpu(c).is_some() && c.pct.effective() == Some(p))
                    };
                    hit("pod: memory percent exactly 0", percent(0));
                    hit("pod: memory percent exactly 100", percent(100));
                    hit(
                        "pod: more GPUs than any node",
                        requests.iter().flatten().any(|r| r.nums > max_candidates),
                    );
                    let a = &plan.annotations;
                    hit(
                        "pod: use-gputype",
                        a.contains_key(sliceguard_core::annotations::USE_GPUTYPE),
                    );
                    hit(
                        "pod: uuid selector",
                        a.contains_key(sliceguard_core::annotations::USE_GPUUUID)
                            || a.contains_key(sliceguard_core::annotations::NOUSE_GPUUUID),
                    );
                    hit(
                        "pod: numa-bind",
                        a.get(sliceguard_core::annotations::NUMA_BIND)
                            .is_some_and(|v| ["true", "1", "TRUE", "t"].contains(&v.as_str())),
                    );
                    hit(
                        "pod: mutex policy",
                        a.get(sliceguard_core::annotations::GPU_SCHEDULER_POLICY)
                            .is_some_and(|v| v.split(',').any(|t| t.trim() == "mutex")),
                    );
                    hit(
                        "pod: spread node policy",
                        a.get(sliceguard_core::annotations::NODE_SCHEDULER_POLICY)
                            .is_some_and(|v| v == "spread"),
                    );
                    let selectors = oracle::selectors(plan);
                    hit("pod: invalid annotation", selectors.is_err());
                    if let Ok(selectors) = &selectors {
                        let excluded = world
                            .node_states()
                            .iter()
                            .flat_map(|n| n.devices.iter())
                            .filter(|d| d.is_candidate())
                            .all(|d| {
                                matches!(
                                    oracle::selector_refusal(&d.plan, selectors),
                                    Some(Refusal::CardTypeMismatch | Refusal::CardUuidMismatch)
                                )
                            });
                        hit(
                            "pod: selectors exclude every device",
                            plan.has_gpu_request() && excluded,
                        );
                    }
                }
                Step::Delete(_) => hit("step: delete", true),
                Step::FinishInit(_) => hit("step: finish init containers", true),
                Step::Finish(_) => hit("step: finish pod", true),
                Step::MarkTerminating(_) => hit("step: mark terminating", true),
                Step::Redeliver(_) => hit("step: same pod (same UID) removed and re-added", true),
            }
            let now = start_time() + jiff::SignedDuration::from_secs(i as i64);
            let effect = world.apply(step, now).expect("step applies");
            if let StepEffect::Placed { decision, plan, .. } = &effect {
                let scheduled = matches!(decision.outcome, Outcome::Scheduled { .. });
                hit("outcome: scheduled", scheduled);
                hit(
                    "outcome: scheduled on a multi-GPU container",
                    scheduled && plan.requests().iter().flatten().any(|r| r.nums > 1),
                );
                hit(
                    "outcome: unschedulable",
                    decision.outcome == Outcome::Unschedulable,
                );
                hit(
                    "outcome: invalid",
                    matches!(decision.outcome, Outcome::Invalid(_)),
                );
                hit(
                    "outcome: device full after placement",
                    scheduled && device_full(&world),
                );
                if let Outcome::Scheduled { node, .. } = &decision.outcome {
                    hit(
                        "outcome: placed on a node with a device over capacity",
                        world.overcommit.keys().any(|(n, _)| n == node),
                    );
                }
                for verdict in decision.verdicts.values() {
                    if let Some(text) = verdict.reasons() {
                        for class in CLASSES.iter().filter(|c| c.starts_with("reason: ")) {
                            let reason = &class["reason: ".len()..];
                            hit(class, text.contains(reason));
                        }
                    }
                }
            }
        }
    }
    let table: String = counts
        .iter()
        .map(|(class, n)| format!("{n:>6}  {class}\n"))
        .collect();
    eprintln!("generated-case classes over {SAMPLE} scenarios:\n{table}");
    let starved: Vec<&str> = counts
        .iter()
        .filter(|(_, n)| **n < MIN_PER_CLASS)
        .map(|(c, _)| *c)
        .collect();
    assert!(
        starved.is_empty(),
        "classes reached fewer than {MIN_PER_CLASS} times: {starved:?}\n{table}"
    );
}
