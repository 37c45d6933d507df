//! Codec invariants: `parse(render(x)) == x` for every value a renderer accepts (or, for the
//! renderers that cannot refuse, for every value the wire format can carry), and, for any string,
//! `parse` returns without panicking and whatever it accepts renders back to a string that parses to
//! the same value.
//!
//! The string-side checks ([`check_register`], [`check_pod_devices`], [`check_lock`],
//! [`check_handshake`], [`check_reasons`], all at once in [`check_annotation`]) are what the
//! `annotation_parser` fuzz target and the corpus replay test run. The value-side checks
//! (`roundtrip_*`) are what the round-trip properties run over generated values.
//!
//! What the formats cannot carry, and the renderers therefore refuse (or, for the three that return
//! a plain `String`, what the generators stay away from; see the crate README):
//! - register text: `,` or `:` in id/type/mode; numbers above `i32::MAX`;
//! - register JSON: numbers above `i32::MAX` (`render_json` cannot refuse);
//! - pod devices: `,` `:` `;` in uuid/backend; numbers above `i32::MAX`;
//! - lock: `,` in the holder; local years outside 0000–9999; offsets beyond ±23:59;
//! - handshake: sub-second times and years outside 0000–9999 (`render` cannot refuse);
//! - reasons: empty lists, empty entries, `", "` inside an entry, bare entries starting with a digit,
//!   spaces in a counted reason (`render` cannot refuse).

use crate::violation::{Invariant, Violation};
use sliceguard_core::codec::handshake::{self, Handshake};
use sliceguard_core::codec::lock::{self, LockValue};
use sliceguard_core::codec::pod_devices;
use sliceguard_core::codec::reasons::{self, ReasonItem, ReasonList};
use sliceguard_core::codec::register;
use sliceguard_core::model::{DeviceInfo, PodDevices};

const I32_MAX: u32 = i32::MAX as u32;

fn codec_violation(codec: &str, input: &str, detail: String) -> Violation {
    let mut shown: String = input.chars().take(200).collect();
    if shown.len() < input.len() {
        shown.push('…');
    }
    Violation::new(
        Invariant::Codec,
        format!("{codec}: input {shown:?}: {detail}"),
    )
}

/// True when the text form can carry these devices.
pub fn text_representable(devices: &[DeviceInfo]) -> bool {
    devices.iter().all(|d| {
        [&*d.id, &*d.device_type, &*d.mode]
            .iter()
            .all(|s| !s.contains([',', ':']))
            && [d.index, d.count, d.devmem, d.devcore, d.numa]
                .iter()
                .all(|n| *n <= I32_MAX)
    })
}

/// `register::parse(render_json(x)) == x`, for devices whose numbers fit in `int32`.
pub fn roundtrip_register_json(devices: &[DeviceInfo]) -> Result<(), Violation> {
    let rendered = register::render_json(devices);
    match register::parse(&rendered) {
        Ok(back) if back == devices => Ok(()),
        other => Err(codec_violation(
            "register (JSON)",
            &rendered,
            format!("rendered from {devices:?}, parsed back as {other:?}"),
        )),
    }
}

/// `register::parse(render_text(x)) == x` when the text form renders `x`, and `render_text`
/// refuses exactly what [`text_representable`] rules out.
pub fn roundtrip_register_text(devices: &[DeviceInfo]) -> Result<(), Violation> {
    match register::render_text(devices) {
        Ok(rendered) => match register::parse(&rendered) {
            Ok(back) if back == devices => Ok(()),
            other => Err(codec_violation(
                "register (text)",
                &rendered,
                format!("rendered from {devices:?}, parsed back as {other:?}"),
            )),
        },
        Err(_) if !text_representable(devices) => Ok(()),
        Err(e) => Err(codec_violation(
            "register (text)",
            "",
            format!("render_text refused representable devices {devices:?}: {e}"),
        )),
    }
}

/// True when the pod device format can carry this value.
pub fn pod_devices_representable(devices: &PodDevices) -> bool {
    devices.0.iter().flatten().all(|d| {
        !d.uuid.contains([',', ':', ';'])
            && !d.backend.contains([',', ':', ';'])
            && d.usedmem <= I32_MAX
            && d.usedcores <= I32_MAX
    })
}

