//! # sliceguard-core: the sans-IO core of a HAMi-compatible fractional GPU scheduler
//!
//! A pod asks for `nvidia.com/gpu`, `nvidia.com/gpumem` (MiB) and `nvidia.com/gpucores` (percent of one
//! GPU); a mutating webhook routes it to the scheduler's extender, which picks a node and the exact
//! devices; a binder binds it under the per-node lock `hami.io/mutex.lock`. The whole protocol lives in
//! annotations, with HAMi v2.10's formats, reason strings, scores and events.
//!
//! This crate owns every rule of that protocol and nothing that touches the world: inputs are plain
//! data or `k8s_openapi` objects, time is a parameter, outputs are decisions, annotations, JSON
//! patches, event texts and, for the two protocols that talk to the API (the filter's write and the
//! bind), [`bind::Effect`]s to execute and [`bind::Observation`]s to feed back. That is what lets the
//! harness test it exhaustively and run it inside a deterministic simulation.
//!
//! **It must never depend on** an async runtime (tokio, async-std, smol, futures' executors), an HTTP
//! or TLS stack (hyper, axum, reqwest, rustls), a Kubernetes client (kube), a logging framework
//! (tracing, log) or a clock or randomness source (it never calls `now()`; `clippy.toml` forbids it).
//! `tests/boundary.rs` checks the dependency tree and that the modules import each other without a
//! cycle. The I/O shell and the `sliceguard` binary are the `sliceguard-scheduler` crate over it.
//!
//! | module | owns |
//! |---|---|
//! | [`annotations`] | every annotation key, label and resource name of the protocol |
//! | [`model`] | devices, usage, requests and allocations as plain data |
//! | [`codec`] | every wire format as a `parse`/`render` pair with errors that name the field |
//! | [`quantity`] | Kubernetes resource quantities, exactly as `resource.Quantity.AsInt64` reads them |
//! | [`request`] | a `Pod` into per-container GPU requests (HAMi's `GenerateResourceRequests`) |
//! | [`admission`] | the webhook mutation as a pure function returning an RFC 6902 JSON Patch |
//! | [`guard`] | scheduler-owned annotations and labels: denied at create, writable on update only by trusted users |
//! | [`policy`] | node and GPU policies, per-pod selectors and scoring weights |
//! | [`gpu_policy`] | GPU policies behind one trait, one file each: binpack, spread, mutex, fragmentation |
//! | [`score`] | node and device scores (float32, as HAMi computes them) |
//! | [`rules`] | HAMi's per-device rules written once, and structured rejections until rendered |
//! | [`fit`] | whether a pod fits a node and on which devices: HAMi's `Fit` over the rules, per container |
//! | [`fragmentation`] | sliceguard's `fragmentation` GPU policy: expected fragmentation of a typical workload |
//! | [`host_cpu`] | host CPU as kube-scheduler counts it: pods' requests, nodes' allocatable, the book kept from the watches |
//! | [`learned_workload`] | the workload profile learned from the GPU pods the scheduler places and watches, each counted once |
//! | [`registry`] | the node inventory read from `hami.io/node-nvidia-register` |
//! | [`ledger`] | usage per device, maintained incrementally from pod allocations |
//! | [`index`] | the placement index: nodes ordered by score with device summaries, same decision as the scan |
//! | [`outcome`] | what a decision is made of: prepared pod, verdicts, outcome, annotations, events (a leaf) |
//! | [`scan`] | the plain scan of every offered node (HAMi's approach), the index's reference |
//! | [`score_memo`] | `fragmentation` node verdicts remembered across decisions, forgotten when a node changes |
//! | [`decision`] | the one entry point: scan or index, chosen in one place, for `serve`, `place` and the replay |
//! | [`cluster_view`] | the cluster as the watches show it: registry, ledger, index, GPU pods, locks, assumptions |
//! | [`filter`] | the extender filter's write-and-assume protocol as a sans-IO state machine |
//! | [`lease`] | leader election on a coordination.k8s.io/v1 Lease as a sans-IO state machine (client-go's rules) |
//! | [`bind`] | the bind protocol and the node lock as sans-IO state machines; the lock reaper's rules |
//! | [`eligibility`] | which nodes kube-scheduler would offer the extender (selectors, taints, cordons) |
//! | [`objects`] | the Kubernetes objects the project builds: fake GPU fleet nodes and GPU pods |
//! | [`wire`] | the decoders of outside input: extender bodies, AdmissionReview, manifests as kubectl prints them |

pub mod admission;
pub mod annotations;
pub mod bind;
pub mod cluster_view;
pub mod codec;
pub mod decision;
pub mod eligibility;
pub mod filter;
pub mod fit;
pub mod fragmentation;
pub mod gpu_policy;
pub mod guard;
pub mod host_cpu;
pub mod index;
pub mod learned_workload;
pub mod lease;
pub mod ledger;
pub mod model;
pub mod objects;
pub mod outcome;
pub mod policy;
pub mod quantity;
pub mod registry;
pub mod request;
pub mod rules;
pub mod scan;
pub mod score;
pub mod score_memo;
pub mod wire;
