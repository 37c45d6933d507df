//! The world's books: what the store's nodes and pods add up to (the registry, the recounted usage
//! of the live pods, a ledger of them) and what running containers were granted, kept up to date
//! from the store's event log after every step instead of recounted from every pod.
//!
//! The invariant checks read the books, and after a step look only at what that step changed: the
//! devices whose load or registration moved (capacity), the pods whose annotations or phase moved
//! (agreement). That is exact, not a sample: a device's capacity can only break when its load, its
//! registration or its tolerated over-commit changes, and the tolerated devices are checked every
//! time. The bookkeeping itself is checked, not trusted: every `recount_every` steps and at the end
//! of a run the books are recounted from scratch ([`Books::differences`]), a difference is the
//! `books` violation, and the checks then look at every device and every pod.

use crate::store::{EventType, Resource, Store};
use crate::tenant::Grants;
use k8s_openapi::api::core::v1::{Node, Pod};
use serde::Deserialize as _;
use sliceguard::ledger::Ledger;
use sliceguard::registry::Registry;
use sliceguard_invariants::recount::{self, Recount};
use std::collections::BTreeSet;

/// A device: (node, UUID).
pub(super) type DeviceKey = (String, String);

/// The kept sums (see the module documentation).
#[derive(Debug, Default)]
pub(super) struct Books {
    /// The store's resourceVersion the books are up to date with.
    applied: u64,
    /// The registry over the store's nodes.
    pub registry: Registry,
    /// Usage recounted from the store's pods' annotations.
    pub live: Recount,
    /// The core's ledger over the store's pods (the capacity check reads it beside the recount).
    pub truth: Ledger,
    /// What each running container was handed when its pod started.
    pub grants: Grants,
    /// Usage recounted from the grants.
    pub granted: Recount,
    /// The core's ledger over the grants.
    pub held: Ledger,
    /// Devices whose live load or registration changed since the last capacity check.
    pub dirty_live: BTreeSet<DeviceKey>,
    /// Devices whose granted load or registration changed since the last capacity check.
    pub dirty_granted: BTreeSet<DeviceKey>,
    /// Every device needs checking (the books were rebuilt).
    pub all_dirty: bool,
    /// Pods (`namespace/name`) changed since the last agreement check.
    pub changed_pods: BTreeSet<String>,
}

impl Books {
    /// Applies the store's changes since the last call. When the store's event log no longer
    /// reaches back that far, rebuilds everything from the store's objects (the grants then start
    /// from the pods running now).
    pub fn sync(&mut self, store: &Store) {
        let Ok(events) = store.events_after(self.applied) else {
            self.rebuild(store);
            return;
        };
        for event in events {
            let gone = event.event_type == EventType::Deleted;
            match event.resource {
                Resource::Nodes => {
                    let Ok(node) = Node::deserialize(&event.object) else {
                        continue;
                    };
                    let name = node.metadata.name.clone().unwrap_or_default();
                    if gone {
                        self.registry.remove(&name);
                    } else {
                        let _ = self.registry.upsert_node(&node);
                        if let Some(registered) = self.registry.get(&name) {
                            for device in &registered.devices {
                                let key = (name.clone(), device.id.clone());
                                self.dirty_live.insert(key.clone());
                                self.dirty_granted.insert(key);
                            }
                        }
                    }
                }
                Resource::Pods => {
                    let Ok(pod) = Pod::deserialize(&event.object) else {
                        continue;
                    };
                    self.apply_pod(&pod, gone);
                }
                _ => {}
            }
        }
        self.applied = store.resource_version();
    }

    fn apply_pod(&mut self, pod: &Pod, gone: bool) {
        let key = recount::key(pod);
        let now = (!gone).then_some(pod);
        self.dirty_live.extend(self.live.update(&key, now));
        if gone {
            self.truth.remove(&key);
        } else {
            let _ = self.truth.observe(pod);
        }
        if let Some((granted_key, grant)) = self.grants.apply(pod, gone) {
            self.dirty_granted
                .extend(self.granted.update(&granted_key, grant));
            match grant {
                Some(grant) => {
                    let _ = self.held.observe(grant);
                }
                None => {
                    self.held.remove(&granted_key);
                }
            }
        }
        self.changed_pods.insert(key);
    }

