//! # sliceguard: the I/O shell and the `sliceguard` binary
//!
//! Everything that decides lives in [`sliceguard_core`] (re-exported here module by module, so
//! `sliceguard::fit` and `sliceguard_core::fit` are the same module): wire formats, the placement
//! decision, the usage ledger, the cluster view, and the filter and bind protocols as sans-IO state
//! machines. This crate only executes what the core asks for:
//!
//! | module | owns |
//! |---|---|
//! | [`server`] | kube-rs driver, watches, the webhook (HTTPS), the extender (HTTP), metrics, `serve` and `register` |
//! | [`cli`] | the `sliceguard` binary's commands: `serve`, `place`, `decode`, `fleet`, `register` |
//!
//! The shell may depend on anything the core must not (tokio, kube, axum, rustls, tracing, the
//! clock); the core must never depend on the shell.

pub use sliceguard_core::{
    admission, annotations, bind, cluster_view, codec, decision, eligibility, filter, fit,
    fragmentation, gpu_policy, guard, host_cpu, index, learned_workload, lease, ledger, model,
    objects, outcome, policy, quantity, registry, request, rules, scan, score, wire,
};

pub mod cli;
pub mod server;
