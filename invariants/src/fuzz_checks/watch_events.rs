//! The structure-aware fuzz target `watch_events`: the input bytes, read with
//! [`arbitrary::Unstructured`], are a sequence of node and pod watch events in a small universe
//! (three nodes of two devices, five pod names), fed through [`ClusterView`]:
//!
//! - node events: add or update (registered, or with the register annotation gone or garbled),
//!   delete, a relist (`begin_node_relist` … `finish_node_relist`) and `replace_nodes`;
//! - pod events: add or update with a fresh version (node, allocation, phase, init containers and
//!   their statuses), an update that changes only the annotations, a re-delivery of an older version
//!   after a newer one (an out-of-order resourceVersion), delete, a relist (every listed pod at some
//!   version of its history) and `replace_pods`.
//!
//! The live objects are what the watch showed last: the newest event per pod wins, a delete or a
//! relist that does not list a pod removes it. After every event the ledger must equal the usage
//! recounted from the live pods ([`crate::checks::check_agreement`], the comparison the simulated
//! world's agreement invariant makes), and every pod whose `hami.io/vgpu-devices-allocated` the
//! recount cannot decode must have come back as an `Err` from `apply_pod`/`relist_pod` (and from
//! `replace_pods`' list), never swallowed, while a decodable one must not.

use crate::checks::check_agreement;
use crate::recount;
use crate::violation::{Invariant, Violation};
use arbitrary::{Result as ArbResult, Unstructured};
use k8s_openapi::api::core::v1::{
    ContainerState, ContainerStateTerminated, ContainerStatus, Node, Pod, PodStatus,
};
use sliceguard_core::annotations::{DEVICES_ALLOCATED, NODE_LOCK, NODE_REGISTER, VGPU_NODE};
use sliceguard_core::cluster_view::ClusterView;
use sliceguard_core::ledger::pod_key;
use sliceguard_core::objects::{FleetSpec, GpuAsk, fleet_devices, gpu_node, gpu_pod};
use std::collections::{BTreeMap, BTreeSet};

const NODES: [&str; 3] = ["n0", "n1", "n2"];
const PODS: [(&str, &str); 5] = [
    ("default", "p0"),
    ("default", "p1"),
    ("default", "p2"),
    ("team", "p0"),
    ("team", "q"),
];
/// Pieces a garbled allocation is glued from, so the fuzzer reaches HAMi's separators quickly.
const GARBLE: [&str; 14] = [
    ",",
    ":",
    ";",
    "NVIDIA",
    "GPU-n0-0",
    "0",
    "1",
    "100",
    "4096",
    "-1",
    "x",
    "99999999999",
    " ",
    "",
];
const EVENTS: usize = 48;

fn spec() -> FleetSpec {
    FleetSpec {
        nodes: NODES.len(),
        gpus_per_node: 2,
        memory_mib: 16_384,
        cores: 100,
        split: 4,
        ..FleetSpec::default()
    }
}

fn now() -> jiff::Timestamp {
    jiff::Timestamp::from_second(1_750_000_000).unwrap_or(jiff::Timestamp::UNIX_EPOCH)
}

/// The universe's state: the resourceVersion counter and every version of every pod delivered so
/// far (for re-delivering an older one).
struct World {
    version: u64,
    history: BTreeMap<usize, Vec<Pod>>,
}

impl World {
    fn next_version(&mut self) -> String {
        self.version += 1;
        self.version.to_string()
    }

    fn node(&mut self, u: &mut Unstructured<'_>, i: usize) -> ArbResult<Node> {
        let name = NODES[i];
        let mut node = gpu_node(name, &fleet_devices(name, &spec()), now());
        let annotations = node.metadata.annotations.get_or_insert_with(BTreeMap::new);
        match u.int_in_range(0..=5u8)? {
            0 => {
                annotations.remove(NODE_REGISTER);
            }
            1 => {
                annotations.insert(NODE_REGISTER.into(), garble(u)?);
            }
            _ => {}
        }
        if u.ratio(1, 4)? {
            annotations.insert(
                NODE_LOCK.into(),
                format!("2025-06-15T15:00:00Z,default,p{}", u.int_in_range(0..=2u8)?),
            );
        }
        node.metadata.resource_version = Some(self.next_version());
        Ok(node)
    }

