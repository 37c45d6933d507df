//! What runs on a simulated node: the kubelet's admission of a bound pod (extended resources counted
//! the way the kubelet counts them), the status it writes when the pod starts, and HAMi's device
//! plugin Allocate (spec §5.3). The deterministic [`crate::world`] and the real-time
//! [`crate::live`] cluster share these, so both tiers admit and allocate the same way.

use crate::store::{Part, PatchType, Resource, Store};
use k8s_openapi::api::core::v1::{Container, Node, Pod};
use serde_json::{Value, json};
use sliceguard::annotations::{
    BIND_PHASE, BIND_TIME, DEVICES_TO_ALLOCATE, NODE_LOCK, RESOURCE_GPU, VGPU_NODE, bind_phase,
};
use sliceguard::codec::lock;
use std::collections::BTreeMap;

/// How much of `resource` a pod needs as the kubelet counts it: the larger of the largest init
/// container's amount and the sum over the regular containers (limits before requests).
pub fn extended_request(pod: &Pod, resource: &str) -> i64 {
    let count = |c: &Container| {
        sliceguard::request::limit_or_request(c, resource)
            .and_then(|q| sliceguard::quantity::parse_integer(&q.0).ok())
            .unwrap_or(0)
    };
    let Some(spec) = pod.spec.as_ref() else {
        return 0;
    };
    let app: i64 = spec.containers.iter().map(count).sum();
    let init = spec
        .init_containers
        .iter()
        .flatten()
        .map(count)
        .max()
        .unwrap_or(0);
    app.max(init)
}

/// Whether `name` is an extended resource (a domain-qualified name outside `kubernetes.io/`).
fn is_extended(name: &str) -> bool {
    name.contains('/') && !name.contains("kubernetes.io/")
}

/// The kubelet's admission of `pod` on `node`, given the pods the kubelet already admitted there.
///
/// Every extended resource the node advertises in `status.allocatable` must cover the admitted pods
/// plus this one; resources the node does not advertise are ignored (so HAMi's `nvidia.com/gpumem`
/// and `nvidia.com/gpucores`, which its device plugin never advertises, pass). A shortfall of a
/// device-plugin resource (`nvidia.com/gpu`) fails as the kubelet's device manager fails it
/// (`UnexpectedAdmissionError`); any other extended resource fails as the kubelet's resource fit does
/// (`OutOf<resource>`). Returns the reason and message on rejection.
pub fn kubelet_admit(pod: &Pod, node: &Node, admitted: &[&Pod]) -> Result<(), (String, String)> {
    let allocatable = node
        .status
        .as_ref()
        .and_then(|s| s.allocatable.as_ref())
        .cloned()
        .unwrap_or_default();
    for (resource, quantity) in &allocatable {
        if !is_extended(resource) {
            continue;
        }
        let wanted = extended_request(pod, resource);
        if wanted == 0 {
            continue;
        }
        let capacity = sliceguard::quantity::parse_integer(&quantity.0).unwrap_or(0);
        let used: i64 = admitted.iter().map(|p| extended_request(p, resource)).sum();
        if used + wanted > capacity {
            return Err(if resource == RESOURCE_GPU {
                (
                    "UnexpectedAdmissionError".into(),
                    format!(
                        "Allocate failed due to requested number of devices unavailable for {resource}. Requested: {wanted}, Available: {}, which is unexpected",
                        (capacity - used).max(0)
                    ),
                )
            } else {
                (
                    format!("OutOf{resource}"),
                    format!(
                        "Pod was rejected: Node didn't have enough resource: {resource}, requested: {wanted}, used: {used}, capacity: {capacity}"
                    ),
                )
            });
        }
    }
    Ok(())
}

