//! Seeded simulation campaigns: random operation sequences run in a [`World`], checked after every
//! step, with failures shrunk to a minimal operation sequence that a replay file reproduces exactly.
//!
//! An operation is what a person or the environment does (create or delete a pod, add or remove a
//! node, crash the scheduler, wait); faults are drawn inside the world from the same seed. A run is
//! a pure function of `(config, ops)`, so the replay of a saved file reproduces the failure byte for
//! byte. Shrinking is delta debugging over the operation list: drop chunks, then single operations,
//! then simplify what is left, keeping every change after which the same invariant still breaks.

use crate::world::{Fault, Rng, SimConfig, World, WorldViolation};
use jiff::SignedDuration;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use serde::{Deserialize, Serialize};
use sliceguard::annotations::{GPU_SCHEDULER_POLICY, NODE_SCHEDULER_POLICY};
use sliceguard::objects::{GpuAsk, gpu_pod, with_annotations};

/// One operation of a campaign.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "kebab-case")]
pub enum Op {
    /// Create a GPU pod (through the webhook).
    CreatePod {
        /// Pod name.
        name: String,
        /// Namespace (`None`: `default`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        namespace: Option<String>,
        /// GPUs per container.
        gpus: u32,
        /// MiB per GPU (`None`: a percentage or the whole card).
        memory_mib: Option<u32>,
        /// Percent of each GPU's memory.
        memory_percent: Option<u32>,
        /// Cores per GPU (`None`: the webhook's default).
        cores: Option<u32>,
        /// Regular containers asking for GPUs.
        containers: u8,
        /// Also an init container with the same ask.
        init: bool,
        /// `hami.io/node-scheduler-policy`.
        node_policy: Option<String>,
        /// `hami.io/gpu-scheduler-policy`.
        gpu_policy: Option<String>,
        /// The first container's CPU request in millicores (what the `fragmentation` policy's
        /// host CPU book counts; `None`: none).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cpu_milli: Option<u32>,
    },
    /// Delete the `index`-th live pod (modulo the count).
    DeletePod {
        /// Which pod.
        index: usize,
    },
    /// Add a node.
    AddNode {
        /// Node name.
        name: String,
        /// GPUs.
        gpus: usize,
        /// MiB per GPU.
        memory_mib: u32,
    },
    /// Remove the `index`-th node (modulo the count; never the last one).
    RemoveNode {
        /// Which node.
        index: usize,
    },
    /// Crash the scheduler between steps.
    CrashScheduler,
    /// Let time pass.
    Wait {
        /// Steps of one second each.
        seconds: u32,
    },
}

impl Op {
    fn simpler(&self) -> Vec<Op> {
        match self {
            Op::CreatePod {
                name,
                namespace: _,
                gpus,
                memory_mib,
                memory_percent,
                cores,
                containers,
                init,
                node_policy,
                gpu_policy,
                cpu_milli,
            } => {
                let mut out = Vec::new();
                let base = |f: &dyn Fn(&mut Op)| {
                    let mut o = self.clone();
                    f(&mut o);
                    o
                };
                if *init {
                    out.push(base(&|o| {
                        if let Op::CreatePod { init, .. } = o {
                            *init = false
                        }
                    }));
                }
                if *containers > 1 {
                    out.push(base(&|o| {
                        if let Op::CreatePod { containers, .. } = o {
                            *containers = 1
                        }
                    }));
                }
                if *gpus > 1 {
                    out.push(base(&|o| {
                        if let Op::CreatePod { gpus, .. } = o {
                            *gpus = 1
                        }
                    }));
                }
                if node_policy.is_some() || gpu_policy.is_some() {
                    out.push(base(&|o| {
                        if let Op::CreatePod {
                            node_policy,
                            gpu_policy,
                            ..
                        } = o
                        {
                            *node_policy = None;
                            *gpu_policy = None;
                        }
                    }));
                }
                if cpu_milli.is_some() {
                    out.push(base(&|o| {
                        if let Op::CreatePod { cpu_milli, .. } = o {
                            *cpu_milli = None
                        }
                    }));
                }
                let _ = (name, memory_mib, memory_percent, cores);
                out
            }
            Op::Wait { seconds } if *seconds > 1 => vec![Op::Wait {
                seconds: seconds / 2,
            }],
            _ => Vec::new(),
        }
    }
}

