//! What `/bind` verifies of the filter's decision before it locks a node: [`PodDecision`].
//!
//! HAMi's binder binds whatever node kube-scheduler names; it never looks at the decision its own
//! filter wrote onto the pod. A bind that kube-scheduler sends for a node the filter did not choose
//! (a stale cycle, a second scheduler, a forged or stripped annotation) then puts the pod on a node
//! whose devices the ledger never counted for it: an over-commit the device plugin will serve.
//! sliceguard refuses such a bind (deliberate difference from HAMi): a pod that asks for GPUs binds
//! only to the node its `hami.io/vgpu-node` annotation names, and only when its
//! `hami.io/vgpu-devices-allocated` agrees with its request.
//!
//! What "agrees" checks, per container (init containers first, as the annotation is written): as
//! many devices as the container asks for (`nvidia.com/gpu`), none for a container that asks for
//! none, and each device's memory equal to the container's explicit `nvidia.com/gpumem` when it gives
//! one. Memory given as a percentage and cores are not checked: they depend on the device and on
//! the webhook's defaults, which the binder does not know.

use crate::annotations::{DEVICES_ALLOCATED, VGPU_NODE};
use crate::codec::pod_devices;
use crate::request::{PodRequest, RequestDefaults, pod_request};
use k8s_openapi::api::core::v1::Pod;

/// The filter's decision as the pod carries it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum PodDecision {
    /// The pod asks for no GPU: nothing to verify.
    #[default]
    NoGpuRequest,
    /// The pod carries a decision for `node` that agrees with its request.
    Decided {
        /// The `hami.io/vgpu-node` value.
        node: String,
    },
    /// The pod asks for GPUs but carries no usable decision, or one that disagrees with its
    /// request; `problem` says which annotation and why.
    Unusable {
        /// What is wrong, naming the annotation.
        problem: String,
    },
}

impl PodDecision {
    /// Reads the decision `pod` carries and checks it against the pod's request.
    pub fn of(pod: &Pod) -> Self {
        // Defaults only fill in memory and cores the container did not give; neither is checked.
        let request = match pod_request(pod, RequestDefaults::default()) {
            Ok(request) => request,
            Err(e) => {
                return PodDecision::Unusable {
                    problem: format!("its GPU request is invalid: {e}"),
                };
            }
        };
        if !request.has_gpu_request() {
            return PodDecision::NoGpuRequest;
        }
        let annotations = pod.metadata.annotations.as_ref();
        let Some(node) = annotations.and_then(|a| a.get(VGPU_NODE)) else {
            return PodDecision::Unusable {
                problem: format!(
                    "it asks for GPUs but carries no {VGPU_NODE} annotation, so no filter of this scheduler placed it"
                ),
            };
        };
        let Some(allocated) = annotations.and_then(|a| a.get(DEVICES_ALLOCATED)) else {
            return PodDecision::Unusable {
                problem: format!("it carries {VGPU_NODE}={node} but no {DEVICES_ALLOCATED}"),
            };
        };
        match allocation_problem(&request, allocated) {
            Some(problem) => PodDecision::Unusable {
                problem: format!("its {DEVICES_ALLOCATED} {allocated:?} {problem}"),
            },
            None => PodDecision::Decided { node: node.clone() },
        }
    }

    /// Why a bind of this pod to `node` must be refused; `None` when it may go ahead.
    pub fn refusal(&self, node: &str) -> Option<String> {
        match self {
            PodDecision::NoGpuRequest => None,
            PodDecision::Decided { node: decided } if decided == node => None,
            PodDecision::Decided { node: decided } => Some(format!(
                "its {VGPU_NODE} annotation places it on node {decided}, not {node}"
            )),
            PodDecision::Unusable { problem } => Some(problem.clone()),
        }
    }
}

