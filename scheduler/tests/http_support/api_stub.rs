//! A tiny Kubernetes API on loopback, just enough for kube-rs: `/version`; nodes (get, list with a
//! label selector, watch, merge patch with a resourceVersion precondition, status patch); pods (get,
//! list and watch across namespaces with a label selector, merge patch with an immutable uid,
//! `binding` with uid and already-assigned checks); core/v1 events. Every request is logged; 409s
//! can be injected on node patches. Not a general API server: the simulated cluster (`sim/`) is
//! that.
#![allow(dead_code)]

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, patch, post};
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use tokio::sync::Notify;

/// What the stub holds.
#[derive(Debug, Default)]
pub struct StubState {
    pub nodes: BTreeMap<String, Value>,
    pub pods: BTreeMap<String, Value>,
    pub events: Vec<Value>,
    pub rv: u64,
    /// (rv, "nodes" | "pods", event type, object) for watches.
    pub history: Vec<(u64, &'static str, &'static str, Value)>,
    /// `METHOD path?query` and, for writes, the body.
    pub requests: Vec<(String, Option<Value>)>,
    /// The next this-many node patches answer 409.
    pub node_patch_conflicts: usize,
}

impl StubState {
    fn bump(&mut self) -> u64 {
        self.rv += 1;
        self.rv
    }

    pub fn add_node(&mut self, name: &str, labels: Value) {
        let rv = self.bump();
        let node = json!({"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "uid": format!("uid-{name}"), "resourceVersion": rv.to_string(),
                         "labels": labels, "annotations": {}},
            "spec": {}, "status": {}});
        self.history.push((rv, "nodes", "ADDED", node.clone()));
        self.nodes.insert(name.into(), node);
    }

    pub fn put_node(&mut self, node: Value) {
        let rv = self.bump();
        let mut node = node;
        node["metadata"]["resourceVersion"] = json!(rv.to_string());
        let name = node["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        self.history.push((rv, "nodes", "ADDED", node.clone()));
        self.nodes.insert(name, node);
    }

    pub fn put_pod(&mut self, pod: Value) {
        let rv = self.bump();
        let mut pod = pod;
        pod["apiVersion"] = json!("v1");
        pod["kind"] = json!("Pod");
        pod["metadata"]["resourceVersion"] = json!(rv.to_string());
        let key = format!(
            "{}/{}",
            pod["metadata"]["namespace"].as_str().unwrap_or("default"),
            pod["metadata"]["name"].as_str().unwrap_or_default()
        );
        self.history.push((rv, "pods", "ADDED", pod.clone()));
        self.pods.insert(key, pod);
    }

    pub fn node_annotation(&self, node: &str, key: &str) -> Option<String> {
        self.nodes[node]["metadata"]["annotations"][key]
            .as_str()
            .map(String::from)
    }

    /// The logged requests' first lines.
    pub fn request_lines(&self) -> Vec<String> {
        self.requests.iter().map(|(l, _)| l.clone()).collect()
    }
}

type Shared = (Arc<Mutex<StubState>>, Arc<Notify>);