/// The second namespace campaigns create pods in.
pub const OTHER_NAMESPACE: &str = "team-b";

/// A name for the `n`-th created pod. Mostly `p<n>`; sometimes one that a careless lock-owner or
/// ledger-key check confuses with an earlier pod's: an extension of it (`p3` → `p3-7`), a
/// prefixed copy (`x-p3`), or the same name in the other namespace.
fn pod_identity(
    rng: &mut Rng,
    n: usize,
    earlier: &[(Option<String>, String)],
) -> (Option<String>, String) {
    let plain = (None, format!("p{n}"));
    if earlier.is_empty() {
        return plain;
    }
    let (namespace, base) = earlier[rng.below(earlier.len() as u64) as usize].clone();
    match rng.below(10) {
        0 => (namespace, format!("{base}-{n}")),
        1 => (namespace, format!("x{n}-{base}")),
        2 if namespace.is_none() => (Some(OTHER_NAMESPACE.to_string()), base),
        3 => (Some(OTHER_NAMESPACE.to_string()), format!("p{n}")),
        _ => plain,
    }
}

/// Generates `count` operations from `seed`.
pub fn generate(seed: u64, count: usize) -> Vec<Op> {
    let mut rng = Rng::new(seed ^ 0xc0ff_ee00);
    // Names come from their own stream, so the operations themselves stay those of the seed.
    let mut names = Rng::new(seed ^ 0x5eed_0a3e);
    // So do the `fragmentation` policy and CPU requests (added later: a seed's other choices stay).
    let mut placement = Rng::new(seed ^ 0xf7a6_0c90);
    let mut ops = Vec::with_capacity(count);
    let mut pods = 0usize;
    let mut identities: Vec<(Option<String>, String)> = Vec::new();
    let mut nodes = 0usize;
    for _ in 0..count {
        let roll = rng.below(100);
        let op = match roll {
            0..=44 => {
                pods += 1;
                let memory = match rng.below(4) {
                    0 => (None, Some(1 + rng.below(100) as u32)),
                    1 => (None, None),
                    _ => (Some(500 * (1 + rng.below(40) as u32)), None),
                };
                let cores = match rng.below(5) {
                    0 => None,
                    1 => Some(0),
                    2 => Some(100),
                    _ => Some(5 * (1 + rng.below(12) as u32)),
                };
                let pick = |rng: &mut Rng, options: &[&str]| -> Option<String> {
                    let i = rng.below(options.len() as u64 + 2) as usize;
                    options.get(i).map(|s| (*s).to_string())
                };
                let (namespace, name) = pod_identity(&mut names, pods, &identities);
                if !identities.contains(&(namespace.clone(), name.clone())) {
                    identities.push((namespace.clone(), name.clone()));
                }
                Op::CreatePod {
                    name,
                    namespace,
                    gpus: if rng.below(6) == 0 { 2 } else { 1 },
                    memory_mib: memory.0,
                    memory_percent: memory.1,
                    cores,
                    containers: if rng.below(8) == 0 { 2 } else { 1 },
                    init: rng.below(8) == 0,
                    node_policy: pick(&mut rng, &["binpack", "spread"]),
                    // HAMi's policies, or none (then half the pods ask for sliceguard's
                    // `fragmentation`, whose verdicts the index remembers across decisions).
                    gpu_policy: pick(&mut rng, &["binpack", "spread", "mutex"])
                        .or_else(|| (placement.below(2) == 0).then(|| "fragmentation".to_string())),
                    // A third ask for CPU, which the `fragmentation` policy scores with.
                    cpu_milli: (placement.below(3) == 0)
                        .then(|| 250 * (1 + placement.below(24) as u32)),
                }
            }
            45..=64 => Op::DeletePod {
                index: rng.below(64) as usize,
            },
            65..=68 => {
                nodes += 1;
                Op::AddNode {
                    name: format!("extra-{nodes}"),
                    gpus: 1 + rng.below(4) as usize,
                    memory_mib: 8192 * (1 + rng.below(10) as u32),
                }
            }
            69..=70 => Op::RemoveNode {
                index: rng.below(16) as usize,
            },
            71..=72 => Op::CrashScheduler,
            _ => Op::Wait {
                seconds: 1 + rng.below(30) as u32,
            },
        };
        ops.push(op);
    }
    ops
}