    /// Everything from the store's objects, as if nothing had been kept.
    pub fn rebuild(&mut self, store: &Store) {
        let nodes = store.typed_shared::<Node>(Resource::Nodes);
        let pods = store.typed_shared::<Pod>(Resource::Pods);
        let mut grants = std::mem::take(&mut self.grants);
        grants.observe(&pods);
        *self = Books::from_objects(&nodes, &pods, grants);
        self.applied = store.resource_version();
        self.all_dirty = true;
    }

    /// The books recounted from scratch: `nodes` and `pods` as the store holds them, `grants` as
    /// kept.
    fn from_objects(
        nodes: &[std::sync::Arc<Node>],
        pods: &[std::sync::Arc<Pod>],
        grants: Grants,
    ) -> Books {
        let mut registry = Registry::new();
        for node in nodes {
            let _ = registry.upsert_node(node);
        }
        let mut truth = Ledger::new();
        for pod in pods {
            let _ = truth.observe(pod);
        }
        let granted_pods = grants.pods();
        let mut held = Ledger::new();
        for pod in &granted_pods {
            let _ = held.observe(pod);
        }
        Books {
            applied: 0,
            registry,
            live: recount::recount(pods.iter().map(|p| &**p)),
            truth,
            granted: recount::recount(granted_pods.iter().copied()),
            held,
            grants,
            dirty_live: BTreeSet::new(),
            dirty_granted: BTreeSet::new(),
            all_dirty: false,
            changed_pods: BTreeSet::new(),
        }
    }

    /// The kept books against a recount from scratch of the store's objects (and of the grants):
    /// one line per difference, empty when they agree. Also checks that the grants cover exactly the
    /// running pods.
    pub fn differences(&self, store: &Store) -> Vec<String> {
        let nodes = store.typed_shared::<Node>(Resource::Nodes);
        let pods = store.typed_shared::<Pod>(Resource::Pods);
        let fresh = Books::from_objects(&nodes, &pods, self.grants.clone());
        let mut out = Vec::new();
        let kept_nodes: Vec<_> = self.registry.nodes().collect();
        let fresh_nodes: Vec<_> = fresh.registry.nodes().collect();
        if kept_nodes != fresh_nodes {
            out.push(format!(
                "the kept registry has nodes {:?}; the store's nodes register {:?}",
                names(&kept_nodes),
                names(&fresh_nodes)
            ));
        }
        out.extend(recount_differences("live pods", &self.live, &fresh.live));
        let node_names: BTreeSet<&str> = kept_nodes
            .iter()
            .chain(&fresh_nodes)
            .map(|n| n.name.as_str())
            .collect();
        out.extend(ledger_differences(
            "live pods",
            &self.truth,
            &fresh.truth,
            &node_names,
        ));
        out.extend(recount_differences("grants", &self.granted, &fresh.granted));
        out.extend(ledger_differences(
            "grants",
            &self.held,
            &fresh.held,
            &node_names,
        ));
        let running: BTreeSet<&str> = pods
            .iter()
            .filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
            .filter_map(|p| p.metadata.uid.as_deref())
            .collect();
        let granted: BTreeSet<&str> = self.grants.uids().collect();
        if running != granted {
            out.push(format!(
                "the grants are kept for pods {:?}; the running pods are {:?}",
                granted.difference(&running).collect::<Vec<_>>(),
                running.difference(&granted).collect::<Vec<_>>()
            ));
        }
        out
    }
}

fn names(nodes: &[&sliceguard::registry::RegisteredNode]) -> Vec<String> {
    nodes.iter().map(|n| n.name.clone()).collect()
}

/// Per device and per pod, where two recounts differ.
fn recount_differences(what: &str, kept: &Recount, fresh: &Recount) -> Vec<String> {
    let mut out = Vec::new();
    let devices: BTreeSet<&DeviceKey> = kept.devices.keys().chain(fresh.devices.keys()).collect();
    for device in devices {
        let (k, f) = (kept.devices.get(device), fresh.devices.get(device));
        if k != f {
            out.push(format!(
                "{what}: the kept usage of {} on {} is {:?}; recounted from scratch it is {:?}",
                device.1, device.0, k, f
            ));
        }
    }
    let pods: BTreeSet<&String> = kept.pods.keys().chain(fresh.pods.keys()).collect();
    for pod in pods {
        let (k, f) = (kept.pods.get(pod), fresh.pods.get(pod));
        if k != f {
            out.push(format!(
                "{what}: pod {pod} is kept as {k:?}; recounted from scratch it is {f:?}"
            ));
        }
    }
    if kept.undecodable != fresh.undecodable {
        out.push(format!(
            "{what}: undecodable allocations kept for {:?}; recounted {:?}",
            kept.undecodable, fresh.undecodable
        ));
    }
    out
}

