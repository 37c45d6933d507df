//! The kube-rs driver and the `serve` / `register` commands against a tiny Kubernetes API stub on
//! loopback (no API server can run here): the requests each bind effect becomes, a 409 on the lock
//! patch, the event objects, `register` (dry run and real), `serve` end to end (watch sync,
//! filter, bind, SIGTERM), an unreachable API (exit 2 naming the address), and `serve --help`.

#[path = "../core/tests/bind_support/mod.rs"]
mod bind_support;
mod http_support;

use http_support::api_stub::{ApiStub, StubState, kubeconfig_for};
use http_support::{fleet_nodes, gpu_pod_json};
use serde_json::{Value, json};
use sliceguard::annotations::{BIND_PHASE, NODE_LOCK, NODE_REGISTER};
use sliceguard::server::extender::ExtenderBindingArgs;
use sliceguard::server::kube_cluster::KubeCluster;
use sliceguard::server::{Scheduler, SchedulerConfig};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_sliceguard");

fn temp_path(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("sliceguard-kube-{}-{name}", std::process::id()))
}

fn stub_state_with_fleet() -> StubState {
    stub_state_with_decision_for("n1")
}

/// Two nodes and pod `p`, carrying a filter decision for `node` (what `/bind` verifies).
fn stub_state_with_decision_for(node: &str) -> StubState {
    let mut state = StubState::default();
    for node in fleet_nodes(2) {
        state.put_node(serde_json::to_value(node).unwrap());
    }
    let mut pod = gpu_pod_json("p", "1000", "20");
    pod["spec"]["schedulerName"] = json!("sliceguard-scheduler");
    pod["metadata"]["annotations"] = json!({
        "hami.io/vgpu-node": node,
        "hami.io/vgpu-devices-allocated": "GPU-n1-0,NVIDIA,1000,20:;",
    });
    state.put_pod(pod);
    state
}

async fn kube_service(stub: &ApiStub) -> Arc<Scheduler<KubeCluster>> {
    let config = kube::Config::new(stub.url().parse().unwrap());
    let client = kube::Client::try_from(config).unwrap();
    let cluster = KubeCluster::new(client, "sliceguard-scheduler".into(), "test-0".into());
    let svc = Arc::new(Scheduler::new(
        cluster,
        SchedulerConfig::default(),
        sliceguard::server::service::system_clock(),
    ));
    svc.replace_nodes(&fleet_nodes(2));
    svc.replace_pods(&[]);
    svc
}

fn bind_args() -> ExtenderBindingArgs {
    ExtenderBindingArgs {
        pod_name: "p".into(),
        pod_namespace: "default".into(),
        pod_uid: "uid-p".into(),
        node: "n1".into(),
    }
}

#[tokio::test]
async fn each_bind_effect_is_one_api_request_with_the_right_body() {
    let stub = ApiStub::start(stub_state_with_fleet()).await;
    let svc = kube_service(&stub).await;
    let result = svc.bind(bind_args()).await;
    assert_eq!(result.error, "");
    let (lines, requests, pod, events, lock) = stub.with(|s| {
        (
            s.request_lines(),
            s.requests.clone(),
            s.pods["default/p"].clone(),
            s.events.clone(),
            s.node_annotation("n1", NODE_LOCK),
        )
    });
    assert_eq!(
        lines,
        [
            "GET /api/v1/namespaces/default/pods/p",
            "GET /api/v1/nodes/n1",
            "PATCH /api/v1/nodes/n1?",
            "PATCH /api/v1/namespaces/default/pods/p?",
            "POST /api/v1/namespaces/default/pods/p/binding?",
            "PATCH /api/v1/namespaces/default/pods/p?",
            "PATCH /api/v1/nodes/n1?",
            "POST /api/v1/namespaces/default/events?",
        ]
    );
    let lock_patch = requests[2].1.clone().unwrap();
    assert!(lock_patch["metadata"]["resourceVersion"].is_string());
    assert!(
        lock_patch["metadata"]["annotations"][NODE_LOCK]
            .as_str()
            .unwrap()
            .ends_with(",default,p")
    );
    let release = requests[6].1.clone().unwrap();
    assert_eq!(release["metadata"]["annotations"][NODE_LOCK], Value::Null);
    assert!(release["metadata"]["resourceVersion"].is_string());
    let binding = requests[4].1.clone().unwrap();
    assert_eq!(
        binding,
        json!({"apiVersion": "v1", "kind": "Binding",
               "metadata": {"name": "p", "namespace": "default", "uid": "uid-p"},
               "target": {"apiVersion": "v1", "kind": "Node", "name": "n1"}})
    );
    assert_eq!(pod["spec"]["nodeName"], "n1");
    assert_eq!(pod["metadata"]["annotations"][BIND_PHASE], "success");
    assert_eq!(lock, None);
    assert_eq!(events.len(), 1);
    let event = &events[0];
    assert_eq!(event["reason"], "BindingSucceed");
    assert_eq!(
        event["message"],
        "Successfully binding node [n1] to default/p"
    );
    assert_eq!(event["type"], "Normal");
    assert_eq!(event["source"]["component"], "sliceguard-scheduler");
    assert_eq!(event["reportingComponent"], "sliceguard-scheduler");
    assert_eq!(event["reportingInstance"], "test-0");
    assert_eq!(
        event["involvedObject"],
        json!({"apiVersion": "v1", "kind": "Pod", "name": "p", "namespace": "default", "uid": "uid-p"})
    );
    assert!(
        event["metadata"]["name"]
            .as_str()
            .unwrap()
            .starts_with("p.")
    );
}

