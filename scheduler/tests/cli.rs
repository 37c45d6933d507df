//! The `sliceguard` binary end to end: the seed lab's acceptance run (`fleet` then `place` on the
//! three manifests), `decode`, exit codes, error messages naming file/object/field, and no panic on
//! any input.

use proptest::prelude::*;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn sliceguard(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sliceguard"))
        .args(args)
        .output()
        .expect("run sliceguard")
}

fn sliceguard_stdin(args: &[&str], input: &str) -> Output {
    use std::io::Write;
    use std::process::Stdio;
    let mut child = Command::new(env!("CARGO_BIN_EXE_sliceguard"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run sliceguard");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.as_bytes())
        .expect("write stdin");
    child.wait_with_output().expect("wait for sliceguard")
}

/// A fresh path under a per-process scratch directory (unique per call: tests run in parallel).
fn scratch(name: &str) -> PathBuf {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("sliceguard-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(format!("{n}-{name}"))
}

fn seed_manifests() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/seed/manifests.yaml")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn fleet_file() -> PathBuf {
    let out = sliceguard(&[
        "fleet",
        "--nodes",
        "3",
        "--gpus-per-node",
        "8",
        "--memory",
        "81920",
        "--type",
        "NVIDIA-H100-80GB-HBM3",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let path = scratch("nodes.yaml");
    std::fs::write(&path, &out.stdout).unwrap();
    path
}

#[test]
fn seed_lab_acceptance() {
    let nodes = fleet_file();
    let out = sliceguard(&[
        "place",
        "--nodes",
        nodes.to_str().unwrap(),
        "--pods",
        seed_manifests().to_str().unwrap(),
        "-o",
        "json",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let pods: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(pods.len(), 5);

    let fractional = &pods[0];
    assert_eq!(fractional["name"], "hami-fractional");
    assert_eq!(fractional["status"], "Scheduled");
    let devices = fractional["containers"][0]["devices"].as_array().unwrap();
    assert_eq!(devices.len(), 1);
    assert_eq!(devices[0]["memory_mib"], 3000);
    assert_eq!(devices[0]["cores"], 30);
    assert_eq!(devices[0]["type"], "NVIDIA-H100-80GB-HBM3");

    let over = &pods[1];
    assert_eq!(over["name"], "hami-overrequest");
    assert_eq!(over["status"], "Pending");
    for node in ["hami-sim-worker", "hami-sim-worker2", "hami-sim-worker3"] {
        assert_eq!(
            over["verdicts"][node]["reasons"], "8/8 CardInsufficientMemory",
            "{node}"
        );
    }
    assert_eq!(over["event"]["reason"], "FilteringFailed");
    let messages: Vec<&str> = over["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["message"].as_str().unwrap())
        .collect();
    assert_eq!(
        messages,
        [
            "3 nodes CardInsufficientMemory(hami-sim-worker,hami-sim-worker2,hami-sim-worker3)",
            "no available node, 3 nodes do not meet"
        ]
    );
    assert!(over["annotations"].as_object().unwrap().is_empty());

    let message = regex_like_success();
    for replica in &pods[2..] {
        assert!(
            replica["name"]
                .as_str()
                .unwrap()
                .starts_with("hami-placement-")
        );
        assert_eq!(replica["status"], "Scheduled");
        assert_eq!(replica["event"]["reason"], "FilteringSucceed");
        let text = replica["event"]["message"].as_str().unwrap();
        assert!(message(text), "{text}");
        let node = replica["node"].as_str().unwrap();
        assert!(
            text.starts_with(&format!(
                "find fit node({node}), 0 nodes not fit, 3 nodes fit("
            )),
            "{text}"
        );
        assert_eq!(replica["containers"][0]["devices"][0]["memory_mib"], 1000);
    }
}

/// `find fit node(<n>), <k> nodes not fit, <m> nodes fit(<n>:<score %.2f>,...)`.
fn regex_like_success() -> impl Fn(&str) -> bool {
    |text: &str| {
        let Some(rest) = text.strip_prefix("find fit node(") else {
            return false;
        };
        let Some((_, rest)) = rest.split_once("), ") else {
            return false;
        };
        let Some((not_fit, rest)) = rest.split_once(" nodes not fit, ") else {
            return false;
        };
        let Some((fit, rest)) = rest.split_once(" nodes fit(") else {
            return false;
        };
        let Some(list) = rest.strip_suffix(')') else {
            return false;
        };
        let entries: Vec<&str> = list.split(',').collect();
        not_fit.parse::<usize>().is_ok()
            && fit.parse::<usize>() == Ok(entries.len())
            && entries.iter().all(|e| {
                e.rsplit_once(':').is_some_and(|(_, s)| {
                    s.split_once('.').is_some_and(|(_, d)| d.len() == 2) && s.parse::<f64>().is_ok()
                })
            })
    }
}

#[test]
fn table_output_explains_pending_pods() {
    let nodes = fleet_file();
    let out = sliceguard(&[
        "place",
        "--nodes",
        nodes.to_str().unwrap(),
        "--pods",
        seed_manifests().to_str().unwrap(),
    ]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.starts_with("POD"), "{text}");
    assert!(text.contains("default/hami-overrequest is Pending:"));
    assert!(text.contains("hami-sim-worker2: 8/8 CardInsufficientMemory"));
}

#[test]
fn spread_policy_spreads_the_replicas() {
    let nodes = fleet_file();
    let out = sliceguard(&[
        "place",
        "--nodes",
        nodes.to_str().unwrap(),
        "--pods",
        seed_manifests().to_str().unwrap(),
        "--node-policy",
        "spread",
        "-o",
        "json",
    ]);
    let pods: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    let used: std::collections::BTreeSet<&str> =
        pods.iter().filter_map(|p| p["node"].as_str()).collect();
    assert_eq!(
        used.len(),
        3,
        "four scheduled pods under spread use all three nodes"
    );
}

#[test]
fn yaml_output_parses() {
    let nodes = fleet_file();
    let out = sliceguard(&[
        "place",
        "--nodes",
        nodes.to_str().unwrap(),
        "--pods",
        seed_manifests().to_str().unwrap(),
        "-o",
        "yaml",
    ]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("status: Scheduled") && text.contains("8/8 CardInsufficientMemory"),
        "{text}"
    );
}

#[test]
fn decode_prints_json_or_exits_2_naming_the_field() {
    let out = sliceguard(&["decode", "node-register", "GPU-0,10,abc,100,T4,0,true:"]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(err.contains("memory") && err.contains("abc"), "{err}");

    let out = sliceguard(&["decode", "pod-devices", ";GPU-a,NVIDIA,6144,30:;"]);
    assert!(out.status.success());
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v[1][0]["usedmem"], 6144);
    assert_eq!(v[0], serde_json::json!([]));

    let out = sliceguard(&[
        "decode",
        "lock",
        "2025-10-20T03:07:02Z,jingyu-test,gputest-6c77bb77f8-gvtzc",
    ]);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["holder"]["name"], "gputest-6c77bb77f8-gvtzc");
    assert_eq!(v["legacy"], false);

    let out = sliceguard(&[
        "decode",
        "reasons",
        "1/2 CardInsufficientMemory, NodeInsufficientDevice",
    ]);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v[0]["reason"], "CardInsufficientMemory");
    assert_eq!(v[1], "NodeInsufficientDevice");

    let out = sliceguard(&["decode", "lock", "yesterday,a"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("malformed lock annotation"));
}

#[test]
fn bad_input_exits_2_naming_file_object_and_field() {
    let nodes = fleet_file();
    let pods = scratch("bad-pods.yaml");
    std::fs::write(&pods, "apiVersion: v1\nkind: Pod\nmetadata: {name: broken}\nspec:\n  containers:\n  - name: c\n    ports: 80\n").unwrap();
    let out = sliceguard(&[
        "place",
        "--nodes",
        nodes.to_str().unwrap(),
        "--pods",
        pods.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(
        err.contains("bad-pods.yaml") && err.contains("Pod default/broken")
            || err.contains("Pod broken"),
        "{err}"
    );
    assert!(err.contains("spec.containers[0].ports"), "{err}");

    let out = sliceguard(&[
        "place",
        "--nodes",
        "/nonexistent/nodes.yaml",
        "--pods",
        pods.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("/nonexistent/nodes.yaml"));

    let out = sliceguard(&[
        "fleet",
        "--nodes",
        "1",
        "--gpus-per-node",
        "0",
        "--memory",
        "1",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("--gpus-per-node"));
}

#[test]
fn webhook_denials_and_skips_are_decisions() {
    let nodes = fleet_file();
    let pods = scratch("mixed.yaml");
    std::fs::write(
        &pods,
        "kind: Pod\nmetadata: {name: priv}\nspec: {containers: [{name: c, securityContext: {privileged: true}, resources: {limits: {nvidia.com/gpu: 1}}}]}\n---\nkind: Pod\nmetadata: {name: web}\nspec: {containers: [{name: c, image: nginx}]}\n---\nkind: Pod\nmetadata: {name: other}\nspec: {schedulerName: volcano, containers: [{name: c, resources: {limits: {nvidia.com/gpu: 1}}}]}\n",
    )
    .unwrap();
    let out = sliceguard(&[
        "place",
        "--nodes",
        nodes.to_str().unwrap(),
        "--pods",
        pods.to_str().unwrap(),
        "-o",
        "json",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let v: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (v[0]["status"].as_str(), v[0]["message"].as_str()),
        (Some("Denied"), Some("container c is privileged"))
    );
    assert_eq!(v[1]["status"], "Skipped");
    assert_eq!(
        (v[2]["status"].as_str(), v[2]["message"].as_str()),
        (
            Some("Skipped"),
            Some("pod already has different scheduler assigned")
        )
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, failure_persistence: None, ..ProptestConfig::default() })]

    /// No input makes `place` or `decode` panic: the exit code is always 0 or 2.
    #[test]
    fn no_input_panics(text in prop_oneof![
        any::<String>(),
        "(kind: (Pod|Node|List|Deployment)\n)?(metadata: \\{name: [a-z]{1,5}\\}\n)?(spec: .{0,40}\n)?(items: .{0,20})?",
        "[\\[\\]{}:,\" a-z0-9-]{0,60}",
    ]) {
        let path = scratch(&format!("fuzz-{}.yaml", text.len()));
        std::fs::write(&path, &text).unwrap();
        let nodes = fleet_file();
        for args in [
            vec!["place", "--nodes", nodes.to_str().unwrap(), "--pods", path.to_str().unwrap()],
            vec!["place", "--nodes", path.to_str().unwrap(), "--pods", path.to_str().unwrap()],
        ] {
            let code = sliceguard(&args).status.code();
            prop_assert!(matches!(code, Some(0) | Some(2)), "exit {code:?} for {text:?}");
        }
        for format in ["node-register", "pod-devices", "lock", "reasons", "handshake"] {
            let code = sliceguard_stdin(&["decode", format, "-"], &text).status.code();
            prop_assert!(matches!(code, Some(0) | Some(2)), "decode {format} exit {code:?} for {text:?}");
        }
    }
}

#[test]
fn serve_refuses_leader_election_settings_that_could_overlap_two_leaders() {
    // A renew deadline as long as the lease would let a leader write after another may acquire.
    let out = sliceguard(&[
        "serve",
        "--leader-elect",
        "--leader-elect-identity=replica-a",
        "--leader-elect-renew-deadline=15s",
        "--kubeconfig=/nonexistent/kubeconfig",
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let message = stderr(&out);
    assert!(
        message.contains("--leader-elect-renew-deadline (15s) must be shorter than --leader-elect-lease-duration (15s)"),
        "{message}"
    );
    // Whole seconds only: the Lease stores leaseDurationSeconds.
    let out = sliceguard(&[
        "serve",
        "--leader-elect",
        "--leader-elect-identity=replica-a",
        "--leader-elect-lease-duration=1500ms",
        "--leader-elect-renew-deadline=1s",
        "--leader-elect-retry-period=200ms",
        "--kubeconfig=/nonexistent/kubeconfig",
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(
            "--leader-elect-lease-duration must be a whole number of seconds, got 1s 500ms"
        ),
        "{}",
        stderr(&out)
    );
}

#[test]
fn serve_refuses_a_stall_timeout_shorter_than_the_lock_timeout() {
    let out = sliceguard(&[
        "serve",
        "--lock-release=device-plugin",
        "--allocation-stall-timeout=2m",
        "--kubeconfig=/nonexistent/kubeconfig",
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out)
            .contains("--allocation-stall-timeout 2m0s is shorter than --node-lock-timeout 5m0s"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn serve_refuses_the_cpu_route_without_every_pod_watched_and_a_bad_label() {
    let out = sliceguard(&[
        "serve",
        "--route-cpu-pods=sliceguard.io/placement=fragmentation",
        "--watch-pods=gpu",
        "--kubeconfig=/nonexistent/kubeconfig",
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("--route-cpu-pods needs --watch-pods all"),
        "{}",
        stderr(&out)
    );
    let out = sliceguard(&["serve", "--route-cpu-pods=bad label"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("--route-cpu-pods") && stderr(&out).contains("\"bad label\""),
        "{}",
        stderr(&out)
    );
}
