//! The simulated API server's object store: namespaces, nodes, pods and events with the Kubernetes
//! semantics sliceguard depends on.
//!
//! - Every write bumps a global `resourceVersion` (a decimal string on the wire) and appends a watch
//!   event; a write that changes nothing is a no-op, as on a real API server.
//! - Preconditions: a `metadata.resourceVersion` in a replace or patch body that differs from the
//!   stored one is a **409 Conflict**; a `metadata.uid` in a patch body that differs from the stored
//!   one is a **422 Invalid** (uid is immutable), so a uid in a patch guards against a re-created
//!   object.
//! - Patches: JSON merge patch, strategic merge patch (treated as a merge patch: enough for maps such
//!   as annotations and labels, where `null` deletes; lists are replaced), and JSON Patch.
//! - Subresources: `pods/binding` (409 if the pod is already bound) and `status` (replace or patch
//!   only `.status`).
//! - Objects are validated against their `k8s_openapi` types and stored canonically (quantities as
//!   strings, unknown fields pruned), so typed clients read them back.
//! - Deletion is immediate (no finalizers, no grace period): the object is gone on the next GET and a
//!   `DELETED` watch event is emitted.
//!
//! The store has no clock of its own: `creationTimestamp` comes from [`Store::set_time`], and uids
//! and generated names come from counters, so the same operations give the same store, byte for byte.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Event, Namespace, Node, Pod};
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt;
use std::sync::Arc;

/// The resources the store serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Resource {
    /// `namespaces` (cluster-scoped).
    Namespaces,
    /// `nodes` (cluster-scoped).
    Nodes,
    /// `pods` (namespaced).
    Pods,
    /// `events` (namespaced, core/v1 shape).
    Events,
    /// `deployments` (namespaced, `apps/v1`; the live cluster's controller creates their pods).
    Deployments,
    /// `leases` (namespaced, `coordination.k8s.io/v1`; leader election).
    Leases,
}

impl Resource {
    /// Every resource.
    pub const ALL: [Resource; 6] = [
        Resource::Namespaces,
        Resource::Nodes,
        Resource::Pods,
        Resource::Events,
        Resource::Deployments,
        Resource::Leases,
    ];

    /// The object kind.
    pub fn kind(self) -> &'static str {
        match self {
            Resource::Namespaces => "Namespace",
            Resource::Nodes => "Node",
            Resource::Pods => "Pod",
            Resource::Events => "Event",
            Resource::Deployments => "Deployment",
            Resource::Leases => "Lease",
        }
    }

    /// The API group and version (`v1` for the core group).
    pub fn group_version(self) -> &'static str {
        match self {
            Resource::Deployments => "apps/v1",
            Resource::Leases => "coordination.k8s.io/v1",
            _ => "v1",
        }
    }

    /// The URL plural.
    pub fn plural(self) -> &'static str {
        match self {
            Resource::Namespaces => "namespaces",
            Resource::Nodes => "nodes",
            Resource::Pods => "pods",
            Resource::Events => "events",
            Resource::Deployments => "deployments",
            Resource::Leases => "leases",
        }
    }

    /// True for namespaced resources.
    pub fn namespaced(self) -> bool {
        matches!(
            self,
            Resource::Pods | Resource::Events | Resource::Deployments | Resource::Leases
        )
    }

    /// The resource for a URL plural.
    pub fn from_plural(plural: &str) -> Option<Resource> {
        Resource::ALL.into_iter().find(|r| r.plural() == plural)
    }
}

impl fmt::Display for Resource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.plural())
    }
}

/// An API error, rendered as a Kubernetes `Status`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    /// 404.
    #[error("{resource} \"{name}\" not found")]
    NotFound {
        /// Resource plural.
        resource: Resource,
        /// Object name.
        name: String,
    },
    /// 409 `AlreadyExists`.
    #[error("{resource} \"{name}\" already exists")]
    AlreadyExists {
        /// Resource plural.
        resource: Resource,
        /// Object name.
        name: String,
    },
    /// 409 `Conflict`.
    #[error("{0}")]
    Conflict(String),
    /// 422 `Invalid`.
    #[error("{0}")]
    Invalid(String),
    /// 400 `BadRequest`.
    #[error("{0}")]
    BadRequest(String),
    /// 410 `Expired` (a watch resourceVersion older than the event log).
    #[error("{0}")]
    Gone(String),
    /// 500 `InternalError` (injected faults use it).
    #[error("{0}")]
    Internal(String),
}

impl ApiError {
    /// HTTP status code.
    pub fn code(&self) -> u16 {
        match self {
            ApiError::NotFound { .. } => 404,
            ApiError::AlreadyExists { .. } | ApiError::Conflict(_) => 409,
            ApiError::Invalid(_) => 422,
            ApiError::BadRequest(_) => 400,
            ApiError::Gone(_) => 410,
            ApiError::Internal(_) => 500,
        }
    }

    /// The `Status.reason`.
    pub fn reason(&self) -> &'static str {
        match self {
            ApiError::NotFound { .. } => "NotFound",
            ApiError::AlreadyExists { .. } => "AlreadyExists",
            ApiError::Conflict(_) => "Conflict",
            ApiError::Invalid(_) => "Invalid",
            ApiError::BadRequest(_) => "BadRequest",
            ApiError::Gone(_) => "Expired",
            ApiError::Internal(_) => "InternalError",
        }
    }

    /// The `Status` object a real API server answers with.
    pub fn status(&self) -> Value {
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.to_string(),
            "reason": self.reason(),
            "code": self.code(),
        });
        if let ApiError::NotFound { resource, name } | ApiError::AlreadyExists { resource, name } =
            self
        {
            status["details"] = json!({"name": name, "kind": resource.plural()});
        }
        status
    }

    /// True for 409 Conflict (precondition failed).
    pub fn is_conflict(&self) -> bool {
        matches!(self, ApiError::Conflict(_))
    }
}

