//! Node scoring: a device's free share, the per-kind sums ([`NodeFragmentation`]) from which a node's
//! expected fragmentation F follows, and the [`NodeScorer`] whose device keys feed the device order of
//! [`crate::gpu_policy::Fragmentation`] and whose growth of F is the node score.

use super::workload::{GpuKind, TypicalWorkload};
use super::{NodeInputs, score_with_scale};
use crate::model::{DeviceInfo, DeviceUsage, NodeView};
use crate::request::ContainerRequest;
use crate::rules::{self, Demand, DeviceState, Selection};

/// A device's free share in GPUs (0..=1): the smaller of its free cores and free memory, as fractions
/// of the device; 0 when it cannot take another task (split count used up, unhealthy, cordoned, MIG).
pub fn free_share(device: &DeviceInfo, usage: &DeviceUsage, cordoned: bool) -> f64 {
    if !device.health
        || cordoned
        || device.is_mig()
        || device.devcore == 0
        || device.devmem == 0
        || usage.used >= u64::from(device.count)
    {
        return 0.0;
    }
    let cores = 1.0 - usage.usedcores as f64 / f64::from(device.devcore);
    let memory = 1.0 - usage.usedmem as f64 / f64::from(device.devmem);
    cores.min(memory).clamp(0.0, 1.0)
}

/// True when one GPU of `kind` fits on the device as HAMi's fit checks it ([`rules`]; the type
/// selectors are the caller's, and the shape has no UUID selector or mutex policy).
fn device_hosts(device: &DeviceInfo, usage: &DeviceUsage, cordoned: bool, kind: &GpuKind) -> bool {
    let request = kind.request();
    let demand = Demand {
        request: &request,
        mutex: false,
    };
    rules::first_refusal(
        &DeviceState::of(device, *usage, cordoned),
        Selection::ANY,
        demand,
    )
    .is_none()
}

/// Per-kind running sums over a node's candidate devices, from which F and the effect of changing
/// one device or the node's free CPU follow in O(shapes).
#[derive(Debug, Clone)]
pub struct NodeFragmentation {
    /// Free share per candidate (same order as the candidates).
    shares: Vec<f64>,
    /// Whether each candidate is cordoned.
    cordoned: Vec<bool>,
    /// `hosts[c * kinds + k]`: candidate c can host one GPU of kind k.
    hosts: Vec<bool>,
    /// Per kind: candidates that can host it.
    hosting: Vec<u32>,
    /// Per kind: Σ free share of candidates that cannot host it.
    stranded: Vec<f64>,
    /// Σ free share.
    total: f64,
    /// Free CPU, if known.
    cpu_free: Option<u64>,
    /// Upper-cased device types of the candidates (only when some shape constrains the type).
    upper_types: Vec<String>,
}

impl NodeFragmentation {
    /// The sums for `usage` over the `candidates` (device indices) of `node`, with `cpu_free`.
    pub fn new(
        node: NodeView<'_>,
        usage: &[DeviceUsage],
        candidates: &[usize],
        typical: &TypicalWorkload,
        cpu_free: Option<u64>,
    ) -> Self {
        let kinds = typical.kinds.len();
        let upper_types = if typical.constrained {
            candidates
                .iter()
                .map(|&i| node.devices[i].device_type.to_uppercase())
                .collect()
        } else {
            Vec::new()
        };
        let mut state = NodeFragmentation {
            shares: Vec::with_capacity(candidates.len()),
            cordoned: Vec::with_capacity(candidates.len()),
            hosts: Vec::with_capacity(candidates.len() * kinds),
            hosting: vec![0; kinds],
            stranded: vec![0.0; kinds],
            total: 0.0,
            cpu_free,
            upper_types,
        };
        for (c, &i) in candidates.iter().enumerate() {
            let (device, u) = (&node.devices[i], &usage[i]);
            let cordoned = !node.cordoned.is_empty() && node.cordoned.contains(&device.id);
            let share = free_share(device, u, cordoned);
            state.shares.push(share);
            state.cordoned.push(cordoned);
            state.total += share;
            // Devices in the same state as an earlier one host the same kinds (idle GPUs, mostly).
            let twin = (0..c).find(|&e| {
                let j = candidates[e];
                usage[j] == *u
                    && state.cordoned[e] == cordoned
                    && same_capacity(&node.devices[j], device)
            });
            for k in 0..kinds {
                let hosts = match twin {
                    Some(e) => state.hosts[e * kinds + k],
                    None => {
                        state.type_ok(c, &typical.kinds[k])
                            && device_hosts(device, u, cordoned, &typical.kinds[k])
                    }
                };
                state.hosts.push(hosts);
                if hosts {
                    state.hosting[k] += 1;
                } else {
                    state.stranded[k] += share;
                }
            }
        }
        state
    }