    fn allocation(
        &self,
        u: &mut Unstructured<'_>,
        node: &str,
        containers: usize,
    ) -> ArbResult<String> {
        if u.ratio(1, 6)? {
            return garble(u);
        }
        let mut out = String::new();
        for _ in 0..containers {
            for _ in 0..u.int_in_range(0..=2u8)? {
                let uuid = match u.int_in_range(0..=5u8)? {
                    0 => "GPU-elsewhere".to_string(),
                    1 => format!("GPU-{}-{}", NODES[u.choose_index(NODES.len())?], 0),
                    d => format!("GPU-{node}-{}", d % 2),
                };
                let mem = *u.choose(&[0u32, 1, 1024, 4096, 8192, 16_384])?;
                let cores = *u.choose(&[0u32, 10, 30, 50, 100])?;
                out.push_str(&format!("{uuid},NVIDIA,{mem},{cores}:"));
            }
            out.push(';');
        }
        Ok(out)
    }

    fn annotate(&self, u: &mut Unstructured<'_>, pod: &mut Pod) -> ArbResult<()> {
        let containers = pod.spec.as_ref().map_or(1, |s| {
            s.containers.len() + s.init_containers.as_ref().map_or(0, Vec::len)
        });
        let annotations = pod.metadata.annotations.get_or_insert_with(BTreeMap::new);
        annotations.remove(VGPU_NODE);
        annotations.remove(DEVICES_ALLOCATED);
        let node = match u.int_in_range(0..=4u8)? {
            0 => None,
            1 => Some("ghost".to_string()),
            _ => Some(NODES[u.choose_index(NODES.len())?].to_string()),
        };
        if let Some(node) = &node {
            annotations.insert(VGPU_NODE.into(), node.clone());
        }
        if u.ratio(5, 6)? {
            let on = node.as_deref().unwrap_or("n0");
            let value = self.allocation(u, on, containers)?;
            pod.metadata
                .annotations
                .get_or_insert_with(BTreeMap::new)
                .insert(DEVICES_ALLOCATED.into(), value);
        }
        Ok(())
    }

    /// A fresh version of pod `i`: containers, allocation, phase, init statuses.
    fn pod(&mut self, u: &mut Unstructured<'_>, i: usize) -> ArbResult<Pod> {
        let (namespace, name) = PODS[i];
        let ask = GpuAsk::fraction(4096, 30);
        let init = vec![ask.clone(); u.int_in_range(0..=2usize)?];
        let containers = vec![ask; u.int_in_range(1..=2usize)?];
        let mut pod = gpu_pod(name, &init, &containers);
        pod.metadata.namespace = Some(namespace.into());
        self.annotate(u, &mut pod)?;
        let phase = *u.choose(&[
            None,
            Some("Pending"),
            Some("Running"),
            Some("Succeeded"),
            Some("Failed"),
        ])?;
        let init_statuses = if init.is_empty() || u.ratio(1, 2)? {
            None
        } else {
            let mut statuses = Vec::new();
            for _ in 0..u.int_in_range(0..=init.len())? {
                statuses.push(ContainerStatus {
                    state: Some(ContainerState {
                        terminated: Some(ContainerStateTerminated {
                            exit_code: *u.choose(&[0, 0, 1])?,
                            ..Default::default()
                        }),
                        ..Default::default()
                    }),
                    ..Default::default()
                });
            }
            Some(statuses)
        };
        if phase.is_some() || init_statuses.is_some() {
            pod.status = Some(PodStatus {
                phase: phase.map(str::to_string),
                init_container_statuses: init_statuses,
                ..Default::default()
            });
        }
        pod.metadata.resource_version = Some(self.next_version());
        Ok(pod)
    }

    fn remember(&mut self, i: usize, pod: &Pod) {
        self.history.entry(i).or_default().push(pod.clone());
    }

