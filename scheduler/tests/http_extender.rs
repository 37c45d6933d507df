//! The extender's HTTP handlers in-process (tower `oneshot`), with real ExtenderArgs and
//! ExtenderBindingArgs JSON: casing, missing Pod, unknown fields, oversized and invalid bodies,
//! the NodeNames and Nodes paths, binds, probes, metrics, the lock reaper, and graceful shutdown
//! with a bind in flight on a loopback server.

#[path = "../core/tests/bind_support/mod.rs"]
mod bind_support;
mod http_support;

use axum::http::StatusCode;
use http_support::{
    MemCluster, call, call_json, fleet_nodes, gpu_pod, gpu_pod_json, synced_service,
};
use serde_json::{Value, json};
use sliceguard::annotations::{BIND_PHASE, DEVICES_ALLOCATED, VGPU_NODE};
use sliceguard::bind::{ApiFailure, BindSettings, ReleaseMode};
use sliceguard::server::Scheduler;
use sliceguard::server::SchedulerConfig;
use sliceguard::server::http::{extender_router, extender_router_with_timeout};
use std::sync::Arc;
use std::time::Duration;

fn config() -> SchedulerConfig {
    SchedulerConfig::default()
}

fn filter_args(pod: Value) -> Value {
    json!({"Pod": pod, "Nodes": null, "NodeNames": ["n1", "n2"]})
}

