//! An in-memory Kubernetes API for driving the sans-IO bind machine: nodes and pods with
//! resourceVersions and real precondition semantics (409 on a stale resourceVersion, 404 on a missing
//! object, uid and already-bound checks on `Binding`), a scripted fault plan, hooks that change the
//! cluster between two effects, a virtual clock, and a trace of every effect.
#![allow(dead_code)]

use jiff::{SignedDuration, Timestamp};
use sliceguard_core::annotations::{BIND_PHASE, NODE_LOCK};
use sliceguard_core::bind::{
    ApiFailure, BindMachine, BindOutcome, BindRequest, BindSettings, Effect, HolderState,
    LockJudgement, LockRelease, MalformedSighting, NodeLockView, Observation, ObservedLock,
    PodDecision, PodRef, PodView, ReleaseMode, ReleaseOwner, ReleaseResult, Step, judge_lock,
    stalled_holder_effects,
};
use sliceguard_core::decision::EventRecord;
use std::collections::BTreeMap;

/// A node in the fake API.
#[derive(Debug, Clone, Default)]
pub struct FakeNode {
    pub resource_version: u64,
    pub annotations: BTreeMap<String, String>,
}

/// A pod in the fake API.
#[derive(Debug, Clone, Default)]
pub struct FakePod {
    pub uid: String,
    pub node_name: Option<String>,
    pub phase: Option<String>,
    pub deleting: bool,
    pub annotations: BTreeMap<String, String>,
    pub labels: BTreeMap<String, String>,
    pub resource_version: u64,
    /// The filter's decision as the pod carries it (the fake pods have no containers, so it is
    /// set directly; `PodDecision::of` has its own tests).
    pub decision: PodDecision,
}

/// What a scripted fault does to the effect it hits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultAction {
    /// Answer 409 without applying.
    Conflict,
    /// Answer 5xx / no answer, without applying.
    Unavailable,
    /// Apply, then lose the answer.
    LostAfterApply,
    /// Answer 400 without applying.
    Rejected,
}

/// A fault on the `nth` (0-based) effect of kind `kind` (`Effect::kind()`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fault {
    pub kind: &'static str,
    pub nth: usize,
    pub action: FaultAction,
}

/// A change to the cluster made by someone else right before the `index`-th effect (0-based,
/// counted over the whole life of the fake).
pub type Hook = Box<dyn FnMut(&mut FakeCluster, usize, &Effect) + Send>;

/// The fake API.
#[derive(Default)]
pub struct FakeCluster {
    pub nodes: BTreeMap<String, FakeNode>,
    pub pods: BTreeMap<String, FakePod>,
    pub events: Vec<(String, EventRecord)>,
    pub bindings: Vec<(String, String)>,
    pub faults: Vec<Fault>,
    pub trace: Vec<Effect>,
    pub now: Timestamp,
    pub tick: SignedDuration,
    next_rv: u64,
    seen: BTreeMap<&'static str, usize>,
    hooks: Vec<Hook>,
}

impl std::fmt::Debug for FakeCluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeCluster")
            .field("nodes", &self.nodes)
            .field("pods", &self.pods)
            .field("trace", &self.trace)
            .finish()
    }
}

pub fn t(s: &str) -> Timestamp {
    s.parse().unwrap()
}

pub const T0: &str = "2025-06-01T12:00:00Z";

impl FakeCluster {
    /// A cluster with nodes `names` and a clock at [`T0`] that advances 10 ms per effect.
    pub fn with_nodes(names: &[&str]) -> Self {
        let mut c = FakeCluster {
            now: t(T0),
            tick: SignedDuration::from_millis(10),
            next_rv: 100,
            ..Default::default()
        };
        for n in names {
            c.add_node(n);
        }
        c
    }

    fn rv(&mut self) -> u64 {
        self.next_rv += 1;
        self.next_rv
    }

    pub fn add_node(&mut self, name: &str) {
        let rv = self.rv();
        self.nodes.insert(
            name.to_string(),
            FakeNode {
                resource_version: rv,
                annotations: BTreeMap::new(),
            },
        );
    }

    /// Adds a pending pod `ns/name` with uid `uid-<name>`.
    pub fn add_pod(&mut self, ns: &str, name: &str) {
        let rv = self.rv();
        self.pods.insert(
            format!("{ns}/{name}"),
            FakePod {
                uid: format!("uid-{name}"),
                resource_version: rv,
                ..Default::default()
            },
        );
    }