    /// Some delivered version of pod `i` (the newest more often), or a fresh one if none was.
    fn some_version(&mut self, u: &mut Unstructured<'_>, i: usize) -> ArbResult<Pod> {
        match self.history.get(&i).filter(|h| !h.is_empty()) {
            Some(h) if u.ratio(2, 3)? => Ok(h[h.len() - 1].clone()),
            Some(h) => Ok(h[u.choose_index(h.len())?].clone()),
            None => {
                let pod = self.pod(u, i)?;
                self.remember(i, &pod);
                Ok(pod)
            }
        }
    }
}

fn garble(u: &mut Unstructured<'_>) -> ArbResult<String> {
    let mut out = String::new();
    for _ in 0..u.int_in_range(0..=12u8)? {
        out.push_str(u.choose(&GARBLE)?);
    }
    Ok(out)
}

/// Whether the recount counts the pod's annotation as undecodable (the case the view must report).
fn undecodable(pod: &Pod) -> bool {
    recount::recount([pod])
        .undecodable
        .contains(&recount::key(pod))
}

/// The outcome of one event, checked against the model.
struct Step {
    what: String,
    /// Pods applied or relisted in this event, with whether the view said `Err`.
    applied: Vec<(Pod, bool)>,
}

fn event(
    u: &mut Unstructured<'_>,
    world: &mut World,
    view: &mut ClusterView,
    live: &mut BTreeMap<String, Pod>,
) -> ArbResult<Step> {
    let mut applied = Vec::new();
    let what = match u.int_in_range(0..=10u8)? {
        0 | 1 => {
            let i = u.choose_index(NODES.len())?;
            let node = world.node(u, i)?;
            let _ = view.apply_node(&node, now());
            format!("apply node {}", NODES[i])
        }
        2 => {
            let i = u.choose_index(NODES.len())?;
            view.delete_node(NODES[i]);
            format!("delete node {}", NODES[i])
        }
        3 => {
            let mut nodes = Vec::new();
            for i in 0..NODES.len() {
                if u.arbitrary()? {
                    nodes.push(world.node(u, i)?);
                }
            }
            let names: Vec<_> = nodes.iter().map(|n| n.metadata.name.clone()).collect();
            if u.arbitrary()? {
                view.begin_node_relist();
                for node in &nodes {
                    let _ = view.relist_node(node, now());
                }
                view.finish_node_relist();
                format!("relist nodes {names:?}")
            } else {
                let _ = view.replace_nodes(&nodes, now());
                format!("replace nodes {names:?}")
            }
        }
        4 | 5 => {
            let i = u.choose_index(PODS.len())?;
            let pod = world.pod(u, i)?;
            world.remember(i, &pod);
            let err = view.apply_pod(&pod).is_err();
            live.insert(pod_key(&pod), pod.clone());
            applied.push((pod, err));
            format!("apply pod {} (fresh version)", pod_key(&applied[0].0))
        }
        6 => {
            let i = u.choose_index(PODS.len())?;
            let mut pod = world.some_version(u, i)?;
            world.annotate(u, &mut pod)?;
            pod.metadata.resource_version = Some(world.next_version());
            world.remember(i, &pod);
            let err = view.apply_pod(&pod).is_err();
            live.insert(pod_key(&pod), pod.clone());
            applied.push((pod, err));
            format!(
                "update pod {} (annotations changed)",
                pod_key(&applied[0].0)
            )
        }
        7 => {
            let i = u.choose_index(PODS.len())?;
            let Some(history) = world.history.get(&i).filter(|h| h.len() >= 2) else {
                return Ok(Step {
                    what: "re-deliver (nothing older)".into(),
                    applied,
                });
            };
            let pod = history[u.choose_index(history.len() - 1)?].clone();
            let err = view.apply_pod(&pod).is_err();
            live.insert(pod_key(&pod), pod.clone());
            let what = format!(
                "re-deliver pod {} at older resourceVersion {:?}",
                pod_key(&pod),
                pod.metadata.resource_version
            );
            applied.push((pod, err));
            what
        }
        8 => {
            let i = u.choose_index(PODS.len())?;
            let pod = world.some_version(u, i)?;
            view.delete_pod(&pod);
            live.remove(&pod_key(&pod));
            format!("delete pod {}", pod_key(&pod))
        }
        _ => {
            let mut pods = Vec::new();
            for i in 0..PODS.len() {
                if u.ratio(2, 3)? {
                    let pod = if u.arbitrary()? {
                        world.some_version(u, i)?
                    } else {
                        let pod = world.pod(u, i)?;
                        world.remember(i, &pod);
                        pod
                    };
                    pods.push(pod);
                }
            }
            let keys: Vec<String> = pods.iter().map(pod_key).collect();
            live.clear();
            if u.arbitrary()? {
                view.begin_pod_relist();
                for pod in pods {
                    let err = view.relist_pod(&pod).is_err();
                    live.insert(pod_key(&pod), pod.clone());
                    applied.push((pod, err));
                }
                view.finish_pod_relist();
                format!("relist pods {keys:?}")
            } else {
                let problems: BTreeSet<String> = view
                    .replace_pods(&pods)
                    .into_iter()
                    .map(|p| p.pod)
                    .collect();
                for pod in pods {
                    let err = problems.contains(&pod_key(&pod));
                    live.insert(pod_key(&pod), pod.clone());
                    applied.push((pod, err));
                }
                format!("replace pods {keys:?}")
            }
        }
    };
    Ok(Step { what, applied })
}