/// The coverage line that counts the `fragmentation` verdicts the replicas' memos held at each
/// check, summed ([`RunReport::memo_verdicts_checked`]; not read from the trace): 0 means the memo
/// half of the index coherence check never had anything to judge.
pub const MEMO_COVERAGE: &str = "fragmentation verdicts in memos at checks";

/// The coverage line that counts the leader's host CPU comparisons with the API
/// ([`RunReport::host_cpu_comparisons`]): 0 means the `host-cpu` check never ran.
pub const HOST_CPU_COVERAGE: &str = "host CPU books compared with the API";

/// The result of one run.
#[derive(Debug, Clone)]
pub struct RunReport {
    /// Every violation seen, in order.
    pub violations: Vec<WorldViolation>,
    /// The world's trace.
    pub trace: Vec<String>,
    /// Steps executed.
    pub steps: u64,
    /// `fragmentation` verdicts the memos held at each check, summed (the memo check's coverage).
    pub memo_verdicts_checked: u64,
    /// Host CPU comparisons with the API (the `host-cpu` check's coverage).
    pub host_cpu_comparisons: u64,
}

/// What a trace line did to a node's lock ([`LockTrail::observe`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockChange {
    /// Written for the pod that held it, or on a free node.
    Taken,
    /// Written for another pod than the one that held it (an expired or dangling lock taken over).
    TakenOver,
    /// Cleared by the binder or the reaper.
    Cleared,
    /// Released by HAMi's device plugin, or gone with its node.
    Released,
    /// Not a lock line (or a refused write).
    Unchanged,
}

/// Follows each node's lock holder through the world's trace, to tell a lock that passed from one
/// pod to another (a takeover) from one that was freed first.
#[derive(Debug, Default, Clone)]
pub struct LockTrail {
    holders: std::collections::BTreeMap<String, Option<String>>,
}

impl LockTrail {
    /// Reads one trace line (without its timestamp).
    pub fn observe(&mut self, text: &str) -> LockChange {
        if let Some(rest) = text.strip_prefix("lock ") {
            if rest.ends_with("(refused)") {
                return LockChange::Unchanged;
            }
            if let Some((node, value)) = rest.split_once(" := ") {
                let holder = sliceguard::codec::lock::parse(value)
                    .ok()
                    .and_then(|v| v.holder)
                    .map(|h| format!("{}/{}", h.namespace, h.name));
                return match self.holders.insert(node.to_string(), holder.clone()) {
                    Some(before) if before != holder => LockChange::TakenOver,
                    _ => LockChange::Taken,
                };
            }
            if let Some(node) = rest.strip_suffix(" cleared") {
                self.holders.remove(node);
                return LockChange::Cleared;
            }
        } else if let Some(node) = text.strip_prefix("removed node ") {
            self.holders.remove(node);
            return LockChange::Released;
        } else if let Some(rest) = text.strip_prefix("device plugin on ")
            && rest.ends_with("released the lock")
            && let Some((node, _)) = rest.split_once(' ')
        {
            self.holders.remove(node);
            return LockChange::Released;
        }
        LockChange::Unchanged
    }
}

