//! The naive reference oracle: can this node hold this pod? Answered by brute force over device
//! combinations, with the capacity rules written again from the specification (§2, §4.3, §4.4). It
//! shares no code with the scheduler's `fit`, `request` or `policy` modules.
//!
//! Per device, in HAMi's check order (the order only matters for reason strings):
//! health; not cordoned; type selectors (`use-gputype`/`nouse-gputype`, case-insensitive substring)
//! and `vgpu-mode` (substring of the annotation); UUID selectors (exact); tasks < split count; with a
//! `mutex` policy, no task at all; free memory ≥ the request (MiB, or percent of this device's
//! memory, truncating); free cores ≥ the request clamped at 100; a 100-core request on a devcore-100
//! device only when the device has no task; a 0-core request not on a device whose cores are all
//! taken; and never a `mig`-mode device (no MIG profiles are registered). Only devices whose type
//! contains `nvidia` (any case) are candidates.
//!
//! Per pod: every init container must fit alone on the usage before the pod (init containers run one
//! after another); the regular containers must fit together, each on the usage left by the previous
//! ones; a container's GPUs are distinct devices, all on one NUMA node under `numa-bind`.
//!
//! Unlike the scheduler, the oracle does not take the first devices that pass in policy order: it
//! tries every combination. It is therefore complete, and where it finds a packing the greedy fit
//! misses, that is HAMi's greedy incompleteness (see the crate README), not a bug.

use crate::fleet::{DevicePlan, FleetPlan, Registration};
use crate::pods::{GpuRequest, PodPlan};
use crate::recount::{Entry, Recount};
use sliceguard_core::annotations::{
    DEVICE_SCORING_WEIGHTS, GPU_SCHEDULER_POLICY, NOUSE_GPUTYPE, NOUSE_GPUUUID, NUMA_BIND,
    USE_GPUTYPE, USE_GPUUUID, VGPU_MODE,
};
use std::collections::{BTreeMap, BTreeSet};

/// Usage of one device.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Load {
    /// Tasks.
    pub tasks: u64,
    /// MiB.
    pub mem: u64,
    /// Cores.
    pub cores: u64,
}

/// One device as the oracle sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceState {
    /// The registered device.
    pub plan: DevicePlan,
    /// Listed in `hami.io/device-cordon`.
    pub cordoned: bool,
    /// Usage before the pod.
    pub load: Load,
}

impl DeviceState {
    /// True when the scheduler counts the device as an NVIDIA candidate.
    pub fn is_candidate(&self) -> bool {
        self.plan.device_type.to_lowercase().contains("nvidia")
    }
}

/// One registered node with its usage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeState {
    /// Node name.
    pub name: String,
    /// Devices in registration order.
    pub devices: Vec<DeviceState>,
}

/// The registered nodes of a fleet, with the usage recounted from its pods.
pub fn node_states(fleet: &FleetPlan, usage: &Recount) -> Vec<NodeState> {
    fleet
        .nodes
        .iter()
        .filter(|n| n.registration != Registration::Broken)
        .map(|n| NodeState {
            name: n.name.clone(),
            devices: n
                .devices
                .iter()
                .map(|d| {
                    let load = usage.load(&n.name, &d.id);
                    DeviceState {
                        plan: d.clone(),
                        cordoned: n.is_cordoned(&d.id),
                        load: Load {
                            tasks: load.tasks,
                            mem: load.mem,
                            cores: load.cores,
                        },
                    }
                })
                .collect(),
        })
        .collect()
}

/// Why a device refuses one GPU of a request, in HAMi's check order and spelling.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Refusal {
    /// Unhealthy.
    CardNotHealth,
    /// Cordoned.
    CardCordoned,
    /// Type or mode selector.
    CardTypeMismatch,
    /// UUID selector.
    CardUuidMismatch,
    /// Split count used up.
    CardTimeSlicingExhausted,
    /// Mutex policy on a used device, or a 100-core request on a used devcore-100 device.
    ExclusiveDeviceAllocateConflict,
    /// Not enough free memory.
    CardInsufficientMemory,
    /// Not enough free cores.
    CardInsufficientCore,
    /// All cores taken and the request asks for none.
    CardComputeUnitsExhausted,
    /// A MIG-mode device.
    CardMigTopologyInfeasible,
}

