//! The cluster API as the service logic needs it: one trait, so that the kube-rs driver
//! ([`super::kube_cluster::KubeCluster`]), the tests' in-memory API and the simulated cluster plug in
//! alike.
//!
//! Bind and lock effects go through [`ClusterApi::execute`] (the same [`Effect`] /
//! [`Observation`] vocabulary as the sans-IO machine, so a driver may inject faults between any two
//! effects); the filter's one write, annotations plus the `hami.io/vgpu-node` label on the pod, goes
//! through [`ClusterApi::patch_pod_metadata`]. Events are [`Effect::EmitEvent`].

use crate::bind::{ApiFailure, Effect, Observation};
use std::collections::BTreeMap;
use std::future::Future;

/// What the scheduler asks of the Kubernetes API.
pub trait ClusterApi: Send + Sync + 'static {
    /// Executes one effect and reports what happened.
    fn execute(&self, effect: &Effect) -> impl Future<Output = Observation> + Send;

    /// Merges `annotations` and `labels` into the pod's metadata (a JSON merge patch).
    fn patch_pod_metadata(
        &self,
        namespace: &str,
        name: &str,
        annotations: &BTreeMap<String, String>,
        labels: &BTreeMap<String, String>,
    ) -> impl Future<Output = Result<(), ApiFailure>> + Send;
}