/// What a run exercised, counted from its trace: each fault that fired (`fault <name>`) and the
/// protocol paths the faults aim at. The campaign prints the sums over its seeds, so a fault that
/// never fires, or a path that no seed reaches, shows as a zero instead of passing unseen.
pub fn coverage(trace: &[String]) -> std::collections::BTreeMap<String, u64> {
    let mut counts = std::collections::BTreeMap::new();
    let mut count = |key: String| *counts.entry(key).or_insert(0u64) += 1;
    let mut locks = LockTrail::default();
    let mut live: std::collections::BTreeSet<String> = std::collections::BTreeSet::new();
    for line in trace {
        let text = line.split_once(' ').map_or(line.as_str(), |(_, t)| t);
        if let Some(rest) = text.strip_prefix("created pod ") {
            live.insert(rest.split(' ').next().unwrap_or(rest).to_string());
        } else if let Some(key) = text.strip_prefix("deleted pod ") {
            live.remove(key);
        } else if let Some(rest) = text.strip_prefix("bind ")
            && let Some((call, "ok")) = rest.split_once(": ")
            && let Some((key, _)) = call.split_once(" -> ")
        {
            for class in confusable(key, &live) {
                count(class.into());
            }
        }
        if locks.observe(text) == LockChange::TakenOver {
            count("lock taken over from another pod".into());
        } else if let Some(rest) = text.strip_prefix("fault ") {
            let name = rest.split([' ', ':']).next().unwrap_or(rest);
            count(format!("fault {name}"));
            if name == "cpu-only-pod" {
                count(
                    if rest.contains("kube-scheduler binds") {
                        "cpu-only pod: bound by kube-scheduler"
                    } else if rest.contains("resized in place") {
                        "cpu-only pod: resized in place"
                    } else {
                        "cpu-only pod: ended"
                    }
                    .into(),
                );
            }
            if name == "stale-view" {
                count(
                    if rest.contains("a node already gone") {
                        "stale view: a gone node offered"
                    } else if rest.contains("binds") {
                        "stale view: bind of a pod deleted since its filter"
                    } else {
                        "stale view: filter of a deleted pod"
                    }
                    .into(),
                );
            }
        } else if text.starts_with("delete pod ") && text.ends_with("(stalled allocation)") {
            count("stalled allocation holder deleted".into());
        } else if let Some(rest) = text.strip_prefix("bind ") {
            let answer = rest.split_once(": ").map_or("", |(_, a)| a);
            count(match answer {
                "ok" => "bind succeeded".into(),
                a if a.contains("cannot be bound to node") => "bind refused: decision".into(),
                a if a.contains("is a standby") || a.contains("takes no work") => {
                    "bind refused: standby".into()
                }
                a if a.contains(sliceguard::bind::BINDING_UNVERIFIED) => {
                    "bind failed: no read could tell whether the Binding landed".into()
                }
                _ => "bind failed otherwise".into(),
            });
        } else if let Some(rest) = text.strip_prefix("event ")
            && rest.contains(" FilteringSucceed: ")
        {
            count(
                if rest.ends_with(" nodes not examined") {
                    "decided by the placement index"
                } else if rest.ends_with(" by remembered verdicts") {
                    "decided by rank from the memo (fragmentation policy)"
                } else {
                    "decided by the full scan"
                }
                .into(),
            );
        } else if text.starts_with("filter ") {
            count(if text.contains(": unschedulable: ") {
                "filter: unschedulable or error".into()
            } else {
                "filter: node chosen".into()
            });
        } else if text.starts_with("kube-scheduler abandoned the call") {
            count("call abandoned by kube-scheduler".into());
        } else if text.starts_with("lease taken by replica") {
            count("lease taken over".into());
        } else if text.starts_with("scheduler started") {
            count("scheduler (re)started".into());
        }
    }
    counts
}

/// How a bound pod's `namespace/name` relates to the other live pods' (the cases where a lock-owner
/// or ledger-key check that compares by prefix, suffix or name alone goes wrong).
pub fn confusable(key: &str, live: &std::collections::BTreeSet<String>) -> Vec<&'static str> {
    let Some((namespace, name)) = key.split_once('/') else {
        return Vec::new();
    };
    let mut out = Vec::new();
    if namespace != "default" {
        out.push("bind succeeded: pod outside the default namespace");
    }
    let others = live
        .iter()
        .filter(|k| k.as_str() != key)
        .filter_map(|k| k.split_once('/'));
    let (mut extends, mut namesake) = (false, false);
    for (other_namespace, other) in others {
        namesake |= other == name && other_namespace != namespace;
        extends |= other_namespace == namespace
            && other != name
            && (other.starts_with(name)
                || name.starts_with(other)
                || other.ends_with(name)
                || name.ends_with(other));
    }
    if extends {
        out.push("bind succeeded: a live pod's name extends this one's or is extended by it");
    }
    if namesake {
        out.push("bind succeeded: a live pod of the same name in another namespace");
    }
    out
}

/// Adds a CPU request of `milli` millicores to `pod`'s first container.
fn request_cpu(pod: &mut Pod, milli: u32) {
    let Some(container) = pod.spec.as_mut().and_then(|s| s.containers.first_mut()) else {
        return;
    };
    container
        .resources
        .get_or_insert_with(Default::default)
        .requests
        .get_or_insert_with(Default::default)
        .insert("cpu".into(), Quantity(format!("{milli}m")));
}

