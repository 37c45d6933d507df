//! One case per HAMi reason (`TestDevices_Fit` and friends), plus the rules around them: check
//! order, denominators, exclusivity, percentage memory, numa-bind, mutex, cordons and selectors.

use sliceguard_core::annotations::*;
use sliceguard_core::fit::{FitReason, NodeRejection, NodeView, evaluate_node};
use sliceguard_core::model::{DeviceInfo, DeviceUsage};
use sliceguard_core::policy::{PodPreferences, PolicyDefaults};
use sliceguard_core::request::{ContainerRequest, ContainerSlot, PERCENTAGE_UNSET, PodRequest};
use std::collections::{BTreeMap, BTreeSet};

fn gpu(id: &str) -> DeviceInfo {
    DeviceInfo {
        id: id.into(),
        index: 0,
        count: 10,
        devmem: 8000,
        devcore: 100,
        device_type: "NVIDIA-A100".into(),
        numa: 0,
        mode: "hami-core".into(),
        health: true,
    }
}

fn ask(nums: u32, mem: u32, cores: u32) -> ContainerRequest {
    ContainerRequest {
        nums,
        memreq: mem,
        mem_percentage: if mem == 0 { 100 } else { PERCENTAGE_UNSET },
        coresreq: cores,
    }
}

fn pod(app: &[ContainerRequest]) -> PodRequest {
    PodRequest {
        containers: app
            .iter()
            .enumerate()
            .map(|(i, r)| ContainerSlot {
                name: format!("c{i}"),
                init: false,
                request: Some(*r),
            })
            .collect(),
    }
}

fn prefs(annos: &[(&str, &str)]) -> PodPreferences {
    let map: BTreeMap<String, String> = annos
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    PodPreferences::from_annotations(&map, &PolicyDefaults::default()).unwrap()
}

struct Case {
    devices: Vec<DeviceInfo>,
    usage: Vec<DeviceUsage>,
    cordoned: BTreeSet<String>,
}

impl Case {
    fn new(devices: Vec<DeviceInfo>) -> Self {
        let usage = vec![DeviceUsage::default(); devices.len()];
        Case {
            devices,
            usage,
            cordoned: BTreeSet::new(),
        }
    }

    fn used(mut self, i: usize, used: u64, mem: u64, cores: u64) -> Self {
        self.usage[i] = DeviceUsage {
            used,
            usedmem: mem,
            usedcores: cores,
        };
        self
    }

    fn eval(&self, request: &PodRequest, p: &PodPreferences) -> Result<Vec<Vec<String>>, String> {
        let view = NodeView {
            devices: &self.devices,
            usage: &self.usage,
            cordoned: &self.cordoned,
        };
        evaluate_node(view, request, p)
            .map(|fit| {
                fit.allocation
                    .to_pod_devices()
                    .0
                    .iter()
                    .map(|c| {
                        c.iter()
                            .map(|d| format!("{}:{}:{}", d.uuid, d.usedmem, d.usedcores))
                            .collect()
                    })
                    .collect()
            })
            .map_err(|e| e.to_string())
    }

    fn reason(&self, request: &PodRequest, p: &PodPreferences) -> String {
        self.eval(request, p).expect_err("expected a rejection")
    }
}

