//! End to end on the embedded simulated cluster: `kind-harness conformance` runs every scenario,
//! passes, prints the table and writes the evidence (report.md, report.json, JUnit, YAML
//! snapshots); a fleet too small for a claim (40000 MiB GPUs for `sharing`) fails that scenario
//! with what was expected and what was seen, and exits 1 (a precondition is about the cluster's
//! state, never about the behaviour under test, so it does not turn into a skip); a cluster that
//! cannot offer what a scenario needs (one GPU for `selectors` and `multi-gpu`) skips it, naming
//! the precondition and what it saw, and exits 0.

mod binary;

use serde_json::Value;
use std::path::{Path, PathBuf};

fn evidence_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "kind-harness-conformance-{tag}-{}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn conformance(args: &[&str], evidence: &Path) -> (i32, String, String) {
    binary::outcome(
        binary::kind_harness()
            .arg("conformance")
            .args(args)
            .arg("--evidence")
            .arg(evidence),
    )
}

#[test]
fn every_scenario_passes_on_the_simulated_cluster_and_leaves_evidence() {
    let dir = evidence_dir("all");
    let (code, stdout, stderr) = conformance(&[], &dir);
    assert_eq!(code, 0, "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(
        stdout.contains("10 of 10 scenarios passed, 0 skipped, 0 failed"),
        "{stdout}"
    );
    for scenario in [
        "fractional",
        "pending",
        "placement",
        "sharing",
        "exclusive",
        "selectors",
        "multi-gpu",
        "churn",
        "routing",
        "locks",
    ] {
        assert!(
            stdout
                .lines()
                .any(|l| l.starts_with(scenario) && l.contains(" pass ")),
            "{scenario} not passed:\n{stdout}"
        );
    }

    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("report.json")).unwrap()).unwrap();
    let scenarios = report["scenarios"].as_array().unwrap();
    assert_eq!(scenarios.len(), 10);
    assert!(scenarios.iter().all(|s| s["passed"] == true));
    // Seed exercise 1's claims, from the machine-readable report.
    let fractional = &scenarios[0];
    assert_eq!(fractional["name"], "fractional");
    let pod = &fractional["pods"][0];
    assert_eq!(pod["phase"], "Running");
    assert!(pod["devices"].as_str().unwrap().ends_with("3000MiB/30%"));
    assert!(pod["events"].as_array().unwrap().iter().any(|e| {
        e.as_str()
            .unwrap()
            .starts_with("FilteringSucceed: find fit node(")
    }));
    // Sharing: ten on one GPU, the eleventh refused with HAMi's reason.
    let sharing = scenarios.iter().find(|s| s["name"] == "sharing").unwrap();
    let pods = sharing["pods"].as_array().unwrap();
    assert_eq!(pods.len(), 11);
    let gpu = pods[0]["devices"]
        .as_str()
        .unwrap()
        .split(' ')
        .next()
        .unwrap();
    assert!(
        pods[..10]
            .iter()
            .all(|p| p["phase"] == "Running" && p["devices"].as_str().unwrap().starts_with(gpu))
    );
    assert_eq!(pods[10]["phase"], "Pending");
    assert!(
        pods[10]["reasons"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r.as_str().unwrap().contains("CardTimeSlicingExhausted"))
    );

    let markdown = std::fs::read_to_string(dir.join("report.md")).unwrap();
    assert!(markdown.contains("| scenario | result | pod | node | devices | reasons | events |"));
    assert!(markdown.contains("10 of 10 scenarios passed"));
    let junit = std::fs::read_to_string(dir.join("junit.xml")).unwrap();
    assert_eq!(junit.matches("<testcase ").count(), 10);
    assert!(junit.contains("failures=\"0\""));
    let nodes: Value =
        serde_saphyr::from_str(&std::fs::read_to_string(dir.join("nodes.yaml")).unwrap()).unwrap();
    assert_eq!(nodes["kind"], "List");
    assert_eq!(nodes["items"].as_array().unwrap().len(), 3);
    let pods: Value =
        serde_saphyr::from_str(&std::fs::read_to_string(dir.join("sharing/pods.yaml")).unwrap())
            .unwrap();
    assert_eq!(pods["items"].as_array().unwrap().len(), 11);
    assert!(dir.join("pending/events.yaml").exists());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_broken_precondition_fails_the_scenario_saying_what_was_expected_and_seen() {
    let dir = evidence_dir("broken");
    let (code, stdout, stderr) =
        conformance(&["--scenario", "sharing", "--gpu-memory", "40000"], &dir);
    assert_eq!(code, 1, "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(stdout.contains("0 of 1 scenarios passed"), "{stdout}");
    let line = stdout
        .lines()
        .find(|l| l.starts_with("sharing"))
        .unwrap_or_else(|| panic!("{stdout}"));
    assert!(line.contains("FAIL"), "{line}");
    assert!(
        line.contains("expected") && line.contains(">= 80000 MiB"),
        "{line}"
    );
    assert!(
        line.contains("seen") && line.contains("40000 MiB"),
        "{line}"
    );
    assert!(!line.contains("SKIPPED"), "{line}");
    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("report.json")).unwrap()).unwrap();
    assert_eq!(report["scenarios"][0]["passed"], false);
    assert!(
        report["scenarios"][0]["skipped"].is_null(),
        "a FAIL, not a skip"
    );
    assert_eq!(report["scenarios"][0]["outcome"], "fail");
    let markdown = std::fs::read_to_string(dir.join("report.md")).unwrap();
    // The run itself shows what happened: five fit, the sixth is refused for memory.
    assert!(
        markdown.contains("expected 10 Running") && markdown.contains("seen 5 Running"),
        "{markdown}"
    );
    assert!(markdown.contains("CardInsufficientMemory"));
    let junit = std::fs::read_to_string(dir.join("junit.xml")).unwrap();
    assert!(junit.contains("failures=\"1\"") && junit.contains("<failure "));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_cluster_that_cannot_offer_a_precondition_skips_with_the_reason_and_exits_0() {
    let dir = evidence_dir("skip");
    let (code, stdout, stderr) = conformance(
        &[
            "--nodes",
            "1",
            "--gpus-per-node",
            "1",
            "--scenario",
            "fractional",
            "--scenario",
            "selectors",
            "--scenario",
            "multi-gpu",
        ],
        &dir,
    );
    assert_eq!(code, 0, "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(
        stdout.contains("1 of 3 scenarios passed, 2 skipped, 0 failed"),
        "{stdout}"
    );
    let line = |name: &str| {
        stdout
            .lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("{name}: {stdout}"))
            .to_string()
    };
    assert!(line("fractional").contains(" pass "));
    let selectors = line("selectors");
    assert!(
        selectors.contains(" skip ")
            && selectors.contains("SKIPPED: needs at least 2 GPU(s) registered")
            && selectors.contains("seen 1 schedulable GPU nodes, 1 GPUs"),
        "{selectors}"
    );
    let multi = line("multi-gpu");
    assert!(
        multi.contains(" skip ") && multi.contains("a GPU node with two usable GPUs"),
        "{multi}"
    );
    let junit = std::fs::read_to_string(dir.join("junit.xml")).unwrap();
    assert_eq!(junit.matches("<skipped message=").count(), 2, "{junit}");
    assert!(
        junit.contains("failures=\"0\" errors=\"0\" skipped=\"2\""),
        "{junit}"
    );
    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("report.json")).unwrap()).unwrap();
    let skipped: Vec<&str> = report["scenarios"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["outcome"] == "skip" && !s["skipped"].is_null())
        .filter_map(|s| s["name"].as_str())
        .collect();
    assert_eq!(skipped, ["selectors", "multi-gpu"]);
    let markdown = std::fs::read_to_string(dir.join("report.md")).unwrap();
    assert!(markdown.contains("| selectors | skipped |"), "{markdown}");
    let _ = std::fs::remove_dir_all(&dir);
}
