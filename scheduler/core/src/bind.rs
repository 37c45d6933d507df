//! The bind protocol and the node lock `hami.io/mutex.lock` as sans-IO state machines (spec §5).
//!
//! [`BindMachine`] takes the extender's bind request (pod namespace, name, uid and the chosen node)
//! and walks HAMi's bind path: read the pod, read the node, take the node lock with optimistic
//! concurrency, mark the pod `hami.io/bind-phase=allocating` with `hami.io/bind-time`, create the
//! `Binding`, then release the lock or leave it to the device plugin, and announce the result with a
//! `BindingSucceed` / `BindingFailed` event. It performs no I/O and reads no clock: it emits one
//! [`Effect`] at a time, the driver executes it and feeds back an [`Observation`] together with the
//! current time, until the machine returns a [`BindOutcome`]. The kube-rs shell, the tests' in-memory
//! API and the simulated cluster drive the very same machine; a driver may inject any fault between
//! two effects (conflicts, 5xx, lost responses) or simply stop feeding it (a crash).
//!
//! ## Effects and observations
//! | effect | wire (what the kube driver sends) | expected observation |
//! |---|---|---|
//! | [`Effect::GetPod`] | `GET pods/<name>` | [`Observation::Pod`] or a failure |
//! | [`Effect::GetNode`] | `GET nodes/<node>` | [`Observation::Node`] or a failure |
//! | [`Effect::WriteLock`] | merge patch `{"metadata":{"annotations":{"hami.io/mutex.lock":"<v>"},"resourceVersion":"<rv>"}}` | [`Observation::Written`], `Conflict` (409) ... |
//! | [`Effect::ClearLock`] | the same with `null` | as above |
//! | [`Effect::PatchPodAnnotations`] | merge patch `{"metadata":{"annotations":{...}}}` | [`Observation::Written`] ... |
//! | [`Effect::PatchPodMetadata`] (the filter's write, [`crate::filter`]) | merge patch `{"metadata":{"uid":"<uid>","annotations":{...},"labels":{...}}}` (the uid is immutable, so it acts as a precondition: kube-apiserver refuses the patch if the pod was re-created) | [`Observation::Written`] ... |
//! | [`Effect::CreateBinding`] | `POST pods/<name>/binding` (with the pod uid as precondition) | [`Observation::Written`] ... |
//! | [`Effect::EmitEvent`] | `POST events` (core/v1, source = the scheduler name) | anything (events never change the path) |
//!
//! [`Effect::merge_patch`] and [`Effect::binding`] give the exact bodies, so every driver writes the
//! same bytes. A failure is an [`ApiFailure`]: `NotFound` (404), `Conflict` (409, including a
//! resourceVersion precondition failure), `Rejected` (any other refusal: the request was not
//! applied) and `Indeterminate` (no answer, a lost response, a timeout or a 5xx: it may or may not
//! have been applied). Every indeterminate write is followed by a read that decides what happened.
//!
//! ## States (in order)
//! `CheckPod` → `ReadNode` ⇄ `CheckHolder` → `Acquire` (⇄ `ReadNode` on conflict) → `MarkAllocating`
//! → `CreateBinding` (→ `VerifyBinding` on conflict or a lost answer) → `MarkSuccess` (after-bind
//! mode) → `Release` (⇄ `ReleaseRead`) → `Announce` → finished. A failure at any step after the lock
//! was taken goes through `Release` and `Announce` with the error.
//!
//! ## Lock rules (HAMi's, spec §5.2, plus the differences listed below)
//! A lock held by another pod may be **taken over**, with a compare-and-swap on the node's
//! resourceVersion read together with the old value, when [`judge_lock`] finds it free:
//! - **expired**: more than the timeout after its timestamp (`now - t > timeout`), legacy bare
//!   timestamps included;
//! - **dangling**: its holder pod does not exist (a live `GET` said 404);
//! - **holder finished**: its holder is Succeeded, Failed or being deleted;
//! - **holder elsewhere**: its holder is bound to another node;
//! - **holder bound** (`after-bind` mode only): its holder is bound to this node, so its binder
//!   crashed between the `Binding` and the release;
//! - **phase settled** (`device-plugin` mode only): its holder's `bind-phase` is `success` or
//!   `failed`, so the device plugin is done with it;
//! - **malformed**: a value that does not parse, once the timeout has passed since this process
//!   first saw that value ([`MalformedSighting`]).
//!
//! The lock of the pod being bound is **re-entrant**: a retry (after a lost response, a crash, or a
//! `BindingFailed` the scheduler retried) finds its own lock and continues. A 409 on the lock write
//! re-reads the node and tries again with the new resourceVersion, at most
//! [`BindSettings::max_lock_attempts`] times. Anything else is contention:
//! `node <n> has been locked within 5m0s: node lock contention` (the timeout formatted as Go does).
//!
//! ## Release
//! Only the owner releases: [`LockRelease`] clears the annotation with a resourceVersion
//! precondition, and after a conflict or a lost answer it re-reads the node and clears it only if it
//! still belongs to the same owner. In [`ReleaseMode::AfterBind`] the binder releases right after the
//! `Binding` (and `bind-phase=success`); in [`ReleaseMode::DevicePlugin`] the lock stays with the
//! pod for HAMi's device plugin, and the shell's lock reaper releases it by [`judge_lock`] when the
//! pod's `bind-phase` settles, the pod ends or goes away, or the timeout passes. If a release keeps
//! failing, the outcome says [`LockFate::Stranded`] with the instant from which the expiry rule frees
//! it; the reaper also frees it earlier by the holder rules.
//!
//! ## Deliberate differences from HAMi
//! - The lock is released by the binder after the `Binding` in `after-bind` mode (HAMi relies on its
//!   device plugin, so fake fleets bind one pod per node per 5 minutes, spec §5.4).
//! - A malformed lock value is reclaimed `timeout` after this process first observed it; HAMi
//!   returns the parse error forever, until a human deletes the annotation.
//! - A takeover is one compare-and-swap on the resourceVersion read with the stale value; HAMi
//!   deletes the stale lock and then sets its own in two writes.
//! - A holder that has finished (Succeeded, Failed, deleting) or is bound elsewhere frees the lock
//!   (HAMi PR #3047, not merged upstream, proposed the finished case).
//! - A lost answer to `CreateBinding` is resolved by reading the pod: if it is bound to the node,
//!   the bind succeeded. HAMi reports the error and lets kube-scheduler retry.
//! - The outcome of a bind whose pod is already bound to the requested node (a retry after a lost
//!   answer) is success, and the lock is released; HAMi's retry fails at the API.

use crate::annotations::{BIND_PHASE, BIND_TIME, DEVICES_ALLOCATED, NODE_LOCK, bind_phase};
use crate::codec::Quoted;
use crate::codec::lock::{self, LockError, LockHolder, LockValue};
use crate::decision::{EventRecord, EventType};
use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::core::v1::{Node, Pod};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::fmt;

/// The event reason of a successful bind.
pub const BINDING_SUCCEED: &str = "BindingSucceed";
/// The event reason of a failed bind.
pub const BINDING_FAILED: &str = "BindingFailed";

/// What to bind where: the extender's `ExtenderBindingArgs`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BindRequest {
    /// Pod namespace.
    pub namespace: String,
    /// Pod name.
    pub name: String,
    /// Pod uid (the `Binding`'s precondition); empty when unknown.
    pub uid: String,
    /// Target node.
    pub node: String,
}

impl BindRequest {
    /// `namespace/name`.
    pub fn pod_key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }
}

/// Who releases the node lock after a successful bind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReleaseMode {
    /// The binder, right after the `Binding` (and `bind-phase=success`). For fake fleets and any node
    /// without HAMi's device plugin.
    AfterBind,
    /// HAMi's device plugin, after Allocate; sliceguard's lock reaper when the pod's `bind-phase`
    /// settles, the pod ends or goes away, or the lock expires.
    DevicePlugin,
}

impl ReleaseMode {
    /// The flag value (`after-bind`, `device-plugin`).
    pub fn as_str(self) -> &'static str {
        match self {
            ReleaseMode::AfterBind => "after-bind",
            ReleaseMode::DevicePlugin => "device-plugin",
        }
    }
}

/// Settings of the bind protocol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BindSettings {
    /// Lock expiry (HAMi `--node-lock-timeout`, 5m).
    pub lock_timeout: SignedDuration,
    /// Who releases the lock after a successful bind.
    pub release_mode: ReleaseMode,
    /// How many lock writes one bind tries before giving up on conflicts (HAMi's backoff: 5 steps).
    pub max_lock_attempts: u32,
    /// How many times a read, a pod patch, the `Binding` or a release is tried when the answer is
    /// indeterminate or a conflict.
    pub max_retries: u32,
}