/// Watch event types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    /// `ADDED`.
    Added,
    /// `MODIFIED`.
    Modified,
    /// `DELETED`.
    Deleted,
}

impl EventType {
    /// Wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
        }
    }
}

/// One change, as watchers see it.
#[derive(Debug, Clone, PartialEq)]
pub struct WatchEvent {
    /// The resourceVersion of the change.
    pub rv: u64,
    /// Added, modified or deleted.
    pub event_type: EventType,
    /// Which resource.
    pub resource: Resource,
    /// The object after the change (before it, for a deletion, with the deletion's resourceVersion).
    pub object: Value,
}

/// How a PATCH body is applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchType {
    /// `application/merge-patch+json`.
    Merge,
    /// `application/strategic-merge-patch+json` (applied as a merge patch).
    StrategicMerge,
    /// `application/json-patch+json`.
    Json,
}

impl PatchType {
    /// The patch type for a request Content-Type.
    pub fn from_content_type(content_type: &str) -> Option<PatchType> {
        match content_type.split(';').next().unwrap_or("").trim() {
            "application/merge-patch+json" => Some(PatchType::Merge),
            "application/strategic-merge-patch+json" => Some(PatchType::StrategicMerge),
            "application/json-patch+json" => Some(PatchType::Json),
            _ => None,
        }
    }
}

/// Which part of an object a write addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// The whole object (status changes are kept as written, as sliceguard's tests need).
    Main,
    /// Only `.status`.
    Status,
}

/// A parsed field or label selector: equality requirements (`k=v`, `k==v`), inequalities (`k!=v`),
/// and for labels existence (`k`, `!k`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selector {
    requirements: Vec<(String, Requirement)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Requirement {
    Equals(String),
    NotEquals(String),
    Exists,
    NotExists,
}

impl Selector {
    /// Parses a selector; `labels` allows the existence forms.
    pub fn parse(text: &str, labels: bool) -> Result<Selector, ApiError> {
        let mut requirements = Vec::new();
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let bad = || {
                ApiError::BadRequest(format!(
                    "unable to parse requirement {part:?} in selector {text:?}"
                ))
            };
            if part.contains(" in ") || part.contains(" notin ") || part.contains('(') {
                return Err(ApiError::BadRequest(format!(
                    "set-based selector {part:?} is not supported by the simulated API"
                )));
            }
            let requirement = if let Some((k, v)) = part.split_once("!=") {
                (
                    k.trim().to_string(),
                    Requirement::NotEquals(v.trim().to_string()),
                )
            } else if let Some((k, v)) = part.split_once("==").or_else(|| part.split_once('=')) {
                (
                    k.trim().to_string(),
                    Requirement::Equals(v.trim().to_string()),
                )
            } else if labels && let Some(k) = part.strip_prefix('!') {
                (k.trim().to_string(), Requirement::NotExists)
            } else if labels {
                (part.to_string(), Requirement::Exists)
            } else {
                return Err(bad());
            };
            if requirement.0.is_empty() {
                return Err(bad());
            }
            requirements.push(requirement);
        }
        Ok(Selector { requirements })
    }

    /// True when nothing is required.
    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    fn matches(&self, lookup: impl Fn(&str) -> Option<String>) -> bool {
        self.requirements.iter().all(|(key, req)| {
            let value = lookup(key);
            match req {
                Requirement::Equals(v) => value.as_deref() == Some(v.as_str()),
                Requirement::NotEquals(v) => value.as_deref() != Some(v.as_str()),
                Requirement::Exists => value.is_some(),
                Requirement::NotExists => value.is_none(),
            }
        })
    }
}

/// The field paths a resource supports in field selectors.
fn field_value(
    resource: Resource,
    object: &Value,
    field: &str,
) -> Result<Option<String>, ApiError> {
    let path: &[&str] = match (resource, field) {
        (_, "metadata.name") => &["metadata", "name"],
        (_, "metadata.namespace") => &["metadata", "namespace"],
        (Resource::Pods, "spec.nodeName") => &["spec", "nodeName"],
        (Resource::Pods, "spec.schedulerName") => &["spec", "schedulerName"],
        (Resource::Pods, "status.phase") => &["status", "phase"],
        (Resource::Events, "involvedObject.name") => &["involvedObject", "name"],
        (Resource::Events, "involvedObject.namespace") => &["involvedObject", "namespace"],
        (Resource::Events, "involvedObject.uid") => &["involvedObject", "uid"],
        (Resource::Events, "involvedObject.kind") => &["involvedObject", "kind"],
        (Resource::Events, "reason") => &["reason"],
        (Resource::Events, "type") => &["type"],
        (Resource::Nodes, "spec.unschedulable") => &["spec", "unschedulable"],
        _ => {
            return Err(ApiError::BadRequest(format!(
                "field label not supported: {field}"
            )));
        }
    };
    let mut v = object;
    for key in path {
        match v.get(key) {
            Some(next) => v = next,
            None => return Ok(Some(String::new())),
        }
    }
    Ok(Some(match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }))
}

