//! The live simulated cluster: the REST façade ([`crate::http`]) plus the controllers a real cluster
//! runs around sliceguard, in real time, talking to sliceguard only over its real HTTP interfaces.
//!
//! - **Admission**: a pod create or update goes to the configured webhook as an AdmissionReview v1
//!   over HTTPS (trusting the given CA), with the request's user in `userInfo` and, on UPDATE, the
//!   stored pod as `oldObject`; the JSON Patch it answers is applied before the pod is stored, as
//!   kube-apiserver does. With a [`WebhookScope`] (the embedded cluster reads it from the rendered
//!   `deploy/overlays/fake-fleet`), its operations and namespaceSelector decide which pods are sent
//!   (its CEL matchConditions are not evaluated, see [`crate::deploy`]; the webhook itself honours
//!   the `hami.io/webhook: ignore` opt-out they express); without one, pods in a namespace
//!   labelled `hami.io/webhook: ignore` skip it.
//!   `failurePolicy: Fail` by default (a webhook that cannot be called rejects the create with
//!   kube-apiserver's message), `Ignore` on request.
//! - **kube-scheduler stand-in**: a pending pod whose `schedulerName` is sliceguard's goes to the
//!   extender: `POST {extender}/filter` with the names of the nodes kube-scheduler's own filters pass
//!   ([`sliceguard::eligibility`]), then `POST {extender}/bind` to the first node it returns. It
//!   records `Scheduled` or `FailedScheduling` events and the `PodScheduled` condition as
//!   kube-scheduler does, and retries with kube-scheduler's backoff (1 s doubling to 10 s; every pod
//!   goes back to the active queue when a pod is deleted or a node changes). The queue, the backoff,
//!   the eligible nodes and the extender arguments are [`crate::kube_scheduler`]'s. Pods of
//!   `default-scheduler` get a default placement (the eligible node with the fewest pods); pods
//!   naming any other scheduler wait, since none runs here.
//! - **Kubelets**: a bound pod turns Running when its node's allocatable covers its extended
//!   resources ([`crate::node_agent::kubelet_admit`]); otherwise it fails with the kubelet's reason.
//! - **Device plugins** ([`DevicePlugin`]): `none` (a fake fleet), `hami` (HAMi's Allocate: erase
//!   to-allocate, set bind-phase, owner-checked lock release), `mock` (answers, never releases).
//! - **Deployments** (`apps/v1`): a controller keeps `spec.replicas` pods from the template (named
//!   `NAME-HASH-XXXXX` like the ReplicaSet controller's, created through admission like any pod,
//!   owned by the Deployment directly: there is no ReplicaSet object), deletes surplus ones, writes
//!   the replica counts to the status, and garbage-collects the pods of a deleted Deployment.
//!
//! Unlike [`crate::world`], this tier is not deterministic: it runs on wall-clock time and real
//! sockets, because its purpose is to run sliceguard unchanged (kube-rs watches, HTTPS webhook,
//! HTTP extender) and to serve kubectl. It is a test tier, not Kubernetes.

use crate::deploy::{WebhookScope, labels_of};
use crate::http::{Admission, AdmissionRequest, Operation, RunningApi, SharedStore};
use crate::kube_scheduler::{
    NodeOffer, SchedulingQueue, binding_args, binding_body, filter_args, filter_body, offer,
};
use crate::node_agent;
use crate::store::{ApiError, Part, PatchType, Resource, Store};
use crate::world::DevicePlugin;
use base64::Engine as _;
use hyper::body::Bytes;
use k8s_openapi::api::core::v1::{Node, Pod};
use serde_json::{Value, json};
use sliceguard::annotations::RESOURCE_GPU;
use sliceguard::objects::FleetSpec;
use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

/// The user the Deployment controller's pod creates are made by (kube-controller-manager's
/// ReplicaSet controller).
pub const CONTROLLER_USER: &str = "system:serviceaccount:kube-system:replicaset-controller";

/// The webhook name the simulated API server reports in its errors (`deploy/base/webhook.yaml`'s).
pub const WEBHOOK_NAME: &str = "vgpu.sliceguard.io";

/// kube-scheduler's own profile name; pods naming any other scheduler but sliceguard's stay Pending.
const DEFAULT_SCHEDULER: &str = "default-scheduler";

/// How long one webhook or extender call may take (kube-apiserver's webhook default is 10 s).
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// Where the mutating webhook is.
#[derive(Debug, Clone)]
pub struct WebhookTarget {
    /// `https://HOST:PORT/PATH` (or `http://` for a plain test server).
    pub url: String,
    /// The CA bundle (PEM) the server's certificate must chain to, as a `caBundle` would carry.
    pub ca_pem: Option<String>,
    /// `failurePolicy: Ignore`: admit unmutated when the webhook cannot be called.
    pub ignore_failures: bool,
    /// The webhook configuration's scope (rules, selectors), when one is deployed.
    pub scope: Option<WebhookScope>,
}

/// How to start a live cluster.
#[derive(Debug, Clone)]
pub struct LiveOptions {
    /// Listen address of the façade (`127.0.0.1:0` for any free port).
    pub addr: String,
    /// The fake GPU fleet created (registered and handshaken) at start.
    pub fleet: FleetSpec,
    /// Pods with this `schedulerName` go to the extender.
    pub scheduler_name: String,
    /// The mutating webhook; `None` admits pods unmutated.
    pub webhook: Option<WebhookTarget>,
    /// The extender's URL prefix (`http://127.0.0.1:8080`); `None` leaves its pods Pending.
    pub extender_url: Option<String>,
    /// How the nodes' device plugins answer Allocate.
    pub device_plugin: DevicePlugin,
    /// How often the controllers look again when nothing changes.
    pub tick: Duration,
    /// Running GPU pods (1024 MiB, 5 cores each) created already placed at start, spread over the
    /// fleet's devices: a large cluster's steady state, for memory and start-up measurements.
    pub preload_pods: usize,
}

