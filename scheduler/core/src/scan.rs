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
//! [`decide_briefly`]: every node is still judged, but only the chosen node's verdict is returned and
//! the `FilteringSucceed` message counts the fitting nodes instead of listing them, as the index does
//! for HAMi's policies (the same node, devices and score; see [`crate::index`]).

use crate::fit::{evaluate_node_with, node_preference};
use crate::fragmentation::{self, FragmentationInputs, NodeInputs, TypicalWorkload};
use crate::ledger::UsageSource;
use crate::model::{DeviceUsage, NodeView, PodAllocation};
use crate::outcome::{
    Decision, NodeRejection, Outcome, PreparedPod, Verdict, placed, unschedulable,
};
use crate::policy::NodePolicy;
use crate::registry::Registry;
use crate::score_memo::{MemoSession, ScoreMemo};
use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};

/// Decides where `pod` goes among `node_names` by evaluating every offered node.
pub fn decide(
    registry: &Registry,
    usage: &impl UsageSource,
    pod: &PreparedPod,
    node_names: &[String],
    now: jiff::Timestamp,
    fragmentation: FragmentationInputs<'_>,
) -> Decision {
    decide_remembering(registry, usage, pod, node_names, now, fragmentation, None)
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
        let Some(node) = self.registry.get(name) else {
            return Err(NodeRejection::Unregistered);
        };
        self.usage_buffer.clear();
        self.usage
            .node_usage(name, &node.devices, &mut self.usage_buffer);
        let view = NodeView {
            devices: &node.devices,
            usage: &self.usage_buffer,
            cordoned: &node.cordoned,
        };
        let inputs = self.typical.as_deref().map(|typical| NodeInputs {
            typical,
            cpu_free,
            pod_cpu_milli: self.fragmentation.pod_cpu_milli,
            score_scale_gpus: self.score_scale_gpus,
        });
        evaluate_node_with(view, &self.pod.request, &self.pod.preferences, inputs)
            .map(|fit| (fit.score, fit.allocation))
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

/// [`decide`], taking a `fragmentation` pod's verdict on a node from `memo` where it holds one and
/// remembering the others there ([`crate::score_memo`]): the same decision, with fewer nodes
/// evaluated. `memo` must be forgotten for a node whenever the node changes (the placement index
/// that owns it does this on refresh).
pub fn decide_remembering(
    registry: &Registry,
    usage: &impl UsageSource,
    pod: &PreparedPod,
    node_names: &[String],
    now: jiff::Timestamp,
    fragmentation: FragmentationInputs<'_>,
    memo: Option<&ScoreMemo>,
) -> Decision {
    if !pod.request.has_gpu_request() {
        return Decision::empty(Outcome::NoGpuRequest);
    }
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

/// A `fragmentation` pod decided over many offered nodes with the index's memo: every node judged
/// as [`decide_remembering`] judges it and the same node, devices and score chosen, but only the
/// chosen node's verdict returned and a `FilteringSucceed` message that counts the fitting nodes
/// instead of listing them (`find fit node(<n>), <k> nodes not fit, <f> nodes fit(<n>:<score>),
/// <f - 1> fitting nodes not listed`).
/// `None` for any other pod, and when no node fits (the caller then scans, for every node's reason).
pub fn decide_briefly(
    registry: &Registry,
    usage: &impl UsageSource,
    pod: &PreparedPod,
    node_names: &[String],
    now: jiff::Timestamp,
    fragmentation: FragmentationInputs<'_>,
    memo: &ScoreMemo,
) -> Option<Decision> {
    if !pod.request.has_gpu_request() || !fragmentation::applies(&pod.preferences) {
        return None;
    }
    let mut judge = Judge::new(registry, usage, pod, fragmentation, Some(memo));
    let offered = crate::index::offered_set(node_names);
    let policy = judge.policy();
    let mut fits = 0usize;
    let mut best: Option<(&str, f32, Option<PodAllocation>)> = None;
    for &name in &offered {
        let Ok((score, allocation)) = judge.judge(name) else {
            continue;
        };
        fits += 1;
        // The scan's order: preference, then the smallest name.
        let better = best.as_ref().is_none_or(|(b, b_score, _)| {
            node_preference(policy, *b_score, score)
                .then_with(|| name.cmp(b))
                .is_lt()
        });
        if better {
            best = Some((name, score, allocation));
        }
    }
    let (node, score, allocation) = best?;
    let Some(allocation) = allocation.or_else(|| judge.devices_of(node, score)) else {
        drop(judge);
        return Some(decide(registry, usage, pod, node_names, now, fragmentation));
    };
    let message = format!(
        "find fit node({node}), {} nodes not fit, {fits} nodes fit({node}:{score:.2}), {} fitting nodes not listed",
        offered.len() - fits,
        fits - 1
    );
    Some(placed(
        BTreeMap::from([(node.to_string(), Verdict::Score(score))]),
        node,
        score,
        allocation,
        now,
        message,
    ))
}
