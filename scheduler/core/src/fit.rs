//! Whether a pod fits a node, and on which devices: HAMi's `calcScore`/`fitInDevices`/`Fit` (spec §4.3,
//! §4.4), with its check order and reason strings.
//!
//! Per container, the node's NVIDIA devices are ordered by the GPU policy so that the preferred
//! device is **last**, then visited from the last to the first; each device is refused for the first
//! check it fails, in this order:
//! `CardNotHealth`, `CardCordoned`, `CardTypeMismatch`, (numa-bind group switch, `NumaNotFit`),
//! `CardUuidMismatch`, `CardTimeSlicingExhausted`, (mutex) `ExclusiveDeviceAllocateConflict`,
//! `CardInsufficientMemory`, `CardInsufficientCore`, `ExclusiveDeviceAllocateConflict`,
//! `CardComputeUnitsExhausted`, (MIG mode) `CardMigTopologyInfeasible`.
//! A container that got some devices but not enough adds `AllocatedCardsInsufficientRequest`. The
//! reasons of a failed container become `"<count>/<candidates> <Reason>"` entries sorted as strings.
//!
//! Init containers are fitted one at a time on fresh copies of the node (they run sequentially);
//! regular containers accumulate on one copy. The node score comes from usage before the pod.
//!
//! Ordering is total and deterministic: among devices HAMi's order cannot tell apart, the device
//! registered first is tried first (HAMi leaves this to Go's sort; see the README).
//!
//! sliceguard's `fragmentation` GPU policy ([`crate::fragmentation`]) hooks in twice: devices are
//! ordered by the growth of the node's expected fragmentation each would cause (least growth is
//! preferred), and the node score becomes the growth the whole pod causes (lower is better).

use crate::annotations::BACKEND_NVIDIA;
use crate::fragmentation::{self, NodeInputs, NodeScorer, TypicalWorkload};
use crate::gpu_policy::DeviceOrderInputs;
use crate::model::{ContainerDevice, DeviceUsage, PodAllocation};
use crate::policy::PodPreferences;
use crate::request::{ContainerRequest, PodRequest};
use crate::rules::{self, Demand, DeviceState, Selection};
use crate::score::{device_score, node_score};
use std::cmp::Ordering;

pub use crate::model::NodeView;
pub use crate::rules::{FitReason, NodeRejection, ReasonCounts};

/// A node that can hold the pod: its score and the devices each container gets.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeFit {
    /// Node score from usage before the pod.
    pub score: f32,
    /// Devices per container, init containers first.
    pub allocation: PodAllocation,
}

/// Evaluates a pod against a node.
pub fn evaluate_node(
    node: NodeView<'_>,
    request: &PodRequest,
    prefs: &PodPreferences,
) -> Result<NodeFit, NodeRejection> {
    evaluate_node_with(node, request, prefs, None)
}

/// [`evaluate_node`], with what the `fragmentation` policy scores against (typical workload, the
/// node's free CPU, the pod's CPU); without it, the pod's own containers are the typical workload and
/// CPU is ignored. Other policies ignore it.
pub fn evaluate_node_with(
    node: NodeView<'_>,
    request: &PodRequest,
    prefs: &PodPreferences,
    fragmentation: Option<NodeInputs<'_>>,
) -> Result<NodeFit, NodeRejection> {
    let own;
    let fragmentation = match fragmentation {
        _ if !fragmentation::applies(prefs) => None,
        Some(inputs) => Some(inputs),
        None => {
            own = TypicalWorkload::of_pod(request, prefs, 0);
            Some(NodeInputs {
                typical: &own,
                cpu_free: None,
                pod_cpu_milli: 0,
                score_scale_gpus: fragmentation::SCORE_SCALE_GPUS,
            })
        }
    };
    let base: Vec<DeviceUsage> = node.usage.to_vec();
    let candidates = node.nvidia_devices();
    let scorer = fragmentation.map(|inputs| NodeScorer::new(node, &base, &candidates, inputs));

    let mut init = Vec::new();
    for slot in request.init() {
        let devices = match &slot.request {
            None => Vec::new(),
            Some(r) => {
                let mut scratch = base.clone();
                fit_container(node, &mut scratch, &candidates, r, prefs, scorer.as_ref())?
            }
        };
        init.push(devices);
    }

    let mut score = node_score(node.devices.iter().zip(base.iter()));

    let mut working = base;
    let mut app = Vec::new();
    for slot in request.app() {
        let devices = match &slot.request {
            None => Vec::new(),
            Some(r) => fit_container(node, &mut working, &candidates, r, prefs, scorer.as_ref())?,
        };
        app.push(devices);
    }
    if let Some(scorer) = &scorer {
        score = scorer.score(node, &candidates, &working);
    }
    Ok(NodeFit {
        score,
        allocation: PodAllocation { init, app },
    })
}

