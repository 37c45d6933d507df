//! Node and device scores, in `float32` as HAMi computes them (spec §4.5).
//!
//! - Node score: `10*(ΣUsed/ΣCount + ΣUsedcores/ΣTotalcore + ΣUsedmem/ΣTotalmem)` over all devices of
//!   the node, from usage **before** the pod; 0 when any total is 0.
//! - Device score: `10*(Ws*(req+Used)/Count + Wc*(core+Usedcores)/Totalcore + Wm*(mem+Usedmem)/Totalmem)`,
//!   where the request terms count only when the device's type is exactly the backend key `NVIDIA`
//!   (in production the type is a model name, so they are 0; HAMi's tests use `NVIDIA`); 0 when any
//!   total is 0.

use crate::annotations::BACKEND_NVIDIA;
use crate::model::{DeviceInfo, DeviceUsage};
use crate::policy::ScoreWeights;
use crate::request::{ContainerRequest, PERCENTAGE_UNSET};

/// HAMi's score weight.
const WEIGHT: f32 = 10.0;

/// Running sums from which a node score is computed; kept per node so the score needs no device scan.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NodeTotals {
    /// Σ tasks in use.
    pub used: u64,
    /// Σ split counts.
    pub count: u64,
    /// Σ cores in use.
    pub usedcores: u64,
    /// Σ device cores.
    pub totalcore: u64,
    /// Σ MiB in use.
    pub usedmem: u64,
    /// Σ device MiB.
    pub totalmem: u64,
}

impl NodeTotals {
    /// Adds one device.
    pub fn add(&mut self, device: &DeviceInfo, usage: &DeviceUsage) {
        self.used += usage.used;
        self.count += u64::from(device.count);
        self.usedcores += usage.usedcores;
        self.totalcore += u64::from(device.devcore);
        self.usedmem += usage.usedmem;
        self.totalmem += u64::from(device.devmem);
    }

    /// The node score.
    pub fn score(&self) -> f32 {
        if self.count == 0 || self.totalcore == 0 || self.totalmem == 0 {
            return 0.0;
        }
        WEIGHT
            * (self.used as f32 / self.count as f32
                + self.usedcores as f32 / self.totalcore as f32
                + self.usedmem as f32 / self.totalmem as f32)
    }
}

/// The node score over `(device, usage)` pairs.
pub fn node_score<'a>(devices: impl IntoIterator<Item = (&'a DeviceInfo, &'a DeviceUsage)>) -> f32 {
    let mut totals = NodeTotals::default();
    for (d, u) in devices {
        totals.add(d, u);
    }
    totals.score()
}

/// The device score for one container's request.
pub fn device_score(
    device: &DeviceInfo,
    usage: &DeviceUsage,
    request: &ContainerRequest,
    weights: ScoreWeights,
) -> f32 {
    if device.count == 0 || device.devcore == 0 || device.devmem == 0 {
        return 0.0;
    }
    let (req, core, mem) = if &*device.device_type == BACKEND_NVIDIA {
        let mem = if request.mem_percentage != 0 && request.mem_percentage != PERCENTAGE_UNSET {
            u64::from(device.devmem) * u64::from(request.mem_percentage) / 100
        } else {
            u64::from(request.memreq)
        };
        (1u64, u64::from(request.coresreq), mem)
    } else {
        (0, 0, 0)
    };
    // HAMi (`gpu_policy.go` `ComputeScore`) rounds each ratio to float32 first, then weighs it:
    // `W * (Ws*(a/c) + ...)`. Weighing first (`(Ws*a)/c`) rounds differently, and with weights
    // other than 1 two devices can swap places.
    let used = (req + usage.used) as f32 / device.count as f32;
    let cores = (core + usage.usedcores) as f32 / device.devcore as f32;
    let memory = (mem + usage.usedmem) as f32 / device.devmem as f32;
    WEIGHT
        * (weights.slot as f32 * used
            + weights.core as f32 * cores
            + weights.memory as f32 * memory)
}

