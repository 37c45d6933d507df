//! What a scenario sees of the cluster, and the waiting it does: the GPU inventory read from the
//! nodes' register annotations, a pod's decoded allocation, the scheduler's events about a pod
//! (HAMi's `FilteringSucceed`/`FilteringFailed` messages parsed), and polling with a deadline.
//!
//! Message formats are HAMi's (`../shared/spec/hami-control-plane.md` §4.7):
//! `find fit node(<node>), <n> nodes not fit, <m> nodes fit(<node>:<score>,...)` and
//! `<n> nodes <Reason>(<node>,<node>)`.

use k8s_openapi::api::core::v1::{Event, Node, Pod};
use sliceguard::annotations::{DEVICES_ALLOCATED, NODE_LOCK, NODE_REGISTER};
use sliceguard::codec::{pod_devices, register};
use sliceguard::model::{ContainerDevice, DeviceInfo};
use std::collections::BTreeMap;

/// One GPU of the inventory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gpu {
    /// The node it is on.
    pub node: String,
    /// Its registration.
    pub info: DeviceInfo,
}

/// Every registered GPU node and its devices, in node name order.
#[derive(Debug, Clone, Default)]
pub struct Inventory {
    /// Node name → devices in registration order.
    pub nodes: BTreeMap<String, Vec<DeviceInfo>>,
    /// Nodes whose register annotation does not decode, with the error.
    pub undecodable: Vec<(String, String)>,
}

impl Inventory {
    /// Reads the inventory from nodes (schedulable ones only: a cordoned node gets no pods).
    pub fn from_nodes(nodes: &[Node]) -> Inventory {
        let mut inventory = Inventory::default();
        for node in nodes {
            let name = node.metadata.name.clone().unwrap_or_default();
            if node
                .spec
                .as_ref()
                .and_then(|s| s.unschedulable)
                .unwrap_or(false)
            {
                continue;
            }
            let Some(value) = node
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(NODE_REGISTER))
            else {
                continue;
            };
            match register::parse(value) {
                Ok(devices) if !devices.is_empty() => {
                    inventory.nodes.insert(name, devices);
                }
                Ok(_) => {}
                Err(e) => inventory.undecodable.push((name, e.to_string())),
            }
        }
        inventory
    }

    /// Every GPU, node by node.
    pub fn gpus(&self) -> Vec<Gpu> {
        self.nodes
            .iter()
            .flat_map(|(node, devices)| {
                devices.iter().map(move |d| Gpu {
                    node: node.clone(),
                    info: d.clone(),
                })
            })
            .collect()
    }

    /// The GPU with this UUID.
    pub fn gpu(&self, uuid: &str) -> Option<Gpu> {
        self.gpus().into_iter().find(|g| g.info.id == uuid)
    }

    /// GPU node names.
    pub fn node_names(&self) -> Vec<String> {
        self.nodes.keys().cloned().collect()
    }

    /// A one-line summary (`3 nodes, 24 GPUs (81920 MiB, split 10)`).
    pub fn summary(&self) -> String {
        let gpus = self.gpus();
        let mut shapes: Vec<String> = gpus
            .iter()
            .map(|g| {
                format!(
                    "{} {} MiB split {}",
                    g.info.device_type, g.info.devmem, g.info.count
                )
            })
            .collect();
        shapes.sort();
        shapes.dedup();
        format!(
            "{} GPU nodes, {} GPUs ({})",
            self.nodes.len(),
            gpus.len(),
            shapes.join("; ")
        )
    }
}

/// Locks held on nodes: node → the raw `hami.io/mutex.lock` value.
pub fn node_locks(nodes: &[Node]) -> BTreeMap<String, String> {
    nodes
        .iter()
        .filter_map(|n| {
            let value = n.metadata.annotations.as_ref()?.get(NODE_LOCK)?;
            Some((n.metadata.name.clone().unwrap_or_default(), value.clone()))
        })
        .collect()
}

