//! # sliceguard-invariants: the harness, first layer
//!
//! Everything the property tests, the fuzz targets and (later) the simulated cluster use to decide
//! whether the scheduler core did something wrong. Nothing here is scheduler logic: the rules are
//! written again, naively, from the HAMi specification (`shared/spec/hami-control-plane.md` §1, §2,
//! §4, §6.2), so that a bug in the core and a bug here have to coincide to go unnoticed.
//!
//! It depends on `sliceguard-core` alone and must never depend on the I/O shell
//! (`sliceguard-scheduler`) or an async runtime: the fuzz targets build on it.
//!
//! | module | owns |
//! |---|---|
//! | [`violation`] | what a broken invariant looks like: which invariant, node, device, pods, by how much |
//! | [`fleet`] | a generated GPU fleet as plain data, its register/cordon annotations, its `Registry` |
//! | [`pods`] | a generated GPU pod as plain data (limits/requests, init containers, selector annotations) |
//! | [`recount`] | device usage recomputed from scratch from live pods' annotations (own decoder, own collapse) |
//! | [`oracle`] | the naive reference oracle: brute force over device combinations, HAMi's per-device rules |
//! | [`checks`] | the invariant checkers: capacity, agreement, rejection (with the exact reason), protocol |
//! | [`scenario`] | placement sequences (place, delete, finish init, terminate) driven through the real core |
//! | [`codecs`] | codec round-trip and never-panic checks, plus valid and adversarial annotation strings |
//! | [`fuzz_checks`] | the byte-level entry points shared by the fuzz targets and the corpus replay test |
//! | [`webhook_model`] | an independent model of the webhook's rules (routing, default count, exclusive cores, denials) |
//!
//! Proptest strategies sit next to the types they generate (feature `strategies`, on by default;
//! the fuzz crate turns it off). Properties live in `tests/`.
//!
//! ## The invariants
//! 1. **Capacity**: per device, Σ memory ≤ devmem, Σ cores ≤ devcore, tasks ≤ split count, and a task
//!    holding all 100 cores of a devcore-100 device holds it alone.
//! 2. **Rejection**: a request that no device of a node can hold is never placed there, and the node's
//!    reason is exactly HAMi's reason list (`"1/2 CardInsufficientMemory, ..."`, `NodeInsufficientDevice`).
//! 3. **Agreement**: the ledger equals the usage recomputed from the live pods' annotations.
//! 4. **Oracle**: the scheduler places a pod on a node only if the oracle finds a packing there, and
//!    for pods with at most one GPU-requesting regular container it places wherever the oracle can.
//! 5. **Codecs**: `parse(render(x)) == x`, and `parse` never panics on any string.
//! 6. **Determinism**: the same input gives the same decision.
//! 7. **No addition to an over-full device**: a device already over its registered capacity (a node
//!    re-registered with less, an allocation someone else wrote) gets nothing more from a decision;
//!    the pre-existing over-commit itself is tolerated, and only as it shrinks.
//! 8. **Webhook**: `admission::mutate` answers as [`webhook_model`] says, object for object.

pub mod checks;
pub mod codecs;
pub mod fleet;
pub mod fuzz_checks;
pub mod oracle;
pub mod pods;
pub mod recount;
pub mod scenario;
pub mod violation;
pub mod webhook_model;

/// A proptest configuration for one property: `default_cases` unless `PROPTEST_CASES` is set, and
/// failing seeds persisted to (and replayed first from) `path`, a file under the repository's
/// top-level `proptest-regressions/`. Use [`regression_file!`] to build `path`.
#[cfg(feature = "strategies")]
pub fn proptest_config(default_cases: u32, path: &'static str) -> proptest::test_runner::Config {
    use proptest::test_runner::{Config, FileFailurePersistence};
    let base = Config::default();
    let cases = if std::env::var_os("PROPTEST_CASES").is_some() {
        base.cases
    } else {
        default_cases
    };
    let max_shrink_iters = if std::env::var_os("PROPTEST_MAX_SHRINK_ITERS").is_some() {
        base.max_shrink_iters
    } else {
        cases.saturating_mul(4).max(4096)
    };
    Config {
        cases,
        max_shrink_iters,
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(path))),
        ..base
    }
}

/// Turns violations into a proptest verdict: the case fails with every violation, one per line.
#[cfg(feature = "strategies")]
pub fn ensure(
    violations: &[violation::Violation],
) -> Result<(), proptest::test_runner::TestCaseError> {
    if violations.is_empty() {
        Ok(())
    } else {
        Err(proptest::test_runner::TestCaseError::fail(
            violation::report(violations),
        ))
    }
}

/// The path of `proptest-regressions/<name>.txt` at the repository root, for [`proptest_config`].
#[macro_export]
macro_rules! regression_file {
    ($name:literal) => {
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../proptest-regressions/",
            $name,
            ".txt"
        )
    };
}
