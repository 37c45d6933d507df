//! `hami.io/node-nvidia-register`: a node's GPU inventory.
//!
//! Two forms exist (spec §1.2):
//! - **JSON** (HAMi ≥ v2.8, the only form v2.10's scheduler reads): an array of objects with fields
//!   `id, index, count, devmem, devcore, type, numa, mode, migProfiles, health`, every one `omitempty`,
//!   so an absent `index`/`numa` means 0, an absent `health` means false and an absent `mode` means "".
//! - **legacy text** (≤ v2.7, still written by HAMi's mock plugin): `id,count,devmem,devcore,type,numa,health:`
//!   (7 fields) or `...,health,index,mode:` (9 fields), every device terminated by `:`.
//!
//! [`parse`] accepts both (sliceguard keeps reading old nodes; a deliberate extension) and
//! [`render_json`] writes Go's exact field order and `omitempty` rules. Unlike HAMi, negative or
//! out-of-`int32` numbers are rejected with the field named: a device with negative memory would
//! otherwise corrupt every decision on its node. `migProfiles` is read and ignored (MIG is not
//! supported yet).

use super::{FieldError, Quoted, parse_go_bool, parse_go_u31};
use crate::model::DeviceInfo;
use serde::{Deserialize, Serialize};

/// Why a register annotation could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegisterError {
    /// The JSON form is not valid JSON of the expected shape.
    #[error("invalid JSON in hami.io/node-nvidia-register at {path}: {message}")]
    Json {
        /// Where in the document (`.`, `[2].devmem`, ...).
        path: String,
        /// What serde_json reported.
        message: String,
    },
    /// A JSON device field holds a value out of range.
    #[error("hami.io/node-nvidia-register device [{position}]: {source}")]
    JsonField {
        /// Position of the device in the array.
        position: usize,
        /// The field error.
        source: FieldError,
    },
    /// Text form without any `:`.
    #[error("node annotation missing device separator ':' in {0}")]
    MissingSeparator(Quoted),
    /// Text segment without any `,`.
    #[error("malformed node annotation segment: {0}")]
    MalformedSegment(Quoted),
    /// Text segment with a field count other than 7 or 9.
    #[error("unexpected field count {count} in node annotation segment {segment} (want 7 or 9)")]
    FieldCount {
        /// Fields found.
        count: usize,
        /// The segment.
        segment: Quoted,
    },
    /// A text field that does not parse.
    #[error(transparent)]
    Field(#[from] FieldError),
}

/// Parses either form; JSON when the value starts with `[` (or is `null`), text otherwise.
pub fn parse(value: &str) -> Result<Vec<DeviceInfo>, RegisterError> {
    let trimmed = value.trim_start();
    if trimmed.starts_with('[') || trimmed.trim_end() == "null" {
        parse_json(value)
    } else {
        parse_text(value)
    }
}

#[derive(Deserialize)]
struct WireDeviceIn {
    #[serde(default)]
    id: String,
    #[serde(default)]
    index: i64,
    #[serde(default)]
    count: i64,
    #[serde(default)]
    devmem: i64,
    #[serde(default)]
    devcore: i64,
    #[serde(default, rename = "type")]
    device_type: String,
    #[serde(default)]
    numa: i64,
    #[serde(default)]
    mode: String,
    #[serde(default)]
    health: bool,
}

fn json_number(field: &'static str, value: i64) -> Result<u32, FieldError> {
    if value < 0 {
        Err(FieldError::new(
            field,
            &value.to_string(),
            "must not be negative",
        ))
    } else if value > i64::from(i32::MAX) {
        Err(FieldError::new(
            field,
            &value.to_string(),
            "out of range (at most 2147483647)",
        ))
    } else {
        Ok(value as u32)
    }
}

