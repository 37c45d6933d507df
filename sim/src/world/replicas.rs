//! Two sliceguard replicas elected on a Lease, and the faults that try to make both write.
//!
//! Inert unless one of the replica faults (`rolling-update`, `lease-expiry`, `replica-pause`,
//! `replica-partition`) is enabled; then the world runs two instances of the real service, each
//! elected on the Lease `sliceguard-system/sliceguard` through the core's election machine, with
//! kube-scheduler's defaults (15 s lease, 10 s renew deadline). Every step, before the watches
//! deliver, each replica that can runs one round; a round that begins a term is followed by a fresh
//! list of nodes and pods into that replica's view (what the watches' re-list does in `serve`).
//!
//! The world's scheduler slot is the replica kube-scheduler's calls, the webhook and the reaper go
//! to (kube-scheduler in the same pod); the other replica lives here. When the other leads and the
//! slot's does not, they swap (the pod whose kube-scheduler leads is the pod whose sliceguard leads)
//! except during a rolling update's overlap, when kube-scheduler keeps calling the old one.
//!
//! Faults (each at the world's seeded rate):
//! - `rolling-update`: the other replica is replaced by a new one under a new name, started while
//!   the slot's runs, and calls stay on the slot's replica for a while even if it loses the lease;
//! - `lease-expiry`: the leader's renewals fail until its lease has expired;
//! - `replica-pause`: a replica stops at a clock read in the middle of a filter, bind or reaper
//!   pass for longer than the lease, and the other takes the lease meanwhile; or the other replica
//!   stops stepping for a while;
//! - `replica-partition`: a replica's requests and watches fail for a while.
//!
//! Invariant `one-writer` (architecture invariant 8), checked on every write the API applies: the
//! writing replica is the Lease's holder and the Lease has not lapsed (`renewTime +
//! leaseDurationSeconds` not reached), so no other replica could have acquired it.

use super::{Actor, ApiCore, Fault, Instance, World, feed, lock_core};
use crate::store::{Part, Resource, Store};
use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::coordination::v1::Lease;
use sliceguard::bind::{ApiFailure, Effect, Observation};
use sliceguard::lease::{LeaseEffect, LeaseObservation, LeaseRecord, LeaseSettings};
use sliceguard::server::leader::LeaseApi;
use sliceguard::server::service::Clock;
use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::{Arc, Mutex};

/// The Lease's namespace.
pub(super) const LEASE_NAMESPACE: &str = "sliceguard-system";
/// The Lease's name.
pub(super) const LEASE_NAME: &str = "sliceguard";
/// kube-scheduler's lease duration.
const LEASE_DURATION: SignedDuration = SignedDuration::from_secs(15);

/// The faults that run two replicas.
const REPLICA_FAULTS: [Fault; 4] = [
    Fault::RollingUpdate,
    Fault::LeaseExpiry,
    Fault::ReplicaPause,
    Fault::ReplicaPartition,
];

/// The election settings of a replica named `identity` (kube-scheduler's defaults).
pub(super) fn settings(identity: String) -> LeaseSettings {
    LeaseSettings {
        identity,
        lease_duration: LEASE_DURATION,
        renew_deadline: SignedDuration::from_secs(10),
        retry_period: SignedDuration::from_secs(2),
    }
}

/// What the simulated API knows of the replicas.
#[derive(Debug, Default)]
pub(super) struct ApiReplicas {
    /// Replicas cut off from the API, until when.
    partitioned: BTreeMap<String, Timestamp>,
    /// The running replicas' names (who may take the lease while another pauses).
    running: BTreeSet<String>,
}

/// The answer to a replica cut off from the API, if `replica` is.
pub(super) fn partitioned(core: &ApiCore, replica: Option<&str>) -> Option<Observation> {
    let id = replica?;
    let until = core.replicas.partitioned.get(id)?;
    (core.store.now() < *until).then(|| {
        Observation::Failed(ApiFailure::Indeterminate(format!(
            "replica {id} is cut off from the API: connection timed out"
        )))
    })
}

