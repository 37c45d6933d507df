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

/// Waits until pod `name` runs; returns it.
async fn running(pods: &Api<Pod>, name: &str) -> Pod {
    wait_for(
        &format!("{name} to run"),
        Duration::from_secs(20),
        async || {
            let p = pods.get(name).await.ok()?;
            (phase(&p) == "Running").then_some(p)
        },
    )
    .await
}

/// `pod` with its first container requesting `cpu`.
fn with_cpu(mut pod: Pod, cpu: &str) -> Pod {
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
    if let Some(container) = pod.spec.as_mut().and_then(|s| s.containers.first_mut()) {
        let resources = container.resources.get_or_insert_with(Default::default);
        resources
            .requests
            .get_or_insert_with(Default::default)
            .insert("cpu".into(), Quantity(cpu.into()));
    }
    pod
}

/// Every node's allocatable and requested CPU as the API shows it: allocatable from the Node, the
/// requests of the pods bound there that have not finished.
async fn host_cpu_on_the_api(
    client: &kube::Client,
) -> std::collections::BTreeMap<String, (u64, u64)> {
    use sliceguard::host_cpu::{node_allocatable_cpu_milli, pod_placement};
    let mut hosts = std::collections::BTreeMap::new();
    for node in Api::<Node>::all(client.clone())
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
    {
        let cpu = node_allocatable_cpu_milli(&node).unwrap();
        hosts.insert(node.metadata.name.unwrap(), (cpu, 0));
    }
    for pod in Api::<Pod>::all(client.clone())
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
    {
        if let Some((node, cpu)) = pod_placement(&pod) {
            hosts.get_mut(node).unwrap().1 += cpu;
        }
    }
    hosts
}

/// What sliceguard's view holds of host CPU, per node, as (allocatable, requested).
fn host_cpu_in_the_view(
    cluster: &Embedded,
    nodes: &[String],
) -> std::collections::BTreeMap<String, (u64, u64)> {
    use sliceguard::fragmentation::HostSource;
    cluster.scheduler().service.with_view(|v| {
        let hosts = v.hosts().expect("serve tracks host CPU by default");
        nodes
            .iter()
            .filter_map(|n| {
                let h = hosts.host(n)?;
                Some((n.clone(), (h.cpu_capacity_milli, h.cpu_requested_milli)))
            })
            .collect()
    })
}

/// `serve` learns the workload profile from the GPU pods it places and sees, and reads host CPU
/// (allocatable less the requests of bound pods, CPU-only pods included) from its watches, through
/// kube-rs against the simulated API; a restarted `serve` rebuilds both from the pods it lists.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_learns_the_workload_and_host_cpu_and_a_restart_rebuilds_them_from_the_list() {
    let mut cluster = Embedded::start(EmbeddedOptions {
        fleet: FleetSpec {
            nodes: 2,
            gpus_per_node: 2,
            ..FleetSpec::default()
        },
        ..EmbeddedOptions::default()
    })
    .await
    .unwrap();
    let client = cluster.client();
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let whole = GpuAsk {
        gpus: Some(1),
        memory_mib: None,
        memory_percent: Some(100),
        cores: Some(100),
    };
    let mix = [
        ("slice-a", GpuAsk::fraction(8192, 30), "1"),
        ("slice-b", GpuAsk::fraction(8192, 30), "1"),
        ("slice-c", GpuAsk::fraction(8192, 30), "1"),
        ("whole", whole, "4"),
        ("cpu-only", GpuAsk::default(), "2500m"),
    ];
    for (name, ask, cpu) in &mix {
        let pod = with_cpu(gpu_pod(name, &[], std::slice::from_ref(ask)), cpu);
        pods.create(&PostParams::default(), &pod).await.unwrap();
    }
    for (name, _, _) in &mix {
        running(&pods, name).await;
    }
    let expected = host_cpu_on_the_api(&client).await;
    let nodes: Vec<String> = expected.keys().cloned().collect();
    let requested: u64 = expected.values().map(|(_, r)| r).sum();
    assert_eq!(
        requested,
        3000 + 4000 + 2500,
        "every pod's CPU is on a node"
    );
    wait_for("the view's host CPU", Duration::from_secs(10), async || {
        (host_cpu_in_the_view(&cluster, &nodes) == expected).then_some(())
    })
    .await;

    let learned = |cluster: &Embedded| {
        cluster.scheduler().service.with_view(|v| {
            let profile = v.learned().profile();
            (profile.observed(), profile.typical().clone())
        })
    };
    let (observed, typical) = learned(&cluster);
    assert_eq!(observed, 4, "four GPU containers, each counted once");
    let mut shapes: Vec<(u32, u32, u64)> = typical
        .shapes()
        .iter()
        .map(|(s, _)| (s.nums, s.cores, s.cpu_milli))
        .collect();
    shapes.sort_unstable();
    assert_eq!(shapes, [(1, 30, 1000), (1, 100, 4000)]);

    cluster.restart_scheduler().await.unwrap();
    assert_eq!(
        learned(&cluster),
        (observed, typical),
        "the restarted scheduler learned the same profile from the pods it listed"
    );
    assert_eq!(host_cpu_in_the_view(&cluster, &nodes), expected);

    // The rebuilt view goes on: a finished pod's CPU is free again, and a new GPU pod counts.
    let slice = pods.get("slice-a").await.unwrap();
    let mut done = slice.clone();
    done.status.get_or_insert_with(Default::default).phase = Some("Succeeded".into());
    pods.replace_status("slice-a", &PostParams::default(), &done)
        .await
        .unwrap();
    let expected = host_cpu_on_the_api(&client).await;
    assert_eq!(
        expected.values().map(|(_, r)| r).sum::<u64>(),
        requested - 1000
    );
    wait_for(
        "the finished pod's CPU freed",
        Duration::from_secs(10),
        async || (host_cpu_in_the_view(&cluster, &nodes) == expected).then_some(()),
    )
    .await;
    let pod = with_cpu(gpu_pod("slice-d", &[], &[GpuAsk::fraction(8192, 30)]), "1");
    pods.create(&PostParams::default(), &pod).await.unwrap();
    running(&pods, "slice-d").await;
    assert_eq!(learned(&cluster).0, 5);
    cluster.stop().await;
}

