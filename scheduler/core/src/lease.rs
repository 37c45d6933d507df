//! Leader election on a `coordination.k8s.io/v1` Lease as a sans-IO state machine: which replica
//! leads, decided from the observed Lease and the time, with no client, no clock and no timer.
//!
//! The rules are client-go's `leaderelection` (what kube-scheduler and HAMi run):
//! - one round reads the Lease ([`LeaseEffect::Get`]); a missing Lease is created naming this
//!   replica; a Lease naming this replica is renewed (`renewTime` = now); a Lease naming another
//!   replica is taken over only once the record has stayed unchanged for its `leaseDurationSeconds`
//!   **as this replica observed it** (the time of the first sighting of a record, never the
//!   record's own timestamps, so clock skew between replicas does not matter); an empty holder
//!   (released) is taken at once. Every write carries the read's `resourceVersion`, so of two
//!   replicas racing for one record only one wins (409 for the other).
//! - a replica **leads** from a successful acquire or renew until `renew_deadline` after the
//!   instant that write was *sent* ([`Elector::leads`]). Another replica can take over no earlier
//!   than `lease_duration` after it first saw that write, which is after it was sent; with
//!   `renew_deadline < lease_duration` ([`LeaseSettings::validate`]) a replica that could not renew
//!   stops leading before anyone may acquire. The shell asks [`Elector::leads`] before every write.
//!
//! **Following a co-located leader** ([`follow`]): kube-scheduler calls the extender on loopback,
//! i.e. the sliceguard in its own pod. A replica told to follow kube-scheduler's Lease yields while
//! that Lease names a kube-scheduler in another pod: it takes no new work, and as a leader it steps
//! down once its binds have finished, so the two leaderships end up in one pod. Following only
//! ever makes a replica do less; the safety rules above stay whole.
//!
//! The I/O shell executes the effects (kube-rs `Api<Lease>`: get, create, replace) and the
//! simulated world executes them against its store; both drive this one machine.

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};

/// The election's parameters (`--leader-elect-*`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseSettings {
    /// This replica's name in `holderIdentity` (the pod name).
    pub identity: String,
    /// How long a record stays valid after it was last seen changing (`leaseDurationSeconds`).
    pub lease_duration: SignedDuration,
    /// How long after its last successful renew a leader keeps leading.
    pub renew_deadline: SignedDuration,
    /// How often a replica tries to acquire or renew.
    pub retry_period: SignedDuration,
}

impl Default for LeaseSettings {
    /// kube-scheduler's defaults: 15 s, 10 s, 2 s.
    fn default() -> Self {
        LeaseSettings {
            identity: String::new(),
            lease_duration: SignedDuration::from_secs(15),
            renew_deadline: SignedDuration::from_secs(10),
            retry_period: SignedDuration::from_secs(2),
        }
    }
}

/// Election settings that cannot work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LeaseSettingsError {
    /// The identity is empty.
    #[error("--leader-elect-identity must not be empty")]
    EmptyIdentity,
    /// A duration is not positive.
    #[error("--leader-elect-{field} must be positive, got {value:#}")]
    NotPositive {
        /// `lease-duration`, `renew-deadline` or `retry-period`.
        field: &'static str,
        /// The value given.
        value: SignedDuration,
    },
    /// The lease duration is not a whole number of seconds of at least one (the Lease holds seconds).
    #[error("--leader-elect-lease-duration must be a whole number of seconds, got {0:#}")]
    FractionalLease(SignedDuration),
    /// Two durations in the wrong order.
    #[error(
        "--leader-elect-{shorter} ({shorter_value:#}) must be shorter than --leader-elect-{longer} ({longer_value:#})"
    )]
    Order {
        /// The flag that must be shorter.
        shorter: &'static str,
        /// Its value.
        shorter_value: SignedDuration,
        /// The flag that must be longer.
        longer: &'static str,
        /// Its value.
        longer_value: SignedDuration,
    },
}

