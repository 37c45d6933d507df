//! # `kind-harness trace`: placement quality on a production trace
//!
//! Replays the Alibaba GPU-sharing trace published with the USENIX ATC '23 paper "Beware of
//! Fragmentation: Scheduling GPU-Sharing Workloads with Fragmentation Gradient Descent" (Weng et al.;
//! data: `alibaba/clusterdata`, `cluster-trace-gpu-v2023`, research/study use, cite the paper) through
//! sliceguard's scheduler core, following the paper's experiment as written down in
//! `shared/spec/placement-quality-benchmark.md`, and measures how much GPU each policy leaves
//! unallocated.
//!
//! | module | owns |
//! |---|---|
//! | [`input`] | the CSV files: rows, validation, errors naming file, line and column |
//! | [`rng`] | the seeded generator every random choice draws from |
//! | [`arrival`] | the arrival sequence: seeded shuffle, resampling to `tune` × capacity |
//! | [`cluster`] | the cluster mirror: host resources, GPU usage, invariants, kube-scheduler's CPU-pod scoring |
//! | [`placer`] | sliceguard's core as the placer (registry, ledger, decision) |
//! | [`reference`] | the paper's BestFit, FGD and Random, re-implemented for calibration |
//! | [`replay`] | one run: the loop, the checks, the events |
//! | [`service_placer`] | the replay through `serve`'s decision path: the service's view fed as the watches would, the filter machine |
//! | [`latency`] | decision latency of the core at fleet scale (report and bench) |
//! | [`floor`] | the floor: an LP relaxation's bound on what any scheduler leaves unallocated |
//! | [`metrics`] | allocation, unallocated, fragmentation, discretisation, statistics |
//! | [`summary`] | per-run and per-policy summaries, table/JSON/CSV output |
//! | [`quality`] | the `bench/QUALITY.md` report and its plots |
//! | [`svg`] | a small SVG line chart writer |
//! | [`cli`] | the subcommand's arguments and job runner |

pub mod arrival;
pub mod cli;
pub mod cluster;
pub mod floor;
pub mod input;
pub mod latency;
pub mod metrics;
pub mod placer;
pub mod quality;
pub mod reference;
pub mod replay;
pub mod rng;
pub mod service_placer;
pub mod summary;
pub mod svg;
