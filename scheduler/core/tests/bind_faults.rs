//! Property tests of the bind machine under random fault plans: conflicts, 5xx, lost answers and
//! refusals on any effect, other writers touching the node, and a crash at any point followed by
//! the next scheduler instance. After every run the node lock's holder is asserted.

mod bind_support;

use bind_support::{FakeCluster, FaultAction, settings};
use jiff::SignedDuration;
use proptest::prelude::*;
use sliceguard_core::bind::{BindSettings, Effect, LockFate, ReleaseMode};

const KINDS: [&str; 7] = [
    "get-pod",
    "get-node",
    "write-lock",
    "clear-lock",
    "patch-pod",
    "create-binding",
    "emit-event",
];

fn fault_action() -> impl Strategy<Value = FaultAction> {
    prop_oneof![
        Just(FaultAction::Conflict),
        Just(FaultAction::Unavailable),
        Just(FaultAction::LostAfterApply),
        Just(FaultAction::Rejected),
    ]
}

fn mode() -> impl Strategy<Value = ReleaseMode> {
    prop_oneof![
        Just(ReleaseMode::AfterBind),
        Just(ReleaseMode::DevicePlugin)
    ]
}

type Plan = Vec<(usize, usize, FaultAction)>;

fn plan() -> impl Strategy<Value = Plan> {
    prop::collection::vec((0..KINDS.len(), 0..3usize, fault_action()), 0..6)
}

/// `default_cases` unless `PROPTEST_CASES` is set; failing seeds kept in the repository's
/// `proptest-regressions/` and replayed first.
fn config(default_cases: u32) -> ProptestConfig {
    let base = ProptestConfig::default();
    ProptestConfig {
        cases: if std::env::var_os("PROPTEST_CASES").is_some() {
            base.cases
        } else {
            default_cases
        },
        failure_persistence: Some(Box::new(
            proptest::test_runner::FileFailurePersistence::Direct(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../../proptest-regressions/scheduler-bind_faults.txt"
            )),
        )),
        ..base
    }
}

/// Pairs of pods a careless ownership check confuses: a name and an extension of it, a name and a
/// copy with a prefix, the same name in two namespaces (and one plain pair). A lock is compared
/// with its holder by namespace and name, exactly.
type PodId = (&'static str, &'static str);

const RIVALS: [(PodId, PodId); 6] = [
    (("default", "a"), ("default", "b")),
    (("default", "abc"), ("default", "abc-123")),
    (("default", "abc-123"), ("default", "abc")),
    (("default", "abc"), ("default", "x-abc")),
    (("default", "x-abc"), ("default", "abc")),
    (("default", "abc"), ("team-b", "abc")),
];

/// The lock on n1 names exactly `namespace/name` (the value is `<time>,<namespace>,<name>`; this
/// reads it without the codec under test).
fn held_by(c: &FakeCluster, (namespace, name): (&str, &str)) -> bool {
    c.lock("n1").is_some_and(|v| {
        let mut parts = v.splitn(3, ',');
        let _time = parts.next();
        parts.next() == Some(namespace) && parts.next() == Some(name)
    })
}

fn held_by_p(c: &FakeCluster) -> bool {
    held_by(c, ("default", "p"))
}

