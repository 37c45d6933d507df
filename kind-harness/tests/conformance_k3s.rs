//! The testcontainers cluster tier, `kind-harness conformance --cluster k3s`. Where no Docker
//! engine answers (this project's machines), it exits 2 naming Docker; the full run on K3s is
//! opt-in (`cargo nextest run -p sliceguard-kind-harness --test conformance_k3s --run-ignored
//! only`, or `make conformance-k3s`), because it needs Docker and the k3s image.

mod binary;

use serde_json::Value;

/// True when a Docker engine may answer (a socket or `DOCKER_HOST`).
fn docker_may_answer() -> bool {
    std::env::var_os("DOCKER_HOST").is_some()
        || std::path::Path::new("/var/run/docker.sock").exists()
}

#[test]
fn without_docker_the_k3s_tier_exits_2_naming_docker() {
    if docker_may_answer() {
        println!(
            "SKIPPED: a Docker engine may answer here (DOCKER_HOST or /var/run/docker.sock); this test checks the machines without one, the ignored test below runs K3s"
        );
        return;
    }
    let dir = std::env::temp_dir().join(format!("kh-k3s-{}", std::process::id()));
    let (code, stdout, stderr) = binary::outcome(
        binary::kind_harness()
            .args(["conformance", "--cluster", "k3s", "--evidence"])
            .arg(&dir),
    );
    assert_eq!(code, 2, "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(
        stderr.contains("--cluster k3s needs") && stderr.contains("Docker"),
        "the message names Docker: {stderr}"
    );
    assert!(
        stderr.contains("rancher/k3s:v1.33"),
        "and the image it needs: {stderr}"
    );
    assert!(!dir.join("report.md").exists(), "no run, no report");
}

#[test]
#[ignore = "needs docker and the k3s image"]
fn every_scenario_passes_or_skips_on_k3s() {
    let dir = std::env::temp_dir().join(format!("kh-k3s-run-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let (code, stdout, stderr) = binary::outcome(
        binary::kind_harness()
            .current_dir(&repo)
            .args(["conformance", "--cluster", "k3s", "--evidence"])
            .arg(&dir),
    );
    assert_eq!(code, 0, "stdout:\n{stdout}\nstderr:\n{stderr}");
    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("report.json")).unwrap()).unwrap();
    let scenarios = report["scenarios"].as_array().unwrap();
    assert_eq!(scenarios.len(), 10);
    for seed in ["fractional", "pending", "placement"] {
        let s = scenarios.iter().find(|s| s["name"] == seed).unwrap();
        assert_eq!(s["passed"], true, "{seed}: {s}");
    }
    assert!(report["cluster"].as_str().unwrap().starts_with("k3s"));
}