#[test]
fn one_case_per_reason() {
    let none = prefs(&[]);
    let one = pod(&[ask(1, 1000, 10)]);
    let mut unhealthy = gpu("a");
    unhealthy.health = false;
    assert_eq!(
        Case::new(vec![unhealthy]).reason(&one, &none),
        "1/1 CardNotHealth"
    );

    let mut cordon = Case::new(vec![gpu("a")]);
    cordon.cordoned.insert("a".into());
    assert_eq!(cordon.reason(&one, &none), "1/1 CardCordoned");

    assert_eq!(
        Case::new(vec![gpu("a")]).reason(&one, &prefs(&[(USE_GPUTYPE, "H100")])),
        "1/1 CardTypeMismatch"
    );
    assert_eq!(
        Case::new(vec![gpu("a")]).reason(&one, &prefs(&[(NOUSE_GPUTYPE, "a100")])),
        "1/1 CardTypeMismatch"
    );
    assert_eq!(
        Case::new(vec![gpu("a")]).reason(&one, &prefs(&[(VGPU_MODE, "mig")])),
        "1/1 CardTypeMismatch"
    );
    assert_eq!(
        Case::new(vec![gpu("a")]).reason(&one, &prefs(&[(USE_GPUUUID, "b")])),
        "1/1 CardUuidMismatch"
    );
    assert_eq!(
        Case::new(vec![gpu("a")]).reason(&one, &prefs(&[(NOUSE_GPUUUID, "a")])),
        "1/1 CardUuidMismatch"
    );
    assert_eq!(
        Case::new(vec![gpu("a")])
            .used(0, 10, 0, 0)
            .reason(&one, &none),
        "1/1 CardTimeSlicingExhausted"
    );
    assert_eq!(
        Case::new(vec![gpu("a")])
            .used(0, 1, 1, 1)
            .reason(&one, &prefs(&[(GPU_SCHEDULER_POLICY, "mutex")])),
        "1/1 ExclusiveDeviceAllocateConflict"
    );
    assert_eq!(
        Case::new(vec![gpu("a")])
            .used(0, 1, 7001, 0)
            .reason(&one, &none),
        "1/1 CardInsufficientMemory"
    );
    assert_eq!(
        Case::new(vec![gpu("a")])
            .used(0, 1, 0, 91)
            .reason(&one, &none),
        "1/1 CardInsufficientCore"
    );
    assert_eq!(
        Case::new(vec![gpu("a")])
            .used(0, 1, 0, 0)
            .reason(&pod(&[ask(1, 1000, 100)]), &none),
        "1/1 ExclusiveDeviceAllocateConflict"
    );
    assert_eq!(
        Case::new(vec![gpu("a")])
            .used(0, 1, 0, 100)
            .reason(&pod(&[ask(1, 1000, 0)]), &none),
        "1/1 CardComputeUnitsExhausted"
    );
    let mut mig = gpu("a");
    mig.mode = "mig".into();
    assert_eq!(
        Case::new(vec![mig]).reason(&one, &none),
        "1/1 CardMigTopologyInfeasible"
    );
    assert_eq!(
        Case::new(vec![gpu("a")]).reason(&pod(&[ask(2, 1000, 10)]), &none),
        "NodeInsufficientDevice"
    );
    assert_eq!(
        Case::new(vec![gpu("a"), gpu("b"), gpu("c")])
            .used(2, 1, 7500, 0)
            .reason(&pod(&[ask(3, 1000, 0)]), &none),
        "1/3 CardInsufficientMemory, 2/3 AllocatedCardsInsufficientRequest"
    );
}

#[test]
fn the_first_failing_check_wins_in_hamis_order() {
    let none = prefs(&[]);
    let one = pod(&[ask(1, 9000, 100)]);
    // Unhealthy, cordoned, full split, too little memory and cores: reported as CardNotHealth only.
    let mut d = gpu("a");
    d.health = false;
    let mut c = Case::new(vec![d]).used(0, 10, 8000, 100);
    c.cordoned.insert("a".into());
    assert_eq!(c.reason(&one, &none), "1/1 CardNotHealth");
    c.devices[0].health = true;
    assert_eq!(c.reason(&one, &none), "1/1 CardCordoned");
    c.cordoned.clear();
    assert_eq!(c.reason(&one, &none), "1/1 CardTimeSlicingExhausted");
    c.usage[0].used = 1;
    assert_eq!(c.reason(&one, &none), "1/1 CardInsufficientMemory");
    c.usage[0].usedmem = 0;
    assert_eq!(
        c.reason(&one, &none).as_str(),
        "1/1 CardInsufficientMemory",
        "9000 > 8000 even when idle"
    );
    let fits_mem = pod(&[ask(1, 100, 100)]);
    assert_eq!(c.reason(&fits_mem, &none), "1/1 CardInsufficientCore");
    c.usage[0].usedcores = 0;
    assert_eq!(
        c.reason(&fits_mem, &none),
        "1/1 ExclusiveDeviceAllocateConflict"
    );
}

#[test]
fn denominators_count_only_nvidia_candidates_and_entries_sort_as_strings() {
    let mut other = gpu("x");
    other.device_type = "Ascend910".into();
    let mut devices: Vec<DeviceInfo> = (0..10).map(|i| gpu(&format!("g{i}"))).collect();
    devices.push(other);
    let mut c = Case::new(devices);
    for i in 0..9 {
        c.usage[i] = DeviceUsage {
            used: 1,
            usedmem: 7900,
            usedcores: 0,
        };
    }
    c.devices[9].health = false;
    let reason = c.reason(&pod(&[ask(1, 1000, 0)]), &prefs(&[]));
    assert_eq!(reason, "1/10 CardNotHealth, 9/10 CardInsufficientMemory");
}