impl Default for BindSettings {
    fn default() -> Self {
        BindSettings {
            lock_timeout: SignedDuration::from_mins(5),
            release_mode: ReleaseMode::AfterBind,
            max_lock_attempts: 5,
            max_retries: 3,
        }
    }
}

/// A node as the bind protocol sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeLockView {
    /// `metadata.resourceVersion` (the compare-and-swap token).
    pub resource_version: String,
    /// The raw `hami.io/mutex.lock` value, if any.
    pub lock: Option<String>,
}

impl NodeLockView {
    /// Reads the view from a Node object.
    pub fn from_node(node: &Node) -> Self {
        NodeLockView {
            resource_version: node.metadata.resource_version.clone().unwrap_or_default(),
            lock: node
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(NODE_LOCK))
                .cloned(),
        }
    }
}

/// A pod as the bind protocol sees it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PodView {
    /// `metadata.uid`.
    pub uid: String,
    /// `spec.nodeName`, when bound.
    pub node_name: Option<String>,
    /// `status.phase`.
    pub phase: Option<String>,
    /// `hami.io/bind-phase`.
    pub bind_phase: Option<String>,
    /// `metadata.deletionTimestamp` is set.
    pub deleting: bool,
    /// `hami.io/vgpu-devices-allocated`: what the filter last wrote (read to settle a filter write
    /// whose answer was lost).
    pub devices_allocated: Option<String>,
}

impl PodView {
    /// Reads the view from a Pod object.
    pub fn from_pod(pod: &Pod) -> Self {
        PodView {
            uid: pod.metadata.uid.clone().unwrap_or_default(),
            node_name: pod
                .spec
                .as_ref()
                .and_then(|s| s.node_name.clone())
                .filter(|n| !n.is_empty()),
            phase: pod.status.as_ref().and_then(|s| s.phase.clone()),
            bind_phase: pod
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(BIND_PHASE))
                .cloned(),
            deleting: pod.metadata.deletion_timestamp.is_some(),
            devices_allocated: pod
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(DEVICES_ALLOCATED))
                .cloned(),
        }
    }

    /// Succeeded, Failed, or being deleted.
    pub fn is_finished(&self) -> bool {
        self.deleting || matches!(self.phase.as_deref(), Some("Succeeded" | "Failed"))
    }
}

/// An event's subject.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodRef {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// Uid (may be empty).
    pub uid: String,
}

/// One request to the cluster API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// Read a pod.
    GetPod {
        /// Namespace.
        namespace: String,
        /// Name.
        name: String,
    },
    /// Read a node.
    GetNode {
        /// Node name.
        node: String,
    },
    /// Set the lock annotation to `value`, only if the node is still at `resource_version`.
    WriteLock {
        /// Node name.
        node: String,
        /// The lock value.
        value: String,
        /// Precondition.
        resource_version: String,
    },
    /// Remove the lock annotation, only if the node is still at `resource_version`.
    ClearLock {
        /// Node name.
        node: String,
        /// Precondition.
        resource_version: String,
    },
    /// Merge the annotations into the pod's.
    PatchPodAnnotations {
        /// Namespace.
        namespace: String,
        /// Name.
        name: String,
        /// Annotations to set.
        annotations: BTreeMap<String, String>,
    },
    /// The filter's write: merge the annotations and labels into the pod's metadata, only if the pod
    /// still has uid `uid` (see [`Effect::merge_patch`]).
    PatchPodMetadata {
        /// Namespace.
        namespace: String,
        /// Name.
        name: String,
        /// Pod uid precondition (omitted when empty).
        uid: String,
        /// Annotations to set.
        annotations: BTreeMap<String, String>,
        /// Labels to set.
        labels: BTreeMap<String, String>,
    },
    /// Create the pod's `Binding` to `node`.
    CreateBinding {
        /// Namespace.
        namespace: String,
        /// Name.
        name: String,
        /// Pod uid precondition (omitted when empty).
        uid: String,
        /// Target node.
        node: String,
    },
    /// Record an event on the pod. Its answer never changes the path.
    EmitEvent {
        /// The pod.
        pod: PodRef,
        /// Type, reason and message.
        event: EventRecord,
    },
}

impl Effect {
    /// The JSON merge patch body of a write to an object's metadata (`None` for other effects).
    pub fn merge_patch(&self) -> Option<Value> {
        match self {
            Effect::WriteLock {
                value,
                resource_version,
                ..
            } => Some(json!({"metadata": {
                "annotations": {NODE_LOCK: value},
                "resourceVersion": resource_version,
            }})),
            Effect::ClearLock {
                resource_version, ..
            } => Some(json!({"metadata": {
                "annotations": {NODE_LOCK: null},
                "resourceVersion": resource_version,
            }})),
            Effect::PatchPodAnnotations { annotations, .. } => {
                Some(json!({"metadata": {"annotations": annotations}}))
            }
            Effect::PatchPodMetadata {
                uid,
                annotations,
                labels,
                ..
            } => {
                // `metadata.uid` is immutable: a merge patch carrying another uid than the stored
                // object's is refused, so the write cannot land on a pod re-created under the name.
                let mut metadata = json!({"annotations": annotations, "labels": labels});
                if !uid.is_empty() {
                    metadata["uid"] = json!(uid);
                }
                Some(json!({ "metadata": metadata }))
            }
            _ => None,
        }
    }

    /// The `Binding` object of [`Effect::CreateBinding`] (`None` for other effects).
    pub fn binding(&self) -> Option<Value> {
        let Effect::CreateBinding {
            namespace,
            name,
            uid,
            node,
        } = self
        else {
            return None;
        };
        let mut metadata = json!({"name": name, "namespace": namespace});
        if !uid.is_empty() {
            metadata["uid"] = json!(uid);
        }
        Some(json!({
            "apiVersion": "v1",
            "kind": "Binding",
            "metadata": metadata,
            "target": {"apiVersion": "v1", "kind": "Node", "name": node},
        }))
    }

    /// A short name for logs and traces (`get-node`, `write-lock`, ...).
    pub fn kind(&self) -> &'static str {
        match self {
            Effect::GetPod { .. } => "get-pod",
            Effect::GetNode { .. } => "get-node",
            Effect::WriteLock { .. } => "write-lock",
            Effect::ClearLock { .. } => "clear-lock",
            Effect::PatchPodAnnotations { .. } => "patch-pod",
            Effect::PatchPodMetadata { .. } => "patch-pod-metadata",
            Effect::CreateBinding { .. } => "create-binding",
            Effect::EmitEvent { .. } => "emit-event",
        }
    }
}

/// Why a request to the API failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiFailure {
    /// 404: the object does not exist.
    #[error("not found")]
    NotFound,
    /// 409: a conflict (a resourceVersion or uid precondition failed, or the pod is already bound).
    #[error("conflict: {0}")]
    Conflict(String),
    /// Any other refusal (400, 403, 422, ...): the request was not applied.
    #[error("rejected ({code}): {message}")]
    Rejected {
        /// HTTP status.
        code: u16,
        /// The server's message.
        message: String,
    },
    /// No answer, a lost response, a timeout or a 5xx: the request may or may not have been applied.
    #[error("no definite answer: {0}")]
    Indeterminate(String),
}

/// What the driver saw when it executed an effect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Observation {
    /// The answer to [`Effect::GetPod`].
    Pod(PodView),
    /// The answer to [`Effect::GetNode`].
    Node(NodeLockView),
    /// A write succeeded; the object's new resourceVersion when the answer carried one.
    Written {
        /// `metadata.resourceVersion` after the write.
        resource_version: Option<String>,
    },
    /// The request failed.
    Failed(ApiFailure),
}

/// The rule that freed a lock held by someone else (or let the binder re-enter its own).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum LockRule {
    /// Older than the timeout.
    Expired,
    /// The holder pod does not exist.
    Dangling,
    /// The holder is Succeeded, Failed or being deleted.
    HolderFinished,
    /// The holder is bound to another node.
    HolderElsewhere,
    /// `after-bind` mode: the holder is bound to this node (its binder stopped before releasing).
    HolderBound,
    /// `device-plugin` mode: the holder's `bind-phase` is `success` or `failed`.
    PhaseSettled,
    /// The value does not parse and was first seen more than the timeout ago.
    Malformed,
    /// The lock already belongs to the pod being bound.
    Reentrant,
}

