//! Node verdicts of the `fragmentation` policy remembered across decisions, and ranked.
//!
//! A `fragmentation` verdict on a node (its score, or why the pod cannot go there) depends on the
//! pod, the node's devices, usage and cordons, its free CPU and the typical workload, and on nothing
//! else. The memo keeps one [`VerdictTable`] per pod shape and typical workload
//! ([`crate::fragmentation::WorkloadProfile::typical_id`]): each node's verdict with the free CPU it
//! was judged with, and the nodes that fit ranked as the scan ranks them (highest score first, then
//! the smallest name).
//!
//! The placement index ([`crate::index`]) owns the memo and forgets a node's verdicts on every
//! [`crate::index::PlacementIndex::refresh`] of it, which its owner calls after every change of the
//! node's registration or usage, and on [`crate::index::PlacementIndex::forget_verdicts`], which its
//! owner calls after every change of the node's free CPU. Two ways to read a table:
//! - **by node** ([`MemoSession::get`]): a verdict is found only under the free CPU it was judged
//!   with, so it is the one [`crate::fit::evaluate_node_with`] would return even if the owner
//!   missed a change of CPU (the scan over a few nodes reads this way);
//! - **by rank** ([`MemoSession::best`]): once a table holds a verdict for every node of the index
//!   (its first decision judges them all) it stays whole: a forgotten node is judged again at the
//!   table's next decision, and the best-ranked offered node is found without visiting the others
//!   ([`crate::scan::decide_briefly`]). This reading trusts the owner's calls; the chosen node is
//!   judged once more and, should the verdicts ever differ, the memo is forgotten and the decision
//!   taken again without it. Invariant 12 (index coherence) checks every remembered verdict against
//!   the fit on the current view and free CPU ([`crate::scan::stale_verdicts`]).
//!
//! It pays when the typical workload stays the same across decisions: a profile that is derived
//! again after every observation ([`crate::fragmentation::ProfileRefresh::EveryObservation`], the
//! default) gets a new id with every pod it learns, so each decision starts a new table; under
//! [`crate::fragmentation::ProfileRefresh::Drift`] most decisions re-evaluate only the nodes that
//! changed since the same pod shape was last decided.
//!
//! Bounded: at most [`MEMO_PODS`] distinct pods interned (by request, preferences, CPU and score
//! scale; the oldest is forgotten first, with its tables) and [`MEMO_TABLES`] tables (the least
//! recently used goes first), so at most [`MEMO_TABLES`] verdicts per node.

use crate::outcome::PreparedPod;
use crate::rules::NodeRejection;
use crate::score::score_key;
use foldhash::fast::FixedState;
use std::cmp::Reverse;
use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

/// The most distinct pods interned at once.
pub const MEMO_PODS: usize = 64;

/// The most verdict tables (pod shape × typical workload) kept at once.
pub const MEMO_TABLES: usize = 8;

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
    /// True when a decision reads it by rank ([`MemoSession::best`]) whatever the node's free
    /// CPU now: its table is whole.
    pub ranked: bool,
}

/// One node's verdict and the free CPU it was judged with.
#[derive(Debug, Clone)]
struct Slot {
    cpu_free: Option<u64>,
    verdict: Result<f32, NodeRejection>,
}

/// A fitting node's place in a table's ranking: highest score first ([`score_key`] orders as
/// `f32::total_cmp`, as the scan compares), then the smallest name.
type Rank = (Reverse<u32>, Arc<str>);

/// The verdicts of one pod shape under one typical workload.
#[derive(Debug)]
struct VerdictTable {
    pod: u64,
    typical: u64,
    verdicts: HashMap<Arc<str>, Slot, FixedState>,
    ranking: BTreeSet<Rank>,
    /// Every node of the index has a verdict here, or is in `forgotten`.
    whole: bool,
    /// Nodes forgotten since the table became whole, judged again at its next decision.
    forgotten: HashSet<Arc<str>, FixedState>,
    /// When a session last used it (the memo's clock).
    last_used: u64,
}

impl VerdictTable {
    fn new(pod: u64, typical: u64) -> Self {
        VerdictTable {
            pod,
            typical,
            verdicts: HashMap::default(),
            ranking: BTreeSet::new(),
            whole: false,
            forgotten: HashSet::default(),
            last_used: 0,
        }
    }

    /// Removes `node`'s verdict, returning its shared name if it had one.
    fn remove(&mut self, node: &str) -> Option<Arc<str>> {
        let (name, slot) = self.verdicts.remove_entry(node)?;
        if let Ok(score) = slot.verdict {
            self.ranking
                .remove(&(Reverse(score_key(score)), name.clone()));
        }
        Some(name)
    }

