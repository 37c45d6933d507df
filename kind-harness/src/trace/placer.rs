//! Who decides where a GPU pod goes: sliceguard's real core ([`CorePlacer`]), or one of the paper's
//! baselines re-implemented for calibration ([`super::reference`]).
//!
//! [`CorePlacer`] keeps the core's own state, a [`Registry`] built from `hami.io/node-nvidia-register`
//! annotations, a [`Ledger`] of allocations and the [`PlacementIndex`] over them, and asks
//! [`decision::decide`] for every GPU pod, the entry point `sliceguard place` and the extender call:
//! the pod is a real `Pod` object (built with [`sliceguard::objects`]), read by
//! [`decision::prepare`], and decided over the nodes kube-scheduler would offer. The chosen
//! allocation goes into the ledger (and the index), and the harness mirrors it into its own
//! [`Cluster`] to check invariants.
//!
//! A trace task becomes one container: a sharing task (`num_gpu` 1, `gpu_milli` < 1000) asks for
//! `nvidia.com/gpu: 1`, `nvidia.com/gpucores` = `nvidia.com/gpumem-percentage` = `gpu_milli`/10; a
//! whole-GPU task asks for `nvidia.com/gpu: n` with 100 cores and 100 % memory (exclusive). Its CPU
//! and memory become the container's `requests`.
//!
//! Under sliceguard's `fragmentation` GPU policy the core also gets the typical workload (learned
//! from the GPU pods it has been asked to place so far, or, for comparison with the paper, counted
//! from the whole trace) and the nodes' CPU ([`ClusterHosts`]); and, when the replay lets the policy
//! place CPU-only pods, [`fragmentation::choose_node_for_cpu_pod`] decides them.

use super::cluster::{Cluster, ClusterNode, DeviceGrant};
use super::input::PodRow;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use sliceguard::annotations::{NODE_REGISTER, USE_GPUTYPE};
use sliceguard::codec::register;
use sliceguard::decision::{self, Decision, Fleet, Outcome, SchedulerSettings};
use sliceguard::fragmentation::{
    self, FragmentationInputs, HostResources, HostSource, TaskShape, TypicalWorkload, Weighting,
    WorkloadProfile, pod_cpu_request_milli,
};
use sliceguard::gpu_policy::NodeRanking;
use sliceguard::index::PlacementIndex;
use sliceguard::ledger::{Ledger, UsageSource};
use sliceguard::model::DeviceInfo;
use sliceguard::objects::{GpuAsk, gpu_pod, with_annotations};
use sliceguard::policy::{GpuPolicy, NodePolicy, PolicyDefaults};
use sliceguard::registry::Registry;
use sliceguard::request::RequestDefaults;
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::str::FromStr;
use std::time::{Duration, Instant};

/// How a task's `gpu_spec` restricts the GPU model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum SpecMatch {
    /// Exact model names, as kube-scheduler's node affinity on a GPU-model label would match them:
    /// only nodes of an allowed model are offered to the extender.
    Exact,
    /// HAMi's `nvidia.com/use-gputype` annotation: a case-insensitive substring of the device type
    /// (`A10` would also match `A100`); every GPU node is offered and the core refuses the others.
    HamiSubstring,
}

impl fmt::Display for SpecMatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SpecMatch::Exact => "exact",
            SpecMatch::HamiSubstring => "hami-substring",
        })
    }
}

/// A paper baseline, re-implemented in the harness for calibration (not through the core).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ReferencePolicy {
    /// The artifact's BestFit: least CPU+GPU left over after placement, "best" GPU inside the node.
    BestFit,
    /// The artifact's FGD: least growth of the expected fragmentation of the node.
    Fgd,
    /// The artifact's Random: a uniformly random feasible node, a random fitting GPU.
    Random,
}

