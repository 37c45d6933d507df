//! AdmissionReview v1 and v1beta1 around the pure webhook decision ([`crate::admission::mutate`]).
//!
//! HAMi's chart registers the webhook with `admissionReviewVersions: [v1beta1]`; both versions have
//! the same shape, and the response carries the request's `apiVersion` and `uid`. Answers follow
//! controller-runtime, which HAMi's webhook uses (spec §3):
//! - a mutation: `allowed: true`, `patchType: JSONPatch`, `patch` = base64 of the RFC 6902 patch
//!   (omitted when there is nothing to change), `status.code` 200;
//! - a denial (`pod has no containers`, `container <c> is privileged`, `pod has node assigned`,
//!   an invalid GPU quantity): `allowed: false`, `status` 403 `Forbidden` with HAMi's message;
//! - an object that is not a pod: `allowed: false`, `status.code` 400 (HAMi's `Errored(400)`).
//!
//! A body that is not an AdmissionReview at all (invalid JSON, not an object, a wrong `apiVersion`
//! or `kind`, no `request`, no `request.uid`) is a [`ReviewError`]: the HTTP layer answers 400 with
//! its message, naming the field.
//!
//! `CREATE` is mutated ([`crate::admission::mutate`], which also denies a pod arriving with
//! scheduler-owned state). `UPDATE` is never mutated: it is judged by
//! [`crate::admission::review_update`] on `request.oldObject`, `request.object` and
//! `request.userInfo.username` (only the trusted users may add, change or remove scheduler-owned
//! keys); an UPDATE without a decodable `oldObject` is answered 400 like an undecodable pod. Any
//! other operation is allowed unchanged.

use crate::admission::{Admission, WebhookSettings, mutate, review_update};
use base64::Engine as _;
use serde_json::{Value, json};

/// The AdmissionReview versions served.
pub const VERSIONS: [&str; 2] = ["admission.k8s.io/v1", "admission.k8s.io/v1beta1"];

/// A body that is not a usable AdmissionReview.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ReviewError(pub String);

/// What the webhook did, for metrics and logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReviewVerdict {
    /// Routed to this scheduler, with a patch.
    Routed,
    /// Allowed unchanged or with a non-routing patch.
    Allowed,
    /// Denied.
    Denied,
    /// The object was not a pod.
    Errored,
}

impl ReviewVerdict {
    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            ReviewVerdict::Routed => "routed",
            ReviewVerdict::Allowed => "allowed",
            ReviewVerdict::Denied => "denied",
            ReviewVerdict::Errored => "errored",
        }
    }
}

