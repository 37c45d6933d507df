//! Scheduling policies and per-pod preferences (spec §1.1, §4.3, §4.6).
//!
//! - Node policy: `binpack` (highest node score wins, HAMi's default) or `spread` (lowest wins); the
//!   pod annotation `hami.io/node-scheduler-policy` overrides the default, and any value other than
//!   `spread` behaves as binpack, as in HAMi.
//! - GPU policy: `binpack`, `spread` (HAMi's default), `mutex`; any other single value orders devices
//!   as spread, as in HAMi. A policy with a `mutex` token (`mutex`, `binpack,mutex`) also refuses
//!   devices that are in use.
//!   sliceguard adds `fragmentation`, a combined policy: it picks the node *and* the devices by the
//!   least growth of the node's expected fragmentation (see [`crate::fragmentation`]); the node
//!   policy does not apply to such pods.
//! - Selectors: `nvidia.com/use-gputype`/`nouse-gputype` (case-insensitive substring, as HAMi;
//!   entries are trimmed and empty entries skipped, where HAMi lets an empty entry match every type),
//!   `nvidia.com/use-gpuuuid`/`nouse-gpuuuid` (exact), `nvidia.com/numa-bind`, `nvidia.com/vgpu-mode`.
//! - Weights: `hami.io/device-scoring-weights` = `slot=<int>,core=<int>,memory=<int>`.
//!
//! Not supported yet (documented in the README): `topology-aware`, comma-chained GPU policies (a
//! chain orders devices by its first `binpack`/`spread` token), namespace quotas and MIG.

use crate::annotations::{
    DEVICE_SCORING_WEIGHTS, GPU_SCHEDULER_POLICY, NODE_SCHEDULER_POLICY, NOUSE_GPUTYPE,
    NOUSE_GPUUUID, NUMA_BIND, USE_GPUTYPE, USE_GPUUUID, VGPU_MODE,
};
use crate::codec::{Quoted, parse_go_bool};
use crate::gpu_policy::{self, DevicePolicy, NodeRanking};
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

/// How nodes are ranked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum NodePolicy {
    /// Prefer the most used node (highest score).
    Binpack,
    /// Prefer the least used node (lowest score).
    Spread,
}

impl NodePolicy {
    /// HAMi's reading of the annotation: `spread` is spread, anything else binpack.
    pub fn from_annotation(value: &str) -> Self {
        if value == "spread" {
            NodePolicy::Spread
        } else {
            NodePolicy::Binpack
        }
    }
}

impl FromStr for NodePolicy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "binpack" => Ok(NodePolicy::Binpack),
            "spread" => Ok(NodePolicy::Spread),
            other => Err(format!(
                "unknown node policy {other:?}: expected binpack or spread"
            )),
        }
    }
}

impl fmt::Display for NodePolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            NodePolicy::Binpack => "binpack",
            NodePolicy::Spread => "spread",
        })
    }
}

/// A GPU policy as written (`binpack`, `spread`, `mutex`, ...).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct GpuPolicy(pub String);

impl GpuPolicy {
    /// HAMi's default GPU policy.
    pub fn spread() -> Self {
        GpuPolicy("spread".into())
    }

    /// The registered policy that orders devices for this value, read as HAMi reads it
    /// ([`gpu_policy::resolve`]).
    pub fn device_policy(&self) -> &'static dyn DevicePolicy {
        gpu_policy::resolve(&self.0)
    }

    /// How nodes are ranked for a pod under this policy.
    pub fn node_ranking(&self) -> NodeRanking {
        self.device_policy().node_ranking()
    }

    /// True when the policy refuses devices already in use: one of its comma-separated tokens is
    /// `mutex` (HAMi's `util.PolicyContains`: trimmed tokens compared whole, so `nomutex` is not).
    pub fn is_mutex(&self) -> bool {
        self.0.split(',').any(|token| token.trim() == "mutex")
    }
}

