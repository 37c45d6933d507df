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
#[derive(Debug, Clone, Default)]
pub struct LearnedWorkload {
    profile: WorkloadProfile,
    /// Hash of the pod key → hash of the UID it was counted with.
    counted: HashMap<u64, u64, FixedState>,
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
        if self.counted.len() >= MAX_REMEMBERED_PODS {
            self.counted.clear();
        }
        self.counted.insert(remembered(key), remembered(uid));
        self.profile
            .observe(&pod.request, &pod.preferences, pod.cpu_milli);
        true
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