/// Applies one operation to the world.
pub fn apply(world: &mut World, op: &Op) -> u32 {
    match op {
        Op::CreatePod {
            name,
            namespace,
            gpus,
            memory_mib,
            memory_percent,
            cores,
            containers,
            init,
            node_policy,
            gpu_policy,
            cpu_milli,
        } => {
            let ask = GpuAsk {
                gpus: Some(*gpus),
                memory_mib: *memory_mib,
                memory_percent: *memory_percent,
                cores: *cores,
            };
            let init_asks = if *init { vec![ask.clone()] } else { vec![] };
            let app: Vec<GpuAsk> = (0..(*containers).max(1)).map(|_| ask.clone()).collect();
            let mut annotations = Vec::new();
            if let Some(p) = node_policy {
                annotations.push((NODE_SCHEDULER_POLICY, p.as_str()));
            }
            if let Some(p) = gpu_policy {
                annotations.push((GPU_SCHEDULER_POLICY, p.as_str()));
            }
            let mut pod = with_annotations(gpu_pod(name, &init_asks, &app), &annotations);
            if let Some(namespace) = namespace {
                pod.metadata.namespace = Some(namespace.clone());
            }
            if let Some(milli) = cpu_milli {
                request_cpu(&mut pod, *milli);
            }
            let _ = world.create_pod(&pod);
            1
        }
        Op::DeletePod { index } => {
            let keys = world.pod_keys();
            if !keys.is_empty() {
                let key = keys[index % keys.len()].clone();
                world.delete_pod(&key);
            }
            1
        }
        Op::AddNode {
            name,
            gpus,
            memory_mib,
        } => {
            world.add_node(name, *gpus, *memory_mib);
            1
        }
        Op::RemoveNode { index } => {
            let names = world.node_names();
            if names.len() > 1 {
                let name = names[index % names.len()].clone();
                world.remove_node(&name);
            }
            1
        }
        Op::CrashScheduler => {
            world.crash_scheduler();
            1
        }
        Op::Wait { seconds } => *seconds,
    }
}

/// Runs `ops` in a world built from `config`; with `liveness`, drains and checks liveness at the end.
/// Besides the world's own checks, every step is checked for [`BinderRelease`].
pub fn run(config: &SimConfig, ops: &[Op], liveness: bool) -> RunReport {
    let mut world = World::new(config.clone());
    let mut hygiene = BinderRelease::default();
    let mut found: Vec<WorldViolation> = Vec::new();
    let mut steps = 0u64;
    for op in ops {
        let n = apply(&mut world, op);
        for _ in 0..n {
            world.step();
            steps += 1;
            found.extend(hygiene.check(&world));
        }
        if !world.violations().is_empty() || !found.is_empty() {
            break;
        }
    }
    if liveness && world.violations().is_empty() && found.is_empty() {
        world.drain_and_check_liveness();
    }
    let mut violations = world.violations().to_vec();
    violations.extend(found);
    violations.sort_by_key(|v| v.step);
    RunReport {
        violations,
        trace: world.trace(),
        steps,
        memo_verdicts_checked: world.memo_verdicts_checked(),
        host_cpu_comparisons: world.host_cpu_comparisons(),
    }
}

/// The binder's own release, checked from the trace after each step (spec §5: "a failure at any
/// step after the lock was taken goes through Release"; in `after-bind` mode a success releases
/// too): when a bind call returned (it did not crash) and the node's lock still holds a value this
/// very bind wrote, the binder left its lock behind. HAMi's rules would free it at the latest when
/// it expires, which is why neither lock safety nor liveness notices; every other pod is locked out
/// of the node meanwhile. A fault injected on the release's own effects (`clear-lock`, `get-node`)
/// excuses the step, because a release that exhausted its retries is allowed to strand the lock;
/// so does a replica pausing in the middle of a call (`replica-pause`): once its lease may have
/// passed, a deposed leader writes nothing, its release included, and the leader's reaper frees the
/// lock by rule. In `device-plugin` mode a bind that failed because no read could tell whether its
/// `Binding` landed ([`sliceguard::bind::BINDING_UNVERIFIED`]) keeps the lock by design.
#[derive(Debug, Default, Clone)]
pub struct BinderRelease {
    seen: usize,
}

