//! The CPU side of the policy: where a pod without GPUs goes ([`choose_node_for_cpu_pod`]: where
//! its CPU strands the fewest GPUs). Nodes' CPU is read through a [`HostSource`]
//! ([`crate::host_cpu`]).

use super::node::NodeFragmentation;
use super::workload::{TypicalWorkload, WorkloadProfile};
use crate::host_cpu::HostSource;
use crate::ledger::UsageSource;
use crate::model::{DeviceUsage, NodeView};
use crate::registry::Registry;
use std::collections::BTreeSet;

/// Where a pod without GPUs goes when it is routed to sliceguard: [`choose_node_for_cpu_pod`]
/// against the profile's typical workload. With nothing learned yet there is no GPU shape to
/// protect: every node's growth is 0, and the tie-breaks decide.
pub fn place_cpu_pod(
    registry: &Registry,
    usage: &impl UsageSource,
    hosts: &dyn HostSource,
    profile: Option<&WorkloadProfile>,
    pod_cpu_milli: u64,
    node_names: &[String],
) -> Option<(String, f64)> {
    let nothing = TypicalWorkload::default();
    let typical = profile.map_or(&nothing, WorkloadProfile::typical);
    choose_node_for_cpu_pod(registry, usage, hosts, typical, pod_cpu_milli, node_names)
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
                usage.node_usage(name, &node.devices, &mut buffer);
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
    use crate::host_cpu::HostResources;
    use std::collections::BTreeMap;

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
