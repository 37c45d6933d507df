//! [`ClusterApi`] over kube-rs: every effect of the bind machine as one Kubernetes API request.
//!
//! | effect | request |
//! |---|---|
//! | `GetPod`, `GetNode` | `GET /api/v1/namespaces/<ns>/pods/<name>`, `GET /api/v1/nodes/<node>` |
//! | `WriteLock`, `ClearLock` | `PATCH /api/v1/nodes/<node>` `application/merge-patch+json` with `metadata.resourceVersion` (the API server answers 409 when it is stale) |
//! | `PatchPodAnnotations` | `PATCH .../pods/<name>` merge patch of `metadata.annotations` |
//! | `PatchPodMetadata` | `PATCH .../pods/<name>` merge patch of `metadata.annotations` and `metadata.labels` with `metadata.uid` (immutable: the API server refuses the patch, 422, when the pod was re-created under the name) |
//! | `CreateBinding` | `POST .../pods/<name>/binding` with `metadata.uid` as precondition |
//! | `DeletePod` | `DELETE .../pods/<name>` with `preconditions.uid` |
//! | `EmitEvent` | `POST /api/v1/namespaces/<ns>/events`: a core/v1 Event with `source.component` and `reportingComponent` = the scheduler name, as client-go's recorder writes HAMi's |
//!
//! Deliberate difference from HAMi: each event is created once with `count: 1`; client-go's
//! recorder, which HAMi uses, aggregates repeats into one event with a growing count.
//!
//! API errors map to [`ApiFailure`]: 404 → `NotFound`, 409 → `Conflict`, 5xx and every transport
//! error (connect, reset, timeout, undecodable answer) → `Indeterminate`, any other status,
//! 429 included, → `Rejected`. A 429 comes from kube-apiserver's max-in-flight or priority-and-fairness
//! filter before any handler ran, so it was not applied; the client already retried it with backoff
//! and `Retry-After` ([`super::api_client`]), and the machines treat what is left as a refusal.

use super::cluster::ClusterApi;
use crate::bind::{ApiFailure, Effect, NodeLockView, Observation, PodRef, PodView};
use crate::decision::{EventRecord, EventType};
use jiff::Timestamp;
use k8s_openapi::api::core::v1::{Event, EventSource, Node, ObjectReference, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::Client;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use serde_json::Value;

/// The kube-rs driver.
#[derive(Clone)]
pub struct KubeCluster {
    client: Client,
    scheduler_name: String,
    instance: String,
}

impl std::fmt::Debug for KubeCluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeCluster")
            .field("scheduler_name", &self.scheduler_name)
            .field("instance", &self.instance)
            .finish_non_exhaustive()
    }
}

/// Maps a kube-rs error to what the bind protocol needs to know.
pub fn failure(error: kube::Error) -> ApiFailure {
    match error {
        kube::Error::Api(status) => match status.code {
            404 => ApiFailure::NotFound,
            409 => ApiFailure::Conflict(status.message),
            500..=599 => ApiFailure::Indeterminate(format!("{} {}", status.code, status.message)),
            code => ApiFailure::Rejected {
                code,
                message: status.message,
            },
        },
        other => ApiFailure::Indeterminate(other.to_string()),
    }
}

impl KubeCluster {
    /// A driver writing events as `scheduler_name` from `instance` (the host name).
    pub fn new(client: Client, scheduler_name: String, instance: String) -> Self {
        KubeCluster {
            client,
            scheduler_name,
            instance,
        }
    }

    /// The client.
    pub fn client(&self) -> &Client {
        &self.client
    }

    fn pods(&self, namespace: &str) -> Api<Pod> {
        Api::namespaced(self.client.clone(), namespace)
    }

    fn nodes(&self) -> Api<Node> {
        Api::all(self.client.clone())
    }

    async fn merge_patch_node(&self, node: &str, body: Value) -> Observation {
        match self
            .nodes()
            .patch(node, &PatchParams::default(), &Patch::Merge(body))
            .await
        {
            Ok(n) => Observation::Written {
                resource_version: n.metadata.resource_version,
            },
            Err(e) => Observation::Failed(failure(e)),
        }
    }