#[tokio::test]
async fn a_409_from_the_api_on_the_lock_patch_is_retried_with_a_fresh_read() {
    let mut state = stub_state_with_fleet();
    state.node_patch_conflicts = 1;
    let stub = ApiStub::start(state).await;
    let svc = kube_service(&stub).await;
    assert_eq!(svc.bind(bind_args()).await.error, "");
    let lines = stub.with(|s| s.request_lines());
    assert_eq!(
        &lines[..5],
        [
            "GET /api/v1/namespaces/default/pods/p",
            "GET /api/v1/nodes/n1",
            "PATCH /api/v1/nodes/n1?",
            "GET /api/v1/nodes/n1",
            "PATCH /api/v1/nodes/n1?",
        ]
    );
    assert_eq!(stub.with(|s| s.node_annotation("n1", NODE_LOCK)), None);
    assert_eq!(
        stub.with(|s| s.pods["default/p"]["spec"]["nodeName"].clone()),
        "n1"
    );
}

#[tokio::test]
async fn api_errors_map_to_the_bind_protocols_failures() {
    let stub = ApiStub::start(stub_state_with_decision_for("nowhere")).await;
    let svc = kube_service(&stub).await;
    let mut args = bind_args();
    args.node = "nowhere".into();
    assert_eq!(svc.bind(args).await.error, "failed to get node nowhere");
    let mut args = bind_args();
    args.pod_name = "ghost".into();
    assert_eq!(svc.bind(args).await.error, "pod default/ghost not found");
    let events = stub.with(|s| s.events.clone());
    assert_eq!(events.len(), 2);
    assert!(
        events
            .iter()
            .all(|e| e["reason"] == "BindingFailed" && e["type"] == "Warning")
    );
}

fn write_kubeconfig(stub: &ApiStub, name: &str) -> PathBuf {
    let path = temp_path(name);
    stub.kubeconfig(&path);
    path
}

async fn run_cli(args: Vec<String>) -> std::process::Output {
    tokio::task::spawn_blocking(move || Command::new(BIN).args(args).output().unwrap())
        .await
        .unwrap()
}

#[tokio::test]
async fn register_dry_run_prints_the_patches_for_the_selected_nodes_only() {
    let mut state = StubState::default();
    state.add_node("w1", json!({"gpu": "on"}));
    state.add_node("w2", json!({}));
    let stub = ApiStub::start(state).await;
    let kubeconfig = write_kubeconfig(&stub, "register-dry.yaml");
    let out = run_cli(
        [
            "register",
            "--nodes",
            "gpu=on",
            "--gpus-per-node",
            "2",
            "--memory",
            "1000",
            "--split",
            "4",
            "--dry-run",
            "--kubeconfig",
        ]
        .iter()
        .map(|s| s.to_string())
        .chain([kubeconfig.display().to_string()])
        .collect(),
    )
    .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2, "{stdout}");
    assert_eq!(lines[0]["node"], "w1");
    let register = lines[0]["patch"]["metadata"]["annotations"][NODE_REGISTER]
        .as_str()
        .unwrap();
    assert!(register.contains("\"id\":\"GPU-w1-1\""), "{register}");
    assert_eq!(lines[1]["subresource"], "status");
    assert_eq!(
        lines[1]["patch"]["status"]["capacity"]["nvidia.com/gpu"],
        "8"
    );
    let writes = stub.with(|s| {
        s.request_lines()
            .into_iter()
            .filter(|l| !l.starts_with("GET"))
            .count()
    });
    assert_eq!(writes, 0, "a dry run writes nothing");
    let _ = std::fs::remove_file(kubeconfig);
}

