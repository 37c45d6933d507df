//! One run: a seed's arrival sequence replayed through a placer, following the recipe (§5): each pod
//! is submitted once, in order, and placed before the next arrives; a pod nobody can place fails for
//! good (no retry, no queue, no preemption); nothing is ever deleted; the run ends when the sequence
//! is used up (arrived ≈ `tune` × capacity).
//!
//! Per pod:
//! 1. kube-scheduler's filters pick the nodes it would offer: NodeResourcesFit (CPU, memory, pod
//!    count), and for a GPU pod only GPU nodes (they alone have `nvidia.com/gpu`) and, with
//!    [`SpecMatch::Exact`], only nodes of an allowed model (node affinity on the model label).
//! 2. A GPU pod goes to the placer (sliceguard's core, or a paper baseline); a CPU-only pod goes to
//!    kube-scheduler's scoring ([`CpuPlacement`]) unless the placer is a baseline asked to place it.
//! 3. The placement is applied to the cluster mirror, whose capacity invariants are checked (memory,
//!    cores, split count, exclusive alone, host CPU/memory/pods), and the placer's own state is
//!    audited against it (for the core: the ledger equals the mirror on every GPU of the node). Any
//!    violation fails the run.
//! 4. An [`Event`] records arrived and used milli-GPU and the cluster's fragmentation.

use super::arrival::arrival_sequence;
use super::cluster::{Cluster, CpuPlacement, Violation};
use super::input::{NodeRow, PodRow};
use super::metrics::{Event, TypicalTask, node_frag, typical_tasks};
use super::placer::{
    CorePlacer, FragmentationTuning, Placer, PlacerError, PolicySpec, ProfileSource, SpecMatch,
    trace_profile,
};
use super::reference::ReferencePlacer;
use super::service_placer::ServicePlacer;
use serde::Serialize;
use std::time::{Duration, Instant};

/// Share of the original trace's tasks the fragmentation metric's typical tasks cover.
pub const METRIC_COVERAGE: f64 = 0.95;

/// The split count at which the recipe asks how often the cap would bind (HAMi's default).
pub const HAMI_DEFAULT_SPLIT: u32 = 10;

/// A trace ready to replay: the fleet, the pod rows and the metric's typical tasks.
#[derive(Debug, Clone)]
pub struct Trace {
    /// A label for reports (usually the pod file's stem).
    pub label: String,
    /// Fleet.
    pub nodes: Vec<NodeRow>,
    /// Pod rows in file order.
    pub pods: Vec<PodRow>,
    /// Typical tasks of the original rows (fragmentation metric).
    pub typical: Vec<TypicalTask>,
}

impl Trace {
    /// A trace from parsed rows.
    pub fn new(label: impl Into<String>, nodes: Vec<NodeRow>, pods: Vec<PodRow>) -> Self {
        let typical = typical_tasks(&pods, METRIC_COVERAGE);
        Trace {
            label: label.into(),
            nodes,
            pods,
            typical,
        }
    }

    /// Σ milli-GPU of the fleet.
    pub fn capacity_milli(&self) -> u64 {
        self.nodes.iter().map(|n| u64::from(n.gpus) * 1000).sum()
    }

    /// Σ GPU request of the original rows, in % of capacity.
    pub fn demand_percent(&self) -> f64 {
        let demand: u64 = self.pods.iter().map(PodRow::gpu_request_milli).sum();
        demand as f64 * 100.0 / self.capacity_milli().max(1) as f64
    }
}

/// Which path a sliceguard decision takes in the replay.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, clap::ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum DecisionPath {
    /// `serve`'s: the service's view fed as the watches deliver pods and nodes, the learned
    /// workload and host CPU read from it, the filter machine ([`ServicePlacer`]).
    #[default]
    Service,
    /// The core's decision called directly on a registry and ledger the harness keeps, with the
    /// harness's CPU accounting ([`CorePlacer`]); needed for `--profile trace` and the tuning
    /// ablations, which `serve` has no setting for.
    Core,
}

impl std::fmt::Display for DecisionPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            DecisionPath::Service => "service",
            DecisionPath::Core => "core",
        })
    }
}

/// How a run is set up.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReplayConfig {
    /// Who places GPU pods.
    pub policy: PolicySpec,
    /// Resample the trace to this multiple of GPU capacity.
    pub tune: f64,
    /// Split count per GPU.
    pub split: u32,
    /// Pods per node (kube's NodeResourcesFit pod count).
    pub max_pods: u32,
    /// How `gpu_spec` restricts models.
    pub spec_match: SpecMatch,
    /// Who places CPU-only pods.
    pub cpu_pods: CpuPlacement,
    /// Where the fragmentation policy's typical workload comes from.
    pub profile: ProfileSource,
    /// The fragmentation policy's knobs (ablations only).
    pub tuning: FragmentationTuning,
    /// Which decision path sliceguard's policies run through (ignored for the paper's baselines).
    pub path: DecisionPath,
    /// Offer the placer only the nodes where the pod's GPU part fits ([`Cluster::gpu_fits`]). The
    /// decision is the same (a node the fit rejects is never chosen, and no node's verdict depends
    /// on another's); only the rejected nodes' verdicts are not computed. `tests/replay.rs`
    /// compares both paths decision by decision.
    pub fast_path: bool,
}

