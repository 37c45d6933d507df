//! Scheduling state no tenant can forge, tried with the real `kubectl` against the embedded cluster
//! (sliceguard's `serve` with its HTTPS webhook, called by the simulated API on pod CREATE and
//! UPDATE with the request's user): a pod created with forged allocation annotations is denied with
//! a message naming the annotation; stripping the `hami.io/vgpu-node` label from a running GPU pod,
//! rewriting its allocation, or opting it out of the webhook, is denied; sliceguard's own writes (its ServiceAccount's token)
//! still place and run the pod; HAMi's device plugin may write only its two keys.

use k8s_openapi::api::core::v1::Pod;
use kube::api::Api;
use sliceguard::annotations::{DEVICES_ALLOCATED, VGPU_NODE};
use sliceguard::guard::{DEFAULT_DEVICE_PLUGIN_USER, DEFAULT_SCHEDULER_USER};
use sliceguard_sim::embedded::{Embedded, EmbeddedOptions};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// Runs kubectl; (success, stdout and stderr).
async fn kubectl(config: &Path, args: &[&str]) -> (bool, String) {
    let config = config.to_path_buf();
    let args: Vec<String> = args.iter().map(|a| (*a).to_string()).collect();
    tokio::task::spawn_blocking(move || {
        let cache = config.with_extension("cache");
        let out = Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(&config)
            .arg("--cache-dir")
            .arg(cache)
            .args(&args)
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
    })
    .await
    .expect("the kubectl task")
}

fn scratch() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("sliceguard-guard-kubectl-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("scratch directory");
    dir
}

const FORGED: &str = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: squatter\n  labels:\n    hami.io/vgpu-node: hami-sim-worker\n  annotations:\n    hami.io/vgpu-node: hami-sim-worker\n    hami.io/vgpu-devices-allocated: \"GPU-hami-sim-worker-0,NVIDIA,81920,100:;\"\nspec:\n  containers:\n  - name: main\n    image: registry.k8s.io/pause:3.9\n";