/// The policy a run replays.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum PolicySpec {
    /// sliceguard's core with these default node and GPU policies.
    Core {
        /// Node policy (`binpack`, `spread`, `fragmentation`).
        node: String,
        /// GPU policy (`binpack`, `spread`, `fragmentation`, ...).
        gpu: String,
    },
    /// A paper baseline.
    Reference {
        /// Which one.
        policy: ReferencePolicy,
    },
}

impl PolicySpec {
    /// The four HAMi pairs, node × GPU, HAMi's default (binpack/spread) first.
    pub fn hami_pairs() -> Vec<PolicySpec> {
        [
            ("binpack", "spread"),
            ("binpack", "binpack"),
            ("spread", "binpack"),
            ("spread", "spread"),
        ]
        .iter()
        .map(|(n, g)| PolicySpec::Core {
            node: (*n).into(),
            gpu: (*g).into(),
        })
        .collect()
    }

    /// sliceguard's combined fragmentation-aware policy (the node policy does not apply to it;
    /// `binpack` is written for completeness).
    pub fn fragmentation() -> PolicySpec {
        PolicySpec::Core {
            node: "binpack".into(),
            gpu: "fragmentation".into(),
        }
    }

    /// True for sliceguard's fragmentation policy.
    pub fn is_fragmentation(&self) -> bool {
        matches!(self, PolicySpec::Core { gpu, .. } if gpu == "fragmentation")
    }
}

impl fmt::Display for PolicySpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PolicySpec::Core { gpu, .. } if gpu == "fragmentation" => f.write_str("fragmentation"),
            PolicySpec::Core { node, gpu } => write!(f, "{node}/{gpu}"),
            PolicySpec::Reference { policy } => f.write_str(match policy {
                ReferencePolicy::BestFit => "paper-bestfit",
                ReferencePolicy::Fgd => "paper-fgd",
                ReferencePolicy::Random => "paper-random",
            }),
        }
    }
}

impl FromStr for PolicySpec {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "paper-bestfit" => {
                return Ok(PolicySpec::Reference {
                    policy: ReferencePolicy::BestFit,
                });
            }
            "paper-fgd" => {
                return Ok(PolicySpec::Reference {
                    policy: ReferencePolicy::Fgd,
                });
            }
            "paper-random" => {
                return Ok(PolicySpec::Reference {
                    policy: ReferencePolicy::Random,
                });
            }
            "fragmentation" => return Ok(PolicySpec::fragmentation()),
            _ => {}
        }
        let (node, gpu) = s.split_once('/').ok_or_else(|| {
            format!(
                "{s:?}: expected NODE/GPU (e.g. binpack/spread), fragmentation, or paper-bestfit, paper-fgd, paper-random"
            )
        })?;
        NodePolicy::from_str(node)?;
        GpuPolicy::from_str(gpu)?;
        Ok(PolicySpec::Core {
            node: node.into(),
            gpu: gpu.into(),
        })
    }
}

/// One decision: the node (index into the cluster) and the GPUs granted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Choice {
    /// Node index.
    pub node: usize,
    /// GPUs granted, in the order the scheduler chose them.
    pub grants: Vec<DeviceGrant>,
}

/// A placer refused to decide because the pod or its state is invalid; fails the run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("pod {pod}: {problem}")]
pub struct PlacerError {
    /// The pod.
    pub pod: String,
    /// What went wrong.
    pub problem: String,
}

/// Decides GPU pods (and, for the paper's baselines, CPU-only pods).
pub trait Placer {
    /// Chooses a node among `offered` (indices of nodes that pass kube-scheduler's filters) and the
    /// GPUs for a GPU pod; `None` when no offered node can hold it.
    fn place_gpu(
        &mut self,
        cluster: &Cluster,
        pod: &PodRow,
        name: &str,
        offered: &[usize],
    ) -> Result<Option<Choice>, PlacerError>;

