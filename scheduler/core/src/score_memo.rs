//! Node verdicts of the `fragmentation` policy remembered across decisions.
//!
//! A `fragmentation` verdict on a node (its score, or why the pod cannot go there) depends on the
//! pod, the node's devices, usage and cordons, its free CPU and the typical workload, and on nothing
//! else. The placement index ([`crate::index`]) owns a [`ScoreMemo`] and forgets a node's verdicts on
//! every [`crate::index::PlacementIndex::refresh`] of it, which its owner calls after every change of
//! the node; the pod, the free CPU and the typical workload
//! ([`crate::fragmentation::WorkloadProfile::typical_id`]) are part of each remembered verdict's key.
//! A verdict found here is therefore the one [`crate::fit::evaluate_node_with`] would return, and a
//! decision that uses the memo is the decision without it ([`crate::scan`] checks the chosen node
//! once more and, should they ever differ, forgets everything and decides again without it).
//!
//! It pays when the typical workload stays the same across decisions: a profile that is derived
//! again after every observation ([`crate::fragmentation::ProfileRefresh::EveryObservation`], the
//! default) gets a new id with every pod it learns, so each decision misses; under
//! [`crate::fragmentation::ProfileRefresh::Drift`] most decisions re-evaluate only the nodes that
//! changed since the same pod shape was last decided.
//!
//! Bounded: at most [`MEMO_PODS`] distinct pods (by request, preferences, CPU and score scale; the
//! oldest is forgotten first) and [`MEMO_ROWS_PER_NODE`] verdicts per node.

use crate::outcome::PreparedPod;
use crate::rules::NodeRejection;
use foldhash::fast::FixedState;
use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, MutexGuard, PoisonError};

/// The most distinct pods remembered at once.
pub const MEMO_PODS: usize = 64;

/// The most verdicts remembered per node (the oldest is forgotten first).
pub const MEMO_ROWS_PER_NODE: usize = 8;

/// What makes two pods get the same verdict on the same node under the same typical workload.
#[derive(Debug, Clone, PartialEq)]
struct PodKey {
    request: crate::request::PodRequest,
    preferences: crate::policy::PodPreferences,
    cpu_milli: u64,
    score_scale_bits: u64,
}

/// A remembered verdict with its whole key, as [`ScoreMemo::reachable`] lists it.
#[derive(Debug, Clone)]
pub(crate) struct Remembered {
    pub node: String,
    pub request: crate::request::PodRequest,
    pub preferences: crate::policy::PodPreferences,
    pub cpu_milli: u64,
    pub score_scale_gpus: f64,
    /// The typical workload's id (0: the pod's own containers).
    pub typical: u64,
    pub cpu_free: Option<u64>,
    pub verdict: Result<f32, NodeRejection>,
}

/// One remembered verdict.
#[derive(Debug, Clone)]
struct Row {
    pod: u64,
    typical: u64,
    cpu_free: Option<u64>,
    verdict: Result<f32, NodeRejection>,
}

#[derive(Debug, Default)]
struct Table {
    /// Interned pods, oldest first, with their ids (never reused).
    pods: VecDeque<(PodKey, u64)>,
    next_pod: u64,
    nodes: HashMap<Box<str>, Vec<Row>, FixedState>,
    /// Lookups that found a verdict, and those that did not.
    hits: u64,
    misses: u64,
}

/// `fragmentation` verdicts per node, remembered across decisions (see the module documentation).
/// A cache: cloning it gives an empty one.
#[derive(Debug, Default)]
pub struct ScoreMemo {
    table: Mutex<Table>,
}

impl Clone for ScoreMemo {
    fn clone(&self) -> Self {
        ScoreMemo::default()
    }
}

impl ScoreMemo {
    /// Forgets every verdict on `node`: call after any change of the node.
    pub fn forget_node(&mut self, node: &str) {
        let table = self.table.get_mut().unwrap_or_else(PoisonError::into_inner);
        table.nodes.remove(node);
    }

    /// Forgets everything.
    pub fn clear(&self) {
        *self.lock() = Table::default();
    }

    /// Verdicts remembered, over all nodes.
    pub fn len(&self) -> usize {
        self.lock().nodes.values().map(Vec::len).sum()
    }

    /// Lookups so far that found a verdict, and those that did not (cleared with the memo).
    pub fn hits_and_misses(&self) -> (u64, u64) {
        let table = self.lock();
        (table.hits, table.misses)
    }