impl BinderRelease {
    /// Reads the trace lines since the last call; returns a `lock-release` violation per binder that
    /// left its lock.
    pub fn check(&mut self, world: &World) -> Vec<WorldViolation> {
        let lines = world.trace_since(self.seen);
        self.seen += lines.len();
        let texts: Vec<&str> = lines
            .iter()
            .map(|l| l.split_once(' ').map_or(l.as_str(), |(_, t)| t))
            .collect();
        let excused = texts.iter().any(|t| {
            t.starts_with("fault replica-pause")
                || (t.starts_with("fault ") && (t.contains("clear-lock") || t.contains("get-node")))
        });
        if excused {
            return Vec::new();
        }
        let after_bind = world.config().lock_release == sliceguard::bind::ReleaseMode::AfterBind;
        let mut out = Vec::new();
        for text in &texts {
            let Some(rest) = text.strip_prefix("bind ") else {
                continue;
            };
            let Some((call, answer)) = rest.split_once(": ") else {
                continue;
            };
            let Some((pod, node)) = call.split_once(" -> ") else {
                continue;
            };
            if !after_bind
                && (answer == "ok" || answer.contains(sliceguard::bind::BINDING_UNVERIFIED))
            {
                // device-plugin mode: the lock stays with the pod for the plugin, after a success
                // and after a Binding that may have landed (no read could tell).
                continue;
            }
            let locks = world.locks();
            let Some(value) = locks.get(node) else {
                continue;
            };
            let ours = sliceguard::codec::lock::parse(value)
                .ok()
                .and_then(|v| v.holder)
                .is_some_and(|h| format!("{}/{}", h.namespace, h.name) == pod);
            let written_now = texts
                .iter()
                .any(|t| t.strip_prefix("lock ") == Some(&format!("{node} := {value}")));
            if ours && written_now {
                out.push(WorldViolation {
                    step: world.step_count(),
                    at: world.now(),
                    invariant: "lock-release",
                    detail: format!(
                        "the bind of {pod} to {node} returned ({answer}) and left its lock {value:?} behind"
                    ),
                });
            }
        }
        out
    }
}

/// Shrinks `ops` to a smaller sequence whose run still violates `invariant`, in at most `budget`
/// runs. `progress` hears, after every run, how many runs were made and how many operations the
/// smallest failing sequence so far has (a 2,000-operation liveness failure takes minutes).
pub fn shrink(
    config: &SimConfig,
    ops: &[Op],
    invariant: &str,
    liveness: bool,
    budget: usize,
    progress: &dyn Fn(usize, usize),
) -> Vec<Op> {
    let runs_made = std::cell::Cell::new(0usize);
    let smallest = std::cell::Cell::new(ops.len());
    let fails = |candidate: &[Op]| {
        let failed = run(config, candidate, liveness)
            .violations
            .iter()
            .any(|v| v.invariant == invariant);
        runs_made.set(runs_made.get() + 1);
        if failed {
            smallest.set(smallest.get().min(candidate.len()));
        }
        progress(runs_made.get(), smallest.get());
        failed
    };
    let mut current = ops.to_vec();
    let mut runs = 0usize;
    let mut chunk = current.len().div_ceil(2).max(1);
    while chunk >= 1 && runs < budget {
        let mut start = 0;
        let mut changed = false;
        while start < current.len() && runs < budget {
            let end = (start + chunk).min(current.len());
            let mut candidate = current.clone();
            candidate.drain(start..end);
            runs += 1;
            if !candidate.is_empty() && fails(&candidate) {
                current = candidate;
                changed = true;
            } else {
                start = end;
            }
        }
        if !changed {
            if chunk == 1 {
                break;
            }
            chunk /= 2;
        }
    }
    // Simplify the remaining operations one by one.
    let mut i = 0;
    while i < current.len() && runs < budget {
        let mut simplified = false;
        for simpler in current[i].simpler() {
            let mut candidate = current.clone();
            candidate[i] = simpler;
            runs += 1;
            if fails(&candidate) {
                current = candidate;
                simplified = true;
                break;
            }
        }
        if !simplified {
            i += 1;
        }
    }
    current
}

/// A saved failing run: configuration and operations, replayable exactly.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Replay {
    /// The seed.
    pub seed: u64,
    /// Nodes in the initial fleet.
    pub nodes: usize,
    /// GPUs per node.
    pub gpus_per_node: usize,
    /// MiB per GPU.
    pub memory_mib: u32,
    /// `none`, `hami` or `mock`.
    pub device_plugin: String,
    /// `after-bind` or `device-plugin`.
    pub lock_release: String,
    /// Enabled faults.
    pub faults: Vec<String>,
    /// Fault rate per opportunity, in thousandths.
    pub fault_per_mille: u64,
    /// Whether liveness is checked at the end.
    pub liveness: bool,
    /// The operations.
    pub ops: Vec<Op>,
}

