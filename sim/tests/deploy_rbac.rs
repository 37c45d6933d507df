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
use sliceguard::objects::{FleetSpec, GpuAsk, gpu_pod};
use sliceguard::server::api_requests::classify;
use sliceguard::server::{KubeSource, SchedulerConfig, ServeLimits, ServeOptions};
use sliceguard_sim::http::{ApiState, SharedStore};
use sliceguard_sim::live::{LiveCluster, LiveOptions, WebhookTarget};
use sliceguard_sim::store::Resource;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rbac_matches_the_requests_serve_and_register_issue() {
    let docs = rendered("fake-fleet");
    let dir = temp_dir();
    let cluster = LiveCluster::start(LiveOptions {
        fleet: FleetSpec {
            nodes: 2,
            gpus_per_node: 2,
            ..FleetSpec::default()
        },
        ..LiveOptions::default()
    })
    .await
    .unwrap();

    // serve, with its own recorded façade.
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
    let loopback = "127.0.0.1:0".parse().unwrap();
    let running = sliceguard::server::start(ServeOptions {
        kube: KubeSource {
            kubeconfig: Some(serve_kubeconfig),
            context: None,
            timeout: Duration::from_secs(5),
        },
        config: SchedulerConfig::default(),
        webhook_addr: loopback,
        tls: Some((cert, key)),
        extender_addr: loopback,
        metrics_addr: loopback,
        shutdown_grace: Duration::from_secs(2),
        limits: ServeLimits::default(),
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

    // Three pods that fit and one that does not: filter, bind, locks, events.
    let client = kube::Client::try_from(kube::Config::new(cluster.url().parse().unwrap())).unwrap();
    let pods: Api<Pod> = Api::namespaced(client, "default");
    for name in ["a", "b", "c"] {
        pods.create(
            &PostParams::default(),
            &gpu_pod(name, &[], &[GpuAsk::fraction(1000, 10)]),
        )
        .await
        .unwrap();
    }
    pods.create(
        &PostParams::default(),
        &gpu_pod("too-big", &[], &[GpuAsk::fraction(10_000_000, 10)]),
    )
    .await
    .unwrap();
    let shared = cluster.shared();
    let started = Instant::now();
    while !["a", "b", "c"].iter().all(|n| bound(&shared, n)) {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "pods not bound"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Let the watches see the bound pods and the too-big pod's filter run at least once.
    tokio::time::sleep(Duration::from_millis(500)).await;
    running.stop().await;

    let serve_used = used(&serve_log);
    let serve_granted = granted(&docs, "sliceguard");
    let missing: Vec<_> = serve_used.difference(&serve_granted).collect();
    let unused: Vec<_> = serve_granted.difference(&serve_used).collect();
    assert!(
        missing.is_empty() && unused.is_empty(),
        "serve's ClusterRole differs from what serve issues:\n  used but not granted: {missing:?}\n  granted but never used: {unused:?}"
    );

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
