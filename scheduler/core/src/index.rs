//! The placement index: a sublinear path to the same decision as the plain scan
//! ([`crate::scan`]), its sibling behind [`crate::decision::decide`].
//!
//! Under HAMi's node policies a node's score depends only on its usage **before** the pod (spec
//! §4.5), so the index keeps every registered node ordered by that score (binpack: highest first;
//! spread: lowest first; ties by the smallest name, as the scan breaks them). A decision walks that
//! order and stops at the first offered node that fits: that node is exactly the one the scan picks,
//! with the same devices and score, because the scan picks the best-ranked node among those that fit.
//!
//! Each node also carries a summary of its devices (eligible devices, idle devices, largest free
//! memory and cores, smallest memory) that rejects it for a request without looking at its
//! devices. The summary only states necessary conditions, so it never rejects a node the fit would
//! accept; a node it lets through is evaluated by [`crate::fit::evaluate_node_with`] itself.
//!
//! When no offered node fits, the extender must return a reason for every node. The index computes
//! them from its compact per-device copy through the same per-device rules as the fit
//! ([`crate::rules`]), without formatting a string per node (rejections stay structured until the
//! extender renders them). Pods whose reasons depend on device order (several GPU containers, init
//! containers with GPUs, `numa-bind`, type or UUID selectors) get their reasons from the exact
//! per-node evaluation.
//!
//! The index is kept current by its owner: [`PlacementIndex::refresh`] after every registry or
//! ledger change of a node (see [`crate::cluster_view::ClusterView`]). Pods under sliceguard's
//! `fragmentation` policy, whose node score depends on the pod, are decided by the scan
//! ([`applies`] is false for them), which takes the verdicts the index remembers for them
//! ([`PlacementIndex::score_memo`], [`crate::score_memo`]).
//!
//! Deliberate difference from HAMi, only on the indexed path: the `FilteringSucceed` message lists
//! the chosen node and counts the nodes examined, since listing every fitting node would need every
//! node evaluated (`find fit node(<n>), <k> nodes not fit, 1 nodes fit(<n>:<score>), <m> nodes not
//! examined`). The service takes this path only from [`INDEX_MIN_OFFERED`] offered nodes up; below
//! that, the scan answers with HAMi's message.

use crate::fit::evaluate_node_with;
use crate::fragmentation;
use crate::ledger::UsageSource;
use crate::model::{DeviceUsage, NodeView, PodAllocation};
use crate::outcome::{Decision, NodeRejection, PreparedPod, Verdict, placed, unschedulable};
use crate::policy::NodePolicy;
use crate::registry::{RegisteredNode, Registry};
use crate::request::{ContainerRequest, PERCENTAGE_UNSET};
use crate::rules::{self, Demand, DeviceState, FitReason, ReasonCounts, Selection};
use crate::score::{node_score, score_key};
use crate::score_memo::ScoreMemo;
use foldhash::fast::FixedState;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;

const CANDIDATE: u8 = 1;
const HEALTHY: u8 = 2;
const CORDONED: u8 = 4;
const MIG: u8 = 8;

/// One device's capacity and usage, as the index keeps it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Dev {
    count: u32,
    devmem: u32,
    devcore: u32,
    flags: u8,
    used: u64,
    usedmem: u64,
    usedcores: u64,
}

impl Dev {
    fn usage(&self) -> DeviceUsage {
        DeviceUsage {
            used: self.used,
            usedmem: self.usedmem,
            usedcores: self.usedcores,
        }
    }

    /// What the per-device rules read of this device.
    fn state(&self) -> DeviceState {
        DeviceState {
            healthy: self.flags & HEALTHY != 0,
            cordoned: self.flags & CORDONED != 0,
            mig: self.flags & MIG != 0,
            count: self.count,
            devmem: self.devmem,
            devcore: self.devcore,
            usage: self.usage(),
        }
    }