    /// Chooses a node for a CPU-only pod (`name`) among `offered` (the paper's baselines, and
    /// sliceguard's fragmentation policy when CPU-only pods are routed to it).
    fn place_cpu(
        &mut self,
        cluster: &Cluster,
        pod: &PodRow,
        name: &str,
        offered: &[usize],
    ) -> Option<usize> {
        let _ = (cluster, pod, name, offered);
        None
    }

    /// The pod `name` was bound to `node` (whoever placed it), after the cluster mirror took it:
    /// what a placer that watches pods learns then.
    fn bound(&mut self, cluster: &Cluster, pod: &PodRow, name: &str, node: usize) {
        let _ = (cluster, pod, name, node);
    }

    /// True when [`Placer::place_cpu`] decides CPU-only pods.
    fn places_cpu_pods(&self) -> bool {
        false
    }

    /// Checks the placer's own view of `node` against the cluster mirror after a placement.
    fn audit(&self, cluster: &Cluster, node: usize) -> Result<(), String> {
        let _ = (cluster, node);
        Ok(())
    }

    /// Scheduler decisions made and the time spent in them.
    fn decision_stats(&self) -> (u64, Duration);
}

/// The time written to `hami.io/vgpu-time` (the replay has no clock).
pub const REPLAY_TIME: jiff::Timestamp = jiff::Timestamp::UNIX_EPOCH;

/// Where the fragmentation policy's typical workload comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ProfileSource {
    /// Learned online from the GPU pods the scheduler has been asked to place so far (what a
    /// scheduler can know in production).
    Learned,
    /// Counted from every row of the original trace before the replay starts, as the paper's FGD
    /// does (it includes pods that have not arrived yet); for comparison only.
    Trace,
}

impl fmt::Display for ProfileSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ProfileSource::Learned => "learned",
            ProfileSource::Trace => "trace",
        })
    }
}

/// The fragmentation policy's knobs, for ablations (the defaults are sliceguard's).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct FragmentationTuning {
    /// The node score's scale in GPUs (0: compare the growth exactly).
    pub score_scale_gpus: f64,
    /// The node score's scale for pods taking more than one GPU (`None`: `score_scale_gpus`).
    pub multi_gpu_score_scale_gpus: Option<f64>,
    /// How typical shapes are weighted.
    #[serde(serialize_with = "serialize_weighting")]
    pub weighting: Weighting,
}

impl Default for FragmentationTuning {
    /// The core's own defaults, which `serve` runs.
    fn default() -> Self {
        let core = FragmentationInputs::default();
        FragmentationTuning {
            score_scale_gpus: core.score_scale_gpus,
            multi_gpu_score_scale_gpus: core.multi_gpu_score_scale_gpus,
            weighting: Weighting::default(),
        }
    }
}

/// How a weighting reads in labels and JSON: `demand`, `count` or `demand^0.5`.
pub fn weighting_name(w: Weighting) -> String {
    match w {
        Weighting::Demand => "demand".into(),
        Weighting::Count => "count".into(),
        Weighting::DemandPower(percent) => format!("demand^{}", f64::from(percent) / 100.0),
    }
}

fn serialize_weighting<S: serde::Serializer>(w: &Weighting, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&weighting_name(*w))
}

/// The cluster mirror's CPU accounting as the core's [`HostSource`] (in production: Node
/// allocatable and the requests of the pods bound there).
#[derive(Debug)]
pub struct ClusterHosts<'a> {
    cluster: &'a Cluster,
    index: &'a HashMap<String, usize>,
}

impl HostSource for ClusterHosts<'_> {
    fn host(&self, node: &str) -> Option<HostResources> {
        let n = &self.cluster.nodes[*self.index.get(node)?];
        Some(HostResources {
            cpu_capacity_milli: n.cpu_capacity,
            cpu_requested_milli: n.cpu_requested,
        })
    }
}

