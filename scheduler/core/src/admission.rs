//! The mutating webhook's decision as a pure function (spec §3): a submitted pod object in, an
//! RFC 6902 JSON Patch (or a denial with HAMi's message) out.
//!
//! For each init container, then each container:
//! - `nvidia.com/gpumem-percentage` must be an integer in `[0, 100]`;
//! - `nvidia.com/priority` in limits adds `CUDA_TASK_PRIORITY` to the environment;
//! - a container with `gpumem`, `gpucores` or `gpumem-percentage` in limits but no `nvidia.com/gpu`
//!   gets `nvidia.com/gpu: 1` (the default GPU count);
//! - a GPU container without `gpucores` gets `nvidia.com/gpucores: 100` when its
//!   `gpumem-percentage` is 100, or, without a percentage, when it gives no `gpumem` (HAMi's
//!   if / else-if chain): `nvidia.com/gpu: 1` alone is an exclusive whole GPU, and a percentage
//!   below 100 leaves the cores unset.
//!
//! Then a GPU pod with a privileged container is denied, and one with `nodeName` set is denied;
//! otherwise its `schedulerName` becomes sliceguard's. Pods for another scheduler pass untouched.
//!
//! **CPU-only pods** are left to the default scheduler, as HAMi leaves them, unless the opt-in
//! route is on ([`WebhookSettings::cpu_pod_route`], `serve --route-cpu-pods`): a pod without GPU
//! resources that carries the route's label (and has no `nodeName`) is routed to sliceguard too,
//! whose `fragmentation` policy then puts it where its CPU strands the fewest GPUs. The trade-off:
//! sliceguard's kube-scheduler profile becomes the scheduler of those pods (its other plugins still
//! filter and score nodes; the extender then narrows to one node), so they wait when sliceguard is
//! down, as GPU pods do.
//!
//! Before any of that, a pod that arrives carrying scheduler-owned state is denied whatever its
//! scheduler ([`crate::guard::check_create`], HAMi PR #3042); an UPDATE is judged by
//! [`review_update`]: only the trusted users may add, change or remove those keys.
//!
//! Deliberate differences from HAMi, each closing a way around the scheduler:
//! - a percentage out of range is a **denial**; HAMi answers HTTP 500, which `failurePolicy: Ignore`
//!   turns into an unscheduled-by-HAMi pod;
//! - a GPU quantity that is not a usable integer (`gpumem: 16Gi`, `gpu: 0.5`) is denied with the
//!   container and value named; HAMi lets it through as if it asked for no GPU;
//! - the patch is computed against the submitted object, so fields this crate does not model survive.

use crate::annotations::{
    RESOURCE_GPU, RESOURCE_GPUCORES, RESOURCE_GPUMEM, RESOURCE_GPUMEM_PERCENTAGE,
    RESOURCE_PRIORITY, WEBHOOK_LABEL, WEBHOOK_OPT_OUT,
};
use crate::guard::{Metadata, TrustedUsers, check_create, check_update};
use crate::quantity::parse_integer;
use crate::request::{RequestDefaults, container_request};
use k8s_openapi::api::core::v1::{Container, Pod};
use serde_json::{Value, json};

/// Webhook settings (HAMi's scheduler flags and device config).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookSettings {
    /// The scheduler name written into routed pods (`--scheduler-name`).
    pub scheduler_name: String,
    /// GPUs added when a container gives memory or cores but no count (HAMi `defaultGPUNum`).
    pub default_gpu_num: u32,
    /// Also route pods whose `schedulerName` is `default-scheduler`.
    pub force_overwrite_default_scheduler: bool,
    /// Request defaults, used to validate what the pod will ask for.
    pub requests: RequestDefaults,
    /// Who may write scheduler-owned annotations and labels on UPDATE.
    pub trusted: TrustedUsers,
    /// Route CPU-only pods carrying this label to sliceguard too (`None`: never; HAMi's way).
    pub cpu_pod_route: Option<LabelMatch>,
}

/// A pod label to match: `KEY` (present, any value) or `KEY=VALUE`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelMatch {
    /// The label's key.
    pub key: String,
    /// The value it must have (`None`: any).
    pub value: Option<String>,
}

