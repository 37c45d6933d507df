//! The byte-level checks behind the fuzz targets (`fuzz/fuzz_targets/*.rs`), shared with the test
//! that replays every committed corpus file and saved crash (`tests/fuzz_corpus_replay.rs`), so CI
//! exercises the same oracles without the fuzzer. Each returns the violations it found; the fuzz
//! target panics on a non-empty list, the replay test reports it.
//!
//! | target | input | oracle beyond "does not crash" |
//! |---|---|---|
//! | `annotation_parser` | any string | every codec: what parses renders and parses back to itself ([`crate::codecs`]) |
//! | `admission_webhook` | a JSON document | `admission::mutate`: the patch applies to the submitted object, the result is still a pod, a routed pod names sliceguard's scheduler and has readable GPU requests, the patch only touches `/spec`, a pass-through has an empty patch, a denial has a message |
//! | `quantity_request` | lines of quantities | `quantity::parse_integer` against Rust's integer parser and an exact suffix product; `request::container_request` against this crate's own reading of spec §2 |
//! | `extender` | an `ExtenderArgs` or `ExtenderBindingArgs` body | both decoders of [`sliceguard_core::wire::extender`]: an error names a field under `ExtenderArgs`/`ExtenderBindingArgs`, changing the case of the top-level keys changes nothing (Go folds them), decoded binding args have a pod name, namespace and node |
//! | `admission_review` | an AdmissionReview body | [`sliceguard_core::wire::admission_review::review`]: an error names the field, the answer carries the request's `apiVersion` and `uid`, a patch is base64 of an RFC 6902 patch that applies to `request.object`, a refusal has a 4xx code and a message |
//! | `place_manifests` | YAML or JSON as kubectl prints it | [`sliceguard_core::wire::manifest`]: every object has a non-empty kind equal to its value's and a label naming its document, reads back from its JSON, typing errors name the field, `pods` gives one pod per Pod and each workload's replica count, errors name a document |
//! | `go_duration` | a Go duration | [`sliceguard_core::codec::go_duration`]: what parses formats and parses back; accept/reject and value equal an independent reading of Go's `ParseDuration` grammar |
//! | `policy_annotations` | lines of pod policy annotations | [`sliceguard_core::policy`]: weights in range and round-tripping, type and UUID lists and `type_allowed`/`uuid_allowed` equal to a reference reading of HAMi's comma lists (trimmed, empty entries skipped) |
//! | `watch_events` | bytes read as node and pod watch events ([`arbitrary`]) | [`sliceguard_core::cluster_view::ClusterView`]: after every event the ledger equals the recount of the live pods ([`crate::checks::check_agreement`]), and an undecodable allocation comes back as an `Err` |

use crate::codecs;
use crate::pods::{ContainerPlan, ResourceValue};
use crate::violation::{Invariant, Violation};
use k8s_openapi::api::core::v1::{Container, Pod, ResourceRequirements};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use serde_json::Value;
use sliceguard_core::admission::{Admission, WebhookSettings, mutate};
use sliceguard_core::annotations::{
    RESOURCE_GPU, RESOURCE_GPUCORES, RESOURCE_GPUMEM, RESOURCE_GPUMEM_PERCENTAGE,
};
use sliceguard_core::quantity::{QuantityError, parse_integer};
use sliceguard_core::request::{PERCENTAGE_UNSET, RequestDefaults, container_request};
use std::collections::BTreeMap;

mod values;
mod watch_events;
mod wire;

pub use values::{go_duration, policy_annotations, reference_duration};
pub use watch_events::watch_events;
pub use wire::{admission_review, extender, place_manifests};

/// The fuzz targets, by name (the directory names under `fuzz/corpus/` and `fuzz/regressions/`).
pub const TARGETS: [&str; 9] = [
    "annotation_parser",
    "admission_webhook",
    "quantity_request",
    "extender",
    "admission_review",
    "place_manifests",
    "go_duration",
    "policy_annotations",
    "watch_events",
];

/// Runs the check of the named target.
pub fn check_target(target: &str, data: &[u8]) -> Option<Vec<Violation>> {
    match target {
        "annotation_parser" => Some(annotation_parser(data)),
        "admission_webhook" => Some(admission_webhook(data)),
        "quantity_request" => Some(quantity_request(data)),
        "extender" => Some(extender(data)),
        "admission_review" => Some(admission_review(data)),
        "place_manifests" => Some(place_manifests(data)),
        "go_duration" => Some(go_duration(data)),
        "policy_annotations" => Some(policy_annotations(data)),
        "watch_events" => Some(watch_events(data)),
        _ => None,
    }
}

/// `annotation_parser`: the input (lossily decoded as UTF-8) through every codec.
pub fn annotation_parser(data: &[u8]) -> Vec<Violation> {
    codecs::check_annotation(&String::from_utf8_lossy(data))
}

