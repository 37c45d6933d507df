//! The simulated API runs admission on pod updates as kube-apiserver does: a `PATCH` or `PUT` of a
//! pod goes to the admission hook as UPDATE with the stored pod as the old object and the request's
//! user; a denial leaves the pod as it was; `status` writes are not admitted; the request's own
//! resourceVersion precondition still answers 409.

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use sliceguard_sim::http::{
    Admission, AdmissionRequest, DEFAULT_USER, Operation, SharedStore, serve,
};
use sliceguard_sim::store::{ApiError, Store};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

/// Denies any update that changes the `guarded` label; records what it was asked.
#[derive(Default)]
struct Recorder {
    seen: Mutex<Vec<AdmissionRequest>>,
}

impl Admission for Recorder {
    fn admit(
        &self,
        request: AdmissionRequest,
    ) -> Pin<Box<dyn Future<Output = Result<Value, ApiError>> + Send + '_>> {
        Box::pin(async move {
            self.seen
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(request.clone());
            let label = |v: &Value| v["metadata"]["labels"]["guarded"].clone();
            match &request.old_object {
                Some(old) if label(old) != label(&request.object) => Err(ApiError::BadRequest(
                    format!("label guarded cannot be changed by {}", request.user),
                )),
                _ => Ok(request.object),
            }
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pod_updates_go_through_admission_with_the_old_object_and_the_user() {
    let shared = SharedStore::new(Store::new("2026-01-01T00:00:00Z".parse().unwrap()));
    let recorder = Arc::new(Recorder::default());
    let api = serve(shared, Some(recorder.clone()), "127.0.0.1:0")
        .await
        .unwrap();
    let url: hyper::Uri = api.url.parse().unwrap();
    let client = kube::Client::try_from(kube::Config::new(url)).unwrap();
    let pods: Api<Pod> = Api::namespaced(client, "default");
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": "p", "labels": {"guarded": "yes"}},
        "spec": {"containers": [{"name": "c", "image": "pause"}]}}))
    .unwrap();
    pods.create(&PostParams::default(), &pod).await.unwrap();

    // A merge patch of another label passes, seen as an UPDATE with both objects.
    let patched = pods
        .patch(
            "p",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"team": "ml"}}})),
        )
        .await
        .unwrap();
    assert_eq!(patched.metadata.labels.unwrap()["team"], "ml");
    {
        let seen = recorder.seen.lock().unwrap();
        assert_eq!(seen.len(), 2, "{seen:?}");
        assert_eq!(seen[0].operation, Operation::Create);
        let update = &seen[1];
        assert_eq!(update.operation, Operation::Update);
        assert_eq!(update.user, DEFAULT_USER);
        assert_eq!(update.namespace, "default");
        let old = update.old_object.as_ref().expect("an old object");
        assert!(old["metadata"]["labels"]["team"].is_null());
        assert_eq!(update.object["metadata"]["labels"]["team"], "ml");
    }

    // Changing the guarded label is denied by PATCH and by PUT; the pod keeps it.
    let err = pods
        .patch(
            "p",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"guarded": null}}})),
        )
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("label guarded cannot be changed by kubernetes-admin"),
        "{err}"
    );
    let mut replaced = pods.get("p").await.unwrap();
    replaced
        .metadata
        .labels
        .as_mut()
        .unwrap()
        .insert("guarded".into(), "no".into());
    let err = pods
        .replace("p", &PostParams::default(), &replaced)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("label guarded"), "{err}");
    assert_eq!(
        pods.get("p").await.unwrap().metadata.labels.unwrap()["guarded"],
        "yes"
    );

    // Status writes are not admitted (the webhook's rules name `pods`, not `pods/status`).
    let before = recorder.seen.lock().unwrap().len();
    pods.patch_status(
        "p",
        &PatchParams::default(),
        &Patch::Merge(json!({"status": {"phase": "Running"}})),
    )
    .await
    .unwrap();
    assert_eq!(recorder.seen.lock().unwrap().len(), before);

    // The request's own precondition still answers 409 Conflict.
    let err = pods
        .patch(
            "p",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"resourceVersion": "1", "labels": {"x": "y"}}})),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&err, kube::Error::Api(s) if s.code == 409),
        "{err}"
    );
    let _ = api.shutdown.send(());
}
