//! The kube-scheduler extender v1 wire format (`k8s.io/kube-scheduler/extender/v1`, spec §4.1).
//!
//! The Go structs have no json tags, so the keys are the Go field names in PascalCase (`Pod`,
//! `Nodes`, `NodeNames`, `FailedNodes`, `FailedAndUnresolvableNodes`, `Error`, `PodName`,
//! `PodNamespace`, `PodUID`, `Node`), and Go's `encoding/json` matches them **case-insensitively**
//! (an exact match first, then a folded one, with Go's special folds `K` (U+212A) = `k` and
//! `ſ` (U+017F) = `s`). These decoders do the same for the top-level keys; unknown keys are ignored,
//! as Go ignores them. The objects inside (`Pod`, the `Nodes` list's items) are Kubernetes objects
//! with their usual camelCase keys; quantities written as JSON numbers are accepted, as the API
//! server accepts them. Errors name the field (`ExtenderArgs.Pod.spec.containers[0]: ...`).
//!
//! Encoding follows Go: every field is present, nil slices and maps are `null`, `Error` is `""`.

use crate::objects::canonicalize_quantities;
use k8s_openapi::api::core::v1::{Node, Pod};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// `ExtenderArgs`: the body of `POST /filter`.
#[derive(Debug, Clone, Default)]
pub struct ExtenderArgs {
    /// The pod being scheduled (`null` or absent is HAMi's `extender args missing pod`).
    pub pod: Option<Pod>,
    /// Full node objects: present only when the extender is not `nodeCacheCapable`.
    pub nodes: Option<Vec<Node>>,
    /// Candidate node names (`nodeCacheCapable: true`).
    pub node_names: Option<Vec<String>>,
}

/// `ExtenderFilterResult`: the answer to `POST /filter`.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ExtenderFilterResult {
    /// Nodes that passed, as objects (the answer to `Nodes`).
    #[serde(rename = "Nodes", serialize_with = "node_list")]
    pub nodes: Option<Vec<Node>>,
    /// Nodes that passed, by name (the answer to `NodeNames`).
    #[serde(rename = "NodeNames")]
    pub node_names: Option<Vec<String>>,
    /// Rejected nodes and why (kube-scheduler may try preemption on them).
    #[serde(rename = "FailedNodes")]
    pub failed_nodes: Option<BTreeMap<String, String>>,
    /// Rejected nodes that preemption cannot help (HAMi never uses it).
    #[serde(rename = "FailedAndUnresolvableNodes")]
    pub failed_and_unresolvable_nodes: Option<BTreeMap<String, String>>,
    /// A scheduling error; non-empty fails the pod's scheduling cycle.
    #[serde(rename = "Error")]
    pub error: String,
}

impl ExtenderFilterResult {
    /// A result carrying only an error.
    pub fn error(message: impl Into<String>) -> Self {
        ExtenderFilterResult {
            error: message.into(),
            ..Default::default()
        }
    }
}

fn node_list<S: serde::Serializer>(nodes: &Option<Vec<Node>>, s: S) -> Result<S::Ok, S::Error> {
    match nodes {
        None => s.serialize_none(),
        Some(items) => {
            #[derive(Serialize)]
            struct NodeList<'a> {
                metadata: Map<String, Value>,
                items: &'a [Node],
            }
            NodeList {
                metadata: Map::new(),
                items,
            }
            .serialize(s)
        }
    }
}

/// `ExtenderBindingArgs`: the body of `POST /bind`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExtenderBindingArgs {
    /// Pod name.
    pub pod_name: String,
    /// Pod namespace.
    pub pod_namespace: String,
    /// Pod uid.
    pub pod_uid: String,
    /// Target node.
    pub node: String,
}

/// `ExtenderBindingResult`: the answer to `POST /bind`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ExtenderBindingResult {
    /// Empty on success.
    #[serde(rename = "Error")]
    pub error: String,
}

/// A body that does not decode; the text names the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct WireError(pub String);

/// Go's case folding for struct field names: simple lower-casing plus the two special folds.
fn fold(key: &str) -> String {
    key.chars()
        .flat_map(|c| match c {
            '\u{212A}' => vec!['k'],
            '\u{017F}' => vec!['s'],
            c => c.to_lowercase().collect(),
        })
        .collect()
}

