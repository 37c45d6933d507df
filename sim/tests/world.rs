//! The simulated world end to end: the seed lab's finding reproduced (HAMi's lock on a fake fleet
//! binds one pod per node per lock timeout) and fixed (sliceguard's `after-bind` release lets ten
//! pods share one GPU, all Running, no lock left), determinism, and a fault campaign.

use jiff::SignedDuration;
use sliceguard::bind::ReleaseMode;
use sliceguard::objects::{FleetSpec, GpuAsk, gpu_pod};
use sliceguard_sim::campaign::{self, Op};
use sliceguard_sim::world::{DevicePlugin, Fault, SimConfig, World};

fn one_node(gpus: usize) -> FleetSpec {
    FleetSpec {
        nodes: 1,
        gpus_per_node: gpus,
        memory_mib: 81920,
        ..FleetSpec::default()
    }
}

#[test]
fn hami_on_a_fake_fleet_binds_one_pod_per_lock_timeout() {
    let config = SimConfig {
        fleet: one_node(8),
        device_plugin: DevicePlugin::Mock,
        lock_release: ReleaseMode::DevicePlugin,
        ..SimConfig::default()
    };
    let mut world = World::new(config);
    for i in 0..10 {
        world
            .create_pod(&gpu_pod(
                &format!("frac-{i}"),
                &[],
                &[GpuAsk::fraction(3000, 30)],
            ))
            .unwrap();
    }
    // 47 minutes: room for exactly ten binds at one per five minutes.
    for _ in 0..(47 * 60) {
        world.step();
    }
    let times: Vec<i64> = world
        .bound_at()
        .iter()
        .map(|(_, t)| t.as_second())
        .collect();
    assert_eq!(times.len(), 10, "bound: {:?}", world.bound_at());
    for pair in times.windows(2) {
        let gap = pair[1] - pair[0];
        assert!(
            (300..=330).contains(&gap),
            "binds {gap} s apart, expected one per 5 min lock timeout: {times:?}"
        );
    }
    assert!(world.violations().is_empty(), "{:?}", world.violations());
    // The mock plugin never releases: the last pod's lock is still there.
    assert_eq!(world.locks().len(), 1);
}

#[test]
fn sliceguard_after_bind_lets_ten_pods_share_one_gpu() {
    let config = SimConfig {
        fleet: one_node(1),
        ..SimConfig::default()
    };
    let mut world = World::new(config);
    for i in 0..10 {
        world
            .create_pod(&gpu_pod(
                &format!("share-{i}"),
                &[],
                &[GpuAsk::fraction(8000, 10)],
            ))
            .unwrap();
    }
    for _ in 0..40 {
        world.step();
    }
    assert_eq!(
        world.phases().get("Running"),
        Some(&10),
        "{:?}\n{}",
        world.phases(),
        world.trace().join("\n")
    );
    assert!(world.locks().is_empty(), "locks left: {:?}", world.locks());
    let eleventh = world
        .create_pod(&gpu_pod("share-10", &[], &[GpuAsk::fraction(8000, 10)]))
        .unwrap();
    for _ in 0..20 {
        world.step();
    }
    let pod = world.pod(&eleventh).unwrap();
    assert!(
        pod.spec.unwrap().node_name.is_none(),
        "the eleventh pod must stay Pending"
    );
    assert!(
        world
            .trace()
            .iter()
            .any(|l| l.contains("filter default/share-10: unschedulable")
                && l.contains("CardTimeSlicingExhausted"))
    );
    world.drain_and_check_liveness();
    assert!(world.violations().is_empty(), "{:?}", world.violations());
}

#[test]
fn hami_device_plugin_releases_the_lock_after_allocate() {
    let config = SimConfig {
        fleet: one_node(2),
        device_plugin: DevicePlugin::Hami,
        lock_release: ReleaseMode::DevicePlugin,
        ..SimConfig::default()
    };
    let mut world = World::new(config);
    for i in 0..6 {
        world
            .create_pod(&gpu_pod(
                &format!("p{i}"),
                &[],
                &[GpuAsk::fraction(4000, 10)],
            ))
            .unwrap();
    }
    for _ in 0..60 {
        world.step();
    }
    assert_eq!(
        world.phases().get("Running"),
        Some(&6),
        "{}",
        world.trace().join("\n")
    );
    assert!(world.locks().is_empty());
    for key in world.pod_keys() {
        let annos = world.pod(&key).unwrap().metadata.annotations.unwrap();
        assert_eq!(annos["hami.io/bind-phase"], "success", "{key}");
        assert!(
            annos["hami.io/vgpu-devices-to-allocate"]
                .chars()
                .all(|c| c == ';'),
            "{key}: erased"
        );
    }
    assert!(world.violations().is_empty(), "{:?}", world.violations());
}