impl LabelMatch {
    /// True when `labels` carries the label (with the value, if one is required).
    pub fn matches(&self, labels: Option<&std::collections::BTreeMap<String, String>>) -> bool {
        labels
            .and_then(|l| l.get(&self.key))
            .is_some_and(|v| self.value.as_ref().is_none_or(|want| want == v))
    }
}

impl std::fmt::Display for LabelMatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.value {
            Some(value) => write!(f, "{}={value}", self.key),
            None => f.write_str(&self.key),
        }
    }
}

impl std::str::FromStr for LabelMatch {
    type Err = String;

    /// `KEY` or `KEY=VALUE`, with Kubernetes' label syntax: an optional DNS-subdomain prefix and
    /// `/`, then a name of at most 63 characters (alphanumerics, `-`, `_`, `.`, starting and ending
    /// alphanumeric); the value the same without a prefix, or empty.
    fn from_str(text: &str) -> Result<Self, String> {
        fn name_ok(name: &str) -> bool {
            name.len() <= 63
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
                && name.starts_with(|c: char| c.is_ascii_alphanumeric())
                && name.ends_with(|c: char| c.is_ascii_alphanumeric())
        }
        let (key, value) = match text.split_once('=') {
            Some((key, value)) => (key, Some(value)),
            None => (text, None),
        };
        let (prefix, name) = match key.rsplit_once('/') {
            Some((prefix, name)) => (Some(prefix), name),
            None => (None, key),
        };
        let prefix_ok = prefix.is_none_or(|p| {
            !p.is_empty()
                && p.len() <= 253
                && p.split('.').all(|part| {
                    !part.is_empty()
                        && part
                            .chars()
                            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
                        && !part.starts_with('-')
                        && !part.ends_with('-')
                })
        });
        if !prefix_ok || !name_ok(name) {
            return Err(format!(
                "label key {key:?} is not a Kubernetes label key ([prefix/]name, name up to 63 alphanumerics, '-', '_', '.')"
            ));
        }
        if let Some(value) = value
            && !value.is_empty()
            && !name_ok(value)
        {
            return Err(format!(
                "label value {value:?} is not a Kubernetes label value (up to 63 alphanumerics, '-', '_', '.', or empty)"
            ));
        }
        Ok(LabelMatch {
            key: key.to_string(),
            value: value.map(String::from),
        })
    }
}

impl Default for WebhookSettings {
    fn default() -> Self {
        WebhookSettings {
            scheduler_name: "sliceguard-scheduler".into(),
            default_gpu_num: 1,
            force_overwrite_default_scheduler: true,
            requests: RequestDefaults::default(),
            trusted: TrustedUsers::default(),
            cpu_pod_route: None,
        }
    }
}

/// What the webhook answers.
#[derive(Debug, Clone, PartialEq)]
pub enum Admission {
    /// Allowed, with a patch (possibly empty).
    Allowed {
        /// The JSON Patch from the submitted object to the mutated one.
        patch: json_patch::Patch,
        /// True when the pod is routed to sliceguard.
        routed: bool,
        /// Why, for logs and the response message.
        message: String,
    },
    /// Denied, with HAMi's message.
    Denied {
        /// The message.
        message: String,
    },
}

/// The submitted object is not a pod (HAMi: `Errored(400)`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot decode the pod: {0}")]
pub struct DecodeError(pub String);

fn has(container: &Container, which: &str, resource: &str) -> bool {
    container.resources.as_ref().is_some_and(|r| {
        let map = if which == "limits" {
            &r.limits
        } else {
            &r.requests
        };
        map.as_ref().is_some_and(|m| m.contains_key(resource))
    })
}

fn quantity<'a>(container: &'a Container, resource: &str) -> Option<&'a str> {
    crate::request::limit_or_request(container, resource).map(|q| q.0.as_str())
}

fn denied(message: impl Into<String>) -> Result<Admission, DecodeError> {
    Ok(Admission::Denied {
        message: message.into(),
    })
}