/// `pod_devices::parse(render(x)) == x` when `render` accepts `x`, and it refuses exactly what
/// [`pod_devices_representable`] rules out.
pub fn roundtrip_pod_devices(devices: &PodDevices) -> Result<(), Violation> {
    match pod_devices::render(devices) {
        Ok(rendered) => match pod_devices::parse(&rendered) {
            Ok(back) if back == *devices => Ok(()),
            other => Err(codec_violation(
                "pod devices",
                &rendered,
                format!("rendered from {devices:?}, parsed back as {other:?}"),
            )),
        },
        Err(_) if !pod_devices_representable(devices) => Ok(()),
        Err(e) => Err(codec_violation(
            "pod devices",
            "",
            format!("render refused representable {devices:?}: {e}"),
        )),
    }
}

/// `lock::parse(render(x)) == x` when `render` accepts `x`; a holder with `,` must be refused.
pub fn roundtrip_lock(value: &LockValue) -> Result<(), Violation> {
    match lock::render(value) {
        Ok(rendered) => match lock::parse(&rendered) {
            Ok(back) if back == *value => Ok(()),
            other => Err(codec_violation(
                "lock",
                &rendered,
                format!("rendered from {value:?}, parsed back as {other:?}"),
            )),
        },
        Err(e) => {
            let comma_in_holder = value
                .holder
                .as_ref()
                .is_some_and(|h| h.namespace.contains(',') || h.name.contains(','));
            let in_range = value.offset_minutes.unsigned_abs() <= 23 * 60 + 59 && {
                let offset =
                    jiff::tz::Offset::from_seconds(i32::from(value.offset_minutes) * 60).ok();
                offset.is_some_and(|o| (0..=9999).contains(&o.to_datetime(value.taken_at).year()))
            };
            if comma_in_holder || !in_range {
                Ok(())
            } else {
                Err(codec_violation(
                    "lock",
                    "",
                    format!("render refused representable {value:?}: {e}"),
                ))
            }
        }
    }
}

/// `handshake::parse(render(x)) == x`, for whole-second times in years 0000–9999.
pub fn roundtrip_handshake(value: &Handshake) -> Result<(), Violation> {
    let rendered = handshake::render(value);
    match handshake::parse(&rendered) {
        Ok(back) if back == *value => Ok(()),
        other => Err(codec_violation(
            "handshake",
            &rendered,
            format!("rendered from {value:?}, parsed back as {other:?}"),
        )),
    }
}

/// True when the reason-list format can carry this list.
pub fn reasons_representable(list: &ReasonList) -> bool {
    !list.0.is_empty()
        && list.0.iter().all(|item| match item {
            ReasonItem::Counted { reason, .. } => !reason.is_empty() && !reason.contains(' '),
            ReasonItem::Bare(text) => {
                !text.is_empty()
                    && !text.starts_with(|c: char| c.is_ascii_digit())
                    && !text.contains(", ")
            }
        })
}

/// `reasons::parse(render(x)) == x`, for representable lists.
pub fn roundtrip_reasons(list: &ReasonList) -> Result<(), Violation> {
    let rendered = reasons::render(list);
    match reasons::parse(&rendered) {
        Ok(back) if back == *list => Ok(()),
        other => Err(codec_violation(
            "reasons",
            &rendered,
            format!("rendered from {list:?}, parsed back as {other:?}"),
        )),
    }
}

/// Any string: `register::parse` returns; what it accepts round-trips through JSON, and through the
/// text form when the text form can carry it.
pub fn check_register(input: &str) -> Vec<Violation> {
    let mut out = Vec::new();
    if let Ok(devices) = register::parse(input) {
        if let Err(v) = roundtrip_register_json(&devices) {
            out.push(codec_violation(
                "register",
                input,
                format!("parsed, but JSON does not round-trip: {v}"),
            ));
        }
        if let Err(v) = roundtrip_register_text(&devices) {
            out.push(codec_violation(
                "register",
                input,
                format!("parsed, but text does not round-trip: {v}"),
            ));
        }
    }
    if let Ok(devices) = register::parse_text(input)
        && let Err(v) = roundtrip_register_text(&devices)
    {
        out.push(codec_violation(
            "register",
            input,
            format!("parse_text accepted it, but text does not round-trip: {v}"),
        ));
    }
    out
}

