//! The plain scan: every offered node evaluated by the fit, the best-ranked one that fits chosen
//! (HAMi's `Filter`, spec §4.2). The reference the placement index ([`crate::index`]) must agree
//! with, and the path for pods the index does not decide (sliceguard's `fragmentation` policy, whose
//! node score depends on the pod). Callers go through [`crate::decision::decide`].
//!
//! Nodes are ranked by the node policy (binpack: highest score; spread: lowest), or, for a pod under
//! the `fragmentation` GPU policy, by its fragmentation score (highest wins). HAMi leaves ties to
//! goroutine timing; sliceguard breaks them by node name (the smallest name wins), and devices by
//! registration order (see [`crate::fit`]).
//!
//! A `fragmentation` pod's verdict on a node can come from the placement index's memo
//! ([`crate::score_memo`]) instead of the fit: the same verdict. From
//! [`crate::decision::INDEX_MIN_OFFERED`] offered nodes up, with an index, such a pod is decided
//! [`decide_briefly`]: by rank, from a table of the memo that holds a verdict for every node and is
//! kept whole by judging again only the nodes that changed; only the chosen node's verdict is
//! returned and the `FilteringSucceed` message lists that node alone, as the index does for HAMi's
//! policies (the same node, devices and score; see [`crate::index`]).

use crate::fit::{evaluate_node_with, node_preference};
use crate::fragmentation::WorkloadProfile;
use crate::fragmentation::{self, FragmentationInputs, NodeInputs, TypicalWorkload};
use crate::index::Fleet;
use crate::index::PlacementIndex;
use crate::ledger::UsageSource;
use crate::model::{DeviceUsage, NodeView, PodAllocation};
use crate::outcome::{
    Decision, NodeRejection, Outcome, PreparedPod, Verdict, placed, unschedulable,
};
use crate::policy::NodePolicy;
use crate::policy::PodPreferences;
use crate::registry::Registry;
use crate::request::PodRequest;
use crate::score_memo::{MemoSession, ScoreMemo};
use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// Decides where `pod` goes among `node_names` by evaluating every offered node.
pub fn decide(
    registry: &Registry,
    usage: &impl UsageSource,
    pod: &PreparedPod,
    node_names: &[String],
    now: jiff::Timestamp,
    fragmentation: FragmentationInputs<'_>,
) -> Decision {
    decide_remembering(
        Fleet::scanned(registry, usage),
        pod,
        node_names,
        now,
        fragmentation,
    )
}

/// Judges one pod's offered nodes: by the fit, or, for a `fragmentation` pod with a memo, by the
/// verdict remembered for the node.
struct Judge<'a, U> {
    registry: &'a Registry,
    usage: &'a U,
    pod: &'a PreparedPod,
    fragmentation: FragmentationInputs<'a>,
    typical: Option<Cow<'a, TypicalWorkload>>,
    score_scale_gpus: f64,
    session: Option<MemoSession<'a>>,
    usage_buffer: Vec<DeviceUsage>,
}

/// A node's verdict: its score and, unless it came from the memo, its devices; or why not.
type Judged = Result<(f32, Option<PodAllocation>), NodeRejection>;

impl<'a, U: UsageSource> Judge<'a, U> {
    fn new(
        registry: &'a Registry,
        usage: &'a U,
        pod: &'a PreparedPod,
        fragmentation: FragmentationInputs<'a>,
        memo: Option<&'a ScoreMemo>,
    ) -> Self {
        let typical = fragmentation::applies(&pod.preferences).then(|| {
            TypicalWorkload::resolve(
                fragmentation.profile,
                &pod.request,
                &pod.preferences,
                fragmentation.pod_cpu_milli,
            )
        });
        let score_scale_gpus = fragmentation.score_scale_for(&pod.request);
        // The typical workload's identity: the profile's, or 0 for the pod's own containers (a
        // function of the pod, which the memo's key holds).
        let typical_id = match fragmentation.profile {
            Some(profile) if !profile.typical().is_empty() => profile.typical_id(),
            _ => 0,
        };
        let session = memo.filter(|_| typical.is_some()).map(|memo| {
            memo.session(
                pod,
                fragmentation.pod_cpu_milli,
                score_scale_gpus,
                typical_id,
            )
        });
        Judge {
            registry,
            usage,
            pod,
            fragmentation,
            typical,
            score_scale_gpus,
            session,
            usage_buffer: Vec::new(),
        }
    }