#[tokio::test]
async fn filter_with_node_names_chooses_one_node_patches_the_pod_and_assumes_it() {
    let (svc, cluster) = synced_service(config());
    let router = extender_router(svc.clone());
    let (status, body) = call_json(
        &router,
        "/filter",
        &filter_args(gpu_pod_json("p", "1000", "20")),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    // HAMi answers the one best node, and nothing else.
    assert_eq!(
        body,
        json!({"Nodes": null, "NodeNames": ["n1"], "FailedNodes": null,
               "FailedAndUnresolvableNodes": null, "Error": ""})
    );
    let patches = cluster.pod_patches.lock().unwrap().clone();
    assert_eq!(patches.len(), 1);
    let (pod, annotations, labels) = &patches[0];
    assert_eq!(pod, "default/p");
    assert_eq!(annotations[VGPU_NODE], "n1");
    assert_eq!(labels[VGPU_NODE], "n1");
    assert!(annotations[DEVICES_ALLOCATED].starts_with("GPU-n1-"));
    assert!(annotations[DEVICES_ALLOCATED].ends_with(",NVIDIA,1000,20:;"));
    // The assumption is in the ledger before the watch sees the patched pod.
    svc.with_view(|v| {
        assert!(v.is_assumed("default/p"));
        assert_eq!(v.ledger().entry("default/p").unwrap().node.as_ref(), "n1");
    });
    let events = cluster.with(|c| c.event_texts());
    assert_eq!(
        events,
        ["FilteringSucceed: find fit node(n1), 0 nodes not fit, 2 nodes fit(n2:0.00,n1:0.00)"]
    );
}

#[tokio::test]
async fn a_second_filter_of_the_same_pod_replaces_its_assumption() {
    let (svc, _cluster) = synced_service(config());
    let router = extender_router(svc.clone());
    for _ in 0..3 {
        let (_, body) = call_json(
            &router,
            "/filter",
            &filter_args(gpu_pod_json("p", "7000", "20")),
        )
        .await;
        assert_eq!(body["Error"], "");
    }
    // 7000 of 8000 MiB three times would not fit on one GPU; each filter drops the previous one.
    svc.with_view(|v| assert_eq!(v.ledger().pod_count(), 1));
}

#[tokio::test]
async fn keys_are_decoded_case_insensitively_and_unknown_fields_ignored() {
    let (svc, _) = synced_service(config());
    let router = extender_router(svc);
    let body = json!({"pod": gpu_pod_json("p", "1000", "20"), "NODENAMES": ["n2"],
                      "Extra": {"anything": [1, 2]}, "nodes": null});
    let (status, answer) = call_json(&router, "/filter", &body).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(answer["NodeNames"], json!(["n2"]));
    assert_eq!(answer["Error"], "");
}

#[tokio::test]
async fn a_missing_pod_is_http_200_with_hamis_error() {
    let (svc, _) = synced_service(config());
    let router = extender_router(svc);
    for body in [
        json!({"NodeNames": ["n1"]}),
        json!({"Pod": null}),
        json!(null),
    ] {
        let (status, answer) = call_json(&router, "/filter", &body).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(answer["Error"], "extender args missing pod", "{body}");
        assert_eq!(answer["NodeNames"], Value::Null);
    }
}

#[tokio::test]
async fn invalid_json_and_wrong_types_are_http_200_errors_naming_the_field() {
    let (svc, _) = synced_service(config());
    let router = extender_router(svc);
    let (status, body) = call(&router, "POST", "/filter", "{\"Pod\": ").await;
    assert_eq!(status, StatusCode::OK);
    let answer: Value = serde_json::from_slice(&body).unwrap();
    assert!(
        answer["Error"]
            .as_str()
            .unwrap()
            .starts_with("ExtenderArgs is not valid JSON"),
        "{answer}"
    );
    let (_, answer) = call_json(
        &router,
        "/filter",
        &json!({"Pod": {"spec": {"containers": [{"name": 5}]}}}),
    )
    .await;
    assert!(
        answer["Error"]
            .as_str()
            .unwrap()
            .starts_with("ExtenderArgs.Pod.spec.containers[0].name: "),
        "{answer}"
    );
    let (_, answer) = call_json(&router, "/bind", &json!({"PodName": ["p"]})).await;
    assert_eq!(
        answer["Error"],
        "ExtenderBindingArgs.PodName must be a string, got an array"
    );
}

/// An empty body is answered as HAMi's server answers it (the spec's 400 was wrong: Go's server
/// never hands `checkBody` a nil body, so the JSON decoder's `EOF` comes back with HTTP 200); a
/// body over HAMi's 1 MiB is 413 (deliberate: HAMi truncates it and reports the broken JSON).
#[tokio::test]
async fn an_empty_body_is_hamis_eof_error_and_a_2_mib_body_is_413() {
    let (svc, _) = synced_service(config());
    let router = extender_router(svc);
    for (path, what) in [
        ("/filter", "ExtenderArgs"),
        ("/bind", "ExtenderBindingArgs"),
    ] {
        let (status, body) = call(&router, "POST", path, "").await;
        assert_eq!(status, StatusCode::OK, "{path}");
        let answer: serde_json::Value = serde_json::from_slice(&body).expect("JSON answer");
        assert_eq!(
            answer["Error"],
            format!("{what}: EOF: the request body is empty"),
            "{path}"
        );
        let mut big = filter_args(gpu_pod_json("p", "1000", "20"));
        big["Padding"] = json!("x".repeat(2 << 20));
        let (status, _) = call(&router, "POST", path, big.to_string()).await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{path}");
    }
    // Just under the limit is fine.
    let mut fits = filter_args(gpu_pod_json("p", "1000", "20"));
    fits["Padding"] = json!("x".repeat((1 << 20) - 2000));
    let (status, _) = call(&router, "POST", "/filter", fits.to_string()).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn unschedulable_pods_get_failed_nodes_with_hamis_reasons_and_events() {
    let (svc, cluster) = synced_service(config());
    let router = extender_router(svc.clone());
    let args =
        json!({"Pod": gpu_pod_json("p", "999999", "20"), "NodeNames": ["n1", "n2", "ghost"]});
    let (status, answer) = call_json(&router, "/filter", &args).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(answer["NodeNames"], Value::Null);
    assert_eq!(
        answer["FailedNodes"],
        json!({"n1": "2/2 CardInsufficientMemory", "n2": "2/2 CardInsufficientMemory",
               "ghost": "node unregistered"})
    );
    assert_eq!(answer["Error"], "");
    assert!(cluster.pod_patches.lock().unwrap().is_empty());
    svc.with_view(|v| assert!(v.ledger().entry("default/p").is_none()));
    assert_eq!(
        cluster.with(|c| c.event_texts()),
        [
            "FilteringFailed: 2 nodes CardInsufficientMemory(n1,n2)",
            "FilteringFailed: no available node, 3 nodes do not meet"
        ]
    );
}

#[tokio::test]
async fn the_nodes_path_simulates_without_writes_or_events() {
    let (svc, cluster) = synced_service(config());
    let router = extender_router(svc.clone());
    let nodes: Vec<Value> = fleet_nodes(2)
        .into_iter()
        .map(|n| serde_json::to_value(n).unwrap())
        .collect();
    let args = json!({"Pod": gpu_pod_json("p", "1000", "20"), "Nodes": {"items": nodes}});
    let (status, answer) = call_json(&router, "/filter", &args).await;
    assert_eq!(status, StatusCode::OK);
    let items = answer["Nodes"]["items"].as_array().unwrap();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["metadata"]["name"], "n1");
    assert_eq!(answer["NodeNames"], Value::Null);
    assert!(cluster.pod_patches.lock().unwrap().is_empty());
    assert!(cluster.with(|c| c.events.is_empty()));
    svc.with_view(|v| assert_eq!(v.ledger().pod_count(), 0));
}

#[tokio::test]
async fn pods_without_gpu_requests_pass_every_node_untouched() {
    let (svc, cluster) = synced_service(config());
    let router = extender_router(svc);
    let pod = json!({"metadata": {"name": "web", "namespace": "default"},
                     "spec": {"containers": [{"name": "c"}]}});
    let (_, answer) = call_json(&router, "/filter", &filter_args(pod)).await;
    assert_eq!(answer["NodeNames"], json!(["n1", "n2"]));
    assert!(cluster.pod_patches.lock().unwrap().is_empty());
}

#[tokio::test]
async fn a_failed_pod_patch_undoes_the_assumption_and_returns_the_error() {
    let (svc, cluster) = synced_service(config());
    *cluster.fail_pod_patch.lock().unwrap() = Some(ApiFailure::Conflict("pod changed".into()));
    let router = extender_router(svc.clone());
    let (status, answer) = call_json(
        &router,
        "/filter",
        &filter_args(gpu_pod_json("p", "1000", "20")),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        answer["Error"],
        "failed to patch pod default/p: conflict: pod changed"
    );
    assert_eq!(answer["NodeNames"], Value::Null);
    svc.with_view(|v| {
        assert!(!v.is_assumed("default/p"));
        assert_eq!(v.ledger().pod_count(), 0);
    });
    assert_eq!(
        cluster.with(|c| c.event_texts()),
        ["FilteringFailed: failed to patch pod default/p: conflict: pod changed"]
    );
}

#[tokio::test]
async fn filter_waits_for_the_watches_then_reports_the_unsynced_cache() {
    let cluster = MemCluster::new(bind_support::FakeCluster::with_nodes(&["n1"]));
    let config = SchedulerConfig {
        sync_wait: Duration::from_millis(200),
        ..config()
    };
    let svc = std::sync::Arc::new(sliceguard::server::Scheduler::new(
        cluster,
        config,
        sliceguard::server::service::system_clock(),
    ));
    let router = extender_router(svc.clone());
    let (status, body) = call(&router, "GET", "/readyz", "").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        String::from_utf8(body).unwrap(),
        "not ready: node watch synced false, pod watch synced false\n"
    );
    let started = std::time::Instant::now();
    let (_, answer) = call_json(
        &router,
        "/filter",
        &filter_args(gpu_pod_json("p", "1000", "20")),
    )
    .await;
    assert!(started.elapsed() >= Duration::from_millis(190));
    assert_eq!(
        answer["Error"],
        "scheduler cache not synced after 200ms: nodes synced false, pods synced false"
    );
    svc.replace_nodes(&fleet_nodes(1));
    svc.replace_pods(&[]);
    let (status, _) = call(&router, "GET", "/readyz", "").await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = call(&router, "GET", "/healthz", "").await;
    assert_eq!((status, body), (StatusCode::OK, b"ok".to_vec()));
}

