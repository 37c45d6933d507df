//! The webhook against its independent model ([`sliceguard_invariants::webhook_model`]): for every
//! generated pod and setting, `sliceguard_core::admission::mutate` allows or denies as the model
//! says, the patched object equals the model's object exactly (resources, environment,
//! `schedulerName`, nothing else), and a denial's message says what the rule requires. Mismatches
//! name the rule and the containers. A coverage test checks the generator reaches every rule.

use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::TestRunner;
use serde_json::Value;
use sliceguard_core::admission::{Admission, WebhookSettings, mutate};
use sliceguard_invariants::webhook_model::strategies::case;
use sliceguard_invariants::webhook_model::{Expected, WebhookCase, expected};
use sliceguard_invariants::{proptest_config, regression_file};
use std::collections::BTreeMap;

fn settings(case: &WebhookCase) -> WebhookSettings {
    WebhookSettings {
        scheduler_name: case.our_scheduler.clone(),
        default_gpu_num: case.default_gpu_num,
        force_overwrite_default_scheduler: case.force_overwrite_default_scheduler,
        ..WebhookSettings::default()
    }
}

fn describe(case: &WebhookCase) -> String {
    let containers: Vec<String> = case
        .init
        .iter()
        .chain(&case.app)
        .map(|c| format!("  {c:?}"))
        .collect();
    format!(
        "schedulerName {:?}, nodeName {:?}, opt-out {}, forged {}, default_gpu_num {}, force {}\n{}",
        case.scheduler_name,
        case.node_name,
        case.opt_out,
        case.forged,
        case.default_gpu_num,
        case.force_overwrite_default_scheduler,
        containers.join("\n")
    )
}

/// The mismatch between the webhook's answer and the model's, if any.
fn judge(case: &WebhookCase) -> Result<&'static str, String> {
    let submitted = case.to_json();
    let answer = mutate(&submitted, &settings(case))
        .map_err(|e| format!("the webhook could not decode a valid pod: {e}"))?;
    match (expected(case), answer) {
        (
            Expected::Allowed {
                object,
                routed,
                rule,
            },
            Admission::Allowed {
                patch,
                routed: got_routed,
                message,
            },
        ) => {
            let mut patched = submitted.clone();
            json_patch::patch(&mut patched, &patch)
                .map_err(|e| format!("rule {rule}: the patch does not apply: {e}"))?;
            if routed != got_routed {
                return Err(format!(
                    "rule {rule}: routed should be {routed}, the webhook says {got_routed} ({message})"
                ));
            }
            if patched != object {
                return Err(format!(
                    "rule {rule}: the patched pod differs from the model's:\n{}",
                    differences(&object, &patched)
                ));
            }
            Ok(rule)
        }
        (
            Expected::Denied {
                rule,
                must_contain,
                exact,
            },
            Admission::Denied { message },
        ) => {
            if exact && message != must_contain[0] {
                return Err(format!(
                    "rule {rule}: denied with {message:?}, HAMi's message is {:?}",
                    must_contain[0]
                ));
            }
            for text in &must_contain {
                if !message.contains(text.as_str()) {
                    return Err(format!(
                        "rule {rule}: the denial {message:?} does not name {text:?}"
                    ));
                }
            }
            Ok(rule)
        }
        (Expected::Allowed { rule, .. }, Admission::Denied { message }) => Err(format!(
            "rule {rule}: the model allows the pod, the webhook denies it: {message:?}"
        )),
        (Expected::Denied { rule, .. }, Admission::Allowed { message, .. }) => Err(format!(
            "rule {rule}: the model denies the pod, the webhook allows it ({message})"
        )),
    }
}

/// Container by container: which fields differ (the containers are named in the paths).
fn differences(want: &Value, got: &Value) -> String {
    let mut out = Vec::new();
    walk("", want, got, &mut out);
    out.join("\n")
}

fn walk(path: &str, want: &Value, got: &Value, out: &mut Vec<String>) {
    match (want, got) {
        (Value::Object(a), Value::Object(b)) => {
            let keys: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
            for k in keys {
                let (x, y) = (
                    a.get(k).unwrap_or(&Value::Null),
                    b.get(k).unwrap_or(&Value::Null),
                );
                walk(&format!("{path}/{k}"), x, y, out);
            }
        }
        (Value::Array(a), Value::Array(b)) if a.len() == b.len() => {
            for (i, (x, y)) in a.iter().zip(b).enumerate() {
                let name = x["name"]
                    .as_str()
                    .map_or(i.to_string(), |n| format!("{i}({n})"));
                walk(&format!("{path}/{name}"), x, y, out);
            }
        }
        _ if want != got => out.push(format!("  {path}: model {want}, webhook {got}")),
        _ => {}
    }
}