const GPU_POD: &str = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: trainer\nspec:\n  containers:\n  - name: main\n    image: registry.k8s.io/pause:3.9\n    resources:\n      limits:\n        nvidia.com/gpu: 1\n        nvidia.com/gpumem: 3000\n        nvidia.com/gpucores: 30\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_cannot_forge_or_strip_scheduling_state() {
    let cluster = Embedded::start(EmbeddedOptions::default()).await.unwrap();
    let dir = scratch();
    let admin = dir.join("admin.kubeconfig");
    std::fs::write(&admin, cluster.kubeconfig()).unwrap();
    let plugin = dir.join("plugin.kubeconfig");
    std::fs::write(
        &plugin,
        cluster.cluster().kubeconfig_as(DEFAULT_DEVICE_PLUGIN_USER),
    )
    .unwrap();
    let sliceguard = dir.join("sliceguard.kubeconfig");
    std::fs::write(
        &sliceguard,
        cluster.cluster().kubeconfig_as(DEFAULT_SCHEDULER_USER),
    )
    .unwrap();

    // 1. A pod created with forged allocation annotations (and no GPU request) is denied, naming
    //    the annotation; so is one carrying only the allocation.
    let forged = dir.join("forged.yaml");
    std::fs::write(&forged, FORGED).unwrap();
    let (ok, out) = kubectl(
        &admin,
        &["apply", "--validate=false", "-f", forged.to_str().unwrap()],
    )
    .await;
    assert!(!ok, "a forged pod was admitted: {out}");
    assert!(
        out.contains("admission webhook \"vgpu.sliceguard.io\" denied the request: annotation hami.io/vgpu-node is written by the scheduler and cannot be set when creating a pod"),
        "{out}"
    );
    let only_allocation = FORGED
        .replace("  labels:\n    hami.io/vgpu-node: hami-sim-worker\n", "")
        .replace("    hami.io/vgpu-node: hami-sim-worker\n", "");
    std::fs::write(&forged, only_allocation).unwrap();
    let (ok, out) = kubectl(
        &admin,
        &["apply", "--validate=false", "-f", forged.to_str().unwrap()],
    )
    .await;
    assert!(!ok, "{out}");
    assert!(
        out.contains("annotation hami.io/vgpu-devices-allocated is written by the scheduler"),
        "{out}"
    );
    let (_, listed) = kubectl(&admin, &["get", "pods", "-o", "name"]).await;
    assert!(!listed.contains("squatter"), "{listed}");

    // 2. A real GPU pod runs: sliceguard's own filter and bind writes pass admission on UPDATE.
    let manifest = dir.join("trainer.yaml");
    std::fs::write(&manifest, GPU_POD).unwrap();
    let (ok, out) = kubectl(
        &admin,
        &[
            "apply",
            "--validate=false",
            "-f",
            manifest.to_str().unwrap(),
        ],
    )
    .await;
    assert!(ok, "{out}");
    let pods: Api<Pod> = Api::namespaced(cluster.client(), "default");
    let deadline = Instant::now() + Duration::from_secs(20);
    let running = loop {
        if let Ok(p) = pods.get("trainer").await
            && p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")
        {
            break p;
        }
        assert!(Instant::now() < deadline, "trainer never ran");
        tokio::time::sleep(Duration::from_millis(25)).await;
    };
    let label = |p: &Pod| {
        p.metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(VGPU_NODE).cloned())
    };
    let allocation = |p: &Pod| {
        p.metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(DEVICES_ALLOCATED).cloned())
    };
    let node = label(&running).expect("sliceguard labels the pod it placed");
    let allocated = allocation(&running).expect("sliceguard annotates the pod it placed");

    // 3. The admin cannot strip the label, nor rewrite the allocation; unrelated keys are fine.
    let (ok, out) = kubectl(&admin, &["label", "pod", "trainer", "hami.io/vgpu-node-"]).await;
    assert!(!ok, "the label was stripped: {out}");
    assert!(
        out.contains("label hami.io/vgpu-node is written by the scheduler and cannot be added, changed or removed by kubernetes-admin"),
        "{out}"
    );
    let (ok, out) = kubectl(
        &admin,
        &[
            "annotate",
            "--overwrite",
            "pod",
            "trainer",
            "hami.io/vgpu-devices-allocated=GPU-hami-sim-worker-1,NVIDIA,1,1:;",
        ],
    )
    .await;
    assert!(!ok, "the allocation was rewritten: {out}");
    assert!(
        out.contains("annotation hami.io/vgpu-devices-allocated is written by the scheduler"),
        "{out}"
    );
    let (ok, out) = kubectl(&admin, &["label", "pod", "trainer", "team=ml"]).await;
    assert!(ok, "{out}");
    // Nor opt the placed pod out of the webhook, which would let the next update pass unseen.
    let (ok, out) = kubectl(
        &admin,
        &["label", "pod", "trainer", "hami.io/webhook=ignore"],
    )
    .await;
    assert!(!ok, "{out}");
    assert!(
        out.contains("label hami.io/webhook cannot be changed by kubernetes-admin on a pod carrying scheduler-owned state"),
        "{out}"
    );
    let now = pods.get("trainer").await.unwrap();
    assert_eq!(label(&now).as_deref(), Some(node.as_str()));
    assert_eq!(allocation(&now).as_deref(), Some(allocated.as_str()));

    // 4. HAMi's device plugin may set the bind phase, not the node.
    let (ok, out) = kubectl(
        &plugin,
        &[
            "annotate",
            "--overwrite",
            "pod",
            "trainer",
            "hami.io/bind-phase=success",
        ],
    )
    .await;
    assert!(ok, "{out}");
    let (ok, out) = kubectl(&plugin, &["label", "pod", "trainer", "hami.io/vgpu-node-"]).await;
    assert!(!ok, "{out}");
    assert!(out.contains(DEFAULT_DEVICE_PLUGIN_USER), "{out}");

    // 5. sliceguard's ServiceAccount may.
    let (ok, out) = kubectl(
        &sliceguard,
        &["label", "pod", "trainer", "hami.io/vgpu-node-"],
    )
    .await;
    assert!(ok, "{out}");
    assert_eq!(label(&pods.get("trainer").await.unwrap()), None);

    cluster.stop().await;
    let _ = std::fs::remove_dir_all(dir);
}
