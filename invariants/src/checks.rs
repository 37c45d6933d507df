//! The invariant checkers. Each takes plain state (the registry, the live pods, the ledger, a
//! decision) and returns every violation it finds, each naming the node, the device, the pods and
//! the numbers.
//!
//! - [`check_capacity`]: per device, from the pods' annotations (and from the ledger when it says
//!   otherwise): Σ memory ≤ devmem, Σ cores ≤ devcore, tasks ≤ split count, and a task holding 100
//!   cores of a devcore-100 device holds it alone (alone among other pods, and alone among its own
//!   pod's regular containers; its pod's init containers run before, so they may share).
//! - [`check_agreement`]: the ledger equals the usage recomputed from scratch ([`crate::recount`]),
//!   per pod and per device.
//! - [`check_decision`]: one filter decision against the oracle and the protocol: verdicts for
//!   exactly the offered nodes; `node unregistered` for nodes without a registration; a node passes
//!   only if the oracle finds a packing there, and (for pods with at most one GPU-requesting regular
//!   container) fails only if it finds none; a node whose first GPU container cannot be served
//!   gives exactly HAMi's reason list; the chosen node is the best by the node policy (ties: the
//!   smallest name); the annotations and labels name it and carry exactly the allocation, which the
//!   oracle validates device by device; nothing is written when nothing is placed.
//! - [`check_host_cpu`]: a scheduler's host CPU book, its filters' unconfirmed choices set aside,
//!   holds for every node the allocatable CPU and the requests a book built afresh from the API's
//!   nodes and pods holds.

use crate::oracle::{self, NodeState};
use crate::pods::PodPlan;
use crate::recount::{self, DeviceLoad, Entry, Recount, Sums};
use crate::violation::{Invariant, Violation};
use k8s_openapi::api::core::v1::{Node, Pod};
use sliceguard_core::annotations::{DEVICES_ALLOCATED, DEVICES_TO_ALLOCATE, VGPU_NODE, VGPU_TIME};
use sliceguard_core::decision::{Decision, NODE_UNREGISTERED, Outcome, Verdict};
use sliceguard_core::host_cpu::{HostCpuBook, NodeCpu};
use sliceguard_core::ledger::{Ledger, UsageSource};
use sliceguard_core::model::DeviceUsage;
use sliceguard_core::policy::NodePolicy;
use sliceguard_core::registry::Registry;
use std::collections::{BTreeMap, BTreeSet};

fn capacity_of(
    node: &str,
    device: &sliceguard_core::model::DeviceInfo,
    view: &str,
    sums: Sums,
    load: &DeviceLoad,
    allowed: Option<&Sums>,
) -> Vec<Violation> {
    let holders = load.describe_holders();
    let pods: Vec<String> = load.holders.iter().map(|h| h.pod.clone()).collect();
    let mut out = Vec::new();
    let mut flag = |detail: String| {
        out.push(
            Violation::new(Invariant::Capacity, format!("{detail}; held by {holders}"))
                .on_node(node)
                .on_device(&device.id)
                .with_pods(pods.iter().cloned()),
        );
    };
    let Sums { tasks, mem, cores } = sums;
    // A pre-existing over-commit raises the bound to what was already there (and no further).
    let bound = |capacity: u32, pre: Option<u64>| u64::from(capacity).max(pre.unwrap_or(0));
    let pre = |limit: u64, capacity: u32| -> String {
        if limit > u64::from(capacity) {
            format!(" (over-committed before any decision up to {limit})")
        } else {
            String::new()
        }
    };
    let mem_limit = bound(device.devmem, allowed.map(|a| a.mem));
    if mem > mem_limit {
        flag(format!(
            "{view}Σ memory {mem} MiB > devmem {} MiB by {} MiB{}",
            device.devmem,
            mem - u64::from(device.devmem),
            pre(mem_limit, device.devmem)
        ));
    }
    let cores_limit = bound(device.devcore, allowed.map(|a| a.cores));
    if cores > cores_limit {
        flag(format!(
            "{view}Σ cores {cores} > devcore {} by {}{}",
            device.devcore,
            cores - u64::from(device.devcore),
            pre(cores_limit, device.devcore)
        ));
    }
    let tasks_limit = bound(device.count, allowed.map(|a| a.tasks));
    if tasks > tasks_limit {
        flag(format!(
            "{view}{tasks} tasks > split count {} by {}{}",
            device.count,
            tasks - u64::from(device.count),
            pre(tasks_limit, device.count)
        ));
    }
    out
}

