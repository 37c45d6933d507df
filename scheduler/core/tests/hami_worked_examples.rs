//! Spec §9: HAMi's worked examples (`Test_Filter`, `Test_calcScore`), reproduced through the public
//! decision API: node scores 3.00 and 8.00, the device chosen under each of the four policy pairs,
//! the init-container variant, and the failed-node reason strings.

use sliceguard_core::annotations::{
    DEVICES_ALLOCATED, DEVICES_TO_ALLOCATE, GPU_SCHEDULER_POLICY, NODE_REGISTER,
    NODE_SCHEDULER_POLICY, VGPU_NODE, VGPU_TIME,
};
use sliceguard_core::codec::register;
use sliceguard_core::decision::{Fleet, Outcome, SchedulerSettings, Verdict, filter};
use sliceguard_core::ledger::Ledger;
use sliceguard_core::model::{ContainerDevice, DeviceInfo, PodAllocation};
use sliceguard_core::objects::{GpuAsk, gpu_pod, with_annotations};
use sliceguard_core::registry::Registry;
use std::collections::BTreeMap;

fn device(id: &str, devmem: u32) -> DeviceInfo {
    DeviceInfo {
        id: id.into(),
        index: 0,
        count: 10,
        devmem,
        devcore: 100,
        device_type: "NVIDIA".into(),
        numa: 0,
        mode: "hami-core".into(),
        health: true,
    }
}

fn registry(nodes: &[(&str, Vec<DeviceInfo>)]) -> Registry {
    let mut r = Registry::new();
    for (name, devices) in nodes {
        let annos = BTreeMap::from([(NODE_REGISTER.to_string(), register::render_json(devices))]);
        r.upsert(name, &annos).unwrap();
    }
    r
}

fn used(uuid: &str, mem: u32, cores: u32) -> PodAllocation {
    PodAllocation {
        init: vec![],
        app: vec![vec![ContainerDevice {
            uuid: uuid.into(),
            backend: "NVIDIA".into(),
            usedmem: mem,
            usedcores: cores,
        }]],
    }
}

/// Two nodes with two GPUs each (8000 MiB); pod1 uses device1 (2000 MiB, 25 cores) on node1 and
/// pod2 uses device4 (6000 MiB, 75 cores) on node2.
fn section_9_cluster() -> (Registry, Ledger) {
    let r = registry(&[
        (
            "node1",
            vec![device("device1", 8000), device("device2", 8000)],
        ),
        (
            "node2",
            vec![device("device3", 8000), device("device4", 8000)],
        ),
    ]);
    let mut l = Ledger::new();
    l.upsert("default/pod1", "node1", &used("device1", 2000, 25));
    l.upsert("default/pod2", "node2", &used("device4", 6000, 75));
    (r, l)
}

fn nodes() -> Vec<String> {
    vec!["node1".into(), "node2".into()]
}

fn now() -> jiff::Timestamp {
    "2025-06-05T15:41:28Z".parse().unwrap()
}

fn chosen(outcome: &Outcome) -> (String, Vec<Vec<String>>) {
    let Outcome::Scheduled {
        node, allocation, ..
    } = outcome
    else {
        panic!("not scheduled: {outcome:?}")
    };
    let per_container = allocation
        .to_pod_devices()
        .0
        .iter()
        .map(|c| c.iter().map(|d| d.uuid.clone()).collect())
        .collect();
    (node.clone(), per_container)
}

#[test]
fn node_scores_are_3_and_8_and_the_success_message_is_hamis() {
    let (r, l) = section_9_cluster();
    let pod = gpu_pod("newpod", &[], &[GpuAsk::fraction(1000, 20)]);
    let d = filter(
        Fleet::scanned(&r, &l),
        &SchedulerSettings::default(),
        &pod,
        &nodes(),
        now(),
    );
    assert_eq!(d.verdicts["node1"], Verdict::Score(3.0));
    assert_eq!(d.verdicts["node2"], Verdict::Score(8.0));
    assert_eq!(d.events.len(), 1);
    assert_eq!(d.events[0].reason, "FilteringSucceed");
    assert_eq!(
        d.events[0].message,
        "find fit node(node2), 0 nodes not fit, 2 nodes fit(node1:3.00,node2:8.00)"
    );
}

