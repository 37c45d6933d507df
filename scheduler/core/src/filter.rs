//! The extender filter's write-and-assume protocol as a sans-IO state machine.
//!
//! [`FilterMachine`] takes one `/filter` request with node names (the pod's namespace, name and uid,
//! the [`PreparedPod`] and the offered nodes) and runs the whole transaction against the
//! [`ClusterView`]: settle old unconfirmed writes, decide, assume, write the decision onto the pod,
//! and keep the view's ledger right whatever the answer. It performs no I/O and reads no clock: like
//! the [`crate::bind::BindMachine`] it emits one [`Effect`] at a time, the driver executes it and
//! feeds back the [`Observation`] with the current time, until the machine returns a
//! [`FilterOutcome`]. The view is passed into every call and never kept, so the shell can hold it
//! behind a mutex that it never keeps across an await; the simulated cluster drives the very same
//! machine, with its faults on the same effects.
//!
//! ## The steps
//! 1. **Settle** (see *Lost answers* below): every filter write whose answer was lost at least
//!    [`UNCONFIRMED_SETTLE_AFTER`] ago is settled by reading its pod ([`Effect::GetPod`], one read
//!    per pod): a pod that does not carry the write, or is gone, drops it; one that carries it keeps
//!    it until the watch delivers it; a read that fails leaves it counted.
//! 2. **Decide**: the pod's previous contribution is taken out of the view ([`ClusterView::take`],
//!    HAMi's `TakeAndDeletePod`), then [`ClusterView::decide`] places the pod on the offered nodes.
//!    Placed: the choice is **assumed** ([`ClusterView::assume`]). Not placed (unschedulable,
//!    invalid): the previous contribution is put back ([`ClusterView::restore`]), nothing is written.
//! 3. **Write**: [`Effect::PatchPodMetadata`], one merge patch of the decision's annotations and the
//!    `hami.io/vgpu-node` label with the pod's uid (immutable, so a pod deleted and re-created under
//!    the same name is not annotated with a decision made for its predecessor).
//! 4. **Answer**: written: placed, and the decision's events (`FilteringSucceed`) are emitted. A
//!    definite refusal (409, 404, 422 or any other refusal): the assumption is undone and the
//!    previous contribution restored. No definite answer (a lost response, a timeout, a 5xx): the
//!    same, and the write is also counted as **unconfirmed**, since it may have landed. Both failures
//!    answer the extender with `failed to patch pod <ns>/<name>: <why>` and a `FilteringFailed`
//!    event.
//!
//! ## Where each rule comes from
//! - **Assume before the patch** (HAMi §4.2, steps 3 and 9): HAMi's filter records the chosen devices
//!   in its cache before it patches the pod, so a concurrent filter already sees them; the watch
//!   event carrying the annotations confirms the assumption ([`ClusterView`]).
//! - **Restore on a refusal**: the API still carries the pod's previous annotations after a refused
//!   patch, so what they held must count again. Dropping it let another pod be placed on the same
//!   devices (the simulated cluster's fault campaign: a 500 on a re-filter's patch).
//! - **Count a write whose answer was lost** until the watch shows the pod carrying it (or a later
//!   write), the pod is deleted, the pods are re-listed, or a read settles it: after a lost answer
//!   either the previous or the new annotations may be on the API, so both count. Without it, the
//!   lost patch's devices were handed to an exclusive pod while the watch was down (the 200 x 2000
//!   fault campaign, seed 149: `<pod>#unconfirmed-<n>` ledger keys, see
//!   [`ClusterView::note_unconfirmed`]).
//! - **Read it back after one minute**: a write cannot land after kube-apiserver's own request
//!   timeout (`--request-timeout`, 1m0s by default), so a read after [`UNCONFIRMED_SETTLE_AFTER`]
//!   tells for good whether it did. Without the read, lost writes that never landed held their
//!   devices for good and pods blocked by each other's stayed Pending (seed 194).
//! - **Cancellation**: the shell drops the filter's future when kube-scheduler hangs up or the
//!   extender's request timeout fires, and then calls [`FilterMachine::cancel`]. Before the patch
//!   was handed out nothing of the pod was touched yet, so the view ends as if the filter never ran;
//!   after, the patch may have landed, so it is undone and counted as unconfirmed, as for a lost
//!   answer. (Before the machine, a dropped filter left its assumption counted until the watch
//!   showed a pod carrying it, for good if the patch never landed, and lost what the pod held
//!   before.)

