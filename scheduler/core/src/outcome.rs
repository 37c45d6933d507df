//! What a placement decision is made of, and nothing that decides: the prepared pod, the verdict
//! on each offered node, the outcome, the annotations and labels to write, and the events in HAMi's
//! formats (spec §4.2). A leaf of the decision layer: the scan ([`crate::scan`]), the placement
//! index ([`crate::index`]) and the entry point ([`crate::decision`]) all build these, and this
//! module imports none of them.
//!
//! Rejections stay structured ([`NodeRejection`]) until they are rendered: the extender's
//! `FailedNodes` text by [`Decision::failed_nodes`], the `FilteringFailed` events from the counted
//! reasons directly (HAMi renders the text and parses it back; the result is the same).

use crate::annotations::{DEVICES_ALLOCATED, DEVICES_TO_ALLOCATE, VGPU_NODE, VGPU_TIME};
use crate::codec::FieldError;
use crate::codec::pod_devices;
use crate::model::PodAllocation;
use crate::policy::{PodPreferences, PolicyDefaults, PreferenceError};
use crate::request::{PodRequest, RequestDefaults, RequestError, pod_request};
use foldhash::fast::FixedState;
use k8s_openapi::api::core::v1::Pod;
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};

pub use crate::rules::{NODE_UNREGISTERED, NodeRejection};

/// Scheduler-wide settings the decision depends on.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SchedulerSettings {
    /// Default node and GPU policies.
    pub policies: PolicyDefaults,
    /// Request defaults.
    pub requests: RequestDefaults,
}

/// The verdict on one offered node.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// The pod fits; the node's score (usage before the pod).
    Score(f32),
    /// The pod does not fit, and why (rendered as HAMi's reason text).
    Rejected(NodeRejection),
}

impl Verdict {
    /// HAMi's reason text of a rejection (`None` for a score).
    pub fn reasons(&self) -> Option<String> {
        match self {
            Verdict::Score(_) => None,
            Verdict::Rejected(rejection) => Some(rejection.to_string()),
        }
    }
}

/// Serialised as before the rejections became structured: `{"score": 12.5}` or
/// `{"reasons": "1/2 CardInsufficientMemory"}`.
impl Serialize for Verdict {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = serializer.serialize_map(Some(1))?;
        match self {
            Verdict::Score(score) => map.serialize_entry("score", score)?,
            Verdict::Rejected(rejection) => {
                map.serialize_entry("reasons", &rejection.to_string())?;
            }
        }
        map.end()
    }
}

/// The reason of HAMi's event for a placed pod.
pub const FILTERING_SUCCEED: &str = "FilteringSucceed";

/// The reason of HAMi's events for a pod the filter could not place (or could not write).
pub const FILTERING_FAILED: &str = "FilteringFailed";

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

