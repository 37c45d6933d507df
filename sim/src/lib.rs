//! # sliceguard-sim: a deterministic simulated Kubernetes control plane
//!
//! No Kubernetes cluster can start on the development machine, and a real cluster cannot explore
//! thousands of interleavings of conflicts, lost responses and crashes anyway. This crate is the
//! simulated world the harness runs sliceguard's real code in: an object store with Kubernetes
//! semantics ([`store`]), and a REST façade over it that kube-rs and kubectl talk to (`http`, feature
//! `http`). It is a test tier: it never passes itself off as Kubernetes.
//!
//! It drives sliceguard's real service (`sliceguard-scheduler`) and checks it with
//! `sliceguard-invariants`; the scheduler crates must never depend on it.

pub mod campaign;
pub mod deploy;
pub mod kube_scheduler;
pub mod node_agent;
pub mod store;
pub mod table;
pub mod tenant;
pub mod world;

#[cfg(feature = "http")]
pub mod embedded;
#[cfg(feature = "http")]
pub mod http;
#[cfg(feature = "http")]
pub mod live;