fn protocol(detail: String) -> Violation {
    Violation::new(Invariant::Protocol, format!("admission: {detail}"))
}

/// `admission_webhook`: the input as a JSON document through the webhook.
pub fn admission_webhook(data: &[u8]) -> Vec<Violation> {
    let Ok(submitted) = serde_json::from_slice::<Value>(data) else {
        return Vec::new();
    };
    let settings = WebhookSettings::default();
    let mut out = Vec::new();
    match mutate(&submitted, &settings) {
        Err(_) => {}
        Ok(Admission::Denied { message }) => {
            if message.is_empty() {
                out.push(protocol("a denial without a message".into()));
            }
        }
        Ok(Admission::Allowed {
            patch,
            routed,
            message,
        }) => {
            if message == "pod already has different scheduler assigned" && !patch.0.is_empty() {
                out.push(protocol(format!(
                    "a pod for another scheduler was patched: {patch:?}"
                )));
            }
            for op in &patch.0 {
                let path = op.path().to_string();
                if !path.starts_with("/spec/") {
                    out.push(protocol(format!("the patch writes {path}, outside /spec")));
                }
            }
            let mut mutated = submitted.clone();
            if let Err(e) = json_patch::patch(&mut mutated, &patch) {
                out.push(protocol(format!(
                    "the patch does not apply to the submitted object: {e}"
                )));
                return out;
            }
            let pod: Pod = match serde_json::from_value(mutated) {
                Ok(pod) => pod,
                Err(e) => {
                    out.push(protocol(format!(
                        "the patched object is no longer a pod: {e}"
                    )));
                    return out;
                }
            };
            if routed {
                let spec = pod.spec.unwrap_or_default();
                if spec.scheduler_name.as_deref() != Some(settings.scheduler_name.as_str()) {
                    out.push(protocol(format!(
                        "a routed pod has schedulerName {:?}",
                        spec.scheduler_name
                    )));
                }
                for c in spec
                    .init_containers
                    .iter()
                    .flatten()
                    .chain(spec.containers.iter())
                {
                    if let Err(e) = container_request(c, settings.requests) {
                        out.push(protocol(format!(
                            "a routed pod has an unreadable GPU request: {e}"
                        )));
                    }
                }
            }
        }
    }
    out
}

fn quantity_violation(input: &str, detail: String) -> Violation {
    Violation::new(Invariant::Codec, format!("quantity {input:?}: {detail}"))
}

/// Checks `parse_integer` on one quantity.
pub fn check_quantity(q: &str) -> Vec<Violation> {
    let mut out = Vec::new();
    let parsed = parse_integer(q);
    if let Ok(v) = parsed
        && parse_integer(&v.to_string()) != Ok(v)
    {
        out.push(quantity_violation(
            q,
            format!("parsed as {v}, whose decimal form does not parse back"),
        ));
    }
    // Plain integers: exactly Rust's i64 parser.
    let unsigned = q.strip_prefix(['+', '-']).unwrap_or(q);
    if !unsigned.is_empty() && unsigned.bytes().all(|b| b.is_ascii_digit()) {
        let reference = q.parse::<i64>();
        let agrees = match (&reference, &parsed) {
            (Ok(a), Ok(b)) => a == b,
            (Err(_), Err(QuantityError::Overflow(_))) => true,
            _ => false,
        };
        if !agrees {
            out.push(quantity_violation(
                q,
                format!("Rust reads {reference:?}, parse_integer {parsed:?}"),
            ));
        }
    }
    // Unsigned digits with one suffix: the exact product, or overflow.
    let digits_end = q.bytes().take_while(u8::is_ascii_digit).count();
    let (digits, suffix) = q.split_at(digits_end);
    let multiplier: Option<i128> = match suffix {
        "Ki" => Some(1 << 10),
        "Mi" => Some(1 << 20),
        "Gi" => Some(1 << 30),
        "Ti" => Some(1 << 40),
        "Pi" => Some(1 << 50),
        "Ei" => Some(1 << 60),
        "k" => Some(1_000),
        "M" => Some(1_000_000),
        "G" => Some(1_000_000_000),
        "T" => Some(1_000_000_000_000),
        "P" => Some(1_000_000_000_000_000),
        "E" => Some(1_000_000_000_000_000_000),
        _ => None,
    };
    if let (Some(m), false, Ok(n)) = (multiplier, digits.is_empty(), digits.parse::<i128>())
        && digits.len() <= 20
    {
        let exact = n * m;
        let agrees = match parsed {
            Ok(v) => i128::from(v) == exact,
            Err(QuantityError::Overflow(_)) => exact > i128::from(i64::MAX),
            Err(_) => false,
        };
        if !agrees {
            out.push(quantity_violation(
                q,
                format!("{digits} × {m} = {exact}, parse_integer gives {parsed:?}"),
            ));
        }
    }
    out
}