/// Decides the webhook's answer for a submitted pod object.
pub fn mutate(submitted: &Value, settings: &WebhookSettings) -> Result<Admission, DecodeError> {
    let pod: Pod = serde_path_to_error::deserialize(submitted)
        .map_err(|e| DecodeError(format!("at {}: {}", e.path(), e.inner())))?;
    let Some(spec) = pod.spec.as_ref() else {
        return denied("pod has no containers");
    };
    if spec.containers.is_empty() {
        return denied("pod has no containers");
    }
    if let Err(denial) = check_create(Metadata::of(&pod.metadata)) {
        return denied(denial.message);
    }
    // HAMi's opt-out label, honoured here as well as by the webhook configuration's matchConditions
    // (deploy/base/webhook.yaml): a configuration without them, or an API server that cannot
    // evaluate CEL, still leaves such pods alone. Forged scheduling state was refused above.
    if pod
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(WEBHOOK_LABEL))
        .is_some_and(|v| v == WEBHOOK_OPT_OUT)
    {
        return Ok(Admission::Allowed {
            patch: json_patch::Patch(vec![]),
            routed: false,
            message: format!("pod is labelled {WEBHOOK_LABEL}={WEBHOOK_OPT_OUT}"),
        });
    }
    let current = spec.scheduler_name.as_deref().unwrap_or("");
    if !current.is_empty()
        && (current != "default-scheduler" || !settings.force_overwrite_default_scheduler)
        && (settings.scheduler_name.is_empty() || current != settings.scheduler_name)
    {
        return Ok(Admission::Allowed {
            patch: json_patch::Patch(vec![]),
            routed: false,
            message: "pod already has different scheduler assigned".into(),
        });
    }

    let mut mutated = submitted.clone();
    let mut has_resource = false;
    let init_len = spec.init_containers.as_ref().map_or(0, Vec::len);
    let all: Vec<(&str, usize, &Container)> = spec
        .init_containers
        .iter()
        .flatten()
        .enumerate()
        .map(|(i, c)| ("initContainers", i, c))
        .chain(
            spec.containers
                .iter()
                .enumerate()
                .map(|(i, c)| ("containers", i, c)),
        )
        .collect();
    debug_assert_eq!(all.len(), init_len + spec.containers.len());

    for &(list, index, container) in &all {
        let name = &container.name;
        if let Some(pct) = quantity(container, RESOURCE_GPUMEM_PERCENTAGE) {
            let ok = parse_integer(pct).is_ok_and(|v| (0..=100).contains(&v));
            if !ok {
                return denied(format!(
                    "invalid {RESOURCE_GPUMEM_PERCENTAGE} value {pct} in container {name}: must be an integer between 0 and 100"
                ));
            }
        }
        let target = &mut mutated["spec"][list][index];
        if let Some(priority) = container
            .resources
            .as_ref()
            .and_then(|r| r.limits.as_ref())
            .and_then(|l| l.get(RESOURCE_PRIORITY))
        {
            let env = &mut target["env"];
            let already = env
                .as_array()
                .is_some_and(|a| a.iter().any(|e| e["name"] == "CUDA_TASK_PRIORITY"));
            if !already {
                if !env.is_array() {
                    *env = json!([]);
                }
                if let Some(a) = env.as_array_mut() {
                    a.push(json!({"name": "CUDA_TASK_PRIORITY", "value": priority.0}));
                }
            }
        }
        let mut gpu_in_limits = has(container, "limits", RESOURCE_GPU);
        let mut container_has_resource = gpu_in_limits;
        if !gpu_in_limits
            && settings.default_gpu_num > 0
            && [
                RESOURCE_GPUCORES,
                RESOURCE_GPUMEM,
                RESOURCE_GPUMEM_PERCENTAGE,
            ]
            .iter()
            .any(|r| has(container, "limits", r))
        {
            target["resources"]["limits"][RESOURCE_GPU] =
                json!(settings.default_gpu_num.to_string());
            gpu_in_limits = true;
            container_has_resource = true;
        }
        let gpu_present = gpu_in_limits || has(container, "requests", RESOURCE_GPU);
        let cores_absent = !has(container, "limits", RESOURCE_GPUCORES)
            && !has(container, "requests", RESOURCE_GPUCORES);
        let mem_absent = !has(container, "limits", RESOURCE_GPUMEM)
            && !has(container, "requests", RESOURCE_GPUMEM);
        // HAMi's `defaultExclusiveCoreIfNeeded` (device/nvidia/device.go) is an if / else-if chain:
        // a percentage present decides alone (exclusive iff 100), and only without one does an
        // absent gpumem make the container exclusive. `gpu: 1` with `gpumem-percentage: 50` is a
        // half-memory share with unset cores, not an exclusive GPU.
        let exclusive = match quantity(container, RESOURCE_GPUMEM_PERCENTAGE) {
            Some(percentage) => parse_integer(percentage).ok() == Some(100),
            None => mem_absent,
        };
        if gpu_present && cores_absent && exclusive {
            target["resources"]["limits"][RESOURCE_GPUCORES] = json!("100");
            container_has_resource = true;
        }
        if container_has_resource {
            // Validate what the scheduler will read, on the mutated container.
            let mutated_container: Container = serde_json::from_value(target.clone())
                .map_err(|e| DecodeError(format!("container {name}: {e}")))?;
            if let Err(e) = container_request(&mutated_container, settings.requests) {
                return denied(e.to_string());
            }
        }
        has_resource |= container_has_resource;
    }

    if !has_resource {
        if let Some(route) = &settings.cpu_pod_route
            && route.matches(pod.metadata.labels.as_ref())
            && spec.node_name.as_deref().is_none_or(str::is_empty)
            && !settings.scheduler_name.is_empty()
        {
            mutated["spec"]["schedulerName"] = json!(settings.scheduler_name);
            let patch = json_patch::diff(submitted, &mutated);
            return Ok(Admission::Allowed {
                patch,
                routed: true,
                message: format!(
                    "CPU-only pod labelled {route} routed to {}",
                    settings.scheduler_name
                ),
            });
        }
        let patch = json_patch::diff(submitted, &mutated);
        return Ok(Admission::Allowed {
            patch,
            routed: false,
            message: "pod requests no GPU resources".into(),
        });
    }
    for &(_, _, container) in &all {
        if container
            .security_context
            .as_ref()
            .and_then(|s| s.privileged)
            == Some(true)
        {
            return denied(format!("container {} is privileged", container.name));
        }
    }
    if !settings.scheduler_name.is_empty() {
        mutated["spec"]["schedulerName"] = json!(settings.scheduler_name);
    }
    if spec.node_name.as_deref().is_some_and(|n| !n.is_empty()) {
        return denied("pod has node assigned");
    }
    let patch = json_patch::diff(submitted, &mutated);
    Ok(Admission::Allowed {
        patch,
        routed: true,
        message: format!("routed to {}", settings.scheduler_name),
    })
}

