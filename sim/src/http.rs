//! The simulated cluster's REST façade: the subset of the Kubernetes API that kube-rs (sliceguard's
//! own driver, unchanged), kubectl and the Python client use, served over loopback HTTP.
//!
//! What it serves (facts from `../shared/spec/kube-clients.md`):
//! - discovery: `/version` (minor 32, which picks kubectl 1.32 behind the gcloud dispatcher), `/api`,
//!   `/apis` (with `events.k8s.io/v1`), `/api/v1` and `/apis/events.k8s.io/v1` resource lists with
//!   kinds, verbs and short names; `/openapi/*` answers 404 (use `kubectl apply --validate=false`);
//! - namespaces, nodes, pods (with `status` and `binding`), core/v1 events, and events.k8s.io/v1
//!   events (stored as core/v1 events, so `kubectl describe` shows them);
//! - list with `fieldSelector`/`labelSelector`, watch (`watch=true` or `True`) as newline-terminated
//!   JSON events, initial `ADDED` events when no resourceVersion is given, `timeoutSeconds`;
//! - merge, strategic merge (as merge) and JSON patches with resourceVersion preconditions (409);
//! - `Content-Type: application/json` on every answer, errors as `Status` objects.
//!
//! Pod creation, and every update of a pod's main object (`PUT`, `PATCH`; not `status`, not
//! `binding`), goes through an optional [`Admission`] hook (sliceguard's webhook, over HTTPS or in
//! process) with the requesting user, as kube-apiserver runs validating and mutating webhooks on
//! CREATE and UPDATE. An update is previewed, admitted with its old and new object, then written
//! only if the object did not change meanwhile (else it is previewed and admitted again).
//!
//! **Users** (a documented test-tier simplification of authentication): a request carrying
//! `Authorization: Bearer <name>` is made by the user `<name>`; one without is made by
//! [`DEFAULT_USER`], the admin of a kind cluster. An `Impersonate-User: <name>` header (kubectl's
//! `--as`, or `as:` in a kubeconfig) makes it `<name>`'s, as impersonation does on a real API
//! server; kubectl needs it because it never sends a bearer token over plain HTTP. [`kubeconfig_as`]
//! writes a kubeconfig carrying both. Nothing is authorized or refused by user here; the user only
//! reaches admission.
//!
//! Writes wake watchers through a `tokio::sync::watch` channel of the latest resourceVersion.

use crate::store::{ApiError, Part, PatchType, Resource, Selector, Store, selected};
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

/// The most a request body may carry.
const BODY_LIMIT: usize = 3 * 1024 * 1024;

/// The user of a request without a bearer token (a kind cluster's admin).
pub const DEFAULT_USER: &str = "kubernetes-admin";

/// The operation a pod admission request is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    /// `POST` of a new pod.
    Create,
    /// `PUT` or `PATCH` of an existing pod's main object.
    Update,
}

impl Operation {
    /// The AdmissionReview `operation` value.
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Create => "CREATE",
            Operation::Update => "UPDATE",
        }
    }
}

/// One pod admission request.
#[derive(Debug, Clone, PartialEq)]
pub struct AdmissionRequest {
    /// CREATE or UPDATE.
    pub operation: Operation,
    /// The pod's namespace.
    pub namespace: String,
    /// Who asks ([`DEFAULT_USER`] without a bearer token).
    pub user: String,
    /// The pod as it would be stored.
    pub object: Value,
    /// On UPDATE, the pod as it is stored now.
    pub old_object: Option<Value>,
}

/// A mutating admission step for pod creation and update: returns the (possibly mutated) pod, or a
/// denial.
pub trait Admission: Send + Sync + 'static {
    /// Admits a pod about to be created or updated.
    fn admit(
        &self,
        request: AdmissionRequest,
    ) -> Pin<Box<dyn Future<Output = Result<Value, ApiError>> + Send + '_>>;
}

/// The user a request is made by: the impersonated user, else its bearer token, else
/// [`DEFAULT_USER`].
pub fn user_of(headers: &HeaderMap) -> String {
    let impersonated = headers
        .get("impersonate-user")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|u| !u.is_empty());
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty());
    impersonated.or(bearer).unwrap_or(DEFAULT_USER).to_string()
}

/// How many times an update is previewed and admitted again when the object changed meanwhile.
const UPDATE_ATTEMPTS: usize = 8;

