//! The usage ledger: what every device has in use, maintained incrementally from pod allocations.
//!
//! HAMi rebuilds every node's usage from every cached pod on each filter call (spec §6.2). The ledger
//! instead keeps per-device sums and each pod's contribution, so a pod event costs O(devices of that
//! pod) and a decision reads O(devices of the offered nodes), whatever the number of pods.
//!
//! A pod counts while it has `hami.io/vgpu-node` and a decodable `hami.io/vgpu-devices-allocated`,
//! requests a GPU ([`crate::request::requests_gpu`]: allocation annotations on a pod that asks for
//! none are forged, not sliceguard's, and hold nothing), is not Succeeded or Failed, and exists (terminating pods keep their devices until deleted). Once
//! all its init containers have exited 0, only its regular containers count (HAMi's
//! `AppContainersOnlyDeviceUsage`). Usage is attributed to the node named by `hami.io/vgpu-node`.

use crate::annotations::{DEVICES_ALLOCATED, VGPU_NODE};
use crate::codec::pod_devices::{self, PodDevicesError};
use crate::model::{DeviceUsage, PodAllocation};
use k8s_openapi::api::core::v1::Pod;
use std::collections::HashMap;

/// Read access to per-device usage; the decision depends on nothing else about pods.
pub trait UsageSource {
    /// What is in use on device `uuid` of node `node`.
    fn device_usage(&self, node: &str, uuid: &str) -> DeviceUsage;
}

/// One pod's recorded contribution.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerEntry {
    /// Node the usage is on.
    pub node: String,
    /// Collapsed usage per device.
    pub usage: Vec<(String, DeviceUsage)>,
}

/// Per-device usage sums plus each pod's contribution.
#[derive(Debug, Clone, Default)]
pub struct Ledger {
    nodes: HashMap<String, HashMap<String, DeviceUsage>>,
    pods: HashMap<String, LedgerEntry>,
}

/// What observing a pod did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Observed {
    /// The pod now counts on this node.
    Counted,
    /// The pod does not count (no allocation, terminal, or gone).
    NotCounted,
}

/// A pod whose allocation annotation cannot be decoded (it is left out of the ledger).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("pod {pod}: {DEVICES_ALLOCATED} does not decode: {source}")]
pub struct UndecodableAllocation {
    /// `namespace/name`.
    pub pod: String,
    /// The codec error.
    pub source: PodDevicesError,
}

/// The ledger key of a pod: `namespace/name`.
pub fn pod_key(pod: &Pod) -> String {
    format!(
        "{}/{}",
        pod.metadata.namespace.as_deref().unwrap_or("default"),
        pod.metadata.name.as_deref().unwrap_or("")
    )
}

/// The node and allocation a pod holds, if it holds any (see the module rules).
pub fn pod_holding(pod: &Pod) -> Result<Option<(String, PodAllocation)>, UndecodableAllocation> {
    let Some(annotations) = pod.metadata.annotations.as_ref() else {
        return Ok(None);
    };
    let Some(node) = annotations.get(VGPU_NODE) else {
        return Ok(None);
    };
    let status = pod.status.as_ref();
    if matches!(
        status.and_then(|s| s.phase.as_deref()),
        Some("Succeeded" | "Failed")
    ) {
        return Ok(None);
    }
    let Some(value) = annotations.get(DEVICES_ALLOCATED) else {
        return Ok(None);
    };
    if !crate::request::requests_gpu(pod) {
        return Ok(None);
    }
    let devices = pod_devices::parse(value).map_err(|source| UndecodableAllocation {
        pod: pod_key(pod),
        source,
    })?;
    let spec_init = pod
        .spec
        .as_ref()
        .and_then(|s| s.init_containers.as_ref())
        .map_or(0, Vec::len);
    let mut allocation = PodAllocation::from_pod_devices(devices, spec_init);
    if spec_init > 0 && init_containers_done(pod, spec_init) {
        allocation.init.iter_mut().for_each(Vec::clear);
    }
    Ok(Some((node.clone(), allocation)))
}