impl FromStr for GpuPolicy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match gpu_policy::named(s) {
            Some(policy) => Ok(GpuPolicy(policy.name().into())),
            None => Err(format!(
                "unknown GPU policy {s:?}: expected one of {}",
                gpu_policy::names().join(", ")
            )),
        }
    }
}

impl fmt::Display for GpuPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Device score weights (`hami.io/device-scoring-weights`), 1/1/1 by default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct ScoreWeights {
    /// Weight of the task-count term.
    pub slot: u32,
    /// Weight of the cores term.
    pub core: u32,
    /// Weight of the memory term.
    pub memory: u32,
}

impl Default for ScoreWeights {
    fn default() -> Self {
        ScoreWeights {
            slot: 1,
            core: 1,
            memory: 1,
        }
    }
}

/// A pod annotation that does not hold what it must.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {annotation} annotation {value}: {problem}")]
pub struct PreferenceError {
    /// The annotation key.
    pub annotation: &'static str,
    /// The value, quoted.
    pub value: Quoted,
    /// What is wrong.
    pub problem: String,
}

/// Parses `slot=<int>,core=<int>,memory=<int>`: exactly these three keys, non-negative, one positive.
pub fn parse_weights(value: &str) -> Result<ScoreWeights, PreferenceError> {
    let err = |problem: String| PreferenceError {
        annotation: DEVICE_SCORING_WEIGHTS,
        value: Quoted::new(value),
        problem,
    };
    let mut seen: BTreeMap<&str, u32> = BTreeMap::new();
    for part in value.split(',') {
        let (key, number) = part
            .split_once('=')
            .ok_or_else(|| err(format!("entry {:?} is not key=value", part)))?;
        let key = key.trim();
        if !matches!(key, "slot" | "core" | "memory") {
            return Err(err(format!(
                "unknown key {key:?} (expected slot, core, memory)"
            )));
        }
        let n =
            crate::codec::parse_go_u31("weight", number.trim()).map_err(|e| err(e.to_string()))?;
        if seen.insert(key, n).is_some() {
            return Err(err(format!("key {key:?} given twice")));
        }
    }
    if seen.len() != 3 {
        return Err(err("needs exactly the keys slot, core and memory".into()));
    }
    let w = ScoreWeights {
        slot: seen["slot"],
        core: seen["core"],
        memory: seen["memory"],
    };
    if w.slot == 0 && w.core == 0 && w.memory == 0 {
        return Err(err("at least one weight must be positive".into()));
    }
    Ok(w)
}

/// The cluster defaults a pod's annotations override.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PolicyDefaults {
    /// Default node policy (HAMi: binpack).
    pub node: NodePolicy,
    /// Default GPU policy (HAMi: spread).
    pub gpu: GpuPolicy,
}

impl Default for PolicyDefaults {
    fn default() -> Self {
        PolicyDefaults {
            node: NodePolicy::Binpack,
            gpu: GpuPolicy::spread(),
        }
    }
}

/// Everything a pod's annotations say about where its GPUs may go.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct PodPreferences {
    /// Node policy in force.
    pub node_policy: NodePolicy,
    /// GPU policy in force.
    pub gpu_policy: GpuPolicy,
    /// `use-gputype` entries, upper-cased; empty means no constraint.
    pub use_types: Vec<String>,
    /// `nouse-gputype` entries, upper-cased.
    pub nouse_types: Vec<String>,
    /// `use-gpuuuid` entries; empty means no constraint.
    pub use_uuids: Vec<String>,
    /// `nouse-gpuuuid` entries.
    pub nouse_uuids: Vec<String>,
    /// All GPUs of one container on one NUMA node.
    pub numa_bind: bool,
    /// Allowed device modes (substring test), if constrained.
    pub vgpu_mode: Option<String>,
    /// Device score weights.
    pub weights: ScoreWeights,
}

fn list(value: Option<&String>, upper: bool) -> Vec<String> {
    value
        .map(|v| {
            v.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| {
                    if upper {
                        s.to_uppercase()
                    } else {
                        s.to_string()
                    }
                })
                .collect()
        })
        .unwrap_or_default()
}