/// A pod's decoded `hami.io/vgpu-devices-allocated`: `None` when absent, `Err` when it does not decode.
pub fn allocation(pod: &Pod) -> Option<Result<Vec<Vec<ContainerDevice>>, String>> {
    let value = pod.metadata.annotations.as_ref()?.get(DEVICES_ALLOCATED)?;
    Some(
        pod_devices::parse(value)
            .map(|d| d.0)
            .map_err(|e| format!("{DEVICES_ALLOCATED} {value:?} does not decode: {e}")),
    )
}

/// The devices of an allocation, flattened.
pub fn allocated_devices(pod: &Pod) -> Vec<ContainerDevice> {
    match allocation(pod) {
        Some(Ok(containers)) => containers.into_iter().flatten().collect(),
        _ => Vec::new(),
    }
}

/// A short text of a pod's devices: `GPU-a 3000MiB/30%; GPU-b ...` (or why there are none).
pub fn devices_text(pod: &Pod) -> String {
    match allocation(pod) {
        None => "-".into(),
        Some(Err(e)) => e,
        Some(Ok(containers)) => {
            let parts: Vec<String> = containers
                .iter()
                .flatten()
                .map(|d| format!("{} {}MiB/{}%", d.uuid, d.usedmem, d.usedcores))
                .collect();
            if parts.is_empty() {
                "-".into()
            } else {
                parts.join("; ")
            }
        }
    }
}

/// The pod's phase (`Pending` when unset).
pub fn phase(pod: &Pod) -> String {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.clone())
        .unwrap_or_else(|| "Pending".into())
}

/// The node the pod is bound to.
pub fn node_name(pod: &Pod) -> Option<String> {
    pod.spec.as_ref().and_then(|s| s.node_name.clone())
}

/// The events about one pod, oldest first (by creation order of the list).
pub fn events_about<'a>(events: &'a [Event], pod: &str) -> Vec<&'a Event> {
    events
        .iter()
        .filter(|e| e.involved_object.name.as_deref() == Some(pod))
        .collect()
}

/// `Reason: message` lines of events, deduplicated, in order.
pub fn event_lines(events: &[&Event]) -> Vec<String> {
    let mut lines: Vec<String> = Vec::new();
    for e in events {
        let line = format!(
            "{}: {}",
            e.reason.as_deref().unwrap_or("?"),
            e.message.as_deref().unwrap_or("")
        );
        if !lines.contains(&line) {
            lines.push(line);
        }
    }
    lines
}

/// The messages of events with `reason`.
pub fn messages<'a>(events: &[&'a Event], reason: &str) -> Vec<&'a str> {
    events
        .iter()
        .filter(|e| e.reason.as_deref() == Some(reason))
        .filter_map(|e| e.message.as_deref())
        .collect()
}

/// A parsed `FilteringSucceed` message.
#[derive(Debug, Clone, PartialEq)]
pub struct FitMessage {
    /// The chosen node.
    pub node: String,
    /// Every fitting node with its score.
    pub scores: Vec<(String, f64)>,
}

impl FitMessage {
    /// The chosen node's score.
    pub fn score(&self) -> Option<f64> {
        self.scores
            .iter()
            .find(|(n, _)| *n == self.node)
            .map(|(_, s)| *s)
    }
}

/// Parses `find fit node(<node>), <n> nodes not fit, <m> nodes fit(<node>:<score>,...)`.
pub fn parse_fit(message: &str) -> Option<FitMessage> {
    let rest = message.strip_prefix("find fit node(")?;
    let close = rest.find(')')?;
    let node = rest[..close].to_string();
    let list_start = rest.find("nodes fit(")? + "nodes fit(".len();
    let list = rest[list_start..].strip_suffix(')')?;
    let mut scores = Vec::new();
    for item in list.split(',').filter(|s| !s.is_empty()) {
        let (n, s) = item.rsplit_once(':')?;
        scores.push((n.to_string(), s.parse().ok()?));
    }
    Some(FitMessage { node, scores })
}

