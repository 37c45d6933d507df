//! The placement decision over a fleet: HAMi's extender `Filter` as a pure function (spec §4.2).
//!
//! Given a pod, the names of the nodes kube-scheduler offers, the registry, the usage ledger and the
//! time, [`filter`] returns the chosen node and devices per container, a verdict for every offered
//! node (its score, or its reasons), the annotations to write, and the `FilteringSucceed` /
//! `FilteringFailed` events in HAMi's formats. It performs no I/O; the caller writes the annotations,
//! records the allocation in the ledger, and emits the events.
//!
//! Nodes are ranked by the node policy (binpack: highest score; spread: lowest), or, for a pod under
//! sliceguard's `fragmentation` GPU policy, by its fragmentation score (highest wins; see
//! [`crate::fragmentation`] and [`filter_prepared_with`]). HAMi leaves ties to
//! goroutine timing; sliceguard breaks them by node name (the smallest name wins), and devices by
//! registration order (see [`crate::fit`]).

use crate::annotations::{DEVICES_ALLOCATED, DEVICES_TO_ALLOCATE, VGPU_NODE, VGPU_TIME};
use crate::codec::pod_devices;
use crate::codec::reasons;
use crate::fit::{NodeView, evaluate_node_with, node_preference};
use crate::fragmentation::{self, FragmentationInputs, NodeInputs, TypicalWorkload};
use crate::ledger::UsageSource;
use crate::model::{DeviceUsage, PodAllocation};
use crate::policy::{NodePolicy, PodPreferences, PolicyDefaults};
use crate::registry::Registry;
use crate::request::{PodRequest, RequestDefaults, pod_request};
use k8s_openapi::api::core::v1::Pod;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};

/// HAMi's failedNodes reason for a node without a valid registration.
pub const NODE_UNREGISTERED: &str = "node unregistered";

/// Scheduler-wide settings the decision depends on.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SchedulerSettings {
    /// Default node and GPU policies.
    pub policies: PolicyDefaults,
    /// Request defaults.
    pub requests: RequestDefaults,
}

/// The verdict on one offered node.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// The pod fits; the node's score (usage before the pod).
    Score(f32),
    /// The pod does not fit, with HAMi's reason text.
    Reasons(String),
}

/// Kubernetes event type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum EventType {
    /// Normal.
    Normal,
    /// Warning.
    Warning,
}

/// An event to emit on the pod.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EventRecord {
    /// Normal or Warning.
    #[serde(rename = "type")]
    pub event_type: EventType,
    /// `FilteringSucceed` or `FilteringFailed`.
    pub reason: &'static str,
    /// HAMi's message text.
    pub message: String,
}

/// What the filter decided.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// No container asks for a GPU: every offered node passes, nothing is written.
    NoGpuRequest,
    /// Placed on `node`.
    Scheduled {
        /// Chosen node.
        node: String,
        /// Its score.
        score: f32,
        /// Devices per container.
        allocation: PodAllocation,
    },
    /// No offered node can hold the pod.
    Unschedulable,
    /// The pod's requests or annotations are invalid; the message names the field.
    Invalid(String),
}

/// The full decision.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    /// What was decided.
    pub outcome: Outcome,
    /// A verdict per offered node (deduplicated).
    pub verdicts: BTreeMap<String, Verdict>,
    /// Pod annotations to write (empty unless scheduled).
    pub annotations: BTreeMap<String, String>,
    /// Pod labels to write (`hami.io/vgpu-node`, as HAMi adds with the annotation).
    pub labels: BTreeMap<String, String>,
    /// Events to emit on the pod.
    pub events: Vec<EventRecord>,
}

impl Decision {
    /// The chosen node, if any.
    pub fn node(&self) -> Option<&str> {
        match &self.outcome {
            Outcome::Scheduled { node, .. } => Some(node),
            _ => None,
        }
    }

    /// Rejected nodes and their reasons (the extender's `FailedNodes`).
    pub fn failed_nodes(&self) -> BTreeMap<String, String> {
        self.verdicts
            .iter()
            .filter_map(|(n, v)| match v {
                Verdict::Reasons(r) => Some((n.clone(), r.clone())),
                Verdict::Score(_) => None,
            })
            .collect()
    }
}

/// Everything about the pod that the filter reads, prepared once.
#[derive(Debug, Clone)]
pub struct PreparedPod {
    /// `namespace/name` for messages.
    pub name: String,
    /// Requests per container.
    pub request: PodRequest,
    /// Policies and selectors.
    pub preferences: PodPreferences,
}