    /// The node ranking: the fragmentation score ranks as binpack's does (higher is better).
    fn policy(&self) -> NodePolicy {
        match self.typical {
            Some(_) => NodePolicy::Binpack,
            None => self.pod.preferences.node_policy,
        }
    }

    fn cpu_free(&self, name: &str) -> Option<u64> {
        self.fragmentation
            .hosts
            .and_then(|h| h.host(name))
            .map(|h| h.cpu_free())
    }

    /// The verdict on `name`, from the memo when it holds one (a node the memo holds verdicts
    /// for is registered: unregistering it forgets them).
    fn judge(&mut self, name: &str) -> Judged {
        let cpu_free = self.cpu_free(name);
        if let Some(remembered) = self.session.as_mut().and_then(|s| s.get(name, cpu_free)) {
            return remembered.map(|score| (score, None));
        }
        if self.registry.get(name).is_none() {
            return Err(NodeRejection::Unregistered);
        }
        let evaluated = self.evaluate(name, cpu_free);
        if let Some(session) = self.session.as_mut() {
            session.put(
                name,
                cpu_free,
                evaluated
                    .as_ref()
                    .map(|(score, _)| *score)
                    .map_err(Clone::clone),
            );
        }
        evaluated.map(|(score, allocation)| (score, Some(allocation)))
    }

    /// The fit's verdict on `name` with free CPU `cpu_free`.
    fn evaluate(
        &mut self,
        name: &str,
        cpu_free: Option<u64>,
    ) -> Result<(f32, PodAllocation), NodeRejection> {
        let inputs = self.typical.as_deref().map(|typical| NodeInputs {
            typical,
            cpu_free,
            pod_cpu_milli: self.fragmentation.pod_cpu_milli,
            score_scale_gpus: self.score_scale_gpus,
        });
        evaluate_named(
            self.registry,
            self.usage,
            name,
            (&self.pod.request, &self.pod.preferences),
            inputs,
            &mut self.usage_buffer,
        )
    }

    /// The devices of the chosen node, whose score `score` came from the memo: the fit evaluates
    /// it once more. `None` if the fit disagrees (the node changed without the memo being told);
    /// the memo is then cleared.
    fn devices_of(&mut self, node: &str, score: f32) -> Option<PodAllocation> {
        let cpu_free = self.cpu_free(node);
        match self.evaluate(node, cpu_free) {
            Ok((fresh, allocation)) if fresh.to_bits() == score.to_bits() => Some(allocation),
            _ => {
                if let Some(session) = self.session.as_mut() {
                    session.clear();
                }
                None
            }
        }
    }
}

/// The fit's verdict on the registered node `name` for a pod asking `request` with `preferences`
/// (`inputs`: the `fragmentation` policy's, for a pod under it), its usage read into `buffer`.
fn evaluate_named(
    registry: &Registry,
    usage: &impl UsageSource,
    name: &str,
    (request, preferences): (&PodRequest, &PodPreferences),
    inputs: Option<NodeInputs<'_>>,
    buffer: &mut Vec<DeviceUsage>,
) -> Result<(f32, PodAllocation), NodeRejection> {
    let Some(node) = registry.get(name) else {
        return Err(NodeRejection::Unregistered);
    };
    buffer.clear();
    usage.node_usage(name, &node.devices, buffer);
    let view = NodeView {
        devices: &node.devices,
        usage: buffer,
        cordoned: &node.cordoned,
    };
    evaluate_node_with(view, request, preferences, inputs).map(|fit| (fit.score, fit.allocation))
}

