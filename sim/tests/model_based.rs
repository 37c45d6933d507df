//! Model-based state-machine tests (`proptest-state-machine`) of the real control plane in the
//! simulated world: a reference model generates operation sequences (create a pod that fits, one
//! that can never fit, an exclusive or multi-GPU one; delete a pod; add or remove a node; crash the
//! scheduler; start a new sliceguard replica beside the running ones (rolling update), make the
//! leader's lease expire, pause the standby replica, cut a replica off from the API; turn faults on
//! or off; advance the clock below or past the lock timeout; run steps; drain; a tenant forging
//! scheduler annotations on create or stripping or forging them on a placed pod, through
//! admission), the [`World`] executes them, and after every transition the test checks every invariant
//! the world checks plus what the model knows that constrains the system:
//!
//! - pods are created in two namespaces, some named so that a careless check confuses them with a
//!   live pod (an extension of its name, a prefixed copy, the same name in the other namespace);
//! - the world's pods and nodes are the model's (the world may lose some to injected deletion
//!   faults, and the webhook may deny a creation, never anything else; a tenant's forged pod is
//!   never in the model, so one that got through is caught here);
//! - a pod the model says no node can ever hold (more GPUs or more memory per GPU than any node the
//!   generator makes) is never bound and never given a node;
//! - a bound pod sits on a node the model says is large enough for its ask;
//! - the clock never runs behind the model's;
//! - after a drain (faults off, past the lock timeout and every back-off): no lock is held, and no
//!   pending pod of sliceguard's fits, by the independent brute-force oracle of
//!   `sliceguard-invariants` on the usage recounted from the other pods' annotations, on any node
//!   (greedy placement is complete here because every generated pod has one GPU container), and the
//!   scheduler's ledger equals the recount (the world's agreement check).
//!
//! Every step is also checked by the campaign's [`BinderRelease`] rule (a bind that returned leaves
//! no lock of its own behind).
//!
//! The test counts how often the interesting things happen (binds, unschedulable answers, crashes in
//! the middle of a bind, lock takeovers, drains) over all cases and fails if the generator stops
//! producing them. The default run (96 cases from a fixed seed, about 20 s in debug on an idle machine) is deterministic
//! so those minimums are stable; `PROPTEST_CASES` and `PROPTEST_RNG_SEED` explore further, and then
//! only the minimums that scale with the case count are asserted. Failing seeds persist to
//! `proptest-regressions/sim-model_based.txt` and are replayed first.

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::core::v1::Pod;
use proptest::prelude::*;
use proptest::test_runner::{Config, FileFailurePersistence, RngSeed, TestRunner};
use proptest_state_machine::{ReferenceStateMachine, StateMachineTest};
use sliceguard::annotations::VGPU_NODE;
use sliceguard::bind::ReleaseMode;
use sliceguard::objects::{FleetSpec, GpuAsk, fleet_node_name, gpu_pod, plugin_type_name};
use sliceguard_invariants::fleet::DevicePlan;
use sliceguard_invariants::oracle::{self, DeviceState, Load, NodeState};
use sliceguard_invariants::pods::{ContainerPlan, PodPlan};
use sliceguard_invariants::recount;
use sliceguard_sim::campaign::{BinderRelease, LockChange, LockTrail};
use sliceguard_sim::tenant::{Attempt, Tenants};
use sliceguard_sim::world::{DevicePlugin, EPOCH, Fault, SimConfig, World, WorldViolation};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;

/// The lock timeout of every world here (short, so that a drain is cheap).
const LOCK_TIMEOUT_S: i64 = 60;
/// The largest node the generator makes: GPUs and MiB per GPU.
const MAX_NODE_GPUS: u32 = 4;
const NODE_MEMORY: [u32; 3] = [8192, 16384, 24576];
/// The initial fleet.
const INITIAL_NODES: usize = 2;
const INITIAL_GPUS: usize = 2;
const INITIAL_MEMORY: u32 = 16384;
const FLEET_PREFIX: &str = "mbt";