impl Refusal {
    /// HAMi's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::CardNotHealth => "CardNotHealth",
            Refusal::CardCordoned => "CardCordoned",
            Refusal::CardTypeMismatch => "CardTypeMismatch",
            Refusal::CardUuidMismatch => "CardUuidMismatch",
            Refusal::CardTimeSlicingExhausted => "CardTimeSlicingExhausted",
            Refusal::ExclusiveDeviceAllocateConflict => "ExclusiveDeviceAllocateConflict",
            Refusal::CardInsufficientMemory => "CardInsufficientMemory",
            Refusal::CardInsufficientCore => "CardInsufficientCore",
            Refusal::CardComputeUnitsExhausted => "CardComputeUnitsExhausted",
            Refusal::CardMigTopologyInfeasible => "CardMigTopologyInfeasible",
        }
    }
}

/// What a pod's annotations allow, read by the oracle's own code.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selectors {
    /// `use-gputype` entries, upper-cased, blanks dropped.
    pub use_types: Vec<String>,
    /// `nouse-gputype` entries.
    pub nouse_types: Vec<String>,
    /// `use-gpuuuid` entries, trimmed, blanks dropped.
    pub use_uuids: Vec<String>,
    /// `nouse-gpuuuid` entries.
    pub nouse_uuids: Vec<String>,
    /// `numa-bind` is true.
    pub numa_bind: bool,
    /// The raw `vgpu-mode` value, if any.
    pub vgpu_mode: Option<String>,
    /// The GPU policy contains `mutex`.
    pub mutex: bool,
}

fn entries(value: Option<&String>, upper: bool) -> Vec<String> {
    let Some(value) = value else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for part in value.split(',') {
        let part = part.trim();
        if part.is_empty() {
            continue;
        }
        out.push(if upper {
            part.to_uppercase()
        } else {
            part.to_string()
        });
    }
    out
}

