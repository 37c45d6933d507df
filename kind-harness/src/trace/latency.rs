//! Decision latency of the core at fleet scale: a synthetic fleet (by default 5,000 nodes × 8 GPUs),
//! half used in a fixed pseudo-random pattern, and a mix of GPU pods decided over **all** nodes with
//! each policy, through [`decision::decide`] with the placement index, exactly as the extender calls
//! it (verdicts, annotations and events included; HAMi's policies go through the index, sliceguard's
//! `fragmentation` through the scan with the index's memo of its verdicts). Used by
//! `benches/decision_latency.rs` (divan) and by the quality report, so both measure the same thing.
//!
//! Each timed decision is what `serve`'s filter does for one pod on a steady cluster
//! ([`LatencyFixture::decide`]): the pod is learned into the workload profile (which has already seen
//! one observation per task in the fleet, so it is derived again only on drift, as `serve`'s is once
//! the cluster's pods are listed), the decision is taken, and the placement is assumed (the ledger
//! takes the allocation and the index is refreshed for the node), so the next decision sees one node
//! changed. What differs from `serve`: no HTTP, no JSON, no annotation write, no lock, and a fixed
//! mix of 8 pod shapes (a cluster with more distinct shapes, or CPU requests that vary per pod, finds
//! fewer remembered verdicts; the report prints the memo's hit rate).

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

/// The fleet the quality report measures: nodes.
pub const REPORT_NODES: usize = 5_000;
/// GPUs per node of that fleet.
pub const REPORT_GPUS: usize = 8;
/// Decisions per policy the report times.
pub const REPORT_DECISIONS: usize = 90;

