//! The replayed cluster as kube-scheduler and the invariant checker see it: per node, CPU, host
//! memory and pod count (NodeResourcesFit), and per GPU what is in use (share in milli, cores, MiB,
//! tasks, exclusivity). The scheduler under test keeps its own state (the core's `Registry` and
//! `Ledger`); this mirror is updated from each decision and checked after every placement, so an
//! over-committed device fails the run instead of going unnoticed.
//!
//! Node names given to the scheduler are `<rank>-<sn>`, with a seeded random rank, as the paper's
//! simulator renames nodes `%04d-<name>` with a seeded permutation: ties between equally scored nodes
//! (sliceguard breaks them by name, the paper by name, kube-scheduler at random) then fall to a fixed
//! random node order per seed instead of to the file order.
//!
//! CPU-only pods never reach a GPU scheduler extender (HAMi's filter passes every node when no
//! container asks for a GPU), so kube-scheduler's own scoring places them. [`CpuPlacement`] selects
//! which: the default profile (NodeResourcesFit `LeastAllocated` + `NodeResourcesBalancedAllocation`,
//! weight 1 each, both spreading), or `MostAllocated`, the packing strategy an operator can configure.

use super::input::{NodeRow, PodRow, device_memory_mib};
use super::rng::Rng;
use std::fmt;

/// Random stream used for the node ranks (independent of arrivals and policies).
pub const NODE_STREAM: u64 = 2;

/// kube-scheduler's default request for a container without a CPU request, for scoring (millicores).
pub const DEFAULT_MILLI_CPU_REQUEST: u64 = 100;
/// kube-scheduler's default request for a container without a memory request, for scoring (MiB).
pub const DEFAULT_MEMORY_REQUEST_MIB: u64 = 200;

/// What one GPU has in use.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GpuSlot {
    /// Share in use, in milli-GPU (cores × 10).
    pub milli: u32,
    /// Cores (percent) in use.
    pub cores: u32,
    /// MiB in use.
    pub memory_mib: u64,
    /// Tasks holding the GPU.
    pub tasks: u32,
    /// A whole-GPU (100-core) task holds it.
    pub exclusive: bool,
}

impl GpuSlot {
    /// Milli-GPU left (the paper's `MilliGpuLeft`).
    pub fn milli_left(&self) -> u32 {
        1000u32.saturating_sub(self.milli)
    }
}

/// One node of the replayed cluster.
#[derive(Debug, Clone)]
pub struct ClusterNode {
    /// Index of the node's row in the node file.
    pub row: usize,
    /// The name the scheduler sees: `<rank>-<sn>`.
    pub name: String,
    /// GPU model (empty for a CPU-only node).
    pub model: String,
    /// MiB per GPU.
    pub devmem: u32,
    /// CPU capacity (millicores).
    pub cpu_capacity: u64,
    /// Host memory capacity (MiB).
    pub memory_capacity: u64,
    /// CPU requested by the pods on the node.
    pub cpu_requested: u64,
    /// Memory requested by the pods on the node.
    pub memory_requested: u64,
    /// CPU requested, counting kube's default for pods without a CPU request (scoring only).
    pub cpu_nonzero: u64,
    /// Memory requested, counting kube's default for pods without a memory request (scoring only).
    pub memory_nonzero: u64,
    /// Pods on the node.
    pub pods: u32,
    /// The GPUs, in device order.
    pub gpus: Vec<GpuSlot>,
}

impl ClusterNode {
    /// CPU left (millicores).
    pub fn cpu_left(&self) -> u64 {
        self.cpu_capacity.saturating_sub(self.cpu_requested)
    }

    /// Milli-GPU left over all GPUs.
    pub fn milli_left(&self) -> u64 {
        self.gpus.iter().map(|g| u64::from(g.milli_left())).sum()
    }
}

/// One GPU given to a pod.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeviceGrant {
    /// Index of the GPU on its node.
    pub gpu: usize,
    /// Cores (percent).
    pub cores: u32,
    /// MiB.
    pub memory_mib: u64,
}