/// A running stub.
pub struct ApiStub {
    pub state: Arc<Mutex<StubState>>,
    pub address: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for ApiStub {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl ApiStub {
    /// Starts the stub on a loopback port.
    pub async fn start(state: StubState) -> ApiStub {
        let state = Arc::new(Mutex::new(state));
        let shared: Shared = (state.clone(), Arc::new(Notify::new()));
        let router = Router::new()
            .route("/version", get(version))
            .route("/api/v1/nodes", get(list_nodes))
            .route("/api/v1/nodes/{name}", get(get_node).patch(patch_node))
            .route("/api/v1/nodes/{name}/status", patch(patch_node))
            .route("/api/v1/pods", get(list_pods))
            .route(
                "/api/v1/namespaces/{ns}/pods/{name}",
                get(get_pod).patch(patch_pod),
            )
            .route(
                "/api/v1/namespaces/{ns}/pods/{name}/binding",
                post(bind_pod),
            )
            .route("/api/v1/namespaces/{ns}/events", post(create_event))
            .fallback(fallback)
            .with_state(shared);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        ApiStub {
            state,
            address,
            task,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.address)
    }

    /// A kubeconfig file pointing at the stub.
    pub fn kubeconfig(&self, path: &std::path::Path) {
        std::fs::write(path, kubeconfig_for(&self.url())).unwrap();
    }

    pub fn with<R>(&self, f: impl FnOnce(&mut StubState) -> R) -> R {
        f(&mut self.state.lock().unwrap())
    }
}

pub fn kubeconfig_for(server: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: stub\n  cluster:\n    server: {server}\ncontexts:\n- name: stub\n  context:\n    cluster: stub\n    user: stub\ncurrent-context: stub\nusers:\n- name: stub\n  user: {{}}\n"
    )
}

fn status(code: StatusCode, reason: &str, message: String) -> Response {
    (
        code,
        axum::Json(json!({"kind": "Status", "apiVersion": "v1", "metadata": {},
            "status": "Failure", "message": message, "reason": reason, "code": code.as_u16()})),
    )
        .into_response()
}

fn log(state: &mut StubState, method: &Method, uri: &Uri, body: Option<&Value>) {
    state
        .requests
        .push((format!("{method} {uri}"), body.cloned()));
}

async fn version(State((state, _)): State<Shared>, method: Method, uri: Uri) -> Response {
    log(&mut state.lock().unwrap(), &method, &uri, None);
    axum::Json(
        json!({"major": "1", "minor": "33", "gitVersion": "v1.33.0-stub",
        "gitCommit": "0", "gitTreeState": "clean", "buildDate": "2025-01-01T00:00:00Z",
        "goVersion": "go1.24", "compiler": "gc", "platform": "linux/amd64"}),
    )
    .into_response()
}

async fn fallback(State((state, _)): State<Shared>, method: Method, uri: Uri) -> Response {
    log(&mut state.lock().unwrap(), &method, &uri, None);
    status(
        StatusCode::NOT_FOUND,
        "NotFound",
        format!("the stub has no {uri}"),
    )
}

fn selected(object: &Value, selector: Option<&String>) -> bool {
    let Some(selector) = selector else {
        return true;
    };
    let labels = &object["metadata"]["labels"];
    selector
        .split(',')
        .filter(|s| !s.is_empty())
        .all(|term| match term.split_once('=') {
            Some((k, v)) => labels[k].as_str() == Some(v),
            None => match term.strip_prefix('!') {
                Some(k) => labels.get(k).is_none(),
                None => labels.get(term).is_some(),
            },
        })
}

async fn list_or_watch(
    (state, notify): Shared,
    kind: &'static str,
    query: HashMap<String, String>,
    method: Method,
    uri: Uri,
) -> Response {
    let selector = query.get("labelSelector").cloned();
    let watching = matches!(query.get("watch").map(String::as_str), Some("true" | "1"));
    let mut guard = state.lock().unwrap();
    log(&mut guard, &method, &uri, None);
    if !watching {
        let objects = if kind == "nodes" {
            &guard.nodes
        } else {
            &guard.pods
        };
        let items: Vec<Value> = objects
            .values()
            .filter(|o| selected(o, selector.as_ref()))
            .cloned()
            .collect();
        let list_kind = if kind == "nodes" {
            "NodeList"
        } else {
            "PodList"
        };
        return axum::Json(json!({"apiVersion": "v1", "kind": list_kind,
            "metadata": {"resourceVersion": guard.rv.to_string()}, "items": items}))
        .into_response();
    }
    let from: u64 = query
        .get("resourceVersion")
        .and_then(|v| v.parse().ok())
        .unwrap_or(guard.rv);
    drop(guard);
    let stream = futures::stream::unfold(from, move |cursor| {
        let state = state.clone();
        let notify = notify.clone();
        let selector = selector.clone();
        async move {
            loop {
                let notified = notify.notified();
                let mut notified = std::pin::pin!(notified);
                notified.as_mut().enable();
                let next = {
                    let guard = state.lock().unwrap();
                    guard
                        .history
                        .iter()
                        .find(|(rv, k, _, o)| {
                            *rv > cursor && *k == kind && selected(o, selector.as_ref())
                        })
                        .map(|(rv, _, t, o)| (*rv, json!({"type": t, "object": o})))
                };
                if let Some((rv, event)) = next {
                    let line = format!("{event}\n");
                    return Some((Ok::<Bytes, std::convert::Infallible>(Bytes::from(line)), rv));
                }
                notified.await;
            }
        }
    });
    Response::builder()
        .header("content-type", "application/json")
        .body(Body::from_stream(stream))
        .unwrap()
}

/// The query string as a map, percent-decoded (`%2F` in label selectors).
fn query_of(uri: &Uri) -> HashMap<String, String> {
    fn decode(s: &str) -> String {
        let bytes = s.as_bytes();
        let mut out = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            match bytes[i] {
                b'%' if i + 2 < bytes.len() => {
                    match std::str::from_utf8(&bytes[i + 1..i + 3])
                        .ok()
                        .and_then(|h| u8::from_str_radix(h, 16).ok())
                        .ok_or(())
                    {
                        Ok(b) => {
                            out.push(b);
                            i += 3;
                        }
                        Err(_) => {
                            out.push(b'%');
                            i += 1;
                        }
                    }
                }
                b'+' => {
                    out.push(b' ');
                    i += 1;
                }
                b => {
                    out.push(b);
                    i += 1;
                }
            }
        }
        String::from_utf8_lossy(&out).into_owned()
    }
    uri.query()
        .unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (decode(k), decode(v)),
            None => (decode(p), String::new()),
        })
        .collect()
}

