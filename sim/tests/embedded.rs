//! End to end through the embedded cluster: sliceguard's `serve` (kube-rs watches, HTTPS webhook,
//! HTTP extender) against the live simulated cluster, driven by kube-rs and by kubectl exactly as a
//! user drives a real cluster: a pod goes webhook → filter → bind → Running, its allocation and
//! events are visible, ten fractional pods share one GPU, the eleventh waits with HAMi's reason,
//! and no node lock is left.

use k8s_openapi::api::core::v1::{Event, Node, Pod};
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use sliceguard::annotations::{DEVICES_ALLOCATED, NODE_LOCK};
use sliceguard::objects::{FleetSpec, GpuAsk, gpu_pod};
use sliceguard_sim::embedded::{Embedded, EmbeddedOptions};
use std::process::Command;
use std::time::{Duration, Instant};

async fn wait_for<T>(
    what: &str,
    timeout: Duration,
    mut probe: impl AsyncFnMut() -> Option<T>,
) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(found) = probe().await {
            return found;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

fn phase(pod: &Pod) -> String {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.clone())
        .unwrap_or_default()
}

async fn events_of(client: &kube::Client, name: &str) -> Vec<(String, String)> {
    let events: Api<Event> = Api::namespaced(client.clone(), "default");
    events
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|e| e.involved_object.name.as_deref() == Some(name))
        .map(|e| (e.reason.unwrap_or_default(), e.message.unwrap_or_default()))
        .collect()
}

/// Waits until the pod has an event of every reason in `wanted` (the kubelet may start a pod before
/// the scheduler's events are written, as in a real cluster); returns all its events.
async fn events_with(client: &kube::Client, name: &str, wanted: &[&str]) -> Vec<(String, String)> {
    let what = format!("events {wanted:?} of {name}");
    wait_for(&what, Duration::from_secs(20), async || {
        let events = events_of(client, name).await;
        wanted
            .iter()
            .all(|w| events.iter().any(|(r, _)| r == w))
            .then_some(events)
    })
    .await
}

/// Waits until no node carries the lock annotation (a bind in flight releases its lock on its way
/// out); a lock left behind fails the test when the wait times out.
async fn wait_no_locks(client: &kube::Client) {
    wait_for(
        "every node lock released",
        Duration::from_secs(20),
        async || no_locks(client).await.is_empty().then_some(()),
    )
    .await;
}

