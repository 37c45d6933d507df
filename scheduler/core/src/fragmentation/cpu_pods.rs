//! The CPU side: a pod's CPU request as kube-scheduler sums it, a node's CPU ([`HostResources`],
//! read through a [`HostSource`]), and where a pod without GPUs goes
//! ([`choose_node_for_cpu_pod`]: where its CPU strands the fewest GPUs).

use super::node::NodeFragmentation;
use super::workload::TypicalWorkload;
use crate::ledger::UsageSource;
use crate::model::{DeviceUsage, NodeView};
use crate::quantity::parse_integer;
use crate::registry::Registry;
use k8s_openapi::api::core::v1::{Container, Pod};
use std::collections::BTreeSet;
use std::fmt::Debug;

/// A node's CPU as kube-scheduler accounts it (allocatable and the requests of its pods).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostResources {
    /// Allocatable CPU (millicores).
    pub cpu_capacity_milli: u64,
    /// CPU requested by the pods on the node (millicores).
    pub cpu_requested_milli: u64,
}

impl HostResources {
    /// CPU not yet requested.
    pub fn cpu_free(&self) -> u64 {
        self.cpu_capacity_milli
            .saturating_sub(self.cpu_requested_milli)
    }
}

/// Where the fragmentation policy reads nodes' CPU (in production: Node allocatable and the pods
/// bound to it, as the extender's watches see them).
pub trait HostSource: Debug {
    /// The node's CPU, if known.
    fn host(&self, node: &str) -> Option<HostResources>;
}

/// A pod's CPU request in millicores as kube-scheduler sums it: the larger of the regular
/// containers' sum and the largest init container, each container's request (else its limit).
/// Quantities that are not decimal numbers with an optional `m` or `k` suffix count as 0.
pub fn pod_cpu_request_milli(pod: &Pod) -> u64 {
    fn milli(container: &Container) -> u64 {
        let Some(resources) = container.resources.as_ref() else {
            return 0;
        };
        let quantity = resources
            .requests
            .as_ref()
            .and_then(|r| r.get("cpu"))
            .or_else(|| resources.limits.as_ref().and_then(|l| l.get("cpu")));
        quantity.map_or(0, |q| cpu_milli(&q.0))
    }
    let Some(spec) = pod.spec.as_ref() else {
        return 0;
    };
    let app: u64 = spec
        .containers
        .iter()
        .map(milli)
        .fold(0, u64::saturating_add);
    let init = spec
        .init_containers
        .iter()
        .flatten()
        .map(milli)
        .max()
        .unwrap_or(0);
    app.max(init)
}

/// A CPU quantity in millicores (`500m`, `2`, `1.5`, `2k`), rounded up; 0 when it is none of these.
fn cpu_milli(quantity: &str) -> u64 {
    let q = quantity.trim();
    if let Some(m) = q.strip_suffix('m') {
        return parse_integer(m)
            .ok()
            .and_then(|v| u64::try_from(v).ok())
            .unwrap_or(0);
    }
    let (number, scale) = match q.strip_suffix('k') {
        Some(k) => (k, 1_000_000.0),
        None => (q, 1_000.0),
    };
    match number.parse::<f64>() {
        Ok(v) if v.is_finite() && v >= 0.0 => {
            let m = (v * scale).ceil();
            if m >= u64::MAX as f64 {
                u64::MAX
            } else {
                m as u64
            }
        }
        _ => 0,
    }
}