    /// Not refused before the usage checks, for any pod (ignores type and UUID selectors).
    fn open(&self) -> bool {
        self.flags & (CANDIDATE | HEALTHY | CORDONED | MIG) == CANDIDATE | HEALTHY
            && u64::from(self.count) > self.used
    }
}

/// What rejects a node without looking at its devices: necessary conditions only.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Summary {
    /// Candidates (NVIDIA devices) that are healthy, not cordoned, not MIG and have a free slot.
    open: u32,
    /// Open devices with no task.
    idle: u32,
    /// Open devices an exclusive (100-core) request may take: idle, or `devcore` other than 100.
    exclusive_ok: u32,
    /// Largest free MiB over open devices (signed, as the fit compares).
    max_free_mem: i64,
    /// Largest free cores over open devices.
    max_free_cores: i64,
    /// Smallest device MiB over open devices (bounds a percentage request from below).
    min_devmem: u32,
}

impl Summary {
    fn of(devices: &[Dev]) -> Self {
        let mut s = Summary {
            max_free_mem: i64::MIN,
            max_free_cores: i64::MIN,
            min_devmem: u32::MAX,
            ..Default::default()
        };
        for d in devices {
            if !d.open() {
                continue;
            }
            s.open += 1;
            if d.used == 0 {
                s.idle += 1;
            }
            if d.used == 0 || d.devcore != 100 {
                s.exclusive_ok += 1;
            }
            s.max_free_mem = s
                .max_free_mem
                .max(i64::from(d.devmem) - d.usedmem.min(i64::MAX as u64) as i64);
            s.max_free_cores = s
                .max_free_cores
                .max(i64::from(d.devcore) - d.usedcores.min(i64::MAX as u64) as i64);
            s.min_devmem = s.min_devmem.min(d.devmem);
        }
        s
    }

    /// True when no set of this node's devices can hold `r` (at usage before the pod; usage only
    /// grows while a pod is fitted, so this holds for every container of the pod).
    fn rejects(&self, r: &ContainerRequest, mutex: bool) -> bool {
        let nums = r.nums;
        // `open` counts candidates only, so this also covers `nums` above the candidates.
        if nums > self.open {
            return true;
        }
        if mutex && nums > self.idle {
            return true;
        }
        let cores = r.cores_clamped();
        if cores == 100 && nums > self.exclusive_ok {
            return true;
        }
        if self.max_free_cores < i64::from(cores) {
            return true;
        }
        let need = if r.memreq > 0 {
            u64::from(r.memreq)
        } else if r.mem_percentage != PERCENTAGE_UNSET {
            u64::from(self.min_devmem) * u64::from(r.mem_percentage) / 100
        } else {
            0
        };
        i128::from(self.max_free_mem) < i128::from(need)
    }
}

/// One registered node in the index.
#[derive(Debug, Clone, PartialEq)]
struct Entry {
    key: u32,
    devices: Box<[Dev]>,
    summary: Summary,
}

impl Entry {
    /// The registered `node` with the usage this entry holds (written into `buffer`), as the fit
    /// reads it.
    fn view<'a>(&self, node: &'a RegisteredNode, buffer: &'a mut Vec<DeviceUsage>) -> NodeView<'a> {
        buffer.clear();
        buffer.extend(self.devices.iter().map(Dev::usage));
        NodeView {
            devices: &node.devices,
            usage: buffer,
            cordoned: &node.cordoned,
        }
    }
}

/// A node the index holds otherwise than a fresh one would ([`PlacementIndex::lagging_nodes`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LaggingNode {
    /// The node (empty for a difference of the ranking as a whole).
    pub node: String,
    /// What differs, held first, fresh second.
    pub difference: String,
}

impl std::fmt::Display for LaggingNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.node.is_empty() {
            f.write_str(&self.difference)
        } else {
            write!(f, "node {}: {}", self.node, self.difference)
        }
    }
}