/// Every node's CPU, fixed (hashed as `serve`'s host CPU book hashes node names).
#[derive(Debug, Default)]
pub struct FixedHosts(HashMap<String, HostResources, foldhash::fast::FixedState>);

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
    /// Placements assumed so far (their ledger keys).
    assumed: usize,
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
        // The profile has seen one pod of the mix per task in the fleet, as `serve`'s has once it
        // listed the cluster's pods.
        let tasks = ledger.entries().count();
        let mut profile = WorkloadProfile::default();
        let settings = SchedulerSettings::default();
        let prepared: Vec<_> = pods
            .iter()
            .filter_map(|(pod, cpu)| decision::prepare(pod, &settings).ok().map(|p| (p, *cpu)))
            .collect();
        for (p, cpu) in prepared.iter().cycle().take(tasks.max(prepared.len())) {
            profile.observe(&p.request, &p.preferences, *cpu);
        }
        profile.derive_now();
        LatencyFixture {
            index: PlacementIndex::build(&registry, &ledger),
            registry,
            ledger,
            hosts,
            names,
            profile,
            pods,
            assumed: 0,
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

    /// What `serve`'s filter does for one pod over every node: learns the pod into the workload
    /// profile, decides, and assumes the placement (the ledger takes it and the index is refreshed
    /// for the node).
    pub fn decide(&mut self, pod: &PreparedPod, cpu: u64) -> Decision {
        self.profile.observe(&pod.request, &pod.preferences, cpu);
        let decision = decision::decide(
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
        );
        if let decision::Outcome::Scheduled {
            node, allocation, ..
        } = &decision.outcome
        {
            self.assumed += 1;
            let key = format!("default/assumed-{}", self.assumed);
            self.ledger.upsert(&key, node, allocation);
            self.index.refresh(node, &self.registry, &self.ledger);
        }
        decision
    }

    /// The `fragmentation` verdicts found remembered so far, and those evaluated.
    pub fn memo_hits_and_misses(&self) -> (u64, u64) {
        self.index.score_memo().hits_and_misses()
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
    /// `fragmentation` verdicts found remembered and evaluated over the measured decisions.
    pub memo_hits: u64,
    /// See [`LatencyReport::memo_hits`].
    pub memo_misses: u64,
}

impl LatencyReport {
    /// The Markdown table of the report, with the memo's hit rate and the ratio to binpack.
    pub fn table(&self) -> String {
        use std::fmt::Write;
        let mut m = String::new();
        let _ = writeln!(
            m,
            "| policy | median µs per decision | mean ± sd µs | decisions |"
        );
        let _ = writeln!(m, "|---|---|---|---|");
        for (p, s) in &self.policies {
            let _ = writeln!(
                m,
                "| {p} | {:.0} | {:.0} ± {:.0} | {} |",
                s.median, s.mean, s.sd, s.n
            );
        }
        let lookups = self.memo_hits + self.memo_misses;
        if lookups > 0 {
            let _ = writeln!(
                m,
                "
`fragmentation` node verdicts found remembered: {} of {lookups} ({:.1} %).",
                self.memo_hits,
                100.0 * self.memo_hits as f64 / lookups as f64
            );
        }
        if let Some(r) = self.ratio() {
            let _ = writeln!(
                m,
                "
`fragmentation` / `binpack/binpack` median latency: **{r:.2}×** (target ≤ 3×)."
            );
        }
        m
    }

    /// `fragmentation`'s median over `binpack/binpack`'s, when both were measured.
    pub fn ratio(&self) -> Option<f64> {
        match (self.median("fragmentation"), self.median("binpack/binpack")) {
            (Some(f), Some(b)) if b > 0.0 => Some(f / b),
            _ => None,
        }
    }

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
    let mut fixture = LatencyFixture::new(nodes, gpus);
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
    let (memo_hits, memo_misses) = fixture.memo_hits_and_misses();
    Ok(LatencyReport {
        nodes,
        gpus,
        memo_hits,
        memo_misses,
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
        // Each decision assumes its placement: the fleet is large enough for all three policies.
        let mut fixture = LatencyFixture::new(100, 8);
        assert_eq!(fixture.nodes(), 100);
        for (node, gpu) in [
            ("binpack", "binpack"),
            ("spread", "spread"),
            ("binpack", "fragmentation"),
        ] {
            let pods = fixture.prepared(node, gpu).unwrap();
            let placed = pods
                .iter()
                .take(POD_MIX.len())
                .filter(|(p, cpu)| fixture.decide(p, *cpu).node().is_some())
                .count();
            assert!(placed > 0, "{node}/{gpu} placed nothing");
        }
        // The fragmentation pods of the mix were decided once each: every node evaluated once per
        // shape (a pod that fits nowhere is judged again for every node's reason, from the memo).
        let (hits, misses) = fixture.memo_hits_and_misses();
        assert_eq!(misses, 8 * 100, "{hits} hits");
        // The same pod twice in a row, under the same typical workload: the second decision
        // evaluates only the node the first one placed on.
        let pods = fixture.prepared("binpack", "fragmentation").unwrap();
        let mut checked = 0;
        for (p, cpu) in pods.iter().take(POD_MIX.len()) {
            fixture.decide(p, *cpu);
            let typical = fixture.profile.typical_id();
            let before = fixture.memo_hits_and_misses();
            let placed = fixture.decide(p, *cpu).node().is_some();
            let after = fixture.memo_hits_and_misses();
            if placed && fixture.profile.typical_id() == typical {
                assert!(after.1 - before.1 <= 1, "{before:?} → {after:?}");
                assert!(after.0 - before.0 >= 99, "{before:?} → {after:?}");
                checked += 1;
            }
        }
        assert!(checked > 0, "the typical workload changed at every check");
        assert!(hits + misses > 0);
        assert!(fixture.prepared("nope", "binpack").is_err());
        let report = measure(10, 2, 3).unwrap();
        assert_eq!(report.policies.len(), 3);
        assert!(report.median("fragmentation").is_some_and(|m| m > 0.0));
        assert_eq!(report.median("other"), None);
    }
}
