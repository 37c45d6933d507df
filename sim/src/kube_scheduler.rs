//! The parts of kube-scheduler that both simulated clusters model the same way: the deterministic
//! [`crate::world`] (virtual clock, in-process calls) and the live driver `crate::live` (wall clock,
//! HTTP). Each keeps its own scheduling loop; this module is what they share.
//!
//! - **Scheduling queue and backoff** ([`SchedulingQueue`]): a pod that did not get a node waits
//!   1 s after its first failed attempt, then 2 s, 4 s, 8 s, and 10 s from the fifth on: an initial
//!   backoff of 1 s doubling per attempt up to a maximum of 10 s, kube-scheduler's defaults
//!   `podInitialBackoffSeconds: 1` and `podMaxBackoffSeconds: 10` ([`backoff_after`]). The queue is
//!   generic over the clock: [`jiff::Timestamp`] in the world, [`std::time::Instant`] in the live
//!   driver.
//! - **Which nodes it offers** ([`offer`]): the nodes its own filters pass for the pod
//!   ([`sliceguard::eligibility`]: node selector and affinity, taints, cordons), by name in the
//!   order given, and for the others why not (for the `FailedScheduling` summary).
//! - **The extender arguments** ([`filter_args`], [`binding_args`]): `ExtenderArgs` with the pod and
//!   the offered node names (sliceguard's extender is `nodeCacheCapable`, so no node objects), and
//!   `ExtenderBindingArgs` with the pod's name, namespace and uid and the chosen node. The world
//!   hands them to the service in process; the live driver posts their JSON ([`filter_body`],
//!   [`binding_body`]), which sliceguard's decoders read back into the same values.

use k8s_openapi::api::core::v1::{Node, Pod};
use serde_json::{Map, Value, json};
use sliceguard::server::extender::{ExtenderArgs, ExtenderBindingArgs};
use std::collections::BTreeMap;
use std::ops::Add;
use std::time::Duration;

/// kube-scheduler's `podInitialBackoffSeconds` default: the wait after the first failed attempt.
pub const INITIAL_BACKOFF: Duration = Duration::from_secs(1);

/// kube-scheduler's `podMaxBackoffSeconds` default: the longest wait.
pub const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// The wait after `attempts` failed attempts: [`INITIAL_BACKOFF`] doubled per attempt after the
/// first, at most [`MAX_BACKOFF`] (1 s, 2 s, 4 s, 8 s, 10 s, 10 s, ...).
pub fn backoff_after(attempts: u32) -> Duration {
    // The exponent stops at 4 (16 s, past the maximum), so the shift never overflows.
    let secs = INITIAL_BACKOFF.as_secs() << attempts.saturating_sub(1).min(4);
    Duration::from_secs(secs.min(MAX_BACKOFF.as_secs()))
}

/// When a pod may next be tried, and how many tries it had.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff<T> {
    /// The earliest instant of the next attempt.
    pub next: T,
    /// Failed attempts so far.
    pub attempts: u32,
}

/// Pods waiting to be scheduled, by `namespace/name`, each with its backoff. `T` is the clock's
/// instant type.
#[derive(Debug, Clone)]
pub struct SchedulingQueue<T> {
    pods: BTreeMap<String, Backoff<T>>,
}

impl<T> Default for SchedulingQueue<T> {
    fn default() -> Self {
        SchedulingQueue {
            pods: BTreeMap::new(),
        }
    }
}

impl<T: Copy + Ord + Add<Duration, Output = T>> SchedulingQueue<T> {
    /// Queues `key` due `now` with no failed attempts, replacing any backoff it had (a new pod).
    pub fn add(&mut self, key: String, now: T) {
        self.pods.insert(
            key,
            Backoff {
                next: now,
                attempts: 0,
            },
        );
    }

    /// Queues `key` due `now` unless it is already queued (then its backoff stands).
    pub fn add_if_absent(&mut self, key: &str, now: T) {
        if !self.pods.contains_key(key) {
            self.add(key.to_string(), now);
        }
    }

    /// Drops `key` (bound, gone, or no longer pending).
    pub fn remove(&mut self, key: &str) {
        self.pods.remove(key);
    }

    /// Counts a failed attempt of `key` at `now` (queuing it if it was not) and makes it wait
    /// [`backoff_after`] that many attempts.
    pub fn back_off(&mut self, key: &str, now: T) {
        let entry = self.pods.entry(key.to_string()).or_insert(Backoff {
            next: now,
            attempts: 0,
        });
        entry.attempts += 1;
        entry.next = now + backoff_after(entry.attempts);
    }

    /// The queued pod due at `now` that has waited longest (the earliest `next`; ties by key).
    pub fn next_due(&self, now: T) -> Option<String> {
        self.pods
            .iter()
            .filter(|(_, b)| b.next <= now)
            .min_by_key(|(k, b)| (b.next, (*k).clone()))
            .map(|(k, _)| k.clone())
    }

    /// Every queued pod due at `now`, longest-waiting first (ties by key).
    pub fn due(&self, now: T) -> Vec<String> {
        let mut due: Vec<(&T, &String)> = self
            .pods
            .iter()
            .filter(|(_, b)| b.next <= now)
            .map(|(k, b)| (&b.next, k))
            .collect();
        due.sort();
        due.into_iter().map(|(_, k)| k.clone()).collect()
    }

    /// True when `key` is queued and its backoff has not run out at `now`.
    pub fn backing_off(&self, key: &str, now: T) -> bool {
        self.pods.get(key).is_some_and(|b| b.next > now)
    }

    /// Forgets every backoff: every waiting pod may be tried at once (the live driver's answer to a
    /// pod deletion or a node change, on which kube-scheduler moves waiting pods to its active
    /// queue).
    pub fn clear(&mut self) {
        self.pods.clear();
    }

