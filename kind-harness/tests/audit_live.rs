//! `kind-harness audit` against the simulated cluster's REST façade (a live API over HTTP, read
//! with kube-rs exactly as a real cluster is): healthy exits 0; a planted over-commit and a planted
//! stale lock are both reported and the exit is 1; an unreachable cluster exits 2.

mod binary;

use k8s_openapi::api::core::v1::Pod;
use serde_json::Value;
use sliceguard::annotations::{DEVICES_ALLOCATED, NODE_LOCK, VGPU_NODE};
use sliceguard::objects::{FleetSpec, GpuAsk, fleet, gpu_pod, with_annotations};
use sliceguard_sim::http::{RunningApi, SharedStore, kubeconfig, serve};
use sliceguard_sim::store::{Resource, Store};
use std::path::PathBuf;

fn spec() -> FleetSpec {
    FleetSpec {
        nodes: 2,
        gpus_per_node: 2,
        memory_mib: 10000,
        ..FleetSpec::default()
    }
}

fn placed(name: &str, node: &str, alloc: &str) -> Value {
    let mut pod: Pod = with_annotations(
        gpu_pod(name, &[], &[GpuAsk::fraction(6000, 30)]),
        &[(DEVICES_ALLOCATED, alloc), (VGPU_NODE, node)],
    );
    pod.spec.as_mut().unwrap().node_name = Some(node.into());
    serde_json::to_value(pod).unwrap()
}

/// A store holding the fleet and one healthy pod; `faults` adds the planted over-commit and lock.
fn store(faults: bool) -> Store {
    let now = jiff::Timestamp::now();
    let mut store = Store::new(now);
    for mut node in fleet(&spec(), now) {
        if faults && node.metadata.name.as_deref() == Some("hami-sim-worker2") {
            let stale = now - jiff::SignedDuration::from_mins(10);
            node.metadata.annotations.as_mut().unwrap().insert(
                NODE_LOCK.into(),
                format!(
                    "{},default,long-gone",
                    sliceguard::codec::lock::render_rfc3339(stale, 0)
                ),
            );
        }
        store
            .create(Resource::Nodes, None, serde_json::to_value(node).unwrap())
            .unwrap();
    }
    let ok = placed(
        "fits",
        "hami-sim-worker",
        "GPU-hami-sim-worker-0,NVIDIA,6000,30:;",
    );
    store.create(Resource::Pods, Some("default"), ok).unwrap();
    if faults {
        let over = placed(
            "overflows",
            "hami-sim-worker",
            "GPU-hami-sim-worker-0,NVIDIA,6000,30:;",
        );
        store.create(Resource::Pods, Some("default"), over).unwrap();
    }
    store
}

struct Served {
    runtime: tokio::runtime::Runtime,
    api: Option<RunningApi>,
    kubeconfig: PathBuf,
}

impl Drop for Served {
    fn drop(&mut self) {
        if let Some(api) = self.api.take() {
            let _ = api.shutdown.send(());
        }
        let _ = std::fs::remove_file(&self.kubeconfig);
        let _ = &self.runtime;
    }
}

fn served(faults: bool, tag: &str) -> Served {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let shared = SharedStore::new(store(faults));
    let api = runtime
        .block_on(serve(shared, None, "127.0.0.1:0"))
        .unwrap();
    let path = std::env::temp_dir().join(format!(
        "kind-harness-audit-{tag}-{}.kubeconfig",
        std::process::id()
    ));
    std::fs::write(&path, kubeconfig(&api.url)).unwrap();
    Served {
        runtime,
        api: Some(api),
        kubeconfig: path,
    }
}

fn audit_binary(kubeconfig: &PathBuf) -> (i32, String, String) {
    binary::outcome(
        binary::kind_harness()
            .arg("audit")
            .arg("--kubeconfig")
            .arg(kubeconfig),
    )
}

