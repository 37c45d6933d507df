//! Scheduling state only sliceguard writes: which pod annotations and labels are scheduler-owned,
//! and who may add, change or remove them.
//!
//! The device plugin hands out devices from a pod's allocation annotations and the ledger counts
//! them, so whoever can write them can reserve any GPU or free a used one. HAMi closed the create
//! half in PR #3042 (`pkg/scheduler/webhook.go`, `schedulerOwnedAnnotation`, merged 2026-09-15)
//! and the update half in PR #3074 (`handleUpdate`, `changedSchedulerOwnedAnnotation`):
//! - **CREATE**: a pod that already carries a guarded key is denied, whatever its scheduler name,
//!   with a message naming the key ([`check_create`]);
//! - **UPDATE**: a request that adds, changes or removes a guarded key is denied unless it comes
//!   from the trusted scheduler user (every key) or the trusted device-plugin user (only
//!   [`DEVICE_PLUGIN_KEYS`]) ([`check_update`]).
//!
//! One more key is guarded on UPDATE: the `hami.io/webhook` label on a pod that already carries
//! scheduler-owned state. The webhook's `objectSelector` skips a pod labelled `hami.io/webhook:
//! ignore` (on UPDATE, when both the old and the new pod carry it), so a tenant who could add that
//! label to a placed pod could strip or forge its allocation in the next update unseen.
//!
//! The guarded annotations are HAMi's list (`vgpu-node`, `bind-time`, `bind-phase`, the NVIDIA
//! `vgpu-devices-to-allocate` and `vgpu-devices-allocated`) plus `vgpu-time`, which the filter
//! writes too; the `hami.io/vgpu-node` label is guarded as well, since schedulers' pod watches
//! select on it. Deliberate differences from HAMi: trust is a named user, not "any service account
//! on a pod of this scheduler"; the device plugin may touch only what it writes; an annotation set
//! to `""` differs from an absent one (HAMi's Go map lookup treats them alike).

use crate::annotations::{
    BIND_PHASE, BIND_TIME, DEVICES_ALLOCATED, DEVICES_TO_ALLOCATE, VGPU_NODE, VGPU_TIME,
    WEBHOOK_LABEL,
};
use std::collections::BTreeMap;
use std::fmt;

/// Scheduler-owned pod annotations, in the order a denial names the first one found.
pub const GUARDED_ANNOTATIONS: [&str; 6] = [
    VGPU_NODE,
    DEVICES_ALLOCATED,
    DEVICES_TO_ALLOCATE,
    BIND_PHASE,
    VGPU_TIME,
    BIND_TIME,
];

/// Scheduler-owned pod labels.
pub const GUARDED_LABELS: [&str; 1] = [VGPU_NODE];

/// The guarded annotations the device plugin writes (Allocate erases to-allocate entries and sets
/// the bind phase); it may change nothing else.
pub const DEVICE_PLUGIN_KEYS: [&str; 2] = [BIND_PHASE, DEVICES_TO_ALLOCATE];

/// The username of sliceguard's ServiceAccount (`deploy/`: `sliceguard` in `sliceguard-system`).
pub const DEFAULT_SCHEDULER_USER: &str = "system:serviceaccount:sliceguard-system:sliceguard";
/// The username of HAMi's device plugin's ServiceAccount.
pub const DEFAULT_DEVICE_PLUGIN_USER: &str = "system:serviceaccount:kube-system:hami-device-plugin";

/// One guarded key: an annotation or a label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum GuardedKey {
    /// A pod annotation.
    Annotation(&'static str),
    /// A pod label.
    Label(&'static str),
}

impl GuardedKey {
    /// Every guarded key: annotations first, then labels.
    pub fn all() -> impl Iterator<Item = GuardedKey> {
        GUARDED_ANNOTATIONS
            .into_iter()
            .map(GuardedKey::Annotation)
            .chain(GUARDED_LABELS.into_iter().map(GuardedKey::Label))
    }

    /// The key's name (`hami.io/...`).
    pub fn name(self) -> &'static str {
        match self {
            GuardedKey::Annotation(k) | GuardedKey::Label(k) => k,
        }
    }

    /// True for a key the device plugin may write.
    pub fn device_plugin_writes(self) -> bool {
        matches!(self, GuardedKey::Annotation(k) if DEVICE_PLUGIN_KEYS.contains(&k))
    }

    fn lookup<'a>(self, meta: &'a Metadata<'_>) -> Option<&'a str> {
        let map = match self {
            GuardedKey::Annotation(_) => meta.annotations,
            GuardedKey::Label(_) => meta.labels,
        };
        map.and_then(|m| m.get(self.name())).map(String::as_str)
    }
}