/// A pod's ask, one GPU container (the kind says what the model expects of it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Fits an empty node of the model.
    Fits,
    /// Fits no node the generator can ever make.
    Impossible,
    /// Whole GPUs (100 cores each).
    Exclusive,
    /// Several GPUs in one container.
    Multi,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Ask {
    kind: Kind,
    gpus: u32,
    memory_mib: u32,
    cores: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct NodeSize {
    gpus: u32,
    memory_mib: u32,
}

/// Which faults the world injects while faults are on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Profile {
    /// Every fault; two sliceguard replicas elected on a Lease.
    All,
    /// Every fault but the deletions, the clock jump and the replica faults (a replica pausing in
    /// a call jumps the clock too), so the model's pods, nodes and clock are exactly the world's; one
    /// sliceguard replica, unelected.
    Exact,
}

/// The reference model.
#[derive(Debug, Clone)]
struct Model {
    seed: u64,
    profile: Profile,
    /// `device-plugin` release with HAMi's device plugin instead of `after-bind` on a fake fleet.
    hami: bool,
    fault_per_mille: u64,
    nodes: BTreeMap<String, NodeSize>,
    /// Every node that ever existed (names are never reused).
    ever: BTreeMap<String, NodeSize>,
    pods: BTreeMap<String, Ask>,
    next_pod: u32,
    next_node: u32,
    /// Seconds since the epoch the model has advanced.
    clock_s: i64,
    faults_on: bool,
    /// Set by the last transition when it was a drain.
    drained: bool,
}

impl Model {
    fn max_gpus(&self) -> u32 {
        self.nodes.values().map(|n| n.gpus).max().unwrap_or(1)
    }

    fn max_memory(&self) -> u32 {
        self.nodes
            .values()
            .map(|n| n.memory_mib)
            .max()
            .unwrap_or(1000)
    }
}

#[derive(Debug, Clone)]
enum Transition {
    /// `name` is the pod's `namespace/name` key.
    CreatePod {
        name: String,
        ask: Ask,
    },
    /// `name` is the pod's `namespace/name` key.
    DeletePod {
        name: String,
    },
    AddNode {
        name: String,
        size: NodeSize,
    },
    RemoveNode {
        name: String,
    },
    CrashScheduler,
    /// A new sliceguard replica starts while the others run (the world runs two, elected).
    RollingUpdate,
    /// The leader's renewals fail until its lease expires.
    ExpireLease,
    /// The replica kube-scheduler does not call stops stepping for longer than the lease.
    PauseStandby,
    /// A replica (the one kube-scheduler calls, or the other) is cut off from the API for a while.
    Partition {
        slot: bool,
    },
    SetFaults(bool),
    Advance {
        seconds: i64,
    },
    Run {
        steps: u32,
    },
    Drain,
    /// A tenant's attempt (`Attempt::ALL[attempt]`) on the `pick`-th placed pod.
    Tenant {
        attempt: usize,
        pick: u64,
    },
}

struct Reference;

fn ask_strategy(model: &Model) -> BoxedStrategy<Ask> {
    let max_gpus = model.max_gpus();
    let max_mem = model.max_memory();
    let fits = (1..=max_mem / 1000, 0..=12u32)
        .prop_map(|(m, c)| Ask {
            kind: Kind::Fits,
            gpus: 1,
            memory_mib: 1000 * m,
            cores: 5 * c,
        })
        .boxed();
    let impossible = prop_oneof![
        Just(Ask {
            kind: Kind::Impossible,
            gpus: 1,
            memory_mib: NODE_MEMORY[NODE_MEMORY.len() - 1] + 1000,
            cores: 10,
        }),
        Just(Ask {
            kind: Kind::Impossible,
            gpus: MAX_NODE_GPUS + 1,
            memory_mib: 1000,
            cores: 10,
        }),
    ]
    .boxed();
    let exclusive = (1..=max_gpus)
        .prop_map(|gpus| Ask {
            kind: Kind::Exclusive,
            gpus,
            memory_mib: 2000,
            cores: 100,
        })
        .boxed();
    if max_gpus >= 2 {
        let multi = (2..=max_gpus, 1..=4u32)
            .prop_map(|(gpus, m)| Ask {
                kind: Kind::Multi,
                gpus,
                memory_mib: 1000 * m,
                cores: 20,
            })
            .boxed();
        prop_oneof![6 => fits, 1 => impossible, 2 => exclusive, 2 => multi].boxed()
    } else {
        prop_oneof![6 => fits, 1 => impossible, 2 => exclusive].boxed()
    }
}

