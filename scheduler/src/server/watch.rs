//! The node and pod watches (kube-rs `watcher`, with its default backoff) that feed the service's
//! cluster view. A (re)list is applied object by object from `Init` to `InitDone`, and what it did
//! not list is dropped at `InitDone` (the list is never held whole: 100,000 pods buffered as `Pod`
//! objects were most of `serve`'s peak memory); single changes apply as they come.
//!
//! Which pods are watched is [`SchedulerConfig::pod_scope`](super::service::SchedulerConfig):
//! every pod by default ([`PodScope::All`]: each pod's CPU request counts on its node for the
//! `fragmentation` policy, and the view keeps only the pods' CPU and the GPU pods, never the
//! objects), or only the pods labelled `hami.io/vgpu-node` ([`PodScope::Gpu`]: the label the filter
//! writes next to the annotation, as HAMi does; host CPU is then unknown). A lock holder that the
//! cache does not know is looked up live before it counts as gone.
//!
//! Each event and each failure is reported to [`Health`] when one is given (readiness, and
//! `sliceguard_watch_restarts_total`).
//!
//! When a leadership term begins ([`super::leader::Leadership::terms`]) each watch starts over
//! with a fresh list, so that a new leader decides on the API as it is, not on what it saw as a
//! standby.
//!
//! Deliberate difference from HAMi: HAMi's informer caches every pod object in the cluster;
//! sliceguard keeps a few numbers per pod (all pods) or watches only the labelled ones (GPU
//! pods), so memory scales with what the decision reads.

use super::cluster::ClusterApi;
use super::health::Health;
use super::service::Scheduler;
use crate::annotations::VGPU_NODE;
use crate::cluster_view::PodScope;
use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::Client;
use kube::api::Api;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// Watches nodes until `shutdown`.
pub async fn watch_nodes<C: ClusterApi>(
    client: Client,
    svc: Arc<Scheduler<C>>,
    shutdown: CancellationToken,
    health: Option<Arc<Health>>,
) {
    let mut terms = svc.leadership().terms();
    let fresh = || {
        watcher::watcher(Api::<Node>::all(client.clone()), watcher::Config::default())
            .default_backoff()
            .boxed()
    };
    let mut stream = fresh();
    loop {
        let event = tokio::select! {
            event = stream.next() => event,
            Ok(()) = terms.changed() => {
                stream = fresh();
                continue;
            }
            () = shutdown.cancelled() => return,
        };
        if let Some(health) = &health {
            match &event {
                Some(Ok(_)) => health.watch_event("node"),
                Some(Err(e)) => health.watch_failed("node", e.to_string()),
                None => {}
            }
        }
        match event {
            None => return,
            Some(Ok(Event::Init)) => svc.begin_node_relist(),
            Some(Ok(Event::InitApply(node))) => svc.relist_node(&node),
            Some(Ok(Event::InitDone)) => svc.finish_node_relist(),
            Some(Ok(Event::Apply(node))) => svc.apply_node(&node),
            Some(Ok(Event::Delete(node))) => svc.delete_node(&node),
            Some(Err(e)) => tracing::warn!(error = %e, "node watch error; retrying"),
        }
    }
}

/// Watches pods (every pod, or those labelled `hami.io/vgpu-node`, by the service's pod scope)
/// until `shutdown`.
pub async fn watch_pods<C: ClusterApi>(
    client: Client,
    svc: Arc<Scheduler<C>>,
    shutdown: CancellationToken,
    health: Option<Arc<Health>>,
) {
    let mut terms = svc.leadership().terms();
    let fresh = || {
        let config = match svc.config().pod_scope {
            PodScope::All => watcher::Config::default(),
            PodScope::Gpu => watcher::Config::default().labels(VGPU_NODE),
        };
        watcher::watcher(Api::<Pod>::all(client.clone()), config)
            .default_backoff()
            .boxed()
    };
    let mut stream = fresh();
    loop {
        let event = tokio::select! {
            event = stream.next() => event,
            Ok(()) = terms.changed() => {
                stream = fresh();
                continue;
            }
            () = shutdown.cancelled() => return,
        };
        if let Some(health) = &health {
            match &event {
                Some(Ok(_)) => health.watch_event("pod"),
                Some(Err(e)) => health.watch_failed("pod", e.to_string()),
                None => {}
            }
        }
        match event {
            None => return,
            Some(Ok(Event::Init)) => svc.begin_pod_relist(),
            Some(Ok(Event::InitApply(pod))) => svc.relist_pod(&pod),
            Some(Ok(Event::InitDone)) => svc.finish_pod_relist(),
            Some(Ok(Event::Apply(pod))) => svc.apply_pod(&pod),
            Some(Ok(Event::Delete(pod))) => svc.delete_pod(&pod),
            Some(Err(e)) => tracing::warn!(error = %e, "pod watch error; retrying"),
        }
    }
}
