//! The simulated world: sliceguard's real control plane (the `serve` service: webhook review,
//! extender filter and bind, lock reaper, watch feed) running against the [`Store`], under a virtual
//! clock and a seeded random source, with a kube-scheduler stand-in, a kubelet per node, device
//! plugin emulation, and faults injected on purpose.
//!
//! ## One step
//! 1. A crashed scheduler restarts: a new service instance re-lists nodes and pods (nothing else
//!    survives a crash, as in a real restart).
//! 2. Watch delivery: store changes since the last delivery feed the service's view (unless a watch
//!    disconnect fault holds them back; the reconnect re-lists).
//! 3. The kube-scheduler stand-in takes the next due pod of sliceguard's scheduler name: `/filter` with
//!    the eligible node names, then `/bind` to the chosen node; failures back off 1 s, 2 s, 4 s ... up
//!    to 10 s, like kube-scheduler. Pods of other schedulers get the first eligible node. The queue,
//!    the backoff, the eligible nodes and the extender arguments are [`crate::kube_scheduler`]'s.
//! 4. The service's lock reaper runs once.
//! 5. Kubelets admit bound pods: the node's allocatable `nvidia.com/gpu` must cover them as the kubelet
//!    counts extended resources, and the device plugin answers Allocate per [`DevicePlugin`].
//! 6. The clock advances one second; the books (what the store's pods and nodes add up to, and
//!    what running containers were granted) follow the step's changes, and every invariant is
//!    checked on what the step changed (every step by default; a throughput measurement may check
//!    every K steps or only when it calls [`World::check`], see [`World::set_check_every`]). Every
//!    [`DEFAULT_RECOUNT_EVERY`] checks and at the end of a run the books are recounted from scratch
//!    and every device and pod is checked ([`SimConfig::recount_every`], `books` module).
//!
//! Everything is ordered (`BTreeMap`s, name order) and every random choice comes from one seeded
//! generator, so a seed and a configuration reproduce a run byte for byte ([`World::trace`]).
//! The service's async functions run on a single-threaded Tokio runtime per scheduler instance; the
//! simulated API answers immediately, so no real time passes inside a step. A crash makes the API
//! call in progress never answer and drops the instance with its runtime, abandoning whatever it was
//! doing between two effects.

use crate::kube_scheduler::{MAX_BACKOFF, SchedulingQueue, binding_args, filter_args, offer};
use crate::store::{ApiError, Part, PatchType, Resource, Selector, Store};
use base64::Engine as _;
use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::core::v1::{Node, Pod};
use serde::Deserialize as _;
use serde_json::{Value, json};
use sliceguard::annotations::{
    BIND_PHASE, NODE_LOCK, NODE_REGISTER, RESOURCE_GPU, VGPU_NODE, bind_phase,
};
use sliceguard::bind::{ApiFailure, Effect, NodeLockView, Observation, PodView, ReleaseMode};
use sliceguard::codec::lock;
use sliceguard::objects::FleetSpec;
use sliceguard::registry::Registry;
use sliceguard::server::{ClusterApi, Scheduler, SchedulerConfig};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};

mod books;
mod cpu_only;
mod host_cpu;
mod replicas;
mod unbound;

/// How a node's device plugin answers the kubelet's Allocate (spec §5.3, §5.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DevicePlugin {
    /// A fake fleet: no HAMi plugin; the kubelet admits by count only.
    None,
    /// HAMi's plugin: finds the pending pod by the node lock (or its fallback), erases
    /// `vgpu-devices-to-allocate`, sets `bind-phase`, releases the lock if it is that pod's.
    Hami,
    /// HAMi's mock plugin: answers Allocate and touches nothing (the lock stays).
    Mock,
    /// A device plugin that never answers Allocate: GPU pods stay Pending on their node (in
    /// `bind-phase: allocating` in device-plugin mode), as behind a plugin that hangs or is gone.
    Silent,
}

impl DevicePlugin {
    /// Parses `none`, `hami`, `mock` or `silent`.
    pub fn parse(s: &str) -> Result<Self, String> {
        match s {
            "none" => Ok(DevicePlugin::None),
            "hami" => Ok(DevicePlugin::Hami),
            "mock" => Ok(DevicePlugin::Mock),
            "silent" => Ok(DevicePlugin::Silent),
            o => Err(format!(
                "unknown device plugin {o:?}: expected none, hami, mock or silent"
            )),
        }
    }

    /// Name on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            DevicePlugin::None => "none",
            DevicePlugin::Hami => "hami",
            DevicePlugin::Mock => "mock",
            DevicePlugin::Silent => "silent",
        }
    }
}

/// The faults the world can inject, each enabled by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Fault {
    /// A write answered 409 Conflict without being applied.
    Conflict,
    /// A request answered 500 without being applied.
    ServerError,
    /// A write applied, but the caller told it failed.
    LostResponse,
    /// The scheduler crashes at an effect boundary and restarts on the next step.
    Crash,
    /// A node is deleted.
    NodeDeletion,
    /// The pod being bound is deleted between two bind effects.
    PodDeletion,
    /// A node's device plugin stops answering Allocate.
    PluginSilent,
    /// The scheduler's watches disconnect for a while, then re-list.
    WatchDisconnect,
    /// The clock jumps past the lock timeout.
    ClockJump,
    /// A request answered 429 Too Many Requests (with `Retry-After`) without being applied: what
    /// reaches the machines once the client's own retries are spent.
    Throttle,
    /// kube-scheduler gives up on a filter (its extender timeout) while the filter's pod write is in
    /// flight: the write lands or not, its answer never comes, the filter's future is dropped, and
    /// the pod is retried later on the nodes offered then.
    FilterTimeout,
    /// kube-scheduler gives up on a bind (its bind timeout) after one of the bind's effects: the
    /// bind's task runs on alone and must stop at its next effect boundary without stranding a lock.
    BindTimeout,
    /// Tenants create pods with forged scheduler annotations and strip or forge them on placed
    /// pods, through admission ([`crate::tenant`]).
    Tenant,
    /// A rolling update: a new sliceguard replica starts while the others run (runs two replicas
    /// elected on a Lease; see [`replicas`]).
    RollingUpdate,
    /// The leader's renewals fail until its lease expires and may pass to the other replica.
    LeaseExpiry,
    /// A replica pauses (a long GC, a frozen node) in the middle of a call, or the standby for a
    /// while, and resumes after its lease passed to the other.
    ReplicaPause,
    /// A replica is cut off from the API for a while, while the other may lead.
    ReplicaPartition,
    /// kube-scheduler's binding cycle acts on another answer than the filter's (a stale cycle, a
    /// second kube-scheduler during a rollout): it sends `/bind` for another eligible node than the
    /// one the filter chose. `/bind` must refuse it, leaving no Binding and no lock.
    StaleBind,
    /// A node's device plugin re-registers its devices with half the memory (a driver update, a
    /// changed `deviceMemoryScaling`): allocations already there may now exceed the registered
    /// capacity. That over-commit is the audit's finding, not a decision's; no decision may add to
    /// such a device.
    NodeShrink,
    /// kube-scheduler's binding cycles run concurrently: a second pod whose filter chose the same
    /// node is bound at the same time as the first (two binds in flight on one node).
    ConcurrentBind,
    /// kube-scheduler acts on a stale view (its informers lag the API): it filters a pod already
    /// deleted, binds a pod deleted since its filter (the Binding answers NotFound), or offers a
    /// node already gone. Once the scheduler's watches have caught up, its ledger must hold nothing
    /// for such a pod.
    StaleView,
    /// A pod's CPU request is resized in place (`pods/resize`), past admission: the host CPU the
    /// `fragmentation` policy reads must follow it (see [`host_cpu`]).
    CpuResize,
    /// kube-scheduler binds CPU-only pods (no GPU, never routed to sliceguard), which are then
    /// resized in place and end: free CPU changes with no GPU pod event (see [`cpu_only`]).
    CpuOnlyPod,
}

impl Fault {
    /// Every fault.
    pub const ALL: [Fault; 23] = [
        Fault::Conflict,
        Fault::ServerError,
        Fault::LostResponse,
        Fault::Crash,
        Fault::NodeDeletion,
        Fault::PodDeletion,
        Fault::PluginSilent,
        Fault::WatchDisconnect,
        Fault::ClockJump,
        Fault::Throttle,
        Fault::FilterTimeout,
        Fault::BindTimeout,
        Fault::Tenant,
        Fault::RollingUpdate,
        Fault::LeaseExpiry,
        Fault::ReplicaPause,
        Fault::ReplicaPartition,
        Fault::StaleBind,
        Fault::NodeShrink,
        Fault::ConcurrentBind,
        Fault::StaleView,
        Fault::CpuResize,
        Fault::CpuOnlyPod,
    ];

    /// The fault's name on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Fault::Conflict => "conflict",
            Fault::ServerError => "server-error",
            Fault::LostResponse => "lost-response",
            Fault::Crash => "crash",
            Fault::NodeDeletion => "node-deletion",
            Fault::PodDeletion => "pod-deletion",
            Fault::PluginSilent => "plugin-silent",
            Fault::WatchDisconnect => "watch-disconnect",
            Fault::ClockJump => "clock-jump",
            Fault::Throttle => "throttle",
            Fault::FilterTimeout => "filter-timeout",
            Fault::BindTimeout => "bind-timeout",
            Fault::Tenant => "tenant",
            Fault::RollingUpdate => "rolling-update",
            Fault::LeaseExpiry => "lease-expiry",
            Fault::ReplicaPause => "replica-pause",
            Fault::ReplicaPartition => "replica-partition",
            Fault::StaleBind => "stale-bind",
            Fault::NodeShrink => "node-shrink",
            Fault::ConcurrentBind => "concurrent-bind",
            Fault::StaleView => "stale-view",
            Fault::CpuResize => "cpu-resize",
            Fault::CpuOnlyPod => "cpu-only-pod",
        }
    }

    /// Parses a comma list of names, or `all`, or `none`.
    pub fn parse_list(s: &str) -> Result<BTreeSet<Fault>, String> {
        match s.trim() {
            "all" => return Ok(Fault::ALL.into_iter().collect()),
            "none" | "" => return Ok(BTreeSet::new()),
            _ => {}
        }
        s.split(',')
            .map(str::trim)
            .map(|name| {
                Fault::ALL
                    .into_iter()
                    .find(|f| f.as_str() == name)
                    .ok_or_else(|| {
                        let names: Vec<&str> = Fault::ALL.iter().map(|f| f.as_str()).collect();
                        format!(
                            "unknown fault {name:?}: expected all, none, or a comma list of {}",
                            names.join(", ")
                        )
                    })
            })
            .collect()
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// SplitMix64: a small, well-known seeded generator; every random choice of a run comes from it.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator for `seed`.
    pub fn new(seed: u64) -> Self {
        Rng(seed ^ 0x5851_f42d_4c95_7f2d)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next_u64() % n }
    }

    /// True with probability `p` (in thousandths, to stay integer).
    pub fn chance_per_mille(&mut self, p: u64) -> bool {
        self.below(1000) < p
    }
}

