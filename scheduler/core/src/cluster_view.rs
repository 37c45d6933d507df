//! The scheduler's picture of the cluster, fed by the pod and node watches: the node [`Registry`],
//! the usage [`Ledger`], the pods that hold GPUs (for the lock reaper's holder rules), every node
//! lock with the instant this process first saw its value, and the filter's assumptions. Pure and
//! synchronous; the shell keeps it behind a mutex and never holds that across an await.
//!
//! **Assumptions** (HAMi §4.2 steps 3 and 9): the filter records the chosen allocation before it
//! patches the pod, so a concurrent filter sees it. A watch event for that pod that does not yet
//! carry the same `hami.io/vgpu-node` and `hami.io/vgpu-devices-allocated` (an event from before the
//! patch) does not overwrite the assumption; the first event that carries them confirms it, and a
//! terminal phase or a deletion ends it.
//!
//! **Resync**: a watch restart (`Init` … `InitDone`) replaces the node or pod set, so an object
//! deleted while the watch was down is forgotten; a restarted process rebuilds everything from the
//! annotations and loses no allocation.

use crate::annotations::{BIND_PHASE, DEVICES_ALLOCATED, VGPU_NODE};
use crate::bind::{MalformedSighting, NodeLockView, PodView};
use crate::decision::{self, Decision, Fleet, PreparedPod, SchedulerSettings};
use crate::fragmentation::{FragmentationInputs, HostSource};
use crate::host_cpu::HostCpuBook;
use crate::index::PlacementIndex;
use crate::learned_workload::LearnedWorkload;
use crate::ledger::{Ledger, UndecodableAllocation, pod_key};
use crate::model::PodAllocation;
use crate::registry::{Registry, Unregistered};
use jiff::Timestamp;
use k8s_openapi::api::core::v1::{Node, Pod};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;

/// A lock value seen on a node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeenLock {
    /// The raw value.
    pub raw: String,
    /// The node's resourceVersion when it was last seen (None when learnt from a bind, not a watch).
    pub resource_version: Option<String>,
    /// When this process first saw this exact value.
    pub first_seen: Timestamp,
}

/// What a pod contributed before a re-filter took it out ([`ClusterView::take`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Taken {
    entry: Option<crate::ledger::LedgerEntry>,
    assumption: Option<Assumption>,
    /// The pod's unconfirmed filter writes, each with its ledger entry.
    unconfirmed: Vec<(Option<crate::ledger::LedgerEntry>, Unconfirmed)>,
}

/// A filter write whose answer was lost: the allocation annotation it wrote, and when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unconfirmed {
    /// The ledger key its usage is counted under: `<pod key>#unconfirmed-<n>`.
    pub ledger_key: String,
    /// The `hami.io/vgpu-devices-allocated` value the write carried.
    pub allocated: String,
    /// When the write's answer was lost.
    pub since: Timestamp,
}

/// The usage ledger and the placement index over it and the registry, kept together so that every
/// ledger change refreshes the index for the nodes it touched.
#[derive(Debug, Clone, Default)]
struct Usage {
    ledger: Ledger,
    index: PlacementIndex,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Assumption {
    node: String,
    allocated: String,
    /// The pod's CPU request, counted on `node` while the assumption stands.
    cpu_milli: u64,
}

/// Which pods the pod watch delivers, and so what the view can know.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum PodScope {
    /// Only pods labelled `hami.io/vgpu-node` (the ones that hold or are assigned GPUs): memory and
    /// traffic scale with GPU pods; host CPU is not known, so the `fragmentation` policy ignores it.
    #[default]
    Gpu,
    /// Every pod: the GPU part of the view takes the pods that carry the label or the filter's
    /// annotations (a pod that stops carrying them leaves it, as it would leave the labelled
    /// watch), and every pod's CPU request counts on its node ([`crate::host_cpu`]).
    All,
}

/// How a view is set up: the settings pods are read with, and which pods it is fed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ViewConfig {
    /// The settings the decision reads pods with (also used to learn the workload from watched
    /// pods).
    pub settings: SchedulerSettings,
    /// Which pods the pod watch delivers.
    pub pods: PodScope,
}

/// True when the pod carries what marks a GPU pod of this scheduler: the `hami.io/vgpu-node` label,
/// the filter's `hami.io/vgpu-node` or `hami.io/vgpu-devices-allocated` annotation, or the bind
/// protocol's `hami.io/bind-phase` (what the lock reaper's holder rules read).
pub fn carries_gpu_assignment(pod: &Pod) -> bool {
    let labelled = pod
        .metadata
        .labels
        .as_ref()
        .is_some_and(|l| l.contains_key(VGPU_NODE));
    labelled
        || pod.metadata.annotations.as_ref().is_some_and(|a| {
            a.contains_key(VGPU_NODE)
                || a.contains_key(DEVICES_ALLOCATED)
                || a.contains_key(BIND_PHASE)
        })
}

/// The cluster as the watches have shown it.
#[derive(Debug, Default)]
pub struct ClusterView {
    config: ViewConfig,
    /// Nodes' CPU (kept with the [`PodScope::All`] scope only).
    hosts: HostCpuBook,
    /// The workload profile learned from the pods filtered and watched.
    learned: LearnedWorkload,
    /// Pods without GPUs placed by [`ClusterView::place_cpu_pod`] whose CPU is counted on the chosen
    /// node until the watch shows them placed.
    cpu_assumed: HashSet<String>,
    registry: Registry,
    /// The usage ledger and the placement index over it and the registry, refreshed for a node on
    /// every change of its registration or usage.
    usage: Usage,
    nodes: BTreeSet<String>,
    pods: HashMap<String, PodView>,
    locks: BTreeMap<String, SeenLock>,
    assumed: HashMap<String, Assumption>,
    /// Filter writes whose answer was lost, per pod in the order they were sent: each counted (under
    /// its own `<key>#unconfirmed-<n>`) until the watch shows the pod carrying it or a later one,
    /// the pod is deleted, the pods are re-listed, or a read of the pod long enough after the write
    /// shows that it did not land ([`ClusterView::settle_unconfirmed`]). Every write is kept: after
    /// two lost writes either may be the one on the API.
    unconfirmed: HashMap<String, Vec<Unconfirmed>>,
    /// Numbers the unconfirmed writes' ledger keys.
    unconfirmed_serial: u64,
    nodes_synced: bool,
    pods_synced: bool,
    /// The nodes listed so far by a (re)list in progress.
    node_relist: Option<HashSet<String>>,
    /// The pods listed so far by a (re)list in progress.
    pod_relist: Option<HashSet<String>>,
}

impl ClusterView {
    /// An empty view, not synced, with the default settings, fed only GPU pods ([`PodScope::Gpu`]).
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty view, not synced, set up as `config` says.
    pub fn configured(config: ViewConfig) -> Self {
        ClusterView {
            config,
            ..Self::default()
        }
    }

    /// A new leadership term: an empty view with the same setup that keeps the learned workload
    /// (the watches ran throughout the previous term; see [`crate::learned_workload`]).
    pub fn next_term(&mut self) {
        let learned = std::mem::take(&mut self.learned);
        *self = ClusterView {
            learned,
            ..ClusterView::configured(self.config.clone())
        };
    }