async fn no_locks(client: &kube::Client) -> Vec<String> {
    let nodes: Api<Node> = Api::all(client.clone());
    nodes
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|n| {
            n.metadata
                .annotations
                .as_ref()
                .is_some_and(|a| a.contains_key(NODE_LOCK))
        })
        .filter_map(|n| n.metadata.name)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fractional_pod_goes_webhook_filter_bind_running_through_kube_rs() {
    let cluster = Embedded::start(EmbeddedOptions::default()).await.unwrap();
    let client = cluster.client();
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    // The user's pod names no scheduler: the webhook routes it.
    let pod = gpu_pod("fractional", &[], &[GpuAsk::fraction(3000, 30)]);
    pods.create(&PostParams::default(), &pod).await.unwrap();
    let running = wait_for("the pod to run", Duration::from_secs(20), async || {
        let p = pods.get("fractional").await.ok()?;
        (phase(&p) == "Running").then_some(p)
    })
    .await;
    assert_eq!(
        running.spec.as_ref().unwrap().scheduler_name.as_deref(),
        Some("sliceguard-scheduler"),
        "the webhook set the scheduler name"
    );
    let node = running.spec.as_ref().unwrap().node_name.clone().unwrap();
    let allocated = running.metadata.annotations.as_ref().unwrap()[DEVICES_ALLOCATED].clone();
    assert!(
        allocated.contains(",NVIDIA,3000,30:"),
        "one device with 3000 MiB and 30 cores: {allocated}"
    );
    let events = events_with(
        &client,
        "fractional",
        &["FilteringSucceed", "BindingSucceed", "Scheduled", "Started"],
    )
    .await;
    assert!(
        events
            .iter()
            .any(|(r, m)| r == "Scheduled" && m.ends_with(&format!("to {node}"))),
        "{events:?}"
    );
    wait_no_locks(&client).await;

    // A pod without GPU resources is left to the default scheduler.
    let plain = gpu_pod("plain", &[], &[GpuAsk::default()]);
    pods.create(&PostParams::default(), &plain).await.unwrap();
    let plain = wait_for(
        "the plain pod to run",
        Duration::from_secs(20),
        async || {
            let p = pods.get("plain").await.ok()?;
            (phase(&p) == "Running").then_some(p)
        },
    )
    .await;
    assert_eq!(
        plain.spec.unwrap().scheduler_name.as_deref(),
        Some("default-scheduler")
    );
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_fractional_pods_share_one_gpu_and_the_eleventh_waits() {
    let cluster = Embedded::start(EmbeddedOptions {
        fleet: FleetSpec {
            nodes: 1,
            gpus_per_node: 1,
            memory_mib: 81920,
            split: 10,
            ..FleetSpec::default()
        },
        ..EmbeddedOptions::default()
    })
    .await
    .unwrap();
    let client = cluster.client();
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    for i in 0..10 {
        let pod = gpu_pod(&format!("share-{i}"), &[], &[GpuAsk::fraction(8000, 10)]);
        pods.create(&PostParams::default(), &pod).await.unwrap();
    }
    wait_for("ten Running pods", Duration::from_secs(30), async || {
        let list = pods.list(&ListParams::default()).await.ok()?;
        (list.items.iter().filter(|p| phase(p) == "Running").count() == 10).then_some(())
    })
    .await;
    let eleventh = gpu_pod("share-10", &[], &[GpuAsk::fraction(8000, 10)]);
    pods.create(&PostParams::default(), &eleventh)
        .await
        .unwrap();
    let failed = wait_for(
        "the eleventh to be refused",
        Duration::from_secs(20),
        async || {
            let events = events_of(&client, "share-10").await;
            events
                .into_iter()
                .find(|(r, _)| r == "FilteringFailed")
                .map(|(_, m)| m)
        },
    )
    .await;
    // Ten tasks fill the split count of 10 before memory (80000 of 81920 MiB) runs out: HAMi checks
    // the count first.
    assert!(failed.contains("CardTimeSlicingExhausted"), "{failed}");
    let pod = pods.get("share-10").await.unwrap();
    assert_eq!(phase(&pod), "Pending");
    assert!(pod.spec.unwrap().node_name.is_none());
    wait_no_locks(&client).await;

    // Deleting one returns its share, and the waiting pod then runs.
    pods.delete("share-0", &DeleteParams::default())
        .await
        .unwrap();
    wait_for("the eleventh to run", Duration::from_secs(30), async || {
        let p = pods.get("share-10").await.ok()?;
        (phase(&p) == "Running").then_some(())
    })
    .await;
    wait_no_locks(&client).await;
    cluster.stop().await;
}

fn kubectl(config: &std::path::Path, args: &[&str]) -> (bool, String) {
    let out = Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(config)
        .args(args)
        .output()
        .expect("kubectl is required for this test (installed on the dev and CI machines)");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_apply_runs_a_gpu_pod_and_describe_shows_its_events() {
    let cluster = Embedded::start(EmbeddedOptions::default()).await.unwrap();
    let dir = std::env::temp_dir().join(format!("sliceguard-e2e-kubectl-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("kubeconfig");
    std::fs::write(&config, cluster.kubeconfig()).unwrap();
    let manifest = dir.join("pod.yaml");
    std::fs::write(
        &manifest,
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: gpu-burn\nspec:\n  containers:\n  - name: main\n    image: registry.k8s.io/pause:3.9\n    resources:\n      limits:\n        nvidia.com/gpu: 1\n        nvidia.com/gpumem: 3000\n        nvidia.com/gpucores: 30\n",
    )
    .unwrap();
    let config2 = config.clone();
    let (ok, out) = tokio::task::spawn_blocking(move || {
        kubectl(
            &config2,
            &[
                "apply",
                "--validate=false",
                "-f",
                manifest.to_str().unwrap(),
            ],
        )
    })
    .await
    .unwrap();
    assert!(ok, "{out}");
    let pods: Api<Pod> = Api::namespaced(cluster.client(), "default");
    wait_for("gpu-burn to run", Duration::from_secs(20), async || {
        let p = pods.get("gpu-burn").await.ok()?;
        (phase(&p) == "Running").then_some(())
    })
    .await;
    let config2 = config.clone();
    let (ok, wide) =
        tokio::task::spawn_blocking(move || kubectl(&config2, &["get", "pods", "-o", "wide"]))
            .await
            .unwrap();
    assert!(ok, "{wide}");
    assert!(
        wide.contains("gpu-burn") && wide.contains("Running"),
        "{wide}"
    );
    assert!(wide.contains("hami-sim-worker"), "the node column: {wide}");
    events_with(
        &cluster.client(),
        "gpu-burn",
        &["FilteringSucceed", "BindingSucceed", "Scheduled"],
    )
    .await;
    let (ok, described) =
        tokio::task::spawn_blocking(move || kubectl(&config, &["describe", "pod", "gpu-burn"]))
            .await
            .unwrap();
    assert!(ok, "{described}");
    for wanted in [
        "FilteringSucceed",
        "BindingSucceed",
        "Scheduled",
        "hami.io/vgpu-devices-allocated",
    ] {
        assert!(
            described.contains(wanted),
            "{wanted} missing from describe:\n{described}"
        );
    }
    cluster.stop().await;
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preloaded_pods_are_counted_by_sliceguard_after_its_initial_list() {
    // 3 nodes x 8 GPUs, 200 pods of 1024 MiB round robin: 8 or 9 per device, so no device has
    // 80000 MiB free any more, though every device would have had it empty.
    let cluster = Embedded::start(EmbeddedOptions {
        preload_pods: 200,
        ..EmbeddedOptions::default()
    })
    .await
    .unwrap();
    let pods: Api<Pod> = Api::namespaced(cluster.client(), "default");
    assert_eq!(
        pods.list(&ListParams::default()).await.unwrap().items.len(),
        200
    );
    let big = gpu_pod("big", &[], &[GpuAsk::fraction(80000, 10)]);
    pods.create(&PostParams::default(), &big).await.unwrap();
    let failed = wait_for(
        "the big pod to be refused",
        Duration::from_secs(20),
        async || {
            events_of(&cluster.client(), "big")
                .await
                .into_iter()
                .find(|(r, _)| r == "FilteringFailed")
                .map(|(_, m)| m)
        },
    )
    .await;
    assert!(failed.contains("CardInsufficientMemory"), "{failed}");
    let fits = gpu_pod("fits", &[], &[GpuAsk::fraction(70000, 10)]);
    pods.create(&PostParams::default(), &fits).await.unwrap();
    wait_for(
        "the fitting pod to run",
        Duration::from_secs(20),
        async || {
            let p = pods.get("fits").await.ok()?;
            (phase(&p) == "Running").then_some(())
        },
    )
    .await;
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_seed_manifests_apply_with_kubectl_and_the_deployment_runs_its_replicas() {
    let cluster = Embedded::start(EmbeddedOptions::default()).await.unwrap();
    let dir = std::env::temp_dir().join(format!("sliceguard-e2e-seed-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("kubeconfig");
    std::fs::write(&config, cluster.kubeconfig()).unwrap();
    let manifests = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../examples/seed/manifests.yaml"
    );
    let config2 = config.clone();
    let (ok, out) = tokio::task::spawn_blocking(move || {
        kubectl(&config2, &["apply", "--validate=false", "-f", manifests])
    })
    .await
    .unwrap();
    assert!(ok, "{out}");
    assert!(
        out.contains("deployment.apps/hami-placement created"),
        "{out}"
    );
    let pods: Api<Pod> = Api::namespaced(cluster.client(), "default");
    let replicas = wait_for(
        "three Running replicas",
        Duration::from_secs(30),
        async || {
            let list = pods
                .list(&ListParams::default().labels("app=hami-placement"))
                .await
                .ok()?;
            let running: Vec<Pod> = list
                .items
                .into_iter()
                .filter(|p| phase(p) == "Running")
                .collect();
            (running.len() == 3).then_some(running)
        },
    )
    .await;
    for pod in &replicas {
        let name = pod.metadata.name.clone().unwrap();
        assert!(name.starts_with("hami-placement-"), "{name}");
        assert_eq!(
            pod.spec.as_ref().unwrap().scheduler_name.as_deref(),
            Some("sliceguard-scheduler"),
            "the replica went through the webhook"
        );
        let events = events_of(&cluster.client(), &name).await;
        assert!(
            events
                .iter()
                .any(|(r, m)| r == "FilteringSucceed" && m.contains("find fit node(")),
            "{events:?}"
        );
    }
    let config2 = config.clone();
    let (ok, table) =
        tokio::task::spawn_blocking(move || kubectl(&config2, &["get", "deployments"]))
            .await
            .unwrap();
    assert!(
        ok && table.contains("hami-placement") && table.contains("3/3"),
        "{table}"
    );
    // Deleting the Deployment garbage-collects its pods.
    let (ok, out) = tokio::task::spawn_blocking(move || {
        kubectl(&config, &["delete", "deployment", "hami-placement"])
    })
    .await
    .unwrap();
    assert!(ok, "{out}");
    wait_for(
        "the replicas to be collected",
        Duration::from_secs(20),
        async || {
            let list = pods
                .list(&ListParams::default().labels("app=hami-placement"))
                .await
                .ok()?;
            list.items.is_empty().then_some(())
        },
    )
    .await;
    cluster.stop().await;
    let _ = std::fs::remove_dir_all(dir);
}