impl ReplayConfig {
    /// The recipe's settings for `policy`: tune 1.3, split 20, 1001 pods per node, exact model
    /// matching, CPU-only pods by kube-scheduler's default profile, a learned profile.
    pub fn recipe(policy: PolicySpec) -> Self {
        ReplayConfig {
            policy,
            tune: 1.3,
            split: 20,
            max_pods: 1001,
            spec_match: SpecMatch::Exact,
            cpu_pods: CpuPlacement::KubeDefault,
            profile: ProfileSource::Learned,
            tuning: FragmentationTuning::default(),
            path: DecisionPath::Service,
            fast_path: true,
        }
    }
}

/// What one run produced.
#[derive(Debug, Clone, Serialize)]
pub struct RunResult {
    /// The seed.
    pub seed: u64,
    /// One event per submitted pod.
    #[serde(skip)]
    pub events: Vec<Event>,
    /// Pods submitted.
    pub submitted: u64,
    /// GPU pods that failed.
    pub failed_gpu: u64,
    /// CPU-only pods that failed.
    pub failed_cpu: u64,
    /// Placer decisions.
    pub decisions: u64,
    /// Time inside the placer's decisions.
    pub decision_time: Duration,
    /// Wall time of the whole run (arrival sequence, decisions, bookkeeping, checks).
    pub wall_time: Duration,
    /// GPU grants that landed on a GPU already holding [`HAMI_DEFAULT_SPLIT`] or more tasks (each
    /// would have been refused with HAMi's default split count).
    pub grants_beyond_default_split: u64,
    /// Most tasks ever on one GPU.
    pub max_tasks_per_gpu: u32,
    /// A digest of every decision (pod, node, GPUs, or failure), to compare runs decision by decision.
    pub digest: u64,
}

impl RunResult {
    /// Pods that failed.
    pub fn failed(&self) -> u64 {
        self.failed_gpu + self.failed_cpu
    }
}

/// Why a run stopped.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// The configuration cannot run.
    #[error("cannot set up the run: {0}")]
    Setup(String),
    /// The placer refused to decide.
    #[error(transparent)]
    Placer(#[from] PlacerError),
    /// A placement broke a capacity invariant.
    #[error("invariant broken by pod {pod}: {violation}")]
    Invariant {
        /// The pod.
        pod: String,
        /// What broke.
        violation: Violation,
    },
    /// The placer's state disagrees with the cluster.
    #[error("after pod {pod}: {detail}")]
    Audit {
        /// The pod.
        pod: String,
        /// The disagreement.
        detail: String,
    },
}

