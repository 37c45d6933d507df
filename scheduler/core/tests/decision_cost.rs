//! The decision's cost does not depend on how many pods exist: `decision::filter` sees pods only
//! through `UsageSource::device_usage`, and this test counts those reads. With 10 pods or 50,000 pods
//! in the ledger, the decision reads exactly one usage per device of the offered nodes, and nothing
//! for nodes that were not offered. (Timing belongs in `cargo bench`, not here.)

use sliceguard_core::decision::{SchedulerSettings, filter};
use sliceguard_core::ledger::{Ledger, UsageSource};
use sliceguard_core::model::{ContainerDevice, DeviceUsage, PodAllocation};
use sliceguard_core::objects::{FleetSpec, GpuAsk, fleet, fleet_node_name, gpu_pod};
use sliceguard_core::registry::Registry;
use std::cell::Cell;

struct Counting<'a> {
    inner: &'a Ledger,
    reads: Cell<usize>,
}

impl UsageSource for Counting<'_> {
    fn device_usage(&self, node: &str, uuid: &str) -> DeviceUsage {
        self.reads.set(self.reads.get() + 1);
        self.inner.device_usage(node, uuid)
    }
}

fn ledger_with(pods: usize, spec: &FleetSpec) -> Ledger {
    let mut ledger = Ledger::new();
    for i in 0..pods {
        let node = fleet_node_name(&spec.name_prefix, i % spec.nodes);
        let gpu = (i / spec.nodes) % spec.gpus_per_node;
        let allocation = PodAllocation {
            init: vec![],
            app: vec![vec![ContainerDevice {
                uuid: format!("GPU-{node}-{gpu}"),
                backend: "NVIDIA".into(),
                usedmem: 1,
                usedcores: 0,
            }]],
        };
        ledger.upsert(&format!("default/p{i}"), &node, &allocation);
    }
    ledger
}

#[test]
fn decision_reads_one_usage_per_offered_device_whatever_the_pod_count() {
    let spec = FleetSpec {
        nodes: 20,
        split: 1000,
        ..FleetSpec::default()
    };
    let mut registry = Registry::new();
    for node in fleet(&spec, jiff::Timestamp::UNIX_EPOCH) {
        registry.upsert_node(&node).unwrap();
    }
    let all: Vec<String> = (0..spec.nodes)
        .map(|i| fleet_node_name(&spec.name_prefix, i))
        .collect();
    let pod = gpu_pod("p", &[], &[GpuAsk::fraction(1000, 10)]);
    let settings = SchedulerSettings::default();

    let mut reads = Vec::new();
    for pods in [10, 50_000] {
        let ledger = ledger_with(pods, &spec);
        assert_eq!(ledger.pod_count(), pods);
        let counting = Counting {
            inner: &ledger,
            reads: Cell::new(0),
        };
        let decision = filter(
            sliceguard_core::decision::Fleet::scanned(&registry, &counting),
            &settings,
            &pod,
            &all,
            jiff::Timestamp::UNIX_EPOCH,
        );
        assert!(decision.node().is_some());
        reads.push(counting.reads.get());

        let counting = Counting {
            inner: &ledger,
            reads: Cell::new(0),
        };
        filter(
            sliceguard_core::decision::Fleet::scanned(&registry, &counting),
            &settings,
            &pod,
            &all[..2],
            jiff::Timestamp::UNIX_EPOCH,
        );
        assert_eq!(
            counting.reads.get(),
            2 * spec.gpus_per_node,
            "only offered nodes are read"
        );
    }
    assert_eq!(reads, [spec.nodes * spec.gpus_per_node; 2]);
}

/// Which sibling answers is decided once, in `decision::decide`: the index from
/// `INDEX_MIN_OFFERED` offered nodes up (it reads its own summaries, never the usage source), the
/// scan below (one usage read per offered device).
#[test]
fn the_index_answers_from_the_threshold_up_and_the_scan_below_it() {
    use sliceguard_core::decision::{Fleet, INDEX_MIN_OFFERED, decide, prepare};
    use sliceguard_core::fragmentation::FragmentationInputs;
    use sliceguard_core::index::PlacementIndex;
    let spec = FleetSpec {
        nodes: INDEX_MIN_OFFERED + 1,
        ..FleetSpec::default()
    };
    let mut registry = Registry::new();
    for node in fleet(&spec, jiff::Timestamp::UNIX_EPOCH) {
        registry.upsert_node(&node).unwrap();
    }
    let ledger = ledger_with(spec.nodes, &spec);
    let index = PlacementIndex::build(&registry, &ledger);
    let names: Vec<String> = (0..spec.nodes)
        .map(|i| fleet_node_name(&spec.name_prefix, i))
        .collect();
    let pod = prepare(
        &gpu_pod("p", &[], &[GpuAsk::fraction(1000, 10)]),
        &SchedulerSettings::default(),
    )
    .unwrap();
    let reads = |offered: &[String]| {
        let counting = Counting {
            inner: &ledger,
            reads: Cell::new(0),
        };
        let decision = decide(
            Fleet::indexed(&registry, &counting, &index),
            &pod,
            offered,
            jiff::Timestamp::UNIX_EPOCH,
            FragmentationInputs::default(),
        );
        assert!(decision.node().is_some());
        counting.reads.get()
    };
    assert_eq!(
        reads(&names[..INDEX_MIN_OFFERED - 1]),
        (INDEX_MIN_OFFERED - 1) * spec.gpus_per_node,
        "below the threshold the scan reads every offered device"
    );
    assert_eq!(
        reads(&names[..INDEX_MIN_OFFERED]),
        0,
        "at the threshold the index decides"
    );
}