#[tokio::test]
async fn filter_then_bind_binds_the_pod_and_releases_the_lock() {
    let (svc, cluster) = synced_service(config());
    let router = extender_router(svc.clone());
    let (_, answer) = call_json(
        &router,
        "/filter",
        &filter_args(gpu_pod_json("p", "1000", "20")),
    )
    .await;
    let node = answer["NodeNames"][0].as_str().unwrap().to_string();
    let bind = json!({"PodName": "p", "PodNamespace": "default", "PodUID": "uid-p", "Node": node});
    let (status, answer) = call_json(&router, "/bind", &bind).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(answer, json!({"Error": ""}));
    cluster.with(|c| {
        let pod = c.pod("default/p");
        assert_eq!(pod.node_name.as_deref(), Some(node.as_str()));
        assert_eq!(pod.annotations[BIND_PHASE], "success");
        assert_eq!(c.lock(&node), None);
        assert_eq!(
            c.event_texts().last().unwrap(),
            &format!("BindingSucceed: Successfully binding node [{node}] to default/p")
        );
    });
    let metrics = svc.metrics().encode();
    for line in [
        "sliceguard_bind_outcomes_total{outcome=\"bound\"} 1",
        "sliceguard_lock_acquisitions_total 1",
        "sliceguard_lock_releases_total{by=\"binder\"} 1",
        "sliceguard_filter_decisions_total{outcome=\"scheduled\"} 1",
    ] {
        assert!(metrics.contains(line), "{line} in\n{metrics}");
    }
}