/// Go's `strconv.ParseBool`.
fn go_bool(value: &str) -> Option<bool> {
    match value {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Some(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Some(false),
        _ => None,
    }
}

/// `slot=<int>,core=<int>,memory=<int>`: exactly these keys, non-negative, one positive.
fn weights_valid(value: &str) -> bool {
    let mut seen = BTreeMap::new();
    for part in value.split(',') {
        let Some((key, number)) = part.split_once('=') else {
            return false;
        };
        let key = key.trim();
        let number = number.trim();
        if !["slot", "core", "memory"].contains(&key)
            || number.is_empty()
            || !number.bytes().all(|b| b.is_ascii_digit())
        {
            return false;
        }
        let Ok(n) = number.parse::<u64>() else {
            return false;
        };
        if seen.insert(key, n).is_some() {
            return false;
        }
    }
    seen.len() == 3 && seen.values().any(|n| *n > 0)
}

/// Reads a pod's annotations; an error when one is invalid (the scheduler must then refuse the pod
/// as invalid and write nothing).
pub fn selectors(pod: &PodPlan) -> Result<Selectors, String> {
    let a = &pod.annotations;
    let numa_bind = match a.get(NUMA_BIND) {
        None => false,
        Some(v) => go_bool(v).ok_or_else(|| format!("{NUMA_BIND} {v:?} is not a Go boolean"))?,
    };
    if let Some(w) = a.get(DEVICE_SCORING_WEIGHTS)
        && !weights_valid(w)
    {
        return Err(format!("{DEVICE_SCORING_WEIGHTS} {w:?} is invalid"));
    }
    Ok(Selectors {
        use_types: entries(a.get(USE_GPUTYPE), true),
        nouse_types: entries(a.get(NOUSE_GPUTYPE), true),
        use_uuids: entries(a.get(USE_GPUUUID), false),
        nouse_uuids: entries(a.get(NOUSE_GPUUUID), false),
        numa_bind,
        vgpu_mode: a.get(VGPU_MODE).cloned(),
        mutex: a
            .get(GPU_SCHEDULER_POLICY)
            .is_some_and(|p| p.split(',').any(|t| t.trim() == "mutex")),
    })
}

/// The type, mode and UUID selectors alone: `CardTypeMismatch`, `CardUuidMismatch`, or `None`
/// when the pod's annotations allow the device.
pub fn selector_refusal(d: &DevicePlan, selectors: &Selectors) -> Option<Refusal> {
    let upper_type = d.device_type.to_uppercase();
    let type_wanted = selectors.use_types.is_empty()
        || selectors
            .use_types
            .iter()
            .any(|t| upper_type.contains(t.as_str()));
    let type_unwanted = selectors
        .nouse_types
        .iter()
        .any(|t| upper_type.contains(t.as_str()));
    let mode_allowed = match &selectors.vgpu_mode {
        None => true,
        Some(allowed) => allowed.contains(d.mode.as_str()),
    };
    if !type_wanted || type_unwanted || !mode_allowed {
        return Some(Refusal::CardTypeMismatch);
    }
    let uuid_wanted = selectors.use_uuids.is_empty() || selectors.use_uuids.contains(&d.id);
    if !uuid_wanted || selectors.nouse_uuids.contains(&d.id) {
        return Some(Refusal::CardUuidMismatch);
    }
    None
}

/// The first check a device fails for one GPU of `request`, given its usage `load`; `None` when it
/// accepts.
pub fn refusal(
    device: &DeviceState,
    load: Load,
    request: &GpuRequest,
    selectors: &Selectors,
) -> Option<Refusal> {
    let d = &device.plan;
    if !d.health {
        return Some(Refusal::CardNotHealth);
    }
    if device.cordoned {
        return Some(Refusal::CardCordoned);
    }
    if let Some(why) = selector_refusal(d, selectors) {
        return Some(why);
    }
    if load.tasks >= u64::from(d.count) {
        return Some(Refusal::CardTimeSlicingExhausted);
    }
    if selectors.mutex && load.tasks > 0 {
        return Some(Refusal::ExclusiveDeviceAllocateConflict);
    }
    let want_mem = request.mib_on(d.devmem);
    let free_mem = i128::from(d.devmem) - i128::from(load.mem);
    if free_mem < i128::from(want_mem) {
        return Some(Refusal::CardInsufficientMemory);
    }
    let cores = u64::from(request.cores_capped());
    let free_cores = i128::from(d.devcore) - i128::from(load.cores);
    if free_cores < i128::from(cores) {
        return Some(Refusal::CardInsufficientCore);
    }
    if d.devcore == 100 && cores == 100 && load.tasks > 0 {
        return Some(Refusal::ExclusiveDeviceAllocateConflict);
    }
    if d.devcore != 0 && load.cores == u64::from(d.devcore) && cores == 0 {
        return Some(Refusal::CardComputeUnitsExhausted);
    }
    if d.mode == "mig" {
        return Some(Refusal::CardMigTopologyInfeasible);
    }
    None
}

/// A packing: device indices (into the node's devices) per container, init containers first.
pub type Witness = Vec<Vec<usize>>;

/// The oracle's answer for one node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// The pod fits; one packing that shows it.
    Fits(Witness),
    /// No packing exists.
    Cannot,
}

impl Answer {
    /// True for [`Answer::Fits`].
    pub fn fits(&self) -> bool {
        matches!(self, Answer::Fits(_))
    }
}

/// Every `k`-subset of `items`, in lexicographic order, until `visit` returns true.
fn any_subset(items: &[usize], k: usize, visit: &mut impl FnMut(&[usize]) -> bool) -> bool {
    fn go(
        items: &[usize],
        k: usize,
        start: usize,
        chosen: &mut Vec<usize>,
        visit: &mut impl FnMut(&[usize]) -> bool,
    ) -> bool {
        if chosen.len() == k {
            return visit(chosen);
        }
        let needed = k - chosen.len();
        for i in start..items.len() {
            if items.len() - i < needed {
                break;
            }
            chosen.push(items[i]);
            if go(items, k, i + 1, chosen, visit) {
                return true;
            }
            chosen.pop();
        }
        false
    }
    go(items, k, 0, &mut Vec::with_capacity(k), visit)
}

fn same_numa(node: &NodeState, devices: &[usize]) -> bool {
    devices
        .windows(2)
        .all(|w| node.devices[w[0]].plan.numa == node.devices[w[1]].plan.numa)
}

/// Devices that accept one GPU of `request` under `loads`.
fn acceptable(
    node: &NodeState,
    loads: &[Load],
    request: &GpuRequest,
    selectors: &Selectors,
) -> Vec<usize> {
    (0..node.devices.len())
        .filter(|&i| node.devices[i].is_candidate())
        .filter(|&i| refusal(&node.devices[i], loads[i], request, selectors).is_none())
        .collect()
}

