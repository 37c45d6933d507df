//! The seed lab's flow, typed as its README types it, with kubectl against the simulated cluster
//! with sliceguard inside ([`sliceguard_sim::embedded`]): `kubectl apply` of the seed's three
//! manifests, `get pods -o wide`, `describe` of the pending pod, events by field selector, the
//! Deployment's replicas, and `kubectl delete -f`. Each outcome the seed asks a person to look at
//! is asserted. kubectl is installed on the development and CI machines; where it is missing the
//! test fails saying so.

use serde_json::Value;
use sliceguard_sim::embedded::{Embedded, EmbeddedOptions};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

struct Kubectl {
    config: PathBuf,
    cache: PathBuf,
}

impl Kubectl {
    fn run(&self, args: &[&str]) -> (bool, String, String) {
        let out = Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(&self.config)
            .arg("--cache-dir")
            .arg(&self.cache)
            .args(args)
            .output()
            .expect("kubectl is required for this test (installed on the dev and CI machines: /usr/bin/kubectl)");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    fn pods(&self) -> Vec<Value> {
        let (ok, out, err) = self.run(&["get", "pods", "-o", "json"]);
        assert!(ok, "{err}");
        let list: Value = serde_json::from_str(&out).expect("a PodList");
        list["items"].as_array().cloned().unwrap_or_default()
    }
}

fn seed(file: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples/seed")
        .join(file)
        .display()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_walks_the_seeds_flow() {
    let cluster = Embedded::start(EmbeddedOptions::default()).await.unwrap();
    let dir = std::env::temp_dir().join(format!("sliceguard-sim-seed-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("kubeconfig");
    std::fs::write(&config, cluster.kubeconfig()).unwrap();
    let kubectl = Kubectl {
        config,
        cache: dir.join("cache"),
    };
    let outcome = tokio::task::spawn_blocking(move || {
        let files = [
            seed("01-fractional-pod.yaml"),
            seed("02-overrequest-pending.yaml"),
            seed("03-placement-spread.yaml"),
        ];
        for f in &files {
            let (ok, out, err) = kubectl.run(&["apply", "--validate=false", "-f", f]);
            assert!(ok && out.contains("created"), "apply {f}: {out}{err}");
        }
        // Exercise 1 and 3: the fractional pod and three replicas Running.
        let started = Instant::now();
        loop {
            let pods = kubectl.pods();
            let running = pods
                .iter()
                .filter(|p| p["status"]["phase"] == "Running")
                .count();
            if running == 4 {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "not 4 Running within 60 s: {pods:?}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        let (ok, out, err) = kubectl.run(&["get", "pods", "-o", "wide"]);
        assert!(ok, "{err}");
        let line = |name: &str| {
            out.lines()
                .find(|l| l.starts_with(name))
                .unwrap_or_else(|| panic!("{name} missing:\n{out}"))
                .to_string()
        };
        assert!(line("hami-fractional").contains("Running"), "{out}");
        assert!(line("hami-overrequest").contains("Pending"), "{out}");
        assert!(
            out.contains("NODE") && out.contains("hami-sim-worker"),
            "{out}"
        );
        let pods = kubectl.pods();
        let fractional = pods
            .iter()
            .find(|p| p["metadata"]["name"] == "hami-fractional")
            .unwrap();
        assert!(
            fractional["metadata"]["annotations"]["hami.io/vgpu-devices-allocated"]
                .as_str()
                .is_some_and(|a| a.contains(",NVIDIA,3000,30:")),
            "{fractional}"
        );
        // Exercise 2: the over-request is told why by every GPU node.
        let (ok, out, err) = kubectl.run(&["describe", "pod", "hami-overrequest"]);
        assert!(ok, "{err}");
        assert!(
            out.contains("FilteringFailed") && out.contains("CardInsufficientMemory"),
            "{out}"
        );
        // The scheduler's word on the fractional pod, by field selector.
        let (ok, out, err) = kubectl.run(&[
            "get",
            "events",
            "--field-selector",
            "involvedObject.name=hami-fractional",
        ]);
        assert!(ok, "{err}");
        assert!(
            out.contains("FilteringSucceed") && out.contains("find fit node("),
            "{out}"
        );
        let (ok, out, err) = kubectl.run(&["get", "deployment", "hami-placement", "-o", "json"]);
        assert!(ok, "{err}");
        let deployment: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(deployment["status"]["readyReplicas"], 3, "{deployment}");
        // Clean up as the seed's README does.
        for f in &files {
            let (ok, out, err) = kubectl.run(&["delete", "-f", f, "--wait=true", "--timeout=30s"]);
            assert!(ok && out.contains("deleted"), "delete {f}: {out}{err}");
        }
        let started = Instant::now();
        while !kubectl.pods().is_empty() {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "pods left after delete: {:?}",
                kubectl.pods()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    })
    .await;
    cluster.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
    if let Err(e) = outcome {
        std::panic::resume_unwind(e.into_panic());
    }
}