#[tokio::test]
async fn bind_keys_are_case_insensitive_and_contention_uses_hamis_text() {
    let (svc, cluster) = synced_service(config());
    cluster.with(|c| {
        c.add_pod("default", "holder");
        c.set_lock("n1", "2025-06-01T11:59:00Z,default,holder");
    });
    let router = extender_router(svc.clone());
    let bind = json!({"podname": "p", "PODNAMESPACE": "default", "PodUid": "uid-p", "node": "n1"});
    let (status, answer) = call_json(&router, "/bind", &bind).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        answer["Error"],
        "node n1 has been locked within 5m0s: node lock contention"
    );
    assert_eq!(
        cluster.with(|c| c.lock("n1")).as_deref(),
        Some("2025-06-01T11:59:00Z,default,holder")
    );
    assert!(
        svc.metrics()
            .encode()
            .contains("sliceguard_lock_contentions_total 1")
    );
    let (_, answer) = call_json(
        &router,
        "/bind",
        &json!({"PodName": "p", "PodNamespace": "default"}),
    )
    .await;
    assert_eq!(
        answer["Error"],
        "ExtenderBindingArgs.Node is missing or empty"
    );
}

#[tokio::test]
async fn concurrent_binds_to_one_node_queue_instead_of_contending() {
    let (svc, cluster) = synced_service(config());
    cluster.with(|c| {
        for i in 0..4 {
            c.add_pod("default", &format!("q{i}"));
        }
    });
    cluster
        .delays
        .lock()
        .unwrap()
        .insert("create-binding", Duration::from_millis(30));
    let router = extender_router(svc.clone());
    let mut tasks = Vec::new();
    for i in 0..4 {
        let router = router.clone();
        tasks.push(tokio::spawn(async move {
            let bind = json!({"PodName": format!("q{i}"), "PodNamespace": "default",
                              "PodUID": format!("uid-q{i}"), "Node": "n1"});
            call_json(&router, "/bind", &bind).await.1
        }));
    }
    for task in tasks {
        assert_eq!(task.await.unwrap(), json!({"Error": ""}));
    }
    cluster.with(|c| {
        assert_eq!(c.bindings.len(), 4);
        assert_eq!(c.lock("n1"), None);
    });
}

#[tokio::test]
async fn the_reaper_releases_device_plugin_locks_when_the_phase_settles() {
    let config = SchedulerConfig {
        bind: BindSettings {
            release_mode: ReleaseMode::DevicePlugin,
            ..BindSettings::default()
        },
        ..config()
    };
    let (svc, cluster) = synced_service(config);
    let router = extender_router(svc.clone());
    let bind = json!({"PodName": "p", "PodNamespace": "default", "PodUID": "uid-p", "Node": "n1"});
    assert_eq!(
        call_json(&router, "/bind", &bind).await.1,
        json!({"Error": ""})
    );
    let held = cluster
        .with(|c| c.lock("n1"))
        .expect("held for the device plugin");

    // The watches deliver the node with the lock and the pod still allocating: it stands.
    let mut node = fleet_nodes(2).remove(0);
    let rv = cluster.with(|c| c.nodes["n1"].resource_version.to_string());
    node.metadata.resource_version = Some(rv);
    node.metadata
        .annotations
        .as_mut()
        .unwrap()
        .insert("hami.io/mutex.lock".into(), held.clone());
    svc.apply_node(&node);
    let mut pod = gpu_pod("p", "1000", "20");
    pod.spec.as_mut().unwrap().node_name = Some("n1".into());
    pod.metadata.annotations = Some([(BIND_PHASE.to_string(), "allocating".to_string())].into());
    svc.apply_pod(&pod);
    let next = svc.reap_once().await;
    assert_eq!(
        next,
        Some("2025-06-01T12:05:01Z".parse().unwrap()),
        "wakes at the expiry"
    );
    assert_eq!(cluster.with(|c| c.lock("n1")), Some(held.clone()));

    // HAMi's device plugin sets bind-phase=success: the next pass releases it.
    pod.metadata.annotations = Some([(BIND_PHASE.to_string(), "success".to_string())].into());
    svc.apply_pod(&pod);
    assert_eq!(svc.reap_once().await, None);
    assert_eq!(cluster.with(|c| c.lock("n1")), None);
    assert!(
        svc.metrics()
            .encode()
            .contains("sliceguard_lock_releases_total{by=\"reaper\"} 1")
    );
}

