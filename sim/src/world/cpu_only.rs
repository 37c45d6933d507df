//! CPU-only work that kube-scheduler places itself: the `cpu-only-pod` fault.
//!
//! The webhook routes only GPU pods to sliceguard (unless the opt-in CPU-only route is on), so on a
//! real cluster kube-scheduler binds the CPU-only pods (a batch job, a DaemonSet's pod, a web
//! service) and they start, are resized in place and end beside the GPU work. Each of those changes
//! a node's free CPU without any GPU pod event: the pod watch is the only signal a sliceguard
//! replica gets. The `fragmentation` policy judges nodes by their free CPU, and the placement
//! index's memo ranks nodes by verdicts judged with it, so the view must tell the index
//! (`ClusterView::change_hosts` → `PlacementIndex::forget_verdicts`). Before this fault every change
//! of free CPU in the simulated world came with a GPU pod event, whose ledger refresh forgot the
//! node's verdicts anyway: a view that did not tell the index went unseen (planted bug (j) in
//! `sim/PLANTED_BUGS.md`).
//!
//! - **Each firing** does one of three things: kube-scheduler binds a new CPU-only pod (created
//!   unbound, then bound through `pods/binding`) to a random node whose CPU fits it by the API's
//!   pods, as its `NodeResourcesFit` plugin would, and the kubelet stand-in runs it; one of them is
//!   resized in place (as the `cpu-resize` fault resizes); one of them ends (deleted). At most
//!   [`PODS_PER_NODE`] times as many as there are nodes live at once (any number on one node, as
//!   its CPU allows); at the cap a firing resizes or deletes.
//! - **Apart from the rest of a run**: the fault draws from a random stream of its own, and its pods
//!   live in [`CPU_ONLY_NAMESPACE`], which [`World::pod_keys`] leaves out, so turning it on leaves
//!   what every other fault and operation picks as it was. It fires [`RATE_FACTOR`] times as often
//!   as the other faults: its effect on a decision needs a population of pods to build up.
//! - **Checked by** the `host-cpu` check (the book equals the API's nodes and pods) and by index
//!   coherence (a verdict the memo ranks is judged again with the node's free CPU now).

use super::host_cpu::{RESIZED_CPU_MILLI, milli_text};
use super::{Fault, Rng, World};
use crate::store::{Resource, Store};
use serde_json::json;
use sliceguard::host_cpu::{HostCpuBook, HostSource as _};

/// The namespace of the fault's pods (no campaign operation creates pods there).
pub const CPU_ONLY_NAMESPACE: &str = "cpu-only-work";

/// The most CPU-only pods the fault keeps, per node of the cluster (on average, not on each).
const PODS_PER_NODE: usize = 2;

/// The fault fires this many times as often as the configured per-step fault rate.
const RATE_FACTOR: u64 = 4;

/// The CPU requests (millicores) a new CPU-only pod asks for.
const CPU_ONLY_REQUEST_MILLI: [u64; 5] = [500, 1000, 2000, 4000, 8000];

/// The fault's own state: its random stream and the number of the next pod it creates.
#[derive(Debug)]
pub(super) struct CpuOnlyWork {
    rng: Rng,
    next: u64,
}

impl CpuOnlyWork {
    /// The stream for a run's `seed` (distinct from every other stream of the run).
    pub fn new(seed: u64) -> Self {
        CpuOnlyWork {
            rng: Rng::new(seed.rotate_left(17) ^ 0xc0f3_0a1e_cafe_b0d5),
            next: 0,
        }
    }
}

/// Whether `key` (`namespace/name`) is one of the fault's pods.
pub(super) fn is_cpu_only_work(key: &str) -> bool {
    key.split_once('/')
        .is_some_and(|(ns, _)| ns == CPU_ONLY_NAMESPACE)
}