#[test]
fn the_four_policy_pairs_choose_hamis_devices() {
    let (r, l) = section_9_cluster();
    for (node_policy, gpu_policy, node, device) in [
        ("binpack", "binpack", "node2", "device4"),
        ("binpack", "spread", "node2", "device3"),
        ("spread", "binpack", "node1", "device1"),
        ("spread", "spread", "node1", "device2"),
    ] {
        let pod = with_annotations(
            gpu_pod("newpod", &[], &[GpuAsk::fraction(1000, 20)]),
            &[
                (NODE_SCHEDULER_POLICY, node_policy),
                (GPU_SCHEDULER_POLICY, gpu_policy),
            ],
        );
        let d = filter(
            Fleet::scanned(&r, &l),
            &SchedulerSettings::default(),
            &pod,
            &nodes(),
            now(),
        );
        assert_eq!(
            chosen(&d.outcome),
            (node.to_string(), vec![vec![device.to_string()]]),
            "{node_policy}/{gpu_policy}"
        );
        let expected = format!("{device},NVIDIA,1000,20:;");
        assert_eq!(d.annotations[DEVICES_ALLOCATED], expected);
        assert_eq!(d.annotations[DEVICES_TO_ALLOCATE], expected);
        assert_eq!(d.annotations[VGPU_NODE], node);
        assert_eq!(d.annotations[VGPU_TIME], "1749138088");
        assert_eq!(d.labels[VGPU_NODE], node);
    }
}

#[test]
fn the_spread_message_lists_nodes_best_last() {
    let (r, l) = section_9_cluster();
    let pod = with_annotations(
        gpu_pod("p", &[], &[GpuAsk::fraction(1000, 20)]),
        &[(NODE_SCHEDULER_POLICY, "spread")],
    );
    let d = filter(
        Fleet::scanned(&r, &l),
        &SchedulerSettings::default(),
        &pod,
        &nodes(),
        now(),
    );
    assert_eq!(
        d.events[0].message,
        "find fit node(node1), 0 nodes not fit, 2 nodes fit(node2:8.00,node1:3.00)"
    );
}

#[test]
fn init_container_variant_uses_device3_for_both_containers() {
    let (r, l) = section_9_cluster();
    let pod = with_annotations(
        gpu_pod(
            "newpod",
            &[GpuAsk::fraction(5000, 20)],
            &[GpuAsk::fraction(4000, 20)],
        ),
        &[
            (NODE_SCHEDULER_POLICY, "binpack"),
            (GPU_SCHEDULER_POLICY, "binpack"),
        ],
    );
    let d = filter(
        Fleet::scanned(&r, &l),
        &SchedulerSettings::default(),
        &pod,
        &nodes(),
        now(),
    );
    assert_eq!(
        chosen(&d.outcome),
        (
            "node2".to_string(),
            vec![vec!["device3".to_string()], vec!["device3".to_string()]]
        )
    );
    assert_eq!(
        d.annotations[DEVICES_ALLOCATED],
        "device3,NVIDIA,5000,20:;device3,NVIDIA,4000,20:;"
    );
}

#[test]
fn failed_node_reason_strings() {
    let r = registry(&[("node1", vec![device("d", 50)])]);
    let pod = gpu_pod("p", &[], &[GpuAsk::fraction(1000, 0)]);
    let d = filter(
        Fleet::scanned(&r, &Ledger::new()),
        &SchedulerSettings::default(),
        &pod,
        &["node1".into()],
        now(),
    );
    assert_eq!(d.outcome, Outcome::Unschedulable);
    assert_eq!(
        d.verdicts["node1"].reasons().as_deref(),
        Some("1/1 CardInsufficientMemory")
    );
    assert!(d.annotations.is_empty() && d.labels.is_empty());

    let r = registry(&[("node1", vec![device("a", 8000), device("b", 8000)])]);
    let mut l = Ledger::new();
    l.upsert("default/x", "node1", &used("a", 7500, 0));
    l.upsert("default/y", "node1", &used("b", 7500, 0));
    let pod = gpu_pod(
        "p",
        &[GpuAsk::fraction(4000, 0)],
        &[GpuAsk::fraction(100, 0)],
    );
    let d = filter(
        Fleet::scanned(&r, &l),
        &SchedulerSettings::default(),
        &pod,
        &["node1".into()],
        now(),
    );
    assert_eq!(
        d.failed_nodes(),
        BTreeMap::from([(
            "node1".to_string(),
            "2/2 CardInsufficientMemory".to_string()
        )])
    );
    let messages: Vec<_> = d.events.iter().map(|e| e.message.as_str()).collect();
    assert_eq!(
        messages,
        [
            "1 nodes CardInsufficientMemory(node1)",
            "no available node, 1 nodes do not meet"
        ]
    );
}
