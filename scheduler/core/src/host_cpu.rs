//! Host CPU as kube-scheduler accounts it: a pod's CPU request ([`pod_cpu_request_milli`]), a node's
//! CPU ([`HostResources`], read through a [`HostSource`]), and the [`HostCpuBook`] that keeps every
//! node's allocatable and requested CPU from the node and pod watches, so that the `fragmentation`
//! policy can tell when a node's CPU strands its GPUs (FGD's Q4).
//!
//! **Which pods count on a node** (the book's rule, written once in [`pod_placement`]): a pod that
//! is not terminal (`status.phase` neither `Succeeded` nor `Failed`) counts on `spec.nodeName` when
//! it is bound, else on the node its `hami.io/vgpu-node` annotation names (placed by the filter,
//! not yet bound: kube-scheduler assumes such a pod on its node too). A filter's choice counts from
//! the moment it is made ([`HostCpuBook::assume`]) until the watch shows the pod, so two filters in
//! a row do not both see the same free CPU.
//!
//! Memory: one entry per pod that requests CPU and has a node (a boxed key, a shared node name and a
//! number), one per node; nothing of the pod objects is kept.

use crate::annotations::VGPU_NODE;
use crate::quantity::parse_integer;
use foldhash::fast::FixedState;
use k8s_openapi::api::core::v1::{Container, Node, Pod};
use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::Arc;

/// A node's CPU as kube-scheduler accounts it (allocatable and the requests of its pods).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostResources {
    /// Allocatable CPU (millicores).
    pub cpu_capacity_milli: u64,
    /// CPU requested by the pods on the node (millicores).
    pub cpu_requested_milli: u64,
}

impl HostResources {
    /// CPU not yet requested.
    pub fn cpu_free(&self) -> u64 {
        self.cpu_capacity_milli
            .saturating_sub(self.cpu_requested_milli)
    }
}

/// Where the fragmentation policy reads nodes' CPU (in production: the [`HostCpuBook`] kept from
/// the extender's watches).
pub trait HostSource: Debug {
    /// The node's CPU, if known.
    fn host(&self, node: &str) -> Option<HostResources>;
}

/// A pod's CPU request in millicores as kube-scheduler sums it (`resource.PodRequests`): the
/// regular containers' sum plus the restartable init containers (sidecars, `restartPolicy:
/// Always`), or, if larger, the peak while init containers run (each one-shot init container with
/// the sidecars started before it); plus `spec.overhead`. A container's request is its `requests`
/// (else its `limits`, which the API server copies into an unset request). Quantities that are not
/// decimal numbers with an optional `m` or `k` suffix count as 0.
pub fn pod_cpu_request_milli(pod: &Pod) -> u64 {
    fn milli(container: &Container) -> u64 {
        let Some(resources) = container.resources.as_ref() else {
            return 0;
        };
        let quantity = resources
            .requests
            .as_ref()
            .and_then(|r| r.get("cpu"))
            .or_else(|| resources.limits.as_ref().and_then(|l| l.get("cpu")));
        quantity.map_or(0, |q| cpu_milli(&q.0))
    }
    let Some(spec) = pod.spec.as_ref() else {
        return 0;
    };
    let app: u64 = spec
        .containers
        .iter()
        .map(milli)
        .fold(0, u64::saturating_add);
    let mut sidecars = 0u64;
    let mut init_peak = 0u64;
    for container in spec.init_containers.iter().flatten() {
        let request = milli(container);
        if container.restart_policy.as_deref() == Some("Always") {
            sidecars = sidecars.saturating_add(request);
            init_peak = init_peak.max(sidecars);
        } else {
            init_peak = init_peak.max(sidecars.saturating_add(request));
        }
    }
    let overhead = spec
        .overhead
        .as_ref()
        .and_then(|o| o.get("cpu"))
        .map_or(0, |q| cpu_milli(&q.0));
    app.saturating_add(sidecars)
        .max(init_peak)
        .saturating_add(overhead)
}

/// A CPU quantity in millicores (`500m`, `2`, `1.5`, `2k`), rounded up; 0 when it is none of these.
pub fn cpu_milli(quantity: &str) -> u64 {
    let q = quantity.trim();
    if let Some(m) = q.strip_suffix('m') {
        return parse_integer(m)
            .ok()
            .and_then(|v| u64::try_from(v).ok())
            .unwrap_or(0);
    }
    let (number, scale) = match q.strip_suffix('k') {
        Some(k) => (k, 1_000_000.0),
        None => (q, 1_000.0),
    };
    match number.parse::<f64>() {
        Ok(v) if v.is_finite() && v >= 0.0 => {
            let m = (v * scale).ceil();
            if m >= u64::MAX as f64 {
                u64::MAX
            } else {
                m as u64
            }
        }
        _ => 0,
    }
}

