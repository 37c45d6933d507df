//! `sliceguard place`: where would these pods go on these nodes, and why not elsewhere?
//!
//! Each new pod goes through the webhook mutation, then kube-scheduler's node eligibility (selectors,
//! taints, cordons), then the extender filter, in file order; a scheduled pod is recorded in the
//! ledger, so later pods see earlier placements. Existing pods (`--existing`) count with their
//! `hami.io/vgpu-devices-allocated` annotations.

use super::input::{self, InputError};
use super::{Failure, Format, print, render};
use crate::admission::{self, Admission, WebhookSettings};
use crate::cluster_view::{ClusterView, PodScope, ViewConfig};
use crate::decision::{self, Decision, EventRecord, Outcome, SchedulerSettings, Verdict};
use crate::eligibility::ineligibility;
use crate::policy::{GpuPolicy, NodePolicy, PolicyDefaults};
use clap::Args;
use k8s_openapi::api::core::v1::{Node, Pod};
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;

/// Decide where pods would be placed, and why not elsewhere, without a cluster.
///
/// Inputs are Kubernetes objects as `kubectl get -o yaml` prints them: a List, several YAML
/// documents, or JSON. Deployments, ReplicaSets, StatefulSets and Jobs expand into their pods.
/// Each pod goes through the webhook, then the filter, in file order; later pods see earlier
/// placements. Exit 0 when every pod got a decision (Pending included), 2 on bad input.
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  sliceguard fleet --nodes 3 --gpus-per-node 8 --memory 81920 > nodes.yaml\n  sliceguard place --nodes nodes.yaml --pods manifests.yaml\n  sliceguard place --nodes nodes.yaml --pods new.yaml --existing running.yaml -o json\n  kubectl get nodes -o yaml | sliceguard place --nodes - --pods job.yaml"
)]
pub struct PlaceArgs {
    /// Nodes (a NodeList, Node documents, or `sliceguard fleet` output); `-` reads standard input.
    #[arg(long)]
    nodes: PathBuf,
    /// New pods and workloads to place, in order.
    #[arg(long)]
    pods: PathBuf,
    /// Pods already in the cluster; their hami.io/vgpu-devices-allocated annotations count as usage.
    #[arg(long)]
    existing: Option<PathBuf>,
    /// Default node policy (a pod's hami.io/node-scheduler-policy overrides it).
    #[arg(long, default_value = "binpack", value_parser = parse_node_policy)]
    node_policy: NodePolicy,
    /// Default GPU policy (a pod's hami.io/gpu-scheduler-policy overrides it).
    #[arg(long, default_value = "spread", value_parser = parse_gpu_policy)]
    gpu_policy: GpuPolicy,
    /// Scheduler name the webhook routes GPU pods to (use hami-scheduler to mimic HAMi's chart).
    #[arg(long, default_value = "sliceguard-scheduler")]
    scheduler_name: String,
    /// Decision time written to hami.io/vgpu-time (RFC 3339; default: now).
    #[arg(long, value_parser = parse_time)]
    time: Option<jiff::Timestamp>,
    /// Output format.
    #[arg(short, long, value_enum, default_value_t = Format::Table)]
    output: Format,
}

fn parse_node_policy(s: &str) -> Result<NodePolicy, String> {
    s.parse()
}

fn parse_gpu_policy(s: &str) -> Result<GpuPolicy, String> {
    s.parse()
}

fn parse_time(s: &str) -> Result<jiff::Timestamp, String> {
    s.parse()
        .map_err(|e| format!("{s:?} is not an RFC 3339 time: {e}"))
}

/// One pod's result, as printed.
#[derive(Debug, Serialize)]
pub struct Placement {
    name: String,
    namespace: String,
    /// `Scheduled`, `Pending`, `Denied` (by the webhook) or `Skipped` (not for this scheduler).
    status: &'static str,
    node: Option<String>,
    containers: Vec<ContainerOut>,
    verdicts: BTreeMap<String, VerdictOut>,
    /// Nodes kube-scheduler would not offer, and why.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    not_offered: BTreeMap<String, String>,
    event: Option<EventOut>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    events: Vec<EventOut>,
    #[serde(skip_serializing_if = "Option::is_none")]
    message: Option<String>,
    annotations: BTreeMap<String, String>,
}

