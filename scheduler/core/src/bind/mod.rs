//! The bind protocol and the node lock `hami.io/mutex.lock` as sans-IO state machines (spec §5).
//!
//! This module owns everything between the extender's bind request and the pod's `Binding`: the
//! [`BindMachine`] that walks HAMi's bind path for one pod, the rules that decide whether a node lock
//! stands ([`judge_lock`]), the owner-checked release of a lock ([`LockRelease`], also used by the
//! shell's lock reaper), and the errors a bind reports ([`BindError`]). It performs no I/O and reads
//! no clock: the machines emit one [`Effect`] at a time, the driver executes it and feeds back an
//! [`Observation`] together with the current time. The kube-rs shell, the tests' in-memory API and
//! the simulated cluster drive the very same machines.
//!
//! | file | owns |
//! |---|---|
//! | `effect.rs` | [`BindRequest`], [`PodView`], [`NodeLockView`], [`PodRef`], [`Effect`] (with the wire bodies), [`ApiFailure`], [`Observation`] |
//! | `lock_rules.rs` | [`judge_lock`] and its inputs and verdicts: [`LockRule`], [`ObservedLock`], [`HolderState`], [`LockJudgement`], [`MalformedSighting`]; lock expiry |
//! | `machine.rs` | [`BindMachine`], [`Step`], [`BindOutcome`], [`LockFate`], [`BindSettings`], [`ReleaseMode`], the event reasons |
//! | `release.rs` | [`LockRelease`], [`ReleaseOwner`], [`ReleaseResult`], [`ReleaseStep`] |
//! | `error.rs` | [`BindError`] |
//!
//! Go's duration text (the lock timeout in HAMi's messages) is [`crate::codec::go_duration`].
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

mod decision_check;
mod effect;
mod error;
mod lock_rules;
mod machine;
mod release;

pub use decision_check::PodDecision;
pub use effect::{ApiFailure, BindRequest, Effect, NodeLockView, Observation, PodRef, PodView};
pub use error::{BINDING_UNVERIFIED, BindError};
pub use lock_rules::{
    HolderState, LockJudgement, LockRule, MalformedSighting, ObservedLock, judge_lock,
    stalled_holder_effects,
};
pub use machine::{
    ALLOCATION_STALLED, BINDING_FAILED, BINDING_SUCCEED, BindMachine, BindOutcome, BindSettings,
    LockFate, ReleaseMode, Step,
};
pub use release::{LockRelease, ReleaseOwner, ReleaseResult, ReleaseStep};