/// `watch_events`: see the module documentation.
pub fn watch_events(data: &[u8]) -> Vec<Violation> {
    let mut u = Unstructured::new(data);
    let mut world = World {
        version: 0,
        history: BTreeMap::new(),
    };
    let mut view = ClusterView::new();
    let mut live: BTreeMap<String, Pod> = BTreeMap::new();
    let mut trail: Vec<String> = Vec::new();
    let mut out = Vec::new();
    for _ in 0..EVENTS {
        if u.is_empty() {
            break;
        }
        let Ok(step) = event(&mut u, &mut world, &mut view, &mut live) else {
            break;
        };
        trail.push(step.what);
        let context = || format!("after {}", trail.join("; "));
        for (pod, err) in &step.applied {
            let bad = undecodable(pod);
            if bad && !err {
                out.push(Violation::new(
                    Invariant::Protocol,
                    format!(
                        "the view took pod {}'s undecodable {DEVICES_ALLOCATED} {:?} without an error, {}",
                        pod_key(pod),
                        pod.metadata.annotations.as_ref().and_then(|a| a.get(DEVICES_ALLOCATED)),
                        context()
                    ),
                ));
            }
            if *err && !bad {
                out.push(Violation::new(
                    Invariant::Protocol,
                    format!(
                        "the view refused pod {}'s {DEVICES_ALLOCATED} {:?}, which the recount decodes, {}",
                        pod_key(pod),
                        pod.metadata.annotations.as_ref().and_then(|a| a.get(DEVICES_ALLOCATED)),
                        context()
                    ),
                ));
            }
        }
        let pods: Vec<&Pod> = live.values().collect();
        let disagreements = check_agreement(&pods, view.ledger());
        if !disagreements.is_empty() {
            for v in disagreements {
                out.push(Violation::new(
                    Invariant::Agreement,
                    format!("{v}, {}", context()),
                ));
            }
        }
        if !out.is_empty() {
            break;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_strings_drive_events_without_violations() {
        for seed in 0u8..64 {
            let data: Vec<u8> = (0..512u32)
                .map(|i| (i.wrapping_mul(2_654_435_761) >> 7) as u8 ^ seed.wrapping_mul(31))
                .collect();
            assert_eq!(watch_events(&data), vec![], "seed {seed}");
        }
        assert_eq!(watch_events(b""), vec![]);
    }

    #[test]
    fn the_oracle_sees_a_swallowed_undecodable_allocation() {
        let mut pod = gpu_pod("p", &[], &[GpuAsk::fraction(1, 1)]);
        pod.metadata.annotations = Some(BTreeMap::from([
            (VGPU_NODE.to_string(), "n0".to_string()),
            (
                DEVICES_ALLOCATED.to_string(),
                "GPU-n0-0,NVIDIA,x,1:;".to_string(),
            ),
        ]));
        assert!(undecodable(&pod));
        let mut view = ClusterView::new();
        assert!(view.apply_pod(&pod).is_err());
    }
}