/// Reads a pod's requests and preferences; the error names the container or annotation at fault.
pub fn prepare(pod: &Pod, settings: &SchedulerSettings) -> Result<PreparedPod, String> {
    let request = pod_request(pod, settings.requests).map_err(|e| e.to_string())?;
    let empty = BTreeMap::new();
    let annotations = pod.metadata.annotations.as_ref().unwrap_or(&empty);
    let preferences = PodPreferences::from_annotations(annotations, &settings.policies)
        .map_err(|e| e.to_string())?;
    Ok(PreparedPod {
        name: pod.metadata.name.clone().unwrap_or_default(),
        request,
        preferences,
    })
}

/// Decides where a pod goes among `node_names`, at time `now`.
pub fn filter(
    registry: &Registry,
    usage: &impl UsageSource,
    settings: &SchedulerSettings,
    pod: &Pod,
    node_names: &[String],
    now: jiff::Timestamp,
) -> Decision {
    match prepare(pod, settings) {
        Ok(prepared) => filter_prepared(registry, usage, &prepared, node_names, now),
        Err(message) => {
            let name = pod.metadata.name.clone().unwrap_or_default();
            Decision {
                outcome: Outcome::Invalid(message.clone()),
                verdicts: BTreeMap::new(),
                annotations: BTreeMap::new(),
                labels: BTreeMap::new(),
                events: vec![EventRecord {
                    event_type: EventType::Warning,
                    reason: "FilteringFailed",
                    message: format!("calcScore failed {message} for pod {name}"),
                }],
            }
        }
    }
}

/// [`filter`] for a pod already prepared.
pub fn filter_prepared(
    registry: &Registry,
    usage: &impl UsageSource,
    pod: &PreparedPod,
    node_names: &[String],
    now: jiff::Timestamp,
) -> Decision {
    if node_names.len() >= crate::index::INDEX_MIN_OFFERED
        && let Some(index) = usage.placement_index()
        && let Some(decision) = index.decide(registry, pod, node_names, now)
    {
        return decision;
    }
    filter_prepared_with(
        registry,
        usage,
        pod,
        node_names,
        now,
        FragmentationInputs::default(),
    )
}

/// [`filter_prepared`] by the plain scan of every offered node (HAMi's approach), whatever `usage`
/// offers: the reference the placement index ([`crate::index`]) must agree with.
pub fn filter_scan(
    registry: &Registry,
    usage: &impl UsageSource,
    pod: &PreparedPod,
    node_names: &[String],
    now: jiff::Timestamp,
) -> Decision {
    filter_prepared_with(
        registry,
        usage,
        pod,
        node_names,
        now,
        FragmentationInputs::default(),
    )
}

/// [`filter_prepared`], with what sliceguard's `fragmentation` policy scores against: the typical
/// workload and the nodes' CPU (see [`crate::fragmentation`]). Other policies ignore it.
pub fn filter_prepared_with(
    registry: &Registry,
    usage: &impl UsageSource,
    pod: &PreparedPod,
    node_names: &[String],
    now: jiff::Timestamp,
    fragmentation: FragmentationInputs<'_>,
) -> Decision {
    let typical = fragmentation::applies(&pod.preferences).then(|| {
        TypicalWorkload::resolve(
            fragmentation.profile,
            &pod.request,
            &pod.preferences,
            fragmentation.pod_cpu_milli,
        )
    });
    let mut decision = Decision {
        outcome: Outcome::Unschedulable,
        verdicts: BTreeMap::new(),
        annotations: BTreeMap::new(),
        labels: BTreeMap::new(),
        events: Vec::new(),
    };
    if !pod.request.has_gpu_request() {
        decision.outcome = Outcome::NoGpuRequest;
        return decision;
    }
    let offered: BTreeSet<&str> = node_names.iter().map(String::as_str).collect();
    let mut fits: Vec<(&str, f32, PodAllocation)> = Vec::new();
    let mut usage_buffer: Vec<DeviceUsage> = Vec::new();
    for &name in &offered {
        let Some(node) = registry.get(name) else {
            decision.verdicts.insert(
                name.to_string(),
                Verdict::Reasons(NODE_UNREGISTERED.to_string()),
            );
            continue;
        };
        usage_buffer.clear();
        usage_buffer.extend(node.devices.iter().map(|d| usage.device_usage(name, &d.id)));
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
            score_scale_gpus: fragmentation.score_scale_gpus,
        });
        match evaluate_node_with(view, &pod.request, &pod.preferences, inputs) {
            Ok(fit) => {
                decision
                    .verdicts
                    .insert(name.to_string(), Verdict::Score(fit.score));
                fits.push((name, fit.score, fit.allocation));
            }
            Err(rejection) => {
                decision
                    .verdicts
                    .insert(name.to_string(), Verdict::Reasons(rejection.to_string()));
            }
        }
    }

    let total = offered.len();
    if fits.is_empty() {
        decision.events = failure_events(&decision.verdicts, total);
        return decision;
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
    placed(decision.verdicts, node, score, allocation, now, message)
}