/// Who places CPU-only pods.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum CpuPlacement {
    /// kube-scheduler's default profile: LeastAllocated + BalancedAllocation (spreads).
    KubeDefault,
    /// kube-scheduler with NodeResourcesFit's MostAllocated strategy + BalancedAllocation (packs).
    KubeMostAllocated,
    /// The policy under test places them (only the paper's reference policies can).
    Policy,
}

impl fmt::Display for CpuPlacement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CpuPlacement::KubeDefault => "kube-default",
            CpuPlacement::KubeMostAllocated => "kube-most-allocated",
            CpuPlacement::Policy => "policy",
        })
    }
}

/// A capacity invariant broken by a placement.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("node {node}: {detail}")]
pub struct Violation {
    /// The node's scheduler name.
    pub node: String,
    /// What broke.
    pub detail: String,
}

/// The replayed cluster.
#[derive(Debug, Clone)]
pub struct Cluster {
    /// Nodes in file order.
    pub nodes: Vec<ClusterNode>,
    /// Split count per GPU (tasks a GPU accepts).
    pub split: u32,
    /// Pods a node accepts.
    pub max_pods: u32,
    used_milli: u64,
    capacity_milli: u64,
}

impl Cluster {
    /// A cluster with nothing placed; node ranks come from `seed`.
    pub fn new(rows: &[NodeRow], split: u32, max_pods: u32, seed: u64) -> Self {
        let ranks = Rng::stream(seed, NODE_STREAM).permutation(rows.len());
        let width = rows.len().saturating_sub(1).to_string().len().max(4);
        let nodes = rows
            .iter()
            .enumerate()
            .map(|(i, r)| ClusterNode {
                row: i,
                name: format!("{:0width$}-{}", ranks[i], r.name),
                model: r.model.clone(),
                devmem: device_memory_mib(&r.model),
                cpu_capacity: r.cpu_milli,
                memory_capacity: r.memory_mib,
                cpu_requested: 0,
                memory_requested: 0,
                cpu_nonzero: 0,
                memory_nonzero: 0,
                pods: 0,
                gpus: vec![GpuSlot::default(); r.gpus as usize],
            })
            .collect();
        Cluster {
            nodes,
            split,
            max_pods,
            used_milli: 0,
            capacity_milli: rows.iter().map(|r| u64::from(r.gpus) * 1000).sum(),
        }
    }

    /// Σ milli-GPU allocated.
    pub fn used_milli(&self) -> u64 {
        self.used_milli
    }

    /// Σ milli-GPU of the fleet.
    pub fn capacity_milli(&self) -> u64 {
        self.capacity_milli
    }

    /// kube-scheduler's NodeResourcesFit filter: CPU, memory and pod count.
    pub fn host_fits(&self, node: usize, pod: &PodRow) -> bool {
        let n = &self.nodes[node];
        n.pods < self.max_pods
            && n.cpu_requested + pod.cpu_milli <= n.cpu_capacity
            && n.memory_requested + pod.memory_mib <= n.memory_capacity
    }

    /// True when the GPU part of `pod` fits on `node` exactly as HAMi's fit decides it for the
    /// replay's requests (one container; healthy, uncordoned devices of an allowed type): a sharing
    /// task needs one GPU with a free split slot, `cores` free cores and `devmem × cores / 100` free
    /// MiB; a whole-GPU task needs `num_gpu` GPUs without any task. The replay's fast path offers the
    /// core only such nodes (see [`super::replay`]).
    pub fn gpu_fits(&self, node: usize, pod: &PodRow) -> bool {
        let n = &self.nodes[node];
        if pod.num_gpu == 0 {
            return true;
        }
        if pod.is_sharing() {
            let cores = pod.gpu_milli / 10;
            let memory = u64::from(n.devmem) * u64::from(cores) / 100;
            n.gpus.iter().any(|g| {
                g.tasks < self.split
                    && g.cores + cores <= 100
                    && g.memory_mib + memory <= u64::from(n.devmem)
            })
        } else {
            n.gpus.iter().filter(|g| g.tasks == 0).count() >= pod.num_gpu as usize
        }
    }

