//! `mutex`: devices with the fewest tasks first (idle ones first); the fit also refuses devices in
//! use for any policy containing `mutex` ([`crate::policy::GpuPolicy::is_mutex`]).

use super::{DeviceOrderInputs, DevicePolicy};
use std::cmp::Ordering;

/// HAMi's `mutex` GPU policy.
#[derive(Debug, Clone, Copy)]
pub struct Mutex;

impl DevicePolicy for Mutex {
    fn name(&self) -> &'static str {
        "mutex"
    }

    fn prefer(&self, inputs: &DeviceOrderInputs<'_>, a: usize, b: usize) -> Ordering {
        let usage = inputs.node.usage;
        usage[b]
            .used
            .cmp(&usage[a].used)
            .then(inputs.numa(a).cmp(&inputs.numa(b)))
    }
}