fn read_lease(store: &Store) -> Option<(LeaseRecord, String)> {
    let value = store
        .get(Resource::Leases, Some(LEASE_NAMESPACE), LEASE_NAME)
        .ok()?;
    let lease: Lease = serde_json::from_value(value).ok()?;
    Some(LeaseRecord::of(&lease))
}

/// Invariant 8, one writer: `replica` may write only while it holds a Lease that has not lapsed.
pub(super) fn check_one_writer(core: &mut ApiCore, replica: Option<&str>, effect: &Effect) {
    let Some(id) = replica else {
        return;
    };
    let now = core.store.now();
    let why = match read_lease(&core.store) {
        None => Some("no Lease exists".to_string()),
        Some((record, _)) if record.holder.as_deref() != Some(id) => Some(format!(
            "the Lease names {}",
            record.holder.as_deref().unwrap_or("nobody")
        )),
        Some((record, _)) if record.lapsed(now, LEASE_DURATION) => Some(format!(
            "its lease, renewed at {}, had lapsed",
            record
                .renew_time
                .map_or_else(|| "never".to_string(), |t| t.to_string())
        )),
        _ => None,
    };
    if let Some(why) = why {
        core.violations.push((
            "one-writer",
            format!(
                "replica {id} wrote ({}) without holding the Lease: {why}",
                effect.kind()
            ),
        ));
    }
}

/// The clock a replica's service reads. With `replica-pause`, a read during a filter, bind or
/// reaper pass may find the replica paused: the time jumps past the lease duration and the other
/// replica takes the lease meanwhile (whatever the replica checked before this read is stale).
pub(super) fn clock(core: &Arc<Mutex<ApiCore>>, identity: Option<String>) -> Clock {
    let core = Arc::clone(core);
    Arc::new(move || {
        let mut core = lock_core(&core);
        if let Some(id) = &identity {
            pause_in_call(&mut core, id);
        }
        core.store.now()
    })
}

fn pause_in_call(core: &mut ApiCore, id: &str) {
    if matches!(core.actor, Actor::Other) || core.crashed {
        return;
    }
    // A quarter of the fault's rate: the clock is read several times per call.
    if !(core.roll(Fault::ReplicaPause) && core.rng.below(4) == 0) {
        return;
    }
    let pause = LEASE_DURATION + SignedDuration::from_secs(1 + core.rng.below(10) as i64);
    let now = core.store.now() + pause;
    core.store.set_time(now);
    core.log(format!(
        "fault replica-pause: replica {id} pauses for {pause:#} in the middle of a call"
    ));
    let other = core
        .replicas
        .running
        .iter()
        .find(|r| r.as_str() != id && !core.replicas.partitioned.contains_key(r.as_str()))
        .cloned();
    if let Some(other) = other {
        take_over(core, &other);
    }
}

/// `identity` acquires the (lapsed) Lease, as its round would have while the holder was paused.
fn take_over(core: &mut ApiCore, identity: &str) {
    let now = core.store.now();
    let Some((record, rv)) = read_lease(&core.store) else {
        return;
    };
    if !record.lapsed(now, LEASE_DURATION) {
        return;
    }
    let taken = LeaseRecord {
        holder: Some(identity.to_string()),
        lease_duration_seconds: Some(15),
        acquire_time: Some(now),
        renew_time: Some(now),
        transitions: record.transitions.saturating_add(1),
    };
    let Ok(value) = serde_json::to_value(taken.to_lease(LEASE_NAMESPACE, LEASE_NAME, Some(&rv)))
    else {
        return;
    };
    if core
        .store
        .replace(
            Resource::Leases,
            Some(LEASE_NAMESPACE),
            LEASE_NAME,
            Part::Main,
            value,
        )
        .is_ok()
    {
        core.log(format!("lease taken by replica {identity} meanwhile"));
    }
}

/// [`LeaseApi`] over the store, for one replica.
struct SimLease {
    core: Arc<Mutex<ApiCore>>,
    identity: String,
    /// The replica's renewals fail (`lease-expiry`).
    failing: bool,
}

