//! Leader election in the shell: the replica's [`Leadership`] (the core's [`Elector`] behind a
//! lock), the [`LeaseApi`] it is driven through, kube-rs's `Api<Lease>` as one ([`KubeLease`]), and
//! the loop `serve --leader-elect` runs ([`run_election`]).
//!
//! Only the leader answers `/filter` and `/bind` and writes anything; the service asks
//! [`Leadership::leads`] at the door of both and again before every write it sends (see
//! [`super::service`]). A round that begins a term bumps [`Leadership::terms`]: the service then
//! drops its view and the watches re-list, so the term's first decision sees the API as it is.
//!
//! Why not a crate: kube-lease-manager 0.13 (the one that fits kube 5; kube-leader-election 0.44
//! needs kube 4) runs its own tokio loop and timers and writes by server-side apply, so the
//! simulated world could not drive its leadership step by step, and it offers no "leading until"
//! instant to check before a write. The rules are the core's [`crate::lease`], driven here and in
//! the world alike; the requests are three plain verbs on `coordination.k8s.io/v1` leases: get,
//! create, update (no watch, no patch).

use super::cluster::ClusterApi;
use super::service::Scheduler;
use crate::lease::{
    Elector, Following, LeaseEffect, LeaseObservation, LeaseRecord, LeaseSettings, LeaseStep, Role,
    RoundOutcome,
};
use jiff::Timestamp;
use k8s_openapi::api::coordination::v1::Lease;
use kube::Client;
use kube::api::{Api, PostParams};
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// Where the election's Lease lives and who this replica is (`--leader-elect-*`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ElectionOptions {
    /// `--leader-elect-lease-name`.
    pub lease_name: String,
    /// `--leader-elect-namespace`.
    pub namespace: String,
    /// Identity and durations.
    pub settings: LeaseSettings,
    /// `--leader-elect-follow`: the co-located kube-scheduler's Lease this replica lines up with.
    pub follow: Option<FollowOptions>,
}

/// The Lease of the kube-scheduler that calls this replica (`--leader-elect-follow`), and the host
/// name that kube-scheduler's identity carries when it runs in this replica's pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FollowOptions {
    /// The followed Lease's namespace.
    pub namespace: String,
    /// The followed Lease's name.
    pub lease_name: String,
    /// This pod's host name (`$HOSTNAME`): kube-scheduler's identity is `<host>_<uuid>`.
    pub host: String,
}

/// The Lease requests of one round.
pub trait LeaseApi: Send + Sync {
    /// Executes one effect of the election.
    fn execute_lease(&self, effect: &LeaseEffect) -> impl Future<Output = LeaseObservation> + Send;
}

/// [`LeaseApi`] over kube-rs.
#[derive(Clone)]
pub struct KubeLease {
    api: Api<Lease>,
    namespace: String,
    name: String,
}

impl std::fmt::Debug for KubeLease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeLease")
            .field("namespace", &self.namespace)
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl KubeLease {
    /// The Lease `namespace/name`.
    pub fn new(client: Client, namespace: &str, name: &str) -> KubeLease {
        KubeLease {
            api: Api::namespaced(client, namespace),
            namespace: namespace.to_string(),
            name: name.to_string(),
        }
    }
}

fn written(result: Result<Lease, kube::Error>) -> LeaseObservation {
    match result {
        Ok(lease) => {
            let (record, resource_version) = LeaseRecord::of(&lease);
            LeaseObservation::Written {
                record,
                resource_version,
            }
        }
        Err(e) => LeaseObservation::Failed(e.to_string()),
    }
}

impl LeaseApi for KubeLease {
    async fn execute_lease(&self, effect: &LeaseEffect) -> LeaseObservation {
        match effect {
            LeaseEffect::Get => match self.api.get(&self.name).await {
                Ok(lease) => {
                    let (record, resource_version) = LeaseRecord::of(&lease);
                    LeaseObservation::Found {
                        record,
                        resource_version,
                    }
                }
                Err(kube::Error::Api(status)) if status.code == 404 => LeaseObservation::NotFound,
                Err(e) => LeaseObservation::Failed(e.to_string()),
            },
            LeaseEffect::Create(record) => {
                let lease = record.to_lease(&self.namespace, &self.name, None);
                written(self.api.create(&PostParams::default(), &lease).await)
            }
            LeaseEffect::Update {
                record,
                resource_version,
            } => {
                let lease = record.to_lease(&self.namespace, &self.name, Some(resource_version));
                written(
                    self.api
                        .replace(&self.name, &PostParams::default(), &lease)
                        .await,
                )
            }
        }
    }
}

