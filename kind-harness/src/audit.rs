//! `kind-harness audit`: is any GPU over-committed, or any lock stuck, on a live cluster right now?
//!
//! Reads every node's `hami.io/node-nvidia-register` and `hami.io/mutex.lock` and every pod's
//! `hami.io/vgpu-devices-allocated` (HAMi's annotations, so it works on HAMi and on sliceguard),
//! decoding them with sliceguard's codecs, and reports:
//! - **over-committed** devices: the pods on a device together hold more memory or cores than it
//!   registers, or more containers than its split count;
//! - **stale locks**: older than the lock timeout (5 m, HAMi's `--node-lock-timeout` default), held
//!   by a pod that no longer exists, or malformed (which blocks binds forever in HAMi);
//! - allocations and registrations that **do not decode**;
//! - pods holding devices that are **unknown** to their node's registration (or on a node that is
//!   gone or has no registration);
//! - scheduler-owned annotations (and the `hami.io/vgpu-node` label) on a pod that **requests no
//!   GPU** ([`sliceguard::request::requests_gpu`]), one finding per key: a scheduler never writes
//!   them there, so someone forged them; such a pod holds nothing;
//! - a bound pod whose allocation names **another node** (`hami.io/vgpu-node` is not its
//!   `spec.nodeName`).
//!
//! A pod counts against the node it is bound to (`spec.nodeName`, else HAMi's `hami.io/vgpu-node`
//! from the filter) unless it has finished (`Succeeded`/`Failed`) or requests no GPU. Exit 0 when nothing is wrong,
//! 1 when anything is, 2 when the cluster cannot be read.

use clap::Args;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, ListParams};
use serde::Serialize;
use sliceguard::annotations::{DEVICES_ALLOCATED, NODE_LOCK, NODE_REGISTER, VGPU_NODE};
use sliceguard::codec::{lock, pod_devices, register};
use sliceguard::model::DeviceInfo;
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::Duration;

/// Audit a live cluster (HAMi's or sliceguard's): over-committed GPUs, stuck locks, bad annotations.
#[derive(Debug, Args)]
#[command(
    after_help = "Exit status: 0 nothing wrong, 1 a problem was found (each is listed), 2 the cluster cannot be read.\n\nExamples:\n  kind-harness audit                          # the current kubeconfig context\n  kind-harness audit --kubeconfig ~/.kube/prod --lock-timeout 5m\n  kind-harness audit --json > audit.json"
)]
pub struct AuditArgs {
    /// kubeconfig file (default: $KUBECONFIG, ~/.kube/config, or the in-cluster service account).
    #[arg(long, value_name = "FILE")]
    pub kubeconfig: Option<PathBuf>,
    /// kubeconfig context.
    #[arg(long)]
    pub context: Option<String>,
    /// Locks older than this are stale (HAMi's --node-lock-timeout; e.g. 5m, 90s).
    #[arg(long, default_value = "5m", value_parser = parse_duration)]
    pub lock_timeout: Duration,
    /// Print the findings as JSON instead of text.
    #[arg(long)]
    pub json: bool,
    /// API connect timeout in seconds.
    #[arg(long, default_value_t = 10)]
    pub connect_timeout: u64,
}

/// Parses `90s`, `5m`, `1h` or a number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let bad = || format!("duration {s:?}: expected a number with s, m or h (e.g. 5m, 90s)");
    let (number, unit) = match s.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((i, _)) => (&s[..i], &s[i..]),
        None => (s, "s"),
    };
    let n: u64 = number.parse().map_err(|_| bad())?;
    let secs = match unit {
        "s" => n,
        "m" => n.checked_mul(60).ok_or_else(bad)?,
        "h" => n.checked_mul(3600).ok_or_else(bad)?,
        _ => return Err(bad()),
    };
    Ok(Duration::from_secs(secs))
}

