//! Placement sequences driven through the real core, exactly as a driver would: for each new pod,
//! `sliceguard_core::decision::filter` over every offered node, the returned annotations and labels
//! applied to the pod, the pod fed to `Ledger::observe`; deletions through `Ledger::forget`; status
//! changes (init containers done, pod finished, pod terminating) through `Ledger::observe` again.
//!
//! A [`Scenario`] is a fleet, the allocations already on it (pods written by this crate's own
//! encoder, some undecodable, some naming devices the node no longer has), and a list of
//! [`Step`]s. [`World`] holds the state; [`run`] executes the steps and calls a checker after each,
//! stopping at the first step with violations and returning the trace up to it.

use crate::checks::{Overcommit, overcommitted, relax_overcommit};
use crate::fleet::FleetPlan;
use crate::oracle::{self, NodeState};
use crate::pods::PodPlan;
use crate::recount::{self, Entry};
use crate::violation::{Invariant, Violation, report};
use k8s_openapi::api::core::v1::{
    Container, ContainerState, ContainerStateTerminated, ContainerStatus, Pod, PodSpec, PodStatus,
    ResourceRequirements,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use sliceguard_core::annotations::{
    DEVICES_ALLOCATED, DEVICES_TO_ALLOCATE, RESOURCE_GPU, VGPU_NODE,
};
use sliceguard_core::decision::{Decision, Outcome, SchedulerSettings, filter};
use sliceguard_core::ledger::{Ledger, Observed, UsageSource as _};
use sliceguard_core::registry::Registry;
use std::collections::BTreeMap;
use std::fmt;

/// A node name no fleet has, offered to the filter when a scenario asks for it.
pub const GHOST_NODE: &str = "ghost";

/// Allocation annotations that do not decode (the ledger must leave such pods out).
pub const UNDECODABLE_ALLOCATIONS: [&str; 4] = [
    "GPU-n0-0,NVIDIA,abc,10:;",
    "GPU-n0-0,NVIDIA,-5,10:;",
    "GPU-n0-0,NVIDIA,99999999999,10:;",
    "GPU-n0-0,NVIDIA,5:;",
];

/// A pod already holding devices when the scenario starts, as an annotation this crate wrote.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct ExistingPod {
    /// Node it is annotated with (`hami.io/vgpu-node`).
    pub node: String,
    /// Devices per init container.
    pub init: Vec<Vec<Entry>>,
    /// Devices per regular container.
    pub app: Vec<Vec<Entry>>,
    /// When set, the annotation written instead (an undecodable value).
    pub raw_annotation: Option<&'static str>,
    /// The allocation puts its device over the registered capacity (as after a node re-registered
    /// with less memory, or an allocation someone else wrote): a pre-existing over-commit, which
    /// the world tolerates ([`World::overcommit`]) and no decision may add to.
    pub overfull: bool,
}

impl fmt::Debug for ExistingPod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.raw_annotation {
            Some(raw) => write!(f, "{}: raw {raw:?}", self.node),
            None if self.overfull => write!(
                f,
                "{} (over capacity): {}",
                self.node,
                recount::encode(&self.app)
            ),
            None => {
                let mut containers = self.init.clone();
                containers.extend(self.app.iter().cloned());
                write!(
                    f,
                    "{} ({} init): {}",
                    self.node,
                    self.init.len(),
                    recount::encode(&containers)
                )
            }
        }
    }
}

