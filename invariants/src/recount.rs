//! Device usage recomputed from scratch from the live pods' annotations, by this crate's own code:
//! its own decoder of `hami.io/vgpu-devices-allocated` and its own reading of HAMi's collapse rule
//! (spec §6.2, `CollapseInitContainerUsage`). The agreement invariant compares this with the ledger.
//!
//! Rules (spec §6.2, §6.3):
//! - a pod counts when it has `hami.io/vgpu-node` and a decodable `hami.io/vgpu-devices-allocated`
//!   and is neither Succeeded nor Failed; a terminating pod still counts;
//! - containers are init first: the first `len(spec.initContainers)` entries are init containers;
//! - once every init container has terminated with exit code 0, only regular containers count;
//! - per device: memory and cores are the larger of the init-container peak and the sum over
//!   regular containers; tasks are the larger of 1 (if an init container used it) and the number of
//!   regular-container entries, and at least 1.

use k8s_openapi::api::core::v1::Pod;
use sliceguard_core::annotations::{DEVICES_ALLOCATED, VGPU_NODE};
use std::collections::BTreeMap;

/// One device entry of an annotation: `uuid,backend,mem,cores`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Entry {
    /// Device UUID.
    pub uuid: String,
    /// Backend key (`NVIDIA`).
    pub backend: String,
    /// MiB.
    pub mem: u64,
    /// Cores.
    pub cores: u64,
}

/// Decodes a pod device annotation with HAMi's rules: `;` ends a container (the empty piece after
/// the last `;` is the terminator), `:` ends a device, only pieces containing `,` are devices, at
/// least four fields, extra fields ignored, memory and cores plain decimal numbers up to `i32::MAX`.
/// `None` when any entry is malformed (HAMi fails the whole value).
pub fn decode(value: &str) -> Option<Vec<Vec<Entry>>> {
    if value.is_empty() {
        return Some(Vec::new());
    }
    let mut pieces: Vec<&str> = value.split(';').collect();
    if pieces.len() > 1 && pieces.last() == Some(&"") {
        pieces.pop();
    }
    let mut containers = Vec::new();
    for piece in pieces {
        let mut devices = Vec::new();
        for part in piece.split(':') {
            if !part.contains(',') {
                continue;
            }
            let fields: Vec<&str> = part.split(',').collect();
            if fields.len() < 4 {
                return None;
            }
            devices.push(Entry {
                uuid: fields[0].to_string(),
                backend: fields[1].to_string(),
                mem: plain_number(fields[2])?,
                cores: plain_number(fields[3])?,
            });
        }
        containers.push(devices);
    }
    Some(containers)
}

fn plain_number(text: &str) -> Option<u64> {
    if text.is_empty() || text.len() > 12 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u64 = text.parse().ok()?;
    (n <= i32::MAX as u64).then_some(n)
}

/// Encodes containers in the annotation format (this crate's own encoder, for existing pods).
pub fn encode(containers: &[Vec<Entry>]) -> String {
    let mut out = String::new();
    for container in containers {
        for e in container {
            out.push_str(&format!("{},{},{},{}:", e.uuid, e.backend, e.mem, e.cores));
        }
        out.push(';');
    }
    out
}

/// What one pod holds on one device, with what the exclusivity rule needs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Holding {
    /// `namespace/name`.
    pub pod: String,
    /// Tasks after collapse.
    pub tasks: u64,
    /// MiB after collapse.
    pub mem: u64,
    /// Cores after collapse.
    pub cores: u64,
    /// Regular-container entries on this device.
    pub app_entries: u64,
    /// A counted entry with 100 or more cores (init or regular).
    pub exclusive_entry: bool,
    /// A regular-container entry with 100 or more cores.
    pub exclusive_app_entry: bool,
}

/// Usage of one device: the sums and who holds it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeviceLoad {
    /// Σ tasks.
    pub tasks: u64,
    /// Σ MiB.
    pub mem: u64,
    /// Σ cores.
    pub cores: u64,
    /// Every pod holding the device.
    pub holders: Vec<Holding>,
}