/// What kind of problem.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// A device holds more than it has.
    OverCommitted,
    /// A lock older than the timeout.
    StaleLock,
    /// A lock whose holder pod does not exist.
    OrphanLock,
    /// A lock value that does not parse.
    MalformedLock,
    /// An annotation that does not decode.
    Undecodable,
    /// A pod holding a device its node does not register.
    UnknownDevice,
    /// Scheduler-owned state on a pod that requests no GPU.
    UnrequestedAllocation,
    /// A bound pod whose allocation names another node.
    NodeMismatch,
}

impl Kind {
    /// The name in the report.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::OverCommitted => "over-committed",
            Kind::StaleLock => "stale-lock",
            Kind::OrphanLock => "orphan-lock",
            Kind::MalformedLock => "malformed-lock",
            Kind::Undecodable => "undecodable",
            Kind::UnknownDevice => "unknown-device",
            Kind::UnrequestedAllocation => "unrequested",
            Kind::NodeMismatch => "node-mismatch",
        }
    }
}

/// One problem.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// What kind.
    pub kind: Kind,
    /// The object (`node/<n>`, `node/<n>/<uuid>`, `pod/<ns>/<name>`).
    pub object: String,
    /// What is wrong, with the numbers.
    pub detail: String,
}

/// Usage of one device.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct DeviceUse {
    /// Node.
    pub node: String,
    /// UUID.
    pub uuid: String,
    /// Registered memory (MiB), cores and split count.
    pub devmem: u32,
    /// Registered cores.
    pub devcore: u32,
    /// Registered split count.
    pub count: u32,
    /// Held memory.
    pub usedmem: u64,
    /// Held cores.
    pub usedcores: u64,
    /// Containers holding it.
    pub used: u32,
    /// The pods (`ns/name`).
    pub pods: Vec<String>,
}

/// The audit's result.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct AuditReport {
    /// Nodes with a register annotation.
    pub gpu_nodes: usize,
    /// Registered devices.
    pub devices: usize,
    /// Pods holding devices.
    pub pods_with_devices: usize,
    /// Locks seen.
    pub locks: usize,
    /// Per-device usage, for devices in use.
    pub usage: Vec<DeviceUse>,
    /// Problems, sorted.
    pub findings: Vec<Finding>,
}

impl AuditReport {
    /// True when nothing is wrong.
    pub fn healthy(&self) -> bool {
        self.findings.is_empty()
    }

    /// Human-readable text.
    pub fn text(&self) -> String {
        let mut out = format!(
            "{} GPU nodes, {} devices, {} pods holding devices, {} locks\n",
            self.gpu_nodes, self.devices, self.pods_with_devices, self.locks
        );
        for u in &self.usage {
            out.push_str(&format!(
                "  {}/{}: {}/{} MiB, {}/{} cores, {}/{} tasks ({})\n",
                u.node,
                u.uuid,
                u.usedmem,
                u.devmem,
                u.usedcores,
                u.devcore,
                u.used,
                u.count,
                u.pods.join(", ")
            ));
        }
        if self.findings.is_empty() {
            out.push_str("no problem found\n");
        } else {
            out.push_str(&format!("{} problem(s):\n", self.findings.len()));
            for f in &self.findings {
                out.push_str(&format!(
                    "  {:<15} {}: {}\n",
                    f.kind.as_str(),
                    f.object,
                    f.detail
                ));
            }
        }
        out
    }
}

fn annotation<'a>(meta: &'a kube::api::ObjectMeta, key: &str) -> Option<&'a String> {
    meta.annotations.as_ref()?.get(key)
}