impl ExistingPod {
    /// The pod object `default/<name>`, annotated as if the scheduler had placed it.
    pub fn to_pod(&self, name: &str) -> Pod {
        let mut containers = self.init.clone();
        containers.extend(self.app.iter().cloned());
        let value = self
            .raw_annotation
            .map_or_else(|| recount::encode(&containers), str::to_string);
        // Each container asks for as many GPUs as it holds (at least one): only a pod that
        // requests GPUs may hold an allocation (`sliceguard_core::request::requests_gpu`).
        let named = |prefix: &str, held: &[Vec<Entry>], n: usize| -> Vec<Container> {
            (0..n)
                .map(|i| {
                    let gpus = held.get(i).map_or(0, Vec::len).max(1);
                    Container {
                        name: format!("{prefix}-{i}"),
                        resources: Some(ResourceRequirements {
                            limits: Some(BTreeMap::from([(
                                RESOURCE_GPU.to_string(),
                                Quantity(gpus.to_string()),
                            )])),
                            ..Default::default()
                        }),
                        ..Default::default()
                    }
                })
                .collect()
        };
        Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("default".into()),
                uid: Some(format!("uid-{name}")),
                annotations: Some(BTreeMap::from([
                    (VGPU_NODE.to_string(), self.node.clone()),
                    (DEVICES_ALLOCATED.to_string(), value.clone()),
                    (DEVICES_TO_ALLOCATE.to_string(), value),
                ])),
                labels: Some(BTreeMap::from([(VGPU_NODE.to_string(), self.node.clone())])),
                ..Default::default()
            },
            spec: Some(PodSpec {
                init_containers: (!self.init.is_empty())
                    .then(|| named("init", &self.init, self.init.len())),
                containers: named("c", &self.app, self.app.len().max(1)),
                ..Default::default()
            }),
            status: None,
        }
    }
}

/// One operation of a sequence. Indices pick among the live pods in name order, modulo their count.
#[derive(Clone, PartialEq, Eq, Hash)]
pub enum Step {
    /// Create a pod and run the filter for it.
    Place(PodPlan),
    /// Delete a live pod.
    Delete(usize),
    /// Mark every init container of a live pod terminated with exit code 0 (not for a pod already
    /// terminating).
    FinishInit(usize),
    /// Move a live pod to phase Succeeded.
    Finish(usize),
    /// Set a live pod's deletion timestamp (it keeps its devices until deleted).
    MarkTerminating(usize),
    /// The same live pod (same UID, same annotations) removed and added again, as a watch
    /// re-delivers it after a relist or a delete event racing an update: the ledger must count it
    /// exactly once.
    Redeliver(usize),
}

impl fmt::Debug for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Step::Place(plan) => write!(f, "place {plan:?}"),
            Step::Delete(i) => write!(f, "delete #{i}"),
            Step::FinishInit(i) => write!(f, "finish init of #{i}"),
            Step::Finish(i) => write!(f, "finish #{i}"),
            Step::MarkTerminating(i) => write!(f, "mark #{i} terminating"),
            Step::Redeliver(i) => write!(f, "remove and re-add #{i}"),
        }
    }
}

/// A fleet, what is already on it, and the steps to run.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Scenario {
    /// The fleet.
    pub fleet: FleetPlan,
    /// Pods already holding devices.
    pub existing: Vec<ExistingPod>,
    /// Also offer [`GHOST_NODE`], which no fleet registers.
    pub offer_ghost: bool,
    /// The steps.
    pub steps: Vec<Step>,
}

impl fmt::Debug for Scenario {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "Scenario {{")?;
        writeln!(f, "  fleet:")?;
        for node in &self.fleet.nodes {
            writeln!(f, "    {node:?}")?;
        }
        if !self.existing.is_empty() {
            writeln!(f, "  existing:")?;
            for (i, e) in self.existing.iter().enumerate() {
                writeln!(f, "    old-{i}: {e:?}")?;
            }
        }
        if self.offer_ghost {
            writeln!(f, "  offer the unregistered node {GHOST_NODE:?}")?;
        }
        writeln!(f, "  steps:")?;
        for (i, s) in self.steps.iter().enumerate() {
            writeln!(f, "    {i}: {s:?}")?;
        }
        write!(f, "}}")
    }
}