    fn type_ok(&self, candidate: usize, kind: &GpuKind) -> bool {
        !kind.constrained()
            || self
                .upper_types
                .get(candidate)
                .is_some_and(|t| kind.type_allowed(t))
    }

    fn sum(
        typical: &TypicalWorkload,
        cpu: Option<u64>,
        total: f64,
        hosting_stranded: impl Fn(usize) -> (u32, f64),
    ) -> f64 {
        typical
            .shapes
            .iter()
            .zip(&typical.kind_of)
            .map(|((shape, p), &k)| {
                let (hosting, stranded) = hosting_stranded(k);
                let frag = if hosting >= typical.kinds[k].nums
                    && cpu.is_none_or(|c| c >= shape.cpu_milli)
                {
                    stranded
                } else {
                    total
                };
                p * frag
            })
            .sum()
    }

    /// Σ free share of the candidates, in GPUs.
    pub fn free(&self) -> f64 {
        self.total
    }

    /// The node's expected fragmentation F, in GPUs.
    pub fn value(&self, typical: &TypicalWorkload) -> f64 {
        self.value_with_cpu(typical, self.cpu_free)
    }

    /// F, in GPUs, if the node's free CPU were `cpu_free` instead.
    pub fn value_with_cpu(&self, typical: &TypicalWorkload, cpu_free: Option<u64>) -> f64 {
        Self::sum(typical, cpu_free, self.total, |k| {
            (self.hosting[k], self.stranded[k])
        })
    }

    /// F, in GPUs, if candidate `c` (position in the candidate list) had usage `after` and the node
    /// had `cpu_free` free CPU.
    pub fn value_with(
        &self,
        node: NodeView<'_>,
        candidates: &[usize],
        c: usize,
        after: &DeviceUsage,
        cpu_free: Option<u64>,
        typical: &TypicalWorkload,
    ) -> f64 {
        let Some(&i) = candidates.get(c) else {
            return self.value_with_cpu(typical, cpu_free);
        };
        let device = &node.devices[i];
        let cordoned = self.cordoned[c];
        let old_share = self.shares[c];
        let new_share = free_share(device, after, cordoned);
        let total = self.total - old_share + new_share;
        let kinds = typical.kinds.len();
        let changed: Vec<(u32, f64)> = typical
            .kinds
            .iter()
            .enumerate()
            .map(|(k, kind)| {
                let was = self.hosts[c * kinds + k];
                let now = self.type_ok(c, kind) && device_hosts(device, after, cordoned, kind);
                let hosting = self.hosting[k] - u32::from(was) + u32::from(now);
                let mut stranded = self.stranded[k];
                if !was {
                    stranded -= old_share;
                }
                if !now {
                    stranded += new_share;
                }
                (hosting, stranded)
            })
            .collect();
        Self::sum(typical, cpu_free, total, |k| changed[k])
    }
}

/// True when two devices accept the same requests when equally used.
fn same_capacity(a: &DeviceInfo, b: &DeviceInfo) -> bool {
    a.count == b.count
        && a.devmem == b.devmem
        && a.devcore == b.devcore
        && a.health == b.health
        && a.mode == b.mode
        && a.device_type == b.device_type
}

