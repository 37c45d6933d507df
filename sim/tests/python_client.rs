//! The official Kubernetes Python client (Debian's `python3-kubernetes`) against the simulated
//! API's REST façade: `tests/clients/python_client.py` creates, watches, patches with a stale
//! resourceVersion (409) and a current one, strategic-merge patches, lists events by field selector
//! and deletes. Where python3 or its `kubernetes` module is missing the test prints `SKIPPED: ...`
//! and returns; `.ci/run` installs `python3-kubernetes` so CI really runs it.

use sliceguard::objects::{FleetSpec, fleet};
use sliceguard_sim::http::{SharedStore, kubeconfig, serve};
use sliceguard_sim::store::{Resource, Store};
use std::path::Path;
use std::process::Command;

/// The first interpreter that imports `kubernetes`. Debian's package installs for the system
/// python (`/usr/bin/python3`), which a pyenv or venv `python3` on PATH may hide.
fn python_with_client() -> Result<String, String> {
    let mut tried = Vec::new();
    for python in ["/usr/bin/python3", "python3"] {
        match Command::new(python)
            .args(["-c", "import kubernetes"])
            .output()
        {
            Ok(out) if out.status.success() => return Ok(python.to_string()),
            Ok(out) => tried.push(format!(
                "{python}: {}",
                String::from_utf8_lossy(&out.stderr)
                    .lines()
                    .last()
                    .unwrap_or("")
            )),
            Err(e) => tried.push(format!("{python}: {e}")),
        }
    }
    Err(tried.join("; "))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_client_drives_the_simulated_api() {
    let python = match python_with_client() {
        Ok(p) => p,
        Err(why) => {
            println!(
                "SKIPPED: the Kubernetes Python client is not installed ({why}); `apt-get install -y python3-kubernetes` installs it (.ci/run does)"
            );
            return;
        }
    };
    let mut store = Store::new("2026-01-01T00:00:00Z".parse().unwrap());
    let spec = FleetSpec {
        nodes: 2,
        gpus_per_node: 2,
        ..FleetSpec::default()
    };
    for node in fleet(&spec, store.now()) {
        store
            .create(Resource::Nodes, None, serde_json::to_value(node).unwrap())
            .unwrap();
    }
    let shared = SharedStore::new(store);
    let api = serve(shared.clone(), None, "127.0.0.1:0").await.unwrap();
    let dir = std::env::temp_dir().join(format!("sliceguard-sim-python-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("kubeconfig");
    std::fs::write(&config, kubeconfig(&api.url)).unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients/python_client.py");
    let out = tokio::task::spawn_blocking(move || {
        Command::new(&python)
            .arg(&script)
            .arg(&config)
            .arg("hami-sim-worker")
            .output()
    })
    .await
    .unwrap()
    .expect("running the Python client script");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.contains("ALL OK"),
        "stdout:\n{stdout}\nstderr:\n{stderr}"
    );
    for step in [
        "ok create",
        "ok watch: ADDED",
        "ok stale resourceVersion: 409",
        "ok strategic merge patch",
        "ok events by field selector",
        "ok delete",
    ] {
        assert!(stdout.contains(step), "{step} missing:\n{stdout}");
    }
    // What the script did is what the store holds.
    let node = shared
        .read()
        .get(Resource::Nodes, None, "hami-sim-worker")
        .unwrap();
    let annotations = &node["metadata"]["annotations"];
    assert_eq!(annotations["py-rv"], "1");
    assert!(annotations.get("py-stale").is_none() && annotations.get("py-smp").is_none());
    assert!(
        shared
            .read()
            .get(Resource::Pods, Some("default"), "py-client-pod")
            .is_err()
    );
    let _ = api.shutdown.send(());
    let _ = std::fs::remove_dir_all(&dir);
}