impl ReferenceStateMachine for Reference {
    type State = Model;
    type Transition = Transition;

    fn init_state() -> BoxedStrategy<Model> {
        (
            any::<u64>(),
            prop_oneof![Just(Profile::All), Just(Profile::Exact)],
            prop_oneof![Just(30u64), Just(100u64), Just(200u64)],
            any::<bool>(),
        )
            .prop_map(|(seed, profile, fault_per_mille, hami)| {
                let nodes: BTreeMap<String, NodeSize> = (0..INITIAL_NODES)
                    .map(|i| {
                        (
                            fleet_node_name(FLEET_PREFIX, i),
                            NodeSize {
                                gpus: INITIAL_GPUS as u32,
                                memory_mib: INITIAL_MEMORY,
                            },
                        )
                    })
                    .collect();
                Model {
                    seed,
                    profile,
                    hami,
                    fault_per_mille,
                    ever: nodes.clone(),
                    nodes,
                    pods: BTreeMap::new(),
                    next_pod: 0,
                    next_node: 0,
                    clock_s: 0,
                    faults_on: true,
                    drained: false,
                }
            })
            .boxed()
    }

    fn transitions(state: &Model) -> BoxedStrategy<Transition> {
        let create = (
            ask_strategy(state),
            proptest::sample::select(pod_keys(state)),
        )
            .prop_map(move |(ask, name)| Transition::CreatePod { name, ask })
            .boxed();
        let node_name = format!("extra-{}", state.next_node);
        let add = (1..=MAX_NODE_GPUS, 0..NODE_MEMORY.len())
            .prop_map(move |(gpus, m)| Transition::AddNode {
                name: node_name.clone(),
                size: NodeSize {
                    gpus,
                    memory_mib: NODE_MEMORY[m],
                },
            })
            .boxed();
        let faults = Just(Transition::SetFaults(!state.faults_on)).boxed();
        let advance = prop_oneof![
            (1..LOCK_TIMEOUT_S).prop_map(|seconds| Transition::Advance { seconds }),
            (LOCK_TIMEOUT_S + 1..LOCK_TIMEOUT_S + 30)
                .prop_map(|seconds| Transition::Advance { seconds }),
        ]
        .boxed();
        let run = (1..12u32)
            .prop_map(|steps| Transition::Run { steps })
            .boxed();
        let mut options: Vec<(u32, BoxedStrategy<Transition>)> = vec![
            (10, create),
            (2, add),
            (2, Just(Transition::CrashScheduler).boxed()),
            (1, Just(Transition::RollingUpdate).boxed()),
            (1, Just(Transition::ExpireLease).boxed()),
            (1, Just(Transition::PauseStandby).boxed()),
            (
                1,
                any::<bool>()
                    .prop_map(|slot| Transition::Partition { slot })
                    .boxed(),
            ),
            (2, faults),
            (5, advance),
            (12, run),
            (2, Just(Transition::Drain).boxed()),
            (
                3,
                (0..Attempt::ALL.len(), any::<u64>())
                    .prop_map(|(attempt, pick)| Transition::Tenant { attempt, pick })
                    .boxed(),
            ),
        ];
        if !state.pods.is_empty() {
            let names: Vec<String> = state.pods.keys().cloned().collect();
            options.push((
                3,
                proptest::sample::select(names)
                    .prop_map(|name| Transition::DeletePod { name })
                    .boxed(),
            ));
        }
        if state.nodes.len() > 1 {
            let names: Vec<String> = state.nodes.keys().cloned().collect();
            options.push((
                1,
                proptest::sample::select(names)
                    .prop_map(|name| Transition::RemoveNode { name })
                    .boxed(),
            ));
        }
        proptest::strategy::Union::new_weighted(options).boxed()
    }

    fn preconditions(state: &Model, transition: &Transition) -> bool {
        match transition {
            Transition::CreatePod { name, ask } => {
                !state.pods.contains_key(name)
                    && (ask.kind == Kind::Impossible || ask.gpus <= MAX_NODE_GPUS)
            }
            Transition::DeletePod { name } => state.pods.contains_key(name),
            Transition::AddNode { name, .. } => !state.ever.contains_key(name),
            Transition::RemoveNode { name } => {
                state.nodes.contains_key(name) && state.nodes.len() > 1
            }
            _ => true,
        }
    }

