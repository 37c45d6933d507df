//! kubectl against the simulated API's REST façade: the commands a person types (`get nodes`,
//! `apply`, `get pods -o wide`, `annotate` with a stale resourceVersion, `describe`, `delete`) work
//! and fail where a real API server makes them fail. kubectl is installed on the development and CI
//! machines; where it is missing the test fails with a message saying so.

use serde_json::{Value, json};
use sliceguard::objects::{FleetSpec, fleet};
use sliceguard_sim::http::{SharedStore, kubeconfig, serve};
use sliceguard_sim::store::{Resource, Store};
use std::path::{Path, PathBuf};
use std::process::Command;

fn kubectl(config: &Path, cache: &Path, args: &[&str]) -> (bool, String, String) {
    let out = Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(config)
        .arg("--cache-dir")
        .arg(cache)
        .args(args)
        .output()
        .expect("kubectl is required for this test (it is installed on the dev and CI machines: /usr/bin/kubectl)");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn scratch() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("sliceguard-sim-kubectl-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A store holding a fleet of `nodes` nodes with `gpus_per_node` GPUs each.
fn store_with_fleet(nodes: usize, gpus_per_node: usize) -> Store {
    let mut store = Store::new("2026-01-01T00:00:00Z".parse().unwrap());
    let spec = FleetSpec {
        nodes,
        gpus_per_node,
        ..FleetSpec::default()
    };
    for node in fleet(&spec, store.now()) {
        store
            .create(Resource::Nodes, None, serde_json::to_value(node).unwrap())
            .unwrap();
    }
    store
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_walks_the_simulated_api() {
    let shared = SharedStore::new(store_with_fleet(2, 2));
    let api = serve(shared.clone(), None, "127.0.0.1:0").await.unwrap();
    let dir = scratch();
    let config = dir.join("kubeconfig");
    std::fs::write(&config, kubeconfig(&api.url)).unwrap();
    let cache = dir.join("cache");

    let run = {
        let (config, cache) = (config.clone(), cache.clone());
        move |args: Vec<String>| {
            let (config, cache) = (config.clone(), cache.clone());
            async move {
                tokio::task::spawn_blocking(move || {
                    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
                    kubectl(&config, &cache, &refs)
                })
                .await
                .unwrap()
            }
        }
    };
    let args = |s: &str| s.split_whitespace().map(String::from).collect::<Vec<_>>();

    let (ok, out, err) = run(args("get nodes")).await;
    assert!(ok, "{err}");
    assert!(
        out.contains("hami-sim-worker") && out.contains("hami-sim-worker2"),
        "{out}"
    );

    let pod = dir.join("pod.yaml");
    std::fs::write(&pod, "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\nspec:\n  containers:\n  - name: c\n    image: registry.k8s.io/pause:3.9\n    resources:\n      limits:\n        nvidia.com/gpu: 1\n        nvidia.com/gpumem: 3000\n").unwrap();
    let (ok, out, err) = run(vec![
        "apply".into(),
        "--validate=false".into(),
        "-f".into(),
        pod.display().to_string(),
    ])
    .await;
    assert!(ok && out.contains("pod/p created"), "{out}{err}");
    let (ok, out, err) = run(vec![
        "apply".into(),
        "--validate=false".into(),
        "-f".into(),
        pod.display().to_string(),
    ])
    .await;
    assert!(
        ok && (out.contains("unchanged") || out.contains("configured")),
        "re-apply: {out}{err}"
    );

    let (ok, out, _) = run(args("get pod p -o json")).await;
    assert!(ok);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        v["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"], "1",
        "quantities are canonical strings"
    );

    let (ok, out, _) = run(args("get pods -o wide")).await;
    assert!(
        ok && out.contains("NODE") && out.contains("Pending"),
        "{out}"
    );

    let stale = "1";
    let (ok, _, err) = run(vec![
        "annotate".into(),
        "node".into(),
        "hami-sim-worker".into(),
        "x=y".into(),
        format!("--resource-version={stale}"),
    ])
    .await;
    assert!(!ok && err.contains("Conflict"), "{err}");
    let (ok, _, err) = run(args("annotate node hami-sim-worker x=y")).await;
    assert!(ok, "{err}");
    let (ok, _, err) = run(args(
        "patch node hami-sim-worker -p {\"metadata\":{\"annotations\":{\"x\":null}}}",
    ))
    .await;
    assert!(ok, "{err}");
    assert!(
        shared
            .read()
            .get(Resource::Nodes, None, "hami-sim-worker")
            .unwrap()["metadata"]["annotations"]
            .get("x")
            .is_none()
    );

    let uid = v["metadata"]["uid"].as_str().unwrap().to_string();
    shared
        .write(|s| {
            s.create(
                Resource::Events,
                Some("default"),
                json!({"metadata": {"name": "p.1"}, "involvedObject": {"kind": "Pod", "name": "p", "namespace": "default", "uid": uid},
                       "reason": "FilteringSucceed", "message": "find fit node(hami-sim-worker), 0 nodes not fit, 2 nodes fit(hami-sim-worker2:0.00,hami-sim-worker:0.00)",
                       "type": "Normal", "source": {"component": "sliceguard-scheduler"}, "count": 1}),
            )
        })
        .unwrap();
    let (ok, out, err) = run(args("describe pod p")).await;
    assert!(ok, "{err}");
    assert!(
        out.contains("FilteringSucceed") && out.contains("find fit node(hami-sim-worker)"),
        "{out}"
    );
    let (ok, out, _) = run(args("get events --field-selector reason=FilteringSucceed")).await;
    assert!(ok && out.contains("find fit node"), "{out}");

    let (ok, out, err) = run(args("delete pod p --wait=true --timeout=20s")).await;
    assert!(ok && out.contains("deleted"), "{out}{err}");
    let (ok, _, err) = run(args("get pod p")).await;
    assert!(
        !ok && err.contains("NotFound") || err.contains("not found"),
        "{err}"
    );
    let _ = api.shutdown.send(());
}

/// Lists page as kube-apiserver pages them: kube-rs follows `continue` tokens to the whole list (all
/// pages carry the first page's resourceVersion), kubectl's `--chunk-size` reads every row, and a
/// forged token is a 400 naming the token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lists_page_with_limit_and_continue() {
    use k8s_openapi::api::core::v1::Node;
    use kube::api::{Api, ListParams};
    let shared = SharedStore::new(store_with_fleet(7, 1));
    let api = serve(shared.clone(), None, "127.0.0.1:0").await.unwrap();
    let dir = scratch().join("paging");
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("kubeconfig");
    std::fs::write(&config, kubeconfig(&api.url)).unwrap();

    let client = kube::Client::try_from(kube::Config::new(api.url.parse().unwrap())).unwrap();
    let nodes: Api<Node> = Api::all(client);
    let mut seen = Vec::new();
    let mut pages = 0;
    let mut token: Option<String> = None;
    let mut first_rv = None;
    loop {
        let mut params = ListParams::default().limit(3);
        if let Some(t) = &token {
            params = params.continue_token(t);
        }
        let page = nodes.list(&params).await.unwrap();
        pages += 1;
        assert!(page.items.len() <= 3, "a page holds at most `limit` items");
        let rv = page.metadata.resource_version.clone();
        first_rv.get_or_insert(rv.clone());
        assert_eq!(
            first_rv.as_ref(),
            Some(&rv),
            "every page carries the first page's resourceVersion"
        );
        // A node created between pages shows up in a later page (the list resumes by key).
        if pages == 1 {
            shared
                .write(|s| {
                    let mut extra = serde_json::to_value(&page.items[0]).unwrap();
                    extra["metadata"] = json!({"name": "zz-late"});
                    s.create(Resource::Nodes, None, extra)
                })
                .unwrap();
        }
        seen.extend(page.items.into_iter().filter_map(|n| n.metadata.name));
        match page.metadata.continue_ {
            Some(t) if !t.is_empty() => token = Some(t),
            _ => break,
        }
    }
    assert_eq!(pages, 3, "8 nodes in pages of 3");
    assert_eq!(seen.len(), 8, "{seen:?}");
    assert!(seen.contains(&"zz-late".to_string()));
    let mut sorted = seen.clone();
    sorted.sort();
    assert_eq!(seen, sorted, "pages come in key order without repeats");

    let err = nodes
        .list(&ListParams::default().limit(3).continue_token("not-a-token"))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("continue key is not valid"), "{err}");

    let cache = dir.join("cache");
    let (ok, out, err) = tokio::task::spawn_blocking(move || {
        kubectl(
            &config,
            &cache,
            &["get", "nodes", "--chunk-size=2", "--no-headers"],
        )
    })
    .await
    .unwrap();
    assert!(ok, "{err}");
    assert_eq!(out.lines().count(), 8, "{out}");
    let _ = api.shutdown.send(());
}