/// What differs between a node's entry as held and as built afresh (`None`: nothing).
fn entry_difference(held: Option<&Entry>, fresh: Option<&Entry>) -> Option<String> {
    let (held, fresh) = match (held, fresh) {
        (None, None) => return None,
        (None, Some(_)) => return Some("registered, but not in the index".into()),
        (Some(_), None) => return Some("in the index, but no longer registered".into()),
        (Some(held), Some(fresh)) => (held, fresh),
    };
    if held.devices.len() != fresh.devices.len() {
        return Some(format!(
            "{} devices indexed, {} registered",
            held.devices.len(),
            fresh.devices.len()
        ));
    }
    let describe = |d: &Dev| {
        let flags: Vec<&str> = [
            (CANDIDATE, "candidate"),
            (HEALTHY, "healthy"),
            (CORDONED, "cordoned"),
            (MIG, "MIG"),
        ]
        .into_iter()
        .filter(|(bit, _)| d.flags & bit != 0)
        .map(|(_, word)| word)
        .collect();
        format!(
            "{} tasks of {}, {} of {} MiB, {} of {} cores ({})",
            d.used,
            d.count,
            d.usedmem,
            d.devmem,
            d.usedcores,
            d.devcore,
            flags.join(", ")
        )
    };
    if let Some((i, (h, f))) = held
        .devices
        .iter()
        .zip(fresh.devices.iter())
        .enumerate()
        .find(|(_, (h, f))| h != f)
    {
        return Some(format!(
            "device {i} indexed as {}, now {}",
            describe(h),
            describe(f)
        ));
    }
    // The score key and the summary follow from the devices; compared all the same.
    (held != fresh).then(|| {
        format!(
            "score key {} and {:?} indexed, {} and {:?} now",
            held.key, held.summary, fresh.key, fresh.summary
        )
    })
}

/// The work one decision through the index did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WalkWork {
    /// Offered nodes the walk reached, in score order, before it stopped.
    pub examined: usize,
    /// Of those, the nodes whose summary let them through to the exact fit.
    pub evaluated: usize,
    /// When no node fits: the offered nodes whose reasons needed the exact per-node evaluation
    /// (the others were counted from the compact device copy).
    pub exact_rejections: usize,
}

/// What a decision reads of the cluster (re-exported as `decision::Fleet`): the registry, the
/// usage, and this index when the caller keeps one.
#[derive(Debug)]
pub struct Fleet<'a, U> {
    /// Every registered node and its devices.
    pub registry: &'a Registry,
    /// What is in use on every device.
    pub usage: &'a U,
    /// The placement index over `registry` and `usage`, when the caller keeps one current.
    pub index: Option<&'a PlacementIndex>,
}

// By hand: derived, they would ask `U` to be `Copy` too.
impl<U> Clone for Fleet<'_, U> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<U> Copy for Fleet<'_, U> {}

impl<'a, U: UsageSource> Fleet<'a, U> {
    /// A fleet without a placement index: every decision scans.
    pub fn scanned(registry: &'a Registry, usage: &'a U) -> Self {
        Fleet {
            registry,
            usage,
            index: None,
        }
    }

    /// A fleet with its placement index.
    pub fn indexed(registry: &'a Registry, usage: &'a U, index: &'a PlacementIndex) -> Self {
        Fleet {
            registry,
            usage,
            index: Some(index),
        }
    }
}

/// Every registered node ordered by its node score, with per-node device summaries.
#[derive(Debug, Clone)]
pub struct PlacementIndex {
    entries: HashMap<Arc<str>, Entry, FixedState>,
    order: BTreeSet<(u32, Arc<str>)>,
    empty: Arc<str>,
    /// `fragmentation` verdicts, forgotten per node on every refresh.
    memo: ScoreMemo,
}

impl Default for PlacementIndex {
    fn default() -> Self {
        PlacementIndex {
            entries: HashMap::default(),
            order: BTreeSet::new(),
            empty: Arc::from(""),
            memo: ScoreMemo::default(),
        }
    }
}