impl Default for LiveOptions {
    fn default() -> Self {
        LiveOptions {
            addr: "127.0.0.1:0".into(),
            fleet: FleetSpec::default(),
            scheduler_name: "sliceguard-scheduler".into(),
            webhook: None,
            extender_url: None,
            device_plugin: DevicePlugin::None,
            tick: Duration::from_millis(200),
            preload_pods: 0,
        }
    }
}

/// The targets the controllers call; set after start, because sliceguard needs the API first.
#[derive(Default)]
struct Targets {
    webhook: Option<(WebhookTarget, Option<tokio_rustls::TlsConnector>)>,
    extender: Option<String>,
}

impl std::fmt::Debug for Targets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Targets")
            .field("webhook", &self.webhook.as_ref().map(|(t, _)| &t.url))
            .field("extender", &self.extender)
            .finish()
    }
}

/// A running live cluster.
#[derive(Debug)]
pub struct LiveCluster {
    api: RunningApi,
    shared: Arc<SharedStore>,
    targets: Arc<RwLock<Targets>>,
    controllers: tokio::task::JoinHandle<()>,
}

impl LiveCluster {
    /// Creates the fleet, serves the façade and starts the controllers.
    pub async fn start(options: LiveOptions) -> Result<LiveCluster, String> {
        let now = jiff::Timestamp::now();
        let mut store = Store::new(now);
        for node in sliceguard::objects::fleet(&options.fleet, now) {
            let value = serde_json::to_value(node).map_err(|e| e.to_string())?;
            store
                .create(Resource::Nodes, None, value)
                .map_err(|e| format!("creating the fleet: {e}"))?;
        }
        preload(&mut store, &options)?;
        let shared = SharedStore::new(store);
        let targets = Arc::new(RwLock::new(Targets::default()));
        let admission: Arc<dyn Admission> = Arc::new(WebhookAdmission {
            targets: targets.clone(),
            shared: shared.clone(),
            uid: AtomicU64::new(0),
        });
        let api = crate::http::serve(shared.clone(), Some(admission.clone()), &options.addr)
            .await
            .map_err(|e| format!("cannot listen on {}: {e}", options.addr))?;
        let cluster = LiveCluster {
            controllers: tokio::spawn(controllers(
                shared.clone(),
                targets.clone(),
                admission,
                options.clone(),
            )),
            api,
            shared,
            targets,
        };
        cluster.configure(options.webhook, options.extender_url)?;
        Ok(cluster)
    }