/// The status the kubelet writes when the pod's containers start.
pub fn running_status(pod: &Pod, now: &str, pod_ip: &str) -> Value {
    let names: Vec<String> = pod
        .spec
        .as_ref()
        .map(|s| s.containers.iter().map(|c| c.name.clone()).collect())
        .unwrap_or_default();
    let images: Vec<String> = pod
        .spec
        .as_ref()
        .map(|s| {
            s.containers
                .iter()
                .map(|c| c.image.clone().unwrap_or_default())
                .collect()
        })
        .unwrap_or_default();
    let containers: Vec<Value> = names
        .iter()
        .zip(&images)
        .map(|(name, image)| {
            json!({"name": name, "ready": true, "restartCount": 0, "image": image, "imageID": "",
                   "started": true, "state": {"running": {"startedAt": now}}})
        })
        .collect();
    json!({
        "phase": "Running",
        "podIP": pod_ip,
        "startTime": now,
        "conditions": [
            {"type": "PodScheduled", "status": "True", "lastTransitionTime": now},
            {"type": "Initialized", "status": "True", "lastTransitionTime": now},
            {"type": "ContainersReady", "status": "True", "lastTransitionTime": now},
            {"type": "Ready", "status": "True", "lastTransitionTime": now}
        ],
        "containerStatuses": containers,
    })
}

/// The lock annotation of every node that has one, by node name.
pub fn node_locks(store: &Store) -> BTreeMap<String, String> {
    store
        .typed::<Node>(Resource::Nodes)
        .into_iter()
        .filter_map(|n| {
            let lock = n.metadata.annotations.as_ref()?.get(NODE_LOCK)?.clone();
            Some((n.metadata.name?, lock))
        })
        .collect()
}

/// What one Allocate call by HAMi's device plugin did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Allocation {
    /// `Ok` when the pod got devices; the kubelet's failure message otherwise.
    pub outcome: Result<(), String>,
    /// Set when the plugin handed another pod's devices to the admitting pod (HAMi #781).
    pub misdirected: Option<String>,
    /// What happened, for the trace.
    pub log: Option<String>,
}