/// Devices whose usage is over their registered capacity, with that usage: `(node, device UUID)`
/// → the recounted sums. Built from the pods present before any decision (a node re-registered
/// with less memory, an allocation someone else wrote), it is what [`check_capacity_allowing`]
/// tolerates; [`relax_overcommit`] shrinks it as that usage goes away.
pub type Overcommit = BTreeMap<(String, String), Sums>;

/// A device's recounted load as sums.
pub fn device_sums(load: &DeviceLoad) -> Sums {
    Sums {
        tasks: load.tasks,
        mem: load.mem,
        cores: load.cores,
    }
}

/// True when `sums` exceed the device's registered memory, cores or split count.
pub fn over_capacity(sums: &Sums, device: &sliceguard_core::model::DeviceInfo) -> bool {
    sums.mem > u64::from(device.devmem)
        || sums.cores > u64::from(device.devcore)
        || sums.tasks > u64::from(device.count)
}

/// Every registered device over its capacity in `usage` (a recount of the live pods).
pub fn overcommitted(registry: &Registry, usage: &Recount) -> Overcommit {
    let mut out = Overcommit::new();
    for node in registry.nodes() {
        for device in &node.devices {
            let sums = device_sums(&usage.load(&node.name, &device.id));
            if over_capacity(&sums, device) {
                out.insert((node.name.clone(), device.id.clone()), sums);
            }
        }
    }
    out
}

/// After a step: each tolerated over-commit shrinks to what is still there in `usage` (never grows:
/// usage added later is the scheduler's), and goes once the device is back within its capacity.
pub fn relax_overcommit(overcommit: &mut Overcommit, registry: &Registry, usage: &Recount) {
    overcommit.retain(|(node, uuid), allowed| {
        let Some(device) = registry
            .get(node)
            .and_then(|n| n.devices.iter().find(|d| &d.id == uuid))
        else {
            return false;
        };
        let now = device_sums(&usage.load(node, uuid));
        allowed.mem = allowed.mem.min(now.mem.max(u64::from(device.devmem)));
        allowed.cores = allowed.cores.min(now.cores.max(u64::from(device.devcore)));
        allowed.tasks = allowed.tasks.min(now.tasks.max(u64::from(device.count)));
        over_capacity(allowed, device)
    });
}

/// One decision against devices already over their registered capacity: a placement that adds
/// any usage to such a device is an [`Invariant::OverfullDecision`] naming the pod, the node, the
/// device, what it adds and what the device held before. `before` is the usage the decision saw.
pub fn check_no_addition_to_overfull(
    before: &[NodeState],
    pod: &str,
    decision: &Decision,
) -> Vec<Violation> {
    let Outcome::Scheduled { node, .. } = &decision.outcome else {
        return Vec::new();
    };
    let Some(allocated) = decision
        .annotations
        .get(DEVICES_ALLOCATED)
        .and_then(|v| recount::decode(v))
    else {
        return Vec::new();
    };
    let Some(state) = before.iter().find(|n| &n.name == node) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for entry in allocated.iter().flatten() {
        let Some(device) = state.devices.iter().find(|d| d.plan.id == entry.uuid) else {
            continue;
        };
        let (plan, load) = (&device.plan, &device.load);
        let full = load.mem > u64::from(plan.devmem)
            || load.cores > u64::from(plan.devcore)
            || load.tasks > u64::from(plan.count);
        if full {
            out.push(
                Violation::new(
                    Invariant::OverfullDecision,
                    format!(
                        "the filter's decision for {pod} adds {} MiB and {} cores (one task) to {} on {node}, which already held {} MiB, {} cores and {} tasks over its registered {} MiB, {} cores and split count {}",
                        entry.mem,
                        entry.cores,
                        entry.uuid,
                        load.mem,
                        load.cores,
                        load.tasks,
                        plan.devmem,
                        plan.devcore,
                        plan.count
                    ),
                )
                .on_node(node)
                .on_device(&entry.uuid)
                .with_pods([pod.to_string()]),
            );
        }
    }
    out
}

/// Capacity of every registered device, from the pods' annotations (recounted) and, where the
/// ledger says something else, from the ledger too.
pub fn check_capacity(registry: &Registry, pods: &[&Pod], ledger: &Ledger) -> Vec<Violation> {
    check_capacity_allowing(registry, pods, ledger, &Overcommit::new())
}

