//! The checks of the fuzz targets over [`sliceguard_core::wire`]: the extender bodies, the
//! AdmissionReview envelope and manifests as kubectl prints them.

use crate::violation::{Invariant, Violation};
use base64::Engine as _;
use k8s_openapi::api::core::v1::{Node, Pod};
use serde_json::Value;
use sliceguard_core::admission::WebhookSettings;
use sliceguard_core::wire::admission_review::{ReviewVerdict, review};
use sliceguard_core::wire::extender::{
    ExtenderArgs, ExtenderBindingArgs, WireError, decode_args, decode_binding_args,
};
use sliceguard_core::wire::manifest::{self, RawObject};

fn wire(detail: String) -> Violation {
    Violation::new(Invariant::Codec, detail)
}

/// The body with the ASCII letters of its top-level keys recased (alternately upper and lower,
/// starting with `upper_first`), which Go's `encoding/json` folds back to the same fields; every
/// other byte is left alone (re-serializing would round floats differently). `None` unless the
/// body is a JSON object whose keys stay distinct under folding (two keys folding together make Go
/// prefer the exact one, so changing case would change which one wins).
fn recased(body: &[u8], upper_first: bool) -> Option<Vec<u8>> {
    let Ok(Value::Object(map)) = serde_json::from_slice::<Value>(body) else {
        return None;
    };
    let folded: std::collections::BTreeSet<String> = map
        .keys()
        .map(|k| {
            k.chars()
                .flat_map(|c| match c {
                    '\u{212A}' => vec!['k'],
                    '\u{017F}' => vec!['s'],
                    c => c.to_lowercase().collect(),
                })
                .collect()
        })
        .collect();
    if folded.len() != map.len() {
        return None;
    }
    // The body is valid JSON: walk it, tracking the nesting depth, and recase the strings at depth
    // 1 that a `:` follows (the top-level keys), leaving escape sequences as they are.
    let mut out = Vec::with_capacity(body.len());
    let mut depth = 0usize;
    let mut i = 0;
    while i < body.len() {
        let b = body[i];
        if b != b'"' {
            match b {
                b'{' | b'[' => depth += 1,
                b'}' | b']' => depth = depth.saturating_sub(1),
                _ => {}
            }
            out.push(b);
            i += 1;
            continue;
        }
        let mut end = i + 1;
        while end < body.len() && body[end] != b'"' {
            end += if body[end] == b'\\' { 2 } else { 1 };
        }
        let is_key = depth == 1
            && body[(end + 1).min(body.len())..]
                .iter()
                .find(|c| !c.is_ascii_whitespace())
                == Some(&b':');
        let mut j = i;
        let mut letter = 0usize;
        while j <= end.min(body.len() - 1) {
            let c = body[j];
            if c == b'\\' {
                let skip = if body.get(j + 1) == Some(&b'u') { 6 } else { 2 };
                out.extend_from_slice(&body[j..(j + skip).min(body.len())]);
                j += skip;
                continue;
            }
            if is_key && c.is_ascii_alphabetic() {
                out.push(if letter.is_multiple_of(2) == upper_first {
                    c.to_ascii_uppercase()
                } else {
                    c.to_ascii_lowercase()
                });
                letter += 1;
            } else {
                out.push(c);
            }
            j += 1;
        }
        i = end + 1;
    }
    Some(out)
}

fn same_args(a: &Result<ExtenderArgs, WireError>, b: &Result<ExtenderArgs, WireError>) -> bool {
    match (a, b) {
        (Ok(a), Ok(b)) => a.pod == b.pod && a.nodes == b.nodes && a.node_names == b.node_names,
        (Err(a), Err(b)) => a == b,
        _ => false,
    }
}