impl fmt::Display for GuardedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GuardedKey::Annotation(k) => write!(f, "annotation {k}"),
            GuardedKey::Label(k) => write!(f, "label {k}"),
        }
    }
}

/// The two maps of a pod's metadata the guard reads.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Metadata<'a> {
    /// `metadata.annotations`.
    pub annotations: Option<&'a BTreeMap<String, String>>,
    /// `metadata.labels`.
    pub labels: Option<&'a BTreeMap<String, String>>,
}

impl<'a> Metadata<'a> {
    /// The maps of an `ObjectMeta`.
    pub fn of(meta: &'a k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> Self {
        Metadata {
            annotations: meta.annotations.as_ref(),
            labels: meta.labels.as_ref(),
        }
    }
}

/// Who may write guarded keys (`sliceguard serve --trusted-scheduler-user`,
/// `--trusted-device-plugin-user`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustedUsers {
    /// May add, change and remove every guarded key.
    pub scheduler: String,
    /// May change only [`DEVICE_PLUGIN_KEYS`].
    pub device_plugin: String,
}

impl Default for TrustedUsers {
    fn default() -> Self {
        TrustedUsers {
            scheduler: DEFAULT_SCHEDULER_USER.into(),
            device_plugin: DEFAULT_DEVICE_PLUGIN_USER.into(),
        }
    }
}

/// A request the guard refuses: the key it names and the message for the API server's answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Denial {
    /// The first offending key.
    pub key: GuardedKey,
    /// The denial message (names the key, and on update the user).
    pub message: String,
}

/// The first guarded key a pod carries, if any.
pub fn preset_key(meta: Metadata<'_>) -> Option<GuardedKey> {
    GuardedKey::all().find(|k| k.lookup(&meta).is_some())
}

/// Every guarded key whose presence or value differs between `old` and `new`, in [`GuardedKey::all`]
/// order.
pub fn changed_keys(old: Metadata<'_>, new: Metadata<'_>) -> Vec<GuardedKey> {
    GuardedKey::all()
        .filter(|k| k.lookup(&old) != k.lookup(&new))
        .collect()
}

/// CREATE: a pod may not arrive with scheduler-owned state (HAMi PR #3042).
pub fn check_create(meta: Metadata<'_>) -> Result<(), Denial> {
    match preset_key(meta) {
        None => Ok(()),
        Some(key) => Err(Denial {
            key,
            message: format!(
                "{key} is written by the scheduler and cannot be set when creating a pod"
            ),
        }),
    }
}

