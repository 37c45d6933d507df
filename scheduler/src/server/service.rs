//! The scheduler service without HTTP: extender filter and bind, the webhook review, the lock reaper,
//! and the feed from the watches. Generic over [`ClusterApi`], so it runs against kube-rs, the tests'
//! in-memory API, or the simulated cluster.
//!
//! **Filter** (HAMi §4.2): no GPU request passes every node untouched; otherwise wait for the watches
//! to sync and drive the [`FilterMachine`] (settle old lost writes, decide, assume, patch the pod,
//! restore or count the write as unconfirmed on a failure) over [`ClusterApi::execute`], then emit
//! HAMi's `FilteringSucceed` / `FilteringFailed` events it returns. A filter whose future is dropped
//! mid-way is cancelled by a drop guard ([`FilterMachine::cancel`]). With `Nodes` instead of
//! `NodeNames`, HAMi's simulation path runs: usage from the given nodes' annotations only, no
//! writes, no events, `Nodes:[best]`.
//!
//! **Bind**: one task per request (it finishes even if kube-scheduler hangs up, and graceful
//! shutdown waits for it), binds to one node serialised inside this process so that they never
//! contend with each other, the [`BindMachine`] driven over [`ClusterApi::execute`].
//!
//! **Reaper**: woken by every watch event and at the next lock expiry (a watch, not a poll loop), it
//! judges each node lock by [`judge_lock`] with the holder from the pod cache (or, when the cache
//! has none, a live read), and releases the locks that a rule frees, by exact value and
//! resourceVersion. Nodes with a bind in flight in this process are left to that bind.
//!
//! Deliberate differences from HAMi: the simulation path answers a pod without GPU requests with
//! every given node (HAMi answers no node); binds to one node are queued in-process (HAMi lets them
//! contend) for at most [`SchedulerConfig::bind_wait`].

use super::cluster::ClusterApi;
use super::extender::{
    ExtenderArgs, ExtenderBindingArgs, ExtenderBindingResult, ExtenderFilterResult,
};
use super::leader::Leadership;
use super::metrics::Metrics;
use super::review::{ReviewError, review};
use crate::admission::WebhookSettings;
use crate::bind::{
    ApiFailure, BindMachine, BindRequest, BindSettings, Effect, HolderState, LockFate,
    LockJudgement, LockRelease, Observation, ObservedLock, PodRef, ReleaseOwner, ReleaseResult,
    ReleaseStep, Step, judge_lock, stalled_holder_effects,
};
use crate::cluster_view::{ClusterView, PodScope, ViewConfig};
use crate::codec::{go_duration, lock};
use crate::decision::{self, Decision, EventRecord, Outcome, PreparedPod, SchedulerSettings};
use crate::filter::{FilterMachine, FilterOutcome, FilterRequest, FilterStep, FilterVerdict};
use crate::lease::Role;
use crate::ledger::Ledger;
use crate::registry::Registry;
use jiff::Timestamp;
use k8s_openapi::api::core::v1::{Node, Pod};
use serde_json::Value;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};
use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;

use tokio_util::task::TaskTracker;

/// How long after a filter write's answer was lost the filter reads the pod to settle it (the
/// filter machine's rule, re-exported where the shell's callers have always found it).
pub use crate::filter::UNCONFIRMED_SETTLE_AFTER;

/// Cancels the filter machine if the filter's future is dropped before the machine finished (a
/// no-op once it has): see [`FilterMachine::cancel`].
#[derive(Debug)]
struct CancelOnDrop<'a> {
    view: &'a Mutex<ClusterView>,
    machine: FilterMachine,
}

impl Drop for CancelOnDrop<'_> {
    fn drop(&mut self) {
        if !self.machine.is_finished() {
            self.machine.cancel(&mut lock_ignoring_poison(self.view));
        }
    }
}

