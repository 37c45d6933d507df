//! Fuzz target `annotation_parser`: any string through every annotation codec (node register,
//! JSON and text; pod devices; the lock value; the handshake; reason lists). Beyond "no panic":
//! whatever parses must render and parse back to the same value.
//!
//! The check is `sliceguard_invariants::fuzz_checks::annotation_parser`, shared with
//! `invariants/tests/fuzz_corpus_replay.rs`, which replays `fuzz/seeds/annotation_parser/` and
//! `fuzz/regressions/annotation_parser/` on every test run.

#![no_main]

use libfuzzer_sys::fuzz_target;
use sliceguard_invariants::fuzz_checks::annotation_parser;
use sliceguard_invariants::violation::report;

fuzz_target!(|data: &[u8]| {
    let violations = annotation_parser(data);
    assert!(violations.is_empty(), "{}", report(&violations));
});
