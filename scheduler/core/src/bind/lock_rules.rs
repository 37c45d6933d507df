//! The rules that decide whether a node lock held by someone stands ([`judge_lock`]), shared by
//! the binder (take over) and the reaper (release), and when a lock expires.
//!
//! ## Lock rules (HAMi's, spec §5.2, plus the differences listed in the [overview](super))
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
//! ## No handover while the holder is mid-allocation (`device-plugin` mode; fixes HAMi #3096)
//! HAMi frees an expired lock whoever holds it. In `device-plugin` mode that hands the node to a
//! second pod while the first is still bound here, Pending, in `bind-phase: allocating`: the kubelet
//! then admits the first pod, and HAMi's device plugin, which serves the pod the node lock names,
//! gives it the second pod's devices (HAMi #781: two pods mid-allocation on one node). So in that
//! mode an expired lock whose holder is **mid-allocation** (bound to this node, still `Pending`, not
//! being deleted, phase `allocating`: the kubelet has not admitted it yet, so an Allocate for it may
//! still come) is not free by expiry alone. A holder the kubelet already runs is past its Allocate,
//! so expiry frees its lock as in HAMi. What frees a mid-allocation holder's lock:
//! - the device plugin settling the holder's phase (`success`, or `failed` once the kubelet can no
//!   longer admit it), the holder finishing, being deleted, going away, or being bound elsewhere
//!   (the rules above);
//! - **stalled**: [`BindSettings::allocation_stall_timeout`] after the lock was taken (15m by
//!   default, three lock timeouts), the holder's device plugin has not answered for so long that it
//!   is taken to be silent: [`judge_lock`] answers [`LockJudgement::Stalled`], and the reaper marks
//!   the holder `bind-phase: failed` (so an Allocate that still comes while no other pod is
//!   allocating on the node fails instead of serving devices) and deletes it with its uid as
//!   precondition (its controller re-creates it), after which the lock is free as dangling. The
//!   mark alone frees nothing: a holder in `failed` that the kubelet may still admit keeps the lock
//!   as a mid-allocation one does (a reaper that stopped between the mark and the delete judges it
//!   stalled again and deletes it), since HAMi's device plugin serves an Allocate with the devices
//!   of whichever pod is allocating on the node. A silent plugin thus cannot stop a node for good,
//!   and a late kubelet never admits the stalled pod beside another one mid-allocation.
//!
//! The lock of the pod being bound is **re-entrant**: a retry (after a lost response, a crash, or a
//! `BindingFailed` the scheduler retried) finds its own lock and continues. A 409 on the lock write
//! re-reads the node and tries again with the new resourceVersion, at most
//! [`BindSettings::max_lock_attempts`] times. Anything else is contention:
//! `node <n> has been locked within 5m0s: node lock contention` (the timeout formatted as Go does).
//!
//! [`BindSettings::max_lock_attempts`]: super::BindSettings::max_lock_attempts
//! [`BindSettings::allocation_stall_timeout`]: super::BindSettings::allocation_stall_timeout

use super::{ALLOCATION_STALLED, BindSettings, Effect, PodRef, PodView, ReleaseMode};
use crate::annotations::BIND_PHASE;
use crate::annotations::bind_phase;
use crate::codec::go_duration;
use crate::codec::lock::{self, LockHolder};
use crate::decision::{EventRecord, EventType};
use jiff::{SignedDuration, Timestamp};

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
    /// `device-plugin` mode: the holder has been mid-allocation past the stall deadline. The lock
    /// stands for the binder; the reaper marks the holder failed and deletes it (see the module
    /// documentation), which frees the lock.
    Stalled(LockHolder),
}