#[tokio::test]
async fn the_reaper_confirms_a_holder_missing_from_the_cache_before_releasing() {
    let (svc, cluster) = synced_service(config());
    cluster.with(|c| c.set_lock("n2", "2025-06-01T11:59:30Z,default,gone"));
    let mut node = fleet_nodes(2).remove(1);
    node.metadata.resource_version =
        Some(cluster.with(|c| c.nodes["n2"].resource_version.to_string()));
    node.metadata.annotations.as_mut().unwrap().insert(
        "hami.io/mutex.lock".into(),
        "2025-06-01T11:59:30Z,default,gone".into(),
    );
    svc.apply_node(&node);
    svc.reap_once().await;
    cluster.with(|c| {
        assert_eq!(c.lock("n2"), None);
        assert_eq!(c.count("get-pod"), 1, "the holder was looked up live");
    });
}

#[tokio::test]
async fn graceful_shutdown_lets_a_bind_in_flight_finish_and_release() {
    let (svc, cluster) = synced_service(config());
    cluster
        .delays
        .lock()
        .unwrap()
        .insert("create-binding", Duration::from_millis(400));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let shutdown = tokio_util::sync::CancellationToken::new();
    let server = tokio::spawn(sliceguard::server::http::serve(
        listener,
        extender_router(svc.clone()),
        None,
        shutdown.clone(),
        Duration::from_secs(5),
    ));
    let body = json!({"PodName": "p", "PodNamespace": "default", "PodUID": "uid-p", "Node": "n1"})
        .to_string();
    let client = tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
        let request = format!(
            "POST /bind HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).await.unwrap();
        answer
    });
    // Wait until the bind holds the lock, then ask the server to stop.
    for _ in 0..100 {
        if cluster.with(|c| c.lock("n1")).is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(cluster.with(|c| c.lock("n1")).is_some(), "bind in flight");
    shutdown.cancel();
    // New connections are refused once the accept loop stopped.
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(tokio::net::TcpStream::connect(address).await.is_err());
    let answer = client.await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 200 OK"), "{answer}");
    assert!(answer.ends_with("{\"Error\":\"\"}"), "{answer}");
    server.await.unwrap();
    assert!(svc.drain_binds(Duration::from_secs(1)).await);
    cluster.with(|c| {
        assert_eq!(c.pod("default/p").node_name.as_deref(), Some("n1"));
        assert_eq!(c.lock("n1"), None);
    });
}

#[tokio::test]
async fn a_slow_request_times_out_with_408_and_its_bind_still_finishes() {
    let (svc, cluster) = synced_service(config());
    cluster
        .delays
        .lock()
        .unwrap()
        .insert("create-binding", Duration::from_millis(300));
    let router = extender_router_with_timeout(svc.clone(), Duration::from_millis(100));
    let bind = json!({"PodName": "p", "PodNamespace": "default", "PodUID": "uid-p", "Node": "n1"});
    let (status, _) = call(&router, "POST", "/bind", bind.to_string()).await;
    assert_eq!(status, StatusCode::REQUEST_TIMEOUT);
    // The bind runs in its own task: it completes and releases the lock.
    assert!(svc.drain_binds(Duration::from_secs(2)).await);
    cluster.with(|c| {
        assert_eq!(c.pod("default/p").node_name.as_deref(), Some("n1"));
        assert_eq!(c.lock("n1"), None);
    });
}