    /// The core/v1 Event for `event` on `pod`, named as client-go names them (`<pod>.<hex nanos>`).
    pub fn event_object(&self, pod: &PodRef, event: &EventRecord, now: Timestamp) -> Event {
        let nanos = now.as_nanosecond().max(0);
        Event {
            metadata: ObjectMeta {
                name: Some(format!("{}.{nanos:x}", pod.name)),
                namespace: Some(pod.namespace.clone()),
                ..Default::default()
            },
            involved_object: ObjectReference {
                api_version: Some("v1".into()),
                kind: Some("Pod".into()),
                name: Some(pod.name.clone()),
                namespace: Some(pod.namespace.clone()),
                uid: (!pod.uid.is_empty()).then(|| pod.uid.clone()),
                ..Default::default()
            },
            reason: Some(event.reason.to_string()),
            message: Some(event.message.clone()),
            type_: Some(
                match event.event_type {
                    EventType::Normal => "Normal",
                    EventType::Warning => "Warning",
                }
                .into(),
            ),
            source: Some(EventSource {
                component: Some(self.scheduler_name.clone()),
                host: None,
            }),
            reporting_component: Some(self.scheduler_name.clone()),
            reporting_instance: Some(self.instance.clone()),
            first_timestamp: Some(Time(now)),
            last_timestamp: Some(Time(now)),
            count: Some(1),
            ..Default::default()
        }
    }
}

impl ClusterApi for KubeCluster {
    async fn execute(&self, effect: &Effect) -> Observation {
        match effect {
            Effect::GetPod { namespace, name } => match self.pods(namespace).get(name).await {
                Ok(pod) => Observation::Pod(PodView::from_pod(&pod)),
                Err(e) => Observation::Failed(failure(e)),
            },
            Effect::GetNode { node } => match self.nodes().get(node).await {
                Ok(n) => Observation::Node(NodeLockView::from_node(&n)),
                Err(e) => Observation::Failed(failure(e)),
            },
            Effect::WriteLock { node, .. } | Effect::ClearLock { node, .. } => {
                let body = effect.merge_patch().unwrap_or(Value::Null);
                self.merge_patch_node(node, body).await
            }
            Effect::PatchPodAnnotations {
                namespace, name, ..
            }
            | Effect::PatchPodMetadata {
                namespace, name, ..
            } => {
                let body = effect.merge_patch().unwrap_or(Value::Null);
                match self
                    .pods(namespace)
                    .patch(name, &PatchParams::default(), &Patch::Merge(body))
                    .await
                {
                    Ok(p) => Observation::Written {
                        resource_version: p.metadata.resource_version,
                    },
                    Err(e) => Observation::Failed(failure(e)),
                }
            }
            Effect::CreateBinding {
                namespace, name, ..
            } => {
                let body = effect.binding().unwrap_or(Value::Null);
                match self
                    .pods(namespace)
                    .create_subresource::<Value, Value>(
                        "binding",
                        name,
                        &PostParams::default(),
                        &body,
                    )
                    .await
                {
                    Ok(_) => Observation::Written {
                        resource_version: None,
                    },
                    Err(e) => Observation::Failed(failure(e)),
                }
            }
            Effect::DeletePod {
                namespace,
                name,
                uid,
            } => {
                let params = DeleteParams {
                    preconditions: (!uid.is_empty()).then(|| Preconditions {
                        uid: Some(uid.clone()),
                        resource_version: None,
                    }),
                    ..DeleteParams::default()
                };
                match self.pods(namespace).delete(name, &params).await {
                    Ok(_) => Observation::Written {
                        resource_version: None,
                    },
                    Err(e) => Observation::Failed(failure(e)),
                }
            }
            Effect::EmitEvent { pod, event } => {
                let object = self.event_object(pod, event, Timestamp::now());
                let api: Api<Event> = Api::namespaced(self.client.clone(), &pod.namespace);
                match api.create(&PostParams::default(), &object).await {
                    Ok(_) => Observation::Written {
                        resource_version: None,
                    },
                    Err(e) => Observation::Failed(failure(e)),
                }
            }
        }
    }
}
