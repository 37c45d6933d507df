//! The `tenant` fault in the simulated world: every forged create, strip and forge is denied by
//! sliceguard's webhook and changes nothing; and the granted-capacity invariant notices a strip that
//! got past admission (written straight into the store), once the scheduler hands the freed share
//! to another pod.

use sliceguard::annotations::{DEVICES_ALLOCATED, VGPU_NODE};
use sliceguard::objects::{FleetSpec, GpuAsk, gpu_pod};
use sliceguard_sim::store::{Part, PatchType, Resource};
use sliceguard_sim::tenant::{Answer, Attempt, TENANT_USER, Tenants};
use sliceguard_sim::world::{Fault, SimConfig, World};
use std::collections::BTreeMap;

fn one_gpu() -> SimConfig {
    SimConfig {
        fleet: FleetSpec {
            nodes: 1,
            gpus_per_node: 1,
            memory_mib: 16000,
            ..FleetSpec::default()
        },
        ..SimConfig::default()
    }
}

fn run(world: &mut World, steps: u32) {
    for _ in 0..steps {
        world.step();
    }
}

#[test]
fn every_tenant_attempt_is_denied_naming_the_key_and_changes_nothing() {
    let mut world = World::new(one_gpu());
    for i in 0..2 {
        world
            .create_pod(&gpu_pod(
                &format!("p{i}"),
                &[],
                &[GpuAsk::fraction(6000, 30)],
            ))
            .unwrap();
    }
    run(&mut world, 10);
    assert_eq!(
        world.phases().get("Running"),
        Some(&2),
        "{:?}",
        world.phases()
    );
    let before: Vec<_> = world.pod_keys().iter().map(|k| world.pod(k)).collect();
    let mut tenants = Tenants::new(7);
    let mut answers = BTreeMap::new();
    for (i, attempt) in Attempt::ALL.into_iter().cycle().take(9).enumerate() {
        let answer = tenants.attempt(&mut world, attempt, i as u64);
        let Answer::Denied(message) = &answer else {
            panic!("{attempt:?} was not denied: {answer:?}");
        };
        assert!(message.contains("is written by the scheduler"), "{message}");
        answers.insert(attempt.as_str(), message.clone());
    }
    assert!(
        answers["forged create"].starts_with(
            "annotation hami.io/vgpu-node is written by the scheduler and cannot be set when creating a pod"
        ),
        "{answers:?}"
    );
    assert_eq!(
        answers["strip"],
        format!(
            "annotation hami.io/vgpu-node is written by the scheduler and cannot be added, changed or removed by {TENANT_USER}"
        )
    );
    assert!(
        answers["forge"].starts_with("annotation hami.io/vgpu-devices-allocated"),
        "{answers:?}"
    );
    let after: Vec<_> = world.pod_keys().iter().map(|k| world.pod(k)).collect();
    assert_eq!(before, after, "a denied attempt changed the store");
    assert!(world.trace().iter().any(|l| l.contains(
        "fault tenant: system:serviceaccount:team-a:default tries a strip of default/p"
    )));
}

#[test]
fn the_tenant_fault_is_drawn_at_the_configured_rate_and_never_gets_through() {
    let config = SimConfig {
        faults: [Fault::Tenant].into_iter().collect(),
        fault_per_mille: 300,
        ..SimConfig::default()
    };
    let mut world = World::new(config);
    for i in 0..6 {
        world
            .create_pod(&gpu_pod(
                &format!("p{i}"),
                &[],
                &[GpuAsk::fraction(4000, 20)],
            ))
            .unwrap();
        run(&mut world, 20);
    }
    let trace = world.trace();
    let tries: Vec<&String> = trace
        .iter()
        .filter(|l| l.contains("fault tenant:"))
        .collect();
    for kind in ["forged create", "strip", "forge"] {
        let n = tries
            .iter()
            .filter(|l| l.contains(&format!("tries a {kind} of")) && l.contains(": denied: "))
            .count();
        assert!(
            n >= 2,
            "only {n} denied {kind} attempts in {} tries",
            tries.len()
        );
    }
    assert!(!tries.iter().any(|l| l.contains("ADMITTED")), "{tries:?}");
    assert!(world.violations().is_empty(), "{:?}", world.violations());
    world.drain_and_check_liveness();
    assert!(world.violations().is_empty(), "{:?}", world.violations());
    assert!(world.pod_keys().iter().all(|k| !k.contains("tenant-")));
}

#[test]
fn a_strip_that_got_past_admission_is_caught_by_granted_capacity() {
    let mut world = World::new(one_gpu());
    world
        .create_pod(&gpu_pod("first", &[], &[GpuAsk::fraction(10000, 50)]))
        .unwrap();
    run(&mut world, 5);
    assert_eq!(
        world.phases().get("Running"),
        Some(&1),
        "{:?}",
        world.phases()
    );
    // Behind admission's back: the running pod's node and allocation are removed.
    world.with_store_mut(|s| {
        s.patch(
            Resource::Pods,
            Some("default"),
            "first",
            Part::Main,
            PatchType::Merge,
            &serde_json::json!({"metadata": {
                "labels": {VGPU_NODE: null},
                "annotations": {VGPU_NODE: null, DEVICES_ALLOCATED: null}}}),
        )
        .unwrap();
    });
    run(&mut world, 2);
    assert!(world.violations().is_empty(), "{:?}", world.violations());
    // The scheduler now sees a free GPU and gives the share the first pod still uses away.
    world
        .create_pod(&gpu_pod("second", &[], &[GpuAsk::fraction(10000, 50)]))
        .unwrap();
    run(&mut world, 5);
    let found: Vec<String> = world.violations().iter().map(|v| v.to_string()).collect();
    assert!(
        found.iter().any(
            |v| v.contains("capacity violated: as granted to running containers")
                && v.contains("default/first")
                && v.contains("default/second")
        ),
        "{found:?}\n{}",
        world.trace().join("\n")
    );
}