/// How the allocation disagrees with the request, or `None`.
fn allocation_problem(request: &PodRequest, allocated: &str) -> Option<String> {
    let devices = match pod_devices::parse(allocated) {
        Ok(devices) => devices,
        Err(e) => return Some(format!("does not parse: {e}")),
    };
    for (index, slot) in request.containers.iter().enumerate() {
        let given = devices.0.get(index).map_or(&[][..], Vec::as_slice);
        let wanted = slot.request.map_or(0, |r| r.nums) as usize;
        if given.len() != wanted {
            return Some(format!(
                "gives container {:?} {} device(s), it asks for {wanted}",
                slot.name,
                given.len()
            ));
        }
        if let Some(r) = slot.request.filter(|r| r.memreq > 0)
            && let Some(d) = given.iter().find(|d| d.usedmem != r.memreq)
        {
            return Some(format!(
                "gives container {:?} {} MiB on {}, it asks for {} MiB",
                slot.name, d.usedmem, d.uuid, r.memreq
            ));
        }
    }
    if let Some(extra) = devices
        .0
        .iter()
        .skip(request.containers.len())
        .find(|c| !c.is_empty())
    {
        return Some(format!(
            "holds {} device(s) beyond the pod's {} containers",
            extra.len(),
            request.containers.len()
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(annotations: serde_json::Value, containers: serde_json::Value) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "p", "namespace": "ns", "annotations": annotations},
            "spec": {"containers": containers}
        }))
        .unwrap()
    }

    fn gpu(name: &str, n: u32, mem: Option<u32>) -> serde_json::Value {
        let mut limits = json!({"nvidia.com/gpu": n.to_string()});
        if let Some(m) = mem {
            limits["nvidia.com/gpumem"] = json!(m.to_string());
        }
        json!({"name": name, "resources": {"limits": limits}})
    }

    #[test]
    fn a_pod_without_gpus_needs_no_decision() {
        let p = pod(json!({}), json!([{"name": "c"}]));
        assert_eq!(PodDecision::of(&p), PodDecision::NoGpuRequest);
        assert_eq!(PodDecision::of(&p).refusal("n1"), None);
    }

    #[test]
    fn a_matching_decision_binds_only_to_its_node() {
        let p = pod(
            json!({VGPU_NODE: "n1", DEVICES_ALLOCATED: "GPU-a,NVIDIA,4000,30:;;"}),
            json!([gpu("a", 1, Some(4000)), {"name": "side"}]),
        );
        let d = PodDecision::of(&p);
        assert_eq!(d, PodDecision::Decided { node: "n1".into() });
        assert_eq!(d.refusal("n1"), None);
        let refusal = d.refusal("n2").unwrap();
        assert!(refusal.contains("node n1, not n2"), "{refusal}");
    }

    #[test]
    fn missing_or_disagreeing_decisions_name_the_annotation() {
        let cases = [
            (json!({}), VGPU_NODE),
            (json!({VGPU_NODE: "n1"}), DEVICES_ALLOCATED),
            (
                json!({VGPU_NODE: "n1", DEVICES_ALLOCATED: "GPU-a,NVIDIA,x,30:;"}),
                "does not parse",
            ),
            (
                json!({VGPU_NODE: "n1", DEVICES_ALLOCATED: "GPU-a,NVIDIA,4000,30:;"}),
                "1 device(s), it asks for 2",
            ),
            (
                json!({VGPU_NODE: "n1", DEVICES_ALLOCATED: "GPU-a,NVIDIA,100,30:GPU-b,NVIDIA,4000,30:;"}),
                "100 MiB on GPU-a, it asks for 4000 MiB",
            ),
            (
                json!({VGPU_NODE: "n1", DEVICES_ALLOCATED: "GPU-a,NVIDIA,4000,30:GPU-b,NVIDIA,4000,30:;GPU-c,NVIDIA,1,1:;"}),
                "beyond the pod's 1 containers",
            ),
        ];
        for (annotations, expected) in cases {
            let p = pod(annotations.clone(), json!([gpu("a", 2, Some(4000))]));
            let refusal = PodDecision::of(&p).refusal("n1");
            assert!(
                refusal.as_deref().is_some_and(|r| r.contains(expected)),
                "{annotations}: {refusal:?} should mention {expected:?}"
            );
        }
    }

    #[test]
    fn a_container_without_a_request_may_hold_no_device() {
        let p = pod(
            json!({VGPU_NODE: "n1", DEVICES_ALLOCATED: "GPU-a,NVIDIA,4000,30:;GPU-b,NVIDIA,4000,30:;"}),
            json!([gpu("a", 1, None), {"name": "side"}]),
        );
        let refusal = PodDecision::of(&p).refusal("n1").unwrap();
        assert!(
            refusal.contains("container \"side\" 1 device(s), it asks for 0"),
            "{refusal}"
        );
    }
}
