//! Conformance on a cluster that runs other work, reached exactly as a user's cluster is:
//! `kind-harness sim serve --busy` (fractional and whole-GPU pods on some GPUs of every node, a
//! cordoned device, a node with a second GPU model) and `sliceguard serve` as separate processes,
//! the seed's three manifests applied first with kubectl, then `kind-harness conformance --cluster
//! kubeconfig`. It exits 0: every scenario passes or is skipped with its precondition named, and
//! which ones skip here is asserted (none: the busy cluster still offers what each needs). The
//! same on the plain simulated cluster with only the seed's manifests applied (the case).

mod binary;
mod cluster;

use cluster::{Cluster, seed_manifests};
use serde_json::Value;
use std::time::{Duration, Instant};

/// The scenarios expected to skip on the busy cluster with the seed applied. None of the seed's
/// three may ever be here.
const SKIPPED_ON_BUSY: [&str; 0] = [];

/// The scenarios expected to skip on the seed's cluster with its manifests applied.
const SKIPPED_AFTER_SEED: [&str; 0] = [];

fn seed_pods_running(cluster: &Cluster) -> (usize, String) {
    let (ok, out, err) = cluster.kubectl(&["get", "pods", "-n", "default", "-o", "json"]);
    if !ok {
        return (0, err);
    }
    let list: Value = serde_json::from_str(&out).unwrap_or(Value::Null);
    let items = list["items"].as_array().cloned().unwrap_or_default();
    let running = items
        .iter()
        .filter(|p| {
            let name = p["metadata"]["name"].as_str().unwrap_or("");
            (name == "hami-fractional" || name.starts_with("hami-placement-"))
                && p["status"]["phase"] == "Running"
        })
        .count();
    let phases: Vec<String> = items
        .iter()
        .map(|p| {
            format!(
                "{} {}",
                p["metadata"]["name"].as_str().unwrap_or("?"),
                p["status"]["phase"].as_str().unwrap_or("?")
            )
        })
        .collect();
    (running, phases.join(", "))
}

/// Starts `sim serve EXTRA`, `sliceguard serve`, applies the seed's three manifests with kubectl,
/// waits for their pods, and runs `kind-harness conformance --cluster kubeconfig`; asserts exit 0
/// and returns the cluster, report.json and stdout.
fn seed_then_conformance(tag: &str, extra: &[&str]) -> (Cluster, Value, String) {
    let cluster = Cluster::start(tag, extra);
    for manifest in seed_manifests() {
        let path = manifest.display().to_string();
        let (ok, out, err) = cluster.kubectl(&["apply", "--validate=false", "-f", &path]);
        assert!(
            ok,
            "kubectl apply -f {path}: {out}{err}\n{}",
            cluster.logs()
        );
    }
    // The seed's work is really there: the fractional pod and three replicas Running.
    let started = Instant::now();
    loop {
        let (running, seen) = seed_pods_running(&cluster);
        if running == 4 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the seed's pods did not all run within 60 s: {seen}\n{}",
            cluster.logs()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let evidence = cluster.dir.join("evidence");
    let kubeconfig = cluster.kubeconfig.display().to_string();
    let evidence_arg = evidence.display().to_string();
    let (code, stdout, stderr) = binary::outcome(binary::kind_harness().args([
        "conformance",
        "--cluster",
        "kubeconfig",
        "--kubeconfig",
        &kubeconfig,
        "--evidence",
        &evidence_arg,
        "--timeout",
        "30",
        "--settle-ms",
        "1000",
        "--poll-ms",
        "100",
        "--deadline",
        "280",
    ]));
    assert_eq!(
        code,
        0,
        "stdout:\n{stdout}\nstderr:\n{stderr}\n{}",
        cluster.logs()
    );
    let report: Value = serde_json::from_str(
        &std::fs::read_to_string(evidence.join("report.json")).expect("report.json"),
    )
    .expect("report.json is JSON");
    // The seed's pods were left alone.
    let (running, seen) = seed_pods_running(&cluster);
    assert_eq!(running, 4, "the seed's pods after the run: {seen}");
    (cluster, report, stdout)
}

/// The scenarios that ended with `outcome`.
fn with_outcome<'a>(report: &'a Value, outcome: &str) -> Vec<&'a str> {
    report["scenarios"]
        .as_array()
        .expect("scenarios")
        .iter()
        .filter(|s| s["outcome"] == outcome)
        .filter_map(|s| s["name"].as_str())
        .collect()
}