/// Any string: `pod_devices::parse` returns; what it accepts renders and parses back to itself.
pub fn check_pod_devices(input: &str) -> Vec<Violation> {
    match pod_devices::parse(input) {
        Ok(devices) => match roundtrip_pod_devices(&devices) {
            Ok(()) if pod_devices::render(&devices).is_ok() => Vec::new(),
            Ok(()) => vec![codec_violation(
                "pod devices",
                input,
                format!("parsed as {devices:?}, which render refuses"),
            )],
            Err(v) => vec![codec_violation(
                "pod devices",
                input,
                format!("parsed, but does not round-trip: {v}"),
            )],
        },
        Err(_) => Vec::new(),
    }
}

/// Any string: `lock::parse` returns; what it accepts renders and parses back to itself.
pub fn check_lock(input: &str) -> Vec<Violation> {
    match lock::parse(input) {
        Ok(value) => match lock::render(&value) {
            Ok(_) => roundtrip_lock(&value)
                .err()
                .map(|v| {
                    codec_violation(
                        "lock",
                        input,
                        format!("parsed, but does not round-trip: {v}"),
                    )
                })
                .into_iter()
                .collect(),
            Err(e) => vec![codec_violation(
                "lock",
                input,
                format!("parsed as {value:?}, which render refuses: {e}"),
            )],
        },
        Err(_) => Vec::new(),
    }
}

/// Any string: `handshake::parse` returns; what it accepts round-trips.
pub fn check_handshake(input: &str) -> Vec<Violation> {
    match handshake::parse(input) {
        Ok(value) => roundtrip_handshake(&value)
            .err()
            .map(|v| {
                codec_violation(
                    "handshake",
                    input,
                    format!("parsed, but does not round-trip: {v}"),
                )
            })
            .into_iter()
            .collect(),
        Err(_) => Vec::new(),
    }
}

/// Any string: `reasons::parse` returns; what it accepts is representable and round-trips.
pub fn check_reasons(input: &str) -> Vec<Violation> {
    match reasons::parse(input) {
        Ok(list) => {
            let mut out = Vec::new();
            if !reasons_representable(&list) {
                out.push(codec_violation(
                    "reasons",
                    input,
                    format!("parsed as {list:?}, which the format cannot carry"),
                ));
            }
            if let Err(v) = roundtrip_reasons(&list) {
                out.push(codec_violation(
                    "reasons",
                    input,
                    format!("parsed, but does not round-trip: {v}"),
                ));
            }
            out
        }
        Err(_) => Vec::new(),
    }
}

/// Every string-side codec check on one input.
pub fn check_annotation(input: &str) -> Vec<Violation> {
    let mut out = check_register(input);
    out.extend(check_pod_devices(input));
    out.extend(check_lock(input));
    out.extend(check_handshake(input));
    out.extend(check_reasons(input));
    out
}

/// Proptest strategies: codec values (representable and not) and annotation strings (valid and
/// adversarial).
#[cfg(feature = "strategies")]
pub mod strategies {
    use super::*;
    use jiff::civil::DateTime;
    use proptest::prelude::*;
    use sliceguard_core::codec::lock::LockHolder;
    use sliceguard_core::model::ContainerDevice;

    /// Short text with the separators of every format and some non-ASCII, to hit every refusal.
    pub fn field_text() -> impl Strategy<Value = String> {
        prop_oneof![
            6 => "[A-Za-z0-9 ._-]{0,12}",
            2 => "[A-Za-z0-9,:;\\[\\] -]{0,10}",
            1 => "\\PC{0,6}",
        ]
    }

    /// Numbers in `0..=i32::MAX` with the edges weighted.
    pub fn int32_number() -> impl Strategy<Value = u32> + Clone {
        prop_oneof![
            2 => Just(0u32),
            1 => Just(I32_MAX),
            6 => 0u32..=100_000,
            2 => 0u32..=I32_MAX,
        ]
    }