impl LockRule {
    /// The metric label (`expired`, `dangling`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            LockRule::Expired => "expired",
            LockRule::Dangling => "dangling",
            LockRule::HolderFinished => "holder_finished",
            LockRule::HolderElsewhere => "holder_elsewhere",
            LockRule::HolderBound => "holder_bound",
            LockRule::PhaseSettled => "phase_settled",
            LockRule::Malformed => "malformed",
            LockRule::Reentrant => "reentrant",
        }
    }
}

/// When this process first saw a malformed lock value on a node; the shell keeps these between binds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MalformedSighting {
    /// Node.
    pub node: String,
    /// The exact value.
    pub value: String,
    /// First observed.
    pub first_seen: Timestamp,
}

/// What is known about a lock's holder pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HolderState {
    /// Not looked up yet (or the cache has no record: ask the API before calling it gone).
    Unknown,
    /// The API answered 404.
    Gone,
    /// The pod exists.
    Present(PodView),
}

/// A lock value as read from a node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObservedLock<'a> {
    /// The node.
    pub node: &'a str,
    /// The raw value.
    pub raw: &'a str,
    /// When this process first saw this exact value (only used for malformed values).
    pub first_seen: Timestamp,
}

/// What [`judge_lock`] concluded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LockJudgement {
    /// The lock may be released or taken over, by this rule.
    Free(LockRule),
    /// The lock stands; `until` is when the expiry rule will free it.
    Stands {
        /// Expiry instant (the first second at which `now - t > timeout`).
        until: Timestamp,
    },
    /// Whether it stands depends on the holder pod: look it up.
    NeedHolder(LockHolder),
}

/// Decides whether a lock held by someone stands, by the rules in the module documentation. The
/// same rules serve the binder (take over) and the reaper (release). Pure: `now` is an input.
pub fn judge_lock(
    lock: &ObservedLock<'_>,
    holder: &HolderState,
    mode: ReleaseMode,
    timeout: SignedDuration,
    now: Timestamp,
) -> LockJudgement {
    let value = match lock::parse(lock.raw) {
        Ok(value) => value,
        Err(_) => {
            return if now.duration_since(lock.first_seen) > timeout {
                LockJudgement::Free(LockRule::Malformed)
            } else {
                LockJudgement::Stands {
                    until: expiry_of(lock.first_seen, timeout),
                }
            };
        }
    };
    if value.is_expired(now, timeout) {
        return LockJudgement::Free(LockRule::Expired);
    }
    let until = expiry_of(value.taken_at, timeout);
    let Some(owner) = value.holder else {
        return LockJudgement::Stands { until };
    };
    match holder {
        HolderState::Unknown => LockJudgement::NeedHolder(owner),
        HolderState::Gone => LockJudgement::Free(LockRule::Dangling),
        HolderState::Present(pod) => {
            if pod.is_finished() {
                return LockJudgement::Free(LockRule::HolderFinished);
            }
            match pod.node_name.as_deref() {
                Some(n) if n != lock.node => LockJudgement::Free(LockRule::HolderElsewhere),
                Some(_) if mode == ReleaseMode::AfterBind => {
                    LockJudgement::Free(LockRule::HolderBound)
                }
                _ if mode == ReleaseMode::DevicePlugin
                    && matches!(
                        pod.bind_phase.as_deref(),
                        Some(bind_phase::SUCCESS | bind_phase::FAILED)
                    ) =>
                {
                    LockJudgement::Free(LockRule::PhaseSettled)
                }
                _ => LockJudgement::Stands { until },
            }
        }
    }
}

/// The first whole second at which a lock taken at `taken_at` counts as expired.
fn expiry_of(taken_at: Timestamp, timeout: SignedDuration) -> Timestamp {
    let edge = taken_at
        .checked_add(timeout)
        .unwrap_or(Timestamp::MAX)
        .checked_add(SignedDuration::from_secs(1))
        .unwrap_or(Timestamp::MAX);
    Timestamp::from_second(edge.as_second()).unwrap_or(edge)
}

/// Why a bind failed. The text is the extender's `Error` and the `BindingFailed` message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BindError {
    /// The lock is held by another pod and no rule frees it (HAMi's text).
    #[error("node {node} has been locked within {timeout}: node lock contention")]
    Contention {
        /// Node.
        node: String,
        /// The lock timeout, formatted as Go formats a `time.Duration`.
        timeout: String,
    },
    /// The lock value does not parse and has not been there for the timeout yet.
    #[error(
        "node {node} has a malformed lock {value} ({problem}); it is reclaimed {timeout} after it was first seen, at {reclaim_at}: node lock contention"
    )]
    MalformedLock {
        /// Node.
        node: String,
        /// The value, quoted.
        value: Quoted,
        /// The parse error.
        problem: String,
        /// The lock timeout, Go format.
        timeout: String,
        /// When it will be reclaimed.
        reclaim_at: Timestamp,
    },
    /// The node does not exist (HAMi's text).
    #[error("failed to get node {node}")]
    NodeNotFound {
        /// Node.
        node: String,
    },
    /// The node could not be read.
    #[error("failed to get node {node}: {failure}")]
    NodeUnreadable {
        /// Node.
        node: String,
        /// The API failure.
        failure: ApiFailure,
    },
    /// The pod does not exist (any more).
    #[error("pod {pod} not found")]
    PodGone {
        /// `namespace/name`.
        pod: String,
    },
    /// The pod could not be read.
    #[error("failed to get pod {pod}: {failure}")]
    PodUnreadable {
        /// `namespace/name`.
        pod: String,
        /// The API failure.
        failure: ApiFailure,
    },
    /// A pod with this name exists but is another pod.
    #[error("pod {pod} was replaced: uid {expected} is now {found}")]
    PodReplaced {
        /// `namespace/name`.
        pod: String,
        /// The uid the bind was asked for.
        expected: String,
        /// The uid found.
        found: String,
    },
    /// The pod has finished or is being deleted.
    #[error("pod {pod} is finished or being deleted")]
    PodFinished {
        /// `namespace/name`.
        pod: String,
    },
    /// The pod is bound to another node.
    #[error("pod {pod} is already bound to node {bound}")]
    BoundElsewhere {
        /// `namespace/name`.
        pod: String,
        /// Where it is bound.
        bound: String,
    },
    /// The lock holder could not be looked up.
    #[error("failed to get lock holder pod {holder} of node {node}: {failure}")]
    HolderUnreadable {
        /// Node.
        node: String,
        /// `namespace/name`.
        holder: String,
        /// The API failure.
        failure: ApiFailure,
    },
    /// The lock write kept failing (HAMi's text, with the attempt count instead of the strategy).
    #[error("failed to set node lock (node={node}, attempts={attempts}): {last}")]
    LockNotSet {
        /// Node.
        node: String,
        /// Writes tried.
        attempts: u32,
        /// The last failure.
        last: ApiFailure,
    },
    /// The pod name cannot be written into a lock value.
    #[error("cannot lock node {node} for pod {pod}: {problem}")]
    Unlockable {
        /// Node.
        node: String,
        /// `namespace/name`.
        pod: String,
        /// Why.
        problem: LockError,
    },
    /// The `bind-phase` patch failed.
    #[error("failed to patch pod {pod} annotations: {failure}")]
    PodPatchFailed {
        /// `namespace/name`.
        pod: String,
        /// The API failure.
        failure: ApiFailure,
    },
    /// The `Binding` failed.
    #[error("failed to bind pod {pod} to node {node}: {failure}")]
    BindingFailed {
        /// `namespace/name`.
        pod: String,
        /// Node.
        node: String,
        /// The API failure.
        failure: ApiFailure,
    },
}

impl BindError {
    /// The metric label of this failure.
    pub fn kind(&self) -> &'static str {
        match self {
            BindError::Contention { .. } | BindError::MalformedLock { .. } => "contention",
            BindError::NodeNotFound { .. } | BindError::NodeUnreadable { .. } => "node_error",
            BindError::PodGone { .. }
            | BindError::PodReplaced { .. }
            | BindError::PodFinished { .. } => "pod_gone",
            BindError::PodUnreadable { .. } | BindError::PodPatchFailed { .. } => "pod_error",
            BindError::BoundElsewhere { .. } => "bound_elsewhere",
            BindError::HolderUnreadable { .. }
            | BindError::LockNotSet { .. }
            | BindError::Unlockable { .. } => "lock_error",
            BindError::BindingFailed { .. } => "binding_error",
        }
    }

    /// True for lock contention (the node is busy; kube-scheduler retries later).
    pub fn is_contention(&self) -> bool {
        self.kind() == "contention"
    }
}