/// [`check_capacity`], tolerating on each device of `allowed` the usage recorded there (an
/// over-commit that predates every decision, see [`overcommitted`]), and no more.
pub fn check_capacity_allowing(
    registry: &Registry,
    pods: &[&Pod],
    ledger: &Ledger,
    allowed: &Overcommit,
) -> Vec<Violation> {
    let usage = recount::recount(pods.iter().copied());
    let mut out = Vec::new();
    for node in registry.nodes() {
        for device in &node.devices {
            out.extend(check_device_capacity(
                &node.name, device, &usage, ledger, allowed,
            ));
        }
    }
    out
}

/// [`check_capacity_allowing`] on the listed devices only, with the usage already recounted: what a
/// checker that keeps `usage` up to date pod by pod runs after each change, on the devices the
/// change touched. A device that is not registered (or gone) has no capacity to check.
pub fn check_capacity_of<'a>(
    registry: &Registry,
    usage: &Recount,
    ledger: &Ledger,
    allowed: &Overcommit,
    devices: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> Vec<Violation> {
    let mut out = Vec::new();
    for (node, uuid) in devices {
        let Some(info) = registry.get(node) else {
            continue;
        };
        if let Some(device) = info.devices.iter().find(|d| d.id == uuid) {
            out.extend(check_device_capacity(node, device, usage, ledger, allowed));
        }
    }
    out
}

/// The capacity of one registered device: the recounted sums, the ledger's when they differ, and
/// exclusivity on a devcore-100 device.
fn check_device_capacity(
    node: &str,
    device: &sliceguard_core::model::DeviceInfo,
    usage: &Recount,
    ledger: &Ledger,
    allowed: &Overcommit,
) -> Vec<Violation> {
    let mut out = Vec::new();
    let load = usage.load(node, &device.id);
    let holders = load.describe_holders();
    let pods: Vec<String> = load.holders.iter().map(|h| h.pod.clone()).collect();
    let recounted = device_sums(&load);
    let tolerated = allowed.get(&(node.to_string(), device.id.clone()));
    out.extend(capacity_of(node, device, "", recounted, &load, tolerated));
    let ledger_view = ledger.device_usage(node, &device.id);
    let ledger_sums = Sums {
        tasks: ledger_view.used,
        mem: ledger_view.usedmem,
        cores: ledger_view.usedcores,
    };
    if ledger_sums != recounted {
        out.extend(capacity_of(
            node,
            device,
            "in the ledger, ",
            ledger_sums,
            &load,
            tolerated,
        ));
    }
    if device.devcore == 100 {
        for h in load.holders.iter().filter(|h| h.exclusive_entry) {
            let others: Vec<&str> = load
                .holders
                .iter()
                .filter(|o| o.pod != h.pod)
                .map(|o| o.pod.as_str())
                .collect();
            if !others.is_empty() {
                out.push(
                    Violation::new(
                        Invariant::Capacity,
                        format!(
                            "{} holds all 100 cores (exclusive) but shares the device with {}; held by {holders}",
                            h.pod,
                            others.join(", ")
                        ),
                    )
                    .on_node(node)
                    .on_device(&device.id)
                    .with_pods(pods.iter().cloned()),
                );
            }
            if h.exclusive_app_entry && h.app_entries > 1 {
                out.push(
                    Violation::new(
                        Invariant::Capacity,
                        format!(
                            "{} has an exclusive (100-core) container and {} more of its containers on the device",
                            h.pod,
                            h.app_entries - 1
                        ),
                    )
                    .on_node(node)
                    .on_device(&device.id)
                    .with_pods([h.pod.clone()]),
                );
            }
        }
    }
    out
}

fn usage_text(u: DeviceUsage) -> String {
    format!("{} tasks, {} MiB, {} cores", u.used, u.usedmem, u.usedcores)
}

/// The ledger against the usage recomputed from the pods' annotations, per pod and per device.
pub fn check_agreement(pods: &[&Pod], ledger: &Ledger) -> Vec<Violation> {
    check_agreement_with(&recount::recount(pods.iter().copied()), ledger)
}