    /// Any `u32`, so that out-of-range values reach the renderers.
    pub fn any_number() -> impl Strategy<Value = u32> + Clone {
        prop_oneof![8 => int32_number(), 1 => (I32_MAX + 1)..=u32::MAX]
    }

    fn device_info(
        number: impl Strategy<Value = u32> + Clone,
    ) -> impl Strategy<Value = DeviceInfo> {
        (
            field_text(),
            (
                number.clone(),
                number.clone(),
                number.clone(),
                number.clone(),
                number,
            ),
            field_text(),
            prop_oneof![
                Just("hami-core".to_string()),
                Just("mig".to_string()),
                field_text()
            ],
            any::<bool>(),
        )
            .prop_map(
                |(id, (index, count, devmem, devcore, numa), device_type, mode, health)| {
                    DeviceInfo {
                        id,
                        index,
                        count,
                        devmem,
                        devcore,
                        device_type: device_type.into(),
                        numa,
                        mode: mode.into(),
                        health,
                    }
                },
            )
    }

    /// Device lists whose numbers fit `int32` (what JSON can carry).
    pub fn devices_int32() -> impl Strategy<Value = Vec<DeviceInfo>> {
        prop::collection::vec(device_info(int32_number()), 0..4)
    }

    /// Device lists with any numbers.
    pub fn devices_any() -> impl Strategy<Value = Vec<DeviceInfo>> {
        prop::collection::vec(device_info(any_number()), 0..4)
    }

    /// Pod device values, representable or not.
    pub fn pod_devices() -> impl Strategy<Value = PodDevices> {
        let device = (
            prop_oneof![4 => "GPU-[a-f0-9-]{1,12}", 1 => field_text()],
            prop_oneof![4 => Just("NVIDIA".to_string()), 1 => field_text()],
            any_number(),
            any_number(),
        )
            .prop_map(|(uuid, backend, usedmem, usedcores)| ContainerDevice {
                uuid,
                backend,
                usedmem,
                usedcores,
            });
        prop::collection::vec(prop::collection::vec(device, 0..3), 0..4).prop_map(PodDevices)
    }

    /// Lock values: any instant whose local time has a four-digit year, offsets within ±23:59,
    /// second or sub-second precision, holders with or without commas.
    pub fn lock_value() -> impl Strategy<Value = LockValue> {
        let seconds = -62_135_596_800i64 + 2 * 86_400..=253_402_300_799i64 - 2 * 86_400;
        let nanos = prop_oneof![4 => Just(0i32), 1 => 0i32..1_000_000_000];
        let offset = prop_oneof![4 => Just(0i16), 1 => -1439i16..=1439, 1 => prop::sample::select(vec![480i16, -330, 345])];
        let holder = proptest::option::weighted(
            0.8,
            (field_text(), field_text())
                .prop_map(|(namespace, name)| LockHolder { namespace, name }),
        );
        (seconds, nanos, offset, holder).prop_map(|(s, n, offset_minutes, holder)| LockValue {
            taken_at: jiff::Timestamp::new(s, n).unwrap_or(jiff::Timestamp::UNIX_EPOCH),
            offset_minutes,
            holder,
        })
    }

    fn whole_second_datetime() -> impl Strategy<Value = DateTime> {
        (
            0i16..=9999,
            1i8..=12,
            1i8..=28,
            0i8..=23,
            0i8..=59,
            0i8..=59,
        )
            .prop_map(|(y, mo, d, h, mi, s)| {
                DateTime::new(y, mo, d, h, mi, s, 0)
                    .unwrap_or(DateTime::constant(2000, 1, 1, 0, 0, 0, 0))
            })
    }

    /// Handshakes the format can carry.
    pub fn handshake_value() -> impl Strategy<Value = Handshake> {
        prop_oneof![
            whole_second_datetime().prop_map(Handshake::Requesting),
            whole_second_datetime().prop_map(Handshake::Deleted),
            "\\PC{0,30}".prop_map(Handshake::Reported),
        ]
    }

