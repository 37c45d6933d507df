//! Evidence that survives interruption: the report is rewritten as each scenario ends, so SIGTERM
//! in the middle of a run, or the run's `--deadline`, leaves report.md, report.json and junit.xml
//! of the scenarios that finished, naming the scenario that was running.

mod binary;

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn evidence_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "kind-harness-interrupt-{tag}-{}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn sigterm_mid_run_leaves_the_report_of_finished_scenarios_and_names_the_running_one() {
    let dir = evidence_dir("sigterm");
    let mut child = Command::new(env!("CARGO_BIN_EXE_kind-harness"))
        .arg("conformance")
        .arg("--evidence")
        .arg(&dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting kind-harness conformance");
    // The first scenario's evidence exists once it has ended.
    let first = dir.join("fractional/pods.yaml");
    let started = Instant::now();
    while !first.exists() {
        assert!(
            child.try_wait().ok().flatten().is_none(),
            "the run ended before its first scenario's evidence appeared"
        );
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "no evidence of the first scenario within 120 s"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let status = Command::new("kill")
        .args(["-s", "TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let out = child.wait_with_output().expect("waiting for the run");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(143),
        "stdout:\n{stdout}\nstderr:\n{stderr}"
    );

    let report: Value = serde_json::from_str(&read(&dir.join("report.json"))).unwrap();
    let finished: Vec<&str> = report["scenarios"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| s["name"].as_str())
        .collect();
    assert_eq!(finished.first(), Some(&"fractional"), "{report}");
    assert!(finished.len() < 10, "the run was cut short: {finished:?}");
    let running = report["running"]
        .as_str()
        .expect("the running scenario is named");
    assert!(
        !finished.contains(&running),
        "{running} is not among the finished"
    );
    let why = report["interrupted"].as_str().expect("interrupted is set");
    assert!(
        why.starts_with(&format!("SIGTERM while running {running}")),
        "{why}"
    );

    let markdown = read(&dir.join("report.md"));
    assert!(
        markdown.contains(&format!("**interrupted**: SIGTERM while running {running}")),
        "{markdown}"
    );
    assert!(markdown.contains("| fractional | pass |"), "{markdown}");
    let junit = read(&dir.join("junit.xml"));
    assert_eq!(
        junit.matches("<testcase ").count(),
        finished.len(),
        "{junit}"
    );
    assert!(junit.contains("name=\"fractional\""));
    assert!(
        junit.contains("<property name=\"interrupted\" value=\"SIGTERM while running"),
        "{junit}"
    );
    assert!(
        stdout.contains("run interrupted: SIGTERM while running"),
        "{stdout}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_run_deadline_stops_the_run_and_reports_what_finished() {
    let dir = evidence_dir("deadline");
    let (code, stdout, stderr) = binary::outcome(
        binary::kind_harness()
            .args(["conformance", "--deadline", "2", "--evidence"])
            .arg(&dir),
    );
    assert_eq!(code, 1, "stdout:\n{stdout}\nstderr:\n{stderr}");
    let report: Value = serde_json::from_str(&read(&dir.join("report.json"))).unwrap();
    let why = report["interrupted"].as_str().expect("interrupted is set");
    assert!(why.contains("the run's deadline (--deadline 2 s)"), "{why}");
    assert!(
        report["scenarios"].as_array().unwrap().len() < 10,
        "a 2 s deadline cuts the run short"
    );
    assert!(read(&dir.join("report.md")).contains("**interrupted**: the run's deadline"));
    let _ = std::fs::remove_dir_all(&dir);
}