/// The value of Go field `name` in `object`: an exact key first, then a case-insensitive one.
fn field<'a>(object: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    if let Some(v) = object.get(name) {
        return Some(v);
    }
    let folded = fold(name);
    object
        .iter()
        .find(|(k, _)| fold(k) == folded)
        .map(|(_, v)| v)
}

fn top_level(body: &[u8], what: &str) -> Result<Option<Map<String, Value>>, WireError> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| WireError(format!("{what} is not valid JSON: {e}")))?;
    match value {
        Value::Object(map) => Ok(Some(map)),
        Value::Null => Ok(None),
        other => Err(WireError(format!(
            "{what} must be a JSON object, got {}",
            kind_of(&other)
        ))),
    }
}

fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn typed<T: DeserializeOwned>(value: &Value, path: &str) -> Result<T, WireError> {
    let mut value = value.clone();
    canonicalize_quantities(&mut value);
    serde_path_to_error::deserialize(value).map_err(|e| {
        let at = e.path().to_string();
        if at == "." || at.is_empty() {
            WireError(format!("{path}: {}", e.inner()))
        } else {
            WireError(format!("{path}.{at}: {}", e.inner()))
        }
    })
}

fn string_field(object: &Map<String, Value>, name: &str, what: &str) -> Result<String, WireError> {
    match field(object, name) {
        None | Some(Value::Null) => Ok(String::new()),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(other) => Err(WireError(format!(
            "{what}.{name} must be a string, got {}",
            kind_of(other)
        ))),
    }
}

/// Decodes `ExtenderArgs`.
pub fn decode_args(body: &[u8]) -> Result<ExtenderArgs, WireError> {
    let Some(object) = top_level(body, "ExtenderArgs")? else {
        return Ok(ExtenderArgs::default());
    };
    let pod = match field(&object, "Pod") {
        None | Some(Value::Null) => None,
        Some(v) => Some(typed::<Pod>(v, "ExtenderArgs.Pod")?),
    };
    let nodes = match field(&object, "Nodes") {
        None | Some(Value::Null) => None,
        Some(Value::Object(list)) => match list.get("items") {
            None | Some(Value::Null) => Some(Vec::new()),
            Some(items) => Some(typed::<Vec<Node>>(items, "ExtenderArgs.Nodes.items")?),
        },
        Some(other) => {
            return Err(WireError(format!(
                "ExtenderArgs.Nodes must be a NodeList object, got {}",
                kind_of(other)
            )));
        }
    };
    let node_names = match field(&object, "NodeNames") {
        None | Some(Value::Null) => None,
        Some(v) => Some(typed::<Vec<String>>(v, "ExtenderArgs.NodeNames")?),
    };
    Ok(ExtenderArgs {
        pod,
        nodes,
        node_names,
    })
}