impl Replay {
    /// Captures a configuration and operations.
    pub fn new(config: &SimConfig, ops: Vec<Op>, liveness: bool) -> Self {
        Replay {
            seed: config.seed,
            nodes: config.fleet.nodes,
            gpus_per_node: config.fleet.gpus_per_node,
            memory_mib: config.fleet.memory_mib,
            device_plugin: config.device_plugin.as_str().into(),
            lock_release: config.lock_release.as_str().into(),
            faults: config
                .faults
                .iter()
                .map(|f| f.as_str().to_string())
                .collect(),
            fault_per_mille: config.fault_per_mille,
            liveness,
            ops,
        }
    }

    /// The configuration it was captured with.
    pub fn config(&self) -> Result<SimConfig, String> {
        let lock_release = match self.lock_release.as_str() {
            "after-bind" => sliceguard::bind::ReleaseMode::AfterBind,
            "device-plugin" => sliceguard::bind::ReleaseMode::DevicePlugin,
            o => return Err(format!("unknown lock release {o:?}")),
        };
        Ok(SimConfig {
            seed: self.seed,
            fleet: sliceguard::objects::FleetSpec {
                nodes: self.nodes,
                gpus_per_node: self.gpus_per_node,
                memory_mib: self.memory_mib,
                ..SimConfig::default().fleet
            },
            device_plugin: crate::world::DevicePlugin::parse(&self.device_plugin)?,
            lock_release,
            lock_timeout: SignedDuration::from_mins(5),
            faults: Fault::parse_list(&self.faults.join(","))?,
            fault_per_mille: self.fault_per_mille,
            scheduler_name: "sliceguard-scheduler".into(),
            recount_every: crate::world::DEFAULT_RECOUNT_EVERY,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generation_is_deterministic_and_varied() {
        let a = generate(7, 300);
        assert_eq!(a, generate(7, 300));
        assert_ne!(a, generate(8, 300));
        let kinds: std::collections::BTreeSet<&str> = a
            .iter()
            .map(|o| match o {
                Op::CreatePod { .. } => "create",
                Op::DeletePod { .. } => "delete",
                Op::AddNode { .. } => "add-node",
                Op::RemoveNode { .. } => "remove-node",
                Op::CrashScheduler => "crash",
                Op::Wait { .. } => "wait",
            })
            .collect();
        assert_eq!(kinds.len(), 6, "{kinds:?}");
    }

    #[test]
    fn ops_round_trip_through_json() {
        let ops = generate(3, 50);
        let text = serde_json::to_string(&ops).unwrap();
        let back: Vec<Op> = serde_json::from_str(&text).unwrap();
        assert_eq!(back, ops);
    }

    #[test]
    fn coverage_counts_faults_paths_and_lock_takeovers() {
        let trace: Vec<String> = [
            "lock n1 := 2026-01-01T00:00:00Z,default,a",
            "fault crash: the scheduler stops before clear-lock",
            "lock n1 := 2026-01-01T00:06:00Z,default,b",
            "lock n1 cleared",
            "lock n1 := 2026-01-01T00:07:00Z,default,c",
            "device plugin on n1 released the lock",
            "lock n1 := 2026-01-01T00:08:00Z,default,d",
            "lock n1 := 2026-01-01T00:08:00Z,default,e (refused)",
            "fault stale-bind: kube-scheduler binds default/x to n2, not the filter's n1",
            "bind default/x -> n2: pod default/x cannot be bound to node n2: it carries hami.io/vgpu-node n1",
            "bind default/y -> n1: ok",
            "delete pod default/a (stalled allocation)",
            "fault throttle: 429 on write-lock",
        ]
        .iter()
        .map(|t| format!("2026-01-01T00:00:00Z {t}"))
        .collect();
        let counts = coverage(&trace);
        let get = |k: &str| counts.get(k).copied().unwrap_or(0);
        assert_eq!(get("lock taken over from another pod"), 1, "{counts:?}");
        assert_eq!(get("fault crash"), 1);
        assert_eq!(get("fault stale-bind"), 1);
        assert_eq!(get("fault throttle"), 1);
        assert_eq!(get("bind refused: decision"), 1);
        assert_eq!(get("bind succeeded"), 1);
        assert_eq!(get("stalled allocation holder deleted"), 1);
    }
}
