//! Fuzz target `extender`: any body through the kube-scheduler extender decoders
//! (`sliceguard_core::wire::extender::{decode_args, decode_binding_args}`). Beyond "no panic": an
//! error names a field under `ExtenderArgs`/`ExtenderBindingArgs`, changing the case of the
//! top-level keys changes nothing (Go folds them), decoded binding args name a pod, a namespace and
//! a node.
//!
//! The check is `sliceguard_invariants::fuzz_checks::extender`, shared with
//! `invariants/tests/fuzz_corpus_replay.rs`, which replays `fuzz/seeds/extender/` and
//! `fuzz/regressions/extender/` on every test run.

#![no_main]

use libfuzzer_sys::fuzz_target;
use sliceguard_invariants::fuzz_checks::extender;
use sliceguard_invariants::violation::report;

fuzz_target!(|data: &[u8]| {
    let violations = extender(data);
    assert!(violations.is_empty(), "{}", report(&violations));
});