impl DeviceLoad {
    /// Takes `pod`'s holding out of the load (and its share out of the sums), if it holds the device.
    pub fn remove_holder(&mut self, pod: &str) -> Option<Holding> {
        let at = self.holders.iter().position(|h| h.pod == pod)?;
        let holding = self.holders.remove(at);
        self.tasks -= holding.tasks;
        self.mem -= holding.mem;
        self.cores -= holding.cores;
        Some(holding)
    }

    /// `pod (mem MiB, cores c, tasks t)` per holder, for messages.
    pub fn describe_holders(&self) -> String {
        self.holders
            .iter()
            .map(|h| {
                format!(
                    "{} ({} MiB, {} cores, {} task{})",
                    h.pod,
                    h.mem,
                    h.cores,
                    h.tasks,
                    if h.tasks == 1 { "" } else { "s" }
                )
            })
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Tasks, MiB and cores on one device.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Sums {
    /// Tasks.
    pub tasks: u64,
    /// MiB.
    pub mem: u64,
    /// Cores.
    pub cores: u64,
}

/// One counted pod: its node and its collapsed usage per device UUID.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CountedPod {
    /// `hami.io/vgpu-node`.
    pub node: String,
    /// Usage per device UUID.
    pub devices: BTreeMap<String, Sums>,
}

/// The recomputed usage of a set of pods.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Recount {
    /// Load per (node, device UUID).
    pub devices: BTreeMap<(String, String), DeviceLoad>,
    /// Every counted pod by `namespace/name`.
    pub pods: BTreeMap<String, CountedPod>,
    /// Pods with a node annotation whose allocation does not decode, in key order.
    pub undecodable: Vec<String>,
}

impl Recount {
    /// The load of one device (empty when nobody holds it).
    pub fn load(&self, node: &str, uuid: &str) -> DeviceLoad {
        self.devices
            .get(&(node.to_string(), uuid.to_string()))
            .cloned()
            .unwrap_or_default()
    }
}

/// `namespace/name` of a pod, as the ledger keys it.
pub fn key(pod: &Pod) -> String {
    format!(
        "{}/{}",
        pod.metadata.namespace.as_deref().unwrap_or("default"),
        pod.metadata.name.as_deref().unwrap_or("")
    )
}

fn init_containers_succeeded(pod: &Pod, init_count: usize) -> bool {
    let statuses = pod
        .status
        .as_ref()
        .and_then(|s| s.init_container_statuses.as_deref())
        .unwrap_or(&[]);
    init_count > 0
        && statuses.len() == init_count
        && statuses.iter().all(|s| {
            matches!(
                s.state.as_ref().and_then(|st| st.terminated.as_ref()),
                Some(t) if t.exit_code == 0
            )
        })
}

/// What one pod contributes to a [`Recount`]: the per-pod half of the recount, shared by the
/// from-scratch [`recount`] and by a recount kept up to date pod by pod ([`Recount::update`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PodCount {
    /// The pod holds nothing: no node or allocation annotation, or it finished.
    Nothing,
    /// The pod names a node but its allocation does not decode (its `namespace/name`).
    Undecodable(String),
    /// The pod holds devices.
    Counted {
        /// `namespace/name`.
        key: String,
        /// Its node and collapsed usage per device.
        pod: CountedPod,
        /// What it holds on each device (UUID, holding), in UUID order.
        holdings: Vec<(String, Holding)>,
    },
}

