//! HAMi's per-device rules, written once: which check refuses a device for a container's request,
//! in HAMi's order, with HAMi's reason strings (`pkg/device/nvididia/device.go` `Fit`, spec §4.4),
//! and the structured rejections they add up to until they are rendered for the extender or an
//! event.
//!
//! The order is HAMi's: `CardNotHealth`, `CardCordoned`, `CardTypeMismatch`, (the numa-bind group
//! switch happens here, in the fit), `CardUuidMismatch`, `CardTimeSlicingExhausted`, (mutex)
//! `ExclusiveDeviceAllocateConflict`, `CardInsufficientMemory`, `CardInsufficientCore`,
//! `ExclusiveDeviceAllocateConflict`, `CardComputeUnitsExhausted`, `CardMigTopologyInfeasible`.
//!
//! Every place that asks "would HAMi's fit take this device" calls [`first_refusal`] (or its two
//! halves around the NUMA switch): the fit itself ([`crate::fit`]), the placement index's quick
//! rejection ([`crate::index`]) and the fragmentation policy's "can this device host a task of the
//! typical workload" ([`crate::fragmentation`]). The selectors (`use-gputype`, `use-gpuuuid`, ...)
//! are answered by the caller, who knows the pod's preferences, as a [`Selection`].

use crate::codec::reasons::ReasonList;
use crate::model::{DeviceInfo, DeviceUsage};
use crate::request::ContainerRequest;
use std::fmt;

/// HAMi's per-device refusal reasons (`pkg/device/common/common.go`), spelled as on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FitReason {
    /// The kubelet reports the device unhealthy.
    CardNotHealth,
    /// Listed in the node's `hami.io/device-cordon`.
    CardCordoned,
    /// Refused by `use-gputype`/`nouse-gputype` or `vgpu-mode`.
    CardTypeMismatch,
    /// Devices given up when a numa-bind container crossed NUMA nodes.
    NumaNotFit,
    /// Refused by `use-gpuuuid`/`nouse-gpuuuid`.
    CardUuidMismatch,
    /// The split count is used up.
    CardTimeSlicingExhausted,
    /// An exclusive request on a used device, or a mutex policy on a used device.
    ExclusiveDeviceAllocateConflict,
    /// Not enough free memory.
    CardInsufficientMemory,
    /// Not enough free cores.
    CardInsufficientCore,
    /// All cores taken and the request asks for none.
    CardComputeUnitsExhausted,
    /// A MIG-mode device (MIG profiles are not supported yet).
    CardMigTopologyInfeasible,
    /// The container got some devices but fewer than it asked for.
    AllocatedCardsInsufficientRequest,
}

impl FitReason {
    /// Every reason.
    pub const ALL: [FitReason; 12] = [
        FitReason::CardNotHealth,
        FitReason::CardCordoned,
        FitReason::CardTypeMismatch,
        FitReason::NumaNotFit,
        FitReason::CardUuidMismatch,
        FitReason::CardTimeSlicingExhausted,
        FitReason::ExclusiveDeviceAllocateConflict,
        FitReason::CardInsufficientMemory,
        FitReason::CardInsufficientCore,
        FitReason::CardComputeUnitsExhausted,
        FitReason::CardMigTopologyInfeasible,
        FitReason::AllocatedCardsInsufficientRequest,
    ];

    /// The wire spelling (note `CardUuidMismatch`, as HAMi spells it).
    pub fn as_str(self) -> &'static str {
        match self {
            FitReason::CardNotHealth => "CardNotHealth",
            FitReason::CardCordoned => "CardCordoned",
            FitReason::CardTypeMismatch => "CardTypeMismatch",
            FitReason::NumaNotFit => "NumaNotFit",
            FitReason::CardUuidMismatch => "CardUuidMismatch",
            FitReason::CardTimeSlicingExhausted => "CardTimeSlicingExhausted",
            FitReason::ExclusiveDeviceAllocateConflict => "ExclusiveDeviceAllocateConflict",
            FitReason::CardInsufficientMemory => "CardInsufficientMemory",
            FitReason::CardInsufficientCore => "CardInsufficientCore",
            FitReason::CardComputeUnitsExhausted => "CardComputeUnitsExhausted",
            FitReason::CardMigTopologyInfeasible => "CardMigTopologyInfeasible",
            FitReason::AllocatedCardsInsufficientRequest => "AllocatedCardsInsufficientRequest",
        }
    }
}