impl SimLease {
    fn execute_now(&self, effect: &LeaseEffect) -> LeaseObservation {
        let mut core = lock_core(&self.core);
        if self.failing {
            return LeaseObservation::Failed("injected: the lease request timed out".into());
        }
        if let Some(Observation::Failed(e)) = partitioned(&core, Some(&self.identity)) {
            return LeaseObservation::Failed(e.to_string());
        }
        let written = |r: Result<serde_json::Value, crate::store::ApiError>| match r
            .map_err(|e| e.to_string())
            .and_then(|v| serde_json::from_value::<Lease>(v).map_err(|e| e.to_string()))
        {
            Ok(lease) => {
                let (record, resource_version) = LeaseRecord::of(&lease);
                LeaseObservation::Written {
                    record,
                    resource_version,
                }
            }
            Err(e) => LeaseObservation::Failed(e),
        };
        let observation = match effect {
            LeaseEffect::Get => match read_lease(&core.store) {
                Some((record, resource_version)) => LeaseObservation::Found {
                    record,
                    resource_version,
                },
                None => LeaseObservation::NotFound,
            },
            LeaseEffect::Create(record) => {
                match serde_json::to_value(record.to_lease(LEASE_NAMESPACE, LEASE_NAME, None)) {
                    Ok(v) => written(
                        core.store
                            .create(Resource::Leases, Some(LEASE_NAMESPACE), v),
                    ),
                    Err(e) => LeaseObservation::Failed(e.to_string()),
                }
            }
            LeaseEffect::Update {
                record,
                resource_version,
            } => match serde_json::to_value(record.to_lease(
                LEASE_NAMESPACE,
                LEASE_NAME,
                Some(resource_version),
            )) {
                Ok(v) => written(core.store.replace(
                    Resource::Leases,
                    Some(LEASE_NAMESPACE),
                    LEASE_NAME,
                    Part::Main,
                    v,
                )),
                Err(e) => LeaseObservation::Failed(e.to_string()),
            },
        };
        if let LeaseObservation::Written { record, .. } = &observation {
            let previous = read_lease_holder_change(record, &self.identity);
            if let Some(line) = previous {
                core.log(line);
            }
        }
        observation
    }
}

/// A trace line when a write changed hands (renewals are not logged).
fn read_lease_holder_change(record: &LeaseRecord, identity: &str) -> Option<String> {
    (record.acquire_time == record.renew_time).then(|| {
        format!(
            "lease acquired by replica {identity} (transitions {})",
            record.transitions
        )
    })
}

impl LeaseApi for SimLease {
    fn execute_lease(&self, effect: &LeaseEffect) -> impl Future<Output = LeaseObservation> + Send {
        let observation = self.execute_now(effect);
        async move { observation }
    }
}

/// The replica outside the world's scheduler slot.
struct Other {
    identity: String,
    instance: Option<Instance>,
    delivered: u64,
}

/// The world's replicas (see the module documentation).
pub(super) struct Replicas {
    on: bool,
    primary: String,
    other: Other,
    next_name: u64,
    other_paused_until: Option<Timestamp>,
    renewals_fail_until: BTreeMap<String, Timestamp>,
    overlap_until: Option<Timestamp>,
    roles: BTreeMap<String, &'static str>,
}

impl Replicas {
    /// The running replica outside the world's scheduler slot, if any.
    pub(super) fn other_instance(&self) -> Option<&Instance> {
        self.other.instance.as_ref()
    }

    /// Two elected replicas when a replica fault is enabled, else none beside the slot's.
    pub(super) fn new(faults: &BTreeSet<Fault>) -> Replicas {
        Replicas {
            on: REPLICA_FAULTS.iter().any(|f| faults.contains(f)),
            primary: "sliceguard-0".into(),
            other: Other {
                identity: "sliceguard-1".into(),
                instance: None,
                delivered: 0,
            },
            next_name: 2,
            other_paused_until: None,
            renewals_fail_until: BTreeMap::new(),
            overlap_until: None,
            roles: BTreeMap::new(),
        }
    }

    /// The slot replica's Lease identity (`None`: no election).
    pub(super) fn primary_identity(&self) -> Option<String> {
        self.on.then(|| self.primary.clone())
    }
}

