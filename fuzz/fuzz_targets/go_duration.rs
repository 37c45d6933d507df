//! Fuzz target `go_duration`: any text through Go's duration syntax
//! (`sliceguard_core::codec::go_duration`). Beyond "no panic": what parses formats and parses back,
//! and accept/reject and the value equal an independent reading of Go's `ParseDuration` grammar.
//!
//! The check is `sliceguard_invariants::fuzz_checks::go_duration`, shared with
//! `invariants/tests/fuzz_corpus_replay.rs`, which replays `fuzz/seeds/go_duration/` and
//! `fuzz/regressions/go_duration/` on every test run.

#![no_main]

use libfuzzer_sys::fuzz_target;
use sliceguard_invariants::fuzz_checks::go_duration;
use sliceguard_invariants::violation::report;

fuzz_target!(|data: &[u8]| {
    let violations = go_duration(data);
    assert!(violations.is_empty(), "{}", report(&violations));
});
