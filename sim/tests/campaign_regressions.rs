//! Every violation a simulation campaign has found, replayed: each file in `sim/regressions/` is a
//! shrunk operation sequence saved by `kind-harness sim` (`--replay` runs one by hand). They all
//! failed before their fix; they must all pass now.
//!
//! - `campaign-seed-149-overcommit.json` (200 seeds × 2000 operations, all faults): a re-filter that
//!   placed nothing dropped the pod's earlier filter write whose answer had been lost, while the
//!   watch was down; an exclusive pod was then given the same GPU (capacity and exclusivity broken).

use sliceguard_sim::campaign::{self, Replay};

#[test]
fn every_saved_campaign_failure_replays_without_a_violation() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("regressions");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no replay files in {}", dir.display());
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        let saved: Replay = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{} is not a replay file: {e}", file.display()));
        let config = saved.config().unwrap();
        let report = campaign::run(&config, &saved.ops, saved.liveness);
        assert!(
            report.violations.is_empty(),
            "{} still fails:\n{}",
            file.display(),
            report
                .violations
                .iter()
                .map(|v| v.to_string())
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
}
