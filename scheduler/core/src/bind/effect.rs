//! What the bind protocol exchanges with its driver: the request ([`BindRequest`]), the views of
//! a pod and a node it reads ([`PodView`], [`NodeLockView`]), the requests to the API it emits
//! ([`Effect`], with their exact wire bodies) and what the driver saw ([`Observation`],
//! [`ApiFailure`]). The table of effects is in the [module documentation](super).

use super::PodDecision;
use crate::annotations::{BIND_PHASE, DEVICES_ALLOCATED, NODE_LOCK};
use crate::decision::EventRecord;
use k8s_openapi::api::core::v1::{Node, Pod};
use serde_json::{Value, json};
use std::collections::BTreeMap;

/// What to bind where: the extender's `ExtenderBindingArgs`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BindRequest {
    /// Pod namespace.
    pub namespace: String,
    /// Pod name.
    pub name: String,
    /// Pod uid (the `Binding`'s precondition); empty when unknown.
    pub uid: String,
    /// Target node.
    pub node: String,
}

impl BindRequest {
    /// `namespace/name`.
    pub fn pod_key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }
}

/// A node as the bind protocol sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeLockView {
    /// `metadata.resourceVersion` (the compare-and-swap token).
    pub resource_version: String,
    /// The raw `hami.io/mutex.lock` value, if any.
    pub lock: Option<String>,
}

impl NodeLockView {
    /// Reads the view from a Node object.
    pub fn from_node(node: &Node) -> Self {
        NodeLockView {
            resource_version: node.metadata.resource_version.clone().unwrap_or_default(),
            lock: node
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(NODE_LOCK))
                .cloned(),
        }
    }
}

/// A pod as the bind protocol sees it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PodView {
    /// `metadata.uid`.
    pub uid: String,
    /// `spec.nodeName`, when bound.
    pub node_name: Option<String>,
    /// `status.phase`.
    pub phase: Option<String>,
    /// `hami.io/bind-phase`.
    pub bind_phase: Option<String>,
    /// `metadata.deletionTimestamp` is set.
    pub deleting: bool,
    /// `hami.io/vgpu-devices-allocated`: what the filter last wrote (read to settle a filter write
    /// whose answer was lost).
    pub devices_allocated: Option<String>,
    /// The filter's decision as the pod carries it, checked against its request (what `/bind`
    /// verifies before it locks a node).
    pub decision: PodDecision,
}

impl PodView {
    /// Reads the view from a Pod object.
    pub fn from_pod(pod: &Pod) -> Self {
        PodView {
            uid: pod.metadata.uid.clone().unwrap_or_default(),
            node_name: pod
                .spec
                .as_ref()
                .and_then(|s| s.node_name.clone())
                .filter(|n| !n.is_empty()),
            phase: pod.status.as_ref().and_then(|s| s.phase.clone()),
            bind_phase: pod
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(BIND_PHASE))
                .cloned(),
            deleting: pod.metadata.deletion_timestamp.is_some(),
            devices_allocated: pod
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(DEVICES_ALLOCATED))
                .cloned(),
            decision: PodDecision::of(pod),
        }
    }

    /// Succeeded, Failed, or being deleted.
    pub fn is_finished(&self) -> bool {
        self.deleting || matches!(self.phase.as_deref(), Some("Succeeded" | "Failed"))
    }

    /// Bound, not finished and still `Pending`: the kubelet has not admitted it, so HAMi's device
    /// plugin may still be asked to Allocate for one of its containers (see `lock_rules`).
    pub fn awaits_admission(&self) -> bool {
        self.node_name.is_some()
            && !self.is_finished()
            && self.phase.as_deref().is_none_or(|p| p == "Pending")
    }

    /// [`PodView::awaits_admission`] in `bind-phase: allocating`: what HAMi's device plugin takes
    /// for the pod to serve on its node.
    pub fn is_mid_allocation(&self) -> bool {
        self.awaits_admission()
            && self.bind_phase.as_deref() == Some(crate::annotations::bind_phase::ALLOCATING)
    }
}

/// An event's subject.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodRef {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// Uid (may be empty).
    pub uid: String,
}