/// A service over nodes n1 and n2 (two 8000 MiB GPUs each) and the pods `pods` in the fake API,
/// whose clock reads [`http_support::NOW`] plus the seconds in the returned counter.
fn service_with_clock(
    pods: &[&str],
) -> (
    Arc<Scheduler<MemCluster>>,
    MemCluster,
    Arc<std::sync::atomic::AtomicI64>,
) {
    use jiff::{SignedDuration, Timestamp};
    use sliceguard::server::service::Clock;
    use std::sync::atomic::{AtomicI64, Ordering};
    let mut fake = bind_support::FakeCluster::with_nodes(&["n1", "n2"]);
    for name in pods {
        fake.add_pod("default", name);
    }
    let cluster = MemCluster::new(fake);
    let elapsed = Arc::new(AtomicI64::new(0));
    let clock: Clock = {
        let elapsed = elapsed.clone();
        Arc::new(move || {
            http_support::NOW.parse::<Timestamp>().unwrap()
                + SignedDuration::from_secs(elapsed.load(Ordering::SeqCst))
        })
    };
    let svc = Arc::new(Scheduler::new(cluster.clone(), config(), clock));
    svc.replace_nodes(&fleet_nodes(2));
    svc.replace_pods(&[]);
    (svc, cluster, elapsed)
}

/// Filter arguments for a pod asking both GPUs of a node whole, offered `nodes`.
fn whole_node_args(name: &str, nodes: &[&str]) -> Value {
    json!({"Pod": {
        "metadata": {"name": name, "namespace": "default", "uid": format!("uid-{name}")},
        "spec": {"schedulerName": "sliceguard-scheduler", "containers": [{"name": "c", "resources": {"limits": {
            "nvidia.com/gpu": "2", "nvidia.com/gpumem": "8000", "nvidia.com/gpucores": "100"}}}]}},
        "NodeNames": nodes})
}

/// How many unconfirmed (lost-answer) filter writes of the pod the service counts.
fn unconfirmed_writes(svc: &Arc<Scheduler<MemCluster>>, key: &str) -> usize {
    let prefix = format!("{key}#unconfirmed-");
    svc.with_view(|v| {
        v.ledger()
            .entries()
            .filter(|(k, _)| k.starts_with(&prefix))
            .count()
    })
}

/// Two lost writes of one pod on two nodes are both counted (either may be the one on the API), and
/// the watch showing the pod carrying the second settles both: the second becomes the pod's own
/// usage, the first is dropped.
#[tokio::test]
async fn two_lost_writes_of_one_pod_are_both_counted_until_the_watch_shows_which_landed() {
    let (svc, cluster, _) = service_with_clock(&["d", "e"]);
    let router = extender_router(svc.clone());
    let lost = Some(ApiFailure::Indeterminate(
        "500 Internal Server Error".into(),
    ));
    *cluster.fail_pod_patch.lock().unwrap() = lost.clone();
    for node in ["n1", "n2"] {
        let (_, answer) = call_json(&router, "/filter", &whole_node_args("d", &[node])).await;
        assert!(
            answer["Error"].as_str().unwrap().contains("500"),
            "{answer}"
        );
    }
    *cluster.fail_pod_patch.lock().unwrap() = None;
    assert_eq!(unconfirmed_writes(&svc, "default/d"), 2);
    let (_, answer) = call_json(&router, "/filter", &whole_node_args("e", &["n1", "n2"])).await;
    assert_eq!(
        answer["NodeNames"],
        Value::Null,
        "both nodes are held: {answer}"
    );

    // The watch delivers d carrying the write to n2 (the one that landed).
    let second = svc.with_view(|v| {
        v.unconfirmed_older_than(
            jiff::SignedDuration::ZERO,
            http_support::NOW.parse::<jiff::Timestamp>().unwrap(),
        )
        .into_iter()
        .map(|(_, w)| w)
        .collect::<Vec<_>>()
    });
    assert_eq!(second.len(), 2);
    let landed: Value = json!({
        "metadata": {"name": "d", "namespace": "default", "uid": "uid-d",
                     "annotations": {DEVICES_ALLOCATED: second[1].allocated, VGPU_NODE: "n2"},
                     "labels": {VGPU_NODE: "n2"}},
        "spec": {"schedulerName": "sliceguard-scheduler", "containers": [{"name": "c", "resources": {"limits": {
            "nvidia.com/gpu": "2", "nvidia.com/gpumem": "8000", "nvidia.com/gpucores": "100"}}}]}});
    svc.apply_pod(&serde_json::from_value(landed).unwrap());
    assert_eq!(unconfirmed_writes(&svc, "default/d"), 0);
    svc.with_view(|v| assert_eq!(v.ledger().entry("default/d").unwrap().node.as_ref(), "n2"));
    let (_, answer) = call_json(&router, "/filter", &whole_node_args("e", &["n1", "n2"])).await;
    assert_eq!(answer["NodeNames"], json!(["n1"]), "{answer}");
}