/// True when the index decides this pod: it asks for a GPU and its node score does not depend on
/// the pod (every policy but `fragmentation`).
pub fn applies(pod: &PreparedPod) -> bool {
    pod.request.has_gpu_request() && !fragmentation::applies(&pod.preferences)
}

/// The offered node names as the set the index walk checks candidates against: the one part of
/// [`PlacementIndex::decide`] that is linear in the number of offered nodes (measured on its own by
/// the placement benchmark, to tell it from the walk).
pub fn offered_set(node_names: &[String]) -> HashSet<&str, FixedState> {
    let mut offered: HashSet<&str, FixedState> =
        HashSet::with_capacity_and_hasher(node_names.len(), FixedState::default());
    offered.extend(node_names.iter().map(String::as_str));
    offered
}

impl PlacementIndex {
    /// An empty index.
    pub fn new() -> Self {
        Self::default()
    }

    /// An index of every registered node with the usage `usage` reports.
    pub fn build(registry: &Registry, usage: &impl UsageSource) -> Self {
        let mut index = Self::new();
        for node in registry.nodes() {
            index.refresh(&node.name, registry, usage);
        }
        index
    }

    /// The nodes this index holds otherwise than an index built afresh over `registry` and `usage`
    /// would (missing, left over after their deregistration, or with other devices, usage or
    /// score), by name, each with what differs: empty while every change of a node has been
    /// followed by its [`PlacementIndex::refresh`]. For checkers: it builds the index again.
    pub fn lagging_nodes(&self, registry: &Registry, usage: &impl UsageSource) -> Vec<LaggingNode> {
        let fresh = Self::build(registry, usage);
        let names: BTreeSet<&str> = self
            .entries
            .keys()
            .chain(fresh.entries.keys())
            .map(|name| &**name)
            .collect();
        let mut lagging: Vec<LaggingNode> = names
            .into_iter()
            .filter_map(|name| {
                let entry = self.entries.get(name);
                let difference =
                    entry_difference(entry, fresh.entries.get(name)).or_else(|| {
                        // The ranking must hold the node under its entry's own key.
                        entry
                            .filter(|e| !self.order.contains(&(e.key, Arc::from(name))))
                            .map(|e| format!("not ranked under its score key {}", e.key))
                    })?;
                Some(LaggingNode {
                    node: name.to_string(),
                    difference,
                })
            })
            .collect();
        if self.order.len() != self.entries.len() {
            lagging.push(LaggingNode {
                node: String::new(),
                difference: format!(
                    "the ranking holds {} nodes, the index {}",
                    self.order.len(),
                    self.entries.len()
                ),
            });
        }
        lagging
    }

    /// The `fragmentation` verdicts remembered over this index's nodes ([`crate::score_memo`]):
    /// a node's are forgotten on each [`PlacementIndex::refresh`] of it.
    pub fn score_memo(&self) -> &ScoreMemo {
        &self.memo
    }

    /// Number of indexed nodes.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when no node is indexed.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Forgets the `fragmentation` verdicts remembered on `name` ([`crate::score_memo`]): call after
    /// every change of the node's free CPU (the `fragmentation` policy's host CPU,
    /// [`crate::fragmentation::FragmentationInputs::hosts`]); [`PlacementIndex::refresh`] forgets
    /// them too.
    pub fn forget_verdicts(&mut self, name: &str) {
        self.memo.forget_node(name);
    }

    /// The names of the nodes the index holds, in no particular order.
    pub(crate) fn node_names(&self) -> impl Iterator<Item = &str> {
        self.entries.keys().map(|name| &**name)
    }

    /// True when the index holds `name`.
    pub(crate) fn holds(&self, name: &str) -> bool {
        self.entries.contains_key(name)
    }