/// Orders candidates so that the preferred device is last: the GPU policy's order
/// ([`crate::gpu_policy`]), made total by registration order (registered first is tried first).
fn order_candidates(
    node: NodeView<'_>,
    usage: &[DeviceUsage],
    candidates: &[usize],
    request: &ContainerRequest,
    prefs: &PodPreferences,
    fragmentation: Option<&NodeScorer<'_>>,
) -> Vec<usize> {
    let scores: Vec<f32> = (0..node.devices.len())
        .map(|i| device_score(&node.devices[i], &usage[i], request, prefs.weights))
        .collect();
    let growth = match fragmentation {
        Some(scorer) => scorer.device_keys(node, usage, candidates, request),
        None => Vec::new(),
    };
    let inputs = DeviceOrderInputs {
        node: NodeView { usage, ..node },
        scores: &scores,
        numa_bind: prefs.numa_bind,
        growth: &growth,
    };
    let policy = prefs.gpu_policy.device_policy();
    let mut order = candidates.to_vec();
    order.sort_by(|&a, &b| policy.prefer(&inputs, a, b).then(b.cmp(&a)));
    order
}

/// HAMi's `Fit` for one container; on success records the usage in `usage` and returns the devices.
fn fit_container(
    node: NodeView<'_>,
    usage: &mut [DeviceUsage],
    candidates: &[usize],
    request: &ContainerRequest,
    prefs: &PodPreferences,
    fragmentation: Option<&NodeScorer<'_>>,
) -> Result<Vec<ContainerDevice>, NodeRejection> {
    if request.nums as usize > candidates.len() {
        return Err(NodeRejection::NodeInsufficientDevice);
    }
    let order = order_candidates(node, usage, candidates, request, prefs, fragmentation);
    let mut counts = ReasonCounts::new(candidates.len() as u32);
    let original = request.nums;
    let mut remaining = original;
    let mut previous_numa: Option<u32> = None;
    let mut chosen: Vec<(usize, u32, u32)> = Vec::new();
    let demand = Demand {
        request,
        mutex: prefs.gpu_policy.is_mutex(),
    };
    let cores = request.cores_clamped();

    for &i in order.iter().rev() {
        let d = &node.devices[i];
        let state = DeviceState::of(d, usage[i], node.cordoned.contains(&d.id));
        let mut selection = Selection {
            type_allowed: prefs.type_allowed(&d.device_type, &d.mode),
            uuid_allowed: true,
        };
        if let Some(reason) = rules::refusal_before_numa(&state, selection) {
            counts.bump(reason, 1);
            continue;
        }
        if prefs.numa_bind && previous_numa != Some(d.numa) {
            if remaining != original {
                counts.bump(FitReason::NumaNotFit, chosen.len() as u32);
            }
            remaining = original;
            previous_numa = Some(d.numa);
            chosen.clear();
        }
        selection.uuid_allowed = prefs.uuid_allowed(&d.id);
        if let Some(reason) = rules::refusal_after_numa(&state, selection, demand) {
            counts.bump(reason, 1);
            continue;
        }
        let memreq = request.memory_on(d.devmem);
        if remaining > 0 {
            remaining -= 1;
            // memreq ≤ devmem ≤ i32::MAX here, so it fits in u32.
            chosen.push((i, u32::try_from(memreq).unwrap_or(u32::MAX), cores));
        }
        if remaining == 0 {
            let mut devices = Vec::with_capacity(chosen.len());
            for (i, mem, cores) in chosen {
                let slot = &mut usage[i];
                slot.used += 1;
                slot.usedmem += u64::from(mem);
                slot.usedcores += u64::from(cores);
                devices.push(ContainerDevice {
                    uuid: node.devices[i].id.clone(),
                    backend: BACKEND_NVIDIA.to_string(),
                    usedmem: mem,
                    usedcores: cores,
                });
            }
            return Ok(devices);
        }
    }
    if !chosen.is_empty() {
        counts.set(
            FitReason::AllocatedCardsInsufficientRequest,
            chosen.len() as u32,
        );
    }
    Err(NodeRejection::Devices(counts))
}

/// Orders two node scores so that the better one for `policy` compares greater.
pub fn node_preference(policy: crate::policy::NodePolicy, a: f32, b: f32) -> Ordering {
    match policy {
        crate::policy::NodePolicy::Binpack => a.total_cmp(&b),
        crate::policy::NodePolicy::Spread => b.total_cmp(&a),
    }
}