/// True when every init container has terminated with exit code 0.
fn init_containers_done(pod: &Pod, init_count: usize) -> bool {
    let Some(statuses) = pod
        .status
        .as_ref()
        .and_then(|s| s.init_container_statuses.as_ref())
    else {
        return false;
    };
    statuses.len() == init_count
        && statuses.iter().all(|s| {
            s.state
                .as_ref()
                .and_then(|st| st.terminated.as_ref())
                .is_some_and(|t| t.exit_code == 0)
        })
}

impl Ledger {
    /// An empty ledger.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records (or replaces) a pod's allocation on `node`.
    pub fn upsert(&mut self, key: &str, node: &str, allocation: &PodAllocation) {
        self.remove(key);
        let usage = allocation.collapsed_usage();
        if usage.is_empty() {
            return;
        }
        let per_device = self.nodes.entry(node.to_string()).or_default();
        for (uuid, u) in &usage {
            per_device.entry(uuid.clone()).or_default().add(*u);
        }
        self.pods.insert(
            key.to_string(),
            LedgerEntry {
                node: node.to_string(),
                usage,
            },
        );
    }

    /// Forgets a pod; returns whether it was counted.
    pub fn remove(&mut self, key: &str) -> bool {
        let Some(entry) = self.pods.remove(key) else {
            return false;
        };
        if let Some(per_device) = self.nodes.get_mut(&entry.node) {
            for (uuid, u) in &entry.usage {
                if let Some(slot) = per_device.get_mut(uuid) {
                    slot.remove(*u);
                    if slot.is_idle() {
                        per_device.remove(uuid);
                    }
                }
            }
            if per_device.is_empty() {
                self.nodes.remove(&entry.node);
            }
        }
        true
    }

    /// Puts back a contribution taken with [`Ledger::entry`] (or removes the pod's, for `None`): a
    /// filter whose write failed restores what the ledger had before it.
    pub fn restore(&mut self, key: &str, previous: Option<LedgerEntry>) {
        self.remove(key);
        if let Some(entry) = previous {
            let per_device = self.nodes.entry(entry.node.clone()).or_default();
            for (uuid, u) in &entry.usage {
                per_device.entry(uuid.clone()).or_default().add(*u);
            }
            self.pods.insert(key.to_string(), entry);
        }
    }

    /// Applies a pod added or updated in the cluster. An undecodable allocation leaves the pod
    /// uncounted and is returned as an error for the caller to report.
    pub fn observe(&mut self, pod: &Pod) -> Result<Observed, UndecodableAllocation> {
        let key = pod_key(pod);
        let terminating = pod.metadata.deletion_timestamp.is_some();
        match pod_holding(pod) {
            Ok(Some((node, allocation))) => {
                if terminating && self.pods.contains_key(&key) {
                    return Ok(Observed::Counted);
                }
                self.upsert(&key, &node, &allocation);
                Ok(if self.pods.contains_key(&key) {
                    Observed::Counted
                } else {
                    Observed::NotCounted
                })
            }
            Ok(None) => {
                self.remove(&key);
                Ok(Observed::NotCounted)
            }
            Err(e) => {
                self.remove(&key);
                Err(e)
            }
        }
    }

    /// Applies a pod deleted from the cluster.
    pub fn forget(&mut self, pod: &Pod) -> bool {
        self.remove(&pod_key(pod))
    }

    /// A pod's recorded contribution.
    pub fn entry(&self, key: &str) -> Option<&LedgerEntry> {
        self.pods.get(key)
    }

    /// Every counted pod and its contribution (unordered).
    pub fn entries(&self) -> impl Iterator<Item = (&String, &LedgerEntry)> {
        self.pods.iter()
    }

    /// Number of counted pods.
    pub fn pod_count(&self) -> usize {
        self.pods.len()
    }

    /// Every device with usage on `node` (unordered).
    pub fn node_devices(&self, node: &str) -> impl Iterator<Item = (&String, &DeviceUsage)> {
        self.nodes.get(node).into_iter().flat_map(|m| m.iter())
    }
}