impl LeaseSettings {
    /// Checks `retry_period < renew_deadline < lease_duration`, all positive, the lease duration
    /// whole seconds, a non-empty identity.
    pub fn validate(&self) -> Result<(), LeaseSettingsError> {
        if self.identity.is_empty() {
            return Err(LeaseSettingsError::EmptyIdentity);
        }
        for (field, value) in [
            ("lease-duration", self.lease_duration),
            ("renew-deadline", self.renew_deadline),
            ("retry-period", self.retry_period),
        ] {
            if value <= SignedDuration::ZERO {
                return Err(LeaseSettingsError::NotPositive { field, value });
            }
        }
        if self.lease_duration.subsec_nanos() != 0 {
            return Err(LeaseSettingsError::FractionalLease(self.lease_duration));
        }
        let order = |shorter, shorter_value, longer, longer_value| {
            (shorter_value >= longer_value).then_some(LeaseSettingsError::Order {
                shorter,
                shorter_value,
                longer,
                longer_value,
            })
        };
        if let Some(e) = order(
            "renew-deadline",
            self.renew_deadline,
            "lease-duration",
            self.lease_duration,
        )
        .or_else(|| {
            order(
                "retry-period",
                self.retry_period,
                "renew-deadline",
                self.renew_deadline,
            )
        }) {
            return Err(e);
        }
        Ok(())
    }
}

/// The election record a Lease's spec carries.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LeaseRecord {
    /// `holderIdentity` (`None` or empty: released).
    pub holder: Option<String>,
    /// `leaseDurationSeconds`.
    pub lease_duration_seconds: Option<i32>,
    /// `acquireTime`.
    pub acquire_time: Option<Timestamp>,
    /// `renewTime`.
    pub renew_time: Option<Timestamp>,
    /// `leaseTransitions`.
    pub transitions: i32,
}

impl LeaseRecord {
    /// The record of a Lease object and its resourceVersion.
    pub fn of(lease: &Lease) -> (LeaseRecord, String) {
        let spec = lease.spec.clone().unwrap_or_default();
        let record = LeaseRecord {
            holder: spec.holder_identity.filter(|h| !h.is_empty()),
            lease_duration_seconds: spec.lease_duration_seconds,
            acquire_time: spec.acquire_time.map(|t| t.0),
            renew_time: spec.renew_time.map(|t| t.0),
            transitions: spec.lease_transitions.unwrap_or(0),
        };
        (
            record,
            lease.metadata.resource_version.clone().unwrap_or_default(),
        )
    }

    /// The Lease object `namespace/name` carrying this record (with `resource_version` as the
    /// update's precondition when given).
    pub fn to_lease(&self, namespace: &str, name: &str, resource_version: Option<&str>) -> Lease {
        Lease {
            metadata: ObjectMeta {
                name: Some(name.to_string()),
                namespace: Some(namespace.to_string()),
                resource_version: resource_version.map(String::from),
                ..Default::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: self.holder.clone(),
                lease_duration_seconds: self.lease_duration_seconds,
                acquire_time: self.acquire_time.map(MicroTime),
                renew_time: self.renew_time.map(MicroTime),
                lease_transitions: Some(self.transitions),
                ..Default::default()
            }),
        }
    }

    /// The record's validity as another replica counts it (its own `leaseDurationSeconds`, else
    /// `fallback`).
    fn duration(&self, fallback: SignedDuration) -> SignedDuration {
        match self.lease_duration_seconds {
            Some(s) if s > 0 => SignedDuration::from_secs(i64::from(s)),
            _ => fallback,
        }
    }

    /// True when the record, written at its `renewTime`, may already have been taken over by
    /// another replica at `now` (no holder, no renew time, or `renewTime + leaseDurationSeconds`
    /// reached). The simulated world's one-writer check reads the store's Lease with it.
    pub fn lapsed(&self, now: Timestamp, fallback: SignedDuration) -> bool {
        match (&self.holder, self.renew_time) {
            (Some(_), Some(renewed)) => now >= renewed + self.duration(fallback),
            _ => true,
        }
    }
}