async fn list_nodes(State(shared): State<Shared>, method: Method, uri: Uri) -> Response {
    let query = query_of(&uri);
    list_or_watch(shared, "nodes", query, method, uri).await
}

async fn list_pods(State(shared): State<Shared>, method: Method, uri: Uri) -> Response {
    let query = query_of(&uri);
    list_or_watch(shared, "pods", query, method, uri).await
}

async fn get_node(
    State((state, _)): State<Shared>,
    Path(name): Path<String>,
    method: Method,
    uri: Uri,
) -> Response {
    let mut state = state.lock().unwrap();
    log(&mut state, &method, &uri, None);
    match state.nodes.get(&name) {
        Some(node) => axum::Json(node.clone()).into_response(),
        None => status(
            StatusCode::NOT_FOUND,
            "NotFound",
            format!("nodes \"{name}\" not found"),
        ),
    }
}

/// A merge patch with an optional resourceVersion precondition.
fn merge_with_precondition(
    object: &mut Value,
    patch: &Value,
    what: &str,
    new_rv: u64,
) -> Result<(), Box<Response>> {
    if let Some(expected) = patch["metadata"]["resourceVersion"].as_str()
        && object["metadata"]["resourceVersion"].as_str() != Some(expected)
    {
        return Err(Box::new(status(
            StatusCode::CONFLICT,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {what}: the object has been modified; please apply your changes to the latest version and try again"
            ),
        )));
    }
    json_patch::merge(object, patch);
    object["metadata"]["resourceVersion"] = json!(new_rv.to_string());
    Ok(())
}

async fn patch_node(
    State((state, notify)): State<Shared>,
    Path(name): Path<String>,
    method: Method,
    uri: Uri,
    headers: axum::http::HeaderMap,
    body: Bytes,
) -> Response {
    let patch: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let mut guard = state.lock().unwrap();
    log(&mut guard, &method, &uri, Some(&patch));
    if headers.get("content-type").and_then(|v| v.to_str().ok())
        != Some("application/merge-patch+json")
    {
        return status(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "UnsupportedMediaType",
            "the stub takes merge patches only".into(),
        );
    }
    if guard.node_patch_conflicts > 0 && !uri.path().ends_with("/status") {
        guard.node_patch_conflicts -= 1;
        return status(
            StatusCode::CONFLICT,
            "Conflict",
            format!("Operation cannot be fulfilled on nodes \"{name}\": injected"),
        );
    }
    let rv = guard.rv + 1;
    let Some(node) = guard.nodes.get_mut(&name) else {
        return status(
            StatusCode::NOT_FOUND,
            "NotFound",
            format!("nodes \"{name}\" not found"),
        );
    };
    let mut updated = node.clone();
    if let Err(response) =
        merge_with_precondition(&mut updated, &patch, &format!("nodes \"{name}\""), rv)
    {
        return *response;
    }
    *node = updated.clone();
    guard.rv = rv;
    guard
        .history
        .push((rv, "nodes", "MODIFIED", updated.clone()));
    drop(guard);
    notify.notify_waiters();
    axum::Json(updated).into_response()
}