/// [`check_agreement`] against a recount already made (or kept up to date pod by pod).
pub fn check_agreement_with(truth: &Recount, ledger: &Ledger) -> Vec<Violation> {
    let mut out: Vec<Violation> = truth
        .pods
        .keys()
        .filter_map(|key| pod_agreement(key, truth, ledger))
        .collect();
    out.extend(
        ledger
            .entries()
            .filter(|(key, _)| !truth.pods.contains_key(*key))
            .filter_map(|(key, _)| pod_agreement(key, truth, ledger)),
    );
    let ledger_nodes: BTreeSet<&str> = ledger.entries().map(|(_, e)| &*e.node).collect();
    let mut devices: BTreeSet<(String, String)> = truth.devices.keys().cloned().collect();
    for node in ledger_nodes {
        for (uuid, _) in ledger.node_devices(node) {
            devices.insert((node.to_string(), uuid.to_string()));
        }
    }
    for (node, uuid) in devices {
        let load = truth.load(&node, &uuid);
        let expected = DeviceUsage {
            used: load.tasks,
            usedmem: load.mem,
            usedcores: load.cores,
        };
        let recorded = ledger.device_usage(&node, &uuid);
        if recorded != expected {
            out.push(
                Violation::new(
                    Invariant::Agreement,
                    format!(
                        "the ledger has {}; the live pods' annotations sum to {}{}",
                        usage_text(recorded),
                        usage_text(expected),
                        if load.holders.is_empty() {
                            String::new()
                        } else {
                            format!(", held by {}", load.describe_holders())
                        }
                    ),
                )
                .on_node(&node)
                .on_device(&uuid)
                .with_pods(load.holders.iter().map(|h| h.pod.clone())),
            );
        }
    }
    if ledger.pod_count() != truth.pods.len() {
        out.push(Violation::new(
            Invariant::Agreement,
            format!(
                "the ledger counts {} pods; {} live pods hold devices",
                ledger.pod_count(),
                truth.pods.len()
            ),
        ));
    }
    out
}

/// [`check_agreement`] for the listed pods only (`namespace/name`), against a recount kept up to
/// date: what a checker runs on the pods that changed since it last looked. Device sums and the pod
/// count are left to a whole [`check_agreement_with`].
pub fn check_agreement_of_pods<'a>(
    truth: &Recount,
    ledger: &Ledger,
    keys: impl IntoIterator<Item = &'a str>,
) -> Vec<Violation> {
    keys.into_iter()
        .filter_map(|key| pod_agreement(key, truth, ledger))
        .collect()
}

/// One pod: counted by the ledger exactly as the recount counts it, or by neither.
fn pod_agreement(key: &str, truth: &Recount, ledger: &Ledger) -> Option<Violation> {
    let expected = |counted: &crate::recount::CountedPod| -> Vec<(String, DeviceUsage)> {
        counted
            .devices
            .iter()
            .map(|(uuid, sums)| {
                (
                    uuid.clone(),
                    DeviceUsage {
                        used: sums.tasks,
                        usedmem: sums.mem,
                        usedcores: sums.cores,
                    },
                )
            })
            .collect()
    };
    match (truth.pods.get(key), ledger.entry(key)) {
        (None, None) => None,
        (Some(counted), None) => Some(
            Violation::new(
                Invariant::Agreement,
                format!(
                    "the ledger does not count the pod; its annotation gives {:?}",
                    expected(counted)
                ),
            )
            .on_node(&counted.node)
            .with_pods([key.to_string()]),
        ),
        (None, Some(entry)) => Some(
            Violation::new(
                Invariant::Agreement,
                format!(
                    "the ledger counts the pod with {:?}, but no live pod annotation gives it any device",
                    entry.usage
                ),
            )
            .on_node(&entry.node)
            .with_pods([key.to_string()]),
        ),
        (Some(counted), Some(entry)) => {
            let expected = expected(counted);
            let mut recorded: Vec<(String, DeviceUsage)> = entry
                .usage
                .iter()
                .map(|(uuid, usage)| (uuid.to_string(), *usage))
                .collect();
            recorded.sort_by(|a, b| a.0.cmp(&b.0));
            (*entry.node != *counted.node || recorded != expected).then(|| {
                Violation::new(
                    Invariant::Agreement,
                    format!(
                        "the ledger records the pod on {} as {recorded:?}; its annotation gives {}: {expected:?}",
                        entry.node, counted.node
                    ),
                )
                .on_node(&counted.node)
                .with_pods([key.to_string()])
            })
        }
    }
}