/// A node's allocatable CPU (`status.allocatable.cpu`, millicores), when the node reports it.
pub fn node_allocatable_cpu_milli(node: &Node) -> Option<u64> {
    node.status
        .as_ref()?
        .allocatable
        .as_ref()?
        .get("cpu")
        .map(|q| cpu_milli(&q.0))
}

/// The node a pod's CPU counts on and how much, by the book's rule (module documentation); `None`
/// when it counts nowhere (terminal, not placed, or requesting no CPU).
pub fn pod_placement(pod: &Pod) -> Option<(&str, u64)> {
    let terminal = pod
        .status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .is_some_and(|p| p == "Succeeded" || p == "Failed");
    if terminal {
        return None;
    }
    let node = pod
        .spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .filter(|n| !n.is_empty())
        .or_else(|| {
            pod.metadata
                .annotations
                .as_ref()?
                .get(VGPU_NODE)
                .map(String::as_str)
                .filter(|n| !n.is_empty())
        })?;
    let cpu = pod_cpu_request_milli(pod);
    (cpu > 0).then_some((node, cpu))
}

/// One node's CPU as a [`HostCpuBook`] holds it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NodeCpu {
    /// `status.allocatable.cpu` (millicores), while the node exists and reports it.
    pub allocatable: Option<u64>,
    /// The CPU (millicores) of the pods that count on the node.
    pub requested: u64,
}

/// Where one pod's CPU counts: as the watch shows it, and as a filter chose it (which wins until
/// the watch catches up).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct PodCpu {
    watched: Option<(Arc<str>, u64)>,
    assumed: Option<(Arc<str>, u64)>,
}

impl PodCpu {
    fn counted(&self) -> Option<&(Arc<str>, u64)> {
        self.assumed.as_ref().or(self.watched.as_ref())
    }
}

/// Every node's allocatable CPU and the CPU its pods request, kept incrementally from node and pod
/// events (see the module documentation for the rule).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostCpuBook {
    nodes: HashMap<Arc<str>, NodeCpu, FixedState>,
    pods: HashMap<Box<str>, PodCpu, FixedState>,
}

impl HostCpuBook {
    /// An empty book.
    pub fn new() -> Self {
        Self::default()
    }

    /// The shared copy of a node's name, its entry created when missing.
    fn shared(&mut self, name: &str) -> Arc<str> {
        if let Some((key, _)) = self.nodes.get_key_value(name) {
            return key.clone();
        }
        let key: Arc<str> = Arc::from(name);
        self.nodes.insert(key.clone(), NodeCpu::default());
        key
    }

    /// A node's sums, created when missing.
    fn node_mut(&mut self, name: &str) -> &mut NodeCpu {
        let key = self.shared(name);
        self.nodes.entry(key).or_default()
    }

    /// A node added or changed: its allocatable CPU (`None` when it reports none).
    pub fn set_node(&mut self, name: &str, allocatable: Option<u64>) {
        self.node_mut(name).allocatable = allocatable;
        self.drop_if_empty(name);
    }

    /// A node added or changed, read from the object.
    pub fn apply_node(&mut self, node: &Node) {
        if let Some(name) = node.metadata.name.as_deref() {
            self.set_node(name, node_allocatable_cpu_milli(node));
        }
    }

    /// A node deleted: its allocatable is forgotten; the pods that still count on it stay counted
    /// (their deletions follow), so a node that comes back has the right requests.
    pub fn delete_node(&mut self, name: &str) {
        if let Some(cpu) = self.nodes.get_mut(name) {
            cpu.allocatable = None;
        }
        self.drop_if_empty(name);
    }

    fn drop_if_empty(&mut self, name: &str) {
        if self.nodes.get(name) == Some(&NodeCpu::default()) {
            self.nodes.remove(name);
        }
    }