    /// Points admission at `webhook` and the scheduler stand-in at `extender_url`.
    pub fn configure(
        &self,
        webhook: Option<WebhookTarget>,
        extender_url: Option<String>,
    ) -> Result<(), String> {
        let webhook = match webhook {
            Some(target) => {
                let connector = match &target.ca_pem {
                    Some(pem) => Some(tls_connector(pem)?),
                    None if target.url.starts_with("https://") => {
                        return Err(format!(
                            "webhook {} is HTTPS but no CA bundle was given",
                            target.url
                        ));
                    }
                    None => None,
                };
                Some((target, connector))
            }
            None => None,
        };
        let mut targets = self
            .targets
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        targets.webhook = webhook;
        targets.extender = extender_url.map(|u| u.trim_end_matches('/').to_string());
        Ok(())
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> &str {
        &self.api.url
    }

    /// A kubeconfig (YAML) pointing at the façade, as the cluster admin.
    pub fn kubeconfig(&self) -> String {
        crate::http::kubeconfig(&self.api.url)
    }

    /// A kubeconfig (YAML) pointing at the façade, as `user` (see [`crate::http::kubeconfig_as`]).
    pub fn kubeconfig_as(&self, user: &str) -> String {
        crate::http::kubeconfig_as(&self.api.url, user)
    }

    /// The store behind the façade (for checks and planted faults).
    pub fn shared(&self) -> Arc<SharedStore> {
        self.shared.clone()
    }

    /// Stops the controllers and the façade.
    pub async fn stop(self) {
        self.controllers.abort();
        let _ = self.api.shutdown.send(());
        let _ = self.api.task.await;
    }
}

/// Creates `options.preload_pods` Running pods, pod `i` on device `i / nodes` of node `i % nodes`
/// (round robin over devices), each requesting 250m CPU, with the annotations sliceguard (or HAMi)
/// leaves after a bind.
fn preload(store: &mut Store, options: &LiveOptions) -> Result<(), String> {
    use sliceguard::annotations::{
        BIND_PHASE, DEVICES_ALLOCATED, DEVICES_TO_ALLOCATE, VGPU_NODE, bind_phase,
    };
    use sliceguard::model::{ContainerDevice, PodDevices};
    const MEMORY: u32 = 1024;
    const CORES: u32 = 5;
    let fleet = &options.fleet;
    let devices = fleet.nodes.saturating_mul(fleet.gpus_per_node);
    if options.preload_pods == 0 {
        return Ok(());
    }
    let per_device = options.preload_pods.div_ceil(devices.max(1));
    let fits = devices > 0
        && per_device <= fleet.split as usize
        && per_device.saturating_mul(MEMORY as usize) <= fleet.memory_mib as usize
        && per_device.saturating_mul(CORES as usize) <= fleet.cores as usize;
    if !fits {
        return Err(format!(
            "{} preloaded pods of {MEMORY} MiB and {CORES} cores do not fit {} nodes x {} GPUs ({} MiB, split {})",
            options.preload_pods, fleet.nodes, fleet.gpus_per_node, fleet.memory_mib, fleet.split
        ));
    }
    let names: Vec<String> = (0..fleet.nodes)
        .map(|i| sliceguard::objects::fleet_node_name(&fleet.name_prefix, i))
        .collect();
    let node_devices: Vec<Vec<String>> = names
        .iter()
        .map(|n| {
            sliceguard::objects::fleet_devices(n, fleet)
                .into_iter()
                .map(|d| d.id)
                .collect()
        })
        .collect();
    for i in 0..options.preload_pods {
        let node = i % fleet.nodes;
        let device = (i / fleet.nodes) % fleet.gpus_per_node;
        let allocation = PodDevices(vec![vec![ContainerDevice {
            uuid: node_devices[node][device].clone(),
            backend: sliceguard::annotations::BACKEND_NVIDIA.into(),
            usedmem: MEMORY,
            usedcores: CORES,
        }]]);
        let rendered = sliceguard::codec::pod_devices::render(&allocation)
            .map_err(|e| format!("preloaded allocation: {e}"))?;
        let pod = sliceguard::objects::gpu_pod(
            &format!("preload-{i:06}"),
            &[],
            &[sliceguard::objects::GpuAsk::fraction(MEMORY, CORES)],
        );
        let mut value = serde_json::to_value(pod).map_err(|e| e.to_string())?;
        value["metadata"]["annotations"] = json!({
            VGPU_NODE: names[node],
            DEVICES_ALLOCATED: rendered,
            DEVICES_TO_ALLOCATE: ";;",
            BIND_PHASE: bind_phase::SUCCESS,
        });
        // The label is what schedulers' pod watches select on (HAMi's and sliceguard's).
        value["metadata"]["labels"] = json!({VGPU_NODE: names[node]});
        value["spec"]["schedulerName"] = json!(options.scheduler_name);
        value["spec"]["nodeName"] = json!(names[node]);
        value["spec"]["containers"][0]["resources"]["requests"] = json!({"cpu": "250m"});
        value["status"] = json!({"phase": "Running"});
        store
            .create(Resource::Pods, Some("default"), value)
            .map_err(|e| format!("preloading pod {i}: {e}"))?;
    }
    Ok(())
}

/// A rustls client trusting only the PEM bundle.
fn tls_connector(pem: &str) -> Result<tokio_rustls::TlsConnector, String> {
    use rustls_pki_types::pem::PemObject as _;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pki_types::CertificateDer::pem_slice_iter(pem.as_bytes()) {
        let cert = cert.map_err(|e| format!("webhook CA bundle: {e}"))?;
        roots
            .add(cert)
            .map_err(|e| format!("webhook CA bundle: {e}"))?;
    }
    if roots.is_empty() {
        return Err("webhook CA bundle: no CERTIFICATE block".into());
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
}

/// `POST url` with a JSON body over HTTP/1.1 (TLS when `tls` is given); the status and body.
async fn post_json(
    url: &str,
    body: &Value,
    tls: Option<&tokio_rustls::TlsConnector>,
) -> Result<(u16, Value), String> {
    let uri: hyper::Uri = url.parse().map_err(|e| format!("bad URL {url:?}: {e}"))?;
    let host = uri.host().ok_or_else(|| format!("no host in {url:?}"))?;
    let https = uri.scheme_str() == Some("https");
    let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let authority = uri
        .authority()
        .map(|a| a.to_string())
        .unwrap_or_else(|| host.clone());
    let path = uri
        .path_and_query()
        .map(|p| p.to_string())
        .unwrap_or_else(|| "/".into());
    let request = hyper::Request::post(path)
        .header(hyper::header::HOST, authority)
        .header(hyper::header::CONTENT_TYPE, "application/json")
        .header(hyper::header::ACCEPT, "application/json")
        .body(http_body_util::Full::new(Bytes::from(body.to_string())))
        .map_err(|e| e.to_string())?;
    let call = async {
        let tcp = tokio::net::TcpStream::connect((host.as_str(), port))
            .await
            .map_err(|e| format!("dial tcp {host}:{port}: {e}"))?;
        let response = if https {
            let connector = tls.ok_or("no CA bundle for an HTTPS URL")?;
            let name = rustls_pki_types::ServerName::try_from(host.clone())
                .map_err(|e| format!("server name {host:?}: {e}"))?;
            let stream = connector
                .connect(name, tcp)
                .await
                .map_err(|e| format!("tls: {e}"))?;
            send(hyper_util::rt::TokioIo::new(stream), request).await?
        } else {
            send(hyper_util::rt::TokioIo::new(tcp), request).await?
        };
        Ok::<_, String>(response)
    };
    let (status, bytes) = tokio::time::timeout(CALL_TIMEOUT, call)
        .await
        .map_err(|_| format!("context deadline exceeded after {CALL_TIMEOUT:?}"))??;
    let value = serde_json::from_slice(&bytes).map_err(|e| {
        format!(
            "answer with status {status} is not JSON ({e}): {}",
            String::from_utf8_lossy(&bytes[..bytes.len().min(200)])
        )
    })?;
    Ok((status, value))
}

async fn send<S>(
    io: hyper_util::rt::TokioIo<S>,
    request: hyper::Request<http_body_util::Full<Bytes>>,
) -> Result<(u16, Bytes), String>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    use http_body_util::BodyExt as _;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| e.to_string())?;
    let status = response.status().as_u16();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    Ok((status, body))
}

/// Admission through the configured webhook.
struct WebhookAdmission {
    targets: Arc<RwLock<Targets>>,
    shared: Arc<SharedStore>,
    uid: AtomicU64,
}

impl WebhookAdmission {
    fn skipped(
        &self,
        scope: Option<&WebhookScope>,
        operation: Operation,
        namespace: &str,
        pod: &Value,
        old: Option<&Value>,
    ) -> bool {
        if let Some(scope) = scope {
            let namespace_labels = self
                .shared
                .read()
                .get(Resource::Namespaces, None, namespace)
                .map(|ns| labels_of(&ns))
                .unwrap_or_default();
            // An objectSelector matches an update when either the old or the new object matches.
            let applies = |object: &Value| {
                scope.applies(
                    operation.as_str(),
                    namespace,
                    &namespace_labels,
                    &labels_of(object),
                )
            };
            return !(applies(pod) || old.is_some_and(applies));
        }
        // Without a scope, as deploy/base/webhook.yaml: a namespace labelled hami.io/webhook=ignore
        // is not sent; a pod so labelled is, and the webhook leaves it alone unless it carries
        // scheduling state (an objectSelector would let it past the guard).
        let ignore = |labels: &Value| labels["hami.io/webhook"].as_str() == Some("ignore");
        self.shared
            .read()
            .get(Resource::Namespaces, None, namespace)
            .map(|ns| ignore(&ns["metadata"]["labels"]))
            .unwrap_or(false)
    }