/// Answers one AdmissionReview body.
pub fn review(
    body: &[u8],
    settings: &WebhookSettings,
) -> Result<(Value, ReviewVerdict), ReviewError> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| ReviewError(format!("AdmissionReview is not valid JSON: {e}")))?;
    let Value::Object(object) = &value else {
        return Err(ReviewError("AdmissionReview must be a JSON object".into()));
    };
    let api_version = match object.get("apiVersion") {
        Some(Value::String(v)) if VERSIONS.contains(&v.as_str()) => v.clone(),
        Some(other) => {
            return Err(ReviewError(format!(
                "AdmissionReview.apiVersion {other} is not one of {}",
                VERSIONS.join(", ")
            )));
        }
        None => return Err(ReviewError("AdmissionReview.apiVersion is missing".into())),
    };
    match object.get("kind") {
        Some(Value::String(k)) if k == "AdmissionReview" => {}
        other => {
            return Err(ReviewError(format!(
                "AdmissionReview.kind must be \"AdmissionReview\", got {}",
                other.map_or_else(|| "nothing".to_string(), Value::to_string)
            )));
        }
    }
    let Some(Value::Object(request)) = object.get("request") else {
        return Err(ReviewError(
            "AdmissionReview.request is missing or not an object".into(),
        ));
    };
    let uid = match request.get("uid") {
        Some(Value::String(uid)) if !uid.is_empty() => uid.clone(),
        _ => {
            return Err(ReviewError(
                "AdmissionReview.request.uid is missing or not a non-empty string".into(),
            ));
        }
    };
    let operation = request
        .get("operation")
        .and_then(Value::as_str)
        .unwrap_or("CREATE");

    let submitted = request.get("object").cloned().unwrap_or(Value::Null);
    let decided = match operation {
        "CREATE" => Some(mutate(&submitted, settings)),
        "UPDATE" => {
            let old = request.get("oldObject").cloned().unwrap_or(Value::Null);
            let user = request
                .get("userInfo")
                .and_then(|u| u.get("username"))
                .and_then(Value::as_str)
                .unwrap_or("");
            Some(review_update(&old, &submitted, user, settings))
        }
        _ => None,
    };
    let (response, verdict) = match decided {
        None => (
            json!({"uid": uid, "allowed": true,
                   "status": {"code": 200, "message": format!("operation {operation} is not mutated")}}),
            ReviewVerdict::Allowed,
        ),
        Some(decided) => match decided {
            Err(e) => (
                json!({"uid": uid, "allowed": false,
                       "status": {"code": 400, "message": e.to_string()}}),
                ReviewVerdict::Errored,
            ),
            Ok(Admission::Denied { message }) => (
                json!({"uid": uid, "allowed": false,
                       "status": {"code": 403, "reason": "Forbidden", "message": message}}),
                ReviewVerdict::Denied,
            ),
            Ok(Admission::Allowed {
                patch,
                routed,
                message,
            }) => {
                let mut response = json!({"uid": uid, "allowed": true,
                                          "status": {"code": 200, "message": message}});
                if !patch.0.is_empty() {
                    let bytes = serde_json::to_vec(&patch)
                        .map_err(|e| ReviewError(format!("cannot encode the patch: {e}")))?;
                    response["patchType"] = json!("JSONPatch");
                    response["patch"] =
                        json!(base64::engine::general_purpose::STANDARD.encode(bytes));
                }
                let verdict = if routed {
                    ReviewVerdict::Routed
                } else {
                    ReviewVerdict::Allowed
                };
                (response, verdict)
            }
        },
    };
    Ok((
        json!({"apiVersion": api_version, "kind": "AdmissionReview", "response": response}),
        verdict,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(version: &str, object: Value) -> Vec<u8> {
        json!({"apiVersion": version, "kind": "AdmissionReview",
               "request": {"uid": "u-1", "operation": "CREATE", "object": object}})
        .to_string()
        .into_bytes()
    }

    fn gpu_pod() -> Value {
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "default"},
               "spec": {"containers": [{"name": "c", "resources": {"limits": {"nvidia.com/gpu": "1"}}}]}})
    }

    #[test]
    fn both_versions_get_a_base64_json_patch() {
        for version in VERSIONS {
            let (answer, verdict) =
                review(&body(version, gpu_pod()), &WebhookSettings::default()).unwrap();
            assert_eq!(verdict, ReviewVerdict::Routed);
            assert_eq!(answer["apiVersion"], version);
            assert_eq!(answer["response"]["uid"], "u-1");
            assert_eq!(answer["response"]["allowed"], true);
            assert_eq!(answer["response"]["patchType"], "JSONPatch");
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(answer["response"]["patch"].as_str().unwrap())
                .unwrap();
            let patch: json_patch::Patch = serde_json::from_slice(&bytes).unwrap();
            let mut pod = gpu_pod();
            json_patch::patch(&mut pod, &patch).unwrap();
            assert_eq!(pod["spec"]["schedulerName"], "sliceguard-scheduler");
            assert_eq!(
                pod["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpucores"],
                "100"
            );
        }
    }

    #[test]
    fn denials_and_decode_errors_use_hamis_messages_and_codes() {
        let mut no_containers = gpu_pod();
        no_containers["spec"]["containers"] = json!([]);
        let (answer, verdict) = review(
            &body(VERSIONS[0], no_containers),
            &WebhookSettings::default(),
        )
        .unwrap();
        assert_eq!(verdict, ReviewVerdict::Denied);
        assert_eq!(
            answer["response"],
            json!({"uid": "u-1", "allowed": false,
                   "status": {"code": 403, "reason": "Forbidden", "message": "pod has no containers"}})
        );
        let (answer, verdict) = review(
            &body(VERSIONS[1], json!({"spec": {"containers": 5}})),
            &WebhookSettings::default(),
        )
        .unwrap();
        assert_eq!(verdict, ReviewVerdict::Errored);
        assert_eq!(answer["response"]["status"]["code"], 400);
        assert!(
            answer["response"]["status"]["message"]
                .as_str()
                .unwrap()
                .contains("spec.containers")
        );
    }

    #[test]
    fn malformed_reviews_are_errors_naming_the_field() {
        let cases: [(&[u8], &str); 6] = [
            (b"{", "AdmissionReview is not valid JSON"),
            (b"[]", "AdmissionReview must be a JSON object"),
            (
                br#"{"apiVersion":"admission.k8s.io/v2","kind":"AdmissionReview"}"#,
                "AdmissionReview.apiVersion \"admission.k8s.io/v2\" is not one of",
            ),
            (
                br#"{"apiVersion":"admission.k8s.io/v1","kind":"Pod"}"#,
                "AdmissionReview.kind must be \"AdmissionReview\", got \"Pod\"",
            ),
            (
                br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}"#,
                "AdmissionReview.request is missing",
            ),
            (
                br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":7}}"#,
                "AdmissionReview.request.uid is missing",
            ),
        ];
        for (body, expected) in cases {
            let err = review(body, &WebhookSettings::default()).unwrap_err();
            assert!(err.0.starts_with(expected), "{err}");
        }
    }

    fn update(old: Value, new: Value, user: &str) -> Vec<u8> {
        json!({"apiVersion": VERSIONS[0], "kind": "AdmissionReview",
               "request": {"uid": "u-2", "operation": "UPDATE", "object": new, "oldObject": old,
                           "userInfo": {"username": user, "groups": ["system:authenticated"]}}})
        .to_string()
        .into_bytes()
    }

    #[test]
    fn updates_of_scheduler_state_are_judged_by_user() {
        let mut placed = gpu_pod();
        placed["metadata"]["labels"] = json!({"hami.io/vgpu-node": "n1"});
        placed["metadata"]["annotations"] = json!({"hami.io/vgpu-node": "n1"});
        let mut stripped = placed.clone();
        stripped["metadata"]["labels"] = json!({});
        let settings = WebhookSettings::default();
        let (answer, verdict) = review(
            &update(placed.clone(), stripped.clone(), "alice"),
            &settings,
        )
        .unwrap();
        assert_eq!(verdict, ReviewVerdict::Denied);
        assert_eq!(
            answer["response"],
            json!({"uid": "u-2", "allowed": false, "status": {"code": 403, "reason": "Forbidden",
                   "message": "label hami.io/vgpu-node is written by the scheduler and cannot be added, changed or removed by alice"}})
        );
        let (answer, verdict) = review(
            &update(
                placed.clone(),
                stripped,
                crate::guard::DEFAULT_SCHEDULER_USER,
            ),
            &settings,
        )
        .unwrap();
        assert_eq!(verdict, ReviewVerdict::Allowed);
        assert!(answer["response"].get("patch").is_none());
        // A configured trusted user replaces the default one.
        let custom = WebhookSettings {
            trusted: crate::guard::TrustedUsers {
                scheduler: "sched".into(),
                device_plugin: String::new(),
            },
            ..WebhookSettings::default()
        };
        let (_, verdict) = review(&update(gpu_pod(), placed.clone(), "sched"), &custom).unwrap();
        assert_eq!(verdict, ReviewVerdict::Allowed);
        let (_, verdict) = review(
            &update(
                gpu_pod(),
                placed.clone(),
                crate::guard::DEFAULT_SCHEDULER_USER,
            ),
            &custom,
        )
        .unwrap();
        assert_eq!(verdict, ReviewVerdict::Denied);
        // No oldObject: the update cannot be judged; 400 naming it.
        let body = json!({"apiVersion": VERSIONS[0], "kind": "AdmissionReview",
                          "request": {"uid": "u", "operation": "UPDATE", "object": placed}});
        let (answer, verdict) = review(body.to_string().as_bytes(), &settings).unwrap();
        assert_eq!(verdict, ReviewVerdict::Errored);
        assert!(
            answer["response"]["status"]["message"]
                .as_str()
                .unwrap()
                .contains("oldObject"),
            "{answer}"
        );
    }

    #[test]
    fn other_operations_pass_unchanged() {
        let body = json!({"apiVersion": VERSIONS[0], "kind": "AdmissionReview",
                          "request": {"uid": "u", "operation": "UPDATE", "object": gpu_pod(), "oldObject": gpu_pod(),
                                      "userInfo": {"username": "alice"}}});
        let (answer, verdict) =
            review(body.to_string().as_bytes(), &WebhookSettings::default()).unwrap();
        assert_eq!(verdict, ReviewVerdict::Allowed);
        assert_eq!(answer["response"]["allowed"], true);
        assert!(answer["response"].get("patch").is_none());
        let body = json!({"apiVersion": VERSIONS[0], "kind": "AdmissionReview",
                          "request": {"uid": "u", "operation": "DELETE", "oldObject": gpu_pod()}});
        let (answer, verdict) =
            review(body.to_string().as_bytes(), &WebhookSettings::default()).unwrap();
        assert_eq!(verdict, ReviewVerdict::Allowed);
        assert_eq!(answer["response"]["allowed"], true);
    }

    #[test]
    fn an_empty_uid_is_refused_with_the_field_named() {
        let review_body = json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
               "request": {"uid": "", "operation": "CREATE", "object": gpu_pod()}});
        let error = review(
            review_body.to_string().as_bytes(),
            &WebhookSettings::default(),
        )
        .unwrap_err();
        assert!(error.to_string().contains("request.uid"), "{error}");
    }

    #[test]
    fn verdict_labels_are_distinct_words() {
        let labels = [
            ReviewVerdict::Routed,
            ReviewVerdict::Allowed,
            ReviewVerdict::Denied,
            ReviewVerdict::Errored,
        ]
        .map(ReviewVerdict::as_str);
        assert_eq!(labels, ["routed", "allowed", "denied", "errored"]);
    }
}