/// The world's configuration.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// The seed of every random choice.
    pub seed: u64,
    /// The initial fleet.
    pub fleet: FleetSpec,
    /// Device plugin emulation on every node.
    pub device_plugin: DevicePlugin,
    /// The binder's lock release mode.
    pub lock_release: ReleaseMode,
    /// `--node-lock-timeout`.
    pub lock_timeout: SignedDuration,
    /// Enabled faults.
    pub faults: BTreeSet<Fault>,
    /// Chance of each enabled fault at each opportunity, in thousandths.
    pub fault_per_mille: u64,
    /// sliceguard's scheduler name.
    pub scheduler_name: String,
    /// Recount the world's books from scratch (and check every device and pod) after every
    /// `recount_every`-th check; 1: after every check; 0: only at the end of a run. Between two
    /// recounts the checks look at what changed ([`World::check`]).
    pub recount_every: u64,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            seed: 1,
            fleet: FleetSpec {
                nodes: 2,
                gpus_per_node: 2,
                ..FleetSpec::default()
            },
            device_plugin: DevicePlugin::None,
            lock_release: ReleaseMode::AfterBind,
            lock_timeout: SignedDuration::from_mins(5),
            faults: BTreeSet::new(),
            fault_per_mille: 30,
            scheduler_name: "sliceguard-scheduler".into(),
            recount_every: DEFAULT_RECOUNT_EVERY,
        }
    }
}

/// A broken invariant seen by the world, with the step and time it was seen at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorldViolation {
    /// Step number.
    pub step: u64,
    /// Virtual time.
    pub at: Timestamp,
    /// Which invariant (`capacity`, `agreement`, `lock-safety`, `protocol`, `liveness`,
    /// `device-plugin`, `books`: the kept sums differ from a recount, ...).
    pub invariant: &'static str,
    /// What exactly.
    pub detail: String,
}

impl fmt::Display for WorldViolation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "step {} ({}): {} violated: {}",
            self.step, self.at, self.invariant, self.detail
        )
    }
}

/// Who performs an API call, for the lock-safety check.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Actor {
    /// A bind of this pod (`namespace/name`).
    Bind(String),
    /// Two binds in flight at once (kube-scheduler's concurrent binding cycles). Their effects
    /// cannot be told apart here (each runs in a task the service spawns), so the lock-safety
    /// check lets either pod's binder change either pod's lock; the service's per-node bind gate
    /// orders them, and a third party's lock is judged as ever.
    Binds(String, String),
    /// The lock reaper.
    Reaper,
    /// The filter.
    Filter,
    /// Nobody in particular.
    Other,
}

impl Actor {
    /// The pod a bind is for (the first, for two at once).
    fn binding(&self) -> Option<&str> {
        match self {
            Actor::Bind(key) | Actor::Binds(key, _) => Some(key),
            _ => None,
        }
    }

    /// True when `holder` is a pod this actor binds.
    fn binds(&self, holder: &str) -> bool {
        match self {
            Actor::Bind(key) => key == holder,
            Actor::Binds(a, b) => a == holder || b == holder,
            _ => false,
        }
    }
}

/// The API state shared by the world and the service's [`SimCluster`].
#[derive(Debug)]
struct ApiCore {
    store: Store,
    rng: Rng,
    faults: BTreeSet<Fault>,
    fault_per_mille: u64,
    faults_on: bool,
    crashed: bool,
    actor: Actor,
    indeterminate_in_bind: bool,
    /// Set when kube-scheduler gave up on the call in flight ([`Fault::FilterTimeout`]).
    abandoned: bool,
    trace: Vec<String>,
    violations: Vec<(&'static str, String)>,
    release_mode: ReleaseMode,
    lock_timeout: SignedDuration,
    malformed_seen: BTreeMap<(String, String), Timestamp>,
    event_counter: u64,
    replicas: replicas::ApiReplicas,
}

impl ApiCore {
    fn roll(&mut self, fault: Fault) -> bool {
        self.faults_on
            && self.faults.contains(&fault)
            && self.rng.chance_per_mille(self.fault_per_mille)
    }

    fn log(&mut self, line: String) {
        let at = self.store.now();
        self.trace.push(format!("{at} {line}"));
    }
}

fn lock_core(core: &Mutex<ApiCore>) -> MutexGuard<'_, ApiCore> {
    core.lock().unwrap_or_else(|p| p.into_inner())
}

fn failure(e: ApiError) -> ApiFailure {
    match e {
        ApiError::NotFound { .. } => ApiFailure::NotFound,
        ApiError::Conflict(m) => ApiFailure::Conflict(m),
        ApiError::AlreadyExists { resource, name } => {
            ApiFailure::Conflict(format!("{resource} {name} already exists"))
        }
        ApiError::Internal(m) => ApiFailure::Indeterminate(m),
        other => ApiFailure::Rejected {
            code: other.code(),
            message: other.to_string(),
        },
    }
}

/// The service's view of the simulated API: executes effects against the store, injecting faults.
#[derive(Debug, Clone)]
pub struct SimCluster {
    core: Arc<Mutex<ApiCore>>,
    /// The replica's Lease identity when replicas are elected (for the one-writer check).
    replica: Option<String>,
}

/// A future that never completes: the answer a crashed scheduler waits for.
async fn never<T>() -> T {
    std::future::pending::<T>().await
}

impl SimCluster {
    fn is_write(effect: &Effect) -> bool {
        matches!(
            effect,
            Effect::WriteLock { .. }
                | Effect::ClearLock { .. }
                | Effect::PatchPodAnnotations { .. }
                | Effect::PatchPodMetadata { .. }
                | Effect::CreateBinding { .. }
                | Effect::DeletePod { .. }
        )
    }

    /// Executes an effect synchronously; `None` means the scheduler crashed at this boundary.
    fn execute_now(&self, effect: &Effect) -> Option<Observation> {
        let mut core = lock_core(&self.core);
        if core.crashed {
            return None;
        }
        if let Some(refused) = replicas::partitioned(&core, self.replica.as_deref()) {
            return Some(refused);
        }
        if !matches!(effect, Effect::EmitEvent { .. }) && core.roll(Fault::Crash) {
            core.crashed = true;
            let line = format!("fault crash: the scheduler stops before {}", effect.kind());
            core.log(line);
            return None;
        }
        if let Some(key) = core.actor.binding().map(str::to_string)
            && core.roll(Fault::PodDeletion)
            && let Some((ns, name)) = key.split_once('/')
            && core.store.delete(Resource::Pods, Some(ns), name).is_ok()
        {
            core.log(format!(
                "fault pod-deletion: {key} deleted during its bind, before {}",
                effect.kind()
            ));
        }
        if Self::is_write(effect) && core.roll(Fault::Conflict) {
            core.log(format!("fault conflict on {}", effect.kind()));
            return Some(Observation::Failed(ApiFailure::Conflict(
                "injected conflict".into(),
            )));
        }
        if !matches!(effect, Effect::EmitEvent { .. }) && core.roll(Fault::Throttle) {
            core.log(format!("fault throttle: 429 on {}", effect.kind()));
            return Some(Observation::Failed(ApiFailure::Rejected {
                code: 429,
                message: "Too many requests, please try again later (Retry-After: 1)".into(),
            }));
        }
        if core.actor == Actor::Filter
            && matches!(effect, Effect::PatchPodMetadata { .. })
            && core.roll(Fault::FilterTimeout)
        {
            let landed = core.rng.below(2) == 0;
            if landed {
                let _ = apply_effect(&mut core, effect);
            }
            core.abandoned = true;
            core.log(format!(
                "fault filter-timeout: kube-scheduler gives up on the filter during {} ({})",
                effect.kind(),
                if landed {
                    "the write landed"
                } else {
                    "the write did not land"
                }
            ));
            return None;
        }
        // Not for two binds at once: which of the two stops first once the caller is gone would
        // depend on the service's unbiased `select!`s, and a run must replay byte for byte.
        if matches!(core.actor, Actor::Bind(_))
            && !matches!(effect, Effect::EmitEvent { .. })
            && !core.abandoned
            && core.roll(Fault::BindTimeout)
        {
            // The effect runs; its answer comes after kube-scheduler stopped waiting.
            core.abandoned = true;
            core.log(format!(
                "fault bind-timeout: kube-scheduler gives up on the bind during {}",
                effect.kind()
            ));
        }
        if !matches!(effect, Effect::EmitEvent { .. }) && core.roll(Fault::ServerError) {
            core.log(format!("fault server-error on {}", effect.kind()));
            if core.actor.binding().is_some() {
                core.indeterminate_in_bind = true;
            }
            return Some(Observation::Failed(ApiFailure::Indeterminate(
                "injected 500 Internal Server Error".into(),
            )));
        }
        if Self::is_write(effect) {
            replicas::check_one_writer(&mut core, self.replica.as_deref(), effect);
        }
        let observation = apply_effect(&mut core, effect);
        if Self::is_write(effect)
            && matches!(observation, Observation::Written { .. })
            && core.roll(Fault::LostResponse)
        {
            core.log(format!(
                "fault lost-response on {} (applied)",
                effect.kind()
            ));
            if core.actor.binding().is_some() {
                core.indeterminate_in_bind = true;
            }
            return Some(Observation::Failed(ApiFailure::Indeterminate(
                "injected lost response".into(),
            )));
        }
        Some(observation)
    }
}

/// The lock holder's state as the independent lock-safety check reads it from the store.
fn free_by_rule(core: &ApiCore, node: &str, raw: &str, now: Timestamp) -> Option<&'static str> {
    let Ok(value) = lock::parse(raw) else {
        let first = core
            .malformed_seen
            .get(&(node.to_string(), raw.to_string()))
            .copied()
            .unwrap_or(now);
        return (now.duration_since(first) > core.lock_timeout).then_some("malformed");
    };
    let expired = value.is_expired(now, core.lock_timeout);
    if expired && (core.release_mode == ReleaseMode::AfterBind || value.holder.is_none()) {
        return Some("expired");
    }
    let holder = value.holder?;
    let Ok(pod) = core
        .store
        .get(Resource::Pods, Some(&holder.namespace), &holder.name)
    else {
        return Some("dangling");
    };
    let phase = pod["status"]["phase"].as_str().unwrap_or("");
    if matches!(phase, "Succeeded" | "Failed") || pod["metadata"]["deletionTimestamp"].is_string() {
        return Some("holder finished");
    }
    let bound = pod["spec"]["nodeName"].as_str().unwrap_or("");
    if !bound.is_empty() && bound != node {
        return Some("holder elsewhere");
    }
    if core.release_mode == ReleaseMode::AfterBind && bound == node {
        return Some("holder bound");
    }
    let phase = pod["metadata"]["annotations"][BIND_PHASE]
        .as_str()
        .unwrap_or("");
    if core.release_mode == ReleaseMode::DevicePlugin
        && (phase == bind_phase::SUCCESS || phase == bind_phase::FAILED)
    {
        return Some("phase settled");
    }
    // Device-plugin mode: an expired lock is free unless its holder is mid-allocation here (bound
    // to this node, still Pending, phase allocating): handing it over then lets the device plugin serve the holder
    // another pod's devices (HAMi #3096, #781).
    let pending = matches!(pod["status"]["phase"].as_str(), None | Some("Pending"));
    (expired && !(bound == node && pending && phase == bind_phase::ALLOCATING)).then_some("expired")
}

