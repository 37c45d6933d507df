//! The bind state machine on every path, driven against an in-memory API with real resourceVersion
//! semantics. Every test ends by asserting who holds the node lock.

mod bind_support;

use bind_support::{FakeCluster, FaultAction, settings, t};
use jiff::SignedDuration;
use sliceguard_core::annotations::{BIND_PHASE, BIND_TIME};
use sliceguard_core::bind::{
    BINDING_UNVERIFIED, BindError, BindMachine, BindOutcome, BindSettings, Effect, LockFate,
    LockRule, PodDecision, ReleaseMode, ReleaseResult, Step,
};

const NS: &str = "default";
const FIVE_MIN: SignedDuration = SignedDuration::from_mins(5);

fn cluster_with_pod() -> FakeCluster {
    let mut c = FakeCluster::with_nodes(&["n1", "n2"]);
    c.add_pod(NS, "p");
    c
}

fn after_bind() -> BindSettings {
    settings(ReleaseMode::AfterBind)
}

fn device_plugin() -> BindSettings {
    settings(ReleaseMode::DevicePlugin)
}

/// A lock value held by `ns/name`, taken `ago` before the fake's clock.
fn lock_of(c: &FakeCluster, ago: SignedDuration, ns: &str, name: &str) -> String {
    let at = c.now - ago;
    format!("{},{ns},{name}", at.strftime("%Y-%m-%dT%H:%M:%SZ"))
}

fn error_text(outcome: &sliceguard_core::bind::BindOutcome) -> String {
    outcome.result.as_ref().unwrap_err().to_string()
}

#[test]
fn after_bind_success_locks_binds_marks_and_releases() {
    let mut c = cluster_with_pod();
    let request = c.request(NS, "p", "n1");
    let outcome = c.bind(request, &after_bind());
    assert_eq!(outcome.result, Ok(()));
    assert_eq!(outcome.lock, LockFate::Released);
    assert!(outcome.acquired);
    assert_eq!(outcome.takeover, None);
    let kinds: Vec<&str> = c.trace.iter().map(Effect::kind).collect();
    assert_eq!(
        kinds,
        [
            "get-pod",
            "get-node",
            "write-lock",
            "patch-pod",
            "create-binding",
            "patch-pod",
            "clear-lock",
            "emit-event"
        ]
    );
    let pod = c.pod("default/p");
    assert_eq!(pod.node_name.as_deref(), Some("n1"));
    assert_eq!(pod.annotations[BIND_PHASE], "success");
    let bind_time: i64 = pod.annotations[BIND_TIME].parse().unwrap();
    assert!((bind_time - t(bind_support::T0).as_second()).abs() <= 1);
    assert_eq!(
        c.event_texts(),
        ["BindingSucceed: Successfully binding node [n1] to default/p"]
    );
    // The lock was written with this pod as holder, and is gone now.
    let Effect::WriteLock { value, .. } = &c.trace[2] else {
        panic!()
    };
    assert!(value.ends_with(",default,p"), "{value}");
    assert_eq!(c.lock("n1"), None);
    assert_eq!(c.lock("n2"), None);
}

#[test]
fn device_plugin_mode_holds_the_lock_until_the_phase_settles() {
    let mut c = cluster_with_pod();
    let request = c.request(NS, "p", "n1");
    let outcome = c.bind(request, &device_plugin());
    assert_eq!(outcome.result, Ok(()));
    let LockFate::HeldForDevicePlugin { value, expires_at } = &outcome.lock else {
        panic!("{:?}", outcome.lock)
    };
    assert!(value.ends_with(",default,p"));
    assert!(*expires_at > c.now + SignedDuration::from_secs(299));
    assert_eq!(c.pod("default/p").annotations[BIND_PHASE], "allocating");
    assert_eq!(c.count("clear-lock"), 0);
    assert_eq!(c.lock("n1").as_deref(), Some(value.as_str()));

    // The reaper keeps it while the device plugin has not answered...
    assert_eq!(
        c.reap("n1", ReleaseMode::DevicePlugin, FIVE_MIN, None),
        None
    );
    assert_eq!(c.lock("n1").as_deref(), Some(value.as_str()));
    // ... and releases it once bind-phase settles.
    c.pod_mut("default/p")
        .annotations
        .insert(BIND_PHASE.into(), "success".into());
    assert_eq!(
        c.reap("n1", ReleaseMode::DevicePlugin, FIVE_MIN, None),
        Some(ReleaseResult::Released)
    );
    assert_eq!(c.lock("n1"), None);
}

#[test]
fn device_plugin_lock_is_released_when_the_pod_fails_is_deleted_or_times_out() {
    for ending in [
        "failed",
        "deleted",
        "terminal",
        "timeout",
        "marked failed, not admitted",
    ] {
        let mut c = cluster_with_pod();
        let request = c.request(NS, "p", "n1");
        let outcome = c.bind(request, &device_plugin());
        assert!(matches!(outcome.lock, LockFate::HeldForDevicePlugin { .. }));
        if ending == "marked failed, not admitted" {
            // What a reaper that stopped between its stall mark and its delete leaves: the
            // kubelet may still admit the pod, so the mark alone frees nothing.
            c.pod_mut("default/p")
                .annotations
                .insert(BIND_PHASE.into(), "failed".into());
        }
        match ending {
            "failed" => {
                // Settled `failed` by the device plugin once the kubelet is past the pod's
                // admission: no Allocate can come for it any more.
                let pod = c.pod_mut("default/p");
                pod.annotations.insert(BIND_PHASE.into(), "failed".into());
                pod.phase = Some("Running".into());
            }
            "deleted" => {
                c.pods.remove("default/p");
            }
            "terminal" => c.pod_mut("default/p").phase = Some("Failed".into()),
            _ => {
                assert_eq!(
                    c.reap("n1", ReleaseMode::DevicePlugin, FIVE_MIN, None),
                    None
                );
                // Bound here, allocating or marked failed, not admitted: only the stall deadline
                // frees it (and deletes p).
                c.now += FIVE_MIN + SignedDuration::from_secs(1);
                assert_eq!(
                    c.reap("n1", ReleaseMode::DevicePlugin, FIVE_MIN, None),
                    None
                );
                c.now += SignedDuration::from_mins(10);
            }
        }
        assert_eq!(
            c.reap("n1", ReleaseMode::DevicePlugin, FIVE_MIN, None),
            Some(ReleaseResult::Released),
            "{ending}"
        );
        assert_eq!(c.lock("n1"), None, "{ending}");
    }
}

#[test]
fn contention_with_a_live_holder_gives_hamis_error_and_leaves_the_lock() {
    let mut c = cluster_with_pod();
    c.add_pod(NS, "holder");
    let held = lock_of(&c, SignedDuration::from_secs(30), NS, "holder");
    c.set_lock("n1", &held);
    let request = c.request(NS, "p", "n1");
    let outcome = c.bind(request, &after_bind());
    assert_eq!(
        error_text(&outcome),
        "node n1 has been locked within 5m0s: node lock contention"
    );
    assert!(outcome.result.as_ref().unwrap_err().is_contention());
    assert_eq!(outcome.lock, LockFate::NotTaken);
    assert_eq!(
        c.event_texts(),
        ["BindingFailed: node n1 has been locked within 5m0s: node lock contention"]
    );
    assert_eq!(c.pod("default/p").node_name, None);
    assert_eq!(c.count("write-lock"), 0);
    assert_eq!(c.lock("n1"), Some(held));
}

