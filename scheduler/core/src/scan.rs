//! The plain scan: every offered node evaluated by the fit, the best-ranked one that fits chosen
//! (HAMi's `Filter`, spec §4.2). The reference the placement index ([`crate::index`]) must agree
//! with, and the path for pods the index does not decide (sliceguard's `fragmentation` policy, whose
//! node score depends on the pod). Callers go through [`crate::decision::decide`].
//!
//! Nodes are ranked by the node policy (binpack: highest score; spread: lowest), or, for a pod under
//! the `fragmentation` GPU policy, by its fragmentation score (highest wins). HAMi leaves ties to
//! goroutine timing; sliceguard breaks them by node name (the smallest name wins), and devices by
//! registration order (see [`crate::fit`]).

use crate::fit::{evaluate_node_with, node_preference};
use crate::fragmentation::{self, FragmentationInputs, NodeInputs, TypicalWorkload};
use crate::ledger::UsageSource;
use crate::model::{DeviceUsage, NodeView, PodAllocation};
use crate::outcome::{
    Decision, NodeRejection, Outcome, PreparedPod, Verdict, placed, unschedulable,
};
use crate::policy::NodePolicy;
use crate::registry::Registry;
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
    if !pod.request.has_gpu_request() {
        return Decision::empty(Outcome::NoGpuRequest);
    }
    let typical = fragmentation::applies(&pod.preferences).then(|| {
        TypicalWorkload::resolve(
            fragmentation.profile,
            &pod.request,
            &pod.preferences,
            fragmentation.pod_cpu_milli,
        )
    });
    let offered: BTreeSet<&str> = node_names.iter().map(String::as_str).collect();
    let mut verdicts: BTreeMap<String, Verdict> = BTreeMap::new();
    let mut fits: Vec<(&str, f32, PodAllocation)> = Vec::new();
    let mut usage_buffer: Vec<DeviceUsage> = Vec::new();
    let score_scale_gpus = fragmentation.score_scale_for(&pod.request);
    for &name in &offered {
        let Some(node) = registry.get(name) else {
            verdicts.insert(
                name.to_string(),
                Verdict::Rejected(NodeRejection::Unregistered),
            );
            continue;
        };
        usage_buffer.clear();
        usage.node_usage(name, &node.devices, &mut usage_buffer);
        let view = NodeView {
            devices: &node.devices,
            usage: &usage_buffer,
            cordoned: &node.cordoned,
        };
        let inputs = typical.as_deref().map(|typical| NodeInputs {
            typical,
            cpu_free: fragmentation
                .hosts
                .and_then(|h| h.host(name))
                .map(|h| h.cpu_free()),
            pod_cpu_milli: fragmentation.pod_cpu_milli,
            score_scale_gpus,
        });
        match evaluate_node_with(view, &pod.request, &pod.preferences, inputs) {
            Ok(fit) => {
                verdicts.insert(name.to_string(), Verdict::Score(fit.score));
                fits.push((name, fit.score, fit.allocation));
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
    // The fragmentation score (higher is better) ranks as binpack's does.
    let policy = match typical {
        Some(_) => NodePolicy::Binpack,
        None => pod.preferences.node_policy,
    };
    fits.sort_by(|a, b| node_preference(policy, a.1, b.1).then_with(|| b.0.cmp(a.0)));
    let listed: Vec<String> = fits.iter().map(|(n, s, _)| format!("{n}:{s:.2}")).collect();
    let (node, score, allocation) = fits.pop().expect("fits is not empty");

    let message = format!(
        "find fit node({node}), {} nodes not fit, {} nodes fit({})",
        total - listed.len(),
        listed.len(),
        listed.join(",")
    );
    placed(verdicts, node, score, allocation, now, message)
}
