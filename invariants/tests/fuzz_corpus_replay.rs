//! Tier 4 without the fuzzer: every committed seed-corpus file (`fuzz/seeds/<target>/`) and every
//! saved crash regression (`fuzz/regressions/<target>/`) goes through the same check function the
//! fuzz target runs (`sliceguard_invariants::fuzz_checks`), so CI exercises them on every run.
//! Crashes found locally land in the git-ignored `fuzz/artifacts/`; copy the file into
//! `fuzz/regressions/<target>/` (named after the bug) when fixing it. The fuzzer's own working
//! corpus (`fuzz/corpus/<target>/`, git-ignored, grown by `make fuzz`) is replayed too when
//! `SLICEGUARD_REPLAY_FUZZ_CORPUS=1` is set.

use sliceguard_invariants::fuzz_checks::{TARGETS, check_target};
use sliceguard_invariants::violation::report;
use std::path::{Path, PathBuf};

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz")
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_file() && p.file_name().is_some_and(|n| n != "README.md"))
        .collect();
    out.sort();
    out
}

fn replay(kind: &str) -> (usize, Vec<String>) {
    let mut replayed = 0;
    let mut failures = Vec::new();
    for target in TARGETS {
        for path in files(&fuzz_dir().join(kind).join(target)) {
            let data = std::fs::read(&path).unwrap_or_default();
            let outcome = std::panic::catch_unwind(|| check_target(target, &data));
            replayed += 1;
            match outcome {
                Ok(Some(violations)) if violations.is_empty() => {}
                Ok(Some(violations)) => {
                    failures.push(format!("{}:\n{}", path.display(), report(&violations)))
                }
                Ok(None) => failures.push(format!("{target}: no such target")),
                Err(_) => failures.push(format!("{}: panicked", path.display())),
            }
        }
    }
    (replayed, failures)
}

#[test]
fn every_seed_corpus_file_passes_its_target_check() {
    for target in TARGETS {
        assert!(
            !files(&fuzz_dir().join("seeds").join(target)).is_empty(),
            "fuzz/seeds/{target}/ has no seed files"
        );
    }
    let (mut replayed, mut failures) = replay("seeds");
    if std::env::var_os("SLICEGUARD_REPLAY_FUZZ_CORPUS").is_some() {
        let (more, more_failures) = replay("corpus");
        eprintln!("also replayed {more} files of fuzz/corpus/");
        replayed += more;
        failures.extend(more_failures);
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(replayed >= TARGETS.len());
}

#[test]
fn every_saved_crash_passes_its_target_check() {
    let (_, failures) = replay("regressions");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
