//! The checks of the fuzz targets over single annotation and flag values: Go durations
//! ([`sliceguard_core::codec::go_duration`]) and the per-pod policy annotations
//! ([`sliceguard_core::policy`]), each against a small reference reading written here.

use crate::violation::{Invariant, Violation};
use sliceguard_core::annotations::{
    DEVICE_SCORING_WEIGHTS, GPU_SCHEDULER_POLICY, NODE_SCHEDULER_POLICY, NOUSE_GPUTYPE,
    NOUSE_GPUUUID, NUMA_BIND, USE_GPUTYPE, USE_GPUUUID, VGPU_MODE,
};
use sliceguard_core::codec::go_duration;
use sliceguard_core::policy::{
    GpuPolicy, NodePolicy, PodPreferences, PolicyDefaults, ScoreWeights, parse_weights,
};
use std::collections::BTreeMap;

/// Go's `time.ParseDuration` grammar, read independently: `[+-]` then one or more
/// `digits [. digits] unit` (at least one digit on either side of the dot), units `ns`, `us`, `µs`
/// (U+00B5), `μs` (U+03BC), `ms`, `s`, `m`, `h`; `0` alone (after the sign) is zero. Each term is
/// `integer × unit + ⌊fraction × unit⌋` with the fraction cut to its first 18 digits (Go keeps the
/// digits below 2^63 and scales in floating point, which can round the last nanosecond differently;
/// this reading is exact). Returns the magnitude in nanoseconds and the sign, or `None` when Go
/// rejects the text; magnitudes past 2^63 are rejected, as Go rejects them.
pub fn reference_duration(text: &str) -> Option<(bool, u128)> {
    let chars: Vec<char> = text.chars().collect();
    let mut i = 0;
    let negative = match chars.first() {
        Some('-') => {
            i = 1;
            true
        }
        Some('+') => {
            i = 1;
            false
        }
        _ => false,
    };
    let rest: String = chars[i..].iter().collect();
    if rest == "0" {
        return Some((negative, 0));
    }
    if i == chars.len() {
        return None;
    }
    let limit: u128 = 1 << 63;
    let mut total: u128 = 0;
    while i < chars.len() {
        let mut int_digits = String::new();
        while i < chars.len() && chars[i].is_ascii_digit() {
            int_digits.push(chars[i]);
            i += 1;
        }
        let mut frac_digits = String::new();
        if i < chars.len() && chars[i] == '.' {
            i += 1;
            while i < chars.len() && chars[i].is_ascii_digit() {
                frac_digits.push(chars[i]);
                i += 1;
            }
        }
        if int_digits.is_empty() && frac_digits.is_empty() {
            return None;
        }
        let mut unit = String::new();
        while i < chars.len() && !chars[i].is_ascii_digit() && chars[i] != '.' {
            unit.push(chars[i]);
            i += 1;
        }
        let scale: u128 = match unit.as_str() {
            "ns" => 1,
            "us" | "\u{00B5}s" | "\u{03BC}s" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60 * 1_000_000_000,
            "h" => 3_600 * 1_000_000_000,
            _ => return None,
        };
        // The integer part, digit by digit, giving up past 2^63 as Go's `leadingInt` does.
        let mut whole: u128 = 0;
        for d in int_digits.chars() {
            whole = whole * 10 + u128::from(d.to_digit(10)?);
            if whole > limit {
                return None;
            }
        }
        let mut numerator: u128 = 0;
        let mut denominator: u128 = 1;
        for d in frac_digits.chars().take(18) {
            numerator = numerator * 10 + u128::from(d.to_digit(10)?);
            denominator *= 10;
        }
        let term = whole * scale + numerator * scale / denominator;
        if term > limit {
            return None;
        }
        total += term;
        if total > limit {
            return None;
        }
    }
    Some((negative, total))
}

/// `go_duration`: the text through `go_duration::parse`. It never panics; what parses formats and
/// parses back to the same value; it accepts exactly what the reference reading accepts, with the
/// same value (the one magnitude where they may differ, exactly 2^63 ns, which Go accepts only
/// negative, is left out).
pub fn go_duration(data: &[u8]) -> Vec<Violation> {
    let Ok(text) = std::str::from_utf8(data) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let v =
        |detail: String| Violation::new(Invariant::Codec, format!("duration {text:?}: {detail}"));
    let parsed = go_duration::parse(text);
    if let Ok(d) = parsed {
        let printed = go_duration::format(d);
        if go_duration::parse(&printed) != Ok(d) {
            out.push(v(format!(
                "parsed as {d:?}, formats as {printed:?}, which parses as {:?}",
                go_duration::parse(&printed)
            )));
        }
    }
    let reference = reference_duration(text);
    if reference.is_some_and(|(_, n)| n == 1 << 63) {
        return out;
    }
    let expected = reference.map(|(negative, n)| {
        let n = n as i128;
        if negative { -n } else { n }
    });
    let got = parsed.as_ref().ok().map(|d| d.as_nanos());
    if expected != got {
        out.push(v(format!(
            "Go's grammar gives {expected:?} ns, go_duration::parse {parsed:?}"
        )));
    }
    out
}