    /// Re-reads one node from the registry and its usage; removes it when it is not registered.
    /// Call after every change of the node's registration or of usage on it (a change of its free
    /// CPU alone asks for [`PlacementIndex::forget_verdicts`]).
    pub fn refresh(&mut self, name: &str, registry: &Registry, usage: &impl UsageSource) {
        self.memo.forget_node(name);
        let Some(node) = registry.get(name) else {
            if let Some((name, entry)) = self.entries.remove_entry(name) {
                self.order.remove(&(entry.key, name));
            }
            return;
        };
        let mut usages: Vec<DeviceUsage> = Vec::with_capacity(node.devices.len());
        usage.node_usage(name, &node.devices, &mut usages);
        let devices: Box<[Dev]> = node
            .devices
            .iter()
            .zip(&usages)
            .map(|(d, u)| {
                let mut flags = 0;
                if d.is_nvidia() {
                    flags |= CANDIDATE;
                }
                if d.health {
                    flags |= HEALTHY;
                }
                if node.cordoned.contains(&d.id) {
                    flags |= CORDONED;
                }
                if d.is_mig() {
                    flags |= MIG;
                }
                Dev {
                    count: d.count,
                    devmem: d.devmem,
                    devcore: d.devcore,
                    flags,
                    used: u.used,
                    usedmem: u.usedmem,
                    usedcores: u.usedcores,
                }
            })
            .collect();
        let key = score_key(node_score(node.devices.iter().zip(usages.iter())));
        let summary = Summary::of(&devices);
        let stored: Arc<str> = match self.entries.get_key_value(name) {
            Some((stored, entry)) => {
                let (stored, old) = (stored.clone(), entry.key);
                if old != key {
                    self.order.remove(&(old, stored.clone()));
                    self.order.insert((key, stored.clone()));
                }
                stored
            }
            None => {
                let stored: Arc<str> = Arc::from(name);
                self.order.insert((key, stored.clone()));
                stored
            }
        };
        self.entries.insert(
            stored,
            Entry {
                key,
                devices,
                summary,
            },
        );
    }

    /// Visits nodes best first for `policy` until `visit` returns true.
    fn walk(&self, policy: NodePolicy, mut visit: impl FnMut(&Arc<str>, &Entry) -> bool) {
        let mut call = |name: &Arc<str>| visit(name, &self.entries[name]);
        match policy {
            NodePolicy::Spread => {
                for (_, name) in &self.order {
                    if call(name) {
                        return;
                    }
                }
            }
            NodePolicy::Binpack => {
                // Highest score first; within one score, smallest name first.
                let mut upper: Option<u32> = None;
                loop {
                    let last = match upper {
                        None => self.order.iter().next_back(),
                        Some(k) => self.order.range(..(k, self.empty.clone())).next_back(),
                    };
                    let Some(&(key, _)) = last else { return };
                    for (k, name) in self.order.range((key, self.empty.clone())..) {
                        if *k != key {
                            break;
                        }
                        if call(name) {
                            return;
                        }
                    }
                    upper = Some(key);
                }
            }
        }
    }

    /// The decision the scan ([`crate::scan::decide`]) returns, found through the index. `None`
    /// when the index does not apply to the pod ([`applies`]) or disagrees with the registry (a
    /// node changed without [`PlacementIndex::refresh`]); the caller then scans.
    pub fn decide(
        &self,
        registry: &Registry,
        pod: &PreparedPod,
        node_names: &[String],
        now: jiff::Timestamp,
    ) -> Option<Decision> {
        self.decide_counting(registry, pod, node_names, now).0
    }

    /// [`PlacementIndex::decide`], with the work its walk did: what the tests of the pruning bounds
    /// read, since a looser bound changes no decision, only the work (the fits evaluated).
    pub fn decide_counting(
        &self,
        registry: &Registry,
        pod: &PreparedPod,
        node_names: &[String],
        now: jiff::Timestamp,
    ) -> (Option<Decision>, WalkWork) {
        let mut work = WalkWork::default();
        let decision = self.decide_inner(registry, pod, node_names, now, &mut work);
        (decision, work)
    }

