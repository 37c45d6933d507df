//! The placement index's pruning, by the work it saves. A node summary only states necessary
//! conditions and the exact fit runs behind it, so a looser bound changes no decision: these tests
//! read the work instead ([`PlacementIndex::decide_counting`]). Each puts a node the summary must
//! reject first in the walk order (`a-trap`, by name on a score tie or by its higher binpack score)
//! and a node that fits second (`b-fit`), and asserts that the walk reached both but evaluated only
//! the second.

use jiff::Timestamp;
use sliceguard_core::annotations::{
    DEVICE_CORDON, GPU_SCHEDULER_POLICY, NOUSE_GPUTYPE, NOUSE_GPUUUID, NUMA_BIND, USE_GPUTYPE,
    USE_GPUUUID, VGPU_MODE,
};
use sliceguard_core::decision::{SchedulerSettings, prepare};
use sliceguard_core::index::{PlacementIndex, WalkWork};
use sliceguard_core::ledger::UsageSource;
use sliceguard_core::model::{DeviceInfo, DeviceUsage};
use sliceguard_core::objects::{GpuAsk, gpu_node, gpu_pod, with_annotations};
use sliceguard_core::registry::Registry;
use std::collections::HashMap;

/// Usage by device id, whatever it is (over-full included).
#[derive(Default)]
struct Usage(HashMap<String, DeviceUsage>);

impl UsageSource for Usage {
    fn device_usage(&self, _node: &str, uuid: &str) -> DeviceUsage {
        self.0.get(uuid).copied().unwrap_or_default()
    }
}

fn device(node: &str, i: usize) -> DeviceInfo {
    DeviceInfo {
        id: format!("GPU-{node}-{i}"),
        index: i as u32,
        count: 10,
        devmem: 8000,
        devcore: 100,
        device_type: "NVIDIA-A100".into(),
        numa: 0,
        mode: "hami-core".into(),
        health: true,
    }
}

/// The trap node's two devices after `change`, its usage per device, and its cordon list.
struct Trap {
    change: fn(&mut DeviceInfo),
    usage: DeviceUsage,
    cordon: bool,
}

impl Trap {
    fn devices(change: fn(&mut DeviceInfo)) -> Self {
        Trap {
            change,
            usage: DeviceUsage::default(),
            cordon: false,
        }
    }

    fn used(used: u64, usedmem: u64, usedcores: u64) -> Self {
        Trap {
            change: |_| {},
            usage: DeviceUsage {
                used,
                usedmem,
                usedcores,
            },
            cordon: false,
        }
    }
}

/// Decides `ask` (under `policy`, if any) on `a-trap` and `b-fit`; returns the node and the work.
fn decide(trap: Trap, ask: GpuAsk, policy: Option<&str>) -> (Option<String>, WalkWork) {
    let now: Timestamp = "2025-06-01T12:00:00Z".parse().unwrap();
    let mut trap_devices: Vec<DeviceInfo> = (0..2).map(|i| device("a-trap", i)).collect();
    trap_devices.iter_mut().for_each(trap.change);
    let mut trap_node = gpu_node("a-trap", &trap_devices, now);
    if trap.cordon {
        let ids: Vec<&str> = trap_devices.iter().map(|d| d.id.as_str()).collect();
        trap_node
            .metadata
            .annotations
            .get_or_insert_default()
            .insert(DEVICE_CORDON.into(), ids.join(","));
    }
    let fit_devices: Vec<DeviceInfo> = (0..2).map(|i| device("b-fit", i)).collect();
    let mut registry = Registry::new();
    registry.upsert_node(&trap_node).unwrap();
    registry
        .upsert_node(&gpu_node("b-fit", &fit_devices, now))
        .unwrap();
    let usage = Usage(
        trap_devices
            .iter()
            .map(|d| (d.id.clone(), trap.usage))
            .collect(),
    );
    let index = PlacementIndex::build(&registry, &usage);
    let mut pod = gpu_pod("p", &[], &[ask]);
    if let Some(policy) = policy {
        pod = with_annotations(pod, &[(GPU_SCHEDULER_POLICY, policy)]);
    }
    let prepared = prepare(&pod, &SchedulerSettings::default()).unwrap();
    let offered = vec!["a-trap".to_string(), "b-fit".to_string()];
    let (decision, work) = index.decide_counting(&registry, &prepared, &offered, now);
    let decision = decision.expect("the index decides a plain GPU pod");
    (decision.node().map(str::to_string), work)
}

const PRUNED: WalkWork = WalkWork {
    examined: 2,
    evaluated: 1,
    exact_rejections: 0,
};

fn fraction(memory_mib: u32, cores: u32) -> GpuAsk {
    GpuAsk::fraction(memory_mib, cores)
}

#[track_caller]
fn assert_pruned(trap: Trap, ask: GpuAsk, policy: Option<&str>) {
    assert_eq!(
        decide(trap, ask, policy),
        (Some("b-fit".to_string()), PRUNED)
    );
}

#[test]
fn an_index_counts_the_nodes_it_holds() {
    assert!(PlacementIndex::new().is_empty());
    let now: Timestamp = "2025-06-01T12:00:00Z".parse().unwrap();
    let mut registry = Registry::new();
    registry
        .upsert_node(&gpu_node("n", &[device("n", 0)], now))
        .unwrap();
    let index = PlacementIndex::build(&registry, &Usage::default());
    assert!(!index.is_empty());
    assert_eq!(index.len(), 1);
}

#[test]
fn the_walk_evaluates_the_first_node_that_may_fit_and_stops() {
    let (node, work) = decide(Trap::used(0, 0, 0), fraction(1000, 10), None);
    assert_eq!(node.as_deref(), Some("a-trap"));
    assert_eq!(
        work,
        WalkWork {
            examined: 1,
            evaluated: 1,
            exact_rejections: 0
        }
    );
}