async fn get_pod(
    State((state, _)): State<Shared>,
    Path((ns, name)): Path<(String, String)>,
    method: Method,
    uri: Uri,
) -> Response {
    let mut state = state.lock().unwrap();
    log(&mut state, &method, &uri, None);
    match state.pods.get(&format!("{ns}/{name}")) {
        Some(pod) => axum::Json(pod.clone()).into_response(),
        None => status(
            StatusCode::NOT_FOUND,
            "NotFound",
            format!("pods \"{name}\" not found"),
        ),
    }
}

async fn patch_pod(
    State((state, notify)): State<Shared>,
    Path((ns, name)): Path<(String, String)>,
    method: Method,
    uri: Uri,
    body: Bytes,
) -> Response {
    let patch: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let mut guard = state.lock().unwrap();
    log(&mut guard, &method, &uri, Some(&patch));
    let rv = guard.rv + 1;
    let Some(pod) = guard.pods.get_mut(&format!("{ns}/{name}")) else {
        return status(
            StatusCode::NOT_FOUND,
            "NotFound",
            format!("pods \"{name}\" not found"),
        );
    };
    // `metadata.uid` is immutable (kube-apiserver answers 422): the filter's uid precondition.
    if let Some(uid) = patch["metadata"]["uid"].as_str()
        && pod["metadata"]["uid"].as_str() != Some(uid)
    {
        return status(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Invalid",
            format!(
                "Pod \"{name}\" is invalid: metadata.uid: Invalid value: \"{uid}\": field is immutable"
            ),
        );
    }
    let mut updated = pod.clone();
    if let Err(response) =
        merge_with_precondition(&mut updated, &patch, &format!("pods \"{name}\""), rv)
    {
        return *response;
    }
    *pod = updated.clone();
    guard.rv = rv;
    guard
        .history
        .push((rv, "pods", "MODIFIED", updated.clone()));
    drop(guard);
    notify.notify_waiters();
    axum::Json(updated).into_response()
}

async fn bind_pod(
    State((state, notify)): State<Shared>,
    Path((ns, name)): Path<(String, String)>,
    method: Method,
    uri: Uri,
    body: Bytes,
) -> Response {
    let binding: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let mut guard = state.lock().unwrap();
    log(&mut guard, &method, &uri, Some(&binding));
    let rv = guard.rv + 1;
    let Some(pod) = guard.pods.get_mut(&format!("{ns}/{name}")) else {
        return status(
            StatusCode::NOT_FOUND,
            "NotFound",
            format!("pods \"{name}\" not found"),
        );
    };
    if let Some(uid) = binding["metadata"]["uid"].as_str()
        && pod["metadata"]["uid"].as_str() != Some(uid)
    {
        return status(
            StatusCode::CONFLICT,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on pods/binding \"{name}\": precondition failed: UID in precondition: {uid}"
            ),
        );
    }
    if let Some(node) = pod["spec"]["nodeName"].as_str() {
        return status(
            StatusCode::CONFLICT,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on pods/binding \"{name}\": pod {name} is already assigned to node \"{node}\""
            ),
        );
    }
    pod["spec"]["nodeName"] = binding["target"]["name"].clone();
    pod["metadata"]["resourceVersion"] = json!(rv.to_string());
    let updated = pod.clone();
    guard.rv = rv;
    guard.history.push((rv, "pods", "MODIFIED", updated));
    drop(guard);
    notify.notify_waiters();
    (
        StatusCode::CREATED,
        axum::Json(json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201})),
    )
        .into_response()
}

async fn create_event(
    State((state, _)): State<Shared>,
    Path(_ns): Path<String>,
    method: Method,
    uri: Uri,
    body: Bytes,
) -> Response {
    let event: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let mut guard = state.lock().unwrap();
    log(&mut guard, &method, &uri, Some(&event));
    guard.events.push(event.clone());
    (StatusCode::CREATED, axum::Json(event)).into_response()
}
