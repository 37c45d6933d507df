//! # sliceguard: a compact, HAMi-compatible fractional GPU scheduler
//!
//! A pod asks for `nvidia.com/gpu`, `nvidia.com/gpumem` (MiB) and `nvidia.com/gpucores` (percent of one
//! GPU); a mutating webhook routes it to this scheduler's extender, which picks a node and the exact
//! devices; a binder binds it under the per-node lock `hami.io/mutex.lock`. The whole protocol lives in
//! annotations, with HAMi v2.10's formats, reason strings, scores and events, so sliceguard
//! interoperates with HAMi's device plugin and its users' habits.
//!
//! ## Layers
//! The **sans-IO core** (every module below except `cli`) has no async runtime, no clock and no
//! randomness: time is a parameter, inputs are plain data or `k8s_openapi` objects, and outputs are
//! decisions, annotations, JSON patches and event texts. That is what lets the harness test it
//! exhaustively and run it inside a deterministic simulation.
//!
//! | module | owns |
//! |---|---|
//! | [`annotations`] | every annotation key, label and resource name of the protocol |
//! | [`model`] | devices, usage, requests and allocations as plain data |
//! | [`codec`] | every wire format as a `parse`/`render` pair with errors that name the field |
//! | [`quantity`] | Kubernetes resource quantities, exactly as `resource.Quantity.AsInt64` reads them |
//! | [`request`] | a `Pod` into per-container GPU requests (HAMi's `GenerateResourceRequests`) |
//! | [`admission`] | the webhook mutation as a pure function returning an RFC 6902 JSON Patch |
//! | [`policy`] | node and GPU policies, per-pod selectors and scoring weights |
//! | [`score`] | node and device scores (float32, as HAMi computes them) |
//! | [`fit`] | HAMi's per-device checks in HAMi's order, with HAMi's reason strings |
//! | [`fragmentation`] | sliceguard's `fragmentation` GPU policy: expected fragmentation of a typical workload |
//! | [`registry`] | the node inventory read from `hami.io/node-nvidia-register` |
//! | [`ledger`] | usage per device, maintained incrementally from pod allocations |
//! | [`index`] | the placement index: nodes ordered by score with device summaries, same decision as the scan |
//! | [`decision`] | the placement decision over a fleet: node, devices, verdicts, annotations, events |
//! | [`bind`] | the bind protocol and the node lock as sans-IO state machines; the lock reaper's rules |
//! | [`eligibility`] | which nodes kube-scheduler would offer the extender (selectors, taints, cordons) |
//! | [`objects`] | the Kubernetes objects the project builds: fake GPU fleet nodes and GPU pods |
//!
//! The `cli` module (feature `cli`) is the `sliceguard` binary's shell around the core; the `server`
//! module (feature `server`) is the I/O shell: kube-rs driver, watches, webhook, extender, metrics.

pub mod admission;
pub mod annotations;
pub mod bind;
pub mod codec;
pub mod decision;
pub mod eligibility;
pub mod fit;
pub mod fragmentation;
pub mod index;
pub mod ledger;
pub mod model;
pub mod objects;
pub mod policy;
pub mod quantity;
pub mod registry;
pub mod request;
pub mod score;

#[cfg(feature = "server")]
pub mod server;

#[cfg(feature = "cli")]
pub mod cli;