    fn apply(mut state: Model, transition: &Transition) -> Model {
        state.drained = false;
        match transition {
            Transition::CreatePod { name, ask } => {
                state.pods.insert(name.clone(), *ask);
                state.next_pod += 1;
            }
            Transition::DeletePod { name } => {
                state.pods.remove(name);
            }
            Transition::AddNode { name, size } => {
                state.nodes.insert(name.clone(), *size);
                state.ever.insert(name.clone(), *size);
                state.next_node += 1;
            }
            Transition::RemoveNode { name } => {
                state.nodes.remove(name);
            }
            Transition::CrashScheduler
            | Transition::RollingUpdate
            | Transition::ExpireLease
            | Transition::PauseStandby
            | Transition::Partition { .. } => {}
            Transition::SetFaults(on) => state.faults_on = *on,
            Transition::Advance { seconds } => state.clock_s += seconds,
            Transition::Run { steps } => state.clock_s += i64::from(*steps),
            Transition::Drain => {
                state.faults_on = false;
                state.drained = true;
                state.clock_s += 300.max(LOCK_TIMEOUT_S + 120);
            }
            // Admission denies it: nothing changes but the clock (one step).
            Transition::Tenant { .. } => state.clock_s += 1,
        }
        state
    }
}

/// How often the interesting things happened, over every case of a run.
#[derive(Debug, Default, Clone)]
struct Coverage {
    cases: u64,
    transitions: u64,
    binds: u64,
    unschedulable: u64,
    webhook_denials: u64,
    crashes_mid_bind: u64,
    takeovers: u64,
    reaper_or_binder_clears: u64,
    drains: u64,
    impossible_created: u64,
    faults_injected: u64,
    tenant_denied: u64,
    /// Leadership terms begun by a replica other than the first leader (failovers).
    new_terms: u64,
    /// Binds of a pod outside `default`, or named so a careless check confuses it with a live
    /// pod (an extension, a prefixed copy, one name in two namespaces).
    confusable_binds: u64,
}

static COVERAGE: Mutex<Coverage> = Mutex::new(Coverage {
    cases: 0,
    transitions: 0,
    binds: 0,
    unschedulable: 0,
    webhook_denials: 0,
    crashes_mid_bind: 0,
    takeovers: 0,
    reaper_or_binder_clears: 0,
    drains: 0,
    impossible_created: 0,
    faults_injected: 0,
    tenant_denied: 0,
    new_terms: 0,
    confusable_binds: 0,
});

fn coverage() -> std::sync::MutexGuard<'static, Coverage> {
    COVERAGE.lock().unwrap_or_else(|p| p.into_inner())
}

/// The system under test: the world and what the test saw of its trace.
struct Sut {
    world: World,
    denied: BTreeSet<String>,
    /// Pods created and not deleted, by key, as the trace tells.
    live: BTreeSet<String>,
    trace_seen: usize,
    binds_seen: usize,
    /// The lock value per node as the trace shows it.
    locks: LockTrail,
    /// The campaign's binder-release check, run after every step.
    hygiene: BinderRelease,
    found: Vec<WorldViolation>,
    /// The tenants of the model's `Tenant` transitions.
    tenants: Tenants,
}

impl Sut {
    fn step(&mut self) {
        self.world.step();
        let found = self.hygiene.check(&self.world);
        self.found.extend(found);
    }
}