    async fn call(&self, request: AdmissionRequest) -> Result<Value, ApiError> {
        let AdmissionRequest {
            operation,
            namespace,
            user,
            object: pod,
            old_object,
        } = request;
        let webhook = self
            .targets
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .webhook
            .clone();
        let Some((target, tls)) = webhook else {
            return Ok(pod);
        };
        if self.skipped(
            target.scope.as_ref(),
            operation,
            &namespace,
            &pod,
            old_object.as_ref(),
        ) {
            return Ok(pod);
        }
        let groups = if user == crate::http::DEFAULT_USER {
            json!(["system:masters", "system:authenticated"])
        } else if user.starts_with("system:serviceaccount:") {
            json!(["system:serviceaccounts", "system:authenticated"])
        } else {
            json!(["system:authenticated"])
        };
        let options = match operation {
            Operation::Create => json!({"apiVersion": "meta.k8s.io/v1", "kind": "CreateOptions"}),
            Operation::Update => json!({"apiVersion": "meta.k8s.io/v1", "kind": "UpdateOptions"}),
        };
        let uid = format!(
            "00000000-0000-4000-a000-{:012x}",
            self.uid.fetch_add(1, Ordering::Relaxed) + 1
        );
        let gvk = json!({"group": "", "version": "v1", "kind": "Pod"});
        let gvr = json!({"group": "", "version": "v1", "resource": "pods"});
        let review = json!({
            "apiVersion": "admission.k8s.io/v1",
            "kind": "AdmissionReview",
            "request": {
                "uid": uid,
                "kind": gvk, "resource": gvr, "requestKind": gvk, "requestResource": gvr,
                "name": pod["metadata"]["name"].as_str().unwrap_or(""),
                "namespace": namespace,
                "operation": operation.as_str(),
                "userInfo": {"username": user, "groups": groups},
                "object": pod,
                "oldObject": old_object,
                "dryRun": false,
                "options": options
            }
        });
        let failed = |detail: String| {
            ApiError::Internal(format!(
                "Internal error occurred: failed calling webhook \"{WEBHOOK_NAME}\": failed to call webhook: Post \"{}?timeout=10s\": {detail}",
                target.url
            ))
        };
        let answer = match post_json(&target.url, &review, tls.as_ref()).await {
            Ok((200, answer)) => answer,
            Ok((status, answer)) => {
                let error = failed(format!("status {status}: {answer}"));
                return if target.ignore_failures {
                    Ok(pod)
                } else {
                    Err(error)
                };
            }
            Err(detail) if target.ignore_failures => {
                let _ = detail;
                return Ok(pod);
            }
            Err(detail) => return Err(failed(detail)),
        };
        apply_review(&pod, &answer, &uid).map_err(|detail| match detail {
            ReviewError::Denied(message) => ApiError::BadRequest(format!(
                "admission webhook \"{WEBHOOK_NAME}\" denied the request: {message}"
            )),
            ReviewError::Malformed(message) => ApiError::Internal(format!(
                "Internal error occurred: failed calling webhook \"{WEBHOOK_NAME}\": {message}"
            )),
        })
    }
}

impl Admission for WebhookAdmission {
    fn admit(
        &self,
        request: AdmissionRequest,
    ) -> Pin<Box<dyn Future<Output = Result<Value, ApiError>> + Send + '_>> {
        Box::pin(self.call(request))
    }
}

/// Why an AdmissionReview answer did not admit the pod.
#[derive(Debug, Clone, PartialEq, Eq)]
enum ReviewError {
    Denied(String),
    Malformed(String),
}

/// Applies an AdmissionReview answer to `pod` as kube-apiserver does: the uid must match, a denial
/// carries its message, a `JSONPatch` patch is applied.
fn apply_review(pod: &Value, answer: &Value, uid: &str) -> Result<Value, ReviewError> {
    let response = &answer["response"];
    if response["uid"].as_str() != Some(uid) {
        return Err(ReviewError::Malformed(format!(
            "expected response.uid={uid:?}, got {}",
            response["uid"]
        )));
    }
    if response["allowed"] != json!(true) {
        let message = response["status"]["message"]
            .as_str()
            .unwrap_or("denied")
            .to_string();
        return Err(ReviewError::Denied(message));
    }
    let Some(encoded) = response["patch"].as_str() else {
        return Ok(pod.clone());
    };
    if response["patchType"].as_str() != Some("JSONPatch") {
        return Err(ReviewError::Malformed(format!(
            "unsupported patch type {}",
            response["patchType"]
        )));
    }
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .map_err(|e| ReviewError::Malformed(format!("patch is not base64: {e}")))?;
    let patch: json_patch::Patch = serde_json::from_slice(&bytes)
        .map_err(|e| ReviewError::Malformed(format!("patch is not a JSON Patch: {e}")))?;
    let mut patched = pod.clone();
    json_patch::patch(&mut patched, &patch)
        .map_err(|e| ReviewError::Malformed(format!("patch does not apply: {e}")))?;
    Ok(patched)
}

/// The controllers' typed view of pods and nodes, kept current from the store's watch log (a full
/// re-list only at the start and when the log no longer reaches back), as kube-scheduler's and the
/// kubelets' informers are, instead of deserializing every object on every pass.
#[derive(Debug, Default)]
struct Informer {
    /// The resourceVersion the view reflects; `None` before the first list.
    rv: Option<u64>,
    pods: BTreeMap<(String, String), Pod>,
    nodes: BTreeMap<String, Node>,
}