/// Why a pod cannot be decided at all; the message names the container, annotation or node.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidPod {
    /// A container's GPU resources do not read (HAMi's `GenerateResourceRequests`).
    #[error(transparent)]
    Request(#[from] RequestError),
    /// A policy or selector annotation does not read.
    #[error(transparent)]
    Preferences(#[from] PreferenceError),
    /// The chosen allocation cannot be written as `hami.io/vgpu-devices-allocated`.
    #[error("allocation on node {node} cannot be encoded: {source}")]
    Unencodable {
        /// The chosen node.
        node: String,
        /// The codec's error.
        source: FieldError,
    },
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
    /// The pod's requests or annotations are invalid.
    Invalid(InvalidPod),
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
    /// A decision with this outcome and nothing else yet.
    pub fn empty(outcome: Outcome) -> Self {
        Decision {
            outcome,
            verdicts: BTreeMap::new(),
            annotations: BTreeMap::new(),
            labels: BTreeMap::new(),
            events: Vec::new(),
        }
    }

    /// The decision on a pod that cannot be read: HAMi's `calcScore failed` event, no verdicts.
    pub fn invalid(pod_name: &str, error: InvalidPod) -> Self {
        let mut decision = Decision::empty(Outcome::Unschedulable);
        decision.events.push(EventRecord {
            event_type: EventType::Warning,
            reason: FILTERING_FAILED,
            message: format!("calcScore failed {error} for pod {pod_name}"),
        });
        decision.outcome = Outcome::Invalid(error);
        decision
    }

    /// The chosen node, if any.
    pub fn node(&self) -> Option<&str> {
        match &self.outcome {
            Outcome::Scheduled { node, .. } => Some(node),
            _ => None,
        }
    }

    /// Rejected nodes and their reason texts (the extender's `FailedNodes`).
    pub fn failed_nodes(&self) -> BTreeMap<String, String> {
        self.verdicts
            .iter()
            .filter_map(|(n, v)| Some((n.clone(), v.reasons()?)))
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
    /// The pod's CPU request, millicores, as kube-scheduler sums it
    /// ([`crate::host_cpu::pod_cpu_request_milli`]).
    pub cpu_milli: u64,
}

/// Reads a pod's requests and preferences; the error names the container or annotation at fault.
pub fn prepare(pod: &Pod, settings: &SchedulerSettings) -> Result<PreparedPod, InvalidPod> {
    let request = pod_request(pod, settings.requests)?;
    let empty = BTreeMap::new();
    let annotations = pod.metadata.annotations.as_ref().unwrap_or(&empty);
    let preferences = PodPreferences::from_annotations(annotations, &settings.policies)?;
    Ok(PreparedPod {
        name: pod.metadata.name.clone().unwrap_or_default(),
        request,
        preferences,
        cpu_milli: crate::host_cpu::pod_cpu_request_milli(pod),
    })
}

/// The decision that places the pod on `node` with `allocation`: the annotations, the label and the
/// `FilteringSucceed` event with `message`, and the verdicts given. An allocation that cannot be
/// encoded is `Invalid`.
pub fn placed(
    verdicts: BTreeMap<String, Verdict>,
    node: &str,
    score: f32,
    allocation: PodAllocation,
    now: jiff::Timestamp,
    message: String,
) -> Decision {
    let mut decision = Decision::empty(Outcome::Unschedulable);
    decision.verdicts = verdicts;
    let encoded = match pod_devices::render(&allocation.to_pod_devices()) {
        Ok(encoded) => encoded,
        Err(source) => {
            decision.outcome = Outcome::Invalid(InvalidPod::Unencodable {
                node: node.to_string(),
                source,
            });
            return decision;
        }
    };
    for (key, value) in [
        (VGPU_NODE, node.to_string()),
        (VGPU_TIME, now.as_second().to_string()),
        (DEVICES_TO_ALLOCATE, encoded.clone()),
        (DEVICES_ALLOCATED, encoded),
    ] {
        decision.annotations.insert(key.into(), value);
    }
    decision.labels.insert(VGPU_NODE.into(), node.to_string());
    decision.events.push(EventRecord {
        event_type: EventType::Normal,
        reason: FILTERING_SUCCEED,
        message,
    });
    decision.outcome = Outcome::Scheduled {
        node: node.to_string(),
        score,
        allocation,
    };
    decision
}

/// The decision that no offered node fits: the verdicts given and HAMi's `FilteringFailed` events,
/// one per counted reason with the nodes that gave it (in name order), then the summary over
/// `offered` nodes.
pub fn unschedulable(verdicts: BTreeMap<String, Verdict>, offered: usize) -> Decision {
    // Across a fleet most nodes give one of a few rejections: their counted reasons are worked out
    // once per distinct rejection.
    let mut counted: HashMap<&NodeRejection, Vec<&'static str>, FixedState> = HashMap::default();
    let mut by_reason: BTreeMap<&'static str, Vec<&str>> = BTreeMap::new();
    for (node, verdict) in &verdicts {
        if let Verdict::Rejected(rejection) = verdict {
            let reasons = counted
                .entry(rejection)
                .or_insert_with(|| rejection.counted_reasons());
            for reason in reasons.iter() {
                by_reason.entry(reason).or_default().push(node);
            }
        }
    }
    let mut events: Vec<EventRecord> = by_reason
        .into_iter()
        .map(|(reason, nodes)| EventRecord {
            event_type: EventType::Warning,
            reason: FILTERING_FAILED,
            message: format!("{} nodes {reason}({})", nodes.len(), nodes.join(",")),
        })
        .collect();
    events.push(EventRecord {
        event_type: EventType::Warning,
        reason: FILTERING_FAILED,
        message: format!("no available node, {offered} nodes do not meet"),
    });
    let mut decision = Decision::empty(Outcome::Unschedulable);
    decision.verdicts = verdicts;
    decision.events = events;
    decision
}
