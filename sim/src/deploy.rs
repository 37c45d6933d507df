//! The rendered deployment as the simulated cluster uses it: `kubectl kustomize
//! deploy/overlays/<overlay>` ([`render_overlay`], also what `kind-harness up` applies), and the
//! scope of its MutatingWebhookConfiguration ([`WebhookScope`]) that the simulated API server
//! applies before calling the webhook, as kube-apiserver does: the rules' operations, the
//! namespaceSelector (with the `kubernetes.io/metadata.name` label the API server puts on every
//! namespace), the objectSelector, the failure policy and the Service path.
//!
//! Not evaluated: the `matchConditions`, which are CEL; the simulated API has no CEL interpreter,
//! so every pod the selectors admit is sent (the webhook itself passes pods without GPU requests
//! unchanged, which is what the conditions would have spared it).

use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The overlays under `deploy/overlays/`.
pub const OVERLAYS: [&str; 3] = ["fake-fleet", "hami-device-plugin", "ha"];

/// The overlay the embedded cluster reads its webhook configuration from.
pub const SIM_OVERLAY: &str = "fake-fleet";

/// The repository this crate was built from (holding `deploy/`).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// `kubectl kustomize <repo>/deploy/overlays/<overlay>`: the overlay's objects as YAML, the
/// placeholders `${K8S_VERSION}`, `${IMAGE}` and `${CA_BUNDLE}` still in place.
pub fn render_overlay(repo: &Path, overlay: &str) -> Result<String, String> {
    if !OVERLAYS.contains(&overlay) {
        return Err(format!(
            "--overlay {overlay:?} is not one of {}",
            OVERLAYS.join(", ")
        ));
    }
    let dir = repo.join("deploy/overlays").join(overlay);
    let shown = format!("kubectl kustomize {}", dir.display());
    let out = Command::new("kubectl")
        .arg("kustomize")
        .arg(&dir)
        .output()
        .map_err(|e| {
            format!("`{shown}` did not start (kubectl renders deploy/; `ci/install-kind-tools.sh kubectl` installs it): {e}")
        })?;
    if !out.status.success() {
        return Err(format!(
            "`{shown}` failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    String::from_utf8(out.stdout).map_err(|e| format!("`{shown}` printed non-UTF-8: {e}"))
}

/// Every YAML document of `text` as JSON.
pub fn documents(text: &str) -> Result<Vec<Value>, String> {
    text.split("\n---\n")
        .filter(|d| !d.trim().is_empty())
        .map(|d| serde_saphyr::from_str::<Value>(d).map_err(|e| format!("rendered YAML: {e}")))
        .collect()
}

/// What kube-apiserver checks before calling the (first) webhook of a configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct WebhookScope {
    /// The webhook's name.
    pub name: String,
    /// The operations its rules match (`CREATE`, `UPDATE`, or `*`).
    pub operations: Vec<String>,
    /// The Service path (`/webhook`).
    pub path: String,
    /// `failurePolicy: Ignore`.
    pub ignore_failures: bool,
    /// The CEL matchConditions' names (not evaluated here, see the module doc).
    pub match_conditions: Vec<String>,
    namespace_selector: Option<LabelSelector>,
    object_selector: Option<LabelSelector>,
}

impl WebhookScope {
    /// The scope of the first webhook of `configuration`.
    pub fn from_configuration(
        configuration: &MutatingWebhookConfiguration,
    ) -> Result<Self, String> {
        let hook = configuration
            .webhooks
            .as_ref()
            .and_then(|w| w.first())
            .ok_or("the MutatingWebhookConfiguration has no webhooks")?;
        let operations = hook
            .rules
            .iter()
            .flatten()
            .filter(|r| r.resources.iter().flatten().any(|res| res == "pods"))
            .flat_map(|r| r.operations.clone().unwrap_or_default())
            .collect::<Vec<_>>();
        if operations.is_empty() {
            return Err(format!("webhook {}: no rule matches pods", hook.name));
        }
        let path = hook
            .client_config
            .service
            .as_ref()
            .and_then(|s| s.path.clone())
            .ok_or_else(|| {
                format!(
                    "webhook {}: clientConfig.service.path is missing",
                    hook.name
                )
            })?;
        Ok(WebhookScope {
            name: hook.name.clone(),
            operations,
            path,
            ignore_failures: hook.failure_policy.as_deref() == Some("Ignore"),
            match_conditions: hook
                .match_conditions
                .iter()
                .flatten()
                .map(|c| c.name.clone())
                .collect(),
            namespace_selector: hook.namespace_selector.clone(),
            object_selector: hook.object_selector.clone(),
        })
    }

    /// The scope of the MutatingWebhookConfiguration in `overlay`, rendered now.
    pub fn from_overlay(repo: &Path, overlay: &str) -> Result<Self, String> {
        let text = render_overlay(repo, overlay)?;
        let doc = documents(&text)?
            .into_iter()
            .find(|d| d["kind"] == "MutatingWebhookConfiguration")
            .ok_or_else(|| format!("overlay {overlay} renders no MutatingWebhookConfiguration"))?;
        let mut doc = doc;
        // The CA bundle is a placeholder until deploy time; the simulated API is given the CA.
        doc["webhooks"]
            .as_array_mut()
            .into_iter()
            .flatten()
            .for_each(|h| h["clientConfig"]["caBundle"] = Value::Null);
        let configuration: MutatingWebhookConfiguration = serde_json::from_value(doc)
            .map_err(|e| format!("overlay {overlay}: MutatingWebhookConfiguration: {e}"))?;
        Self::from_configuration(&configuration)
    }

    /// Whether kube-apiserver would call the webhook for `operation` on a pod with
    /// `object_labels` in namespace `namespace` labelled `namespace_labels` (CEL aside).
    pub fn applies(
        &self,
        operation: &str,
        namespace: &str,
        namespace_labels: &BTreeMap<String, String>,
        object_labels: &BTreeMap<String, String>,
    ) -> bool {
        if !self.operations.iter().any(|o| o == operation || o == "*") {
            return false;
        }
        let mut namespace_labels = namespace_labels.clone();
        namespace_labels.insert("kubernetes.io/metadata.name".into(), namespace.into());
        selects(self.namespace_selector.as_ref(), &namespace_labels)
            && selects(self.object_selector.as_ref(), object_labels)
    }
}

/// A label selector's verdict on `labels` (no selector selects everything).
pub fn selects(selector: Option<&LabelSelector>, labels: &BTreeMap<String, String>) -> bool {
    let Some(selector) = selector else {
        return true;
    };
    let labels_match = selector
        .match_labels
        .iter()
        .flatten()
        .all(|(k, v)| labels.get(k) == Some(v));
    let expressions_match = selector.match_expressions.iter().flatten().all(|e| {
        let value = labels.get(&e.key);
        let values = e.values.as_deref().unwrap_or_default();
        match e.operator.as_str() {
            "In" => value.is_some_and(|v| values.contains(v)),
            "NotIn" => value.is_none_or(|v| !values.contains(v)),
            "Exists" => value.is_some(),
            "DoesNotExist" => value.is_none(),
            // An operator the API server would have refused at admission of the configuration.
            _ => false,
        }
    });
    labels_match && expressions_match
}

/// The labels of a JSON object (`metadata.labels`), empty when it has none.
pub fn labels_of(object: &Value) -> BTreeMap<String, String> {
    object["metadata"]["labels"]
        .as_object()
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_string())))
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn selectors_follow_kubernetes_rules() {
        let selector: LabelSelector = serde_json::from_value(serde_json::json!({
            "matchLabels": {"team": "ml"},
            "matchExpressions": [
                {"key": "hami.io/webhook", "operator": "NotIn", "values": ["ignore"]},
                {"key": "tier", "operator": "Exists"}
            ]
        }))
        .unwrap();
        assert!(selects(
            Some(&selector),
            &labels(&[("team", "ml"), ("tier", "a")])
        ));
        assert!(!selects(Some(&selector), &labels(&[("team", "ml")])));
        assert!(!selects(
            Some(&selector),
            &labels(&[("team", "ml"), ("tier", "a"), ("hami.io/webhook", "ignore")])
        ));
        assert!(selects(None, &labels(&[])));
    }

    #[test]
    fn the_rendered_webhook_scope_skips_system_and_opted_out_namespaces_only() {
        let scope = WebhookScope::from_overlay(&repo_root(), SIM_OVERLAY).unwrap();
        assert_eq!(scope.path, "/webhook");
        assert!(!scope.ignore_failures);
        assert!(!scope.match_conditions.is_empty());
        let none = labels(&[]);
        assert!(scope.applies("CREATE", "default", &none, &none));
        assert!(scope.applies("UPDATE", "default", &none, &none));
        assert!(!scope.applies("DELETE", "default", &none, &none));
        assert!(!scope.applies("CREATE", "kube-system", &none, &none));
        assert!(!scope.applies("CREATE", "sliceguard-system", &none, &none));
        let ignore = labels(&[("hami.io/webhook", "ignore")]);
        assert!(!scope.applies("CREATE", "default", &ignore, &none));
        // No objectSelector: a pod labelled with the opt-out is still sent (the matchConditions
        // and the webhook itself leave it alone unless it carries scheduling state), so a pod
        // created with the label cannot carry forged state past the guard.
        assert!(scope.applies("CREATE", "default", &none, &ignore));
    }

    /// The CEL matchConditions name the guarded keys by hand (CEL cannot read Rust constants):
    /// they must be exactly the guard's, or a forged key would skip the webhook.
    #[test]
    fn the_match_conditions_name_exactly_the_guarded_keys() {
        use sliceguard::annotations::WEBHOOK_LABEL;
        use sliceguard::guard::{GUARDED_ANNOTATIONS, GUARDED_LABELS};
        use std::collections::BTreeSet;
        let rendered = render_overlay(&repo_root(), SIM_OVERLAY).unwrap();
        let expressions: Vec<String> = rendered
            .split("\n---\n")
            .filter_map(|d| serde_saphyr::from_str::<Value>(d).ok())
            .filter(|d| d["kind"] == "MutatingWebhookConfiguration")
            .flat_map(|d| {
                d["webhooks"][0]["matchConditions"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
            })
            .filter_map(|c| c["expression"].as_str().map(String::from))
            .collect();
        let guarded: BTreeSet<&str> = GUARDED_ANNOTATIONS
            .iter()
            .chain(GUARDED_LABELS.iter())
            .copied()
            .collect();
        assert_eq!(expressions.len(), 2, "{rendered}");
        for (expression, extra) in expressions.iter().zip([None, Some(WEBHOOK_LABEL)]) {
            let quoted: BTreeSet<&str> = expression
                .split('\'')
                .skip(1)
                .step_by(2)
                .filter(|k| k.starts_with("hami.io/"))
                .collect();
            let mut expected = guarded.clone();
            expected.extend(extra);
            assert_eq!(quoted, expected, "{expression}");
        }
    }
}