/// Decides whether a lock held by someone stands, by the rules in the module documentation. The
/// same rules serve the binder (take over) and the reaper (release). Pure: `now` is an input.
pub fn judge_lock(
    lock: &ObservedLock<'_>,
    holder: &HolderState,
    settings: &BindSettings,
    now: Timestamp,
) -> LockJudgement {
    let (mode, timeout) = (settings.release_mode, settings.lock_timeout);
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
    let expired = value.is_expired(now, timeout);
    // Only a named holder can be mid-allocation; in after-bind mode expiry frees any lock.
    if expired && (mode == ReleaseMode::AfterBind || value.holder.is_none()) {
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
                    && match pod.bind_phase.as_deref() {
                        Some(bind_phase::SUCCESS) => true,
                        // Marked failed while the kubelet may still admit it (the stall mark of a
                        // reaper that stopped before its delete): not settled, since the device
                        // plugin would serve its Allocate the devices of whichever pod is
                        // allocating on the node by then.
                        Some(bind_phase::FAILED) => !pod.awaits_admission(),
                        _ => false,
                    } =>
                {
                    LockJudgement::Free(LockRule::PhaseSettled)
                }
                // Device-plugin mode, past the expiry: free unless the holder is mid-allocation or
                // marked failed and not yet admitted.
                Some(_)
                    if expired
                        && (pod.is_mid_allocation()
                            || pod.bind_phase.as_deref() == Some(bind_phase::FAILED)) =>
                {
                    let stalled_at = expiry_of(value.taken_at, settings.allocation_stall_timeout);
                    if now >= stalled_at {
                        LockJudgement::Stalled(owner)
                    } else {
                        LockJudgement::Stands { until: stalled_at }
                    }
                }
                _ if expired => LockJudgement::Free(LockRule::Expired),
                _ => LockJudgement::Stands { until },
            }
        }
    }
}

/// What clears a [`LockJudgement::Stalled`] holder, in order: mark it `bind-phase: failed`, record
/// an `AllocationStalled` warning on it, delete it with its uid as precondition. The driver stops at
/// a failed mark or delete (and tries again on its next pass); a 404 means the holder is gone
/// already, which is what the sequence is for. The event's answer does not matter.
pub fn stalled_holder_effects(node: &str, holder: &PodRef, settings: &BindSettings) -> [Effect; 3] {
    let timeout = go_duration::format(settings.allocation_stall_timeout);
    [
        Effect::PatchPodAnnotations {
            namespace: holder.namespace.clone(),
            name: holder.name.clone(),
            annotations: [(BIND_PHASE.to_string(), bind_phase::FAILED.to_string())].into(),
        },
        Effect::EmitEvent {
            pod: holder.clone(),
            event: EventRecord {
                event_type: EventType::Warning,
                reason: ALLOCATION_STALLED,
                message: format!(
                    "node {node}'s device plugin has not allocated this pod within {timeout} of its bind; deleted so that the node's lock can pass on"
                ),
            },
        },
        Effect::DeletePod {
            namespace: holder.namespace.clone(),
            name: holder.name.clone(),
            uid: holder.uid.clone(),
        },
    ]
}