const RESOURCES: [&str; 4] = [
    RESOURCE_GPU,
    RESOURCE_GPUMEM,
    RESOURCE_GPUMEM_PERCENTAGE,
    RESOURCE_GPUCORES,
];

fn plain_u31(text: &str) -> Option<u32> {
    if text.is_empty() || text.len() > 10 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse::<u32>().ok().filter(|n| *n <= i32::MAX as u32)
}

/// `quantity_request`: up to 8 lines, the limits then the requests of `nvidia.com/gpu`, `gpumem`,
/// `gpumem-percentage`, `gpucores` (an empty line leaves the resource out). Every line is checked
/// as a quantity; the container is read by `container_request` and, when every value is a plain
/// decimal, compared with this crate's own reading ([`ContainerPlan::request`]).
pub fn quantity_request(data: &[u8]) -> Vec<Violation> {
    let text = String::from_utf8_lossy(data);
    let lines: Vec<&str> = text.split('\n').take(8).collect();
    let mut out = Vec::new();
    for line in &lines {
        out.extend(check_quantity(line));
    }
    let value = |i: usize| lines.get(i).copied().filter(|l| !l.is_empty());
    let mut limits = BTreeMap::new();
    let mut requests = BTreeMap::new();
    let mut plan = ContainerPlan::default();
    let mut plain = true;
    for (r, resource) in RESOURCES.iter().enumerate() {
        let limit = value(r);
        let request = value(r + 4);
        if let Some(l) = limit {
            limits.insert(resource.to_string(), Quantity(l.to_string()));
        }
        if let Some(q) = request {
            requests.insert(resource.to_string(), Quantity(q.to_string()));
        }
        let read = |v: Option<&str>, plain: &mut bool| match v {
            None => None,
            Some(text) => {
                let n = plain_u31(text);
                *plain &= n.is_some();
                n
            }
        };
        let placed = ResourceValue {
            limit: read(limit, &mut plain),
            request: read(request, &mut plain),
        };
        match r {
            0 => plan.gpu = placed,
            1 => plan.mem = placed,
            2 => plan.pct = placed,
            _ => plan.cores = placed,
        }
    }
    let container = Container {
        name: "fuzz".into(),
        resources: Some(ResourceRequirements {
            limits: (!limits.is_empty()).then_some(limits),
            requests: (!requests.is_empty()).then_some(requests),
            ..Default::default()
        }),
        ..Default::default()
    };
    let read = container_request(&container, RequestDefaults::default());
    if let Ok(Some(r)) = &read {
        let consistent = r.nums >= 1
            && (1..=PERCENTAGE_UNSET).contains(&r.mem_percentage)
            && (r.mem_percentage != PERCENTAGE_UNSET || r.memreq > 0)
            && r.memreq <= i32::MAX as u32
            && [0u32, 1, 8000, 81920, i32::MAX as u32]
                .iter()
                .all(|&total| r.memreq > 0 || r.memory_on(total) <= u64::from(total));
        if !consistent {
            out.push(Violation::new(
                Invariant::Protocol,
                format!("container_request gave an inconsistent request {r:?} for {lines:?}"),
            ));
        }
    }
    if plain {
        let theirs = read
            .as_ref()
            .ok()
            .map(|o| o.map(|r| (r.nums, r.memreq, r.mem_percentage, r.coresreq)));
        let ours = Some(
            plan.request()
                .map(|r| (r.nums, r.mem_mib, r.mem_percent, r.cores)),
        );
        if theirs != ours {
            out.push(Violation::new(
                Invariant::Protocol,
                format!(
                    "container_request reads {lines:?} as {read:?}; spec §2 reads (nums, MiB, %, cores) {ours:?}"
                ),
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantity_oracle_accepts_the_scheduler_on_known_values() {
        for q in [
            "1",
            "+7",
            "-2",
            "1k",
            "16Gi",
            "3Ei",
            "8Ei",
            "99999999999999999999",
            "1.5k",
            "",
        ] {
            assert_eq!(check_quantity(q), vec![], "{q}");
        }
    }

    #[test]
    fn request_oracle_agrees_on_plain_values() {
        assert_eq!(quantity_request(b"1\n3000\n\n30"), vec![]);
        assert_eq!(quantity_request(b"\n\n\n\n2\n\n150\n"), vec![]);
        assert_eq!(quantity_request(b"1\n16Gi"), vec![]);
    }

    #[test]
    fn webhook_oracle_accepts_hamis_cases() {
        let pod = br#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p"},"spec":{"containers":[{"name":"c","resources":{"limits":{"nvidia.com/gpu":"1"}}}]}}"#;
        assert_eq!(admission_webhook(pod), vec![]);
        assert_eq!(admission_webhook(b"not json"), vec![]);
        assert_eq!(check_target("nope", b""), None);
    }
}