/// What [`check_decision`] needs to know about the call.
#[derive(Debug, Clone, Copy)]
pub struct DecisionInput<'a> {
    /// Registered nodes with the usage before the decision (from [`oracle::node_states`]).
    pub nodes: &'a [NodeState],
    /// The pod as planned.
    pub plan: &'a PodPlan,
    /// `namespace/name`.
    pub pod: &'a str,
    /// Node names offered to the filter.
    pub offered: &'a [String],
    /// The time passed to the filter.
    pub now: jiff::Timestamp,
}

/// Checks one filter decision; see the module documentation for the rules.
pub fn check_decision(input: DecisionInput<'_>, decision: &Decision) -> Vec<Violation> {
    let mut out = Vec::new();
    let pod = input.pod;
    let protocol = |detail: String| Violation::new(Invariant::Protocol, detail).with_pods([pod]);
    let writes_nothing = decision.annotations.is_empty() && decision.labels.is_empty();

    let reading = oracle::selectors(input.plan);
    match (&reading, &decision.outcome) {
        (Err(_), Outcome::Invalid(_)) => {
            if !writes_nothing {
                out.push(protocol("an invalid pod got annotations".into()));
            }
            return out;
        }
        (Err(why), other) => {
            out.push(
                Violation::new(
                    Invariant::Oracle,
                    format!("the pod is invalid ({why}) but the outcome is {other:?}"),
                )
                .with_pods([pod]),
            );
            return out;
        }
        (Ok(_), Outcome::Invalid(why)) if input.plan.has_gpu_request() => {
            out.push(
                Violation::new(
                    Invariant::Oracle,
                    format!("the scheduler calls a valid pod invalid: {why}"),
                )
                .with_pods([pod]),
            );
            return out;
        }
        _ => {}
    }
    if !input.plan.has_gpu_request() {
        if decision.outcome != Outcome::NoGpuRequest || !writes_nothing {
            out.push(protocol(format!(
                "a pod without GPU requests must pass untouched, got {:?} writing {:?}",
                decision.outcome, decision.annotations
            )));
        }
        return out;
    }

    let offered: BTreeSet<&str> = input.offered.iter().map(String::as_str).collect();
    let judged: BTreeSet<&str> = decision.verdicts.keys().map(String::as_str).collect();
    if offered != judged {
        out.push(protocol(format!(
            "verdicts for {judged:?}, but the offered nodes are {offered:?}"
        )));
    }
    let states: BTreeMap<&str, &NodeState> =
        input.nodes.iter().map(|n| (n.name.as_str(), n)).collect();
    let exact = input.plan.gpu_app_containers() <= 1;
    for &name in &offered {
        let Some(verdict) = decision.verdicts.get(name) else {
            continue;
        };
        let Some(state) = states.get(name) else {
            if verdict.reasons().as_deref() != Some(NODE_UNREGISTERED) {
                out.push(
                    protocol(format!(
                        "an unregistered node must fail with {NODE_UNREGISTERED:?}, got {verdict:?}"
                    ))
                    .on_node(name),
                );
            }
            continue;
        };
        let answer = match oracle::can_hold(state, input.plan) {
            Ok(answer) => answer,
            Err(_) => continue,
        };
        match (verdict, &answer) {
            (Verdict::Score(_), oracle::Answer::Cannot) => out.push(
                Violation::new(
                    Invariant::Oracle,
                    format!(
                        "the scheduler says the pod fits, the oracle finds no packing; devices before: {:?}",
                        state.devices
                    ),
                )
                .on_node(name)
                .with_pods([pod]),
            ),
            (Verdict::Rejected(reasons), oracle::Answer::Fits(witness)) if exact => out.push(
                Violation::new(
                    Invariant::Oracle,
                    format!(
                        "the scheduler rejects the node ({reasons}) but the oracle packs the pod as {}",
                        describe_witness(state, witness)
                    ),
                )
                .on_node(name)
                .with_pods([pod]),
            ),
            _ => {}
        }
        if let Some(expected) = oracle::first_container_rejection(state, input.plan)
            && verdict.reasons().as_ref() != Some(&expected)
        {
            out.push(
                Violation::new(
                    Invariant::Rejection,
                    format!(
                        "the first GPU container cannot be served here; expected reason {expected:?}, got {verdict:?}"
                    ),
                )
                .on_node(name)
                .with_pods([pod]),
            );
        }
    }

    let fitting: Vec<(&str, f32)> = decision
        .verdicts
        .iter()
        .filter_map(|(n, v)| match v {
            Verdict::Score(s) => Some((n.as_str(), *s)),
            Verdict::Rejected(_) => None,
        })
        .collect();
    match &decision.outcome {
        Outcome::Scheduled {
            node, allocation, ..
        } => {
            check_scheduled(&input, decision, node, allocation, &fitting, &mut out);
        }
        Outcome::Unschedulable => {
            if !fitting.is_empty() {
                out.push(protocol(format!(
                    "unschedulable although nodes fit: {fitting:?}"
                )));
            }
            if !writes_nothing {
                out.push(protocol(format!(
                    "an unschedulable pod got annotations {:?} and labels {:?}",
                    decision.annotations, decision.labels
                )));
            }
        }
        other => out.push(protocol(format!(
            "a valid GPU pod must be scheduled or unschedulable, got {other:?}"
        ))),
    }
    out
}

