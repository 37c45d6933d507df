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
    Elector, LeaseEffect, LeaseObservation, LeaseRecord, LeaseSettings, LeaseStep, Role,
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
        }
    }

    /// Elected on a Lease with these settings; a standby until its first successful round.
    pub fn elected(settings: LeaseSettings) -> Leadership {
        Leadership {
            elector: Mutex::new(Some(Elector::new(settings))),
            terms: watch::Sender::new(0),
        }
    }

    fn elector(&self) -> std::sync::MutexGuard<'_, Option<Elector>> {
        self.elector.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// True when leader election is on.
    pub fn is_elected(&self) -> bool {
        self.elector().is_some()
    }

    /// True when this replica may decide and write at `now`.
    pub fn leads(&self, now: Timestamp) -> bool {
        self.elector().as_ref().is_none_or(|e| e.leads(now))
    }

    /// The role at `now` (`None` without election).
    pub fn role(&self, now: Timestamp) -> Option<Role> {
        self.elector().as_ref().map(|e| e.role(now))
    }

    /// The answer a standby gives to `/filter` and `/bind`, and the error of a write it refuses.
    pub fn not_leader(&self, now: Timestamp) -> String {
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

    /// Runs the election until `stop`: a round every retry period (renew for the leader, acquire
    /// for a standby). The caller releases the Lease ([`Leadership::release`]) once its binds have
    /// finished: the loop keeps renewing until then.
    pub async fn run_election<L: LeaseApi>(
        self: Arc<Self>,
        api: Arc<L>,
        retry_period: Duration,
        stop: CancellationToken,
    ) {
        let mut last = None;
        loop {
            if let Some(outcome) = self.lease_round(api.as_ref()).await {
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
}