/// A set of devices for one container on `loads`, if one exists; tries every subset.
fn fit_alone(
    node: &NodeState,
    loads: &[Load],
    request: &GpuRequest,
    selectors: &Selectors,
) -> Option<Vec<usize>> {
    let ok = acceptable(node, loads, request, selectors);
    let mut found = None;
    any_subset(&ok, request.nums as usize, &mut |set| {
        if selectors.numa_bind && !same_numa(node, set) {
            return false;
        }
        found = Some(set.to_vec());
        true
    });
    found
}

fn take(load: &mut Load, device: &DevicePlan, request: &GpuRequest) {
    load.tasks += 1;
    load.mem += request.mib_on(device.devmem);
    load.cores += u64::from(request.cores_capped());
}

/// Regular containers from `k` on, each on the usage the previous ones left; backtracking over every
/// subset of every container.
fn fit_together(
    node: &NodeState,
    loads: &mut Vec<Load>,
    requests: &[Option<GpuRequest>],
    k: usize,
    selectors: &Selectors,
    out: &mut Witness,
) -> bool {
    let Some(slot) = requests.get(k) else {
        return true;
    };
    let Some(request) = slot else {
        out.push(Vec::new());
        if fit_together(node, loads, requests, k + 1, selectors, out) {
            return true;
        }
        out.pop();
        return false;
    };
    let ok = acceptable(node, loads, request, selectors);
    any_subset(&ok, request.nums as usize, &mut |set| {
        if selectors.numa_bind && !same_numa(node, set) {
            return false;
        }
        let saved = loads.clone();
        for &i in set {
            take(&mut loads[i], &node.devices[i].plan, request);
        }
        out.push(set.to_vec());
        if fit_together(node, loads, requests, k + 1, selectors, out) {
            return true;
        }
        out.pop();
        *loads = saved;
        false
    })
}

/// Can `node` hold `pod`? `Err` when the pod's annotations are invalid.
pub fn can_hold(node: &NodeState, pod: &PodPlan) -> Result<Answer, String> {
    let selectors = selectors(pod)?;
    let base: Vec<Load> = node.devices.iter().map(|d| d.load).collect();
    let mut witness = Witness::new();
    for container in &pod.init {
        match container.request() {
            None => witness.push(Vec::new()),
            Some(request) => match fit_alone(node, &base, &request, &selectors) {
                Some(set) => witness.push(set),
                None => return Ok(Answer::Cannot),
            },
        }
    }
    let app: Vec<Option<GpuRequest>> = pod.app.iter().map(|c| c.request()).collect();
    let mut loads = base;
    let mut app_witness = Witness::new();
    if !fit_together(node, &mut loads, &app, 0, &selectors, &mut app_witness) {
        return Ok(Answer::Cannot);
    }
    witness.extend(app_witness);
    Ok(Answer::Fits(witness))
}