/// [`decide`], taking a `fragmentation` pod's verdict on a node from `memo` where it holds one and
/// remembering the others there ([`crate::score_memo`]): the same decision, with fewer nodes
/// evaluated. The memo is the fleet's index's (none without an index), which forgets a node's
/// verdicts whenever the node changes.
pub fn decide_remembering<U: UsageSource>(
    fleet: Fleet<'_, U>,
    pod: &PreparedPod,
    node_names: &[String],
    now: jiff::Timestamp,
    fragmentation: FragmentationInputs<'_>,
) -> Decision {
    let Fleet {
        registry, usage, ..
    } = fleet;
    if !pod.request.has_gpu_request() {
        return Decision::empty(Outcome::NoGpuRequest);
    }
    let memo = fleet.index.map(PlacementIndex::score_memo);
    let mut judge = Judge::new(registry, usage, pod, fragmentation, memo);
    let offered: BTreeSet<&str> = node_names.iter().map(String::as_str).collect();
    let mut verdicts: BTreeMap<String, Verdict> = BTreeMap::new();
    let mut fits: Vec<(&str, f32, Option<PodAllocation>)> = Vec::new();
    for &name in &offered {
        match judge.judge(name) {
            Ok((score, allocation)) => {
                verdicts.insert(name.to_string(), Verdict::Score(score));
                fits.push((name, score, allocation));
            }
            Err(rejection) => {
                verdicts.insert(name.to_string(), Verdict::Rejected(rejection));
            }
        }
    }

    let total = offered.len();
    if fits.is_empty() {
        return unschedulable(verdicts, total);
    }
    // Sorted so that the chosen node is last: by policy preference, then by name descending.
    let policy = judge.policy();
    fits.sort_by(|a, b| node_preference(policy, a.1, b.1).then_with(|| b.0.cmp(a.0)));
    let listed: Vec<String> = fits.iter().map(|(n, s, _)| format!("{n}:{s:.2}")).collect();
    let (node, score, allocation) = fits.pop().expect("fits is not empty");
    let Some(allocation) = allocation.or_else(|| judge.devices_of(node, score)) else {
        drop(judge);
        return decide(registry, usage, pod, node_names, now, fragmentation);
    };
    let message = format!(
        "find fit node({node}), {} nodes not fit, {} nodes fit({})",
        total - listed.len(),
        listed.len(),
        listed.join(",")
    );
    placed(verdicts, node, score, allocation, now, message)
}

