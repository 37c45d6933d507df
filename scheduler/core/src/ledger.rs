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
use crate::model::{DeviceInfo, DeviceUsage, PodAllocation};
use k8s_openapi::api::core::v1::Pod;
use std::collections::HashMap;
use std::sync::Arc;

/// Read access to per-device usage; the decision depends on nothing else about pods.
pub trait UsageSource {
    /// What is in use on device `uuid` of node `node`.
    fn device_usage(&self, node: &str, uuid: &str) -> DeviceUsage;

    /// What is in use on each of `devices` of node `node`, appended to `out` in the same order:
    /// one [`Self::device_usage`] per device unless the source can read a node at once.
    fn node_usage(&self, node: &str, devices: &[DeviceInfo], out: &mut Vec<DeviceUsage>) {
        out.extend(devices.iter().map(|d| self.device_usage(node, &d.id)));
    }
}

/// One pod's recorded contribution. Its node name and device ids are the ledger's own copies,
/// shared with the per-device sums (cloning an entry copies no string).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerEntry {
    /// Node the usage is on.
    pub node: Arc<str>,
    /// Collapsed usage per device, in device-id order.
    pub usage: Box<[(Arc<str>, DeviceUsage)]>,
}

/// Per-device usage sums plus each pod's contribution.
///
/// Memory is kept compact (issue 17: bytes per device): each node name and each device id is
/// stored once, as the key of its sums, and every pod that holds it shares that copy; a node's
/// devices are a vector sorted by id (a node has a handful) instead of a map of its own.
#[derive(Debug, Clone, Default)]
pub struct Ledger {
    nodes: HashMap<Arc<str>, Vec<(Arc<str>, DeviceUsage)>>,
    pods: HashMap<Box<str>, LedgerEntry>,
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
        let entry = self.add(node, usage.iter().map(|(uuid, u)| (uuid.as_str(), *u)));
        self.pods.insert(key.into(), entry);
    }

    /// Adds `usage` (one entry per device) to the sums of `node`'s devices; returns the entry that
    /// records it, in the same order, sharing the ledger's copies of the names.
    fn add<'a>(
        &mut self,
        node: &str,
        usage: impl ExactSizeIterator<Item = (&'a str, DeviceUsage)>,
    ) -> LedgerEntry {
        let node = match self.nodes.get_key_value(node) {
            Some((name, _)) => Arc::clone(name),
            None => Arc::from(node),
        };
        let devices = self.nodes.entry(Arc::clone(&node)).or_default();
        let mut recorded = Vec::with_capacity(usage.len());
        for (uuid, u) in usage {
            let at = match devices.binary_search_by(|(id, _)| (**id).cmp(uuid)) {
                Ok(at) => at,
                Err(at) => {
                    devices.insert(at, (Arc::from(uuid), DeviceUsage::default()));
                    at
                }
            };
            let (id, sum) = &mut devices[at];
            sum.add(u);
            recorded.push((Arc::clone(id), u));
        }
        LedgerEntry {
            node,
            usage: recorded.into_boxed_slice(),
        }
    }

    /// Forgets a pod; returns whether it was counted.
    pub fn remove(&mut self, key: &str) -> bool {
        let Some(entry) = self.pods.remove(key) else {
            return false;
        };
        if let Some(devices) = self.nodes.get_mut(&entry.node) {
            for (uuid, u) in &entry.usage {
                if let Ok(at) = devices.binary_search_by(|(id, _)| id.cmp(uuid)) {
                    let sum = &mut devices[at].1;
                    sum.remove(*u);
                    if sum.is_idle() {
                        devices.remove(at);
                    }
                }
            }
            if devices.is_empty() {
                self.nodes.remove(&entry.node);
            }
        }
        true
    }

    /// Puts back a contribution taken with [`Ledger::entry`] (or removes the pod's, for `None`): a
    /// filter whose write failed restores what the ledger had before it.
    pub fn restore(&mut self, key: &str, previous: Option<LedgerEntry>) {
        self.remove(key);
        if let Some(previous) = previous {
            let entry = self.add(
                &previous.node,
                previous.usage.iter().map(|(uuid, u)| (&**uuid, *u)),
            );
            self.pods.insert(key.into(), entry);
        }
    }

    /// Applies a pod added or updated in the cluster. An undecodable allocation leaves the pod
    /// uncounted and is returned as an error for the caller to report.
    pub fn observe(&mut self, pod: &Pod) -> Result<Observed, UndecodableAllocation> {
        let key = pod_key(pod);
        let terminating = pod.metadata.deletion_timestamp.is_some();
        match pod_holding(pod) {
            Ok(Some((node, allocation))) => {
                if terminating && self.pods.contains_key(key.as_str()) {
                    return Ok(Observed::Counted);
                }
                self.upsert(&key, &node, &allocation);
                Ok(if self.pods.contains_key(key.as_str()) {
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
    pub fn entries(&self) -> impl Iterator<Item = (&str, &LedgerEntry)> {
        self.pods.iter().map(|(key, entry)| (&**key, entry))
    }

    /// Number of counted pods.
    pub fn pod_count(&self) -> usize {
        self.pods.len()
    }

    /// Every device with usage on `node`, in device-id order.
    pub fn node_devices(&self, node: &str) -> impl Iterator<Item = (&str, &DeviceUsage)> {
        self.nodes
            .get(node)
            .into_iter()
            .flat_map(|devices| devices.iter().map(|(id, sum)| (&**id, sum)))
    }
}

impl UsageSource for Ledger {
    fn device_usage(&self, node: &str, uuid: &str) -> DeviceUsage {
        self.nodes
            .get(node)
            .and_then(|devices| {
                let at = devices.binary_search_by(|(id, _)| (**id).cmp(uuid)).ok()?;
                Some(devices[at].1)
            })
            .unwrap_or_default()
    }

    /// One lookup of the node, then each device among its (few, id-sorted) sums.
    fn node_usage(&self, node: &str, devices: &[DeviceInfo], out: &mut Vec<DeviceUsage>) {
        let Some(sums) = self.nodes.get(node) else {
            out.extend(devices.iter().map(|_| DeviceUsage::default()));
            return;
        };
        out.extend(devices.iter().map(|d| {
            sums.binary_search_by(|(id, _)| (**id).cmp(d.id.as_str()))
                .map(|at| sums[at].1)
                .unwrap_or_default()
        }));
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
        let on_n1: std::collections::BTreeMap<&str, DeviceUsage> =
            l.node_devices("n1").map(|(id, u)| (id, *u)).collect();
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
    fn entries_share_the_ledgers_names_and_sums_stay_sorted() {
        let mut l = Ledger::new();
        let on = |uuids: &[&str]| PodAllocation {
            init: vec![],
            app: vec![
                uuids
                    .iter()
                    .map(|u| crate::model::ContainerDevice {
                        uuid: u.to_string(),
                        backend: "NVIDIA".into(),
                        usedmem: 1000,
                        usedcores: 10,
                    })
                    .collect(),
            ],
        };
        l.upsert("ns/a", "n1", &on(&["GPU-c", "GPU-a"]));
        l.upsert("ns/b", "n1", &on(&["GPU-b", "GPU-c"]));
        l.upsert("ns/c", "n2", &on(&["GPU-a"]));
        let (a, b) = (l.entry("ns/a").unwrap(), l.entry("ns/b").unwrap());
        assert!(Arc::ptr_eq(&a.node, &b.node));
        assert!(Arc::ptr_eq(&a.usage[1].0, &b.usage[1].0));
        assert_eq!(&*a.usage[1].0, "GPU-c");
        // Same id on another node: its own sums.
        assert!(!Arc::ptr_eq(
            &a.usage[0].0,
            &l.entry("ns/c").unwrap().usage[0].0
        ));
        let ids = |l: &Ledger, node| {
            l.node_devices(node)
                .map(|(id, u)| (id.to_string(), u.used))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            ids(&l, "n1"),
            [
                ("GPU-a".to_string(), 1),
                ("GPU-b".to_string(), 1),
                ("GPU-c".to_string(), 2)
            ]
        );
        assert_eq!(l.device_usage("n1", "GPU-c"), usage(2, 2000, 20));
        assert_eq!(l.device_usage("n1", "GPU-d"), DeviceUsage::default());
        assert_eq!(l.device_usage("n3", "GPU-a"), DeviceUsage::default());
        // A restored entry counts again, on the ledger's own copies.
        let taken = l.entry("ns/a").cloned();
        assert!(l.remove("ns/a"));
        assert_eq!(
            ids(&l, "n1"),
            [("GPU-b".to_string(), 1), ("GPU-c".to_string(), 1)]
        );
        l.restore("ns/a", taken);
        assert_eq!(
            ids(&l, "n1"),
            [
                ("GPU-a".to_string(), 1),
                ("GPU-b".to_string(), 1),
                ("GPU-c".to_string(), 2)
            ]
        );
        let b = l.entry("ns/b").unwrap();
        assert!(Arc::ptr_eq(&l.entry("ns/a").unwrap().node, &b.node));
        // Idle devices and nodes are dropped.
        for key in ["ns/a", "ns/b", "ns/c"] {
            assert!(l.remove(key));
        }
        assert_eq!(l.node_devices("n1").count(), 0);
        assert!(l.nodes.is_empty() && l.pods.is_empty());
    }

    /// A node read at once gives what reading each device gives, in the registered order (which
    /// need not be the ledger's id order), idle for devices or nodes it holds nothing on.
    #[test]
    fn a_node_read_at_once_matches_its_devices_read_one_by_one() {
        let mut l = Ledger::new();
        let allocation = |uuid: &str, mem: u32, cores: u32| PodAllocation {
            init: vec![],
            app: vec![vec![crate::model::ContainerDevice {
                uuid: uuid.into(),
                backend: "NVIDIA".into(),
                usedmem: mem,
                usedcores: cores,
            }]],
        };
        l.upsert("ns/a", "n1", &allocation("GPU-b", 1000, 10));
        l.upsert("ns/b", "n1", &allocation("GPU-d", 3000, 30));
        l.upsert("ns/c", "n1", &allocation("GPU-b", 500, 5));
        l.upsert("ns/d", "n2", &allocation("GPU-a", 700, 7));
        let device = |id: &str| DeviceInfo {
            id: id.into(),
            index: 0,
            count: 10,
            devmem: 16000,
            devcore: 100,
            device_type: "NVIDIA-T4".into(),
            numa: 0,
            mode: "hami-core".into(),
            health: true,
        };
        let devices: Vec<DeviceInfo> = ["GPU-d", "GPU-a", "GPU-b", "GPU-c"]
            .into_iter()
            .map(device)
            .collect();
        for node in ["n1", "n2", "unknown"] {
            let mut at_once = vec![usage(9, 9, 9)];
            l.node_usage(node, &devices, &mut at_once);
            let one_by_one: Vec<DeviceUsage> = std::iter::once(usage(9, 9, 9))
                .chain(devices.iter().map(|d| l.device_usage(node, &d.id)))
                .collect();
            assert_eq!(at_once, one_by_one, "{node}: appended after what was there");
        }
        let mut n1 = Vec::new();
        l.node_usage("n1", &devices, &mut n1);
        assert_eq!(
            n1,
            [
                usage(1, 3000, 30),
                DeviceUsage::default(),
                usage(2, 1500, 15),
                DeviceUsage::default()
            ]
        );
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