/// Maps a score to a `u32` that orders as [`f32::total_cmp`]: what the placement index and the
/// `fragmentation` memo rank nodes by.
pub(crate) fn score_key(score: f32) -> u32 {
    let bits = score.to_bits();
    if bits & 0x8000_0000 != 0 {
        !bits
    } else {
        bits | 0x8000_0000
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn score_keys_order_as_total_cmp() {
        let values = [-1.5f32, -0.0, 0.0, 0.25, 3.0, 29.99, 30.0];
        for a in values {
            for b in values {
                assert_eq!(score_key(a).cmp(&score_key(b)), a.total_cmp(&b), "{a} {b}");
            }
        }
    }

    fn gpu(id: &str, ty: &str) -> DeviceInfo {
        DeviceInfo {
            id: id.into(),
            index: 0,
            count: 10,
            devmem: 8000,
            devcore: 100,
            device_type: ty.into(),
            numa: 0,
            mode: "hami-core".into(),
            health: true,
        }
    }

    fn used(used: u64, mem: u64, cores: u64) -> DeviceUsage {
        DeviceUsage {
            used,
            usedmem: mem,
            usedcores: cores,
        }
    }

    #[test]
    fn spec_section_9_node_scores() {
        let (d1, d2) = (gpu("d1", "NVIDIA"), gpu("d2", "NVIDIA"));
        let node1 = node_score([(&d1, &used(1, 2000, 25)), (&d2, &used(0, 0, 0))]);
        let node2 = node_score([(&d1, &used(0, 0, 0)), (&d2, &used(1, 6000, 75))]);
        assert_eq!(format!("{node1:.2}"), "3.00");
        assert_eq!(format!("{node2:.2}"), "8.00");
    }

    /// HAMi's float32 order, ratio first (`W * (Ws*(a/c) + Wc*(b/d) + Wm*(e/f))`), bit for bit, on
    /// weights where weighing first rounds differently (found by checking the spec's rules against
    /// `gpu_policy.go`; the old order made these two devices trade places under binpack).
    #[test]
    fn device_scores_round_each_ratio_before_weighing_as_hami_does() {
        let weights = ScoreWeights {
            slot: 1,
            core: 1,
            memory: 3,
        };
        let device = |id: &str| DeviceInfo {
            devmem: 15360,
            ..gpu(id, "NVIDIA")
        };
        let request = ContainerRequest {
            nums: 1,
            memreq: 1000,
            mem_percentage: PERCENTAGE_UNSET,
            coresreq: 0,
        };
        let hami = |u: &DeviceUsage, d: &DeviceInfo| -> f32 {
            let used = (1 + u.used) as f32 / d.count as f32;
            let cores = u.usedcores as f32 / d.devcore as f32;
            let mem = (1000 + u.usedmem) as f32 / d.devmem as f32;
            10.0f32 * (1.0f32 * used + 1.0f32 * cores + 3.0f32 * mem)
        };
        let weighed_first = |u: &DeviceUsage, d: &DeviceInfo| -> f32 {
            10.0f32
                * (1.0f32 * (1 + u.used) as f32 / d.count as f32
                    + 1.0f32 * u.usedcores as f32 / d.devcore as f32
                    + 3.0f32 * (1000 + u.usedmem) as f32 / d.devmem as f32)
        };
        let (a, b) = (device("GPU-a"), device("GPU-b"));
        let (ua, ub) = (used(1, 728, 0), used(1, 1024, 20));
        let score_a = device_score(&a, &ua, &request, weights);
        let score_b = device_score(&b, &ub, &request, weights);
        assert_eq!(score_a.to_bits(), hami(&ua, &a).to_bits(), "{score_a}");
        assert_eq!(score_b.to_bits(), hami(&ub, &b).to_bits(), "{score_b}");
        // The case discriminates: the other order gives other bits on one of the devices.
        assert!(
            weighed_first(&ua, &a).to_bits() != hami(&ua, &a).to_bits()
                || weighed_first(&ub, &b).to_bits() != hami(&ub, &b).to_bits(),
            "pick inputs where the orders differ"
        );
    }

    #[test]
    fn spec_section_9_device_scores() {
        let r = ContainerRequest {
            nums: 1,
            memreq: 1000,
            mem_percentage: PERCENTAGE_UNSET,
            coresreq: 20,
        };
        let w = ScoreWeights::default();
        let d = gpu("d", "NVIDIA");
        assert_eq!(device_score(&d, &used(1, 2000, 25), &r, w), 10.25);
        assert_eq!(device_score(&d, &used(0, 0, 0), &r, w), 4.25);
        assert_eq!(device_score(&d, &used(1, 6000, 75), &r, w), 20.25);
    }

    #[test]
    fn request_terms_count_only_for_the_backend_type() {
        let r = ContainerRequest {
            nums: 1,
            memreq: 1000,
            mem_percentage: PERCENTAGE_UNSET,
            coresreq: 20,
        };
        let model = gpu("d", "NVIDIA-Tesla T4");
        assert_eq!(
            device_score(&model, &used(1, 2000, 25), &r, ScoreWeights::default()),
            10.0 * (0.1 + 0.25 + 0.25)
        );
        let pct = ContainerRequest {
            nums: 1,
            memreq: 0,
            mem_percentage: 50,
            coresreq: 0,
        };
        assert_eq!(
            device_score(
                &gpu("d", "NVIDIA"),
                &used(0, 0, 0),
                &pct,
                ScoreWeights::default()
            ),
            10.0 * (0.1 + 0.5)
        );
    }

    #[test]
    fn weights_and_zero_totals() {
        let r = ContainerRequest {
            nums: 1,
            memreq: 0,
            mem_percentage: 100,
            coresreq: 0,
        };
        let w = ScoreWeights {
            slot: 0,
            core: 2,
            memory: 0,
        };
        assert_eq!(device_score(&gpu("d", "X"), &used(1, 0, 50), &r, w), 10.0);
        let mut empty = gpu("d", "X");
        empty.devmem = 0;
        assert_eq!(
            device_score(&empty, &used(1, 0, 50), &r, ScoreWeights::default()),
            0.0
        );
        assert_eq!(node_score([(&empty, &used(1, 0, 50))]), 0.0);
        assert_eq!(node_score(std::iter::empty()), 0.0);
    }

    /// A node with no slots, no cores or no memory scores 0 (no division by zero into NaN or
    /// infinity), whichever of the three totals is the zero one.
    #[test]
    fn a_zero_total_scores_zero() {
        let full = NodeTotals {
            used: 1,
            count: 10,
            usedcores: 50,
            totalcore: 100,
            usedmem: 50,
            totalmem: 100,
        };
        assert!(full.score() > 0.0);
        for zeroed in [
            NodeTotals { count: 0, ..full },
            NodeTotals {
                totalcore: 0,
                ..full
            },
            NodeTotals {
                totalmem: 0,
                ..full
            },
        ] {
            assert_eq!(zeroed.score(), 0.0, "{zeroed:?}");
        }
    }

    /// Likewise a device with no slots, no cores or no memory scores 0 for any request.
    #[test]
    fn a_device_with_a_zero_capacity_scores_zero() {
        let request = ContainerRequest {
            nums: 1,
            memreq: 1000,
            mem_percentage: PERCENTAGE_UNSET,
            coresreq: 10,
        };
        let w = ScoreWeights::default();
        let whole = gpu("d", "NVIDIA");
        assert!(device_score(&whole, &used(1, 1000, 10), &request, w) > 0.0);
        let zeroed = [
            DeviceInfo {
                count: 0,
                ..whole.clone()
            },
            DeviceInfo {
                devcore: 0,
                ..whole.clone()
            },
            DeviceInfo {
                devmem: 0,
                ..whole.clone()
            },
        ];
        for device in &zeroed {
            assert_eq!(device_score(device, &used(1, 1000, 10), &request, w), 0.0);
        }
    }
}