/// A `fragmentation` pod decided over many offered nodes by rank, from the index's memo: the same
/// node, devices and score as [`decide_remembering`], found without visiting every offered node.
/// The pod's table in the memo ([`crate::score_memo`]) is made whole once (every node of the
/// index judged), then only the nodes that changed since its last decision are judged again; the
/// best-ranked offered node is chosen, its verdict checked by the fit once more, and only its
/// verdict returned, with a `FilteringSucceed` message that lists it alone (`find fit node(<n>), 1
/// nodes fit(<n>:<score>), <m> other offered nodes ranked lower or not fitting by remembered
/// verdicts`).
/// `None` for any other pod, for a fleet without an index (whose memo it ranks with), and when no
/// offered node fits (the caller then scans, for every node's reason).
pub fn decide_briefly<U: UsageSource>(
    fleet: Fleet<'_, U>,
    pod: &PreparedPod,
    node_names: &[String],
    now: jiff::Timestamp,
    fragmentation: FragmentationInputs<'_>,
) -> Option<Decision> {
    let Fleet {
        registry, usage, ..
    } = fleet;
    let index = fleet.index?;
    if !pod.request.has_gpu_request() || !fragmentation::applies(&pod.preferences) {
        return None;
    }
    let mut judge = Judge::new(
        registry,
        usage,
        pod,
        fragmentation,
        Some(index.score_memo()),
    );
    let whole = judge.session.as_ref().is_some_and(MemoSession::is_whole);
    if whole {
        let forgotten = judge
            .session
            .as_mut()
            .map(MemoSession::take_forgotten)
            .unwrap_or_default();
        let mut judged = 0;
        for name in forgotten.iter().filter(|name| index.holds(name)) {
            let _ = judge.judge(name);
            judged += 1;
        }
        if let Some(session) = judge.session.as_mut() {
            session.count_ranked(judged);
        }
    } else {
        for name in index.node_names() {
            let _ = judge.judge(name);
        }
        if let Some(session) = judge.session.as_mut() {
            session.mark_whole();
        }
    }
    let offered = crate::index::offered_set(node_names);
    let (node, score, cpu_free) = judge
        .session
        .as_ref()?
        .best(|name| offered.contains(name))?;
    // The winner judged once more, by the fit on its free CPU now: a change the memo was not told
    // of shows here, and the decision is then taken again without the memo.
    let checked = if judge.cpu_free(&node) == cpu_free {
        judge.devices_of(&node, score)
    } else {
        if let Some(session) = judge.session.as_mut() {
            session.clear();
        }
        None
    };
    let Some(allocation) = checked else {
        drop(judge);
        return Some(decide(registry, usage, pod, node_names, now, fragmentation));
    };
    let message = format!(
        "find fit node({node}), 1 nodes fit({node}:{score:.2}), {} other offered nodes ranked lower or not fitting by remembered verdicts",
        offered.len() - 1
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

/// A verdict the memo would give that the fit no longer gives on the same view.
#[derive(Debug, Clone, PartialEq)]
pub struct StaleVerdict {
    /// The node.
    pub node: String,
    /// What the memo remembers (a score, or why the pod cannot go there).
    pub remembered: Result<f32, NodeRejection>,
    /// What the fit says now.
    pub now: Result<f32, NodeRejection>,
    /// The pod it was remembered for: its request, CPU, and typical workload's id.
    pub pod: String,
}

impl fmt::Display for StaleVerdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let show = |v: &Result<f32, NodeRejection>| match v {
            Ok(score) => format!("score {score}"),
            Err(rejection) => format!("rejected ({rejection})"),
        };
        write!(
            f,
            "node {}: the memo remembers {} for {}, the fit now says {}",
            self.node,
            show(&self.remembered),
            self.pod,
            show(&self.now)
        )
    }
}