#[test]
fn contention_text_formats_the_timeout_like_go() {
    let mut c = cluster_with_pod();
    c.add_pod(NS, "holder");
    let held = lock_of(&c, SignedDuration::from_secs(1), NS, "holder");
    c.set_lock("n1", &held);
    let request = c.request(NS, "p", "n1");
    let settings = BindSettings {
        lock_timeout: SignedDuration::from_secs(90),
        ..after_bind()
    };
    let outcome = c.bind(request, &settings);
    assert_eq!(
        error_text(&outcome),
        "node n1 has been locked within 1m30s: node lock contention"
    );
    assert_eq!(c.lock("n1"), Some(held));
}

#[test]
fn takeover_rules_each_free_the_lock_for_a_new_pod() {
    struct Case {
        name: &'static str,
        mode: ReleaseMode,
        prepare: fn(&mut FakeCluster) -> String,
        rule: LockRule,
    }
    let cases = [
        Case {
            name: "expired",
            mode: ReleaseMode::AfterBind,
            prepare: |c| {
                c.add_pod(NS, "holder");
                lock_of(c, SignedDuration::from_secs(301), NS, "holder")
            },
            rule: LockRule::Expired,
        },
        Case {
            name: "legacy expired",
            mode: ReleaseMode::DevicePlugin,
            prepare: |c| {
                let at = c.now - SignedDuration::from_secs(301);
                at.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
            },
            rule: LockRule::Expired,
        },
        Case {
            name: "dangling",
            mode: ReleaseMode::DevicePlugin,
            prepare: |c| lock_of(c, SignedDuration::from_secs(10), NS, "deleted-pod"),
            rule: LockRule::Dangling,
        },
        Case {
            name: "holder finished",
            mode: ReleaseMode::DevicePlugin,
            prepare: |c| {
                c.add_pod(NS, "holder");
                c.pod_mut("default/holder").phase = Some("Succeeded".into());
                lock_of(c, SignedDuration::from_secs(10), NS, "holder")
            },
            rule: LockRule::HolderFinished,
        },
        Case {
            name: "holder deleting",
            mode: ReleaseMode::AfterBind,
            prepare: |c| {
                c.add_pod(NS, "holder");
                c.pod_mut("default/holder").deleting = true;
                lock_of(c, SignedDuration::from_secs(10), NS, "holder")
            },
            rule: LockRule::HolderFinished,
        },
        Case {
            name: "holder elsewhere",
            mode: ReleaseMode::DevicePlugin,
            prepare: |c| {
                c.add_pod(NS, "holder");
                c.pod_mut("default/holder").node_name = Some("n2".into());
                lock_of(c, SignedDuration::from_secs(10), NS, "holder")
            },
            rule: LockRule::HolderElsewhere,
        },
        Case {
            name: "holder bound here (after-bind crash)",
            mode: ReleaseMode::AfterBind,
            prepare: |c| {
                c.add_pod(NS, "holder");
                c.pod_mut("default/holder").node_name = Some("n1".into());
                lock_of(c, SignedDuration::from_secs(10), NS, "holder")
            },
            rule: LockRule::HolderBound,
        },
        Case {
            name: "phase settled",
            mode: ReleaseMode::DevicePlugin,
            prepare: |c| {
                c.add_pod(NS, "holder");
                let h = c.pod_mut("default/holder");
                h.node_name = Some("n1".into());
                h.annotations.insert(BIND_PHASE.into(), "success".into());
                lock_of(c, SignedDuration::from_secs(10), NS, "holder")
            },
            rule: LockRule::PhaseSettled,
        },
    ];
    for case in cases {
        let mut c = cluster_with_pod();
        let stale = (case.prepare)(&mut c);
        c.set_lock("n1", &stale);
        let request = c.request(NS, "p", "n1");
        let outcome = c.bind(request, &settings(case.mode));
        assert_eq!(outcome.result, Ok(()), "{}", case.name);
        assert_eq!(outcome.takeover, Some(case.rule), "{}", case.name);
        assert!(outcome.acquired, "{}", case.name);
        // The takeover is one compare-and-swap on the version read with the stale value.
        assert_eq!(c.count("write-lock"), 1, "{}", case.name);
        match case.mode {
            ReleaseMode::AfterBind => assert_eq!(c.lock("n1"), None, "{}", case.name),
            ReleaseMode::DevicePlugin => {
                let now_held = c.lock("n1").unwrap();
                assert!(
                    now_held.ends_with(",default,p"),
                    "{}: {now_held}",
                    case.name
                );
            }
        }
    }
}

#[test]
fn a_holder_bound_here_keeps_the_lock_in_device_plugin_mode() {
    let mut c = cluster_with_pod();
    c.add_pod(NS, "holder");
    c.pod_mut("default/holder").node_name = Some("n1".into());
    let held = lock_of(&c, SignedDuration::from_secs(10), NS, "holder");
    c.set_lock("n1", &held);
    let request = c.request(NS, "p", "n1");
    let outcome = c.bind(request, &device_plugin());
    assert!(outcome.result.unwrap_err().is_contention());
    assert_eq!(c.lock("n1"), Some(held));
}

#[test]
fn the_pods_own_lock_is_reentrant() {
    let mut c = cluster_with_pod();
    let ours = lock_of(&c, SignedDuration::from_secs(20), NS, "p");
    c.set_lock("n1", &ours);
    let request = c.request(NS, "p", "n1");
    let outcome = c.bind(request, &after_bind());
    assert_eq!(outcome.result, Ok(()));
    assert_eq!(outcome.takeover, Some(LockRule::Reentrant));
    assert!(!outcome.acquired);
    assert_eq!(c.count("write-lock"), 0);
    assert_eq!(outcome.lock, LockFate::Released);
    assert_eq!(c.lock("n1"), None);
}

#[test]
fn a_lost_answer_after_the_lock_write_finds_its_own_lock_and_continues() {
    let mut c = cluster_with_pod();
    c.fault("write-lock", 0, FaultAction::LostAfterApply);
    let request = c.request(NS, "p", "n1");
    let outcome = c.bind(request, &after_bind());
    assert_eq!(outcome.result, Ok(()));
    // The write landed: it counts as our acquisition, not a re-entry.
    assert!(outcome.acquired);
    assert_eq!(outcome.takeover, None);
    let kinds: Vec<&str> = c.trace.iter().map(Effect::kind).collect();
    assert_eq!(
        &kinds[..4],
        ["get-pod", "get-node", "write-lock", "get-node"]
    );
    assert_eq!(c.count("write-lock"), 1);
    assert_eq!(c.pod("default/p").node_name.as_deref(), Some("n1"));
    assert_eq!(c.lock("n1"), None);
}

#[test]
fn a_lock_write_lost_before_it_applied_is_written_again() {
    let mut c = cluster_with_pod();
    c.fault("write-lock", 0, FaultAction::Unavailable);
    let request = c.request(NS, "p", "n1");
    let outcome = c.bind(request, &after_bind());
    assert_eq!(outcome.result, Ok(()));
    assert_eq!(c.count("write-lock"), 2);
    assert_eq!(c.lock("n1"), None);
}