/// UPDATE: only the trusted users may add, change or remove guarded keys, the device plugin only
/// its own (HAMi PR #3074, with named users).
pub fn check_update(
    old: Metadata<'_>,
    new: Metadata<'_>,
    user: &str,
    trusted: &TrustedUsers,
) -> Result<(), Denial> {
    if !trusted.scheduler.is_empty() && user == trusted.scheduler {
        return Ok(());
    }
    let plugin = !trusted.device_plugin.is_empty() && user == trusted.device_plugin;
    let who = if user.is_empty() {
        "an anonymous user"
    } else {
        user
    };
    let offending = changed_keys(old, new)
        .into_iter()
        .find(|k| !(plugin && k.device_plugin_writes()));
    if let Some(key) = offending {
        return Err(Denial {
            key,
            message: format!(
                "{key} is written by the scheduler and cannot be added, changed or removed by {who}"
            ),
        });
    }
    let opt_out = GuardedKey::Label(WEBHOOK_LABEL);
    if preset_key(old).is_some() && opt_out.lookup(&old) != opt_out.lookup(&new) {
        return Err(Denial {
            key: opt_out,
            message: format!(
                "{opt_out} cannot be changed by {who} on a pod carrying scheduler-owned state (later updates would skip the webhook)"
            ),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
            .collect()
    }

    fn meta<'a>(a: &'a BTreeMap<String, String>, l: &'a BTreeMap<String, String>) -> Metadata<'a> {
        Metadata {
            annotations: Some(a),
            labels: Some(l),
        }
    }

    const ALICE: &str = "alice";

    #[test]
    fn create_names_the_first_guarded_key() {
        let empty = map(&[]);
        let a = map(&[
            ("nvidia.com/use-gputype", "A100"),
            (DEVICES_ALLOCATED, "GPU-0,NVIDIA,81920,100:;"),
            (VGPU_NODE, "n1"),
        ]);
        let err = check_create(meta(&a, &empty)).unwrap_err();
        assert_eq!(err.key, GuardedKey::Annotation(VGPU_NODE));
        assert_eq!(
            err.message,
            "annotation hami.io/vgpu-node is written by the scheduler and cannot be set when creating a pod"
        );
        let l = map(&[(VGPU_NODE, "n1")]);
        let err = check_create(meta(&empty, &l)).unwrap_err();
        assert_eq!(
            err.message,
            "label hami.io/vgpu-node is written by the scheduler and cannot be set when creating a pod"
        );
        let user_keys = map(&[("nvidia.com/use-gputype", "A100"), ("app", "x")]);
        assert_eq!(check_create(meta(&user_keys, &user_keys)), Ok(()));
        assert_eq!(check_create(Metadata::default()), Ok(()));
        for key in GUARDED_ANNOTATIONS {
            let one = map(&[(key, "")]);
            let err = check_create(meta(&one, &empty)).unwrap_err();
            assert!(err.message.contains(key), "{err}");
        }
    }

    #[test]
    fn update_rules_by_user() {
        let empty = map(&[]);
        let running_a = map(&[
            (VGPU_NODE, "n1"),
            (DEVICES_ALLOCATED, "GPU-0,NVIDIA,1000,10:;"),
            (DEVICES_TO_ALLOCATE, "GPU-0,NVIDIA,1000,10:;"),
            (BIND_PHASE, "allocating"),
        ]);
        let running_l = map(&[(VGPU_NODE, "n1")]);
        let trusted = TrustedUsers::default();
        // Stripping the label.
        let err = check_update(
            meta(&running_a, &running_l),
            meta(&running_a, &empty),
            ALICE,
            &trusted,
        )
        .unwrap_err();
        assert_eq!(
            err.message,
            "label hami.io/vgpu-node is written by the scheduler and cannot be added, changed or removed by alice"
        );
        // sliceguard may do anything; the plugin only its two keys.
        assert_eq!(
            check_update(
                meta(&empty, &empty),
                meta(&running_a, &running_l),
                DEFAULT_SCHEDULER_USER,
                &trusted
            ),
            Ok(())
        );
        let mut allocated = running_a.clone();
        allocated.insert(BIND_PHASE.into(), "success".into());
        allocated.insert(DEVICES_TO_ALLOCATE.into(), ";".into());
        assert_eq!(
            check_update(
                meta(&running_a, &running_l),
                meta(&allocated, &running_l),
                DEFAULT_DEVICE_PLUGIN_USER,
                &trusted
            ),
            Ok(())
        );
        let mut moved = allocated.clone();
        moved.insert(VGPU_NODE.into(), "n2".into());
        let err = check_update(
            meta(&running_a, &running_l),
            meta(&moved, &running_l),
            DEFAULT_DEVICE_PLUGIN_USER,
            &trusted,
        )
        .unwrap_err();
        assert_eq!(err.key, GuardedKey::Annotation(VGPU_NODE));
        // Other keys are nobody's business here.
        let mut other = running_a.clone();
        other.insert("team".into(), "ml".into());
        assert_eq!(
            check_update(
                meta(&running_a, &running_l),
                meta(&other, &running_l),
                ALICE,
                &trusted
            ),
            Ok(())
        );
        // The webhook's opt-out label may not be put on (or taken off) a placed pod, except by
        // sliceguard; on a pod without scheduler state it is the owner's choice.
        let mut opted_out = running_l.clone();
        opted_out.insert(WEBHOOK_LABEL.into(), "ignore".into());
        for user in [ALICE, DEFAULT_DEVICE_PLUGIN_USER] {
            let err = check_update(
                meta(&running_a, &running_l),
                meta(&running_a, &opted_out),
                user,
                &trusted,
            )
            .unwrap_err();
            assert_eq!(err.key, GuardedKey::Label(WEBHOOK_LABEL));
            assert!(
                err.message
                    .starts_with("label hami.io/webhook cannot be changed by"),
                "{err}"
            );
        }
        assert_eq!(
            check_update(
                meta(&running_a, &running_l),
                meta(&running_a, &opted_out),
                DEFAULT_SCHEDULER_USER,
                &trusted
            ),
            Ok(())
        );
        let ignore = map(&[(WEBHOOK_LABEL, "ignore")]);
        assert_eq!(
            check_update(meta(&empty, &empty), meta(&empty, &ignore), ALICE, &trusted),
            Ok(())
        );
        // An empty trusted name trusts nobody, including the anonymous user.
        let nobody = TrustedUsers {
            scheduler: String::new(),
            device_plugin: String::new(),
        };
        let err =
            check_update(meta(&empty, &empty), meta(&running_a, &empty), "", &nobody).unwrap_err();
        assert!(err.message.ends_with("by an anonymous user"), "{err}");
    }

    // ---- property test: an independent oracle over generated maps and users ----

    /// Keys the generator draws from: every guarded key name, the webhook's opt-out label, and two
    /// that are not guarded.
    const KEYS: [&str; 9] = [
        "hami.io/webhook",
        VGPU_NODE,
        VGPU_TIME,
        BIND_TIME,
        DEVICES_ALLOCATED,
        DEVICES_TO_ALLOCATE,
        BIND_PHASE,
        "nvidia.com/use-gputype",
        "app",
    ];
    const USERS: [&str; 4] = [
        DEFAULT_SCHEDULER_USER,
        DEFAULT_DEVICE_PLUGIN_USER,
        "kubernetes-admin",
        "system:serviceaccount:default:tenant",
    ];

    fn small_map() -> impl Strategy<Value = BTreeMap<String, String>> {
        proptest::collection::btree_map(
            proptest::sample::select(&KEYS[..]).prop_map(String::from),
            prop_oneof![
                Just(String::new()),
                Just("a".to_string()),
                Just("b".to_string())
            ],
            0..5,
        )
    }

    /// Old metadata, and new metadata that often equals it or differs in one key.
    fn maps() -> impl Strategy<Value = [BTreeMap<String, String>; 4]> {
        (small_map(), small_map(), small_map(), small_map(), 0..4u8).prop_map(
            |(oa, ol, na, nl, how)| match how {
                0 => [oa.clone(), ol.clone(), oa, ol],
                1 => [oa.clone(), ol, na, nl],
                2 => [oa.clone(), ol.clone(), oa, nl],
                _ => [oa, ol.clone(), na, ol],
            },
        )
    }

    /// The oracle: the rules written out key by key, without the module's helpers.
    fn oracle(
        old: [&BTreeMap<String, String>; 2],
        new: [&BTreeMap<String, String>; 2],
        user: &str,
    ) -> bool {
        let guarded_annotations: BTreeSet<&str> = [
            "hami.io/vgpu-node",
            "hami.io/vgpu-time",
            "hami.io/bind-time",
            "hami.io/vgpu-devices-allocated",
            "hami.io/vgpu-devices-to-allocate",
            "hami.io/bind-phase",
        ]
        .into_iter()
        .collect();
        let mut changed: Vec<(bool, &str)> = Vec::new();
        for k in KEYS {
            if guarded_annotations.contains(k) && old[0].get(k) != new[0].get(k) {
                changed.push((false, k));
            }
        }
        if old[1].get("hami.io/vgpu-node") != new[1].get("hami.io/vgpu-node") {
            changed.push((true, "hami.io/vgpu-node"));
        }
        let placed = KEYS
            .iter()
            .any(|k| guarded_annotations.contains(k) && old[0].contains_key(*k))
            || old[1].contains_key("hami.io/vgpu-node");
        let opted = old[1].get("hami.io/webhook") != new[1].get("hami.io/webhook");
        match user {
            "system:serviceaccount:sliceguard-system:sliceguard" => true,
            _ if placed && opted => false,
            "system:serviceaccount:kube-system:hami-device-plugin" => {
                changed.iter().all(|(label, k)| {
                    !label
                        && (*k == "hami.io/bind-phase" || *k == "hami.io/vgpu-devices-to-allocate")
                })
            }
            _ => changed.is_empty(),
        }
    }

    /// Which branch of the rule a generated case takes.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
    enum Branch {
        AllowedUnchanged,
        AllowedScheduler,
        AllowedPlugin,
        DeniedPlugin,
        DeniedTenant,
        DeniedTenantLabelOnly,
        DeniedOptOut,
    }

    fn branch(got: &Result<(), Denial>, changed: &[GuardedKey], user: &str) -> Option<Branch> {
        Some(match (got, user) {
            (Ok(()), _) if changed.is_empty() => Branch::AllowedUnchanged,
            (Ok(()), DEFAULT_SCHEDULER_USER) => Branch::AllowedScheduler,
            (Ok(()), DEFAULT_DEVICE_PLUGIN_USER) => Branch::AllowedPlugin,
            (Err(d), _) if d.key == GuardedKey::Label(WEBHOOK_LABEL) => Branch::DeniedOptOut,
            (Err(_), DEFAULT_DEVICE_PLUGIN_USER) => Branch::DeniedPlugin,
            (Err(d), _) if changed == [d.key] && matches!(d.key, GuardedKey::Label(_)) => {
                Branch::DeniedTenantLabelOnly
            }
            (Err(_), _) => Branch::DeniedTenant,
            (Ok(()), _) => return None,
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2000, failure_persistence: None, ..ProptestConfig::default() })]
        #[test]
        fn update_and_create_match_the_oracle(
            [oa, ol, na, nl] in maps(),
            user in proptest::sample::select(&USERS[..]),
        ) {
            let trusted = TrustedUsers::default();
            let got = check_update(meta(&oa, &ol), meta(&na, &nl), user, &trusted);
            let want = oracle([&oa, &ol], [&na, &nl], user);
            prop_assert_eq!(got.is_ok(), want, "{:?}", got);
            let changed = changed_keys(meta(&oa, &ol), meta(&na, &nl));
            if let Err(denial) = &got {
                // The denial names a key that really changed, and the user.
                prop_assert!(
                    changed.contains(&denial.key) || denial.key == GuardedKey::Label(WEBHOOK_LABEL)
                );
                prop_assert!(denial.message.contains(denial.key.name()));
                prop_assert!(denial.message.contains(user));
            }
            // CREATE of the new object: denied exactly when it carries a guarded key.
            let carries = GuardedKey::all().any(|k| match k {
                GuardedKey::Annotation(n) => na.contains_key(n),
                GuardedKey::Label(n) => nl.contains_key(n),
            });
            let create = check_create(meta(&na, &nl));
            prop_assert_eq!(create.is_err(), carries);
            prop_assert!(branch(&got, &changed, user).is_some(), "a tenant changed {:?}", changed);
        }
    }

    /// The generator reaches every branch of the rule, and CREATE both ways (a deterministic run of
    /// the same strategy, so the counts do not depend on the property test's own run).
    #[test]
    fn every_branch_of_the_rule_is_generated() {
        let mut runner = proptest::test_runner::TestRunner::deterministic();
        let strategy = (maps(), proptest::sample::select(&USERS[..]));
        let mut seen: BTreeMap<Branch, u32> = BTreeMap::new();
        let (mut create_denied, mut create_allowed) = (0u32, 0u32);
        for _ in 0..2000 {
            let tree = strategy
                .new_tree(&mut runner)
                .expect("the strategy has no filter");
            let ([oa, ol, na, nl], user) = proptest::strategy::ValueTree::current(&tree);
            let got = check_update(
                meta(&oa, &ol),
                meta(&na, &nl),
                user,
                &TrustedUsers::default(),
            );
            let changed = changed_keys(meta(&oa, &ol), meta(&na, &nl));
            if let Some(b) = branch(&got, &changed, user) {
                *seen.entry(b).or_default() += 1;
            }
            if check_create(meta(&na, &nl)).is_err() {
                create_denied += 1;
            } else {
                create_allowed += 1;
            }
        }
        for b in [
            Branch::AllowedUnchanged,
            Branch::AllowedScheduler,
            Branch::AllowedPlugin,
            Branch::DeniedPlugin,
            Branch::DeniedTenant,
            Branch::DeniedTenantLabelOnly,
            Branch::DeniedOptOut,
        ] {
            let n = seen.get(&b).copied().unwrap_or(0);
            assert!(n >= 10, "only {n} cases of {b:?}: {seen:?}");
        }
        assert!(
            create_denied >= 10 && create_allowed >= 10,
            "{create_denied} {create_allowed}"
        );
    }
}
