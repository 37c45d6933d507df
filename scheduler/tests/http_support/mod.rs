//! Shared pieces of the HTTP tests: the in-memory API of `bind_support` behind the service's
//! `ClusterApi` trait (with injectable delays and a failing filter pod patch), a service over it with a
//! fixed clock and a synced fleet, and a one-shot request helper.
#![allow(dead_code)]

pub mod api_stub;

use crate::bind_support::FakeCluster;
use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use jiff::Timestamp;
use k8s_openapi::api::core::v1::{Node, Pod};
use serde_json::Value;
use sliceguard::bind::{ApiFailure, Effect, Observation};
use sliceguard::objects::{FleetSpec, fleet_devices, gpu_node};
use sliceguard::server::service::Clock;
use sliceguard::server::{ClusterApi, Scheduler, SchedulerConfig};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tower::ServiceExt;

pub const NOW: &str = "2025-06-01T12:00:00Z";

/// One filter patch: (pod, annotations, labels).
pub type PodPatch = (String, BTreeMap<String, String>, BTreeMap<String, String>);

/// The fake API behind `ClusterApi`.
#[derive(Clone, Default)]
pub struct MemCluster {
    pub inner: Arc<Mutex<FakeCluster>>,
    /// A delay before effects of these kinds (to hold a bind in flight).
    pub delays: Arc<Mutex<BTreeMap<&'static str, Duration>>>,
    /// The filter's pod patch (`patch-pod-metadata`) fails with this, without being applied.
    pub fail_pod_patch: Arc<Mutex<Option<ApiFailure>>>,
    /// The filter's pod patches applied: (pod, annotations, labels).
    pub pod_patches: Arc<Mutex<Vec<PodPatch>>>,
}

impl MemCluster {
    pub fn new(cluster: FakeCluster) -> Self {
        MemCluster {
            inner: Arc::new(Mutex::new(cluster)),
            ..Default::default()
        }
    }

    pub fn with<R>(&self, f: impl FnOnce(&mut FakeCluster) -> R) -> R {
        f(&mut self.inner.lock().unwrap())
    }
}

impl ClusterApi for MemCluster {
    async fn execute(&self, effect: &Effect) -> Observation {
        let delay = self.delays.lock().unwrap().get(effect.kind()).copied();
        if let Some(delay) = delay {
            tokio::time::sleep(delay).await;
        }
        if let Effect::PatchPodMetadata {
            namespace,
            name,
            annotations,
            labels,
            ..
        } = effect
        {
            if let Some(failure) = self.fail_pod_patch.lock().unwrap().clone() {
                return Observation::Failed(failure);
            }
            let observation = self.inner.lock().unwrap().execute(effect);
            if matches!(observation, Observation::Written { .. }) {
                self.pod_patches.lock().unwrap().push((
                    format!("{namespace}/{name}"),
                    annotations.clone(),
                    labels.clone(),
                ));
            }
            return observation;
        }
        self.inner.lock().unwrap().execute(effect)
    }
}

/// Fleet nodes `n1`, `n2` with `gpus` GPUs of 8000 MiB, split 10.
pub fn fleet_nodes(gpus: usize) -> Vec<Node> {
    let spec = FleetSpec {
        gpus_per_node: gpus,
        memory_mib: 8000,
        ..FleetSpec::default()
    };
    ["n1", "n2"]
        .iter()
        .map(|n| gpu_node(n, &fleet_devices(n, &spec), NOW.parse().unwrap()))
        .collect()
}

/// A service over a fake cluster holding nodes n1, n2 and pod default/p, synced, with a fixed clock.
pub fn synced_service(config: SchedulerConfig) -> (Arc<Scheduler<MemCluster>>, MemCluster) {
    let mut fake = FakeCluster::with_nodes(&["n1", "n2"]);
    fake.add_pod("default", "p");
    let cluster = MemCluster::new(fake);
    let clock: Clock = Arc::new(|| NOW.parse::<Timestamp>().unwrap());
    let svc = Arc::new(Scheduler::new(cluster.clone(), config, clock));
    svc.replace_nodes(&fleet_nodes(2));
    svc.replace_pods(&[]);
    (svc, cluster)
}

/// A GPU pod object as kube-scheduler sends it (no apiVersion/kind).
pub fn gpu_pod_json(name: &str, gpumem: &str, gpucores: &str) -> Value {
    serde_json::json!({
        "metadata": {"name": name, "namespace": "default", "uid": format!("uid-{name}")},
        "spec": {"schedulerName": "sliceguard-scheduler", "containers": [{"name": "c", "resources": {"limits": {
            "nvidia.com/gpu": "1", "nvidia.com/gpumem": gpumem, "nvidia.com/gpucores": gpucores}}}]}
    })
}

pub fn gpu_pod(name: &str, gpumem: &str, gpucores: &str) -> Pod {
    serde_json::from_value(gpu_pod_json(name, gpumem, gpucores)).unwrap()
}

/// Sends one request through the router; returns the status and the body.
pub async fn call(
    router: &Router,
    method: &str,
    path: &str,
    body: impl Into<Body>,
) -> (StatusCode, Vec<u8>) {
    let request = Request::builder()
        .method(method)
        .uri(path)
        .header("content-type", "application/json")
        .body(body.into())
        .unwrap();
    let response = router.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (status, bytes.to_vec())
}

pub async fn call_json(router: &Router, path: &str, body: &Value) -> (StatusCode, Value) {
    let (status, bytes) = call(router, "POST", path, body.to_string()).await;
    let value = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
    (status, value)
}