/// What happened to the node lock by the end of a bind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LockFate {
    /// The binder never held it.
    NotTaken,
    /// The binder held it and cleared it (or found the node gone).
    Released,
    /// Someone else replaced it (an expiry takeover) before the binder released it.
    TakenByOther {
        /// The value found.
        value: String,
    },
    /// `device-plugin` mode: held for HAMi's device plugin; the reaper releases it when the pod's
    /// `bind-phase` settles, the pod ends or goes away, or at `expires_at`.
    HeldForDevicePlugin {
        /// The lock value.
        value: String,
        /// When the expiry rule frees it.
        expires_at: Timestamp,
    },
    /// The release kept failing, so the node may still carry `value` (certainly, unless the lock
    /// write's own answer was lost): the reaper frees it by the holder rules, or by expiry at
    /// `expires_at`.
    Stranded {
        /// The lock value.
        value: String,
        /// When the expiry rule frees it.
        expires_at: Timestamp,
        /// The last failure.
        reason: String,
    },
}

/// How a bind ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BindOutcome {
    /// `Ok` when the pod is bound to the node (a `Binding` exists).
    pub result: Result<(), BindError>,
    /// The lock's fate.
    pub lock: LockFate,
    /// The rule that let the binder take a lock someone held (or re-enter its own).
    pub takeover: Option<LockRule>,
    /// True when the binder wrote a lock value of its own (an acquisition).
    pub acquired: bool,
    /// The malformed lock value seen on the node, for the shell to remember.
    pub malformed: Option<MalformedSighting>,
    /// Problems that did not change the result (e.g. a failed `bind-phase=success` patch).
    pub warnings: Vec<String>,
}

/// The machine's next move.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Execute this effect and call [`BindMachine::observe`] with what happened.
    Do(Effect),
    /// The bind is over.
    Done(BindOutcome),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    Idle,
    CheckPod,
    ReadNode,
    CheckHolder {
        view: NodeLockView,
        raw: String,
        holder: LockHolder,
    },
    Acquire {
        value: String,
        rule: Option<LockRule>,
    },
    MarkAllocating,
    CreateBinding,
    VerifyBinding {
        last: ApiFailure,
    },
    MarkSuccess,
    Release(LockRelease),
    Announce,
    Finished,
}

/// A lock the binder holds.
#[derive(Debug, Clone, PartialEq, Eq)]
struct HeldLock {
    value: String,
    taken_at: Timestamp,
    resource_version: Option<String>,
}

/// The bind protocol for one pod (see the module documentation).
#[derive(Debug, Clone)]
pub struct BindMachine {
    request: BindRequest,
    settings: BindSettings,
    state: State,
    held: Option<HeldLock>,
    already_bound: bool,
    result: Option<Result<(), BindError>>,
    fate: LockFate,
    takeover: Option<LockRule>,
    acquired: bool,
    malformed: Option<MalformedSighting>,
    warnings: Vec<String>,
    lock_attempts: u32,
    retries: u32,
    bind_time: i64,
    pending_write: Option<(String, Option<LockRule>)>,
    unconfirmed_release: bool,
    outcome: Option<BindOutcome>,
}

impl BindMachine {
    /// A machine for `request`. `known_malformed` is what the shell remembers about a malformed lock
    /// value on the node, so that its timeout runs from the first sighting.
    pub fn new(
        request: BindRequest,
        settings: BindSettings,
        known_malformed: Option<MalformedSighting>,
    ) -> Self {
        let malformed = known_malformed.filter(|m| m.node == request.node);
        BindMachine {
            request,
            settings,
            state: State::Idle,
            held: None,
            already_bound: false,
            result: None,
            fate: LockFate::NotTaken,
            takeover: None,
            acquired: false,
            malformed,
            warnings: Vec::new(),
            lock_attempts: 0,
            retries: 0,
            bind_time: 0,
            pending_write: None,
            unconfirmed_release: false,
            outcome: None,
        }
    }

    /// The request.
    pub fn request(&self) -> &BindRequest {
        &self.request
    }