/// True when `object` of `resource` matches both selectors.
pub fn selected(
    resource: Resource,
    object: &Value,
    fields: &Selector,
    labels: &Selector,
) -> Result<bool, ApiError> {
    for (key, _) in &fields.requirements {
        field_value(resource, object, key)?;
    }
    let field_ok = fields.matches(|k| field_value(resource, object, k).ok().flatten());
    let label_ok = labels.matches(|k| {
        object["metadata"]["labels"]
            .get(k)
            .and_then(Value::as_str)
            .map(String::from)
    });
    Ok(field_ok && label_ok)
}

type Key = (Resource, String, String);

/// A page of a list: its objects, and the (namespace, name) after which the next page starts when
/// more objects may follow.
#[derive(Debug, Clone)]
pub struct ListPage {
    /// The selected objects of this page, in key order.
    pub items: Vec<Value>,
    /// Where the next page resumes; `None` on the last page.
    pub resume_after: Option<(String, String)>,
    /// The store's resourceVersion when the page was read.
    pub resource_version: u64,
}

/// A typed list, the resource's change count it was built at, and each object's key and
/// resourceVersion (so that a rebuild types only the objects that changed).
struct TypedList<T> {
    version: u64,
    items: Arc<Vec<Arc<T>>>,
    versions: HashMap<(String, String), (String, Arc<T>)>,
}

type CachedList = Box<dyn std::any::Any + Send + Sync>;

/// Typed copies of a resource's objects, reused until the resource changes (see
/// [`Store::typed_shared`]).
#[derive(Default)]
struct TypedCache {
    entries: std::sync::Mutex<BTreeMap<(Resource, std::any::TypeId), CachedList>>,
}

impl Clone for TypedCache {
    fn clone(&self) -> Self {
        TypedCache::default()
    }
}

impl fmt::Debug for TypedCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TypedCache")
    }
}

/// The object store.
#[derive(Debug, Clone)]
pub struct Store {
    objects: BTreeMap<Key, Value>,
    /// Per resource, how many writes it has seen (the typed cache's validity).
    changes: BTreeMap<Resource, u64>,
    typed_cache: TypedCache,
    last_rv: u64,
    uid_counter: u64,
    log: VecDeque<WatchEvent>,
    log_capacity: usize,
    now: jiff::Timestamp,
}

impl Default for Store {
    fn default() -> Self {
        Store::new(jiff::Timestamp::UNIX_EPOCH)
    }
}