/// The state a sequence runs in.
#[derive(Debug, Clone)]
pub struct World {
    /// The fleet as planned.
    pub fleet: FleetPlan,
    /// The scheduler's view of it.
    pub registry: Registry,
    /// The usage ledger.
    pub ledger: Ledger,
    /// Live pods by `namespace/name`.
    pub pods: BTreeMap<String, Pod>,
    /// The plans of the pods placed by steps.
    pub plans: BTreeMap<String, PodPlan>,
    /// Node names offered to the filter.
    pub offered: Vec<String>,
    /// Scheduler settings.
    pub settings: SchedulerSettings,
    /// Devices over their registered capacity before any decision, with the usage tolerated there
    /// (shrinking as it goes away; see [`crate::checks::relax_overcommit`]).
    pub overcommit: Overcommit,
    /// Pods created so far (names `p<n>`).
    created: usize,
}

/// The time of the first step; each step is one second later.
pub fn start_time() -> jiff::Timestamp {
    jiff::Timestamp::from_second(1_750_000_000).unwrap_or(jiff::Timestamp::UNIX_EPOCH)
}

/// What one step did.
#[derive(Debug, Clone)]
pub enum StepEffect {
    /// A pod went through the filter.
    Placed {
        /// `namespace/name`.
        pod: String,
        /// The plan.
        plan: PodPlan,
        /// Registered nodes with their usage before the decision.
        before: Vec<NodeState>,
        /// The decision.
        decision: Box<Decision>,
        /// The time passed to the filter.
        now: jiff::Timestamp,
    },
    /// A status change or deletion of this pod (`None` when no pod was live).
    Changed(Option<String>),
}

impl StepEffect {
    /// One line for a trace.
    pub fn summary(&self) -> String {
        match self {
            StepEffect::Placed { pod, decision, .. } => match &decision.outcome {
                Outcome::Scheduled {
                    node, allocation, ..
                } => {
                    let devices: Vec<String> = allocation
                        .to_pod_devices()
                        .0
                        .iter()
                        .map(|c| {
                            let ids: Vec<&str> = c.iter().map(|d| d.uuid.as_str()).collect();
                            format!("[{}]", ids.join(","))
                        })
                        .collect();
                    format!("{pod} → {node} {}", devices.join(" "))
                }
                Outcome::Unschedulable => {
                    format!("{pod} → unschedulable {:?}", decision.failed_nodes())
                }
                other => format!("{pod} → {other:?}"),
            },
            StepEffect::Changed(Some(pod)) => format!("{pod} changed"),
            StepEffect::Changed(None) => "no live pod".to_string(),
        }
    }
}

impl World {
    /// Registers the fleet and observes the existing pods (`old-<i>`).
    pub fn new(scenario: &Scenario) -> Result<World, String> {
        let registry = scenario.fleet.registry()?;
        let mut offered = scenario.fleet.node_names();
        if scenario.offer_ghost {
            offered.push(GHOST_NODE.to_string());
        }
        let mut world = World {
            fleet: scenario.fleet.clone(),
            registry,
            ledger: Ledger::new(),
            pods: BTreeMap::new(),
            plans: BTreeMap::new(),
            offered,
            settings: SchedulerSettings::default(),
            overcommit: Overcommit::new(),
            created: 0,
        };
        for (i, existing) in scenario.existing.iter().enumerate() {
            let pod = existing.to_pod(&format!("old-{i}"));
            let observed = world.ledger.observe(&pod);
            if existing.raw_annotation.is_some() != observed.is_err() {
                return Err(format!(
                    "existing pod old-{i} ({existing:?}): observe gave {observed:?}"
                ));
            }
            world.pods.insert(recount::key(&pod), pod);
        }
        world.overcommit = overcommitted(
            &world.registry,
            &recount::recount(world.live_pods().iter().copied()),
        );
        Ok(world)
    }

    /// The name the next placed pod gets (`p<n>`).
    pub fn next_pod_name(&self) -> String {
        format!("p{}", self.created + 1)
    }

    /// The live pods.
    pub fn live_pods(&self) -> Vec<&Pod> {
        self.pods.values().collect()
    }