    /// Reason lists the format can carry.
    pub fn reason_list() -> impl Strategy<Value = ReasonList> {
        let counted = (any::<u32>(), any::<u32>(), "[A-Za-z,/0-9]{1,24}").prop_map(
            |(count, total, reason)| ReasonItem::Counted {
                count,
                total,
                reason,
            },
        );
        let bare = "[A-Za-z ,:/][A-Za-z0-9 ,:/]{0,20}"
            .prop_filter("no \", \" inside an entry", |s| !s.contains(", "))
            .prop_map(ReasonItem::Bare);
        prop::collection::vec(prop_oneof![counted, bare], 1..5).prop_map(ReasonList)
    }

    /// Valid annotation values of every codec, including the spec's examples.
    pub fn valid_annotation() -> impl Strategy<Value = String> {
        prop_oneof![
            devices_int32().prop_map(|d| register::render_json(&d)),
            devices_int32()
                .prop_filter_map("text-representable", |d| register::render_text(&d).ok()),
            pod_devices().prop_filter_map("representable", |d| pod_devices::render(&d).ok()),
            lock_value().prop_filter_map("representable", |l| lock::render(&l).ok()),
            handshake_value().prop_map(|h| handshake::render(&h)),
            reason_list().prop_map(|r| reasons::render(&r)),
            prop::sample::select(SPEC_EXAMPLES.to_vec()).prop_map(str::to_string),
        ]
    }