    fn insert(&mut self, node: &str, slot: Slot) {
        let name = self.remove(node).unwrap_or_else(|| Arc::from(node));
        if let Ok(score) = slot.verdict {
            self.ranking
                .insert((Reverse(score_key(score)), name.clone()));
        }
        self.verdicts.insert(name, slot);
    }

    /// `node` changed: its verdict goes; a whole table judges it again at its next decision.
    fn forget(&mut self, node: &str) {
        let name = self.remove(node);
        if !self.whole {
            return;
        }
        // Once more nodes wait than are remembered, judging them all again costs no more.
        if self.forgotten.len() > self.verdicts.len() {
            self.whole = false;
            self.forgotten.clear();
            return;
        }
        self.forgotten
            .insert(name.unwrap_or_else(|| Arc::from(node)));
    }
}

#[derive(Debug, Default)]
struct Table {
    /// Interned pods, oldest first, with their ids (never reused).
    pods: VecDeque<(PodKey, u64)>,
    next_pod: u64,
    tables: Vec<VerdictTable>,
    clock: u64,
    /// Verdicts found remembered, and those the fit had to give.
    hits: u64,
    misses: u64,
}

/// `fragmentation` verdicts per pod shape and node, remembered across decisions (see the module
/// documentation). A cache: cloning it gives an empty one.
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
        for verdicts in &mut table.tables {
            verdicts.forget(node);
        }
    }

    /// Forgets everything.
    pub fn clear(&self) {
        *self.lock() = Table::default();
    }

    /// Verdicts remembered, over all nodes.
    pub fn len(&self) -> usize {
        self.lock().tables.iter().map(|t| t.verdicts.len()).sum()
    }

    /// Verdicts found remembered so far, and those the fit had to give (cleared with the memo).
    pub fn hits_and_misses(&self) -> (u64, u64) {
        let table = self.lock();
        (table.hits, table.misses)
    }

    /// True when nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every verdict a later decision can still find, by node name; for the checker that re-judges
    /// them ([`crate::scan::stale_verdicts`]).
    pub(crate) fn reachable(&self) -> Vec<Remembered> {
        let table = self.lock();
        let mut found: Vec<Remembered> = Vec::new();
        for verdicts in &table.tables {
            let Some((key, _)) = table.pods.iter().find(|(_, id)| *id == verdicts.pod) else {
                continue;
            };
            for (node, slot) in &verdicts.verdicts {
                found.push(Remembered {
                    node: node.to_string(),
                    request: key.request.clone(),
                    preferences: key.preferences.clone(),
                    cpu_milli: key.cpu_milli,
                    score_scale_gpus: f64::from_bits(key.score_scale_bits),
                    typical: verdicts.typical,
                    cpu_free: slot.cpu_free,
                    verdict: slot.verdict.clone(),
                    ranked: verdicts.whole,
                });
            }
        }
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
                if table.pods.len() == MEMO_PODS
                    && let Some((_, gone)) = table.pods.pop_front()
                {
                    table.tables.retain(|t| t.pod != gone);
                }
                table.pods.push_back((key, id));
                id
            }
        };
        table.clock += 1;
        let now = table.clock;
        let at = match table
            .tables
            .iter()
            .position(|t| t.pod == pod && t.typical == typical)
        {
            Some(at) => at,
            None => {
                if table.tables.len() >= MEMO_TABLES
                    && let Some(oldest) =
                        (0..table.tables.len()).min_by_key(|&i| table.tables[i].last_used)
                {
                    table.tables.swap_remove(oldest);
                }
                table.tables.push(VerdictTable::new(pod, typical));
                table.tables.len() - 1
            }
        };
        table.tables[at].last_used = now;
        MemoSession {
            table,
            at: Some(at),
        }
    }
}

/// The memo, held for one decision of one pod.
#[derive(Debug)]
pub(crate) struct MemoSession<'a> {
    table: MutexGuard<'a, Table>,
    /// This pod's table (none once the memo was cleared).
    at: Option<usize>,
}