/// The service's settings.
#[derive(Debug, Clone)]
pub struct SchedulerConfig {
    /// `--scheduler-name`: the routing target and the events' source.
    pub scheduler_name: String,
    /// Policies and request defaults.
    pub decision: SchedulerSettings,
    /// Webhook settings.
    pub webhook: WebhookSettings,
    /// Bind protocol settings.
    pub bind: BindSettings,
    /// How long `/filter` waits for the watches to sync (HAMi waits without a bound).
    pub sync_wait: Duration,
    /// How long a bind waits for another bind to the same node in this process.
    pub bind_wait: Duration,
    /// Which pods the pod watch delivers: every pod (host CPU tracked for the `fragmentation`
    /// policy) or only GPU pods (see [`PodScope`]).
    pub pod_scope: PodScope,
    /// The filter places pods without GPUs too (they reach it when the webhook's CPU-only route
    /// sends them, `--route-cpu-pods`): where their CPU strands the fewest GPUs
    /// ([`ClusterView::place_cpu_pod`]). Off: they pass every node untouched, as in HAMi.
    pub place_cpu_pods: bool,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        SchedulerConfig {
            scheduler_name: "sliceguard-scheduler".into(),
            decision: SchedulerSettings::default(),
            webhook: WebhookSettings::default(),
            bind: BindSettings::default(),
            sync_wait: Duration::from_secs(25),
            bind_wait: Duration::from_secs(20),
            pod_scope: PodScope::All,
            place_cpu_pods: false,
        }
    }
}

/// The clock the service reads (tests and the simulation pass a virtual one).
pub type Clock = Arc<dyn Fn() -> Timestamp + Send + Sync>;

/// The system clock.
pub fn system_clock() -> Clock {
    Arc::new(Timestamp::now)
}

/// The scheduler service.
pub struct Scheduler<C> {
    cluster: C,
    config: SchedulerConfig,
    view: Mutex<ClusterView>,
    synced: watch::Sender<bool>,
    node_gates: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    binds: TaskTracker,
    reaper_wake: Notify,
    metrics: Metrics,
    clock: Clock,
    leadership: Leadership,
}

impl<C> std::fmt::Debug for Scheduler<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scheduler")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