/// This replica's leadership: always the leader without election, else what its [`Elector`] says.
#[derive(Debug)]
pub struct Leadership {
    elector: Mutex<Option<Elector>>,
    terms: watch::Sender<u64>,
    /// The followed Lease's holder while it runs in another pod ([`Following::Yield`]).
    yielding_to: Mutex<Option<String>>,
}

impl Default for Leadership {
    fn default() -> Self {
        Leadership::unelected()
    }
}

impl Leadership {
    /// No election: this replica always leads (one replica, `--leader-elect=false`).
    pub fn unelected() -> Leadership {
        Leadership {
            elector: Mutex::new(None),
            terms: watch::Sender::new(0),
            yielding_to: Mutex::new(None),
        }
    }

    /// Elected on a Lease with these settings; a standby until its first successful round.
    pub fn elected(settings: LeaseSettings) -> Leadership {
        Leadership {
            elector: Mutex::new(Some(Elector::new(settings))),
            terms: watch::Sender::new(0),
            yielding_to: Mutex::new(None),
        }
    }

    fn elector(&self) -> std::sync::MutexGuard<'_, Option<Elector>> {
        self.elector.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// True when leader election is on.
    pub fn is_elected(&self) -> bool {
        self.elector().is_some()
    }

    /// True when this replica may write at `now`.
    pub fn leads(&self, now: Timestamp) -> bool {
        self.elector().as_ref().is_none_or(|e| e.leads(now))
    }

    fn yielding_to(&self) -> Option<String> {
        self.yielding_to
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// True when this replica takes new work (`/filter`, `/bind`) at `now`: it leads and is not
    /// stepping down for a kube-scheduler that leads in another pod.
    pub fn decides(&self, now: Timestamp) -> bool {
        self.leads(now) && self.yielding_to().is_none()
    }

    /// Records what the followed Lease says; true when that changed.
    pub fn set_following(&self, following: &Following) -> bool {
        let to = match following {
            Following::Free => None,
            Following::Yield { holder } => Some(holder.clone()),
        };
        let mut yielding = self
            .yielding_to
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let changed = *yielding != to;
        *yielding = to;
        changed
    }

    /// The role at `now` (`None` without election).
    pub fn role(&self, now: Timestamp) -> Option<Role> {
        self.elector().as_ref().map(|e| e.role(now))
    }

    /// The answer a standby gives to `/filter` and `/bind`, and the error of a write it refuses.
    pub fn not_leader(&self, now: Timestamp) -> String {
        if let Some(scheduler) = self.yielding_to() {
            let me = self
                .elector()
                .as_ref()
                .map(|e| e.settings().identity.clone())
                .unwrap_or_default();
            return format!(
                "sliceguard replica {me} takes no work: the kube-scheduler that leads ({scheduler}) \
                 runs in another pod, whose sliceguard leads or will: retry"
            );
        }
        let (me, holder) = match self.elector().as_ref() {
            Some(e) => (
                e.settings().identity.clone(),
                match e.role(now) {
                    Role::Standby { holder } => holder,
                    Role::Leader { .. } => None,
                },
            ),
            None => (String::new(), None),
        };
        match holder {
            Some(h) => format!("sliceguard replica {me} is a standby (the leader is {h}): retry"),
            None => format!("sliceguard replica {me} is a standby (no leader known yet): retry"),
        }
    }

    /// Counts terms: bumped by [`Scheduler::begin_term`] once the view is dropped (the watches then
    /// list afresh).
    pub fn terms(&self) -> watch::Receiver<u64> {
        self.terms.subscribe()
    }

    pub(crate) fn count_term(&self) {
        self.terms.send_modify(|t| *t += 1);
    }

    /// One round of the election over `api`, with `now` read from `clock` at each step. `None`
    /// without election.
    pub async fn round<L: LeaseApi>(
        &self,
        api: &L,
        clock: impl Fn() -> Timestamp,
    ) -> Option<RoundOutcome> {
        // The clock is read before the elector is locked (the simulated world's clock locks its API).
        let now = clock();
        let mut step = self.elector().as_mut()?.start(now);
        loop {
            match step {
                LeaseStep::Do(effect) => {
                    let observation = api.execute_lease(&effect).await;
                    let now = clock();
                    step = self.elector().as_mut()?.observe(observation, now);
                }
                LeaseStep::Done(outcome) => return Some(outcome),
            }
        }
    }

    /// Steps down on shutdown: clears the holder so that a standby takes over at once.
    pub async fn release<L: LeaseApi>(&self, api: &L, now: Timestamp) {
        let effect = self.elector().as_mut().and_then(|e| e.release(now));
        if let Some(effect) = effect {
            match api.execute_lease(&effect).await {
                LeaseObservation::Written { .. } => tracing::info!("lease released"),
                other => tracing::warn!(?other, "lease not released; it expires by itself"),
            }
        }
    }
}

impl<C: ClusterApi> Scheduler<C> {
    /// One round of this replica's election over `api` (`None` without election). A round that
    /// begins a term first drops the view ([`Scheduler::begin_term`]).
    pub async fn lease_round<L: LeaseApi>(&self, api: &L) -> Option<RoundOutcome> {
        let outcome = self.leadership().round(api, || self.now()).await?;
        if outcome.new_term {
            self.begin_term();
        }
        Some(outcome)
    }