/// HAMi's comma lists as the README's compatibility table says sliceguard reads them: entries
/// trimmed, empty entries skipped; type lists compared upper-cased.
fn reference_list(value: Option<&str>, upper: bool) -> Vec<String> {
    let mut out = Vec::new();
    for entry in value.unwrap_or("").split(',') {
        let entry = entry.trim();
        if entry.is_empty() {
            continue;
        }
        out.push(if upper {
            entry.to_uppercase()
        } else {
            entry.to_string()
        });
    }
    out
}

fn render_weights(w: &ScoreWeights) -> String {
    format!("slot={},core={},memory={}", w.slot, w.core, w.memory)
}

/// The annotation keys of the `policy_annotations` input lines, in order.
const POLICY_KEYS: [&str; 9] = [
    DEVICE_SCORING_WEIGHTS,
    USE_GPUTYPE,
    NOUSE_GPUTYPE,
    USE_GPUUUID,
    NOUSE_GPUUUID,
    NUMA_BIND,
    NODE_SCHEDULER_POLICY,
    GPU_SCHEDULER_POLICY,
    VGPU_MODE,
];

/// `policy_annotations`: up to 12 lines: the values of `hami.io/device-scoring-weights`,
/// `nvidia.com/use-gputype`, `nouse-gputype`, `use-gpuuuid`, `nouse-gpuuuid`, `numa-bind`,
/// `hami.io/node-scheduler-policy`, `hami.io/gpu-scheduler-policy`, `nvidia.com/vgpu-mode` (a line
/// that is not there leaves the annotation out), then a device type, a device mode and a device
/// UUID to judge. Weights: what parses is within 0..=2^31-1, not all zero, and renders and parses
/// back to itself. Preferences: read exactly when the weights and numa-bind read; the lists are the
/// reference's; `type_allowed` and `uuid_allowed` agree with the reference reading of HAMi's
/// `checkType` and `CheckUUID`; the policies never panic and `spread` alone makes a node spread.
pub fn policy_annotations(data: &[u8]) -> Vec<Violation> {
    let text = String::from_utf8_lossy(data);
    let lines: Vec<&str> = text.split('\n').take(12).collect();
    let mut out = Vec::new();
    let v =
        |detail: String| Violation::new(Invariant::Codec, format!("policy {lines:?}: {detail}"));
    let weights = parse_weights(lines[0]);
    if let Ok(w) = &weights {
        let limit = i32::MAX as u32;
        if w.slot > limit || w.core > limit || w.memory > limit || (w.slot | w.core | w.memory) == 0
        {
            out.push(v(format!("weights {w:?} out of range")));
        }
        let rendered = render_weights(w);
        if parse_weights(&rendered).as_ref() != Ok(w) {
            out.push(v(format!(
                "weights {w:?} render as {rendered:?}, which reads {:?}",
                parse_weights(&rendered)
            )));
        }
    }
    let annotations: BTreeMap<String, String> = POLICY_KEYS
        .iter()
        .zip(lines.iter())
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let get = |key: &str| annotations.get(key).map(String::as_str);
    let numa_ok = get(NUMA_BIND).is_none_or(|b| {
        matches!(
            b,
            "1" | "t"
                | "T"
                | "TRUE"
                | "true"
                | "True"
                | "0"
                | "f"
                | "F"
                | "FALSE"
                | "false"
                | "False"
        )
    });
    let weights_ok = get(DEVICE_SCORING_WEIGHTS).is_none_or(|w| parse_weights(w).is_ok());
    let prefs = PodPreferences::from_annotations(&annotations, &PolicyDefaults::default());
    match &prefs {
        Err(e) => {
            if numa_ok && weights_ok {
                out.push(v(format!("preferences refused valid annotations: {e}")));
            }
            return out;
        }
        Ok(_) if !(numa_ok && weights_ok) => {
            out.push(v(format!(
                "preferences accepted an invalid numa-bind or weights: {prefs:?}"
            )));
            return out;
        }
        Ok(_) => {}
    }
    let Ok(prefs) = prefs else {
        return out;
    };
    let use_types = reference_list(get(USE_GPUTYPE), true);
    let nouse_types = reference_list(get(NOUSE_GPUTYPE), true);
    let use_uuids = reference_list(get(USE_GPUUUID), false);
    let nouse_uuids = reference_list(get(NOUSE_GPUUUID), false);
    if (
        &prefs.use_types,
        &prefs.nouse_types,
        &prefs.use_uuids,
        &prefs.nouse_uuids,
    ) != (&use_types, &nouse_types, &use_uuids, &nouse_uuids)
    {
        out.push(v(format!(
            "lists read as {:?}, the reference reads {:?}",
            (
                &prefs.use_types,
                &prefs.nouse_types,
                &prefs.use_uuids,
                &prefs.nouse_uuids
            ),
            (&use_types, &nouse_types, &use_uuids, &nouse_uuids)
        )));
    }
    let device_type = lines.get(9).copied().unwrap_or("NVIDIA-A100-SXM4-40GB");
    let mode = lines.get(10).copied().unwrap_or("hami-core");
    let uuid = lines.get(11).copied().unwrap_or("GPU-0");
    let upper = device_type.to_uppercase();
    let type_expected = (use_types.is_empty() || use_types.iter().any(|t| upper.contains(t)))
        && !nouse_types.iter().any(|t| upper.contains(t))
        && get(VGPU_MODE).is_none_or(|allowed| allowed.contains(mode));
    if prefs.type_allowed(device_type, mode) != type_expected {
        out.push(v(format!(
            "type_allowed({device_type:?}, {mode:?}) = {}, the reference says {type_expected}",
            prefs.type_allowed(device_type, mode)
        )));
    }
    let uuid_expected = (use_uuids.is_empty() || use_uuids.iter().any(|u| u == uuid))
        && !nouse_uuids.iter().any(|u| u == uuid);
    if prefs.uuid_allowed(uuid) != uuid_expected {
        out.push(v(format!(
            "uuid_allowed({uuid:?}) = {}, the reference says {uuid_expected}",
            prefs.uuid_allowed(uuid)
        )));
    }
    if let Some(node) = get(NODE_SCHEDULER_POLICY) {
        let spread = NodePolicy::from_annotation(node) == NodePolicy::Spread;
        if spread != (node == "spread") || prefs.node_policy != NodePolicy::from_annotation(node) {
            out.push(v(format!(
                "node policy {node:?} read as {:?}",
                prefs.node_policy
            )));
        }
    }
    let gpu = prefs.gpu_policy.clone();
    let _ = (gpu.device_policy(), gpu.node_ranking());
    // HAMi's `PolicyContains`: a whole comma-separated token, trimmed (`bmutexk` is not mutex).
    if gpu.is_mutex() != gpu.0.split(',').any(|token| token.trim() == "mutex") {
        out.push(v(format!(
            "GPU policy {gpu:?}: is_mutex disagrees with its comma-separated tokens"
        )));
    }
    if let Some(g) = get(GPU_SCHEDULER_POLICY)
        && prefs.gpu_policy != GpuPolicy(g.to_string())
    {
        out.push(v(format!(
            "GPU policy {g:?} read as {:?}",
            prefs.gpu_policy
        )));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_duration_reads_gos_examples() {
        let ns = |t: &str| {
            reference_duration(t).map(|(neg, n)| if neg { -(n as i128) } else { n as i128 })
        };
        assert_eq!(ns("1m30s"), Some(90_000_000_000));
        assert_eq!(ns("-1.5h"), Some(-5_400_000_000_000));
        assert_eq!(ns("0"), Some(0));
        assert_eq!(ns("-0"), Some(0));
        assert_eq!(ns("1.s"), Some(1_000_000_000));
        assert_eq!(ns("\u{00B5}s"), None);
        assert_eq!(ns("3\u{03BC}s"), Some(3_000));
        for bad in ["", "+", ".s", "5", "1d", "0s5", "9223372036854775809ns"] {
            assert_eq!(ns(bad), None, "{bad}");
        }
        for text in [
            "1m30s", "300ms", "-1.5h", "0", "1h2m3.5s", "5m", ".5s", "1.s", "x",
        ] {
            assert_eq!(go_duration(text.as_bytes()), vec![], "{text}");
        }
    }

    #[test]
    fn go_duration_oracle_catches_the_long_fraction_overflow() {
        assert_eq!(go_duration(b"1.999999999999999999999999999999h"), vec![]);
    }

    #[test]
    fn policy_oracle_agrees_on_hamis_examples() {
        assert_eq!(
            policy_annotations(
                b"slot=1,core=2,memory=3\nA100, H100 ,\n\nGPU-a,GPU-b\nGPU-c\ntrue\nspread\nbinpack\nhami-core\nNVIDIA-A100-SXM4\nhami-core\nGPU-a"
            ),
            vec![]
        );
        assert_eq!(policy_annotations(b"slot=0,core=0,memory=0"), vec![]);
        assert_eq!(policy_annotations(b"nonsense\n\n\n\n\nmaybe"), vec![]);
    }
}
