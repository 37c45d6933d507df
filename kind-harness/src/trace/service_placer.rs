//! The replay through `serve`'s own decision path: [`ServicePlacer`] keeps the service's
//! [`ClusterView`] (registry, ledger, placement index, learned workload, host CPU), fed with Node
//! and Pod objects as `serve`'s watches deliver them (every pod: [`PodScope::All`], `serve`'s
//! default), and places each GPU pod by driving the extender filter's [`FilterMachine`]: learn,
//! take, decide, assume, patch. Only the HTTP and the API are replaced: the machine's patch is
//! applied to the harness's copy of the pod and answered as written, and the watch events that
//! follow (the patched pod, then the pod bound to its node, [`Placer::bound`]) are fed back.
//!
//! What differs from a live `serve`: the bind protocol (node lock, `Binding`) is not run, since
//! the placement does not depend on it (the pod is bound at once, as a successful bind would leave
//! it); no API write fails, so the filter's lost-write paths are not taken (the simulated cluster's
//! fault campaigns cover them); and pods are never deleted (the recipe has no departures).
//!
//! CPU-only pods reach the view as the watch shows them once bound, whoever placed them; when the
//! replay routes them to the policy, [`ClusterView::place_cpu_pod`] decides, as `serve`'s filter
//! does with `--route-cpu-pods`.

use super::cluster::{Cluster, ClusterNode};
use super::input::PodRow;
use super::placer::{
    Choice, Placer, PlacerError, REPLAY_TIME, SpecMatch, audit_ledger, grants_of,
    register_annotations, trace_pod,
};
use k8s_openapi::api::core::v1::{Node, NodeStatus, Pod, PodStatus};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use sliceguard::bind::{Effect, Observation};
use sliceguard::cluster_view::{ClusterView, PodScope, ViewConfig};
use sliceguard::decision::{self, SchedulerSettings};
use sliceguard::filter::{FilterMachine, FilterRequest, FilterStep, FilterVerdict};
use sliceguard::fragmentation::HostSource;
use sliceguard::ledger::pod_holding;
use sliceguard::policy::{GpuPolicy, NodePolicy, PolicyDefaults};
use sliceguard::request::RequestDefaults;
use std::collections::{BTreeMap, HashMap};
use std::str::FromStr;
use std::time::{Duration, Instant};

/// The namespace trace pods live in.
const NAMESPACE: &str = "default";

/// sliceguard's service path as the placer.
#[derive(Debug)]
pub struct ServicePlacer {
    view: ClusterView,
    settings: SchedulerSettings,
    spec_match: SpecMatch,
    /// Whether CPU-only pods may be routed to the policy (the fragmentation policy only).
    places_cpu: bool,
    /// Node index by scheduler name.
    index: HashMap<String, usize>,
    /// The pod the last filter patched, until [`Placer::bound`] delivers it bound.
    patched: Option<Pod>,
    decisions: u64,
    decision_time: Duration,
}

/// The Node object `serve`'s node watch would deliver for a trace node: its GPUs registered (GPU
/// nodes only) and its CPU allocatable.
pub fn node_object(cluster: &Cluster, node: &ClusterNode) -> Node {
    let annotations = (!node.gpus.is_empty()).then(|| register_annotations(cluster, node));
    Node {
        metadata: ObjectMeta {
            name: Some(node.name.clone()),
            annotations,
            ..ObjectMeta::default()
        },
        status: Some(NodeStatus {
            allocatable: Some(BTreeMap::from([(
                "cpu".to_string(),
                Quantity(format!("{}m", node.cpu_capacity)),
            )])),
            ..NodeStatus::default()
        }),
        ..Node::default()
    }
}

/// The Pod object a trace task is when it arrives: [`trace_pod`] in namespace `default`, with a
/// UID, Pending.
pub fn arriving_pod(pod: &PodRow, name: &str, spec_match: SpecMatch) -> Pod {
    let mut object = trace_pod(pod, name, spec_match);
    object.metadata.namespace = Some(NAMESPACE.into());
    object.metadata.uid = Some(format!("uid-{name}"));
    object.status = Some(PodStatus {
        phase: Some("Pending".into()),
        ..PodStatus::default()
    });
    object
}

impl ServicePlacer {
    /// The service's view of `cluster` after its initial lists (every node, no pod), with
    /// `node`/`gpu` as the default policies.
    pub fn new(
        cluster: &Cluster,
        node: &str,
        gpu: &str,
        spec_match: SpecMatch,
    ) -> Result<Self, String> {
        let gpu_policy = GpuPolicy::from_str(gpu)?;
        let places_cpu =
            gpu_policy.node_ranking() == sliceguard::gpu_policy::NodeRanking::Fragmentation;
        let settings = SchedulerSettings {
            policies: PolicyDefaults {
                node: NodePolicy::from_str(node)?,
                gpu: gpu_policy,
            },
            requests: RequestDefaults::default(),
        };
        let mut view = ClusterView::configured(ViewConfig {
            settings: settings.clone(),
            pods: PodScope::All,
        });
        view.begin_node_relist();
        for n in &cluster.nodes {
            let registered = view.relist_node(&node_object(cluster, n), REPLAY_TIME);
            if let Err(problem) = registered
                && !n.gpus.is_empty()
            {
                return Err(format!("node {} does not register: {problem}", n.name));
            }
        }
        view.finish_node_relist();
        view.begin_pod_relist();
        view.finish_pod_relist();
        Ok(ServicePlacer {
            view,
            settings,
            spec_match,
            places_cpu,
            index: cluster
                .nodes
                .iter()
                .enumerate()
                .map(|(i, n)| (n.name.clone(), i))
                .collect(),
            patched: None,
            decisions: 0,
            decision_time: Duration::ZERO,
        })
    }
}

