//! Least privilege, derived from what the code actually asks: `serve` (its real kube client: watches,
//! filter, bind, events) and `register` run against the simulated API, each through its own façade
//! over the shared store with a layer recording every request; each request maps to its RBAC verb
//! (`sliceguard::server::api_requests::classify`, the same function that labels
//! `sliceguard_api_errors_total`), and the set must equal the rules of the ClusterRole the rendered
//! deployment binds to that command's ServiceAccount: a verb the code uses but the Role lacks fails,
//! and so does a verb in the Role the code never uses.
//!
//! Non-resource requests (`/version`, discovery) are left out: every authenticated user may make
//! them (`system:discovery`, `system:public-info-viewer`).
//!
//! Needs `kubectl` (its built-in kustomize renders `deploy/overlays/fake-fleet`).

use axum::extract::Request;
use axum::middleware::Next;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};
use kube::api::{Api, PostParams};
use serde_json::Value;
use sliceguard::bind::ReleaseMode;
use sliceguard::objects::{FleetSpec, GpuAsk, gpu_pod};
use sliceguard::server::api_requests::classify;
use sliceguard::server::{KubeSource, SchedulerConfig, ServeLimits, ServeOptions};
use sliceguard_sim::http::{ApiState, SharedStore};
use sliceguard_sim::live::{LiveCluster, LiveOptions, WebhookTarget};
use sliceguard_sim::store::Resource;
use sliceguard_sim::world::DevicePlugin;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// (API group, resource or resource/subresource, verb).
type Permission = (String, String, String);

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// `kubectl kustomize deploy/overlays/<overlay>`, every document as JSON.
fn rendered(overlay: &str) -> Vec<Value> {
    let dir = repo().join("deploy/overlays").join(overlay);
    let out = std::process::Command::new("kubectl")
        .arg("kustomize")
        .arg(&dir)
        .output()
        .expect("kubectl on PATH (ci/install-kind-tools.sh kubectl installs it)");
    assert!(
        out.status.success(),
        "kubectl kustomize {}: {}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    text.split("\n---\n")
        .filter(|d| !d.trim().is_empty())
        .map(|d| serde_saphyr::from_str::<Value>(d).unwrap())
        .collect()
}

/// The permissions of the ClusterRole bound to ServiceAccount `account` in sliceguard-system.
fn granted(docs: &[Value], account: &str) -> BTreeSet<Permission> {
    let bindings: Vec<ClusterRoleBinding> = docs
        .iter()
        .filter(|d| d["kind"] == "ClusterRoleBinding")
        .map(|d| serde_json::from_value(d.clone()).unwrap())
        .collect();
    let roles: Vec<String> = bindings
        .iter()
        .filter(|b| {
            b.subjects.iter().flatten().any(|s| {
                s.kind == "ServiceAccount"
                    && s.name == account
                    && s.namespace.as_deref() == Some("sliceguard-system")
            })
        })
        .map(|b| b.role_ref.name.clone())
        // The kube-scheduler container's roles: Kubernetes' own, not sliceguard's code.
        .filter(|r| !r.starts_with("system:"))
        .collect();
    assert_eq!(
        roles,
        [account],
        "{account} is bound to its own ClusterRole only"
    );
    let role: ClusterRole = docs
        .iter()
        .filter(|d| d["kind"] == "ClusterRole" && d["metadata"]["name"] == account)
        .map(|d| serde_json::from_value(d.clone()).unwrap())
        .next()
        .unwrap_or_else(|| panic!("no ClusterRole {account}"));
    let mut out = BTreeSet::new();
    for rule in role.rules.unwrap_or_default() {
        assert!(rule.resource_names.is_none(), "{account}: {rule:?}");
        for group in rule.api_groups.iter().flatten() {
            for resource in rule.resources.iter().flatten() {
                for verb in &rule.verbs {
                    assert_ne!(verb, "*", "{account}: no wildcard verbs");
                    out.insert((group.clone(), resource.clone(), verb.clone()));
                }
            }
        }
    }
    out
}

/// A second façade over `shared` that records each request line before serving it.
async fn recording_facade(
    shared: Arc<SharedStore>,
) -> (String, Arc<Mutex<Vec<(String, String, Option<String>)>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let log = Arc::new(Mutex::new(Vec::new()));
    let recorded = log.clone();
    let router = sliceguard_sim::http::router(ApiState {
        shared,
        admission: None,
        address: address.clone(),
    })
    .layer(axum::middleware::from_fn(
        move |request: Request, next: Next| {
            let log = recorded.clone();
            async move {
                log.lock().unwrap().push((
                    request.method().to_string(),
                    request.uri().path().to_string(),
                    request.uri().query().map(String::from),
                ));
                next.run(request).await
            }
        },
    ));
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    (format!("http://{address}"), log)
}

fn used(log: &Mutex<Vec<(String, String, Option<String>)>>) -> BTreeSet<Permission> {
    log.lock()
        .unwrap()
        .iter()
        .filter_map(|(method, path, query)| classify(method, path, query.as_deref()))
        .map(|r| (r.group.clone(), r.rbac_resource(), r.verb.to_string()))
        .collect()
}

fn temp_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("sliceguard-rbac-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn bound(shared: &SharedStore, name: &str) -> bool {
    shared
        .read()
        .get(Resource::Pods, Some("default"), name)
        .map(|pod| pod["spec"]["nodeName"].is_string())
        .unwrap_or(false)
}

/// A lock holder bound to `node`, still Pending, in `bind-phase: allocating`, whose lock was taken
/// 20 minutes ago: past the device-plugin stall deadline (15m), so serve's reaper marks it failed and
/// deletes it (the only path that deletes a pod).
fn plant_stalled_holder(shared: &SharedStore, node: &str) {
    let taken = jiff::Timestamp::now() - jiff::SignedDuration::from_mins(20);
    let lock = format!("{},default,stalled", taken.strftime("%Y-%m-%dT%H:%M:%SZ"));
    shared.write(|store| {
        let pod = serde_json::json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "stalled", "namespace": "default",
                "annotations": {"hami.io/bind-phase": "allocating"}},
            "spec": {"nodeName": node, "schedulerName": "sliceguard-scheduler",
                "containers": [{"name": "c", "image": "x",
                    "resources": {"limits": {"nvidia.com/gpu": "1"}}}]},
            "status": {"phase": "Pending"}
        });
        store.create(Resource::Pods, Some("default"), pod).unwrap();
        store
            .patch(
                Resource::Nodes,
                None,
                node,
                sliceguard_sim::store::Part::Main,
                sliceguard_sim::store::PatchType::Merge,
                &serde_json::json!({"metadata": {"annotations": {"hami.io/mutex.lock": lock}}}),
            )
            .unwrap();
    });
}

