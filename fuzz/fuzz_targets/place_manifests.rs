//! Fuzz target `place_manifests`: any text through `place`'s manifest decoder
//! (`sliceguard_core::wire::manifest`: YAML, JSON, `List`s, several documents; typing; workload
//! expansion). Beyond "no panic": every object has its kind and a label naming its document and
//! reads back from its JSON; errors name a document or a field; `pods` gives one pod per Pod and
//! each workload's replica count.
//!
//! The check is `sliceguard_invariants::fuzz_checks::place_manifests`, shared with
//! `invariants/tests/fuzz_corpus_replay.rs`, which replays `fuzz/seeds/place_manifests/` and
//! `fuzz/regressions/place_manifests/` on every test run.

#![no_main]

use libfuzzer_sys::fuzz_target;
use sliceguard_invariants::fuzz_checks::place_manifests;
use sliceguard_invariants::violation::report;

fuzz_target!(|data: &[u8]| {
    let violations = place_manifests(data);
    assert!(violations.is_empty(), "{}", report(&violations));
});