#[test]
fn a_healthy_cluster_exits_0() {
    let cluster = served(false, "healthy");
    let (code, stdout, stderr) = audit_binary(&cluster.kubeconfig);
    assert_eq!(code, 0, "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(
        stdout.contains("2 GPU nodes, 4 devices, 1 pods holding devices, 0 locks"),
        "{stdout}"
    );
    assert!(stdout.contains("6000/10000 MiB"), "{stdout}");
    assert!(stdout.contains("no problem found"), "{stdout}");
}

#[test]
fn a_planted_over_commit_and_stale_lock_are_both_reported_and_exit_1() {
    let cluster = served(true, "faulty");
    let (code, stdout, stderr) = audit_binary(&cluster.kubeconfig);
    assert_eq!(code, 1, "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(
        stdout.contains("over-committed")
            && stdout.contains("node/hami-sim-worker/GPU-hami-sim-worker-0")
            && stdout.contains("memory 12000 of 10000 MiB"),
        "{stdout}"
    );
    assert!(
        stdout.contains("stale-lock") && stdout.contains("node/hami-sim-worker2"),
        "{stdout}"
    );
    assert!(
        stdout.contains("orphan-lock") && stdout.contains("default/long-gone"),
        "{stdout}"
    );

    // The same through the library, with JSON kinds.
    let args = kind_harness::audit::AuditArgs {
        kubeconfig: Some(cluster.kubeconfig.clone()),
        context: None,
        lock_timeout: std::time::Duration::from_secs(300),
        json: true,
        connect_timeout: 5,
    };
    let report = cluster
        .runtime
        .block_on(kind_harness::audit::audit_cluster(&args))
        .unwrap();
    let kinds: Vec<&str> = report.findings.iter().map(|f| f.kind.as_str()).collect();
    assert_eq!(kinds, vec!["over-committed", "stale-lock", "orphan-lock"]);
    // A longer timeout makes the lock young enough; it is still held by a missing pod.
    let args = kind_harness::audit::AuditArgs {
        lock_timeout: std::time::Duration::from_secs(3600),
        ..args
    };
    let report = cluster
        .runtime
        .block_on(kind_harness::audit::audit_cluster(&args))
        .unwrap();
    let kinds: Vec<&str> = report.findings.iter().map(|f| f.kind.as_str()).collect();
    assert_eq!(kinds, vec!["over-committed", "orphan-lock"]);
}