    fn decide_inner(
        &self,
        registry: &Registry,
        pod: &PreparedPod,
        node_names: &[String],
        now: jiff::Timestamp,
        work: &mut WalkWork,
    ) -> Option<Decision> {
        if !applies(pod) {
            return None;
        }
        let offered = offered_set(node_names);
        let total = offered.len();
        let requests: Vec<ContainerRequest> = pod
            .request
            .containers
            .iter()
            .filter_map(|c| c.request)
            .collect();
        let mutex = pod.preferences.gpu_policy.is_mutex();
        let mut examined = 0usize;
        let mut stale = false;
        let mut usage_buffer: Vec<DeviceUsage> = Vec::new();
        let mut winner: Option<(Arc<str>, f32, PodAllocation)> = None;
        self.walk(pod.preferences.node_policy, |name, entry| {
            if !offered.contains(&**name) {
                return false;
            }
            examined += 1;
            if requests.iter().any(|r| entry.summary.rejects(r, mutex)) {
                return false;
            }
            let Some(node) = registry.get(name) else {
                stale = true;
                return true;
            };
            if node.devices.len() != entry.devices.len() {
                stale = true;
                return true;
            }
            let view = entry.view(node, &mut usage_buffer);
            work.evaluated += 1;
            match evaluate_node_with(view, &pod.request, &pod.preferences, None) {
                Ok(fit) => {
                    winner = Some((name.clone(), fit.score, fit.allocation));
                    true
                }
                Err(_) => false,
            }
        });
        work.examined = examined;
        if stale {
            return None;
        }
        match winner {
            Some((node, score, allocation)) => {
                let message = format!(
                    "find fit node({node}), {} nodes not fit, 1 nodes fit({node}:{score:.2}), {} nodes not examined",
                    examined - 1,
                    total - examined,
                );
                Some(placed(
                    BTreeMap::from([(node.to_string(), Verdict::Score(score))]),
                    &node,
                    score,
                    allocation,
                    now,
                    message,
                ))
            }
            None => self.all_rejected(registry, pod, &offered, &requests, work),
        }
    }

    /// Every offered node's rejection, when none fits.
    fn all_rejected(
        &self,
        registry: &Registry,
        pod: &PreparedPod,
        offered: &HashSet<&str, FixedState>,
        requests: &[ContainerRequest],
        work: &mut WalkWork,
    ) -> Option<Decision> {
        let prefs = &pod.preferences;
        let simple = {
            let mut with_gpu = pod
                .request
                .containers
                .iter()
                .filter(|c| c.request.is_some());
            let first = with_gpu.next();
            first.is_some_and(|c| !c.init)
                && with_gpu.next().is_none()
                && prefs.use_types.is_empty()
                && prefs.nouse_types.is_empty()
                && prefs.use_uuids.is_empty()
                && prefs.nouse_uuids.is_empty()
                && prefs.vgpu_mode.is_none()
                && !prefs.numa_bind
        };
        let mutex = prefs.gpu_policy.is_mutex();
        // Collected in name order (the registry's) and built into the map at once.
        let mut rows: Vec<(String, Verdict)> = Vec::with_capacity(offered.len());
        let mut usage_buffer: Vec<DeviceUsage> = Vec::new();
        for node in registry.nodes() {
            if !offered.contains(node.name.as_str()) {
                continue;
            }
            let entry = self.entries.get(node.name.as_str())?;
            if entry.devices.len() != node.devices.len() {
                return None;
            }
            let rejection = if simple {
                quick_rejection(&entry.devices, &requests[0], mutex)?
            } else {
                let view = entry.view(node, &mut usage_buffer);
                work.exact_rejections += 1;
                match evaluate_node_with(view, &pod.request, prefs, None) {
                    Ok(_) => return None,
                    Err(rejection) => rejection,
                }
            };
            rows.push((node.name.clone(), Verdict::Rejected(rejection)));
        }
        if rows.len() < offered.len() {
            rows.extend(
                offered
                    .iter()
                    .filter(|n| registry.get(n).is_none())
                    .map(|n| {
                        (
                            n.to_string(),
                            Verdict::Rejected(NodeRejection::Unregistered),
                        )
                    }),
            );
        }
        let verdicts: BTreeMap<String, Verdict> = rows.into_iter().collect();
        Some(unschedulable(verdicts, offered.len()))
    }
}

