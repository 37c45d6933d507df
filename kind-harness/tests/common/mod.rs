//! A small synthetic trace shaped like the Alibaba one (mixed node shapes and models, sharing,
//! whole-GPU, multi-GPU, CPU-only and model-constrained tasks), small enough for fast tests.

use kind_harness::trace::input::{NodeRow, PodRow};
use kind_harness::trace::replay::Trace;

/// Node shapes: (count, GPUs, cores, GiB, model).
const NODES: [(usize, u32, u64, u64, &str); 5] = [
    (4, 8, 96, 384, "G2"),
    (5, 2, 104, 512, "T4"),
    (3, 2, 16, 120, "P100"),
    (2, 4, 32, 128, "V100M16"),
    (1, 1, 128, 1024, "A10"),
];

/// Task kinds: (GPUs, milli per GPU, cores, GiB, gpu_spec, weight).
const TASKS: [(u32, u32, u64, u64, &str, usize); 10] = [
    (1, 1000, 11, 40, "", 6),
    (1, 810, 3, 12, "", 4),
    (1, 470, 8, 30, "", 3),
    (1, 320, 4, 12, "", 2),
    (1, 160, 4, 8, "", 1),
    (2, 1000, 24, 96, "", 1),
    (8, 1000, 64, 256, "", 1),
    (0, 0, 12, 48, "", 2),
    (1, 1000, 8, 32, "T4", 1),
    (1, 500, 4, 16, "V100M16|A10", 1),
];

/// The fleet.
pub fn nodes() -> Vec<NodeRow> {
    let mut rows = Vec::new();
    for (count, gpus, cores, gib, model) in NODES {
        for _ in 0..count {
            rows.push(NodeRow {
                name: format!("node-{:03}", rows.len()),
                cpu_milli: cores * 1000,
                memory_mib: gib * 1024,
                gpus,
                model: model.into(),
            });
        }
    }
    rows
}

/// The task list: each kind repeated by its weight, three rounds.
pub fn pods() -> Vec<PodRow> {
    let mut rows = Vec::new();
    for _ in 0..3 {
        for (num_gpu, milli, cores, gib, spec, weight) in TASKS {
            for _ in 0..weight {
                rows.push(PodRow {
                    name: format!("pod-{:04}", rows.len()),
                    cpu_milli: cores * 1000,
                    memory_mib: gib * 1024,
                    num_gpu,
                    gpu_milli: milli,
                    gpu_spec: spec
                        .split('|')
                        .filter(|s| !s.is_empty())
                        .map(String::from)
                        .collect(),
                });
            }
        }
    }
    rows
}

/// The synthetic trace.
pub fn trace() -> Trace {
    Trace::new("synthetic", nodes(), pods())
}