/// An update of a pod's main object through admission: `preview` gives the stored and the updated
/// object; the admitted object is written with the stored one's resourceVersion as a precondition.
async fn admitted_update(
    state: &ApiState,
    admission: &dyn Admission,
    namespace: &str,
    name: &str,
    user: &str,
    preview: impl Fn(&Store) -> Result<(Value, Value), ApiError>,
) -> Result<Value, ApiError> {
    for _ in 0..UPDATE_ATTEMPTS {
        let (old, new) = preview(&state.shared.read())?;
        let seen = old["metadata"]["resourceVersion"].clone();
        let mut admitted = admission
            .admit(AdmissionRequest {
                operation: Operation::Update,
                namespace: namespace.to_string(),
                user: user.to_string(),
                object: new,
                old_object: Some(old),
            })
            .await?;
        admitted["metadata"]["resourceVersion"] = seen;
        match state
            .shared
            .write(|s| s.replace(Resource::Pods, Some(namespace), name, Part::Main, admitted))
        {
            Err(e) if e.is_conflict() => continue,
            other => return other,
        }
    }
    Err(ApiError::Conflict(format!(
        "Operation cannot be fulfilled on pods \"{name}\": the object kept changing while it was admitted"
    )))
}

/// The store shared by the façade and the simulated controllers.
#[derive(Debug)]
pub struct SharedStore {
    store: Mutex<Store>,
    changes: tokio::sync::watch::Sender<u64>,
}

impl SharedStore {
    /// Wraps a store.
    pub fn new(store: Store) -> Arc<SharedStore> {
        let rv = store.resource_version();
        let (changes, _) = tokio::sync::watch::channel(rv);
        Arc::new(SharedStore {
            store: Mutex::new(store),
            changes,
        })
    }

    /// Locks the store for reading.
    pub fn read(&self) -> MutexGuard<'_, Store> {
        self.store
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Runs a write and wakes watchers.
    pub fn write<T>(&self, f: impl FnOnce(&mut Store) -> T) -> T {
        let (out, rv) = {
            let mut store = self.read();
            let out = f(&mut store);
            (out, store.resource_version())
        };
        self.changes.send_replace(rv);
        out
    }

    /// A receiver that changes on every write.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changes.subscribe()
    }
}

/// Everything a request handler needs.
#[derive(Clone)]
pub struct ApiState {
    /// The store.
    pub shared: Arc<SharedStore>,
    /// Admission for pod creation.
    pub admission: Option<Arc<dyn Admission>>,
    /// The address clients reach this server at (for `/api`).
    pub address: String,
}

impl std::fmt::Debug for ApiState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiState")
            .field("address", &self.address)
            .field("admission", &self.admission.is_some())
            .finish()
    }
}

/// The router serving the façade.
pub fn router(state: ApiState) -> Router {
    Router::new().fallback(dispatch).with_state(state)
}

fn json_response(code: StatusCode, value: &Value) -> Response {
    (
        code,
        [(header::CONTENT_TYPE, "application/json")],
        value.to_string(),
    )
        .into_response()
}

fn error_response(e: &ApiError) -> Response {
    json_response(
        StatusCode::from_u16(e.code()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        &e.status(),
    )
}

fn version() -> Value {
    json!({"major": "1", "minor": "32", "gitVersion": "v1.32.0-sliceguard-sim", "platform": "linux/amd64",
           "goVersion": "n/a", "compiler": "sliceguard-sim", "buildDate": "2026-01-01T00:00:00Z", "gitCommit": "", "gitTreeState": "clean"})
}

fn resource_entry(
    name: &str,
    kind: &str,
    namespaced: bool,
    verbs: &[&str],
    short: &[&str],
) -> Value {
    let singular = kind.to_lowercase();
    json!({"name": name, "singularName": if name.contains('/') { "" } else { singular.as_str() }, "namespaced": namespaced,
           "kind": kind, "verbs": verbs, "shortNames": short})
}

fn core_resources() -> Value {
    let rw = [
        "create", "delete", "get", "list", "patch", "update", "watch",
    ];
    json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": "v1", "resources": [
        resource_entry("namespaces", "Namespace", false, &rw, &["ns"]),
        resource_entry("nodes", "Node", false, &rw, &["no"]),
        resource_entry("nodes/status", "Node", false, &["get", "patch", "update"], &[]),
        resource_entry("pods", "Pod", true, &rw, &["po"]),
        resource_entry("pods/status", "Pod", true, &["get", "patch", "update"], &[]),
        resource_entry("pods/binding", "Binding", true, &["create"], &[]),
        resource_entry("bindings", "Binding", true, &["create"], &[]),
        resource_entry("events", "Event", true, &rw, &["ev"]),
    ]})
}