/// Counts one pod by the rules in the module's documentation.
pub fn count_pod(pod: &Pod) -> PodCount {
    let Some(annotations) = pod.metadata.annotations.as_ref() else {
        return PodCount::Nothing;
    };
    let (Some(node), Some(value)) = (
        annotations.get(VGPU_NODE),
        annotations.get(DEVICES_ALLOCATED),
    ) else {
        return PodCount::Nothing;
    };
    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
    if matches!(phase, Some("Succeeded" | "Failed")) {
        return PodCount::Nothing;
    }
    let pod_key = key(pod);
    let Some(containers) = decode(value) else {
        return PodCount::Undecodable(pod_key);
    };
    let init_count = pod
        .spec
        .as_ref()
        .and_then(|s| s.init_containers.as_ref())
        .map_or(0, Vec::len);
    let drop_init = init_containers_succeeded(pod, init_count);

    #[derive(Default)]
    struct Acc {
        init_peak_mem: u64,
        init_peak_cores: u64,
        init_used: bool,
        app_mem: u64,
        app_cores: u64,
        app_entries: u64,
        exclusive_entry: bool,
        exclusive_app_entry: bool,
    }
    let mut per_device: BTreeMap<String, Acc> = BTreeMap::new();
    for (position, container) in containers.iter().enumerate() {
        let is_init = position < init_count;
        if is_init && drop_init {
            continue;
        }
        for e in container {
            let acc = per_device.entry(e.uuid.clone()).or_default();
            if is_init {
                acc.init_peak_mem = acc.init_peak_mem.max(e.mem);
                acc.init_peak_cores = acc.init_peak_cores.max(e.cores);
                acc.init_used = true;
            } else {
                acc.app_mem += e.mem;
                acc.app_cores += e.cores;
                acc.app_entries += 1;
                acc.exclusive_app_entry |= e.cores >= 100;
            }
            acc.exclusive_entry |= e.cores >= 100;
        }
    }
    if per_device.is_empty() {
        return PodCount::Nothing;
    }
    let mut collapsed = BTreeMap::new();
    let mut holdings = Vec::with_capacity(per_device.len());
    for (uuid, acc) in per_device {
        let tasks = u64::from(acc.init_used).max(acc.app_entries).max(1);
        let mem = acc.init_peak_mem.max(acc.app_mem);
        let cores = acc.init_peak_cores.max(acc.app_cores);
        collapsed.insert(uuid.clone(), Sums { tasks, mem, cores });
        holdings.push((
            uuid,
            Holding {
                pod: pod_key.clone(),
                tasks,
                mem,
                cores,
                app_entries: acc.app_entries,
                exclusive_entry: acc.exclusive_entry,
                exclusive_app_entry: acc.exclusive_app_entry,
            },
        ));
    }
    PodCount::Counted {
        key: pod_key,
        pod: CountedPod {
            node: node.clone(),
            devices: collapsed,
        },
        holdings,
    }
}

impl Recount {
    /// Adds one pod's count (a pod already counted under the same key must be
    /// [removed](Recount::remove) first). Holders stay in pod-key order, whatever the order pods
    /// are added in, so two recounts of the same pods are equal.
    pub fn add(&mut self, count: PodCount) {
        match count {
            PodCount::Nothing => {}
            PodCount::Undecodable(key) => {
                if let Err(at) = self.undecodable.binary_search(&key) {
                    self.undecodable.insert(at, key);
                }
            }
            PodCount::Counted { key, pod, holdings } => {
                for (uuid, holding) in holdings {
                    let load = self.devices.entry((pod.node.clone(), uuid)).or_default();
                    load.tasks += holding.tasks;
                    load.mem += holding.mem;
                    load.cores += holding.cores;
                    let at = load.holders.partition_point(|h| h.pod < holding.pod);
                    load.holders.insert(at, holding);
                }
                self.pods.insert(key, pod);
            }
        }
    }

    /// Takes out everything the pod `key` contributed; returns the devices whose load changed.
    pub fn remove(&mut self, key: &str) -> Vec<(String, String)> {
        if let Ok(at) = self.undecodable.binary_search_by(|k| k.as_str().cmp(key)) {
            self.undecodable.remove(at);
        }
        let Some(counted) = self.pods.remove(key) else {
            return Vec::new();
        };
        let mut touched = Vec::with_capacity(counted.devices.len());
        for uuid in counted.devices.into_keys() {
            let device = (counted.node.clone(), uuid);
            if let Some(load) = self.devices.get_mut(&device) {
                load.remove_holder(key);
                if load.holders.is_empty() {
                    self.devices.remove(&device);
                }
            }
            touched.push(device);
        }
        touched
    }