impl PodPreferences {
    /// Reads a pod's annotations over the cluster defaults.
    pub fn from_annotations(
        annotations: &BTreeMap<String, String>,
        defaults: &PolicyDefaults,
    ) -> Result<Self, PreferenceError> {
        let numa_bind = match annotations.get(NUMA_BIND) {
            None => false,
            Some(v) => parse_go_bool("numa-bind", v).map_err(|e| PreferenceError {
                annotation: NUMA_BIND,
                value: Quoted::new(v),
                problem: e.problem,
            })?,
        };
        let weights = match annotations.get(DEVICE_SCORING_WEIGHTS) {
            None => ScoreWeights::default(),
            Some(v) => parse_weights(v)?,
        };
        Ok(PodPreferences {
            node_policy: annotations
                .get(NODE_SCHEDULER_POLICY)
                .map_or(defaults.node, |v| NodePolicy::from_annotation(v)),
            gpu_policy: annotations
                .get(GPU_SCHEDULER_POLICY)
                .map_or_else(|| defaults.gpu.clone(), |v| GpuPolicy(v.clone())),
            use_types: list(annotations.get(USE_GPUTYPE), true),
            nouse_types: list(annotations.get(NOUSE_GPUTYPE), true),
            use_uuids: list(annotations.get(USE_GPUUUID), false),
            nouse_uuids: list(annotations.get(NOUSE_GPUUUID), false),
            numa_bind,
            vgpu_mode: annotations.get(VGPU_MODE).cloned(),
            weights,
        })
    }

    /// HAMi's `checkType` for NVIDIA: the type selectors and the mode selector.
    pub fn type_allowed(&self, device_type: &str, mode: &str) -> bool {
        let upper = device_type.to_uppercase();
        if !self.use_types.is_empty() && !self.use_types.iter().any(|t| upper.contains(t.as_str()))
        {
            return false;
        }
        if self.nouse_types.iter().any(|t| upper.contains(t.as_str())) {
            return false;
        }
        self.vgpu_mode
            .as_deref()
            .is_none_or(|allowed| allowed.contains(mode))
    }