fn decode_pod(value: &Value, which: &str) -> Result<Pod, DecodeError> {
    serde_path_to_error::deserialize(value)
        .map_err(|e| DecodeError(format!("{which} at {}: {}", e.path(), e.inner())))
}

/// The webhook's answer to a pod UPDATE by `user`: allowed unchanged (an existing pod is never
/// mutated), or denied when the update adds, changes or removes a scheduler-owned key and `user`
/// may not ([`crate::guard::check_update`]).
pub fn review_update(
    old: &Value,
    new: &Value,
    user: &str,
    settings: &WebhookSettings,
) -> Result<Admission, DecodeError> {
    let old = decode_pod(old, "oldObject")?;
    let new = decode_pod(new, "object")?;
    match check_update(
        Metadata::of(&old.metadata),
        Metadata::of(&new.metadata),
        user,
        &settings.trusted,
    ) {
        Ok(()) => Ok(Admission::Allowed {
            patch: json_patch::Patch(vec![]),
            routed: false,
            message: "no scheduler-owned key changed by an untrusted user".into(),
        }),
        Err(denial) => denied(denial.message),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(containers: Value) -> Value {
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "default"}, "spec": {"containers": containers}})
    }

    fn apply(submitted: &Value, admission: &Admission) -> Value {
        let Admission::Allowed { patch, .. } = admission else {
            panic!("denied: {admission:?}")
        };
        let mut doc = submitted.clone();
        json_patch::patch(&mut doc, patch).unwrap();
        doc
    }

    fn run(submitted: &Value) -> Admission {
        mutate(submitted, &WebhookSettings::default()).unwrap()
    }

    #[test]
    fn an_opted_out_pod_is_left_alone_but_cannot_carry_scheduling_state() {
        let mut p = pod(
            json!([{"name": "c", "image": "pause", "resources": {"limits": {"nvidia.com/gpu": "1"}}}]),
        );
        p["metadata"]["labels"] = json!({WEBHOOK_LABEL: WEBHOOK_OPT_OUT});
        let a = run(&p);
        assert!(
            matches!(&a, Admission::Allowed { routed: false, patch, .. } if patch.0.is_empty()),
            "{a:?}"
        );
        p["metadata"]["annotations"] = json!({"hami.io/vgpu-node": "n1"});
        match run(&p) {
            Admission::Denied { message } => {
                assert!(message.contains("hami.io/vgpu-node"), "{message}")
            }
            other => panic!("forged state on an opted-out pod must be denied: {other:?}"),
        }
    }

    #[test]
    fn fractional_pod_is_routed_and_keeps_its_resources() {
        let p = pod(
            json!([{"name": "c", "image": "pause", "resources": {"limits": {"nvidia.com/gpu": "1", "nvidia.com/gpumem": "3000", "nvidia.com/gpucores": "30"}}}]),
        );
        let a = run(&p);
        let out = apply(&p, &a);
        assert_eq!(out["spec"]["schedulerName"], "sliceguard-scheduler");
        assert_eq!(
            out["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpucores"],
            "30"
        );
        assert!(matches!(a, Admission::Allowed { routed: true, .. }));
    }

    /// The exclusive-core default, case by case as HAMi's `defaultExclusiveCoreIfNeeded` decides it
    /// (its test `TestMutateAdmissionDefaultsExclusiveCore` pins the 50 % case): the percentage, when
    /// present, decides alone. The spec's rule 3.e had it as an OR, so 50 and 0 came out exclusive.
    #[test]
    fn the_exclusive_core_default_follows_hamis_if_else_chain() {
        let cores = |limits: Value| {
            let p = pod(json!([{"name": "c", "resources": {"limits": limits}}]));
            apply(&p, &run(&p))["spec"]["containers"][0]["resources"]["limits"]
                .get("nvidia.com/gpucores")
                .cloned()
        };
        let cases = [
            (
                json!({"nvidia.com/gpu": "1", "nvidia.com/gpumem-percentage": "100"}),
                Some("100"),
            ),
            (
                json!({"nvidia.com/gpu": "1", "nvidia.com/gpumem-percentage": "50"}),
                None,
            ),
            (
                json!({"nvidia.com/gpu": "1", "nvidia.com/gpumem-percentage": "0"}),
                None,
            ),
            (json!({"nvidia.com/gpu": "1"}), Some("100")),
            (
                json!({"nvidia.com/gpu": "1", "nvidia.com/gpumem": "8000"}),
                None,
            ),
            // A percentage of 100 with an explicit gpumem: the percentage decides.
            (
                json!({"nvidia.com/gpu": "1", "nvidia.com/gpumem": "8000", "nvidia.com/gpumem-percentage": "100"}),
                Some("100"),
            ),
            // Cores given: never defaulted.
            (
                json!({"nvidia.com/gpu": "1", "nvidia.com/gpucores": "30"}),
                Some("30"),
            ),
        ];
        for (limits, expected) in cases {
            assert_eq!(
                cores(limits.clone()),
                expected.map(|c| json!(c)),
                "limits {limits}"
            );
        }
        // In requests only, the percentage decides the same way.
        let p = pod(json!([{"name": "c", "resources": {
            "limits": {"nvidia.com/gpu": "1"},
            "requests": {"nvidia.com/gpumem-percentage": "50"}}}]));
        assert!(
            apply(&p, &run(&p))["spec"]["containers"][0]["resources"]["limits"]
                .get("nvidia.com/gpucores")
                .is_none()
        );
    }

    #[test]
    fn gpu_alone_becomes_exclusive() {
        let p = pod(json!([{"name": "c", "resources": {"limits": {"nvidia.com/gpu": "1"}}}]));
        let out = apply(&p, &run(&p));
        assert_eq!(
            out["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpucores"],
            "100"
        );
        let pct = pod(
            json!([{"name": "c", "resources": {"limits": {"nvidia.com/gpu": "1", "nvidia.com/gpumem-percentage": "100"}}}]),
        );
        assert_eq!(
            apply(&pct, &run(&pct))["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpucores"],
            "100"
        );
        let mem = pod(
            json!([{"name": "c", "resources": {"limits": {"nvidia.com/gpu": "1", "nvidia.com/gpumem": "1000"}}}]),
        );
        assert!(
            apply(&mem, &run(&mem))["spec"]["containers"][0]["resources"]["limits"]
                .get("nvidia.com/gpucores")
                .is_none()
        );
    }

    #[test]
    fn default_gpu_count_is_added_with_parents() {
        let p = pod(json!([{"name": "c", "resources": {"limits": {"nvidia.com/gpumem": "1000"}}}]));
        let out = apply(&p, &run(&p));
        assert_eq!(
            out["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"],
            "1"
        );
        let init = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {
            "initContainers": [{"name": "i", "resources": {"limits": {"nvidia.com/gpucores": "20", "nvidia.com/gpumem": "10"}}}],
            "containers": [{"name": "c"}]}});
        let out = apply(&init, &run(&init));
        assert_eq!(
            out["spec"]["initContainers"][0]["resources"]["limits"]["nvidia.com/gpu"],
            "1"
        );
        assert_eq!(out["spec"]["schedulerName"], "sliceguard-scheduler");
    }

    #[test]
    fn priority_becomes_an_environment_variable() {
        let p = pod(
            json!([{"name": "c", "resources": {"limits": {"nvidia.com/gpu": "1", "nvidia.com/priority": "1"}}}]),
        );
        let out = apply(&p, &run(&p));
        assert_eq!(
            out["spec"]["containers"][0]["env"],
            json!([{"name": "CUDA_TASK_PRIORITY", "value": "1"}])
        );
    }

    #[test]
    fn priority_joins_other_variables_and_is_never_set_twice() {
        let p = pod(
            json!([{"name": "c", "env": [{"name": "OTHER", "value": "x"}], "resources": {"limits": {"nvidia.com/gpu": "1", "nvidia.com/priority": "0"}}}]),
        );
        let out = apply(&p, &run(&p));
        assert_eq!(
            out["spec"]["containers"][0]["env"],
            json!([{"name": "OTHER", "value": "x"}, {"name": "CUDA_TASK_PRIORITY", "value": "0"}])
        );
        let again = apply(&out, &run(&out));
        assert_eq!(
            again["spec"]["containers"][0]["env"],
            out["spec"]["containers"][0]["env"]
        );
    }

    #[test]
    fn routing_rules() {
        let plain = pod(json!([{"name": "c", "image": "nginx"}]));
        match run(&plain) {
            Admission::Allowed { patch, routed, .. } => assert!(patch.0.is_empty() && !routed),
            other => panic!("{other:?}"),
        }
        let mut other =
            pod(json!([{"name": "c", "resources": {"limits": {"nvidia.com/gpu": "1"}}}]));
        other["spec"]["schedulerName"] = json!("volcano");
        match run(&other) {
            Admission::Allowed {
                patch,
                routed,
                message,
            } => {
                assert!(patch.0.is_empty() && !routed);
                assert_eq!(message, "pod already has different scheduler assigned");
            }
            o => panic!("{o:?}"),
        }
        let mut default = other.clone();
        default["spec"]["schedulerName"] = json!("default-scheduler");
        assert_eq!(
            apply(&default, &run(&default))["spec"]["schedulerName"],
            "sliceguard-scheduler"
        );
        let no_force = WebhookSettings {
            force_overwrite_default_scheduler: false,
            ..Default::default()
        };
        assert!(matches!(
            mutate(&default, &no_force).unwrap(),
            Admission::Allowed { routed: false, .. }
        ));
    }

    #[test]
    fn denials_use_hamis_messages() {
        let cases = [
            (json!({"kind": "Pod", "spec": {"containers": []}}), "pod has no containers".to_string()),
            (json!({"kind": "Pod"}), "pod has no containers".to_string()),
            (
                pod(json!([{"name": "c", "securityContext": {"privileged": true}, "resources": {"limits": {"nvidia.com/gpu": "1"}}}])),
                "container c is privileged".to_string(),
            ),
            (
                pod(json!([{"name": "c", "resources": {"limits": {"nvidia.com/gpu": "1", "nvidia.com/gpumem-percentage": "150"}}}])),
                "invalid nvidia.com/gpumem-percentage value 150 in container c: must be an integer between 0 and 100".to_string(),
            ),
        ];
        for (submitted, message) in cases {
            assert_eq!(
                run(&submitted),
                Admission::Denied { message },
                "{submitted}"
            );
        }
        let mut assigned =
            pod(json!([{"name": "c", "resources": {"limits": {"nvidia.com/gpu": "1"}}}]));
        assigned["spec"]["nodeName"] = json!("n1");
        assert_eq!(
            run(&assigned),
            Admission::Denied {
                message: "pod has node assigned".into()
            }
        );
        // A privileged container in a pod without GPUs is not our business.
        let privileged = pod(json!([{"name": "c", "securityContext": {"privileged": true}}]));
        assert!(matches!(
            run(&privileged),
            Admission::Allowed { routed: false, .. }
        ));
    }

    #[test]
    fn forged_scheduler_state_is_denied_at_create_for_every_scheduler() {
        for scheduler in [None, Some("default-scheduler"), Some("volcano")] {
            let mut p = pod(json!([{"name": "c", "image": "nginx"}]));
            p["metadata"]["annotations"] =
                json!({"hami.io/vgpu-devices-allocated": "GPU-0,NVIDIA,81920,100:;"});
            if let Some(s) = scheduler {
                p["spec"]["schedulerName"] = json!(s);
            }
            assert_eq!(
                run(&p),
                Admission::Denied {
                    message: "annotation hami.io/vgpu-devices-allocated is written by the scheduler and cannot be set when creating a pod".into()
                },
                "{scheduler:?}"
            );
        }
    }

    #[test]
    fn updates_are_judged_by_user() {
        let old = pod(json!([{"name": "c", "resources": {"limits": {"nvidia.com/gpu": "1"}}}]));
        let mut placed = old.clone();
        placed["metadata"]["annotations"] = json!({"hami.io/vgpu-node": "n1"});
        placed["metadata"]["labels"] = json!({"hami.io/vgpu-node": "n1"});
        let settings = WebhookSettings::default();
        let by = |user: &str, from: &Value, to: &Value| {
            review_update(from, to, user, &settings).unwrap()
        };
        assert!(matches!(
            by(crate::guard::DEFAULT_SCHEDULER_USER, &old, &placed),
            Admission::Allowed { ref patch, routed: false, .. } if patch.0.is_empty()
        ));
        let mut stripped = placed.clone();
        stripped["metadata"]["labels"] = json!({});
        assert_eq!(
            by("kubernetes-admin", &placed, &stripped),
            Admission::Denied {
                message: "label hami.io/vgpu-node is written by the scheduler and cannot be added, changed or removed by kubernetes-admin".into()
            }
        );
        let mut relabelled = placed.clone();
        relabelled["metadata"]["labels"]["team"] = json!("ml");
        assert!(matches!(
            by("kubernetes-admin", &placed, &relabelled),
            Admission::Allowed { .. }
        ));
        let err = review_update(&json!({"spec": 1}), &placed, "x", &settings).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("cannot decode the pod: oldObject at spec"),
            "{err}"
        );
    }

    #[test]
    fn unusable_quantities_are_denied_with_the_value_named() {
        let p = pod(
            json!([{"name": "trainer", "resources": {"limits": {"nvidia.com/gpu": "1", "nvidia.com/gpumem": "16Gi"}}}]),
        );
        match run(&p) {
            Admission::Denied { message } => assert!(
                message.contains("trainer") && message.contains("16Gi"),
                "{message}"
            ),
            o => panic!("{o:?}"),
        }
    }

    #[test]
    fn unknown_fields_survive_and_bad_objects_are_decode_errors() {
        let mut p = pod(
            json!([{"name": "c", "resources": {"limits": {"nvidia.com/gpu": "1", "nvidia.com/gpumem": "5"}}}]),
        );
        p["spec"]["someFutureField"] = json!({"x": 1});
        let out = apply(&p, &run(&p));
        assert_eq!(out["spec"]["someFutureField"], json!({"x": 1}));
        let err = mutate(
            &json!({"spec": {"containers": "nope"}}),
            &WebhookSettings::default(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("spec.containers"), "{err}");
    }

    /// The opt-in route takes a CPU-only pod only when it carries the label (and value); other
    /// CPU-only pods, pods with a node, and pods of another scheduler stay as HAMi leaves them.
    #[test]
    fn cpu_only_pods_are_routed_only_by_the_opt_in_label() {
        let route: LabelMatch = "sliceguard.io/placement=fragmentation".parse().unwrap();
        let settings = WebhookSettings {
            cpu_pod_route: Some(route),
            ..WebhookSettings::default()
        };
        let cpu = |labels: Value| {
            let mut p = pod(
                json!([{"name": "c", "image": "pause", "resources": {"requests": {"cpu": "2"}}}]),
            );
            p["metadata"]["labels"] = labels;
            p
        };
        let labelled = cpu(json!({"sliceguard.io/placement": "fragmentation"}));
        let a = mutate(&labelled, &settings).unwrap();
        assert!(
            matches!(&a, Admission::Allowed { routed: true, message, .. } if message.contains("sliceguard.io/placement=fragmentation")),
            "{a:?}"
        );
        assert_eq!(
            apply(&labelled, &a)["spec"]["schedulerName"],
            "sliceguard-scheduler"
        );
        for (why, other) in [
            (
                "another value",
                cpu(json!({"sliceguard.io/placement": "spread"})),
            ),
            ("no label", cpu(json!({}))),
            ("route off", labelled.clone()),
        ] {
            let settings = if why == "route off" {
                WebhookSettings::default()
            } else {
                settings.clone()
            };
            let a = mutate(&other, &settings).unwrap();
            assert!(
                matches!(&a, Admission::Allowed { routed: false, patch, .. } if patch.0.is_empty()),
                "{why}: {a:?}"
            );
        }
        let mut pinned = labelled.clone();
        pinned["spec"]["nodeName"] = json!("n1");
        assert!(matches!(
            mutate(&pinned, &settings).unwrap(),
            Admission::Allowed { routed: false, .. }
        ));
        let mut elsewhere = labelled.clone();
        elsewhere["spec"]["schedulerName"] = json!("volcano");
        assert!(matches!(
            mutate(&elsewhere, &settings).unwrap(),
            Admission::Allowed { routed: false, .. }
        ));
        // Any value when the route names only the key.
        let any = WebhookSettings {
            cpu_pod_route: Some("sliceguard.io/placement".parse().unwrap()),
            ..WebhookSettings::default()
        };
        let other_value = cpu(json!({"sliceguard.io/placement": "spread"}));
        assert!(matches!(
            mutate(&other_value, &any).unwrap(),
            Admission::Allowed { routed: true, .. }
        ));
    }

    #[test]
    fn label_matches_parse_kubernetes_label_syntax_and_name_the_bad_part() {
        let ok: LabelMatch = "k8s-2.example.com/tier=batch-1".parse().unwrap();
        assert_eq!(
            (ok.key.as_str(), ok.value.as_deref()),
            ("k8s-2.example.com/tier", Some("batch-1"))
        );
        assert_eq!(ok.to_string(), "k8s-2.example.com/tier=batch-1");
        let key_only: LabelMatch = "gpu-friendly".parse().unwrap();
        assert_eq!(
            (key_only.to_string(), key_only.value),
            ("gpu-friendly".to_string(), None)
        );
        let empty_value: LabelMatch = "a=".parse().unwrap();
        assert_eq!(empty_value.value.as_deref(), Some(""));
        for (bad, names) in [
            ("", "label key"),
            ("-a", "label key"),
            ("a b", "label key"),
            ("Upper.Case/a", "label key"),
            ("/a", "label key"),
            (&*format!("{}=v", "x".repeat(64)), "label key"),
            ("a=b c", "label value"),
            ("a=-b", "label value"),
        ] {
            let e = bad.parse::<LabelMatch>().unwrap_err();
            assert!(e.starts_with(names), "{bad:?}: {e}");
        }
    }

    /// With `default_gpu_num` 0 (HAMi's `defaultGPUNum: 0`), memory or cores without a GPU count
    /// add no GPU, and the pod is not routed; with 1 (the default) it gets `nvidia.com/gpu: 1`.
    #[test]
    fn a_zero_default_gpu_count_adds_no_gpu() {
        let p = pod(
            json!([{"name": "c", "image": "pause", "resources": {"limits": {"nvidia.com/gpumem": "3000"}}}]),
        );
        let none = WebhookSettings {
            default_gpu_num: 0,
            ..WebhookSettings::default()
        };
        let a = mutate(&p, &none).unwrap();
        assert!(
            matches!(&a, Admission::Allowed { routed: false, patch, .. } if patch.0.is_empty()),
            "{a:?}"
        );
        let out = apply(&p, &run(&p));
        assert_eq!(
            out["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"],
            "1"
        );
    }
}