/// sliceguard's core as the placer.
#[derive(Debug)]
pub struct CorePlacer {
    registry: Registry,
    ledger: Ledger,
    /// The placement index over `registry` and `ledger`, refreshed for a node on every allocation.
    placement: PlacementIndex,
    /// The last GPU decision (for tests that compare it with the other callers').
    last_decision: Option<Decision>,
    settings: SchedulerSettings,
    spec_match: SpecMatch,
    /// The typical workload (fragmentation policy only).
    profile: Option<WorkloadProfile>,
    /// Whether `profile` learns from the pods as they arrive.
    learning: bool,
    /// The fragmentation policy's knobs.
    tuning: FragmentationTuning,
    /// Node index by scheduler name.
    index: HashMap<String, usize>,
    decisions: u64,
    decision_time: Duration,
}

/// The device id of GPU `gpu` on node `node` (scheduler name).
pub fn device_id(node: &str, gpu: usize) -> String {
    format!("GPU-{node}-{gpu}")
}

/// The annotations a trace node registers its GPUs with (`hami.io/node-nvidia-register`): split
/// count `cluster.split`, the model's memory, 100 cores, healthy, NUMA 0.
pub fn register_annotations(cluster: &Cluster, node: &ClusterNode) -> BTreeMap<String, String> {
    let devices: Vec<DeviceInfo> = (0..node.gpus.len())
        .map(|i| DeviceInfo {
            id: device_id(&node.name, i),
            index: i as u32,
            count: cluster.split,
            devmem: node.devmem,
            devcore: 100,
            device_type: device_type(&node.model).into(),
            numa: 0,
            mode: "hami-core".into(),
            health: true,
        })
        .collect();
    BTreeMap::from([(NODE_REGISTER.to_string(), register::render_json(&devices))])
}

/// The device type a trace model registers as.
pub fn device_type(model: &str) -> String {
    format!("NVIDIA-{model}")
}

/// The profile counted from every row of a trace (the paper's way), for [`ProfileSource::Trace`].
pub fn trace_profile(rows: &[PodRow], spec_match: SpecMatch) -> Result<WorkloadProfile, String> {
    let settings = SchedulerSettings::default();
    let mut counts: HashMap<TaskShape, u64> = HashMap::new();
    for row in rows.iter().filter(|r| r.num_gpu > 0) {
        let object = trace_pod(row, &row.name, spec_match);
        let prepared = decision::prepare(&object, &settings).map_err(|e| e.to_string())?;
        let cpu = pod_cpu_request_milli(&object);
        for (shape, _) in
            TypicalWorkload::of_pod(&prepared.request, &prepared.preferences, cpu).shapes()
        {
            *counts.entry(shape.clone()).or_default() += 1;
        }
    }
    Ok(WorkloadProfile::configured(counts))
}

impl CorePlacer {
    /// Registers every GPU node of `cluster` with the core; `node`/`gpu` are the default policies.
    pub fn new(
        cluster: &Cluster,
        node: &str,
        gpu: &str,
        spec_match: SpecMatch,
        profile: Option<WorkloadProfile>,
        tuning: FragmentationTuning,
    ) -> Result<Self, String> {
        let node_policy = NodePolicy::from_str(node)?;
        let gpu_policy = GpuPolicy::from_str(gpu)?;
        let fragmentation = gpu_policy.node_ranking() == NodeRanking::Fragmentation;
        let mut registry = Registry::new();
        for n in cluster.nodes.iter().filter(|n| !n.gpus.is_empty()) {
            registry
                .upsert(&n.name, &register_annotations(cluster, n))
                .map_err(|e| format!("node {} does not register: {e}", n.name))?;
        }
        let learning = profile.is_none();
        let ledger = Ledger::new();
        Ok(CorePlacer {
            placement: PlacementIndex::build(&registry, &ledger),
            last_decision: None,
            registry,
            ledger,
            settings: SchedulerSettings {
                policies: PolicyDefaults {
                    node: node_policy,
                    gpu: gpu_policy,
                },
                requests: RequestDefaults::default(),
            },
            spec_match,
            profile: if fragmentation {
                Some(profile.unwrap_or_default().weighted(tuning.weighting))
            } else {
                None
            },
            learning,
            tuning,
            index: cluster
                .nodes
                .iter()
                .enumerate()
                .map(|(i, n)| (n.name.clone(), i))
                .collect(),
            decisions: 0,
            decision_time: Duration::ZERO,
        })
    }

