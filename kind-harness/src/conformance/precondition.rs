//! What a scenario may assume about the cluster before it starts: the cluster's current GPU usage,
//! read the way `kind-harness audit` reads it ([`crate::audit::audit`] over every node and pod),
//! and the placements the product itself would choose from that usage.
//!
//! A precondition is about the cluster's **state** (a GPU nobody uses, a node with room, a second
//! GPU model), never about the behaviour under test: a scenario whose precondition fails is
//! SKIPPED with what it needed and what it saw; a scenario that runs and sees the wrong behaviour
//! FAILS. The expected node of a placement comes from the core's own fit and score
//! ([`sliceguard::fit::evaluate_node`] ranked by [`sliceguard::fit::node_preference`]) over the
//! observed usage, so a cluster that already runs other work gets the expectation HAMi's binpack
//! and spread give on it, not the one an empty cluster would give.

use super::observe::{Gpu, Inventory};
use crate::audit;
use k8s_openapi::api::core::v1::{Node, Pod};
use sliceguard::annotations::DEVICE_CORDON;
use sliceguard::fit::{NodeView, evaluate_node, node_preference};
use sliceguard::model::DeviceUsage;
use sliceguard::policy::{NodePolicy, PodPreferences, PolicyDefaults};
use sliceguard::request::{RequestDefaults, pod_request};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// One GPU as the cluster has it now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GpuState {
    /// The node and its registration.
    pub gpu: Gpu,
    /// What the pods on it hold now (the audit's reading).
    pub usage: DeviceUsage,
    /// Listed in its node's `hami.io/device-cordon`.
    pub cordoned: bool,
}

impl GpuState {
    /// Healthy, not cordoned: pods may land on it.
    pub fn usable(&self) -> bool {
        self.gpu.info.health && !self.cordoned
    }

    /// Usable, and no pod holds any of it.
    pub fn idle(&self) -> bool {
        self.usable() && self.usage == DeviceUsage::default()
    }

    /// Usable, and `n` more containers of `mem` MiB and `cores` each fit beside what it holds now
    /// (HAMi's per-device order, [`super::observe::fit_reason`], for the last of the `n`).
    pub fn has_room(&self, n: u32, mem: u32, cores: u32) -> bool {
        let narrow = |v: u64| u32::try_from(v).unwrap_or(u32::MAX);
        let before = n.saturating_sub(1);
        self.usable()
            && n > 0
            && super::observe::fit_reason(
                &self.gpu.info,
                narrow(self.usage.used).saturating_add(before),
                narrow(self.usage.usedmem).saturating_add(before.saturating_mul(mem)),
                narrow(self.usage.usedcores).saturating_add(before.saturating_mul(cores)),
                mem,
                cores,
            )
            .is_none()
    }
}

/// The cluster's GPU nodes (schedulable, registered), their cordons, and the usage of every device.
#[derive(Debug, Clone, Default)]
pub struct ClusterState {
    /// The registered, schedulable GPU nodes.
    pub inventory: Inventory,
    /// Node → cordoned device ids.
    pub cordoned: BTreeMap<String, BTreeSet<String>>,
    /// (node, uuid) → what the pods on it hold.
    pub usage: BTreeMap<(String, String), DeviceUsage>,
    /// Pods holding devices (the audit's count).
    pub pods_with_devices: usize,
}

impl ClusterState {
    /// Builds the state from every node and every pod, through the audit's reading of usage.
    pub fn from_objects(nodes: &[Node], pods: &[Pod]) -> ClusterState {
        let inventory = Inventory::from_nodes(nodes);
        let report = audit::audit(
            nodes,
            pods,
            jiff::Timestamp::now(),
            Duration::from_secs(300),
        );
        let usage = report
            .usage
            .iter()
            .map(|u| {
                (
                    (u.node.clone(), u.uuid.clone()),
                    DeviceUsage {
                        used: u64::from(u.used),
                        usedmem: u.usedmem,
                        usedcores: u.usedcores,
                    },
                )
            })
            .collect();
        let cordoned = nodes
            .iter()
            .filter_map(|n| {
                let name = n.metadata.name.clone()?;
                let value = n.metadata.annotations.as_ref()?.get(DEVICE_CORDON)?;
                let ids: BTreeSet<String> = value
                    .split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(String::from)
                    .collect();
                Some((name, ids))
            })
            .collect();
        ClusterState {
            inventory,
            cordoned,
            usage,
            pods_with_devices: report.pods_with_devices,
        }
    }

    fn device_usage(&self, node: &str, uuid: &str) -> DeviceUsage {
        self.usage
            .get(&(node.to_string(), uuid.to_string()))
            .copied()
            .unwrap_or_default()
    }

