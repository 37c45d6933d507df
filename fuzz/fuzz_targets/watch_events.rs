//! Fuzz target `watch_events`: bytes read (with `arbitrary`) as a sequence of node and pod watch
//! events (adds, annotation updates, deletes, relists, re-delivered older resourceVersions) through
//! `sliceguard_core::cluster_view::ClusterView`. After every event the ledger equals the recount of
//! the live pods, and an undecodable `hami.io/vgpu-devices-allocated` comes back as an `Err`.
//!
//! The check is `sliceguard_invariants::fuzz_checks::watch_events`, shared with
//! `invariants/tests/fuzz_corpus_replay.rs`, which replays `fuzz/seeds/watch_events/` and
//! `fuzz/regressions/watch_events/` on every test run.

#![no_main]

use libfuzzer_sys::fuzz_target;
use sliceguard_invariants::fuzz_checks::watch_events;
use sliceguard_invariants::violation::report;

fuzz_target!(|data: &[u8]| {
    let violations = watch_events(data);
    assert!(violations.is_empty(), "{}", report(&violations));
});