/// Places a pod without GPUs (CPU request `pod_cpu_milli`) among `node_names` (the nodes
/// kube-scheduler's filters passed, so each has the CPU): the node where the expected
/// fragmentation grows least; then the one with the least free GPU share (nothing left there to
/// strand); then the least free CPU (keeps large CPU holes for large pods); then the smallest
/// name. Nodes that are not registered (no GPUs) strand nothing. Returns the node and the growth.
pub fn choose_node_for_cpu_pod(
    registry: &Registry,
    usage: &impl UsageSource,
    hosts: &dyn HostSource,
    typical: &TypicalWorkload,
    pod_cpu_milli: u64,
    node_names: &[String],
) -> Option<(String, f64)> {
    let offered: BTreeSet<&str> = node_names.iter().map(String::as_str).collect();
    let mut best: Option<((f64, f64, u64), &str)> = None;
    let mut buffer: Vec<DeviceUsage> = Vec::new();
    for name in offered {
        let cpu_free = hosts.host(name).map(|h| h.cpu_free());
        let key = match registry.get(name) {
            None => (0.0, 0.0, cpu_free.unwrap_or(0)),
            Some(node) => {
                buffer.clear();
                buffer.extend(node.devices.iter().map(|d| usage.device_usage(name, &d.id)));
                let view = NodeView {
                    devices: &node.devices,
                    usage: &buffer,
                    cordoned: &node.cordoned,
                };
                let candidates = view.nvidia_devices();
                let state = NodeFragmentation::new(view, &buffer, &candidates, typical, cpu_free);
                let after = cpu_free.map(|c| c.saturating_sub(pod_cpu_milli));
                let growth = state.value_with_cpu(typical, after) - state.value(typical);
                (growth, state.free(), cpu_free.unwrap_or(0))
            }
        };
        let better = best.is_none_or(|(b, _)| {
            key.0
                .total_cmp(&b.0)
                .then(key.1.total_cmp(&b.1))
                .then(key.2.cmp(&b.2))
                .is_lt()
        });
        if better {
            best = Some((key, name));
        }
    }
    best.map(|((growth, _, _), name)| (name.to_string(), growth))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fragmentation::tests::{gpu, shape};
    use k8s_openapi::api::core::v1::{PodSpec, ResourceRequirements};
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
    use std::collections::BTreeMap;

    #[test]
    fn cpu_requests_as_kube_sums_them() {
        let container = |requests: &[(&str, &str)], limits: &[(&str, &str)]| Container {
            resources: Some(ResourceRequirements {
                requests: Some(
                    requests
                        .iter()
                        .map(|(k, v)| (k.to_string(), Quantity(v.to_string())))
                        .collect(),
                ),
                limits: Some(
                    limits
                        .iter()
                        .map(|(k, v)| (k.to_string(), Quantity(v.to_string())))
                        .collect(),
                ),
                ..Default::default()
            }),
            ..Default::default()
        };
        let pod = Pod {
            spec: Some(PodSpec {
                containers: vec![
                    container(&[("cpu", "1500m")], &[]),
                    container(&[], &[("cpu", "2")]),
                ],
                init_containers: Some(vec![container(&[("cpu", "4")], &[])]),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(
            pod_cpu_request_milli(&pod),
            4000,
            "init container peak wins"
        );
        assert_eq!(cpu_milli("0.5"), 500);
        assert_eq!(cpu_milli("0.0001"), 1, "rounded up");
        assert_eq!(cpu_milli("2k"), 2_000_000);
        assert_eq!(cpu_milli("lots"), 0);
        assert_eq!(cpu_milli("-1"), 0);
        for not_a_number in ["inf", "-inf", "NaN", "infk"] {
            assert_eq!(cpu_milli(not_a_number), 0, "{not_a_number}");
        }
        assert_eq!(pod_cpu_request_milli(&Pod::default()), 0);
    }

    #[derive(Debug)]
    struct Hosts(BTreeMap<String, HostResources>);

    impl HostSource for Hosts {
        fn host(&self, node: &str) -> Option<HostResources> {
            self.0.get(node).copied()
        }
    }

    #[test]
    fn cpu_pods_go_where_they_strand_least() {
        use crate::annotations::NODE_REGISTER;
        use crate::codec::register;
        use crate::ledger::Ledger;
        let mut registry = Registry::new();
        for name in ["a", "b", "c"] {
            let devices = [gpu(0), gpu(1)];
            registry
                .upsert(
                    name,
                    &BTreeMap::from([(NODE_REGISTER.to_string(), register::render_json(&devices))]),
                )
                .unwrap();
        }
        let host = |free: u64| HostResources {
            cpu_capacity_milli: 16_000,
            cpu_requested_milli: 16_000 - free,
        };
        // a: 6 cores free, b: 12 free. Typical GPU tasks need 4 cores. A 4-core CPU pod on a leaves
        // 2 cores: both idle GPUs stranded (growth 2). On b it leaves 8: nothing stranded.
        let hosts = Hosts(BTreeMap::from([
            ("a".to_string(), host(6000)),
            ("b".to_string(), host(12_000)),
            ("cpu-only".to_string(), host(1000)),
            ("c".to_string(), host(3000)),
            ("roomy-cpu-only".to_string(), host(14_000)),
        ]));
        let mut needs_cpu = shape(1, 100);
        needs_cpu.cpu_milli = 4000;
        let typical = TypicalWorkload::from_weights([(needs_cpu, 1.0)]);
        let names = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let ledger = Ledger::new();
        let choice = choose_node_for_cpu_pod(
            &registry,
            &ledger,
            &hosts,
            &typical,
            4000,
            &names(&["a", "b"]),
        );
        assert_eq!(choice, Some(("b".to_string(), 0.0)));
        // A node without GPUs strands nothing and has no GPU left: it wins.
        let choice = choose_node_for_cpu_pod(
            &registry,
            &ledger,
            &hosts,
            &typical,
            500,
            &names(&["b", "cpu-only", "a"]),
        );
        assert_eq!(choice.map(|c| c.0), Some("cpu-only".to_string()));
        assert_eq!(
            choose_node_for_cpu_pod(&registry, &ledger, &hosts, &typical, 1, &[]),
            None
        );
        // c has 3 cores free: both GPUs are stranded already, and a small CPU pod strands nothing
        // more. The growth is the difference, not the level.
        let choice =
            choose_node_for_cpu_pod(&registry, &ledger, &hosts, &typical, 500, &names(&["c"]));
        assert_eq!(choice, Some(("c".to_string(), 0.0)));
        // Equal growth: the node with no free GPU share wins over one with two idle GPUs, even
        // with more CPU free.
        let choice = choose_node_for_cpu_pod(
            &registry,
            &ledger,
            &hosts,
            &typical,
            500,
            &names(&["b", "roomy-cpu-only"]),
        );
        assert_eq!(choice.map(|c| c.0), Some("roomy-cpu-only".to_string()));
    }
}