    pub fn pod(&self, key: &str) -> &FakePod {
        &self.pods[key]
    }

    pub fn pod_mut(&mut self, key: &str) -> &mut FakePod {
        self.pods.get_mut(key).unwrap()
    }

    /// The lock value on a node (None when absent or when the node is gone).
    pub fn lock(&self, node: &str) -> Option<String> {
        self.nodes
            .get(node)
            .and_then(|n| n.annotations.get(NODE_LOCK).cloned())
    }

    /// Sets a lock value directly (someone else's write); bumps the resourceVersion.
    pub fn set_lock(&mut self, node: &str, value: &str) {
        let rv = self.rv();
        let n = self.nodes.get_mut(node).unwrap();
        n.annotations.insert(NODE_LOCK.into(), value.into());
        n.resource_version = rv;
    }

    /// Touches a node (another writer, e.g. a kubelet status update): bumps its resourceVersion.
    pub fn touch_node(&mut self, node: &str) {
        let rv = self.rv();
        if let Some(n) = self.nodes.get_mut(node) {
            n.resource_version = rv;
        }
    }

    pub fn request(&self, ns: &str, name: &str, node: &str) -> BindRequest {
        BindRequest {
            namespace: ns.into(),
            name: name.into(),
            uid: self
                .pods
                .get(&format!("{ns}/{name}"))
                .map(|p| p.uid.clone())
                .unwrap_or_default(),
            node: node.into(),
        }
    }

    pub fn on_effect(
        &mut self,
        hook: impl FnMut(&mut FakeCluster, usize, &Effect) + Send + 'static,
    ) {
        self.hooks.push(Box::new(hook));
    }

    pub fn fault(&mut self, kind: &'static str, nth: usize, action: FaultAction) {
        self.faults.push(Fault { kind, nth, action });
    }

    /// Number of effects of `kind` executed so far.
    pub fn count(&self, kind: &str) -> usize {
        self.trace.iter().filter(|e| e.kind() == kind).count()
    }

    /// The event reasons and messages emitted so far.
    pub fn event_texts(&self) -> Vec<String> {
        self.events
            .iter()
            .map(|(_, e)| format!("{}: {}", e.reason, e.message))
            .collect()
    }

    /// Executes one effect with the real API semantics, after hooks and scripted faults.
    pub fn execute(&mut self, effect: &Effect) -> Observation {
        let index = self.trace.len();
        self.trace.push(effect.clone());
        self.now += self.tick;
        let mut hooks = std::mem::take(&mut self.hooks);
        for hook in &mut hooks {
            hook(self, index, effect);
        }
        hooks.append(&mut self.hooks);
        self.hooks = hooks;
        let kind = effect.kind();
        let nth = *self.seen.entry(kind).and_modify(|n| *n += 1).or_insert(0);
        let fault = self
            .faults
            .iter()
            .find(|f| f.kind == kind && f.nth == nth)
            .map(|f| f.action);
        match fault {
            Some(FaultAction::Conflict) => {
                Observation::Failed(ApiFailure::Conflict("injected conflict".into()))
            }
            Some(FaultAction::Unavailable) => Observation::Failed(ApiFailure::Indeterminate(
                "injected 503 Service Unavailable".into(),
            )),
            Some(FaultAction::Rejected) => Observation::Failed(ApiFailure::Rejected {
                code: 400,
                message: "injected 400".into(),
            }),
            Some(FaultAction::LostAfterApply) => {
                let _applied = self.apply(effect);
                Observation::Failed(ApiFailure::Indeterminate("injected lost response".into()))
            }
            None => self.apply(effect),
        }
    }