impl Sut {
    /// Reads the new trace lines and bind records into the coverage counters.
    fn count(&mut self) {
        let trace = self.world.trace();
        let mut c = coverage();
        for line in &trace[self.trace_seen.min(trace.len())..] {
            // Lines are `<timestamp> <text>`.
            let text = line.split_once(' ').map_or(line.as_str(), |(_, t)| t);
            if let Some(rest) = text.strip_prefix("created pod ") {
                self.live
                    .insert(rest.split(' ').next().unwrap_or(rest).to_string());
            } else if let Some(key) = text.strip_prefix("deleted pod ") {
                self.live.remove(key);
            } else if let Some(rest) = text.strip_prefix("bind ")
                && let Some((call, "ok")) = rest.split_once(": ")
                && let Some((key, _)) = call.split_once(" -> ")
                && !sliceguard_sim::campaign::confusable(key, &self.live).is_empty()
            {
                c.confusable_binds += 1;
            }
            if text.starts_with("replica ") && text.ends_with("(new term: view re-listed)") {
                c.new_terms += 1;
            } else if text.contains("unschedulable") {
                c.unschedulable += 1;
            } else if text.starts_with("webhook denied") {
                c.webhook_denials += 1;
            } else if text.starts_with("fault ") {
                c.faults_injected += 1;
                if text.starts_with("fault tenant:") && text.contains(": denied: ") {
                    c.tenant_denied += 1;
                }
                if text.starts_with("fault crash: the scheduler stops before")
                    && [
                        "write-lock",
                        "patch-pod",
                        "create-binding",
                        "clear-lock",
                        "get-pod",
                    ]
                    .iter()
                    .any(|k| text.ends_with(k))
                {
                    c.crashes_mid_bind += 1;
                }
            } else {
                match self.locks.observe(text) {
                    LockChange::TakenOver => c.takeovers += 1,
                    LockChange::Cleared => c.reaper_or_binder_clears += 1,
                    _ => {}
                }
            }
        }
        self.trace_seen = trace.len();
        let binds = self.world.bound_at().len();
        c.binds += (binds - self.binds_seen.min(binds)) as u64;
        self.binds_seen = binds;
    }
}

/// Keys for the next pod: mostly `default/p<n>`, and names a careless check confuses with a live
/// pod's: an extension of it, a prefixed copy, the same name in another namespace.
fn pod_keys(state: &Model) -> Vec<String> {
    let n = state.next_pod;
    let mut keys = vec![format!("default/p{n}"); 4];
    keys.push(format!("{OTHER_NAMESPACE}/p{n}"));
    if let Some(last) = state.pods.keys().next_back() {
        let (namespace, name) = last.split_once('/').unwrap_or(("default", last));
        keys.push(format!("{namespace}/{name}-{n}"));
        keys.push(format!("{namespace}/x{n}-{name}"));
        let other = if namespace == "default" {
            OTHER_NAMESPACE
        } else {
            "default"
        };
        keys.push(format!("{other}/{name}"));
    }
    keys.retain(|k| !state.pods.contains_key(k));
    keys
}

const OTHER_NAMESPACE: &str = "team-b";

fn pod_for(key: &str, ask: &Ask) -> Pod {
    let (namespace, name) = key.split_once('/').unwrap_or(("default", key));
    let mut pod = gpu_pod(
        name,
        &[],
        &[GpuAsk {
            gpus: Some(ask.gpus),
            memory_mib: Some(ask.memory_mib),
            memory_percent: None,
            cores: Some(ask.cores),
        }],
    );
    pod.metadata.namespace = Some(namespace.to_string());
    pod
}

fn plan_for(ask: &Ask) -> PodPlan {
    PodPlan {
        init: Vec::new(),
        app: vec![ContainerPlan::fraction(ask.gpus, ask.memory_mib, ask.cores)],
        annotations: BTreeMap::new(),
    }
}

fn pod_node(pod: &Pod) -> Option<String> {
    pod.spec.as_ref().and_then(|s| s.node_name.clone())
}

/// The oracle's view of `node` (sized as the model says) with the usage of `usage`.
fn node_state(name: &str, size: NodeSize, usage: &recount::Recount) -> NodeState {
    let spec = FleetSpec::default();
    NodeState {
        name: name.to_string(),
        devices: (0..size.gpus)
            .map(|i| {
                let id = format!("GPU-{name}-{i}");
                let load = usage.load(name, &id);
                DeviceState {
                    plan: DevicePlan {
                        id,
                        index: 0,
                        count: spec.split,
                        devmem: size.memory_mib,
                        devcore: spec.cores,
                        device_type: plugin_type_name(&spec.device_type),
                        numa: 0,
                        mode: "hami-core".into(),
                        health: true,
                    },
                    cordoned: false,
                    load: Load {
                        tasks: load.tasks,
                        mem: load.mem,
                        cores: load.cores,
                    },
                }
            })
            .collect(),
    }
}

struct WorldMachine;

