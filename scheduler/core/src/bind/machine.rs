//! The bind machine: one pod's bind as a sans-IO state machine (spec §5), its settings
//! ([`BindSettings`], [`ReleaseMode`]) and how it ends ([`BindOutcome`], [`LockFate`]).
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
//! ## States (in order)
//! `CheckPod` → `ReadNode` ⇄ `CheckHolder` → `Acquire` (⇄ `ReadNode` on conflict) → `MarkAllocating`
//! → `CreateBinding` (→ `VerifyBinding` on conflict or a lost answer) → `MarkSuccess` (after-bind
//! mode) → `Release` (⇄ `ReleaseRead`) → `Announce` → finished. A failure at any step after the lock
//! was taken goes through `Release` and `Announce` with the error, except a `Binding` that may have
//! landed (its answer lost, every read of the pod since failed) in `device-plugin` mode, which keeps
//! the lock for the device plugin as a success does ([`BindError::BindingUnverified`]).

use super::effect::unexpected;
use super::lock_rules::expiry_of;
use super::{
    ApiFailure, BindError, BindRequest, Effect, HolderState, LockJudgement, LockRelease, LockRule,
    MalformedSighting, NodeLockView, Observation, ObservedLock, PodRef, PodView, ReleaseOwner,
    ReleaseResult, ReleaseStep, judge_lock,
};
use crate::annotations::{BIND_PHASE, BIND_TIME, bind_phase};
use crate::codec::Quoted;
use crate::codec::go_duration;
use crate::codec::lock::{self, LockHolder, LockValue};
use crate::decision::{EventRecord, EventType};
use jiff::{SignedDuration, Timestamp};
use std::collections::BTreeMap;
use std::fmt;

/// The event reason of a successful bind.
pub const BINDING_SUCCEED: &str = "BindingSucceed";
/// The event reason of a failed bind.
pub const BINDING_FAILED: &str = "BindingFailed";
/// The event reason on a lock holder the reaper deleted because its allocation stalled (sliceguard's
/// own; HAMi has none, see [`super::lock_rules`]).
pub const ALLOCATION_STALLED: &str = "AllocationStalled";

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
    /// `device-plugin` mode: how long after a lock was taken its holder may stay mid-allocation
    /// before the reaper takes its device plugin to be silent (see [`super::lock_rules`]).
    pub allocation_stall_timeout: SignedDuration,
}

impl Default for BindSettings {
    fn default() -> Self {
        BindSettings {
            lock_timeout: SignedDuration::from_mins(5),
            release_mode: ReleaseMode::AfterBind,
            max_lock_attempts: 5,
            max_retries: 3,
            allocation_stall_timeout: SignedDuration::from_mins(15),
        }
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

    /// The caller went away (kube-scheduler's bind timeout, a dropped connection). The driver calls
    /// it at an effect boundary, before executing the pending effect. Before the `Binding` the bind
    /// stops there: `Some` step that releases a lock this bind holds, or may hold (a lock write whose
    /// answer was lost), and announces `BindingFailed`, so no lock is stranded and the pod is not
    /// bound behind kube-scheduler's back. From the `Binding` on the pod may already be bound, so
    /// the protocol runs to its end: `None`, execute the pending effect as usual.
    pub fn abandon(&mut self) -> Option<Step> {
        match self.state {
            State::Idle
            | State::CheckPod
            | State::ReadNode
            | State::CheckHolder { .. }
            | State::Acquire { .. }
            | State::MarkAllocating => Some(self.fail(BindError::Abandoned {
                pod: self.pod_key(),
                node: self.request.node.clone(),
            })),
            _ => None,
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

    /// `PodReplaced` when the pod read has another uid than the one kube-scheduler bound: a pod
    /// deleted and re-created under the same name. Only when both sides carry a uid.
    fn replaced_by(&self, view: &PodView) -> Option<BindError> {
        let expected = &self.request.uid;
        (!expected.is_empty() && !view.uid.is_empty() && view.uid != *expected).then(|| {
            BindError::PodReplaced {
                pod: self.pod_key(),
                expected: expected.clone(),
                found: view.uid.clone(),
            }
        })
    }

    fn on_target_pod(&mut self, observation: Observation) -> Step {
        let pod = self.pod_key();
        match observation {
            Observation::Pod(view) => {
                if let Some(replaced) = self.replaced_by(&view) {
                    return self.fail(replaced);
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
                if let Some(problem) = view.decision.refusal(&self.request.node) {
                    let node = self.request.node.clone();
                    return self.fail(BindError::DecisionRefused { pod, node, problem });
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
                // Our own write whose answer was lost: it landed (a pending write the node does
                // not carry was dropped above, so the node's value is the one written).
                Some((_, rule)) => {
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
        match judge_lock(&observed, &holder, &self.settings, now) {
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
            // A stalled holder is the reaper's to clear (it marks the holder failed and deletes
            // it); until then the lock stands for the binder.
            LockJudgement::Stalled(_) => self.fail(BindError::Contention {
                node,
                timeout: go_duration::format(self.settings.lock_timeout),
            }),
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
                if let Some(replaced) = self.replaced_by(&view) {
                    return self.fail(replaced);
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
            // A failed read (a lost answer, a 429 once the client's retries are spent) says
            // nothing about the Binding: read again while retries last.
            Observation::Failed(_) if self.retry_allowed() => {
                self.state = State::VerifyBinding { last };
                Step::Do(Effect::GetPod {
                    namespace: self.request.namespace.clone(),
                    name: self.request.name.clone(),
                })
            }
            Observation::Failed(read) => self.fail_unverified(BindError::BindingUnverified {
                pod,
                node,
                failure: last,
                read,
            }),
            Observation::Node(_) | Observation::Written { .. } => {
                self.fail(BindError::BindingFailed {
                    pod,
                    node,
                    failure: last,
                })
            }
        }
    }

    /// The bind fails with the pod perhaps bound (the `Binding`'s answer was lost and no read could
    /// tell). In `device-plugin` mode the lock stays, as after a success: if the pod is bound, HAMi's
    /// device plugin is about to allocate it by reading that lock, and releasing it would let a
    /// second pod go mid-allocation on the node (HAMi #781's hand-over); the reaper frees it when
    /// the pod's `bind-phase` settles, the pod ends or goes, or at expiry, and the pod's own retry
    /// takes it over. In `after-bind` mode, where no device plugin reads the lock, it is released as
    /// after any failure.
    fn fail_unverified(&mut self, error: BindError) -> Step {
        if self.settings.release_mode == ReleaseMode::DevicePlugin
            && let Some(held) = self.held.take()
        {
            self.result = Some(Err(error));
            self.fate = LockFate::HeldForDevicePlugin {
                expires_at: expiry_of(held.taken_at, self.settings.lock_timeout),
                value: held.value,
            };
            return self.announce();
        }
        self.fail(error)
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