/// `extender`: the body through both extender decoders. An error names a field under
/// `ExtenderArgs` / `ExtenderBindingArgs`; changing the case of the top-level keys changes nothing
/// (Go folds them); a decoded `ExtenderBindingArgs` has a non-empty `PodName`, `PodNamespace` and
/// `Node`; a decoded `ExtenderArgs`' objects serialize (so the filter can answer with them).
pub fn extender(data: &[u8]) -> Vec<Violation> {
    let mut out = Vec::new();
    let args = decode_args(data);
    match &args {
        Err(e) if !e.0.starts_with("ExtenderArgs") => {
            out.push(wire(format!(
                "extender: an ExtenderArgs error that names no field: {e}"
            )));
        }
        Err(_) => {}
        Ok(a) => {
            for node in a.nodes.iter().flatten() {
                if let Err(e) = serde_json::to_value(node) {
                    out.push(wire(format!(
                        "extender: a decoded node does not encode: {e}"
                    )));
                }
            }
            if let Some(pod) = &a.pod
                && let Err(e) = serde_json::to_value(pod)
            {
                out.push(wire(format!(
                    "extender: the decoded pod does not encode: {e}"
                )));
            }
        }
    }
    let binding = decode_binding_args(data);
    match &binding {
        Err(e) if !e.0.starts_with("ExtenderBindingArgs") => {
            out.push(wire(format!(
                "extender: an ExtenderBindingArgs error that names no field: {e}"
            )));
        }
        Err(_) => {}
        Ok(ExtenderBindingArgs {
            pod_name,
            pod_namespace,
            node,
            ..
        }) => {
            if pod_name.is_empty() || pod_namespace.is_empty() || node.is_empty() {
                out.push(wire(format!(
                    "extender: ExtenderBindingArgs decoded with an empty required field: {binding:?}"
                )));
            }
        }
    }
    for upper_first in [true, false] {
        let Some(variant) = recased(data, upper_first) else {
            break;
        };
        let again = decode_args(&variant);
        if !same_args(&args, &again) {
            out.push(wire(format!(
                "extender: ExtenderArgs changes with the case of its keys: {:?} gives {}, {:?} gives {}",
                String::from_utf8_lossy(data),
                summary(&args),
                String::from_utf8_lossy(&variant),
                summary(&again)
            )));
        }
        let again = decode_binding_args(&variant);
        if again != binding {
            out.push(wire(format!(
                "extender: ExtenderBindingArgs changes with the case of its keys: {binding:?} then {again:?} for {:?}",
                String::from_utf8_lossy(&variant)
            )));
        }
    }
    out
}

fn summary(args: &Result<ExtenderArgs, WireError>) -> String {
    match args {
        Err(e) => format!("error {e}"),
        Ok(a) => format!(
            "pod {:?}, {} nodes, node names {:?}",
            a.pod.as_ref().map(|p| p.metadata.name.clone()),
            a.nodes.as_ref().map_or(0, Vec::len),
            a.node_names
        ),
    }
}

/// `admission_review`: the body through [`review`] with the default settings. An error names a
/// field of the AdmissionReview; an answer is an AdmissionReview of the request's `apiVersion`
/// whose `response.uid` is the request's; a patch is `JSONPatch`, base64 of an RFC 6902 patch that
/// applies to `request.object`; an `allowed: false` answer has a status code and a message; the
/// verdict agrees with `allowed`.
pub fn admission_review(data: &[u8]) -> Vec<Violation> {
    let mut out = Vec::new();
    let v = |detail: String| Violation::new(Invariant::Protocol, format!("review: {detail}"));
    let answer = match review(data, &WebhookSettings::default()) {
        Err(e) => {
            if !e.0.starts_with("AdmissionReview") {
                out.push(v(format!("an error that names no field: {e}")));
            }
            return out;
        }
        Ok(answer) => answer,
    };
    let (answer, verdict) = answer;
    let Ok(request) = serde_json::from_slice::<Value>(data) else {
        out.push(v("answered a body that is not JSON".into()));
        return out;
    };
    if answer.get("apiVersion") != request.get("apiVersion") {
        out.push(v(format!(
            "answered apiVersion {:?} to a request of {:?}",
            answer.get("apiVersion"),
            request.get("apiVersion")
        )));
    }
    if answer.get("kind").and_then(Value::as_str) != Some("AdmissionReview") {
        out.push(v(format!("answered kind {:?}", answer.get("kind"))));
    }
    let response = answer.get("response").cloned().unwrap_or(Value::Null);
    let uid = request.get("request").and_then(|r| r.get("uid"));
    if response.get("uid") != uid || uid.is_none() {
        out.push(v(format!(
            "response uid {:?} for request uid {uid:?}",
            response.get("uid")
        )));
    }
    let Some(allowed) = response.get("allowed").and_then(Value::as_bool) else {
        out.push(v(format!("response without a boolean allowed: {response}")));
        return out;
    };
    let expected_allowed = matches!(verdict, ReviewVerdict::Routed | ReviewVerdict::Allowed);
    if allowed != expected_allowed {
        out.push(v(format!("allowed {allowed} with verdict {verdict:?}")));
    }
    if !allowed {
        let code = response
            .get("status")
            .and_then(|s| s.get("code"))
            .and_then(Value::as_u64);
        let message = response
            .get("status")
            .and_then(|s| s.get("message"))
            .and_then(Value::as_str)
            .unwrap_or("");
        if !matches!(code, Some(400..=499)) || message.is_empty() {
            out.push(v(format!(
                "a refusal without a 4xx code and a message: {response}"
            )));
        }
        if response.get("patch").is_some() {
            out.push(v(format!("a refusal with a patch: {response}")));
        }
    }
    if let Some(patch) = response.get("patch") {
        if response.get("patchType").and_then(Value::as_str) != Some("JSONPatch") {
            out.push(v(format!(
                "a patch whose patchType is not JSONPatch: {response}"
            )));
        }
        let bytes = match patch
            .as_str()
            .map(|p| base64::engine::general_purpose::STANDARD.decode(p))
        {
            Some(Ok(bytes)) => bytes,
            _ => {
                out.push(v(format!("a patch that is not base64: {patch}")));
                return out;
            }
        };
        let parsed: json_patch::Patch = match serde_json::from_slice(&bytes) {
            Ok(p) => p,
            Err(e) => {
                out.push(v(format!("a patch that is not RFC 6902: {e}")));
                return out;
            }
        };
        let mut object = request
            .get("request")
            .and_then(|r| r.get("object"))
            .cloned()
            .unwrap_or(Value::Null);
        if let Err(e) = json_patch::patch(&mut object, &parsed) {
            out.push(v(format!(
                "the patch does not apply to request.object: {e}"
            )));
        }
    }
    out
}