#[derive(Debug, Serialize)]
struct ContainerOut {
    name: String,
    devices: Vec<DeviceOut>,
}

#[derive(Debug, Serialize)]
struct DeviceOut {
    uuid: String,
    #[serde(rename = "type")]
    device_type: String,
    memory_mib: u32,
    cores: u32,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "lowercase")]
enum VerdictOut {
    Score(f64),
    Reasons(String),
}

#[derive(Debug, Serialize)]
struct EventOut {
    #[serde(rename = "type")]
    event_type: decision::EventType,
    reason: &'static str,
    message: String,
}

impl From<&EventRecord> for EventOut {
    fn from(e: &EventRecord) -> Self {
        EventOut {
            event_type: e.event_type,
            reason: e.reason,
            message: e.message.clone(),
        }
    }
}

pub fn run(args: &PlaceArgs) -> Result<(), Failure> {
    let mut skipped = Vec::new();
    let nodes = input::nodes(&args.nodes, &mut skipped)?;
    if nodes.is_empty() {
        return Err(Failure::input(format!(
            "{}: no Node objects found",
            args.nodes.display()
        )));
    }
    let pods = input::pods(&args.pods, &mut skipped)?;
    let existing = match &args.existing {
        Some(path) => input::pods(path, &mut skipped)?,
        None => Vec::new(),
    };
    for note in &skipped {
        eprintln!("note: skipped {note}");
    }
    let settings = SchedulerSettings {
        policies: PolicyDefaults {
            node: args.node_policy,
            gpu: args.gpu_policy.clone(),
        },
        ..Default::default()
    };
    let webhook = WebhookSettings {
        scheduler_name: args.scheduler_name.clone(),
        ..Default::default()
    };
    let now = args.time.unwrap_or_else(jiff::Timestamp::now);
    let placements = place_all(&nodes, &pods, &existing, &settings, &webhook, now)?;
    let text = match args.output {
        Format::Table => table(&placements),
        format => render(&placements, format)?,
    };
    print(&text)
}

/// Places `pods` in order on `nodes` with `existing` pods already counted.
pub fn place_all(
    nodes: &[Node],
    pods: &[Pod],
    existing: &[Pod],
    settings: &SchedulerSettings,
    webhook: &WebhookSettings,
    now: jiff::Timestamp,
) -> Result<Vec<Placement>, InputError> {
    // The cluster as `serve`'s watches would show it: the same registry, ledger and placement
    // index, so that a placement here is the decision `serve` would take.
    // Every pod given is shown, as `serve`'s default watch of every pod shows them: their CPU counts
    // on their nodes and the GPU pods teach the workload profile.
    let mut view = ClusterView::configured(ViewConfig {
        settings: settings.clone(),
        pods: PodScope::All,
    });
    for node in nodes {
        if let Err(problem) = view.apply_node(node, now) {
            eprintln!(
                "note: node {} is not registered: {problem}",
                node.metadata.name.as_deref().unwrap_or("")
            );
        }
    }
    for pod in existing {
        if let Err(e) = view.apply_pod(pod) {
            eprintln!("note: existing {e}; its usage is not counted");
        }
    }
    let mut out = Vec::with_capacity(pods.len());
    for pod in pods {
        out.push(place_one(nodes, &mut view, pod, settings, webhook, now)?);
    }
    Ok(out)
}