impl Store {
    /// An empty store with the `default` and `kube-system` namespaces, at time `now`.
    pub fn new(now: jiff::Timestamp) -> Store {
        let mut store = Store {
            objects: BTreeMap::new(),
            changes: BTreeMap::new(),
            typed_cache: TypedCache::default(),
            last_rv: 0,
            uid_counter: 0,
            log: VecDeque::new(),
            log_capacity: 200_000,
            now,
        };
        for ns in ["default", "kube-system"] {
            store
                .create(
                    Resource::Namespaces,
                    None,
                    json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}),
                )
                .expect("fresh store accepts its namespaces");
        }
        store
    }

    /// Sets the time used for `creationTimestamp`s.
    pub fn set_time(&mut self, now: jiff::Timestamp) {
        self.now = now;
    }

    /// The current time of the store.
    pub fn now(&self) -> jiff::Timestamp {
        self.now
    }

    /// The latest resourceVersion.
    pub fn resource_version(&self) -> u64 {
        self.last_rv
    }

    fn key(resource: Resource, namespace: Option<&str>, name: &str) -> Key {
        let ns = if resource.namespaced() {
            namespace.unwrap_or("default")
        } else {
            ""
        };
        (resource, ns.to_string(), name.to_string())
    }

    fn not_found(resource: Resource, name: &str) -> ApiError {
        ApiError::NotFound {
            resource,
            name: name.to_string(),
        }
    }

    /// Validates `value` as `resource`'s type and returns it in canonical form.
    fn canonical(resource: Resource, mut value: Value) -> Result<Value, ApiError> {
        sliceguard::objects::canonicalize_quantities(&mut value);
        fn typed<T: serde::de::DeserializeOwned + serde::Serialize>(
            kind: &str,
            value: &Value,
        ) -> Result<Value, ApiError> {
            let object: T = serde_path_to_error::deserialize(value).map_err(|e| {
                ApiError::Invalid(format!("{kind} is invalid: {}: {}", e.path(), e.inner()))
            })?;
            serde_json::to_value(object).map_err(|e| ApiError::Internal(e.to_string()))
        }
        let mut out = match resource {
            Resource::Namespaces => typed::<Namespace>("Namespace", &value)?,
            Resource::Nodes => typed::<Node>("Node", &value)?,
            Resource::Pods => typed::<Pod>("Pod", &value)?,
            Resource::Events => typed::<Event>("Event", &value)?,
            Resource::Deployments => typed::<Deployment>("Deployment", &value)?,
            Resource::Leases => typed::<Lease>("Lease", &value)?,
        };
        out["apiVersion"] = json!(resource.group_version());
        out["kind"] = json!(resource.kind());
        Ok(out)
    }

    fn record(&mut self, event_type: EventType, resource: Resource, object: Value) {
        *self.changes.entry(resource).or_default() += 1;
        self.log.push_back(WatchEvent {
            rv: self.last_rv,
            event_type,
            resource,
            object,
        });
        while self.log.len() > self.log_capacity {
            self.log.pop_front();
        }
    }

    fn next_rv(&mut self) -> u64 {
        self.last_rv += 1;
        self.last_rv
    }

    fn timestamp(&self) -> String {
        self.now
            .round(jiff::Unit::Second)
            .unwrap_or(self.now)
            .to_string()
    }

    /// Creates an object (`POST`). Fills `uid`, `creationTimestamp`, `resourceVersion`, the namespace,
    /// `generateName`, and a pod's defaults (`schedulerName: default-scheduler`, phase `Pending`).
    pub fn create(
        &mut self,
        resource: Resource,
        namespace: Option<&str>,
        mut value: Value,
    ) -> Result<Value, ApiError> {
        if !value.is_object() {
            return Err(ApiError::BadRequest(format!(
                "the body of a {} create must be an object",
                resource.kind()
            )));
        }
        let meta = &mut value["metadata"];
        if !meta.is_object() {
            *meta = json!({});
        }
        let name = match meta
            .get("name")
            .and_then(Value::as_str)
            .filter(|n| !n.is_empty())
        {
            Some(n) => n.to_string(),
            None => match meta.get("generateName").and_then(Value::as_str) {
                Some(prefix) if !prefix.is_empty() => {
                    format!("{prefix}{}", self.generated_suffix())
                }
                _ => {
                    return Err(ApiError::Invalid(format!(
                        "{} is invalid: metadata.name: Required value",
                        resource.kind()
                    )));
                }
            },
        };
        if resource.namespaced() {
            let body_ns = value["metadata"]
                .get("namespace")
                .and_then(Value::as_str)
                .map(str::to_string);
            let ns = match (namespace, body_ns) {
                (Some(url), Some(body)) if url != body => {
                    return Err(ApiError::BadRequest(format!(
                        "the namespace of the provided object ({body}) does not match the namespace sent on the request ({url})"
                    )));
                }
                (Some(url), _) => url.to_string(),
                (None, Some(body)) => body,
                (None, None) => "default".to_string(),
            };
            value["metadata"]["namespace"] = json!(ns);
        } else if let Some(m) = value["metadata"].as_object_mut() {
            m.remove("namespace");
        }
        let key = Store::key(resource, value["metadata"]["namespace"].as_str(), &name);
        if self.objects.contains_key(&key) {
            return Err(ApiError::AlreadyExists { resource, name });
        }
        self.uid_counter += 1;
        value["metadata"]["name"] = json!(name);
        value["metadata"]["uid"] =
            json!(format!("00000000-0000-4000-8000-{:012x}", self.uid_counter));
        value["metadata"]["creationTimestamp"] = json!(self.timestamp());
        if let Some(m) = value["metadata"].as_object_mut() {
            m.remove("resourceVersion");
            m.remove("deletionTimestamp");
        }
        if resource == Resource::Pods {
            if value["spec"]["schedulerName"]
                .as_str()
                .is_none_or(str::is_empty)
            {
                value["spec"]["schedulerName"] = json!("default-scheduler");
            }
            if value["status"]["phase"].as_str().is_none() {
                value["status"]["phase"] = json!("Pending");
            }
        }
        let mut canonical = Store::canonical(resource, value)?;
        let rv = self.next_rv();
        canonical["metadata"]["resourceVersion"] = json!(rv.to_string());
        self.objects.insert(key, canonical.clone());
        self.record(EventType::Added, resource, canonical.clone());
        Ok(canonical)
    }

    fn generated_suffix(&mut self) -> String {
        const ALPHANUMS: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
        self.uid_counter += 1;
        let mut n = self.uid_counter.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        (0..5)
            .map(|_| {
                let c = ALPHANUMS[(n % ALPHANUMS.len() as u64) as usize] as char;
                n /= ALPHANUMS.len() as u64;
                c
            })
            .collect()
    }

    /// Reads an object.
    pub fn get(
        &self,
        resource: Resource,
        namespace: Option<&str>,
        name: &str,
    ) -> Result<Value, ApiError> {
        self.objects
            .get(&Store::key(resource, namespace, name))
            .cloned()
            .ok_or_else(|| Store::not_found(resource, name))
    }

    /// Lists objects (all namespaces when `namespace` is `None`), in name order, with the list's
    /// resourceVersion.
    pub fn list(
        &self,
        resource: Resource,
        namespace: Option<&str>,
        fields: &Selector,
        labels: &Selector,
    ) -> Result<(Vec<Value>, u64), ApiError> {
        let mut items = Vec::new();
        for ((_, ns, _), object) in self.of(resource) {
            if resource.namespaced() && namespace.is_some_and(|want| want != ns) {
                continue;
            }
            if selected(resource, object, fields, labels)? {
                items.push(object.clone());
            }
        }
        Ok((items, self.last_rv))
    }

    /// One page of [`Store::list`]: at most `limit` selected objects whose (namespace, name) comes
    /// after `after`, in key order, and the key of the last one when more may follow (what a list's
    /// `continue` token resumes from). Later pages read the store as it is then; the caller keeps the
    /// first page's resourceVersion, so a watch from it replays whatever changed in between.
    pub fn list_page(
        &self,
        resource: Resource,
        namespace: Option<&str>,
        fields: &Selector,
        labels: &Selector,
        after: Option<(&str, &str)>,
        limit: usize,
    ) -> Result<ListPage, ApiError> {
        let start = after.map_or_else(
            || (resource, String::new(), String::new()),
            |(ns, name)| (resource, ns.to_string(), name.to_string()),
        );
        let mut items = Vec::new();
        let range = self
            .objects
            .range((std::ops::Bound::Excluded(start), std::ops::Bound::Unbounded))
            .take_while(move |((r, _, _), _)| *r == resource);
        for ((_, ns, name), object) in range {
            if resource.namespaced() && namespace.is_some_and(|want| want != ns) {
                continue;
            }
            if !selected(resource, object, fields, labels)? {
                continue;
            }
            if items.len() == limit.max(1) {
                // Another selected object follows: the page ends at the previous one.
                let last = items.last().map(|(key, _)| key).cloned();
                return Ok(ListPage {
                    items: items.into_iter().map(|(_, o)| o).collect(),
                    resume_after: last,
                    resource_version: self.last_rv,
                });
            }
            items.push(((ns.clone(), name.clone()), object.clone()));
        }
        Ok(ListPage {
            items: items.into_iter().map(|(_, o)| o).collect(),
            resume_after: None,
            resource_version: self.last_rv,
        })
    }

    fn check_precondition(
        resource: Resource,
        name: &str,
        current: &Value,
        requested: Option<&str>,
    ) -> Result<(), ApiError> {
        let stored = current["metadata"]["resourceVersion"]
            .as_str()
            .unwrap_or("");
        match requested {
            Some(rv) if !rv.is_empty() && rv != stored => Err(ApiError::Conflict(format!(
                "Operation cannot be fulfilled on {resource} \"{name}\": the object has been modified; please apply your changes to the latest version and try again"
            ))),
            _ => Ok(()),
        }
    }

    /// Stores `updated` over `current` (both canonical), keeping identity fields; a no-op if nothing changed.
    fn commit(
        &mut self,
        resource: Resource,
        key: Key,
        current: &Value,
        mut updated: Value,
    ) -> Result<Value, ApiError> {
        for field in [
            "name",
            "namespace",
            "uid",
            "creationTimestamp",
            "deletionTimestamp",
        ] {
            match current["metadata"].get(field) {
                Some(v) => updated["metadata"][field] = v.clone(),
                None => {
                    if let Some(m) = updated["metadata"].as_object_mut() {
                        m.remove(field);
                    }
                }
            }
        }
        updated["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"].clone();
        let updated = Store::canonical(resource, updated)?;
        if &updated == current {
            return Ok(updated);
        }
        let mut updated = updated;
        let rv = self.next_rv();
        updated["metadata"]["resourceVersion"] = json!(rv.to_string());
        self.objects.insert(key, updated.clone());
        self.record(EventType::Modified, resource, updated.clone());
        Ok(updated)
    }

    /// Replaces an object or its status (`PUT`), honouring a resourceVersion precondition.
    pub fn replace(
        &mut self,
        resource: Resource,
        namespace: Option<&str>,
        name: &str,
        part: Part,
        body: Value,
    ) -> Result<Value, ApiError> {
        let key = Store::key(resource, namespace, name);
        let current = self
            .objects
            .get(&key)
            .cloned()
            .ok_or_else(|| Store::not_found(resource, name))?;
        Store::check_precondition(
            resource,
            name,
            &current,
            body["metadata"]["resourceVersion"].as_str(),
        )?;
        let updated = match part {
            Part::Main => body,
            Part::Status => {
                let mut u = current.clone();
                u["status"] = body["status"].clone();
                u
            }
        };
        self.commit(resource, key, &current, updated)
    }

    /// Patches an object or its status (`PATCH`), honouring a `metadata.resourceVersion` precondition.
    pub fn patch(
        &mut self,
        resource: Resource,
        namespace: Option<&str>,
        name: &str,
        part: Part,
        patch_type: PatchType,
        body: &Value,
    ) -> Result<Value, ApiError> {
        let (current, updated) =
            self.preview_patch(resource, namespace, name, part, patch_type, body)?;
        let key = Store::key(resource, namespace, name);
        self.commit(resource, key, &current, updated)
    }

    /// What [`Store::patch`] would store, without storing it: the current object and the patched
    /// one (for admission, which judges an update before it is written).
    pub fn preview_patch(
        &self,
        resource: Resource,
        namespace: Option<&str>,
        name: &str,
        part: Part,
        patch_type: PatchType,
        body: &Value,
    ) -> Result<(Value, Value), ApiError> {
        let key = Store::key(resource, namespace, name);
        let current = self
            .objects
            .get(&key)
            .cloned()
            .ok_or_else(|| Store::not_found(resource, name))?;
        let mut updated = current.clone();
        match patch_type {
            PatchType::Merge | PatchType::StrategicMerge => {
                if !body.is_object() {
                    return Err(ApiError::BadRequest(
                        "a merge patch body must be a JSON object".into(),
                    ));
                }
                Store::check_precondition(
                    resource,
                    name,
                    &current,
                    body["metadata"]["resourceVersion"].as_str(),
                )?;
                let body = match part {
                    Part::Main => body.clone(),
                    Part::Status => json!({"status": body["status"].clone()}),
                };
                json_patch::merge(&mut updated, &body);
            }
            PatchType::Json => {
                let ops: json_patch::Patch = serde_json::from_value(body.clone())
                    .map_err(|e| ApiError::BadRequest(format!("invalid JSON Patch: {e}")))?;
                json_patch::patch(&mut updated, &ops)
                    .map_err(|e| ApiError::Invalid(format!("JSON Patch does not apply: {e}")))?;
                Store::check_precondition(
                    resource,
                    name,
                    &current,
                    updated["metadata"]["resourceVersion"].as_str(),
                )?;
                if part == Part::Status {
                    let status = updated["status"].clone();
                    updated = current.clone();
                    updated["status"] = status;
                }
            }
        }
        Store::check_uid_unchanged(resource, name, &current, &updated)?;
        Ok((current, updated))
    }

    /// `metadata.uid` is immutable: a patch that would change it is refused with kube-apiserver's
    /// 422 (`ValidateObjectMetaUpdate`, run for every update). A patch carrying the object's own uid
    /// is thus a precondition that a deleted and re-created object of the same name fails; one
    /// without a uid keeps the stored one.
    fn check_uid_unchanged(
        resource: Resource,
        name: &str,
        current: &Value,
        updated: &Value,
    ) -> Result<(), ApiError> {
        let stored = current["metadata"]["uid"].as_str().unwrap_or("");
        match updated["metadata"]["uid"].as_str() {
            Some(uid) if !uid.is_empty() && uid != stored => Err(ApiError::Invalid(format!(
                "{} \"{name}\" is invalid: metadata.uid: Invalid value: \"{uid}\": field is immutable",
                resource.kind()
            ))),
            _ => Ok(()),
        }
    }

    /// Binds a pod to a node (`POST pods/{name}/binding`); 409 if it is already bound.
    pub fn bind(
        &mut self,
        namespace: &str,
        name: &str,
        node: &str,
        uid: Option<&str>,
    ) -> Result<Value, ApiError> {
        let key = Store::key(Resource::Pods, Some(namespace), name);
        let current = self
            .objects
            .get(&key)
            .cloned()
            .ok_or_else(|| Store::not_found(Resource::Pods, name))?;
        if let Some(uid) = uid.filter(|u| !u.is_empty())
            && current["metadata"]["uid"].as_str() != Some(uid)
        {
            return Err(ApiError::Conflict(format!(
                "Operation cannot be fulfilled on pods/binding \"{name}\": Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                current["metadata"]["uid"].as_str().unwrap_or("")
            )));
        }
        if let Some(existing) = current["spec"]["nodeName"]
            .as_str()
            .filter(|n| !n.is_empty())
        {
            return Err(ApiError::Conflict(format!(
                "Operation cannot be fulfilled on pods/binding \"{name}\": pod {name} is already assigned to node \"{existing}\""
            )));
        }
        if node.is_empty() {
            return Err(ApiError::Invalid(
                "Binding is invalid: target.name: Required value".into(),
            ));
        }
        let mut updated = current.clone();
        updated["spec"]["nodeName"] = json!(node);
        let conditions = updated["status"]["conditions"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let mut conditions: Vec<Value> = conditions
            .into_iter()
            .filter(|c| c["type"] != "PodScheduled")
            .collect();
        conditions.push(json!({"type": "PodScheduled", "status": "True", "lastTransitionTime": self.timestamp()}));
        updated["status"]["conditions"] = json!(conditions);
        self.commit(Resource::Pods, key, &current, updated)
    }

    /// Deletes an object immediately; returns it as it was.
    pub fn delete(
        &mut self,
        resource: Resource,
        namespace: Option<&str>,
        name: &str,
    ) -> Result<Value, ApiError> {
        let key = Store::key(resource, namespace, name);
        let mut object = self
            .objects
            .remove(&key)
            .ok_or_else(|| Store::not_found(resource, name))?;
        let rv = self.next_rv();
        object["metadata"]["resourceVersion"] = json!(rv.to_string());
        self.record(EventType::Deleted, resource, object.clone());
        Ok(object)
    }

    /// Watch events of `resource` after resourceVersion `rv`; 410 Gone if the log no longer reaches back.
    pub fn events_after(&self, rv: u64) -> Result<impl Iterator<Item = &WatchEvent>, ApiError> {
        if let Some(first) = self.log.front()
            && rv + 1 < first.rv
        {
            return Err(ApiError::Gone(format!(
                "too old resource version: {rv} ({})",
                first.rv - 1
            )));
        }
        // The log is in resourceVersion order: start at the first event after `rv`.
        let start = self.log.partition_point(|e| e.rv <= rv);
        Ok(self.log.range(start..))
    }

    /// The stored objects of one resource, in key order (the map is ordered by resource first).
    fn of(&self, resource: Resource) -> impl Iterator<Item = (&Key, &Value)> {
        self.objects
            .range((resource, String::new(), String::new())..)
            .take_while(move |((r, _, _), _)| *r == resource)
    }

    /// Like [`Store::typed`], shared: the same list is handed out until `resource` changes, so readers
    /// between two writes deserialize it once; after a change only the objects whose
    /// resourceVersion moved are typed again (a bind that rewrites one node's lock no longer retypes
    /// a thousand nodes).
    pub fn typed_shared<T>(&self, resource: Resource) -> Arc<Vec<Arc<T>>>
    where
        T: serde::de::DeserializeOwned + Send + Sync + 'static,
    {
        let version = self.changes.get(&resource).copied().unwrap_or(0);
        let key = (resource, std::any::TypeId::of::<T>());
        let mut entries = self
            .typed_cache
            .entries
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(list) = entries
            .get(&key)
            .and_then(|cached| cached.downcast_ref::<TypedList<T>>())
            && list.version == version
        {
            return list.items.clone();
        }
        let mut reusable = entries
            .remove(&key)
            .and_then(|cached| cached.downcast::<TypedList<T>>().ok())
            .map(|list| list.versions)
            .unwrap_or_default();
        let mut items = Vec::new();
        let mut versions = HashMap::new();
        for ((_, ns, name), object) in self.of(resource) {
            let rv = object["metadata"]["resourceVersion"].as_str().unwrap_or("");
            let id = (ns.clone(), name.clone());
            let typed = match reusable.remove(&id) {
                Some((seen, typed)) if seen == rv => typed,
                _ => match T::deserialize(object) {
                    Ok(typed) => Arc::new(typed),
                    Err(_) => continue,
                },
            };
            versions.insert(id, (rv.to_string(), typed.clone()));
            items.push(typed);
        }
        let items = Arc::new(items);
        entries.insert(
            key,
            Box::new(TypedList {
                version,
                items: items.clone(),
                versions,
            }),
        );
        items
    }

    /// Every stored object of a resource, typed (objects that fail to type are skipped; the store
    /// only holds validated objects).
    pub fn typed<T: serde::de::DeserializeOwned>(&self, resource: Resource) -> Vec<T> {
        self.of(resource)
            .filter_map(|(_, v)| T::deserialize(v).ok())
            .collect()
    }

    /// Every stored object of a resource, in name order, borrowed (for controllers that look at a
    /// few fields of many objects without copying them).
    pub fn objects(&self, resource: Resource) -> impl Iterator<Item = &Value> {
        self.of(resource).map(|(_, v)| v)
    }

    /// Number of stored objects of a resource.
    pub fn count(&self, resource: Resource) -> usize {
        self.of(resource).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(name: &str) -> Value {
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
               "spec": {"containers": [{"name": "c", "image": "pause", "resources": {"limits": {"nvidia.com/gpu": 1}}}]}})
    }

    fn node(name: &str) -> Value {
        json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "annotations": {"a": "1"}}})
    }

    #[test]
    fn create_fills_identity_and_canonicalizes() {
        let mut s = Store::default();
        let p = s.create(Resource::Pods, Some("default"), pod("p")).unwrap();
        assert_eq!(p["metadata"]["namespace"], "default");
        assert_eq!(p["spec"]["schedulerName"], "default-scheduler");
        assert_eq!(p["status"]["phase"], "Pending");
        assert_eq!(
            p["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"],
            "1"
        );
        assert!(p["metadata"]["resourceVersion"].is_string());
        assert!(
            p["metadata"]["uid"]
                .as_str()
                .unwrap()
                .starts_with("00000000-0000-4000-8000-")
        );
        assert_eq!(
            s.create(Resource::Pods, None, pod("p")).unwrap_err().code(),
            409
        );
        let err = s
            .create(
                Resource::Pods,
                None,
                json!({"kind": "Pod", "metadata": {"name": "x"}, "spec": {"containers": 5}}),
            )
            .unwrap_err();
        assert_eq!(err.code(), 422);
        assert!(err.to_string().contains("spec.containers"), "{err}");
        let generated = s.create(Resource::Pods, None, json!({"metadata": {"generateName": "web-"}, "spec": {"containers": [{"name": "c"}]}})).unwrap();
        assert!(
            generated["metadata"]["name"]
                .as_str()
                .unwrap()
                .starts_with("web-")
        );
    }

    #[test]
    fn merge_patch_with_stale_resource_version_conflicts() {
        let mut s = Store::default();
        let n = s.create(Resource::Nodes, None, node("n1")).unwrap();
        let rv = n["metadata"]["resourceVersion"]
            .as_str()
            .unwrap()
            .to_string();
        let lock = json!({"metadata": {"annotations": {"hami.io/mutex.lock": "x"}, "resourceVersion": rv}});
        let n2 = s
            .patch(
                Resource::Nodes,
                None,
                "n1",
                Part::Main,
                PatchType::Merge,
                &lock,
            )
            .unwrap();
        assert_eq!(n2["metadata"]["annotations"]["hami.io/mutex.lock"], "x");
        assert_ne!(
            n2["metadata"]["resourceVersion"],
            n["metadata"]["resourceVersion"]
        );
        let again = s
            .patch(
                Resource::Nodes,
                None,
                "n1",
                Part::Main,
                PatchType::Merge,
                &lock,
            )
            .unwrap_err();
        assert!(again.is_conflict());
        assert!(again.to_string().contains("the object has been modified"));
        let release = json!({"metadata": {"annotations": {"hami.io/mutex.lock": null}}});
        let n3 = s
            .patch(
                Resource::Nodes,
                None,
                "n1",
                Part::Main,
                PatchType::StrategicMerge,
                &release,
            )
            .unwrap();
        assert!(
            n3["metadata"]["annotations"]
                .get("hami.io/mutex.lock")
                .is_none()
        );
        let ops = json!([{"op": "add", "path": "/metadata/labels", "value": {"gpu": "on"}}]);
        let n4 = s
            .patch(
                Resource::Nodes,
                None,
                "n1",
                Part::Main,
                PatchType::Json,
                &ops,
            )
            .unwrap();
        assert_eq!(n4["metadata"]["labels"]["gpu"], "on");
    }

    #[test]
    fn no_op_writes_do_not_bump_the_resource_version() {
        let mut s = Store::default();
        s.create(Resource::Nodes, None, node("n1")).unwrap();
        let before = s.resource_version();
        s.patch(
            Resource::Nodes,
            None,
            "n1",
            Part::Main,
            PatchType::Merge,
            &json!({"metadata": {"annotations": {"a": "1"}}}),
        )
        .unwrap();
        assert_eq!(s.resource_version(), before);
    }

    #[test]
    fn a_patch_naming_another_uid_is_refused_and_its_own_uid_is_a_precondition() {
        let mut s = Store::default();
        let created = s.create(Resource::Pods, None, pod("p")).unwrap();
        let uid = created["metadata"]["uid"].as_str().unwrap().to_string();
        let patch = |uid: &str| json!({"metadata": {"uid": uid, "annotations": {"a": "1"}}});
        // Deleted and re-created under the same name: the new pod has another uid.
        s.delete(Resource::Pods, Some("default"), "p").unwrap();
        let recreated = s.create(Resource::Pods, None, pod("p")).unwrap();
        let before = s.resource_version();
        for patch_type in [PatchType::Merge, PatchType::StrategicMerge] {
            let err = s
                .patch(
                    Resource::Pods,
                    Some("default"),
                    "p",
                    Part::Main,
                    patch_type,
                    &patch(&uid),
                )
                .unwrap_err();
            assert_eq!(err.code(), 422, "{err}");
            assert!(err.to_string().contains("metadata.uid"), "{err}");
        }
        let ops = json!([{"op": "replace", "path": "/metadata/uid", "value": "someone-else"}]);
        let err = s
            .patch(
                Resource::Pods,
                Some("default"),
                "p",
                Part::Main,
                PatchType::Json,
                &ops,
            )
            .unwrap_err();
        assert_eq!(err.code(), 422);
        assert_eq!(s.resource_version(), before, "nothing was written");
        let current = s.get(Resource::Pods, Some("default"), "p").unwrap();
        assert!(current["metadata"]["annotations"].get("a").is_none());
        // The pod's own uid, or none, is accepted.
        let own = recreated["metadata"]["uid"].as_str().unwrap();
        let p = s
            .patch(
                Resource::Pods,
                Some("default"),
                "p",
                Part::Main,
                PatchType::Merge,
                &patch(own),
            )
            .unwrap();
        assert_eq!(p["metadata"]["annotations"]["a"], "1");
        assert_eq!(p["metadata"]["uid"], own);
        let p = s
            .patch(
                Resource::Pods,
                Some("default"),
                "p",
                Part::Main,
                PatchType::Merge,
                &json!({"metadata": {"annotations": {"b": "2"}}}),
            )
            .unwrap();
        assert_eq!(p["metadata"]["uid"], own);
    }

    #[test]
    fn binding_and_status() {
        let mut s = Store::default();
        s.create(Resource::Pods, None, pod("p")).unwrap();
        let bound = s.bind("default", "p", "n1", None).unwrap();
        assert_eq!(bound["spec"]["nodeName"], "n1");
        assert_eq!(s.bind("default", "p", "n2", None).unwrap_err().code(), 409);
        assert_eq!(
            s.bind("default", "missing", "n2", None).unwrap_err().code(),
            404
        );
        let status = json!({"status": {"phase": "Running"}, "spec": {"nodeName": "elsewhere"}});
        let p = s
            .patch(
                Resource::Pods,
                Some("default"),
                "p",
                Part::Status,
                PatchType::Merge,
                &status,
            )
            .unwrap();
        assert_eq!(
            (
                p["status"]["phase"].as_str(),
                p["spec"]["nodeName"].as_str()
            ),
            (Some("Running"), Some("n1"))
        );
    }

    #[test]
    fn selectors_and_watch_log() {
        let mut s = Store::default();
        let start = s.resource_version();
        s.create(Resource::Pods, None, pod("a")).unwrap();
        s.create(Resource::Pods, Some("team"), pod("b")).unwrap();
        s.delete(Resource::Pods, Some("default"), "a").unwrap();
        let fields = Selector::parse("metadata.name=b", false).unwrap();
        let (items, _) = s
            .list(Resource::Pods, None, &fields, &Selector::default())
            .unwrap();
        assert_eq!(items.len(), 1);
        let (items, _) = s
            .list(
                Resource::Pods,
                Some("default"),
                &Selector::default(),
                &Selector::default(),
            )
            .unwrap();
        assert!(items.is_empty());
        assert!(
            s.list(
                Resource::Pods,
                None,
                &Selector::parse("spec.bogus=1", false).unwrap(),
                &Selector::default()
            )
            .is_err()
        );
        let kinds: Vec<_> = s
            .events_after(start)
            .unwrap()
            .map(|e| {
                (
                    e.event_type,
                    e.object["metadata"]["name"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        assert_eq!(
            kinds,
            [
                (EventType::Added, "a".into()),
                (EventType::Added, "b".into()),
                (EventType::Deleted, "a".into())
            ]
        );
        assert_eq!(s.get(Resource::Pods, None, "a").unwrap_err().code(), 404);
        let labels = Selector::parse("app=web,!canary,tier", true).unwrap();
        let obj = json!({"metadata": {"labels": {"app": "web", "tier": "x"}}});
        assert!(selected(Resource::Pods, &obj, &Selector::default(), &labels).unwrap());
        assert!(Selector::parse("app in (a,b)", true).is_err());
    }
}
