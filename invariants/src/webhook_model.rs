//! An independent model of the mutating webhook's rules (spec §3, HAMi's `pkg/scheduler/webhook.go`
//! and `device/nvidia/device.go` `MutateAdmission`, plus sliceguard's declared differences), written
//! from the spec and HAMi's code, not from `sliceguard_core::admission`: a pod described as plain
//! data ([`WebhookCase`]) in, the expected answer out ([`Expected`]): the exact object after the
//! patch, or a denial with what its message must say. `tests/webhook_model.rs` checks `mutate`
//! against it over generated cases; every mismatch names the container and the rule.
//!
//! The rules, in HAMi's order:
//! 1. no containers: denied `pod has no containers`;
//! 2. (sliceguard) scheduler-owned state on a new pod: denied naming the key, whatever the scheduler;
//! 3. (sliceguard) the opt-out label `hami.io/webhook: ignore`: allowed untouched;
//! 4. a `schedulerName` that is set, is not ours, and is not `default-scheduler` (or is, while
//!    `force_overwrite_default_scheduler` is off): allowed untouched;
//! 5. per container, init containers first: (a) `gpumem-percentage` (limits, else requests) must be
//!    an integer in [0, 100], else denied with HAMi's message; (b) `nvidia.com/priority` in limits
//!    appends `CUDA_TASK_PRIORITY`; (d) `nvidia.com/gpu` in limits makes the container a GPU one,
//!    and without it any of `gpucores`, `gpumem`, `gpumem-percentage` in limits adds
//!    `nvidia.com/gpu: <default_gpu_num>` when that is above 0; (e) with a GPU count in limits or
//!    requests and no `gpucores` anywhere, the container gets `gpucores: 100` when its percentage
//!    is 100, or, without a percentage, when it gives no `gpumem` (an if / else-if chain);
//!    (sliceguard) a GPU container whose GPU quantities are not whole non-negative `int32`s is
//!    denied naming the container and the value;
//! 6. a pod without a GPU container is allowed, not routed (the environment changes stay);
//! 7. a privileged container anywhere in a GPU pod: denied `container <c> is privileged`;
//! 8. `schedulerName` becomes ours; a set `nodeName` is then denied `pod has node assigned`.

use serde_json::{Map, Value, json};
use sliceguard_core::annotations::{
    RESOURCE_GPU, RESOURCE_GPUCORES, RESOURCE_GPUMEM, RESOURCE_GPUMEM_PERCENTAGE,
    RESOURCE_PRIORITY, VGPU_NODE, WEBHOOK_LABEL, WEBHOOK_OPT_OUT,
};

/// A resource as written in a container: its quantity in limits and in requests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Slot {
    /// `resources.limits[...]`.
    pub limit: Option<String>,
    /// `resources.requests[...]`.
    pub request: Option<String>,
}

impl Slot {
    /// Limits, else requests (HAMi reads percentages this way).
    pub fn effective(&self) -> Option<&str> {
        self.limit.as_deref().or(self.request.as_deref())
    }

    fn present(&self) -> bool {
        self.limit.is_some() || self.request.is_some()
    }
}

/// One container of a case.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CaseContainer {
    /// Container name.
    pub name: String,
    /// `nvidia.com/gpu`.
    pub gpu: Slot,
    /// `nvidia.com/gpumem`.
    pub mem: Slot,
    /// `nvidia.com/gpumem-percentage`.
    pub pct: Slot,
    /// `nvidia.com/gpucores`.
    pub cores: Slot,
    /// `nvidia.com/priority` in limits.
    pub priority: Option<String>,
    /// `securityContext.privileged: true`.
    pub privileged: bool,
}

/// A submitted pod and the webhook's settings, as plain data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookCase {
    /// `spec.schedulerName` (`None`: absent).
    pub scheduler_name: Option<String>,
    /// `spec.nodeName`.
    pub node_name: Option<String>,
    /// Labelled `hami.io/webhook: ignore`.
    pub opt_out: bool,
    /// Created with `hami.io/vgpu-node` already set (forged scheduler state).
    pub forged: bool,
    /// Init containers.
    pub init: Vec<CaseContainer>,
    /// Regular containers.
    pub app: Vec<CaseContainer>,
    /// `--scheduler-name`.
    pub our_scheduler: String,
    /// HAMi's `defaultGPUNum`.
    pub default_gpu_num: u32,
    /// `--force-overwrite-default-scheduler`.
    pub force_overwrite_default_scheduler: bool,
}

