//! The placement index decides exactly as the plain scan: over generated fleets, existing
//! allocations and sequences of placements, deletions and status changes, every placement is decided
//! both by `sliceguard_core::scan::decide` (every offered node evaluated, HAMi's approach) and by
//! `sliceguard_core::index::PlacementIndex::decide`, with the whole fleet offered and with a subset.
//!
//! Agreement means: the same outcome (node, score, devices per container, or unschedulable), the
//! same annotations and labels, and when nothing fits the same reason for every node and the same
//! `FilteringFailed` events. One index is rebuilt before every decision; a second is kept by
//! refreshing only the nodes whose usage changed, as the service keeps it.
//!
//! The run also counts both kinds of decision and fails if either "fits somewhere" or "fits
//! nowhere" is rare, so a generator change cannot quietly leave one side untested.

use proptest::test_runner::{TestCaseError, TestRunner};
use sliceguard_core::decision::{Decision, Outcome, Verdict, prepare};
use sliceguard_core::index::{PlacementIndex, applies};
use sliceguard_invariants::scenario::strategies::scenario;
use sliceguard_invariants::scenario::{Step, World, start_time};
use sliceguard_invariants::{proptest_config, regression_file};
use std::cell::Cell;
use std::collections::BTreeMap;

fn compare(scan: &Decision, indexed: &Decision, what: &str) -> Result<(), TestCaseError> {
    let fail = |detail: String| Err(TestCaseError::fail(format!("{what}: {detail}")));
    if scan.outcome != indexed.outcome {
        return fail(format!(
            "outcome differs\nscan:  {:?}\nindex: {:?}",
            scan.outcome, indexed.outcome
        ));
    }
    if scan.annotations != indexed.annotations || scan.labels != indexed.labels {
        return fail(format!(
            "annotations differ\nscan:  {:?}\nindex: {:?}",
            scan.annotations, indexed.annotations
        ));
    }
    match &scan.outcome {
        Outcome::Scheduled { node, score, .. } => {
            let expected = BTreeMap::from([(node.clone(), Verdict::Score(*score))]);
            if indexed.verdicts != expected || scan.verdicts.get(node) != expected.get(node) {
                return fail(format!("winner verdict differs: {:?}", indexed.verdicts));
            }
        }
        Outcome::Unschedulable => {
            if scan.verdicts != indexed.verdicts {
                return fail(format!(
                    "reasons differ\nscan:  {:?}\nindex: {:?}",
                    scan.verdicts, indexed.verdicts
                ));
            }
            if scan.events != indexed.events {
                return fail(format!(
                    "events differ\nscan:  {:?}\nindex: {:?}",
                    scan.events, indexed.events
                ));
            }
        }
        _ => {}
    }
    Ok(())
}

#[test]
fn index_decides_as_the_plain_scan() {
    let config = proptest_config(1500, regression_file!("index_agrees_with_scan"));
    let cases = config.cases as usize;
    let mut runner = TestRunner::new(config);
    let fits = Cell::new(0usize);
    let fits_nowhere = Cell::new(0usize);
    let result = runner.run(&scenario(5, 12), |scenario| {
        let Ok(mut world) = World::new(&scenario) else {
            return Ok(());
        };
        let mut kept = PlacementIndex::build(&world.registry, &world.ledger);
        let mut now = start_time();
        for step in &scenario.steps {
            if let Step::Place(plan) = step {
                let pod = plan.to_pod(&world.next_pod_name());
                if let Ok(prepared) = prepare(&pod, &world.settings) {
                    let fresh = PlacementIndex::build(&world.registry, &world.ledger);
                    let subset: Vec<String> = world.offered.iter().step_by(2).cloned().collect();
                    for offered in [&world.offered, &subset] {
                        let scan = sliceguard_core::scan::decide(
                            &world.registry,
                            &world.ledger,
                            &prepared,
                            offered,
                            now,
                            Default::default(),
                        );
                        for (label, index) in [("fresh index", &fresh), ("kept index", &kept)] {
                            let indexed = index.decide(&world.registry, &prepared, offered, now);
                            match indexed {
                                Some(indexed) => compare(&scan, &indexed, label)?,
                                None if applies(&prepared) => {
                                    return Err(TestCaseError::fail(format!(
                                        "{label} declined a pod it applies to"
                                    )));
                                }
                                None => {}
                            }
                        }
                        if applies(&prepared) && offered.len() == world.offered.len() {
                            match scan.outcome {
                                Outcome::Scheduled { .. } => fits.set(fits.get() + 1),
                                Outcome::Unschedulable => fits_nowhere.set(fits_nowhere.get() + 1),
                                _ => {}
                            }
                        }
                    }
                }
            }
            world
                .apply_refreshing(step, now, &mut kept)
                .map_err(|e| TestCaseError::fail(format!("step {step:?}: {e}")))?;
            now = now
                .checked_add(jiff::SignedDuration::from_secs(1))
                .unwrap_or(now);
        }
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
    let (fits, nowhere) = (fits.get(), fits_nowhere.get());
    let total = fits + nowhere;
    println!("decisions compared: {total} ({fits} fit somewhere, {nowhere} fit nowhere)");
    assert!(
        total >= cases,
        "only {total} decisions over {cases} scenarios"
    );
    assert!(
        fits * 5 >= total && nowhere * 5 >= total,
        "coverage: {fits} fit somewhere and {nowhere} fit nowhere of {total}; each must be at least 20%"
    );
}