/// Whether `model` passes the pod's `gpu_spec` under `matching` (HAMi's substring rule compares
/// upper-cased entries with the registered type `NVIDIA-<model>`).
pub fn model_allowed(pod: &PodRow, model: &str, matching: SpecMatch) -> bool {
    match matching {
        SpecMatch::Exact => pod.allows_model(model),
        SpecMatch::HamiSubstring => {
            let device_type = super::placer::device_type(model).to_uppercase();
            pod.gpu_spec.is_empty()
                || pod
                    .gpu_spec
                    .iter()
                    .any(|m| device_type.contains(&m.to_uppercase()))
        }
    }
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;

/// FNV-1a over the bytes of `value`.
fn fnv(mut hash: u64, value: u64) -> u64 {
    for b in value.to_le_bytes() {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

/// Replays `trace` under `config` for `seed`; `tick` is called once per submitted pod.
pub fn replay(
    trace: &Trace,
    config: &ReplayConfig,
    seed: u64,
    tick: &mut dyn FnMut(),
) -> Result<RunResult, ReplayError> {
    let started = Instant::now();
    let capacity = trace.capacity_milli();
    let sequence = arrival_sequence(&trace.pods, capacity, config.tune, seed);
    let mut cluster = Cluster::new(&trace.nodes, config.split, config.max_pods, seed);
    let mut placer: Box<dyn Placer> = match &config.policy {
        PolicySpec::Core { node, gpu } if config.path == DecisionPath::Service => {
            if config.profile != ProfileSource::Learned
                || config.tuning != FragmentationTuning::default()
            {
                let mut unsupported = Vec::new();
                if config.profile != ProfileSource::Learned {
                    unsupported.push(format!("--profile {}", config.profile));
                }
                if config.tuning != FragmentationTuning::default() {
                    unsupported.push("the tuning ablations (--fragmentation-scale, --multi-gpu-scale, --count-weighted, --weighting-exponent)".to_string());
                }
                return Err(ReplayError::Setup(format!(
                    "the service path learns its profile online with sliceguard's own tuning, and serve has no setting for {}; use --decision-path core",
                    unsupported.join(" or ")
                )));
            }
            Box::new(
                ServicePlacer::new(&cluster, node, gpu, config.spec_match)
                    .map_err(ReplayError::Setup)?,
            )
        }
        PolicySpec::Core { node, gpu } => {
            let profile = match config.profile {
                ProfileSource::Learned => None,
                ProfileSource::Trace => Some(
                    trace_profile(&trace.pods, config.spec_match).map_err(ReplayError::Setup)?,
                ),
            };
            Box::new(
                CorePlacer::new(
                    &cluster,
                    node,
                    gpu,
                    config.spec_match,
                    profile,
                    config.tuning,
                )
                .map_err(ReplayError::Setup)?,
            )
        }
        PolicySpec::Reference { policy } => {
            Box::new(ReferencePlacer::new(*policy, trace.typical.clone(), seed))
        }
    };

    if config.cpu_pods == CpuPlacement::Policy && !placer.places_cpu_pods() {
        return Err(ReplayError::Setup(format!(
            "{} does not place CPU-only pods (HAMi's filter passes every node for them, so kube-scheduler does); choose --cpu-pods kube-default or kube-most-allocated",
            config.policy
        )));
    }
    let mut frag: Vec<f64> = cluster
        .nodes
        .iter()
        .map(|n| node_frag(n, &trace.typical))
        .collect();
    let mut frag_sum: f64 = frag.iter().sum();
    let mut result = RunResult {
        seed,
        events: Vec::with_capacity(sequence.len()),
        submitted: 0,
        failed_gpu: 0,
        failed_cpu: 0,
        decisions: 0,
        decision_time: Duration::ZERO,
        wall_time: Duration::ZERO,
        grants_beyond_default_split: 0,
        max_tasks_per_gpu: 0,
        digest: FNV_OFFSET,
    };
    let mut arrived: u64 = 0;
    let mut offered: Vec<usize> = Vec::with_capacity(cluster.nodes.len());
    for arrival in &sequence {
        let pod = &trace.pods[arrival.row];
        let name = arrival.name(&trace.pods);
        arrived += pod.gpu_request_milli();
        result.submitted += 1;

        // kube-scheduler's filters: NodeResourcesFit, and for a GPU pod the GPU nodes of an allowed
        // model. With no node left, kube-scheduler never calls the extender.
        offered.clear();
        offered.extend((0..cluster.nodes.len()).filter(|&i| {
            let n = &cluster.nodes[i];
            cluster.host_fits(i, pod)
                && (pod.num_gpu == 0
                    || (!n.gpus.is_empty()
                        && (config.spec_match != SpecMatch::Exact || pod.allows_model(&n.model))))
        }));
        let placement = if pod.num_gpu == 0 {
            let node = match config.cpu_pods {
                CpuPlacement::Policy if !offered.is_empty() => {
                    placer.place_cpu(&cluster, pod, &name, &offered)
                }
                CpuPlacement::Policy => None,
                strategy => cluster.kube_pick(pod, strategy),
            };
            node.map(|n| (n, Vec::new()))
        } else if offered.is_empty() {
            None
        } else {
            if config.fast_path {
                // Only the nodes where the GPU part fits (possibly none): the placer still sees
                // the pod, as the extender would.
                offered.retain(|&i| {
                    cluster.gpu_fits(i, pod)
                        && model_allowed(pod, &cluster.nodes[i].model, config.spec_match)
                });
            }
            placer
                .place_gpu(&cluster, pod, &name, &offered)?
                .map(|c| (c.node, c.grants))
        };
        result.digest = fnv(result.digest, arrival.row as u64);
        match &placement {
            Some((node, grants)) => {
                result.digest = fnv(result.digest, *node as u64);
                for g in grants {
                    result.digest = fnv(result.digest, g.gpu as u64);
                }
            }
            None => result.digest = fnv(result.digest, u64::MAX),
        }
        match placement {
            Some((node, grants)) => {
                for g in &grants {
                    if let Some(slot) = cluster.nodes[node].gpus.get(g.gpu)
                        && slot.tasks >= HAMI_DEFAULT_SPLIT
                    {
                        result.grants_beyond_default_split += 1;
                    }
                }
                cluster
                    .apply(node, pod, &grants)
                    .map_err(|violation| ReplayError::Invariant {
                        pod: name.clone(),
                        violation,
                    })?;
                placer.bound(&cluster, pod, &name, node);
                placer
                    .audit(&cluster, node)
                    .map_err(|detail| ReplayError::Audit {
                        pod: name.clone(),
                        detail,
                    })?;
                for g in &grants {
                    result.max_tasks_per_gpu = result
                        .max_tasks_per_gpu
                        .max(cluster.nodes[node].gpus[g.gpu].tasks);
                }
                frag_sum -= frag[node];
                frag[node] = node_frag(&cluster.nodes[node], &trace.typical);
                frag_sum += frag[node];
            }
            None if pod.num_gpu == 0 => result.failed_cpu += 1,
            None => result.failed_gpu += 1,
        }
        let used = cluster.used_milli();
        result.events.push(Event {
            arrived_milli: arrived,
            used_milli: used,
            frag_milli: frag_sum.max(0.0),
            idle_milli: capacity - used,
        });
        tick();
    }
    let (decisions, decision_time) = placer.decision_stats();
    result.decisions = decisions;
    result.decision_time = decision_time;
    result.wall_time = started.elapsed();
    Ok(result)
}