    /// Changes one pod's entry through `change`, moving its CPU between nodes' sums.
    fn change_pod(&mut self, key: &str, change: impl FnOnce(&mut PodCpu)) {
        let mut entry = self.pods.remove(key).unwrap_or_default();
        let before = entry.counted().cloned();
        change(&mut entry);
        let after = entry.counted().cloned();
        if before != after {
            if let Some((node, cpu)) = &before
                && let Some(sums) = self.nodes.get_mut(&**node)
            {
                sums.requested = sums.requested.saturating_sub(*cpu);
                self.drop_if_empty(node);
            }
            if let Some((node, cpu)) = &after {
                let sums = self.node_mut(node);
                sums.requested = sums.requested.saturating_add(*cpu);
            }
        }
        if entry != PodCpu::default() {
            self.pods.insert(key.into(), entry);
        }
    }

    /// A pod added or changed (by the rule in the module documentation), under `key`.
    pub fn apply_pod(&mut self, key: &str, pod: &Pod) {
        let placement = pod_placement(pod);
        let watched = placement.map(|(node, cpu)| (self.shared(node), cpu));
        self.change_pod(key, |entry| entry.watched = watched);
        // A node entry created for a pod that then counted nowhere is dropped.
        if let Some((node, _)) = placement {
            self.drop_if_empty(node);
        }
    }

    /// A pod deleted: it counts nowhere, and a filter's choice for it is void.
    pub fn delete_pod(&mut self, key: &str) {
        self.change_pod(key, |entry| *entry = PodCpu::default());
    }

    /// A filter chose `node` for the pod (`cpu_milli` its request): it counts there until
    /// [`HostCpuBook::unassume`].
    pub fn assume(&mut self, key: &str, node: &str, cpu_milli: u64) {
        let assumed = (cpu_milli > 0).then(|| (self.shared(node), cpu_milli));
        self.change_pod(key, |entry| entry.assumed = assumed);
        self.drop_if_empty(node);
    }

    /// The filter's choice is confirmed by the watch or void: the pod counts where the watch shows.
    pub fn unassume(&mut self, key: &str) {
        self.change_pod(key, |entry| entry.assumed = None);
    }

    /// Keeps only the pods `keep` says are still there (after a re-list).
    pub fn retain_pods(&mut self, mut keep: impl FnMut(&str) -> bool) {
        let gone: Vec<Box<str>> = self.pods.keys().filter(|k| !keep(k)).cloned().collect();
        for key in gone {
            self.delete_pod(&key);
        }
    }

    /// Pods with an entry (for tests and memory accounting).
    pub fn pod_count(&self) -> usize {
        self.pods.len()
    }

    /// A node's allocatable CPU and the requests counted on it; `None` when the book holds nothing
    /// for the node (no allocatable and no pod counted there).
    pub fn node(&self, name: &str) -> Option<NodeCpu> {
        self.nodes.get(name).copied()
    }

    /// The node pod `key`'s CPU counts on, if any (the filter's choice while it stands).
    pub fn pod_node(&self, key: &str) -> Option<Arc<str>> {
        let (node, _) = self.pods.get(key)?.counted()?;
        Some(node.clone())
    }

    /// The nodes the book holds something for, in no particular order.
    pub fn node_names(&self) -> impl Iterator<Item = &str> {
        self.nodes.keys().map(|name| &**name)
    }

    /// The book as the watches alone show the cluster: every filter's choice not yet seen by the
    /// watch ([`HostCpuBook::assume`]) dropped. What a checker compares with a book built from the
    /// API's objects, since a choice whose write was lost is counted on purpose until it is
    /// settled.
    pub fn without_assumptions(&self) -> HostCpuBook {
        let mut book = self.clone();
        let assumed: Vec<Box<str>> = book
            .pods
            .iter()
            .filter(|(_, entry)| entry.assumed.is_some())
            .map(|(key, _)| key.clone())
            .collect();
        for key in assumed {
            book.unassume(&key);
        }
        book
    }
}