    /// HAMi's `CheckUUID`: exact match against the use/nouse lists.
    pub fn uuid_allowed(&self, uuid: &str) -> bool {
        (self.use_uuids.is_empty() || self.use_uuids.iter().any(|u| u == uuid))
            && !self.nouse_uuids.iter().any(|u| u == uuid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn annos(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
        kv.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn node_policies_print_as_written() {
        for policy in [NodePolicy::Binpack, NodePolicy::Spread] {
            assert_eq!(policy.to_string().parse::<NodePolicy>(), Ok(policy));
        }
        assert_eq!(NodePolicy::Binpack.to_string(), "binpack");
        let gpu: GpuPolicy = "mutex".parse().unwrap();
        assert_eq!(gpu.to_string(), "mutex");
    }

    #[test]
    fn node_policy_reading() {
        assert_eq!(NodePolicy::from_annotation("spread"), NodePolicy::Spread);
        assert_eq!(NodePolicy::from_annotation("binpack"), NodePolicy::Binpack);
        assert_eq!(NodePolicy::from_annotation("whatever"), NodePolicy::Binpack);
        assert!(
            "fragmentation"
                .parse::<NodePolicy>()
                .unwrap_err()
                .contains("binpack or spread")
        );
    }

    #[test]
    fn gpu_policy_orders() {
        assert_eq!(
            GpuPolicy("binpack".into()).device_policy().name(),
            "binpack"
        );
        assert_eq!(GpuPolicy("spread".into()).device_policy().name(), "spread");
        assert_eq!(GpuPolicy("mutex".into()).device_policy().name(), "mutex");
        assert_eq!(
            GpuPolicy("fragmentation".into()).device_policy().name(),
            "fragmentation"
        );
        assert!("fragmentation".parse::<GpuPolicy>().is_ok());
        assert_eq!(
            GpuPolicy("topology-aware".into()).device_policy().name(),
            "spread"
        );
        assert_eq!(
            GpuPolicy("binpack,numa".into()).device_policy().name(),
            "binpack"
        );
        assert!(GpuPolicy("binpack,mutex".into()).is_mutex());
        assert!(!GpuPolicy("binpack".into()).is_mutex());
        // HAMi's PolicyContains compares whole, trimmed tokens.
        assert!(GpuPolicy("spread , mutex".into()).is_mutex());
        for not_mutex in ["nomutex", "mutexes", "spread-mutex", ""] {
            assert!(!GpuPolicy(not_mutex.into()).is_mutex(), "{not_mutex}");
        }
    }

    #[test]
    fn weights() {
        assert_eq!(
            parse_weights("slot=1,core=2,memory=3").unwrap(),
            ScoreWeights {
                slot: 1,
                core: 2,
                memory: 3
            }
        );
        assert_eq!(parse_weights("memory=0, core=0 ,slot=5").unwrap().slot, 5);
        for (bad, why) in [
            ("slot=1,core=2", "exactly"),
            ("slot=1,core=2,memory=3,slot=4", "twice"),
            ("slot=0,core=0,memory=0", "positive"),
            ("slot=-1,core=2,memory=3", "negative"),
            ("slot=1,core=2,mem=3", "unknown key"),
            ("slot", "key=value"),
            ("slot=x,core=1,memory=1", "not an integer"),
        ] {
            let e = parse_weights(bad).unwrap_err().to_string();
            assert!(
                e.contains(why) && e.contains(DEVICE_SCORING_WEIGHTS),
                "{bad}: {e}"
            );
        }
    }

    #[test]
    fn selectors() {
        let p = PodPreferences::from_annotations(
            &annos(&[
                (USE_GPUTYPE, "a100, ,H100"),
                (NOUSE_GPUUUID, " GPU-1 ,GPU-2"),
                (NUMA_BIND, "true"),
            ]),
            &PolicyDefaults::default(),
        )
        .unwrap();
        assert!(p.type_allowed("NVIDIA-A100-SXM4-80GB", "hami-core"));
        assert!(p.type_allowed("NVIDIA-H100-80GB-HBM3", "hami-core"));
        assert!(!p.type_allowed("NVIDIA-L40S", "hami-core"));
        assert!(!p.uuid_allowed("GPU-1") && !p.uuid_allowed("GPU-2") && p.uuid_allowed("GPU-3"));
        assert!(p.numa_bind);
        let none = PodPreferences::from_annotations(
            &annos(&[(USE_GPUUUID, "  ")]),
            &PolicyDefaults::default(),
        )
        .unwrap();
        assert!(none.uuid_allowed("anything"));
        let mode = PodPreferences::from_annotations(
            &annos(&[(VGPU_MODE, "hami-core,mig")]),
            &PolicyDefaults::default(),
        )
        .unwrap();
        assert!(
            mode.type_allowed("NVIDIA-A100", "mig") && !mode.type_allowed("NVIDIA-A100", "mps")
        );
        let err = PodPreferences::from_annotations(
            &annos(&[(NUMA_BIND, "yes")]),
            &PolicyDefaults::default(),
        )
        .unwrap_err();
        assert!(err.to_string().contains(NUMA_BIND) && err.to_string().contains("yes"));
    }

    #[test]
    fn annotations_override_defaults() {
        let p = PodPreferences::from_annotations(
            &annos(&[
                (NODE_SCHEDULER_POLICY, "spread"),
                (GPU_SCHEDULER_POLICY, "binpack"),
            ]),
            &PolicyDefaults::default(),
        )
        .unwrap();
        assert_eq!(
            (p.node_policy, p.gpu_policy.device_policy().name()),
            (NodePolicy::Spread, "binpack")
        );
        let d =
            PodPreferences::from_annotations(&BTreeMap::new(), &PolicyDefaults::default()).unwrap();
        assert_eq!(
            (d.node_policy, d.gpu_policy.device_policy().name()),
            (NodePolicy::Binpack, "spread")
        );
    }
}