    /// Places a pod on `node` with `grants`, then checks the capacity invariants of that node.
    pub fn apply(
        &mut self,
        node: usize,
        pod: &PodRow,
        grants: &[DeviceGrant],
    ) -> Result<(), Violation> {
        let split = self.split;
        let max_pods = self.max_pods;
        let n = &mut self.nodes[node];
        let fail = |detail: String| Violation {
            node: n.name.clone(),
            detail,
        };
        if grants.len() != pod.num_gpu as usize {
            return Err(fail(format!(
                "pod {} asked for {} GPUs and got {}",
                pod.name,
                pod.num_gpu,
                grants.len()
            )));
        }
        for (i, g) in grants.iter().enumerate() {
            if g.gpu >= n.gpus.len() {
                return Err(fail(format!("GPU index {} out of range", g.gpu)));
            }
            if grants[..i].iter().any(|o| o.gpu == g.gpu) {
                return Err(fail(format!("GPU {} granted twice to one pod", g.gpu)));
            }
        }
        n.pods += 1;
        n.cpu_requested += pod.cpu_milli;
        n.memory_requested += pod.memory_mib;
        n.cpu_nonzero += nonzero(pod.cpu_milli, DEFAULT_MILLI_CPU_REQUEST);
        n.memory_nonzero += nonzero(pod.memory_mib, DEFAULT_MEMORY_REQUEST_MIB);
        for g in grants {
            let slot = &mut n.gpus[g.gpu];
            slot.tasks += 1;
            slot.cores += g.cores;
            slot.milli += g.cores * 10;
            slot.memory_mib += g.memory_mib;
            slot.exclusive |= g.cores >= 100;
            self.used_milli += u64::from(g.cores) * 10;
        }
        let n = &self.nodes[node];
        let fail = |detail: String| Violation {
            node: n.name.clone(),
            detail,
        };
        if n.cpu_requested > n.cpu_capacity || n.memory_requested > n.memory_capacity {
            return Err(fail(format!(
                "host resources over-committed: cpu {}/{} memory {}/{}",
                n.cpu_requested, n.cpu_capacity, n.memory_requested, n.memory_capacity
            )));
        }
        if n.pods > max_pods {
            return Err(fail(format!("{} pods, more than {max_pods}", n.pods)));
        }
        for g in grants {
            let s = &n.gpus[g.gpu];
            let problem = if s.memory_mib > u64::from(n.devmem) {
                Some(format!("memory {} > {} MiB", s.memory_mib, n.devmem))
            } else if s.cores > 100 {
                Some(format!("cores {} > 100", s.cores))
            } else if s.tasks > split {
                Some(format!("{} tasks > split count {split}", s.tasks))
            } else if s.exclusive && s.tasks > 1 {
                Some(format!(
                    "an exclusive task shares it with {} others",
                    s.tasks - 1
                ))
            } else {
                None
            };
            if let Some(p) = problem {
                return Err(fail(format!("GPU {} after pod {}: {p}", g.gpu, pod.name)));
            }
        }
        Ok(())
    }

    /// Places a CPU-only pod as kube-scheduler would, among the nodes that pass NodeResourcesFit;
    /// `None` when none does. Ties go to the smallest scheduler name (the seeded rank).
    pub fn kube_pick(&self, pod: &PodRow, strategy: CpuPlacement) -> Option<usize> {
        let mut best: Option<(i64, &str, usize)> = None;
        for (i, n) in self.nodes.iter().enumerate() {
            if !self.host_fits(i, pod) {
                continue;
            }
            let score = kube_score(n, pod, strategy);
            let better = match best {
                None => true,
                Some((s, name, _)) => score > s || (score == s && n.name.as_str() < name),
            };
            if better {
                best = Some((score, n.name.as_str(), i));
            }
        }
        best.map(|(_, _, i)| i)
    }
}

fn nonzero(value: u64, default: u64) -> u64 {
    if value == 0 { default } else { value }
}