    fn apply(&mut self, effect: &Effect) -> Observation {
        match effect {
            Effect::GetPod { namespace, name } => {
                match self.pods.get(&format!("{namespace}/{name}")) {
                    None => Observation::Failed(ApiFailure::NotFound),
                    Some(p) => Observation::Pod(PodView {
                        uid: p.uid.clone(),
                        node_name: p.node_name.clone(),
                        phase: p.phase.clone(),
                        bind_phase: p.annotations.get(BIND_PHASE).cloned(),
                        deleting: p.deleting,
                        devices_allocated: p
                            .annotations
                            .get(sliceguard_core::annotations::DEVICES_ALLOCATED)
                            .cloned(),
                        decision: p.decision.clone(),
                    }),
                }
            }
            Effect::GetNode { node } => match self.nodes.get(node) {
                None => Observation::Failed(ApiFailure::NotFound),
                Some(n) => Observation::Node(NodeLockView {
                    resource_version: n.resource_version.to_string(),
                    lock: n.annotations.get(NODE_LOCK).cloned(),
                }),
            },
            Effect::WriteLock {
                node,
                value,
                resource_version,
            } => self.cas_node(node, resource_version, Some(value.clone())),
            Effect::ClearLock {
                node,
                resource_version,
            } => self.cas_node(node, resource_version, None),
            Effect::PatchPodAnnotations {
                namespace,
                name,
                annotations,
            } => {
                let rv = self.rv();
                match self.pods.get_mut(&format!("{namespace}/{name}")) {
                    None => Observation::Failed(ApiFailure::NotFound),
                    Some(p) => {
                        p.annotations.extend(annotations.clone());
                        p.resource_version = rv;
                        Observation::Written {
                            resource_version: Some(rv.to_string()),
                        }
                    }
                }
            }
            Effect::PatchPodMetadata {
                namespace,
                name,
                uid,
                annotations,
                labels,
            } => {
                let rv = self.rv();
                match self.pods.get_mut(&format!("{namespace}/{name}")) {
                    None => Observation::Failed(ApiFailure::NotFound),
                    // kube-apiserver: `metadata.uid` is immutable (422 Invalid).
                    Some(p) if !uid.is_empty() && p.uid != *uid => {
                        Observation::Failed(ApiFailure::Rejected {
                            code: 422,
                            message: format!(
                                "Pod \"{name}\" is invalid: metadata.uid: Invalid value: \"{uid}\": field is immutable"
                            ),
                        })
                    }
                    Some(p) => {
                        p.annotations.extend(annotations.clone());
                        p.labels.extend(labels.clone());
                        p.resource_version = rv;
                        Observation::Written {
                            resource_version: Some(rv.to_string()),
                        }
                    }
                }
            }
            Effect::DeletePod {
                namespace,
                name,
                uid,
            } => {
                let key = format!("{namespace}/{name}");
                match self.pods.get(&key) {
                    None => Observation::Failed(ApiFailure::NotFound),
                    Some(p) if !uid.is_empty() && p.uid != *uid => Observation::Failed(
                        ApiFailure::Conflict(format!("precondition failed: uid {uid}")),
                    ),
                    Some(_) => {
                        self.pods.remove(&key);
                        Observation::Written {
                            resource_version: None,
                        }
                    }
                }
            }
            Effect::CreateBinding {
                namespace,
                name,
                uid,
                node,
            } => {
                let key = format!("{namespace}/{name}");
                let rv = self.rv();
                match self.pods.get_mut(&key) {
                    None => Observation::Failed(ApiFailure::NotFound),
                    Some(p) if !uid.is_empty() && p.uid != *uid => {
                        Observation::Failed(ApiFailure::Conflict(format!(
                            "Operation cannot be fulfilled on pods/binding \"{name}\": precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                            p.uid
                        )))
                    }
                    Some(p) if p.node_name.is_some() => {
                        Observation::Failed(ApiFailure::Conflict(format!(
                            "Operation cannot be fulfilled on pods/binding \"{name}\": pod {name} is already assigned to node \"{}\"",
                            p.node_name.as_deref().unwrap_or_default()
                        )))
                    }
                    Some(p) => {
                        p.node_name = Some(node.clone());
                        p.resource_version = rv;
                        self.bindings.push((key, node.clone()));
                        Observation::Written {
                            resource_version: None,
                        }
                    }
                }
            }
            Effect::EmitEvent { pod, event } => {
                self.events
                    .push((format!("{}/{}", pod.namespace, pod.name), event.clone()));
                Observation::Written {
                    resource_version: None,
                }
            }
        }
    }