fn pod_key(pod: &Pod) -> (String, String) {
    (
        pod.metadata.namespace.clone().unwrap_or_default(),
        pod.metadata.name.clone().unwrap_or_default(),
    )
}

impl Informer {
    /// Brings the view up to the store; true when a pod was deleted or the set of nodes changed
    /// (the events on which kube-scheduler moves every waiting pod back to the active queue).
    fn sync(&mut self, store: &Store) -> bool {
        use crate::store::EventType;
        let mut moved = false;
        let events = self.rv.and_then(|rv| store.events_after(rv).ok());
        match events {
            Some(events) => {
                for event in events {
                    let deleted = event.event_type == EventType::Deleted;
                    match event.resource {
                        Resource::Pods => {
                            let Ok(pod) = <Pod as serde::Deserialize>::deserialize(&event.object)
                            else {
                                continue;
                            };
                            if deleted {
                                moved |= self.pods.remove(&pod_key(&pod)).is_some();
                            } else {
                                self.pods.insert(pod_key(&pod), pod);
                            }
                        }
                        Resource::Nodes => {
                            let Ok(node) = <Node as serde::Deserialize>::deserialize(&event.object)
                            else {
                                continue;
                            };
                            let name = node.metadata.name.clone().unwrap_or_default();
                            if deleted {
                                moved |= self.nodes.remove(&name).is_some();
                            } else {
                                moved |= self.nodes.insert(name, node).is_none();
                            }
                        }
                        _ => {}
                    }
                }
            }
            None => {
                let pods: BTreeMap<(String, String), Pod> = store
                    .typed::<Pod>(Resource::Pods)
                    .into_iter()
                    .map(|p| (pod_key(&p), p))
                    .collect();
                let nodes: BTreeMap<String, Node> = store
                    .typed::<Node>(Resource::Nodes)
                    .into_iter()
                    .map(|n| (n.metadata.name.clone().unwrap_or_default(), n))
                    .collect();
                moved = self.rv.is_some()
                    && (self.pods.keys().any(|k| !pods.contains_key(k))
                        || !self.nodes.keys().eq(nodes.keys()));
                self.pods = pods;
                self.nodes = nodes;
            }
        }
        self.rv = Some(store.resource_version());
        moved
    }
}

/// The controllers' loop: scheduler stand-in, kubelets, device plugins, and the store's clock.
async fn controllers(
    shared: Arc<SharedStore>,
    targets: Arc<RwLock<Targets>>,
    admission: Arc<dyn Admission>,
    options: LiveOptions,
) {
    let mut changes = shared.subscribe();
    let mut queue: SchedulingQueue<Instant> = SchedulingQueue::default();
    let mut informer = Informer::default();
    let events = Arc::new(AtomicU64::new(0));
    // kube-scheduler's binding cycle runs apart from its scheduling cycle: a pod whose filter chose a
    // node is bound by its own task while the next pods are filtered; it is not scheduled again
    // until its bind answers.
    let mut binding: BTreeSet<String> = BTreeSet::new();
    let (bound_tx, mut bound_rx) = tokio::sync::mpsc::unbounded_channel::<(String, bool)>();
    loop {
        tokio::select! {
            _ = changes.changed() => {}
            Some(done) = bound_rx.recv() => finish_bind(&mut binding, &mut queue, done),
            _ = tokio::time::sleep(options.tick) => {}
        }
        while let Ok(done) = bound_rx.try_recv() {
            finish_bind(&mut binding, &mut queue, done);
        }
        // The clock moves without waking watchers.
        shared.read().set_time(jiff::Timestamp::now());
        deployments(&shared, admission.as_ref()).await;
        // kube-scheduler moves every waiting pod back to the active queue on such events.
        if informer.sync(&shared.read()) {
            queue.clear();
        }
        let nodes: Vec<&Node> = informer.nodes.values().collect();
        let extender = targets
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .extender
            .clone();
        for pod in informer.pods.values().filter(|p| waiting(p)) {
            let key = key_of(pod);
            if binding.contains(&key) || queue.backing_off(&key, Instant::now()) {
                continue;
            }
            let attempt =
                schedule(&shared, pod, &nodes, &options, extender.as_deref(), &events).await;
            match attempt {
                Attempt::Bound => {
                    queue.remove(&key);
                }
                Attempt::Unschedulable => queue.back_off(&key, Instant::now()),
                Attempt::Binding(bind) => {
                    binding.insert(key.clone());
                    let done = bound_tx.clone();
                    tokio::spawn(async move {
                        let bound = bind.run().await;
                        let _ = done.send((key, bound));
                    });
                }
            }
        }
        queue.retain(|k| {
            k.split_once('/').is_some_and(|(ns, name)| {
                informer
                    .pods
                    .contains_key(&(ns.to_string(), name.to_string()))
            })
        });
        if informer.sync(&shared.read()) {
            queue.clear();
        }
        kubelets(&shared, &informer, options.device_plugin, &events);
    }
}

/// A binding cycle answered: the pod may be scheduled again, after a backoff if the bind failed.
fn finish_bind(
    binding: &mut BTreeSet<String>,
    queue: &mut SchedulingQueue<Instant>,
    (key, bound): (String, bool),
) {
    binding.remove(&key);
    if bound {
        queue.remove(&key);
    } else {
        queue.back_off(&key, Instant::now());
    }
}

fn key_of(pod: &Pod) -> String {
    format!(
        "{}/{}",
        pod.metadata.namespace.as_deref().unwrap_or("default"),
        pod.metadata.name.as_deref().unwrap_or("")
    )
}

fn phase(pod: &Pod) -> &str {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("Pending")
}

fn node_of(pod: &Pod) -> Option<&str> {
    pod.spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .filter(|n| !n.is_empty())
}

/// A pod kube-scheduler would try to place: Pending, unassigned, not being deleted.
fn waiting(pod: &Pod) -> bool {
    phase(pod) == "Pending" && node_of(pod).is_none() && pod.metadata.deletion_timestamp.is_none()
}