use crate::annotations::DEVICES_ALLOCATED;
use crate::bind::{ApiFailure, Effect, Observation};
use crate::cluster_view::{ClusterView, Taken, Unconfirmed};
use crate::decision::{EventRecord, EventType, InvalidPod, Outcome, PreparedPod};
use crate::model::PodAllocation;
use jiff::{SignedDuration, Timestamp};
use std::collections::{BTreeMap, VecDeque};

/// How long after a filter write's answer was lost the filter reads the pod to settle it: a write
/// cannot still land after kube-apiserver's own request timeout (`--request-timeout`, 1m0s by
/// default), so a read after that tells for good whether it did.
pub const UNCONFIRMED_SETTLE_AFTER: SignedDuration = SignedDuration::from_secs(60);

pub use crate::outcome::FILTERING_FAILED;

/// The pod to filter and the nodes kube-scheduler offers (`ExtenderArgs` with `NodeNames`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilterRequest {
    /// Pod namespace.
    pub namespace: String,
    /// Pod name.
    pub name: String,
    /// Pod uid (the patch's precondition); empty when unknown.
    pub uid: String,
    /// The offered node names.
    pub offered: Vec<String>,
}

impl FilterRequest {
    /// `namespace/name`, the pod's key in the view.
    pub fn pod_key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }
}

/// Why a filter failed. The text is the extender's `Error` and the `FilteringFailed` message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FilterError {
    /// The pod patch was refused or got no definite answer.
    #[error("failed to patch pod {pod}: {failure}")]
    PatchFailed {
        /// `namespace/name`.
        pod: String,
        /// The API failure.
        failure: ApiFailure,
    },
    /// The filter was cancelled (its request went away) before it finished.
    #[error("filter of pod {pod} was cancelled")]
    Cancelled {
        /// `namespace/name`.
        pod: String,
    },
}

/// What the filter answers the extender.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FilterVerdict {
    /// The pod asks for no GPU: every offered node passes, nothing is written.
    NoGpuRequest,
    /// Placed on `node`, and the pod carries the decision.
    Placed {
        /// The chosen node.
        node: String,
    },
    /// No offered node holds the pod: each rejected node with HAMi's reasons.
    Unschedulable {
        /// The extender's `FailedNodes`.
        failed_nodes: BTreeMap<String, String>,
    },
    /// The pod's requests or annotations are invalid.
    Invalid(InvalidPod),
    /// The write failed (or the filter was cancelled).
    Failed(FilterError),
}

impl FilterVerdict {
    /// The metric label (`scheduled`, `unschedulable`, `no_gpu_request`, `invalid`, `error`).
    pub fn label(&self) -> &'static str {
        match self {
            FilterVerdict::NoGpuRequest => "no_gpu_request",
            FilterVerdict::Placed { .. } => "scheduled",
            FilterVerdict::Unschedulable { .. } => "unschedulable",
            FilterVerdict::Invalid(_) => "invalid",
            FilterVerdict::Failed(_) => "error",
        }
    }
}

/// How a filter ended: the answer, and the events to emit on the pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilterOutcome {
    /// The answer.
    pub verdict: FilterVerdict,
    /// `FilteringSucceed` / `FilteringFailed` events, in order.
    pub events: Vec<EventRecord>,
}

/// What the driver does next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FilterStep {
    /// Execute this effect and call [`FilterMachine::observe`] with what happened.
    Do(Effect),
    /// The filter is over.
    Done(FilterOutcome),
}

/// The filter write in flight: what to put back if it fails.
#[derive(Debug)]
struct Pending {
    /// What the pod contributed before ([`ClusterView::take`]).
    taken: Taken,
    node: String,
    allocation: PodAllocation,
    /// The `hami.io/vgpu-devices-allocated` value written.
    allocated: String,
    /// When the patch was sent.
    sent: Timestamp,
    /// The patch itself.
    patch: Effect,
    /// The decision's events, emitted once the pod carries it.
    events: Vec<EventRecord>,
}