#[tokio::test]
async fn register_writes_annotations_and_status_capacity() {
    let mut state = StubState::default();
    state.add_node("w1", json!({"gpu": "on"}));
    let stub = ApiStub::start(state).await;
    let kubeconfig = write_kubeconfig(&stub, "register.yaml");
    let out = run_cli(vec![
        "register".into(),
        "--nodes".into(),
        "gpu=on".into(),
        "--gpus-per-node".into(),
        "8".into(),
        "--memory".into(),
        "81920".into(),
        "--kubeconfig".into(),
        kubeconfig.display().to_string(),
    ])
    .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        "node/w1 registered: 8 × 81920 MiB NVIDIA-H100-80GB-HBM3, split 10 (nvidia.com/gpu = 80)\n"
    );
    stub.with(|s| {
        let node = &s.nodes["w1"];
        let devices = sliceguard::codec::register::parse(
            node["metadata"]["annotations"][NODE_REGISTER]
                .as_str()
                .unwrap(),
        )
        .unwrap();
        assert_eq!(devices.len(), 8);
        assert!(
            node["metadata"]["annotations"]["hami.io/node-handshake"]
                .as_str()
                .unwrap()
                .starts_with("Requesting_")
        );
        assert_eq!(node["status"]["capacity"]["nvidia.com/gpu"], "80");
        assert_eq!(node["status"]["allocatable"]["nvidia.com/gpu"], "80");
        assert!(
            s.request_lines()
                .contains(&"PATCH /api/v1/nodes/w1/status?".to_string())
        );
    });

    let out = run_cli(vec![
        "register".into(),
        "--nodes".into(),
        "gpu=off".into(),
        "--gpus-per-node".into(),
        "8".into(),
        "--memory".into(),
        "81920".into(),
        "--kubeconfig".into(),
        kubeconfig.display().to_string(),
    ])
    .await;
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8(out.stderr).unwrap().trim(),
        "error: no node matches --nodes \"gpu=off\""
    );
    let _ = std::fs::remove_file(kubeconfig);
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn http(port: u16, method: &str, path: &str, body: &str) -> Option<(u16, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .ok()?;
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.ok()?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.ok()?;
    let code = answer.get(9..12)?.parse().ok()?;
    let body = answer.split_once("\r\n\r\n")?.1.to_string();
    Some((code, body))
}