impl HostSource for HostCpuBook {
    fn host(&self, node: &str) -> Option<HostResources> {
        let cpu = self.nodes.get(node)?;
        Some(HostResources {
            cpu_capacity_milli: cpu.allocatable?,
            cpu_requested_milli: cpu.requested,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{NodeStatus, PodSpec, PodStatus, ResourceRequirements};
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
    use std::collections::BTreeMap;

    #[test]
    fn cpu_requests_as_kube_sums_them() {
        let container = |requests: &[(&str, &str)], limits: &[(&str, &str)]| Container {
            resources: Some(ResourceRequirements {
                requests: Some(
                    requests
                        .iter()
                        .map(|(k, v)| (k.to_string(), Quantity(v.to_string())))
                        .collect(),
                ),
                limits: Some(
                    limits
                        .iter()
                        .map(|(k, v)| (k.to_string(), Quantity(v.to_string())))
                        .collect(),
                ),
                ..Default::default()
            }),
            ..Default::default()
        };
        let pod = Pod {
            spec: Some(PodSpec {
                containers: vec![
                    container(&[("cpu", "1500m")], &[]),
                    container(&[], &[("cpu", "2")]),
                ],
                init_containers: Some(vec![container(&[("cpu", "4")], &[])]),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(
            pod_cpu_request_milli(&pod),
            4000,
            "init container peak wins"
        );
        assert_eq!(cpu_milli("0.5"), 500);
        assert_eq!(cpu_milli("0.0001"), 1, "rounded up");
        assert_eq!(cpu_milli("2k"), 2_000_000);
        assert_eq!(cpu_milli("lots"), 0);
        assert_eq!(cpu_milli("-1"), 0);
        for not_a_number in ["inf", "-inf", "NaN", "infk"] {
            assert_eq!(cpu_milli(not_a_number), 0, "{not_a_number}");
        }
        assert_eq!(pod_cpu_request_milli(&Pod::default()), 0);

        // Sidecars (restartable init containers) run beside the app containers and add to them; a
        // one-shot init container runs beside the sidecars started before it; overhead adds.
        let sidecar = |cpu: &str| Container {
            restart_policy: Some("Always".into()),
            ..container(&[("cpu", cpu)], &[])
        };
        let with_sidecars = Pod {
            spec: Some(PodSpec {
                containers: vec![container(&[("cpu", "1")], &[])],
                init_containers: Some(vec![
                    sidecar("500m"),
                    container(&[("cpu", "1200m")], &[]),
                    sidecar("250m"),
                ]),
                overhead: Some(BTreeMap::from([(
                    "cpu".to_string(),
                    Quantity("100m".into()),
                )])),
                ..Default::default()
            }),
            ..Default::default()
        };
        // max(1000 + 500 + 250, 500 + 1200, 750) + 100
        assert_eq!(pod_cpu_request_milli(&with_sidecars), 1850);
        let mut init_peak = with_sidecars.clone();
        if let Some(spec) = init_peak.spec.as_mut() {
            spec.init_containers.as_mut().unwrap()[1] = container(&[("cpu", "3")], &[]);
        }
        // max(1750, 500 + 3000) + 100
        assert_eq!(pod_cpu_request_milli(&init_peak), 3600);
    }

    fn node(name: &str, cpu: Option<&str>) -> Node {
        Node {
            metadata: ObjectMeta {
                name: Some(name.into()),
                ..Default::default()
            },
            status: Some(NodeStatus {
                allocatable: cpu.map(|c| BTreeMap::from([("cpu".to_string(), Quantity(c.into()))])),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn cpu_pod(cpu: &str, node_name: Option<&str>, vgpu_node: Option<&str>, phase: &str) -> Pod {
        Pod {
            metadata: ObjectMeta {
                annotations: vgpu_node
                    .map(|n| BTreeMap::from([(VGPU_NODE.to_string(), n.to_string())])),
                ..Default::default()
            },
            spec: Some(PodSpec {
                node_name: node_name.map(String::from),
                containers: vec![Container {
                    resources: Some(ResourceRequirements {
                        requests: Some(BTreeMap::from([("cpu".to_string(), Quantity(cpu.into()))])),
                        ..Default::default()
                    }),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            status: Some(PodStatus {
                phase: Some(phase.into()),
                ..Default::default()
            }),
        }
    }

    fn requested(book: &HostCpuBook, node: &str) -> Option<(u64, u64)> {
        book.host(node)
            .map(|h| (h.cpu_capacity_milli, h.cpu_requested_milli))
    }

    /// Bound pods count on their node, placed-not-bound ones on the filter's node, terminal ones
    /// nowhere; moves, deletions and node churn keep the sums exact.
    #[test]
    fn the_book_counts_bound_and_placed_pods_until_they_end() {
        let mut book = HostCpuBook::new();
        book.apply_node(&node("a", Some("16")));
        book.apply_node(&node("b", Some("8000m")));
        book.apply_node(&node("no-cpu", None));
        assert_eq!(requested(&book, "a"), Some((16_000, 0)));
        assert_eq!(requested(&book, "no-cpu"), None, "allocatable unknown");
        assert_eq!(requested(&book, "elsewhere"), None);

        book.apply_pod("ns/bound", &cpu_pod("2", Some("a"), Some("b"), "Running"));
        book.apply_pod("ns/placed", &cpu_pod("1500m", None, Some("b"), "Pending"));
        book.apply_pod("ns/pending", &cpu_pod("4", None, None, "Pending"));
        book.apply_pod("ns/free", &cpu_pod("0", Some("a"), None, "Running"));
        assert_eq!(requested(&book, "a"), Some((16_000, 2000)), "nodeName wins");
        assert_eq!(requested(&book, "b"), Some((8000, 1500)));
        assert_eq!(book.pod_count(), 2, "pods that count nowhere keep no entry");

        // The placed pod binds where it was placed: no change; then it finishes.
        book.apply_pod(
            "ns/placed",
            &cpu_pod("1500m", Some("b"), Some("b"), "Running"),
        );
        assert_eq!(requested(&book, "b"), Some((8000, 1500)));
        book.apply_pod(
            "ns/placed",
            &cpu_pod("1500m", Some("b"), Some("b"), "Succeeded"),
        );
        assert_eq!(requested(&book, "b"), Some((8000, 0)));

        // A filter's choice counts at once and wins over the watch until it is confirmed or void.
        book.assume("ns/pending", "b", 4000);
        assert_eq!(requested(&book, "b"), Some((8000, 4000)));
        book.apply_pod("ns/pending", &cpu_pod("4", None, None, "Pending"));
        assert_eq!(requested(&book, "b"), Some((8000, 4000)), "pre-patch event");
        book.apply_pod("ns/pending", &cpu_pod("4", None, Some("b"), "Pending"));
        book.unassume("ns/pending");
        assert_eq!(requested(&book, "b"), Some((8000, 4000)), "confirmed");
        book.assume("ns/other", "a", 1000);
        book.unassume("ns/other");
        book.assume("ns/no-cpu", "a", 0);
        assert_eq!(book.pod_count(), 2, "a choice without CPU keeps no entry");
        assert_eq!(requested(&book, "a"), Some((16_000, 2000)), "void");

        // A node deleted keeps its pods' requests for when it comes back.
        book.delete_node("a");
        assert_eq!(requested(&book, "a"), None);
        book.apply_node(&node("a", Some("16")));
        assert_eq!(requested(&book, "a"), Some((16_000, 2000)));

        book.delete_pod("ns/bound");
        book.retain_pods(|k| k != "ns/pending");
        assert_eq!(requested(&book, "a"), Some((16_000, 0)));
        assert_eq!(requested(&book, "b"), Some((8000, 0)));
        assert_eq!(book.pod_count(), 0);
        book.delete_node("b");
        assert_eq!(requested(&book, "b"), None);
        assert_eq!(
            book,
            {
                let mut only_a = HostCpuBook::new();
                only_a.apply_node(&node("a", Some("16")));
                only_a
            },
            "nothing left behind"
        );
    }

    /// A pod resized in place (KEP-1287: the same pod, another CPU request) moves its node's sum by
    /// the difference; the book without assumptions is the book the watches alone would build.
    #[test]
    fn a_resize_moves_the_sum_and_assumptions_can_be_set_aside() {
        let mut book = HostCpuBook::new();
        book.apply_node(&node("a", Some("16")));
        book.apply_pod("ns/p", &cpu_pod("2", Some("a"), None, "Running"));
        book.apply_pod("ns/q", &cpu_pod("1", Some("a"), None, "Running"));
        book.apply_pod("ns/p", &cpu_pod("3500m", Some("a"), None, "Running"));
        assert_eq!(
            book.node("a"),
            Some(NodeCpu {
                allocatable: Some(16_000),
                requested: 4500
            })
        );
        book.apply_pod("ns/p", &cpu_pod("500m", Some("a"), None, "Running"));
        assert_eq!(book.node("a").map(|n| n.requested), Some(1500));
        assert_eq!(book.node("b"), None);

        let watched = book.clone();
        // A choice the watch has not shown, and one that moves a watched pod elsewhere.
        book.assume("ns/new", "b", 2000);
        book.assume("ns/q", "b", 1000);
        assert_eq!(book.node("a").map(|n| n.requested), Some(500));
        assert_eq!(
            book.node("b"),
            Some(NodeCpu {
                allocatable: None,
                requested: 3000
            })
        );
        let mut names: Vec<&str> = book.node_names().collect();
        names.sort_unstable();
        assert_eq!(names, ["a", "b"]);
        let set_aside = book.without_assumptions();
        assert_eq!(set_aside, watched);
        assert_eq!(set_aside.node_names().collect::<Vec<_>>(), ["a"]);
        assert_eq!(book.node("b").map(|n| n.requested), Some(3000), "unchanged");
    }
}