/// Audits a cluster's nodes and pods at `now`.
pub fn audit(
    nodes: &[Node],
    pods: &[Pod],
    now: jiff::Timestamp,
    lock_timeout: Duration,
) -> AuditReport {
    let mut report = AuditReport::default();
    let mut registered: BTreeMap<String, Vec<DeviceInfo>> = BTreeMap::new();
    let node_names: BTreeSet<String> = nodes
        .iter()
        .filter_map(|n| n.metadata.name.clone())
        .collect();
    for node in nodes {
        let name = node.metadata.name.clone().unwrap_or_default();
        if let Some(value) = annotation(&node.metadata, NODE_REGISTER) {
            match register::parse(value) {
                Ok(devices) => {
                    report.devices += devices.len();
                    registered.insert(name.clone(), devices);
                }
                Err(e) => report.findings.push(Finding {
                    kind: Kind::Undecodable,
                    object: format!("node/{name}"),
                    detail: format!("{NODE_REGISTER} does not decode: {e}"),
                }),
            }
        }
    }
    report.gpu_nodes = nodes
        .iter()
        .filter(|n| annotation(&n.metadata, NODE_REGISTER).is_some())
        .count();
    let existing_pods: BTreeSet<(String, String)> = pods
        .iter()
        .map(|p| {
            (
                p.metadata.namespace.clone().unwrap_or_default(),
                p.metadata.name.clone().unwrap_or_default(),
            )
        })
        .collect();
    let timeout = jiff::SignedDuration::try_from(lock_timeout).unwrap_or(jiff::SignedDuration::MAX);
    for node in nodes {
        let name = node.metadata.name.clone().unwrap_or_default();
        let Some(value) = annotation(&node.metadata, NODE_LOCK) else {
            continue;
        };
        report.locks += 1;
        match lock::parse(value) {
            Err(e) => report.findings.push(Finding {
                kind: Kind::MalformedLock,
                object: format!("node/{name}"),
                detail: format!("{NODE_LOCK} {value:?}: {e} (HAMi never releases it)"),
            }),
            Ok(parsed) => {
                let age = now.duration_since(parsed.taken_at);
                if age > timeout {
                    report.findings.push(Finding {
                        kind: Kind::StaleLock,
                        object: format!("node/{name}"),
                        detail: format!(
                            "{NODE_LOCK} {value:?} is {} s old (timeout {} s)",
                            age.as_secs(),
                            lock_timeout.as_secs()
                        ),
                    });
                }
                if let Some(holder) = &parsed.holder
                    && !existing_pods.contains(&(holder.namespace.clone(), holder.name.clone()))
                {
                    report.findings.push(Finding {
                        kind: Kind::OrphanLock,
                        object: format!("node/{name}"),
                        detail: format!(
                            "{NODE_LOCK} {value:?} is held by pod {}/{}, which does not exist",
                            holder.namespace, holder.name
                        ),
                    });
                }
            }
        }
    }
    let mut usage: BTreeMap<(String, String), DeviceUse> = BTreeMap::new();
    for pod in pods {
        let ns = pod.metadata.namespace.clone().unwrap_or_default();
        let pod_name = pod.metadata.name.clone().unwrap_or_default();
        let object = format!("pod/{ns}/{pod_name}");
        if !sliceguard::request::requests_gpu(pod) {
            let meta = sliceguard::guard::Metadata::of(&pod.metadata);
            let forged =
                sliceguard::guard::changed_keys(sliceguard::guard::Metadata::default(), meta);
            for key in forged {
                report.findings.push(Finding {
                    kind: Kind::UnrequestedAllocation,
                    object: object.clone(),
                    detail: format!(
                        "{key} is set, but the pod requests no GPU: a scheduler never writes it there"
                    ),
                });
            }
            continue;
        }
        let phase = pod
            .status
            .as_ref()
            .and_then(|s| s.phase.clone())
            .unwrap_or_default();
        if phase == "Succeeded" || phase == "Failed" {
            continue;
        }
        let bound = pod.spec.as_ref().and_then(|s| s.node_name.as_deref());
        if let (Some(bound), Some(chosen)) = (bound, annotation(&pod.metadata, VGPU_NODE))
            && bound != chosen
        {
            report.findings.push(Finding {
                kind: Kind::NodeMismatch,
                object: object.clone(),
                detail: format!(
                    "bound to {bound}, but its allocation is for {chosen} ({VGPU_NODE}); the devices it holds are not on its node"
                ),
            });
        }
        let Some(value) = annotation(&pod.metadata, DEVICES_ALLOCATED) else {
            continue;
        };
        let containers = match pod_devices::parse(value) {
            Ok(d) => d,
            Err(e) => {
                report.findings.push(Finding {
                    kind: Kind::Undecodable,
                    object,
                    detail: format!("{DEVICES_ALLOCATED} {value:?} does not decode: {e}"),
                });
                continue;
            }
        };
        if containers.is_empty() {
            continue;
        }
        report.pods_with_devices += 1;
        let node = pod
            .spec
            .as_ref()
            .and_then(|s| s.node_name.clone())
            .or_else(|| annotation(&pod.metadata, VGPU_NODE).cloned());
        let Some(node) = node else {
            report.findings.push(Finding {
                kind: Kind::UnknownDevice,
                object,
                detail: format!("holds devices but has no node (no spec.nodeName, no {VGPU_NODE})"),
            });
            continue;
        };
        let Some(devices) = registered.get(&node) else {
            let why = if node_names.contains(&node) {
                format!("node {node} registers no GPUs")
            } else {
                format!("node {node} does not exist")
            };
            report.findings.push(Finding {
                kind: Kind::UnknownDevice,
                object,
                detail: format!("holds devices on {node}, but {why}"),
            });
            continue;
        };
        for d in containers.0.iter().flatten() {
            let Some(info) = devices.iter().find(|i| i.id == d.uuid) else {
                report.findings.push(Finding {
                    kind: Kind::UnknownDevice,
                    object: object.clone(),
                    detail: format!("holds {} on {node}, which {node} does not register", d.uuid),
                });
                continue;
            };
            let entry = usage
                .entry((node.clone(), d.uuid.clone()))
                .or_insert_with(|| DeviceUse {
                    node: node.clone(),
                    uuid: d.uuid.clone(),
                    devmem: info.devmem,
                    devcore: info.devcore,
                    count: info.count,
                    ..Default::default()
                });
            entry.usedmem += u64::from(d.usedmem);
            entry.usedcores += u64::from(d.usedcores);
            entry.used += 1;
            let who = format!("{ns}/{pod_name}");
            if !entry.pods.contains(&who) {
                entry.pods.push(who);
            }
        }
    }
    for u in usage.values() {
        let mut over = Vec::new();
        if u.usedmem > u64::from(u.devmem) {
            over.push(format!("memory {} of {} MiB", u.usedmem, u.devmem));
        }
        if u.usedcores > u64::from(u.devcore) {
            over.push(format!("cores {} of {}", u.usedcores, u.devcore));
        }
        if u.used > u.count {
            over.push(format!("tasks {} of split {}", u.used, u.count));
        }
        if !over.is_empty() {
            report.findings.push(Finding {
                kind: Kind::OverCommitted,
                object: format!("node/{}/{}", u.node, u.uuid),
                detail: format!("{} held by {}", over.join(", "), u.pods.join(", ")),
            });
        }
    }
    report.usage = usage.into_values().collect();
    report
        .findings
        .sort_by(|a, b| (a.kind, &a.object, &a.detail).cmp(&(b.kind, &b.object, &b.detail)));
    report
}