impl World {
    fn seconds(&mut self, from: i64, spread: u64) -> SignedDuration {
        SignedDuration::from_secs(from + self.rng.below(spread) as i64)
    }

    /// Replica faults, the other replica's start and watch feed, one election round each, and the
    /// slot swap (see the module documentation).
    pub(super) fn replicas_step(&mut self) {
        if !self.replicas.on {
            return;
        }
        let now = self.now();
        self.inject_replica_faults();
        if self.replicas.other.instance.is_none() {
            let identity = self.replicas.other.identity.clone();
            if let Some((instance, rv)) = self.new_instance(Some(identity.clone())) {
                self.replicas.other.instance = Some(instance);
                self.replicas.other.delivered = rv;
                self.log(format!("replica {identity} started"));
            }
        }
        {
            let running: BTreeSet<String> = [
                self.replicas.primary.clone(),
                self.replicas.other.identity.clone(),
            ]
            .into();
            let mut core = self.core();
            core.replicas.running = running;
            core.replicas.partitioned.retain(|_, until| *until > now);
        }
        let other_paused = self.replicas.other_paused_until.is_some_and(|t| now < t);
        if !other_paused {
            self.feed_other();
        }
        let primary = self.replicas.primary.clone();
        self.elect(true, &primary, now);
        if !other_paused {
            let other = self.replicas.other.identity.clone();
            self.elect(false, &other, now);
        }
        self.maybe_swap(now);
    }

    /// A replica fault at a quarter of the world's rate: each opens a window of 5 to 45 s without a
    /// usable leader or with a misrouted kube-scheduler, so at the full rate the world would hardly
    /// ever have one.
    fn roll_replica_fault(&mut self, fault: Fault) -> bool {
        self.roll(fault) && self.rng.below(4) == 0
    }

    /// The replica faults (every window they open closes by itself, so a drain outlasts them).
    fn inject_replica_faults(&mut self) {
        if self.roll_replica_fault(Fault::RollingUpdate) {
            self.rolling_update();
        }
        if self.roll_replica_fault(Fault::LeaseExpiry) {
            self.expire_leader_lease();
        }
        if self.roll_replica_fault(Fault::ReplicaPause) {
            self.pause_standby();
        }
        if self.roll_replica_fault(Fault::ReplicaPartition) {
            let slot = self.rng.below(2) == 0;
            self.partition_replica(slot);
        }
    }

    /// True when the world runs two elected replicas (a replica fault is enabled).
    pub fn has_replicas(&self) -> bool {
        self.replicas.on
    }

    /// A rolling update now: the other replica is replaced by a new one under a new name, started
    /// while the slot's runs; kube-scheduler keeps calling the slot's for 5 to 35 s.
    pub fn rolling_update(&mut self) {
        if !self.replicas.on {
            return;
        }
        let now = self.now();
        let old = self.replicas.other.identity.clone();
        let name = format!("sliceguard-{}", self.replicas.next_name);
        self.replicas.next_name += 1;
        self.replicas.other = Other {
            identity: name.clone(),
            instance: None,
            delivered: 0,
        };
        self.replicas.other_paused_until = None;
        let overlap = self.seconds(5, 30);
        self.replicas.overlap_until = Some(now + overlap);
        self.log(format!(
            "fault rolling-update: replica {name} starts (replacing {old}) while {} runs; kube-scheduler keeps calling {} for {overlap:#}",
            self.replicas.primary, self.replicas.primary
        ));
    }

    /// The leader's renewals fail from now until past its lease duration.
    pub fn expire_leader_lease(&mut self) {
        if !self.replicas.on {
            return;
        }
        let now = self.now();
        let leader = if self.scheduler.as_ref().is_some_and(|i| i.service.leads()) {
            self.replicas.primary.clone()
        } else {
            self.replicas.other.identity.clone()
        };
        let until = now + LEASE_DURATION + self.seconds(1, 20);
        self.replicas
            .renewals_fail_until
            .insert(leader.clone(), until);
        self.log(format!(
            "fault lease-expiry: replica {leader}'s renewals fail until {until}"
        ));
    }