/// The node's expected fragmentation F, in GPUs, over its NVIDIA devices.
pub fn node_fragmentation(
    node: NodeView<'_>,
    usage: &[DeviceUsage],
    typical: &TypicalWorkload,
    cpu_free: Option<u64>,
) -> f64 {
    let candidates = node.nvidia_devices();
    NodeFragmentation::new(node, usage, &candidates, typical, cpu_free).value(typical)
}

/// The fragmentation policy's view of one node evaluation: the inputs and the sums over the usage
/// before the pod, built once and reused for the device order and the node score.
#[derive(Debug, Clone)]
pub struct NodeScorer<'a> {
    inputs: NodeInputs<'a>,
    base: Vec<DeviceUsage>,
    state: NodeFragmentation,
}

impl<'a> NodeScorer<'a> {
    /// The scorer for `node` with usage `base` before the pod.
    pub fn new(
        node: NodeView<'_>,
        base: &[DeviceUsage],
        candidates: &[usize],
        inputs: NodeInputs<'a>,
    ) -> Self {
        NodeScorer {
            state: NodeFragmentation::new(node, base, candidates, inputs.typical, inputs.cpu_free),
            base: base.to_vec(),
            inputs,
        }
    }

    /// For each device, F after it takes one GPU of `request` on top of `usage` and the node gives
    /// the pod its CPU (`f64::INFINITY` when the device cannot take it or is not a candidate): the
    /// key of the `fragmentation` device order.
    pub fn device_keys(
        &self,
        node: NodeView<'_>,
        usage: &[DeviceUsage],
        candidates: &[usize],
        request: &ContainerRequest,
    ) -> Vec<f64> {
        let typical = self.inputs.typical;
        let rebuilt;
        let state = if usage == self.base.as_slice() {
            &self.state
        } else {
            rebuilt = NodeFragmentation::new(node, usage, candidates, typical, None);
            &rebuilt
        };
        let cpu_after = self.inputs.cpu_after();
        let mut keys = vec![f64::INFINITY; node.devices.len()];
        for (c, &i) in candidates.iter().enumerate() {
            let device = &node.devices[i];
            // A device in the same state as an earlier one gets the same key (idle GPUs, mostly).
            if let Some(j) = (0..c)
                .map(|e| candidates[e])
                .find(|&j| usage[j] == usage[i] && same_capacity(&node.devices[j], device))
                && !state.cordoned.iter().any(|&x| x)
            {
                keys[i] = keys[j];
                continue;
            }
            let mut after = usage[i];
            after.used += 1;
            after.usedmem += request.memory_on(device.devmem);
            after.usedcores += u64::from(request.cores_clamped());
            if after.usedmem <= u64::from(device.devmem)
                && after.usedcores <= u64::from(device.devcore)
            {
                keys[i] = state.value_with(node, candidates, c, &after, cpu_after, typical);
            }
        }
        keys
    }

    /// The node score of the pod moving the node's usage from the base to `after`.
    pub fn score(&self, node: NodeView<'_>, candidates: &[usize], after: &[DeviceUsage]) -> f32 {
        score_with_scale(
            self.growth(node, candidates, after),
            self.inputs.score_scale_gpus,
        )
    }