    /// The core's ledger (for tests).
    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    /// The core's decision on the last GPU pod placed (for tests).
    pub fn last_decision(&self) -> Option<&Decision> {
        self.last_decision.as_ref()
    }

    /// The typical workload the fragmentation policy currently uses (for tests and reports).
    pub fn profile(&self) -> Option<&WorkloadProfile> {
        self.profile.as_ref()
    }
}

/// The `Pod` object a trace task becomes.
pub fn trace_pod(pod: &PodRow, name: &str, spec_match: SpecMatch) -> Pod {
    let ask = if pod.num_gpu == 0 {
        GpuAsk::default()
    } else if pod.is_sharing() {
        GpuAsk {
            gpus: Some(1),
            memory_mib: None,
            memory_percent: Some(pod.gpu_milli / 10),
            cores: Some(pod.gpu_milli / 10),
        }
    } else {
        GpuAsk {
            gpus: Some(pod.num_gpu),
            memory_mib: None,
            memory_percent: Some(100),
            cores: Some(100),
        }
    };
    let mut object = gpu_pod(name, &[], &[ask]);
    if let Some(container) = object.spec.as_mut().and_then(|s| s.containers.first_mut()) {
        let resources = container.resources.get_or_insert_with(Default::default);
        resources.requests = Some(BTreeMap::from([
            ("cpu".to_string(), Quantity(format!("{}m", pod.cpu_milli))),
            (
                "memory".to_string(),
                Quantity(format!("{}Mi", pod.memory_mib)),
            ),
        ]));
    }
    if spec_match == SpecMatch::HamiSubstring && !pod.gpu_spec.is_empty() {
        let types = pod.gpu_spec.join(",");
        with_annotations(object, &[(USE_GPUTYPE, types.as_str())])
    } else {
        object
    }
}

impl Placer for CorePlacer {
    fn place_gpu(
        &mut self,
        cluster: &Cluster,
        pod: &PodRow,
        name: &str,
        offered: &[usize],
    ) -> Result<Option<Choice>, PlacerError> {
        let fail = |problem: String| PlacerError {
            pod: name.to_string(),
            problem,
        };
        let object = trace_pod(pod, name, self.spec_match);
        let prepared =
            decision::prepare(&object, &self.settings).map_err(|e| fail(e.to_string()))?;
        let pod_cpu_milli = pod_cpu_request_milli(&object);
        if self.learning
            && let Some(profile) = self.profile.as_mut()
        {
            profile.observe(&prepared.request, &prepared.preferences, pod_cpu_milli);
        }
        let node_names: Vec<String> = offered
            .iter()
            .map(|&i| cluster.nodes[i].name.clone())
            .collect();
        let hosts = ClusterHosts {
            cluster,
            index: &self.index,
        };
        let inputs = FragmentationInputs {
            profile: self.profile.as_ref(),
            hosts: Some(&hosts),
            pod_cpu_milli,
            score_scale_gpus: self.tuning.score_scale_gpus,
            multi_gpu_score_scale_gpus: self.tuning.multi_gpu_score_scale_gpus,
        };
        let started = Instant::now();
        let decided = decision::decide(
            Fleet::indexed(&self.registry, &self.ledger, &self.placement),
            &prepared,
            &node_names,
            REPLAY_TIME,
            inputs,
        );
        self.decision_time += started.elapsed();
        self.decisions += 1;
        self.last_decision = Some(decided.clone());
        match decided.outcome {
            Outcome::Scheduled {
                node, allocation, ..
            } => {
                let index = *self
                    .index
                    .get(&node)
                    .filter(|i| offered.contains(i))
                    .ok_or_else(|| fail(format!("the core chose {node}, which was not offered")))?;
                let grants = grants_of(cluster, index, &allocation)
                    .map_err(|e| fail(format!("the core {e}")))?;
                self.ledger
                    .upsert(&format!("default/{name}"), &node, &allocation);
                self.placement.refresh(&node, &self.registry, &self.ledger);
                Ok(Some(Choice {
                    node: index,
                    grants,
                }))
            }
            Outcome::Unschedulable => Ok(None),
            Outcome::NoGpuRequest => Err(fail("the core saw no GPU request".into())),
            Outcome::Invalid(error) => Err(fail(error.to_string())),
        }
    }