/// The pod-template hash in a Deployment's pod names (FNV-1a of the template, 10 characters of the
/// alphabet Kubernetes uses for generated names).
fn template_hash(template: &Value) -> String {
    const ALPHANUMS: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in template.to_string().bytes() {
        hash = (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3);
    }
    (0..10)
        .map(|_| {
            let c = ALPHANUMS[(hash % ALPHANUMS.len() as u64) as usize] as char;
            hash /= ALPHANUMS.len() as u64;
            c
        })
        .collect()
}

/// The Deployment controller's pass (see the module documentation).
async fn deployments(shared: &SharedStore, admission: &dyn Admission) {
    let owner_of = |pod: &Value| -> Option<String> {
        pod["metadata"]["ownerReferences"]
            .as_array()?
            .iter()
            .find(|r| r["kind"] == "Deployment" && r["controller"] == true)
            .and_then(|r| r["uid"].as_str().map(str::to_string))
    };
    // Only pods a Deployment owns matter here: copy those, not every pod.
    let (deployments, pods) = {
        let store = shared.read();
        let deployments: Vec<Value> = store.objects(Resource::Deployments).cloned().collect();
        let pods: Vec<Value> = store
            .objects(Resource::Pods)
            .filter(|p| owner_of(p).is_some())
            .cloned()
            .collect();
        (deployments, pods)
    };
    let live: BTreeSet<String> = deployments
        .iter()
        .filter_map(|d| d["metadata"]["uid"].as_str().map(str::to_string))
        .collect();
    // Garbage collection: pods whose owning Deployment is gone.
    for pod in &pods {
        if owner_of(pod).is_some_and(|uid| !live.contains(&uid)) {
            let (ns, name) = (
                pod["metadata"]["namespace"].as_str().unwrap_or("default"),
                pod["metadata"]["name"].as_str().unwrap_or(""),
            );
            let _ = shared.write(|s| s.delete(Resource::Pods, Some(ns), name));
        }
    }
    for deployment in &deployments {
        let uid = deployment["metadata"]["uid"].as_str().unwrap_or("");
        let name = deployment["metadata"]["name"].as_str().unwrap_or("");
        let ns = deployment["metadata"]["namespace"]
            .as_str()
            .unwrap_or("default")
            .to_string();
        let wanted = deployment["spec"]["replicas"].as_u64().unwrap_or(1) as usize;
        let mut owned: Vec<&Value> = pods
            .iter()
            .filter(|p| owner_of(p).as_deref() == Some(uid))
            .collect();
        owned.sort_by_key(|p| {
            p["metadata"]["creationTimestamp"]
                .as_str()
                .unwrap_or("")
                .to_string()
        });
        let template = &deployment["spec"]["template"];
        for _ in owned.len()..wanted {
            let mut pod = json!({
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {
                    "generateName": format!("{name}-{}-", template_hash(template)),
                    "namespace": ns,
                    "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": name,
                                         "uid": uid, "controller": true, "blockOwnerDeletion": true}],
                },
                "spec": template["spec"].clone(),
            });
            for field in ["labels", "annotations"] {
                if template["metadata"][field].is_object() {
                    pod["metadata"][field] = template["metadata"][field].clone();
                }
            }
            // Through admission, as the ReplicaSet controller's create goes through the API server.
            let request = AdmissionRequest {
                operation: Operation::Create,
                namespace: ns.clone(),
                user: CONTROLLER_USER.into(),
                object: pod,
                old_object: None,
            };
            let Ok(admitted) = admission.admit(request).await else {
                break;
            };
            let _ = shared.write(|s| s.create(Resource::Pods, Some(&ns), admitted));
        }
        for surplus in owned.iter().skip(wanted) {
            let pod_name = surplus["metadata"]["name"].as_str().unwrap_or("");
            let _ = shared.write(|s| s.delete(Resource::Pods, Some(&ns), pod_name));
        }
        let kept = owned.len().min(wanted);
        let ready = owned
            .iter()
            .take(wanted)
            .filter(|p| p["status"]["phase"] == "Running")
            .count();
        let status = json!({"replicas": kept, "updatedReplicas": kept, "readyReplicas": ready,
                            "availableReplicas": ready, "observedGeneration": deployment["metadata"]["generation"].as_i64().unwrap_or(1)});
        let changed = [
            "replicas",
            "updatedReplicas",
            "readyReplicas",
            "availableReplicas",
        ]
        .iter()
        .any(|f| deployment["status"][f].as_u64().unwrap_or(0) != status[f].as_u64().unwrap_or(0));
        if changed {
            let _ = shared.write(|s| {
                s.patch(
                    Resource::Deployments,
                    Some(&ns),
                    name,
                    Part::Status,
                    PatchType::Merge,
                    &json!({"status": status}),
                )
            });
        }
    }
}

/// Writes a core/v1 Event about a pod.
fn record(
    store: &mut Store,
    pod: &Pod,
    type_: &str,
    reason: &str,
    message: &str,
    component: &str,
    events: &AtomicU64,
) {
    let serial = events.fetch_add(1, Ordering::Relaxed) + 1;
    let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
    let name = pod.metadata.name.as_deref().unwrap_or("");
    let now = store.now().to_string();
    let event = json!({
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": format!("{name}.{serial:016x}"), "namespace": namespace},
        "involvedObject": {"apiVersion": "v1", "kind": "Pod", "name": name, "namespace": namespace,
                           "uid": pod.metadata.uid.as_deref().unwrap_or("")},
        "type": type_,
        "reason": reason,
        "message": message,
        "source": {"component": component},
        "reportingComponent": component,
        "firstTimestamp": now,
        "lastTimestamp": now,
        "count": 1,
    });
    let _ = store.create(Resource::Events, Some(namespace), event);
}