impl PodRef {
    /// The pod's namespace (`default` when unset), name and uid.
    pub fn of(pod: &Pod) -> Self {
        PodRef {
            namespace: pod
                .metadata
                .namespace
                .clone()
                .unwrap_or_else(|| "default".into()),
            name: pod.metadata.name.clone().unwrap_or_default(),
            uid: pod.metadata.uid.clone().unwrap_or_default(),
        }
    }
}

/// One request to the cluster API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// Read a pod.
    GetPod {
        /// Namespace.
        namespace: String,
        /// Name.
        name: String,
    },
    /// Read a node.
    GetNode {
        /// Node name.
        node: String,
    },
    /// Set the lock annotation to `value`, only if the node is still at `resource_version`.
    WriteLock {
        /// Node name.
        node: String,
        /// The lock value.
        value: String,
        /// Precondition.
        resource_version: String,
    },
    /// Remove the lock annotation, only if the node is still at `resource_version`.
    ClearLock {
        /// Node name.
        node: String,
        /// Precondition.
        resource_version: String,
    },
    /// Merge the annotations into the pod's.
    PatchPodAnnotations {
        /// Namespace.
        namespace: String,
        /// Name.
        name: String,
        /// Annotations to set.
        annotations: BTreeMap<String, String>,
    },
    /// The filter's write: merge the annotations and labels into the pod's metadata, only if the pod
    /// still has uid `uid` (see [`Effect::merge_patch`]).
    PatchPodMetadata {
        /// Namespace.
        namespace: String,
        /// Name.
        name: String,
        /// Pod uid precondition (omitted when empty).
        uid: String,
        /// Annotations to set.
        annotations: BTreeMap<String, String>,
        /// Labels to set.
        labels: BTreeMap<String, String>,
    },
    /// Create the pod's `Binding` to `node`.
    CreateBinding {
        /// Namespace.
        namespace: String,
        /// Name.
        name: String,
        /// Pod uid precondition (omitted when empty).
        uid: String,
        /// Target node.
        node: String,
    },
    /// Delete the pod, only if it still has uid `uid` (the reaper's last word on a holder whose
    /// device plugin stayed silent past the stall deadline, see [`super::lock_rules`]).
    DeletePod {
        /// Namespace.
        namespace: String,
        /// Name.
        name: String,
        /// Pod uid precondition (omitted when empty).
        uid: String,
    },
    /// Record an event on the pod. Its answer never changes the path.
    EmitEvent {
        /// The pod.
        pod: PodRef,
        /// Type, reason and message.
        event: EventRecord,
    },
}

impl Effect {
    /// The JSON merge patch body of a write to an object's metadata (`None` for other effects).
    pub fn merge_patch(&self) -> Option<Value> {
        match self {
            Effect::WriteLock {
                value,
                resource_version,
                ..
            } => Some(json!({"metadata": {
                "annotations": {NODE_LOCK: value},
                "resourceVersion": resource_version,
            }})),
            Effect::ClearLock {
                resource_version, ..
            } => Some(json!({"metadata": {
                "annotations": {NODE_LOCK: null},
                "resourceVersion": resource_version,
            }})),
            Effect::PatchPodAnnotations { annotations, .. } => {
                Some(json!({"metadata": {"annotations": annotations}}))
            }
            Effect::PatchPodMetadata {
                uid,
                annotations,
                labels,
                ..
            } => {
                // `metadata.uid` is immutable: a merge patch carrying another uid than the stored
                // object's is refused, so the write cannot land on a pod re-created under the name.
                let mut metadata = json!({"annotations": annotations, "labels": labels});
                if !uid.is_empty() {
                    metadata["uid"] = json!(uid);
                }
                Some(json!({ "metadata": metadata }))
            }
            _ => None,
        }
    }

    /// The `Binding` object of [`Effect::CreateBinding`] (`None` for other effects).
    pub fn binding(&self) -> Option<Value> {
        let Effect::CreateBinding {
            namespace,
            name,
            uid,
            node,
        } = self
        else {
            return None;
        };
        let mut metadata = json!({"name": name, "namespace": namespace});
        if !uid.is_empty() {
            metadata["uid"] = json!(uid);
        }
        Some(json!({
            "apiVersion": "v1",
            "kind": "Binding",
            "metadata": metadata,
            "target": {"apiVersion": "v1", "kind": "Node", "name": node},
        }))
    }