/// HAMi's device plugin Allocate on `node` for the pod `admitting` (`namespace/name`), spec §5.3:
/// it serves the pod the node lock names (or, without a lock, a pending pod of that node in
/// bind-phase allocating), erases its to-allocate annotation, sets bind-phase, and releases the lock
/// only if that pod holds it.
pub fn hami_allocate(store: &mut Store, node: &str, admitting: &str) -> Allocation {
    let lock_value = node_locks(store).get(node).cloned();
    let holder = lock_value
        .as_deref()
        .and_then(|v| lock::parse(v).ok())
        .and_then(|v| v.holder)
        .map(|h| format!("{}/{}", h.namespace, h.name));
    let target = match holder {
        Some(h) => h,
        None => {
            let fallback = store.typed::<Pod>(Resource::Pods).into_iter().find(|p| {
                let annos = p.metadata.annotations.clone().unwrap_or_default();
                p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(node)
                    && p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Pending")
                    && annos.contains_key(BIND_TIME)
                    && matches!(
                        annos.get(BIND_PHASE).map(String::as_str),
                        Some("allocating" | "success")
                    )
                    && annos.get(VGPU_NODE).map(String::as_str) == Some(node)
            });
            match fallback {
                Some(p) => format!(
                    "{}/{}",
                    p.metadata.namespace.unwrap_or_default(),
                    p.metadata.name.unwrap_or_default()
                ),
                None => {
                    return Allocation {
                        outcome: Err(format!("no binding pod found on node {node}")),
                        misdirected: None,
                        log: None,
                    };
                }
            }
        }
    };
    let misdirected = (target != admitting).then(|| {
        format!("the device plugin on {node} handed pod {target}'s devices to pod {admitting} (HAMi #781: two pods mid-allocation on one node)")
    });
    let (ns, name) = target.split_once('/').unwrap_or(("default", ""));
    let pod: Option<Pod> = store
        .get(Resource::Pods, Some(ns), name)
        .ok()
        .and_then(|v| serde_json::from_value(v).ok());
    let Some(pod) = pod else {
        return Allocation {
            outcome: Err(format!("pod {target} named by the node lock not found")),
            misdirected,
            log: None,
        };
    };
    let annos = pod.metadata.annotations.clone().unwrap_or_default();
    let containers = pod.spec.as_ref().map_or(0, |s| {
        s.containers.len() + s.init_containers.as_ref().map_or(0, Vec::len)
    });
    let (phase, erased) = match annos.get(DEVICES_TO_ALLOCATE) {
        Some(_) => (bind_phase::SUCCESS, ";".repeat(containers + 1)),
        None => (bind_phase::FAILED, String::new()),
    };
    let mut patch = json!({"metadata": {"annotations": {BIND_PHASE: phase}}});
    if !erased.is_empty() {
        patch["metadata"]["annotations"][DEVICES_TO_ALLOCATE] = json!(erased);
    }
    let _ = store.patch(
        Resource::Pods,
        Some(ns),
        name,
        Part::Main,
        PatchType::Merge,
        &patch,
    );
    let mut log = None;
    // Owner-checked release: only the lock naming this pod (a legacy lock is anyone's).
    if let Some(value) = lock_value {
        let ours = lock::parse(&value)
            .map(|v| v.holder.is_none() || v.is_held_by(ns, name))
            .unwrap_or(false);
        if ours {
            let clear = json!({"metadata": {"annotations": {NODE_LOCK: null}}});
            let _ = store.patch(
                Resource::Nodes,
                None,
                node,
                Part::Main,
                PatchType::Merge,
                &clear,
            );
            log = Some(format!(
                "device plugin on {node} allocated {target}, set bind-phase={phase}, released the lock"
            ));
        }
    }
    Allocation {
        outcome: if phase == bind_phase::FAILED {
            Err("device request not found".into())
        } else {
            Ok(())
        },
        misdirected,
        log,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sliceguard::objects::{FleetSpec, GpuAsk, fleet, gpu_pod};

    fn node() -> Node {
        let spec = FleetSpec {
            nodes: 1,
            gpus_per_node: 1,
            split: 2,
            ..FleetSpec::default()
        };
        fleet(&spec, jiff::Timestamp::UNIX_EPOCH).remove(0)
    }

    #[test]
    fn kubelet_counts_only_advertised_extended_resources() {
        let node = node(); // nvidia.com/gpu allocatable 2; gpumem not advertised
        let pod = gpu_pod("a", &[], &[GpuAsk::fraction(999_999, 30)]);
        assert_eq!(kubelet_admit(&pod, &node, &[]), Ok(()));
        let one = gpu_pod("b", &[], &[GpuAsk::fraction(1, 1)]);
        assert_eq!(kubelet_admit(&pod, &node, &[&one]), Ok(()));
        let (reason, message) = kubelet_admit(&pod, &node, &[&one, &one]).unwrap_err();
        assert_eq!(reason, "UnexpectedAdmissionError");
        assert!(message.contains("Requested: 1, Available: 0"), "{message}");
    }

    #[test]
    fn init_containers_count_as_their_maximum() {
        let pod = gpu_pod(
            "p",
            &[
                GpuAsk::fraction(1, 1),
                GpuAsk {
                    gpus: Some(3),
                    ..GpuAsk::default()
                },
            ],
            &[GpuAsk::fraction(1, 1), GpuAsk::fraction(1, 1)],
        );
        assert_eq!(extended_request(&pod, RESOURCE_GPU), 3);
        assert_eq!(extended_request(&pod, "example.com/none"), 0);
    }

    #[test]
    fn other_extended_resources_fail_with_out_of() {
        let mut node = node();
        node.status
            .as_mut()
            .and_then(|s| s.allocatable.as_mut())
            .unwrap()
            .insert(
                "example.com/foo".into(),
                k8s_openapi::apimachinery::pkg::api::resource::Quantity("1".into()),
            );
        let mut pod = gpu_pod("p", &[], &[GpuAsk::default()]);
        let c = &mut pod.spec.as_mut().unwrap().containers[0];
        c.resources = Some(k8s_openapi::api::core::v1::ResourceRequirements {
            limits: Some(BTreeMap::from([(
                "example.com/foo".into(),
                k8s_openapi::apimachinery::pkg::api::resource::Quantity("2".into()),
            )])),
            ..Default::default()
        });
        let (reason, message) = kubelet_admit(&pod, &node, &[]).unwrap_err();
        assert_eq!(reason, "OutOfexample.com/foo");
        assert!(
            message.contains("requested: 2, used: 0, capacity: 1"),
            "{message}"
        );
    }
}