/// A request of the election to the API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeaseEffect {
    /// Read the Lease.
    Get,
    /// Create the Lease with this record (it did not exist).
    Create(LeaseRecord),
    /// Replace the Lease's record, with the resourceVersion read as precondition.
    Update {
        /// The new record.
        record: LeaseRecord,
        /// The resourceVersion the record was read at.
        resource_version: String,
    },
}

/// What the API answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeaseObservation {
    /// The Lease exists with this record.
    Found {
        /// Its record.
        record: LeaseRecord,
        /// Its resourceVersion.
        resource_version: String,
    },
    /// No such Lease.
    NotFound,
    /// The create or update was applied.
    Written {
        /// The stored record.
        record: LeaseRecord,
        /// The new resourceVersion.
        resource_version: String,
    },
    /// Anything else: a 409, an error, no answer. The round ends; the role stands until its deadline.
    Failed(String),
}

/// Who leads, as this replica knows it at an instant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    /// This replica leads until `until` unless it renews first.
    Leader {
        /// The end of the current term.
        until: Timestamp,
    },
    /// Another replica leads (or nobody is known to).
    Standby {
        /// The holder last observed, if any.
        holder: Option<String>,
    },
}

impl Role {
    /// `leader` or `standby` (the `/readyz` body).
    pub fn as_str(&self) -> &'static str {
        match self {
            Role::Leader { .. } => "leader",
            Role::Standby { .. } => "standby",
        }
    }
}

/// One step of a round.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeaseStep {
    /// Execute this effect and feed its answer to [`Elector::observe`].
    Do(LeaseEffect),
    /// The round is over.
    Done(RoundOutcome),
}

/// How a round ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoundOutcome {
    /// The role after the round.
    pub role: Role,
    /// True when this round began a new term (the replica did not lead before it): the shell must
    /// rebuild its view from the API before the term's first decision.
    pub new_term: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Observed {
    record: LeaseRecord,
    resource_version: String,
    at: Timestamp,
}

/// The election machine of one replica.
#[derive(Debug, Clone)]
pub struct Elector {
    settings: LeaseSettings,
    observed: Option<Observed>,
    /// When the last successful acquire or renew was sent.
    renewed_at: Option<Timestamp>,
    /// When this round's write was sent, and whether the replica led just before the round.
    pending: Option<(Timestamp, bool)>,
}

impl Elector {
    /// A replica that does not lead yet.
    pub fn new(settings: LeaseSettings) -> Elector {
        Elector {
            settings,
            observed: None,
            renewed_at: None,
            pending: None,
        }
    }

    /// The settings.
    pub fn settings(&self) -> &LeaseSettings {
        &self.settings
    }

    /// True when this replica leads at `now`: a renew sent less than `renew_deadline` ago succeeded.
    pub fn leads(&self, now: Timestamp) -> bool {
        self.renewed_at
            .is_some_and(|at| now < at + self.settings.renew_deadline)
    }

    /// The role at `now`.
    pub fn role(&self, now: Timestamp) -> Role {
        match self.renewed_at {
            Some(at) if self.leads(now) => Role::Leader {
                until: at + self.settings.renew_deadline,
            },
            _ => Role::Standby {
                holder: self
                    .observed
                    .as_ref()
                    .and_then(|o| o.record.holder.clone())
                    .filter(|h| *h != self.settings.identity),
            },
        }
    }

    /// Starts a round: read the Lease.
    pub fn start(&mut self, now: Timestamp) -> LeaseStep {
        self.pending = Some((now, self.leads(now)));
        LeaseStep::Do(LeaseEffect::Get)
    }