    /// Brings the pod `key` up to date: `pod` as it is now, or `None` once it is gone. Returns
    /// every device whose load may have changed (what it held before and what it holds now).
    pub fn update(&mut self, key: &str, pod: Option<&Pod>) -> Vec<(String, String)> {
        let mut touched = self.remove(key);
        if let Some(pod) = pod {
            let count = count_pod(pod);
            if let PodCount::Counted {
                pod: counted,
                holdings,
                ..
            } = &count
            {
                touched.extend(
                    holdings
                        .iter()
                        .map(|(uuid, _)| (counted.node.clone(), uuid.clone())),
                );
            }
            self.add(count);
        }
        touched
    }
}

/// Recomputes usage from the pods, from scratch.
pub fn recount<'a>(pods: impl IntoIterator<Item = &'a Pod>) -> Recount {
    let mut out = Recount::default();
    for pod in pods {
        out.add(count_pod(pod));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{
        Container, ContainerState, ContainerStateTerminated, ContainerStatus, PodSpec, PodStatus,
    };
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn entry(uuid: &str, mem: u64, cores: u64) -> Entry {
        Entry {
            uuid: uuid.into(),
            backend: "NVIDIA".into(),
            mem,
            cores,
        }
    }

    #[test]
    fn decoder_follows_the_spec_examples() {
        assert_eq!(
            decode("GPU-a,NVIDIA,4096,0:;"),
            Some(vec![vec![entry("GPU-a", 4096, 0)]])
        );
        assert_eq!(
            decode(";GPU-b,NVIDIA,6144,30:;"),
            Some(vec![vec![], vec![entry("GPU-b", 6144, 30)]])
        );
        assert_eq!(decode(";;"), Some(vec![vec![], vec![]]));
        assert_eq!(decode(""), Some(vec![]));
        assert_eq!(decode("a,N,1:;"), None);
        assert_eq!(decode("a,N,-1,2:;"), None);
        assert_eq!(decode("a,N,99999999999,2:;"), None);
        let containers = vec![vec![entry("x", 1, 2), entry("y", 3, 4)], vec![]];
        assert_eq!(decode(&encode(&containers)), Some(containers));
    }

    fn pod(name: &str, init: usize, value: &str) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("default".into()),
                annotations: Some(BTreeMap::from([
                    (VGPU_NODE.to_string(), "n0".to_string()),
                    (DEVICES_ALLOCATED.to_string(), value.to_string()),
                ])),
                ..Default::default()
            },
            spec: Some(PodSpec {
                init_containers: (init > 0).then(|| vec![Container::default(); init]),
                containers: vec![Container::default()],
                ..Default::default()
            }),
            status: None,
        }
    }

    #[test]
    fn collapse_takes_init_peak_or_app_sum() {
        let p = pod(
            "p",
            1,
            "a,NVIDIA,5000,20:;a,NVIDIA,4000,20:b,NVIDIA,100,100:;",
        );
        let r = recount([&p]);
        let a = r.load("n0", "a");
        assert_eq!((a.tasks, a.mem, a.cores), (1, 5000, 20));
        let b = r.load("n0", "b");
        assert_eq!((b.tasks, b.mem, b.cores), (1, 100, 100));
        assert!(b.holders[0].exclusive_app_entry);

        let mut done = p.clone();
        done.status = Some(PodStatus {
            init_container_statuses: Some(vec![ContainerStatus {
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
        assert_eq!(recount([&done]).load("n0", "a").mem, 4000);
        done.status.as_mut().unwrap().phase = Some("Failed".into());
        assert!(recount([&done]).devices.is_empty());
        let bad = pod("q", 0, "a,NVIDIA,x,1:;");
        assert_eq!(recount([&bad]).undecodable, ["default/q"]);
    }
}