fn fault_config(seed: u64) -> SimConfig {
    SimConfig {
        seed,
        fleet: FleetSpec {
            nodes: 3,
            gpus_per_node: 2,
            memory_mib: 16384,
            ..FleetSpec::default()
        },
        faults: Fault::ALL.into_iter().collect(),
        fault_per_mille: 60,
        ..SimConfig::default()
    }
}

#[test]
fn the_same_seed_gives_the_same_trace_byte_for_byte() {
    // Two binds in flight at once run as two tasks; a replay must still be exact, in both modes.
    for seed in 13..=15u64 {
        for lock_release in [ReleaseMode::AfterBind, ReleaseMode::DevicePlugin] {
            let config = SimConfig {
                lock_release,
                ..fault_config(seed)
            };
            let ops = campaign::generate(seed, 120);
            let a = campaign::run(&config, &ops, false);
            let b = campaign::run(&config, &ops, false);
            assert!(
                a.trace == b.trace,
                "seed {seed} {lock_release:?} does not replay"
            );
        }
    }
    let ops = campaign::generate(11, 120);
    let a = campaign::run(&fault_config(11), &ops, false);
    let b = campaign::run(&fault_config(11), &ops, false);
    assert_eq!(a.trace, b.trace);
    assert!(a.trace.len() > 100, "a busy run: {} lines", a.trace.len());
    assert!(
        a.trace.iter().any(|l| l.contains("fault ")),
        "faults were injected"
    );
    let c = campaign::run(&fault_config(12), &ops, false);
    assert_ne!(a.trace, c.trace, "another seed draws other faults");
}

#[test]
fn a_small_fault_campaign_finds_no_violation() {
    for seed in 0..6u64 {
        let ops = campaign::generate(seed, 150);
        let report = campaign::run(&fault_config(seed), &ops, true);
        let tail = report.trace[report.trace.len().saturating_sub(60)..].join("\n");
        assert!(
            report.violations.is_empty(),
            "seed {seed}: {:?}\n{tail}",
            report.violations
        );
    }
}

/// The campaign's pods include names that a careless check confuses (an extension, a prefixed copy,
/// one name in two namespaces), and pods so named are bound while their namesakes live; kube-scheduler
/// acts on stale views (a deleted pod filtered or bound, a gone node offered) and binds two pods to
/// one node at once; `fragmentation` pods leave verdicts in the index's memo, which the world
/// judges again after every step; pods' CPU is resized in place and the leader's host CPU book is
/// compared with the API's; in both lock modes, with no violation: the coverage line counts each
/// case.
#[test]
fn campaigns_reach_confusable_names_stale_views_and_concurrent_binds() {
    let ops = campaign::generate(3, 300);
    let created: Vec<(Option<String>, String)> = ops
        .iter()
        .filter_map(|o| match o {
            Op::CreatePod {
                name, namespace, ..
            } => Some((namespace.clone(), name.clone())),
            _ => None,
        })
        .collect();
    let in_other = created.iter().filter(|(ns, _)| ns.is_some()).count();
    let related = created
        .iter()
        .filter(|(ns, n)| {
            created.iter().any(|(ons, o)| {
                ons == ns && o != n && (o.starts_with(n.as_str()) || o.ends_with(n.as_str()))
            })
        })
        .count();
    assert!(in_other >= 5 && related >= 5, "{created:?}");
    for lock_release in [ReleaseMode::AfterBind, ReleaseMode::DevicePlugin] {
        let mut totals = std::collections::BTreeMap::<String, u64>::new();
        for seed in 1..=2u64 {
            let config = SimConfig {
                seed,
                lock_release,
                device_plugin: match lock_release {
                    ReleaseMode::AfterBind => DevicePlugin::None,
                    ReleaseMode::DevicePlugin => DevicePlugin::Hami,
                },
                faults: Fault::ALL.into_iter().collect(),
                ..SimConfig::default()
            };
            let report = campaign::run(&config, &campaign::generate(seed, 300), false);
            assert!(
                report.violations.is_empty(),
                "seed {seed} {lock_release:?}: {:?}",
                report.violations
            );
            for (k, v) in campaign::coverage(&report.trace) {
                *totals.entry(k).or_default() += v;
            }
            *totals
                .entry(campaign::MEMO_COVERAGE.to_string())
                .or_default() += report.memo_verdicts_checked;
            *totals
                .entry(campaign::HOST_CPU_COVERAGE.to_string())
                .or_default() += report.host_cpu_comparisons;
        }
        for class in [
            "bind succeeded: pod outside the default namespace",
            "bind succeeded: a live pod's name extends this one's or is extended by it",
            "bind succeeded: a live pod of the same name in another namespace",
            "stale view: filter of a deleted pod",
            "stale view: bind of a pod deleted since its filter",
            "stale view: a gone node offered",
            "fault concurrent-bind",
            "fault node-shrink",
            "fault cpu-resize",
            "cpu-only pod: bound by kube-scheduler",
            "cpu-only pod: resized in place",
            "cpu-only pod: ended",
            campaign::MEMO_COVERAGE,
            campaign::HOST_CPU_COVERAGE,
        ] {
            assert!(
                totals.get(class).copied().unwrap_or(0) > 0,
                "{lock_release:?}: {class:?} never happened: {totals:?}"
            );
        }
    }
}