    /// Every GPU with its usage, node by node, in registration order.
    pub fn gpus(&self) -> Vec<GpuState> {
        self.inventory
            .gpus()
            .into_iter()
            .map(|gpu| GpuState {
                usage: self.device_usage(&gpu.node, &gpu.info.id),
                cordoned: self
                    .cordoned
                    .get(&gpu.node)
                    .is_some_and(|c| c.contains(&gpu.info.id)),
                gpu,
            })
            .collect()
    }

    /// The idle GPU with the most memory (the first such in node order on a tie).
    pub fn largest_idle_gpu(&self) -> Option<GpuState> {
        let mut best: Option<GpuState> = None;
        for g in self.gpus().into_iter().filter(GpuState::idle) {
            if best
                .as_ref()
                .is_none_or(|b| g.gpu.info.devmem > b.gpu.info.devmem)
            {
                best = Some(g);
            }
        }
        best
    }

    /// GPUs with room for `n` more containers of `mem` MiB and `cores` each.
    pub fn gpus_with_room(&self, n: u32, mem: u32, cores: u32) -> Vec<GpuState> {
        self.gpus()
            .into_iter()
            .filter(|g| g.has_room(n, mem, cores))
            .collect()
    }

    /// What the cluster offers, in one line: nodes, GPUs, how many idle, in use, cordoned or
    /// unhealthy, and the models.
    pub fn describe(&self) -> String {
        let gpus = self.gpus();
        let idle = gpus.iter().filter(|g| g.idle()).count();
        let unusable = gpus.iter().filter(|g| !g.usable()).count();
        let models: BTreeSet<&str> = gpus.iter().map(|g| &*g.gpu.info.device_type).collect();
        format!(
            "{} schedulable GPU nodes, {} GPUs ({} idle, {} in use, {} cordoned or unhealthy; models {}), {} pods holding GPUs",
            self.inventory.nodes.len(),
            gpus.len(),
            idle,
            gpus.len() - idle - unusable,
            unusable,
            models.into_iter().collect::<Vec<_>>().join(", "),
            self.pods_with_devices
        )
    }

    /// The product's verdict for `pod` on every GPU node from the observed usage: the node score
    /// when it fits, else the reasons a `FilteringFailed` event groups the node by.
    pub fn verdicts(
        &self,
        pod: &Pod,
    ) -> Result<BTreeMap<String, Result<f32, Vec<String>>>, String> {
        let request = pod_request(pod, RequestDefaults::default()).map_err(|e| e.to_string())?;
        let prefs = preferences(pod)?;
        let mut out = BTreeMap::new();
        for (node, devices) in &self.inventory.nodes {
            let usage: Vec<DeviceUsage> = devices
                .iter()
                .map(|d| self.device_usage(node, &d.id))
                .collect();
            let empty = BTreeSet::new();
            let view = NodeView {
                devices,
                usage: &usage,
                cordoned: self.cordoned.get(node).unwrap_or(&empty),
            };
            let verdict = match evaluate_node(view, &request, &prefs) {
                Ok(fit) => Ok(fit.score),
                Err(rejection) => Err(rejection
                    .counted_reasons()
                    .into_iter()
                    .map(String::from)
                    .collect()),
            };
            out.insert(node.clone(), verdict);
        }
        Ok(out)
    }

    /// The nodes the product would choose for `pod` now: every fitting node whose score is the
    /// best under the pod's node policy (more than one on a tie, which HAMi breaks at random).
    /// Empty when no node fits.
    pub fn best_nodes(&self, pod: &Pod) -> Result<(NodePolicy, BTreeSet<String>), String> {
        let policy = preferences(pod)?.node_policy;
        let fits: Vec<(String, f32)> = self
            .verdicts(pod)?
            .into_iter()
            .filter_map(|(n, v)| v.ok().map(|s| (n, s)))
            .collect();
        let best = fits
            .iter()
            .map(|(_, s)| *s)
            .max_by(|a, b| node_preference(policy, *a, *b));
        let nodes = fits
            .iter()
            .filter(|(_, s)| best.is_some_and(|b| node_preference(policy, *s, b).is_eq()))
            .map(|(n, _)| n.clone())
            .collect();
        Ok((policy, nodes))
    }

    /// The node scores of every fitting node, `node:score` (for what-was-expected texts).
    pub fn scores_text(&self, pod: &Pod) -> String {
        match self.verdicts(pod) {
            Ok(v) => v
                .iter()
                .filter_map(|(n, r)| r.as_ref().ok().map(|s| format!("{n}:{s:.2}")))
                .collect::<Vec<_>>()
                .join(", "),
            Err(e) => e,
        }
    }
}