impl World {
    /// One step of the `cpu-only-pod` fault (see the module documentation).
    pub(super) fn cpu_only_work(&mut self) {
        let (on, rate) = {
            let core = self.core();
            (
                core.faults_on && core.faults.contains(&Fault::CpuOnlyPod),
                core.fault_per_mille,
            )
        };
        if !on
            || !self
                .cpu_only
                .rng
                .chance_per_mille(rate.saturating_mul(RATE_FACTOR).min(1000))
        {
            return;
        }
        let live = self.cpu_only_pods();
        let below_cap = live.len() < self.core().store.count(Resource::Nodes) * PODS_PER_NODE;
        let choice = self.cpu_only.rng.below(4);
        if below_cap && (choice < 2 || live.is_empty()) {
            self.bind_cpu_only_pod();
            return;
        }
        if live.is_empty() {
            return;
        }
        let key = live[self.cpu_only.rng.below(live.len() as u64) as usize].clone();
        if choice.is_multiple_of(2) {
            let to =
                RESIZED_CPU_MILLI[self.cpu_only.rng.below(RESIZED_CPU_MILLI.len() as u64) as usize];
            if let Some(from) = self.resize_cpu_request(&key, to) {
                self.log(format!(
                    "fault cpu-only-pod: {key}'s CPU request resized in place from {from} to {}",
                    milli_text(to)
                ));
            }
        } else if let Some((ns, name)) = key.split_once('/')
            && self
                .core()
                .store
                .delete(Resource::Pods, Some(ns), name)
                .is_ok()
        {
            self.log(format!("fault cpu-only-pod: {key} ended (deleted)"));
        }
    }

    /// The fault's live pods, in key order.
    fn cpu_only_pods(&self) -> Vec<String> {
        self.core()
            .store
            .objects(Resource::Pods)
            .filter(|p| p["metadata"]["namespace"].as_str() == Some(CPU_ONLY_NAMESPACE))
            .filter_map(|p| p["metadata"]["name"].as_str())
            .map(|name| format!("{CPU_ONLY_NAMESPACE}/{name}"))
            .collect()
    }

    /// kube-scheduler creates and binds one CPU-only pod on a node whose CPU fits it (none: no pod).
    fn bind_cpu_only_pod(&mut self) {
        let milli = CPU_ONLY_REQUEST_MILLI
            [self.cpu_only.rng.below(CPU_ONLY_REQUEST_MILLI.len() as u64) as usize];
        let fitting = nodes_with_free_cpu(&self.core().store, milli);
        if fitting.is_empty() {
            return;
        }
        let node = fitting[self.cpu_only.rng.below(fitting.len() as u64) as usize].clone();
        let name = format!("cpu-work-{}", self.cpu_only.next);
        self.cpu_only.next += 1;
        let pod = json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "namespace": CPU_ONLY_NAMESPACE},
            "spec": {
                "containers": [{
                    "name": "work",
                    "image": "registry.k8s.io/pause:3.9",
                    "resources": {"requests": {"cpu": format!("{milli}m")}},
                }],
                "restartPolicy": "Never",
            },
        });
        let bound = {
            let mut core = self.core();
            core.store
                .create(Resource::Pods, Some(CPU_ONLY_NAMESPACE), pod)
                .and_then(|_| core.store.bind(CPU_ONLY_NAMESPACE, &name, &node, None))
                .is_ok()
        };
        if bound {
            self.log(format!(
                "fault cpu-only-pod: kube-scheduler binds {CPU_ONLY_NAMESPACE}/{name} ({milli}m CPU, no GPU) to {node}"
            ));
        }
    }
}

/// The nodes whose allocatable CPU, less the requests of the pods that count there, holds `milli`:
/// what kube-scheduler's `NodeResourcesFit` admits, counted as the host CPU book counts.
fn nodes_with_free_cpu(store: &Store, milli: u64) -> Vec<String> {
    let mut book = HostCpuBook::new();
    for node in store
        .typed_shared::<k8s_openapi::api::core::v1::Node>(Resource::Nodes)
        .iter()
    {
        book.apply_node(node);
    }
    for pod in store
        .typed_shared::<k8s_openapi::api::core::v1::Pod>(Resource::Pods)
        .iter()
    {
        book.apply_pod(&sliceguard::ledger::pod_key(pod), pod);
    }
    book.node_names()
        .filter(|name| book.host(name).is_some_and(|h| h.cpu_free() >= milli))
        .map(str::to_string)
        .collect()
}
