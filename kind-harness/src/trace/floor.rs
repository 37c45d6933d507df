//! The floor: a lower bound on the GPU any scheduler must leave unallocated when the arrived workload
//! reaches a share of capacity, for one seed's arrival sequence ([`floor`]).
//!
//! It is the optimum of a relaxation that knows every arrived task in advance: a linear program
//! that places tasks fractionally into **pools** of identical nodes (same model, GPU count, CPU and
//! memory), maximising the GPU placed, subject to each pool's GPU, CPU and memory totals and each
//! task's allowed models and GPU count (a task asking for `n` GPUs only goes to nodes with at least
//! `n`). Everything a real scheduler must also respect is kept; what the relaxation drops (a task
//! split across nodes, GPUs and failures; the arrival order; CPU-only tasks, which it may leave
//! out) only widens what it may do. So no scheduler, on that arrival sequence, allocates more than
//! the LP's optimum, and `capacity − optimum` is a floor on what is left unallocated. It is not
//! claimed to be reachable: the gap between a policy and the floor is an upper bound on what a
//! better policy could still gain.
//!
//! Which tasks have arrived at `x` % follows the metric: the discretised value at `x` averages the
//! events whose arrived % rounds to `x` (or, when there is none, to `x ± 1`), so the floor takes
//! every task up to the last event it may average. Fewer tasks can only be allocated less, so the
//! floor holds for each event of the average, and for the average. Tasks are grouped into classes of
//! identical demand (GPU, CPU, memory, allowed pools) before solving; the program has one variable
//! per class and allowed pool.

use super::arrival::arrival_sequence;
use super::metrics::round_half_even;
use super::placer::SpecMatch;
use super::replay::{Trace, model_allowed};
use microlp::{ComparisonOp, OptimizationDirection, Problem, SolutionStatus, SolveOutcome};
use std::collections::BTreeMap;

/// The floor of one seed.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Floor {
    /// The seed.
    pub seed: u64,
    /// GPU requested by the tasks counted as arrived (milli-GPU).
    pub arrived_milli: u64,
    /// The most GPU any scheduler could have allocated to them (milli-GPU, the LP's optimum).
    pub allocatable_milli: f64,
    /// The fleet's GPU (milli-GPU).
    pub capacity_milli: u64,
}

impl Floor {
    /// The floor on unallocated GPU, % of capacity.
    pub fn unallocated_percent(&self) -> f64 {
        let capacity = self.capacity_milli.max(1) as f64;
        ((capacity - self.allocatable_milli) / capacity * 100.0).max(0.0)
    }
}

/// Nodes that are interchangeable for the relaxation.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct PoolKey {
    model: String,
    gpus: u32,
    cpu_milli: u64,
    memory_mib: u64,
}

/// Tasks that are interchangeable for the relaxation.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct ClassKey {
    gpu_milli_total: u64,
    num_gpu: u32,
    cpu_milli: u64,
    memory_mib: u64,
    /// Indices of the pools the task may use.
    pools: Vec<usize>,
}