/// A filter write whose answer was lost (a 500) and that never landed stops holding its devices once
/// a read of its pod, a minute after the write, shows it did not land; before that minute it is
/// counted, and a write the read shows landed stays counted. Without the read, two pods whose lost
/// writes never landed blocked each other for good (the 200 x 2000 fault campaign, seed 194).
#[tokio::test]
async fn a_lost_filter_write_that_never_landed_is_settled_by_reading_the_pod() {
    use jiff::{SignedDuration, Timestamp};
    use sliceguard::server::service::UNCONFIRMED_SETTLE_AFTER;
    use std::sync::atomic::Ordering;

    let (svc, cluster, elapsed) = service_with_clock(&["a", "b", "c"]);
    let router = extender_router(svc.clone());
    let filter_on = |name: &'static str, node: &'static str| {
        let (router, args) = (router.clone(), whole_node_args(name, &[node]));
        async move { call_json(&router, "/filter", &args).await.1 }
    };
    let filter = |name: &'static str| filter_on(name, "n1");
    let placed = |answer: &Value| answer["NodeNames"] == json!(["n1"]);
    let unconfirmed =
        |svc: &Arc<Scheduler<MemCluster>>, key: &str| unconfirmed_writes(svc, key) > 0;

    // a's patch answers 500 and does not land: its write is counted, so b does not fit.
    *cluster.fail_pod_patch.lock().unwrap() = Some(ApiFailure::Indeterminate(
        "500 Internal Server Error".into(),
    ));
    let answer = filter("a").await;
    assert!(
        answer["Error"].as_str().unwrap().contains("500"),
        "{answer}"
    );
    assert!(unconfirmed(&svc, "default/a"));
    *cluster.fail_pod_patch.lock().unwrap() = None;
    assert!(!placed(&filter("b").await), "a's lost write still holds n1");

    // Just under a minute later the write could still land: no read, still counted.
    elapsed.store(UNCONFIRMED_SETTLE_AFTER.as_secs() - 1, Ordering::SeqCst);
    assert!(!placed(&filter("b").await));
    assert!(unconfirmed(&svc, "default/a"));

    // A minute after the write, the read of pod a shows no allocation: the write is dropped and
    // b gets the node.
    elapsed.store(UNCONFIRMED_SETTLE_AFTER.as_secs(), Ordering::SeqCst);
    let answer = filter("b").await;
    assert!(placed(&answer), "{answer}");
    assert!(!unconfirmed(&svc, "default/a"));

    // A lost write that did land stays counted after the read, until the watch delivers it.
    *cluster.fail_pod_patch.lock().unwrap() = Some(ApiFailure::Indeterminate(
        "500 Internal Server Error".into(),
    ));
    let answer = filter_on("c", "n2").await;
    assert!(
        answer["Error"].as_str().unwrap().contains("500"),
        "{answer}"
    );
    *cluster.fail_pod_patch.lock().unwrap() = None;
    let written = svc
        .with_view(|v| {
            v.ledger()
                .entries()
                .find(|(k, _)| k.starts_with("default/c#unconfirmed-"))
                .map(|(_, entry)| entry.clone())
        })
        .expect("c's lost write is counted");
    assert_eq!(written.node.as_ref(), "n2");
    // What the lost patch carried, as the service noted it.
    let far_future =
        http_support::NOW.parse::<Timestamp>().unwrap() + SignedDuration::from_hours(1);
    let allocated = svc
        .with_view(|v| v.unconfirmed_older_than(SignedDuration::ZERO, far_future))
        .into_iter()
        .find(|(key, _)| key == "default/c")
        .map(|(_, write)| write.allocated)
        .expect("c's lost write is noted");
    cluster.with(|c| {
        c.pods
            .get_mut("default/c")
            .unwrap()
            .annotations
            .insert(DEVICES_ALLOCATED.to_string(), allocated);
    });
    elapsed.store(3 * UNCONFIRMED_SETTLE_AFTER.as_secs(), Ordering::SeqCst);
    let _ = filter("a").await;
    assert!(
        unconfirmed(&svc, "default/c"),
        "a write the read shows landed stays counted"
    );
}