    /// One way to damage a string.
    #[derive(Debug, Clone)]
    pub enum Damage {
        /// Cut it at this relative position.
        Truncate(prop::sample::Index),
        /// Insert a token here.
        Insert(prop::sample::Index, &'static str),
        /// Remove a few characters here.
        Remove(prop::sample::Index, usize),
        /// Replace the first run of digits after here with a token.
        ReplaceNumber(prop::sample::Index, &'static str),
        /// Double the string with a separator in between.
        Repeat(&'static str),
    }

    /// Separators, huge and negative numbers, unicode, JSON punctuation.
    pub const TOKENS: [&str; 20] = [
        ",",
        ":",
        ";",
        ", ",
        "/",
        " ",
        "",
        "-1",
        "99999999999999999999",
        "2147483648",
        "-0",
        "+7",
        "١٢",
        "Ⅻ",
        "😀",
        "\u{0}",
        "[",
        "]}",
        "\"",
        "null",
    ];

    fn damage() -> impl Strategy<Value = Damage> {
        let token = prop::sample::select(&TOKENS[..]);
        prop_oneof![
            any::<prop::sample::Index>().prop_map(Damage::Truncate),
            (any::<prop::sample::Index>(), token.clone()).prop_map(|(i, t)| Damage::Insert(i, t)),
            (any::<prop::sample::Index>(), 1usize..4).prop_map(|(i, n)| Damage::Remove(i, n)),
            (any::<prop::sample::Index>(), token.clone())
                .prop_map(|(i, t)| Damage::ReplaceNumber(i, t)),
            token.prop_map(Damage::Repeat),
        ]
    }

    fn char_boundary(s: &str, index: &prop::sample::Index) -> usize {
        let boundaries: Vec<usize> = s
            .char_indices()
            .map(|(i, _)| i)
            .chain(std::iter::once(s.len()))
            .collect();
        boundaries[index.index(boundaries.len())]
    }

    /// Applies one damage.
    pub fn apply(s: &str, damage: &Damage) -> String {
        match damage {
            Damage::Truncate(i) => s[..char_boundary(s, i)].to_string(),
            Damage::Insert(i, t) => {
                let at = char_boundary(s, i);
                format!("{}{t}{}", &s[..at], &s[at..])
            }
            Damage::Remove(i, n) => {
                let at = char_boundary(s, i);
                let end = s[at..]
                    .char_indices()
                    .nth(*n)
                    .map_or(s.len(), |(j, _)| at + j);
                format!("{}{}", &s[..at], &s[end..])
            }
            Damage::ReplaceNumber(i, t) => {
                let at = char_boundary(s, i);
                match s[at..].find(|c: char| c.is_ascii_digit()) {
                    Some(start) => {
                        let start = at + start;
                        let end = s[start..]
                            .find(|c: char| !c.is_ascii_digit())
                            .map_or(s.len(), |j| start + j);
                        format!("{}{t}{}", &s[..start], &s[end..])
                    }
                    None => s.to_string(),
                }
            }
            Damage::Repeat(t) => format!("{s}{t}{s}"),
        }
    }

    /// Adversarial strings: valid values damaged 1–3 times (truncated, separators in odd places,
    /// huge or negative numbers, unicode), and arbitrary text.
    pub fn adversarial_annotation() -> impl Strategy<Value = String> {
        prop_oneof![
            6 => (valid_annotation(), prop::collection::vec(damage(), 1..=3)).prop_map(|(s, damages)| {
                damages.iter().fold(s, |acc, d| apply(&acc, d))
            }),
            2 => any::<String>(),
            1 => "[0-9,:;/ A-Za-z\\[\\]{}\"-]{0,40}",
        ]
    }
}

/// The spec's real annotation values (§1, §4.4, §9), the seed corpus of the fuzz targets.
pub const SPEC_EXAMPLES: [&str; 22] = [
    r#"[{"id":"GPU-c53c0221-f097-5b48-427f-1a4f0f0ab91d","index":4,"count":10,"devmem":258787,"devcore":500,"type":"NVIDIA-NVIDIA H20-3e","mode":"mig","health":true}]"#,
    r#"[{"id":"GPU-9a3603f4-f66e-d48b-11ea-13e327064cca","count":10,"devmem":15360,"devcore":100,"type":"NVIDIA-Tesla T4","mode":"hami-core","health":true}]"#,
    r#"[{"id":"GPU-a","migProfiles":[{"name":"1g.5gb","memoryMB":4864,"core":15,"sliceCount":1,"placements":[{"start":6,"size":1}]}]}]"#,
    "GPU-9a3603f4-f66e-d48b-11ea-13e327064cca,10,15360,100,NVIDIA-Tesla T4,0,true:",
    "GPU-ca904b47-ae7c-20b9-4be2-bf85f75cbf40,10,16376,100,NVIDIA-NVIDIA RTX A4000,0,true,0,hami-core:",
    ":",
    "::",
    "GPU-2409b7b6-2df6-0343-90dd-2d73da18e0e8,NVIDIA,4096,0:;",
    ";GPU-9b9030a3-d81f-7d9f-5d2b-fd98cdc57b2d,NVIDIA,6144,30:;",
    "UUID1,Type1,1000,30:UUID2,Type1,1000,30:;",
    "GPU-aaa,NVIDIA,3000,30:;",
    ";;",
    ";;;",
    "2025-10-20T03:07:02Z,jingyu-test,gputest-6c77bb77f8-gvtzc",
    "2026-07-03T15:35:10+08:00",
    "2025-06-05T15:41:28Z,default,mypod",
    "Requesting_2026-07-27 18:22:36",
    "Deleted_2025-01-02 03:04:05",
    "Reported 2024-01-01 00:00:00.123 +0000 UTC m=+1.0",
    "1/2 AllocatedCardsInsufficientRequest, 1/2 NumaNotFit",
    "2/2 CardInsufficientMemory",
    "NodeInsufficientDevice",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_spec_examples_pass_every_check() {
        for example in SPEC_EXAMPLES {
            assert_eq!(check_annotation(example), vec![], "{example}");
        }
    }

    #[test]
    fn representability_predicates() {
        let device = DeviceInfo {
            id: "a:b".into(),
            index: 0,
            count: 1,
            devmem: 1,
            devcore: 1,
            device_type: "t".into(),
            numa: 0,
            mode: "".into(),
            health: true,
        };
        assert!(!text_representable(std::slice::from_ref(&device)));
        let fine = DeviceInfo {
            id: "a".into(),
            ..device
        };
        assert!(text_representable(std::slice::from_ref(&fine)));
        assert!(!reasons_representable(&ReasonList(vec![])));
        assert!(!reasons_representable(&ReasonList(vec![ReasonItem::Bare(
            "1 thing".into()
        )])));
    }
}
