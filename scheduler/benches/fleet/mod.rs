//! The seeded fleets the placement and memory benches build: N nodes × 8 GPUs (80 GiB, split
//! 10), registered through `Registry::upsert` from each node's register annotation as `serve`'s
//! watches do, and per GPU 30 % idle, 25 % whole, 45 % shared by one to three fractional tasks,
//! recorded through `Ledger::upsert`.

use sliceguard::annotations::NODE_REGISTER;
use sliceguard::codec::register;
use sliceguard::ledger::Ledger;
use sliceguard::model::{ContainerDevice, DeviceInfo, PodAllocation};
use sliceguard::registry::Registry;
use std::collections::BTreeMap;

/// GPUs per node.
pub const GPUS: usize = 8;
/// MiB per GPU.
pub const DEVMEM: u32 = 81920;

/// A small deterministic generator (SplitMix64).
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// GPU `g` of `node`.
pub fn device(node: &str, g: usize) -> DeviceInfo {
    DeviceInfo {
        id: format!("GPU-{node}-{g}"),
        index: g as u32,
        count: 10,
        devmem: DEVMEM,
        devcore: 100,
        device_type: "NVIDIA-H100-80GB-HBM3".into(),
        numa: (g / 4) as u32,
        mode: "hami-core".into(),
        health: true,
    }
}

/// Task shares (percent of one GPU) on one device: 30 % idle, 25 % whole, 45 % shared by one to
/// three fractional tasks (about half the fleet's memory in use, unevenly: fragmented).
pub fn shares(rng: &mut Rng) -> Vec<u32> {
    match rng.below(20) {
        0..=5 => vec![],
        6..=10 => vec![100],
        _ => {
            let mut left = 100u32;
            (0..1 + rng.below(3))
                .map_while(|_| {
                    let share = 10 * (1 + rng.below(6) as u32);
                    (share < left).then(|| {
                        left -= share;
                        share
                    })
                })
                .collect()
        }
    }
}

/// `nodes` registered nodes and their names.
pub fn registry_of(nodes: usize) -> (Registry, Vec<String>) {
    let mut registry = Registry::new();
    let mut names = Vec::with_capacity(nodes);
    for n in 0..nodes {
        let name = format!("gpu-node-{n:05}");
        let devices: Vec<DeviceInfo> = (0..GPUS).map(|g| device(&name, g)).collect();
        let annotations =
            BTreeMap::from([(NODE_REGISTER.to_string(), register::render_json(&devices))]);
        registry
            .upsert(&name, &annotations)
            .unwrap_or_else(|e| panic!("fixture node {name} does not register: {e}"));
        names.push(name);
    }
    (registry, names)
}

/// The seeded pods of a fleet: key, node, allocation.
pub fn pods_of(registry: &Registry) -> Vec<(String, String, PodAllocation)> {
    let mut rng = Rng(0x5eed ^ registry.len() as u64);
    let mut pods = Vec::new();
    for node in registry.nodes() {
        for d in &node.devices {
            for (t, share) in shares(&mut rng).into_iter().enumerate() {
                let allocation = PodAllocation {
                    init: vec![],
                    app: vec![vec![ContainerDevice {
                        uuid: d.id.clone(),
                        backend: "NVIDIA".into(),
                        usedmem: DEVMEM * share / 100,
                        usedcores: share,
                    }]],
                };
                pods.push((
                    format!("default/{}-{t}", d.id),
                    node.name.clone(),
                    allocation,
                ));
            }
        }
    }
    pods
}

pub fn ledger_of(pods: &[(String, String, PodAllocation)]) -> Ledger {
    let mut ledger = Ledger::new();
    for (key, node, allocation) in pods {
        ledger.upsert(key, node, allocation);
    }
    ledger
}