impl MemoSession<'_> {
    fn verdicts(&self) -> Option<&VerdictTable> {
        self.at.map(|at| &self.table.tables[at])
    }

    fn verdicts_mut(&mut self) -> Option<&mut VerdictTable> {
        let at = self.at?;
        Some(&mut self.table.tables[at])
    }

    /// The verdict remembered for this pod on `node` with `cpu_free`, if any.
    pub(crate) fn get(
        &mut self,
        node: &str,
        cpu_free: Option<u64>,
    ) -> Option<Result<f32, NodeRejection>> {
        let found = self.verdicts().and_then(|t| {
            t.verdicts
                .get(node)
                .filter(|slot| slot.cpu_free == cpu_free)
                .map(|slot| slot.verdict.clone())
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
        if let Some(table) = self.verdicts_mut() {
            table.insert(node, Slot { cpu_free, verdict });
        }
    }

    /// True when this pod's table holds a verdict for every node of the index but those
    /// [`MemoSession::take_forgotten`] returns.
    pub(crate) fn is_whole(&self) -> bool {
        self.verdicts().is_some_and(|t| t.whole)
    }

    /// Every node of the index has been judged ([`MemoSession::put`]) since the table was made or
    /// last stopped being whole.
    pub(crate) fn mark_whole(&mut self) {
        if let Some(table) = self.verdicts_mut() {
            table.whole = true;
            table.forgotten.clear();
        }
    }

    /// The nodes forgotten since this pod's table was whole, to judge again (in no particular
    /// order).
    pub(crate) fn take_forgotten(&mut self) -> Vec<Arc<str>> {
        self.verdicts_mut()
            .map(|t| t.forgotten.drain().collect())
            .unwrap_or_default()
    }

    /// Counts the verdicts of this pod's table but `judged` as found remembered (a decision by
    /// rank relied on them all).
    pub(crate) fn count_ranked(&mut self, judged: usize) {
        let held = self.verdicts().map_or(0, |t| t.verdicts.len());
        self.table.hits += held.saturating_sub(judged) as u64;
    }

    /// The best-ranked fitting node that `accept` takes (highest score, then the smallest name),
    /// with its score and the free CPU it was judged with.
    pub(crate) fn best(
        &self,
        mut accept: impl FnMut(&str) -> bool,
    ) -> Option<(Arc<str>, f32, Option<u64>)> {
        let table = self.verdicts()?;
        table.ranking.iter().find_map(|(_, name)| {
            if !accept(name) {
                return None;
            }
            let slot = table.verdicts.get(name)?;
            let score = *slot.verdict.as_ref().ok()?;
            Some((name.clone(), score, slot.cpu_free))
        })
    }

    /// Forgets everything (a verdict read by rank did not hold); the session remembers nothing
    /// more.
    pub(crate) fn clear(&mut self) {
        *self.table = Table::default();
        self.at = None;
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

    /// The ranking: highest score first, then the smallest name; rejected nodes are not ranked; a
    /// verdict put again moves; `accept` skips nodes.
    #[test]
    fn the_best_node_is_the_highest_score_then_the_smallest_name() {
        let memo = ScoreMemo::default();
        let p = pod(30);
        let mut s = memo.session(&p, 0, 4.0, 1);
        assert_eq!(s.best(|_| true), None, "nothing remembered");
        s.put("c", Some(1), Ok(5.0));
        s.put("b", Some(2), Ok(7.0));
        s.put("a", None, Ok(5.0));
        s.put("z", None, Err(NodeRejection::NodeInsufficientDevice));
        let best = |s: &MemoSession<'_>, skip: &[&str]| {
            s.best(|n| !skip.contains(&n))
                .map(|(n, score, cpu)| (n.to_string(), score, cpu))
        };
        assert_eq!(best(&s, &[]), Some(("b".into(), 7.0, Some(2))));
        assert_eq!(best(&s, &["b"]), Some(("a".into(), 5.0, None)), "a tie");
        assert_eq!(best(&s, &["b", "a"]), Some(("c".into(), 5.0, Some(1))));
        assert_eq!(best(&s, &["a", "b", "c"]), None, "z does not fit");
        s.put("b", Some(2), Ok(1.0));
        assert_eq!(best(&s, &[]), Some(("a".into(), 5.0, None)), "b moved down");
        s.put("a", None, Err(NodeRejection::Unregistered));
        assert_eq!(best(&s, &["c"]), Some(("b".into(), 1.0, Some(2))));
        assert_eq!(memo_len(&s), 4);
        s.clear();
        assert_eq!(best(&s, &[]), None, "cleared");
        s.put("a", None, Ok(1.0));
        assert_eq!(
            best(&s, &[]),
            None,
            "a cleared session remembers nothing more"
        );
        drop(s);
        assert!(memo.is_empty());
    }

    fn memo_len(s: &MemoSession<'_>) -> usize {
        s.verdicts().map_or(0, |t| t.verdicts.len())
    }

    /// A whole table lists the nodes forgotten since (each once, a new node too) and stays whole;
    /// one that is not whole lists none; one with more nodes forgotten than remembered stops being
    /// whole.
    #[test]
    fn a_whole_table_lists_what_it_forgot() {
        let mut memo = ScoreMemo::default();
        let p = pod(30);
        {
            let mut s = memo.session(&p, 0, 4.0, 1);
            for n in ["a", "b", "c"] {
                s.put(n, None, Ok(1.0));
            }
            assert!(!s.is_whole());
        }
        memo.forget_node("a");
        {
            let mut s = memo.session(&p, 0, 4.0, 1);
            assert!(!s.is_whole());
            assert!(s.take_forgotten().is_empty(), "not whole: nothing listed");
            s.put("a", None, Ok(2.0));
            s.mark_whole();
            assert!(s.is_whole());
        }
        memo.forget_node("a");
        memo.forget_node("a");
        memo.forget_node("new");
        {
            let mut s = memo.session(&p, 0, 4.0, 1);
            assert!(s.is_whole());
            let mut forgotten: Vec<String> =
                s.take_forgotten().iter().map(|n| n.to_string()).collect();
            forgotten.sort();
            assert_eq!(forgotten, ["a", "new"]);
            assert!(s.take_forgotten().is_empty(), "taken");
            assert_eq!(s.get("a", None), None, "its verdict went");
            assert_eq!(
                s.best(|_| true).map(|(n, ..)| n.to_string()),
                Some("b".into())
            );
            s.count_ranked(0);
        }
        assert_eq!(memo.hits_and_misses(), (2, 1), "two remembered, a missed");
        // More nodes waiting than remembered: judging them all again costs no more.
        memo.session(&p, 0, 4.0, 1).put("a", None, Ok(2.0));
        memo.forget_node("a");
        memo.forget_node("b");
        assert!(
            memo.session(&p, 0, 4.0, 1).is_whole(),
            "a and b wait, as many as c remembered"
        );
        memo.forget_node("c");
        let mut s = memo.session(&p, 0, 4.0, 1);
        assert!(!s.is_whole(), "three wait, none remembered");
        assert!(s.take_forgotten().is_empty());
    }

    /// At most `MEMO_TABLES` tables (the least recently used goes) and `MEMO_PODS` pods (the
    /// oldest is forgotten with its tables, and its verdicts are never found again).
    #[test]
    fn the_memo_stays_bounded() {
        let memo = ScoreMemo::default();
        let first = pod(1);
        for typical in 1..=MEMO_TABLES as u64 {
            memo.session(&first, 0, 4.0, typical)
                .put("n", None, Ok(typical as f32));
        }
        assert_eq!(memo.len(), MEMO_TABLES);
        // Table 1 used again: table 2 is now the least recently used.
        assert_eq!(
            memo.session(&first, 0, 4.0, 1).get("n", None),
            Some(Ok(1.0))
        );
        memo.session(&first, 0, 4.0, 99).put("n", None, Ok(99.0));
        assert_eq!(memo.len(), MEMO_TABLES);
        assert_eq!(
            memo.session(&first, 0, 4.0, 2).get("n", None),
            None,
            "2 went"
        );
        assert_eq!(
            memo.session(&first, 0, 4.0, 1).get("n", None),
            Some(Ok(1.0))
        );
        assert_eq!(
            memo.session(&first, 0, 4.0, 99).get("n", None),
            Some(Ok(99.0))
        );
        // Putting the same key again replaces its verdict.
        memo.session(&first, 0, 4.0, 99).put("n", None, Ok(98.0));
        assert_eq!(
            memo.session(&first, 0, 4.0, 99).get("n", None),
            Some(Ok(98.0))
        );
        // Up to MEMO_PODS - 1 other pods later (the first one's table used in between, so that
        // it stays among the recent tables), the first pod is still known ...
        for cpu in 1..MEMO_PODS as u64 {
            memo.session(&first, cpu, 4.0, 99);
            memo.session(&first, 0, 4.0, 99);
        }
        assert_eq!(
            memo.session(&first, 0, 4.0, 99).get("n", None),
            Some(Ok(98.0))
        );
        assert!(
            memo.reachable()
                .iter()
                .any(|r| r.typical == 99 && r.cpu_milli == 0)
        );
        // ... MEMO_PODS other pods later, it is a new pod: its verdicts are not found.
        for cpu in 1..=MEMO_PODS as u64 {
            memo.session(&first, cpu, 4.0, 99);
            if cpu < MEMO_PODS as u64 {
                memo.session(&first, 0, 4.0, 99);
            }
        }
        assert!(
            memo.reachable().iter().all(|r| r.cpu_milli != 0),
            "its tables went"
        );
        assert_eq!(memo.session(&first, 0, 4.0, 99).get("n", None), None);
    }
}