/// Per pod and per device (on the pods' nodes and on `nodes`), where two ledgers differ.
fn ledger_differences(
    what: &str,
    kept: &Ledger,
    fresh: &Ledger,
    nodes: &BTreeSet<&str>,
) -> Vec<String> {
    use sliceguard::ledger::UsageSource as _;
    let mut out = Vec::new();
    let keys: BTreeSet<&str> = kept
        .entries()
        .chain(fresh.entries())
        .map(|(k, _)| k)
        .collect();
    let mut devices: BTreeSet<(&str, &str)> = BTreeSet::new();
    for key in keys {
        let (k, f) = (kept.entry(key), fresh.entry(key));
        for entry in [k, f].into_iter().flatten() {
            devices.extend(entry.usage.iter().map(|(uuid, _)| (&*entry.node, &**uuid)));
        }
        if k != f {
            out.push(format!(
                "{what}: the kept ledger counts pod {key} as {k:?}; a ledger built from scratch counts {f:?}"
            ));
        }
    }
    for node in nodes {
        for ledger in [kept, fresh] {
            devices.extend(ledger.node_devices(node).map(|(uuid, _)| (*node, uuid)));
        }
    }
    for (node, uuid) in devices {
        let (k, f) = (
            kept.device_usage(node, uuid),
            fresh.device_usage(node, uuid),
        );
        if k != f {
            out.push(format!(
                "{what}: the kept ledger has {k:?} on {uuid} of {node}; a ledger built from scratch has {f:?}"
            ));
        }
    }
    if kept.pod_count() != fresh.pod_count() {
        out.push(format!(
            "{what}: the kept ledger counts {} pods; a ledger built from scratch {}",
            kept.pod_count(),
            fresh.pod_count()
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    //! The books are checked, not trusted: a planted bookkeeping error is reported by the next
    //! recount as `books`, naming what differs, and the checks between recounts still see what a
    //! step changed.

    use crate::world::{SimConfig, World};
    use sliceguard::objects::{FleetSpec, GpuAsk, gpu_pod};

    /// A world with `pods` fractional pods bound and running on one 2-GPU node, recounting only
    /// when asked.
    fn running_world(pods: usize) -> World {
        let mut world = World::new(SimConfig {
            fleet: FleetSpec {
                nodes: 1,
                gpus_per_node: 2,
                memory_mib: 16384,
                ..FleetSpec::default()
            },
            recount_every: 0,
            ..SimConfig::default()
        });
        for i in 0..pods {
            world
                .create_pod(&gpu_pod(
                    &format!("p-{i}"),
                    &[],
                    &[GpuAsk::fraction(2000, 10)],
                ))
                .expect("admitted");
        }
        for _ in 0..(10 * pods + 10) {
            world.step();
        }
        assert_eq!(world.bound_at().len(), pods, "{:?}", world.trace());
        assert!(world.violations().is_empty(), "{:?}", world.violations());
        world
    }

    fn books_violations(world: &World) -> Vec<String> {
        world
            .violations()
            .iter()
            .filter(|v| v.invariant == "books")
            .map(|v| v.detail.clone())
            .collect()
    }

    #[test]
    fn kept_books_equal_a_recount_after_pods_come_and_go() {
        let mut world = running_world(3);
        world.delete_pod("default/p-1");
        for _ in 0..5 {
            world.step();
        }
        let recounted = {
            let core = world.core();
            world.books.differences(&core.store)
        };
        assert!(recounted.is_empty(), "{recounted:?}");
        assert_eq!(world.books.live.pods.len(), 2);
        assert_eq!(world.books.grants.pods().len(), 2);
        world.recount_and_check();
        assert!(world.violations().is_empty(), "{:?}", world.violations());
    }

    #[test]
    fn a_pod_the_books_forgot_is_reported_by_the_recount() {
        let mut world = running_world(2);
        world.books.live.remove("default/p-0");
        world.check();
        assert!(
            books_violations(&world).is_empty(),
            "only a recount compares the books"
        );
        world.recount_and_check();
        let found = books_violations(&world);
        assert!(
            found
                .iter()
                .any(|d| d.starts_with("live pods: pod default/p-0 is kept as None")),
            "{found:?}"
        );
    }

    #[test]
    fn a_disagreement_on_a_changed_pod_is_found_between_recounts() {
        let mut world = running_world(2);
        world.check();
        assert!(world.violations().is_empty(), "{:?}", world.violations());
        // The leader's view is the one compared before, so the next check compares only the pods a
        // step changed. Make the truth disagree with the leader's ledger on p-0 only, and mark p-0
        // changed, as a step that changed its annotation would: the per-pod check must see it.
        world.books.live.remove("default/p-0");
        world.books.changed_pods.insert("default/p-0".into());
        // p-1 disagrees too but is not marked changed: between recounts it is not looked at.
        world.books.live.remove("default/p-1");
        world.check();
        let agreement: Vec<String> = world
            .violations()
            .iter()
            .filter(|v| v.invariant == "agreement")
            .map(|v| v.detail.clone())
            .collect();
        assert_eq!(agreement.len(), 1, "{agreement:?}");
        assert!(agreement[0].contains("default/p-0"), "{agreement:?}");
        assert!(books_violations(&world).is_empty(), "no recount ran");
        // The recount finds both the books' error and, comparing the view whole, p-1.
        world.recount_and_check();
        assert!(!books_violations(&world).is_empty());
    }

    #[test]
    fn a_removal_the_ledger_forgot_is_reported_by_the_recount() {
        let mut world = running_world(2);
        let entry = world.books.truth.entry("default/p-0").cloned();
        world.delete_pod("default/p-0");
        world.step();
        // Plant the bug: the ledger keeps the deleted pod.
        world.books.truth.restore("default/p-0", entry);
        world.recount_and_check();
        let found = books_violations(&world);
        assert!(
            found
                .iter()
                .any(|d| d.contains("the kept ledger counts pod default/p-0 as Some")),
            "{found:?}"
        );
        // The recount rebuilt the books: the next recount finds nothing more.
        let before = world.violations().len();
        world.recount_and_check();
        assert_eq!(world.violations().len(), before, "{:?}", world.violations());
    }

    #[test]
    fn a_grant_the_books_dropped_is_reported_by_the_recount() {
        let mut world = running_world(2);
        let uid = world
            .books
            .grants
            .uids()
            .next()
            .expect("a grant")
            .to_string();
        world.books.grants = crate::tenant::Grants::default();
        world.recount_and_check();
        let found = books_violations(&world);
        assert!(
            found
                .iter()
                .any(|d| d.starts_with("the grants are kept for pods []") && d.contains(&uid)),
            "{found:?}"
        );
    }

    #[test]
    fn between_recounts_a_step_checks_the_devices_it_touched() {
        let mut world = running_world(1);
        // Over-commit a device behind the scheduler's back: the pod's allocation is rewritten to
        // more memory than the GPU has. The step's own check sees it, with no recount.
        world.with_store_mut(|store| {
            let pod = store
                .get(crate::store::Resource::Pods, Some("default"), "p-0")
                .expect("stored");
            let allocated = pod["metadata"]["annotations"]
                [sliceguard::annotations::DEVICES_ALLOCATED]
                .as_str()
                .expect("allocated")
                .replace(",2000,", ",99999,");
            let patch = serde_json::json!({"metadata": {"annotations": {
                sliceguard::annotations::DEVICES_ALLOCATED: allocated
            }}});
            store
                .patch(
                    crate::store::Resource::Pods,
                    Some("default"),
                    "p-0",
                    crate::store::Part::Main,
                    crate::store::PatchType::Merge,
                    &patch,
                )
                .expect("patched");
        });
        world.check();
        let capacity: Vec<&String> = world
            .violations()
            .iter()
            .filter(|v| v.invariant == "capacity")
            .map(|v| &v.detail)
            .collect();
        assert!(
            capacity.iter().any(|d| d.contains("Σ memory 99999 MiB")),
            "{:?}",
            world.violations()
        );
        assert!(books_violations(&world).is_empty());
    }
}
