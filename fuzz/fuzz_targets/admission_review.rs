//! Fuzz target `admission_review`: any body through the AdmissionReview envelope
//! (`sliceguard_core::wire::admission_review::review`, v1 and v1beta1). Beyond "no panic": an error
//! names the field; the answer carries the request's `apiVersion` and `uid`; a patch is base64 of
//! an RFC 6902 patch that applies to `request.object`; a refusal has a 4xx code and a message.
//!
//! The check is `sliceguard_invariants::fuzz_checks::admission_review`, shared with
//! `invariants/tests/fuzz_corpus_replay.rs`, which replays `fuzz/seeds/admission_review/` and
//! `fuzz/regressions/admission_review/` on every test run.

#![no_main]

use libfuzzer_sys::fuzz_target;
use sliceguard_invariants::fuzz_checks::admission_review;
use sliceguard_invariants::violation::report;

fuzz_target!(|data: &[u8]| {
    let violations = admission_review(data);
    assert!(violations.is_empty(), "{}", report(&violations));
});
