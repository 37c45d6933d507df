//! The embedded cluster calls sliceguard's webhook as the rendered deployment says
//! (`deploy/overlays/fake-fleet`'s MutatingWebhookConfiguration, see `sliceguard_sim::deploy`):
//! a GPU pod in `default` is routed to sliceguard, the same pod in `kube-system` (excluded by the
//! namespaceSelector) is not sent at all, and neither is one labelled `hami.io/webhook: ignore`
//! (objectSelector).

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, PostParams};
use sliceguard::objects::{GpuAsk, gpu_pod};
use sliceguard_sim::embedded::{Embedded, EmbeddedOptions};

async fn created(client: &kube::Client, namespace: &str, name: &str, ignore: bool) -> Pod {
    let mut pod = gpu_pod(name, &[], &[GpuAsk::fraction(1000, 10)]);
    pod.metadata.namespace = Some(namespace.into());
    if ignore {
        pod.metadata.labels = Some([("hami.io/webhook".to_string(), "ignore".to_string())].into());
    }
    let api: Api<Pod> = Api::namespaced(client.clone(), namespace);
    api.create(&PostParams::default(), &pod).await.unwrap()
}

fn scheduler_of(pod: &Pod) -> Option<String> {
    pod.spec.as_ref().and_then(|s| s.scheduler_name.clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rendered_webhook_scope_decides_which_pods_are_sent() {
    let options = EmbeddedOptions::default();
    assert_eq!(options.deploy_overlay.as_deref(), Some("fake-fleet"));
    let cluster = Embedded::start(options).await.unwrap();
    let client = cluster.client();
    let routed = created(&client, "default", "routed", false).await;
    assert_eq!(
        scheduler_of(&routed).as_deref(),
        Some("sliceguard-scheduler")
    );
    let system = created(&client, "kube-system", "system", false).await;
    assert_ne!(
        scheduler_of(&system).as_deref(),
        Some("sliceguard-scheduler")
    );
    let opted_out = created(&client, "default", "opted-out", true).await;
    assert_ne!(
        scheduler_of(&opted_out).as_deref(),
        Some("sliceguard-scheduler")
    );
    let reviews = cluster.scheduler().service.metrics().encode();
    assert!(
        reviews.contains("sliceguard_webhook_reviews_total{verdict=\"routed\"} 1"),
        "{reviews}"
    );
    cluster.stop().await;
}