proptest! {
    #![proptest_config(config(512))]

    /// Whatever the faults: the bind reports success iff the pod is bound to the node; the lock
    /// ends exactly as the outcome says; the machine finishes within a bounded number of effects,
    /// and the last effect announces the result.
    #[test]
    fn every_fault_plan_ends_with_a_lock_owned_as_the_outcome_says(
        plan in plan(), mode in mode(), touches in prop::collection::vec(0usize..12, 0..3)
    ) {
        let mut c = FakeCluster::with_nodes(&["n1"]);
        c.add_pod("default", "p");
        for (kind, nth, action) in &plan {
            c.fault(KINDS[*kind], *nth, *action);
        }
        // Other writers touching the node before some effects (409s on stale versions).
        c.on_effect(move |c, index, _| {
            if touches.contains(&index) {
                c.touch_node("n1");
            }
        });
        let request = c.request("default", "p", "n1");
        let outcome = c.bind(request, &settings(mode));

        prop_assert!(c.trace.len() <= 60, "{} effects", c.trace.len());
        let last = c.trace.last().unwrap();
        let Effect::EmitEvent { event, .. } = last else {
            return Err(TestCaseError::fail(format!("last effect {last:?}")));
        };
        let bound = c.pod("default/p").node_name.as_deref() == Some("n1");
        if outcome.result.is_ok() {
            prop_assert!(bound, "{:?}", outcome);
        } else if bound {
            // Only a Binding whose answer was lost, with the verifying read failing too, leaves
            // the pod bound behind an error (kube-scheduler then sees the pod assigned).
            let lost_binding = plan
                .iter()
                .any(|(k, _, a)| KINDS[*k] == "create-binding" && *a == FaultAction::LostAfterApply);
            prop_assert!(lost_binding, "bound but {:?}", outcome.result);
        }
        prop_assert_eq!(event.reason == "BindingSucceed", outcome.result.is_ok());
        match &outcome.lock {
            LockFate::NotTaken | LockFate::Released => prop_assert!(!held_by_p(&c), "{:?}", c.lock("n1")),
            LockFate::TakenByOther { .. } => prop_assert!(false, "no other binder here"),
            LockFate::HeldForDevicePlugin { value, .. } => {
                prop_assert_eq!(mode, ReleaseMode::DevicePlugin);
                prop_assert!(outcome.result.is_ok());
                prop_assert_eq!(c.lock("n1"), Some(value.clone()));
            }
            LockFate::Stranded { value, .. } => {
                let lock = c.lock("n1");
                prop_assert!(lock.is_none() || lock.as_ref() == Some(value), "{lock:?}");
            }
        }
        if mode == ReleaseMode::AfterBind || outcome.result.is_err() {
            prop_assert!(
                !held_by_p(&c) || matches!(outcome.lock, LockFate::Stranded { .. }),
                "{:?} with lock {:?}", outcome.lock, c.lock("n1")
            );
        }
        // Liveness: whatever is left, the reaper frees it once the timeout has passed (in
        // device-plugin mode a holder mid-allocation only at the stall deadline).
        c.now += match mode {
            ReleaseMode::AfterBind => SignedDuration::from_mins(5),
            ReleaseMode::DevicePlugin => BindSettings::default().allocation_stall_timeout,
        } + SignedDuration::from_secs(1);
        c.faults.clear();
        c.reap("n1", mode, SignedDuration::from_mins(5), None);
        prop_assert_eq!(c.lock("n1"), None);
    }

    /// A crash after any number of effects, then the next instance retries the same pod with no
    /// faults: the pod ends bound, and in after-bind mode nobody holds the lock.
    #[test]
    fn a_crash_anywhere_is_recovered_by_the_retry(crash_after in 0usize..9, mode in mode()) {
        let mut c = FakeCluster::with_nodes(&["n1"]);
        c.add_pod("default", "p");
        let request = c.request("default", "p", "n1");
        drop(c.bind_and_crash(request.clone(), &settings(mode), crash_after));
        let outcome = c.bind(request, &settings(mode));
        prop_assert_eq!(&outcome.result, &Ok(()));
        prop_assert_eq!(c.pod("default/p").node_name.as_deref(), Some("n1"));
        prop_assert_eq!(c.bindings.len(), 1);
        match mode {
            ReleaseMode::AfterBind => prop_assert_eq!(c.lock("n1"), None),
            ReleaseMode::DevicePlugin => prop_assert!(held_by_p(&c)),
        }
    }

    /// Two binders racing for one node through interleaved effects, their pods named so that a
    /// prefix, suffix or namespace-blind ownership check would mistake one's lock for the other's:
    /// each marks and binds its pod only while the lock names it exactly, the loser (if any)
    /// reports contention, and the lock ends free.
    #[test]
    fn racing_binders_never_share_the_lock(
        schedule in prop::collection::vec(any::<bool>(), 40),
        rivals in prop::sample::select(&RIVALS[..]),
        mode in mode(),
    ) {
        use sliceguard_core::bind::{BindMachine, Step};
        let mut c = FakeCluster::with_nodes(&["n1"]);
        let (first, second) = rivals;
        c.add_pod(first.0, first.1);
        c.add_pod(second.0, second.1);
        let s = settings(mode);
        let mut machines = [
            BindMachine::new(c.request(first.0, first.1, "n1"), s.clone(), None),
            BindMachine::new(c.request(second.0, second.1, "n1"), s, None),
        ];
        let mut steps = [machines[0].start(c.now), machines[1].start(c.now)];
        let mut turn = schedule.into_iter().cycle();
        for _ in 0..200 {
            let i = usize::from(turn.next().unwrap_or(false));
            let i = if matches!(steps[i], Step::Done(_)) { 1 - i } else { i };
            let Step::Do(effect) = steps[i].clone() else { break };
            // The protected section: marking and binding happen only under the pod's own lock.
            let protected = matches!(effect, Effect::CreateBinding { .. })
                || matches!(&effect, Effect::PatchPodAnnotations { annotations, .. }
                    if annotations.get("hami.io/bind-phase").map(String::as_str) == Some("allocating"));
            if protected {
                let request = machines[i].request();
                let owner = (request.namespace.as_str(), request.name.as_str());
                prop_assert!(held_by(&c, owner), "{owner:?} ran {effect:?} under {:?}", c.lock("n1"));
            }
            let observation = c.execute(&effect);
            steps[i] = machines[i].observe(observation, c.now);
        }
        let outcomes: Vec<_> = steps
            .iter()
            .map(|s| match s {
                Step::Done(o) => o.clone(),
                Step::Do(e) => panic!("unfinished: {e:?}"),
            })
            .collect();
        prop_assert!(outcomes.iter().any(|o| o.result.is_ok()));
        for o in &outcomes {
            if let Err(e) = &o.result {
                prop_assert!(e.is_contention(), "{e}");
            }
        }
        match mode {
            ReleaseMode::AfterBind => prop_assert_eq!(c.lock("n1"), None),
            // The winner keeps the lock for the device plugin, under its own exact name.
            ReleaseMode::DevicePlugin => {
                let winners: Vec<(&str, &str)> = [first, second]
                    .into_iter()
                    .zip(&outcomes)
                    .filter(|(_, o)| o.result.is_ok())
                    .map(|(who, _)| who)
                    .collect();
                prop_assert_eq!(winners.len(), 1, "both bound under one lock");
                prop_assert!(held_by(&c, winners[0]), "{:?} left {:?}", winners, c.lock("n1"));
            }
        }
    }
}

/// The rival pairs each reach the racing property often (it draws them uniformly): over its
/// default case count every pair occurs, so each confusion is tried.
#[test]
fn every_rival_pair_is_raced() {
    use proptest::strategy::ValueTree;
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let strategy = prop::sample::select(&RIVALS[..]);
    let mut seen = std::collections::BTreeMap::new();
    for _ in 0..512 {
        let pair = strategy.new_tree(&mut runner).expect("tree").current();
        *seen.entry(pair).or_insert(0u32) += 1;
    }
    assert_eq!(seen.len(), RIVALS.len(), "{seen:?}");
    assert!(seen.values().all(|n| *n >= 20), "{seen:?}");
}