/// Checks an allocation the scheduler made on `node` for `pod` (decoded from its annotation) against
/// the rules: one entry per container, each GPU container on exactly `nums` distinct candidate
/// devices that accept it (init containers on the usage before the pod, regular containers on the
/// usage left by the previous ones), with the request's memory and clamped cores recorded, backend
/// `NVIDIA`, and one NUMA node under `numa-bind`. `Err` explains the first problem.
pub fn validate(node: &NodeState, pod: &PodPlan, allocation: &[Vec<Entry>]) -> Result<(), String> {
    let selectors = selectors(pod)?;
    let requests = pod.requests();
    if allocation.len() != requests.len() {
        return Err(format!(
            "{} container entries for {} containers",
            allocation.len(),
            requests.len()
        ));
    }
    let base: Vec<Load> = node.devices.iter().map(|d| d.load).collect();
    let mut app_loads = base.clone();
    for (position, (entries, request)) in allocation.iter().zip(&requests).enumerate() {
        let is_init = position < pod.init.len();
        let container = if is_init {
            format!("init container {position}")
        } else {
            format!("container {}", position - pod.init.len())
        };
        let Some(request) = request else {
            if entries.is_empty() {
                continue;
            }
            return Err(format!("{container} asks for no GPU but holds {entries:?}"));
        };
        if entries.len() != request.nums as usize {
            return Err(format!(
                "{container} asks for {} GPUs and holds {}",
                request.nums,
                entries.len()
            ));
        }
        let mut indices = Vec::new();
        for e in entries {
            let Some(i) = node.devices.iter().position(|d| d.plan.id == e.uuid) else {
                return Err(format!(
                    "{container} holds {} which is not on {}",
                    e.uuid, node.name
                ));
            };
            let device = &node.devices[i];
            if !device.is_candidate() {
                return Err(format!(
                    "{container} holds {} of non-NVIDIA type {:?}",
                    e.uuid, device.plan.device_type
                ));
            }
            let want_mem = request.mib_on(device.plan.devmem);
            let want_cores = u64::from(request.cores_capped());
            if e.backend != "NVIDIA" || e.mem != want_mem || e.cores != want_cores {
                return Err(format!(
                    "{container} on {}: recorded {},{} MiB,{} cores; the request means NVIDIA,{want_mem} MiB,{want_cores} cores",
                    e.uuid, e.backend, e.mem, e.cores
                ));
            }
            let loads = if is_init { &base } else { &app_loads };
            if let Some(why) = refusal(device, loads[i], request, &selectors) {
                return Err(format!(
                    "{container} placed on {} which refuses it: {} (device {:?}, usage before {:?})",
                    e.uuid,
                    why.as_str(),
                    device.plan,
                    loads[i]
                ));
            }
            indices.push(i);
        }
        let distinct: BTreeSet<usize> = indices.iter().copied().collect();
        if distinct.len() != indices.len() {
            return Err(format!("{container} holds one device twice: {entries:?}"));
        }
        if selectors.numa_bind && !same_numa(node, &indices) {
            return Err(format!("{container} spans NUMA nodes under numa-bind"));
        }
        if !is_init {
            for &i in &indices {
                take(&mut app_loads[i], &node.devices[i].plan, request);
            }
        }
    }
    Ok(())
}

/// HAMi's `GenReason`: `"<count>/<total> <Reason>"` entries sorted as whole strings, `", "`-joined.
pub fn gen_reason(counts: &BTreeMap<&str, u32>, total: usize) -> String {
    let mut items: Vec<String> = counts
        .iter()
        .filter(|(_, c)| **c > 0)
        .map(|(reason, count)| format!("{count}/{total} {reason}"))
        .collect();
    items.sort();
    items.join(", ")
}