    /// How much the node's expected fragmentation grows (in GPUs; negative when it shrinks) when
    /// the pod moves its usage from the base to `after` and takes its CPU.
    pub fn growth(&self, node: NodeView<'_>, candidates: &[usize], after: &[DeviceUsage]) -> f64 {
        let typical = self.inputs.typical;
        let before = self.state.value(typical);
        let changed: Vec<usize> = (0..candidates.len())
            .filter(|&c| {
                let i = candidates[c];
                after.get(i) != self.base.get(i)
            })
            .collect();
        let cpu_after = self.inputs.cpu_after();
        let after_value = match changed.as_slice() {
            [] => self.state.value_with_cpu(typical, cpu_after),
            [c] => self.state.value_with(
                node,
                candidates,
                *c,
                &after[candidates[*c]],
                cpu_after,
                typical,
            ),
            _ => NodeFragmentation::new(node, after, candidates, typical, cpu_after).value(typical),
        };
        after_value - before
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fragmentation::SCORE_SCALE_GPUS;
    use crate::fragmentation::tests::{gpu, shape};
    use std::collections::BTreeSet;

    fn used(share_percent: u64) -> DeviceUsage {
        DeviceUsage {
            used: u64::from(share_percent > 0),
            usedmem: share_percent * 100,
            usedcores: share_percent,
        }
    }

    fn inputs(typical: &TypicalWorkload) -> NodeInputs<'_> {
        NodeInputs {
            typical,
            cpu_free: None,
            pod_cpu_milli: 0,
            score_scale_gpus: SCORE_SCALE_GPUS,
        }
    }

    fn request(percent: u32) -> ContainerRequest {
        ContainerRequest {
            nums: 1,
            memreq: 0,
            mem_percentage: percent,
            coresreq: percent,
        }
    }

    #[test]
    fn expected_fragmentation_by_hand() {
        // Free shares 0.5, 0.2, 1.0. Workload: 50 % one 0.3-GPU share, 50 % one whole GPU.
        let devices = [gpu(0), gpu(1), gpu(2)];
        let usage = [used(50), used(80), used(0)];
        let cordoned = BTreeSet::new();
        let view = NodeView {
            devices: &devices,
            usage: &usage,
            cordoned: &cordoned,
        };
        let typical = TypicalWorkload::from_weights([(shape(1, 30), 1.0), (shape(1, 100), 1.0)]);
        // 0.3-share: GPU 1 (0.2 free) cannot host → 0.2. Whole GPU: GPUs 0 and 1 cannot → 0.7.
        let f = node_fragmentation(view, &usage, &typical, None);
        assert!((f - (0.5 * 0.2 + 0.5 * 0.7)).abs() < 1e-9, "{f}");
        // A 2-GPU whole task cannot be hosted at all: all 1.7 free is fragmented for it.
        let two = TypicalWorkload::from_weights([(shape(2, 100), 1.0)]);
        assert!((node_fragmentation(view, &usage, &two, None) - 1.7).abs() < 1e-9);

        // Placing a 0.3 share: on GPU 0 → shares 0.2, 0.2, 1.0: 0.3-share frag 0.4, whole 0.4.
        // On GPU 2 → 0.5, 0.2, 0.7: 0.3-share frag 0.2, whole: no idle GPU → all 1.4.
        let scorer = NodeScorer::new(view, &usage, &[0, 1, 2], inputs(&typical));
        let keys = scorer.device_keys(view, &usage, &[0, 1, 2], &request(30));
        assert!((keys[0] - 0.4).abs() < 1e-9, "{keys:?}");
        assert!(keys[1].is_infinite(), "GPU 1 cannot take 0.3");
        assert!((keys[2] - (0.5 * 0.2 + 0.5 * 1.4)).abs() < 1e-9, "{keys:?}");
        let mut after = usage;
        after[0] = used(80);
        let g = scorer.growth(view, &[0, 1, 2], &after);
        assert!((g - (0.4 - 0.45)).abs() < 1e-9, "{g}");
        // Two devices changed: the scorer recomputes instead of using the one-device shortcut.
        after[2] = used(30);
        let direct = node_fragmentation(view, &after, &typical, None) - 0.45;
        assert!((scorer.growth(view, &[0, 1, 2], &after) - direct).abs() < 1e-9);
        // Keys on top of other usage (a second container) are computed from that usage.
        let keys = scorer.device_keys(view, &after, &[0, 1, 2], &request(30));
        assert!(keys[0].is_infinite() && keys[1].is_infinite() && keys[2].is_finite());
    }