impl StateMachineTest for WorldMachine {
    type SystemUnderTest = Sut;
    type Reference = Reference;

    fn init_test(model: &Model) -> Sut {
        coverage().cases += 1;
        let faults: BTreeSet<Fault> = match model.profile {
            // The model keeps each node's size as created, so a node re-registering with less
            // memory (node-shrink) would make its drain check expect placements the world cannot
            // make; the campaigns run that fault. CPU-only work moves no GPU state the model
            // follows, and its pods would change the coverage the fixed default seed is chosen
            // for; the campaigns and `sim/tests/world.rs` run it.
            Profile::All => Fault::ALL
                .into_iter()
                .filter(|f| !matches!(f, Fault::NodeShrink | Fault::CpuOnlyPod))
                .collect(),
            Profile::Exact => Fault::ALL
                .into_iter()
                .filter(|f| {
                    !matches!(
                        f,
                        Fault::NodeDeletion
                            | Fault::PodDeletion
                            | Fault::StaleView
                            | Fault::NodeShrink
                            | Fault::ClockJump
                            | Fault::RollingUpdate
                            | Fault::LeaseExpiry
                            | Fault::ReplicaPause
                            | Fault::ReplicaPartition
                            | Fault::CpuOnlyPod
                    )
                })
                .collect(),
        };
        let config = SimConfig {
            seed: model.seed,
            fleet: FleetSpec {
                nodes: INITIAL_NODES,
                gpus_per_node: INITIAL_GPUS,
                memory_mib: INITIAL_MEMORY,
                name_prefix: FLEET_PREFIX.into(),
                ..FleetSpec::default()
            },
            device_plugin: if model.hami {
                DevicePlugin::Hami
            } else {
                DevicePlugin::None
            },
            lock_release: if model.hami {
                ReleaseMode::DevicePlugin
            } else {
                ReleaseMode::AfterBind
            },
            lock_timeout: SignedDuration::from_secs(LOCK_TIMEOUT_S),
            faults,
            fault_per_mille: model.fault_per_mille,
            scheduler_name: "sliceguard-scheduler".into(),
            // The books are recounted at every check here: each transition also checks that the
            // world's incremental bookkeeping equals a recount from scratch (the campaigns recount
            // every DEFAULT_RECOUNT_EVERY checks and check only what changed in between).
            recount_every: 1,
        };
        Sut {
            world: World::new(config),
            denied: BTreeSet::new(),
            live: BTreeSet::new(),
            trace_seen: 0,
            binds_seen: 0,
            locks: LockTrail::default(),
            hygiene: BinderRelease::default(),
            found: Vec::new(),
            tenants: Tenants::new(model.seed),
        }
    }

    fn apply(mut sut: Sut, _model: &Model, transition: Transition) -> Sut {
        coverage().transitions += 1;
        match &transition {
            Transition::CreatePod { name, ask } => {
                if ask.kind == Kind::Impossible {
                    coverage().impossible_created += 1;
                }
                if sut.world.create_pod(&pod_for(name, ask)).is_err() {
                    sut.denied.insert(name.clone());
                }
                sut.step();
            }
            Transition::DeletePod { name } => {
                sut.world.delete_pod(name);
                sut.step();
            }
            Transition::AddNode { name, size } => {
                assert!(
                    sut.world
                        .add_node(name, size.gpus as usize, size.memory_mib),
                    "adding node {name} failed"
                );
                sut.step();
            }
            Transition::RemoveNode { name } => {
                sut.world.remove_node(name);
                sut.step();
            }
            Transition::CrashScheduler => {
                sut.world.crash_scheduler();
                sut.step();
            }
            Transition::RollingUpdate => {
                sut.world.rolling_update();
                sut.step();
            }
            Transition::ExpireLease => {
                sut.world.expire_leader_lease();
                sut.step();
            }
            Transition::PauseStandby => {
                sut.world.pause_standby();
                sut.step();
            }
            Transition::Partition { slot } => {
                sut.world.partition_replica(*slot);
                sut.step();
            }
            Transition::SetFaults(on) => sut.world.set_faults(*on),
            Transition::Advance { seconds } => {
                sut.world.advance(SignedDuration::from_secs(*seconds));
            }
            Transition::Run { steps } => {
                for _ in 0..*steps {
                    sut.step();
                }
            }
            Transition::Tenant { attempt, pick } => {
                let attempt = Attempt::ALL[attempt % Attempt::ALL.len()];
                let _ = sut.tenants.attempt(&mut sut.world, attempt, *pick);
                sut.step();
            }
            Transition::Drain => {
                coverage().drains += 1;
                // Faults are off during a drain (no crash can interleave), so one check over all
                // of its steps is sound.
                sut.world.drain_and_check_liveness();
                let found = sut.hygiene.check(&sut.world);
                sut.found.extend(found);
            }
        }
        sut.count();
        sut
    }

