//! GPU policies: how a node's candidate devices are ordered for one container, one implementation
//! per policy behind the [`DevicePolicy`] trait, registered in [`REGISTERED`].
//!
//! HAMi's policies (spec §4.3): `binpack` (busiest device first), `spread` (idlest first, HAMi's
//! default) and `mutex` (idle devices first; with `mutex` anywhere in the policy, devices in use are
//! also refused, see [`crate::policy::GpuPolicy::is_mutex`]). sliceguard adds `fragmentation`
//! ([`crate::fragmentation`]): the device whose use grows the node's expected fragmentation least
//! first, and nodes ranked by that growth instead of the node policy.
//!
//! How HAMi reads a policy annotation is kept as it is ([`resolve`]): an exact registered name picks
//! that policy; a comma-chained value orders as binpack when its first `binpack`, `spread` or `mutex`
//! token is `binpack`, else as spread; any other value orders as spread.
//!
//! **Adding a policy** is one new file here implementing [`DevicePolicy`] and one line in
//! [`REGISTERED`]: the annotation parser, the `--gpu-scheduler-policy` flags and the fit all read
//! the table.

use crate::model::NodeView;
use std::cmp::Ordering;
use std::fmt;

mod binpack;
mod fragmentation;
mod mutex;
mod spread;

pub use binpack::Binpack;
pub use fragmentation::Fragmentation;
pub use mutex::Mutex;
pub use spread::Spread;

/// What a policy may read to compare two candidate devices for one container.
#[derive(Debug, Clone, Copy)]
pub struct DeviceOrderInputs<'a> {
    /// The node, with its usage as this container sees it (earlier containers of the pod included).
    pub node: NodeView<'a>,
    /// HAMi's device score of each device for this container ([`crate::score::device_score`]).
    pub scores: &'a [f32],
    /// The pod asks for all GPUs of a container on one NUMA node (`nvidia.com/numa-bind`).
    pub numa_bind: bool,
    /// Per device, the node's expected fragmentation after the device takes one GPU of the
    /// container, for policies that rank nodes by it ([`NodeRanking::Fragmentation`]); empty
    /// otherwise.
    pub growth: &'a [f64],
}

impl DeviceOrderInputs<'_> {
    /// NUMA node of device `i`.
    pub fn numa(&self, i: usize) -> u32 {
        self.node.devices[i].numa
    }
}

/// One GPU policy.
pub trait DevicePolicy: fmt::Debug + Sync {
    /// The name the annotation and the flags use.
    fn name(&self) -> &'static str;

    /// Compares candidate devices `a` and `b` (indices into the node's devices): `Greater` when
    /// `a` is preferred. Devices the policy cannot tell apart compare `Equal`; the fit then tries
    /// the one registered first.
    fn prefer(&self, inputs: &DeviceOrderInputs<'_>, a: usize, b: usize) -> Ordering;

    /// How nodes are ranked for a pod under this policy.
    fn node_ranking(&self) -> NodeRanking {
        NodeRanking::NodePolicy
    }
}

/// How nodes are ranked for a pod. Exhaustive on purpose: a new way of ranking nodes is a new
/// variant, and the compiler points to every place that must learn it (the fit's node score and the
/// placement index, which only decides pods ranked by the node policy).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeRanking {
    /// By the node policy (`binpack` or `spread`) over HAMi's node score, which depends only on
    /// the node's usage before the pod.
    NodePolicy,
    /// By the growth of the node's expected fragmentation the pod causes
    /// ([`crate::fragmentation`]), which depends on the pod.
    Fragmentation,
}

/// Every GPU policy by name: the one place a policy is registered.
pub static REGISTERED: &[&dyn DevicePolicy] = &[&Binpack, &Spread, &Mutex, &Fragmentation];

/// The registered policy named exactly `name`.
pub fn named(name: &str) -> Option<&'static dyn DevicePolicy> {
    REGISTERED.iter().copied().find(|p| p.name() == name)
}

/// The names of every registered policy, for messages and `--help`.
pub fn names() -> Vec<&'static str> {
    REGISTERED.iter().map(|p| p.name()).collect()
}

/// The policy that orders devices for a policy value as written, read as HAMi reads it: an exact
/// registered name is that policy; a comma-chained value orders as binpack when its first
/// `binpack`, `spread` or `mutex` token is `binpack`; any other value orders as spread.
pub fn resolve(value: &str) -> &'static dyn DevicePolicy {
    if let Some(policy) = named(value) {
        return policy;
    }
    let first = value
        .split(',')
        .map(str::trim)
        .find(|t| matches!(*t, "binpack" | "spread" | "mutex"));
    match first {
        Some("binpack") if value.contains(',') => &Binpack,
        _ => &Spread,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_registered_policy_resolves_to_itself_and_names_are_unique() {
        for policy in REGISTERED {
            assert_eq!(resolve(policy.name()).name(), policy.name());
        }
        let mut names = names();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), REGISTERED.len());
    }

    #[test]
    fn values_outside_the_table_resolve_as_hami_reads_them() {
        for (value, expected) in [
            ("binpack,mutex", "binpack"),
            ("mutex, binpack", "spread"),
            (" binpack , spread", "binpack"),
            ("spread,binpack", "spread"),
            ("topology-aware", "spread"),
            ("", "spread"),
            ("BINPACK", "spread"),
            // Not the exact name and no chain: HAMi compares the whole value.
            (" binpack", "spread"),
            ("binpack ", "spread"),
        ] {
            assert_eq!(resolve(value).name(), expected, "{value:?}");
        }
    }
}