    /// Registered nodes with the usage recounted from the live pods.
    pub fn node_states(&self) -> Vec<NodeState> {
        oracle::node_states(&self.fleet, &recount::recount(self.pods.values()))
    }

    /// Runs the filter for a new pod, applies the decision, and observes the pod.
    pub fn place(&mut self, plan: &PodPlan, now: jiff::Timestamp) -> Result<StepEffect, String> {
        let name = self.next_pod_name();
        self.created += 1;
        let mut pod = plan.to_pod(&name);
        pod.metadata.uid = Some(format!("uid-{name}"));
        let key = recount::key(&pod);
        let before = self.node_states();
        let decision = filter(
            sliceguard_core::decision::Fleet::scanned(&self.registry, &self.ledger),
            &self.settings,
            &pod,
            &self.offered,
            now,
        );
        if !decision.annotations.is_empty() {
            pod.metadata
                .annotations
                .get_or_insert_with(BTreeMap::new)
                .extend(decision.annotations.clone());
        }
        if !decision.labels.is_empty() {
            pod.metadata
                .labels
                .get_or_insert_with(BTreeMap::new)
                .extend(decision.labels.clone());
        }
        let observed = self
            .ledger
            .observe(&pod)
            .map_err(|e| format!("the ledger cannot read what the filter wrote: {e}"))?;
        let scheduled = matches!(decision.outcome, Outcome::Scheduled { .. });
        if scheduled != (observed == Observed::Counted) {
            return Err(format!(
                "{key}: outcome {:?} but the ledger says {observed:?}",
                decision.outcome
            ));
        }
        self.pods.insert(key.clone(), pod);
        self.plans.insert(key.clone(), plan.clone());
        Ok(StepEffect::Placed {
            pod: key,
            plan: plan.clone(),
            before,
            decision: Box::new(decision),
            now,
        })
    }

    fn pick(&self, index: usize) -> Option<String> {
        if self.pods.is_empty() {
            return None;
        }
        self.pods.keys().nth(index % self.pods.len()).cloned()
    }

    /// Usage of every registered device, by node.
    pub fn usage_by_node(&self) -> BTreeMap<String, Vec<sliceguard_core::model::DeviceUsage>> {
        self.registry
            .nodes()
            .map(|n| {
                let usage = n
                    .devices
                    .iter()
                    .map(|d| self.ledger.device_usage(&n.name, &d.id))
                    .collect();
                (n.name.clone(), usage)
            })
            .collect()
    }

    /// [`World::apply`], then refreshes `index` for every node whose usage the step changed, as
    /// the service keeps its index after each change of its view.
    pub fn apply_refreshing(
        &mut self,
        step: &Step,
        now: jiff::Timestamp,
        index: &mut sliceguard_core::index::PlacementIndex,
    ) -> Result<StepEffect, String> {
        let before = self.usage_by_node();
        let effect = self.apply(step, now)?;
        for (node, usage) in &self.usage_by_node() {
            if before.get(node) != Some(usage) {
                index.refresh(node, &self.registry, &self.ledger);
            }
        }
        Ok(effect)
    }

    /// Applies one step, then shrinks the tolerated over-commit to what is left of it.
    pub fn apply(&mut self, step: &Step, now: jiff::Timestamp) -> Result<StepEffect, String> {
        let effect = self.apply_step(step, now)?;
        let mut overcommit = std::mem::take(&mut self.overcommit);
        relax_overcommit(
            &mut overcommit,
            &self.registry,
            &recount::recount(self.live_pods().iter().copied()),
        );
        self.overcommit = overcommit;
        Ok(effect)
    }