    /// The name of the current state, for traces.
    pub fn state_name(&self) -> &'static str {
        match self.state {
            State::Idle => "idle",
            State::CheckPod => "check-pod",
            State::ReadNode => "read-node",
            State::CheckHolder { .. } => "check-holder",
            State::Acquire { .. } => "acquire",
            State::MarkAllocating => "mark-allocating",
            State::CreateBinding => "create-binding",
            State::VerifyBinding { .. } => "verify-binding",
            State::MarkSuccess => "mark-success",
            State::Release(_) => "release",
            State::Announce => "announce",
            State::Finished => "finished",
        }
    }

    /// True while the machine holds the node lock (between a successful write and its release).
    pub fn holds_lock(&self) -> bool {
        self.held.is_some()
    }

    /// Starts the bind: the first effect.
    pub fn start(&mut self, _now: Timestamp) -> Step {
        if self.state != State::Idle {
            return self.current_step();
        }
        self.get_target_pod()
    }

    /// Feeds what the driver saw for the last effect, at time `now`; returns the next step. After the
    /// outcome, every call returns it again.
    pub fn observe(&mut self, observation: Observation, now: Timestamp) -> Step {
        let state = std::mem::replace(&mut self.state, State::Finished);
        match state {
            State::Idle => {
                self.state = State::Idle;
                self.start(now)
            }
            State::CheckPod => self.on_target_pod(observation),
            State::ReadNode => self.on_node(observation, now),
            State::CheckHolder { view, raw, holder } => {
                self.on_holder(observation, now, view, raw, holder)
            }
            State::Acquire { value, rule } => self.on_lock_written(observation, now, value, rule),
            State::MarkAllocating => self.on_allocating(observation),
            State::CreateBinding => self.on_binding(observation),
            State::VerifyBinding { last } => self.on_binding_verified(observation, last),
            State::MarkSuccess => {
                if let Observation::Failed(f) = observation {
                    self.warnings.push(format!(
                        "failed to set {BIND_PHASE}={} on pod {}: {f}",
                        bind_phase::SUCCESS,
                        self.request.pod_key()
                    ));
                }
                self.release_or_announce()
            }
            State::Release(mut release) => match release.observe(observation) {
                ReleaseStep::Do(effect) => {
                    self.state = State::Release(release);
                    Step::Do(effect)
                }
                ReleaseStep::Done(result) => {
                    let held = self.held.take();
                    self.fate = match result {
                        // An unconfirmed write that never landed: the binder never held it.
                        ReleaseResult::AlreadyGone | ReleaseResult::TakenByOther { .. }
                            if self.unconfirmed_release =>
                        {
                            LockFate::NotTaken
                        }
                        ReleaseResult::Released | ReleaseResult::AlreadyGone => LockFate::Released,
                        ReleaseResult::TakenByOther { value } => LockFate::TakenByOther { value },
                        ReleaseResult::Stranded { reason } => {
                            let held = held.unwrap_or(HeldLock {
                                value: String::new(),
                                taken_at: now,
                                resource_version: None,
                            });
                            LockFate::Stranded {
                                expires_at: expiry_of(held.taken_at, self.settings.lock_timeout),
                                value: held.value,
                                reason,
                            }
                        }
                    };
                    self.announce()
                }
            },
            State::Announce => self.finish(),
            State::Finished => {
                self.state = State::Finished;
                self.current_step()
            }
        }
    }

    /// Runs the machine to the end with a synchronous executor (the simulated cluster and tests).
    pub fn run(
        &mut self,
        mut now: impl FnMut() -> Timestamp,
        mut execute: impl FnMut(&Effect) -> Observation,
    ) -> BindOutcome {
        let mut step = self.start(now());
        loop {
            match step {
                Step::Do(effect) => {
                    let observation = execute(&effect);
                    step = self.observe(observation, now());
                }
                Step::Done(outcome) => return outcome,
            }
        }
    }

    fn current_step(&self) -> Step {
        match &self.outcome {
            Some(outcome) => Step::Done(outcome.clone()),
            None => Step::Done(BindOutcome {
                result: self.result.clone().unwrap_or(Ok(())),
                lock: self.fate.clone(),
                takeover: self.takeover,
                acquired: self.acquired,
                malformed: self.malformed.clone(),
                warnings: self.warnings.clone(),
            }),
        }
    }

    fn pod_key(&self) -> String {
        self.request.pod_key()
    }

    fn get_target_pod(&mut self) -> Step {
        self.state = State::CheckPod;
        Step::Do(Effect::GetPod {
            namespace: self.request.namespace.clone(),
            name: self.request.name.clone(),
        })
    }

    fn get_node(&mut self) -> Step {
        self.state = State::ReadNode;
        Step::Do(Effect::GetNode {
            node: self.request.node.clone(),
        })
    }

    /// Counts one retry; false when the budget is spent.
    fn retry_allowed(&mut self) -> bool {
        self.retries += 1;
        self.retries <= self.settings.max_retries
    }

    fn on_target_pod(&mut self, observation: Observation) -> Step {
        let pod = self.pod_key();
        match observation {
            Observation::Pod(view) => {
                if !self.request.uid.is_empty()
                    && !view.uid.is_empty()
                    && view.uid != self.request.uid
                {
                    return self.fail(BindError::PodReplaced {
                        pod,
                        expected: self.request.uid.clone(),
                        found: view.uid,
                    });
                }
                match view.node_name.as_deref() {
                    Some(n) if n == self.request.node => {
                        // A previous attempt bound it (its answer was lost): finish the protocol.
                        self.already_bound = true;
                        self.retries = 0;
                        return self.get_node();
                    }
                    Some(other) => {
                        let bound = other.to_string();
                        return self.fail(BindError::BoundElsewhere { pod, bound });
                    }
                    None => {}
                }
                if view.is_finished() {
                    return self.fail(BindError::PodFinished { pod });
                }
                self.retries = 0;
                self.get_node()
            }
            Observation::Failed(ApiFailure::NotFound) => self.fail(BindError::PodGone { pod }),
            Observation::Failed(ApiFailure::Indeterminate(_)) if self.retry_allowed() => {
                self.get_target_pod()
            }
            Observation::Failed(failure) => self.fail(BindError::PodUnreadable { pod, failure }),
            other => self.fail(BindError::PodUnreadable {
                pod,
                failure: unexpected("GetPod", &other),
            }),
        }
    }

    fn on_node(&mut self, observation: Observation, now: Timestamp) -> Step {
        let node = self.request.node.clone();
        match observation {
            Observation::Node(view) => self.evaluate_lock(view, HolderState::Unknown, now),
            Observation::Failed(ApiFailure::NotFound) => {
                self.fail(BindError::NodeNotFound { node })
            }
            Observation::Failed(ApiFailure::Indeterminate(_)) if self.retry_allowed() => {
                self.get_node()
            }
            Observation::Failed(failure) => self.fail(BindError::NodeUnreadable { node, failure }),
            other => self.fail(BindError::NodeUnreadable {
                node,
                failure: unexpected("GetNode", &other),
            }),
        }
    }

    fn evaluate_lock(&mut self, view: NodeLockView, holder: HolderState, now: Timestamp) -> Step {
        let node = self.request.node.clone();
        if self
            .pending_write
            .as_ref()
            .is_some_and(|(value, _)| view.lock.as_ref() != Some(value))
        {
            // The node does not carry our unanswered write: it did not land (or was replaced).
            self.pending_write = None;
        }
        let Some(raw) = view.lock.clone() else {
            if self.already_bound {
                return self.bound();
            }
            return self.write_lock(view.resource_version, None, now);
        };
        let parsed = lock::parse(&raw);
        let first_seen = match &parsed {
            Ok(_) => {
                self.malformed = None;
                now
            }
            Err(_) => match &self.malformed {
                Some(m) if m.value == raw => m.first_seen,
                _ => {
                    self.malformed = Some(MalformedSighting {
                        node: node.clone(),
                        value: raw.clone(),
                        first_seen: now,
                    });
                    now
                }
            },
        };
        let ours = parsed
            .as_ref()
            .is_ok_and(|v| v.is_held_by(&self.request.namespace, &self.request.name));
        let expired = parsed
            .as_ref()
            .is_ok_and(|v| v.is_expired(now, self.settings.lock_timeout));
        if let Ok(value) = &parsed
            && ours
            && (!expired || self.already_bound)
        {
            match self.pending_write.take() {
                // Our own write whose answer was lost: it landed.
                Some((written, rule)) if written == raw => {
                    self.acquired = true;
                    self.takeover = rule;
                }
                // Ours from before: a retry after a lost answer, a crash, or a failure
                // kube-scheduler retried.
                _ => self.takeover = Some(LockRule::Reentrant),
            }
            self.held = Some(HeldLock {
                value: raw,
                taken_at: value.taken_at,
                resource_version: Some(view.resource_version),
            });
            self.retries = 0;
            return self.locked(now);
        }
        if self.already_bound {
            // Bound by an earlier attempt and the lock is not ours: nothing to hold or release.
            return self.bound();
        }
        let observed = ObservedLock {
            node: &node,
            raw: &raw,
            first_seen,
        };
        match judge_lock(
            &observed,
            &holder,
            self.settings.release_mode,
            self.settings.lock_timeout,
            now,
        ) {
            LockJudgement::Free(rule) => self.write_lock(view.resource_version, Some(rule), now),
            LockJudgement::NeedHolder(holder) => {
                self.retries = 0;
                let effect = Effect::GetPod {
                    namespace: holder.namespace.clone(),
                    name: holder.name.clone(),
                };
                self.state = State::CheckHolder { view, raw, holder };
                Step::Do(effect)
            }
            LockJudgement::Stands { until } => {
                let timeout = go_duration::format(self.settings.lock_timeout);
                match parsed {
                    Err(problem) => self.fail(BindError::MalformedLock {
                        node,
                        value: Quoted::new(&raw),
                        problem: problem.to_string(),
                        timeout,
                        reclaim_at: until,
                    }),
                    Ok(_) => self.fail(BindError::Contention { node, timeout }),
                }
            }
        }
    }

    fn on_holder(
        &mut self,
        observation: Observation,
        now: Timestamp,
        view: NodeLockView,
        raw: String,
        holder: LockHolder,
    ) -> Step {
        let state = match observation {
            Observation::Pod(pod) => HolderState::Present(pod),
            Observation::Failed(ApiFailure::NotFound) => HolderState::Gone,
            Observation::Failed(ApiFailure::Indeterminate(_)) if self.retry_allowed() => {
                let effect = Effect::GetPod {
                    namespace: holder.namespace.clone(),
                    name: holder.name.clone(),
                };
                self.state = State::CheckHolder { view, raw, holder };
                return Step::Do(effect);
            }
            Observation::Failed(failure) => {
                return self.fail(BindError::HolderUnreadable {
                    node: self.request.node.clone(),
                    holder: format!("{}/{}", holder.namespace, holder.name),
                    failure,
                });
            }
            other => {
                return self.fail(BindError::HolderUnreadable {
                    node: self.request.node.clone(),
                    holder: format!("{}/{}", holder.namespace, holder.name),
                    failure: unexpected("GetPod", &other),
                });
            }
        };
        self.evaluate_lock(view, state, now)
    }

    fn write_lock(
        &mut self,
        resource_version: String,
        rule: Option<LockRule>,
        now: Timestamp,
    ) -> Step {
        let value = match lock::render(&LockValue::new(
            now,
            &self.request.namespace,
            &self.request.name,
        )) {
            Ok(value) => value,
            Err(problem) => {
                return self.fail(BindError::Unlockable {
                    node: self.request.node.clone(),
                    pod: self.pod_key(),
                    problem,
                });
            }
        };
        self.lock_attempts += 1;
        self.pending_write = Some((value.clone(), rule));
        self.state = State::Acquire {
            value: value.clone(),
            rule,
        };
        Step::Do(Effect::WriteLock {
            node: self.request.node.clone(),
            value,
            resource_version,
        })
    }

    fn on_lock_written(
        &mut self,
        observation: Observation,
        now: Timestamp,
        value: String,
        rule: Option<LockRule>,
    ) -> Step {
        match observation {
            Observation::Written { resource_version } => {
                let taken_at = lock::parse(&value).map_or(now, |v| v.taken_at);
                self.held = Some(HeldLock {
                    value,
                    taken_at,
                    resource_version,
                });
                self.acquired = true;
                self.takeover = rule;
                self.malformed = None;
                self.pending_write = None;
                self.retries = 0;
                self.locked(now)
            }
            Observation::Failed(ApiFailure::NotFound) => {
                self.pending_write = None;
                self.fail(BindError::NodeNotFound {
                    node: self.request.node.clone(),
                })
            }
            Observation::Failed(
                failure @ (ApiFailure::Conflict(_) | ApiFailure::Indeterminate(_)),
            ) => {
                if matches!(failure, ApiFailure::Conflict(_)) {
                    // A precondition failure is definite: nothing was written.
                    self.pending_write = None;
                }
                // Re-read: a conflict means the node moved on; a lost answer may have landed, in
                // which case the re-read finds our own lock and continues.
                if self.lock_attempts >= self.settings.max_lock_attempts {
                    return self.fail(BindError::LockNotSet {
                        node: self.request.node.clone(),
                        attempts: self.lock_attempts,
                        last: failure,
                    });
                }
                self.retries = 0;
                self.get_node()
            }
            Observation::Failed(failure) => {
                self.pending_write = None;
                self.fail(BindError::LockNotSet {
                    node: self.request.node.clone(),
                    attempts: self.lock_attempts,
                    last: failure,
                })
            }
            other => self.fail(BindError::LockNotSet {
                node: self.request.node.clone(),
                attempts: self.lock_attempts,
                last: unexpected("WriteLock", &other),
            }),
        }
    }

    /// The lock is ours: mark the pod, unless an earlier attempt already bound it.
    fn locked(&mut self, now: Timestamp) -> Step {
        if self.already_bound {
            return self.bound();
        }
        self.mark_allocating(now)
    }

    fn mark_allocating(&mut self, now: Timestamp) -> Step {
        self.bind_time = now.as_second();
        self.send_allocating()
    }

    fn send_allocating(&mut self) -> Step {
        self.state = State::MarkAllocating;
        Step::Do(Effect::PatchPodAnnotations {
            namespace: self.request.namespace.clone(),
            name: self.request.name.clone(),
            annotations: BTreeMap::from([
                (BIND_PHASE.to_string(), bind_phase::ALLOCATING.to_string()),
                (BIND_TIME.to_string(), self.bind_time.to_string()),
            ]),
        })
    }

    fn on_allocating(&mut self, observation: Observation) -> Step {
        let pod = self.pod_key();
        match observation {
            Observation::Written { .. } => {
                self.retries = 0;
                self.create_binding()
            }
            Observation::Failed(ApiFailure::NotFound) => self.fail(BindError::PodGone { pod }),
            Observation::Failed(ApiFailure::Indeterminate(_)) if self.retry_allowed() => {
                // A merge patch of the same values is idempotent: send it again.
                self.send_allocating()
            }
            Observation::Failed(failure) => self.fail(BindError::PodPatchFailed { pod, failure }),
            other => self.fail(BindError::PodPatchFailed {
                pod,
                failure: unexpected("PatchPodAnnotations", &other),
            }),
        }
    }

    fn create_binding(&mut self) -> Step {
        self.state = State::CreateBinding;
        Step::Do(Effect::CreateBinding {
            namespace: self.request.namespace.clone(),
            name: self.request.name.clone(),
            uid: self.request.uid.clone(),
            node: self.request.node.clone(),
        })
    }

    fn on_binding(&mut self, observation: Observation) -> Step {
        let pod = self.pod_key();
        match observation {
            Observation::Written { .. } => self.bound(),
            Observation::Failed(ApiFailure::NotFound) => self.fail(BindError::PodGone { pod }),
            Observation::Failed(
                last @ (ApiFailure::Conflict(_) | ApiFailure::Indeterminate(_)),
            ) => {
                // Did an earlier attempt (or this one) bind it? The pod says.
                self.state = State::VerifyBinding { last };
                Step::Do(Effect::GetPod {
                    namespace: self.request.namespace.clone(),
                    name: self.request.name.clone(),
                })
            }
            Observation::Failed(failure) => self.fail(BindError::BindingFailed {
                pod,
                node: self.request.node.clone(),
                failure,
            }),
            other => self.fail(BindError::BindingFailed {
                pod,
                node: self.request.node.clone(),
                failure: unexpected("CreateBinding", &other),
            }),
        }
    }

    fn on_binding_verified(&mut self, observation: Observation, last: ApiFailure) -> Step {
        let pod = self.pod_key();
        let node = self.request.node.clone();
        match observation {
            Observation::Pod(view) => {
                if !self.request.uid.is_empty()
                    && !view.uid.is_empty()
                    && view.uid != self.request.uid
                {
                    return self.fail(BindError::PodReplaced {
                        pod,
                        expected: self.request.uid.clone(),
                        found: view.uid,
                    });
                }
                match view.node_name {
                    Some(n) if n == node => self.bound(),
                    Some(bound) => self.fail(BindError::BoundElsewhere { pod, bound }),
                    None if matches!(last, ApiFailure::Indeterminate(_))
                        && self.retry_allowed() =>
                    {
                        self.create_binding()
                    }
                    None => self.fail(BindError::BindingFailed {
                        pod,
                        node,
                        failure: last,
                    }),
                }
            }
            Observation::Failed(ApiFailure::NotFound) => self.fail(BindError::PodGone { pod }),
            Observation::Failed(ApiFailure::Indeterminate(_)) if self.retry_allowed() => {
                self.state = State::VerifyBinding { last };
                Step::Do(Effect::GetPod {
                    namespace: self.request.namespace.clone(),
                    name: self.request.name.clone(),
                })
            }
            Observation::Failed(_) | Observation::Node(_) | Observation::Written { .. } => self
                .fail(BindError::BindingFailed {
                    pod,
                    node,
                    failure: last,
                }),
        }
    }

    /// The `Binding` exists.
    fn bound(&mut self) -> Step {
        self.result = Some(Ok(()));
        self.retries = 0;
        match self.settings.release_mode {
            ReleaseMode::AfterBind => {
                self.state = State::MarkSuccess;
                Step::Do(Effect::PatchPodAnnotations {
                    namespace: self.request.namespace.clone(),
                    name: self.request.name.clone(),
                    annotations: BTreeMap::from([(
                        BIND_PHASE.to_string(),
                        bind_phase::SUCCESS.to_string(),
                    )]),
                })
            }
            ReleaseMode::DevicePlugin => {
                if let Some(held) = self.held.take() {
                    self.fate = LockFate::HeldForDevicePlugin {
                        expires_at: expiry_of(held.taken_at, self.settings.lock_timeout),
                        value: held.value,
                    };
                }
                self.announce()
            }
        }
    }

    fn fail(&mut self, error: BindError) -> Step {
        self.result = Some(Err(error));
        self.release_or_announce()
    }

    fn release_or_announce(&mut self) -> Step {
        let mut release = if let Some(held) = &self.held {
            LockRelease::new(
                self.request.node.clone(),
                ReleaseOwner::Pod(LockHolder {
                    namespace: self.request.namespace.clone(),
                    name: self.request.name.clone(),
                }),
                held.resource_version.clone(),
                self.settings.max_retries,
            )
        } else if let Some((value, _)) = self.pending_write.take() {
            // A lock write whose answer never came, and no read confirmed it since: it may have
            // landed. Clear exactly that value if it is there.
            let taken_at = lock::parse(&value).map_or(Timestamp::UNIX_EPOCH, |v| v.taken_at);
            self.held = Some(HeldLock {
                value: value.clone(),
                taken_at,
                resource_version: None,
            });
            self.unconfirmed_release = true;
            LockRelease::new(
                self.request.node.clone(),
                ReleaseOwner::Value(value),
                None,
                self.settings.max_retries,
            )
        } else {
            return self.announce();
        };
        match release.start() {
            ReleaseStep::Do(effect) => {
                self.state = State::Release(release);
                Step::Do(effect)
            }
            ReleaseStep::Done(_) => self.announce(),
        }
    }

    fn announce(&mut self) -> Step {
        self.state = State::Announce;
        let event = match self.result.as_ref() {
            Some(Err(error)) => EventRecord {
                event_type: EventType::Warning,
                reason: BINDING_FAILED,
                message: error.to_string(),
            },
            _ => EventRecord {
                event_type: EventType::Normal,
                reason: BINDING_SUCCEED,
                message: format!(
                    "Successfully binding node [{}] to {}/{}",
                    self.request.node, self.request.namespace, self.request.name
                ),
            },
        };
        Step::Do(Effect::EmitEvent {
            pod: PodRef {
                namespace: self.request.namespace.clone(),
                name: self.request.name.clone(),
                uid: self.request.uid.clone(),
            },
            event,
        })
    }

    fn finish(&mut self) -> Step {
        self.state = State::Finished;
        let outcome = BindOutcome {
            result: self.result.clone().unwrap_or(Ok(())),
            lock: self.fate.clone(),
            takeover: self.takeover,
            acquired: self.acquired,
            malformed: self.malformed.clone(),
            warnings: self.warnings.clone(),
        };
        self.outcome = Some(outcome.clone());
        Step::Done(outcome)
    }
}