/// Applies one effect to the store (after fault decisions), checking lock safety on lock writes.
fn apply_effect(core: &mut ApiCore, effect: &Effect) -> Observation {
    let now = core.store.now();
    let written = |r: Result<Value, ApiError>| match r {
        Ok(v) => Observation::Written {
            resource_version: v["metadata"]["resourceVersion"].as_str().map(String::from),
        },
        Err(e) => Observation::Failed(failure(e)),
    };
    match effect {
        Effect::GetPod { namespace, name } => {
            match core.store.get(Resource::Pods, Some(namespace), name) {
                Ok(v) => match serde_json::from_value::<Pod>(v) {
                    Ok(p) => Observation::Pod(PodView::from_pod(&p)),
                    Err(e) => Observation::Failed(ApiFailure::Indeterminate(e.to_string())),
                },
                Err(e) => Observation::Failed(failure(e)),
            }
        }
        Effect::GetNode { node } => match core.store.get(Resource::Nodes, None, node) {
            Ok(v) => {
                if let Some(raw) = v["metadata"]["annotations"][NODE_LOCK].as_str()
                    && lock::parse(raw).is_err()
                {
                    core.malformed_seen
                        .entry((node.clone(), raw.to_string()))
                        .or_insert(now);
                }
                match serde_json::from_value::<Node>(v) {
                    Ok(n) => Observation::Node(NodeLockView::from_node(&n)),
                    Err(e) => Observation::Failed(ApiFailure::Indeterminate(e.to_string())),
                }
            }
            Err(e) => Observation::Failed(failure(e)),
        },
        Effect::WriteLock { node, .. } | Effect::ClearLock { node, .. } => {
            let before = core.store.get(Resource::Nodes, None, node).ok();
            let old = before.as_ref().and_then(|n| {
                n["metadata"]["annotations"][NODE_LOCK]
                    .as_str()
                    .map(String::from)
            });
            let patch = effect.merge_patch().unwrap_or(Value::Null);
            let result = core.store.patch(
                Resource::Nodes,
                None,
                node,
                Part::Main,
                PatchType::Merge,
                &patch,
            );
            if result.is_ok()
                && let Some(old) = old
            {
                let new = match effect {
                    Effect::WriteLock { value, .. } => Some(value.clone()),
                    _ => None,
                };
                if new.as_deref() != Some(old.as_str()) {
                    check_lock_change(core, node, &old, new.as_deref(), now);
                }
            }
            let text = match effect {
                Effect::WriteLock { value, .. } => format!("lock {node} := {value}"),
                _ => format!("lock {node} cleared"),
            };
            let ok = result.is_ok();
            let observation = written(result);
            core.log(format!("{text}{}", if ok { "" } else { " (refused)" }));
            observation
        }
        Effect::PatchPodAnnotations {
            namespace, name, ..
        } => {
            let patch = effect.merge_patch().unwrap_or(Value::Null);
            written(core.store.patch(
                Resource::Pods,
                Some(namespace),
                name,
                Part::Main,
                PatchType::Merge,
                &patch,
            ))
        }
        Effect::PatchPodMetadata {
            namespace, name, ..
        } => {
            // The filter's write: a merge patch whose `metadata.uid` the store checks (immutable).
            let patch = effect.merge_patch().unwrap_or(Value::Null);
            let result = core.store.patch(
                Resource::Pods,
                Some(namespace),
                name,
                Part::Main,
                PatchType::Merge,
                &patch,
            );
            let ok = result.is_ok();
            core.log(format!(
                "filter patch {namespace}/{name}{}",
                if ok { "" } else { " (refused)" }
            ));
            written(result)
        }
        Effect::CreateBinding {
            namespace,
            name,
            uid,
            node,
        } => {
            let result = core.store.bind(namespace, name, node, Some(uid));
            let ok = result.is_ok();
            core.log(format!(
                "binding {namespace}/{name} -> {node}{}",
                if ok { "" } else { " (refused)" }
            ));
            written(result)
        }
        Effect::DeletePod {
            namespace,
            name,
            uid,
        } => {
            let current = core
                .store
                .get(Resource::Pods, Some(namespace), name)
                .ok()
                .and_then(|p| p["metadata"]["uid"].as_str().map(String::from));
            match current {
                None => Observation::Failed(ApiFailure::NotFound),
                Some(found) if !uid.is_empty() && &found != uid => Observation::Failed(
                    ApiFailure::Conflict(format!("precondition failed: uid {uid} is now {found}")),
                ),
                Some(_) => {
                    core.log(format!(
                        "delete pod {namespace}/{name} (stalled allocation)"
                    ));
                    written(core.store.delete(Resource::Pods, Some(namespace), name))
                }
            }
        }
        Effect::EmitEvent { pod, event } => {
            core.event_counter += 1;
            let object = json!({
                "metadata": {"name": format!("{}.{:x}", pod.name, core.event_counter), "namespace": pod.namespace},
                "involvedObject": {"kind": "Pod", "name": pod.name, "namespace": pod.namespace, "uid": pod.uid, "apiVersion": "v1"},
                "reason": event.reason,
                "message": event.message,
                "type": format!("{:?}", event.event_type),
                "source": {"component": "sliceguard-scheduler"},
                "count": 1,
                "firstTimestamp": now.to_string(),
                "lastTimestamp": now.to_string(),
            });
            core.log(format!(
                "event {}/{} {}: {}",
                pod.namespace, pod.name, event.reason, event.message
            ));
            written(
                core.store
                    .create(Resource::Events, Some(&pod.namespace), object),
            )
        }
    }
}

/// Lock safety: a lock held by X may change hands only by X's own binder, or when a rule frees it.
fn check_lock_change(core: &mut ApiCore, node: &str, old: &str, new: Option<&str>, now: Timestamp) {
    let holder = lock::parse(old)
        .ok()
        .and_then(|v| v.holder)
        .map(|h| format!("{}/{}", h.namespace, h.name));
    let own = holder.as_deref().is_some_and(|h| core.actor.binds(h));
    if own {
        return;
    }
    if free_by_rule(core, node, old, now).is_none() {
        let who = match &core.actor {
            Actor::Bind(k) => format!("the binder of {k}"),
            Actor::Binds(a, b) => format!("the binder of {a} or {b}"),
            Actor::Reaper => "the lock reaper".into(),
            Actor::Filter => "the filter".into(),
            Actor::Other => "someone".into(),
        };
        let what = match new {
            Some(v) => format!("replaced it with {v:?}"),
            None => "cleared it".into(),
        };
        core.violations.push((
            "lock-safety",
            format!(
                "node {node}: lock {old:?} (held by {}) was still in force when {who} {what}",
                holder.unwrap_or_else(|| "nobody named".into())
            ),
        ));
    }
}

impl ClusterApi for SimCluster {
    fn execute(&self, effect: &Effect) -> impl Future<Output = Observation> + Send {
        let answer = self.execute_now(effect);
        // A call kube-scheduler abandoned: the answer is not ready at once, so the caller's future
        // is dropped before the bind's task sees it.
        let late = answer.is_some() && lock_core(&self.core).abandoned;
        async move {
            if late {
                tokio::task::yield_now().await;
            }
            match answer {
                Some(observation) => observation,
                None => never().await,
            }
        }
    }
}

/// One `/bind` kube-scheduler sends: the pod, the node it names, the node the filter chose (they
/// differ under the stale-bind fault), and the other pod bound at the same time, if any.
#[derive(Clone, Copy)]
struct BindAttempt<'a> {
    key: &'a str,
    pod: &'a Pod,
    node: &'a str,
    chosen: &'a str,
    stale: bool,
    in_flight_with: Option<&'a str>,
}

/// A running scheduler instance: the service and the runtime its async functions run on.
struct Instance {
    runtime: tokio::runtime::Runtime,
    service: Arc<Scheduler<SimCluster>>,
}

/// The simulated world.
pub struct World {
    config: SimConfig,
    core: Arc<Mutex<ApiCore>>,
    rng: Rng,
    scheduler: Option<Instance>,
    queue: SchedulingQueue<Timestamp>,
    delivered: u64,
    watch_down_until: Option<Timestamp>,
    silent_plugins: BTreeSet<String>,
    violations: Vec<WorldViolation>,
    step: u64,
    bound_at: Vec<(String, Timestamp)>,
    /// The pods kube-scheduler's stand-in sent to `/filter` since [`World::settle_queue`] last
    /// began a pass.
    attempted: BTreeSet<String>,
    /// Check the invariants after every `check_every`-th step; 0: only on [`World::check`].
    check_every: u64,
    /// The tenant fault's actors.
    tenants: crate::tenant::Tenants,
    /// What the store's pods and nodes add up to and what running containers were granted, kept
    /// up to date after every step; what the invariant checks read.
    books: books::Books,
    /// Recount the books from scratch (and check every device and pod) after every
    /// `recount_every`-th check; 0: only at the end of a run.
    recount_every: u64,
    /// Times a scheduler's view was rebuilt from a fresh list (restart, new term, reconnect).
    view_rebuilds: std::cell::Cell<u64>,
    /// The leader's view (its service and [`World::view_rebuilds`]) when agreement was last
    /// checked: a different one is compared whole.
    agreement_view: Option<(usize, u64)>,
    /// What the leader's host CPU was last compared on (see [`host_cpu`]).
    host_cpu_compared: std::cell::RefCell<Option<host_cpu::Compared>>,
    /// Host CPU comparisons made (the `host-cpu` check's coverage).
    host_cpu_comparisons: std::cell::Cell<u64>,
    /// Checks run so far.
    checks: u64,
    /// The stored pods no node holds yet.
    unbound: unbound::UnboundPods,
    /// Pods taken out of the scheduling queue since the last step.
    dequeued: Vec<String>,
    /// The second sliceguard replica and the election (inert unless a replica fault is enabled).
    replicas: replicas::Replicas,
    /// Nodes removed so far: what a stale kube-scheduler view may still offer.
    gone_nodes: Vec<String>,
    /// Pods the stale-view fault deleted under kube-scheduler's feet; once the scheduler's view has
    /// caught up, its ledger must hold nothing for them.
    stale_victims: BTreeSet<String>,
    /// Devices over their registered capacity because a node re-registered with less (the
    /// node-shrink fault), with the usage tolerated there; it only shrinks as that usage goes.
    overcommit: sliceguard_invariants::checks::Overcommit,
    /// The store's resourceVersion at each node's last re-registration with less memory: a filter
    /// whose view had not reached it decided on the old capacity.
    shrunk_at: BTreeMap<String, u64>,
    /// The oldest view (delivered resourceVersion) a filter decided on since the last check.
    oldest_decision_view: Option<u64>,
    /// `fragmentation` verdicts the memos held at each check, summed over checks (the check judges
    /// again each one a decision could still find).
    memo_verdicts_checked: u64,
    /// Index differences already reported.
    index_reported: BTreeSet<String>,
    /// The `cpu-only-pod` fault's random stream and pod names.
    cpu_only: cpu_only::CpuOnlyWork,
}

impl fmt::Debug for World {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("World")
            .field("config", &self.config)
            .field("step", &self.step)
            .finish_non_exhaustive()
    }
}