/// The decision that places the pod on `node` with `allocation`: the annotations, the label and the
/// `FilteringSucceed` event with `message`, and the verdicts given. An allocation that cannot be
/// encoded is `Invalid`.
pub(crate) fn placed(
    verdicts: BTreeMap<String, Verdict>,
    node: &str,
    score: f32,
    allocation: PodAllocation,
    now: jiff::Timestamp,
    message: String,
) -> Decision {
    let mut decision = Decision {
        outcome: Outcome::Unschedulable,
        verdicts,
        annotations: BTreeMap::new(),
        labels: BTreeMap::new(),
        events: Vec::new(),
    };
    let encoded = match pod_devices::render(&allocation.to_pod_devices()) {
        Ok(encoded) => encoded,
        Err(e) => {
            decision.outcome =
                Outcome::Invalid(format!("allocation on node {node} cannot be encoded: {e}"));
            return decision;
        }
    };
    decision
        .annotations
        .insert(VGPU_NODE.into(), node.to_string());
    decision
        .annotations
        .insert(VGPU_TIME.into(), now.as_second().to_string());
    decision
        .annotations
        .insert(DEVICES_TO_ALLOCATE.into(), encoded.clone());
    decision
        .annotations
        .insert(DEVICES_ALLOCATED.into(), encoded);
    decision.labels.insert(VGPU_NODE.into(), node.to_string());
    decision.events.push(EventRecord {
        event_type: EventType::Normal,
        reason: "FilteringSucceed",
        message,
    });
    decision.outcome = Outcome::Scheduled {
        node: node.to_string(),
        score,
        allocation,
    };
    decision
}

/// HAMi's `FilteringFailed` events: one per counted reason with the nodes that gave it, then the summary.
fn failure_events(verdicts: &BTreeMap<String, Verdict>, total: usize) -> Vec<EventRecord> {
    // Identical reason texts (the common case across a fleet) are parsed once.
    let mut parsed: std::collections::HashMap<&str, Vec<String>> = std::collections::HashMap::new();
    let mut rows: Vec<(&str, &str)> = Vec::with_capacity(verdicts.len());
    for (node, verdict) in verdicts {
        if let Verdict::Reasons(text) = verdict {
            parsed
                .entry(text.as_str())
                .or_insert_with(|| match reasons::parse(text) {
                    Ok(list) => list
                        .counted_reasons()
                        .collect::<BTreeSet<&str>>()
                        .into_iter()
                        .map(String::from)
                        .collect(),
                    Err(_) => Vec::new(),
                });
            rows.push((node.as_str(), text.as_str()));
        }
    }
    failure_events_from(
        rows.iter()
            .map(|(node, text)| (*node, parsed[text].as_slice())),
        total,
    )
}

/// [`failure_events`] from each rejected node (in name order) with the distinct counted reasons of
/// its text (empty when HAMi's `ParseReason` reads none, as for `NodeInsufficientDevice`).
pub(crate) fn failure_events_from<'a>(
    rows: impl IntoIterator<Item = (&'a str, &'a [String])>,
    total: usize,
) -> Vec<EventRecord> {
    let mut by_reason: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (node, counted) in rows {
        for reason in counted {
            by_reason.entry(reason.as_str()).or_default().push(node);
        }
    }
    let mut events: Vec<EventRecord> = by_reason
        .into_iter()
        .map(|(reason, nodes)| EventRecord {
            event_type: EventType::Warning,
            reason: "FilteringFailed",
            message: format!("{} nodes {reason}({})", nodes.len(), nodes.join(",")),
        })
        .collect();
    events.push(EventRecord {
        event_type: EventType::Warning,
        reason: "FilteringFailed",
        message: format!("no available node, {total} nodes do not meet"),
    });
    events
}