    fn cas_node(&mut self, node: &str, expected: &str, value: Option<String>) -> Observation {
        let rv = self.rv();
        let Some(n) = self.nodes.get_mut(node) else {
            return Observation::Failed(ApiFailure::NotFound);
        };
        if n.resource_version.to_string() != expected {
            return Observation::Failed(ApiFailure::Conflict(format!(
                "Operation cannot be fulfilled on nodes \"{node}\": the object has been modified; please apply your changes to the latest version and try again"
            )));
        }
        match value {
            Some(v) => n.annotations.insert(NODE_LOCK.into(), v),
            None => n.annotations.remove(NODE_LOCK),
        };
        n.resource_version = rv;
        Observation::Written {
            resource_version: Some(rv.to_string()),
        }
    }

    /// Runs a bind machine to its end.
    pub fn bind(&mut self, request: BindRequest, settings: &BindSettings) -> BindOutcome {
        self.bind_with_memory(request, settings, None)
    }

    pub fn bind_with_memory(
        &mut self,
        request: BindRequest,
        settings: &BindSettings,
        memory: Option<MalformedSighting>,
    ) -> BindOutcome {
        let mut machine = BindMachine::new(request, settings.clone(), memory);
        let mut step = machine.start(self.now);
        for _ in 0..200 {
            match step {
                Step::Do(effect) => {
                    let observation = self.execute(&effect);
                    step = machine.observe(observation, self.now);
                }
                Step::Done(outcome) => return outcome,
            }
        }
        panic!(
            "bind machine did not finish within 200 effects: {:?}",
            self.trace
        );
    }

    /// Runs a bind machine for `effects` effects and then stops feeding it: a scheduler crash.
    /// Returns the machine (dropped by the caller) to show what it held.
    pub fn bind_and_crash(
        &mut self,
        request: BindRequest,
        settings: &BindSettings,
        effects: usize,
    ) -> BindMachine {
        let mut machine = BindMachine::new(request, settings.clone(), None);
        let mut step = machine.start(self.now);
        for _ in 0..effects {
            match step {
                Step::Do(effect) => {
                    let observation = self.execute(&effect);
                    step = machine.observe(observation, self.now);
                }
                Step::Done(_) => break,
            }
        }
        machine
    }

    /// One pass of the lock reaper over `node`, as the shell runs it: judge the lock with the
    /// holder's state (looked up live), and release it by the exact value when a rule frees it.
    pub fn reap(
        &mut self,
        node: &str,
        mode: ReleaseMode,
        timeout: SignedDuration,
        first_seen: Option<Timestamp>,
    ) -> Option<ReleaseResult> {
        let raw = self.lock(node)?;
        let now = self.now;
        let observed = ObservedLock {
            node,
            raw: &raw,
            first_seen: first_seen.unwrap_or(now),
        };
        let mut holder = HolderState::Unknown;
        loop {
            let settings = BindSettings {
                lock_timeout: timeout,
                release_mode: mode,
                ..BindSettings::default()
            };
            match judge_lock(&observed, &holder, &settings, now) {
                LockJudgement::Stands { .. } => return None,
                LockJudgement::Stalled(h) => {
                    // As the service's reaper: mark the holder failed, announce, delete it.
                    let uid = match &holder {
                        HolderState::Present(p) => p.uid.clone(),
                        _ => String::new(),
                    };
                    let pod = PodRef {
                        namespace: h.namespace,
                        name: h.name,
                        uid,
                    };
                    for effect in stalled_holder_effects(node, &pod, &settings) {
                        match self.execute(&effect) {
                            _ if matches!(effect, Effect::EmitEvent { .. }) => {}
                            Observation::Written { .. } => {}
                            Observation::Failed(ApiFailure::NotFound) => break,
                            _ => return None,
                        }
                    }
                    holder = HolderState::Gone;
                }
                LockJudgement::NeedHolder(h) => {
                    holder = match self.execute(&Effect::GetPod {
                        namespace: h.namespace,
                        name: h.name,
                    }) {
                        Observation::Pod(p) => HolderState::Present(p),
                        Observation::Failed(ApiFailure::NotFound) => HolderState::Gone,
                        _ => return None,
                    };
                }
                LockJudgement::Free(_) => {
                    let mut release = LockRelease::new(
                        node.to_string(),
                        ReleaseOwner::Value(raw.clone()),
                        None,
                        3,
                    );
                    return Some(release.run(|e| self.execute(e)));
                }
            }
        }
    }
}

/// Settings with the given release mode and HAMi's defaults otherwise.
pub fn settings(mode: ReleaseMode) -> BindSettings {
    BindSettings {
        release_mode: mode,
        ..BindSettings::default()
    }
}