/// Parses the JSON form.
pub fn parse_json(value: &str) -> Result<Vec<DeviceInfo>, RegisterError> {
    let mut de = serde_json::Deserializer::from_str(value);
    let wire: Option<Vec<WireDeviceIn>> =
        serde_path_to_error::deserialize(&mut de).map_err(|e| RegisterError::Json {
            path: e.path().to_string(),
            message: e.inner().to_string(),
        })?;
    de.end().map_err(|e| RegisterError::Json {
        path: ".".into(),
        message: e.to_string(),
    })?;
    wire.unwrap_or_default()
        .into_iter()
        .enumerate()
        .map(|(position, w)| {
            let wrap = |source| RegisterError::JsonField { position, source };
            Ok(DeviceInfo {
                index: json_number("index", w.index).map_err(wrap)?,
                count: json_number("count", w.count).map_err(wrap)?,
                devmem: json_number("devmem", w.devmem).map_err(wrap)?,
                devcore: json_number("devcore", w.devcore).map_err(wrap)?,
                numa: json_number("numa", w.numa).map_err(wrap)?,
                id: w.id,
                device_type: w.device_type.into(),
                mode: w.mode.into(),
                health: w.health,
            })
        })
        .collect()
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

fn is_false(b: &bool) -> bool {
    !*b
}

#[derive(Serialize)]
struct WireDeviceOut<'a> {
    #[serde(skip_serializing_if = "str::is_empty")]
    id: &'a str,
    #[serde(skip_serializing_if = "is_zero")]
    index: u32,
    #[serde(skip_serializing_if = "is_zero")]
    count: u32,
    #[serde(skip_serializing_if = "is_zero")]
    devmem: u32,
    #[serde(skip_serializing_if = "is_zero")]
    devcore: u32,
    #[serde(rename = "type", skip_serializing_if = "str::is_empty")]
    device_type: &'a str,
    #[serde(skip_serializing_if = "is_zero")]
    numa: u32,
    #[serde(skip_serializing_if = "str::is_empty")]
    mode: &'a str,
    #[serde(skip_serializing_if = "is_false")]
    health: bool,
}

/// Renders the JSON form exactly as HAMi's `MarshalNodeDevices` does (Go field order, `omitempty`).
pub fn render_json(devices: &[DeviceInfo]) -> String {
    let wire: Vec<WireDeviceOut<'_>> = devices
        .iter()
        .map(|d| WireDeviceOut {
            id: &d.id,
            index: d.index,
            count: d.count,
            devmem: d.devmem,
            devcore: d.devcore,
            device_type: &d.device_type,
            numa: d.numa,
            mode: &d.mode,
            health: d.health,
        })
        .collect();
    serde_json::to_string(&wire).unwrap_or_else(|_| "[]".to_string())
}

/// Parses the legacy text form with HAMi's `DecodeNodeDevices` rules.
pub fn parse_text(value: &str) -> Result<Vec<DeviceInfo>, RegisterError> {
    if !value.contains(':') {
        return Err(RegisterError::MissingSeparator(Quoted::new(value)));
    }
    let mut devices = Vec::new();
    for segment in value.split(':').filter(|s| !s.is_empty()) {
        if !segment.contains(',') {
            return Err(RegisterError::MalformedSegment(Quoted::new(segment)));
        }
        let fields: Vec<&str> = segment.split(',').collect();
        let (index, mode) = match fields.as_slice() {
            [_, _, _, _, _, _, _] => (0, "hami-core".to_string()),
            [_, _, _, _, _, _, _, index, mode] => {
                (parse_go_u31("index", index)?, (*mode).to_string())
            }
            _ => {
                return Err(RegisterError::FieldCount {
                    count: fields.len(),
                    segment: Quoted::new(segment),
                });
            }
        };
        devices.push(DeviceInfo {
            id: fields[0].to_string(),
            count: parse_go_u31("count", fields[1])?,
            devmem: parse_go_u31("memory", fields[2])?,
            devcore: parse_go_u31("core", fields[3])?,
            device_type: fields[4].into(),
            numa: parse_go_u31("numa", fields[5])?,
            health: parse_go_bool("health", fields[6])?,
            index,
            mode: mode.into(),
        });
    }
    Ok(devices)
}