/// Marks the pod unschedulable (condition and event), as kube-scheduler does.
fn unschedulable(
    shared: &SharedStore,
    pod: &Pod,
    component: &str,
    message: &str,
    events: &AtomicU64,
) {
    shared.write(|store| {
        let now = store.now().to_string();
        let patch = json!({"status": {"conditions": [{"type": "PodScheduled", "status": "False",
            "reason": "Unschedulable", "message": message, "lastTransitionTime": now}]}});
        let _ = store.patch(
            Resource::Pods,
            pod.metadata.namespace.as_deref(),
            pod.metadata.name.as_deref().unwrap_or(""),
            Part::Status,
            PatchType::Merge,
            &patch,
        );
        record(
            store,
            pod,
            "Warning",
            "FailedScheduling",
            message,
            component,
            events,
        );
    });
}

/// kube-scheduler's summary of why no node fits: `0/3 nodes are available: 3 <reason>.`
fn failure_summary(total: usize, reasons: &BTreeMap<String, String>) -> String {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for reason in reasons.values() {
        *counts.entry(reason.as_str()).or_default() += 1;
    }
    let parts: Vec<String> = counts.iter().map(|(r, n)| format!("{n} {r}")).collect();
    format!("0/{total} nodes are available: {}.", parts.join(", "))
}

/// What one scheduling cycle did with a pod.
#[derive(Debug)]
enum Attempt {
    /// Bound in the cycle itself (the default placement writes its Binding directly).
    Bound,
    /// No node: the pod backs off.
    Unschedulable,
    /// The extender chose a node; its binding cycle runs on its own.
    Binding(Box<BindCycle>),
}

/// kube-scheduler's binding cycle for one pod through the extender: `POST /bind`, then the
/// `Scheduled` event or, on failure, `FailedScheduling`.
#[derive(Debug)]
struct BindCycle {
    shared: Arc<SharedStore>,
    pod: Pod,
    node: String,
    extender: String,
    scheduler: String,
    events: Arc<AtomicU64>,
}

impl BindCycle {
    /// Runs the bind; true when the pod was bound.
    async fn run(self) -> bool {
        let args = binding_body(&binding_args(&self.pod, &self.node));
        let extender = &self.extender;
        let failure = match post_json(&format!("{extender}/bind"), &args, None).await {
            Ok((200, result)) => result["Error"]
                .as_str()
                .filter(|e| !e.is_empty())
                .map(str::to_string),
            Ok((status, result)) => Some(format!("extender bind answered {status}: {result}")),
            Err(e) => Some(format!("Post \"{extender}/bind\": {e}")),
        };
        self.shared.write(|store| match &failure {
            None => record_scheduled(store, &self.pod, &self.node, &self.scheduler, &self.events),
            Some(error) => record(
                store,
                &self.pod,
                "Warning",
                "FailedScheduling",
                &format!("Binding rejected: {error}"),
                &self.scheduler,
                &self.events,
            ),
        });
        failure.is_none()
    }
}

/// kube-scheduler's `Scheduled` event for a pod bound to `node`.
fn record_scheduled(store: &mut Store, pod: &Pod, node: &str, scheduler: &str, events: &AtomicU64) {
    let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
    let name = pod.metadata.name.as_deref().unwrap_or("");
    let message = format!("Successfully assigned {namespace}/{name} to {node}");
    record(
        store,
        pod,
        "Normal",
        "Scheduled",
        &message,
        scheduler,
        events,
    );
}

/// One scheduling cycle for a pending pod.
async fn schedule(
    shared: &Arc<SharedStore>,
    pod: &Pod,
    nodes: &[&Node],
    options: &LiveOptions,
    extender: Option<&str>,
    events: &Arc<AtomicU64>,
) -> Attempt {
    let name = pod.metadata.name.clone().unwrap_or_default();
    let namespace = pod
        .metadata
        .namespace
        .clone()
        .unwrap_or_else(|| "default".into());
    let scheduler = pod
        .spec
        .as_ref()
        .and_then(|s| s.scheduler_name.clone())
        .unwrap_or_else(|| DEFAULT_SCHEDULER.into());
    if scheduler != options.scheduler_name && scheduler != DEFAULT_SCHEDULER {
        // No scheduler of that name runs here: the pod waits, as it would in a real cluster.
        return Attempt::Unschedulable;
    }
    let NodeOffer {
        eligible,
        ineligible,
    } = offer(nodes.iter().copied(), pod);
    if eligible.is_empty() {
        let message = failure_summary(nodes.len(), &ineligible);
        unschedulable(shared, pod, &scheduler, &message, events);
        return Attempt::Unschedulable;
    }
    if scheduler == DEFAULT_SCHEDULER {
        // Default placement: the eligible node with the fewest pods (kube-scheduler spreads).
        let counts: BTreeMap<String, usize> = shared
            .read()
            .typed::<Pod>(Resource::Pods)
            .iter()
            .filter_map(|p| node_of(p).map(str::to_string))
            .fold(BTreeMap::new(), |mut m, n| {
                *m.entry(n).or_default() += 1;
                m
            });
        let node = eligible
            .iter()
            .min_by_key(|n| (counts.get(*n).copied().unwrap_or(0), (*n).clone()))
            .cloned()
            .unwrap_or_default();
        return shared.write(|store| match store.bind(&namespace, &name, &node, None) {
            Ok(_) => {
                record_scheduled(store, pod, &node, &scheduler, events);
                Attempt::Bound
            }
            Err(_) => Attempt::Unschedulable,
        });
    }
    let Some(extender) = extender else {
        return Attempt::Unschedulable;
    };
    let args = filter_body(&filter_args(pod, eligible));
    let result = match post_json(&format!("{extender}/filter"), &args, None).await {
        Ok((200, result)) => result,
        Ok((status, result)) => {
            let message = format!("extender filter answered {status}: {result}");
            unschedulable(shared, pod, &scheduler, &message, events);
            return Attempt::Unschedulable;
        }
        Err(e) => {
            let message = format!("Post \"{extender}/filter\": {e}");
            unschedulable(shared, pod, &scheduler, &message, events);
            return Attempt::Unschedulable;
        }
    };
    let error = result["Error"].as_str().unwrap_or("");
    let chosen = result["NodeNames"]
        .as_array()
        .and_then(|names| names.first())
        .and_then(Value::as_str)
        .map(str::to_string);
    let Some(node) = chosen.filter(|_| error.is_empty()) else {
        let mut reasons = ineligible;
        if let Some(failed) = result["FailedNodes"].as_object() {
            for (node, why) in failed {
                reasons.insert(node.clone(), why.as_str().unwrap_or("").to_string());
            }
        }
        let message = if error.is_empty() {
            failure_summary(nodes.len(), &reasons)
        } else {
            format!("extender filter: {error}")
        };
        unschedulable(shared, pod, &scheduler, &message, events);
        return Attempt::Unschedulable;
    };
    Attempt::Binding(Box::new(BindCycle {
        shared: shared.clone(),
        pod: pod.clone(),
        node,
        extender: extender.to_string(),
        scheduler,
        events: events.clone(),
    }))
}