/// A pod's preferences over the cluster's defaults (binpack nodes, spread GPUs: sliceguard's and
/// HAMi's defaults).
fn preferences(pod: &Pod) -> Result<PodPreferences, String> {
    let empty = BTreeMap::new();
    let annotations = pod.metadata.annotations.as_ref().unwrap_or(&empty);
    PodPreferences::from_annotations(annotations, &PolicyDefaults::default())
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use sliceguard::annotations::{DEVICES_ALLOCATED, NODE_SCHEDULER_POLICY};
    use sliceguard::objects::{FleetSpec, GpuAsk, fleet, gpu_pod, with_annotations};

    fn now() -> jiff::Timestamp {
        "2026-01-01T12:00:00Z".parse().unwrap()
    }

    fn placed(name: &str, node: &str, alloc: &str) -> Pod {
        let mut p = with_annotations(
            gpu_pod(name, &[], &[GpuAsk::fraction(1, 1)]),
            &[(DEVICES_ALLOCATED, alloc)],
        );
        p.spec.as_mut().unwrap().node_name = Some(node.into());
        p
    }

    fn spec() -> FleetSpec {
        FleetSpec {
            nodes: 3,
            gpus_per_node: 2,
            memory_mib: 10000,
            ..Default::default()
        }
    }

    #[test]
    fn usage_idle_gpus_and_cordons_come_from_the_cluster() {
        let mut nodes = fleet(&spec(), now());
        nodes[1]
            .metadata
            .annotations
            .as_mut()
            .unwrap()
            .insert(DEVICE_CORDON.into(), "GPU-hami-sim-worker2-0".into());
        let pods = vec![placed(
            "a",
            "hami-sim-worker",
            "GPU-hami-sim-worker-0,NVIDIA,6000,50:;",
        )];
        let state = ClusterState::from_objects(&nodes, &pods);
        let gpus = state.gpus();
        assert_eq!(gpus.len(), 6);
        assert_eq!(gpus[0].usage.usedmem, 6000);
        assert!(!gpus[0].idle() && gpus[0].has_room(1, 4000, 50));
        assert!(!gpus[0].has_room(1, 4001, 10), "only 4000 MiB are left");
        assert!(gpus[0].has_room(2, 2000, 10) && !gpus[0].has_room(3, 2000, 10));
        assert_eq!(state.gpus_with_room(1, 5000, 10).len(), 4);
        assert!(gpus[2].cordoned && !gpus[2].usable());
        assert_eq!(
            state.largest_idle_gpu().map(|g| g.gpu.info.id),
            Some("GPU-hami-sim-worker-1".to_string())
        );
        let text = state.describe();
        assert!(
            text.contains("6 GPUs (4 idle, 1 in use, 1 cordoned or unhealthy"),
            "{text}"
        );
    }

    #[test]
    fn expected_nodes_follow_the_products_scores_on_observed_usage() {
        let nodes = fleet(&spec(), now());
        // worker is busiest, worker3 is idle.
        let pods = vec![
            placed(
                "a",
                "hami-sim-worker",
                "GPU-hami-sim-worker-0,NVIDIA,6000,50:;",
            ),
            placed(
                "b",
                "hami-sim-worker2",
                "GPU-hami-sim-worker2-0,NVIDIA,1000,10:;",
            ),
        ];
        let state = ClusterState::from_objects(&nodes, &pods);
        let ask = |policy: &str| {
            with_annotations(
                gpu_pod("r", &[], &[GpuAsk::fraction(1000, 10)]),
                &[(NODE_SCHEDULER_POLICY, policy)],
            )
        };
        let (policy, best) = state.best_nodes(&ask("binpack")).unwrap();
        assert_eq!(policy, NodePolicy::Binpack);
        assert_eq!(best, BTreeSet::from(["hami-sim-worker".to_string()]));
        let (_, best) = state.best_nodes(&ask("spread")).unwrap();
        assert_eq!(best, BTreeSet::from(["hami-sim-worker3".to_string()]));
        // Nothing fits a 20000 MiB ask: no expected node, and every node says why.
        let big = gpu_pod("big", &[], &[GpuAsk::fraction(20000, 10)]);
        assert!(state.best_nodes(&big).unwrap().1.is_empty());
        let verdicts = state.verdicts(&big).unwrap();
        assert!(verdicts.values().all(|v| {
            v.as_ref()
                .is_err_and(|r| r.contains(&"CardInsufficientMemory".to_string()))
        }));
    }
}
