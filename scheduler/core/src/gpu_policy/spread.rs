//! `spread` (HAMi's default): the idlest device first (lowest HAMi device score); with `numa-bind`,
//! devices are grouped by NUMA node, the lowest-numbered node first.

use super::{DeviceOrderInputs, DevicePolicy};
use std::cmp::Ordering;

/// HAMi's `spread` GPU policy.
#[derive(Debug, Clone, Copy)]
pub struct Spread;

impl DevicePolicy for Spread {
    fn name(&self) -> &'static str {
        "spread"
    }

    fn prefer(&self, inputs: &DeviceOrderInputs<'_>, a: usize, b: usize) -> Ordering {
        let by_score = inputs.scores[b].total_cmp(&inputs.scores[a]);
        if inputs.numa_bind {
            inputs.numa(a).cmp(&inputs.numa(b)).then(by_score)
        } else {
            by_score.then(inputs.numa(a).cmp(&inputs.numa(b)))
        }
    }
}