/// With `--route-cpu-pods`, a CPU-only pod carrying the label goes webhook → filter → bind → Running
/// on the node where its CPU strands no GPU of the learned workload; one without the label is left
/// to the default scheduler.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_labelled_cpu_only_pod_is_placed_where_its_cpu_strands_no_gpu() {
    let cluster = Embedded::start(EmbeddedOptions {
        fleet: FleetSpec {
            nodes: 3,
            gpus_per_node: 2,
            ..FleetSpec::default()
        },
        route_cpu_pods: Some("sliceguard.io/placement=fragmentation".parse().unwrap()),
        ..EmbeddedOptions::default()
    })
    .await
    .unwrap();
    let client = cluster.client();
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    // The learned workload: fractional GPU tasks that each need 4 CPUs.
    let gpu = with_cpu(gpu_pod("gpu-task", &[], &[GpuAsk::fraction(8192, 30)]), "4");
    pods.create(&PostParams::default(), &gpu).await.unwrap();
    running(&pods, "gpu-task").await;
    // Pin CPU hogs so that the nodes have 6, 12 and 5 CPUs free: a 4-CPU pod leaves fewer than
    // 4 on the first and the third (both their GPUs stranded), 8 on the second (nothing stranded).
    let free = host_cpu_on_the_api(&client).await;
    let nodes: Vec<String> = free.keys().cloned().collect();
    for (node, wanted_free) in nodes.iter().zip([6000u64, 12_000, 5000]) {
        let (allocatable, requested) = free[node];
        let hog_milli = allocatable - requested - wanted_free;
        let mut hog = with_cpu(
            gpu_pod(&format!("hog-{node}"), &[], &[GpuAsk::default()]),
            &format!("{hog_milli}m"),
        );
        hog.spec.as_mut().unwrap().node_name = Some(node.clone());
        pods.create(&PostParams::default(), &hog).await.unwrap();
    }
    let expected = host_cpu_on_the_api(&client).await;
    wait_for(
        "the hogs' CPU in the view",
        Duration::from_secs(10),
        async || (host_cpu_in_the_view(&cluster, &nodes) == expected).then_some(()),
    )
    .await;

    let mut routed = with_cpu(gpu_pod("cpu-routed", &[], &[GpuAsk::default()]), "4");
    routed.metadata.labels = Some(
        [(
            "sliceguard.io/placement".to_string(),
            "fragmentation".to_string(),
        )]
        .into(),
    );
    pods.create(&PostParams::default(), &routed).await.unwrap();
    let plain = with_cpu(gpu_pod("cpu-plain", &[], &[GpuAsk::default()]), "1");
    pods.create(&PostParams::default(), &plain).await.unwrap();
    let routed = running(&pods, "cpu-routed").await;
    let spec = routed.spec.as_ref().unwrap();
    assert_eq!(spec.scheduler_name.as_deref(), Some("sliceguard-scheduler"));
    assert_eq!(
        spec.node_name.as_deref(),
        Some(nodes[1].as_str()),
        "the node with CPU to spare"
    );
    let plain = running(&pods, "cpu-plain").await;
    assert_eq!(
        plain.spec.as_ref().unwrap().scheduler_name.as_deref(),
        Some("default-scheduler"),
        "no label, no route"
    );
    let metrics = cluster.scheduler().service.metrics().encode();
    assert!(
        metrics.contains("sliceguard_filter_decisions_total{outcome=\"cpu_placed\"} 1"),
        "{metrics}"
    );
    wait_no_locks(&client).await;
    cluster.stop().await;
}