/// A workload's pod count as `manifest::pods` computes it, when it is small enough to expand (the
/// check does not build millions of pods); `None` when the object is not a Pod or workload.
fn expected_pods(object: &RawObject) -> Option<Result<i64, ()>> {
    let spec = object.value.get("spec");
    let int = |key: &str| spec.and_then(|s| s.get(key)).and_then(Value::as_i64);
    match object.kind.as_str() {
        "Pod" => Some(Ok(1)),
        "Job" => {
            let parallelism = int("parallelism").unwrap_or(1);
            let completions = int("completions").unwrap_or(parallelism);
            Some(Ok(parallelism.min(completions)))
        }
        "Deployment" | "ReplicaSet" | "StatefulSet" => Some(Ok(int("replicas").unwrap_or(1))),
        _ => None,
    }
    .map(|n| n.and_then(|n| if n > 64 { Err(()) } else { Ok(n) }))
}

/// `place_manifests`: the text through `manifest::parse_objects`, then every object typed and the
/// pods expanded. Every object has a non-empty `kind` equal to its value's `kind` and a label naming
/// its document; an object printed as JSON reads back as the same object; an error is non-empty and
/// names a document or says which syntax failed; `pods` gives one pod per Pod and the replica count
/// of each workload, each named and namespaced, and `nodes` names every node.
pub fn place_manifests(data: &[u8]) -> Vec<Violation> {
    let text = String::from_utf8_lossy(data);
    let mut out = Vec::new();
    let v = |detail: String| Violation::new(Invariant::Codec, format!("manifest: {detail}"));
    let objects = match manifest::parse_objects(&text) {
        Err(e) => {
            let named = e.object.as_deref().is_some_and(|o| o.contains("document "))
                || e.message.starts_with("invalid JSON: ")
                || e.message.starts_with("invalid YAML: ");
            if !named || e.message.is_empty() {
                out.push(v(format!("an error that names nothing: {e}")));
            }
            return out;
        }
        Ok(objects) => objects,
    };
    let mut expected = 0i64;
    let mut expandable = true;
    for object in &objects {
        if object.kind.is_empty()
            || object.value.get("kind").and_then(Value::as_str) != Some(object.kind.as_str())
        {
            out.push(v(format!(
                "object {} has kind {:?} but its value says {:?}",
                object.label,
                object.kind,
                object.value.get("kind")
            )));
        }
        if !object.label.starts_with(&object.kind) || !object.label.contains("(document ") {
            out.push(v(format!(
                "a label that names no document: {}",
                object.label
            )));
        }
        match serde_json::to_string(&object.value).map(|json| manifest::parse_objects(&json)) {
            Ok(Ok(again)) if again.len() == 1 && same_json(&again[0].value, &object.value) => {}
            Ok(again) => out.push(v(format!(
                "{} printed as JSON reads back as {:?}",
                object.label,
                again.map(|a| a.into_iter().map(|o| o.value).collect::<Vec<_>>())
            ))),
            Err(e) => out.push(v(format!("{} does not print as JSON: {e}", object.label))),
        }
        match object.kind.as_str() {
            "Pod" => typed_names(object, manifest::typed::<Pod>(object), &mut out),
            "Node" => typed_names(object, manifest::typed::<Node>(object), &mut out),
            _ => {}
        }
        match expected_pods(object) {
            Some(Ok(n)) => expected += n,
            Some(Err(())) => expandable = false,
            None => {}
        }
    }
    let mut skipped = Vec::new();
    if let Err(e) = manifest::nodes(objects.clone(), &mut skipped)
        && (e.object.is_none() || e.message.is_empty())
    {
        out.push(v(format!("nodes: an error that names no object: {e}")));
    }
    if !expandable {
        return out;
    }
    let mut skipped = Vec::new();
    match manifest::pods(objects, &mut skipped) {
        Err(e) => {
            if e.object.is_none() || e.message.is_empty() {
                out.push(v(format!("pods: an error that names no object: {e}")));
            }
        }
        Ok(pods) => {
            if pods.len() as i64 != expected {
                out.push(v(format!(
                    "pods: {} pods where the objects ask for {expected}",
                    pods.len()
                )));
            }
            for pod in &pods {
                if pod.metadata.name.as_deref().is_none_or(str::is_empty)
                    || pod.metadata.namespace.as_deref().is_none_or(str::is_empty)
                {
                    out.push(v(format!(
                        "pods: a pod without a name or namespace: {:?}",
                        pod.metadata
                    )));
                }
            }
        }
    }
    out
}