impl fmt::Display for FitReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the rules read of one device: its capacity, state and usage. Built from a registered
/// [`DeviceInfo`] ([`DeviceState::of`]) or from the placement index's compact copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeviceState {
    /// The kubelet reports it healthy.
    pub healthy: bool,
    /// Listed in the node's `hami.io/device-cordon`.
    pub cordoned: bool,
    /// In MIG mode.
    pub mig: bool,
    /// Split count.
    pub count: u32,
    /// MiB.
    pub devmem: u32,
    /// Cores (percent).
    pub devcore: u32,
    /// What is in use on it.
    pub usage: DeviceUsage,
}

impl DeviceState {
    /// The state of a registered device with `usage` in use.
    pub fn of(device: &DeviceInfo, usage: DeviceUsage, cordoned: bool) -> Self {
        DeviceState {
            healthy: device.health,
            cordoned,
            mig: device.is_mig(),
            count: device.count,
            devmem: device.devmem,
            devcore: device.devcore,
            usage,
        }
    }
}

/// The caller's answer to the pod's selectors for one device (`true` = allowed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Selection {
    /// `use-gputype` / `nouse-gputype` / `vgpu-mode` allow the device's type and mode.
    pub type_allowed: bool,
    /// `use-gpuuuid` / `nouse-gpuuuid` allow the device's UUID.
    pub uuid_allowed: bool,
}

impl Selection {
    /// A pod with no selectors: every device is allowed.
    pub const ANY: Selection = Selection {
        type_allowed: true,
        uuid_allowed: true,
    };
}

/// A container's request as the rules read it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Demand<'a> {
    /// The container's request.
    pub request: &'a ContainerRequest,
    /// The GPU policy refuses devices already in use (HAMi's `mutex`).
    pub mutex: bool,
}

/// The first refusal among the checks HAMi makes before the numa-bind group switch: health,
/// cordon, type.
pub fn refusal_before_numa(device: &DeviceState, selection: Selection) -> Option<FitReason> {
    if !device.healthy {
        Some(FitReason::CardNotHealth)
    } else if device.cordoned {
        Some(FitReason::CardCordoned)
    } else if !selection.type_allowed {
        Some(FitReason::CardTypeMismatch)
    } else {
        None
    }
}

/// The first refusal among the checks HAMi makes after the numa-bind group switch: UUID, split
/// count, mutex, memory, cores, exclusivity, compute units, MIG.
pub fn refusal_after_numa(
    device: &DeviceState,
    selection: Selection,
    demand: Demand<'_>,
) -> Option<FitReason> {
    let u = device.usage;
    let cores = demand.request.cores_clamped();
    if !selection.uuid_allowed {
        Some(FitReason::CardUuidMismatch)
    } else if u64::from(device.count) <= u.used {
        Some(FitReason::CardTimeSlicingExhausted)
    } else if demand.mutex && u.used > 0 {
        Some(FitReason::ExclusiveDeviceAllocateConflict)
    // Signed, as HAMi's int32 arithmetic: an over-used device refuses even a zero request.
    } else if i128::from(device.devmem) - i128::from(u.usedmem)
        < i128::from(demand.request.memory_on(device.devmem))
    {
        Some(FitReason::CardInsufficientMemory)
    } else if i128::from(device.devcore) - i128::from(u.usedcores) < i128::from(cores) {
        Some(FitReason::CardInsufficientCore)
    } else if device.devcore == 100 && cores == 100 && u.used > 0 {
        Some(FitReason::ExclusiveDeviceAllocateConflict)
    } else if device.devcore != 0 && u.usedcores == u64::from(device.devcore) && cores == 0 {
        Some(FitReason::CardComputeUnitsExhausted)
    } else if device.mig {
        Some(FitReason::CardMigTopologyInfeasible)
    } else {
        None
    }
}

/// The first check that refuses `device` for `demand`, in HAMi's order, or `None` when HAMi's fit
/// would take it.
pub fn first_refusal(
    device: &DeviceState,
    selection: Selection,
    demand: Demand<'_>,
) -> Option<FitReason> {
    refusal_before_numa(device, selection).or_else(|| refusal_after_numa(device, selection, demand))
}

/// How many candidate devices were refused for each reason.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct ReasonCounts {
    counts: [u32; 12],
    /// Candidate devices (the denominator of every entry).
    pub candidates: u32,
}