/// The stalled holder's annotations and its node's lock, for a failure message.
fn describe_stalled(shared: &SharedStore, node: &str) -> String {
    let store = shared.read();
    let pod = store.get(Resource::Pods, Some("default"), "stalled").ok();
    let lock = store.get(Resource::Nodes, None, node).ok();
    format!(
        "annotations {:?}, node lock {:?}",
        pod.map(|p| p["metadata"]["annotations"].clone()),
        lock.map(|n| n["metadata"]["annotations"]["hami.io/mutex.lock"].clone())
    )
}

/// Runs serve's real kube client against `cluster` through a recording façade in `mode`, drives
/// filters, binds and events (and, in device-plugin mode, the reaper's stalled-holder path), and
/// returns the permissions its requests need.
async fn serve_permissions(
    cluster: &LiveCluster,
    dir: &Path,
    mode: ReleaseMode,
) -> BTreeSet<Permission> {
    let device_plugin = mode == ReleaseMode::DevicePlugin;
    let (serve_url, serve_log) = recording_facade(cluster.shared()).await;
    let certified =
        rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
    let cert = dir.join("tls.crt");
    let key = dir.join("tls.key");
    std::fs::write(&cert, certified.cert.pem()).unwrap();
    std::fs::write(&key, certified.signing_key.serialize_pem()).unwrap();
    let serve_kubeconfig = dir.join("serve.kubeconfig");
    std::fs::write(
        &serve_kubeconfig,
        sliceguard_sim::http::kubeconfig(&serve_url),
    )
    .unwrap();
    let shared = cluster.shared();
    let first_node: String = shared
        .read()
        .typed::<k8s_openapi::api::core::v1::Node>(Resource::Nodes)[0]
        .metadata
        .name
        .clone()
        .unwrap();
    if device_plugin {
        plant_stalled_holder(&shared, &first_node);
    }
    let mut config = SchedulerConfig::default();
    config.bind.release_mode = mode;
    let loopback = "127.0.0.1:0".parse().unwrap();
    let running = sliceguard::server::start(ServeOptions {
        kube: KubeSource {
            kubeconfig: Some(serve_kubeconfig),
            context: None,
            timeout: Duration::from_secs(5),
        },
        config,
        webhook_addr: loopback,
        tls: Some((cert, key)),
        extender_addr: loopback,
        metrics_addr: loopback,
        shutdown_grace: Duration::from_secs(2),
        limits: ServeLimits::default(),
        election: None,
    })
    .await
    .unwrap();
    let webhook_port = running.webhook_addr.unwrap().port();
    cluster
        .configure(
            Some(WebhookTarget {
                url: format!("https://127.0.0.1:{webhook_port}/webhook"),
                ca_pem: Some(certified.cert.pem()),
                ignore_failures: false,
                scope: None,
            }),
            Some(format!("http://{}", running.extender_addr)),
        )
        .unwrap();
    let started = Instant::now();
    while !running.service.is_ready() {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "serve never ready"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Pods that fit and one that does not: filter, bind, locks, events. In device-plugin mode the
    // first bind on a node holds its lock for the device plugin, so wait for one bind only.
    let client = kube::Client::try_from(kube::Config::new(cluster.url().parse().unwrap())).unwrap();
    let pods: Api<Pod> = Api::namespaced(client, "default");
    let names = ["a", "b", "c"].map(|n| format!("{n}-{}", mode.as_str()));
    for name in &names {
        pods.create(
            &PostParams::default(),
            &gpu_pod(name, &[], &[GpuAsk::fraction(1000, 10)]),
        )
        .await
        .unwrap();
    }
    pods.create(
        &PostParams::default(),
        &gpu_pod(
            &format!("too-big-{}", mode.as_str()),
            &[],
            &[GpuAsk::fraction(10_000_000, 10)],
        ),
    )
    .await
    .unwrap();
    let started = Instant::now();
    loop {
        let bound_count = names.iter().filter(|n| bound(&shared, n)).count();
        let stalled_gone = shared
            .read()
            .get(Resource::Pods, Some("default"), "stalled")
            .is_err();
        if (device_plugin && bound_count >= 1 && stalled_gone) || bound_count == names.len() {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{}: {bound_count} pods bound, stalled holder gone: {stalled_gone}; stalled: {}",
            mode.as_str(),
            describe_stalled(&shared, &first_node),
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Let the watches see the bound pods and the too-big pod's filter run at least once.
    tokio::time::sleep(Duration::from_millis(500)).await;
    running.stop().await;
    used(&serve_log)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rbac_matches_the_requests_serve_and_register_issue() {
    let dir = temp_dir();
    let start = |device_plugin| {
        LiveCluster::start(LiveOptions {
            fleet: FleetSpec {
                nodes: 2,
                gpus_per_node: 2,
                ..FleetSpec::default()
            },
            device_plugin,
            ..LiveOptions::default()
        })
    };
    // Device-plugin mode on nodes whose plugin never answers: the planted holder stays Pending
    // mid-allocation, so only the stall path (mark failed, delete) frees its lock.
    let silent = start(DevicePlugin::Silent).await.unwrap();
    let serve_used = serve_permissions(&silent, &dir, ReleaseMode::DevicePlugin).await;
    silent.stop().await;
    let serve_granted = granted(&rendered("hami-device-plugin"), "sliceguard");
    let missing: Vec<_> = serve_used.difference(&serve_granted).collect();
    let unused: Vec<_> = serve_granted.difference(&serve_used).collect();
    assert!(
        missing.is_empty() && unused.is_empty(),
        "hami-device-plugin: serve's ClusterRole differs from what serve issues:\n  used but not granted: {missing:?}\n  granted but never used: {unused:?}"
    );

    let cluster = start(DevicePlugin::None).await.unwrap();
    let docs = rendered("fake-fleet");
    {
        let overlay = "fake-fleet";
        let serve_used = serve_permissions(&cluster, &dir, ReleaseMode::AfterBind).await;
        let serve_granted = granted(&rendered(overlay), "sliceguard");
        let missing: Vec<_> = serve_used.difference(&serve_granted).collect();
        let unused: Vec<_> = serve_granted.difference(&serve_used).collect();
        assert!(
            missing.is_empty() && unused.is_empty(),
            "{overlay}: serve's ClusterRole differs from what serve issues:\n  used but not granted: {missing:?}\n  granted but never used: {unused:?}"
        );
    }

    // register, with its own recorded façade.
    let (register_url, register_log) = recording_facade(cluster.shared()).await;
    let register_kubeconfig = dir.join("register.kubeconfig");
    std::fs::write(
        &register_kubeconfig,
        sliceguard_sim::http::kubeconfig(&register_url),
    )
    .unwrap();
    let args: Vec<String> = [
        "sliceguard",
        "register",
        "--kubeconfig",
        &register_kubeconfig.display().to_string(),
        "--nodes",
        "gpu=on",
        "--gpus-per-node",
        "2",
        "--memory",
        "81920",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    tokio::task::spawn_blocking(move || sliceguard::cli::run_from(args))
        .await
        .unwrap()
        .unwrap_or_else(|f| panic!("register failed: {}", f.message));
    let register_used = used(&register_log);
    let register_granted = granted(&docs, "sliceguard-register");
    let missing: Vec<_> = register_used.difference(&register_granted).collect();
    let unused: Vec<_> = register_granted.difference(&register_used).collect();
    assert!(
        missing.is_empty() && unused.is_empty(),
        "register's ClusterRole differs from what register issues:\n  used but not granted: {missing:?}\n  granted but never used: {unused:?}"
    );

    cluster.stop().await;
    let _ = std::fs::remove_dir_all(dir);
}
