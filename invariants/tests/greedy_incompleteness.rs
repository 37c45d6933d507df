//! HAMi's fit is greedy: for each regular container it takes the first devices that pass, in policy
//! order, and never revisits that choice for the containers after it. For a pod with two or more
//! GPU-requesting regular containers it can therefore reject a node that has a packing. This is
//! HAMi-compatible behaviour, not a bug; the oracle property asserts exact agreement only where
//! greedy is complete (at most one GPU-requesting regular container, any init containers) and
//! soundness everywhere. This file pins the smallest counterexample so the limitation stays
//! documented and visible: if the core ever becomes complete, this test says so.

use sliceguard_core::decision::{Outcome, SchedulerSettings, filter};
use sliceguard_core::ledger::Ledger;
use sliceguard_invariants::fleet::{DevicePlan, FleetPlan, NodePlan, Registration};
use sliceguard_invariants::oracle::{self, Answer};
use sliceguard_invariants::pods::{ContainerPlan, PodPlan};
use sliceguard_invariants::recount::Recount;
use std::collections::BTreeMap;

fn gpu(j: u32, devmem: u32) -> DevicePlan {
    DevicePlan {
        id: format!("GPU-n0-{j}"),
        index: j,
        count: 10,
        devmem,
        devcore: 100,
        device_type: "NVIDIA-A100-SXM4-80GB".into(),
        numa: 0,
        mode: "hami-core".into(),
        health: true,
    }
}

/// One node with an idle 10000 MiB GPU (registered first) and an idle 5000 MiB GPU; a pod with two
/// containers of 4000 and 8000 MiB. Both GPUs score 0 (idle), so the registered-first GPU takes the
/// 4000 MiB container, leaving 6000 MiB there and 5000 MiB on the other: the 8000 MiB container
/// fits nowhere. The packing 4000 → small GPU, 8000 → big GPU exists.
#[test]
fn two_containers_greedy_rejects_a_node_the_oracle_packs() {
    let fleet = FleetPlan {
        nodes: vec![NodePlan {
            name: "n0".into(),
            devices: vec![gpu(0, 10000), gpu(1, 5000)],
            cordoned: vec![],
            registration: Registration::Json,
        }],
    };
    let registry = fleet.registry().unwrap();
    for gpu_policy in ["spread", "binpack"] {
        let plan = PodPlan {
            init: vec![],
            app: vec![
                ContainerPlan::fraction(1, 4000, 10),
                ContainerPlan::fraction(1, 8000, 10),
            ],
            annotations: BTreeMap::from([(
                sliceguard_core::annotations::GPU_SCHEDULER_POLICY.to_string(),
                gpu_policy.to_string(),
            )]),
        };
        let decision = filter(
            sliceguard_core::decision::Fleet::scanned(&registry, &Ledger::new()),
            &SchedulerSettings::default(),
            &plan.to_pod("p"),
            &["n0".to_string()],
            "2026-01-01T00:00:00Z".parse().unwrap(),
        );
        assert_eq!(decision.outcome, Outcome::Unschedulable, "{gpu_policy}");
        assert_eq!(
            decision.verdicts["n0"].reasons().as_deref(),
            Some("2/2 CardInsufficientMemory"),
            "{gpu_policy}"
        );
        let state = &oracle::node_states(&fleet, &Recount::default())[0];
        assert_eq!(
            oracle::can_hold(state, &plan),
            Ok(Answer::Fits(vec![vec![1], vec![0]])),
            "{gpu_policy}"
        );
        // The same two containers in the other order fit greedily.
        let swapped = PodPlan {
            app: plan.app.iter().rev().cloned().collect(),
            ..plan.clone()
        };
        let decision = filter(
            sliceguard_core::decision::Fleet::scanned(&registry, &Ledger::new()),
            &SchedulerSettings::default(),
            &swapped.to_pod("q"),
            &["n0".to_string()],
            "2026-01-01T00:00:00Z".parse().unwrap(),
        );
        assert!(
            matches!(decision.outcome, Outcome::Scheduled { .. }),
            "{gpu_policy}"
        );
    }
}