fn unexpected(effect: &str, observation: &Observation) -> ApiFailure {
    ApiFailure::Rejected {
        code: 0,
        message: format!("driver answered {effect} with {observation:?}"),
    }
}

/// Whose lock a [`LockRelease`] may clear.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReleaseOwner {
    /// Any value held by this pod (the binder's owner check, HAMi's suffix check).
    Pod(LockHolder),
    /// Exactly this value (the reaper, which judged that value).
    Value(String),
}

impl ReleaseOwner {
    fn owns(&self, raw: &str) -> bool {
        match self {
            ReleaseOwner::Pod(holder) => {
                lock::parse(raw).is_ok_and(|v| v.is_held_by(&holder.namespace, &holder.name))
            }
            ReleaseOwner::Value(value) => value == raw,
        }
    }
}

/// How a release ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReleaseResult {
    /// Cleared.
    Released,
    /// Already absent, or the node is gone.
    AlreadyGone,
    /// Another owner's value is there now; left alone.
    TakenByOther {
        /// The value found.
        value: String,
    },
    /// Gave up after retries.
    Stranded {
        /// The last failure.
        reason: String,
    },
}

/// The release machine's next move.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReleaseStep {
    /// Execute this effect and call [`LockRelease::observe`].
    Do(Effect),
    /// Finished.
    Done(ReleaseResult),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum ReleaseState {
    Idle,
    Reading,
    Clearing,
    Finished(ReleaseResult),
}