fn events_group() -> Value {
    json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": "events.k8s.io/v1", "resources": [
        resource_entry("events", "Event", true, &["create", "delete", "get", "list", "patch", "update", "watch"], &["ev"]),
    ]})
}

fn apps_group() -> Value {
    json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": "apps/v1", "resources": [
        resource_entry("deployments", "Deployment", true, &["create", "delete", "get", "list", "patch", "update", "watch"], &["deploy"]),
        resource_entry("deployments/status", "Deployment", true, &["get", "patch", "update"], &[]),
    ]})
}

fn coordination_group() -> Value {
    json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": "coordination.k8s.io/v1", "resources": [
        resource_entry("leases", "Lease", true, &["create", "delete", "get", "list", "patch", "update", "watch"], &[]),
    ]})
}

/// A parsed API path.
#[derive(Debug, PartialEq, Eq)]
struct Target {
    resource: Resource,
    namespace: Option<String>,
    name: Option<String>,
    sub: Option<String>,
    /// events.k8s.io/v1 shape on the wire.
    events_v1: bool,
}

fn parse_path(path: &str) -> Option<Target> {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (rest, events_v1, group_version) = match segments.as_slice() {
        ["api", "v1", rest @ ..] => (rest, false, "v1"),
        ["apis", "events.k8s.io", "v1", rest @ ..] => (rest, true, "events.k8s.io/v1"),
        ["apis", "apps", "v1", rest @ ..] => (rest, false, "apps/v1"),
        ["apis", "coordination.k8s.io", "v1", rest @ ..] => (rest, false, "coordination.k8s.io/v1"),
        _ => return None,
    };
    let (namespace, rest) = match rest {
        ["namespaces", ns, plural, rest @ ..] => {
            (Some((*ns).to_string()), [&[*plural][..], rest].concat())
        }
        other => (None, other.to_vec()),
    };
    let resource = Resource::from_plural(rest.first()?)?;
    if events_v1 && resource != Resource::Events {
        return None;
    }
    if !events_v1 && resource.group_version() != group_version {
        return None;
    }
    let name = rest.get(1).map(|s| (*s).to_string());
    let sub = rest.get(2).map(|s| (*s).to_string());
    if rest.len() > 3 {
        return None;
    }
    Some(Target {
        resource,
        namespace,
        name,
        sub,
        events_v1,
    })
}

fn query_map(query: Option<&str>) -> HashMap<String, String> {
    query
        .unwrap_or("")
        .split('&')
        .filter(|kv| !kv.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                match hex {
                    Some(b) => {
                        out.push(b);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

async fn dispatch(State(state): State<ApiState>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let path = parts.uri.path().to_string();
    let query = query_map(parts.uri.query());
    let body = match axum::body::to_bytes(body, BODY_LIMIT).await {
        Ok(b) => b,
        Err(_) => {
            return error_response(&ApiError::BadRequest(format!(
                "request body larger than {BODY_LIMIT} bytes"
            )));
        }
    };
    match (parts.method.clone(), path.as_str()) {
        (Method::GET, "/version") => return json_response(StatusCode::OK, &version()),
        (Method::GET, "/api") => {
            return json_response(
                StatusCode::OK,
                &json!({"kind": "APIVersions", "versions": ["v1"],
                "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": state.address}]}),
            );
        }
        (Method::GET, "/apis") => {
            return json_response(
                StatusCode::OK,
                &json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": [
                {"name": "apps", "versions": [{"groupVersion": "apps/v1", "version": "v1"}],
                 "preferredVersion": {"groupVersion": "apps/v1", "version": "v1"}},
                {"name": "events.k8s.io", "versions": [{"groupVersion": "events.k8s.io/v1", "version": "v1"}],
                 "preferredVersion": {"groupVersion": "events.k8s.io/v1", "version": "v1"}},
                {"name": "coordination.k8s.io", "versions": [{"groupVersion": "coordination.k8s.io/v1", "version": "v1"}],
                 "preferredVersion": {"groupVersion": "coordination.k8s.io/v1", "version": "v1"}}]}),
            );
        }
        (Method::GET, "/api/v1") => return json_response(StatusCode::OK, &core_resources()),
        (Method::GET, "/apis/events.k8s.io/v1") => {
            return json_response(StatusCode::OK, &events_group());
        }
        (Method::GET, "/apis/apps/v1") => {
            return json_response(StatusCode::OK, &apps_group());
        }
        (Method::GET, "/apis/coordination.k8s.io/v1") => {
            return json_response(StatusCode::OK, &coordination_group());
        }
        (Method::GET, "/healthz" | "/readyz" | "/livez") => {
            return (StatusCode::OK, [(header::CONTENT_TYPE, "text/plain")], "ok").into_response();
        }
        _ => {}
    }
    let Some(target) = parse_path(&path) else {
        return json_response(
            StatusCode::NOT_FOUND,
            &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                    "message": format!("the server could not find the requested resource ({path})"), "reason": "NotFound", "code": 404}),
        );
    };
    match handle(&state, &parts.method, &parts.headers, &query, target, body).await {
        Ok(response) => response,
        Err(e) => error_response(&e),
    }
}