    /// One iteration of the election loop. Without `follow`, one round. With it, the followed
    /// Lease is read first: while it names a kube-scheduler in another pod this replica takes no new
    /// work; a standby does not try to acquire, and a leader keeps renewing until its binds in
    /// flight have finished, then releases the Lease so that the replica beside that kube-scheduler
    /// takes it at once. `None` when no round ran.
    pub async fn election_step<L: LeaseApi>(
        &self,
        api: &L,
        follow: Option<(&L, &str)>,
    ) -> Option<RoundOutcome> {
        let following = match follow {
            Some((followed, host)) => {
                crate::lease::follow(&followed.execute_lease(&LeaseEffect::Get).await, host)
            }
            None => Following::Free,
        };
        if self.leadership().set_following(&following) {
            match &following {
                Following::Free => tracing::info!(
                    "leader election: kube-scheduler leads here (or no one does): taking part"
                ),
                Following::Yield { holder } => {
                    tracing::info!(kube_scheduler = %holder, "leader election: kube-scheduler leads in another pod: taking no work and stepping down")
                }
            }
        }
        if following == Following::Free {
            return self.lease_round(api).await;
        }
        if !self.leads() {
            return None;
        }
        if self.binds_in_flight() > 0 {
            return self.lease_round(api).await;
        }
        self.leadership().release(api, self.now()).await;
        let role = self.leadership().role(self.now())?;
        Some(RoundOutcome {
            role,
            new_term: false,
        })
    }

