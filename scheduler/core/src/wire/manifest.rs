//! Kubernetes objects as `kubectl get -o yaml` prints them (a `List`, several YAML documents, or
//! JSON): text into raw objects, raw objects into typed ones, and workloads into the pods their
//! controllers would create. Errors name the object (`Deployment default/web (document 1)`,
//! `document 3`) and the field; reading files is the shell's (`sliceguard::cli::input`), which adds
//! the file name.
//!
//! Quantities written as YAML numbers (`nvidia.com/gpu: 1`) are accepted, as the API server accepts
//! them; every other type mismatch is an error naming the field path.

use k8s_openapi::api::core::v1::{Node, Pod, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt;

/// Bad input: which object, which field, what is wrong (the shell adds the file).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestError {
    /// The object (`Deployment default/web (document 1)`, `document 3`), if known.
    pub object: Option<String>,
    /// What is wrong, naming the field.
    pub message: String,
}

impl fmt::Display for ManifestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(object) = &self.object {
            write!(f, "{object}: ")?;
        }
        write!(f, "{}", self.message)
    }
}

impl std::error::Error for ManifestError {}

/// One object read from a manifest, before typing.
#[derive(Debug, Clone)]
pub struct RawObject {
    /// Its `kind`.
    pub kind: String,
    /// `kind namespace/name (document N)` for messages.
    pub label: String,
    /// The object, with numeric quantities turned into strings.
    pub value: Value,
}

/// Every object in `text`, with `List`s flattened.
pub fn parse_objects(text: &str) -> Result<Vec<RawObject>, ManifestError> {
    let err = |object: Option<String>, message: String| ManifestError { object, message };
    let trimmed = text.trim_start();
    let documents: Vec<Value> = if trimmed.starts_with('{') || trimmed.starts_with('[') {
        let mut out = Vec::new();
        for doc in serde_json::Deserializer::from_str(text).into_iter::<Value>() {
            out.push(doc.map_err(|e| err(None, format!("invalid JSON: {e}")))?);
        }
        out
    } else {
        serde_saphyr::from_multiple::<Value>(text)
            .map_err(|e| err(None, format!("invalid YAML: {e}")))?
    };
    let mut objects = Vec::new();
    for (i, doc) in documents.into_iter().enumerate() {
        let where_ = format!("document {}", i + 1);
        match doc {
            Value::Null => {}
            Value::Array(items) => {
                for (j, item) in items.into_iter().enumerate() {
                    collect(item, &format!("{where_}, item {}", j + 1), &mut objects)?;
                }
            }
            other => collect(other, &where_, &mut objects)?,
        }
    }
    Ok(objects)
}