/// What the webhook must answer.
#[derive(Debug, Clone, PartialEq)]
pub enum Expected {
    /// Allowed: the object after the patch, and whether the pod is routed to sliceguard.
    Allowed {
        /// The submitted object with the patch applied.
        object: Value,
        /// `schedulerName` set to ours.
        routed: bool,
        /// The rule that decided.
        rule: &'static str,
    },
    /// Denied: the rule, and texts the message must contain (the first, when `exact`, is the
    /// whole message).
    Denied {
        /// The rule that decided.
        rule: &'static str,
        /// Texts the message must contain.
        must_contain: Vec<String>,
        /// The first text is the whole message.
        exact: bool,
    },
}

fn container_json(c: &CaseContainer) -> Value {
    let mut limits = Map::new();
    let mut requests = Map::new();
    for (resource, slot) in [
        (RESOURCE_GPU, &c.gpu),
        (RESOURCE_GPUMEM, &c.mem),
        (RESOURCE_GPUMEM_PERCENTAGE, &c.pct),
        (RESOURCE_GPUCORES, &c.cores),
    ] {
        if let Some(v) = &slot.limit {
            limits.insert(resource.into(), json!(v));
        }
        if let Some(v) = &slot.request {
            requests.insert(resource.into(), json!(v));
        }
    }
    if let Some(p) = &c.priority {
        limits.insert(RESOURCE_PRIORITY.into(), json!(p));
    }
    let mut out = json!({"name": c.name, "image": "cuda:12"});
    let mut resources = Map::new();
    if !limits.is_empty() {
        resources.insert("limits".into(), Value::Object(limits));
    }
    if !requests.is_empty() {
        resources.insert("requests".into(), Value::Object(requests));
    }
    if !resources.is_empty() {
        out["resources"] = Value::Object(resources);
    }
    if c.privileged {
        out["securityContext"] = json!({"privileged": true});
    }
    out
}

impl WebhookCase {
    /// The pod object as submitted.
    pub fn to_json(&self) -> Value {
        let mut metadata = json!({"name": "w", "namespace": "team-a"});
        if self.opt_out {
            metadata["labels"] = json!({ WEBHOOK_LABEL: WEBHOOK_OPT_OUT });
        }
        if self.forged {
            metadata["annotations"] = json!({ VGPU_NODE: "n0" });
        }
        let mut spec = json!({
            "containers": self.app.iter().map(container_json).collect::<Vec<_>>(),
        });
        if !self.init.is_empty() {
            spec["initContainers"] = Value::Array(self.init.iter().map(container_json).collect());
        }
        if let Some(s) = &self.scheduler_name {
            spec["schedulerName"] = json!(s);
        }
        if let Some(n) = &self.node_name {
            spec["nodeName"] = json!(n);
        }
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": spec})
    }
}

/// A whole, non-negative decimal that fits `int32` (what HAMi's `Atoi`-based reading and
/// sliceguard's validation accept, for the plain decimals and the few suffixed or fractional
/// values the generator writes).
fn whole_int32(value: &str) -> Option<i64> {
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    value
        .parse::<i64>()
        .ok()
        .filter(|v| *v <= i64::from(i32::MAX))
}

