//! `fragmentation` (sliceguard's): the device whose use grows the node's expected fragmentation
//! least first (the keys come from [`crate::fragmentation::NodeScorer::device_keys`]); equal growth
//! falls back to binpack. With `numa-bind`, devices stay grouped by NUMA node as the fit requires.
//! Nodes are ranked by the growth the whole pod causes, not by the node policy.

use super::{DeviceOrderInputs, DevicePolicy, NodeRanking};
use std::cmp::Ordering;

/// sliceguard's `fragmentation` GPU policy.
#[derive(Debug, Clone, Copy)]
pub struct Fragmentation;

impl DevicePolicy for Fragmentation {
    fn name(&self) -> &'static str {
        "fragmentation"
    }

    fn prefer(&self, inputs: &DeviceOrderInputs<'_>, a: usize, b: usize) -> Ordering {
        let growth = inputs.growth;
        if growth.is_empty() {
            // No keys (a node without candidate devices): spread's order.
            return super::Spread.prefer(inputs, a, b);
        }
        let numa = if inputs.numa_bind {
            inputs.numa(a).cmp(&inputs.numa(b))
        } else {
            Ordering::Equal
        };
        numa.then(growth[b].total_cmp(&growth[a]))
            .then(inputs.scores[a].total_cmp(&inputs.scores[b]))
            .then(inputs.numa(a).cmp(&inputs.numa(b)))
    }

    fn node_ranking(&self) -> NodeRanking {
        NodeRanking::Fragmentation
    }
}