fn collect(value: Value, where_: &str, out: &mut Vec<RawObject>) -> Result<(), ManifestError> {
    let err = |message: String| ManifestError {
        object: Some(where_.to_string()),
        message,
    };
    let Value::Object(map) = &value else {
        return Err(err(format!(
            "expected a Kubernetes object, found {}",
            type_name(&value)
        )));
    };
    let kind = match map.get("kind") {
        Some(Value::String(k)) if !k.is_empty() => k.clone(),
        Some(Value::String(_)) => return Err(err("field kind is empty".into())),
        Some(other) => {
            return Err(err(format!(
                "field kind: expected a string, found {}",
                type_name(other)
            )));
        }
        None => return Err(err("field kind is missing".into())),
    };
    if kind.ends_with("List") || (kind == "List") {
        let items = match map.get("items") {
            Some(Value::Array(items)) => items.clone(),
            Some(Value::Null) | None => Vec::new(),
            Some(other) => {
                return Err(err(format!(
                    "field items: expected a list, found {}",
                    type_name(other)
                )));
            }
        };
        let item_kind = kind
            .strip_suffix("List")
            .filter(|k| !k.is_empty())
            .map(str::to_string);
        for (j, mut item) in items.into_iter().enumerate() {
            if let (Some(k), Value::Object(m)) = (&item_kind, &mut item) {
                m.entry("kind").or_insert_with(|| Value::String(k.clone()));
            }
            collect(item, &format!("{where_}, item {}", j + 1), out)?;
        }
        return Ok(());
    }
    let name = map
        .get("metadata")
        .and_then(|m| m.get("name"))
        .and_then(Value::as_str)
        .unwrap_or("<unnamed>");
    let namespace = map
        .get("metadata")
        .and_then(|m| m.get("namespace"))
        .and_then(Value::as_str);
    let label = match namespace {
        Some(ns) => format!("{kind} {ns}/{name} ({where_})"),
        None => format!("{kind} {name} ({where_})"),
    };
    let mut value = value;
    crate::objects::canonicalize_quantities(&mut value);
    out.push(RawObject { kind, label, value });
    Ok(())
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// Types a raw object, naming the field path on error.
pub fn typed<T: serde::de::DeserializeOwned>(object: &RawObject) -> Result<T, ManifestError> {
    serde_path_to_error::deserialize(&object.value).map_err(|e| ManifestError {
        object: Some(object.label.clone()),
        message: format!("field {}: {}", e.path(), e.inner()),
    })
}

/// The nodes among `objects`; every other kind is reported in `skipped` (`<label> is not a Node`).
pub fn nodes(
    objects: Vec<RawObject>,
    skipped: &mut Vec<String>,
) -> Result<Vec<Node>, ManifestError> {
    let mut out = Vec::new();
    for object in objects {
        if object.kind == "Node" {
            let node: Node = typed(&object)?;
            if node.metadata.name.as_deref().is_none_or(str::is_empty) {
                return Err(ManifestError {
                    object: Some(object.label),
                    message: "field metadata.name is missing".into(),
                });
            }
            out.push(node);
        } else {
            skipped.push(format!("{} is not a Node", object.label));
        }
    }
    Ok(out)
}

/// The pods among `objects`, with workloads (Deployment, ReplicaSet, StatefulSet, Job) expanded into
/// their pods in order; every other kind is reported in `skipped`.
pub fn pods(objects: Vec<RawObject>, skipped: &mut Vec<String>) -> Result<Vec<Pod>, ManifestError> {
    let mut out = Vec::new();
    for object in objects {
        let err = |message: String| ManifestError {
            object: Some(object.label.clone()),
            message,
        };
        match object.kind.as_str() {
            "Pod" => {
                let mut pod: Pod = typed(&object)?;
                if pod.metadata.name.as_deref().is_none_or(str::is_empty) {
                    return Err(err("field metadata.name is missing".into()));
                }
                // No namespace, or an empty one, is `default`, as kubectl reads it.
                if pod.metadata.namespace.as_deref().is_none_or(str::is_empty) {
                    pod.metadata.namespace = Some("default".into());
                }
                out.push(pod);
            }
            "Deployment" | "ReplicaSet" | "StatefulSet" | "Job" => {
                let workload: WorkloadShape = typed(&object)?;
                let name = workload
                    .metadata
                    .name
                    .clone()
                    .filter(|n| !n.is_empty())
                    .ok_or_else(|| err("field metadata.name is missing".into()))?;
                let template = workload
                    .spec
                    .template
                    .clone()
                    .ok_or_else(|| err("field spec.template is missing".into()))?;
                let count = match object.kind.as_str() {
                    "Job" => {
                        let parallelism = workload.spec.parallelism.unwrap_or(1);
                        let completions = workload.spec.completions.unwrap_or(parallelism);
                        parallelism.min(completions)
                    }
                    _ => workload.spec.replicas.unwrap_or(1),
                };
                if count < 0 {
                    return Err(err(format!("replica count {count} is negative")));
                }
                let namespace = workload
                    .metadata
                    .namespace
                    .clone()
                    .filter(|n| !n.is_empty())
                    .unwrap_or_else(|| "default".into());
                out.extend(expand(
                    &object.kind,
                    &name,
                    &namespace,
                    &template,
                    count as usize,
                ));
            }
            other => skipped.push(format!(
                "{} is not a Pod or a workload ({other} is not expanded)",
                object.label
            )),
        }
    }
    Ok(out)
}

/// The parts of Deployment, ReplicaSet, StatefulSet and Job specs that decide their pods.
#[derive(serde::Deserialize)]
struct WorkloadShape {
    metadata: ObjectMeta,
    #[serde(default)]
    spec: WorkloadSpec,
}

#[derive(serde::Deserialize, Default)]
struct WorkloadSpec {
    replicas: Option<i32>,
    parallelism: Option<i32>,
    completions: Option<i32>,
    template: Option<PodTemplateSpec>,
}

/// The alphabet Kubernetes uses for generated name suffixes (`k8s.io/apimachinery/pkg/util/rand`).
const ALPHANUMS: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

fn fnv32a(bytes: &[u8]) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in bytes {
        h ^= u32::from(*b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h
}

/// Kubernetes' `SafeEncodeString` of a number's decimal form (how `pod-template-hash` looks).
fn safe_encode(n: u32) -> String {
    n.to_string()
        .bytes()
        .map(|b| ALPHANUMS[b as usize % ALPHANUMS.len()] as char)
        .collect()
}

/// A 5-character suffix, derived from `seed` so that output is reproducible (controllers use randomness).
fn suffix(seed: &str) -> String {
    let mut h = fnv32a(seed.as_bytes());
    (0..5)
        .map(|_| {
            let c = ALPHANUMS[(h % ALPHANUMS.len() as u32) as usize] as char;
            h = (h / ALPHANUMS.len() as u32) ^ fnv32a(&h.to_le_bytes());
            c
        })
        .collect()
}

/// The pods a workload's controller would create, named as it would name them.
pub fn expand(
    kind: &str,
    name: &str,
    namespace: &str,
    template: &PodTemplateSpec,
    count: usize,
) -> Vec<Pod> {
    let template_json = serde_json::to_vec(template).unwrap_or_default();
    let hash = safe_encode(fnv32a(&template_json));
    (0..count)
        .map(|i| {
            let (pod_name, extra_label) = match kind {
                "Deployment" => {
                    let rs = format!("{name}-{hash}");
                    (
                        format!("{rs}-{}", suffix(&format!("{rs}/{i}"))),
                        Some(("pod-template-hash", hash.clone())),
                    )
                }
                "StatefulSet" => (
                    format!("{name}-{i}"),
                    Some(("statefulset.kubernetes.io/pod-name", format!("{name}-{i}"))),
                ),
                _ => (
                    format!("{name}-{}", suffix(&format!("{kind}/{name}/{i}"))),
                    None,
                ),
            };
            let mut metadata = template.metadata.clone().unwrap_or_default();
            metadata.name = Some(pod_name);
            metadata.namespace = Some(namespace.to_string());
            if let Some((k, v)) = extra_label {
                metadata
                    .labels
                    .get_or_insert_with(BTreeMap::new)
                    .insert(k.to_string(), v);
            }
            Pod {
                metadata,
                spec: template.spec.clone(),
                status: None,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yaml_documents_lists_and_json_are_read() {
        let yaml = "apiVersion: v1\nkind: Pod\nmetadata: {name: a}\nspec:\n  containers:\n  - name: c\n    resources:\n      limits: {nvidia.com/gpu: 1, nvidia.com/gpumem: 3000}\n---\n---\napiVersion: v1\nkind: List\nitems:\n- {apiVersion: v1, kind: Pod, metadata: {name: b}, spec: {containers: [{name: c}]}}\n";
        let objects = parse_objects(yaml).unwrap();
        assert_eq!(objects.len(), 2);
        let pod: Pod = typed(&objects[0]).unwrap();
        let limits = pod.spec.unwrap().containers[0]
            .resources
            .clone()
            .unwrap()
            .limits
            .unwrap();
        assert_eq!(limits["nvidia.com/gpu"].0, "1");
        let json = r#"{"apiVersion":"v1","kind":"NodeList","items":[{"metadata":{"name":"n1"}}]}"#;
        let objects = parse_objects(json).unwrap();
        assert_eq!(objects[0].kind, "Node");
    }

    #[test]
    fn pods_file_expands_workloads_in_file_order_and_skips_other_kinds() {
        let yaml = "kind: Pod\nmetadata: {name: first}\nspec: {containers: [{name: c}]}\n---\nkind: Service\nmetadata: {name: svc}\n---\napiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web, namespace: team}\nspec:\n  replicas: 2\n  template:\n    metadata: {labels: {app: web}}\n    spec: {containers: [{name: c}]}\n---\nkind: Job\nmetadata: {name: j}\nspec: {parallelism: 3, completions: 2, template: {spec: {containers: [{name: c}]}}}\n";
        let mut skipped = vec![];
        let pods = pods(parse_objects(yaml).unwrap(), &mut skipped).unwrap();
        let names: Vec<_> = pods
            .iter()
            .map(|p| {
                (
                    p.metadata.namespace.clone().unwrap(),
                    p.metadata.name.clone().unwrap(),
                )
            })
            .collect();
        assert_eq!(names.len(), 5, "{names:?}");
        assert_eq!(names[0], ("default".to_string(), "first".to_string()));
        assert!(names[1].1.starts_with("web-") && names[1].0 == "team");
        assert_eq!(pods[1].metadata.labels.as_ref().unwrap()["app"], "web");
        assert!(names[3].1.starts_with("j-") && names[4].1.starts_with("j-"));
        assert_eq!(skipped.len(), 1);
        assert!(skipped[0].contains("Service svc"), "{skipped:?}");
        let bad = "kind: Deployment\nmetadata: {name: web}\nspec: {replicas: 1}\n";
        let err = super::pods(parse_objects(bad).unwrap(), &mut vec![])
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "Deployment web (document 1): field spec.template is missing"
        );
    }

    #[test]
    fn an_empty_namespace_is_default() {
        // Found writing the `place_manifests` fuzz target's oracle: `namespace: ""` gave pods keyed
        // `/name`.
        let yaml = "kind: Pod\nmetadata: {name: a, namespace: \"\"}\nspec: {containers: [{name: c}]}\n---\nkind: Job\nmetadata: {name: j, namespace: \"\"}\nspec: {template: {spec: {containers: [{name: c}]}}}\n";
        let pods = pods(parse_objects(yaml).unwrap(), &mut vec![]).unwrap();
        assert_eq!(pods.len(), 2);
        for pod in pods {
            assert_eq!(pod.metadata.namespace.as_deref(), Some("default"));
        }
    }

    #[test]
    fn errors_name_object_and_field() {
        let yaml = "kind: Pod\nmetadata: {name: a, namespace: ns}\nspec: {containers: [{name: c, image: 5}]}\n";
        let objects = parse_objects(yaml).unwrap();
        let err = typed::<Pod>(&objects[0]).unwrap_err().to_string();
        assert!(
            err.starts_with("Pod ns/a (document 1): field spec.containers[0].image"),
            "{err}"
        );
        let err = parse_objects("metadata: {name: a}\n")
            .unwrap_err()
            .to_string();
        assert_eq!(err, "document 1: field kind is missing");
        let err = parse_objects("- 1\n").unwrap_err().to_string();
        assert!(
            err.contains("document 1, item 1") && err.contains("found a number"),
            "{err}"
        );
        assert!(
            parse_objects("{")
                .unwrap_err()
                .to_string()
                .contains("invalid JSON")
        );
        assert!(
            parse_objects("a: [")
                .unwrap_err()
                .to_string()
                .contains("invalid YAML")
        );
    }

    #[test]
    fn workloads_expand_like_their_controllers() {
        let template = PodTemplateSpec::default();
        let pods = expand("Deployment", "web", "ns", &template, 3);
        assert_eq!(pods.len(), 3);
        let names: Vec<_> = pods
            .iter()
            .map(|p| p.metadata.name.clone().unwrap())
            .collect();
        let parts: Vec<Vec<&str>> = names.iter().map(|n| n.split('-').collect()).collect();
        assert!(
            parts
                .iter()
                .all(|p| p.len() == 3 && p[0] == "web" && p[2].len() == 5),
            "{names:?}"
        );
        assert!(
            parts.iter().all(|p| p[1] == parts[0][1]),
            "one ReplicaSet hash"
        );
        assert_eq!(
            names
                .iter()
                .collect::<std::collections::BTreeSet<_>>()
                .len(),
            3,
            "distinct"
        );
        assert_eq!(
            expand("Deployment", "web", "ns", &template, 3),
            pods,
            "deterministic"
        );
        let sts: Vec<_> = expand("StatefulSet", "db", "ns", &template, 2)
            .iter()
            .map(|p| p.metadata.name.clone().unwrap())
            .collect();
        assert_eq!(sts, ["db-0", "db-1"]);
        for name in names {
            assert!(
                name.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            );
        }
    }

    #[test]
    fn an_empty_kind_is_named_as_empty() {
        let error = parse_objects(r#"{"apiVersion": "v1", "kind": "", "metadata": {"name": "x"}}"#)
            .unwrap_err();
        assert!(error.to_string().contains("field kind is empty"), "{error}");
    }

    #[test]
    fn nodes_file_keeps_nodes_in_order_and_skips_other_kinds() {
        let yaml = "kind: Node\nmetadata: {name: n1}\n---\nkind: Pod\nmetadata: {name: p}\n---\nkind: NodeList\nitems:\n- {kind: Node, metadata: {name: n2}}\n";
        let mut skipped = Vec::new();
        let found = nodes(parse_objects(yaml).unwrap(), &mut skipped).unwrap();
        let names: Vec<&str> = found
            .iter()
            .map(|n| n.metadata.name.as_deref().unwrap())
            .collect();
        assert_eq!(names, ["n1", "n2"]);
        assert_eq!(skipped.len(), 1);
        assert!(skipped[0].ends_with("is not a Node"), "{skipped:?}");
        let unnamed = parse_objects("kind: Node\nmetadata: {labels: {a: b}}\n").unwrap();
        let error = nodes(unnamed, &mut Vec::new()).unwrap_err();
        assert!(error.to_string().contains("metadata.name"), "{error}");
    }

    /// Kubernetes' `SafeEncodeString`: each decimal digit byte indexes the consonant-and-digit
    /// alphabet modulo its length ('1' is byte 49, 49 % 27 = 22, the letter '5').
    #[test]
    fn safe_encode_maps_each_digit_like_kubernetes() {
        assert_eq!(safe_encode(1234), "5678");
        assert_eq!(safe_encode(0), "4");
        assert_eq!(safe_encode(u32::MAX).len(), 10);
    }

    /// Zero replicas is an empty workload; a negative count is an error naming it.
    #[test]
    fn zero_replicas_expand_to_no_pods_and_negative_ones_are_refused() {
        let workload = |replicas: i32| {
            format!(
                "apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: web}}\nspec:\n  replicas: {replicas}\n  template: {{spec: {{containers: [{{name: c}}]}}}}\n"
            )
        };
        let none = pods(parse_objects(&workload(0)).unwrap(), &mut Vec::new()).unwrap();
        assert!(none.is_empty());
        let error = pods(parse_objects(&workload(-1)).unwrap(), &mut Vec::new()).unwrap_err();
        assert!(
            error.to_string().contains("replica count -1 is negative"),
            "{error}"
        );
    }

    /// Generated names are stable across versions (evidence and replays name the same pods): the
    /// suffixes of two seeds, computed independently (FNV-1a chained as `suffix` documents).
    #[test]
    fn suffixes_are_stable() {
        assert_eq!(suffix("Job/j/0"), "tfqkb");
        assert_eq!(suffix("web-abc/1"), "lxrwl");
    }
}