/// kube-scheduler's score for a CPU-only pod on `node`: NodeResourcesFit (LeastAllocated or
/// MostAllocated over cpu and memory, weight 1 each, on non-zero requests) plus
/// NodeResourcesBalancedAllocation (on actual requests); both plugins have weight 1.
pub fn kube_score(node: &ClusterNode, pod: &PodRow, strategy: CpuPlacement) -> i64 {
    let cpu = node.cpu_nonzero + nonzero(pod.cpu_milli, DEFAULT_MILLI_CPU_REQUEST);
    let mem = node.memory_nonzero + nonzero(pod.memory_mib, DEFAULT_MEMORY_REQUEST_MIB);
    let per_resource = |requested: u64, capacity: u64| -> i64 {
        if capacity == 0 || requested > capacity {
            return 0;
        }
        match strategy {
            CpuPlacement::KubeMostAllocated => (requested * 100 / capacity) as i64,
            _ => ((capacity - requested) * 100 / capacity) as i64,
        }
    };
    let fit = (per_resource(cpu, node.cpu_capacity) + per_resource(mem, node.memory_capacity)) / 2;
    let fraction = |requested: u64, capacity: u64| -> f64 {
        if capacity == 0 {
            1.0
        } else {
            (requested as f64 / capacity as f64).min(1.0)
        }
    };
    let f_cpu = fraction(node.cpu_requested + pod.cpu_milli, node.cpu_capacity);
    let f_mem = fraction(node.memory_requested + pod.memory_mib, node.memory_capacity);
    let std = ((f_cpu - f_mem) / 2.0).abs();
    let balanced = ((1.0 - std) * 100.0) as i64;
    fit + balanced
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, cpu: u64, mem: u64, gpus: u32) -> NodeRow {
        NodeRow {
            name: name.into(),
            cpu_milli: cpu,
            memory_mib: mem,
            gpus,
            model: if gpus > 0 { "T4".into() } else { String::new() },
        }
    }

    fn pod(cpu: u64, mem: u64, num_gpu: u32, milli: u32) -> PodRow {
        PodRow {
            name: "p".into(),
            cpu_milli: cpu,
            memory_mib: mem,
            num_gpu,
            gpu_milli: milli,
            gpu_spec: vec![],
        }
    }

    #[test]
    fn names_carry_a_seeded_rank() {
        let rows = vec![node("a", 1000, 1000, 1), node("b", 1000, 1000, 1)];
        let c = Cluster::new(&rows, 20, 110, 42);
        assert!(c.nodes[0].name.ends_with("-a") && c.nodes[1].name.ends_with("-b"));
        let ranks: Vec<&str> = c.nodes.iter().map(|n| &n.name[..4]).collect();
        assert!(ranks == ["0000", "0001"] || ranks == ["0001", "0000"]);
        assert_eq!(c.capacity_milli(), 2000);
    }

    #[test]
    fn host_fit_and_apply_track_resources() {
        let mut c = Cluster::new(&[node("a", 4000, 8000, 2)], 20, 2, 1);
        let p = pod(3000, 1000, 1, 500);
        assert!(c.host_fits(0, &p));
        c.apply(
            0,
            &p,
            &[DeviceGrant {
                gpu: 1,
                cores: 50,
                memory_mib: 7554,
            }],
        )
        .unwrap();
        assert_eq!(c.used_milli(), 500);
        assert_eq!(c.nodes[0].gpus[1].milli_left(), 500);
        assert_eq!(c.nodes[0].milli_left(), 1500);
        assert_eq!(c.nodes[0].cpu_left(), 1000);
        assert!(!c.host_fits(0, &p), "CPU is short");
        assert!(c.host_fits(0, &pod(1000, 1000, 0, 0)));
    }

    #[test]
    fn apply_rejects_over_commitment() {
        let rows = [node("a", 100_000, 100_000, 2)];
        let mut c = Cluster::new(&rows, 2, 110, 1);
        let share = pod(1, 1, 1, 600);
        let grant = |gpu, cores| DeviceGrant {
            gpu,
            cores,
            memory_mib: 1,
        };
        c.apply(0, &share, &[grant(0, 60)]).unwrap();
        let e = c.apply(0, &share, &[grant(0, 60)]).unwrap_err();
        assert!(e.detail.contains("cores 120 > 100"), "{e}");

        let mut c = Cluster::new(&rows, 2, 110, 1);
        c.apply(0, &pod(1, 1, 1, 1000), &[grant(0, 100)]).unwrap();
        let e = c.apply(0, &pod(1, 1, 1, 10), &[grant(0, 0)]).unwrap_err();
        assert!(e.detail.contains("exclusive"), "{e}");

        let mut c = Cluster::new(&rows, 2, 110, 1);
        c.apply(0, &pod(1, 1, 1, 10), &[grant(1, 1)]).unwrap();
        c.apply(0, &pod(1, 1, 1, 10), &[grant(1, 1)]).unwrap();
        let e = c.apply(0, &pod(1, 1, 1, 10), &[grant(1, 1)]).unwrap_err();
        assert!(e.detail.contains("split count"), "{e}");

        let mut c = Cluster::new(&rows, 2, 110, 1);
        let big = DeviceGrant {
            gpu: 0,
            cores: 10,
            memory_mib: 20000,
        };
        let e = c.apply(0, &pod(1, 1, 1, 100), &[big]).unwrap_err();
        assert!(e.detail.contains("memory"), "{e}");
        let e = c
            .apply(0, &pod(1, 1, 2, 1000), &[grant(0, 100), grant(0, 100)])
            .unwrap_err();
        assert!(e.detail.contains("twice"), "{e}");
        let e = c
            .apply(0, &pod(1, 1, 1, 1000), &[grant(5, 100)])
            .unwrap_err();
        assert!(e.detail.contains("out of range"), "{e}");
        let e = c
            .apply(0, &pod(1, 1, 2, 1000), &[grant(0, 100)])
            .unwrap_err();
        assert!(e.detail.contains("asked for 2"), "{e}");
        let e = c.apply(0, &pod(200_000, 1, 0, 0), &[]).unwrap_err();
        assert!(e.detail.contains("host resources"), "{e}");
    }

    #[test]
    fn kube_default_spreads_and_most_allocated_packs() {
        // Hand-computed: node a has 2 of 4 cores and 2 of 8 GiB requested, b is empty.
        let rows = [node("a", 4000, 8192, 0), node("b", 4000, 8192, 0)];
        let mut c = Cluster::new(&rows, 20, 110, 1);
        c.apply(0, &pod(2000, 2048, 0, 0), &[]).unwrap();
        let p = pod(1000, 1024, 0, 0);
        // a: cpu 3000/4000 → least 25, most 75; mem 3072/8192 → least 62, most 37.
        // balanced: |0.75 − 0.375|/2 = 0.1875 → 81.
        assert_eq!(
            kube_score(&c.nodes[0], &p, CpuPlacement::KubeDefault),
            (25 + 62) / 2 + 81
        );
        assert_eq!(
            kube_score(&c.nodes[0], &p, CpuPlacement::KubeMostAllocated),
            (75 + 37) / 2 + 81
        );
        // b: cpu 1000/4000 → least 75, most 25; mem 1024/8192 → least 87, most 12; balanced 93.
        assert_eq!(
            kube_score(&c.nodes[1], &p, CpuPlacement::KubeDefault),
            (75 + 87) / 2 + 93
        );
        assert_eq!(c.kube_pick(&p, CpuPlacement::KubeDefault), Some(1));
        assert_eq!(c.kube_pick(&p, CpuPlacement::KubeMostAllocated), Some(0));
        assert_eq!(
            c.kube_pick(&pod(5000, 1, 0, 0), CpuPlacement::KubeDefault),
            None
        );
        // Pods without requests count kube's defaults for scoring only.
        c.apply(1, &pod(0, 0, 0, 0), &[]).unwrap();
        assert_eq!(
            (c.nodes[1].cpu_nonzero, c.nodes[1].memory_nonzero),
            (100, 200)
        );
        assert_eq!(c.nodes[1].cpu_requested, 0);
    }
}