    fn apply_step(&mut self, step: &Step, now: jiff::Timestamp) -> Result<StepEffect, String> {
        let change = |world: &mut World, index: usize, edit: &dyn Fn(&mut Pod)| {
            let Some(key) = world.pick(index) else {
                return Ok(StepEffect::Changed(None));
            };
            if let Some(pod) = world.pods.get_mut(&key) {
                edit(pod);
                // An undecodable allocation is reported and left out; the agreement check judges.
                let _ = world.ledger.observe(pod);
            }
            Ok(StepEffect::Changed(Some(key)))
        };
        match step {
            Step::Place(plan) => self.place(plan, now),
            Step::Delete(index) => {
                let Some(key) = self.pick(*index) else {
                    return Ok(StepEffect::Changed(None));
                };
                if let Some(pod) = self.pods.remove(&key) {
                    self.ledger.forget(&pod);
                }
                self.plans.remove(&key);
                Ok(StepEffect::Changed(Some(key)))
            }
            Step::FinishInit(index) => change(self, *index, &|pod: &mut Pod| {
                // HAMi freezes a terminating pod's usage (spec §6.3), which a recount from the
                // objects cannot see; init containers do not finish during deletion here.
                if pod.metadata.deletion_timestamp.is_some() {
                    return;
                }
                let count = pod
                    .spec
                    .as_ref()
                    .and_then(|s| s.init_containers.as_ref())
                    .map_or(0, Vec::len);
                let status = pod.status.get_or_insert_with(PodStatus::default);
                status.init_container_statuses = Some(
                    (0..count)
                        .map(|i| ContainerStatus {
                            name: format!("init-{i}"),
                            state: Some(ContainerState {
                                terminated: Some(ContainerStateTerminated {
                                    exit_code: 0,
                                    ..Default::default()
                                }),
                                ..Default::default()
                            }),
                            ..Default::default()
                        })
                        .collect(),
                );
            }),
            Step::Finish(index) => change(self, *index, &|pod: &mut Pod| {
                pod.status.get_or_insert_with(PodStatus::default).phase = Some("Succeeded".into());
            }),
            Step::MarkTerminating(index) => change(self, *index, &|pod: &mut Pod| {
                pod.metadata.deletion_timestamp = Some(Time(start_time()));
            }),
            Step::Redeliver(index) => {
                let Some(key) = self.pick(*index) else {
                    return Ok(StepEffect::Changed(None));
                };
                if let Some(pod) = self.pods.get(&key) {
                    self.ledger.forget(pod);
                    // Reported and left out when undecodable, as on its first delivery.
                    let _ = self.ledger.observe(pod);
                    let _ = self.ledger.observe(pod);
                }
                Ok(StepEffect::Changed(Some(key)))
            }
        }
    }
}

/// A failed run: the step, the trace up to it, the violations.
#[derive(Debug, Clone)]
pub struct Failure {
    /// Index of the failing step (`None`: the initial state).
    pub step: Option<usize>,
    /// One line per step executed.
    pub trace: Vec<String>,
    /// What broke.
    pub violations: Vec<Violation>,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.step {
            Some(step) => writeln!(f, "violation after step {step}:")?,
            None => writeln!(f, "violation in the initial state:")?,
        }
        writeln!(f, "{}", report(&self.violations))?;
        writeln!(f, "trace:")?;
        for line in &self.trace {
            writeln!(f, "  {line}")?;
        }
        write!(
            f,
            "(the failing seed is saved under proptest-regressions/ and replays first on the next run)"
        )
    }
}

/// Runs a scenario: `check` sees the world after the initial state (with no effect) and after every
/// step (with its effect); the first non-empty list of violations ends the run.
pub fn run(
    scenario: &Scenario,
    mut check: impl FnMut(&World, Option<&StepEffect>) -> Vec<Violation>,
) -> Result<World, Failure> {
    let setup_failure = |detail: String, trace: Vec<String>, step| Failure {
        step,
        trace,
        violations: vec![Violation::new(Invariant::Protocol, detail)],
    };
    let mut world = World::new(scenario).map_err(|e| setup_failure(e, vec![], None))?;
    let violations = check(&world, None);
    if !violations.is_empty() {
        return Err(Failure {
            step: None,
            trace: vec![],
            violations,
        });
    }
    let mut trace = Vec::new();
    for (i, step) in scenario.steps.iter().enumerate() {
        let now = start_time() + jiff::SignedDuration::from_secs(i as i64);
        let effect = match world.apply(step, now) {
            Ok(effect) => effect,
            Err(e) => return Err(setup_failure(e, trace, Some(i))),
        };
        trace.push(format!("{i}: {step:?} ⇒ {}", effect.summary()));
        let violations = check(&world, Some(&effect));
        if !violations.is_empty() {
            return Err(Failure {
                step: Some(i),
                trace,
                violations,
            });
        }
    }
    Ok(world)
}

