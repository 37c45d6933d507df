//! Fuzz target `admission_webhook`: any JSON document through the webhook
//! (`sliceguard_core::admission::mutate`). Beyond "no panic": the patch applies to the submitted object
//! and leaves a pod, it only touches `/spec`, and a routed pod names sliceguard's scheduler and has
//! readable GPU requests.
//!
//! The check is `sliceguard_invariants::fuzz_checks::admission_webhook`, shared with
//! `invariants/tests/fuzz_corpus_replay.rs`, which replays `fuzz/seeds/admission_webhook/` and
//! `fuzz/regressions/admission_webhook/` on every test run.

#![no_main]

use libfuzzer_sys::fuzz_target;
use sliceguard_invariants::fuzz_checks::admission_webhook;
use sliceguard_invariants::violation::report;

fuzz_target!(|data: &[u8]| {
    let violations = admission_webhook(data);
    assert!(violations.is_empty(), "{}", report(&violations));
});