/// Every ledger entry of the service's view, by key.
fn ledger_entries(
    svc: &Arc<Scheduler<MemCluster>>,
) -> std::collections::BTreeMap<String, sliceguard::ledger::LedgerEntry> {
    svc.with_view(|v| {
        v.ledger()
            .entries()
            .map(|(k, e)| (k.to_string(), e.clone()))
            .collect()
    })
}

/// Filters pod `p` (offered n1 and n2) and drops the filter while an effect of kind `effect` is in
/// flight: that effect never answers, and the caller gives up after 100 ms, as kube-scheduler does
/// when its extender call times out.
async fn filter_p_dropped_while(
    svc: &Arc<Scheduler<MemCluster>>,
    cluster: &MemCluster,
    effect: &'static str,
) {
    use sliceguard::server::extender::ExtenderArgs;
    cluster
        .delays
        .lock()
        .unwrap()
        .insert(effect, Duration::from_secs(3600));
    let args = ExtenderArgs {
        pod: Some(gpu_pod("p", "1000", "20")),
        nodes: None,
        node_names: Some(vec!["n1".into(), "n2".into()]),
    };
    let dropped = tokio::time::timeout(Duration::from_millis(100), svc.filter(args)).await;
    assert!(dropped.is_err(), "the {effect} effect never answers");
}

/// A filter whose future is dropped (kube-scheduler hung up) while its pod patch is in flight: the
/// patch may still land, so the write counts as unconfirmed, not as a confirmed assumption, and is
/// not lost.
#[tokio::test]
async fn a_filter_dropped_while_its_patch_is_in_flight_counts_the_write_as_unconfirmed() {
    let (svc, cluster) = synced_service(config());
    filter_p_dropped_while(&svc, &cluster, "patch-pod-metadata").await;
    assert!(cluster.pod_patches.lock().unwrap().is_empty());
    svc.with_view(|v| assert!(!v.is_assumed("default/p")));
    let entries = ledger_entries(&svc);
    assert!(!entries.contains_key("default/p"), "{entries:?}");
    assert_eq!(unconfirmed_writes(&svc, "default/p"), 1);
    let (key, entry) = entries.iter().next().unwrap();
    assert!(key.starts_with("default/p#unconfirmed-"), "{key}");
    assert_eq!(entry.node.as_ref(), "n1");
    assert_eq!(entries.len(), 1);
}

/// A filter dropped while it reads the pod of an old lost write, before it decided anything: the
/// view is exactly as before, including the pod's earlier assumption.
#[tokio::test]
async fn a_filter_dropped_during_its_settle_read_leaves_the_view_as_it_was() {
    use sliceguard::server::service::UNCONFIRMED_SETTLE_AFTER;
    use std::sync::atomic::Ordering;
    let (svc, cluster, elapsed) = service_with_clock(&["a", "p"]);
    let router = extender_router(svc.clone());
    // p is placed (assumed); a's write is lost.
    let (_, answer) = call_json(
        &router,
        "/filter",
        &filter_args(gpu_pod_json("p", "1000", "20")),
    )
    .await;
    assert_eq!(answer["NodeNames"], json!(["n1"]), "{answer}");
    *cluster.fail_pod_patch.lock().unwrap() = Some(ApiFailure::Indeterminate("lost".into()));
    let (_, answer) = call_json(&router, "/filter", &whole_node_args("a", &["n2"])).await;
    assert!(
        answer["Error"].as_str().unwrap().contains("lost"),
        "{answer}"
    );
    *cluster.fail_pod_patch.lock().unwrap() = None;
    elapsed.store(UNCONFIRMED_SETTLE_AFTER.as_secs() + 1, Ordering::SeqCst);
    let before = ledger_entries(&svc);
    assert_eq!(before.len(), 2, "{before:?}");

    // p is filtered again; the read of a's pod never answers and the filter is dropped.
    filter_p_dropped_while(&svc, &cluster, "get-pod").await;
    assert_eq!(ledger_entries(&svc), before);
    svc.with_view(|v| assert!(v.is_assumed("default/p")));
    assert_eq!(unconfirmed_writes(&svc, "default/a"), 1);
    assert_eq!(
        cluster.pod_patches.lock().unwrap().len(),
        1,
        "only p's first patch"
    );
}
