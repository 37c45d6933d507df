//! Fuzz target `quantity_request`: lines of Kubernetes quantities as a container's GPU limits and
//! requests. `quantity::parse_integer` is compared with Rust's integer parser and exact suffix
//! products, `request::container_request` with the invariants crate's own reading of spec §2.
//!
//! The check is `sliceguard_invariants::fuzz_checks::quantity_request`, shared with
//! `invariants/tests/fuzz_corpus_replay.rs`, which replays `fuzz/seeds/quantity_request/` and
//! `fuzz/regressions/quantity_request/` on every test run.

#![no_main]

use libfuzzer_sys::fuzz_target;
use sliceguard_invariants::fuzz_checks::quantity_request;
use sliceguard_invariants::violation::report;

fuzz_target!(|data: &[u8]| {
    let violations = quantity_request(data);
    assert!(violations.is_empty(), "{}", report(&violations));
});