/// On a fleet of 100 nodes kube-scheduler mostly offers 64 or more, so the placement index decides HAMi's
/// policies and `fragmentation` pods get the brief answer from the index's memo: under every
/// fault, with no violation (the index coherence check included), and each path taken.
#[test]
fn a_large_fleet_campaign_decides_through_the_index_and_the_memo() {
    let config = SimConfig {
        seed: 4,
        fleet: sliceguard::objects::FleetSpec {
            nodes: 100,
            ..SimConfig::default().fleet
        },
        faults: Fault::ALL.into_iter().collect(),
        ..SimConfig::default()
    };
    let report = campaign::run(&config, &campaign::generate(4, 300), true);
    assert!(report.violations.is_empty(), "{:?}", report.violations);
    let coverage = campaign::coverage(&report.trace);
    for path in [
        "decided by the placement index",
        "decided by rank from the memo (fragmentation policy)",
    ] {
        assert!(
            coverage.get(path).copied().unwrap_or(0) > 0,
            "{path:?} never happened: {coverage:?}"
        );
    }
    assert!(report.memo_verdicts_checked > 0);
}

#[test]
fn operations_reach_the_interesting_cases() {
    let ops = campaign::generate(5, 400);
    assert!(
        ops.iter()
            .any(|o| matches!(o, Op::CreatePod { gpus: 2, .. }))
    );
    assert!(
        ops.iter()
            .any(|o| matches!(o, Op::CreatePod { init: true, .. }))
    );
    assert!(ops.iter().any(|o| matches!(
        o,
        Op::CreatePod {
            cores: Some(100),
            ..
        }
    )));
    assert!(ops.iter().any(|o| matches!(o, Op::CrashScheduler)));
    let fragmentation =
        |o: &&Op| matches!(o, Op::CreatePod { gpu_policy: Some(p), .. } if p == "fragmentation");
    assert!(ops.iter().filter(fragmentation).count() >= 20);
    assert!(ops.iter().filter(fragmentation).any(|o| matches!(
        o,
        Op::CreatePod {
            cpu_milli: Some(_),
            ..
        }
    )));
    let _ = SignedDuration::ZERO;
}

/// Two elected replicas through every leadership fault, by hand: each fault ends with exactly one
/// replica leading and kube-scheduler calling it, pods keep being placed across the failovers, and
/// no write ever came from a replica without the Lease (the world's `one-writer` check).
#[test]
fn two_replicas_hand_over_leadership_without_two_writers() {
    let config = SimConfig {
        fleet: one_node(4),
        faults: [Fault::RollingUpdate].into_iter().collect(),
        // Only the faults this test injects by hand.
        fault_per_mille: 0,
        ..SimConfig::default()
    };
    let mut world = World::new(config);
    assert!(world.has_replicas());
    let mut created = 0;
    let mut create = |world: &mut World, n: usize| {
        for _ in 0..n {
            world
                .create_pod(&gpu_pod(
                    &format!("frac-{created}"),
                    &[],
                    &[GpuAsk::fraction(2000, 5)],
                ))
                .unwrap();
            created += 1;
        }
    };
    let run = |world: &mut World, steps: usize| {
        for _ in 0..steps {
            world.step();
        }
    };
    create(&mut world, 4);
    run(&mut world, 20);
    type Inject = fn(&mut World);
    let faults: [(&str, Inject); 5] = [
        ("lease expiry", World::expire_leader_lease),
        ("standby pause", World::pause_standby),
        ("leader partition", |w| w.partition_replica(true)),
        ("standby partition", |w| w.partition_replica(false)),
        ("rolling update", World::rolling_update),
    ];
    for (what, fault) in faults {
        let bound_before = world.bound_at().len();
        fault(&mut world);
        create(&mut world, 4);
        run(&mut world, 90);
        assert!(
            world.violations().is_empty(),
            "after {what}: {:?}",
            world.violations()
        );
        assert_eq!(
            world.bound_at().len(),
            bound_before + 4,
            "after {what}, the four new pods are placed by whoever leads"
        );
    }
    let trace = world.trace().join("\n");
    assert!(
        trace.matches("(new term: view re-listed)").count() >= 2,
        "leadership moved at least once:\n{trace}"
    );
    assert!(
        trace.contains("kube-scheduler now calls replica"),
        "{trace}"
    );
    world.drain_and_check_liveness();
    assert!(world.violations().is_empty(), "{:?}", world.violations());
    assert!(world.locks().is_empty());
}