/// An owner-checked release of a node lock, by compare-and-swap on the resourceVersion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockRelease {
    node: String,
    owner: ReleaseOwner,
    resource_version: Option<String>,
    max_retries: u32,
    retries: u32,
    state: ReleaseState,
}

impl LockRelease {
    /// A release of `owner`'s lock on `node`. With `resource_version` (the one the owner last
    /// saw), it clears directly and re-reads only on a conflict; without it, it reads first.
    pub fn new(
        node: String,
        owner: ReleaseOwner,
        resource_version: Option<String>,
        max_retries: u32,
    ) -> Self {
        LockRelease {
            node,
            owner,
            resource_version,
            max_retries,
            retries: 0,
            state: ReleaseState::Idle,
        }
    }

    /// The node.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// The first effect.
    pub fn start(&mut self) -> ReleaseStep {
        if self.state != ReleaseState::Idle {
            return self.finished_or_read();
        }
        match self.resource_version.clone() {
            Some(rv) => self.clear(rv),
            None => self.read(),
        }
    }

    /// Feeds the answer to the last effect.
    pub fn observe(&mut self, observation: Observation) -> ReleaseStep {
        match std::mem::replace(&mut self.state, ReleaseState::Idle) {
            ReleaseState::Idle => self.start(),
            ReleaseState::Finished(result) => self.done(result),
            ReleaseState::Reading => match observation {
                Observation::Node(view) => match view.lock {
                    None => self.done(ReleaseResult::AlreadyGone),
                    Some(raw) if self.owner.owns(&raw) => self.clear(view.resource_version),
                    Some(value) => self.done(ReleaseResult::TakenByOther { value }),
                },
                Observation::Failed(ApiFailure::NotFound) => self.done(ReleaseResult::AlreadyGone),
                other => self.retry_or_strand(&other, true),
            },
            ReleaseState::Clearing => match observation {
                Observation::Written { .. } => self.done(ReleaseResult::Released),
                Observation::Failed(ApiFailure::NotFound) => self.done(ReleaseResult::AlreadyGone),
                other => self.retry_or_strand(&other, false),
            },
        }
    }

    /// Runs to the end with a synchronous executor.
    pub fn run(&mut self, mut execute: impl FnMut(&Effect) -> Observation) -> ReleaseResult {
        let mut step = self.start();
        loop {
            match step {
                ReleaseStep::Do(effect) => step = self.observe(execute(&effect)),
                ReleaseStep::Done(result) => return result,
            }
        }
    }

    fn finished_or_read(&mut self) -> ReleaseStep {
        match &self.state {
            ReleaseState::Finished(result) => ReleaseStep::Done(result.clone()),
            _ => self.read(),
        }
    }

    fn read(&mut self) -> ReleaseStep {
        self.state = ReleaseState::Reading;
        ReleaseStep::Do(Effect::GetNode {
            node: self.node.clone(),
        })
    }

    fn clear(&mut self, resource_version: String) -> ReleaseStep {
        self.state = ReleaseState::Clearing;
        ReleaseStep::Do(Effect::ClearLock {
            node: self.node.clone(),
            resource_version,
        })
    }

    fn retry_or_strand(&mut self, observation: &Observation, reading: bool) -> ReleaseStep {
        let reason = match observation {
            Observation::Failed(f) => f.to_string(),
            other => unexpected(if reading { "GetNode" } else { "ClearLock" }, other).to_string(),
        };
        let retryable = matches!(
            observation,
            Observation::Failed(ApiFailure::Conflict(_) | ApiFailure::Indeterminate(_))
        );
        self.retries += 1;
        if retryable && self.retries <= self.max_retries {
            // A cleared lock whose answer was lost reads as absent; a conflict reads the new version.
            self.read()
        } else {
            self.done(ReleaseResult::Stranded { reason })
        }
    }

    fn done(&mut self, result: ReleaseResult) -> ReleaseStep {
        self.state = ReleaseState::Finished(result.clone());
        ReleaseStep::Done(result)
    }
}

impl fmt::Display for LockFate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LockFate::NotTaken => f.write_str("not taken"),
            LockFate::Released => f.write_str("released"),
            LockFate::TakenByOther { value } => write!(f, "taken over by {value:?}"),
            LockFate::HeldForDevicePlugin { value, expires_at } => {
                write!(
                    f,
                    "held for the device plugin ({value:?}, expires {expires_at})"
                )
            }
            LockFate::Stranded {
                value,
                expires_at,
                reason,
            } => write!(
                f,
                "stranded ({value:?}: {reason}); freed by the reaper or at {expires_at}"
            ),
        }
    }
}

/// Go's `time.Duration` text: `String()` and `ParseDuration`.
pub mod go_duration {
    use jiff::SignedDuration;

    /// Formats like Go's `Duration.String`: `5m0s`, `1h0m0s`, `1.5s`, `300ms`, `0s`.
    pub fn format(duration: SignedDuration) -> String {
        let nanos = duration.as_nanos();
        if nanos == 0 {
            return "0s".into();
        }
        let sign = if nanos < 0 { "-" } else { "" };
        let abs = nanos.unsigned_abs();
        if abs < 1_000_000_000 {
            let (unit, scale) = if abs < 1_000 {
                ("ns", 1)
            } else if abs < 1_000_000 {
                ("µs", 1_000)
            } else {
                ("ms", 1_000_000)
            };
            return format!("{sign}{}{unit}", fraction(abs, scale));
        }
        let hours = abs / 3_600_000_000_000;
        let minutes = (abs / 60_000_000_000) % 60;
        let seconds = fraction(abs % 60_000_000_000, 1_000_000_000);
        if hours > 0 {
            format!("{sign}{hours}h{minutes}m{seconds}s")
        } else if minutes > 0 {
            format!("{sign}{minutes}m{seconds}s")
        } else {
            format!("{sign}{seconds}s")
        }
    }

    fn fraction(value: u128, scale: u128) -> String {
        let whole = value / scale;
        let rest = value % scale;
        if rest == 0 {
            return whole.to_string();
        }
        let width = scale.ilog10() as usize;
        let digits = format!("{rest:0width$}");
        format!("{whole}.{}", digits.trim_end_matches('0'))
    }

