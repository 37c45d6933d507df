//! The `fragmentation` verdicts the placement index remembers across decisions
//! (`sliceguard_core::score_memo`) change no decision: over generated fleets, existing allocations
//! and sequences of placements, deletions and status changes, every pod placed is also decided under
//! the `fragmentation` policy, and so are the last few pods again (so that most nodes are
//! remembered and the ones the steps changed are not), each both by the plain scan without a memo
//! and through `decision::decide` with an index kept as the service keeps it (refreshed for the
//! nodes whose usage changed). The typical workload is learned as it goes, derived again only on
//! drift, so it sometimes stays and sometimes changes between decisions; nodes' free CPU changes
//! every few steps (the index told, as `serve`'s view tells it) and pods ask for CPU it can refuse. Agreement means the whole decision: outcome, every verdict, annotations, labels
//! and events. The brief answer the service gives from 64 offered nodes up
//! (`scan::decide_briefly`) is checked against the same full decision: the same node, devices,
//! score and annotations, with only the chosen node's verdict.
//!
//! The run counts the memo's hits and misses and fails if either is rare, so a generator change
//! cannot quietly leave the memo unused (or never missing).

use proptest::test_runner::{TestCaseError, TestRunner};
use sliceguard_core::annotations::GPU_SCHEDULER_POLICY;
use sliceguard_core::decision::{self, Decision, Fleet, Outcome, PreparedPod, Verdict, prepare};
use sliceguard_core::fragmentation::{
    FragmentationInputs, HostResources, HostSource, ProfileRefresh, WorkloadProfile,
};
use sliceguard_core::index::PlacementIndex;
use sliceguard_core::objects::with_annotations;
use sliceguard_core::scan;
use sliceguard_invariants::scenario::strategies::scenario;
use sliceguard_invariants::scenario::{Step, World, start_time};
use sliceguard_invariants::{proptest_config, regression_file};
use std::cell::Cell;
use std::collections::BTreeMap;

/// Every node's CPU: 64 cores, of which a share that changes every fourth step is requested.
#[derive(Debug)]
struct Hosts {
    step: usize,
}

impl HostSource for Hosts {
    fn host(&self, node: &str) -> Option<HostResources> {
        let salt = node.bytes().map(u64::from).sum::<u64>() + (self.step / 4) as u64;
        Some(HostResources {
            cpu_capacity_milli: 64_000,
            cpu_requested_milli: 16_000 * (salt % 5),
        })
    }
}

/// The brief answer ([`scan::decide_briefly`]) against the full one: for a pod that fits, the same
/// outcome, annotations and labels, and the chosen node's verdict alone; none otherwise.
fn check_brief(full: &Decision, brief: Option<&Decision>) -> Result<(), String> {
    match (&full.outcome, brief) {
        (Outcome::Scheduled { node, score, .. }, Some(brief)) => {
            let only = BTreeMap::from([(node.clone(), Verdict::Score(*score))]);
            if brief.outcome != full.outcome
                || brief.annotations != full.annotations
                || brief.labels != full.labels
                || brief.verdicts != only
            {
                return Err(format!(
                    "the brief answer differs\nfull:  {full:?}\nbrief: {brief:?}"
                ));
            }
            Ok(())
        }
        (Outcome::Scheduled { .. }, None) => Err("no brief answer for a pod that fits".into()),
        (_, Some(brief)) => Err(format!(
            "a brief answer for a pod that fits nowhere: {brief:?}"
        )),
        (_, None) => Ok(()),
    }
}

/// How many earlier pods are decided again at each placement.
const AGAIN: usize = 3;