    /// True when nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every verdict a later decision can still find (those of pods no longer interned cannot be),
    /// by node name; for the checker that re-judges them ([`crate::scan::stale_verdicts`]).
    pub(crate) fn reachable(&self) -> Vec<Remembered> {
        let table = self.lock();
        let mut found: Vec<Remembered> = table
            .nodes
            .iter()
            .flat_map(|(node, rows)| {
                let pods = &table.pods;
                rows.iter().filter_map(move |row| {
                    let (key, _) = pods.iter().find(|(_, id)| *id == row.pod)?;
                    Some(Remembered {
                        node: node.to_string(),
                        request: key.request.clone(),
                        preferences: key.preferences.clone(),
                        cpu_milli: key.cpu_milli,
                        score_scale_gpus: f64::from_bits(key.score_scale_bits),
                        typical: row.typical,
                        cpu_free: row.cpu_free,
                        verdict: row.verdict.clone(),
                    })
                })
            })
            .collect();
        found.sort_by(|a, b| a.node.cmp(&b.node));
        found
    }

    fn lock(&self) -> MutexGuard<'_, Table> {
        // A panic while the table was held can only have left a row half-written: start afresh.
        self.table.lock().unwrap_or_else(|poisoned| {
            let mut table = poisoned.into_inner();
            *table = Table::default();
            self.table.clear_poison();
            table
        })
    }

    /// The memo for one decision of `pod` (with CPU `cpu_milli` and score scale `score_scale`)
    /// under the typical workload `typical` (a profile's id, or 0 for the pod's own containers):
    /// holds the memo until it is dropped.
    pub(crate) fn session(
        &self,
        pod: &PreparedPod,
        cpu_milli: u64,
        score_scale: f64,
        typical: u64,
    ) -> MemoSession<'_> {
        let mut table = self.lock();
        let key = PodKey {
            request: pod.request.clone(),
            preferences: pod.preferences.clone(),
            cpu_milli,
            score_scale_bits: score_scale.to_bits(),
        };
        let pod = match table.pods.iter().find(|(k, _)| *k == key) {
            Some((_, id)) => *id,
            None => {
                let id = table.next_pod;
                table.next_pod += 1;
                if table.pods.len() == MEMO_PODS {
                    table.pods.pop_front();
                }
                table.pods.push_back((key, id));
                id
            }
        };
        MemoSession {
            table,
            pod,
            typical,
        }
    }
}

/// The memo, held for one decision of one pod.
#[derive(Debug)]
pub(crate) struct MemoSession<'a> {
    table: MutexGuard<'a, Table>,
    pod: u64,
    typical: u64,
}