    /// Why a duration does not parse.
    #[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
    #[error(
        "invalid duration {value:?}: {problem} (expected Go syntax like 5m, 30s, 1h30m, 500ms)"
    )]
    pub struct DurationError {
        /// The text.
        pub value: String,
        /// What is wrong.
        pub problem: &'static str,
    }

    /// Parses Go's duration syntax: an optional sign, then one or more `<decimal><unit>` with units
    /// `ns`, `us` (`µs`, `μs`), `ms`, `s`, `m`, `h`; `0` alone is zero.
    pub fn parse(value: &str) -> Result<SignedDuration, DurationError> {
        let err = |problem| DurationError {
            value: value.to_string(),
            problem,
        };
        let (negative, mut rest) = match value.as_bytes().first() {
            Some(b'-') => (true, &value[1..]),
            Some(b'+') => (false, &value[1..]),
            _ => (false, value),
        };
        if rest == "0" {
            return Ok(SignedDuration::ZERO);
        }
        if rest.is_empty() {
            return Err(err("empty"));
        }
        let mut total: u128 = 0;
        while !rest.is_empty() {
            let int_len = rest.bytes().take_while(u8::is_ascii_digit).count();
            let (int_part, after) = rest.split_at(int_len);
            let (frac_part, after) = match after.strip_prefix('.') {
                Some(f) => {
                    let n = f.bytes().take_while(u8::is_ascii_digit).count();
                    f.split_at(n)
                }
                None => ("", after),
            };
            if int_part.is_empty() && frac_part.is_empty() {
                return Err(err("expected a number"));
            }
            let unit_len = after
                .char_indices()
                .find(|(_, c)| c.is_ascii_digit() || *c == '.')
                .map_or(after.len(), |(i, _)| i);
            let (unit, after) = after.split_at(unit_len);
            let scale: u128 = match unit {
                "ns" => 1,
                "us" | "µs" | "μs" => 1_000,
                "ms" => 1_000_000,
                "s" => 1_000_000_000,
                "m" => 60_000_000_000,
                "h" => 3_600_000_000_000,
                "" => return Err(err("missing unit")),
                _ => return Err(err("unknown unit")),
            };
            let whole: u128 = if int_part.is_empty() {
                0
            } else {
                int_part.parse().map_err(|_| err("number out of range"))?
            };
            let mut part = whole.checked_mul(scale).ok_or(err("out of range"))?;
            if !frac_part.is_empty() {
                let digits = &frac_part[..frac_part.len().min(30)];
                let numerator: u128 = digits.parse().map_err(|_| err("bad fraction"))?;
                let denominator = 10u128.pow(digits.len() as u32);
                part += numerator * scale / denominator;
            }
            total = total.checked_add(part).ok_or(err("out of range"))?;
            if total > i64::MAX as u128 {
                return Err(err("out of range"));
            }
            rest = after;
        }
        let nanos = i64::try_from(total).map_err(|_| err("out of range"))?;
        let nanos = if negative { -nanos } else { nanos };
        Ok(SignedDuration::from_nanos(nanos))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn go_duration_formats_like_go() {
        let cases = [
            (SignedDuration::from_mins(5), "5m0s"),
            (SignedDuration::from_secs(28), "28s"),
            (SignedDuration::from_hours(1), "1h0m0s"),
            (SignedDuration::from_secs(90), "1m30s"),
            (SignedDuration::from_millis(1500), "1.5s"),
            (SignedDuration::from_millis(300), "300ms"),
            (SignedDuration::from_micros(1500), "1.5ms"),
            (SignedDuration::from_nanos(1500), "1.5µs"),
            (SignedDuration::from_nanos(7), "7ns"),
            (SignedDuration::ZERO, "0s"),
            (SignedDuration::from_secs(-61), "-1m1s"),
            (SignedDuration::from_secs(3723), "1h2m3s"),
        ];
        for (d, text) in cases {
            assert_eq!(go_duration::format(d), text);
            assert_eq!(go_duration::parse(text), Ok(d), "{text}");
        }
        assert_eq!(
            go_duration::parse("1h30m"),
            Ok(SignedDuration::from_mins(90))
        );
        assert_eq!(
            go_duration::parse(".5s"),
            Ok(SignedDuration::from_millis(500))
        );
        assert_eq!(
            go_duration::parse("2us"),
            Ok(SignedDuration::from_micros(2))
        );
        assert_eq!(go_duration::parse("0"), Ok(SignedDuration::ZERO));
        for bad in ["", "5", "5x", "m", "-", "1.s5", ".s", "99999999999h", "5 m"] {
            let err = go_duration::parse(bad).unwrap_err();
            assert!(
                err.to_string().contains(&format!("{bad:?}")),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn judge_lock_rules() {
        let now = t("2025-01-01T00:10:00Z");
        let five = SignedDuration::from_mins(5);
        let fresh = "2025-01-01T00:08:00Z,ns,holder";
        let node = "n1";
        let lock = |raw| ObservedLock {
            node,
            raw,
            first_seen: now,
        };
        let present = |f: fn(&mut PodView)| {
            let mut p = PodView::default();
            f(&mut p);
            HolderState::Present(p)
        };
        let judge =
            |raw, holder: &HolderState, mode| judge_lock(&lock(raw), holder, mode, five, now);
        use ReleaseMode::*;
        assert_eq!(
            judge(
                "2025-01-01T00:04:59Z,ns,holder",
                &HolderState::Unknown,
                AfterBind
            ),
            LockJudgement::Free(LockRule::Expired)
        );
        assert_eq!(
            judge("2025-01-01T00:04:59Z", &HolderState::Unknown, AfterBind),
            LockJudgement::Free(LockRule::Expired)
        );
        assert_eq!(
            judge("2025-01-01T00:08:00Z", &HolderState::Unknown, AfterBind),
            LockJudgement::Stands {
                until: t("2025-01-01T00:13:01Z")
            }
        );
        assert_eq!(
            judge(fresh, &HolderState::Unknown, AfterBind),
            LockJudgement::NeedHolder(LockHolder {
                namespace: "ns".into(),
                name: "holder".into()
            })
        );
        assert_eq!(
            judge(fresh, &HolderState::Gone, DevicePlugin),
            LockJudgement::Free(LockRule::Dangling)
        );
        let finished = present(|p| p.phase = Some("Succeeded".into()));
        assert_eq!(
            judge(fresh, &finished, DevicePlugin),
            LockJudgement::Free(LockRule::HolderFinished)
        );
        let elsewhere = present(|p| p.node_name = Some("n2".into()));
        assert_eq!(
            judge(fresh, &elsewhere, DevicePlugin),
            LockJudgement::Free(LockRule::HolderElsewhere)
        );
        let here = present(|p| p.node_name = Some("n1".into()));
        assert_eq!(
            judge(fresh, &here, AfterBind),
            LockJudgement::Free(LockRule::HolderBound)
        );
        assert!(matches!(
            judge(fresh, &here, DevicePlugin),
            LockJudgement::Stands { .. }
        ));
        let settled = present(|p| {
            p.node_name = Some("n1".into());
            p.bind_phase = Some("failed".into());
        });
        assert_eq!(
            judge(fresh, &settled, DevicePlugin),
            LockJudgement::Free(LockRule::PhaseSettled)
        );
        let pending = present(|p| p.bind_phase = Some("allocating".into()));
        assert_eq!(
            judge(fresh, &pending, AfterBind),
            LockJudgement::Stands {
                until: t("2025-01-01T00:13:01Z")
            }
        );
        // Malformed: from first sighting.
        let seen_long_ago = ObservedLock {
            node,
            raw: "lock",
            first_seen: t("2025-01-01T00:04:00Z"),
        };
        assert_eq!(
            judge_lock(&seen_long_ago, &HolderState::Unknown, AfterBind, five, now),
            LockJudgement::Free(LockRule::Malformed)
        );
        assert_eq!(
            judge("lock", &HolderState::Unknown, AfterBind),
            LockJudgement::Stands {
                until: t("2025-01-01T00:15:01Z")
            }
        );
    }

    #[test]
    fn effects_carry_the_wire_bodies() {
        let write = Effect::WriteLock {
            node: "n".into(),
            value: "v".into(),
            resource_version: "7".into(),
        };
        assert_eq!(
            write.merge_patch().unwrap(),
            json!({"metadata": {"annotations": {"hami.io/mutex.lock": "v"}, "resourceVersion": "7"}})
        );
        let clear = Effect::ClearLock {
            node: "n".into(),
            resource_version: "8".into(),
        };
        assert_eq!(
            clear.merge_patch().unwrap(),
            json!({"metadata": {"annotations": {"hami.io/mutex.lock": null}, "resourceVersion": "8"}})
        );
        let binding = Effect::CreateBinding {
            namespace: "ns".into(),
            name: "p".into(),
            uid: "u".into(),
            node: "n".into(),
        };
        assert_eq!(
            binding.binding().unwrap(),
            json!({"apiVersion": "v1", "kind": "Binding",
                   "metadata": {"name": "p", "namespace": "ns", "uid": "u"},
                   "target": {"apiVersion": "v1", "kind": "Node", "name": "n"}})
        );
        assert!(write.binding().is_none() && binding.merge_patch().is_none());
    }
}