    /// How this view is set up.
    pub fn config(&self) -> &ViewConfig {
        &self.config
    }

    /// True when nodes' CPU is tracked ([`PodScope::All`]).
    fn tracks_host_cpu(&self) -> bool {
        self.config.pods == PodScope::All
    }

    /// Nodes' CPU as the watches show it, when tracked ([`PodScope::All`]).
    pub fn hosts(&self) -> Option<&HostCpuBook> {
        self.tracks_host_cpu().then_some(&self.hosts)
    }

    /// The workload learned so far.
    pub fn learned(&self) -> &LearnedWorkload {
        &self.learned
    }

    /// The filter is asked to place `pod` (`key`, `uid`): it counts in the learned workload, once.
    pub fn learn_from_filter(&mut self, key: &str, uid: &str, pod: &PreparedPod) {
        self.learned.observe(key, uid, pod);
    }

    /// A watched pod counts in the learned workload on first sight (pods without GPUs do not).
    fn learn_from_watch(&mut self, key: &str, pod: &Pod) {
        let uid = pod.metadata.uid.as_deref().unwrap_or_default();
        if self.learned.has_counted(key, uid) {
            return;
        }
        if let Ok(prepared) = decision::prepare(pod, &self.config.settings) {
            self.learned.observe(key, uid, &prepared);
        }
    }

    /// Changes the host CPU book through `change`, then has the placement index forget its
    /// `fragmentation` verdicts on every node whose CPU that changed (the verdicts depend on it;
    /// see [`crate::score_memo`]): `node`, and the nodes pod `pod` counts on before and after.
    fn change_hosts<R>(
        &mut self,
        pod: Option<&str>,
        node: Option<&str>,
        change: impl FnOnce(&mut HostCpuBook) -> R,
    ) -> R {
        let mut watched: Vec<(Arc<str>, Option<crate::host_cpu::NodeCpu>)> = node
            .map(Arc::from)
            .into_iter()
            .chain(pod.and_then(|key| self.hosts.pod_node(key)))
            .map(|name| {
                let before = self.hosts.node(&name);
                (name, before)
            })
            .collect();
        let result = change(&mut self.hosts);
        if let Some(after) = pod.and_then(|key| self.hosts.pod_node(key))
            && !watched.iter().any(|(name, _)| *name == after)
        {
            // The pod counts there now and did not before.
            watched.push((after, None));
        }
        for (name, before) in watched {
            if self.hosts.node(&name) != before {
                self.usage.index.forget_verdicts(&name);
            }
        }
        result
    }

    /// Records an assumption, counting the pod's CPU on its node.
    fn put_assumption(&mut self, key: &str, assumption: Assumption) {
        if self.tracks_host_cpu() {
            self.change_hosts(Some(key), None, |hosts| {
                hosts.assume(key, &assumption.node, assumption.cpu_milli)
            });
        }
        self.assumed.insert(key.to_string(), assumption);
    }

    /// Ends an assumption: the pod's CPU counts where the watch shows it.
    fn drop_assumption(&mut self, key: &str) {
        self.assumed.remove(key);
        // The GPU scope's book is empty: unassuming there changes nothing.
        self.change_hosts(Some(key), None, |hosts| hosts.unassume(key));
    }

    /// The node registry.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The usage ledger.
    pub fn ledger(&self) -> &Ledger {
        &self.usage.ledger
    }