    fn mine(&self, previous: Option<&LeaseRecord>, now: Timestamp) -> LeaseRecord {
        let me = &self.settings.identity;
        let seconds = i32::try_from(self.settings.lease_duration.as_secs()).unwrap_or(i32::MAX);
        match previous {
            Some(p) if p.holder.as_ref() == Some(me) => LeaseRecord {
                renew_time: Some(now),
                lease_duration_seconds: Some(seconds),
                acquire_time: p.acquire_time.or(Some(now)),
                ..p.clone()
            },
            _ => LeaseRecord {
                holder: Some(me.clone()),
                lease_duration_seconds: Some(seconds),
                acquire_time: Some(now),
                renew_time: Some(now),
                transitions: previous.map_or(0, |p| {
                    if p.holder.is_some() {
                        p.transitions.saturating_add(1)
                    } else {
                        p.transitions
                    }
                }),
            },
        }
    }

    fn done(&mut self, now: Timestamp) -> LeaseStep {
        let led_before = self.pending.take().is_some_and(|(_, led)| led);
        let role = self.role(now);
        let new_term = !led_before && matches!(role, Role::Leader { .. });
        LeaseStep::Done(RoundOutcome { role, new_term })
    }

    /// Feeds the answer to the round's last effect.
    pub fn observe(&mut self, observation: LeaseObservation, now: Timestamp) -> LeaseStep {
        let Some((sent, _)) = self.pending else {
            // An answer with no round in progress changes nothing.
            return LeaseStep::Done(RoundOutcome {
                role: self.role(now),
                new_term: false,
            });
        };
        match observation {
            LeaseObservation::NotFound => {
                self.observed = None;
                self.pending = Some((now, self.pending.is_some_and(|(_, l)| l)));
                LeaseStep::Do(LeaseEffect::Create(self.mine(None, now)))
            }
            LeaseObservation::Found {
                record,
                resource_version,
            } => {
                let changed = self
                    .observed
                    .as_ref()
                    .is_none_or(|o| o.record != record || o.resource_version != resource_version);
                if changed {
                    self.observed = Some(Observed {
                        record: record.clone(),
                        resource_version: resource_version.clone(),
                        at: now,
                    });
                }
                let at = self.observed.as_ref().map_or(now, |o| o.at);
                let me = &self.settings.identity;
                let other_holds = match &record.holder {
                    Some(h) if h != me => now < at + record.duration(self.settings.lease_duration),
                    _ => false,
                };
                if other_holds {
                    // Someone else holds a valid lease: whatever this replica believed, it does not lead.
                    self.renewed_at = None;
                    return self.done(now);
                }
                self.pending = Some((now, self.pending.is_some_and(|(_, l)| l)));
                LeaseStep::Do(LeaseEffect::Update {
                    record: self.mine(Some(&record), now),
                    resource_version,
                })
            }
            LeaseObservation::Written {
                record,
                resource_version,
            } => {
                if record.holder.as_ref() == Some(&self.settings.identity) {
                    self.renewed_at = Some(sent);
                }
                self.observed = Some(Observed {
                    record,
                    resource_version,
                    at: now,
                });
                self.done(now)
            }
            LeaseObservation::Failed(_) => self.done(now),
        }
    }

    /// The record to write when this replica steps down on shutdown (holder cleared, as client-go's
    /// `ReleaseOnCancel` does), if it leads at `now`; the caller writes it with the returned
    /// resourceVersion and then stops writing anything.
    pub fn release(&mut self, now: Timestamp) -> Option<LeaseEffect> {
        if !self.leads(now) {
            return None;
        }
        let observed = self.observed.as_ref()?;
        let record = LeaseRecord {
            holder: None,
            lease_duration_seconds: Some(1),
            acquire_time: None,
            renew_time: Some(now),
            transitions: observed.record.transitions,
        };
        let effect = LeaseEffect::Update {
            record,
            resource_version: observed.resource_version.clone(),
        };
        self.renewed_at = None;
        Some(effect)
    }
}

/// The host part of a client-go leader-election identity. kube-scheduler (like every component
/// built on client-go's `leaderelection` with the default identity) names itself
/// `<os.Hostname()>_<uuid>`, and a container's host name is its pod's (kubelet: the pod name cut to
/// 63 characters); an identity without `_` is taken whole.
pub fn identity_host(identity: &str) -> &str {
    identity.rsplit_once('_').map_or(identity, |(host, _)| host)
}