/// Decodes `ExtenderBindingArgs`; a missing `PodName`, `PodNamespace` or `Node` is an error naming it
/// (a namespace-less pod does not exist).
pub fn decode_binding_args(body: &[u8]) -> Result<ExtenderBindingArgs, WireError> {
    let what = "ExtenderBindingArgs";
    let object = top_level(body, what)?.unwrap_or_default();
    let args = ExtenderBindingArgs {
        pod_name: string_field(&object, "PodName", what)?,
        pod_namespace: string_field(&object, "PodNamespace", what)?,
        pod_uid: string_field(&object, "PodUID", what)?,
        node: string_field(&object, "Node", what)?,
    };
    for (name, value) in [
        ("PodName", &args.pod_name),
        ("PodNamespace", &args.pod_namespace),
        ("Node", &args.node),
    ] {
        if value.is_empty() {
            return Err(WireError(format!("{what}.{name} is missing or empty")));
        }
    }
    Ok(args)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn keys_match_case_insensitively_with_exact_match_first() {
        let body = json!({
            "pod": {"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c"}]}},
            "NODENAMES": ["a", "b"],
            "Unknown": 1
        });
        let args = decode_args(body.to_string().as_bytes()).unwrap();
        assert_eq!(args.pod.unwrap().metadata.name.as_deref(), Some("p"));
        assert_eq!(args.node_names.unwrap(), ["a", "b"]);
        assert!(args.nodes.is_none());

        let both = json!({"nodenames": ["lower"], "NodeNames": ["exact"]});
        let args = decode_args(both.to_string().as_bytes()).unwrap();
        assert_eq!(args.node_names.unwrap(), ["exact"]);

        // Go's special folds: the Kelvin sign folds to k, the long s to s.
        assert_eq!(fold("\u{212A}ELVIN"), "kelvin");
        let long_s = "{\"PodName\":\"p\",\"podname\u{017F}pace\":\"ns\",\"node\":\"n\"}";
        let args = decode_binding_args(long_s.as_bytes()).unwrap();
        assert_eq!(args.pod_namespace, "ns");
    }

    #[test]
    fn errors_name_the_field() {
        let bad_pod = json!({"Pod": {"spec": {"containers": "nope"}}});
        let err = decode_args(bad_pod.to_string().as_bytes()).unwrap_err();
        assert!(
            err.0.starts_with("ExtenderArgs.Pod.spec.containers: "),
            "{err}"
        );
        let err = decode_args(b"[1]").unwrap_err();
        assert_eq!(err.0, "ExtenderArgs must be a JSON object, got an array");
        let err = decode_args(b"{").unwrap_err();
        assert!(err.0.starts_with("ExtenderArgs is not valid JSON"), "{err}");
        let err = decode_args(br#"{"Nodes": [1]}"#).unwrap_err();
        assert_eq!(
            err.0,
            "ExtenderArgs.Nodes must be a NodeList object, got an array"
        );
        let err = decode_binding_args(br#"{"PodName": 3}"#).unwrap_err();
        assert_eq!(
            err.0,
            "ExtenderBindingArgs.PodName must be a string, got a number"
        );
        let err = decode_binding_args(br#"{"PodName": "p", "PodNamespace": "ns"}"#).unwrap_err();
        assert_eq!(err.0, "ExtenderBindingArgs.Node is missing or empty");
        assert!(decode_args(b"null").unwrap().pod.is_none());
    }

    #[test]
    fn numeric_quantities_are_accepted() {
        let body = json!({"Pod": {"metadata": {"name": "p"}, "spec": {"containers": [
            {"name": "c", "resources": {"limits": {"nvidia.com/gpu": 1}}}]}}});
        let pod = decode_args(body.to_string().as_bytes())
            .unwrap()
            .pod
            .unwrap();
        let limits = pod.spec.unwrap().containers[0]
            .resources
            .clone()
            .unwrap()
            .limits
            .unwrap();
        assert_eq!(limits["nvidia.com/gpu"].0, "1");
    }

    #[test]
    fn results_encode_like_go() {
        let r = ExtenderFilterResult {
            node_names: Some(vec!["n1".into()]),
            ..Default::default()
        };
        assert_eq!(
            serde_json::to_value(&r).unwrap(),
            json!({"Nodes": null, "NodeNames": ["n1"], "FailedNodes": null,
                   "FailedAndUnresolvableNodes": null, "Error": ""})
        );
        let r = ExtenderFilterResult {
            nodes: Some(vec![]),
            ..Default::default()
        };
        assert_eq!(
            serde_json::to_value(&r).unwrap()["Nodes"],
            json!({"metadata": {}, "items": []})
        );
        assert_eq!(
            serde_json::to_value(ExtenderBindingResult::default()).unwrap(),
            json!({"Error": ""})
        );
    }

    #[test]
    fn an_error_result_carries_only_the_error() {
        let result = ExtenderFilterResult::error("no lock");
        assert_eq!(result.error, "no lock");
        assert_eq!(result.node_names, None);
        assert_eq!(result.failed_nodes, None);
    }

    /// An error at the value's root names the field alone; deeper ones name the path in it.
    #[test]
    fn typed_errors_name_the_path_without_a_stray_dot() {
        let root = typed::<k8s_openapi::api::core::v1::Pod>(&json!(5), "pod").unwrap_err();
        assert!(root.0.starts_with("pod: "), "{}", root.0);
        let deep =
            typed::<k8s_openapi::api::core::v1::Pod>(&json!({"metadata": {"name": 5}}), "pod")
                .unwrap_err();
        assert!(deep.0.starts_with("pod.metadata.name: "), "{}", deep.0);
    }
}