    /// What a decision reads: the registry, the ledger and the placement index over them.
    pub fn fleet(&self) -> Fleet<'_, Ledger> {
        Fleet::indexed(&self.registry, &self.usage.ledger, &self.usage.index)
    }

    /// Where `pod` goes among the `offered` nodes at `now`, on what this view holds: the decision
    /// `serve`'s filter takes (see [`crate::decision`]), with the learned workload and, when
    /// tracked, nodes' CPU.
    pub fn decide(&self, pod: &PreparedPod, offered: &[String], now: Timestamp) -> Decision {
        decision::decide(
            self.fleet(),
            pod,
            offered,
            now,
            self.fragmentation_inputs(pod),
        )
    }

    /// Where a pod without GPUs (`key`, read as `pod`) goes among `offered` when it is routed to
    /// sliceguard ([`crate::fragmentation::place_cpu_pod`]: where its CPU strands the fewest GPUs of
    /// the learned workload). Its CPU counts on the chosen node from now until the watch shows it
    /// placed. `None` when nothing is offered.
    pub fn place_cpu_pod(
        &mut self,
        key: &str,
        pod: &PreparedPod,
        offered: &[String],
    ) -> Option<String> {
        let (node, _) = crate::fragmentation::place_cpu_pod(
            &self.registry,
            &self.usage.ledger,
            &self.hosts,
            Some(self.learned.profile()),
            pod.cpu_milli,
            offered,
        )?;
        if self.tracks_host_cpu() {
            self.change_hosts(Some(key), None, |hosts| {
                hosts.assume(key, &node, pod.cpu_milli)
            });
            self.cpu_assumed.insert(key.to_string());
        }
        Some(node)
    }

    /// What the `fragmentation` policy reads of this view for `pod`.
    pub fn fragmentation_inputs(&self, pod: &PreparedPod) -> FragmentationInputs<'_> {
        FragmentationInputs {
            profile: Some(self.learned.profile()),
            hosts: self.hosts().map(|h| h as &dyn HostSource),
            pod_cpu_milli: pod.cpu_milli,
            ..FragmentationInputs::default()
        }
    }

    /// The `fragmentation` verdicts the index remembers that the fit would no longer give on this
    /// view (see [`crate::scan::stale_verdicts`]): empty unless a change of a node reached the view
    /// without refreshing the index. For checkers; it evaluates every remembered verdict again.
    pub fn stale_memo_verdicts(&self) -> Vec<crate::scan::StaleVerdict> {
        crate::scan::stale_verdicts(
            self.fleet(),
            Some(self.learned.profile()),
            self.hosts().map(|h| h as &dyn HostSource),
        )
    }

    /// The nodes the placement index holds otherwise than this view's registry and ledger (see
    /// [`PlacementIndex::lagging_nodes`]): empty unless a change of a node reached the view
    /// without refreshing the index. For checkers; it builds the index again.
    pub fn lagging_index_nodes(&self) -> Vec<crate::index::LaggingNode> {
        self.usage
            .index
            .lagging_nodes(&self.registry, &self.usage.ledger)
    }

    /// The placement index over the registry and the ledger.
    pub fn index(&self) -> &PlacementIndex {
        &self.usage.index
    }

    /// Changes the ledger through `change` and refreshes the index for every node that the pods
    /// `keys` were counted on, before or after.
    fn change_ledger<R>(&mut self, keys: &[&str], change: impl FnOnce(&mut Ledger) -> R) -> R {
        let nodes_of = |ledger: &Ledger| -> Vec<Arc<str>> {
            keys.iter()
                .filter_map(|k| ledger.entry(k).map(|e| e.node.clone()))
                .collect()
        };
        let mut touched = nodes_of(&self.usage.ledger);
        let result = change(&mut self.usage.ledger);
        touched.extend(nodes_of(&self.usage.ledger));
        touched.sort_unstable();
        touched.dedup();
        for node in touched {
            self.usage
                .index
                .refresh(&node, &self.registry, &self.usage.ledger);
        }
        result
    }

    fn refresh_node(&mut self, name: &str) {
        self.usage
            .index
            .refresh(name, &self.registry, &self.usage.ledger);
    }

    /// True once both watches have listed everything.
    pub fn is_synced(&self) -> bool {
        self.nodes_synced && self.pods_synced
    }

    /// Which watches have listed everything: (nodes, pods).
    pub fn sync_state(&self) -> (bool, bool) {
        (self.nodes_synced, self.pods_synced)
    }

    /// A node added or changed. Returns why it is not registered, if it is not.
    pub fn apply_node(&mut self, node: &Node, now: Timestamp) -> Result<(), Unregistered> {
        let name = node.metadata.name.clone().unwrap_or_default();
        self.nodes.insert(name.clone());
        let view = NodeLockView::from_node(node);
        match view.lock {
            None => {
                self.locks.remove(&name);
            }
            Some(raw) => {
                let first_seen = match self.locks.get(&name) {
                    Some(seen) if seen.raw == raw => seen.first_seen,
                    _ => now,
                };
                self.locks.insert(
                    name.clone(),
                    SeenLock {
                        raw,
                        resource_version: Some(view.resource_version),
                        first_seen,
                    },
                );
            }
        }
        if self.tracks_host_cpu() {
            self.change_hosts(None, Some(&name), |hosts| hosts.apply_node(node));
        }
        let registered = self.registry.upsert_node(node);
        self.refresh_node(&name);
        registered
    }

    /// A node deleted.
    pub fn delete_node(&mut self, name: &str) {
        self.nodes.remove(name);
        self.locks.remove(name);
        self.change_hosts(None, Some(name), |hosts| hosts.delete_node(name));
        self.registry.remove(name);
        self.refresh_node(name);
    }

    /// The node watch (re)listed everything: replace the node set. Returns the unregistered nodes.
    pub fn replace_nodes(&mut self, nodes: &[Node], now: Timestamp) -> Vec<(String, Unregistered)> {
        self.begin_node_relist();
        let problems = nodes
            .iter()
            .filter_map(|node| {
                self.relist_node(node, now)
                    .err()
                    .map(|problem| (node.metadata.name.clone().unwrap_or_default(), problem))
            })
            .collect();
        self.finish_node_relist();
        problems
    }

    /// The node watch starts a (re)list: nodes it does not list by
    /// [`ClusterView::finish_node_relist`] are dropped then. Listed nodes are applied as they arrive
    /// ([`ClusterView::relist_node`]), so a 20,000-node list is never held whole: each listed object
    /// only moves the view forward, and the nodes deleted meanwhile go at the end, as before the list.
    pub fn begin_node_relist(&mut self) {
        self.node_relist = Some(HashSet::new());
    }

    /// One node of a (re)list.
    pub fn relist_node(&mut self, node: &Node, now: Timestamp) -> Result<(), Unregistered> {
        if let (Some(listed), Some(name)) = (&mut self.node_relist, &node.metadata.name) {
            listed.insert(name.clone());
        }
        self.apply_node(node, now)
    }

    /// The (re)list is complete: drop the nodes it did not list; the node set is synced.
    pub fn finish_node_relist(&mut self) {
        let listed = self.node_relist.take().unwrap_or_default();
        let gone: Vec<String> = self
            .nodes
            .iter()
            .filter(|n| !listed.contains(*n))
            .cloned()
            .collect();
        for name in gone {
            self.delete_node(&name);
        }
        self.nodes_synced = true;
    }

    /// A pod added or changed. With the [`PodScope::All`] scope, its CPU counts on its node, and
    /// only a pod that [`carries_gpu_assignment`] reaches the GPU part of the view (one that stops
    /// carrying it leaves, as from the labelled watch).
    pub fn apply_pod(&mut self, pod: &Pod) -> Result<(), UndecodableAllocation> {
        let key = pod_key(pod);
        self.learn_from_watch(&key, pod);
        if !self.tracks_host_cpu() {
            return self.apply_gpu_pod(key, pod);
        }
        self.change_hosts(Some(&key), None, |hosts| hosts.apply_pod(&key, pod));
        if crate::host_cpu::pod_placement(pod).is_some() && self.cpu_assumed.remove(&key) {
            self.change_hosts(Some(&key), None, |hosts| hosts.unassume(&key));
        }
        if carries_gpu_assignment(pod) {
            self.apply_gpu_pod(key, pod)
        } else {
            if self.pods.contains_key(&key) {
                self.forget_gpu_pod(&key);
            }
            Ok(())
        }
    }

    /// The GPU part of [`ClusterView::apply_pod`].
    fn apply_gpu_pod(&mut self, key: String, pod: &Pod) -> Result<(), UndecodableAllocation> {
        let view = PodView::from_pod(pod);
        let terminal = matches!(view.phase.as_deref(), Some("Succeeded" | "Failed"));
        self.pods.insert(key.clone(), view);
        let carried = pod
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(DEVICES_ALLOCATED));
        if let Some(writes) = self.unconfirmed.get(&key)
            && let Some(landed) = writes.iter().rposition(|w| Some(&w.allocated) == carried)
        {
            // The pod carries this write: it and every earlier one are settled (writes are sent
            // one after another, so the earlier ones were overwritten or never landed).
            let settled: Vec<Unconfirmed> = writes[..=landed].to_vec();
            for write in &settled {
                self.drop_unconfirmed(&key, write);
            }
            // Every unconfirmed write was sent after the pod's assumption (a filter whose write is
            // answered drops the earlier ones), so one that landed replaced it: the pod holds what
            // this event carries. Kept, the assumption would stand for the allocation the pod no
            // longer holds and the one it does hold would not count (a lost re-filter write that
            // the watch delivers).
            self.drop_assumption(&key);
        }
        if let Some(assumption) = self.assumed.get(&key) {
            let annotations = pod.metadata.annotations.as_ref();
            let carries = annotations.is_some_and(|a| {
                a.get(VGPU_NODE) == Some(&assumption.node)
                    && a.get(DEVICES_ALLOCATED) == Some(&assumption.allocated)
            });
            if !carries && !terminal {
                // An event from before the filter's patch: keep the assumption.
                return Ok(());
            }
            self.drop_assumption(&key);
        }
        self.change_ledger(&[&key], |ledger| ledger.observe(pod).map(|_| ()))
    }

    /// A pod deleted.
    pub fn delete_pod(&mut self, pod: &Pod) {
        let key = pod_key(pod);
        self.learned.forget(&key);
        if self.tracks_host_cpu() {
            self.change_hosts(Some(&key), None, |hosts| hosts.delete_pod(&key));
            self.cpu_assumed.remove(&key);
        }
        self.forget_gpu_pod(&key);
    }

    /// Drops everything the GPU part of the view holds for the pod.
    fn forget_gpu_pod(&mut self, key: &str) {
        self.pods.remove(key);
        self.drop_assumption(key);
        self.change_ledger(&[key], |ledger| ledger.remove(key));
        self.clear_unconfirmed(key);
    }

    /// The pod watch (re)listed everything: replace the pod set. Returns the pods whose allocation
    /// does not decode (left out of the ledger).
    pub fn replace_pods(&mut self, pods: &[Pod]) -> Vec<UndecodableAllocation> {
        self.begin_pod_relist();
        let problems = pods
            .iter()
            .filter_map(|p| self.relist_pod(p).err())
            .collect();
        self.finish_pod_relist();
        problems
    }

    /// The pod watch starts a (re)list; as [`ClusterView::begin_node_relist`], listed pods are
    /// applied as they arrive and the ones not listed are dropped at the end.
    pub fn begin_pod_relist(&mut self) {
        self.pod_relist = Some(HashSet::new());
    }

    /// One pod of a (re)list.
    pub fn relist_pod(&mut self, pod: &Pod) -> Result<(), UndecodableAllocation> {
        if let Some(listed) = &mut self.pod_relist {
            listed.insert(pod_key(pod));
        }
        self.apply_pod(pod)
    }

    /// The (re)list is complete: drop every pod, assumption and usage it did not list, and every
    /// unconfirmed write (the list showed what landed); the pod set is synced.
    pub fn finish_pod_relist(&mut self) {
        let listed = self.pod_relist.take().unwrap_or_default();
        let gone: BTreeSet<String> = self
            .pods
            .keys()
            .map(String::as_str)
            .chain(self.usage.ledger.entries().map(|(k, _)| k))
            .chain(self.assumed.keys().map(String::as_str))
            .filter(|k| !listed.contains(*k) && !k.contains("#unconfirmed-"))
            .map(String::from)
            .collect();
        for key in gone {
            self.pods.remove(&key);
            self.drop_assumption(&key);
            self.change_ledger(&[&key], |ledger| ledger.remove(&key));
        }
        if self.tracks_host_cpu() {
            // Every pod was listed: what the list did not show is gone.
            let before = self.hosts.clone();
            self.hosts.retain_pods(|key| listed.contains(key));
            for name in before.node_names() {
                if self.hosts.node(name) != before.node(name) {
                    self.usage.index.forget_verdicts(name);
                }
            }
            self.cpu_assumed.retain(|key| listed.contains(key));
            self.learned
                .retain_listed(listed.iter().map(String::as_str));
        }
        for key in self.unconfirmed.keys().cloned().collect::<Vec<_>>() {
            self.clear_unconfirmed(&key);
        }
        // The typical workload of a restarted scheduler is that of the pods listed, whatever
        // their order (the profile derives it again only on drift; see `ProfileRefresh`).
        self.learned.derive_now();
        self.pods_synced = true;
    }

    /// Drops whatever the pod contributes before a new filter (HAMi's `TakeAndDeletePod`), and
    /// returns it so that a filter whose annotation patch fails can put it back
    /// ([`ClusterView::restore`]): the API still carries the pod's previous annotations then, and
    /// dropping their usage would let another pod be placed on the same devices (found by the
    /// simulated cluster's fault campaign: a 500 on the re-filter's patch).
    pub fn take(&mut self, key: &str) -> Taken {
        let unconfirmed = self
            .unconfirmed
            .get(key)
            .into_iter()
            .flatten()
            .map(|write| {
                let entry = self.usage.ledger.entry(&write.ledger_key).cloned();
                (entry, write.clone())
            })
            .collect();
        let taken = Taken {
            entry: self.usage.ledger.entry(key).cloned(),
            assumption: self.assumed.get(key).cloned(),
            unconfirmed,
        };
        self.unassume(key);
        self.clear_unconfirmed(key);
        taken
    }

    /// A filter write whose answer was lost may have landed: keep counting the allocation it wrote,
    /// beside what the pod held before, until the watch settles it (see the `unconfirmed` field).
    pub fn note_unconfirmed(
        &mut self,
        key: &str,
        node: &str,
        allocation: &PodAllocation,
        allocated: &str,
        now: Timestamp,
    ) {
        self.unconfirmed_serial += 1;
        let ledger_key = format!("{key}#unconfirmed-{}", self.unconfirmed_serial);
        self.change_ledger(&[&ledger_key], |ledger| {
            ledger.upsert(&ledger_key, node, allocation)
        });
        self.unconfirmed
            .entry(key.to_string())
            .or_default()
            .push(Unconfirmed {
                ledger_key,
                allocated: allocated.to_string(),
                since: now,
            });
    }

    /// The unconfirmed writes old enough to settle by reading their pod: lost at least `age` ago, by
    /// pod, each pod's in the order they were sent.
    pub fn unconfirmed_older_than(
        &self,
        age: jiff::SignedDuration,
        now: Timestamp,
    ) -> Vec<(String, Unconfirmed)> {
        let mut out: Vec<(String, Unconfirmed)> = self
            .unconfirmed
            .iter()
            .flat_map(|(k, writes)| writes.iter().map(move |w| (k, w)))
            .filter(|(_, w)| now.duration_since(w.since) >= age)
            .map(|(k, w)| (k.clone(), w.clone()))
            .collect();
        // By pod; a pod's writes stay in the order they were sent (the sort is stable).
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// What a read of the pod showed about its unconfirmed write `write`: `Some(value)` is the pod's
    /// allocation annotation now, `None` that the pod is gone. A write that did not land is dropped
    /// (without this, lost writes that never land hold their devices for good, and pods blocked by
    /// each other's stay Pending: the 200 x 2000 fault campaign, seed 194). A write that landed
    /// stays counted until the watch delivers it. Nothing changes if the write was replaced since.
    pub fn settle_unconfirmed(&mut self, key: &str, write: &Unconfirmed, seen: Option<&str>) {
        if seen != Some(write.allocated.as_str()) {
            self.drop_unconfirmed(key, write);
        }
    }

    /// Stops counting one unconfirmed write (nothing if it is no longer there).
    fn drop_unconfirmed(&mut self, key: &str, write: &Unconfirmed) {
        let Some(writes) = self.unconfirmed.get_mut(key) else {
            return;
        };
        let before = writes.len();
        writes.retain(|w| w.ledger_key != write.ledger_key);
        if writes.len() == before {
            return;
        }
        if writes.is_empty() {
            self.unconfirmed.remove(key);
        }
        let ledger_key = write.ledger_key.clone();
        self.change_ledger(&[&ledger_key], |ledger| ledger.remove(&ledger_key));
    }

    /// Stops counting every unconfirmed write of the pod.
    fn clear_unconfirmed(&mut self, key: &str) {
        for write in self.unconfirmed.remove(key).unwrap_or_default() {
            let ledger_key = write.ledger_key;
            self.change_ledger(&[&ledger_key], |ledger| ledger.remove(&ledger_key));
        }
    }

    /// Puts back what [`ClusterView::take`] returned, replacing any assumption made since. An
    /// unconfirmed write comes back too: a re-filter that places nothing leaves the API as it was,
    /// and the lost write may still be on it (found by the 200 x 2000 fault campaign, seed 149: the
    /// lost patch's devices were handed to an exclusive pod while the watch was down).
    pub fn restore(&mut self, key: &str, taken: Taken) {
        self.unassume(key);
        self.change_ledger(&[key], |ledger| ledger.restore(key, taken.entry));
        if let Some(assumption) = taken.assumption {
            self.put_assumption(key, assumption);
        }
        for (entry, write) in taken.unconfirmed {
            let ledger_key = write.ledger_key.clone();
            self.change_ledger(&[&ledger_key], |ledger| ledger.restore(&ledger_key, entry));
            self.unconfirmed
                .entry(key.to_string())
                .or_default()
                .push(write);
        }
    }

    /// Drops whatever the pod contributes (HAMi's `TakeAndDeletePod` before a new filter).
    pub fn unassume(&mut self, key: &str) {
        self.drop_assumption(key);
        self.change_ledger(&[key], |ledger| ledger.remove(key));
    }

    /// Records the filter's choice before the pod is patched. `allocated` is the
    /// `hami.io/vgpu-devices-allocated` value being written; `cpu_milli` the pod's CPU request,
    /// counted on `node` from now on.
    pub fn assume(
        &mut self,
        key: &str,
        node: &str,
        allocation: &PodAllocation,
        allocated: &str,
        cpu_milli: u64,
    ) {
        self.change_ledger(&[key], |ledger| ledger.upsert(key, node, allocation));
        self.put_assumption(
            key,
            Assumption {
                node: node.to_string(),
                allocated: allocated.to_string(),
                cpu_milli,
            },
        );
    }

    /// True while the filter's choice for this pod awaits its watch event.
    pub fn is_assumed(&self, key: &str) -> bool {
        self.assumed.contains_key(key)
    }

    /// A watched pod by `namespace/name`.
    pub fn pod(&self, key: &str) -> Option<&PodView> {
        self.pods.get(key)
    }

    /// Every node lock seen, by node.
    pub fn locks(&self) -> &BTreeMap<String, SeenLock> {
        &self.locks
    }

    /// What a binder should remember about the node's lock value (its first sighting).
    pub fn sighting(&self, node: &str) -> Option<MalformedSighting> {
        self.locks.get(node).map(|seen| MalformedSighting {
            node: node.to_string(),
            value: seen.raw.clone(),
            first_seen: seen.first_seen,
        })
    }

    /// A binder saw a (malformed) lock value: keep the earliest sighting of that value.
    pub fn note_sighting(&mut self, sighting: &MalformedSighting) {
        match self.locks.get_mut(&sighting.node) {
            Some(seen) if seen.raw == sighting.value => {
                seen.first_seen = seen.first_seen.min(sighting.first_seen);
            }
            Some(_) => {}
            None => {
                self.locks.insert(
                    sighting.node.clone(),
                    SeenLock {
                        raw: sighting.value.clone(),
                        resource_version: None,
                        first_seen: sighting.first_seen,
                    },
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::annotations::{NODE_LOCK, NODE_REGISTER};
    use k8s_openapi::api::core::v1::PodStatus;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn t(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn node(name: &str, rv: &str, lock: Option<&str>) -> Node {
        let mut annotations = BTreeMap::from([(
            NODE_REGISTER.to_string(),
            r#"[{"id":"GPU-0","count":10,"devmem":1000,"devcore":100,"type":"NVIDIA-X","health":true}]"#
                .to_string(),
        )]);
        if let Some(l) = lock {
            annotations.insert(NODE_LOCK.into(), l.into());
        }
        Node {
            metadata: ObjectMeta {
                name: Some(name.into()),
                resource_version: Some(rv.into()),
                annotations: Some(annotations),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    fn pod(name: &str, annos: &[(&str, &str)]) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("ns".into()),
                annotations: Some(
                    annos
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect(),
                ),
                ..Default::default()
            },
            // A GPU request: only such a pod may hold an allocation.
            spec: crate::objects::gpu_pod(name, &[], &[crate::objects::GpuAsk::fraction(1, 1)])
                .spec,
            ..Default::default()
        }
    }

    #[test]
    fn lock_first_sighting_survives_updates_of_the_same_value() {
        let mut v = ClusterView::new();
        v.apply_node(&node("n1", "1", Some("lock")), t("2025-01-01T00:00:00Z"))
            .unwrap();
        v.apply_node(&node("n1", "2", Some("lock")), t("2025-01-01T00:03:00Z"))
            .unwrap();
        let seen = &v.locks()["n1"];
        assert_eq!(seen.first_seen, t("2025-01-01T00:00:00Z"));
        assert_eq!(seen.resource_version.as_deref(), Some("2"));
        v.apply_node(&node("n1", "3", Some("other")), t("2025-01-01T00:04:00Z"))
            .unwrap();
        assert_eq!(v.locks()["n1"].first_seen, t("2025-01-01T00:04:00Z"));
        v.apply_node(&node("n1", "4", None), t("2025-01-01T00:05:00Z"))
            .unwrap();
        assert!(v.locks().is_empty());
        assert_eq!(v.registry().len(), 1);
    }

    #[test]
    fn relists_forget_what_disappeared() {
        let mut v = ClusterView::new();
        let now = t("2025-01-01T00:00:00Z");
        v.apply_node(&node("n1", "1", Some("lock")), now).unwrap();
        v.apply_node(&node("n2", "1", None), now).unwrap();
        let a = pod(
            "a",
            &[
                (VGPU_NODE, "n1"),
                (DEVICES_ALLOCATED, "GPU-0,NVIDIA,100,10:;"),
            ],
        );
        v.apply_pod(&a).unwrap();
        assert!(!v.is_synced());
        v.replace_nodes(&[node("n2", "2", None)], now);
        assert!(v.registry().get("n1").is_none() && v.locks().is_empty());
        v.replace_pods(&[]);
        assert!(v.is_synced());
        assert_eq!(v.ledger().pod_count(), 0);
        assert!(v.pod("ns/a").is_none());
    }

    #[test]
    fn assumptions_survive_stale_events_and_end_on_confirmation_or_termination() {
        let mut v = ClusterView::new();
        let allocated = "GPU-0,NVIDIA,100,10:;";
        let decoded = crate::codec::pod_devices::parse(allocated).unwrap();
        let allocation = PodAllocation::from_pod_devices(decoded, 0);
        v.assume("ns/a", "n1", &allocation, allocated, 0);
        assert_eq!(v.ledger().pod_count(), 1);
        // An event from before the patch does not erase it.
        v.apply_pod(&pod("a", &[])).unwrap();
        assert!(v.is_assumed("ns/a"));
        assert_eq!(v.ledger().pod_count(), 1);
        // The patched pod confirms it.
        let patched = pod("a", &[(VGPU_NODE, "n1"), (DEVICES_ALLOCATED, allocated)]);
        v.apply_pod(&patched).unwrap();
        assert!(!v.is_assumed("ns/a"));
        assert_eq!(v.ledger().pod_count(), 1);

        // A terminal pod ends an assumption even without the annotations.
        v.assume("ns/b", "n1", &allocation, allocated, 0);
        let mut done = pod("b", &[]);
        done.status = Some(PodStatus {
            phase: Some("Failed".into()),
            ..Default::default()
        });
        v.apply_pod(&done).unwrap();
        assert!(!v.is_assumed("ns/b"));
        assert!(v.ledger().entry("ns/b").is_none());

        // A deletion ends it too; unassume drops the usage.
        v.assume("ns/c", "n1", &allocation, allocated, 0);
        v.delete_pod(&pod("c", &[]));
        assert!(v.ledger().entry("ns/c").is_none());
        v.unassume("ns/a");
        assert_eq!(v.ledger().pod_count(), 0);
    }

    #[test]
    fn synced_needs_both_lists_in_either_order() {
        let now = t("2025-01-01T00:00:00Z");
        let mut nodes_first = ClusterView::new();
        assert_eq!(nodes_first.sync_state(), (false, false));
        nodes_first.replace_nodes(&[node("n1", "1", None)], now);
        assert_eq!(nodes_first.sync_state(), (true, false));
        assert!(!nodes_first.is_synced());
        nodes_first.replace_pods(&[]);
        assert_eq!(nodes_first.sync_state(), (true, true));
        assert!(nodes_first.is_synced());

        let mut pods_first = ClusterView::new();
        pods_first.replace_pods(&[]);
        assert_eq!(pods_first.sync_state(), (false, true));
        assert!(!pods_first.is_synced());
    }

    /// The coherence checkers read this view's own registry, ledger and index: nothing while every
    /// change goes through the view; the node whose usage changed behind the index's back (which
    /// only code inside the view can do) once it does, in both.
    #[test]
    fn the_coherence_checkers_read_this_view() {
        use crate::annotations::GPU_SCHEDULER_POLICY;
        use crate::model::ContainerDevice;
        let now = t("2025-01-01T00:00:00Z");
        let mut v = ClusterView::new();
        v.apply_node(&node("n1", "1", None), now).unwrap();
        v.apply_node(&node("n2", "1", None), now).unwrap();
        let request = decision::prepare(
            &pod("p", &[(GPU_SCHEDULER_POLICY, "fragmentation")]),
            &SchedulerSettings::default(),
        )
        .unwrap();
        let offered = vec!["n1".to_string(), "n2".to_string()];
        assert!(matches!(
            v.decide(&request, &offered, now).outcome,
            crate::outcome::Outcome::Scheduled { .. }
        ));
        assert_eq!(v.index().score_memo().len(), 2);
        assert!(v.stale_memo_verdicts().is_empty());
        assert!(v.lagging_index_nodes().is_empty());

        let all_of_gpu_0 = PodAllocation {
            init: vec![],
            app: vec![vec![ContainerDevice {
                uuid: "GPU-0".into(),
                backend: "NVIDIA".into(),
                usedmem: 1000,
                usedcores: 100,
            }]],
        };
        v.usage.ledger.upsert("ns/other", "n1", &all_of_gpu_0);
        let lagging = v.lagging_index_nodes();
        assert_eq!(lagging.len(), 1, "{lagging:?}");
        assert_eq!(lagging[0].node, "n1");
        assert!(
            lagging[0]
                .difference
                .starts_with("device 0 indexed as 0 tasks"),
            "{}",
            lagging[0]
        );
        let stale = v.stale_memo_verdicts();
        assert_eq!(stale.len(), 1, "{stale:?}");
        assert_eq!(stale[0].node, "n1");
        assert!(stale[0].remembered.is_ok() && stale[0].now.is_err());
    }

    #[test]
    fn the_index_follows_applied_and_deleted_nodes() {
        let now = t("2025-01-01T00:00:00Z");
        let mut v = ClusterView::new();
        v.apply_node(&node("n1", "1", None), now).unwrap();
        v.apply_node(&node("n2", "1", None), now).unwrap();
        assert_eq!(v.index().len(), 2, "every registered node is indexed");
        let request = crate::decision::prepare(
            &pod("p", &[]),
            &crate::decision::SchedulerSettings::default(),
        )
        .unwrap();
        let offered = vec!["n2".to_string()];
        assert!(
            matches!(v.decide(&request, &offered, now).outcome, crate::outcome::Outcome::Scheduled { ref node, .. } if node == "n2"),
            "a node applied is placeable at once"
        );
        v.delete_node("n2");
        assert_eq!(v.index().len(), 1);
        assert!(!matches!(
            v.decide(&request, &offered, now).outcome,
            crate::outcome::Outcome::Scheduled { .. }
        ));
    }

    #[test]
    fn an_event_carrying_the_assumed_node_but_other_devices_keeps_the_assumption() {
        let mut v = ClusterView::new();
        let allocated = "GPU-0,NVIDIA,100,10:;";
        let decoded = crate::codec::pod_devices::parse(allocated).unwrap();
        let allocation = PodAllocation::from_pod_devices(decoded, 0);
        v.assume("ns/a", "n1", &allocation, allocated, 0);
        // An earlier filter's write (same node, other devices) is not the assumed decision.
        let earlier = pod(
            "a",
            &[
                (VGPU_NODE, "n1"),
                (DEVICES_ALLOCATED, "GPU-1,NVIDIA,100,10:;"),
            ],
        );
        v.apply_pod(&earlier).unwrap();
        assert!(v.is_assumed("ns/a"));
        // So is a write on another node with the same devices string.
        let elsewhere = pod("a", &[(VGPU_NODE, "n2"), (DEVICES_ALLOCATED, allocated)]);
        v.apply_pod(&elsewhere).unwrap();
        assert!(v.is_assumed("ns/a"));
        assert_eq!(v.ledger().entry("ns/a").map(|e| &*e.node), Some("n1"));
    }

    #[test]
    fn a_deleted_pod_takes_its_unconfirmed_writes_with_it() {
        let now = t("2025-01-01T00:00:00Z");
        let mut v = ClusterView::new();
        let allocated = "GPU-0,NVIDIA,100,10:;";
        let decoded = crate::codec::pod_devices::parse(allocated).unwrap();
        let allocation = PodAllocation::from_pod_devices(decoded, 0);
        v.apply_pod(&pod("a", &[])).unwrap();
        assert!(v.pod("ns/a").is_some(), "a watched pod is kept");
        v.note_unconfirmed("ns/a", "n1", &allocation, allocated, now);
        assert_eq!(v.ledger().pod_count(), 1, "an unconfirmed write counts");
        v.delete_pod(&pod("a", &[]));
        assert_eq!(v.ledger().pod_count(), 0);
        assert!(
            v.unconfirmed_older_than(jiff::SignedDuration::ZERO, now)
                .is_empty()
        );
        assert!(v.pod("ns/a").is_none());
    }

    #[test]
    fn a_sighting_of_another_value_leaves_the_current_lock_alone() {
        let mut v = ClusterView::new();
        v.apply_node(&node("n1", "5", Some("lock")), t("2025-01-01T00:03:00Z"))
            .unwrap();
        v.note_sighting(&MalformedSighting {
            node: "n1".into(),
            value: "other".into(),
            first_seen: t("2025-01-01T00:01:00Z"),
        });
        let seen = v.sighting("n1").unwrap();
        assert_eq!(
            (seen.value.as_str(), seen.first_seen),
            ("lock", t("2025-01-01T00:03:00Z"))
        );
    }

    #[test]
    fn sightings_keep_the_earliest_time() {
        let mut v = ClusterView::new();
        let s = MalformedSighting {
            node: "n1".into(),
            value: "lock".into(),
            first_seen: t("2025-01-01T00:02:00Z"),
        };
        v.note_sighting(&s);
        v.apply_node(&node("n1", "5", Some("lock")), t("2025-01-01T00:03:00Z"))
            .unwrap();
        assert_eq!(v.sighting("n1").unwrap().first_seen, s.first_seen);
        v.note_sighting(&MalformedSighting {
            first_seen: t("2025-01-01T00:01:00Z"),
            ..s.clone()
        });
        assert_eq!(
            v.sighting("n1").unwrap().first_seen,
            t("2025-01-01T00:01:00Z")
        );
        assert_eq!(v.locks()["n1"].resource_version.as_deref(), Some("5"));
    }

    // ---- the all-pods scope: host CPU, the learned workload ----

    fn all_pods() -> ClusterView {
        ClusterView::configured(ViewConfig {
            settings: SchedulerSettings::default(),
            pods: PodScope::All,
        })
    }

    fn cpu_node(name: &str, cpu: &str) -> Node {
        let mut n = node(name, "1", None);
        n.status = Some(k8s_openapi::api::core::v1::NodeStatus {
            allocatable: Some(BTreeMap::from([(
                "cpu".to_string(),
                k8s_openapi::apimachinery::pkg::api::resource::Quantity(cpu.into()),
            )])),
            ..Default::default()
        });
        n
    }

    /// `p` requesting `cpu`, with `uid`, bound to `node` when given.
    fn placed(mut p: Pod, cpu: &str, uid: &str, node: Option<&str>) -> Pod {
        let spec = p.spec.get_or_insert_with(Default::default);
        spec.node_name = node.map(String::from);
        let resources = spec.containers[0]
            .resources
            .get_or_insert_with(Default::default);
        resources.requests.get_or_insert_with(BTreeMap::new).insert(
            "cpu".into(),
            k8s_openapi::apimachinery::pkg::api::resource::Quantity(cpu.into()),
        );
        p.metadata.uid = Some(uid.into());
        p
    }

    /// A pod that asks for no GPU.
    fn cpu_only(name: &str) -> Pod {
        Pod {
            spec: crate::objects::gpu_pod(name, &[], &[crate::objects::GpuAsk::default()]).spec,
            ..pod(name, &[])
        }
    }

    fn cpu_of(v: &ClusterView, node: &str) -> Option<(u64, u64)> {
        v.hosts()?
            .host(node)
            .map(|h| (h.cpu_capacity_milli, h.cpu_requested_milli))
    }

    #[test]
    fn only_pods_carrying_a_gpu_assignment_reach_the_gpu_part() {
        assert!(!carries_gpu_assignment(&pod("p", &[])));
        for key in [VGPU_NODE, DEVICES_ALLOCATED, BIND_PHASE] {
            assert!(carries_gpu_assignment(&pod("p", &[(key, "x")])), "{key}");
        }
        let mut labelled = pod("p", &[]);
        labelled.metadata.labels = Some(BTreeMap::from([(VGPU_NODE.into(), "n1".into())]));
        assert!(carries_gpu_assignment(&labelled));
        labelled.metadata.labels = Some(BTreeMap::from([("other".into(), "n1".into())]));
        assert!(!carries_gpu_assignment(&labelled));

        let now = t("2025-01-01T00:00:00Z");
        let mut v = all_pods();
        v.apply_node(&cpu_node("n1", "8"), now).unwrap();
        assert_eq!(cpu_of(&v, "n1"), Some((8000, 0)));
        let plain = placed(cpu_only("plain"), "2", "u-plain", Some("n1"));
        v.apply_pod(&plain).unwrap();
        assert!(v.pod("ns/plain").is_none(), "no GPU assignment: CPU only");
        assert_eq!(cpu_of(&v, "n1"), Some((8000, 2000)));
        let assigned = [
            (VGPU_NODE, "n1"),
            (DEVICES_ALLOCATED, "GPU-0,NVIDIA,100,10:;"),
        ];
        let gpu = placed(pod("g", &assigned), "1", "u-g", None);
        v.apply_pod(&gpu).unwrap();
        assert!(v.pod("ns/g").is_some());
        assert_eq!(v.ledger().pod_count(), 1);
        assert_eq!(cpu_of(&v, "n1"), Some((8000, 3000)), "placed, not bound");
        // Stripped of every mark, it leaves the GPU part as it would leave the labelled watch.
        let stripped = placed(pod("g", &[]), "1", "u-g", None);
        v.apply_pod(&stripped).unwrap();
        assert!(v.pod("ns/g").is_none());
        assert_eq!(v.ledger().pod_count(), 0);
        assert_eq!(cpu_of(&v, "n1"), Some((8000, 2000)));
        v.delete_pod(&plain);
        assert_eq!(cpu_of(&v, "n1"), Some((8000, 0)));
        v.delete_node("n1");
        assert_eq!(cpu_of(&v, "n1"), None);

        // The GPU scope: whatever the labelled watch delivers is a GPU pod, and CPU is unknown.
        let mut g = ClusterView::new();
        g.apply_node(&cpu_node("n1", "8"), now).unwrap();
        g.apply_pod(&plain).unwrap();
        assert!(g.pod("ns/plain").is_some());
        assert!(g.hosts().is_none());
        assert_eq!(g.config().pods, PodScope::Gpu);
    }

    #[test]
    fn each_gpu_pod_is_learned_once_and_a_new_term_keeps_what_was_learned() {
        let settings = SchedulerSettings::default();
        let mut v = all_pods();
        let a = placed(pod("a", &[]), "1", "u1", None);
        v.apply_pod(&a).unwrap();
        v.apply_pod(&a).unwrap();
        let observed = |v: &ClusterView| v.learned().profile().observed();
        assert_eq!(observed(&v), 1, "one pod, however many events");
        let prepared = decision::prepare(&a, &settings).unwrap();
        v.learn_from_filter("ns/a", "u1", &prepared);
        assert_eq!(observed(&v), 1, "the filter asked about the same pod");
        v.learn_from_filter("ns/a", "u2", &prepared);
        assert_eq!(observed(&v), 2, "re-created under the same name");
        v.apply_pod(&placed(cpu_only("c"), "1", "uc", None))
            .unwrap();
        assert_eq!(observed(&v), 2, "no GPU, nothing to learn");
        assert_eq!(v.learned().remembered_pods(), 1);
        v.delete_pod(&a);
        assert_eq!(v.learned().remembered_pods(), 0);
        v.apply_pod(&a).unwrap();
        assert_eq!(observed(&v), 3, "deleted, then shown again");

        // A re-list of every pod forgets the pods it does not show.
        let b = placed(pod("b", &[]), "1", "ub", None);
        v.begin_pod_relist();
        v.relist_pod(&b).unwrap();
        v.finish_pod_relist();
        assert_eq!((observed(&v), v.learned().remembered_pods()), (4, 1));

        // A new term keeps what was learned and nothing else.
        let now = t("2025-01-01T00:00:00Z");
        v.apply_node(&cpu_node("n1", "8"), now).unwrap();
        v.replace_nodes(&[cpu_node("n1", "8")], now);
        assert!(v.is_synced());
        v.next_term();
        assert_eq!(observed(&v), 4);
        assert!(!v.is_synced() && v.registry().is_empty());
        assert_eq!(cpu_of(&v, "n1"), None);
        assert_eq!(v.config().pods, PodScope::All);
        // The decision reads the learned workload, host CPU and the pod's CPU.
        let inputs = v.fragmentation_inputs(&prepared);
        assert_eq!(inputs.profile.map(|p| p.observed()), Some(4));
        assert!(inputs.hosts.is_some());
        assert_eq!(inputs.pod_cpu_milli, 1000);
        let g = ClusterView::new();
        assert!(g.fragmentation_inputs(&prepared).hosts.is_none());
    }

    /// The `fragmentation` verdicts the index remembers depend on nodes' free CPU: every change of
    /// a node's CPU (a pod counted or no longer counted there, a filter's choice, a re-list)
    /// forgets the verdicts on that node and no other; an event that changes no CPU forgets none.
    #[test]
    fn a_change_of_free_cpu_forgets_the_verdicts_on_that_node_only() {
        use crate::annotations::GPU_SCHEDULER_POLICY;
        let now = t("2025-01-01T00:00:00Z");
        let mut v = all_pods();
        v.apply_node(&cpu_node("n1", "8"), now).unwrap();
        v.apply_node(&cpu_node("n2", "8"), now).unwrap();
        let gpu_pod = decision::prepare(
            &pod("f", &[(GPU_SCHEDULER_POLICY, "fragmentation")]),
            &SchedulerSettings::default(),
        )
        .unwrap();
        let offered = vec!["n1".to_string(), "n2".to_string()];
        let remembered = |v: &mut ClusterView| -> Vec<String> {
            let mut nodes: Vec<String> = v
                .index()
                .score_memo()
                .reachable()
                .into_iter()
                .map(|r| r.node)
                .collect();
            nodes.dedup();
            // Decided again, so that both are remembered for the next change.
            v.decide(&gpu_pod, &offered, now);
            assert!(v.stale_memo_verdicts().is_empty());
            nodes
        };
        v.decide(&gpu_pod, &offered, now);
        assert_eq!(remembered(&mut v), ["n1", "n2"]);

        let c = placed(cpu_only("c"), "2", "uc", Some("n1"));
        v.apply_pod(&c).unwrap();
        assert_eq!(remembered(&mut v), ["n2"], "counted on n1");
        v.apply_pod(&c).unwrap();
        assert_eq!(
            remembered(&mut v),
            ["n1", "n2"],
            "the same CPU: nothing forgotten"
        );
        let moved = placed(cpu_only("c"), "2", "uc", Some("n2"));
        v.apply_pod(&moved).unwrap();
        assert_eq!(remembered(&mut v), Vec::<String>::new(), "from n1 to n2");
        v.delete_pod(&moved);
        assert_eq!(remembered(&mut v), ["n1"]);

        let d = placed(cpu_only("d"), "1", "ud", None);
        let prepared = decision::prepare(&d, &SchedulerSettings::default()).unwrap();
        let chosen = v.place_cpu_pod("ns/d", &prepared, &offered).unwrap();
        let other = if chosen == "n1" { "n2" } else { "n1" };
        assert_eq!(remembered(&mut v), [other], "the filter's choice counts");
        v.begin_pod_relist();
        v.finish_pod_relist();
        assert_eq!(remembered(&mut v), [other], "re-listed without it");

        v.apply_node(&cpu_node("n2", "16"), now).unwrap();
        assert_eq!(remembered(&mut v), ["n1"], "n2's allocatable grew");
    }

    #[test]
    fn a_choice_counts_its_cpu_on_the_node_until_the_watch_shows_the_pod() {
        let now = t("2025-01-01T00:00:00Z");
        let mut v = all_pods();
        v.apply_node(&cpu_node("n1", "8"), now).unwrap();
        v.apply_node(&cpu_node("n2", "8"), now).unwrap();
        let allocation = PodAllocation {
            init: vec![],
            app: vec![vec![crate::model::ContainerDevice {
                uuid: "GPU-0".into(),
                backend: "NVIDIA".into(),
                usedmem: 100,
                usedcores: 10,
            }]],
        };
        v.assume("ns/a", "n1", &allocation, "GPU-0,NVIDIA,100,10:;", 3000);
        assert_eq!(cpu_of(&v, "n1"), Some((8000, 3000)));
        // A re-filter takes it out and, placing nothing, puts it back.
        let taken = v.take("ns/a");
        assert_eq!(cpu_of(&v, "n1"), Some((8000, 0)));
        v.restore("ns/a", taken);
        assert_eq!(cpu_of(&v, "n1"), Some((8000, 3000)));
        v.unassume("ns/a");
        assert_eq!(cpu_of(&v, "n1"), Some((8000, 0)));

        // A CPU-only pod placed by the filter counts at once, once, and stops when it finishes.
        let c = placed(cpu_only("c"), "2", "uc", None);
        let prepared = decision::prepare(&c, &SchedulerSettings::default()).unwrap();
        assert_eq!(
            v.place_cpu_pod("ns/c", &prepared, &[]),
            None,
            "nothing offered"
        );
        let chosen = v
            .place_cpu_pod("ns/c", &prepared, &["n1".into(), "n2".into()])
            .unwrap();
        let other = if chosen == "n1" { "n2" } else { "n1" };
        assert_eq!(cpu_of(&v, &chosen), Some((8000, 2000)));
        v.apply_pod(&c).unwrap();
        assert_eq!(cpu_of(&v, &chosen), Some((8000, 2000)), "still pending");
        let bound = placed(cpu_only("c"), "2", "uc", Some(other));
        v.apply_pod(&bound).unwrap();
        assert_eq!(
            cpu_of(&v, &chosen),
            Some((8000, 0)),
            "the watch shows where it went"
        );
        assert_eq!(cpu_of(&v, other), Some((8000, 2000)));
        let mut done = bound.clone();
        done.status = Some(PodStatus {
            phase: Some("Succeeded".into()),
            ..Default::default()
        });
        v.apply_pod(&done).unwrap();
        assert_eq!(cpu_of(&v, other), Some((8000, 0)));

        // A placed CPU pod deleted before it is bound, or dropped by a re-list, counts nowhere.
        let d = placed(cpu_only("d"), "1", "ud", None);
        let prepared = decision::prepare(&d, &SchedulerSettings::default()).unwrap();
        let at = v.place_cpu_pod("ns/d", &prepared, &["n1".into()]).unwrap();
        v.delete_pod(&d);
        assert_eq!(cpu_of(&v, &at), Some((8000, 0)));
        v.place_cpu_pod("ns/d", &prepared, &["n1".into()]).unwrap();
        v.replace_pods(&[]);
        assert_eq!(cpu_of(&v, "n1"), Some((8000, 0)));
    }
}
