//! What the scheduler learns of its workload: the `fragmentation` policy's [`WorkloadProfile`],
//! learned online from the GPU pods it is asked to place and the ones its pod watch shows, each pod
//! counted once.
//!
//! **Once per pod.** A pod is counted on first sight, by its key (`namespace/name`) and UID: a filter
//! retried for the same pod, or the watch showing a pod the filter already counted, adds nothing; a
//! pod recreated under the same name (a new UID) counts again. What is remembered of a pod is two
//! 64-bit hashes, forgotten when the pod is deleted or a re-list no longer shows it.
//!
//! **A restart does not forget.** A restarted scheduler lists every pod; each listed GPU pod counts
//! once, so the profile is rebuilt from the pods that exist (the ones deleted before the restart
//! are not listed, and no longer count). A new leadership term in the same process keeps the
//! profile: its watches ran throughout.
//!
//! **Bounded.** The profile keeps at most [`crate::fragmentation::MAX_SHAPES`] distinct shapes; the
//! record of counted pods is cleared if it ever holds [`MAX_REMEMBERED_PODS`] (only pods the filter
//! saw but no watch ever showed can pile up: with the `gpu` pod scope, unschedulable pods deleted
//! before placement), at the cost of counting the live ones once more.

use crate::fragmentation::WorkloadProfile;
use crate::outcome::PreparedPod;
use foldhash::fast::FixedState;
use std::collections::{HashMap, HashSet};
use std::hash::BuildHasher;

/// The most pods whose sighting is remembered at once.
pub const MAX_REMEMBERED_PODS: usize = 1 << 20;

/// The profile and the pods already counted in it.
#[derive(Debug, Clone)]
pub struct LearnedWorkload {
    profile: WorkloadProfile,
    /// Hash of the pod key → hash of the UID it was counted with.
    counted: HashMap<u64, u64, FixedState>,
    /// The record of counted pods is cleared when it holds this many.
    remember_at_most: usize,
}

impl Default for LearnedWorkload {
    fn default() -> Self {
        LearnedWorkload::remembering(MAX_REMEMBERED_PODS)
    }
}

/// The hash a pod key or UID is remembered by (fixed seed: the same in every process).
fn remembered(text: &str) -> u64 {
    FixedState::with_seed(0x5eed).hash_one(text)
}

impl LearnedWorkload {
    /// Nothing learned.
    pub fn new() -> Self {
        Self::default()
    }

    /// Nothing learned; the record of counted pods is cleared whenever it holds `pods` (at least 1).
    pub fn remembering(pods: usize) -> Self {
        LearnedWorkload {
            profile: WorkloadProfile::default(),
            counted: HashMap::default(),
            remember_at_most: pods.max(1),
        }
    }

    /// The profile learned so far.
    pub fn profile(&self) -> &WorkloadProfile {
        &self.profile
    }

    /// True when the pod under `key` with `uid` has been counted.
    pub fn has_counted(&self, key: &str, uid: &str) -> bool {
        self.counted.get(&remembered(key)) == Some(&remembered(uid))
    }

    /// Counts the pod's GPU containers unless this pod (`key`, `uid`) was counted already; a pod
    /// without a GPU container counts nothing and is not remembered. True when it counted.
    pub fn observe(&mut self, key: &str, uid: &str, pod: &PreparedPod) -> bool {
        if !pod.request.has_gpu_request() || self.has_counted(key, uid) {
            return false;
        }
        if self.counted.len() >= self.remember_at_most {
            self.counted.clear();
        }
        self.counted.insert(remembered(key), remembered(uid));
        self.profile
            .observe(&pod.request, &pod.preferences, pod.cpu_milli);
        true
    }

    /// Derives the profile's typical workload from its counts now (after a re-list; see
    /// [`WorkloadProfile::derive_now`]).
    pub fn derive_now(&mut self) {
        self.profile.derive_now();
    }

    /// The pod under `key` is gone: a pod created again under that name counts again.
    pub fn forget(&mut self, key: &str) {
        self.counted.remove(&remembered(key));
    }

    /// After a re-list: forgets every pod whose key the list did not show.
    pub fn retain_listed<'a>(&mut self, listed: impl IntoIterator<Item = &'a str>) {
        let listed: HashSet<u64> = listed.into_iter().map(remembered).collect();
        self.counted.retain(|key, _| listed.contains(key));
    }

    /// Pods remembered as counted.
    pub fn remembered_pods(&self) -> usize {
        self.counted.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decision::{SchedulerSettings, prepare};
    use crate::objects::{GpuAsk, gpu_pod};

    fn prepared(asks: &[GpuAsk]) -> PreparedPod {
        prepare(&gpu_pod("p", &[], asks), &SchedulerSettings::default()).unwrap()
    }

    #[test]
    fn each_pod_counts_once_until_it_is_forgotten() {
        let gpu = prepared(&[GpuAsk::fraction(1000, 10), GpuAsk::fraction(2000, 20)]);
        let mut learned = LearnedWorkload::new();
        assert!(learned.observe("ns/a", "u1", &gpu));
        assert_eq!(learned.profile().observed(), 2, "one per GPU container");
        assert!(learned.has_counted("ns/a", "u1"));
        assert!(!learned.has_counted("ns/a", "u2") && !learned.has_counted("ns/b", "u1"));
        assert!(!learned.observe("ns/a", "u1", &gpu));
        assert!(
            learned.observe("ns/a", "u2", &gpu),
            "a new pod under the old name"
        );
        assert_eq!(learned.profile().observed(), 4);
        assert!(!learned.observe("ns/c", "u3", &prepared(&[GpuAsk::default()])));
        assert_eq!(
            learned.remembered_pods(),
            1,
            "a pod without GPUs is not remembered"
        );
        learned.forget("ns/a");
        assert!(!learned.has_counted("ns/a", "u2"));
        assert!(learned.observe("ns/a", "u2", &gpu));
        assert!(learned.observe("ns/b", "u4", &gpu));
        learned.retain_listed(["ns/b", "ns/x"]);
        assert_eq!(learned.remembered_pods(), 1);
        assert!(learned.has_counted("ns/b", "u4") && !learned.has_counted("ns/a", "u2"));
        assert_eq!(
            learned.profile().observed(),
            8,
            "forgetting a pod keeps what it taught"
        );
    }

    #[test]
    fn the_record_of_counted_pods_is_cleared_when_full() {
        let gpu = prepared(&[GpuAsk::fraction(1000, 10)]);
        let mut learned = LearnedWorkload::remembering(3);
        for i in 0..3 {
            assert!(learned.observe(&format!("ns/{i}"), "u", &gpu));
        }
        assert_eq!(learned.remembered_pods(), 3);
        assert!(learned.observe("ns/3", "u", &gpu));
        assert_eq!(learned.remembered_pods(), 1, "cleared, then the new pod");
        assert!(
            learned.observe("ns/0", "u", &gpu),
            "counted again after the clear"
        );
        assert_eq!(LearnedWorkload::new().remember_at_most, MAX_REMEMBERED_PODS);
        assert_eq!(LearnedWorkload::remembering(0).remember_at_most, 1);
    }
}