    /// Every case ends with a drain and the liveness checks, unless its last transition was one.
    fn teardown(mut sut: Sut, model: Model) {
        if model.drained {
            return;
        }
        let model = Reference::apply(model, &Transition::Drain);
        sut = Self::apply(sut, &model, Transition::Drain);
        Self::check_invariants(&sut, &model);
    }

    fn check_invariants(sut: &Sut, model: &Model) {
        let world = &sut.world;
        assert!(
            world.violations().is_empty() && sut.found.is_empty(),
            "the world saw violations:\n{}\nlast trace lines:\n{}",
            world
                .violations()
                .iter()
                .chain(&sut.found)
                .map(|v| v.to_string())
                .collect::<Vec<_>>()
                .join("\n"),
            tail(world)
        );
        // Nodes and pods: the world's are the model's (less what deletion faults and the webhook took).
        let nodes: BTreeSet<String> = world.node_names().into_iter().collect();
        for node in &nodes {
            assert!(
                model.nodes.contains_key(node),
                "node {node} exists in the world but not in the model {:?}",
                model.nodes.keys().collect::<Vec<_>>()
            );
        }
        let pods: BTreeMap<String, Pod> = world
            .pod_keys()
            .into_iter()
            .filter_map(|k| world.pod(&k).map(|p| (k, p)))
            .collect();
        for key in pods.keys() {
            assert!(
                model.pods.contains_key(key),
                "pod {key} exists in the world but not in the model"
            );
        }
        if model.profile == Profile::Exact {
            assert_eq!(
                nodes,
                model.nodes.keys().cloned().collect::<BTreeSet<_>>(),
                "without deletion faults the world's nodes are the model's"
            );
            for name in model.pods.keys() {
                assert!(
                    pods.contains_key(name) || sut.denied.contains(name),
                    "pod {name} vanished from the world without a deletion fault\n{}",
                    tail(world)
                );
            }
            let expected: Timestamp = EPOCH.parse::<Timestamp>().expect("epoch")
                + SignedDuration::from_secs(model.clock_s);
            assert!(
                world.now() >= expected,
                "the world's clock {} runs behind the model's {expected}",
                world.now()
            );
        }
        // Placement against the model's sizes.
        for (key, pod) in &pods {
            let Some(ask) = model.pods.get(key) else {
                continue;
            };
            let annotated = pod
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(VGPU_NODE).cloned());
            if ask.kind == Kind::Impossible {
                assert!(
                    pod_node(pod).is_none() && annotated.is_none(),
                    "pod {key} asks {ask:?}, which no node can hold, yet it was placed on {:?}/{:?}\n{}",
                    pod_node(pod),
                    annotated,
                    tail(world)
                );
            }
            if let Some(node) = pod_node(pod) {
                let size = model.ever.get(&node);
                assert!(
                    size.is_some_and(|s| s.gpus >= ask.gpus && s.memory_mib >= ask.memory_mib),
                    "pod {key} ({ask:?}) bound to node {node} of size {size:?}\n{}",
                    tail(world)
                );
            }
        }
        if model.drained {
            check_drained(world, model, &pods);
        }
    }
}