/// Renders the legacy text form (always the 9-field form, as HAMi's encoder does). Fails when a
/// string field holds a separator (`,` or `:`) or a number exceeds `i32::MAX`, which the text form
/// cannot carry (the parser would refuse them).
///
/// Two cases are written so that [`parse`] reads them back (`parse(render_text(x)) == x`): an empty
/// list is `:` (HAMi's encoder writes an empty string, which its decoder rejects; `:` decodes to
/// the empty list in both), and a value whose first id would make it look like JSON (it starts with
/// `[` after blanks) gets a leading `:`, an empty segment that decoding skips.
pub fn render_text(devices: &[DeviceInfo]) -> Result<String, FieldError> {
    let mut out = String::new();
    for d in devices {
        for (field, value) in [
            ("id", &*d.id),
            ("type", &*d.device_type),
            ("mode", &*d.mode),
        ] {
            if value.contains([',', ':']) {
                return Err(FieldError::new(
                    field,
                    value,
                    "contains ',' or ':', which the text form cannot carry",
                ));
            }
        }
        for (field, value) in [
            ("count", d.count),
            ("memory", d.devmem),
            ("core", d.devcore),
            ("numa", d.numa),
            ("index", d.index),
        ] {
            if value > i32::MAX as u32 {
                return Err(FieldError::new(
                    field,
                    &value.to_string(),
                    "out of range (at most 2147483647)",
                ));
            }
        }
        out.push_str(&format!(
            "{},{},{},{},{},{},{},{},{}:",
            d.id, d.count, d.devmem, d.devcore, d.device_type, d.numa, d.health, d.index, d.mode
        ));
    }
    if out.is_empty() || out.trim_start().starts_with('[') {
        out.insert(0, ':');
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t4() -> DeviceInfo {
        DeviceInfo {
            id: "GPU-9a3603f4-f66e-d48b-11ea-13e327064cca".into(),
            index: 0,
            count: 10,
            devmem: 15360,
            devcore: 100,
            device_type: "NVIDIA-Tesla T4".into(),
            numa: 0,
            mode: "hami-core".into(),
            health: true,
        }
    }

    #[test]
    fn spec_json_example_typical_t4() {
        let value = r#"[{"id":"GPU-9a3603f4-f66e-d48b-11ea-13e327064cca","count":10,"devmem":15360,"devcore":100,"type":"NVIDIA-Tesla T4","mode":"hami-core","health":true}]"#;
        assert_eq!(parse(value).unwrap(), vec![t4()]);
        assert_eq!(render_json(&[t4()]), value);
    }

    #[test]
    fn spec_json_example_issue_1422_with_index_and_mig_mode() {
        let value = r#"[{"id":"GPU-c53c0221-f097-5b48-427f-1a4f0f0ab91d","index":4,"count":10,"devmem":258787,"devcore":500,"type":"NVIDIA-NVIDIA H20-3e","mode":"mig","health":true}]"#;
        let devices = parse(value).unwrap();
        assert_eq!(devices[0].index, 4);
        assert_eq!(devices[0].devcore, 500);
        assert_eq!(&*devices[0].mode, "mig");
        assert_eq!(render_json(&devices), value);
    }

    #[test]
    fn json_omitempty_defaults_and_ignored_mig_profiles() {
        let value = r#"[{"id":"GPU-a","migProfiles":[{"name":"1g.5gb","memoryMB":4864,"core":15,"sliceCount":1,"placements":[{"start":6,"size":1}]}]}]"#;
        let d = &parse(value).unwrap()[0];
        assert_eq!(
            (d.index, d.numa, d.health, &*d.mode, d.count),
            (0, 0, false, "", 0)
        );
        assert_eq!(render_json(std::slice::from_ref(d)), r#"[{"id":"GPU-a"}]"#);
        assert_eq!(parse("null").unwrap(), vec![]);
        assert_eq!(parse("[]").unwrap(), vec![]);
    }

    #[test]
    fn seed_lab_register_entry() {
        let value = r#"[{"id":"GPU-hami-sim-worker-0","count":10,"devmem":81920,"devcore":100,"type":"NVIDIA-H100-80GB-HBM3","mode":"hami-core","health":true}]"#;
        let d = parse(value).unwrap();
        assert_eq!(d[0].devmem, 81920);
        assert_eq!(render_json(&d), value);
    }

    #[test]
    fn json_errors_name_the_field() {
        let err = parse(r#"[{"id":"GPU-a","devmem":"abc"}]"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("[0].devmem"), "{err}");
        let err = parse(r#"[{"id":"GPU-a"},{"id":"GPU-b","devmem":-5}]"#)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("[1]") && err.contains("devmem") && err.contains("-5"),
            "{err}"
        );
        let err = parse(r#"[{"id":"GPU-a","count":4294967296}]"#)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("count") && err.contains("out of range"),
            "{err}"
        );
        assert!(parse("[{}] trailing").is_err());
        assert!(parse("[").is_err());
    }

    #[test]
    fn spec_text_examples() {
        let seven = "GPU-9a3603f4-f66e-d48b-11ea-13e327064cca,10,15360,100,NVIDIA-Tesla T4,0,true:";
        assert_eq!(parse(seven).unwrap(), vec![t4()]);
        let nine = "GPU-ca904b47-ae7c-20b9-4be2-bf85f75cbf40,10,16376,100,NVIDIA-NVIDIA RTX A4000,0,true,0,hami-core:";
        let d = parse(nine).unwrap();
        assert_eq!(d[0].devmem, 16376);
        assert_eq!(&*d[0].device_type, "NVIDIA-NVIDIA RTX A4000");
        assert_eq!(render_text(&d).unwrap(), nine);
        assert_eq!(parse(":").unwrap(), vec![]);
        assert_eq!(parse("::").unwrap(), vec![]);
    }

    #[test]
    fn text_errors_follow_hami_rules_and_name_the_field() {
        assert_eq!(
            parse("GPU-0,10,15360").unwrap_err().to_string(),
            "node annotation missing device separator ':' in \"GPU-0,10,15360\""
        );
        assert_eq!(
            parse("abc:").unwrap_err().to_string(),
            "malformed node annotation segment: \"abc\""
        );
        assert!(
            parse("a,b,c:")
                .unwrap_err()
                .to_string()
                .starts_with("unexpected field count 3")
        );
        assert!(
            parse("a,1,2,3,t,0,true,0:")
                .unwrap_err()
                .to_string()
                .starts_with("unexpected field count 8")
        );
        let err = parse("GPU-0,10,abc,100,T4,0,true:")
            .unwrap_err()
            .to_string();
        assert_eq!(err, "invalid memory field \"abc\": not an integer");
        for (value, field) in [
            ("GPU-0,x,1,100,T4,0,true:", "count"),
            ("GPU-0,1,1,x,T4,0,true:", "core"),
            ("GPU-0,1,1,1,T4,x,true:", "numa"),
            ("GPU-0,1,1,1,T4,0,yes:", "health"),
            ("GPU-0,1,1,1,T4,0,true,-1,hami-core:", "index"),
        ] {
            let err = parse(value).unwrap_err().to_string();
            assert!(
                err.starts_with(&format!("invalid {field} field")),
                "{value}: {err}"
            );
        }
    }

    #[test]
    fn text_render_is_read_back_by_parse_for_empty_lists_and_bracketed_ids() {
        // Found by the harness's codec round-trip property (invariants/tests/codec_properties.rs):
        // `render_text(&[])` was "" (which `parse` rejects) and an id starting with '[' made the
        // value parse as JSON.
        assert_eq!(render_text(&[]).unwrap(), ":");
        assert_eq!(parse(&render_text(&[]).unwrap()).unwrap(), vec![]);
        let mut d = t4();
        d.id = " [GPU-0".into();
        let rendered = render_text(std::slice::from_ref(&d)).unwrap();
        assert!(rendered.starts_with(':'), "{rendered}");
        assert_eq!(parse(&rendered).unwrap(), vec![d]);
    }

    #[test]
    fn text_render_refuses_numbers_beyond_int32() {
        let mut d = t4();
        d.devmem = i32::MAX as u32 + 1;
        let err = render_text(&[d]).unwrap_err();
        assert_eq!(err.field, "memory");
        assert!(err.to_string().contains("2147483648"), "{err}");
    }

    #[test]
    fn text_render_refuses_separators() {
        let mut d = t4();
        d.device_type = "a:b".into();
        assert_eq!(render_text(&[d]).unwrap_err().field, "type");
    }
}