/// True when the client asks for a `meta.k8s.io` Table (kubectl's human output).
fn wants_table(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .and_then(|accept| accept.split(',').next())
        .is_some_and(|first| first.contains("as=Table"))
}

fn parse_body(body: &Bytes) -> Result<Value, ApiError> {
    if body.is_empty() {
        return Ok(Value::Null);
    }
    serde_json::from_slice(body)
        .map_err(|e| ApiError::BadRequest(format!("the request body is not valid JSON: {e}")))
}

fn events_v1_to_core(namespace: &str, v: &Value) -> Value {
    let regarding = v.get("regarding").cloned().unwrap_or(json!({}));
    json!({
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": v["metadata"]["name"], "generateName": v["metadata"]["generateName"], "namespace": namespace},
        "involvedObject": regarding,
        "reason": v["reason"],
        "message": v["note"],
        "type": v["type"],
        "action": v["action"],
        "source": {"component": v["reportingController"]},
        "reportingComponent": v["reportingController"],
        "reportingInstance": v["reportingInstance"],
        "eventTime": v["eventTime"],
        "count": v["series"]["count"].as_i64().unwrap_or(1),
    })
}

fn core_to_events_v1(v: &Value) -> Value {
    json!({
        "apiVersion": "events.k8s.io/v1",
        "kind": "Event",
        "metadata": v["metadata"],
        "regarding": v["involvedObject"],
        "reason": v["reason"],
        "note": v["message"],
        "type": v["type"],
        "action": v["action"],
        "reportingController": v["reportingComponent"],
        "reportingInstance": v["reportingInstance"],
        "eventTime": v["eventTime"],
    })
}