fn place_one(
    nodes: &[Node],
    view: &mut ClusterView,
    pod: &Pod,
    settings: &SchedulerSettings,
    webhook: &WebhookSettings,
    now: jiff::Timestamp,
) -> Result<Placement, InputError> {
    let name = pod.metadata.name.clone().unwrap_or_default();
    let namespace = pod
        .metadata
        .namespace
        .clone()
        .unwrap_or_else(|| "default".into());
    let mut result = Placement {
        name: name.clone(),
        namespace: namespace.clone(),
        status: "Pending",
        node: None,
        containers: Vec::new(),
        verdicts: BTreeMap::new(),
        not_offered: BTreeMap::new(),
        event: None,
        events: Vec::new(),
        message: None,
        annotations: BTreeMap::new(),
    };
    let label = format!("Pod {namespace}/{name}");
    let internal = |message: String| InputError {
        file: PathBuf::from("-"),
        object: Some(label.clone()),
        message,
    };
    let submitted = serde_json::to_value(pod).map_err(|e| internal(e.to_string()))?;
    let admitted = admission::mutate(&submitted, webhook).map_err(|e| internal(e.to_string()))?;
    let mut pod_json = submitted;
    match admitted {
        Admission::Denied { message } => {
            result.status = "Denied";
            result.message = Some(message);
            return Ok(result);
        }
        Admission::Allowed {
            routed: false,
            message,
            ..
        } => {
            result.status = "Skipped";
            result.message = Some(message);
            return Ok(result);
        }
        Admission::Allowed { patch, .. } => {
            json_patch::patch(&mut pod_json, &patch)
                .map_err(|e| internal(format!("webhook patch does not apply: {e}")))?;
        }
    }
    let mut pod: Pod = serde_json::from_value(pod_json).map_err(|e| internal(e.to_string()))?;

    let mut offered = Vec::new();
    for node in nodes {
        let node_name = node.metadata.name.clone().unwrap_or_default();
        match ineligibility(node, &pod) {
            None => offered.push(node_name),
            Some(why) => {
                result.not_offered.insert(node_name, why);
            }
        }
    }
    let d = match decision::prepare(&pod, settings) {
        Ok(prepared) => {
            // As `serve`'s filter does: the pod it is asked to place counts in the profile first.
            let key = format!("{namespace}/{name}");
            let uid = pod.metadata.uid.clone().unwrap_or_default();
            view.learn_from_filter(&key, &uid, &prepared);
            view.decide(&prepared, &offered, now)
        }
        Err(error) => Decision::invalid(&name, error),
    };
    result.verdicts = d
        .verdicts
        .iter()
        .map(|(n, v)| {
            let out = match v {
                Verdict::Score(s) => VerdictOut::Score((f64::from(*s) * 100.0).round() / 100.0),
                Verdict::Rejected(r) => VerdictOut::Reasons(r.to_string()),
            };
            (n.clone(), out)
        })
        .collect();
    result.events = d.events.iter().map(EventOut::from).collect();
    result.event = d
        .events
        .iter()
        .find(|e| e.reason == decision::FILTERING_SUCCEED)
        .or_else(|| d.events.last())
        .map(EventOut::from);
    match &d.outcome {
        Outcome::Scheduled {
            node, allocation, ..
        } => {
            result.status = "Scheduled";
            result.node = Some(node.clone());
            result.annotations = d.annotations.clone();
            let types: BTreeMap<&str, &str> = view
                .registry()
                .get(node)
                .map(|n| {
                    n.devices
                        .iter()
                        .map(|d| (d.id.as_str(), &*d.device_type))
                        .collect()
                })
                .unwrap_or_default();
            let slots = pod_request_names(&pod);
            for (slot, devices) in slots.into_iter().zip(allocation.to_pod_devices().0) {
                result.containers.push(ContainerOut {
                    name: slot,
                    devices: devices
                        .into_iter()
                        .map(|dev| DeviceOut {
                            device_type: types
                                .get(dev.uuid.as_str())
                                .map_or_else(|| dev.backend.clone(), |t| t.to_string()),
                            uuid: dev.uuid,
                            memory_mib: dev.usedmem,
                            cores: dev.usedcores,
                        })
                        .collect(),
                });
            }
            let meta = &mut pod.metadata;
            meta.annotations
                .get_or_insert_with(BTreeMap::new)
                .extend(d.annotations.clone());
            meta.labels
                .get_or_insert_with(BTreeMap::new)
                .extend(d.labels.clone());
            if let Some(spec) = pod.spec.as_mut() {
                spec.node_name = Some(node.clone());
            }
            view.apply_pod(&pod).map_err(|e| internal(e.to_string()))?;
        }
        Outcome::NoGpuRequest => {
            result.status = "Skipped";
            result.message = Some("pod requests no GPU".into());
        }
        Outcome::Unschedulable => {
            if offered.is_empty() {
                result.message = Some("kube-scheduler offers no node (see not_offered)".into());
            }
        }
        Outcome::Invalid(error) => result.message = Some(error.to_string()),
    }
    Ok(result)
}

