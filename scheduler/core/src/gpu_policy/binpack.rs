//! `binpack`: the busiest device first (highest HAMi device score); with `numa-bind`, devices are
//! grouped by NUMA node, the highest-numbered node first.

use super::{DeviceOrderInputs, DevicePolicy};
use std::cmp::Ordering;

/// HAMi's `binpack` GPU policy.
#[derive(Debug, Clone, Copy)]
pub struct Binpack;

impl DevicePolicy for Binpack {
    fn name(&self) -> &'static str {
        "binpack"
    }

    fn prefer(&self, inputs: &DeviceOrderInputs<'_>, a: usize, b: usize) -> Ordering {
        let by_score = inputs.scores[a].total_cmp(&inputs.scores[b]);
        if inputs.numa_bind {
            inputs.numa(b).cmp(&inputs.numa(a)).then(by_score)
        } else {
            by_score.then(inputs.numa(a).cmp(&inputs.numa(b)))
        }
    }
}