proptest! {
    #![proptest_config(proptest_config(2000, regression_file!("webhook_model")))]

    /// `mutate` answers as the independent model says.
    #[test]
    fn the_webhook_answers_as_its_model_says(case in case()) {
        if let Err(mismatch) = judge(&case) {
            return Err(TestCaseError::fail(format!("{mismatch}\ncase:\n{}", describe(&case))));
        }
    }
}

/// The generator reaches every rule of the model, and the cases the spec singles out.
#[test]
fn the_generator_reaches_every_webhook_rule() {
    const SAMPLE: usize = 3000;
    const MIN: usize = 5;
    let mut runner = TestRunner::deterministic();
    let strategy = case();
    let mut rules: BTreeMap<&'static str, usize> = [
        "1: no containers",
        "2: scheduler-owned state at create",
        "3: opt-out label",
        "4: another scheduler's pod",
        "5a: gpumem-percentage outside [0, 100]",
        "5: unusable GPU quantity",
        "6: no GPU container",
        "7: privileged container in a GPU pod",
        "8: node already assigned",
        "8: routed",
    ]
    .into_iter()
    .map(|r| (r, 0))
    .collect();
    let mut shapes: BTreeMap<&'static str, usize> = [
        "default-scheduler pod routed",
        "default-scheduler pod kept (no force)",
        "default GPU count added",
        "exclusive: gpu alone",
        "exclusive: percentage 100",
        "not exclusive: percentage 50",
        "not exclusive: percentage 0",
        "exclusive: gpu in requests only",
        "priority environment",
    ]
    .into_iter()
    .map(|r| (r, 0))
    .collect();
    for _ in 0..SAMPLE {
        let case = strategy.new_tree(&mut runner).expect("tree").current();
        let outcome = expected(&case);
        let rule = match &outcome {
            Expected::Allowed { rule, .. } | Expected::Denied { rule, .. } => *rule,
        };
        *rules.get_mut(rule).expect("listed rule") += 1;
        let Expected::Allowed {
            object,
            routed: true,
            ..
        } = &outcome
        else {
            if case.scheduler_name.as_deref() == Some("default-scheduler")
                && !case.force_overwrite_default_scheduler
                && rule == "4: another scheduler's pod"
            {
                *shapes
                    .get_mut("default-scheduler pod kept (no force)")
                    .expect("listed") += 1;
            }
            continue;
        };
        let mut hit = |shape: &'static str, yes: bool| {
            if yes {
                *shapes.get_mut(shape).expect("listed shape") += 1;
            }
        };
        hit(
            "default-scheduler pod routed",
            case.scheduler_name.as_deref() == Some("default-scheduler"),
        );
        let spec = &object["spec"];
        let all: Vec<(&sliceguard_invariants::webhook_model::CaseContainer, &Value)> = case
            .init
            .iter()
            .zip(spec["initContainers"].as_array().into_iter().flatten())
            .chain(
                case.app
                    .iter()
                    .zip(spec["containers"].as_array().into_iter().flatten()),
            )
            .collect();
        for (c, out) in all {
            let limits = &out["resources"]["limits"];
            let cores_added = c.cores.limit.is_none()
                && c.cores.request.is_none()
                && limits["nvidia.com/gpucores"] == "100";
            hit(
                "default GPU count added",
                c.gpu.limit.is_none() && !limits["nvidia.com/gpu"].is_null(),
            );
            hit(
                "exclusive: gpu alone",
                cores_added && c.mem.effective().is_none() && c.pct.effective().is_none(),
            );
            hit(
                "exclusive: percentage 100",
                cores_added && c.pct.effective() == Some("100"),
            );
            let gpu = c.gpu.effective().is_some() && c.cores.effective().is_none();
            hit(
                "not exclusive: percentage 50",
                gpu && c.pct.effective() == Some("50") && limits["nvidia.com/gpucores"].is_null(),
            );
            hit(
                "not exclusive: percentage 0",
                gpu && c.pct.effective() == Some("0") && limits["nvidia.com/gpucores"].is_null(),
            );
            hit(
                "exclusive: gpu in requests only",
                cores_added && c.gpu.limit.is_none() && c.gpu.request.is_some(),
            );
            hit("priority environment", c.priority.is_some());
        }
    }
    let table: String = rules
        .iter()
        .chain(shapes.iter())
        .map(|(k, n)| format!("{n:>6}  {k}\n"))
        .collect();
    eprintln!("webhook cases over {SAMPLE}:\n{table}");
    let starved: Vec<&&str> = rules
        .iter()
        .chain(shapes.iter())
        .filter(|(_, n)| **n < MIN)
        .map(|(k, _)| k)
        .collect();
    assert!(
        starved.is_empty(),
        "reached fewer than {MIN} times: {starved:?}\n{table}"
    );
}