/// Reads the cluster and audits it.
pub async fn audit_cluster(args: &AuditArgs) -> Result<AuditReport, String> {
    let (client, _) = crate::driver::connect_kubeconfig(
        args.kubeconfig.clone(),
        args.context.clone(),
        Duration::from_secs(args.connect_timeout.max(1)),
    )
    .await?;
    let nodes: Api<Node> = Api::all(client.clone());
    let pods: Api<Pod> = Api::all(client);
    let nodes = nodes
        .list(&ListParams::default())
        .await
        .map_err(|e| format!("listing nodes: {e}"))?
        .items;
    let pods = pods
        .list(&ListParams::default())
        .await
        .map_err(|e| format!("listing pods: {e}"))?
        .items;
    Ok(audit(
        &nodes,
        &pods,
        jiff::Timestamp::now(),
        args.lock_timeout,
    ))
}

/// `kind-harness audit`: prints the findings; returns the exit code.
pub fn run(args: &AuditArgs) -> u8 {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: starting the async runtime: {e}");
            return 2;
        }
    };
    match runtime.block_on(audit_cluster(args)) {
        Ok(report) => {
            if args.json {
                match serde_json::to_string_pretty(&report) {
                    Ok(text) => println!("{text}"),
                    Err(e) => {
                        eprintln!("error: rendering JSON: {e}");
                        return 2;
                    }
                }
            } else {
                print!("{}", report.text());
            }
            if report.healthy() { 0 } else { 1 }
        }
        Err(e) => {
            eprintln!("error: {e}");
            2
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sliceguard::objects::{FleetSpec, GpuAsk, fleet, gpu_pod, with_annotations};

    fn now() -> jiff::Timestamp {
        "2026-01-01T12:00:00Z".parse().unwrap()
    }

    fn spec() -> FleetSpec {
        FleetSpec {
            nodes: 2,
            gpus_per_node: 2,
            memory_mib: 10000,
            ..Default::default()
        }
    }

    fn placed(name: &str, node: &str, alloc: &str) -> Pod {
        let mut p = with_annotations(
            gpu_pod(name, &[], &[GpuAsk::fraction(1, 1)]),
            &[(DEVICES_ALLOCATED, alloc)],
        );
        p.spec.as_mut().unwrap().node_name = Some(node.into());
        p
    }

    #[test]
    fn healthy_cluster_has_no_finding() {
        let nodes = fleet(&spec(), now());
        let pods = vec![placed(
            "a",
            "hami-sim-worker",
            "GPU-hami-sim-worker-0,NVIDIA,6000,50:;",
        )];
        let r = audit(&nodes, &pods, now(), Duration::from_secs(300));
        assert!(r.healthy(), "{}", r.text());
        assert_eq!((r.gpu_nodes, r.devices, r.pods_with_devices), (2, 4, 1));
        assert_eq!(r.usage[0].usedmem, 6000);
    }

    #[test]
    fn over_commit_on_memory_cores_and_split() {
        let nodes = fleet(&spec(), now());
        let pods = vec![
            placed(
                "a",
                "hami-sim-worker",
                "GPU-hami-sim-worker-0,NVIDIA,6000,60:;",
            ),
            placed(
                "b",
                "hami-sim-worker",
                "GPU-hami-sim-worker-0,NVIDIA,6000,60:;",
            ),
        ];
        let r = audit(&nodes, &pods, now(), Duration::from_secs(300));
        assert_eq!(r.findings.len(), 1, "{}", r.text());
        assert_eq!(r.findings[0].kind, Kind::OverCommitted);
        assert!(r.findings[0].detail.contains("memory 12000 of 10000 MiB"));
        assert!(r.findings[0].detail.contains("cores 120 of 100"));
        // A finished pod no longer counts.
        let mut done = pods.clone();
        done[1].status = Some(k8s_openapi::api::core::v1::PodStatus {
            phase: Some("Succeeded".into()),
            ..Default::default()
        });
        assert!(audit(&nodes, &done, now(), Duration::from_secs(300)).healthy());
    }

    #[test]
    fn locks_stale_orphan_and_malformed() {
        let mut nodes = fleet(&spec(), now());
        let pods = vec![placed(
            "holder",
            "hami-sim-worker",
            "GPU-hami-sim-worker-0,NVIDIA,1,1:;",
        )];
        let set = |n: &mut Node, v: &str| {
            n.metadata
                .annotations
                .get_or_insert_with(Default::default)
                .insert(NODE_LOCK.into(), v.into());
        };
        // Fresh, held by an existing pod: fine.
        set(&mut nodes[0], "2026-01-01T11:59:00Z,default,holder");
        let r = audit(&nodes, &pods, now(), Duration::from_secs(300));
        assert!(r.healthy(), "{}", r.text());
        // Old and held by a pod that is gone: stale and orphan.
        set(&mut nodes[1], "2026-01-01T11:00:00Z,default,gone");
        let r = audit(&nodes, &pods, now(), Duration::from_secs(300));
        let kinds: Vec<Kind> = r.findings.iter().map(|f| f.kind).collect();
        assert_eq!(
            kinds,
            vec![Kind::StaleLock, Kind::OrphanLock],
            "{}",
            r.text()
        );
        set(&mut nodes[1], "yesterday,default");
        let r = audit(&nodes, &pods, now(), Duration::from_secs(300));
        assert_eq!(r.findings[0].kind, Kind::MalformedLock);
    }

    #[test]
    fn undecodable_and_unknown_devices() {
        let mut nodes = fleet(&spec(), now());
        nodes[1]
            .metadata
            .annotations
            .as_mut()
            .unwrap()
            .insert(NODE_REGISTER.into(), "{not json".into());
        let pods = vec![
            placed("bad", "hami-sim-worker", "GPU-x,NVIDIA,abc,1:;"),
            placed("ghost", "hami-sim-worker", "GPU-nope,NVIDIA,1,1:;"),
            placed("lost", "no-such-node", "GPU-a,NVIDIA,1,1:;"),
        ];
        let r = audit(&nodes, &pods, now(), Duration::from_secs(300));
        let kinds: Vec<(Kind, &str)> = r
            .findings
            .iter()
            .map(|f| (f.kind, f.object.as_str()))
            .collect();
        assert_eq!(
            kinds,
            vec![
                (Kind::Undecodable, "node/hami-sim-worker2"),
                (Kind::Undecodable, "pod/default/bad"),
                (Kind::UnknownDevice, "pod/default/ghost"),
                (Kind::UnknownDevice, "pod/default/lost"),
            ],
            "{}",
            r.text()
        );
    }

    #[test]
    fn forged_state_on_a_pod_without_gpus_and_a_node_mismatch_are_reported() {
        let nodes = fleet(&spec(), now());
        let mut squatter = placed(
            "squatter",
            "hami-sim-worker",
            "GPU-hami-sim-worker-0,NVIDIA,10000,100:;",
        );
        squatter.spec.as_mut().unwrap().containers[0].resources = None;
        let squatter = with_annotations(squatter, &[(VGPU_NODE, "hami-sim-worker")]);
        let honest = placed(
            "honest",
            "hami-sim-worker",
            "GPU-hami-sim-worker-0,NVIDIA,6000,50:;",
        );
        let moved = with_annotations(
            placed(
                "moved",
                "hami-sim-worker2",
                "GPU-hami-sim-worker-1,NVIDIA,1000,10:;",
            ),
            &[(VGPU_NODE, "hami-sim-worker")],
        );
        let r = audit(
            &nodes,
            &[squatter, honest, moved],
            now(),
            Duration::from_secs(300),
        );
        let found: Vec<(Kind, &str, &str)> = r
            .findings
            .iter()
            .map(|f| (f.kind, f.object.as_str(), f.detail.as_str()))
            .collect();
        assert_eq!(
            found.iter().map(|(k, o, _)| (*k, *o)).collect::<Vec<_>>(),
            vec![
                (Kind::UnknownDevice, "pod/default/moved"),
                (Kind::UnrequestedAllocation, "pod/default/squatter"),
                (Kind::UnrequestedAllocation, "pod/default/squatter"),
                (Kind::NodeMismatch, "pod/default/moved"),
            ],
            "{}",
            r.text()
        );
        assert!(
            found[1].2.starts_with(
                "annotation hami.io/vgpu-devices-allocated is set, but the pod requests no GPU"
            ),
            "{}",
            r.text()
        );
        assert!(
            found[2]
                .2
                .starts_with("annotation hami.io/vgpu-node is set"),
            "{}",
            r.text()
        );
        assert!(
            found[3].2.starts_with(
                "bound to hami-sim-worker2, but its allocation is for hami-sim-worker"
            ),
            "{}",
            r.text()
        );
        // The forged allocation holds nothing: the honest pod alone uses the device.
        assert_eq!(r.usage[0].usedmem, 6000, "{}", r.text());
        assert!(r.text().contains("unrequested"));
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse_duration("30"), Ok(Duration::from_secs(30)));
        assert!(
            parse_duration("5 minutes")
                .unwrap_err()
                .contains("\"5 minutes\"")
        );
        assert!(parse_duration("").is_err());
    }
}