/// Proptest strategies for scenarios.
#[cfg(feature = "strategies")]
pub mod strategies {
    use super::*;
    use crate::checks::check_capacity_allowing;
    use crate::fleet::strategies::fleet;
    use crate::pods::strategies::pod;
    use proptest::prelude::*;

    /// How much of a device an existing entry takes.
    #[derive(Debug, Clone, Copy)]
    enum Amount {
        /// This percent of the device's memory.
        Percent(u32),
        /// All the memory the device has left.
        Rest,
    }

    #[derive(Debug, Clone)]
    struct RawGrant {
        device: usize,
        amount: Amount,
        cores: u32,
    }

    #[derive(Debug, Clone)]
    struct RawExisting {
        node: usize,
        init: Vec<RawGrant>,
        app: Vec<Vec<RawGrant>>,
        stale: bool,
        raw: Option<&'static str>,
        /// Over the device's capacity by this percent of its memory (a pre-existing over-commit).
        overfull: Option<u32>,
    }

    fn raw_grant() -> impl Strategy<Value = RawGrant> {
        let amount = prop_oneof![
            6 => prop::sample::select(vec![5u32, 10, 20, 25, 40, 50, 60, 75]).prop_map(Amount::Percent),
            2 => Just(Amount::Rest),
        ];
        let cores = prop_oneof![
            2 => Just(0u32),
            5 => prop::sample::select(vec![10u32, 20, 25, 30, 50, 70]),
            2 => Just(100u32),
        ];
        (0usize..8, amount, cores).prop_map(|(device, amount, cores)| RawGrant {
            device,
            amount,
            cores,
        })
    }

    fn raw_existing() -> impl Strategy<Value = RawExisting> {
        (
            0usize..8,
            prop::collection::vec(raw_grant(), 0..=1),
            prop::collection::vec(prop::collection::vec(raw_grant(), 1..=2), 1..=2),
            prop::bool::weighted(0.04),
            proptest::option::weighted(0.04, prop::sample::select(&UNDECODABLE_ALLOCATIONS[..])),
            proptest::option::weighted(0.06, prop::sample::select(vec![1u32, 10, 50])),
        )
            .prop_map(|(node, init, app, stale, raw, overfull)| RawExisting {
                node,
                init,
                app,
                stale,
                raw,
                overfull,
            })
    }