/// The reproduction: the seed's lab cluster with the seed's manifests applied first. Before
/// preconditions, `placement` and `sharing` false-failed here and `churn` waited past 300 s.
#[test]
fn conformance_after_the_seeds_manifests_exits_0_with_nothing_skipped() {
    let (_cluster, report, stdout) = seed_then_conformance("seed", &[]);
    assert!(
        report["inventory"]
            .as_str()
            .is_some_and(|i| i.starts_with("3 GPU nodes, 24 GPUs")),
        "{}",
        report["inventory"]
    );
    assert_eq!(
        with_outcome(&report, "fail"),
        Vec::<&str>::new(),
        "{stdout}"
    );
    assert_eq!(
        with_outcome(&report, "skip"),
        SKIPPED_AFTER_SEED,
        "{stdout}"
    );
    assert_eq!(with_outcome(&report, "pass").len(), 10, "{stdout}");
}

#[test]
fn conformance_on_a_busy_cluster_with_the_seed_applied_passes_or_skips_with_reasons() {
    let (cluster, report, stdout) = seed_then_conformance("busy", &["--busy"]);
    assert!(
        report["inventory"]
            .as_str()
            .is_some_and(|i| i.starts_with("4 GPU nodes, 28 GPUs")),
        "the busy cluster's fleet (3 x 8 H100 and 4 A100): {}",
        report["inventory"]
    );
    let scenarios = report["scenarios"].as_array().expect("scenarios");
    assert_eq!(scenarios.len(), 10, "{stdout}");
    let failed: Vec<&str> = scenarios
        .iter()
        .filter(|s| s["outcome"] == "fail")
        .filter_map(|s| s["name"].as_str())
        .collect();
    assert!(failed.is_empty(), "failed: {failed:?}\n{stdout}");
    let skipped: Vec<&str> = scenarios
        .iter()
        .filter(|s| s["outcome"] == "skip" && !s["skipped"].is_null())
        .filter_map(|s| s["name"].as_str())
        .collect();
    assert_eq!(skipped, SKIPPED_ON_BUSY, "{stdout}");
    for seed in ["fractional", "pending", "placement"] {
        let s = scenarios
            .iter()
            .find(|s| s["name"] == seed)
            .unwrap_or_else(|| panic!("{seed} missing: {stdout}"));
        assert_eq!(s["outcome"], "pass", "{seed}: {s}");
    }
    // The placements were checked against the product's scores on the observed (busy) usage.
    let placement = scenarios.iter().find(|s| s["name"] == "placement").unwrap();
    let score_checks = placement["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| {
            c["what"]
                .as_str()
                .is_some_and(|w| w.contains("scores best on the observed usage"))
        })
        .count();
    assert_eq!(score_checks, 6, "{placement}");
    // The selectors used the second model: nouse-gputype landed on another model.
    let selectors = scenarios.iter().find(|s| s["name"] == "selectors").unwrap();
    assert!(
        selectors["checks"]
            .as_array()
            .unwrap()
            .iter()
            .any(
                |c| c["what"].as_str().is_some_and(|w| w.contains("avoids")) && c["passed"] == true
            ),
        "{selectors}"
    );
    assert!(
        stdout.contains("10 of 10 scenarios passed, 0 skipped, 0 failed"),
        "{stdout}"
    );
    // The other work was left alone.
    let (ok, out, _) = cluster.kubectl(&["get", "pods", "-n", "busy", "--no-headers"]);
    assert!(
        ok && out.lines().count() == 10,
        "busy pods after the run: {out}"
    );
}