#[tokio::test]
async fn serve_syncs_filters_binds_and_stops_on_sigterm() {
    let stub = ApiStub::start(stub_state_with_fleet()).await;
    let kubeconfig = write_kubeconfig(&stub, "serve.yaml");
    let (extender, metrics) = (free_port(), free_port());
    let mut child = Command::new(BIN)
        .args([
            "serve",
            "--kubeconfig",
            &kubeconfig.display().to_string(),
            "--http_bind",
            &format!("127.0.0.1:{extender}"),
            "--metrics-bind-address",
            &format!("127.0.0.1:{metrics}"),
            "--log-level",
            "warn",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();

    let started = Instant::now();
    loop {
        if let Some((200, _)) = http(extender, "GET", "/readyz", "").await {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "never ready");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let args =
        json!({"Pod": stub.with(|s| s.pods["default/p"].clone()), "NodeNames": ["n1", "n2"]});
    let (code, body) = http(extender, "POST", "/filter", &args.to_string())
        .await
        .unwrap();
    assert_eq!(code, 200);
    let answer: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(answer["NodeNames"], json!(["n1"]), "{answer}");
    let bind = json!({"PodName": "p", "PodNamespace": "default", "PodUID": "uid-p", "Node": "n1"});
    let (code, body) = http(extender, "POST", "/bind", &bind.to_string())
        .await
        .unwrap();
    assert_eq!((code, body.as_str()), (200, "{\"Error\":\"\"}"));

    // The pod watch sees the patched pod: the assumption becomes a counted allocation.
    let (code, text) = http(metrics, "GET", "/metrics", "").await.unwrap();
    assert_eq!(code, 200);
    assert!(
        text.contains("sliceguard_bind_outcomes_total{outcome=\"bound\"} 1"),
        "{text}"
    );
    stub.with(|s| {
        let pod = &s.pods["default/p"];
        assert_eq!(pod["spec"]["nodeName"], "n1");
        assert_eq!(pod["metadata"]["labels"]["hami.io/vgpu-node"], "n1");
        assert_eq!(pod["metadata"]["annotations"][BIND_PHASE], "success");
        assert_eq!(s.node_annotation("n1", NODE_LOCK), None);
        let reasons: Vec<&str> = s
            .events
            .iter()
            .filter_map(|e| e["reason"].as_str())
            .collect();
        assert_eq!(reasons, ["FilteringSucceed", "BindingSucceed"]);
        assert!(
            s.request_lines()
                .iter()
                .any(|l| l.starts_with("GET /api/v1/pods?") && l.contains("watch=true"))
        );
    });

    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let waited = tokio::task::spawn_blocking(move || {
        let started = Instant::now();
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                let mut stderr = String::new();
                use std::io::Read;
                child
                    .stderr
                    .take()
                    .unwrap()
                    .read_to_string(&mut stderr)
                    .unwrap();
                return Some((status, stderr));
            }
            if started.elapsed() > Duration::from_secs(20) {
                let _ = child.kill();
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    })
    .await
    .unwrap();
    let (status, stderr) = waited.expect("serve exits after SIGTERM");
    assert!(status.success(), "{status:?}: {stderr}");
    let _ = std::fs::remove_file(kubeconfig);
}

#[test]
fn serve_exits_2_naming_the_address_when_the_api_is_unreachable() {
    let kubeconfig = temp_path("unreachable.yaml");
    std::fs::write(&kubeconfig, kubeconfig_for("https://127.0.0.1:1")).unwrap();
    let started = Instant::now();
    let out = Command::new(BIN)
        .args([
            "serve",
            "--kubeconfig",
            &kubeconfig.display().to_string(),
            "--kube-timeout",
            "3s",
            "--log-level",
            "off",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(
        stderr.starts_with("error: cannot reach the Kubernetes API at https://127.0.0.1:1/: "),
        "{stderr}"
    );
    assert!(started.elapsed() < Duration::from_secs(10));

    // A kubeconfig that does not exist is exit 2 too, naming the file.
    let out = Command::new(BIN)
        .args([
            "serve",
            "--kubeconfig",
            "/nonexistent/kubeconfig",
            "--log-level",
            "off",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8(out.stderr)
            .unwrap()
            .contains("/nonexistent/kubeconfig")
    );
    let _ = std::fs::remove_file(kubeconfig);
}

#[tokio::test]
async fn serve_exits_2_naming_the_file_when_the_certificate_does_not_load() {
    let stub = ApiStub::start(stub_state_with_fleet()).await;
    let kubeconfig = write_kubeconfig(&stub, "tls.yaml");
    let missing = temp_path("no-such.crt");
    let out = run_cli(vec![
        "serve".into(),
        "--kubeconfig".into(),
        kubeconfig.display().to_string(),
        "--tls-cert".into(),
        missing.display().to_string(),
        "--tls-key".into(),
        missing.display().to_string(),
        "--log-level".into(),
        "off".into(),
    ])
    .await;
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(
        stderr.starts_with(&format!(
            "error: cannot load TLS certificate from {}",
            missing.display()
        )),
        "{stderr}"
    );
    // --tls-cert without --tls-key is a usage error.
    let out = run_cli(vec![
        "serve".into(),
        "--tls-cert".into(),
        missing.display().to_string(),
    ])
    .await;
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8(out.stderr).unwrap().contains("--tls-key"));
    let _ = std::fs::remove_file(kubeconfig);
}

#[test]
fn serve_help_documents_every_flag() {
    let out = Command::new(BIN)
        .args(["serve", "--help"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    for flag in [
        "--kubeconfig",
        "--context",
        "--kube-timeout",
        "--scheduler-name",
        "--node-scheduler-policy",
        "--gpu-scheduler-policy",
        "--node-lock-timeout",
        "--lock-release",
        "--force-overwrite-default-scheduler",
        "--webhook-bind-address",
        "--tls-cert",
        "--tls-key",
        "--http_bind",
        "--metrics-bind-address",
        "--sync-timeout",
        "--shutdown-grace",
        "--log-level",
        "--log-format",
        "--allocation-stall-timeout",
        "--kube-api-qps",
        "--kube-api-retries",
        "--watch-pods",
        "--route-cpu-pods",
    ] {
        assert!(help.contains(flag), "{flag} missing from serve --help");
    }
    // Every option line is followed by a description.
    let lines: Vec<&str> = help.lines().collect();
    for (i, line) in lines.iter().enumerate() {
        if line.trim_start().starts_with("--") {
            let described = lines.get(i + 1).is_some_and(|next| {
                !next.trim().is_empty() && !next.trim_start().starts_with("--")
            });
            assert!(described, "no description for {line}");
        }
    }
    for default in [
        "[default: 5m]",
        "[default: after-bind]",
        "[default: binpack]",
        "[default: spread]",
        "[default: sliceguard-scheduler]",
        "[default: :9395]",
        "[default: all]",
    ] {
        assert!(help.contains(default), "{default} missing");
    }
    assert!(help.contains("device-plugin"));
}

#[tokio::test]
async fn a_bind_to_another_node_than_the_decision_is_refused_before_any_write() {
    let stub = ApiStub::start(stub_state_with_fleet()).await;
    let svc = kube_service(&stub).await;
    let mut args = bind_args();
    args.node = "n2".into();
    let error = svc.bind(args).await.error;
    assert_eq!(
        error,
        "pod default/p cannot be bound to node n2: its hami.io/vgpu-node annotation places it on node n1, not n2"
    );
    let locked = stub.with(|s| {
        s.nodes
            .values()
            .any(|n| !n["metadata"]["annotations"][NODE_LOCK].is_null())
    });
    assert!(!locked, "no lock may be written for a refused bind");
}