    #[test]
    fn cpu_short_nodes_strand_everything() {
        let devices = [gpu(0), gpu(1)];
        let usage = [used(50), used(0)];
        let cordoned = BTreeSet::new();
        let view = NodeView {
            devices: &devices,
            usage: &usage,
            cordoned: &cordoned,
        };
        let mut needs_cpu = shape(1, 30);
        needs_cpu.cpu_milli = 8000;
        let typical = TypicalWorkload::from_weights([(needs_cpu, 1.0)]);
        // Enough CPU: nothing is stranded. 4 cores free: all 1.5 free GPU is stranded (FGD's Q4).
        assert_eq!(node_fragmentation(view, &usage, &typical, Some(8000)), 0.0);
        assert!((node_fragmentation(view, &usage, &typical, None)).abs() < 1e-9);
        assert!((node_fragmentation(view, &usage, &typical, Some(4000)) - 1.5).abs() < 1e-9);
        let state = NodeFragmentation::new(view, &usage, &[0, 1], &typical, Some(10_000));
        assert_eq!(state.value(&typical), 0.0);
        assert!((state.value_with_cpu(&typical, Some(2000)) - 1.5).abs() < 1e-9);
        let scorer = NodeScorer::new(
            view,
            &usage,
            &[0, 1],
            NodeInputs {
                typical: &typical,
                cpu_free: Some(10_000),
                pod_cpu_milli: 3000,
                score_scale_gpus: SCORE_SCALE_GPUS,
            },
        );
        let g = scorer.growth(view, &[0, 1], &usage);
        assert!(
            (g - 1.5).abs() < 1e-9,
            "taking 3 of 10 free cores strands the node: {g}"
        );
        // With 12 cores free, the 9 left after the pod still host the workload: nothing stranded.
        let roomy = NodeScorer::new(
            view,
            &usage,
            &[0, 1],
            NodeInputs {
                typical: &typical,
                cpu_free: Some(12_000),
                pod_cpu_milli: 3000,
                score_scale_gpus: SCORE_SCALE_GPUS,
            },
        );
        assert_eq!(roomy.growth(view, &[0, 1], &usage), 0.0);
    }

    #[test]
    fn incremental_value_equals_recomputation() {
        let devices = [gpu(0), gpu(1), gpu(2), gpu(3)];
        let usage = [used(10), used(0), used(100), used(45)];
        let cordoned = BTreeSet::from(["GPU-3".to_string()]);
        let view = NodeView {
            devices: &devices,
            usage: &usage,
            cordoned: &cordoned,
        };
        let typical = TypicalWorkload::from_weights([
            (shape(1, 20), 3.0),
            (shape(1, 100), 2.0),
            (shape(2, 100), 1.0),
            (shape(1, 60), 1.0),
        ]);
        let state = NodeFragmentation::new(view, &usage, &[0, 1, 2, 3], &typical, None);
        for c in 0..4 {
            for share in [0, 20, 55, 100] {
                let mut changed = usage;
                changed[c] = used(share);
                let direct = node_fragmentation(view, &changed, &typical, None);
                let incremental =
                    state.value_with(view, &[0, 1, 2, 3], c, &changed[c], None, &typical);
                assert!(
                    (direct - incremental).abs() < 1e-9,
                    "c{c} s{share}: {direct} {incremental}"
                );
            }
        }
    }