impl UsageSource for Ledger {
    fn device_usage(&self, node: &str, uuid: &str) -> DeviceUsage {
        self.nodes
            .get(node)
            .and_then(|m| m.get(uuid))
            .copied()
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{
        Container, ContainerState, ContainerStateTerminated, ContainerStatus, PodSpec, PodStatus,
    };
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};

    fn pod(name: &str, annos: &[(&str, &str)], init: usize) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("ns".into()),
                annotations: Some(
                    annos
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect(),
                ),
                ..Default::default()
            },
            spec: Some(PodSpec {
                init_containers: (init > 0).then(|| {
                    (0..init)
                        .map(|i| Container {
                            name: format!("i{i}"),
                            ..Default::default()
                        })
                        .collect()
                }),
                containers: vec![Container {
                    name: "c".into(),
                    resources: Some(k8s_openapi::api::core::v1::ResourceRequirements {
                        limits: Some(
                            [(
                                crate::annotations::RESOURCE_GPU.to_string(),
                                k8s_openapi::apimachinery::pkg::api::resource::Quantity("1".into()),
                            )]
                            .into(),
                        ),
                        ..Default::default()
                    }),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            status: None,
        }
    }

    #[test]
    fn a_pod_that_requests_no_gpu_holds_nothing() {
        let annotations = [
            (VGPU_NODE, "n1"),
            (DEVICES_ALLOCATED, "GPU-0,NVIDIA,81920,100:;"),
        ];
        let mut forged = pod("forged", &annotations, 0);
        let mut l = Ledger::new();
        assert_eq!(l.observe(&forged), Ok(Observed::Counted));
        if let Some(spec) = forged.spec.as_mut() {
            spec.containers[0].resources = None;
        }
        assert_eq!(pod_holding(&forged), Ok(None));
        assert_eq!(l.observe(&forged), Ok(Observed::NotCounted));
        assert_eq!(l.device_usage("n1", "GPU-0"), DeviceUsage::default());
    }

    fn usage(used: u64, mem: u64, cores: u64) -> DeviceUsage {
        DeviceUsage {
            used,
            usedmem: mem,
            usedcores: cores,
        }
    }

    #[test]
    fn add_update_delete_keep_sums_exact() {
        let mut l = Ledger::new();
        let a = pod(
            "a",
            &[
                (VGPU_NODE, "n1"),
                (DEVICES_ALLOCATED, "GPU-0,NVIDIA,3000,30:;"),
            ],
            0,
        );
        let b = pod(
            "b",
            &[
                (VGPU_NODE, "n1"),
                (
                    DEVICES_ALLOCATED,
                    "GPU-0,NVIDIA,1000,10:GPU-1,NVIDIA,1000,10:;",
                ),
            ],
            0,
        );
        assert_eq!(l.observe(&a), Ok(Observed::Counted));
        assert_eq!(l.observe(&b), Ok(Observed::Counted));
        assert_eq!(l.device_usage("n1", "GPU-0"), usage(2, 4000, 40));
        assert_eq!(l.device_usage("n1", "GPU-1"), usage(1, 1000, 10));
        // Re-observing is idempotent.
        l.observe(&a).unwrap();
        assert_eq!(l.device_usage("n1", "GPU-0"), usage(2, 4000, 40));
        let on_n1: std::collections::BTreeMap<&str, DeviceUsage> = l
            .node_devices("n1")
            .map(|(id, u)| (id.as_str(), *u))
            .collect();
        assert_eq!(
            on_n1,
            std::collections::BTreeMap::from([
                ("GPU-0", usage(2, 4000, 40)),
                ("GPU-1", usage(1, 1000, 10))
            ])
        );
        assert!(l.forget(&a));
        assert!(!l.forget(&a));
        assert_eq!(l.device_usage("n1", "GPU-0"), usage(1, 1000, 10));
        l.forget(&b);
        assert_eq!(l.device_usage("n1", "GPU-0"), DeviceUsage::default());
        assert_eq!(l.pod_count(), 0);
        assert_eq!(l.node_devices("n1").count(), 0);
    }

    #[test]
    fn terminal_unannotated_and_undecodable_pods_do_not_count() {
        let mut l = Ledger::new();
        let mut done = pod(
            "a",
            &[
                (VGPU_NODE, "n1"),
                (DEVICES_ALLOCATED, "GPU-0,NVIDIA,3000,30:;"),
            ],
            0,
        );
        l.observe(&done).unwrap();
        done.status = Some(PodStatus {
            phase: Some("Succeeded".into()),
            ..Default::default()
        });
        assert_eq!(l.observe(&done), Ok(Observed::NotCounted));
        assert_eq!(l.device_usage("n1", "GPU-0"), DeviceUsage::default());
        assert_eq!(
            l.observe(&pod(
                "b",
                &[(DEVICES_ALLOCATED, "GPU-0,NVIDIA,3000,30:;")],
                0
            )),
            Ok(Observed::NotCounted)
        );
        let bad = pod(
            "c",
            &[
                (VGPU_NODE, "n1"),
                (DEVICES_ALLOCATED, "GPU-0,NVIDIA,x,30:;"),
            ],
            0,
        );
        let err = l.observe(&bad).unwrap_err();
        assert!(err.to_string().contains("ns/c") && err.to_string().contains("\"x\""));
        assert_eq!(l.pod_count(), 0);
    }

    #[test]
    fn restore_puts_back_exactly_what_was_taken() {
        let mut l = Ledger::new();
        let a = pod(
            "a",
            &[
                (VGPU_NODE, "n1"),
                (DEVICES_ALLOCATED, "GPU-0,NVIDIA,3000,30:;"),
            ],
            0,
        );
        l.observe(&a).unwrap();
        let taken = l.entry("ns/a").cloned();
        l.remove("ns/a");
        l.upsert("ns/a", "n1", &PodAllocation::default());
        l.restore("ns/a", taken);
        assert_eq!(l.device_usage("n1", "GPU-0"), usage(1, 3000, 30));
        l.restore("ns/a", None);
        assert_eq!(l.device_usage("n1", "GPU-0"), DeviceUsage::default());
        assert_eq!(l.pod_count(), 0);
    }

    #[test]
    fn terminating_pods_keep_their_usage() {
        let mut l = Ledger::new();
        let mut p = pod(
            "a",
            &[
                (VGPU_NODE, "n1"),
                (DEVICES_ALLOCATED, "GPU-0,NVIDIA,3000,30:;"),
            ],
            0,
        );
        l.observe(&p).unwrap();
        p.metadata.deletion_timestamp = Some(Time("2025-01-01T00:00:00Z".parse().unwrap()));
        assert_eq!(l.observe(&p), Ok(Observed::Counted));
        assert_eq!(l.device_usage("n1", "GPU-0"), usage(1, 3000, 30));
    }

    #[test]
    fn init_usage_shrinks_once_init_containers_succeed() {
        let mut l = Ledger::new();
        let mut p = pod(
            "a",
            &[
                (VGPU_NODE, "n1"),
                (
                    DEVICES_ALLOCATED,
                    "GPU-0,NVIDIA,5000,20:;GPU-0,NVIDIA,4000,20:;",
                ),
            ],
            1,
        );
        l.observe(&p).unwrap();
        assert_eq!(l.device_usage("n1", "GPU-0"), usage(1, 5000, 20));
        p.status = Some(PodStatus {
            init_container_statuses: Some(vec![ContainerStatus {
                name: "i0".into(),
                state: Some(ContainerState {
                    terminated: Some(ContainerStateTerminated {
                        exit_code: 0,
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }]),
            ..Default::default()
        });
        l.observe(&p).unwrap();
        assert_eq!(l.device_usage("n1", "GPU-0"), usage(1, 4000, 20));
    }
}