/// The webhook's answer for `case`, by the rules in this module's header.
pub fn expected(case: &WebhookCase) -> Expected {
    let submitted = case.to_json();
    let untouched = |rule| Expected::Allowed {
        object: submitted.clone(),
        routed: false,
        rule,
    };
    if case.app.is_empty() {
        return Expected::Denied {
            rule: "1: no containers",
            must_contain: vec!["pod has no containers".into()],
            exact: true,
        };
    }
    if case.forged {
        return Expected::Denied {
            rule: "2: scheduler-owned state at create",
            must_contain: vec![VGPU_NODE.into()],
            exact: false,
        };
    }
    if case.opt_out {
        return untouched("3: opt-out label");
    }
    let current = case.scheduler_name.as_deref().unwrap_or("");
    let skip = !current.is_empty()
        && (current != "default-scheduler" || !case.force_overwrite_default_scheduler)
        && (case.our_scheduler.is_empty() || current != case.our_scheduler);
    if skip {
        return untouched("4: another scheduler's pod");
    }

    let mut object = submitted.clone();
    let mut gpu_pod = false;
    let lists = [("initContainers", &case.init), ("containers", &case.app)];
    for (list, containers) in lists {
        for (i, c) in containers.iter().enumerate() {
            let target = &mut object["spec"][list][i];
            // (a) the percentage, limits else requests.
            if let Some(pct) = c.pct.effective()
                && whole_int32(pct).is_none_or(|v| v > 100)
            {
                return Expected::Denied {
                    rule: "5a: gpumem-percentage outside [0, 100]",
                    must_contain: vec![format!(
                        "invalid {RESOURCE_GPUMEM_PERCENTAGE} value {pct} in container {}: must be an integer between 0 and 100",
                        c.name
                    )],
                    exact: true,
                };
            }
            // (b) priority.
            if let Some(p) = &c.priority {
                target["env"] = json!([{"name": "CUDA_TASK_PRIORITY", "value": p}]);
            }
            // (d) the GPU count, or the default count when only amounts are in limits.
            let mut gpu_in_limits = c.gpu.limit.is_some();
            let mut has_resource = gpu_in_limits;
            let mut gpu_written = c.gpu.limit.clone();
            let amounts_in_limits =
                c.cores.limit.is_some() || c.mem.limit.is_some() || c.pct.limit.is_some();
            if !gpu_in_limits && case.default_gpu_num > 0 && amounts_in_limits {
                let n = case.default_gpu_num.to_string();
                target["resources"]["limits"][RESOURCE_GPU] = json!(n);
                gpu_written = Some(n);
                gpu_in_limits = true;
                has_resource = true;
            }
            // (e) the exclusive-core default: an if / else-if chain on the percentage.
            let gpu_present = gpu_in_limits || c.gpu.request.is_some();
            let exclusive = match c.pct.effective() {
                Some(pct) => whole_int32(pct) == Some(100),
                None => !c.mem.present(),
            };
            let mut cores_written = c.cores.effective().map(str::to_string);
            if gpu_present && !c.cores.present() && exclusive {
                target["resources"]["limits"][RESOURCE_GPUCORES] = json!("100");
                cores_written = Some("100".into());
                has_resource = true;
            }
            // sliceguard: what the scheduler will read must be usable: the count first, and the
            // amounts only when the count is above zero (a zero count asks for no GPU).
            if has_resource {
                let unusable = |resource: &'static str, v: String| Expected::Denied {
                    rule: "5: unusable GPU quantity",
                    must_contain: vec![c.name.clone(), resource.into(), v],
                    exact: false,
                };
                let count = gpu_written.or_else(|| c.gpu.request.clone());
                let nums = match count {
                    Some(v) => match whole_int32(&v) {
                        Some(n) => n,
                        None => return unusable(RESOURCE_GPU, v),
                    },
                    None => 0,
                };
                if nums > 0 {
                    let amounts = [
                        (RESOURCE_GPUMEM, c.mem.effective().map(str::to_string)),
                        (RESOURCE_GPUCORES, cores_written),
                    ];
                    for (resource, value) in amounts {
                        if let Some(v) = value
                            && whole_int32(&v).is_none()
                        {
                            return unusable(resource, v);
                        }
                    }
                }
            }
            gpu_pod |= has_resource;
        }
    }
    if !gpu_pod {
        return Expected::Allowed {
            object,
            routed: false,
            rule: "6: no GPU container",
        };
    }
    if let Some(c) = case.init.iter().chain(&case.app).find(|c| c.privileged) {
        return Expected::Denied {
            rule: "7: privileged container in a GPU pod",
            must_contain: vec![format!("container {} is privileged", c.name)],
            exact: true,
        };
    }
    if !case.our_scheduler.is_empty() {
        object["spec"]["schedulerName"] = json!(case.our_scheduler);
    }
    if case.node_name.as_deref().is_some_and(|n| !n.is_empty()) {
        return Expected::Denied {
            rule: "8: node already assigned",
            must_contain: vec!["pod has node assigned".into()],
            exact: true,
        };
    }
    Expected::Allowed {
        object,
        routed: true,
        rule: "8: routed",
    }
}