impl MemoSession<'_> {
    /// The verdict remembered for this pod on `node` with `cpu_free`, if any.
    pub(crate) fn get(
        &mut self,
        node: &str,
        cpu_free: Option<u64>,
    ) -> Option<Result<f32, NodeRejection>> {
        let (pod, typical) = (self.pod, self.typical);
        let found = self.table.nodes.get(node).and_then(|rows| {
            rows.iter().find_map(|row| {
                (row.pod == pod && row.typical == typical && row.cpu_free == cpu_free)
                    .then(|| row.verdict.clone())
            })
        });
        match found {
            Some(_) => self.table.hits += 1,
            None => self.table.misses += 1,
        }
        found
    }

    /// Remembers the verdict for this pod on `node` with `cpu_free`.
    pub(crate) fn put(
        &mut self,
        node: &str,
        cpu_free: Option<u64>,
        verdict: Result<f32, NodeRejection>,
    ) {
        let (pod, typical) = (self.pod, self.typical);
        let rows = match self.table.nodes.get_mut(node) {
            Some(rows) => rows,
            None => self.table.nodes.entry(node.into()).or_default(),
        };
        rows.retain(|row| !(row.pod == pod && row.typical == typical && row.cpu_free == cpu_free));
        if rows.len() >= MEMO_ROWS_PER_NODE {
            rows.remove(0);
        }
        rows.push(Row {
            pod,
            typical,
            cpu_free,
            verdict,
        });
    }

    /// Forgets everything (the chosen node's verdict did not hold).
    pub(crate) fn clear(&mut self) {
        *self.table = Table::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decision::{SchedulerSettings, prepare};
    use crate::objects::{GpuAsk, gpu_pod};

    fn pod(percent: u32) -> PreparedPod {
        let ask = GpuAsk::fraction(1000, percent);
        prepare(&gpu_pod("p", &[], &[ask]), &SchedulerSettings::default()).unwrap()
    }

    /// A verdict is found only under the key it was put with: the same pod (whatever its name),
    /// typical workload and free CPU on the same node.
    #[test]
    fn a_verdict_is_found_under_its_own_key_only() {
        let mut memo = ScoreMemo::default();
        let (a, b) = (pod(30), pod(40));
        {
            let mut s = memo.session(&a, 1000, 4.0, 7);
            assert_eq!(s.get("n1", Some(8000)), None);
            s.put("n1", Some(8000), Ok(53.0));
            s.put("n2", None, Err(NodeRejection::NodeInsufficientDevice));
            assert_eq!(s.get("n1", Some(8000)), Some(Ok(53.0)));
            assert_eq!(s.get("n1", Some(4000)), None, "other free CPU");
            assert_eq!(
                s.get("n2", None),
                Some(Err(NodeRejection::NodeInsufficientDevice))
            );
        }
        let renamed = PreparedPod {
            name: "q".into(),
            ..a.clone()
        };
        assert_eq!(
            memo.session(&renamed, 1000, 4.0, 7).get("n1", Some(8000)),
            Some(Ok(53.0))
        );
        for (p, cpu, scale, typical) in [
            (&b, 1000, 4.0, 7),
            (&a, 2000, 4.0, 7),
            (&a, 1000, 1.0, 7),
            (&a, 1000, 4.0, 8),
        ] {
            assert_eq!(
                memo.session(p, cpu, scale, typical).get("n1", Some(8000)),
                None
            );
        }
        assert_eq!(memo.hits_and_misses(), (3, 6));
        assert_eq!(memo.len(), 2);
        assert!(!memo.is_empty());
        memo.forget_node("n1");
        assert_eq!(memo.session(&a, 1000, 4.0, 7).get("n1", Some(8000)), None);
        assert_eq!(memo.len(), 1);
        assert!(memo.clone().is_empty(), "a clone starts empty");
        memo.clear();
        assert!(memo.is_empty());
    }

    /// At most `MEMO_ROWS_PER_NODE` verdicts per node (the oldest goes) and `MEMO_PODS` pods (the
    /// oldest is forgotten, and its verdicts are never found again).
    #[test]
    fn the_memo_stays_bounded() {
        let memo = ScoreMemo::default();
        let first = pod(1);
        memo.session(&first, 0, 4.0, 1).put("n", None, Ok(1.0));
        for typical in 2..=MEMO_ROWS_PER_NODE as u64 {
            memo.session(&first, 0, 4.0, typical)
                .put("n", None, Ok(typical as f32));
        }
        assert_eq!(memo.len(), MEMO_ROWS_PER_NODE);
        memo.session(&first, 0, 4.0, 99).put("n", None, Ok(99.0));
        assert_eq!(memo.len(), MEMO_ROWS_PER_NODE);
        assert_eq!(
            memo.session(&first, 0, 4.0, 1).get("n", None),
            None,
            "the oldest went"
        );
        assert_eq!(
            memo.session(&first, 0, 4.0, 99).get("n", None),
            Some(Ok(99.0))
        );
        // Putting the same key again replaces its verdict.
        memo.session(&first, 0, 4.0, 99).put("n", None, Ok(98.0));
        assert_eq!(memo.len(), MEMO_ROWS_PER_NODE);
        assert_eq!(
            memo.session(&first, 0, 4.0, 99).get("n", None),
            Some(Ok(98.0))
        );
        // Up to MEMO_PODS - 1 other pods later, the first pod is still known ...
        for cpu in 1..MEMO_PODS as u64 {
            memo.session(&first, cpu, 4.0, 99);
        }
        assert_eq!(
            memo.session(&first, 0, 4.0, 99).get("n", None),
            Some(Ok(98.0))
        );
        // ... MEMO_PODS other pods later, it is a new pod: its verdicts are not found.
        for cpu in 1..=MEMO_PODS as u64 {
            memo.session(&first, cpu, 4.0, 99);
        }
        assert_eq!(memo.session(&first, 0, 4.0, 99).get("n", None), None);
    }
}
