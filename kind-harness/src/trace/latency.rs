//! Decision latency of the core at fleet scale: a synthetic fleet (by default 5,000 nodes × 8 GPUs),
//! half used in a fixed pseudo-random pattern, and a mix of GPU pods decided over **all** nodes with
//! each policy, through [`decision::decide`] with the placement index, exactly as the extender calls
//! it (verdicts, annotations and events included; HAMi's policies go through the index, sliceguard's
//! `fragmentation` through the scan). Used by `benches/decision_latency.rs` (divan) and by the quality
//! report, so both measure the same thing.

use super::metrics::Stats;
use super::rng::Rng;
use sliceguard::annotations::NODE_REGISTER;
use sliceguard::codec::register;
use sliceguard::decision::{self, Decision, Fleet, PreparedPod, SchedulerSettings};
use sliceguard::fragmentation::{FragmentationInputs, HostResources, HostSource, WorkloadProfile};
use sliceguard::index::PlacementIndex;
use sliceguard::ledger::Ledger;
use sliceguard::model::{ContainerDevice, DeviceInfo, PodAllocation};
use sliceguard::objects::{GpuAsk, gpu_pod};
use sliceguard::policy::{GpuPolicy, NodePolicy, PolicyDefaults};
use sliceguard::registry::Registry;
use std::collections::{BTreeMap, HashMap};
use std::str::FromStr;
use std::time::Instant;

/// Every node's CPU, fixed.
#[derive(Debug, Default)]
pub struct FixedHosts(HashMap<String, HostResources>);

impl HostSource for FixedHosts {
    fn host(&self, node: &str) -> Option<HostResources> {
        self.0.get(node).copied()
    }
}

/// The pods of the mix: (GPUs, share in percent; 100 = whole GPUs), CPU millicores.
const POD_MIX: [(u32, u32, u64); 8] = [
    (1, 47, 8_000),
    (1, 81, 3_000),
    (1, 32, 4_000),
    (1, 100, 11_000),
    (1, 100, 3_000),
    (1, 65, 11_000),
    (2, 100, 24_000),
    (8, 100, 64_000),
];

/// A fleet, its usage, and a mix of pods to decide.
#[derive(Debug)]
pub struct LatencyFixture {
    registry: Registry,
    ledger: Ledger,
    index: PlacementIndex,
    hosts: FixedHosts,
    names: Vec<String>,
    profile: WorkloadProfile,
    pods: Vec<(k8s_openapi::api::core::v1::Pod, u64)>,
}

impl LatencyFixture {
    /// `nodes` nodes of `gpus` H100-like GPUs (split count 20), about half used.
    pub fn new(nodes: usize, gpus: usize) -> Self {
        let mut rng = Rng::new(2024);
        let mut registry = Registry::new();
        let mut ledger = Ledger::new();
        let mut hosts = FixedHosts::default();
        let mut names = Vec::with_capacity(nodes);
        for n in 0..nodes {
            let name = format!("node-{n:05}");
            let devices: Vec<DeviceInfo> = (0..gpus)
                .map(|g| DeviceInfo {
                    id: format!("GPU-{name}-{g}"),
                    index: g as u32,
                    count: 20,
                    devmem: 81920,
                    devcore: 100,
                    device_type: "NVIDIA-H100-80GB-HBM3".into(),
                    numa: 0,
                    mode: "hami-core".into(),
                    health: true,
                })
                .collect();
            let annotations =
                BTreeMap::from([(NODE_REGISTER.to_string(), register::render_json(&devices))]);
            // The devices are well-formed, so registration cannot fail.
            let _ = registry.upsert(&name, &annotations);
            for d in &devices {
                // 40 % idle, 20 % whole, 40 % shared by one to three tasks.
                let tasks: Vec<u32> = match rng.below(10) {
                    0..=3 => vec![],
                    4 | 5 => vec![100],
                    _ => {
                        let mut left = 100;
                        (0..1 + rng.below(3))
                            .map_while(|_| {
                                let share = 10 * (1 + rng.below(6) as u32);
                                (share <= left).then(|| {
                                    left -= share;
                                    share
                                })
                            })
                            .collect()
                    }
                };
                for (t, cores) in tasks.into_iter().enumerate() {
                    let allocation = PodAllocation {
                        init: vec![],
                        app: vec![vec![ContainerDevice {
                            uuid: d.id.clone(),
                            backend: "NVIDIA".into(),
                            usedmem: 81920 * cores / 100,
                            usedcores: cores,
                        }]],
                    };
                    ledger.upsert(&format!("default/{}-{t}", d.id), &name, &allocation);
                }
            }
            hosts.0.insert(
                name.clone(),
                HostResources {
                    cpu_capacity_milli: 128_000,
                    cpu_requested_milli: 1_000 * rng.below(100) as u64,
                },
            );
            names.push(name);
        }
        let pods: Vec<_> = (0..64)
            .map(|i| {
                let (gpus, share, cpu) = POD_MIX[i % POD_MIX.len()];
                let ask = GpuAsk {
                    gpus: Some(gpus),
                    memory_mib: None,
                    memory_percent: Some(share),
                    cores: Some(share),
                };
                (gpu_pod(&format!("latency-{i}"), &[], &[ask]), cpu)
            })
            .collect();
        let mut profile = WorkloadProfile::default();
        let settings = SchedulerSettings::default();
        for (pod, cpu) in &pods {
            if let Ok(p) = decision::prepare(pod, &settings) {
                profile.observe(&p.request, &p.preferences, *cpu);
            }
        }
        LatencyFixture {
            index: PlacementIndex::build(&registry, &ledger),
            registry,
            ledger,
            hosts,
            names,
            profile,
            pods,
        }
    }