/// How many checks pass between two recounts of the books from scratch, unless the configuration
/// ([`SimConfig::recount_every`]) says otherwise: a bookkeeping error is reported within 256 steps
/// (about four minutes of virtual time). The recount took 5 % of a campaign's time at every 64
/// checks (measured); at every 256 it should take about a quarter of that (not measured).
pub const DEFAULT_RECOUNT_EVERY: u64 = 256;

/// The time every world starts at.
pub const EPOCH: &str = "2026-01-01T00:00:00Z";

impl World {
    /// A world with the configured fleet, no pods, and a scheduler about to start.
    pub fn new(config: SimConfig) -> World {
        let start: Timestamp = EPOCH.parse().expect("EPOCH is RFC 3339");
        let mut store = Store::new(start);
        for node in sliceguard::objects::fleet(&config.fleet, start) {
            if let Ok(v) = serde_json::to_value(node) {
                store
                    .create(Resource::Nodes, None, v)
                    .expect("a fresh fleet node is valid");
            }
        }
        let config_faults = config.faults.clone();
        let config_seed = config.seed;
        let core = ApiCore {
            store,
            rng: Rng::new(config.seed.wrapping_mul(31).wrapping_add(7)),
            faults: config.faults.clone(),
            fault_per_mille: config.fault_per_mille,
            faults_on: true,
            crashed: false,
            abandoned: false,
            actor: Actor::Other,
            indeterminate_in_bind: false,
            trace: Vec::new(),
            violations: Vec::new(),
            release_mode: config.lock_release,
            lock_timeout: config.lock_timeout,
            malformed_seen: BTreeMap::new(),
            event_counter: 0,
            replicas: replicas::ApiReplicas::default(),
        };
        World {
            rng: Rng::new(config.seed),
            tenants: crate::tenant::Tenants::new(config.seed),
            books: books::Books::default(),
            recount_every: config.recount_every,
            view_rebuilds: std::cell::Cell::new(0),
            agreement_view: None,
            host_cpu_compared: std::cell::RefCell::new(None),
            host_cpu_comparisons: std::cell::Cell::new(0),
            checks: 0,
            unbound: unbound::UnboundPods::default(),
            dequeued: Vec::new(),
            config,
            core: Arc::new(Mutex::new(core)),
            scheduler: None,
            queue: SchedulingQueue::default(),
            delivered: 0,
            watch_down_until: None,
            silent_plugins: BTreeSet::new(),
            violations: Vec::new(),
            step: 0,
            bound_at: Vec::new(),
            attempted: BTreeSet::new(),
            check_every: 1,
            replicas: replicas::Replicas::new(&config_faults),
            gone_nodes: Vec::new(),
            stale_victims: BTreeSet::new(),
            overcommit: Default::default(),
            shrunk_at: BTreeMap::new(),
            oldest_decision_view: None,
            memo_verdicts_checked: 0,
            index_reported: BTreeSet::new(),
            cpu_only: cpu_only::CpuOnlyWork::new(config_seed),
        }
    }