impl Placer for ServicePlacer {
    fn place_gpu(
        &mut self,
        cluster: &Cluster,
        pod: &PodRow,
        name: &str,
        offered: &[usize],
    ) -> Result<Option<Choice>, PlacerError> {
        let fail = |problem: String| PlacerError {
            pod: name.to_string(),
            problem,
        };
        let mut object = arriving_pod(pod, name, self.spec_match);
        // The pod watch shows the new pod before kube-scheduler asks the extender about it.
        self.view
            .apply_pod(&object)
            .map_err(|e| fail(e.to_string()))?;
        let prepared =
            decision::prepare(&object, &self.settings).map_err(|e| fail(e.to_string()))?;
        let request = FilterRequest {
            namespace: NAMESPACE.into(),
            name: name.into(),
            uid: format!("uid-{name}"),
            offered: offered
                .iter()
                .map(|&i| cluster.nodes[i].name.clone())
                .collect(),
        };
        let started = Instant::now();
        let mut machine = FilterMachine::new(request, prepared);
        let mut step = machine.start(&mut self.view, REPLAY_TIME);
        let outcome = loop {
            match step {
                FilterStep::Do(Effect::PatchPodMetadata {
                    annotations,
                    labels,
                    ..
                }) => {
                    object
                        .metadata
                        .annotations
                        .get_or_insert_with(BTreeMap::new)
                        .extend(annotations);
                    object
                        .metadata
                        .labels
                        .get_or_insert_with(BTreeMap::new)
                        .extend(labels);
                    let written = Observation::Written {
                        resource_version: None,
                    };
                    step = machine.observe(&mut self.view, written, REPLAY_TIME);
                }
                FilterStep::Do(other) => {
                    return Err(fail(format!(
                        "the filter asked for {}, which the replay never needs",
                        other.kind()
                    )));
                }
                FilterStep::Done(outcome) => break outcome,
            }
        };
        self.decision_time += started.elapsed();
        self.decisions += 1;
        match outcome.verdict {
            FilterVerdict::Placed { node } => {
                // The watch delivers the patched pod.
                self.view
                    .apply_pod(&object)
                    .map_err(|e| fail(e.to_string()))?;
                let (held_on, allocation) = pod_holding(&object)
                    .map_err(|e| fail(e.to_string()))?
                    .ok_or_else(|| fail("the filter's patch carries no allocation".into()))?;
                let index = *self
                    .index
                    .get(&node)
                    .filter(|i| offered.contains(i) && held_on == node)
                    .ok_or_else(|| {
                        fail(format!("the filter chose {node}, which was not offered"))
                    })?;
                let grants = grants_of(cluster, index, &allocation)
                    .map_err(|e| fail(format!("the filter {e}")))?;
                self.patched = Some(object);
                Ok(Some(Choice {
                    node: index,
                    grants,
                }))
            }
            FilterVerdict::Unschedulable { .. } => Ok(None),
            FilterVerdict::NoGpuRequest => Err(fail("the filter saw no GPU request".into())),
            FilterVerdict::Invalid(error) => Err(fail(error.to_string())),
            FilterVerdict::Failed(error) => Err(fail(error.to_string())),
        }
    }

    fn place_cpu(
        &mut self,
        cluster: &Cluster,
        pod: &PodRow,
        name: &str,
        offered: &[usize],
    ) -> Option<usize> {
        if !self.places_cpu {
            return None;
        }
        let object = arriving_pod(pod, name, self.spec_match);
        self.view.apply_pod(&object).ok()?;
        let prepared = decision::prepare(&object, &self.settings).ok()?;
        let names: Vec<String> = offered
            .iter()
            .map(|&i| cluster.nodes[i].name.clone())
            .collect();
        let key = format!("{NAMESPACE}/{name}");
        let started = Instant::now();
        let chosen = self.view.place_cpu_pod(&key, &prepared, &names);
        self.decision_time += started.elapsed();
        self.decisions += 1;
        chosen.and_then(|node| self.index.get(&node).copied())
    }

    fn places_cpu_pods(&self) -> bool {
        self.places_cpu
    }

    fn bound(&mut self, cluster: &Cluster, pod: &PodRow, name: &str, node: usize) {
        let mut object = match self.patched.take() {
            Some(patched) if patched.metadata.name.as_deref() == Some(name) => patched,
            _ => arriving_pod(pod, name, self.spec_match),
        };
        if let Some(spec) = object.spec.as_mut() {
            spec.node_name = Some(cluster.nodes[node].name.clone());
        }
        if let Some(status) = object.status.as_mut() {
            status.phase = Some("Running".into());
        }
        // An allocation that does not decode was refused at the filter already.
        let _ = self.view.apply_pod(&object);
    }

    fn audit(&self, cluster: &Cluster, node: usize) -> Result<(), String> {
        audit_ledger(self.view.ledger(), cluster, node)?;
        let n = &cluster.nodes[node];
        let host = self
            .view
            .hosts()
            .and_then(|h| h.host(&n.name))
            .map(|h| (h.cpu_capacity_milli, h.cpu_requested_milli));
        if host != Some((n.cpu_capacity, n.cpu_requested)) {
            return Err(format!(
                "the view's host CPU of {} is {host:?}, the cluster's (allocatable, requested) {:?}",
                n.name,
                (n.cpu_capacity, n.cpu_requested)
            ));
        }
        Ok(())
    }

    fn decision_stats(&self) -> (u64, Duration) {
        (self.decisions, self.decision_time)
    }
}