#[test]
fn exclusivity_rules() {
    let none = prefs(&[]);
    // An exclusive task needs an idle device with devcore 100...
    let c = Case::new(vec![gpu("a"), gpu("b")]).used(0, 1, 10, 0);
    assert_eq!(
        c.eval(&pod(&[ask(1, 0, 100)]), &none).unwrap(),
        [["b:8000:100"]]
    );
    // ...and once there, nothing else joins it: cores > 0 lack cores, cores == 0 find compute exhausted.
    let held = Case::new(vec![gpu("a")]).used(0, 1, 8000, 100);
    assert_eq!(
        held.reason(&pod(&[ask(1, 0, 0)]), &none),
        "1/1 CardInsufficientMemory"
    );
    let held = Case::new(vec![gpu("a")]).used(0, 1, 100, 100);
    assert_eq!(
        held.reason(&pod(&[ask(1, 10, 0)]), &none),
        "1/1 CardComputeUnitsExhausted"
    );
    assert_eq!(
        held.reason(&pod(&[ask(1, 10, 1)]), &none),
        "1/1 CardInsufficientCore"
    );
    // Cores above 100 clamp to 100 (and are recorded as 100).
    assert_eq!(
        Case::new(vec![gpu("a")])
            .eval(&pod(&[ask(1, 10, 250)]), &none)
            .unwrap(),
        [["a:10:100"]]
    );
    // With devcore != 100 the exclusive rule never fires (HAMi §2).
    let mut big = gpu("a");
    big.devcore = 200;
    let shared = Case::new(vec![big]).used(0, 1, 0, 50);
    assert_eq!(
        shared.eval(&pod(&[ask(1, 10, 100)]), &none).unwrap(),
        [["a:10:100"]]
    );
}

#[test]
fn percentage_memory_resolves_per_device() {
    let mut small = gpu("small");
    small.devmem = 1000;
    let c = Case::new(vec![small, gpu("big")]);
    let half = ContainerRequest {
        nums: 2,
        memreq: 0,
        mem_percentage: 50,
        coresreq: 0,
    };
    let got = c.eval(&pod(&[half]), &prefs(&[])).unwrap();
    assert_eq!(got, [["small:500:0", "big:4000:0"]]);
}

#[test]
fn app_containers_accumulate_and_init_containers_do_not() {
    let none = prefs(&[]);
    let c = Case::new(vec![gpu("a")]);
    // Two app containers of 5000 MiB cannot share one 8000 MiB device.
    assert_eq!(
        c.reason(&pod(&[ask(1, 5000, 0), ask(1, 5000, 0)]), &none),
        "1/1 CardInsufficientMemory"
    );
    // An init container and an app container of 5000 MiB can: they do not run together.
    let request = PodRequest {
        containers: vec![
            ContainerSlot {
                name: "i".into(),
                init: true,
                request: Some(ask(1, 5000, 0)),
            },
            ContainerSlot {
                name: "c".into(),
                init: false,
                request: Some(ask(1, 5000, 0)),
            },
        ],
    };
    assert_eq!(
        c.eval(&request, &none).unwrap(),
        [["a:5000:0"], ["a:5000:0"]]
    );
    // Containers without requests keep their (empty) slot.
    let mixed = PodRequest {
        containers: vec![
            ContainerSlot {
                name: "sidecar".into(),
                init: false,
                request: None,
            },
            ContainerSlot {
                name: "c".into(),
                init: false,
                request: Some(ask(1, 10, 0)),
            },
        ],
    };
    assert_eq!(
        c.eval(&mixed, &none).unwrap(),
        [vec![], vec!["a:10:0".to_string()]]
    );
}

#[test]
fn split_count_caps_tasks_across_containers_of_one_pod() {
    let mut d = gpu("a");
    d.count = 2;
    let c = Case::new(vec![d]).used(0, 1, 0, 0);
    assert_eq!(
        c.reason(&pod(&[ask(1, 1, 0), ask(1, 1, 0)]), &prefs(&[])),
        "1/1 CardTimeSlicingExhausted"
    );
}