    fn place_cpu(
        &mut self,
        cluster: &Cluster,
        pod: &PodRow,
        name: &str,
        offered: &[usize],
    ) -> Option<usize> {
        let profile = self.profile.as_ref()?;
        let object = trace_pod(pod, name, self.spec_match);
        let pod_cpu_milli = pod_cpu_request_milli(&object);
        let node_names: Vec<String> = offered
            .iter()
            .map(|&i| cluster.nodes[i].name.clone())
            .collect();
        let hosts = ClusterHosts {
            cluster,
            index: &self.index,
        };
        let started = Instant::now();
        let chosen = fragmentation::place_cpu_pod(
            &self.registry,
            &self.ledger,
            &hosts,
            Some(profile),
            pod_cpu_milli,
            &node_names,
        );
        self.decision_time += started.elapsed();
        self.decisions += 1;
        chosen.and_then(|(node, _)| self.index.get(&node).copied())
    }

    fn places_cpu_pods(&self) -> bool {
        self.profile.is_some()
    }

    /// The node's free CPU changed (the cluster mirror counts the pod there now): the
    /// `fragmentation` verdicts the index remembers on it go, as `serve`'s view has them go.
    fn bound(&mut self, cluster: &Cluster, _pod: &PodRow, _name: &str, node: usize) {
        self.placement.forget_verdicts(&cluster.nodes[node].name);
    }

    fn audit(&self, cluster: &Cluster, node: usize) -> Result<(), String> {
        audit_ledger(&self.ledger, cluster, node)
    }

    fn decision_stats(&self) -> (u64, Duration) {
        (self.decisions, self.decision_time)
    }
}

/// The GPUs an allocation on node `index` grants, in the order the scheduler chose them; the
/// error names a device the node does not have.
pub fn grants_of(
    cluster: &Cluster,
    index: usize,
    allocation: &sliceguard::model::PodAllocation,
) -> Result<Vec<DeviceGrant>, String> {
    let node = &cluster.nodes[index];
    allocation
        .app
        .iter()
        .chain(allocation.init.iter())
        .flatten()
        .map(|device| {
            let gpu = (0..node.gpus.len())
                .find(|&g| device_id(&node.name, g) == device.uuid)
                .ok_or_else(|| format!("granted unknown device {}", device.uuid))?;
            Ok(DeviceGrant {
                gpu,
                cores: device.usedcores,
                memory_mib: u64::from(device.usedmem),
            })
        })
        .collect()
}

/// Checks a ledger against the cluster mirror on every GPU of `node`: tasks, cores and MiB.
pub fn audit_ledger(ledger: &Ledger, cluster: &Cluster, node: usize) -> Result<(), String> {
    let n = &cluster.nodes[node];
    for (g, slot) in n.gpus.iter().enumerate() {
        let usage = ledger.device_usage(&n.name, &device_id(&n.name, g));
        let mirror = (
            u64::from(slot.tasks),
            u64::from(slot.cores),
            slot.memory_mib,
        );
        if (usage.used, usage.usedcores, usage.usedmem) != mirror {
            return Err(format!(
                "ledger and cluster disagree on GPU {g} of {}: ledger {usage:?}, cluster (tasks, cores, MiB) {mirror:?}",
                n.name
            ));
        }
    }
    Ok(())
}