    /// A short name for logs and traces (`get-node`, `write-lock`, ...).
    pub fn kind(&self) -> &'static str {
        match self {
            Effect::GetPod { .. } => "get-pod",
            Effect::GetNode { .. } => "get-node",
            Effect::WriteLock { .. } => "write-lock",
            Effect::ClearLock { .. } => "clear-lock",
            Effect::PatchPodAnnotations { .. } => "patch-pod",
            Effect::PatchPodMetadata { .. } => "patch-pod-metadata",
            Effect::CreateBinding { .. } => "create-binding",
            Effect::DeletePod { .. } => "delete-pod",
            Effect::EmitEvent { .. } => "emit-event",
        }
    }
}

/// Why a request to the API failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiFailure {
    /// 404: the object does not exist.
    #[error("not found")]
    NotFound,
    /// 409: a conflict (a resourceVersion or uid precondition failed, or the pod is already bound).
    #[error("conflict: {0}")]
    Conflict(String),
    /// Any other refusal (400, 403, 422, ...): the request was not applied.
    #[error("rejected ({code}): {message}")]
    Rejected {
        /// HTTP status.
        code: u16,
        /// The server's message.
        message: String,
    },
    /// No answer, a lost response, a timeout or a 5xx: the request may or may not have been applied.
    #[error("no definite answer: {0}")]
    Indeterminate(String),
}

/// What the driver saw when it executed an effect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Observation {
    /// The answer to [`Effect::GetPod`].
    Pod(PodView),
    /// The answer to [`Effect::GetNode`].
    Node(NodeLockView),
    /// A write succeeded; the object's new resourceVersion when the answer carried one.
    Written {
        /// `metadata.resourceVersion` after the write.
        resource_version: Option<String>,
    },
    /// The request failed.
    Failed(ApiFailure),
}

/// The failure recorded when a driver answers an effect with an observation that does not belong
/// to it.
pub(super) fn unexpected(effect: &str, observation: &Observation) -> ApiFailure {
    ApiFailure::Rejected {
        code: 0,
        message: format!("driver answered {effect} with {observation:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn effects_carry_the_wire_bodies() {
        let write = Effect::WriteLock {
            node: "n".into(),
            value: "v".into(),
            resource_version: "7".into(),
        };
        assert_eq!(
            write.merge_patch().unwrap(),
            json!({"metadata": {"annotations": {"hami.io/mutex.lock": "v"}, "resourceVersion": "7"}})
        );
        let clear = Effect::ClearLock {
            node: "n".into(),
            resource_version: "8".into(),
        };
        assert_eq!(
            clear.merge_patch().unwrap(),
            json!({"metadata": {"annotations": {"hami.io/mutex.lock": null}, "resourceVersion": "8"}})
        );
        let binding = Effect::CreateBinding {
            namespace: "ns".into(),
            name: "p".into(),
            uid: "u".into(),
            node: "n".into(),
        };
        assert_eq!(
            binding.binding().unwrap(),
            json!({"apiVersion": "v1", "kind": "Binding",
                   "metadata": {"name": "p", "namespace": "ns", "uid": "u"},
                   "target": {"apiVersion": "v1", "kind": "Node", "name": "n"}})
        );
        assert!(write.binding().is_none() && binding.merge_patch().is_none());
    }

    #[test]
    fn a_pod_annotation_patch_is_a_merge_patch_of_its_annotations() {
        let patch = Effect::PatchPodAnnotations {
            namespace: "ns".into(),
            name: "p".into(),
            annotations: BTreeMap::from([(
                "hami.io/bind-phase".to_string(),
                "success".to_string(),
            )]),
        };
        assert_eq!(
            patch.merge_patch().unwrap(),
            json!({"metadata": {"annotations": {"hami.io/bind-phase": "success"}}})
        );
    }

    /// An empty `spec.nodeName` is an unbound pod, as Kubernetes treats it.
    #[test]
    fn an_empty_node_name_is_unbound() {
        use k8s_openapi::api::core::v1::PodSpec;
        let pod = |node: &str| Pod {
            spec: Some(PodSpec {
                node_name: Some(node.into()),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(PodView::from_pod(&pod("")).node_name, None);
        assert_eq!(
            PodView::from_pod(&pod("n1")).node_name.as_deref(),
            Some("n1")
        );
    }
}