async fn handle(
    state: &ApiState,
    method: &Method,
    headers: &HeaderMap,
    query: &HashMap<String, String>,
    target: Target,
    body: Bytes,
) -> Result<Response, ApiError> {
    let Target {
        resource,
        namespace,
        name,
        sub,
        events_v1,
    } = target;
    if resource.namespaced() && namespace.is_none() && name.is_some() {
        return Err(ApiError::NotFound {
            resource,
            name: name.unwrap_or_default(),
        });
    }
    let ns = namespace.as_deref();
    let shape = |v: Value| if events_v1 { core_to_events_v1(&v) } else { v };
    let list_kind = if events_v1 {
        "EventList".to_string()
    } else {
        format!("{}List", resource.kind())
    };
    let api_version = if events_v1 {
        "events.k8s.io/v1"
    } else {
        resource.group_version()
    };
    match (method, name.as_deref(), sub.as_deref()) {
        (&Method::GET, None, None) => {
            let fields =
                Selector::parse(query.get("fieldSelector").map_or("", String::as_str), false)?;
            let labels =
                Selector::parse(query.get("labelSelector").map_or("", String::as_str), true)?;
            if matches!(
                query.get("watch").map(String::as_str),
                Some("true" | "True" | "1")
            ) {
                let rv = query
                    .get("resourceVersion")
                    .and_then(|v| v.parse::<u64>().ok())
                    .filter(|rv| *rv > 0);
                let timeout = query
                    .get("timeoutSeconds")
                    .and_then(|t| t.parse::<u64>().ok())
                    .unwrap_or(1800)
                    .min(3600);
                return watch(
                    state.shared.clone(),
                    resource,
                    namespace,
                    fields,
                    labels,
                    rv,
                    Duration::from_secs(timeout),
                    events_v1,
                );
            }
            // Paging as kube-apiserver does it: `limit`, and an opaque `continue` token from the
            // previous page (kube-rs lists 500 at a time, kubectl too).
            let limit = match query.get("limit").map(String::as_str) {
                None | Some("" | "0") => None,
                Some(text) => Some(text.parse::<usize>().map_err(|_| {
                    ApiError::BadRequest(format!(
                        "limit: Invalid value: {text:?}: must be a non-negative integer"
                    ))
                })?),
            };
            let resume = query
                .get("continue")
                .filter(|t| !t.is_empty())
                .map(|t| ContinueToken::decode(t))
                .transpose()?;
            let (page, now) = {
                let store = state.shared.read();
                if let Some(token) = &resume {
                    // The first page's resourceVersion must still be in the watch log: a watch from it
                    // is what makes the pages read at different times add up.
                    store.events_after(token.resource_version).map(drop).map_err(|_| {
                        ApiError::Gone(
                            "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter.".into(),
                        )
                    })?;
                }
                let page = store.list_page(
                    resource,
                    ns,
                    &fields,
                    &labels,
                    resume
                        .as_ref()
                        .map(|t| (t.namespace.as_str(), t.name.as_str())),
                    limit.unwrap_or(usize::MAX),
                )?;
                (page, store.now())
            };
            let rv = resume
                .as_ref()
                .map_or(page.resource_version, |t| t.resource_version);
            let mut metadata = json!({"resourceVersion": rv.to_string()});
            if let Some((namespace, name)) = page.resume_after {
                metadata["continue"] = json!(
                    ContinueToken {
                        resource_version: rv,
                        namespace,
                        name
                    }
                    .encode()
                );
            }
            if wants_table(headers) && !events_v1 {
                let mut table = crate::table::table(resource, &page.items, rv, now);
                table["metadata"] = metadata;
                return Ok(json_response(StatusCode::OK, &table));
            }
            let items: Vec<Value> = page.items.into_iter().map(shape).collect();
            Ok(json_response(
                StatusCode::OK,
                &json!({"kind": list_kind, "apiVersion": api_version, "metadata": metadata, "items": items}),
            ))
        }
        (&Method::POST, None, None) => {
            let mut object = parse_body(&body)?;
            if events_v1 {
                object = events_v1_to_core(ns.unwrap_or("default"), &object);
            }
            if resource == Resource::Pods
                && let Some(admission) = &state.admission
            {
                object = admission
                    .admit(AdmissionRequest {
                        operation: Operation::Create,
                        namespace: ns.unwrap_or("default").to_string(),
                        user: user_of(headers),
                        object,
                        old_object: None,
                    })
                    .await?;
            }
            let created = state.shared.write(|s| s.create(resource, ns, object))?;
            Ok(json_response(StatusCode::CREATED, &shape(created)))
        }
        (&Method::GET, Some(name), None) => {
            let (object, now, rv) = {
                let store = state.shared.read();
                (
                    store.get(resource, ns, name)?,
                    store.now(),
                    store.resource_version(),
                )
            };
            if wants_table(headers) && !events_v1 {
                return Ok(json_response(
                    StatusCode::OK,
                    &crate::table::table(resource, &[object], rv, now),
                ));
            }
            Ok(json_response(StatusCode::OK, &shape(object)))
        }
        (&Method::GET, Some(name), Some("status")) => Ok(json_response(
            StatusCode::OK,
            &state.shared.read().get(resource, ns, name)?,
        )),
        (&Method::PUT, Some(name), sub @ (None | Some("status"))) => {
            let part = if sub.is_some() {
                Part::Status
            } else {
                Part::Main
            };
            let body = parse_body(&body)?;
            if resource == Resource::Pods
                && part == Part::Main
                && let Some(admission) = &state.admission
            {
                let namespace = ns.unwrap_or("default");
                let updated =
                    admitted_update(state, admission.as_ref(), namespace, name, &user_of(headers), |s| {
                        let current = s.get(resource, ns, name)?;
                        let mut new = body.clone();
                        if new["metadata"]["resourceVersion"].is_null() {
                            new["metadata"]["resourceVersion"] =
                                current["metadata"]["resourceVersion"].clone();
                        } else if new["metadata"]["resourceVersion"]
                            != current["metadata"]["resourceVersion"]
                        {
                            return Err(ApiError::Conflict(format!(
                                "Operation cannot be fulfilled on pods \"{name}\": the object has been modified; please apply your changes to the latest version and try again"
                            )));
                        }
                        Ok((current, new))
                    })
                    .await?;
                return Ok(json_response(StatusCode::OK, &shape(updated)));
            }
            let updated = state
                .shared
                .write(|s| s.replace(resource, ns, name, part, body))?;
            Ok(json_response(StatusCode::OK, &shape(updated)))
        }
        (&Method::PATCH, Some(name), sub @ (None | Some("status"))) => {
            let part = if sub.is_some() {
                Part::Status
            } else {
                Part::Main
            };
            let content_type = headers
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            let patch_type = PatchType::from_content_type(content_type).ok_or_else(|| {
                ApiError::BadRequest(format!(
                    "unsupported patch Content-Type {content_type:?} (use application/merge-patch+json, application/strategic-merge-patch+json or application/json-patch+json)"
                ))
            })?;
            let body = parse_body(&body)?;
            if resource == Resource::Pods
                && part == Part::Main
                && let Some(admission) = &state.admission
            {
                let namespace = ns.unwrap_or("default");
                let updated = admitted_update(
                    state,
                    admission.as_ref(),
                    namespace,
                    name,
                    &user_of(headers),
                    |s| s.preview_patch(resource, ns, name, part, patch_type, &body),
                )
                .await?;
                return Ok(json_response(StatusCode::OK, &shape(updated)));
            }
            let updated = state
                .shared
                .write(|s| s.patch(resource, ns, name, part, patch_type, &body))?;
            Ok(json_response(StatusCode::OK, &shape(updated)))
        }
        (&Method::POST, Some(name), Some("binding")) if resource == Resource::Pods => {
            let binding = parse_body(&body)?;
            let node = binding["target"]["name"].as_str().unwrap_or("").to_string();
            let uid = binding["metadata"]["uid"].as_str().map(str::to_string);
            state
                .shared
                .write(|s| s.bind(ns.unwrap_or("default"), name, &node, uid.as_deref()))?;
            Ok(json_response(
                StatusCode::CREATED,
                &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}),
            ))
        }
        (&Method::DELETE, Some(name), None) => {
            let deleted = state.shared.write(|s| s.delete(resource, ns, name))?;
            Ok(json_response(StatusCode::OK, &shape(deleted)))
        }
        _ => Err(ApiError::BadRequest(format!(
            "{method} is not supported on this path"
        ))),
    }
}