    #[test]
    fn type_selectors_and_split_count() {
        let mut devices = [gpu(0), gpu(1)];
        devices[1].device_type = "NVIDIA-A100".into();
        devices[0].count = 1;
        let usage = [used(10), DeviceUsage::default()];
        let cordoned = BTreeSet::new();
        let view = NodeView {
            devices: &devices,
            usage: &usage,
            cordoned: &cordoned,
        };
        // GPU 0's split count is used up: its 0.9 free is unusable, so it counts as no free share.
        assert_eq!(free_share(&devices[0], &usage[0], false), 0.0);
        let mut a100 = shape(1, 50);
        a100.use_types = vec!["A100".into()];
        let mut not_a100 = shape(1, 50);
        not_a100.nouse_types = vec!["A100".into()];
        let only_a100 = TypicalWorkload::from_weights([(a100, 1.0)]);
        assert_eq!(node_fragmentation(view, &usage, &only_a100, None), 0.0);
        // Nothing but the full A100 is free, and this shape may not use it: all of it is stranded.
        let avoid = TypicalWorkload::from_weights([(not_a100, 1.0)]);
        assert!((node_fragmentation(view, &usage, &avoid, None) - 1.0).abs() < 1e-9);
    }

    /// The free share is the smaller free fraction of cores and memory, and 0 whenever the device
    /// cannot take another task, each condition on its own.
    #[test]
    fn free_share_is_the_smaller_free_fraction_or_zero_when_closed() {
        let d = gpu(0);
        let usage = |used: u64, cores: u64, mem: u64| DeviceUsage {
            used,
            usedcores: cores,
            usedmem: mem,
        };
        assert_eq!(free_share(&d, &usage(0, 0, 0), false), 1.0);
        assert_eq!(free_share(&d, &usage(1, 25, 5000), false), 0.5);
        assert_eq!(free_share(&d, &usage(1, 75, 1000), false), 0.25);
        assert_eq!(free_share(&d, &usage(2, 120, 0), false), 0.0, "over-full");
        let open = usage(1, 10, 1000);
        assert!(free_share(&d, &open, false) > 0.0);
        let closed = [
            (
                DeviceInfo {
                    health: false,
                    ..d.clone()
                },
                false,
            ),
            (d.clone(), true),
            (
                DeviceInfo {
                    mode: "mig".into(),
                    ..d.clone()
                },
                false,
            ),
            (
                DeviceInfo {
                    devcore: 0,
                    ..d.clone()
                },
                false,
            ),
            (
                DeviceInfo {
                    devmem: 0,
                    ..d.clone()
                },
                false,
            ),
            (
                DeviceInfo {
                    count: 1,
                    ..d.clone()
                },
                false,
            ),
        ];
        for (device, cordoned) in &closed {
            assert_eq!(
                free_share(device, &open, *cordoned),
                0.0,
                "{device:?} cordoned={cordoned}"
            );
        }
        // A zero capacity closes the device even when nothing of it is used (no 0/0 share).
        let nothing_used = usage(1, 0, 0);
        for device in [
            DeviceInfo {
                devcore: 0,
                ..d.clone()
            },
            DeviceInfo {
                devmem: 0,
                ..d.clone()
            },
        ] {
            assert_eq!(free_share(&device, &nothing_used, false), 0.0, "{device:?}");
        }
    }