/// A later container is ordered by the usage the earlier ones left, not the node's usage before the
/// pod: under `mutex`, the device the first container took sorts last for the second (it is in
/// use), after both NUMA groups, so the numa-bound second container reports its partial NUMA 0
/// group as NumaNotFit when it reaches it. Ordered by the usage before the pod, the taken device
/// would sort first, inside NUMA 1, and the same devices would be reported as
/// AllocatedCardsInsufficientRequest.
#[test]
fn later_containers_are_ordered_by_the_usage_earlier_containers_left() {
    let mut devices: Vec<DeviceInfo> = (0..3).map(|i| gpu(&format!("g{i}"))).collect();
    devices[2].numa = 1;
    let c = Case::new(devices);
    let p = prefs(&[(GPU_SCHEDULER_POLICY, "mutex"), (NUMA_BIND, "true")]);
    assert_eq!(
        c.eval(&pod(&[ask(1, 10, 0)]), &p).unwrap(),
        [["g2:10:0"]],
        "mutex takes the idle device of the higher NUMA node first"
    );
    assert_eq!(
        c.reason(&pod(&[ask(1, 10, 0), ask(3, 10, 0)]), &p),
        "1/3 ExclusiveDeviceAllocateConflict, 2/3 NumaNotFit"
    );
}

#[test]
fn numa_bind_keeps_a_container_on_one_numa_node() {
    let mut devices: Vec<DeviceInfo> = (0..4).map(|i| gpu(&format!("g{i}"))).collect();
    devices[2].numa = 1;
    devices[3].numa = 1;
    // g0 is full, so NUMA 0 has one free device; a 2-GPU numa-bound request must use NUMA 1.
    let c = Case::new(devices.clone()).used(0, 10, 0, 0);
    let got = c
        .eval(&pod(&[ask(2, 10, 0)]), &prefs(&[(NUMA_BIND, "true")]))
        .unwrap();
    assert_eq!(got, [["g2:10:0", "g3:10:0"]]);
    // With g3 full, HAMi's order (higher NUMA preferred on ties) starts on NUMA 1: without numa-bind
    // the request straddles (g2 and g0); with numa-bind it gives up g2 and takes NUMA 0's pair.
    let c = Case::new(devices.clone()).used(3, 10, 0, 0);
    assert_eq!(
        c.eval(&pod(&[ask(2, 10, 0)]), &prefs(&[])).unwrap(),
        [["g2:10:0", "g0:10:0"]]
    );
    assert_eq!(
        c.eval(&pod(&[ask(2, 10, 0)]), &prefs(&[(NUMA_BIND, "true")]))
            .unwrap(),
        [["g0:10:0", "g1:10:0"]]
    );
    // When neither NUMA node has two free devices, the partial group is reported as NumaNotFit.
    let c = Case::new(devices).used(0, 10, 0, 0).used(2, 10, 0, 0);
    let reason = c.reason(&pod(&[ask(2, 10, 0)]), &prefs(&[(NUMA_BIND, "true")]));
    assert!(
        reason.contains("NumaNotFit") && reason.contains("CardTimeSlicingExhausted"),
        "{reason}"
    );
}

#[test]
fn gpu_policies_choose_busiest_or_idlest_and_ties_go_to_registration_order() {
    let c = Case::new(vec![gpu("a"), gpu("b"), gpu("c")]).used(1, 1, 4000, 50);
    assert_eq!(
        c.eval(
            &pod(&[ask(1, 10, 0)]),
            &prefs(&[(GPU_SCHEDULER_POLICY, "binpack")])
        )
        .unwrap(),
        [["b:10:0"]]
    );
    assert_eq!(
        c.eval(
            &pod(&[ask(1, 10, 0)]),
            &prefs(&[(GPU_SCHEDULER_POLICY, "spread")])
        )
        .unwrap(),
        [["a:10:0"]]
    );
    assert_eq!(
        c.eval(
            &pod(&[ask(1, 10, 0)]),
            &prefs(&[(GPU_SCHEDULER_POLICY, "mutex")])
        )
        .unwrap(),
        [["a:10:0"]]
    );
    let idle = Case::new(vec![gpu("a"), gpu("b"), gpu("c")]);
    assert_eq!(
        idle.eval(&pod(&[ask(2, 10, 0)]), &prefs(&[])).unwrap(),
        [["a:10:0", "b:10:0"]]
    );
}

#[test]
fn rejection_is_a_node_rejection_value() {
    let view_devices = vec![gpu("a")];
    let usage = vec![DeviceUsage::default()];
    let cordoned = BTreeSet::new();
    let view = NodeView {
        devices: &view_devices,
        usage: &usage,
        cordoned: &cordoned,
    };
    match evaluate_node(view, &pod(&[ask(1, 9000, 0)]), &prefs(&[])) {
        Err(NodeRejection::Devices(counts)) => {
            assert_eq!(counts.get(FitReason::CardInsufficientMemory), 1);
            assert_eq!(counts.candidates, 1);
        }
        other => panic!("{other:?}"),
    }
}