/// The fit's reasons for a pod with one GPU container (a regular one), no selectors and no
/// `numa-bind`: then every device is refused for its first failed check whatever the order, and the
/// devices that pass are all taken, so the counts need no ordering. `None` when the node fits.
fn quick_rejection(devices: &[Dev], r: &ContainerRequest, mutex: bool) -> Option<NodeRejection> {
    let candidates = devices.iter().filter(|d| d.flags & CANDIDATE != 0).count();
    if r.nums as usize > candidates {
        return Some(NodeRejection::NodeInsufficientDevice);
    }
    let demand = Demand { request: r, mutex };
    let mut counts = ReasonCounts::new(candidates as u32);
    let mut passing = 0u32;
    for d in devices.iter().filter(|d| d.flags & CANDIDATE != 0) {
        match rules::first_refusal(&d.state(), Selection::ANY, demand) {
            Some(reason) => counts.bump(reason, 1),
            None => passing += 1,
        }
    }
    if passing >= r.nums {
        return None;
    }
    if passing > 0 {
        counts.set(FitReason::AllocatedCardsInsufficientRequest, passing);
    }
    Some(NodeRejection::Devices(counts))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::Ledger;
    use crate::model::{ContainerDevice, PodAllocation};
    use crate::objects::{FleetSpec, fleet, fleet_node_name};

    /// The checker names exactly the nodes whose change the index was not told of: new usage, a
    /// node gone, a node registered; none once each is refreshed.
    #[test]
    fn lagging_nodes_are_those_changed_without_refresh() {
        let spec = FleetSpec {
            nodes: 3,
            gpus_per_node: 2,
            name_prefix: "n".into(),
            ..FleetSpec::default()
        };
        let nodes = fleet(&spec, jiff::Timestamp::UNIX_EPOCH);
        let mut registry = Registry::new();
        for node in &nodes[..2] {
            registry.upsert_node(node).unwrap();
        }
        let names: Vec<String> = (0..3).map(|i| fleet_node_name("n", i)).collect();
        let mut ledger = Ledger::new();
        let mut index = PlacementIndex::build(&registry, &ledger);
        assert_eq!(index.lagging_nodes(&registry, &ledger), []);

        let device = ContainerDevice {
            uuid: format!("GPU-{}-0", names[0]),
            backend: "NVIDIA".into(),
            usedmem: 1000,
            usedcores: 10,
        };
        let allocation = PodAllocation {
            init: vec![],
            app: vec![vec![device]],
        };
        ledger.upsert("default/p", &names[0], &allocation);
        registry.remove(&names[1]);
        registry.upsert_node(&nodes[2]).unwrap();
        let lagging: Vec<String> = index
            .lagging_nodes(&registry, &ledger)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            lagging,
            [
                format!(
                    "node {}: device 0 indexed as 0 tasks of 10, 0 of 81920 MiB, 0 of 100 cores (candidate, healthy), now 1 tasks of 10, 1000 of 81920 MiB, 10 of 100 cores (candidate, healthy)",
                    names[0]
                ),
                format!("node {}: in the index, but no longer registered", names[1]),
                format!("node {}: registered, but not in the index", names[2]),
            ]
        );
        for name in &names {
            index.refresh(name, &registry, &ledger);
        }
        assert_eq!(index.lagging_nodes(&registry, &ledger), []);

        // A ranking that lost a node (the entries are right).
        let key = index.entries[names[2].as_str()].key;
        assert!(index.order.remove(&(key, Arc::from(names[2].as_str()))));
        let lagging: Vec<String> = index
            .lagging_nodes(&registry, &ledger)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            lagging,
            [
                format!("node {}: not ranked under its score key {key}", names[2]),
                "the ranking holds 1 nodes, the index 2".to_string(),
            ]
        );
    }
}