/// The floor at the metric's point `at_percent` % arrived for `seed` (arrivals as the replay
/// builds them with `tune`), `gpu_spec` matched by `spec_match`.
pub fn floor(
    trace: &Trace,
    seed: u64,
    tune: f64,
    spec_match: SpecMatch,
    at_percent: i64,
) -> Result<Floor, String> {
    let capacity = trace.capacity_milli();
    let mut pools: BTreeMap<PoolKey, u64> = BTreeMap::new();
    for node in trace.nodes.iter().filter(|n| n.gpus > 0) {
        let key = PoolKey {
            model: node.model.clone(),
            gpus: node.gpus,
            cpu_milli: node.cpu_milli,
            memory_mib: node.memory_mib,
        };
        *pools.entry(key).or_default() += 1;
    }
    let pools: Vec<(PoolKey, u64)> = pools.into_iter().collect();

    // The tasks arrived by the last event the metric's point `at_percent` averages: the events
    // whose arrived % rounds to it, or, when none does, those that round to one more or less.
    let sequence = arrival_sequence(&trace.pods, capacity, tune, seed);
    let point = |arrived: u64| round_half_even(arrived as f64 * 100.0 / capacity.max(1) as f64);
    let mut running = 0u64;
    let mut hits_point = false;
    for arrival in &sequence {
        running += trace.pods[arrival.row].gpu_request_milli();
        hits_point |= point(running) == at_percent;
    }
    let last_point = if hits_point {
        at_percent
    } else {
        at_percent + 1
    };
    let mut arrived: u64 = 0;
    let mut classes: BTreeMap<ClassKey, u64> = BTreeMap::new();
    for arrival in sequence {
        let pod = &trace.pods[arrival.row];
        let request = pod.gpu_request_milli();
        if point(arrived + request) > last_point {
            break;
        }
        arrived += request;
        if pod.num_gpu == 0 {
            continue;
        }
        let allowed: Vec<usize> = pools
            .iter()
            .enumerate()
            .filter(|(_, (p, _))| p.gpus >= pod.num_gpu && model_allowed(pod, &p.model, spec_match))
            .map(|(i, _)| i)
            .collect();
        if allowed.is_empty() {
            continue;
        }
        let key = ClassKey {
            gpu_milli_total: request,
            num_gpu: pod.num_gpu,
            cpu_milli: pod.cpu_milli,
            memory_mib: pod.memory_mib,
            pools: allowed,
        };
        *classes.entry(key).or_default() += 1;
    }

    let mut problem = Problem::new(OptimizationDirection::Maximize);
    // Per pool: (GPU, CPU, memory) terms.
    type Terms = Vec<(microlp::Variable, f64)>;
    let mut per_pool: Vec<(Terms, Terms, Terms)> = vec![Default::default(); pools.len()];
    for (class, count) in &classes {
        let mut placed: Terms = Vec::with_capacity(class.pools.len());
        for &p in &class.pools {
            let x = problem.add_var(class.gpu_milli_total as f64, (0.0, *count as f64));
            placed.push((x, 1.0));
            per_pool[p].0.push((x, class.gpu_milli_total as f64));
            per_pool[p].1.push((x, class.cpu_milli as f64));
            per_pool[p].2.push((x, class.memory_mib as f64));
        }
        problem.add_constraint(placed.as_slice(), ComparisonOp::Le, *count as f64);
    }
    for ((pool, nodes), (gpu, cpu, memory)) in pools.iter().zip(&per_pool) {
        if gpu.is_empty() {
            continue;
        }
        let n = *nodes as f64;
        problem.add_constraint(
            gpu.as_slice(),
            ComparisonOp::Le,
            n * f64::from(pool.gpus) * 1000.0,
        );
        problem.add_constraint(cpu.as_slice(), ComparisonOp::Le, n * pool.cpu_milli as f64);
        problem.add_constraint(
            memory.as_slice(),
            ComparisonOp::Le,
            n * pool.memory_mib as f64,
        );
    }
    let allocatable = if classes.is_empty() {
        0.0
    } else {
        match problem.solve() {
            Ok(SolveOutcome::Solution(solution))
                if solution.status() == SolutionStatus::Optimal =>
            {
                // A hair above the solver's optimum, so that its tolerance never lifts the floor.
                solution.objective() * (1.0 + 1e-9) + 1e-6
            }
            Ok(other) => {
                return Err(format!(
                    "the floor's linear program for seed {seed} ended without a proven optimum: {other:?}"
                ));
            }
            Err(e) => return Err(format!("the floor's linear program for seed {seed}: {e}")),
        }
    };
    Ok(Floor {
        seed,
        arrived_milli: arrived,
        allocatable_milli: allocatable.min(arrived as f64),
        capacity_milli: capacity,
    })
}