/// Parses `<n> nodes <Reason>(<node>,<node>)` into the reason and its nodes.
pub fn parse_failed(message: &str) -> Option<(String, Vec<String>)> {
    let (count, rest) = message.split_once(" nodes ")?;
    count.parse::<usize>().ok()?;
    let open = rest.find('(')?;
    let reason = rest[..open].to_string();
    let nodes = rest[open + 1..].strip_suffix(')')?;
    Some((
        reason,
        nodes
            .split(',')
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect(),
    ))
}

/// For a pod's `FilteringFailed` events: reason → the nodes that gave it (union over events).
pub fn failed_reasons(events: &[&Event]) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for message in messages(events, "FilteringFailed") {
        if let Some((reason, nodes)) = parse_failed(message) {
            let entry = out.entry(reason).or_default();
            for n in nodes {
                if !entry.contains(&n) {
                    entry.push(n);
                }
            }
        }
    }
    for nodes in out.values_mut() {
        nodes.sort();
    }
    out
}

/// The reason HAMi's `Fit` gives for one device (`NvidiaGPUDevices.Fit`, checks 6, 11, 12 and 13
/// in spec order) when it already serves `used` containers with `used_mem` MiB and `used_cores`,
/// and a container asks for `mem` MiB and `cores`. `None` when the device fits.
pub fn fit_reason(
    device: &DeviceInfo,
    used: u32,
    used_mem: u32,
    used_cores: u32,
    mem: u32,
    cores: u32,
) -> Option<&'static str> {
    let cores = cores.min(100);
    if device.count <= used {
        Some("CardTimeSlicingExhausted")
    } else if device.devmem.saturating_sub(used_mem) < mem {
        Some("CardInsufficientMemory")
    } else if device.devcore.saturating_sub(used_cores) < cores {
        Some("CardInsufficientCore")
    } else if device.devcore == 100 && cores == 100 && used > 0 {
        Some("ExclusiveDeviceAllocateConflict")
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fit_messages() {
        let m =
            parse_fit("find fit node(node2), 0 nodes not fit, 2 nodes fit(node1:3.00,node2:8.00)")
                .unwrap();
        assert_eq!(m.node, "node2");
        assert_eq!(m.score(), Some(8.0));
        assert_eq!(m.scores.len(), 2);
        assert!(parse_fit("Successfully filtered to following nodes: [n] for ns/pod").is_none());
        assert!(parse_fit("find fit node(a), 0 nodes not fit, 1 nodes fit(a:x)").is_none());
    }

    #[test]
    fn failed_messages() {
        assert_eq!(
            parse_failed("3 nodes CardInsufficientMemory(n1,n2,n3)"),
            Some((
                "CardInsufficientMemory".to_string(),
                vec!["n1".to_string(), "n2".to_string(), "n3".to_string()]
            ))
        );
        assert!(parse_failed("no available node, 3 nodes do not meet").is_none());
        assert!(parse_failed("x nodes A(b)").is_none());
    }

    #[test]
    fn fit_reasons_follow_hamis_order() {
        let d = DeviceInfo {
            id: "GPU-0".into(),
            index: 0,
            count: 10,
            devmem: 81920,
            devcore: 100,
            device_type: "NVIDIA-H100".into(),
            numa: 0,
            mode: "hami-core".into(),
            health: true,
        };
        assert_eq!(
            fit_reason(&d, 10, 80000, 100, 8000, 10),
            Some("CardTimeSlicingExhausted")
        );
        assert_eq!(
            fit_reason(&d, 5, 80000, 50, 8000, 10),
            Some("CardInsufficientMemory")
        );
        assert_eq!(
            fit_reason(&d, 5, 40000, 100, 8000, 10),
            Some("CardInsufficientCore")
        );
        assert_eq!(
            fit_reason(&d, 1, 81920, 100, 1000, 10),
            Some("CardInsufficientMemory")
        );
        assert_eq!(fit_reason(&d, 0, 0, 0, 8000, 10), None);
    }
}