#[allow(clippy::too_many_arguments)]
fn watch(
    shared: Arc<SharedStore>,
    resource: Resource,
    namespace: Option<String>,
    fields: Selector,
    labels: Selector,
    rv: Option<u64>,
    timeout: Duration,
    events_v1: bool,
) -> Result<Response, ApiError> {
    let shape = move |v: Value| if events_v1 { core_to_events_v1(&v) } else { v };
    let matches = {
        let namespace = namespace.clone();
        move |r: Resource, object: &Value| {
            r == resource
                && (!resource.namespaced()
                    || namespace
                        .as_deref()
                        .is_none_or(|ns| object["metadata"]["namespace"].as_str() == Some(ns)))
                && selected(resource, object, &fields, &labels).unwrap_or(false)
        }
    };
    let (initial, start) = {
        let store = shared.read();
        match rv {
            Some(rv) => {
                store.events_after(rv).map(drop)?;
                (Vec::new(), rv)
            }
            None => {
                let (items, rv) = store.list(
                    resource,
                    namespace.as_deref(),
                    &Selector::default(),
                    &Selector::default(),
                )?;
                let lines: Vec<String> = items
                    .into_iter()
                    .filter(|o| matches(resource, o))
                    .map(|o| format!("{}\n", json!({"type": "ADDED", "object": shape(o)})))
                    .collect();
                (lines, rv)
            }
        }
    };
    let mut changes = shared.subscribe();
    let deadline = tokio::time::Instant::now() + timeout;
    let stream = async_stream(
        move |tx: tokio::sync::mpsc::Sender<Result<Bytes, std::io::Error>>| async move {
            for line in initial {
                if tx.send(Ok(Bytes::from(line))).await.is_err() {
                    return;
                }
            }
            let mut cursor = start;
            loop {
                let lines: Result<Vec<(u64, String)>, ApiError> = {
                    let store = shared.read();
                    store.events_after(cursor).map(|events| {
                    events
                        .map(|e| {
                            let line = if matches(e.resource, &e.object) {
                                format!("{}\n", json!({"type": e.event_type.as_str(), "object": shape(e.object.clone())}))
                            } else {
                                String::new()
                            };
                            (e.rv, line)
                        })
                        .collect()
                })
                };
                match lines {
                    Ok(lines) => {
                        for (rv, line) in lines {
                            cursor = rv;
                            if !line.is_empty() && tx.send(Ok(Bytes::from(line))).await.is_err() {
                                return;
                            }
                        }
                    }
                    Err(e) => {
                        let line = format!("{}\n", json!({"type": "ERROR", "object": e.status()}));
                        let _ = tx.send(Ok(Bytes::from(line))).await;
                        return;
                    }
                }
                tokio::select! {
                    changed = changes.changed() => if changed.is_err() { return },
                    () = tokio::time::sleep_until(deadline) => return,
                }
            }
        },
    );
    Ok(Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::CACHE_CONTROL, "no-cache, private")
        .body(Body::from_stream(stream))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response()))
}