/// Every verdict of the fleet's index's memo that a decision could still find (one for a pod
/// shape still remembered, under the typical workload of `profile` or the pod's own containers)
/// but that the fit no longer gives on `fleet`: the memo's contract ([`crate::score_memo`]) broken,
/// a change of a node that did not refresh the index or make it forget its verdicts. A verdict of
/// a whole table (read by rank) is judged with the node's free CPU in `hosts` now, any other with
/// the free CPU it is remembered under (the only one it is found with). Empty when it holds. For
/// checkers: it evaluates every remembered verdict again.
pub fn stale_verdicts<U: UsageSource>(
    fleet: Fleet<'_, U>,
    profile: Option<&WorkloadProfile>,
    hosts: Option<&dyn crate::fragmentation::HostSource>,
) -> Vec<StaleVerdict> {
    let Some(index) = fleet.index else {
        return Vec::new();
    };
    let current = profile.filter(|p| !p.typical().is_empty());
    let mut buffer = Vec::new();
    let mut stale = Vec::new();
    for row in index.score_memo().reachable() {
        // The typical workload the verdict was judged against, if a decision can still use it.
        let typical = match current {
            _ if row.typical == 0 => Cow::Owned(TypicalWorkload::of_pod(
                &row.request,
                &row.preferences,
                row.cpu_milli,
            )),
            Some(profile) if profile.typical_id() == row.typical => {
                Cow::Borrowed(profile.typical())
            }
            _ => continue,
        };
        let cpu_free = if row.ranked {
            hosts.and_then(|h| h.host(&row.node)).map(|h| h.cpu_free())
        } else {
            row.cpu_free
        };
        let inputs = NodeInputs {
            typical: &typical,
            cpu_free,
            pod_cpu_milli: row.cpu_milli,
            score_scale_gpus: row.score_scale_gpus,
        };
        let now = evaluate_named(
            fleet.registry,
            fleet.usage,
            &row.node,
            (&row.request, &row.preferences),
            Some(inputs),
            &mut buffer,
        )
        .map(|(score, _)| score);
        let same = match (&now, &row.verdict) {
            (Ok(a), Ok(b)) => a.to_bits() == b.to_bits(),
            (a, b) => a == b,
        };
        if !same {
            stale.push(StaleVerdict {
                node: row.node.clone(),
                remembered: row.verdict.clone(),
                now,
                pod: format!(
                    "a pod asking {} with {} mCPU (typical workload {})",
                    row.request, row.cpu_milli, row.typical
                ),
            });
        }
    }
    stale
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::annotations::GPU_SCHEDULER_POLICY;
    use crate::decision::{self, SchedulerSettings};
    use crate::ledger::Ledger;
    use crate::model::{ContainerDevice, PodAllocation};
    use crate::objects::{GpuAsk, gpu_pod, registered_fleet, with_annotations};

    /// A `fragmentation` pod asking half a GPU.
    fn half_gpu_pod() -> PreparedPod {
        let ask = GpuAsk {
            gpus: Some(1),
            memory_mib: None,
            memory_percent: Some(50),
            cores: Some(50),
        };
        let pod = with_annotations(
            gpu_pod("p", &[], &[ask]),
            &[(GPU_SCHEDULER_POLICY, "fragmentation")],
        );
        decision::prepare(&pod, &SchedulerSettings::default()).unwrap()
    }

    /// Both GPUs of `node`, whole.
    fn whole_of(node: &str) -> PodAllocation {
        let whole = |gpu: usize| ContainerDevice {
            uuid: format!("GPU-{node}-{gpu}"),
            backend: "NVIDIA".into(),
            usedmem: 10000,
            usedcores: 100,
        };
        PodAllocation {
            init: vec![],
            app: vec![vec![whole(0), whole(1)]],
        }
    }

    /// The checker finds exactly the verdicts a change without a refresh left behind: usage that
    /// changed, a node that went; and none once the index is refreshed.
    #[test]
    fn stale_verdicts_are_those_a_change_without_refresh_left_behind() {
        let (mut registry, names) = registered_fleet(3, 2);
        let mut ledger = Ledger::new();
        let mut index = PlacementIndex::build(&registry, &ledger);
        let pod = half_gpu_pod();
        let decide = |registry: &Registry, ledger: &Ledger, index: &PlacementIndex| {
            decision::decide(
                Fleet::indexed(registry, ledger, index),
                &pod,
                &names,
                jiff::Timestamp::UNIX_EPOCH,
                FragmentationInputs::default(),
            )
        };
        decide(&registry, &ledger, &index);
        assert_eq!(index.score_memo().len(), 3, "one verdict per node");
        let check = |registry: &Registry, ledger: &Ledger, index: &PlacementIndex| {
            stale_verdicts(Fleet::indexed(registry, ledger, index), None, None)
        };
        assert_eq!(check(&registry, &ledger, &index), vec![]);
        assert_eq!(
            stale_verdicts(Fleet::scanned(&registry, &ledger), None, None),
            vec![],
            "no index, no memo"
        );

        // The second node filled, the index not told.
        let second = &names[1];
        ledger.upsert("default/other", second, &whole_of(second));
        let stale = check(&registry, &ledger, &index);
        assert_eq!(stale.len(), 1, "{stale:?}");
        assert_eq!(&stale[0].node, second);
        assert!(
            stale[0].remembered.is_ok() && stale[0].now.is_err(),
            "{stale:?}"
        );
        assert!(
            stale[0]
                .to_string()
                .starts_with(&format!("node {second}: the memo remembers score"))
        );
        index.refresh(second, &registry, &ledger);
        assert_eq!(check(&registry, &ledger, &index), vec![]);

        // Decided again, then the third node goes away unseen by the index.
        decide(&registry, &ledger, &index);
        let third = &names[2];
        registry.remove(third);
        let stale = check(&registry, &ledger, &index);
        assert_eq!(stale.len(), 1, "{stale:?}");
        assert_eq!(stale[0].now, Err(NodeRejection::Unregistered));
        index.refresh(third, &registry, &ledger);
        assert_eq!(check(&registry, &ledger, &index), vec![]);
    }

    /// Verdicts judged against a typical workload that is no longer the profile's cannot be found
    /// by any decision, so the checker leaves them alone; those of the current one it checks.
    #[test]
    fn stale_verdicts_skip_an_old_typical_workload() {
        let (registry, names) = registered_fleet(2, 2);
        let mut ledger = Ledger::new();
        let index = PlacementIndex::build(&registry, &ledger);
        let pod = half_gpu_pod();
        let mut profile = WorkloadProfile::default();
        profile.observe(&pod.request, &pod.preferences, 0);
        let inputs = FragmentationInputs {
            profile: Some(&profile),
            ..FragmentationInputs::default()
        };
        decision::decide(
            Fleet::indexed(&registry, &ledger, &index),
            &pod,
            &names,
            jiff::Timestamp::UNIX_EPOCH,
            inputs,
        );
        ledger.upsert("default/other", &names[0], &whole_of(&names[0]));
        let fleet = Fleet::indexed(&registry, &ledger, &index);
        assert_eq!(stale_verdicts(fleet, Some(&profile), None).len(), 1);
        let mut newer = profile.clone();
        newer.observe(&pod.request, &pod.preferences, 0);
        assert_ne!(newer.typical_id(), profile.typical_id());
        assert_eq!(stale_verdicts(fleet, Some(&newer), None), vec![]);
    }

    /// `percent` of GPU 0 of `node` (memory and cores).
    fn share_of(node: &str, percent: u32) -> PodAllocation {
        PodAllocation {
            init: vec![],
            app: vec![vec![ContainerDevice {
                uuid: format!("GPU-{node}-0"),
                backend: "NVIDIA".into(),
                usedmem: 100 * percent,
                usedcores: percent,
            }]],
        }
    }

    /// A profile that has seen one whole-GPU `fragmentation` pod: the typical workload is whole
    /// GPUs, so a partly used GPU is a fragment and usage moves the score.
    fn whole_gpu_profile() -> WorkloadProfile {
        let ask = GpuAsk {
            gpus: Some(1),
            memory_mib: None,
            memory_percent: Some(100),
            cores: Some(100),
        };
        let pod = with_annotations(
            gpu_pod("w", &[], &[ask]),
            &[(GPU_SCHEDULER_POLICY, "fragmentation")],
        );
        let pod = decision::prepare(&pod, &SchedulerSettings::default()).unwrap();
        let mut profile = WorkloadProfile::default();
        profile.observe(&pod.request, &pod.preferences, 0);
        profile
    }

    const T0: jiff::Timestamp = jiff::Timestamp::UNIX_EPOCH;

    /// A decision from remembered verdicts is the plain one; when the remembered winner changed
    /// without the index being told, the fit's second look at it catches the difference, the memo
    /// is forgotten and the decision is made again without it (the fresh score, not the stale one).
    #[test]
    fn a_remembered_winner_that_changed_unseen_is_decided_again_without_the_memo() {
        let (registry, names) = registered_fleet(3, 2);
        let profile = whole_gpu_profile();
        let inputs = FragmentationInputs {
            profile: Some(&profile),
            ..FragmentationInputs::default()
        };
        let pod = half_gpu_pod();
        let mut ledger = Ledger::new();
        let index = PlacementIndex::build(&registry, &ledger);
        let with_memo = |ledger: &Ledger| {
            decision::decide(
                Fleet::indexed(&registry, ledger, &index),
                &pod,
                &names,
                T0,
                inputs,
            )
        };
        let plain = |ledger: &Ledger| decide(&registry, ledger, &pod, &names, T0, inputs);
        assert_eq!(with_memo(&ledger), plain(&ledger));
        let first_hits = index.score_memo().hits_and_misses().0;
        assert_eq!(with_memo(&ledger), plain(&ledger));
        assert_eq!(
            index.score_memo().hits_and_misses().0,
            first_hits + 3,
            "the second decision read every node from the memo"
        );

        // A quarter of the winner's first GPU taken, the index not told: the memo still ranks it
        // first at 46, the fit now says 53.
        ledger.upsert("default/other", &names[0], &share_of(&names[0], 25));
        let stale = stale_verdicts(
            Fleet::indexed(&registry, &ledger, &index),
            Some(&profile),
            None,
        );
        assert_eq!(
            stale
                .iter()
                .map(|s| (s.node.as_str(), s.remembered.clone(), s.now.clone()))
                .collect::<Vec<_>>(),
            vec![(names[0].as_str(), Ok(46.0), Ok(53.0))]
        );
        assert_eq!(
            stale[0].to_string(),
            format!(
                "node {}: the memo remembers score 46 for a pod asking c-0: 1 GPU of 50 % memory \
                 and 50 % cores with 0 mCPU (typical workload {}), the fit now says score 53",
                names[0],
                profile.typical_id()
            )
        );
        let decided = with_memo(&ledger);
        assert_eq!(decided, plain(&ledger));
        assert!(
            matches!(decided.outcome, Outcome::Scheduled { score, .. } if score == 53.0),
            "{:?}",
            decided.outcome
        );
        assert!(index.score_memo().is_empty(), "the memo was forgotten");
    }

    /// Free CPU per node moves the `fragmentation` score: a node without free CPU for the typical
    /// task ranks otherwise than when CPU is unknown, or the same on every node.
    #[test]
    fn each_node_is_judged_with_its_own_free_cpu() {
        use crate::fragmentation::{HostResources, HostSource};
        /// `free` millicores free on every node but `starved`, which has none.
        #[derive(Debug)]
        struct Hosts {
            starved: Option<String>,
            free: u64,
        }
        impl HostSource for Hosts {
            fn host(&self, node: &str) -> Option<HostResources> {
                let free = match &self.starved {
                    Some(starved) if starved == node => 0,
                    _ => self.free,
                };
                Some(HostResources {
                    cpu_capacity_milli: 64_000,
                    cpu_requested_milli: 64_000 - free,
                })
            }
        }
        let (registry, names) = registered_fleet(3, 2);
        let ledger = Ledger::new();
        let index = PlacementIndex::build(&registry, &ledger);
        let mut pod = half_gpu_pod();
        pod.cpu_milli = 8_000;
        let decide_with = |hosts: Option<&dyn HostSource>| {
            let inputs = FragmentationInputs {
                hosts,
                pod_cpu_milli: pod.cpu_milli,
                ..FragmentationInputs::default()
            };
            let remembered = decision::decide(
                Fleet::indexed(&registry, &ledger, &index),
                &pod,
                &names,
                T0,
                inputs,
            );
            assert_eq!(
                remembered,
                decide(&registry, &ledger, &pod, &names, T0, inputs)
            );
            remembered.verdicts
        };
        let per_node = Hosts {
            starved: Some(names[0].clone()),
            free: 64_000,
        };
        let judged = decide_with(Some(&per_node));
        let unknown = decide_with(None);
        let none_free = decide_with(Some(&Hosts {
            starved: None,
            free: 0,
        }));
        let one_free = decide_with(Some(&Hosts {
            starved: None,
            free: 1,
        }));
        assert_ne!(judged[&names[0]], judged[&names[1]], "{judged:?}");
        for other in [&unknown, &none_free, &one_free] {
            assert_ne!(&judged, other);
        }
        // And again, now from the memo: the same verdicts.
        assert_eq!(decide_with(Some(&per_node)), judged);
    }

    /// From 64 offered nodes up a `fragmentation` pod gets the brief answer: the plain decision's
    /// node, devices and score, only the winner's verdict, and a message that counts the rest;
    /// again by rank from the memo. Other pods, a fleet without an index and a pod that fits
    /// nowhere get none.
    #[test]
    fn the_brief_answer_names_only_the_winner_and_counts_the_rest() {
        let (registry, names) = registered_fleet(70, 2);
        let mut ledger = Ledger::new();
        // Five nodes full.
        for name in &names[..5] {
            ledger.upsert(&format!("default/full-{name}"), name, &whole_of(name));
        }
        let index = PlacementIndex::build(&registry, &ledger);
        let pod = half_gpu_pod();
        let inputs = FragmentationInputs::default();
        let plain = decide(&registry, &ledger, &pod, &names, T0, inputs);
        let Outcome::Scheduled { node, score, .. } = &plain.outcome else {
            panic!("{plain:?}")
        };
        let message = format!(
            "find fit node({node}), 1 nodes fit({node}:{score:.2}), 69 other offered nodes ranked lower or not fitting by remembered verdicts"
        );
        let decide_indexed = |index: &PlacementIndex| {
            decision::decide(
                Fleet::indexed(&registry, &ledger, index),
                &pod,
                &names,
                T0,
                inputs,
            )
        };
        for round in ["judged", "remembered"] {
            let brief = decide_indexed(&index);
            assert_eq!(brief.outcome, plain.outcome, "{round}");
            assert_eq!(brief.annotations, plain.annotations, "{round}");
            assert_eq!(
                brief.verdicts,
                BTreeMap::from([(node.clone(), Verdict::Score(*score))]),
                "{round}"
            );
            assert!(
                brief.events.iter().any(|e| e.message == message),
                "{round}: {:?}",
                brief.events
            );
        }
        assert_eq!(
            index.score_memo().hits_and_misses(),
            (70, 70),
            "the first answer judged every node, the second relied on every verdict"
        );
        // One node changed (as far as the index knows): judged again, the others relied on.
        let mut index = index;
        index.refresh(&names[10], &registry, &ledger);
        assert_eq!(decide_indexed(&index).outcome, plain.outcome);
        assert_eq!(index.score_memo().hits_and_misses(), (70 + 69, 70 + 1));

        let brief = |pod: &PreparedPod, fleet: Fleet<'_, Ledger>| {
            decide_briefly(fleet, pod, &names, T0, inputs)
        };
        let indexed = Fleet::indexed(&registry, &ledger, &index);
        assert!(brief(&pod, indexed).is_some());
        assert!(
            brief(&pod, Fleet::scanned(&registry, &ledger)).is_none(),
            "no index"
        );
        let ask = GpuAsk {
            gpus: Some(1),
            memory_mib: None,
            memory_percent: Some(50),
            cores: Some(50),
        };
        let binpack =
            decision::prepare(&gpu_pod("b", &[], &[ask]), &SchedulerSettings::default()).unwrap();
        assert!(brief(&binpack, indexed).is_none(), "HAMi's policy");
        let no_gpu = PreparedPod {
            preferences: pod.preferences.clone(),
            ..decision::prepare(&gpu_pod("cpu", &[], &[]), &SchedulerSettings::default()).unwrap()
        };
        assert!(!no_gpu.request.has_gpu_request());
        assert!(brief(&no_gpu, indexed).is_none(), "no GPU asked");
        let mut full = Ledger::new();
        for name in &names {
            full.upsert(&format!("default/full-{name}"), name, &whole_of(name));
        }
        let full_index = PlacementIndex::build(&registry, &full);
        assert!(
            brief(&pod, Fleet::indexed(&registry, &full, &full_index)).is_none(),
            "nothing fits: the full scan gives every node's reason"
        );
    }
}