/// The exact reason a node must give when the pod's first GPU container (init containers first) is
/// refused there, when the rules determine it: `NodeInsufficientDevice` when it asks for more GPUs
/// than the node has candidates; otherwise, when fewer candidate devices accept it than it asks
/// for, every refusal counted plus `AllocatedCardsInsufficientRequest` for the devices it got.
/// `None` when that container fits, when the pod is invalid, or under `numa-bind` with partial
/// progress (whose `NumaNotFit` counts depend on the device order).
pub fn first_container_rejection(node: &NodeState, pod: &PodPlan) -> Option<String> {
    let selectors = selectors(pod).ok()?;
    let request = pod.requests().into_iter().flatten().next()?;
    let candidates: Vec<&DeviceState> = node.devices.iter().filter(|d| d.is_candidate()).collect();
    if request.nums as usize > candidates.len() {
        return Some("NodeInsufficientDevice".to_string());
    }
    let mut counts: BTreeMap<&str, u32> = BTreeMap::new();
    let mut accepted = 0u32;
    for device in &candidates {
        match refusal(device, device.load, &request, &selectors) {
            Some(why) => *counts.entry(why.as_str()).or_default() += 1,
            None => accepted += 1,
        }
    }
    if accepted >= request.nums || (selectors.numa_bind && accepted > 0) {
        return None;
    }
    if accepted > 0 {
        counts.insert("AllocatedCardsInsufficientRequest", accepted);
    }
    Some(gen_reason(&counts, candidates.len()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pods::{ContainerPlan, ResourceValue};

    fn device(j: usize, devmem: u32, numa: u32) -> DevicePlan {
        DevicePlan {
            id: format!("GPU-n0-{j}"),
            index: j as u32,
            count: 10,
            devmem,
            devcore: 100,
            device_type: "NVIDIA-A100".into(),
            numa,
            mode: "hami-core".into(),
            health: true,
        }
    }

    fn node(devices: Vec<(DevicePlan, Load)>) -> NodeState {
        NodeState {
            name: "n0".into(),
            devices: devices
                .into_iter()
                .map(|(plan, load)| DeviceState {
                    plan,
                    cordoned: false,
                    load,
                })
                .collect(),
        }
    }

    fn pod(app: Vec<ContainerPlan>) -> PodPlan {
        PodPlan {
            init: vec![],
            app,
            annotations: BTreeMap::new(),
        }
    }

    #[test]
    fn brute_force_finds_the_packing_a_greedy_order_would_miss() {
        // 10000 and 5000 MiB free; containers of 4000 then 8000 fit only as 4000→small, 8000→big.
        let n = node(vec![
            (device(0, 10000, 0), Load::default()),
            (device(1, 5000, 0), Load::default()),
        ]);
        let p = pod(vec![
            ContainerPlan::fraction(1, 4000, 0),
            ContainerPlan::fraction(1, 8000, 0),
        ]);
        assert_eq!(can_hold(&n, &p), Ok(Answer::Fits(vec![vec![1], vec![0]])));
        let too_much = pod(vec![
            ContainerPlan::fraction(1, 6000, 0),
            ContainerPlan::fraction(1, 8000, 0),
        ]);
        assert_eq!(can_hold(&n, &too_much), Ok(Answer::Cannot));
    }

    #[test]
    fn exclusivity_compute_exhaustion_and_numa_bind() {
        let used = Load {
            tasks: 1,
            mem: 100,
            cores: 100,
        };
        let n = node(vec![
            (device(0, 8000, 0), used),
            (device(1, 8000, 1), Load::default()),
        ]);
        let selectors = Selectors::default();
        let zero_cores = ContainerPlan::fraction(1, 100, 0).request().unwrap();
        assert_eq!(
            refusal(&n.devices[0], used, &zero_cores, &selectors),
            Some(Refusal::CardComputeUnitsExhausted)
        );
        let exclusive = ContainerPlan::fraction(1, 100, 150).request().unwrap();
        // A task with no cores leaves all 100 free, yet the device is used: exclusivity refuses.
        let light = Load {
            tasks: 1,
            mem: 100,
            cores: 0,
        };
        assert_eq!(
            refusal(&n.devices[0], light, &exclusive, &selectors),
            Some(Refusal::ExclusiveDeviceAllocateConflict)
        );
        let two = pod(vec![ContainerPlan {
            gpu: ResourceValue::limit(2),
            mem: ResourceValue::limit(100),
            ..Default::default()
        }]);
        let free = node(vec![
            (device(0, 8000, 0), Load::default()),
            (device(1, 8000, 1), Load::default()),
        ]);
        assert!(can_hold(&free, &two).unwrap().fits());
        let mut bound = two.clone();
        bound.annotations.insert(NUMA_BIND.into(), "true".into());
        assert_eq!(can_hold(&free, &bound), Ok(Answer::Cannot));
        bound.annotations.insert(NUMA_BIND.into(), "yes".into());
        assert!(can_hold(&free, &bound).is_err());
    }

    #[test]
    fn exact_reasons_for_the_first_container() {
        let n = node(vec![
            (device(0, 1000, 0), Load::default()),
            (device(1, 8000, 0), Load::default()),
        ]);
        let p = pod(vec![ContainerPlan {
            gpu: ResourceValue::limit(2),
            mem: ResourceValue::limit(2000),
            ..Default::default()
        }]);
        assert_eq!(
            first_container_rejection(&n, &p).as_deref(),
            Some("1/2 AllocatedCardsInsufficientRequest, 1/2 CardInsufficientMemory")
        );
        let three = pod(vec![ContainerPlan {
            gpu: ResourceValue::limit(3),
            ..Default::default()
        }]);
        assert_eq!(
            first_container_rejection(&n, &three).as_deref(),
            Some("NodeInsufficientDevice")
        );
        let fits = pod(vec![ContainerPlan::fraction(1, 10, 0)]);
        assert_eq!(first_container_rejection(&n, &fits), None);
        let counts = BTreeMap::from([("X", 1), ("A", 2)]);
        assert_eq!(gen_reason(&counts, 10), "1/10 X, 2/10 A");
    }

    #[test]
    fn weights_and_booleans() {
        assert!(weights_valid("slot=1,core=1,memory=1"));
        assert!(weights_valid(" memory = 0,core=0,slot=2"));
        assert!(!weights_valid("slot=0,core=0,memory=0"));
        assert!(!weights_valid("slot=1,core=2"));
        assert!(!weights_valid("slot=1,core=2,memory=-1"));
        assert_eq!(go_bool("True"), Some(true));
        assert_eq!(go_bool("yes"), None);
    }
}