/// A stream fed by a task writing into a channel.
fn async_stream<F, Fut>(
    producer: F,
) -> tokio_stream::wrappers::ReceiverStream<Result<Bytes, std::io::Error>>
where
    F: FnOnce(tokio::sync::mpsc::Sender<Result<Bytes, std::io::Error>>) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    tokio::spawn(producer(tx));
    tokio_stream::wrappers::ReceiverStream::new(rx)
}

/// A running façade on a loopback port.
#[derive(Debug)]
pub struct RunningApi {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    /// Stops the server when dropped or sent.
    pub shutdown: tokio::sync::oneshot::Sender<()>,
    /// The server task.
    pub task: tokio::task::JoinHandle<()>,
}

/// Serves the façade on `addr` (use port 0 for any free port).
pub async fn serve(
    shared: Arc<SharedStore>,
    admission: Option<Arc<dyn Admission>>,
    addr: &str,
) -> std::io::Result<RunningApi> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    let state = ApiState {
        shared,
        admission,
        address: local.to_string(),
    };
    let (shutdown, stop) = tokio::sync::oneshot::channel::<()>();
    let app = router(state);
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = stop.await;
            })
            .await;
    });
    Ok(RunningApi {
        url: format!("http://{local}"),
        shutdown,
        task,
    })
}

/// A kubeconfig pointing at `url` for `user`: its bearer token is the username (see the module
/// documentation), so the façade and admission see every request as made by `user`.
pub fn kubeconfig_as(url: &str, user: &str) -> String {
    let token = serde_json::to_string(user).unwrap_or_else(|_| "\"\"".into());
    kubeconfig(url).replace(
        "  user: {}\n",
        &format!("  user:\n    token: {token}\n    as: {token}\n"),
    )
}