/// After a drain: no lock, and no pending pod that the oracle fits on any node.
fn check_drained(world: &World, model: &Model, pods: &BTreeMap<String, Pod>) {
    assert!(
        world.locks().is_empty(),
        "locks held after a drain: {:?}",
        world.locks()
    );
    for (key, pod) in pods {
        let ours = pod.spec.as_ref().and_then(|s| s.scheduler_name.as_deref())
            == Some("sliceguard-scheduler");
        if pod_node(pod).is_some() || !ours {
            continue;
        }
        let Some(ask) = model.pods.get(key) else {
            continue;
        };
        let others = recount::recount(pods.iter().filter(|(k, _)| *k != key).map(|(_, p)| p));
        let plan = plan_for(ask);
        for node in world.node_names() {
            let Some(size) = model.nodes.get(&node) else {
                continue;
            };
            let state = node_state(&node, *size, &others);
            let answer = oracle::can_hold(&state, &plan).expect("generated pods are valid");
            assert!(
                !answer.fits(),
                "pod {key} ({ask:?}) is still pending after a drain although the oracle fits it on {node}: {answer:?}\n{}",
                tail(world)
            );
        }
    }
}

fn tail(world: &World) -> String {
    let trace = world.trace();
    trace[trace.len().saturating_sub(30)..].join("\n")
}

/// The default cases and seed; the rare-event coverage minimums are asserted for this run. The seed
/// moved from `0x5eed_0005` when the filter's pod patch went through the world's generic fault rolls
/// (the filter machine): every later roll shifted and that seed's run had no lock takeover left.
/// It moved from `0x5eed_0009` when the throttle, filter-timeout, bind-timeout, tenant and replica
/// faults joined `Fault::ALL` (17 faults share the fault budget, so the crash-then-expiry sequence a
/// takeover needs became rare): `0x5eed_0010` has two. A generator that aims at takeovers instead of
/// a chosen seed is open work (issue 18's generators).
const DEFAULT_CASES: u32 = 96;
const DEFAULT_SEED: u64 = 0x5eed_0010;

/// `DEFAULT_CASES` cases from `DEFAULT_SEED`, unless `PROPTEST_CASES` / `PROPTEST_RNG_SEED` say
/// otherwise (a fixed default seed keeps the coverage counts, and so their minimums, stable).
fn config() -> Config {
    let base = Config::default();
    Config {
        cases: if std::env::var_os("PROPTEST_CASES").is_some() {
            base.cases
        } else {
            DEFAULT_CASES
        },
        rng_seed: if std::env::var_os("PROPTEST_RNG_SEED").is_some() {
            base.rng_seed
        } else {
            RngSeed::Fixed(DEFAULT_SEED)
        },
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../proptest-regressions/sim-model_based.txt"
        )))),
        ..base
    }
}

#[test]
fn the_world_follows_the_reference_model() {
    let config = config();
    let cases = config.cases;
    let mut runner = TestRunner::new(config.clone());
    let result = runner.run(
        &Reference::sequential_strategy(1..50),
        |(init, steps, seen)| {
            WorldMachine::test_sequential(config.clone(), init, steps, seen);
            Ok(())
        },
    );
    if let Err(e) = result {
        panic!("{e}");
    }
    let c = coverage().clone();
    eprintln!("model-based coverage over {cases} cases: {c:?}");
    // The generator must keep producing the interesting transitions; thresholds are far below what
    // the default case count produces (see sim/PLANTED_BUGS.md), and scale with the case count.
    let at_least = |n: u64, what: &str, min: u64| {
        assert!(
            n >= min,
            "only {n} {what} in {cases} cases (expected at least {min}): {c:?}"
        );
    };
    let scale = u64::from(cases).max(1);
    at_least(c.binds, "binds", 2 * scale);
    at_least(c.unschedulable, "unschedulable filter answers", scale / 2);
    at_least(c.impossible_created, "impossible pods", scale / 4);
    if std::env::var_os("PROPTEST_CASES").is_none()
        && std::env::var_os("PROPTEST_RNG_SEED").is_none()
    {
        // Rare events, asserted for the deterministic default run (it produces 47 and 1).
        at_least(c.crashes_mid_bind, "crashes in the middle of a bind", 10);
        at_least(c.takeovers, "lock takeovers", 1);
    }
    // The `All` cases (about half) run two elected replicas: each begins with a first term, and
    // failovers add more (the default run produces 118).
    at_least(c.new_terms, "leadership terms", scale);
    at_least(c.drains, "drains", scale / 4);
    at_least(c.tenant_denied, "denied tenant attempts", scale / 2);
    at_least(
        c.confusable_binds,
        "binds of pods named like another live pod or outside default",
        scale / 2,
    );
    at_least(c.faults_injected, "injected faults", scale);
}