#[test]
fn an_unreachable_cluster_exits_2_naming_the_address() {
    let path = std::env::temp_dir().join(format!(
        "kind-harness-audit-unreachable-{}.kubeconfig",
        std::process::id()
    ));
    // Port 9 (discard) on loopback: nothing listens there in a test environment.
    std::fs::write(&path, kubeconfig("http://127.0.0.1:9")).unwrap();
    let (code, stdout, stderr) = audit_binary(&path);
    let _ = std::fs::remove_file(&path);
    assert_eq!(code, 2, "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(stderr.contains("127.0.0.1:9"), "{stderr}");
}

/// On the embedded cluster, with sliceguard itself placing ten sharing pods on one GPU: the audit
/// sees 80000 of 81920 MiB used and nothing wrong; a pod claiming 8000 MiB more on that GPU is
/// denied by the webhook; planted behind admission, it is reported as forged when it requests no
/// GPU, and makes the GPU over-committed when it requests one.
#[test]
fn the_audit_agrees_with_sliceguards_own_placements_and_catches_a_planted_one() {
    use k8s_openapi::api::core::v1::Pod;
    use kube::api::{Api, PostParams};
    use sliceguard::annotations::USE_GPUUUID;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let embedded =
            sliceguard_sim::embedded::Embedded::start(sliceguard_sim::embedded::EmbeddedOptions {
                fleet: FleetSpec {
                    nodes: 1,
                    gpus_per_node: 2,
                    ..FleetSpec::default()
                },
                ..Default::default()
            })
            .await
            .unwrap();
        let path = std::env::temp_dir().join(format!(
            "kind-harness-audit-embedded-{}.kubeconfig",
            std::process::id()
        ));
        std::fs::write(&path, embedded.kubeconfig()).unwrap();
        let pods: Api<Pod> = Api::namespaced(embedded.client(), "default");
        let gpu = "GPU-hami-sim-worker-0";
        for i in 0..10 {
            let pod = with_annotations(
                gpu_pod(&format!("share-{i}"), &[], &[GpuAsk::fraction(8000, 10)]),
                &[(USE_GPUUUID, gpu)],
            );
            pods.create(&PostParams::default(), &pod).await.unwrap();
        }
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            let list = pods.list(&Default::default()).await.unwrap();
            let running = list
                .items
                .iter()
                .filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
                .count();
            if running == 10 {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "only {running} of 10 Running"
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        let args = kind_harness::audit::AuditArgs {
            kubeconfig: Some(path.clone()),
            context: None,
            lock_timeout: std::time::Duration::from_secs(300),
            json: false,
            connect_timeout: 5,
        };
        let report = kind_harness::audit::audit_cluster(&args).await.unwrap();
        assert!(report.healthy(), "{}", report.text());
        assert_eq!(report.pods_with_devices, 10);
        let used = report.usage.iter().find(|u| u.uuid == gpu).unwrap();
        assert_eq!((used.usedmem, used.usedcores, used.used), (80000, 100, 10));

        // A pod claiming one more 8000 MiB slice of that GPU: through the API, the webhook denies
        // it, naming the annotation (HAMi PR #3042's rule).
        let claim = format!("{gpu},NVIDIA,8000,10:;");
        let forged = |name: &str, ask: GpuAsk| {
            let mut pod: Pod = with_annotations(
                gpu_pod(name, &[], &[ask]),
                &[(DEVICES_ALLOCATED, claim.as_str())],
            );
            pod.spec.as_mut().unwrap().node_name = Some("hami-sim-worker".into());
            pod
        };
        let err = pods
            .create(&PostParams::default(), &forged("planted", GpuAsk::default()))
            .await
            .unwrap_err();
        assert!(
            err.to_string().contains(
                "annotation hami.io/vgpu-devices-allocated is written by the scheduler and cannot be set when creating a pod"
            ),
            "{err}"
        );
        // Written into the store behind admission (a cluster without the webhook, or from before
        // it): on a pod that requests no GPU the claim holds nothing and is reported as forged...
        let plant = |pod: Pod| {
            embedded
                .cluster()
                .shared()
                .write(|s| {
                    s.create(
                        Resource::Pods,
                        Some("default"),
                        serde_json::to_value(pod).unwrap(),
                    )
                })
                .unwrap();
        };
        plant(forged("planted", GpuAsk::default()));
        let report = kind_harness::audit::audit_cluster(&args).await.unwrap();
        assert_eq!(report.findings.len(), 1, "{}", report.text());
        assert_eq!(report.findings[0].kind.as_str(), "unrequested");
        assert_eq!(report.findings[0].object, "pod/default/planted");
        // ...and on a pod that requests one, the device is over-committed.
        plant(forged("planted-gpu", GpuAsk::fraction(8000, 10)));
        let report = kind_harness::audit::audit_cluster(&args).await.unwrap();
        assert_eq!(report.findings.len(), 2, "{}", report.text());
        let finding = &report.findings[0];
        assert_eq!(finding.kind.as_str(), "over-committed");
        assert!(
            finding.detail.contains("memory 88000 of 81920 MiB")
                && finding.detail.contains("cores 110 of 100")
                && finding.detail.contains("tasks 11 of split 10")
                && finding.detail.contains("default/planted-gpu"),
            "{}",
            finding.detail
        );
        let _ = std::fs::remove_file(&path);
        embedded.stop().await;
    });
}