#[derive(Debug)]
enum State {
    /// Not started.
    Ready,
    /// Reading pod `key` to settle its due writes `writes`; `rest` are the pods still to read.
    Settling {
        key: String,
        writes: Vec<Unconfirmed>,
        rest: VecDeque<(String, Vec<Unconfirmed>)>,
    },
    /// The patch was handed out.
    Patching(Box<Pending>),
    /// Finished (or cancelled).
    Finished(FilterOutcome),
}

/// The filter's write-and-assume transaction (see the module documentation).
#[derive(Debug)]
pub struct FilterMachine {
    request: FilterRequest,
    prepared: PreparedPod,
    state: State,
}

impl FilterMachine {
    /// A filter of `request`'s pod, prepared as `prepared`.
    pub fn new(request: FilterRequest, prepared: PreparedPod) -> Self {
        FilterMachine {
            request,
            prepared,
            state: State::Ready,
        }
    }

    /// The request.
    pub fn request(&self) -> &FilterRequest {
        &self.request
    }

    /// True once the machine has returned its outcome (or was cancelled).
    pub fn is_finished(&self) -> bool {
        matches!(self.state, State::Finished(_))
    }

    /// The first step: settle due unconfirmed writes, or decide right away. Calling it again after
    /// the start does nothing but return the step in progress.
    pub fn start(&mut self, view: &mut ClusterView, now: Timestamp) -> FilterStep {
        if !matches!(self.state, State::Ready) {
            return self.current();
        }
        let mut due: VecDeque<(String, Vec<Unconfirmed>)> = VecDeque::new();
        // By pod, each pod's writes in the order they were sent: one read settles them all.
        for (key, write) in view.unconfirmed_older_than(UNCONFIRMED_SETTLE_AFTER, now) {
            match due.back_mut() {
                Some((last, writes)) if *last == key => writes.push(write),
                _ => due.push_back((key, vec![write])),
            }
        }
        self.settle_next(view, due, now)
    }

    /// Feeds back what the effect of the last [`FilterStep::Do`] did, at `now`.
    pub fn observe(
        &mut self,
        view: &mut ClusterView,
        observation: Observation,
        now: Timestamp,
    ) -> FilterStep {
        match std::mem::replace(&mut self.state, State::Ready) {
            State::Ready => self.start(view, now),
            State::Settling { key, writes, rest } => {
                let seen = match observation {
                    Observation::Pod(pod) => Some(pod.devices_allocated),
                    Observation::Failed(ApiFailure::NotFound) => Some(None),
                    // The read failed: the writes stay counted until a later filter reads again.
                    _ => None,
                };
                if let Some(seen) = seen {
                    for write in &writes {
                        view.settle_unconfirmed(&key, write, seen.as_deref());
                    }
                }
                self.settle_next(view, rest, now)
            }
            State::Patching(pending) => self.answer(view, *pending, observation),
            State::Finished(outcome) => {
                self.state = State::Finished(outcome.clone());
                FilterStep::Done(outcome)
            }
        }
    }

    /// The filter's request went away (its future was dropped). Before the patch was handed out,
    /// the view is left as if the filter never ran; once it was, the patch may have landed: the
    /// previous contribution is restored and the write counted as unconfirmed, as for a lost answer.
    /// Nothing happens after the outcome.
    pub fn cancel(&mut self, view: &mut ClusterView) {
        let cancelled = FilterOutcome {
            verdict: FilterVerdict::Failed(FilterError::Cancelled {
                pod: self.request.pod_key(),
            }),
            events: Vec::new(),
        };
        match std::mem::replace(&mut self.state, State::Finished(cancelled)) {
            State::Ready | State::Settling { .. } => {}
            State::Patching(pending) => self.undo(view, *pending, true),
            finished @ State::Finished(_) => self.state = finished,
        }
    }

    /// The step in progress (for a `start` called twice).
    fn current(&self) -> FilterStep {
        match &self.state {
            State::Settling { key, .. } => {
                let (namespace, name) = key.split_once('/').unwrap_or_default();
                FilterStep::Do(Effect::GetPod {
                    namespace: namespace.to_string(),
                    name: name.to_string(),
                })
            }
            State::Patching(pending) => FilterStep::Do(pending.patch.clone()),
            State::Finished(outcome) => FilterStep::Done(outcome.clone()),
            State::Ready => unreachable!("a started filter is never Ready"),
        }
    }