    /// Keeps only the pods for which `keep(key)` holds.
    pub fn retain(&mut self, mut keep: impl FnMut(&str) -> bool) {
        self.pods.retain(|k, _| keep(k));
    }
}

/// The nodes kube-scheduler offers the extender for a pod, and why it offers none of the others.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeOffer {
    /// Names of the nodes its own filters pass, in the order they were given.
    pub eligible: Vec<String>,
    /// The other nodes, by name, with the reason kube-scheduler reports.
    pub ineligible: BTreeMap<String, String>,
}

/// Splits `nodes` into those kube-scheduler's own filters pass for `pod` and the others
/// ([`sliceguard::eligibility::ineligibility`]).
pub fn offer<'a>(nodes: impl IntoIterator<Item = &'a Node>, pod: &Pod) -> NodeOffer {
    let mut offer = NodeOffer::default();
    for node in nodes {
        let node_name = node.metadata.name.clone().unwrap_or_default();
        match sliceguard::eligibility::ineligibility(node, pod) {
            Some(why) => {
                offer.ineligible.insert(node_name, why);
            }
            None => offer.eligible.push(node_name),
        }
    }
    offer
}

/// The `ExtenderArgs` of `POST /filter`: the pod and the names of the offered nodes.
pub fn filter_args(pod: &Pod, node_names: Vec<String>) -> ExtenderArgs {
    ExtenderArgs {
        pod: Some(pod.clone()),
        nodes: None,
        node_names: Some(node_names),
    }
}

/// The JSON body of `POST /filter` carrying `args` (`Pod`, `Nodes` as a `NodeList`, `NodeNames`;
/// absent fields are left out).
pub fn filter_body(args: &ExtenderArgs) -> Value {
    let mut body = Map::new();
    if let Some(pod) = &args.pod {
        body.insert("Pod".into(), json!(pod));
    }
    if let Some(nodes) = &args.nodes {
        body.insert("Nodes".into(), json!({ "items": nodes }));
    }
    if let Some(names) = &args.node_names {
        body.insert("NodeNames".into(), json!(names));
    }
    Value::Object(body)
}

/// The `ExtenderBindingArgs` of `POST /bind`: the pod (name, namespace, uid) and the chosen node.
pub fn binding_args(pod: &Pod, node: &str) -> ExtenderBindingArgs {
    ExtenderBindingArgs {
        pod_name: pod.metadata.name.clone().unwrap_or_default(),
        pod_namespace: pod
            .metadata
            .namespace
            .clone()
            .unwrap_or_else(|| "default".into()),
        pod_uid: pod.metadata.uid.clone().unwrap_or_default(),
        node: node.to_string(),
    }
}

/// The JSON body of `POST /bind` carrying `args`.
pub fn binding_body(args: &ExtenderBindingArgs) -> Value {
    json!({
        "PodName": args.pod_name,
        "PodNamespace": args.pod_namespace,
        "PodUID": args.pod_uid,
        "Node": args.node,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use sliceguard::server::extender::{decode_args, decode_binding_args};

    #[test]
    fn the_backoff_is_kube_schedulers_default() {
        let waits: Vec<u64> = (1..=7).map(|n| backoff_after(n).as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 8, 10, 10, 10]);
        assert_eq!(backoff_after(u32::MAX), MAX_BACKOFF);
    }

    #[test]
    fn the_queue_hands_out_the_pod_that_waited_longest() {
        let mut queue = SchedulingQueue::<Duration>::default();
        let at = Duration::from_secs;
        queue.add("default/b".into(), at(0));
        queue.add("default/a".into(), at(0));
        assert_eq!(queue.next_due(at(0)).as_deref(), Some("default/a"));
        queue.back_off("default/a", at(0));
        assert!(queue.backing_off("default/a", at(0)));
        assert_eq!(queue.next_due(at(0)).as_deref(), Some("default/b"));
        queue.back_off("default/b", at(0));
        queue.back_off("default/b", at(1));
        // a is due at 1 s, b (two failures) at 3 s.
        assert_eq!(queue.next_due(at(1)).as_deref(), Some("default/a"));
        queue.remove("default/a");
        assert_eq!(queue.next_due(at(2)), None);
        assert_eq!(queue.next_due(at(3)).as_deref(), Some("default/b"));
        // add_if_absent keeps the backoff; add resets it.
        queue.add_if_absent("default/b", at(0));
        assert!(queue.backing_off("default/b", at(2)));
        queue.add("default/b".into(), at(0));
        assert!(!queue.backing_off("default/b", at(0)));
        queue.retain(|k| k != "default/b");
        assert_eq!(queue.next_due(at(100)), None);
    }

    #[test]
    fn the_wire_bodies_decode_to_the_arguments() {
        let mut pod = Pod::default();
        pod.metadata.name = Some("p".into());
        pod.metadata.namespace = Some("ns".into());
        pod.metadata.uid = Some("u".into());
        let args = filter_args(&pod, vec!["n1".into(), "n2".into()]);
        let body = filter_body(&args);
        assert_eq!(body, json!({"Pod": pod, "NodeNames": ["n1", "n2"]}));
        let decoded = decode_args(body.to_string().as_bytes()).unwrap();
        assert_eq!(decoded.pod, args.pod);
        assert_eq!(decoded.nodes, args.nodes);
        assert_eq!(decoded.node_names, args.node_names);

        let args = binding_args(&pod, "n2");
        let body = binding_body(&args);
        assert_eq!(
            body,
            json!({"PodName": "p", "PodNamespace": "ns", "PodUID": "u", "Node": "n2"})
        );
        assert_eq!(decode_binding_args(body.to_string().as_bytes()), Ok(args));
    }
}