/// A kubeconfig pointing at `url`, with context `sliceguard-sim`, as [`DEFAULT_USER`] (no token).
pub fn kubeconfig(url: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: sliceguard-sim\n  cluster:\n    server: {url}\ncontexts:\n- name: sliceguard-sim\n  context:\n    cluster: sliceguard-sim\n    user: sliceguard-sim\n    namespace: default\ncurrent-context: sliceguard-sim\nusers:\n- name: sliceguard-sim\n  user: {{}}\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        let t = parse_path("/api/v1/namespaces/default/pods/p/binding").unwrap();
        assert_eq!(
            (
                t.resource,
                t.namespace.as_deref(),
                t.name.as_deref(),
                t.sub.as_deref()
            ),
            (Resource::Pods, Some("default"), Some("p"), Some("binding"))
        );
        let t = parse_path("/api/v1/nodes/n1/status").unwrap();
        assert_eq!(
            (t.resource, t.namespace, t.name.as_deref(), t.sub.as_deref()),
            (Resource::Nodes, None, Some("n1"), Some("status"))
        );
        let t = parse_path("/api/v1/namespaces/kube-system").unwrap();
        assert_eq!(
            (t.resource, t.name.as_deref()),
            (Resource::Namespaces, Some("kube-system"))
        );
        assert_eq!(parse_path("/api/v1/pods").unwrap().namespace, None);
        assert!(
            parse_path("/apis/events.k8s.io/v1/namespaces/d/events")
                .unwrap()
                .events_v1
        );
        assert!(parse_path("/api/v1/secrets").is_none());
        assert_eq!(
            parse_path("/apis/apps/v1/namespaces/d/deployments/x")
                .unwrap()
                .resource,
            Resource::Deployments
        );
        assert!(parse_path("/api/v1/namespaces/d/deployments").is_none());
        assert!(parse_path("/apis/apps/v1/pods").is_none());
        assert!(parse_path("/apis/batch/v1/jobs").is_none());
        assert_eq!(
            parse_path("/apis/coordination.k8s.io/v1/namespaces/s/leases/sliceguard")
                .unwrap()
                .resource,
            Resource::Leases
        );
        assert!(parse_path("/api/v1/namespaces/s/leases/x").is_none());
    }

    #[test]
    fn users_come_from_impersonation_or_the_bearer_token() {
        let mut headers = HeaderMap::new();
        assert_eq!(user_of(&headers), DEFAULT_USER);
        headers.insert(header::AUTHORIZATION, "Bearer alice".parse().unwrap());
        assert_eq!(user_of(&headers), "alice");
        headers.insert("impersonate-user", "bob".parse().unwrap());
        assert_eq!(user_of(&headers), "bob");
        headers.remove("impersonate-user");
        headers.insert(header::AUTHORIZATION, "Basic YTpi".parse().unwrap());
        assert_eq!(user_of(&headers), DEFAULT_USER);
        let config = kubeconfig_as("http://127.0.0.1:1", "system:serviceaccount:a:b");
        assert!(
            config.contains("  user:\n    token: \"system:serviceaccount:a:b\"\n    as: \"system:serviceaccount:a:b\"\n"),
            "{config}"
        );
        assert!(kubeconfig("http://127.0.0.1:1").contains("  user: {}\n"));
    }

    #[test]
    fn query_decoding() {
        let q = query_map(Some(
            "fieldSelector=metadata.name%3Dp%2Cx&watch=true&bad=%zz&tail=%4",
        ));
        assert_eq!(q["fieldSelector"], "metadata.name=p,x");
        assert_eq!(q["bad"], "%zz");
        assert_eq!(q["tail"], "%4");
    }
}

/// A list's `continue` token: the first page's resourceVersion and the key of the last object
/// returned, hex-encoded so that clients treat it as opaque.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ContinueToken {
    resource_version: u64,
    namespace: String,
    name: String,
}

impl ContinueToken {
    fn encode(&self) -> String {
        let plain = format!(
            "{}\n{}\n{}",
            self.resource_version, self.namespace, self.name
        );
        plain.bytes().map(|b| format!("{b:02x}")).collect()
    }

    fn decode(token: &str) -> Result<Self, ApiError> {
        let invalid = || ApiError::BadRequest(format!("continue key is not valid: {token:?}"));
        if !token.len().is_multiple_of(2) || !token.is_ascii() {
            return Err(invalid());
        }
        let bytes = (0..token.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&token[i..i + 2], 16))
            .collect::<Result<Vec<u8>, _>>()
            .map_err(|_| invalid())?;
        let plain = String::from_utf8(bytes).map_err(|_| invalid())?;
        let mut parts = plain.splitn(3, '\n');
        let (Some(rv), Some(namespace), Some(name)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(invalid());
        };
        Ok(ContinueToken {
            resource_version: rv.parse().map_err(|_| invalid())?,
            namespace: namespace.to_string(),
            name: name.to_string(),
        })
    }
}

#[cfg(test)]
mod continue_token_tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects_garbage_by_name() {
        let token = ContinueToken {
            resource_version: 42,
            namespace: "default".into(),
            name: "p-1".into(),
        };
        assert_eq!(ContinueToken::decode(&token.encode()).unwrap(), token);
        for bad in ["abc", "zz", "00", "3432", "\u{e9}\u{e9}"] {
            let err = ContinueToken::decode(bad).unwrap_err().to_string();
            assert!(err.contains("continue key is not valid"), "{bad}: {err}");
        }
    }
}