/// Every kubelet admits its bound, not yet started pods; device plugins answer Allocate.
fn kubelets(shared: &SharedStore, informer: &Informer, plugin: DevicePlugin, events: &AtomicU64) {
    let nodes = &informer.nodes;
    let mut started: Vec<&Pod> = informer
        .pods
        .values()
        .filter(|p| phase(p) == "Running")
        .collect();
    for pod in informer.pods.values() {
        let Some(node_name) = node_of(pod) else {
            continue;
        };
        if phase(pod) != "Pending" || pod.metadata.deletion_timestamp.is_some() {
            continue;
        }
        let key = key_of(pod);
        let fail = |reason: &str, message: String, events: &AtomicU64| {
            shared.write(|store| {
                set_status(
                    store,
                    pod,
                    json!({"phase": "Failed", "reason": reason, "message": message}),
                );
                record(store, pod, "Warning", reason, &message, "kubelet", events);
            });
        };
        let Some(node) = nodes.get(node_name) else {
            fail("NodeLost", format!("node {node_name} is gone"), events);
            continue;
        };
        let admitted: Vec<&Pod> = started
            .iter()
            .copied()
            .filter(|p| node_of(p) == Some(node_name))
            .collect();
        if let Err((reason, message)) = node_agent::kubelet_admit(pod, node, &admitted) {
            fail(&reason, message, events);
            continue;
        }
        if node_agent::extended_request(pod, RESOURCE_GPU) > 0 && plugin == DevicePlugin::Silent {
            continue; // Allocate never answers: the pod stays Pending on its node
        }
        if node_agent::extended_request(pod, RESOURCE_GPU) > 0 && plugin == DevicePlugin::Hami {
            let allocation =
                shared.write(|store| node_agent::hami_allocate(store, node_name, &key));
            if let Err(message) = allocation.outcome {
                fail("UnexpectedAdmissionError", message, events);
                continue;
            }
        }
        let serial = events.load(Ordering::Relaxed);
        let ip = format!("10.244.{}.{}", (serial / 250) % 250, serial % 250 + 1);
        shared.write(|store| {
            let now = store.now().to_string();
            set_status(store, pod, node_agent::running_status(pod, &now, &ip));
            let containers = pod.spec.as_ref().map_or(0, |s| s.containers.len());
            let message = format!("Started {containers} container(s)");
            record(store, pod, "Normal", "Started", &message, "kubelet", events);
        });
        started.push(pod);
    }
}

fn set_status(store: &mut Store, pod: &Pod, status: Value) {
    let _ = store.patch(
        Resource::Pods,
        pod.metadata.namespace.as_deref(),
        pod.metadata.name.as_deref().unwrap_or(""),
        Part::Status,
        PatchType::Merge,
        &json!({"status": status}),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn review_answer(uid: &str, allowed: bool, patch: Option<&Value>) -> Value {
        let mut response = json!({"uid": uid, "allowed": allowed});
        if let Some(p) = patch {
            response["patchType"] = json!("JSONPatch");
            response["patch"] =
                json!(base64::engine::general_purpose::STANDARD.encode(p.to_string()));
        }
        if !allowed {
            response["status"] = json!({"message": "no"});
        }
        json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": response})
    }

    #[test]
    fn reviews_apply_as_the_api_server_applies_them() {
        let pod =
            json!({"metadata": {"name": "p"}, "spec": {"schedulerName": "default-scheduler"}});
        let patch = json!([{"op": "replace", "path": "/spec/schedulerName", "value": "x"}]);
        let out = apply_review(&pod, &review_answer("u", true, Some(&patch)), "u").unwrap();
        assert_eq!(out["spec"]["schedulerName"], "x");
        assert_eq!(
            apply_review(&pod, &review_answer("u", true, None), "u").unwrap(),
            pod
        );
        assert_eq!(
            apply_review(&pod, &review_answer("u", false, None), "u"),
            Err(ReviewError::Denied("no".into()))
        );
        assert!(matches!(
            apply_review(&pod, &review_answer("other", true, None), "u"),
            Err(ReviewError::Malformed(m)) if m.contains("response.uid")
        ));
        let bad = json!([{"op": "remove", "path": "/spec/missing"}]);
        assert!(matches!(
            apply_review(&pod, &review_answer("u", true, Some(&bad)), "u"),
            Err(ReviewError::Malformed(m)) if m.contains("does not apply")
        ));
    }

    #[test]
    fn the_failure_summary_counts_reasons_like_kube_scheduler() {
        let reasons = BTreeMap::from([
            ("a".to_string(), "CardInsufficientMemory".to_string()),
            ("b".to_string(), "CardInsufficientMemory".to_string()),
            ("c".to_string(), "node(s) were unschedulable".to_string()),
        ]);
        assert_eq!(
            failure_summary(3, &reasons),
            "0/3 nodes are available: 2 CardInsufficientMemory, 1 node(s) were unschedulable."
        );
    }
}