impl ReasonCounts {
    /// No refusal yet among `candidates` devices.
    pub fn new(candidates: u32) -> Self {
        ReasonCounts {
            candidates,
            ..Default::default()
        }
    }

    /// Counts `by` more devices refused for `reason`.
    pub fn bump(&mut self, reason: FitReason, by: u32) {
        let slot = &mut self.counts[reason as usize];
        *slot = slot.saturating_add(by);
    }

    /// Sets the count of one reason.
    pub fn set(&mut self, reason: FitReason, to: u32) {
        self.counts[reason as usize] = to;
    }

    /// The count for one reason.
    pub fn get(&self, reason: FitReason) -> u32 {
        self.counts[reason as usize]
    }

    /// The reasons with a count, in [`FitReason::ALL`] order.
    pub fn reasons(&self) -> impl Iterator<Item = (FitReason, u32)> + '_ {
        FitReason::ALL
            .iter()
            .map(|r| (*r, self.get(*r)))
            .filter(|(_, n)| *n > 0)
    }

    /// HAMi's `GenReason` list.
    pub fn to_list(&self) -> ReasonList {
        ReasonList::from_counts(
            self.reasons().map(|(r, n)| (r.as_str(), n)),
            self.candidates,
        )
    }
}

/// Why a node cannot hold a pod, structured until it is rendered (its `Display` is HAMi's text).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum NodeRejection {
    /// The node has no valid registration (HAMi's `node unregistered`).
    Unregistered,
    /// A container asks for more GPUs than the node has candidate devices (bare `NodeInsufficientDevice`).
    NodeInsufficientDevice,
    /// A container failed the per-device checks.
    Devices(ReasonCounts),
}

/// HAMi's failedNodes reason for a node without a valid registration.
pub const NODE_UNREGISTERED: &str = "node unregistered";

impl NodeRejection {
    /// The reasons HAMi's `ParseReason` counts in this rejection's text, each once, sorted by
    /// name (none for the bare `NodeInsufficientDevice` and `node unregistered`): what the
    /// `FilteringFailed` events group nodes by.
    pub fn counted_reasons(&self) -> Vec<&'static str> {
        match self {
            NodeRejection::Unregistered | NodeRejection::NodeInsufficientDevice => Vec::new(),
            NodeRejection::Devices(counts) => {
                let mut names: Vec<&'static str> =
                    counts.reasons().map(|(r, _)| r.as_str()).collect();
                names.sort_unstable();
                names.dedup();
                names
            }
        }
    }
}

impl fmt::Display for NodeRejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NodeRejection::Unregistered => f.write_str(NODE_UNREGISTERED),
            NodeRejection::NodeInsufficientDevice => f.write_str("NodeInsufficientDevice"),
            NodeRejection::Devices(counts) => write!(f, "{}", counts.to_list()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::reasons;

    #[test]
    fn counted_reasons_are_what_hamis_parse_reason_reads_back_from_the_text() {
        let mut counts = ReasonCounts::new(4);
        counts.bump(FitReason::CardInsufficientMemory, 2);
        counts.bump(FitReason::CardNotHealth, 1);
        counts.set(FitReason::AllocatedCardsInsufficientRequest, 1);
        let rejection = NodeRejection::Devices(counts);
        let text = rejection.to_string();
        let mut parsed: Vec<String> = reasons::parse(&text)
            .unwrap()
            .counted_reasons()
            .map(String::from)
            .collect();
        parsed.sort();
        parsed.dedup();
        assert_eq!(rejection.counted_reasons(), parsed);
        for bare in [
            NodeRejection::Unregistered,
            NodeRejection::NodeInsufficientDevice,
        ] {
            assert!(bare.counted_reasons().is_empty());
        }
        assert_eq!(NodeRejection::Unregistered.to_string(), NODE_UNREGISTERED);
    }

    /// A reason prints as HAMi spells it, the same text `as_str` gives, and no two reasons share it.
    #[test]
    fn reasons_print_as_hami_spells_them() {
        let printed: Vec<String> = FitReason::ALL.iter().map(ToString::to_string).collect();
        for (reason, text) in FitReason::ALL.iter().zip(&printed) {
            assert_eq!(text, reason.as_str());
        }
        let distinct: std::collections::BTreeSet<&String> = printed.iter().collect();
        assert_eq!(distinct.len(), FitReason::ALL.len());
        assert_eq!(
            FitReason::CardInsufficientMemory.to_string(),
            "CardInsufficientMemory"
        );
    }
}