fn describe_witness(state: &NodeState, witness: &oracle::Witness) -> String {
    witness
        .iter()
        .map(|devices| {
            let ids: Vec<&str> = devices
                .iter()
                .map(|&i| state.devices[i].plan.id.as_str())
                .collect();
            format!("[{}]", ids.join(","))
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn check_scheduled(
    input: &DecisionInput<'_>,
    decision: &Decision,
    node: &str,
    allocation: &sliceguard_core::model::PodAllocation,
    fitting: &[(&str, f32)],
    out: &mut Vec<Violation>,
) {
    let pod = input.pod;
    let protocol = |detail: String| {
        Violation::new(Invariant::Protocol, detail)
            .on_node(node)
            .with_pods([pod])
    };
    let policy = match input
        .plan
        .annotations
        .get(sliceguard_core::annotations::NODE_SCHEDULER_POLICY)
    {
        Some(p) if p == "spread" => NodePolicy::Spread,
        _ => NodePolicy::Binpack,
    };
    let best = fitting.iter().copied().reduce(|best, candidate| {
        let better = match policy {
            NodePolicy::Binpack => candidate.1 > best.1,
            NodePolicy::Spread => candidate.1 < best.1,
        };
        // `fitting` is in name order, so on equal scores the first (smallest name) stays.
        if better { candidate } else { best }
    });
    if best.map(|b| b.0) != Some(node) {
        out.push(protocol(format!(
            "chose {node}, but by {policy} the best of {fitting:?} is {best:?}"
        )));
    }
    let annotation = |key: &str| decision.annotations.get(key).map(String::as_str);
    let expected_time = input.now.as_second().to_string();
    if annotation(VGPU_NODE) != Some(node)
        || decision.labels.get(VGPU_NODE).map(String::as_str) != Some(node)
        || annotation(VGPU_TIME) != Some(expected_time.as_str())
        || annotation(DEVICES_ALLOCATED) != annotation(DEVICES_TO_ALLOCATE)
        || decision.annotations.len() != 4
    {
        out.push(protocol(format!(
            "annotations {:?} / labels {:?} do not name {node} at {expected_time} with to-allocate == allocated",
            decision.annotations, decision.labels
        )));
    }
    let written = annotation(DEVICES_ALLOCATED).unwrap_or_default();
    let Some(decoded) = recount::decode(written) else {
        out.push(protocol(format!(
            "the allocation annotation {written:?} does not decode"
        )));
        return;
    };
    let from_outcome: Vec<Vec<Entry>> = allocation
        .to_pod_devices()
        .0
        .iter()
        .map(|c| {
            c.iter()
                .map(|d| Entry {
                    uuid: d.uuid.clone(),
                    backend: d.backend.clone(),
                    mem: u64::from(d.usedmem),
                    cores: u64::from(d.usedcores),
                })
                .collect()
        })
        .collect();
    if decoded != from_outcome {
        out.push(protocol(format!(
            "the annotation {written:?} is not the decided allocation {from_outcome:?}"
        )));
    }
    let Some(state) = input.nodes.iter().find(|n| n.name == node) else {
        out.push(protocol("placed on a node that is not registered".into()));
        return;
    };
    if let Err(why) = oracle::validate(state, input.plan, &decoded) {
        out.push(
            Violation::new(
                Invariant::Oracle,
                format!("the allocation {written:?} breaks the rules: {why}"),
            )
            .on_node(node)
            .with_pods([pod]),
        );
    }
}

/// Host CPU agreement: `book` (a scheduler's, as its watches have shown the cluster) without the
/// filters' choices not yet seen by the watch ([`HostCpuBook::without_assumptions`]) against a book
/// built afresh from `nodes` and `pods`, node by node. Meaningful once the book's watches have
/// delivered everything the objects show.
pub fn check_host_cpu(book: &HostCpuBook, nodes: &[&Node], pods: &[&Pod]) -> Vec<Violation> {
    let mut truth = HostCpuBook::new();
    for node in nodes {
        truth.apply_node(node);
    }
    for pod in pods {
        truth.apply_pod(&sliceguard_core::ledger::pod_key(pod), pod);
    }
    let seen = book.without_assumptions();
    let names: BTreeSet<&str> = seen.node_names().chain(truth.node_names()).collect();
    let text = |cpu: Option<NodeCpu>| -> String {
        let cpu = cpu.unwrap_or_default();
        let allocatable = cpu.allocatable.map_or_else(
            || "no allocatable CPU".to_string(),
            |m| format!("{m}m allocatable"),
        );
        format!("{allocatable} and {}m requested", cpu.requested)
    };
    names
        .into_iter()
        .filter_map(|name| {
            let (held, expected) = (seen.node(name), truth.node(name));
            (held.unwrap_or_default() != expected.unwrap_or_default()).then(|| {
                let on_node: Vec<String> = pods
                    .iter()
                    .filter(|pod| {
                        sliceguard_core::host_cpu::pod_placement(pod)
                            .is_some_and(|(n, _)| n == name)
                    })
                    .map(|pod| sliceguard_core::ledger::pod_key(pod))
                    .collect();
                Violation::new(
                    Invariant::HostCpu,
                    format!(
                        "the scheduler's host CPU book has {}; the API's node and pods give {}",
                        text(held),
                        text(expected)
                    ),
                )
                .on_node(name)
                .with_pods(on_node)
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{
        Container, NodeStatus, PodSpec, PodStatus, ResourceRequirements,
    };
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn node(name: &str, cpu: &str) -> Node {
        Node {
            metadata: ObjectMeta {
                name: Some(name.into()),
                ..Default::default()
            },
            status: Some(NodeStatus {
                allocatable: Some(BTreeMap::from([("cpu".to_string(), Quantity(cpu.into()))])),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn bound(name: &str, node: &str, cpu: &str) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("ns".into()),
                ..Default::default()
            },
            spec: Some(PodSpec {
                node_name: Some(node.into()),
                containers: vec![Container {
                    resources: Some(ResourceRequirements {
                        requests: Some(BTreeMap::from([("cpu".to_string(), Quantity(cpu.into()))])),
                        ..Default::default()
                    }),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            status: Some(PodStatus {
                phase: Some("Running".into()),
                ..Default::default()
            }),
        }
    }

    /// A book that missed a resize is reported with the node, both sums and the pods counted there;
    /// a filter's unconfirmed choice is not a difference.
    #[test]
    fn host_cpu_differences_name_the_node_and_the_sums() {
        let (a, b) = (node("a", "16"), node("b", "8"));
        let before = bound("p", "a", "2");
        let after = bound("p", "a", "3500m");
        let other = bound("q", "b", "1");
        let mut book = HostCpuBook::new();
        book.apply_node(&a);
        book.apply_node(&b);
        book.apply_pod("ns/p", &before);
        book.apply_pod("ns/q", &other);
        book.assume("ns/unconfirmed", "b", 4000);
        assert_eq!(check_host_cpu(&book, &[&a, &b], &[&before, &other]), []);

        let found = check_host_cpu(&book, &[&a, &b], &[&after, &other]);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].invariant, Invariant::HostCpu);
        assert_eq!(found[0].node.as_deref(), Some("a"));
        assert_eq!(found[0].pods, ["ns/p"]);
        assert_eq!(
            found[0].detail,
            "the scheduler's host CPU book has 16000m allocatable and 2000m requested; the API's node and pods give 16000m allocatable and 3500m requested"
        );

        // A node the book never saw, and one the API no longer has.
        let found = check_host_cpu(&HostCpuBook::new(), &[&a], &[]);
        assert_eq!(found.len(), 1);
        assert!(
            found[0].detail.starts_with(
                "the scheduler's host CPU book has no allocatable CPU and 0m requested;"
            ),
            "{}",
            found[0].detail
        );
        assert_eq!(
            check_host_cpu(&book, &[&a], &[&before, &other]).len(),
            1,
            "b is gone"
        );
    }
}