/// What following a co-located component's Lease asks of this replica.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Following {
    /// The followed Lease names this host, names no one, or could not be read: elect as usual.
    Free,
    /// The followed Lease names a holder on another host: take no new work, step down.
    Yield {
        /// The followed Lease's holder.
        holder: String,
    },
}

/// Judges the answer to a `Get` of the followed Lease for the replica on `host`. Anything but a
/// Lease held from another host leaves the election free: a missing, released or unreadable Lease
/// must not stop sliceguard from leading (the safety of one writer never depends on it).
pub fn follow(observation: &LeaseObservation, host: &str) -> Following {
    match observation {
        LeaseObservation::Found { record, .. } => match record.holder.as_deref() {
            Some(holder) if !holder.is_empty() && identity_host(holder) != host => {
                Following::Yield {
                    holder: holder.to_string(),
                }
            }
            _ => Following::Free,
        },
        _ => Following::Free,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000 + s).unwrap()
    }

    fn settings(id: &str) -> LeaseSettings {
        LeaseSettings {
            identity: id.into(),
            ..LeaseSettings::default()
        }
    }

    /// A tiny in-memory Lease: one record and a counter for its resourceVersion.
    #[derive(Default)]
    struct Api {
        lease: Option<(LeaseRecord, u64)>,
        fail: bool,
    }

    impl Api {
        fn execute(&mut self, effect: LeaseEffect) -> LeaseObservation {
            if self.fail {
                return LeaseObservation::Failed("connection refused".into());
            }
            match effect {
                LeaseEffect::Get => match &self.lease {
                    Some((r, rv)) => LeaseObservation::Found {
                        record: r.clone(),
                        resource_version: rv.to_string(),
                    },
                    None => LeaseObservation::NotFound,
                },
                LeaseEffect::Create(record) => {
                    if self.lease.is_some() {
                        return LeaseObservation::Failed("409 already exists".into());
                    }
                    self.lease = Some((record.clone(), 1));
                    LeaseObservation::Written {
                        record,
                        resource_version: "1".into(),
                    }
                }
                LeaseEffect::Update {
                    record,
                    resource_version,
                } => match &self.lease {
                    Some((_, rv)) if rv.to_string() == resource_version => {
                        let next = rv + 1;
                        self.lease = Some((record.clone(), next));
                        LeaseObservation::Written {
                            record,
                            resource_version: next.to_string(),
                        }
                    }
                    _ => LeaseObservation::Failed("409 conflict".into()),
                },
            }
        }
    }

    fn round(e: &mut Elector, api: &mut Api, now: Timestamp) -> RoundOutcome {
        let mut step = e.start(now);
        loop {
            match step {
                LeaseStep::Do(effect) => step = e.observe(api.execute(effect), now),
                LeaseStep::Done(outcome) => return outcome,
            }
        }
    }

    #[test]
    fn the_first_replica_creates_the_lease_and_leads_until_the_renew_deadline() {
        let mut api = Api::default();
        let mut a = Elector::new(settings("a"));
        let out = round(&mut a, &mut api, t(0));
        assert!(out.new_term);
        assert_eq!(out.role, Role::Leader { until: t(10) });
        assert!(a.leads(t(9)));
        assert!(!a.leads(t(10)), "leadership ends at the renew deadline");
        let (record, _) = api.lease.clone().unwrap();
        assert_eq!(record.holder.as_deref(), Some("a"));
        assert_eq!(record.lease_duration_seconds, Some(15));
        // A renew keeps the term: not a new one.
        let out = round(&mut a, &mut api, t(2));
        assert!(!out.new_term);
        assert!(a.leads(t(11)));
    }

    #[test]
    fn roles_read_as_the_readyz_body_and_leadership_ends_at_the_deadline() {
        let mut api = Api::default();
        let mut a = Elector::new(settings("a"));
        assert_eq!(a.settings().identity, "a");
        assert_eq!(a.role(t(0)).as_str(), "standby");
        round(&mut a, &mut api, t(0));
        assert_eq!(a.role(t(9)).as_str(), "leader");
        assert_eq!(a.role(t(10)), Role::Standby { holder: None });
    }

    #[test]
    fn a_renew_keeps_the_term_and_writes_the_current_duration() {
        let mut a = Elector::new(settings("a"));
        let mut api = Api {
            lease: Some((
                LeaseRecord {
                    holder: Some("a".into()),
                    lease_duration_seconds: Some(30),
                    acquire_time: None,
                    renew_time: Some(t(0)),
                    transitions: 4,
                },
                1,
            )),
            fail: false,
        };
        round(&mut a, &mut api, t(5));
        let (record, _) = api.lease.clone().unwrap();
        assert_eq!(
            record,
            LeaseRecord {
                holder: Some("a".into()),
                lease_duration_seconds: Some(15),
                acquire_time: Some(t(5)),
                renew_time: Some(t(5)),
                transitions: 4,
            },
            "own record: renewed, not taken over (no transition, acquire time kept or first set)"
        );
        round(&mut a, &mut api, t(7));
        let (record, _) = api.lease.clone().unwrap();
        assert_eq!(
            (record.acquire_time, record.renew_time, record.transitions),
            (Some(t(5)), Some(t(7)), 4)
        );
    }

    #[test]
    fn a_new_resource_version_restarts_the_standby_clock_even_with_the_same_record() {
        let held = LeaseRecord {
            holder: Some("b".into()),
            lease_duration_seconds: Some(15),
            acquire_time: Some(t(0)),
            renew_time: Some(t(0)),
            transitions: 0,
        };
        let mut a = Elector::new(settings("a"));
        let mut api = Api {
            lease: Some((held.clone(), 1)),
            fail: false,
        };
        round(&mut a, &mut api, t(0));
        // The object was written again (its resourceVersion moved) with the same record.
        api.lease = Some((held, 2));
        round(&mut a, &mut api, t(10));
        let out = round(&mut a, &mut api, t(20));
        assert_eq!(
            out.role,
            Role::Standby {
                holder: Some("b".into())
            },
            "first seen at resourceVersion 2 at t(10): not takeable before t(25)"
        );
        assert!(round(&mut a, &mut api, t(25)).new_term);
    }

    #[test]
    fn a_standby_takes_over_only_after_the_record_stood_unchanged_for_the_lease_duration() {
        let mut api = Api::default();
        let mut a = Elector::new(settings("a"));
        let mut b = Elector::new(settings("b"));
        round(&mut a, &mut api, t(0));
        let out = round(&mut b, &mut api, t(1));
        assert_eq!(
            out.role,
            Role::Standby {
                holder: Some("a".into())
            }
        );
        // a stops renewing (paused). b first saw a's record at t(1): it may take over at t(16).
        assert!(
            !round(&mut b, &mut api, t(15))
                .role
                .as_str()
                .contains("leader")
        );
        let out = round(&mut b, &mut api, t(16));
        assert!(out.new_term);
        assert_eq!(out.role, Role::Leader { until: t(26) });
        assert!(
            !a.leads(t(16)),
            "a stopped leading at t(10), before b took over"
        );
        let (record, _) = api.lease.clone().unwrap();
        assert_eq!(record.transitions, 1);
        // a resumes: it sees b's valid lease and stays standby.
        let out = round(&mut a, &mut api, t(17));
        assert_eq!(
            out.role,
            Role::Standby {
                holder: Some("b".into())
            }
        );
    }

    #[test]
    fn a_renewing_leader_is_never_taken_over() {
        let mut api = Api::default();
        let mut a = Elector::new(settings("a"));
        let mut b = Elector::new(settings("b"));
        for s in (0..100).step_by(2) {
            round(&mut a, &mut api, t(s));
            let out = round(&mut b, &mut api, t(s + 1));
            assert!(matches!(out.role, Role::Standby { .. }), "at {s}: {out:?}");
            assert!(a.leads(t(s + 1)));
        }
    }

    #[test]
    fn a_leader_cut_off_from_the_api_stops_leading_before_another_can_acquire() {
        let mut api = Api::default();
        let mut a = Elector::new(settings("a"));
        let mut b = Elector::new(settings("b"));
        round(&mut a, &mut api, t(0));
        round(&mut b, &mut api, t(0));
        let mut cut = Api {
            fail: true,
            ..Api::default()
        };
        for s in 1..30 {
            round(&mut a, &mut cut, t(s));
            let b_leads = matches!(round(&mut b, &mut api, t(s)).role, Role::Leader { .. });
            assert!(
                !(a.leads(t(s)) && b_leads),
                "two leaders at {s}: a until {:?}",
                a.role(t(s))
            );
        }
        assert!(b.leads(t(29)));
    }

    #[test]
    fn of_two_replicas_racing_for_an_expired_lease_one_wins() {
        let mut api = Api::default();
        let mut a = Elector::new(settings("a"));
        let mut b = Elector::new(settings("b"));
        let mut c = Elector::new(settings("c"));
        round(&mut c, &mut api, t(0));
        round(&mut a, &mut api, t(1));
        round(&mut b, &mut api, t(1));
        // Both read the expired record, then both write with the same resourceVersion.
        let now = t(20);
        let (LeaseStep::Do(get_a), LeaseStep::Do(get_b)) = (a.start(now), b.start(now)) else {
            panic!("a round starts with a read");
        };
        let seen_a = api.execute(get_a);
        let seen_b = api.execute(get_b);
        let (LeaseStep::Do(write_a), LeaseStep::Do(write_b)) =
            (a.observe(seen_a, now), b.observe(seen_b, now))
        else {
            panic!("an expired lease is taken over");
        };
        let a_out = a.observe(api.execute(write_a), now);
        let b_out = b.observe(api.execute(write_b), now);
        assert!(matches!(
            a_out,
            LeaseStep::Done(RoundOutcome {
                role: Role::Leader { .. },
                ..
            })
        ));
        assert!(matches!(
            b_out,
            LeaseStep::Done(RoundOutcome {
                role: Role::Standby { .. },
                ..
            })
        ));
        assert!(a.leads(now) && !b.leads(now));
    }

    #[test]
    fn a_released_lease_is_taken_at_once() {
        let mut api = Api::default();
        let mut a = Elector::new(settings("a"));
        let mut b = Elector::new(settings("b"));
        round(&mut a, &mut api, t(0));
        round(&mut b, &mut api, t(0));
        let release = a.release(t(1)).unwrap();
        assert!(matches!(
            api.execute(release),
            LeaseObservation::Written { .. }
        ));
        assert!(!a.leads(t(1)));
        assert!(matches!(
            round(&mut b, &mut api, t(2)).role,
            Role::Leader { .. }
        ));
        assert!(
            a.release(t(3)).is_none(),
            "a standby has nothing to release"
        );
    }

    #[test]
    fn lapsed_reads_the_record_as_the_world_check_does() {
        let record = LeaseRecord {
            holder: Some("a".into()),
            lease_duration_seconds: Some(15),
            renew_time: Some(t(0)),
            ..LeaseRecord::default()
        };
        assert!(!record.lapsed(t(14), SignedDuration::from_secs(15)));
        assert!(record.lapsed(t(15), SignedDuration::from_secs(15)));
        assert!(LeaseRecord::default().lapsed(t(0), SignedDuration::from_secs(15)));
        // The record's own duration counts over the fallback; a missing or non-positive one does not.
        let longer = LeaseRecord {
            lease_duration_seconds: Some(30),
            ..record.clone()
        };
        assert!(!longer.lapsed(t(29), SignedDuration::from_secs(15)));
        assert!(longer.lapsed(t(30), SignedDuration::from_secs(15)));
        for unusable in [None, Some(0), Some(-5)] {
            let record = LeaseRecord {
                lease_duration_seconds: unusable,
                ..record.clone()
            };
            assert!(
                !record.lapsed(t(14), SignedDuration::from_secs(15)),
                "{unusable:?}"
            );
            assert!(
                record.lapsed(t(15), SignedDuration::from_secs(15)),
                "{unusable:?}"
            );
        }
    }

    #[test]
    fn settings_are_checked_with_the_flag_and_value_named() {
        assert_eq!(settings("a").validate(), Ok(()));
        assert_eq!(
            LeaseSettings::default().validate(),
            Err(LeaseSettingsError::EmptyIdentity)
        );
        let bad = LeaseSettings {
            renew_deadline: SignedDuration::from_secs(15),
            ..settings("a")
        };
        let message = bad.validate().unwrap_err().to_string();
        assert!(
            message.contains("--leader-elect-renew-deadline (15s)")
                && message.contains("--leader-elect-lease-duration (15s)"),
            "{message}"
        );
        let bad = LeaseSettings {
            retry_period: SignedDuration::ZERO,
            ..settings("a")
        };
        assert!(
            bad.validate()
                .unwrap_err()
                .to_string()
                .contains("retry-period")
        );
        let bad = LeaseSettings {
            lease_duration: SignedDuration::from_millis(15_500),
            ..settings("a")
        };
        assert!(matches!(
            bad.validate(),
            Err(LeaseSettingsError::FractionalLease(_))
        ));
    }

    #[test]
    fn a_lease_round_trips_through_the_object() {
        let record = LeaseRecord {
            holder: Some("a".into()),
            lease_duration_seconds: Some(15),
            acquire_time: Some(t(0)),
            renew_time: Some(t(3)),
            transitions: 2,
        };
        let lease = record.to_lease("ns", "sliceguard", Some("7"));
        assert_eq!(lease.metadata.name.as_deref(), Some("sliceguard"));
        assert_eq!(lease.metadata.namespace.as_deref(), Some("ns"));
        assert_eq!(LeaseRecord::of(&lease), (record, "7".to_string()));
    }

    fn found(holder: Option<&str>) -> LeaseObservation {
        LeaseObservation::Found {
            record: LeaseRecord {
                holder: holder.map(str::to_string),
                lease_duration_seconds: Some(15),
                acquire_time: Some(t(0)),
                renew_time: Some(t(0)),
                transitions: 0,
            },
            resource_version: "1".into(),
        }
    }

    #[test]
    fn following_yields_only_to_a_holder_on_another_host() {
        let host = "sliceguard-scheduler-7d9f-abcde";
        let uuid = "3f1c2a4e-8b7d-4c1e-9a55-0d2b6e7f8a90";
        let mine = format!("{host}_{uuid}");
        assert_eq!(identity_host(&mine), host);
        assert_eq!(follow(&found(Some(&mine)), host), Following::Free);
        let theirs = format!("sliceguard-scheduler-7d9f-zzzzz_{uuid}");
        assert_eq!(
            follow(&found(Some(&theirs)), host),
            Following::Yield { holder: theirs }
        );
        // A pod name that extends this one is another host, not this one.
        let longer = format!("{host}-2_{uuid}");
        assert!(matches!(
            follow(&found(Some(&longer)), host),
            Following::Yield { .. }
        ));
        // An identity without a uuid is compared whole.
        assert_eq!(follow(&found(Some(host)), host), Following::Free);
        // Released, missing or unreadable: the election stays free.
        assert_eq!(follow(&found(None), host), Following::Free);
        assert_eq!(follow(&found(Some("")), host), Following::Free);
        assert_eq!(follow(&LeaseObservation::NotFound, host), Following::Free);
        assert_eq!(
            follow(&LeaseObservation::Failed("timeout".into()), host),
            Following::Free
        );
    }
}