/// Proptest strategies for webhook cases.
#[cfg(feature = "strategies")]
pub mod strategies {
    use super::*;
    use proptest::prelude::*;

    fn slot(values: &'static [&'static str], weight: f64) -> impl Strategy<Value = Slot> {
        let value = prop::sample::select(values).prop_map(str::to_string);
        proptest::option::weighted(
            weight,
            prop_oneof![
                6 => value.clone().prop_map(|v| Slot { limit: Some(v), request: None }),
                2 => value.clone().prop_map(|v| Slot { limit: None, request: Some(v) }),
                1 => (value.clone(), value).prop_map(|(l, r)| Slot { limit: Some(l), request: Some(r) }),
            ],
        )
        .prop_map(Option::unwrap_or_default)
    }

    /// GPU counts, with a zero and two unusable values.
    pub const GPUS: [&str; 9] = ["1", "1", "1", "1", "2", "2", "0", "0.5", "-1"];
    /// MiB, with a binary-suffixed value (16 GiB, far above `int32` MiB).
    pub const MEMS: [&str; 6] = ["3000", "1024", "3000", "1024", "0", "16Gi"];
    /// Percentages: both ends, a middle, and three the webhook must deny.
    pub const PERCENTAGES: [&str; 8] = ["0", "0", "50", "50", "100", "100", "150", "7.5"];
    /// Cores.
    pub const CORES: [&str; 7] = ["0", "30", "30", "100", "100", "0", "-5"];

    fn container(name: String) -> impl Strategy<Value = CaseContainer> {
        (
            slot(&GPUS, 0.6),
            slot(&MEMS, 0.35),
            slot(&PERCENTAGES, 0.25),
            slot(&CORES, 0.35),
            proptest::option::weighted(0.1, prop::sample::select(vec!["1", "0"])),
            prop::bool::weighted(0.06),
        )
            .prop_map(
                move |(gpu, mem, pct, cores, priority, privileged)| CaseContainer {
                    name: name.clone(),
                    gpu,
                    mem,
                    pct,
                    cores,
                    priority: priority.map(str::to_string),
                    privileged,
                },
            )
    }

    fn containers(
        prefix: &'static str,
        max: usize,
        min: usize,
    ) -> impl Strategy<Value = Vec<CaseContainer>> {
        (min..=max).prop_flat_map(move |n| {
            (0..n)
                .map(|i| container(format!("{prefix}-{i}")))
                .collect::<Vec<_>>()
        })
    }

    /// A case: the pod and the settings.
    pub fn case() -> impl Strategy<Value = WebhookCase> {
        let scheduler = proptest::option::weighted(
            0.6,
            prop::sample::select(vec![
                "",
                "default-scheduler",
                "sliceguard-scheduler",
                "volcano",
            ]),
        );
        (
            scheduler,
            proptest::option::weighted(0.08, prop::sample::select(vec!["n0", ""])),
            prop::bool::weighted(0.05),
            prop::bool::weighted(0.04),
            containers("init", 2, 0),
            prop_oneof![1 => Just(0usize), 30 => Just(1usize), 10 => Just(2usize), 5 => Just(3usize)]
                .prop_flat_map(|n| containers("c", n, n)),
            prop_oneof![8 => Just(1u32), 1 => Just(0u32), 1 => Just(2u32)],
            prop::bool::weighted(0.85),
        )
            .prop_map(
                |(scheduler, node, opt_out, forged, init, app, default_gpu_num, force)| WebhookCase {
                    scheduler_name: scheduler.map(str::to_string),
                    node_name: node.map(str::to_string),
                    opt_out,
                    forged,
                    init,
                    app,
                    our_scheduler: "sliceguard-scheduler".into(),
                    default_gpu_num,
                    force_overwrite_default_scheduler: force,
                },
            )
    }
}