    /// Turns raw grants into pods, keeping only those that leave every capacity invariant intact
    /// (checked by [`check_capacity`] itself), so that every violation a property finds was made
    /// by the scheduler. The exception is an over-full grant: one container holding the rest of
    /// a device's memory and then some, which the world records as a pre-existing over-commit
    /// (kept only where it breaks nothing but the sums, so it never shares an exclusive device).
    fn admit(fleet: &FleetPlan, raws: Vec<RawExisting>) -> Vec<ExistingPod> {
        let Ok(registry) = fleet.registry() else {
            return Vec::new();
        };
        let mut admitted: Vec<ExistingPod> = Vec::new();
        let mut pods: Vec<Pod> = Vec::new();
        let empty = Ledger::new();
        for raw in raws {
            let node = &fleet.nodes[raw.node % fleet.nodes.len()];
            let usage = recount::recount(pods.iter());
            let entry = |g: &RawGrant| -> Entry {
                let device = &node.devices[g.device % node.devices.len()];
                let used = usage.load(&node.name, &device.id).mem;
                let mem = match g.amount {
                    Amount::Percent(p) => u64::from(device.devmem) * u64::from(p) / 100,
                    Amount::Rest => u64::from(device.devmem).saturating_sub(used),
                };
                Entry {
                    uuid: if raw.stale {
                        format!("GPU-{}-gone", node.name)
                    } else {
                        device.id.clone()
                    },
                    backend: "NVIDIA".into(),
                    mem,
                    cores: u64::from(g.cores),
                }
            };
            let candidate = ExistingPod {
                node: node.name.clone(),
                init: raw.init.iter().map(|g| vec![entry(g)]).collect(),
                app: raw
                    .app
                    .iter()
                    .map(|c| {
                        let mut seen = Vec::new();
                        c.iter()
                            .map(entry)
                            .filter(|e| {
                                let fresh = !seen.contains(&e.uuid);
                                seen.push(e.uuid.clone());
                                fresh
                            })
                            .collect()
                    })
                    .collect(),
                raw_annotation: raw.raw,
                overfull: false,
            };
            let candidate = match raw.overfull {
                Some(extra) if raw.raw.is_none() && !raw.stale => {
                    let grant = raw.app.first().and_then(|c| c.first());
                    let device = &node.devices[grant.map_or(0, |g| g.device) % node.devices.len()];
                    let used = usage.load(&node.name, &device.id).mem;
                    let mem = u64::from(device.devmem).saturating_sub(used)
                        + (u64::from(device.devmem) * u64::from(extra) / 100).max(1);
                    ExistingPod {
                        node: node.name.clone(),
                        init: Vec::new(),
                        app: vec![vec![Entry {
                            uuid: device.id.clone(),
                            backend: "NVIDIA".into(),
                            mem,
                            cores: 0,
                        }]],
                        raw_annotation: None,
                        overfull: true,
                    }
                }
                _ => candidate,
            };
            let pod = candidate.to_pod(&format!("old-{}", admitted.len()));
            let mut trial = pods.clone();
            trial.push(pod.clone());
            let refs: Vec<&Pod> = trial.iter().collect();
            // An empty ledger disagrees with the pods, which only adds "in the ledger" lines when
            // the ledger view is over capacity; it never is, so only the recount is judged here.
            // An over-full grant is judged with its own over-commit tolerated.
            let tolerated = if candidate.overfull {
                overcommitted(&registry, &recount::recount(refs.iter().copied()))
            } else {
                Overcommit::new()
            };
            if check_capacity_allowing(&registry, &refs, &empty, &tolerated).is_empty() {
                admitted.push(candidate);
                pods.push(pod);
            }
        }
        admitted
    }

    /// A step; placements dominate.
    pub fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            10 => pod().prop_map(Step::Place),
            3 => any::<u8>().prop_map(|i| Step::Delete(i.into())),
            1 => any::<u8>().prop_map(|i| Step::FinishInit(i.into())),
            1 => any::<u8>().prop_map(|i| Step::Finish(i.into())),
            1 => any::<u8>().prop_map(|i| Step::MarkTerminating(i.into())),
            1 => any::<u8>().prop_map(|i| Step::Redeliver(i.into())),
        ]
    }

    /// A scenario on up to `max_nodes` nodes with up to `max_steps` steps.
    pub fn scenario(max_nodes: usize, max_steps: usize) -> impl Strategy<Value = Scenario> {
        fleet(max_nodes)
            .prop_flat_map(move |fleet| {
                (
                    Just(fleet),
                    prop::collection::vec(raw_existing(), 0..=6),
                    prop::bool::weighted(0.1),
                    prop::collection::vec(step(), 1..=max_steps.max(1)),
                )
            })
            .prop_map(|(fleet, raws, offer_ghost, steps)| {
                let existing = admit(&fleet, raws);
                Scenario {
                    fleet,
                    existing,
                    offer_ghost,
                    steps,
                }
            })
    }
}