#[test]
fn remembered_verdicts_change_no_decision() {
    let config = proptest_config(600, regression_file!("score_memo_changes_no_decision"));
    // At least one decision compared per case on average (PROPTEST_CASES may lower the count).
    let least_compared = config.cases as usize;
    let mut runner = TestRunner::new(config);
    let (hits, misses) = (Cell::new(0u64), Cell::new(0u64));
    let compared = Cell::new(0usize);
    let result = runner.run(&scenario(5, 12), |scenario| {
        let Ok(mut world) = World::new(&scenario) else {
            return Ok(());
        };
        let mut kept = PlacementIndex::build(&world.registry, &world.ledger);
        let mut profile = WorkloadProfile::default().refreshing(ProfileRefresh::Drift(1));
        let mut recent: Vec<PreparedPod> = Vec::new();
        let mut now = start_time();
        for (at, step) in scenario.steps.iter().enumerate() {
            if at > 0 && at % 4 == 0 {
                // Every node's free CPU changes now: the index is told, as its owner tells it.
                let names: Vec<String> = world.registry.nodes().map(|n| n.name.clone()).collect();
                for name in &names {
                    kept.forget_verdicts(name);
                }
            }
            if let Step::Place(plan) = step {
                let pod = with_annotations(
                    plan.to_pod(&world.next_pod_name()),
                    &[(GPU_SCHEDULER_POLICY, "fragmentation")],
                );
                if let Ok(mut prepared) = prepare(&pod, &world.settings) {
                    // CPU the nodes' free CPU can refuse: 0 to 48 cores.
                    prepared.cpu_milli = 16_000 * (at as u64 % 4);
                    profile.observe(&prepared.request, &prepared.preferences, prepared.cpu_milli);
                    recent.push(prepared);
                    if recent.len() > AGAIN + 1 {
                        recent.remove(0);
                    }
                }
                let hosts = Hosts { step: at };
                for prepared in recent.iter().rev() {
                    let inputs = FragmentationInputs {
                        profile: Some(&profile),
                        hosts: Some(&hosts),
                        pod_cpu_milli: prepared.cpu_milli,
                        ..FragmentationInputs::default()
                    };
                    let plain = sliceguard_core::scan::decide(
                        &world.registry,
                        &world.ledger,
                        prepared,
                        &world.offered,
                        now,
                        inputs,
                    );
                    let remembered = decision::decide(
                        Fleet::indexed(&world.registry, &world.ledger, &kept),
                        prepared,
                        &world.offered,
                        now,
                        inputs,
                    );
                    if plain != remembered {
                        return Err(TestCaseError::fail(format!(
                            "step {at}, pod {}: the memo changed the decision\n\
                             without: {plain:?}\nwith:    {remembered:?}",
                            prepared.name
                        )));
                    }
                    let brief = scan::decide_briefly(
                        Fleet::indexed(&world.registry, &world.ledger, &kept),
                        prepared,
                        &world.offered,
                        now,
                        inputs,
                    );
                    check_brief(&plain, brief.as_ref()).map_err(|e| {
                        TestCaseError::fail(format!("step {at}, pod {}: {e}", prepared.name))
                    })?;
                    compared.set(compared.get() + 1);
                }
            }
            world
                .apply_refreshing(step, now, &mut kept)
                .map_err(|e| TestCaseError::fail(format!("step {step:?}: {e}")))?;
            // The checkers the simulated world runs find nothing when every change refreshes.
            let fleet = Fleet::indexed(&world.registry, &world.ledger, &kept);
            let hosts = Hosts { step: at };
            if let Some(stale) = scan::stale_verdicts(fleet, Some(&profile), Some(&hosts)).first() {
                return Err(TestCaseError::fail(format!("after step {at}: {stale}")));
            }
            let lagging = kept.lagging_nodes(&world.registry, &world.ledger);
            if !lagging.is_empty() {
                return Err(TestCaseError::fail(format!(
                    "after step {at}: the index lags on {lagging:?}"
                )));
            }
            now = now
                .checked_add(jiff::SignedDuration::from_secs(1))
                .unwrap_or(now);
        }
        let (h, m) = kept.score_memo().hits_and_misses();
        hits.set(hits.get() + h);
        misses.set(misses.get() + m);
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
    let (hits, misses, compared) = (hits.get(), misses.get(), compared.get());
    println!("decisions compared: {compared}; memo lookups: {hits} hits, {misses} misses");
    assert!(
        compared >= least_compared,
        "only {compared} decisions compared in {least_compared} cases"
    );
    let lookups = hits + misses;
    assert!(
        hits * 5 >= lookups && misses * 5 >= lookups,
        "coverage: {hits} hits and {misses} misses of {lookups} lookups; each must be at least 20%"
    );
}