    /// Reads the next pod with due writes, or decides when none is left.
    fn settle_next(
        &mut self,
        view: &mut ClusterView,
        mut due: VecDeque<(String, Vec<Unconfirmed>)>,
        now: Timestamp,
    ) -> FilterStep {
        while let Some((key, writes)) = due.pop_front() {
            let Some((namespace, name)) = key.split_once('/') else {
                continue;
            };
            let effect = Effect::GetPod {
                namespace: namespace.to_string(),
                name: name.to_string(),
            };
            self.state = State::Settling {
                key,
                writes,
                rest: due,
            };
            return FilterStep::Do(effect);
        }
        self.decide(view, now)
    }

    /// Takes the pod's previous contribution out, decides, and assumes and patches, or restores.
    fn decide(&mut self, view: &mut ClusterView, now: Timestamp) -> FilterStep {
        let key = self.request.pod_key();
        view.learn_from_filter(&key, &self.request.uid, &self.prepared);
        let taken = view.take(&key);
        let decision = view.decide(&self.prepared, &self.request.offered, now);
        // Rendered only when the extender needs them: a placed pod's rejected nodes are not sent.
        let failed_nodes = match decision.outcome {
            Outcome::Unschedulable => decision.failed_nodes(),
            _ => BTreeMap::new(),
        };
        let verdict = match decision.outcome {
            Outcome::Scheduled {
                node, allocation, ..
            } => {
                let allocated = decision
                    .annotations
                    .get(DEVICES_ALLOCATED)
                    .cloned()
                    .unwrap_or_default();
                view.assume(
                    &key,
                    &node,
                    &allocation,
                    &allocated,
                    self.prepared.cpu_milli,
                );
                let effect = Effect::PatchPodMetadata {
                    namespace: self.request.namespace.clone(),
                    name: self.request.name.clone(),
                    uid: self.request.uid.clone(),
                    annotations: decision.annotations,
                    labels: decision.labels,
                };
                self.state = State::Patching(Box::new(Pending {
                    taken,
                    node,
                    allocation,
                    allocated,
                    sent: now,
                    patch: effect.clone(),
                    events: decision.events,
                }));
                return FilterStep::Do(effect);
            }
            Outcome::Unschedulable => FilterVerdict::Unschedulable { failed_nodes },
            Outcome::Invalid(message) => FilterVerdict::Invalid(message),
            Outcome::NoGpuRequest => FilterVerdict::NoGpuRequest,
        };
        // Not placed: the pod keeps whatever it held before (its annotations on the API).
        view.restore(&key, taken);
        self.finish(FilterOutcome {
            verdict,
            events: decision.events,
        })
    }

    /// The patch's answer.
    fn answer(
        &mut self,
        view: &mut ClusterView,
        pending: Pending,
        observation: Observation,
    ) -> FilterStep {
        let failure = match observation {
            Observation::Written { .. } => {
                return self.finish(FilterOutcome {
                    verdict: FilterVerdict::Placed { node: pending.node },
                    events: pending.events,
                });
            }
            Observation::Failed(failure) => failure,
            // Not an answer to a patch: nothing says whether it landed.
            other => ApiFailure::Indeterminate(format!("unexpected answer to a patch: {other:?}")),
        };
        let may_have_landed = matches!(failure, ApiFailure::Indeterminate(_));
        self.undo(view, pending, may_have_landed);
        let error = FilterError::PatchFailed {
            pod: self.request.pod_key(),
            failure,
        };
        let event = EventRecord {
            event_type: EventType::Warning,
            reason: FILTERING_FAILED,
            message: error.to_string(),
        };
        self.finish(FilterOutcome {
            verdict: FilterVerdict::Failed(error),
            events: vec![event],
        })
    }

    /// Undoes the assumption and puts back what the pod held; a write that may have landed stays
    /// counted as unconfirmed.
    fn undo(&self, view: &mut ClusterView, pending: Pending, may_have_landed: bool) {
        let key = self.request.pod_key();
        view.restore(&key, pending.taken);
        if may_have_landed {
            view.note_unconfirmed(
                &key,
                &pending.node,
                &pending.allocation,
                &pending.allocated,
                pending.sent,
            );
        }
    }

    fn finish(&mut self, outcome: FilterOutcome) -> FilterStep {
        self.state = State::Finished(outcome.clone());
        FilterStep::Done(outcome)
    }
}