    /// The mix prepared under default policies `node`/`gpu`, with each pod's CPU.
    pub fn prepared(&self, node: &str, gpu: &str) -> Result<Vec<(PreparedPod, u64)>, String> {
        let settings = SchedulerSettings {
            policies: PolicyDefaults {
                node: NodePolicy::from_str(node)?,
                gpu: GpuPolicy::from_str(gpu)?,
            },
            ..SchedulerSettings::default()
        };
        self.pods
            .iter()
            .map(|(pod, cpu)| {
                decision::prepare(pod, &settings)
                    .map(|p| (p, *cpu))
                    .map_err(|e| e.to_string())
            })
            .collect()
    }

    /// One decision over every node.
    pub fn decide(&self, pod: &PreparedPod, cpu: u64) -> Decision {
        decision::decide(
            Fleet::indexed(&self.registry, &self.ledger, &self.index),
            pod,
            &self.names,
            jiff::Timestamp::UNIX_EPOCH,
            FragmentationInputs {
                profile: Some(&self.profile),
                hosts: Some(&self.hosts),
                pod_cpu_milli: cpu,
                ..FragmentationInputs::default()
            },
        )
    }

    /// Nodes in the fleet.
    pub fn nodes(&self) -> usize {
        self.names.len()
    }
}

/// Latency of each policy, in microseconds per decision.
#[derive(Debug, Clone, serde::Serialize)]
pub struct LatencyReport {
    /// Nodes.
    pub nodes: usize,
    /// GPUs per node.
    pub gpus: usize,
    /// (policy label, statistics of µs per decision).
    pub policies: Vec<(String, Stats)>,
}

impl LatencyReport {
    /// The median of one policy, if measured.
    pub fn median(&self, policy: &str) -> Option<f64> {
        self.policies
            .iter()
            .find(|(p, _)| p == policy)
            .map(|(_, s)| s.median)
    }
}

/// Measures `decisions` decisions per policy (binpack/binpack, binpack/spread, fragmentation),
/// interleaving the policies so that machine noise hits them alike.
pub fn measure(nodes: usize, gpus: usize, decisions: usize) -> Result<LatencyReport, String> {
    let fixture = LatencyFixture::new(nodes, gpus);
    let policies = [
        ("binpack/binpack", "binpack", "binpack"),
        ("binpack/spread", "binpack", "spread"),
        ("fragmentation", "binpack", "fragmentation"),
    ];
    let prepared: Vec<Vec<(PreparedPod, u64)>> = policies
        .iter()
        .map(|(_, n, g)| fixture.prepared(n, g))
        .collect::<Result<_, _>>()?;
    let mut samples: Vec<Vec<f64>> = vec![Vec::with_capacity(decisions); policies.len()];
    for i in 0..decisions {
        for (p, pods) in prepared.iter().enumerate() {
            let (pod, cpu) = &pods[i % pods.len()];
            let started = Instant::now();
            let decision = fixture.decide(pod, *cpu);
            samples[p].push(started.elapsed().as_secs_f64() * 1e6);
            std::hint::black_box(decision);
        }
    }
    Ok(LatencyReport {
        nodes,
        gpus,
        policies: policies
            .iter()
            .zip(&samples)
            .filter_map(|((label, _, _), s)| Stats::of(s).map(|s| (label.to_string(), s)))
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixture_decides_with_every_policy() {
        let fixture = LatencyFixture::new(20, 4);
        assert_eq!(fixture.nodes(), 20);
        for (node, gpu) in [
            ("binpack", "binpack"),
            ("spread", "spread"),
            ("binpack", "fragmentation"),
        ] {
            let pods = fixture.prepared(node, gpu).unwrap();
            let placed = pods
                .iter()
                .filter(|(p, cpu)| fixture.decide(p, *cpu).node().is_some())
                .count();
            assert!(placed > 0, "{node}/{gpu} placed nothing");
        }
        assert!(fixture.prepared("nope", "binpack").is_err());
        let report = measure(10, 2, 3).unwrap();
        assert_eq!(report.policies.len(), 3);
        assert!(report.median("fragmentation").is_some_and(|m| m > 0.0));
        assert_eq!(report.median("other"), None);
    }
}
