//! Host CPU under in-place resize: the `cpu-resize` fault and the `host-cpu` check.
//!
//! Kubernetes resizes a pod's CPU in place (KEP-1287, the `pods/resize` subresource, beta and on by
//! default since 1.33): the stored pod's container requests change and the watches deliver an
//! update. sliceguard's `fragmentation` policy judges each node by its free CPU, which the service
//! keeps from those watches in its host CPU book ([`sliceguard::host_cpu`]), and the placement
//! index's memo keys node verdicts on that free CPU ([`sliceguard::score_memo`]). A view that
//! missed a resize would judge nodes by CPU that is no longer there, and the index coherence check
//! would not see it: it judges each view against itself.
//!
//! - **The fault**: a random stored pod's first container gets another CPU request, or none, written
//!   as the resize subresource writes it, past admission (the webhook is registered for `pods`, not
//!   `pods/resize`). Whether the kubelet could grant it is not modelled: the book counts what the
//!   spec requests (kube-scheduler also counts what the kubelet still holds while a resize is in
//!   progress).
//! - **The check** (`host-cpu`): once the leader's watches have delivered everything the store
//!   holds, its book, the filters' unconfirmed choices set aside, holds for every node what a book
//!   built afresh from the stored nodes and pods holds
//!   ([`sliceguard_invariants::checks::check_host_cpu`]).

use super::World;
use crate::store::{Part, PatchType, Resource};
use k8s_openapi::api::core::v1::{Node, Pod};
use serde_json::{Value, json};
use sliceguard::server::Scheduler;
use std::sync::Arc;

/// The CPU requests (millicores) an in-place resize picks from; `None` removes the request.
pub(super) const RESIZED_CPU_MILLI: [Option<u64>; 6] = [
    None,
    Some(250),
    Some(1000),
    Some(2000),
    Some(4000),
    Some(8000),
];

/// A CPU request as the trace writes it.
pub(super) fn milli_text(milli: Option<u64>) -> String {
    milli.map_or_else(|| "none".to_string(), |m| format!("{m}m"))
}

impl World {
    /// The `cpu-resize` fault (see the module documentation).
    pub(super) fn resize_a_pod_cpu(&mut self) {
        let keys = self.pod_keys();
        if keys.is_empty() {
            return;
        }
        let key = keys[self.rng.below(keys.len() as u64) as usize].clone();
        let to = RESIZED_CPU_MILLI[self.rng.below(RESIZED_CPU_MILLI.len() as u64) as usize];
        if let Some(from) = self.resize_cpu_request(&key, to) {
            self.log(format!(
                "fault cpu-resize: {key}'s CPU request resized in place from {from} to {}",
                milli_text(to)
            ));
        }
    }

    /// Resizes the CPU request of `key`'s first container in place to `to` (`None`: no request),
    /// as the resize subresource writes it, past admission; the request it had (as the trace writes
    /// it), or `None` when the pod or its container is gone or the write failed.
    pub(super) fn resize_cpu_request(&mut self, key: &str, to: Option<u64>) -> Option<String> {
        let (ns, name) = key.split_once('/')?;
        let pod = self.core().store.get(Resource::Pods, Some(ns), name).ok()?;
        let mut containers = pod["spec"]["containers"].as_array().cloned()?;
        let first = containers.first_mut()?;
        let from = first["resources"]["requests"]["cpu"]
            .as_str()
            .unwrap_or("none")
            .to_string();
        let requests = &mut first["resources"]["requests"];
        if !requests.is_object() {
            *requests = json!({});
        }
        let requests = requests.as_object_mut()?;
        match to {
            Some(milli) => {
                requests.insert("cpu".into(), Value::String(format!("{milli}m")));
            }
            None => {
                requests.remove("cpu");
            }
        }
        self.core()
            .store
            .patch(
                Resource::Pods,
                Some(ns),
                name,
                Part::Main,
                PatchType::Merge,
                &json!({"spec": {"containers": containers}}),
            )
            .ok()
            .map(|_| from)
    }

    /// The `host-cpu` check of `service`'s view (`view`: its identity, as agreement names it)
    /// against the store (see the module documentation), for a view whose watches have delivered
    /// everything the store holds. Skipped when neither the view nor the stored nodes and pods
    /// changed since the last comparison, unless `whole`.
    pub(super) fn host_cpu_differences(
        &self,
        service: &Arc<Scheduler<super::SimCluster>>,
        view: (usize, u64),
        whole: bool,
    ) -> Vec<String> {
        let (nodes, pods) = {
            let core = self.core();
            (
                core.store.typed_shared::<Node>(Resource::Nodes),
                core.store.typed_shared::<Pod>(Resource::Pods),
            )
        };
        let compared = Compared {
            nodes: nodes.clone(),
            pods: pods.clone(),
            view,
        };
        if self
            .host_cpu_compared
            .replace(Some(compared.clone()))
            .as_ref()
            == Some(&compared)
            && !whole
        {
            return Vec::new();
        }
        self.host_cpu_comparisons
            .set(self.host_cpu_comparisons.get() + 1);
        let nodes: Vec<&Node> = nodes.iter().map(|n| &**n).collect();
        let pods: Vec<&Pod> = pods.iter().map(|p| &**p).collect();
        service.with_view(|view| {
            view.hosts()
                .map(|book| sliceguard_invariants::checks::check_host_cpu(book, &nodes, &pods))
                .unwrap_or_default()
                .into_iter()
                .map(|v| v.to_string())
                .collect()
        })
    }
}

/// What a host CPU comparison was made on: the store's typed node and pod lists (the store hands
/// out the same lists until a node or a pod changes; held here, so an address is never reused)
/// and the view's identity.
#[derive(Debug, Clone)]
pub(super) struct Compared {
    nodes: Arc<Vec<Arc<Node>>>,
    pods: Arc<Vec<Arc<Pod>>>,
    view: (usize, u64),
}

impl PartialEq for Compared {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.nodes, &other.nodes)
            && Arc::ptr_eq(&self.pods, &other.pods)
            && self.view == other.view
    }
}