    /// `device_keys` shares a key between devices in the same state (an optimisation); every key
    /// must still equal F recomputed from scratch after the task lands on that device. Devices
    /// differ from the first in one attribute each (two identical ones share), the workload has a
    /// type-constrained shape so the type matters, and a second case cordons one of the twins.
    #[test]
    fn device_keys_equal_a_recomputation_for_every_device() {
        let base = gpu(0);
        let differing = |i: usize, f: &dyn Fn(&mut DeviceInfo)| {
            let mut d = gpu(i);
            f(&mut d);
            d
        };
        let devices = [
            base.clone(),
            gpu(1),
            differing(2, &|d| d.count = 1),
            differing(3, &|d| d.devmem = 4000),
            differing(4, &|d| d.devcore = 40),
            differing(5, &|d| d.health = false),
            differing(6, &|d| d.mode = "mig".into()),
            differing(7, &|d| d.device_type = "NVIDIA-A100".into()),
            gpu(8),
            differing(9, &|d| d.devmem = 2000),
        ];
        let mut a100 = shape(1, 60);
        a100.use_types = vec!["A100".into()];
        let typical =
            TypicalWorkload::from_weights([(shape(1, 50), 1.0), (shape(1, 100), 1.0), (a100, 1.0)]);
        let idle = vec![DeviceUsage::default(); devices.len()];
        let mut busy = idle.clone();
        busy[8] = used(30);
        // MiB, not a percentage: a percentage would scale with the device and hide the
        // difference in memory.
        let request = ContainerRequest {
            nums: 1,
            memreq: 3000,
            mem_percentage: crate::request::PERCENTAGE_UNSET,
            coresreq: 30,
        };
        for cordon in [None, Some("GPU-1")] {
            let cordoned: BTreeSet<String> = cordon.into_iter().map(String::from).collect();
            let view = NodeView {
                devices: &devices,
                usage: &idle,
                cordoned: &cordoned,
            };
            let candidates = view.nvidia_devices();
            let scorer = NodeScorer::new(view, &idle, &candidates, inputs(&typical));
            for usage in [&idle, &busy] {
                let keys = scorer.device_keys(view, usage, &candidates, &request);
                for &i in &candidates {
                    let mut after = usage.clone();
                    after[i].used += 1;
                    after[i].usedmem += request.memory_on(devices[i].devmem);
                    after[i].usedcores += u64::from(request.cores_clamped());
                    let fits = after[i].usedmem <= u64::from(devices[i].devmem)
                        && after[i].usedcores <= u64::from(devices[i].devcore);
                    let expected = if fits {
                        node_fragmentation(view, &after, &typical, None)
                    } else {
                        f64::INFINITY
                    };
                    let same = (keys[i] - expected).abs() < 1e-9 || keys[i] == expected;
                    assert!(
                        same,
                        "device {i} cordon {cordon:?}: {} vs {expected}",
                        keys[i]
                    );
                }
            }
        }
    }

    /// A shape whose type selectors exclude the node's GPUs finds all of its free share
    /// fragmented (no access), by `use-gputype` and by `nouse-gputype` alike.
    #[test]
    fn type_selectors_that_exclude_the_node_fragment_everything() {
        let devices = [gpu(0), gpu(1)];
        let usage = [DeviceUsage::default(); 2];
        let cordoned = BTreeSet::new();
        let view = NodeView {
            devices: &devices,
            usage: &usage,
            cordoned: &cordoned,
        };
        let f = |shape: crate::fragmentation::TaskShape| {
            node_fragmentation(
                view,
                &usage,
                &TypicalWorkload::from_weights([(shape, 1.0)]),
                None,
            )
        };
        assert_eq!(f(shape(1, 60)), 0.0);
        let mut only_a100 = shape(1, 60);
        only_a100.use_types = vec!["A100".into()];
        assert_eq!(f(only_a100), 2.0);
        let mut not_t4 = shape(1, 60);
        not_t4.nouse_types = vec!["T4".into()];
        assert_eq!(f(not_t4), 2.0);
        let mut t4 = shape(1, 60);
        t4.use_types = vec!["T4".into()];
        assert_eq!(f(t4), 0.0);
    }

    #[test]
    fn free_is_the_sum_of_the_candidates_free_shares() {
        let devices = [gpu(0), gpu(1), gpu(2)];
        let usage = [used(50), used(80), used(0)];
        let cordoned = BTreeSet::new();
        let view = NodeView {
            devices: &devices,
            usage: &usage,
            cordoned: &cordoned,
        };
        let typical = TypicalWorkload::from_weights([(shape(1, 30), 1.0)]);
        let all = NodeFragmentation::new(view, &usage, &[0, 1, 2], &typical, None);
        assert!((all.free() - 1.7).abs() < 1e-9, "{}", all.free());
        let two = NodeFragmentation::new(view, &usage, &[0, 1], &typical, None);
        assert!((two.free() - 0.7).abs() < 1e-9, "{}", two.free());
    }
}