    fn core(&self) -> MutexGuard<'_, ApiCore> {
        lock_core(&self.core)
    }

    /// The current virtual time.
    pub fn now(&self) -> Timestamp {
        self.core().store.now()
    }

    /// The configuration.
    pub fn config(&self) -> &SimConfig {
        &self.config
    }

    /// Runs `f` on the store.
    pub fn with_store<T>(&self, f: impl FnOnce(&Store) -> T) -> T {
        f(&self.core().store)
    }

    /// Runs `f` on the store, mutably (the test driver acting as a person with kubectl).
    pub fn with_store_mut<T>(&mut self, f: impl FnOnce(&mut Store) -> T) -> T {
        f(&mut self.core().store)
    }

    /// Everything that happened, one line per event, in order.
    pub fn trace(&self) -> Vec<String> {
        self.core().trace.clone()
    }

    /// The trace lines from index `from` on (a loop reading new lines need not clone the whole trace).
    pub fn trace_since(&self, from: usize) -> Vec<String> {
        self.core()
            .trace
            .get(from..)
            .map(<[String]>::to_vec)
            .unwrap_or_default()
    }

    /// Checks the safety invariants after every `k`-th step instead of after every step; with 0,
    /// only when [`World::check`] is called. For throughput measurements (`make bench`), which
    /// must still call [`World::check`] at the end: lock-safety and protocol findings are recorded
    /// as they happen and reported by the next check, but capacity and agreement are only looked
    /// at when a check runs. Every correctness test keeps the default, 1.
    pub fn set_check_every(&mut self, k: u64) {
        self.check_every = k;
    }

    /// Steps taken so far.
    pub fn step_count(&self) -> u64 {
        self.step
    }

    /// The invariant violations seen so far.
    pub fn violations(&self) -> &[WorldViolation] {
        &self.violations
    }

    /// When each pod was bound, in order.
    pub fn bound_at(&self) -> &[(String, Timestamp)] {
        &self.bound_at
    }

    /// Turns fault injection on or off (liveness is checked with faults off).
    pub fn set_faults(&mut self, on: bool) {
        self.core().faults_on = on;
        if !on {
            self.silent_plugins.clear();
            self.watch_down_until = None;
        }
    }

    pub(crate) fn log(&self, line: String) {
        self.core().log(line);
    }

    /// True when `fault` is enabled and faults are on.
    pub fn fault_active(&self, fault: Fault) -> bool {
        let core = self.core();
        core.faults_on && core.faults.contains(&fault)
    }

    /// Answers an AdmissionReview with the running scheduler's webhook (`None`: none runs).
    pub fn admission_review(&mut self, review: &Value) -> Option<Result<Value, String>> {
        self.ensure_scheduler();
        let instance = self.scheduler.as_ref()?;
        Some(
            instance
                .service
                .admit(review.to_string().as_bytes())
                .map_err(|e| e.to_string()),
        )
    }

    fn roll(&mut self, fault: Fault) -> bool {
        let core = self.core();
        let on = core.faults_on && core.faults.contains(&fault);
        let rate = core.fault_per_mille;
        drop(core);
        on && self.rng.chance_per_mille(rate)
    }

    // ---- the person at the keyboard ----

    /// Creates a pod through the webhook (sliceguard's AdmissionReview handler, in process).
    pub fn create_pod(&mut self, pod: &Pod) -> Result<String, String> {
        self.ensure_scheduler();
        let mut object = serde_json::to_value(pod).map_err(|e| e.to_string())?;
        let namespace = object["metadata"]["namespace"]
            .as_str()
            .unwrap_or("default")
            .to_string();
        object["metadata"]["namespace"] = json!(namespace);
        if object["spec"]["schedulerName"]
            .as_str()
            .is_none_or(str::is_empty)
        {
            object["spec"]["schedulerName"] = json!("default-scheduler");
        }
        let review = json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {
            "uid": format!("review-{}", self.step), "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"}, "namespace": namespace,
            "operation": "CREATE", "userInfo": {}, "object": object}});
        let instance = self.scheduler.as_ref().ok_or("no scheduler")?;
        let answer = instance
            .service
            .admit(review.to_string().as_bytes())
            .map_err(|e| e.to_string())?;
        let response = &answer["response"];
        if response["allowed"] != true {
            let message = response["status"]["message"]
                .as_str()
                .unwrap_or("denied")
                .to_string();
            self.log(format!(
                "webhook denied {namespace}/{}: {message}",
                object["metadata"]["name"].as_str().unwrap_or("")
            ));
            return Err(message);
        }
        if let Some(patch) = response["patch"].as_str() {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(patch)
                .map_err(|e| e.to_string())?;
            let patch: json_patch::Patch =
                serde_json::from_slice(&bytes).map_err(|e| e.to_string())?;
            json_patch::patch(&mut object, &patch).map_err(|e| e.to_string())?;
        }
        let created = self
            .core()
            .store
            .create(Resource::Pods, Some(&namespace), object)
            .map_err(|e| e.to_string())?;
        let key = format!(
            "{namespace}/{}",
            created["metadata"]["name"].as_str().unwrap_or("")
        );
        self.log(format!(
            "created pod {key} (schedulerName {})",
            created["spec"]["schedulerName"].as_str().unwrap_or("")
        ));
        let now = self.now();
        self.queue.add(key.clone(), now);
        Ok(key)
    }

    /// Deletes a pod (immediately, as `kubectl delete --force` does).
    pub fn delete_pod(&mut self, key: &str) -> bool {
        let Some((ns, name)) = key.split_once('/') else {
            return false;
        };
        let deleted = self
            .core()
            .store
            .delete(Resource::Pods, Some(ns), name)
            .is_ok();
        if deleted {
            self.log(format!("deleted pod {key}"));
        }
        deleted
    }

    /// Adds a node with `gpus` GPUs of `memory_mib`.
    pub fn add_node(&mut self, name: &str, gpus: usize, memory_mib: u32) -> bool {
        let spec = FleetSpec {
            gpus_per_node: gpus,
            memory_mib,
            ..self.config.fleet.clone()
        };
        let devices = sliceguard::objects::fleet_devices(name, &spec);
        let now = self.now();
        let node = sliceguard::objects::gpu_node(name, &devices, now);
        let Ok(value) = serde_json::to_value(node) else {
            return false;
        };
        let ok = self
            .core()
            .store
            .create(Resource::Nodes, None, value)
            .is_ok();
        if ok {
            self.log(format!(
                "added node {name} ({gpus} GPUs of {memory_mib} MiB)"
            ));
        }
        ok
    }

    /// The node-shrink fault: a random node's register annotation rewritten with half the memory
    /// per device; the devices it leaves over capacity join the tolerated over-commit.
    fn shrink_a_node(&mut self) {
        let names = self.node_names();
        if names.is_empty() {
            return;
        }
        let name = names[self.rng.below(names.len() as u64) as usize].clone();
        let Ok(node) = self.core().store.get(Resource::Nodes, None, &name) else {
            return;
        };
        let Some(raw) = node["metadata"]["annotations"][NODE_REGISTER].as_str() else {
            return;
        };
        let Ok(Value::Array(mut devices)) = serde_json::from_str::<Value>(raw) else {
            return;
        };
        // Down to 1 GiB at the least: a fleet of empty cards tests nothing.
        if devices
            .iter()
            .any(|d| d["devmem"].as_u64().is_none_or(|m| m < 2048))
        {
            return;
        }
        for device in &mut devices {
            if let Some(mem) = device["devmem"].as_u64() {
                device["devmem"] = json!(mem / 2);
            }
        }
        let patch = json!({"metadata": {"annotations": {
            NODE_REGISTER: Value::Array(devices).to_string()
        }}});
        let patched = self.core().store.patch(
            Resource::Nodes,
            None,
            &name,
            Part::Main,
            PatchType::Merge,
            &patch,
        );
        if patched.is_err() {
            return;
        }
        self.log(format!(
            "fault node-shrink: {name} re-registers its devices with half the memory"
        ));
        let rv = self.core().store.resource_version();
        self.shrunk_at.insert(name.clone(), rv);
        self.tolerate_overcommit_on(None);
    }

    /// Adds what is over capacity now (on `node`, or everywhere) to the tolerated over-commit.
    fn tolerate_overcommit_on(&mut self, node: Option<&str>) {
        self.sync_books();
        let found =
            sliceguard_invariants::checks::overcommitted(&self.books.registry, &self.books.live);
        for (device, usage) in found {
            if node.is_some_and(|n| n != device.0) {
                continue;
            }
            let tolerated = self.overcommit.entry(device).or_default();
            tolerated.mem = tolerated.mem.max(usage.mem);
            tolerated.cores = tolerated.cores.max(usage.cores);
            tolerated.tasks = tolerated.tasks.max(usage.tasks);
        }
    }

    /// Brings the books up to date with the store.
    fn sync_books(&mut self) {
        let core = lock_core(&self.core);
        self.books.sync(&core.store);
    }

    /// A decision never adds to a device already over its registered capacity: checked when a
    /// filter chose `node` for `key` while the scheduler's view was caught up with the store. A
    /// view that had not yet seen the node re-register with less memory decided on the old
    /// capacity, as HAMi would; [`World::check`] tolerates what such decisions put over capacity.
    fn judge_decision_capacity(&mut self, key: &str, node: &str, view_rv: u64, caught_up: bool) {
        if caught_up && self.shrunk_at.get(node).is_none_or(|rv| *rv <= view_rv) {
            self.check_decision_on_overfull(key);
        }
    }

    fn check_decision_on_overfull(&mut self, key: &str) {
        self.sync_books();
        let Some(pod) = self.pod(key) else {
            return;
        };
        let annotations = pod.metadata.annotations.as_ref();
        let Some(node) = annotations.and_then(|a| a.get(VGPU_NODE)) else {
            return;
        };
        let Some(allocation) = annotations
            .and_then(|a| a.get(sliceguard::annotations::DEVICES_ALLOCATED))
            .and_then(|v| sliceguard_invariants::recount::decode(v))
        else {
            return;
        };
        let Some(info) = self.books.registry.get(node) else {
            return;
        };
        let mut found = Vec::new();
        for entry in allocation.iter().flatten() {
            let Some(device) = info.devices.iter().find(|d| d.id == entry.uuid) else {
                continue;
            };
            // What the other pods hold: the device's load without this pod's own holding.
            let mut load = self.books.live.load(node, &entry.uuid);
            load.remove_holder(key);
            let sums = sliceguard_invariants::checks::device_sums(&load);
            if sliceguard_invariants::checks::over_capacity(&sums, device) {
                found.push(format!(
                    "the filter's decision for {key} adds {} MiB and {} cores to {} on {node}, which other pods already held over its registered capacity ({} of {} MiB, {} of {} cores, {} of {} tasks)",
                    entry.mem, entry.cores, entry.uuid, load.mem, device.devmem, load.cores, device.devcore, load.tasks, device.count
                ));
            }
        }
        for v in found {
            self.violation("overfull-decision", v);
        }
    }

    /// Deletes a node.
    pub fn remove_node(&mut self, name: &str) -> bool {
        let ok = self
            .core()
            .store
            .delete(Resource::Nodes, None, name)
            .is_ok();
        if ok {
            self.log(format!("removed node {name}"));
            self.gone_nodes.push(name.to_string());
        }
        ok
    }

    /// Crashes the scheduler now; it restarts on the next step.
    pub fn crash_scheduler(&mut self) {
        if self.scheduler.take().is_some() {
            self.log("scheduler crashed (operator)".into());
        }
    }

    /// Advances the clock.
    pub fn advance(&mut self, by: SignedDuration) {
        let mut core = self.core();
        let now = core.store.now() + by;
        core.store.set_time(now);
    }

    /// Every node name, in order.
    pub fn node_names(&self) -> Vec<String> {
        self.core()
            .store
            .typed_shared::<Node>(Resource::Nodes)
            .iter()
            .filter_map(|n| n.metadata.name.clone())
            .collect()
    }

    /// Every pod key, in order, but for the CPU-only pods kube-scheduler placed under the
    /// `cpu-only-pod` fault (kept apart, so that what other faults and operations pick by index
    /// does not depend on whether that fault is on).
    pub fn pod_keys(&self) -> Vec<String> {
        self.core()
            .store
            .objects(Resource::Pods)
            .map(|p| {
                format!(
                    "{}/{}",
                    p["metadata"]["namespace"].as_str().unwrap_or_default(),
                    p["metadata"]["name"].as_str().unwrap_or_default()
                )
            })
            .filter(|key| !cpu_only::is_cpu_only_work(key))
            .collect()
    }

    /// A pod by key.
    pub fn pod(&self, key: &str) -> Option<Pod> {
        let (ns, name) = key.split_once('/')?;
        let v = self.core().store.get(Resource::Pods, Some(ns), name).ok()?;
        serde_json::from_value(v).ok()
    }

    /// The lock annotation of every node that has one.
    pub fn locks(&self) -> BTreeMap<String, String> {
        self.core()
            .store
            .typed_shared::<Node>(Resource::Nodes)
            .iter()
            .filter_map(|n| {
                let lock = n.metadata.annotations.as_ref()?.get(NODE_LOCK)?.clone();
                Some((n.metadata.name.clone()?, lock))
            })
            .collect()
    }

    // ---- the step ----

    fn ensure_scheduler(&mut self) {
        if self.core().crashed {
            self.core().crashed = false;
            if self.scheduler.take().is_some() {
                self.log("scheduler instance dropped after its crash".into());
            }
        }
        if self.scheduler.is_some() {
            return;
        }
        let identity = self.replicas.primary_identity();
        let Some((instance, rv)) = self.new_instance(identity) else {
            return;
        };
        self.delivered = rv;
        self.scheduler = Some(instance);
        self.log("scheduler started (re-listed nodes and pods)".into());
    }

    /// A fresh scheduler instance (elected as `identity` when replicas are), with nodes and pods
    /// listed from the store; and the resourceVersion it listed at.
    fn new_instance(&self, identity: Option<String>) -> Option<(Instance, u64)> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .ok()?;
        let clock = replicas::clock(&self.core, identity.clone());
        let mut config = SchedulerConfig {
            scheduler_name: self.config.scheduler_name.clone(),
            ..SchedulerConfig::default()
        };
        config.webhook.scheduler_name = self.config.scheduler_name.clone();
        config.bind.release_mode = self.config.lock_release;
        config.bind.lock_timeout = self.config.lock_timeout;
        let mut service = Scheduler::new(
            SimCluster {
                core: Arc::clone(&self.core),
                replica: identity.clone(),
            },
            config,
            clock,
        );
        if let Some(identity) = identity {
            service = service.with_leader_election(replicas::settings(identity));
        }
        let service = Arc::new(service);
        let rv = self.relist(&service);
        Some((Instance { runtime, service }, rv))
    }

    /// Lists nodes and pods from the store into `service`'s view; returns the resourceVersion.
    fn relist(&self, service: &Scheduler<SimCluster>) -> u64 {
        let (nodes, pods, rv) = {
            let core = self.core();
            (
                core.store.typed_shared::<Node>(Resource::Nodes),
                core.store.typed_shared::<Pod>(Resource::Pods),
                core.store.resource_version(),
            )
        };
        replace_view(service, &nodes, &pods);
        self.view_rebuilds.set(self.view_rebuilds.get() + 1);
        rv
    }

    /// Runs a service call; `None` if the scheduler crashed during it (the instance is then dropped).
    fn call<F, T>(
        &mut self,
        actor: Actor,
        f: impl FnOnce(Arc<Scheduler<SimCluster>>) -> F,
    ) -> Option<T>
    where
        F: Future<Output = T>,
    {
        let instance = self.scheduler.as_ref()?;
        self.core().actor = actor;
        let core = Arc::clone(&self.core);
        let service = Arc::clone(&instance.service);
        let result = instance.runtime.block_on(async move {
            let call = f(service);
            tokio::pin!(call);
            loop {
                tokio::select! {
                    biased;
                    out = &mut call => return Some(out),
                    () = tokio::task::yield_now() => {
                        let core = lock_core(&core);
                        if core.crashed || core.abandoned {
                            return None;
                        }
                    }
                }
            }
        });
        if result.is_none() && std::mem::take(&mut self.core().abandoned) {
            // kube-scheduler hung up: the call's future was dropped, the instance lives on. A bind
            // task runs on by itself (as the actor it was) until it stops at an effect boundary.
            let core = Arc::clone(&self.core);
            let service = Arc::clone(&instance.service);
            instance.runtime.block_on(async move {
                while service.binds_in_flight() > 0 && !lock_core(&core).crashed {
                    tokio::task::yield_now().await;
                }
            });
            self.core().actor = Actor::Other;
            self.log("kube-scheduler abandoned the call; the pod is retried later".into());
            if !self.core().crashed {
                return None;
            }
        }
        self.core().actor = Actor::Other;
        if result.is_none() {
            self.scheduler = None;
            self.core().crashed = false;
            self.log("scheduler crashed; it restarts on the next step".into());
        }
        result
    }

    fn deliver_watch_events(&mut self) {
        let now = self.now();
        if let Some(until) = self.watch_down_until {
            if now < until {
                return;
            }
            self.watch_down_until = None;
            let (nodes, pods, rv) = {
                let core = self.core();
                (
                    core.store.typed_shared::<Node>(Resource::Nodes),
                    core.store.typed_shared::<Pod>(Resource::Pods),
                    core.store.resource_version(),
                )
            };
            if let Some(instance) = &self.scheduler {
                replace_view(&instance.service, &nodes, &pods);
                self.view_rebuilds.set(self.view_rebuilds.get() + 1);
            }
            self.delivered = rv;
            self.log("watches reconnected (re-listed nodes and pods)".into());
            return;
        }
        if self.roll(Fault::WatchDisconnect) {
            self.watch_down_until =
                Some(now + SignedDuration::from_secs(5 + self.rng.below(20) as i64));
            self.log("fault watch-disconnect: the scheduler's watches drop".into());
            return;
        }
        let events: Vec<_> = {
            let core = self.core();
            match core.store.events_after(self.delivered) {
                Ok(events) => events.cloned().collect(),
                Err(_) => Vec::new(),
            }
        };
        let Some(instance) = &self.scheduler else {
            return;
        };
        feed(&instance.service, &events);
        if let Some(last) = events.last() {
            self.delivered = last.rv;
        }
    }

    fn eligible_nodes(&self, pod: &Pod) -> Vec<String> {
        let nodes = self.core().store.typed_shared::<Node>(Resource::Nodes);
        offer(nodes.iter().map(|n| &**n), pod).eligible
    }

    fn schedule_one(&mut self) {
        let now = self.now();
        let Some(key) = self.queue.next_due(now) else {
            return;
        };
        let Some(pod) = self.pod(&key) else {
            self.dequeue(&key);
            return;
        };
        let spec = pod.spec.clone().unwrap_or_default();
        if spec.node_name.as_deref().is_some_and(|n| !n.is_empty()) {
            self.dequeue(&key);
            return;
        }
        let mut nodes = self.eligible_nodes(&pod);
        let ours = spec.scheduler_name.as_deref() == Some(self.config.scheduler_name.as_str());
        // A stale view: kube-scheduler's informers have not seen a deletion yet (of the pod before
        // its filter, of a node; of the pod before its bind, below).
        if ours && self.roll(Fault::StaleView) {
            match self.rng.below(2) {
                0 => {
                    self.log(format!(
                        "fault stale-view: kube-scheduler filters {key}, already deleted"
                    ));
                    self.delete_pod(&key);
                    self.stale_victims.insert(key.clone());
                    // Sometimes sliceguard's own watch has already delivered the deletion: its view
                    // has no such pod, and no later event will end an assumption made for it.
                    if self.rng.below(2) == 0 {
                        self.deliver_watch_events();
                    }
                }
                _ => {
                    let gone: Vec<String> = self
                        .gone_nodes
                        .iter()
                        .filter(|n| !nodes.contains(n) && !self.node_names().contains(n))
                        .cloned()
                        .collect();
                    if !gone.is_empty() {
                        let node = gone[self.rng.below(gone.len() as u64) as usize].clone();
                        self.log(format!(
                            "fault stale-view: kube-scheduler offers {node}, a node already gone, for {key}"
                        ));
                        nodes.push(node);
                    }
                }
            }
        }
        if !ours {
            // A plain default placement: the first eligible node.
            if let Some(node) = nodes.first() {
                let (ns, name) = key.split_once('/').unwrap_or(("default", ""));
                let _ = self.core().store.bind(ns, name, node, None);
                self.log(format!("default-scheduler bound {key} -> {node}"));
                self.dequeue(&key);
            } else {
                self.back_off(&key);
            }
            return;
        }
        let offered = nodes.clone();
        let Some((result, view_rv, view_caught_up)) = self.send_filter(&key, &pod, nodes) else {
            return;
        };
        let chosen = result.node_names.as_ref().and_then(|n| n.first().cloned());
        let Some(node) = chosen.filter(|_| result.error.is_empty()) else {
            let why = if result.error.is_empty() {
                format!("{:?}", result.failed_nodes.unwrap_or_default())
            } else {
                result.error
            };
            self.log(format!("filter {key}: unschedulable: {why}"));
            self.back_off(&key);
            return;
        };
        self.log(format!("filter {key} -> {node}"));
        if self.pod(&key).is_some() {
            self.judge_decision_capacity(&key, &node, view_rv, view_caught_up);
        }
        let chosen = node.clone();
        let stale = offered.iter().any(|n| *n != chosen) && self.roll(Fault::StaleBind);
        let node = if stale {
            let others: Vec<&String> = offered.iter().filter(|n| **n != chosen).collect();
            let other = others[self.rng.below(others.len() as u64) as usize].clone();
            self.log(format!(
                "fault stale-bind: kube-scheduler binds {key} to {other}, not the filter's {chosen}"
            ));
            other
        } else {
            chosen.clone()
        };
        if self.roll(Fault::StaleView) {
            self.log(format!(
                "fault stale-view: kube-scheduler binds {key}, deleted since its filter"
            ));
            self.delete_pod(&key);
            self.stale_victims.insert(key.clone());
        }
        // kube-scheduler runs binding cycles concurrently: another pod's cycle may bind to the same
        // node while this one does.
        // Concurrent binding cycles are kube-scheduler's normal behaviour, so this one is tried ten
        // times as often as a fault proper.
        let rate = (self.core().fault_per_mille * 10).min(1000);
        let partner = if self.fault_active(Fault::ConcurrentBind) && self.rng.chance_per_mille(rate)
        {
            self.partner_for(&key, &node)
        } else {
            None
        };
        // kube-scheduler binds with the pod it scheduled; the annotations the filter wrote are on the API.
        let args = binding_args(&pod, &node);
        self.core().indeterminate_in_bind = false;
        let trace_before_bind = self.core().trace.len();
        let Some((partner_key, partner_pod)) = partner else {
            let Some(result) = self.call(Actor::Bind(key.clone()), move |svc| async move {
                svc.bind(args).await
            }) else {
                self.back_off(&key);
                return;
            };
            let attempt = BindAttempt {
                key: &key,
                pod: &pod,
                node: &node,
                chosen: &chosen,
                stale,
                in_flight_with: None,
            };
            self.settle_bind(&attempt, result, trace_before_bind);
            return;
        };
        self.log(format!(
            "fault concurrent-bind: kube-scheduler binds {key} and {partner_key} to {node} at once"
        ));
        let partner_args = binding_args(&partner_pod, &node);
        let Some((result, partner_result)) = self.call(
            Actor::Binds(key.clone(), partner_key.clone()),
            move |svc| async move { tokio::join!(svc.bind(args), svc.bind(partner_args)) },
        ) else {
            self.back_off(&key);
            self.back_off(&partner_key);
            return;
        };
        let first = BindAttempt {
            key: &key,
            pod: &pod,
            node: &node,
            chosen: &chosen,
            stale,
            in_flight_with: Some(&partner_key),
        };
        self.settle_bind(&first, result, trace_before_bind);
        let second = BindAttempt {
            key: &partner_key,
            pod: &partner_pod,
            node: &node,
            chosen: &node,
            stale: false,
            in_flight_with: Some(&key),
        };
        self.settle_bind(&second, partner_result, trace_before_bind);
    }

    /// kube-scheduler's `/filter` call for `key` with `nodes`: the answer, the view it was decided
    /// on (the delivered resourceVersion) and whether that view had caught up with the store.
    /// `None` when the call did not answer (a crash, an abandoned call): the pod backs off.
    fn send_filter(
        &mut self,
        key: &str,
        pod: &Pod,
        nodes: Vec<String>,
    ) -> Option<(
        sliceguard::server::extender::ExtenderFilterResult,
        u64,
        bool,
    )> {
        self.attempted.insert(key.to_string());
        let view_rv = self.delivered;
        self.oldest_decision_view = Some(
            self.oldest_decision_view
                .map_or(view_rv, |v| v.min(view_rv)),
        );
        let caught_up = self.watch_down_until.is_none()
            && self.delivered == self.core().store.resource_version();
        let args = filter_args(pod, nodes);
        let Some(result) = self.call(
            Actor::Filter,
            move |svc| async move { svc.filter(args).await },
        ) else {
            self.back_off(key);
            return None;
        };
        Some((result, view_rv, caught_up))
    }

    /// Another pod of sliceguard's, due now, whose filter also chooses `node`: the partner of a
    /// concurrent bind. Its filter runs here (the scheduling cycles stay one at a time).
    fn partner_for(&mut self, key: &str, node: &str) -> Option<(String, Pod)> {
        let now = self.now();
        let ours = |p: &Pod| {
            let spec = p.spec.clone().unwrap_or_default();
            spec.node_name.is_none()
                && spec.scheduler_name.as_deref() == Some(self.config.scheduler_name.as_str())
        };
        let (other, pod, nodes) = self
            .queue
            .due(now)
            .into_iter()
            .filter(|k| k != key)
            .filter_map(|k| self.pod(&k).map(|p| (k, p)))
            .filter(|(_, p)| ours(p))
            .map(|(k, p)| {
                let nodes = self.eligible_nodes(&p);
                (k, p, nodes)
            })
            .find(|(_, _, nodes)| nodes.iter().any(|n| n == node))?;
        let (result, view_rv, view_caught_up) = self.send_filter(&other, &pod, nodes)?;
        match result.node_names.as_ref().and_then(|n| n.first()) {
            Some(chosen) if result.error.is_empty() => {
                self.log(format!("filter {other} -> {chosen}"));
                if self.pod(&other).is_some() {
                    self.judge_decision_capacity(&other, chosen, view_rv, view_caught_up);
                }
                if chosen == node {
                    return Some((other, pod));
                }
                // Bound later, on its own turn; the filter's assumption stands meanwhile.
                None
            }
            _ => {
                self.log(format!("filter {other}: unschedulable: {:?}", result.error));
                self.back_off(&other);
                None
            }
        }
    }

    /// What kube-scheduler makes of a bind's answer, and the checks on it: the protocol (success
    /// iff the Binding exists, never for a node the filter did not choose), lock liveness on a
    /// contention refusal, and the queue.
    fn settle_bind(
        &mut self,
        attempt: &BindAttempt<'_>,
        result: sliceguard::server::extender::ExtenderBindingResult,
        trace_before_bind: usize,
    ) {
        let BindAttempt {
            key,
            pod,
            node,
            chosen,
            stale,
            in_flight_with,
        } = *attempt;
        let now = self.now();
        let bound_here = self.pod(key).and_then(|p| p.spec?.node_name).as_deref() == Some(node);
        let indeterminate = self.core().indeterminate_in_bind;
        if stale && result.error.is_empty() && gpu_request(pod) > 0 {
            self.violation(
                "protocol",
                format!(
                    "bind of {key} to {node} succeeded although the filter chose {chosen}: a GPU pod bound where the ledger never counted its devices"
                ),
            );
        }
        if result.error.is_empty() {
            self.log(format!("bind {key} -> {node}: ok"));
            if !bound_here && self.pod(key).is_some() {
                self.violation(
                    "protocol",
                    format!(
                        "bind of {key} to {node} reported success but the pod is not bound there"
                    ),
                );
            }
            self.bound_at.push((key.to_string(), now));
            self.dequeue(key);
        } else {
            self.log(format!("bind {key} -> {node}: {}", result.error));
            if result.error.contains("has been locked within") {
                self.judge_lock_refusal(key, node, trace_before_bind, in_flight_with);
            }
            if bound_here && !indeterminate {
                self.violation(
                    "protocol",
                    format!(
                        "bind of {key} to {node} reported {:?} but the Binding exists",
                        result.error
                    ),
                );
            }
            if bound_here {
                self.bound_at.push((key.to_string(), now));
                self.dequeue(key);
            } else {
                self.back_off(key);
            }
        }
    }

    /// Lock liveness at the moment of a refusal: a bind refused for contention must have met a
    /// lock that stands. It does not when the lock names the pod being bound (re-entrant), or when
    /// the world's own reading of the takeover rules ([`free_by_rule`], the one lock safety uses)
    /// finds it free: a holder gone, finished, bound elsewhere (or here, in `after-bind` mode), its
    /// phase settled, an expired lock whose holder is not mid-allocation, a malformed value past
    /// the timeout. The holder is read from the API as the binder read it (nothing else moves inside
    /// a call, except the other bind of a pair in flight at once, whose lock is therefore not
    /// judged); a fault on the bind's own reads or writes excuses the step, since a binder that
    /// could not read may refuse.
    fn judge_lock_refusal(
        &mut self,
        key: &str,
        node: &str,
        trace_from: usize,
        in_flight_with: Option<&str>,
    ) {
        let now = self.now();
        let verdict = {
            let core = self.core();
            let excused = core.trace[trace_from..].iter().any(|line| {
                let text = line.split_once(' ').map_or(line.as_str(), |(_, t)| t);
                text.starts_with("fault ")
                    && [
                        "get-pod",
                        "get-node",
                        "write-lock",
                        "replica",
                        "crash",
                        "partition",
                    ]
                    .iter()
                    .any(|k| text.contains(k))
            });
            let value = core
                .store
                .get(Resource::Nodes, None, node)
                .ok()
                .and_then(|n| {
                    n["metadata"]["annotations"][NODE_LOCK]
                        .as_str()
                        .map(str::to_string)
                });
            value.and_then(|value| {
                let holder = lock::parse(&value)
                    .ok()
                    .and_then(|v| v.holder)
                    .map(|h| format!("{}/{}", h.namespace, h.name));
                if excused || (in_flight_with.is_some() && holder.as_deref() == in_flight_with) {
                    return None;
                }
                let why = if holder.as_deref() == Some(key) {
                    Some("names the pod being bound (the lock is re-entrant)")
                } else {
                    free_by_rule(&core, node, &value, now)
                }?;
                Some((value, why))
            })
        };
        if let Some((value, why)) = verdict {
            self.violation(
                "lock-liveness",
                format!(
                    "the bind of {key} to {node} was refused for contention, but the lock {value:?} was free ({why})"
                ),
            );
        }
    }

    /// Takes `key` out of the scheduling queue (bound, gone, or placed by another scheduler).
    fn dequeue(&mut self, key: &str) {
        self.queue.remove(key);
        self.dequeued.push(key.to_string());
    }

    fn back_off(&mut self, key: &str) {
        let now = self.now();
        self.queue.back_off(key, now);
    }

    fn violation(&mut self, invariant: &'static str, detail: String) {
        let at = self.now();
        self.log(format!("VIOLATION {invariant}: {detail}"));
        self.violations.push(WorldViolation {
            step: self.step,
            at,
            invariant,
            detail,
        });
    }

    fn reap(&mut self) {
        let _ = self.call(Actor::Reaper, |svc| async move { svc.reap_once().await });
    }

    /// Kubelet admission and device plugin Allocate, for every bound pod that is not yet admitted.
    fn kubelets(&mut self) {
        let pods = self.core().store.typed_shared::<Pod>(Resource::Pods);
        let nodes: BTreeMap<String, Arc<Node>> = self
            .core()
            .store
            .typed_shared::<Node>(Resource::Nodes)
            .iter()
            .filter_map(|n| Some((n.metadata.name.clone()?, n.clone())))
            .collect();
        for pod in pods.iter() {
            let Some(node_name) = pod.spec.as_ref().and_then(|s| s.node_name.clone()) else {
                continue;
            };
            if pod.status.as_ref().and_then(|s| s.phase.as_deref()) != Some("Pending") {
                continue;
            }
            let key = format!(
                "{}/{}",
                pod.metadata.namespace.clone().unwrap_or_default(),
                pod.metadata.name.clone().unwrap_or_default()
            );
            let Some(node) = nodes.get(&node_name) else {
                self.set_phase(
                    &key,
                    "Failed",
                    Some(("NodeLost", format!("node {node_name} is gone"))),
                );
                continue;
            };
            let admitted: Vec<&Pod> = pods
                .iter()
                .filter(|p| {
                    p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(node_name.as_str())
                })
                .filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
                .map(|p| &**p)
                .collect();
            if let Err((reason, message)) = crate::node_agent::kubelet_admit(pod, node, &admitted) {
                self.set_phase(&key, "Failed", Some((reason.as_str(), message)));
                continue;
            }
            if gpu_request(pod) > 0 {
                match self.config.device_plugin {
                    DevicePlugin::None | DevicePlugin::Mock => {}
                    DevicePlugin::Silent => continue,
                    DevicePlugin::Hami => {
                        if self.silent_plugins.contains(&node_name) {
                            continue;
                        }
                        if self.roll(Fault::PluginSilent) {
                            self.silent_plugins.insert(node_name.clone());
                            self.log(format!("fault plugin-silent: the device plugin on {node_name} stops answering"));
                            continue;
                        }
                        if let Err(message) = self.hami_allocate(&node_name, &key) {
                            self.set_phase(
                                &key,
                                "Failed",
                                Some(("UnexpectedAdmissionError", message)),
                            );
                            continue;
                        }
                    }
                }
            }
            self.set_phase(&key, "Running", None);
        }
    }

    /// HAMi's device plugin Allocate (spec §5.3): the pod the lock names (or the fallback), erase,
    /// bind-phase, owner-checked release. Allocating another pod's devices is recorded as a violation.
    fn hami_allocate(&mut self, node: &str, admitting: &str) -> Result<(), String> {
        let allocation = crate::node_agent::hami_allocate(&mut self.core().store, node, admitting);
        if let Some(detail) = allocation.misdirected {
            self.violation("device-plugin", detail);
        }
        if let Some(line) = allocation.log {
            self.log(line);
        }
        allocation.outcome
    }

    fn set_phase(&mut self, key: &str, phase: &str, reason: Option<(&str, String)>) {
        let Some((ns, name)) = key.split_once('/') else {
            return;
        };
        let now = self.now().to_string();
        let mut status = json!({"phase": phase});
        match &reason {
            Some((r, m)) => {
                status["reason"] = json!(r);
                status["message"] = json!(m);
            }
            None => {
                let ip = format!("10.244.{}.{}", self.step % 250, (self.step / 250) % 250 + 1);
                if let Some(pod) = self.pod(key) {
                    status = crate::node_agent::running_status(&pod, &now, &ip);
                }
            }
        }
        let _ = self.core().store.patch(
            Resource::Pods,
            Some(ns),
            name,
            Part::Status,
            PatchType::Merge,
            &json!({"status": status}),
        );
        let why = reason
            .map(|(r, m)| format!(" ({r}: {m})"))
            .unwrap_or_default();
        self.log(format!("kubelet: {key} {phase}{why}"));
    }

    /// One step of the world (see the module documentation).
    pub fn step(&mut self) {
        self.step += 1;
        self.ensure_scheduler();
        self.replicas_step();
        self.deliver_watch_events();
        if self.roll(Fault::NodeShrink) {
            self.shrink_a_node();
        }
        if self.roll(Fault::CpuResize) {
            self.resize_a_pod_cpu();
        }
        self.cpu_only_work();
        if self.roll(Fault::NodeDeletion) {
            let names = self.node_names();
            if names.len() > 1 {
                let victim = names[self.rng.below(names.len() as u64) as usize].clone();
                self.log(format!("fault node-deletion: {victim}"));
                self.remove_node(&victim);
            }
        }
        // Every unbound pod is queued: those that became unbound since the last step (created while
        // no scheduler ran, or by the API directly) and those taken out of the queue while still
        // unbound. (Every other unbound pod was queued at an earlier step and is still there.)
        {
            let core = lock_core(&self.core);
            let now = core.store.now();
            let newly = self.unbound.refresh(&core.store);
            let dequeued = std::mem::take(&mut self.dequeued);
            for key in newly.into_iter().chain(dequeued) {
                if self.unbound.contains(&key) {
                    self.queue.add_if_absent(&key, now);
                }
            }
        }
        self.schedule_one();
        self.ensure_scheduler();
        self.reap();
        self.kubelets();
        // The books follow every change (the grants see each pod as it starts running), whether
        // or not this step is checked.
        self.sync_books();
        let mut tenants = std::mem::replace(&mut self.tenants, crate::tenant::Tenants::new(0));
        tenants.step(self);
        self.tenants = tenants;
        let jump = if self.roll(Fault::ClockJump) {
            self.log("fault clock-jump past the lock timeout".into());
            self.config.lock_timeout + SignedDuration::from_secs(1)
        } else {
            SignedDuration::from_secs(1)
        };
        self.advance(jump);
        if self.check_every != 0 && self.step.is_multiple_of(self.check_every) {
            self.check();
        }
    }

    /// Checks every safety invariant now: on what changed since the last check, and after every
    /// [`SimConfig::recount_every`]-th check on everything, the books recounted from scratch first.
    pub fn check(&mut self) {
        self.checks += 1;
        let whole = self.recount_every != 0 && self.checks.is_multiple_of(self.recount_every);
        self.check_books(whole);
    }

    /// Recounts the books from scratch (a difference from the kept books is the `books` violation)
    /// and checks every invariant on every device and every pod.
    pub fn recount_and_check(&mut self) {
        self.check_books(true);
    }

    fn check_books(&mut self, whole: bool) {
        // Until the scheduler's watches deliver a node's re-registration with less memory, its
        // decisions (even a filter kube-scheduler abandoned, whose write landed) use the old
        // capacity: what they put over the new one is the shrink's over-commit, not theirs.
        let oldest_view = self
            .oldest_decision_view
            .take()
            .unwrap_or(u64::MAX)
            .min(self.delivered);
        let unseen: Vec<String> = self
            .shrunk_at
            .iter()
            .filter(|(_, rv)| oldest_view < **rv)
            .map(|(node, _)| node.clone())
            .collect();
        for node in unseen {
            self.tolerate_overcommit_on(Some(&node));
        }
        let lock_violations: Vec<(&'static str, String)> =
            std::mem::take(&mut self.core().violations);
        for (invariant, detail) in lock_violations {
            self.violation(invariant, detail);
        }
        self.sync_books();
        if whole {
            let differences = {
                let core = lock_core(&self.core);
                let differences = self.books.differences(&core.store);
                if !differences.is_empty() {
                    // Reported; the checks below then judge the store itself, not the wrong books.
                    self.books.rebuild(&core.store);
                }
                differences
            };
            for d in differences {
                self.violation("books", d);
            }
        }
        let every_device = std::mem::take(&mut self.books.all_dirty) || whole;
        let dirty_live = std::mem::take(&mut self.books.dirty_live);
        let dirty_granted = std::mem::take(&mut self.books.dirty_granted);
        let books = &self.books;
        // A device's capacity can only break when its load, its registration or its tolerated
        // over-commit changes: the devices a change touched, and every tolerated one.
        let to_check = |dirty: BTreeSet<books::DeviceKey>| -> BTreeSet<books::DeviceKey> {
            if every_device {
                books
                    .registry
                    .nodes()
                    .flat_map(|n| n.devices.iter().map(|d| (n.name.clone(), d.id.clone())))
                    .collect()
            } else {
                let mut devices = dirty;
                devices.extend(self.overcommit.keys().cloned());
                devices
            }
        };
        let live_devices = to_check(dirty_live);
        let granted_devices = to_check(dirty_granted);
        let mut found: Vec<String> = sliceguard_invariants::checks::check_capacity_of(
            &books.registry,
            &books.live,
            &books.truth,
            &self.overcommit,
            live_devices.iter().map(|(n, u)| (n.as_str(), u.as_str())),
        )
        .into_iter()
        .map(|v| v.to_string())
        .collect();
        // What the running containers hold, whatever their annotations say now.
        found.extend(
            sliceguard_invariants::checks::check_capacity_of(
                &books.registry,
                &books.granted,
                &books.held,
                &self.overcommit,
                granted_devices
                    .iter()
                    .map(|(n, u)| (n.as_str(), u.as_str())),
            )
            .into_iter()
            .map(|v| format!("as granted to running containers: {v}")),
        );
        for v in found {
            self.violation("capacity", v);
        }
        // The tolerated over-commit shrinks with what is left of it (on what the annotations say;
        // running containers' grants are judged against the same allowance).
        let mut overcommit = std::mem::take(&mut self.overcommit);
        sliceguard_invariants::checks::relax_overcommit(
            &mut overcommit,
            &self.books.registry,
            &self.books.live,
        );
        self.overcommit = overcommit;
        // Agreement: only when the scheduler's view has caught up with the store.
        let caught_up = self.watch_down_until.is_none()
            && self.delivered == self.core().store.resource_version();
        // Only the leader's view decides (a new term rebuilds it), so only the leader's is compared.
        if caught_up
            && let Some(instance) = &self.scheduler
            && instance.service.leads()
        {
            // A view not compared before (a new leader, a restart, a re-list) is compared whole;
            // one compared before, on the pods changed since.
            let view = (
                Arc::as_ptr(&instance.service) as *const () as usize,
                self.view_rebuilds.get(),
            );
            let compare_whole = whole || self.agreement_view != Some(view);
            let books = &self.books;
            let found: Vec<String> = instance.service.with_view(|view| {
                let found = if compare_whole {
                    // The service deliberately keeps counting a filter write whose answer was lost
                    // (`<pod>#unconfirmed-<n>`) until it is settled: conservative, so left out.
                    let mut settled = sliceguard::ledger::Ledger::new();
                    for (key, entry) in view
                        .ledger()
                        .entries()
                        .filter(|(k, _)| !k.contains("#unconfirmed-"))
                    {
                        settled.restore(key, Some(entry.clone()));
                    }
                    sliceguard_invariants::checks::check_agreement_with(&books.live, &settled)
                } else {
                    sliceguard_invariants::checks::check_agreement_of_pods(
                        &books.live,
                        view.ledger(),
                        books.changed_pods.iter().map(String::as_str),
                    )
                };
                found.into_iter().map(|v| v.to_string()).collect()
            });
            self.agreement_view = Some(view);
            self.books.changed_pods.clear();
            // A pod deleted under a stale kube-scheduler view leaves nothing behind once the view
            // has caught up (an unconfirmed write is settled by its own rule, within a minute).
            let victims: Vec<String> = self.stale_victims.iter().cloned().collect();
            let mut leaked = Vec::new();
            for key in victims {
                if self.pod(&key).is_some() {
                    continue; // re-created under the same name
                }
                let held: Vec<String> = instance.service.with_view(|view| {
                    let mut held: Vec<String> = view
                        .ledger()
                        .entries()
                        .map(|(k, _)| k)
                        .filter(|k| *k == key.as_str())
                        .map(|k| format!("ledger entry {k}"))
                        .collect();
                    if view.is_assumed(&key) {
                        held.push("an assumption".into());
                    }
                    held
                });
                if !held.is_empty() {
                    leaked.push(format!(
                        "pod {key}, deleted before kube-scheduler's stale filter or bind, still holds {} in the leader's view after its watches caught up",
                        held.join(" and ")
                    ));
                }
            }
            self.stale_victims.clear();
            let host_cpu = self.host_cpu_differences(&instance.service, view, whole);
            for v in found {
                self.violation("agreement", v);
            }
            for v in host_cpu {
                self.violation("host-cpu", v);
            }
            for v in leaked {
                self.violation("stale-view", v);
            }
        }
        self.check_index_coherence();
    }

    /// Index coherence: each replica's placement index holds what an index built afresh over that
    /// replica's own view would ([`sliceguard::cluster_view::ClusterView::lagging_index_nodes`]),
    /// and every `fragmentation` verdict its memo remembers is what the fit says on that view now
    /// ([`sliceguard::cluster_view::ClusterView::stale_memo_verdicts`]). A change of a node that
    /// reached the view without refreshing the index (a re-list, a reconnect, an assumption, a
    /// rollback, a deletion) breaks it; a decision would then judge that node by its past.
    /// Checked whatever the watches' state, on both replicas.
    fn check_index_coherence(&mut self) {
        let instances = [self.scheduler.as_ref(), self.replicas.other_instance()];
        let mut found = Vec::new();
        for instance in instances.into_iter().flatten() {
            let (lagging, stale, remembered) = instance.service.with_view(|view| {
                (
                    view.lagging_index_nodes(),
                    view.stale_memo_verdicts(),
                    view.index().score_memo().len() as u64,
                )
            });
            self.memo_verdicts_checked += remembered;
            found.extend(
                lagging
                    .into_iter()
                    .map(|lagging| format!("the placement index lags its view: {lagging}")),
            );
            found.extend(stale.into_iter().map(|v| v.to_string()));
        }
        for v in found {
            // Reported once: the same difference stays until its node changes.
            if self.index_reported.insert(v.clone()) {
                self.violation("index", v);
            }
        }
    }

    /// `fragmentation` verdicts the replicas' memos held at each check, summed over the checks so
    /// far: the coverage of the memo half of the index coherence check.
    pub fn memo_verdicts_checked(&self) -> u64 {
        self.memo_verdicts_checked
    }

    /// Times the leader's host CPU book was compared with the store's nodes and pods (the
    /// `host-cpu` check's coverage: it runs only once the watches have caught up).
    pub fn host_cpu_comparisons(&self) -> u64 {
        self.host_cpu_comparisons.get()
    }

    /// Turns faults off and runs until the world is quiet (past the lock timeout and every backoff),
    /// then checks liveness: no lock held, no pod of sliceguard's Pending that some node could hold.
    pub fn drain_and_check_liveness(&mut self) {
        self.set_faults(false);
        let limit = (self.config.lock_timeout.as_secs() + 120).max(300);
        for _ in 0..limit {
            self.step();
        }
        self.settle_queue(20);
        // The end of a run: the books recounted from scratch, every device and pod checked.
        self.recount_and_check();
        for (node, value) in self.locks() {
            self.violation(
                "liveness",
                format!("node {node} still holds lock {value:?} after the queue drained"),
            );
        }
        // A pending pod that a fresh decision over the store could place is stuck.
        let (nodes, pods) = {
            let core = self.core();
            (
                core.store.typed_shared::<Node>(Resource::Nodes),
                core.store.typed_shared::<Pod>(Resource::Pods),
            )
        };
        let (nodes, pods): (&[Arc<Node>], &[Arc<Pod>]) = (&nodes, &pods);
        let mut registry = Registry::new();
        for n in nodes {
            let _ = registry.upsert_node(n);
        }
        let mut ledger = sliceguard::ledger::Ledger::new();
        for p in pods {
            let _ = ledger.observe(p);
        }
        for pod in pods {
            if !self.awaits_placement(pod) {
                continue;
            }
            let names = offer(nodes.iter().map(|n| &**n), pod).eligible;
            let decision = sliceguard::decision::filter(
                sliceguard::decision::Fleet::scanned(&registry, &ledger),
                &Default::default(),
                pod,
                &names,
                self.now(),
            );
            if let Some(node) = decision.node() {
                let key = format!(
                    "{}/{}",
                    pod.metadata.namespace.clone().unwrap_or_default(),
                    pod.metadata.name.clone().unwrap_or_default()
                );
                self.violation(
                    "liveness",
                    format!("pod {key} is still Pending although node {node} can hold it"),
                );
            }
        }
    }

    /// True for a pod of sliceguard's that no node holds and no filter decided for yet: what the
    /// liveness check asks a fresh decision about.
    fn awaits_placement(&self, pod: &Pod) -> bool {
        let ours = pod.spec.as_ref().and_then(|s| s.scheduler_name.as_deref())
            == Some(self.config.scheduler_name.as_str());
        let pending = pod.spec.as_ref().is_some_and(|s| s.node_name.is_none());
        let decided = pod
            .metadata
            .annotations
            .as_ref()
            .is_some_and(|a| a.contains_key(VGPU_NODE));
        ours && pending && !decided
    }

    /// Steps in passes until the scheduling queue has settled: a pass ends once every pod awaiting
    /// placement has been sent to `/filter` since it began, and a pass that bound no pod leaves
    /// every waiting pod refused on the world as it now is. The stand-in schedules one pod per
    /// step, so a backlog of N pods needs about N steps a pass: a fixed drain can end before a pod
    /// is retried after the last capacity change, and the liveness check would then blame the
    /// scheduler for the queue's turn. At most `max_passes` passes.
    fn settle_queue(&mut self, max_passes: usize) {
        for _ in 0..max_passes {
            let bound_before = self.bound_at.len();
            self.attempted.clear();
            let mut steps = 0usize;
            loop {
                let pods = self.core().store.typed_shared::<Pod>(Resource::Pods);
                let waiting: Vec<String> = pods
                    .iter()
                    .filter(|p| self.awaits_placement(p))
                    .map(|p| {
                        format!(
                            "{}/{}",
                            p.metadata.namespace.as_deref().unwrap_or_default(),
                            p.metadata.name.as_deref().unwrap_or_default()
                        )
                    })
                    .collect();
                // Each pod is due again within the longest backoff, one pod per step.
                let bound = (waiting.len() + 1) * (MAX_BACKOFF.as_secs() as usize + 1);
                if waiting.iter().all(|k| self.attempted.contains(k)) || steps > bound {
                    break;
                }
                self.step();
                steps += 1;
            }
            if self.bound_at.len() == bound_before {
                return;
            }
        }
    }

    /// Pods by phase (`Pending` unbound pods count as `Pending`).
    pub fn phases(&self) -> BTreeMap<String, usize> {
        let mut out = BTreeMap::new();
        for pod in self.core().store.typed::<Pod>(Resource::Pods) {
            let phase = pod
                .status
                .and_then(|s| s.phase)
                .unwrap_or_else(|| "Pending".into());
            *out.entry(phase).or_insert(0) += 1;
        }
        out
    }

    /// Lists pods matching a field selector (convenience for tests).
    pub fn pods_where(&self, field_selector: &str) -> Vec<Value> {
        let fields = Selector::parse(field_selector, false).unwrap_or_default();
        self.core()
            .store
            .list(Resource::Pods, None, &fields, &Selector::default())
            .map(|(items, _)| items)
            .unwrap_or_default()
    }
}

