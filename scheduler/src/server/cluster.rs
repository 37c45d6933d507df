//! The cluster API as the service logic needs it: one trait, so that the kube-rs driver
//! ([`super::kube_cluster::KubeCluster`]), the tests' in-memory API and the simulated cluster plug in
//! alike.
//!
//! Every request goes through [`ClusterApi::execute`] with the same [`Effect`] / [`Observation`]
//! vocabulary as the sans-IO machines: the bind and lock effects of the
//! [`BindMachine`](crate::bind::BindMachine), the filter's pod write
//! ([`Effect::PatchPodMetadata`]) and settle reads of the
//! [`FilterMachine`](crate::filter::FilterMachine), and events ([`Effect::EmitEvent`]). A driver may
//! inject faults between any two effects.

use crate::bind::{Effect, Observation};
use std::future::Future;

/// What the scheduler asks of the Kubernetes API.
pub trait ClusterApi: Send + Sync + 'static {
    /// Executes one effect and reports what happened.
    fn execute(&self, effect: &Effect) -> impl Future<Output = Observation> + Send;
}