    /// Runs the election until `stop`: an [`election_step`](Self::election_step) every retry
    /// period (renew for the leader, acquire for a standby). The caller releases the Lease
    /// ([`Leadership::release`]) once its binds have finished: the loop keeps renewing until then.
    pub async fn run_election<L: LeaseApi>(
        self: Arc<Self>,
        api: Arc<L>,
        follow: Option<(Arc<L>, String)>,
        retry_period: Duration,
        stop: CancellationToken,
    ) {
        let mut last = None;
        loop {
            let followed = follow
                .as_ref()
                .map(|(api, host)| (api.as_ref(), host.as_str()));
            if let Some(outcome) = self.election_step(api.as_ref(), followed).await {
                let role = outcome.role.as_str();
                if last != Some(role) {
                    match &outcome.role {
                        Role::Leader { .. } => {
                            tracing::info!("leader election: this replica leads")
                        }
                        Role::Standby { holder } => {
                            tracing::info!(leader = ?holder, "leader election: standby")
                        }
                    }
                    last = Some(role);
                }
            }
            tokio::select! {
                () = tokio::time::sleep(retry_period) => {}
                () = stop.cancelled() => return,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bind::{Effect, NodeLockView, Observation, PodView};
    use crate::server::SchedulerConfig;
    use crate::server::extender::{ExtenderArgs, ExtenderBindingArgs};
    use jiff::SignedDuration;
    use k8s_openapi::api::core::v1::Node;
    use std::collections::VecDeque;

    /// Records every effect; answers reads with an unlocked node and the pod placed on it, writes with
    /// success.
    #[derive(Default)]
    struct Recorder {
        effects: Mutex<Vec<&'static str>>,
    }

    impl ClusterApi for Recorder {
        async fn execute(&self, effect: &Effect) -> Observation {
            self.effects
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(effect.kind());
            match effect {
                Effect::GetNode { node } => {
                    let mut n = Node::default();
                    n.metadata.name = Some(node.clone());
                    n.metadata.resource_version = Some("1".into());
                    Observation::Node(NodeLockView::from_node(&n))
                }
                Effect::GetPod { namespace, name } => {
                    let mut pod = crate::objects::gpu_pod(
                        name,
                        &[],
                        &[crate::objects::GpuAsk::fraction(1000, 10)],
                    );
                    pod.metadata.namespace = Some(namespace.clone());
                    pod.metadata.uid = Some("u".into());
                    // The filter's decision for node n, as /bind verifies it.
                    pod.metadata.annotations = Some(
                        [
                            (crate::annotations::VGPU_NODE.to_string(), "n".to_string()),
                            (
                                crate::annotations::DEVICES_ALLOCATED.to_string(),
                                "GPU-n-0,NVIDIA,1000,10:;".to_string(),
                            ),
                        ]
                        .into(),
                    );
                    Observation::Pod(PodView::from_pod(&pod))
                }
                _ => Observation::Written {
                    resource_version: Some("2".into()),
                },
            }
        }
    }

    /// One Lease in memory.
    #[derive(Default)]
    struct MemoryLease(Mutex<Option<(LeaseRecord, u64)>>);

    impl LeaseApi for MemoryLease {
        async fn execute_lease(&self, effect: &LeaseEffect) -> LeaseObservation {
            let mut lease = self.0.lock().unwrap_or_else(PoisonError::into_inner);
            match effect {
                LeaseEffect::Get => match &*lease {
                    Some((record, rv)) => LeaseObservation::Found {
                        record: record.clone(),
                        resource_version: rv.to_string(),
                    },
                    None => LeaseObservation::NotFound,
                },
                LeaseEffect::Create(record) | LeaseEffect::Update { record, .. } => {
                    let rv = lease.as_ref().map_or(1, |(_, rv)| rv + 1);
                    *lease = Some((record.clone(), rv));
                    LeaseObservation::Written {
                        record: record.clone(),
                        resource_version: rv.to_string(),
                    }
                }
            }
        }
    }

    /// A clock reading the queued instants in turn, then the last one forever.
    fn scripted(times: Arc<Mutex<VecDeque<Timestamp>>>) -> crate::server::service::Clock {
        Arc::new(move || {
            let mut times = times.lock().unwrap_or_else(PoisonError::into_inner);
            if times.len() > 1 {
                times.pop_front().unwrap_or_default()
            } else {
                times.front().copied().unwrap_or_default()
            }
        })
    }

    fn service(times: &Arc<Mutex<VecDeque<Timestamp>>>) -> Scheduler<Recorder> {
        Scheduler::new(
            Recorder::default(),
            SchedulerConfig::default(),
            scripted(times.clone()),
        )
        .with_leader_election(LeaseSettings {
            identity: "replica-a".into(),
            ..LeaseSettings::default()
        })
    }

    fn bind_args() -> ExtenderBindingArgs {
        ExtenderBindingArgs {
            pod_name: "p".into(),
            pod_namespace: "default".into(),
            pod_uid: "u".into(),
            node: "n".into(),
        }
    }

    fn writes(svc: &Scheduler<Recorder>) -> Vec<&'static str> {
        svc.cluster()
            .effects
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .copied()
            .filter(|k| !matches!(*k, "get-node" | "get-pod"))
            .collect()
    }

    #[tokio::test]
    async fn a_standby_answers_filter_and_bind_with_an_error_and_writes_nothing() {
        let t0: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        let times = Arc::new(Mutex::new(VecDeque::from([t0])));
        let svc = Arc::new(service(&times));
        assert!(!svc.leads(), "a replica is a standby until it wins a round");
        let pod = crate::objects::gpu_pod("p", &[], &[crate::objects::GpuAsk::fraction(1000, 10)]);
        let filtered = svc
            .filter(ExtenderArgs {
                pod: Some(pod),
                nodes: None,
                node_names: Some(vec!["n".into()]),
            })
            .await;
        assert!(
            filtered.error.contains("replica-a is a standby"),
            "{filtered:?}"
        );
        let bound = svc.bind(bind_args()).await;
        assert!(bound.error.contains("is a standby"), "{bound:?}");
        assert_eq!(svc.cluster().effects.lock().unwrap().len(), 0);
        assert_eq!(
            svc.leadership().role(t0).map(|r| r.as_str()),
            Some("standby")
        );
    }

    #[tokio::test]
    async fn a_new_term_drops_the_view_and_a_lapsed_term_refuses_the_next_write() {
        let t0: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        let times = Arc::new(Mutex::new(VecDeque::from([t0])));
        let svc = Arc::new(service(&times));
        svc.replace_nodes(&[]);
        svc.replace_pods(&[]);
        assert!(svc.is_ready());
        let terms = svc.leadership().terms();
        let lease = MemoryLease::default();
        let outcome = svc.lease_round(&lease).await.unwrap();
        assert!(outcome.new_term);
        assert!(svc.leads());
        assert!(
            terms.has_changed().unwrap(),
            "the watches are told to re-list"
        );
        assert!(!svc.is_ready(), "no decision before a fresh list");
        svc.replace_nodes(&[]);
        svc.replace_pods(&[]);
        // The bind passes the door at t0 and is paused until after its renew deadline: its first
        // write (the node lock) is refused, never sent.
        *times.lock().unwrap() = VecDeque::from([t0, t0 + SignedDuration::from_secs(11)]);
        let bound = svc.bind(bind_args()).await;
        assert_eq!(writes(&svc), Vec::<&str>::new(), "{bound:?}");
        assert!(bound.error.contains("is a standby"), "{bound:?}");
        // Renewed, it leads again and writes.
        let outcome = svc.lease_round(&lease).await.unwrap();
        assert!(outcome.new_term, "a lapsed term ended: the next one is new");
        assert!(svc.leads());
        let _ = svc.bind(bind_args()).await;
        assert!(writes(&svc).contains(&"write-lock"), "{:?}", writes(&svc));
    }

    impl MemoryLease {
        fn held_by(holder: &str) -> MemoryLease {
            let lease = MemoryLease::default();
            lease.set_holder(Some(holder));
            lease
        }

        fn set_holder(&self, holder: Option<&str>) {
            let mut lease = self.0.lock().unwrap_or_else(PoisonError::into_inner);
            let rv = lease.as_ref().map_or(1, |(_, rv)| rv + 1);
            let record = LeaseRecord {
                holder: holder.map(str::to_string),
                lease_duration_seconds: Some(15),
                ..LeaseRecord::default()
            };
            *lease = Some((record, rv));
        }

        fn holder(&self) -> Option<String> {
            let lease = self.0.lock().unwrap_or_else(PoisonError::into_inner);
            lease.as_ref().and_then(|(record, _)| record.holder.clone())
        }
    }

    #[tokio::test]
    async fn a_replica_following_kube_scheduler_leads_only_beside_the_one_that_leads() {
        let t0: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        let times = Arc::new(Mutex::new(VecDeque::from([t0])));
        let svc = Arc::new(service(&times));
        let lease = MemoryLease::default();
        let kube_scheduler = MemoryLease::held_by("pod-a_0b7c5e1d-2f3a-4b6c-8d9e-1a2b3c4d5e6f");
        let follow = Some((&kube_scheduler, "pod-a"));
        let relist = |svc: &Scheduler<Recorder>| {
            svc.replace_nodes(&[]);
            svc.replace_pods(&[]);
        };

        // kube-scheduler leads in this pod: this replica takes part and leads.
        let outcome = svc.election_step(&lease, follow).await.unwrap();
        assert_eq!(outcome.role.as_str(), "leader");
        relist(&svc);
        assert!(svc.decides());
        assert_eq!(lease.holder().as_deref(), Some("replica-a"));

        // kube-scheduler's Lease passes to pod b while a bind is in flight here: no new work is
        // taken, and the Lease is renewed until that bind finishes.
        kube_scheduler.set_holder(Some("pod-b_9f8e7d6c-5b4a-4392-8170-6f5e4d3c2b1a"));
        let bind = svc.bind_in_flight();
        let outcome = svc.election_step(&lease, follow).await.unwrap();
        assert_eq!(
            outcome.role.as_str(),
            "leader",
            "renewing for the bind in flight"
        );
        assert!(svc.leads() && !svc.decides());
        let filtered = svc
            .filter(ExtenderArgs {
                pod: Some(crate::objects::gpu_pod(
                    "p",
                    &[],
                    &[crate::objects::GpuAsk::fraction(1000, 10)],
                )),
                nodes: None,
                node_names: Some(vec!["n".into()]),
            })
            .await;
        assert!(
            filtered.error.contains("pod-b_") && filtered.error.contains("another pod"),
            "{filtered:?}"
        );
        assert!(svc.bind(bind_args()).await.error.contains("another pod"));
        assert_eq!(
            writes(&svc),
            Vec::<&str>::new(),
            "no work taken while yielding"
        );

        // The bind finished: the leader steps down and clears the holder, so the replica in pod b
        // takes the Lease at once.
        drop(bind);
        let outcome = svc.election_step(&lease, follow).await.unwrap();
        assert_eq!(outcome.role.as_str(), "standby");
        assert!(!svc.leads());
        assert_eq!(lease.holder(), None, "released");

        // A standby that yields does not acquire even a free Lease.
        assert!(svc.election_step(&lease, follow).await.is_none());
        assert_eq!(lease.holder(), None);

        // kube-scheduler's Lease released (or unreadable): the election is free again.
        kube_scheduler.set_holder(None);
        let outcome = svc.election_step(&lease, follow).await.unwrap();
        assert_eq!(outcome.role.as_str(), "leader");
        assert!(outcome.new_term);
    }
}