#[test]
fn devices_no_pod_may_take_are_pruned() {
    assert_pruned(
        Trap::devices(|d| d.health = false),
        fraction(1000, 10),
        None,
    );
    assert_pruned(
        Trap::devices(|d| d.mode = "mig".into()),
        fraction(1000, 10),
        None,
    );
    assert_pruned(
        Trap::devices(|d| d.device_type = "AMD-MI300X".into()),
        fraction(1000, 10),
        None,
    );
    assert_pruned(
        Trap {
            cordon: true,
            ..Trap::devices(|_| {})
        },
        fraction(1000, 10),
        None,
    );
    // Every slot taken (used == count), though memory and cores are free.
    assert_pruned(Trap::used(10, 100, 10), fraction(1000, 10), None);
}

#[test]
fn a_device_with_one_free_slot_is_evaluated() {
    let (node, work) = decide(Trap::used(9, 100, 10), fraction(1000, 10), None);
    assert_eq!(node.as_deref(), Some("a-trap"));
    assert_eq!(work.evaluated, 1);
}

#[test]
fn exclusive_and_mutex_requests_skip_nodes_without_idle_devices() {
    // In use and 100 cores each: no device an exclusive request may share.
    assert_pruned(Trap::used(1, 100, 0), fraction(1000, 100), None);
    // mutex wants idle devices whatever the cores.
    assert_pruned(Trap::used(1, 100, 0), fraction(1000, 10), Some("mutex"));
}

#[test]
fn an_exclusive_request_may_share_a_device_that_is_not_100_cores() {
    let (node, work) = decide(
        Trap {
            change: |d| d.devcore = 200,
            ..Trap::used(1, 100, 0)
        },
        fraction(1000, 100),
        None,
    );
    assert_eq!(node.as_deref(), Some("a-trap"));
    assert_eq!(work.evaluated, 1);
}

#[test]
fn free_cores_and_memory_bound_the_request() {
    // 40 cores free on each device, 50 asked.
    assert_pruned(Trap::used(1, 100, 60), fraction(1000, 50), None);
    // 4,000 MiB free on each device, 5,000 asked.
    assert_pruned(Trap::used(1, 4000, 10), fraction(5000, 10), None);
    // Half of the (8,000 MiB) device asked as a percentage, 3,000 MiB free.
    assert_pruned(
        Trap::used(1, 5000, 10),
        GpuAsk {
            gpus: Some(1),
            memory_percent: Some(50),
            cores: Some(10),
            ..GpuAsk::default()
        },
        None,
    );
}

#[test]
fn over_full_devices_are_pruned_even_for_requests_of_nothing() {
    // Cores already over the device's 100: a request of 0 cores still does not fit.
    assert_pruned(Trap::used(1, 100, 120), fraction(1000, 0), None);
    // Memory already over a 50 MiB device: 1 % of it rounds down to 0 MiB and still does not fit.
    // (A parsed request asks no memory only this way: 0 % means the whole card.)
    assert_pruned(
        Trap {
            change: |d| d.devmem = 50,
            ..Trap::used(1, 60, 10)
        },
        GpuAsk {
            gpus: Some(1),
            memory_percent: Some(1),
            cores: Some(10),
            ..GpuAsk::default()
        },
        None,
    );
}

/// When nothing fits, reasons come from the compact device copy for a pod whose reasons do not
/// depend on device order (one regular GPU container, no selectors, no `numa-bind`), and from the
/// exact per-node evaluation otherwise.
#[test]
fn reasons_need_the_exact_evaluation_only_where_device_order_matters() {
    let now: Timestamp = "2025-06-01T12:00:00Z".parse().unwrap();
    let mut registry = Registry::new();
    for name in ["n1", "n2"] {
        let devices: Vec<DeviceInfo> = (0..2).map(|i| device(name, i)).collect();
        registry
            .upsert_node(&gpu_node(name, &devices, now))
            .unwrap();
    }
    let index = PlacementIndex::build(&registry, &Usage::default());
    let offered = vec!["n1".to_string(), "n2".to_string()];
    let too_big = fraction(9000, 10);
    let exact = |pod: k8s_openapi::api::core::v1::Pod| {
        let prepared = prepare(&pod, &SchedulerSettings::default()).unwrap();
        let (decision, work) = index.decide_counting(&registry, &prepared, &offered, now);
        let decision = decision.expect("the index answers a pod that fits nowhere");
        assert!(decision.node().is_none(), "{decision:?}");
        assert_eq!(work.evaluated, 0, "the summaries reject every node");
        work.exact_rejections
    };
    assert_eq!(
        exact(gpu_pod("simple", &[], std::slice::from_ref(&too_big))),
        0
    );
    assert_eq!(
        exact(gpu_pod(
            "init",
            std::slice::from_ref(&too_big),
            &[fraction(1000, 10)]
        )),
        2
    );
    assert_eq!(
        exact(gpu_pod("two", &[], &[too_big.clone(), fraction(1000, 10)])),
        2
    );
    for (key, value) in [
        (NUMA_BIND, "true"),
        (USE_GPUTYPE, "A100"),
        (NOUSE_GPUTYPE, "H100"),
        (USE_GPUUUID, "GPU-n1-0"),
        (NOUSE_GPUUUID, "GPU-n1-0"),
        (VGPU_MODE, "hami-core"),
    ] {
        let pod = with_annotations(
            gpu_pod("selective", &[], std::slice::from_ref(&too_big)),
            &[(key, value)],
        );
        assert_eq!(exact(pod), 2, "{key}");
    }
}