/// A fresh list of nodes and pods into `service`'s view, as its watches' re-list does.
fn replace_view(service: &Scheduler<SimCluster>, nodes: &[Arc<Node>], pods: &[Arc<Pod>]) {
    service.begin_node_relist();
    for node in nodes {
        service.relist_node(node);
    }
    service.finish_node_relist();
    service.begin_pod_relist();
    for pod in pods {
        service.relist_pod(pod);
    }
    service.finish_pod_relist();
}

/// Feeds watch events (store changes) to a service's view, as its node and pod watches would.
fn feed(service: &Scheduler<SimCluster>, events: &[crate::store::WatchEvent]) {
    for event in events {
        match event.resource {
            Resource::Nodes => {
                if let Ok(node) = Node::deserialize(&event.object) {
                    match event.event_type {
                        crate::store::EventType::Deleted => service.delete_node(&node),
                        _ => service.apply_node(&node),
                    }
                }
            }
            Resource::Pods => {
                if let Ok(pod) = Pod::deserialize(&event.object) {
                    match event.event_type {
                        crate::store::EventType::Deleted => service.delete_pod(&pod),
                        _ => service.apply_pod(&pod),
                    }
                }
            }
            _ => {}
        }
    }
}

/// `nvidia.com/gpu` as the kubelet counts it: the larger of the largest init container and the sum
/// over regular containers.
pub fn gpu_request(pod: &Pod) -> i64 {
    crate::node_agent::extended_request(pod, RESOURCE_GPU)
}