fn lock_ignoring_poison<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl<C: ClusterApi> Scheduler<C> {
    /// A service over `cluster`.
    pub fn new(cluster: C, config: SchedulerConfig, clock: Clock) -> Self {
        let view = ClusterView::configured(ViewConfig {
            settings: config.decision.clone(),
            pods: config.pod_scope,
        });
        Scheduler {
            cluster,
            config,
            view: Mutex::new(view),
            synced: watch::Sender::new(false),
            node_gates: Mutex::new(HashMap::new()),
            binds: TaskTracker::new(),
            reaper_wake: Notify::new(),
            metrics: Metrics::new(),
            clock,
            leadership: Leadership::unelected(),
        }
    }

    /// The same service elected on a Lease: a standby until it wins a round
    /// ([`Scheduler::lease_round`]).
    pub fn with_leader_election(mut self, settings: crate::lease::LeaseSettings) -> Self {
        self.leadership = Leadership::elected(settings);
        self
    }

    /// This replica's leadership.
    pub fn leadership(&self) -> &Leadership {
        &self.leadership
    }

    /// True when this replica may write now (always, without election).
    pub fn leads(&self) -> bool {
        self.leadership.leads(self.now())
    }

    /// True when this replica takes new `/filter` and `/bind` work now: it leads and is not
    /// stepping down for a kube-scheduler leading in another pod ([`Leadership::decides`]).
    pub fn decides(&self) -> bool {
        self.leadership.decides(self.now())
    }

    /// A term begins: the view is dropped, so that no decision is made until the watches have
    /// listed nodes and pods afresh (the previous leader may have changed anything meanwhile); the
    /// learned workload is kept ([`ClusterView::next_term`]).
    pub fn begin_term(&self) {
        self.view().next_term();
        self.synced.send_replace(false);
        self.leadership.count_term();
        tracing::info!("new leadership term: the view is rebuilt from a fresh list");
    }

    /// Executes an effect, refusing every write (`Rejected`, never sent) unless this replica leads
    /// at this instant: the check before every write that keeps a deposed leader from writing.
    async fn execute(&self, effect: &Effect) -> Observation {
        let reads = matches!(effect, Effect::GetPod { .. } | Effect::GetNode { .. });
        let now = self.now();
        if !reads && !self.leadership.leads(now) {
            return Observation::Failed(ApiFailure::Rejected {
                code: 503,
                message: self.leadership.not_leader(now),
            });
        }
        // A write, with the client's retries and backoff (429, 503, 504), may not outlast the term
        // it began in: at the term's end it is dropped between attempts and counts as
        // indeterminate (it may have landed), so no retry is sent on stale leadership.
        if let (false, Some(Role::Leader { until })) = (reads, self.leadership.role(now)) {
            let left = Duration::try_from(until.duration_since(now)).unwrap_or(Duration::ZERO);
            return match tokio::time::timeout(left, self.cluster.execute(effect)).await {
                Ok(observation) => observation,
                Err(_) => Observation::Failed(ApiFailure::Indeterminate(format!(
                    "{} outlasted this replica's leadership term (ended {until})",
                    effect.kind()
                ))),
            };
        }
        self.cluster.execute(effect).await
    }

    /// The cluster API.
    pub fn cluster(&self) -> &C {
        &self.cluster
    }

    /// The settings.
    pub fn config(&self) -> &SchedulerConfig {
        &self.config
    }

    /// The metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    pub(crate) fn now(&self) -> Timestamp {
        (self.clock)()
    }

    fn view(&self) -> MutexGuard<'_, ClusterView> {
        lock_ignoring_poison(&self.view)
    }

    /// Reads the cluster view (for diagnostics and tests).
    pub fn with_view<R>(&self, f: impl FnOnce(&ClusterView) -> R) -> R {
        f(&self.view())
    }

    // ---- the watch feed ----

    fn after_change(&self, view: &ClusterView) {
        self.metrics.locks_held.set(view.locks().len() as i64);
        if view.is_synced() {
            self.synced.send_replace(true);
        }
        self.reaper_wake.notify_one();
    }

    /// A node added or changed.
    pub fn apply_node(&self, node: &Node) {
        let now = self.now();
        let mut view = self.view();
        if let Err(problem) = view.apply_node(node, now) {
            tracing::debug!(node = node.metadata.name.as_deref().unwrap_or(""), %problem, "node not registered");
        }
        self.after_change(&view);
    }

    /// A node deleted.
    pub fn delete_node(&self, node: &Node) {
        let mut view = self.view();
        view.delete_node(node.metadata.name.as_deref().unwrap_or_default());
        self.after_change(&view);
    }

    /// The node watch listed everything.
    pub fn replace_nodes(&self, nodes: &[Node]) {
        self.begin_node_relist();
        for node in nodes {
            self.relist_node(node);
        }
        self.finish_node_relist();
    }

    /// The node watch starts a (re)list (see [`ClusterView::begin_node_relist`]).
    pub fn begin_node_relist(&self) {
        self.view().begin_node_relist();
    }

    /// One node of a (re)list, applied as it arrives.
    pub fn relist_node(&self, node: &Node) {
        let now = self.now();
        if let Err(problem) = self.view().relist_node(node, now) {
            tracing::debug!(node = node.metadata.name.as_deref().unwrap_or(""), %problem, "node not registered");
        }
    }

    /// The node (re)list is complete.
    pub fn finish_node_relist(&self) {
        let mut view = self.view();
        view.finish_node_relist();
        tracing::info!(registered = view.registry().len(), "node list synced");
        self.after_change(&view);
    }

    /// A pod added or changed.
    pub fn apply_pod(&self, pod: &Pod) {
        let mut view = self.view();
        if let Err(e) = view.apply_pod(pod) {
            tracing::warn!(error = %e, "pod allocation ignored");
        }
        self.after_change(&view);
    }

    /// A pod deleted.
    pub fn delete_pod(&self, pod: &Pod) {
        let mut view = self.view();
        view.delete_pod(pod);
        self.after_change(&view);
    }

    /// The pod watch listed everything.
    pub fn replace_pods(&self, pods: &[Pod]) {
        self.begin_pod_relist();
        for pod in pods {
            self.relist_pod(pod);
        }
        self.finish_pod_relist();
    }

    /// The pod watch starts a (re)list (see [`ClusterView::begin_pod_relist`]).
    pub fn begin_pod_relist(&self) {
        self.view().begin_pod_relist();
    }

    /// One pod of a (re)list, applied as it arrives.
    pub fn relist_pod(&self, pod: &Pod) {
        if let Err(e) = self.view().relist_pod(pod) {
            tracing::warn!(error = %e, "pod allocation ignored");
        }
    }

    /// The pod (re)list is complete.
    pub fn finish_pod_relist(&self) {
        let mut view = self.view();
        view.finish_pod_relist();
        tracing::info!(counted = view.ledger().pod_count(), "pod list synced");
        self.after_change(&view);
    }

    /// True once both watches have listed everything.
    pub fn is_ready(&self) -> bool {
        *self.synced.borrow()
    }

    /// Which watches have synced: (nodes, pods).
    pub fn sync_state(&self) -> (bool, bool) {
        self.view().sync_state()
    }

    async fn wait_synced(&self) -> bool {
        let mut rx = self.synced.subscribe();
        tokio::time::timeout(self.config.sync_wait, rx.wait_for(|s| *s))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    // ---- webhook ----

    /// Answers an AdmissionReview body.
    pub fn admit(&self, body: &[u8]) -> Result<Value, ReviewError> {
        match review(body, &self.config.webhook) {
            Ok((answer, verdict)) => {
                self.metrics.review(verdict.as_str());
                Ok(answer)
            }
            Err(e) => {
                self.metrics.review("malformed");
                Err(e)
            }
        }
    }

    // ---- filter ----

    /// The extender's filter.
    pub async fn filter(&self, args: ExtenderArgs) -> ExtenderFilterResult {
        let started = Instant::now();
        let (result, outcome) = self.filter_inner(args).await;
        self.metrics
            .filter_duration
            .observe(started.elapsed().as_secs_f64());
        self.metrics.decision(outcome);
        result
    }

    async fn emit(&self, pod: &Pod, events: &[EventRecord]) {
        let pod_ref = PodRef::of(pod);
        for event in events {
            let effect = Effect::EmitEvent {
                pod: pod_ref.clone(),
                event: event.clone(),
            };
            if let Observation::Failed(e) = self.execute(&effect).await {
                tracing::debug!(reason = event.reason, error = %e, "event not recorded");
            }
        }
    }

    async fn filter_inner(&self, args: ExtenderArgs) -> (ExtenderFilterResult, &'static str) {
        let Some(pod) = args.pod else {
            return (
                ExtenderFilterResult::error("extender args missing pod"),
                "error",
            );
        };
        if let Some(nodes) = args.nodes {
            return self.filter_simulation(&pod, nodes);
        }
        if !self.decides() {
            let message = self.leadership.not_leader(self.now());
            return (ExtenderFilterResult::error(message), "standby");
        }
        let node_names = args.node_names.unwrap_or_default();
        let prepared = match decision::prepare(&pod, &self.config.decision) {
            Ok(p) => p,
            Err(error) => {
                let message = error.to_string();
                let name = pod.metadata.name.as_deref().unwrap_or_default();
                let decision = Decision::invalid(name, error);
                self.emit(&pod, &decision.events).await;
                return (ExtenderFilterResult::error(message), "invalid");
            }
        };
        if !prepared.request.has_gpu_request() {
            if self.config.place_cpu_pods {
                return self.filter_cpu_pod(&pod, &prepared, node_names).await;
            }
            let result = ExtenderFilterResult {
                node_names: Some(node_names),
                ..Default::default()
            };
            return (result, "no_gpu_request");
        }
        if !self.wait_synced().await {
            return (self.not_synced(), "error");
        }
        let PodRef {
            namespace,
            name,
            uid,
        } = PodRef::of(&pod);
        let request = FilterRequest {
            namespace,
            name,
            uid,
            offered: node_names.clone(),
        };
        // If this future is dropped (kube-scheduler hung up, the request timed out) while the
        // machine is between two effects, the guard cancels it so that the view stays right.
        let mut filter = CancelOnDrop {
            view: &self.view,
            machine: FilterMachine::new(request, prepared),
        };
        let outcome = self.drive_filter(&mut filter.machine).await;
        drop(filter);
        let label = outcome.verdict.label();
        self.emit(&pod, &outcome.events).await;
        let result = match outcome.verdict {
            FilterVerdict::Placed { node } => ExtenderFilterResult {
                node_names: Some(vec![node]),
                ..Default::default()
            },
            FilterVerdict::Unschedulable { failed_nodes } => ExtenderFilterResult {
                failed_nodes: Some(failed_nodes),
                ..Default::default()
            },
            FilterVerdict::NoGpuRequest => ExtenderFilterResult {
                node_names: Some(node_names),
                ..Default::default()
            },
            FilterVerdict::Invalid(error) => ExtenderFilterResult::error(error.to_string()),
            FilterVerdict::Failed(error) => ExtenderFilterResult::error(error.to_string()),
        };
        (result, label)
    }

    /// The answer while the watches have not synced within `sync_wait`.
    fn not_synced(&self) -> ExtenderFilterResult {
        let (nodes, pods) = self.sync_state();
        ExtenderFilterResult::error(format!(
            "scheduler cache not synced after {}: nodes synced {nodes}, pods synced {pods}",
            go_duration::format(
                jiff::SignedDuration::try_from(self.config.sync_wait).unwrap_or_default()
            )
        ))
    }

    /// A pod without GPUs routed here (`place_cpu_pods`): the one node where its CPU strands the
    /// fewest GPUs among those offered; no annotation is written and no event emitted.
    async fn filter_cpu_pod(
        &self,
        pod: &Pod,
        prepared: &PreparedPod,
        node_names: Vec<String>,
    ) -> (ExtenderFilterResult, &'static str) {
        if !self.wait_synced().await {
            return (self.not_synced(), "error");
        }
        let key = crate::ledger::pod_key(pod);
        let chosen = self.view().place_cpu_pod(&key, prepared, &node_names);
        match chosen {
            Some(node) => {
                tracing::debug!(pod = %key, %node, "CPU-only pod placed");
                let result = ExtenderFilterResult {
                    node_names: Some(vec![node]),
                    ..Default::default()
                };
                (result, "cpu_placed")
            }
            None => {
                let result = ExtenderFilterResult {
                    node_names: Some(node_names),
                    ..Default::default()
                };
                (result, "no_gpu_request")
            }
        }
    }

    /// Runs the filter machine to its outcome: each effect through [`ClusterApi::execute`], the view
    /// locked only inside the machine's calls, never across an await.
    async fn drive_filter(&self, machine: &mut FilterMachine) -> FilterOutcome {
        let now = self.now();
        let mut step = machine.start(&mut self.view(), now);
        loop {
            match step {
                FilterStep::Do(effect) => {
                    let observation = self.execute(&effect).await;
                    tracing::trace!(pod = %machine.request().pod_key(), effect = effect.kind(), ?observation, "filter step");
                    let now = self.now();
                    step = machine.observe(&mut self.view(), observation, now);
                }
                FilterStep::Done(outcome) => {
                    if let FilterVerdict::Failed(error) = &outcome.verdict {
                        tracing::debug!(pod = %machine.request().pod_key(), %error, "filter failed");
                    }
                    return outcome;
                }
            }
        }
    }

    fn filter_simulation(
        &self,
        pod: &Pod,
        nodes: Vec<Node>,
    ) -> (ExtenderFilterResult, &'static str) {
        let mut registry = Registry::new();
        for node in &nodes {
            // An unregistered node gets HAMi's `node unregistered` from the decision.
            let _ = registry.upsert_node(node);
        }
        let names: Vec<String> = nodes
            .iter()
            .filter_map(|n| n.metadata.name.clone())
            .collect();
        let decision = decision::filter(
            decision::Fleet::scanned(&registry, &Ledger::new()),
            &self.config.decision,
            pod,
            &names,
            self.now(),
        );
        match &decision.outcome {
            Outcome::Scheduled { node, .. } => {
                let best: Vec<Node> = nodes
                    .into_iter()
                    .filter(|n| n.metadata.name.as_deref() == Some(node.as_str()))
                    .take(1)
                    .collect();
                let failed = decision.failed_nodes();
                let result = ExtenderFilterResult {
                    nodes: Some(best),
                    failed_nodes: (!failed.is_empty()).then_some(failed),
                    ..Default::default()
                };
                (result, "scheduled")
            }
            Outcome::Unschedulable => (
                ExtenderFilterResult {
                    nodes: Some(Vec::new()),
                    failed_nodes: Some(decision.failed_nodes()),
                    ..Default::default()
                },
                "unschedulable",
            ),
            Outcome::Invalid(error) => (ExtenderFilterResult::error(error.to_string()), "invalid"),
            Outcome::NoGpuRequest => (
                ExtenderFilterResult {
                    nodes: Some(nodes),
                    ..Default::default()
                },
                "no_gpu_request",
            ),
        }
    }

    // ---- bind ----

    fn node_gate(&self, node: &str) -> Arc<tokio::sync::Mutex<()>> {
        lock_ignoring_poison(&self.node_gates)
            .entry(node.to_string())
            .or_default()
            .clone()
    }

    /// The extender's bind. The bind runs in its own task, tracked for graceful shutdown. When this
    /// future is dropped (kube-scheduler hung up or timed out), the task stops at its next effect
    /// boundary ([`BindMachine::abandon`]): before the `Binding` it releases what it holds and ends.
    pub async fn bind(self: &Arc<Self>, args: ExtenderBindingArgs) -> ExtenderBindingResult {
        let this = Arc::clone(self);
        let caller_gone = CancellationToken::new();
        let _cancel_when_dropped = caller_gone.clone().drop_guard();
        let task = self
            .binds
            .spawn(async move { this.run_bind(args, caller_gone).await });
        match task.await {
            Ok(result) => result,
            Err(e) => ExtenderBindingResult {
                error: format!("bind task failed: {e}"),
            },
        }
    }

    /// Stops accepting binds and waits up to `grace` for those in flight; true when all finished.
    pub async fn drain_binds(&self, grace: Duration) -> bool {
        self.binds.close();
        tokio::time::timeout(grace, self.binds.wait()).await.is_ok()
    }

    /// Binds in flight.
    pub fn binds_in_flight(&self) -> usize {
        self.binds.len()
    }

    /// Counts as a bind in flight until dropped (tests of what waits for binds).
    #[cfg(test)]
    pub(crate) fn bind_in_flight(&self) -> tokio_util::task::task_tracker::TaskTrackerToken {
        self.binds.token()
    }

    async fn drive(
        &self,
        machine: &mut BindMachine,
        caller_gone: &CancellationToken,
    ) -> crate::bind::BindOutcome {
        let mut step = machine.start(self.now());
        let mut abandoned = false;
        loop {
            match step {
                Step::Do(effect) => {
                    if !abandoned && caller_gone.is_cancelled() {
                        abandoned = true;
                        if let Some(next) = machine.abandon() {
                            tracing::info!(pod = %machine.request().pod_key(), before = effect.kind(), "bind abandoned by its caller");
                            step = next;
                            continue;
                        }
                    }
                    let observation = self.execute(&effect).await;
                    tracing::trace!(pod = %machine.request().pod_key(), effect = effect.kind(), ?observation, "bind step");
                    step = machine.observe(observation, self.now());
                }
                Step::Done(outcome) => return outcome,
            }
        }
    }

    async fn run_bind(
        &self,
        args: ExtenderBindingArgs,
        caller_gone: CancellationToken,
    ) -> ExtenderBindingResult {
        let started = Instant::now();
        let request = BindRequest {
            namespace: args.pod_namespace,
            name: args.pod_name,
            uid: args.pod_uid,
            node: args.node,
        };
        if !self.decides() {
            self.metrics.bind_outcome("standby");
            return ExtenderBindingResult {
                error: self.leadership.not_leader(self.now()),
            };
        }
        let gate = self.node_gate(&request.node);
        let waited = tokio::select! {
            waited = tokio::time::timeout(self.config.bind_wait, gate.lock_owned()) => waited,
            () = caller_gone.cancelled() => {
                self.metrics.bind_outcome("abandoned");
                return ExtenderBindingResult {
                    error: format!(
                        "bind of pod {} to node {} abandoned: the caller went away while it waited for the node",
                        request.pod_key(),
                        request.node
                    ),
                };
            }
        };
        let Ok(_turn) = waited else {
            self.metrics.bind_outcome("contention");
            self.metrics.lock_contentions.inc();
            return ExtenderBindingResult {
                error: format!(
                    "timed out after {} waiting for node {} to be unlocked: node lock contention",
                    go_duration::format(
                        jiff::SignedDuration::try_from(self.config.bind_wait).unwrap_or_default()
                    ),
                    request.node
                ),
            };
        };
        let memory = self.view().sighting(&request.node);
        let mut machine = BindMachine::new(request.clone(), self.config.bind.clone(), memory);
        let outcome = self.drive(&mut machine, &caller_gone).await;

        self.metrics
            .bind_duration
            .observe(started.elapsed().as_secs_f64());
        if outcome.acquired {
            self.metrics.lock_acquisitions.inc();
        }
        if let Some(rule) = outcome.takeover {
            self.metrics.takeover(rule.as_str());
        }
        if outcome.lock == LockFate::Released {
            self.metrics.release("binder");
        }
        if let Some(sighting) = &outcome.malformed {
            self.view().note_sighting(sighting);
        }
        for warning in &outcome.warnings {
            tracing::warn!(pod = %request.pod_key(), %warning, "bind");
        }
        match &outcome.result {
            Ok(()) => {
                self.metrics.bind_outcome("bound");
                tracing::info!(pod = %request.pod_key(), node = %request.node, lock = %outcome.lock, "bound");
                ExtenderBindingResult::default()
            }
            Err(error) => {
                self.metrics.bind_outcome(error.kind());
                if error.is_contention() {
                    self.metrics.lock_contentions.inc();
                }
                if error.kind() == "pod_gone" {
                    // The pod is gone: nothing of it counts any more. (HAMi also drops the assumption
                    // when the node cannot be read; sliceguard keeps it, because the pod's annotations
                    // stay on the API and count until the pod is filtered again or deleted.)
                    self.view().unassume(&request.pod_key());
                }
                tracing::info!(pod = %request.pod_key(), node = %request.node, %error, lock = %outcome.lock, "bind failed");
                ExtenderBindingResult {
                    error: error.to_string(),
                }
            }
        }
    }

    // ---- lock reaper ----

    /// One pass over the node locks: releases those a rule frees; returns the next instant at which
    /// a standing lock expires.
    pub async fn reap_once(&self) -> Option<Timestamp> {
        if !self.is_ready() || !self.leads() {
            return None;
        }
        let locks: Vec<(String, crate::cluster_view::SeenLock)> = self
            .view()
            .locks()
            .iter()
            .map(|(n, s)| (n.clone(), s.clone()))
            .collect();
        let mut next: Option<Timestamp> = None;
        for (node, seen) in locks {
            let gate = self.node_gate(&node);
            let Ok(_turn) = gate.try_lock_owned() else {
                continue; // a bind in flight here decides this lock's fate
            };
            let now = self.now();
            let mut holder = match lock::parse(&seen.raw).ok().and_then(|v| v.holder) {
                Some(h) => self
                    .view()
                    .pod(&format!("{}/{}", h.namespace, h.name))
                    .cloned()
                    .map_or(HolderState::Unknown, HolderState::Present),
                None => HolderState::Unknown,
            };
            let observed = ObservedLock {
                node: &node,
                raw: &seen.raw,
                first_seen: seen.first_seen,
            };
            loop {
                match judge_lock(&observed, &holder, &self.config.bind, now) {
                    LockJudgement::Stalled(h) => {
                        let HolderState::Present(view) = &holder else {
                            break; // judged from a holder that was read: cannot happen
                        };
                        let pod = PodRef {
                            namespace: h.namespace.clone(),
                            name: h.name.clone(),
                            uid: view.uid.clone(),
                        };
                        if !self.clear_stalled_holder(&node, &pod, now).await {
                            break; // retried on the next pass
                        }
                        holder = HolderState::Gone;
                    }
                    LockJudgement::Stands { until } => {
                        next = Some(next.map_or(until, |n| n.min(until)));
                        break;
                    }
                    LockJudgement::NeedHolder(h) => {
                        let effect = Effect::GetPod {
                            namespace: h.namespace.clone(),
                            name: h.name.clone(),
                        };
                        holder = match self.execute(&effect).await {
                            Observation::Pod(p) => HolderState::Present(p),
                            Observation::Failed(ApiFailure::NotFound) => HolderState::Gone,
                            other => {
                                tracing::debug!(%node, ?other, "lock holder unreadable; retry on the next event");
                                break;
                            }
                        };
                    }
                    LockJudgement::Free(rule) => {
                        let mut release = LockRelease::new(
                            node.clone(),
                            ReleaseOwner::Value(seen.raw.clone()),
                            seen.resource_version.clone(),
                            self.config.bind.max_retries,
                        );
                        let mut step = release.start();
                        let result = loop {
                            match step {
                                ReleaseStep::Do(effect) => {
                                    step = release.observe(self.execute(&effect).await)
                                }
                                ReleaseStep::Done(result) => break result,
                            }
                        };
                        if result == ReleaseResult::Released {
                            self.metrics.release("reaper");
                        }
                        tracing::info!(%node, lock = %seen.raw, rule = rule.as_str(), ?result, "lock reaper");
                        break;
                    }
                }
            }
        }
        next
    }

    /// The reaper's answer to [`LockJudgement::Stalled`]: marks the holder `bind-phase: failed` (an
    /// Allocate that still comes then fails rather than serve devices), records an
    /// `AllocationStalled` event, and deletes the holder with its uid as precondition. True when the
    /// holder is gone (deleted now, or already).
    async fn clear_stalled_holder(&self, node: &str, pod: &PodRef, now: Timestamp) -> bool {
        let key = format!("{}/{}", pod.namespace, pod.name);
        for effect in stalled_holder_effects(node, pod, &self.config.bind) {
            match self.execute(&effect).await {
                _ if matches!(effect, Effect::EmitEvent { .. }) => {}
                Observation::Written { .. } => {}
                Observation::Failed(ApiFailure::NotFound) => break,
                other => {
                    tracing::warn!(%node, pod = %key, effect = effect.kind(), ?other, "cannot clear a stalled lock holder");
                    return false;
                }
            }
        }
        tracing::warn!(%node, pod = %key, %now, "deleted a lock holder whose allocation stalled");
        self.metrics.release("stalled");
        true
    }

    /// Runs the reaper until `shutdown`: a pass on every watch event and at the next expiry.
    pub async fn run_reaper(self: Arc<Self>, shutdown: CancellationToken) {
        loop {
            let next = self.reap_once().await;
            let sleep = next
                .map(|at| {
                    let wait = at.duration_since(self.now());
                    Duration::try_from(wait).unwrap_or(Duration::ZERO)
                })
                .unwrap_or(Duration::from_secs(3600))
                .max(Duration::from_millis(100));
            tokio::select! {
                () = self.reaper_wake.notified() => {}
                () = tokio::time::sleep(sleep) => {}
                () = shutdown.cancelled() => return,
            }
        }
    }
}