/// Equal JSON values, where two floats count as equal within a few ulps: serde_json's default
/// float parser is not correctly rounded, so a float printed and read back may move by one.
fn same_json(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) if x.is_f64() || y.is_f64() => {
            match (x.as_f64(), y.as_f64()) {
                (Some(x), Some(y)) => x == y || (x - y).abs() <= 1e-14 * x.abs().max(y.abs()),
                _ => false,
            }
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| same_json(x, y))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| same_json(v, w)))
        }
        _ => a == b,
    }
}

fn typed_names<T>(
    object: &RawObject,
    typed: Result<T, manifest::ManifestError>,
    out: &mut Vec<Violation>,
) {
    if let Err(e) = typed
        && (e.object.as_deref() != Some(object.label.as_str()) || !e.message.starts_with("field "))
    {
        out.push(Violation::new(
            Invariant::Codec,
            format!("manifest: a typing error that names no field: {e}"),
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extender_oracle_accepts_real_bodies_and_sees_a_case_change() {
        let body = br#"{"Pod":{"metadata":{"name":"p"},"spec":{"containers":[{"name":"c"}]}},"NodeNames":["a"]}"#;
        assert_eq!(extender(body), vec![]);
        assert_eq!(
            extender(br#"{"PodName":"p","PodNamespace":"ns","PodUID":"u","Node":"n"}"#),
            vec![]
        );
        assert_eq!(extender(b"{"), vec![]);
        let variant = recased(body, true).unwrap();
        assert!(String::from_utf8_lossy(&variant).contains("\"PoD\""));
        assert!(recased(br#"{"Node":"a","node":"b"}"#, true).is_none());
        // Only top-level keys change, escapes and values stay byte for byte (a float re-printed
        // by serde_json may round differently: the first crash was that false positive).
        assert_eq!(
            recased(
                br#"{"Pod": {"a": 3.066666666666666e46}, "No\u0064e": "x\"y", "k": [{"x": 1}]}"#,
                true
            )
            .unwrap(),
            br#"{"PoD": {"a": 3.066666666666666e46}, "No\u0064E": "x\"y", "K": [{"x": 1}]}"#
                .to_vec()
        );
    }

    #[test]
    fn review_oracle_accepts_a_routed_pod_and_errors() {
        let body = br#"{"apiVersion":"admission.k8s.io/v1beta1","kind":"AdmissionReview","request":{"uid":"u","operation":"CREATE","object":{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p"},"spec":{"containers":[{"name":"c","resources":{"limits":{"nvidia.com/gpu":"1"}}}]}}}}"#;
        assert_eq!(admission_review(body), vec![]);
        assert_eq!(admission_review(b"[]"), vec![]);
    }

    #[test]
    fn manifest_oracle_counts_pods_and_workloads() {
        let yaml = "kind: Pod\nmetadata: {name: a}\nspec: {containers: [{name: c}]}\n---\nkind: Deployment\nmetadata: {name: web}\nspec: {replicas: 2, template: {spec: {containers: [{name: c}]}}}\n";
        assert_eq!(place_manifests(yaml.as_bytes()), vec![]);
        assert_eq!(place_manifests(b"a: ["), vec![]);
        assert_eq!(place_manifests(b"- 1\n"), vec![]);
    }
}
