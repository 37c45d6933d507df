//! Fuzz target `policy_annotations`: lines of pod policy annotations (weights, GPU type and UUID
//! use/nouse lists, numa-bind, node and GPU policies, vgpu-mode) through `sliceguard_core::policy`.
//! Beyond "no panic": weights stay in range and round-trip; the lists, `type_allowed` and
//! `uuid_allowed` equal a reference reading of HAMi's comma lists (trimmed, empty entries skipped).
//!
//! The check is `sliceguard_invariants::fuzz_checks::policy_annotations`, shared with
//! `invariants/tests/fuzz_corpus_replay.rs`, which replays `fuzz/seeds/policy_annotations/` and
//! `fuzz/regressions/policy_annotations/` on every test run.

#![no_main]

use libfuzzer_sys::fuzz_target;
use sliceguard_invariants::fuzz_checks::policy_annotations;
use sliceguard_invariants::violation::report;

fuzz_target!(|data: &[u8]| {
    let violations = policy_annotations(data);
    assert!(violations.is_empty(), "{}", report(&violations));
});