    /// The replica outside the slot stops stepping (no renewals, no watch events) for longer than
    /// the lease, then resumes.
    pub fn pause_standby(&mut self) {
        if !self.replicas.on {
            return;
        }
        let until = self.now() + LEASE_DURATION + self.seconds(1, 30);
        self.replicas.other_paused_until = Some(until);
        self.log(format!(
            "fault replica-pause: replica {} stops until {until}",
            self.replicas.other.identity
        ));
    }

    /// Cuts the slot's replica (`slot`) or the other one off from the API for 5 to 45 s.
    pub fn partition_replica(&mut self, slot: bool) {
        if !self.replicas.on {
            return;
        }
        let victim = if slot {
            self.replicas.primary.clone()
        } else {
            self.replicas.other.identity.clone()
        };
        let until = self.now() + self.seconds(5, 40);
        self.core()
            .replicas
            .partitioned
            .insert(victim.clone(), until);
        if slot {
            // Its watches fail too, and re-list when it is back.
            self.watch_down_until = Some(until);
        }
        self.log(format!(
            "fault replica-partition: replica {victim} is cut off from the API until {until}"
        ));
    }

    /// The other replica's watches.
    fn feed_other(&mut self) {
        let identity = self.replicas.other.identity.clone();
        if partitioned(&self.core(), Some(&identity)).is_some() {
            return;
        }
        let Some(instance) = &self.replicas.other.instance else {
            return;
        };
        let (events, rv) = {
            let core = self.core();
            let rv = core.store.resource_version();
            match core.store.events_after(self.replicas.other.delivered) {
                Ok(events) => (Some(events.cloned().collect::<Vec<_>>()), rv),
                Err(_) => (None, rv),
            }
        };
        match events {
            Some(events) => feed(&instance.service, &events),
            None => {
                let service = Arc::clone(&instance.service);
                self.relist(&service);
            }
        }
        self.replicas.other.delivered = rv;
    }

    /// One election round of a replica; a new term is followed by a fresh list into its view.
    fn elect(&mut self, slot: bool, identity: &str, now: Timestamp) {
        let instance = if slot {
            self.scheduler.as_ref()
        } else {
            self.replicas.other.instance.as_ref()
        };
        let Some(instance) = instance else {
            return;
        };
        let api = SimLease {
            core: Arc::clone(&self.core),
            identity: identity.to_string(),
            failing: self
                .replicas
                .renewals_fail_until
                .get(identity)
                .is_some_and(|until| now < *until),
        };
        let service = Arc::clone(&instance.service);
        let Some(outcome) = instance.runtime.block_on(service.lease_round(&api)) else {
            return;
        };
        if outcome.new_term {
            let rv = self.relist(&service);
            if slot {
                if self.watch_down_until.is_none() {
                    self.delivered = rv;
                }
            } else {
                self.replicas.other.delivered = rv;
            }
        }
        let role = outcome.role.as_str();
        if self.replicas.roles.insert(identity.to_string(), role) != Some(role) {
            let term = if outcome.new_term {
                " (new term: view re-listed)"
            } else {
                ""
            };
            self.log(format!("replica {identity}: {role}{term}"));
        }
    }

    /// kube-scheduler follows the leader: the slot takes the other replica when that one leads and
    /// the slot's does not (not during a rolling update's overlap).
    fn maybe_swap(&mut self, now: Timestamp) {
        if self.replicas.overlap_until.is_some_and(|t| now < t) {
            return;
        }
        self.replicas.overlap_until = None;
        let leads = |i: &Option<Instance>| i.as_ref().is_some_and(|i| i.service.leads());
        if leads(&self.scheduler) || !leads(&self.replicas.other.instance) {
            return;
        }
        std::mem::swap(&mut self.scheduler, &mut self.replicas.other.instance);
        std::mem::swap(
            &mut self.replicas.primary,
            &mut self.replicas.other.identity,
        );
        std::mem::swap(&mut self.delivered, &mut self.replicas.other.delivered);
        // Watches belong to their replica: the new slot replica's have been fed all along.
        self.watch_down_until = None;
        self.log(format!(
            "kube-scheduler now calls replica {} (the leader)",
            self.replicas.primary
        ));
    }
}