/// The first whole second at which a lock taken at `taken_at` counts as expired.
pub(super) fn expiry_of(taken_at: Timestamp, timeout: SignedDuration) -> Timestamp {
    let edge = taken_at
        .checked_add(timeout)
        .unwrap_or(Timestamp::MAX)
        .checked_add(SignedDuration::from_secs(1))
        .unwrap_or(Timestamp::MAX);
    Timestamp::from_second(edge.as_second()).unwrap_or(edge)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> Timestamp {
        s.parse().unwrap()
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
        let settings = |mode| BindSettings {
            lock_timeout: five,
            release_mode: mode,
            ..BindSettings::default()
        };
        let judge =
            |raw, holder: &HolderState, mode| judge_lock(&lock(raw), holder, &settings(mode), now);
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
            p.bind_phase = Some("success".into());
        });
        assert_eq!(
            judge(fresh, &settled, DevicePlugin),
            LockJudgement::Free(LockRule::PhaseSettled)
        );
        // `failed` settles once the kubelet can no longer admit the pod: not bound, or admitted.
        for admitted_or_unbound in [
            present(|p| p.bind_phase = Some("failed".into())),
            present(|p| {
                p.node_name = Some("n1".into());
                p.phase = Some("Running".into());
                p.bind_phase = Some("failed".into());
            }),
        ] {
            assert_eq!(
                judge(fresh, &admitted_or_unbound, DevicePlugin),
                LockJudgement::Free(LockRule::PhaseSettled)
            );
        }
        let marked_not_admitted = present(|p| {
            p.node_name = Some("n1".into());
            p.bind_phase = Some("failed".into());
        });
        assert!(matches!(
            judge(fresh, &marked_not_admitted, DevicePlugin),
            LockJudgement::Stands { .. }
        ));
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
            judge_lock(
                &seen_long_ago,
                &HolderState::Unknown,
                &settings(AfterBind),
                now
            ),
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
    fn device_plugin_mode_never_hands_over_a_lock_mid_allocation() {
        let settings = BindSettings {
            release_mode: ReleaseMode::DevicePlugin,
            ..BindSettings::default()
        };
        assert_eq!(
            settings.allocation_stall_timeout,
            SignedDuration::from_mins(15)
        );
        let lock = ObservedLock {
            node: "n1",
            raw: "2025-01-01T00:00:00Z,ns,holder",
            first_seen: t("2025-01-01T00:00:00Z"),
        };
        let holder = |node: Option<&str>, phase: Option<&str>| {
            HolderState::Present(PodView {
                node_name: node.map(String::from),
                phase: Some("Pending".into()),
                bind_phase: phase.map(String::from),
                ..PodView::default()
            })
        };
        let allocating = holder(Some("n1"), Some("allocating"));
        let expired = t("2025-01-01T00:06:00Z");
        // Past the expiry, the holder must be looked at before anything is freed.
        assert!(matches!(
            judge_lock(&lock, &HolderState::Unknown, &settings, expired),
            LockJudgement::NeedHolder(_)
        ));
        assert_eq!(
            judge_lock(&lock, &allocating, &settings, expired),
            LockJudgement::Stands {
                until: t("2025-01-01T00:15:01Z")
            }
        );
        assert!(matches!(
            judge_lock(&lock, &allocating, &settings, t("2025-01-01T00:15:01Z")),
            LockJudgement::Stalled(h) if h.name == "holder" && h.namespace == "ns"
        ));
        // Marked failed by a reaper that stopped before its delete, not yet admitted: the same.
        let marked = holder(Some("n1"), Some("failed"));
        assert_eq!(
            judge_lock(&lock, &marked, &settings, expired),
            LockJudgement::Stands {
                until: t("2025-01-01T00:15:01Z")
            }
        );
        assert!(matches!(
            judge_lock(&lock, &marked, &settings, t("2025-01-01T00:15:01Z")),
            LockJudgement::Stalled(_)
        ));
        // Not mid-allocation (not marked, not bound, already admitted): expiry frees it as in HAMi.
        let running = HolderState::Present(PodView {
            node_name: Some("n1".into()),
            phase: Some("Running".into()),
            bind_phase: Some("allocating".into()),
            ..PodView::default()
        });
        for other in [
            holder(Some("n1"), None),
            holder(None, Some("allocating")),
            running,
        ] {
            assert_eq!(
                judge_lock(&lock, &other, &settings, expired),
                LockJudgement::Free(LockRule::Expired),
                "{other:?}"
            );
        }
        // After-bind mode keeps HAMi's rule: expired is free without a look at the holder.
        let after_bind = BindSettings::default();
        assert_eq!(
            judge_lock(&lock, &HolderState::Unknown, &after_bind, expired),
            LockJudgement::Free(LockRule::Expired)
        );
    }

    /// A malformed value stands for exactly the timeout from its first sighting, and is free just
    /// after.
    #[test]
    fn a_malformed_lock_stands_until_the_timeout_has_fully_passed() {
        let five = SignedDuration::from_mins(5);
        let settings = BindSettings {
            lock_timeout: five,
            ..BindSettings::default()
        };
        let first_seen = t("2025-01-01T00:00:00Z");
        let lock = ObservedLock {
            node: "n1",
            raw: "not-a-lock",
            first_seen,
        };
        let at = |now: Timestamp| judge_lock(&lock, &HolderState::Unknown, &settings, now);
        assert!(matches!(
            at(t("2025-01-01T00:05:00Z")),
            LockJudgement::Stands { .. }
        ));
        assert_eq!(
            at(t("2025-01-01T00:05:00.000000001Z")),
            LockJudgement::Free(LockRule::Malformed)
        );
    }

    /// Every rule has its own metric label, spelled as the dashboards read it.
    #[test]
    fn rule_labels_are_distinct_and_spelled_out() {
        let labels: Vec<&str> = [
            LockRule::Expired,
            LockRule::Dangling,
            LockRule::HolderFinished,
            LockRule::HolderElsewhere,
            LockRule::HolderBound,
            LockRule::PhaseSettled,
            LockRule::Malformed,
            LockRule::Reentrant,
        ]
        .into_iter()
        .map(LockRule::as_str)
        .collect();
        let distinct: std::collections::BTreeSet<&str> = labels.iter().copied().collect();
        assert_eq!(distinct.len(), labels.len(), "{labels:?}");
        assert!(
            labels
                .iter()
                .all(|l| l.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'))
        );
        assert_eq!(labels[0], "expired");
        assert_eq!(labels[6], "malformed");
    }
}