#[test]
fn a_409_on_the_lock_write_rereads_and_retries_with_the_new_version() {
    let mut c = cluster_with_pod();
    // Another writer (a kubelet status update) changes the node between our read and our write.
    c.on_effect(|c, _, effect| {
        if matches!(effect, Effect::WriteLock { .. }) && c.count("write-lock") == 1 {
            c.touch_node("n1");
        }
    });
    let request = c.request(NS, "p", "n1");
    let outcome = c.bind(request, &after_bind());
    assert_eq!(outcome.result, Ok(()));
    let versions: Vec<String> = c
        .trace
        .iter()
        .filter_map(|e| match e {
            Effect::WriteLock {
                resource_version, ..
            } => Some(resource_version.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(versions.len(), 2);
    assert_ne!(
        versions[0], versions[1],
        "the retry uses the new resourceVersion"
    );
    assert_eq!(c.count("get-node"), 2);
    assert_eq!(c.lock("n1"), None);
}

#[test]
fn a_409_that_reveals_a_new_holder_is_contention() {
    let mut c = cluster_with_pod();
    c.add_pod(NS, "racer");
    c.on_effect(|c, _, effect| {
        if matches!(effect, Effect::WriteLock { .. }) && c.count("write-lock") == 1 {
            let racer = lock_of(c, SignedDuration::ZERO, NS, "racer");
            c.set_lock("n1", &racer);
        }
    });
    let request = c.request(NS, "p", "n1");
    let outcome = c.bind(request, &after_bind());
    assert!(outcome.result.unwrap_err().is_contention());
    assert_eq!(outcome.lock, LockFate::NotTaken);
    assert!(c.lock("n1").unwrap().ends_with(",default,racer"));
}

#[test]
fn endless_409s_give_up_after_the_attempt_budget_without_a_lock() {
    let mut c = cluster_with_pod();
    c.on_effect(|c, _, effect| {
        if matches!(effect, Effect::WriteLock { .. }) {
            c.touch_node("n1");
        }
    });
    let request = c.request(NS, "p", "n1");
    let outcome = c.bind(request, &after_bind());
    let err = error_text(&outcome);
    assert!(
        err.starts_with("failed to set node lock (node=n1, attempts=5): conflict:"),
        "{err}"
    );
    assert_eq!(c.count("write-lock"), 5);
    assert_eq!(outcome.lock, LockFate::NotTaken);
    assert_eq!(c.event_texts(), [format!("BindingFailed: {err}")]);
    assert_eq!(c.lock("n1"), None);
}

#[test]
fn a_pod_gone_before_the_bind_takes_no_lock() {
    let mut c = FakeCluster::with_nodes(&["n1"]);
    let request = sliceguard_core::bind::BindRequest {
        namespace: NS.into(),
        name: "ghost".into(),
        uid: "u".into(),
        node: "n1".into(),
    };
    let outcome = c.bind(request, &after_bind());
    assert_eq!(error_text(&outcome), "pod default/ghost not found");
    assert_eq!(outcome.lock, LockFate::NotTaken);
    assert_eq!(c.count("get-node"), 0);
    assert_eq!(c.lock("n1"), None);
}

#[test]
fn a_replaced_pod_is_not_bound() {
    let mut c = cluster_with_pod();
    let mut request = c.request(NS, "p", "n1");
    request.uid = "uid-of-an-older-p".into();
    let outcome = c.bind(request, &after_bind());
    assert_eq!(
        error_text(&outcome),
        "pod default/p was replaced: uid uid-of-an-older-p is now uid-p"
    );
    assert_eq!(c.pod("default/p").node_name, None);
    assert_eq!(c.lock("n1"), None);
}

#[test]
fn a_pod_deleted_after_the_lock_was_taken_releases_it() {
    for deleted_before in ["patch-pod", "create-binding"] {
        let mut c = cluster_with_pod();
        c.on_effect(move |c, _, effect| {
            if effect.kind() == deleted_before {
                c.pods.remove("default/p");
            }
        });
        let request = c.request(NS, "p", "n1");
        let outcome = c.bind(request, &after_bind());
        assert_eq!(
            error_text(&outcome),
            "pod default/p not found",
            "{deleted_before}"
        );
        assert_eq!(outcome.lock, LockFate::Released, "{deleted_before}");
        assert_eq!(c.lock("n1"), None, "{deleted_before}");
    }
}

#[test]
fn a_missing_node_fails_with_hamis_text() {
    let mut c = cluster_with_pod();
    let request = c.request(NS, "p", "n9");
    let outcome = c.bind(request, &after_bind());
    assert_eq!(error_text(&outcome), "failed to get node n9");
    assert_eq!(c.event_texts(), ["BindingFailed: failed to get node n9"]);
    assert_eq!(outcome.lock, LockFate::NotTaken);
    assert_eq!(c.pod("default/p").node_name, None);
    assert_eq!((c.lock("n1"), c.lock("n2")), (None, None));
}

#[test]
fn a_node_deleted_while_locked_needs_no_release() {
    let mut c = cluster_with_pod();
    c.on_effect(|c, _, effect| {
        if effect.kind() == "create-binding" {
            c.nodes.remove("n1");
        }
    });
    let request = c.request(NS, "p", "n1");
    let outcome = c.bind(request, &after_bind());
    // The Binding does not check the node; the release finds the node gone.
    assert_eq!(outcome.result, Ok(()));
    assert_eq!(outcome.lock, LockFate::Released);
    assert_eq!(c.count("clear-lock"), 1);
    assert_eq!(c.lock("n1"), None);
    assert!(!c.nodes.contains_key("n1"));
}

#[test]
fn a_node_deleted_between_read_and_lock_write_fails_cleanly() {
    let mut c = cluster_with_pod();
    c.on_effect(|c, _, effect| {
        if effect.kind() == "write-lock" {
            c.nodes.remove("n1");
        }
    });
    let request = c.request(NS, "p", "n1");
    let outcome = c.bind(request, &after_bind());
    assert_eq!(error_text(&outcome), "failed to get node n1");
    assert_eq!(outcome.lock, LockFate::NotTaken);
    assert_eq!(c.pod("default/p").node_name, None);
    assert!(!c.nodes.contains_key("n1"));
    assert_eq!(c.lock("n2"), None);
}

#[test]
fn a_pod_patch_error_releases_the_lock() {
    let mut c = cluster_with_pod();
    c.fault("patch-pod", 0, FaultAction::Rejected);
    let request = c.request(NS, "p", "n1");
    let outcome = c.bind(request, &after_bind());
    assert_eq!(
        error_text(&outcome),
        "failed to patch pod default/p annotations: rejected (400): injected 400"
    );
    assert_eq!(outcome.lock, LockFate::Released);
    assert_eq!(c.count("create-binding"), 0);
    assert_eq!(c.lock("n1"), None);
}

#[test]
fn a_pod_patch_5xx_is_retried() {
    let mut c = cluster_with_pod();
    c.fault("patch-pod", 0, FaultAction::Unavailable);
    let request = c.request(NS, "p", "n1");
    let outcome = c.bind(request, &after_bind());
    assert_eq!(outcome.result, Ok(()));
    let patches: Vec<&Effect> = c.trace.iter().filter(|e| e.kind() == "patch-pod").collect();
    assert_eq!(patches[0], patches[1], "the same bind-time is sent again");
    assert_eq!(c.lock("n1"), None);
}

#[test]
fn a_binding_error_releases_the_lock_and_reports_it() {
    let mut c = cluster_with_pod();
    c.fault("create-binding", 0, FaultAction::Rejected);
    let request = c.request(NS, "p", "n1");
    let outcome = c.bind(request, &after_bind());
    let err = error_text(&outcome);
    assert_eq!(
        err,
        "failed to bind pod default/p to node n1: rejected (400): injected 400"
    );
    assert_eq!(c.event_texts(), [format!("BindingFailed: {err}")]);
    assert_eq!(c.pod("default/p").node_name, None);
    assert_eq!(outcome.lock, LockFate::Released);
    assert_eq!(c.lock("n1"), None);
}

#[test]
fn a_lost_binding_answer_is_resolved_by_reading_the_pod() {
    // Applied, answer lost: the pod is bound, so the bind succeeded.
    let mut c = cluster_with_pod();
    c.fault("create-binding", 0, FaultAction::LostAfterApply);
    let request = c.request(NS, "p", "n1");
    let outcome = c.bind(request, &after_bind());
    assert_eq!(outcome.result, Ok(()));
    assert_eq!(c.count("create-binding"), 1);
    assert_eq!(c.bindings.len(), 1);
    assert_eq!(c.lock("n1"), None);

    // Not applied, no answer: the pod is unbound, so the Binding is sent again.
    let mut c = cluster_with_pod();
    c.fault("create-binding", 0, FaultAction::Unavailable);
    let request = c.request(NS, "p", "n1");
    let outcome = c.bind(request, &after_bind());
    assert_eq!(outcome.result, Ok(()));
    assert_eq!(c.count("create-binding"), 2);
    assert_eq!(c.pod("default/p").node_name.as_deref(), Some("n1"));
    assert_eq!(c.lock("n1"), None);
}

/// A failed read after a lost `Binding` answer (a 429 once the client's retries are spent) says
/// nothing about the Binding: it is read again and resolves.
#[test]
fn a_failed_read_after_a_lost_binding_answer_is_read_again() {
    let mut c = cluster_with_pod();
    c.fault("create-binding", 0, FaultAction::LostAfterApply);
    c.fault("get-pod", 1, FaultAction::Rejected);
    let request = c.request(NS, "p", "n1");
    let outcome = c.bind(request, &device_plugin());
    assert_eq!(outcome.result, Ok(()));
    assert_eq!(c.count("get-pod"), 3);
    assert!(matches!(outcome.lock, LockFate::HeldForDevicePlugin { .. }));
}

/// When no read can tell whether a `Binding` whose answer was lost landed, the bind fails saying
/// so; in `device-plugin` mode the lock stays for the device plugin (the pod may be bound and
/// about to allocate: releasing it would let a second pod go mid-allocation, HAMi #781), in
/// `after-bind` mode it is released.
#[test]
fn an_unverifiable_binding_keeps_the_lock_only_for_the_device_plugin() {
    for (mode, applied) in [
        (ReleaseMode::DevicePlugin, true),
        (ReleaseMode::DevicePlugin, false),
        (ReleaseMode::AfterBind, true),
    ] {
        let mut c = cluster_with_pod();
        let lost = if applied {
            FaultAction::LostAfterApply
        } else {
            FaultAction::Unavailable
        };
        c.fault("create-binding", 0, lost);
        for nth in 1..=20 {
            c.fault("get-pod", nth, FaultAction::Rejected);
        }
        let request = c.request(NS, "p", "n1");
        let settings = settings(mode);
        let outcome = c.bind(request, &settings);
        let err = error_text(&outcome);
        let lost_text = if applied {
            "no definite answer: injected lost response"
        } else {
            "no definite answer: injected 503 Service Unavailable"
        };
        assert_eq!(
            err,
            format!(
                "failed to bind pod default/p to node n1: {lost_text}; {BINDING_UNVERIFIED}: rejected (400): injected 400"
            ),
            "{mode:?}"
        );
        assert_eq!(c.event_texts(), [format!("BindingFailed: {err}")]);
        assert_eq!(
            c.count("get-pod"),
            2 + settings.max_retries as usize,
            "the check, then every read retries allow"
        );
        assert_eq!(c.count("create-binding"), 1);
        assert_eq!(
            c.pod("default/p").node_name.as_deref(),
            applied.then_some("n1")
        );
        match mode {
            ReleaseMode::DevicePlugin => {
                let LockFate::HeldForDevicePlugin { value, .. } = &outcome.lock else {
                    panic!("{:?}", outcome.lock)
                };
                assert_eq!(c.lock("n1").as_deref(), Some(value.as_str()));
                assert!(value.ends_with(",default,p"), "{value}");
            }
            ReleaseMode::AfterBind => {
                assert_eq!(outcome.lock, LockFate::Released);
                assert_eq!(c.lock("n1"), None);
            }
        }
    }
}

#[test]
fn a_binding_conflict_for_a_pod_bound_elsewhere_fails_and_releases() {
    let mut c = cluster_with_pod();
    c.on_effect(|c, _, effect| {
        if effect.kind() == "create-binding" {
            c.pod_mut("default/p").node_name = Some("n2".into());
        }
    });
    let request = c.request(NS, "p", "n1");
    let outcome = c.bind(request, &after_bind());
    assert_eq!(
        error_text(&outcome),
        "pod default/p is already bound to node n2"
    );
    assert_eq!(outcome.lock, LockFate::Released);
    assert_eq!(c.lock("n1"), None);
}

#[test]
fn a_retry_of_a_pod_already_bound_here_succeeds_and_releases_its_lock() {
    // An earlier attempt bound the pod, then its answer was lost and it never released.
    let mut c = cluster_with_pod();
    let ours = lock_of(&c, SignedDuration::from_secs(5), NS, "p");
    c.set_lock("n1", &ours);
    c.pod_mut("default/p").node_name = Some("n1".into());
    let request = c.request(NS, "p", "n1");
    let outcome = c.bind(request, &after_bind());
    assert_eq!(outcome.result, Ok(()));
    assert_eq!(outcome.lock, LockFate::Released);
    assert_eq!(c.count("create-binding"), 0);
    assert_eq!(c.lock("n1"), None);
}

#[test]
fn a_release_conflict_rereads_and_clears_with_the_new_version() {
    let mut c = cluster_with_pod();
    c.on_effect(|c, _, effect| {
        if effect.kind() == "clear-lock" && c.count("clear-lock") == 1 {
            c.touch_node("n1");
        }
    });
    let request = c.request(NS, "p", "n1");
    let outcome = c.bind(request, &after_bind());
    assert_eq!(outcome.result, Ok(()));
    assert_eq!(outcome.lock, LockFate::Released);
    assert_eq!(c.count("clear-lock"), 2);
    assert_eq!(c.lock("n1"), None);
}

#[test]
fn a_release_whose_answer_was_lost_rereads_and_finds_it_gone() {
    let mut c = cluster_with_pod();
    c.fault("clear-lock", 0, FaultAction::LostAfterApply);
    let request = c.request(NS, "p", "n1");
    let outcome = c.bind(request, &after_bind());
    assert_eq!(outcome.result, Ok(()));
    assert_eq!(outcome.lock, LockFate::Released);
    assert_eq!(c.count("clear-lock"), 1);
    assert_eq!(c.lock("n1"), None);
}

#[test]
fn only_the_owner_releases_a_lock_someone_else_took_over_stays() {
    let mut c = cluster_with_pod();
    c.add_pod(NS, "other");
    c.on_effect(move |c, _, effect| {
        if effect.kind() == "clear-lock" && c.count("clear-lock") == 1 {
            // An expiry takeover by another binder lands first.
            let other_value = lock_of(c, SignedDuration::ZERO, NS, "other");
            c.set_lock("n1", &other_value);
        }
    });
    let request = c.request(NS, "p", "n1");
    let outcome = c.bind(request, &after_bind());
    assert_eq!(outcome.result, Ok(()));
    let LockFate::TakenByOther { value } = &outcome.lock else {
        panic!("{:?}", outcome.lock)
    };
    assert!(value.ends_with(",default,other"));
    assert_eq!(c.lock("n1").as_deref(), Some(value.as_str()));
}

#[test]
fn a_release_that_keeps_failing_is_stranded_and_the_reaper_frees_it() {
    let mut c = cluster_with_pod();
    c.fault("clear-lock", 0, FaultAction::Rejected);
    let request = c.request(NS, "p", "n1");
    let outcome = c.bind(request, &after_bind());
    assert_eq!(outcome.result, Ok(()));
    let LockFate::Stranded {
        value, expires_at, ..
    } = &outcome.lock
    else {
        panic!("{:?}", outcome.lock)
    };
    assert_eq!(c.lock("n1").as_deref(), Some(value.as_str()));
    assert!(*expires_at > c.now);
    // The holder is bound here, so in after-bind mode the reaper frees it at once.
    assert_eq!(
        c.reap("n1", ReleaseMode::AfterBind, FIVE_MIN, None),
        Some(ReleaseResult::Released)
    );
    assert_eq!(c.lock("n1"), None);
}

#[test]
fn a_failed_success_mark_is_a_warning_and_the_lock_is_still_released() {
    let mut c = cluster_with_pod();
    c.fault("patch-pod", 1, FaultAction::Rejected);
    let request = c.request(NS, "p", "n1");
    let outcome = c.bind(request, &after_bind());
    assert_eq!(outcome.result, Ok(()));
    assert_eq!(outcome.warnings.len(), 1, "{:?}", outcome.warnings);
    assert!(outcome.warnings[0].contains("hami.io/bind-phase=success"));
    assert_eq!(c.pod("default/p").annotations[BIND_PHASE], "allocating");
    assert_eq!(outcome.lock, LockFate::Released);
    assert_eq!(c.lock("n1"), None);
}

#[test]
fn transient_read_failures_are_retried_then_reported() {
    let mut c = cluster_with_pod();
    c.fault("get-node", 0, FaultAction::Unavailable);
    c.fault("get-pod", 0, FaultAction::Unavailable);
    let request = c.request(NS, "p", "n1");
    assert_eq!(c.bind(request, &after_bind()).result, Ok(()));
    assert_eq!(c.lock("n1"), None);

    let mut c = cluster_with_pod();
    for nth in 0..4 {
        c.fault("get-node", nth, FaultAction::Unavailable);
    }
    let request = c.request(NS, "p", "n1");
    let outcome = c.bind(request, &after_bind());
    assert_eq!(
        error_text(&outcome),
        "failed to get node n1: no definite answer: injected 503 Service Unavailable"
    );
    assert_eq!(c.count("get-node"), 4);
    assert_eq!(c.lock("n1"), None);
}

#[test]
fn a_crash_after_the_lock_was_taken_is_recovered_by_the_retry_of_the_same_pod() {
    let mut c = cluster_with_pod();
    let request = c.request(NS, "p", "n1");
    // get-pod, get-node, write-lock: the scheduler dies with the lock held.
    let machine = c.bind_and_crash(request.clone(), &after_bind(), 3);
    assert!(machine.holds_lock());
    drop(machine);
    assert!(c.lock("n1").unwrap().ends_with(",default,p"));

    // The next scheduler instance gets kube-scheduler's retry of the same pod.
    let outcome = c.bind(request, &after_bind());
    assert_eq!(outcome.result, Ok(()));
    assert_eq!(outcome.takeover, Some(LockRule::Reentrant));
    assert_eq!(c.lock("n1"), None);
}

#[test]
fn a_crash_after_the_lock_was_taken_blocks_others_only_until_the_timeout() {
    let mut c = cluster_with_pod();
    c.add_pod(NS, "q");
    let request = c.request(NS, "p", "n1");
    drop(c.bind_and_crash(request, &after_bind(), 4));
    let stale = c.lock("n1").unwrap();
    assert!(stale.ends_with(",default,p"));

    // Another pod is refused while the timeout runs; the reaper keeps it (p is pending) ...
    let q = c.request(NS, "q", "n1");
    let refused = c.bind(q.clone(), &after_bind());
    assert!(refused.result.unwrap_err().is_contention());
    assert_eq!(c.reap("n1", ReleaseMode::AfterBind, FIVE_MIN, None), None);
    assert_eq!(c.lock("n1").as_deref(), Some(stale.as_str()));

    // ... and once it has passed, the next bind takes it over by expiry.
    c.now += FIVE_MIN + SignedDuration::from_secs(1);
    let outcome = c.bind(q, &after_bind());
    assert_eq!(outcome.result, Ok(()));
    assert_eq!(outcome.takeover, Some(LockRule::Expired));
    assert_eq!(c.lock("n1"), None);
}

#[test]
fn a_crash_after_the_binding_is_recovered_by_the_reaper_at_once() {
    let mut c = cluster_with_pod();
    let request = c.request(NS, "p", "n1");
    // get-pod, get-node, write-lock, patch-pod, create-binding: bound, lock not yet released.
    drop(c.bind_and_crash(request, &after_bind(), 5));
    assert_eq!(c.pod("default/p").node_name.as_deref(), Some("n1"));
    assert!(c.lock("n1").unwrap().ends_with(",default,p"));
    // The next instance's reaper sees the holder bound here: HolderBound frees it.
    assert_eq!(
        c.reap("n1", ReleaseMode::AfterBind, FIVE_MIN, None),
        Some(ReleaseResult::Released)
    );
    assert_eq!(c.lock("n1"), None);
}

#[test]
fn a_crashed_device_plugin_mode_lock_outlives_its_expiry_until_the_holder_stalls() {
    let mut c = cluster_with_pod();
    let request = c.request(NS, "p", "n1");
    // Crashed after the Binding: p is bound to n1 in bind-phase allocating, mid-allocation.
    drop(c.bind_and_crash(request, &device_plugin(), 5));
    assert_eq!(c.pod("default/p").node_name.as_deref(), Some("n1"));
    let held = c.lock("n1").unwrap();
    let reap = |c: &mut FakeCluster| c.reap("n1", ReleaseMode::DevicePlugin, FIVE_MIN, None);
    assert_eq!(reap(&mut c), None);
    // Past the expiry the lock stands: its holder may still be admitted (HAMi #3096).
    c.now += FIVE_MIN + SignedDuration::from_secs(2);
    assert_eq!(reap(&mut c), None);
    assert_eq!(c.lock("n1"), Some(held.clone()));
    // At the stall deadline the reaper marks the holder failed, deletes it and frees the lock.
    c.now += SignedDuration::from_mins(10);
    assert_eq!(reap(&mut c), Some(ReleaseResult::Released));
    assert_eq!(c.lock("n1"), None);
    assert!(
        !c.pods.contains_key("default/p"),
        "the stalled holder is deleted"
    );
    let kinds: Vec<&str> = c.trace.iter().rev().take(5).map(Effect::kind).collect();
    assert_eq!(
        kinds,
        [
            "clear-lock",
            "get-node",
            "delete-pod",
            "emit-event",
            "patch-pod"
        ]
    );
}

#[test]
fn a_malformed_lock_is_reclaimed_after_the_timeout_from_its_first_sighting() {
    let mut c = cluster_with_pod();
    c.set_lock("n1", "lock");
    let request = c.request(NS, "p", "n1");
    let first = c.bind(request.clone(), &after_bind());
    let err = error_text(&first);
    assert!(
        err.starts_with("node n1 has a malformed lock \"lock\" (invalid lock time field \"lock\""),
        "{err}"
    );
    assert!(err.ends_with(": node lock contention"), "{err}");
    let sighting = first.malformed.clone().expect("the sighting is reported");
    assert_eq!(sighting.value, "lock");
    assert_eq!(c.lock("n1").as_deref(), Some("lock"));

    // Four minutes later, with the memory: still refused.
    c.now += SignedDuration::from_mins(4);
    let again = c.bind_with_memory(request.clone(), &after_bind(), Some(sighting.clone()));
    assert!(again.result.unwrap_err().is_contention());
    assert_eq!(again.malformed.as_ref(), Some(&sighting));
    assert_eq!(c.lock("n1").as_deref(), Some("lock"));

    // Past the timeout since the first sighting: reclaimed.
    c.now += SignedDuration::from_mins(1) + SignedDuration::from_secs(1);
    let outcome = c.bind_with_memory(request, &after_bind(), Some(sighting));
    assert_eq!(outcome.result, Ok(()));
    assert_eq!(outcome.takeover, Some(LockRule::Malformed));
    assert_eq!(outcome.malformed, None);
    assert_eq!(c.lock("n1"), None);
}

#[test]
fn a_malformed_value_that_changes_restarts_its_clock() {
    let mut c = cluster_with_pod();
    c.set_lock("n1", "a,b");
    let request = c.request(NS, "p", "n1");
    let first = c.bind(request.clone(), &after_bind());
    assert!(error_text(&first).contains("expected 3 parts, got 2"));
    let sighting = first.malformed.unwrap();
    c.set_lock("n1", "x,y");
    c.now += SignedDuration::from_mins(6);
    let outcome = c.bind_with_memory(request, &after_bind(), Some(sighting));
    assert!(outcome.result.unwrap_err().is_contention());
    assert_eq!(outcome.malformed.unwrap().value, "x,y");
    assert_eq!(c.lock("n1").as_deref(), Some("x,y"));
}

#[test]
fn a_fresh_legacy_lock_is_contention() {
    let mut c = cluster_with_pod();
    let legacy = (c.now - SignedDuration::from_secs(10))
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string();
    c.set_lock("n1", &legacy);
    let request = c.request(NS, "p", "n1");
    let outcome = c.bind(request, &after_bind());
    assert!(outcome.result.unwrap_err().is_contention());
    assert_eq!(c.lock("n1"), Some(legacy));
}

#[test]
fn the_machine_repeats_its_outcome_and_never_panics_on_odd_observations() {
    use sliceguard_core::bind::{BindMachine, Observation, Step};
    let c = cluster_with_pod();
    let request = c.request(NS, "p", "n1");
    let mut machine = BindMachine::new(request, after_bind(), None);
    let now = c.now;
    // A driver that answers every effect with the wrong kind of observation.
    let mut step = machine.start(now);
    let mut n = 0;
    while let Step::Do(_) = step {
        n += 1;
        assert!(n < 20);
        step = machine.observe(
            Observation::Written {
                resource_version: None,
            },
            now,
        );
    }
    let Step::Done(outcome) = step else { panic!() };
    assert!(matches!(
        outcome.result,
        Err(BindError::PodUnreadable { .. })
    ));
    assert_eq!(
        machine.observe(
            Observation::Written {
                resource_version: None
            },
            now
        ),
        Step::Done(outcome)
    );
    assert_eq!(c.lock("n1"), None);
}

#[test]
fn a_bind_the_pods_decision_does_not_allow_is_refused_before_any_lock() {
    let cases = [
        (
            PodDecision::Decided { node: "n2".into() },
            "its hami.io/vgpu-node annotation places it on node n2, not n1",
        ),
        (
            PodDecision::Unusable {
                problem: "it asks for GPUs but carries no hami.io/vgpu-node annotation".into(),
            },
            "carries no hami.io/vgpu-node",
        ),
    ];
    for (decision, expected) in cases {
        let mut c = cluster_with_pod();
        c.pod_mut("default/p").decision = decision.clone();
        let request = c.request(NS, "p", "n1");
        let outcome = c.bind(request, &after_bind());
        let error = outcome.result.as_ref().unwrap_err();
        assert!(
            matches!(error, BindError::DecisionRefused { .. }),
            "{decision:?}: {error}"
        );
        assert_eq!(error.kind(), "decision_refused");
        let text = error.to_string();
        assert!(
            text.starts_with("pod default/p cannot be bound to node n1: ")
                && text.contains(expected),
            "{text}"
        );
        assert_eq!(
            c.count("write-lock"),
            0,
            "{decision:?}: no lock may be taken"
        );
        assert_eq!(c.count("create-binding"), 0);
        assert_eq!(c.lock("n1"), None);
        assert_eq!(outcome.lock, LockFate::NotTaken);
    }
    // The decision's own node binds.
    let mut c = cluster_with_pod();
    c.pod_mut("default/p").decision = PodDecision::Decided { node: "n1".into() };
    let request = c.request(NS, "p", "n1");
    assert_eq!(c.bind(request, &after_bind()).result, Ok(()));
}

#[test]
fn device_plugin_mode_keeps_an_expired_lock_while_its_holder_is_mid_allocation() {
    let mut c = cluster_with_pod();
    c.add_pod(NS, "holder");
    {
        let holder = c.pod_mut("default/holder");
        holder.node_name = Some("n1".into());
        holder.phase = Some("Pending".into());
        holder
            .annotations
            .insert(BIND_PHASE.into(), "allocating".into());
    }
    let held = lock_of(&c, SignedDuration::from_secs(301), NS, "holder");
    c.set_lock("n1", &held);
    let request = c.request(NS, "p", "n1");
    let outcome = c.bind(request.clone(), &device_plugin());
    assert!(outcome.result.unwrap_err().is_contention());
    assert_eq!(
        c.lock("n1"),
        Some(held.clone()),
        "HAMi #3096: no handover mid-allocation"
    );
    // Past the stall deadline the binder still does not take it: clearing a stalled holder is the
    // reaper's (it marks the holder failed and deletes it first).
    c.now += SignedDuration::from_mins(15);
    let outcome = c.bind(request.clone(), &device_plugin());
    assert!(outcome.result.unwrap_err().is_contention());
    assert_eq!(c.lock("n1"), Some(held));
    // Once the device plugin settles the holder, the lock passes on.
    c.pod_mut("default/holder")
        .annotations
        .insert(BIND_PHASE.into(), "success".into());
    let outcome = c.bind(request, &device_plugin());
    assert_eq!(outcome.result, Ok(()));
    assert_eq!(outcome.takeover, Some(LockRule::PhaseSettled));
}

/// Drives a bind, and after `effects` executed effects tells the machine its caller went away.
fn bind_abandoned_after(
    c: &mut FakeCluster,
    effects: usize,
    settings: &BindSettings,
) -> sliceguard_core::bind::BindOutcome {
    let mut machine = BindMachine::new(c.request(NS, "p", "n1"), settings.clone(), None);
    let mut step = machine.start(c.now);
    let mut executed = 0;
    for _ in 0..100 {
        match step {
            Step::Do(effect) => {
                if executed == effects
                    && let Some(next) = machine.abandon()
                {
                    step = next;
                    executed += 1;
                    continue;
                }
                executed += 1;
                let observation = c.execute(&effect);
                step = machine.observe(observation, c.now);
            }
            Step::Done(outcome) => return outcome,
        }
    }
    panic!("the abandoned bind did not finish: {:?}", c.trace);
}

#[test]
fn a_bind_abandoned_before_the_binding_releases_its_lock_and_never_binds() {
    // Effects of a clean after-bind run: get-pod, get-node, write-lock, patch-pod (allocating),
    // create-binding, ... Abandoned before each of the first four, the bind stops.
    for effects in 0..4 {
        let mut c = cluster_with_pod();
        let outcome = bind_abandoned_after(&mut c, effects, &after_bind());
        let error = outcome.result.as_ref().unwrap_err();
        assert!(
            matches!(error, BindError::Abandoned { .. }),
            "after {effects}: {error}"
        );
        assert_eq!(
            c.lock("n1"),
            None,
            "after {effects} effects the lock is left"
        );
        assert_eq!(c.count("create-binding"), 0, "after {effects}");
        assert_eq!(c.pod("default/p").node_name, None);
        assert_eq!(c.count("emit-event"), 1, "BindingFailed is announced");
    }
    // From the Binding on, the protocol finishes: the pod is bound and the lock released.
    let mut c = cluster_with_pod();
    let outcome = bind_abandoned_after(&mut c, 4, &after_bind());
    assert_eq!(outcome.result, Ok(()));
    assert_eq!(c.pod("default/p").node_name.as_deref(), Some("n1"));
    assert_eq!(c.lock("n1"), None);
}

/// The machine's state names and lock ownership along a clean after-bind run, effect by effect:
/// what traces and the per-node bind gate read.
#[test]
fn states_and_lock_ownership_along_a_clean_bind() {
    let mut c = cluster_with_pod();
    let mut machine = BindMachine::new(c.request(NS, "p", "n1"), after_bind(), None);
    assert_eq!(
        (machine.state_name(), machine.holds_lock()),
        ("idle", false)
    );
    let mut step = machine.start(c.now);
    let mut seen = vec![(machine.state_name(), machine.holds_lock())];
    while let Step::Do(effect) = step {
        let observation = c.execute(&effect);
        step = machine.observe(observation, c.now);
        seen.push((machine.state_name(), machine.holds_lock()));
    }
    assert_eq!(
        seen,
        [
            ("check-pod", false),
            ("read-node", false),
            ("acquire", false),
            ("mark-allocating", true),
            ("create-binding", true),
            ("mark-success", true),
            ("release", true),
            ("announce", false),
            ("finished", false),
        ]
    );
}

/// A lock write whose answer never came, abandoned before anything confirmed it: the machine
/// clears exactly that value if it landed. If it never landed the lock was never taken; if it did,
/// it is released.
#[test]
fn an_abandoned_unconfirmed_lock_write_is_not_taken_or_released_as_it_landed() {
    for (action, fate) in [
        (FaultAction::Unavailable, LockFate::NotTaken),
        (FaultAction::LostAfterApply, LockFate::Released),
    ] {
        let mut c = cluster_with_pod();
        c.fault("write-lock", 0, action);
        let outcome = bind_abandoned_after(&mut c, 3, &after_bind());
        assert!(
            matches!(outcome.result, Err(BindError::Abandoned { .. })),
            "{action:?}: {:?}",
            outcome.result
        );
        assert_eq!(outcome.lock, fate, "{action:?}");
        assert_eq!(c.lock("n1"), None, "{action:?}");
    }
}

#[test]
fn release_modes_and_lock_fates_print_for_operators() {
    assert_eq!(ReleaseMode::AfterBind.as_str(), "after-bind");
    assert_eq!(ReleaseMode::DevicePlugin.as_str(), "device-plugin");
    assert_eq!(LockFate::NotTaken.to_string(), "not taken");
    assert_eq!(LockFate::Released.to_string(), "released");
    let taken = LockFate::TakenByOther { value: "v".into() };
    assert_eq!(taken.to_string(), "taken over by \"v\"");
}

/// A request or a pod without a uid cannot tell a replaced pod from the same one, so the uid
/// check only applies when both carry one.
#[test]
fn the_replaced_pod_check_needs_a_uid_on_both_sides() {
    let mut c = cluster_with_pod();
    let mut request = c.request(NS, "p", "n1");
    request.uid = String::new();
    assert_eq!(c.bind(request, &after_bind()).result, Ok(()));

    let mut c = cluster_with_pod();
    let request = c.request(NS, "p", "n1");
    c.pod_mut("default/p").uid = String::new();
    let outcome = c.bind(request, &after_bind());
    // Past the uid check to the Binding (which the fake API then refuses on its own precondition).
    assert!(
        !matches!(outcome.result, Err(BindError::PodReplaced { .. })),
        "{:?}",
        outcome.result
    );
    assert_eq!(c.count("create-binding"), 1);
    assert_eq!(c.lock("n1"), None);
}

/// Reading the pod is retried on an indeterminate answer, within the retry budget, and then
/// fails without taking the lock.
#[test]
fn an_unreadable_pod_is_retried_within_the_budget_then_fails() {
    let settings = after_bind();
    let mut c = cluster_with_pod();
    c.fault("get-pod", 0, FaultAction::Unavailable);
    c.fault("get-pod", 1, FaultAction::Unavailable);
    let request = c.request(NS, "p", "n1");
    assert_eq!(c.bind(request, &settings).result, Ok(()));

    let (c, outcome) = endless_indeterminate("get-pod");
    assert!(
        matches!(outcome.result, Err(BindError::PodUnreadable { .. })),
        "{:?}",
        outcome.result
    );
    assert_eq!(c.count("get-pod"), settings.max_retries as usize + 1);
    assert_eq!(c.count("write-lock"), 0);
    assert_eq!(outcome.lock, LockFate::NotTaken);
}

/// A pod found already bound to another node is not bound again, and no lock is taken here.
#[test]
fn a_pod_found_bound_elsewhere_is_refused_before_the_lock() {
    let mut c = cluster_with_pod();
    c.pod_mut("default/p").node_name = Some("n2".into());
    let request = c.request(NS, "p", "n1");
    let outcome = c.bind(request, &after_bind());
    assert!(
        matches!(&outcome.result, Err(BindError::BoundElsewhere { bound, .. }) if bound == "n2"),
        "{:?}",
        outcome.result
    );
    assert_eq!(c.count("write-lock"), 0);
    assert_eq!(c.count("create-binding"), 0);
    assert_eq!(c.lock("n1"), None);
}

/// A bind (after-bind mode) where every call of effect `kind` gets an indeterminate answer, well
/// past the retry budget; the fake API and the outcome, for the caller to judge.
fn endless_indeterminate(kind: &'static str) -> (FakeCluster, BindOutcome) {
    let settings = after_bind();
    let mut c = cluster_with_pod();
    for nth in 0..settings.max_retries as usize + 10 {
        c.fault(kind, nth, FaultAction::Unavailable);
    }
    let request = c.request(NS, "p", "n1");
    let outcome = c.bind(request, &settings);
    (c, outcome)
}

/// The allocating patch and the `Binding` are retried on an indeterminate answer within the
/// budget: one failure is absorbed, endless ones end the bind after `max_retries` retries, unbound,
/// with the lock this bind took released. (The pod, holder and verification reads have their own
/// tests.)
#[test]
fn the_patch_and_the_binding_are_retried_within_the_budget() {
    let budget = after_bind().max_retries as usize;
    for kind in ["patch-pod", "create-binding"] {
        let mut c = cluster_with_pod();
        c.fault(kind, 0, FaultAction::Unavailable);
        let request = c.request(NS, "p", "n1");
        assert_eq!(c.bind(request, &after_bind()).result, Ok(()), "{kind} once");
        assert_eq!(c.lock("n1"), None);

        let (c, outcome) = endless_indeterminate(kind);
        assert!(outcome.result.is_err(), "{kind}: {:?}", outcome.result);
        assert_eq!(c.count(kind), budget + 1, "{kind} attempts");
        assert_eq!(c.pod("default/p").node_name, None, "{kind}");
        assert_eq!(c.lock("n1"), None, "{kind}");
    }
    let (_, outcome) = endless_indeterminate("patch-pod");
    assert!(matches!(
        outcome.result,
        Err(BindError::PodPatchFailed { .. })
    ));
}

/// A `Binding` whose answer was lost is verified by reading the pod; that read is itself retried
/// within the budget, and a verification that keeps failing gives up saying it could not tell
/// (`after-bind` mode: the lock is released).
#[test]
fn the_binding_verification_read_is_retried_within_the_budget() {
    let budget = after_bind().max_retries as usize;
    // get-pod 0 reads the target; get-pod 1 on verify the lost Binding.
    let mut c = cluster_with_pod();
    c.fault("create-binding", 0, FaultAction::LostAfterApply);
    c.fault("get-pod", 1, FaultAction::Unavailable);
    let request = c.request(NS, "p", "n1");
    assert_eq!(c.bind(request, &after_bind()).result, Ok(()));
    assert_eq!(c.count("create-binding"), 1, "verified, not sent again");
    assert_eq!(c.pod("default/p").node_name.as_deref(), Some("n1"));

    let mut c = cluster_with_pod();
    c.fault("create-binding", 0, FaultAction::Unavailable);
    for nth in 1..budget + 10 {
        c.fault("get-pod", nth, FaultAction::Unavailable);
    }
    let request = c.request(NS, "p", "n1");
    let outcome = c.bind(request, &after_bind());
    assert!(
        matches!(outcome.result, Err(BindError::BindingUnverified { .. })),
        "{:?}",
        outcome.result
    );
    // The target read, the first verification read and `budget` retries of it.
    assert_eq!(c.count("get-pod"), 1 + 1 + budget);
    assert_eq!(c.lock("n1"), None);
}

/// A `Binding` refused with a conflict, on a pod the read then shows unbound, is not sent again:
/// the conflict is final (only a lost answer is worth another try).
#[test]
fn a_binding_conflict_on_an_unbound_pod_is_final() {
    let mut c = cluster_with_pod();
    c.fault("create-binding", 0, FaultAction::Conflict);
    let request = c.request(NS, "p", "n1");
    let outcome = c.bind(request, &after_bind());
    assert!(
        matches!(outcome.result, Err(BindError::BindingFailed { .. })),
        "{:?}",
        outcome.result
    );
    assert_eq!(c.count("create-binding"), 1);
    assert_eq!(c.pod("default/p").node_name, None);
    assert_eq!(c.lock("n1"), None);
}

/// The lock holder's pod is read to judge the lock; that read is retried within the budget, and
/// a holder that stays unreadable leaves the lock alone.
#[test]
fn the_holder_read_is_retried_within_the_budget() {
    let budget = after_bind().max_retries as usize;
    let setup = |failures: std::ops::Range<usize>| {
        let mut c = cluster_with_pod();
        c.add_pod(NS, "holder");
        let held = lock_of(&c, SignedDuration::from_secs(30), NS, "holder");
        c.set_lock("n1", &held);
        // get-pod 0 reads the target; from 1 on, the holder.
        for nth in failures {
            c.fault("get-pod", nth, FaultAction::Unavailable);
        }
        let request = c.request(NS, "p", "n1");
        let outcome = c.bind(request, &after_bind());
        (c, outcome, held)
    };
    let (c, outcome, held) = setup(1..2);
    assert!(
        outcome.result.as_ref().is_err_and(BindError::is_contention),
        "{:?}",
        outcome.result
    );
    assert_eq!(c.count("get-pod"), 3);
    assert_eq!(c.lock("n1"), Some(held));

    let (c, outcome, held) = setup(1..budget + 10);
    assert!(
        matches!(outcome.result, Err(BindError::HolderUnreadable { .. })),
        "{:?}",
        outcome.result
    );
    assert_eq!(c.count("get-pod"), 1 + budget + 1);
    assert_eq!(c.lock("n1"), Some(held));
}

/// A lock write whose answer was lost, where the re-read finds a *different* value held by this
/// same pod (another attempt of this bind wrote it meanwhile): the lock is this pod's, reentrant,
/// but this write did not take it.
#[test]
fn a_lost_lock_write_that_finds_another_value_of_its_own_is_reentrant() {
    let mut c = cluster_with_pod();
    c.fault("write-lock", 0, FaultAction::Unavailable);
    // Effects: get-pod, get-node, write-lock (lost), then the re-read of the node.
    c.on_effect(|c, index, _| {
        if index == 3 {
            let own = lock_of(c, SignedDuration::from_secs(2), NS, "p");
            c.set_lock("n1", &own);
        }
    });
    let request = c.request(NS, "p", "n1");
    let outcome = c.bind(request, &after_bind());
    assert_eq!(outcome.result, Ok(()));
    assert_eq!(outcome.takeover, Some(LockRule::Reentrant));
    assert!(!outcome.acquired);
    assert_eq!(c.lock("n1"), None);
}