/// Container names in annotation order (init containers first).
fn pod_request_names(pod: &Pod) -> Vec<String> {
    let spec = pod.spec.as_ref();
    spec.and_then(|s| s.init_containers.as_ref())
        .into_iter()
        .flatten()
        .chain(spec.map(|s| s.containers.iter()).into_iter().flatten())
        .map(|c| c.name.clone())
        .collect()
}

/// The table a person reads first: one line per pod, then why pending pods are pending.
fn table(placements: &[Placement]) -> String {
    let rows: Vec<[String; 4]> = placements
        .iter()
        .map(|p| {
            let devices: Vec<String> = p
                .containers
                .iter()
                .flat_map(|c| c.devices.iter())
                .map(|d| format!("{} ({} MiB, {}%)", d.uuid, d.memory_mib, d.cores))
                .collect();
            [
                format!("{}/{}", p.namespace, p.name),
                p.status.to_string(),
                p.node.clone().unwrap_or_else(|| "-".into()),
                if devices.is_empty() {
                    "-".into()
                } else {
                    devices.join(", ")
                },
            ]
        })
        .collect();
    let headers = ["POD", "STATUS", "NODE", "DEVICES"];
    let mut widths = headers.map(str::len);
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row.iter()) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let line = |out: &mut String, cells: [&str; 4]| {
        let _ = writeln!(
            out,
            "{:w0$}  {:w1$}  {:w2$}  {}",
            cells[0],
            cells[1],
            cells[2],
            cells[3],
            w0 = widths[0],
            w1 = widths[1],
            w2 = widths[2]
        );
    };
    line(&mut out, headers);
    for row in &rows {
        line(&mut out, [&row[0], &row[1], &row[2], &row[3]]);
    }
    for p in placements {
        let why: Vec<String> = match p.status {
            "Scheduled" => continue,
            "Pending" => {
                let mut lines: Vec<String> = p
                    .events
                    .iter()
                    .map(|e| format!("{}: {}", e.reason, e.message))
                    .collect();
                const SHOWN: usize = 10;
                let rejected: Vec<_> = p
                    .verdicts
                    .iter()
                    .filter_map(|(n, v)| match v {
                        VerdictOut::Reasons(r) => Some(format!("  {n}: {r}")),
                        VerdictOut::Score(_) => None,
                    })
                    .collect();
                let total = rejected.len();
                lines.extend(rejected.into_iter().take(SHOWN));
                if total > SHOWN {
                    lines.push(format!(
                        "  ... and {} more nodes (see -o json)",
                        total - SHOWN
                    ));
                }
                for (n, why) in p.not_offered.iter().take(SHOWN) {
                    lines.push(format!("  {n}: not offered: {why}"));
                }
                lines.extend(p.message.clone());
                lines
            }
            _ => p.message.clone().into_iter().collect(),
        };
        let _ = writeln!(out, "\n{}/{} is {}:", p.namespace, p.name, p.status);
        for l in why {
            let _ = writeln!(out, "  {l}");
        }
    }
    out
}
