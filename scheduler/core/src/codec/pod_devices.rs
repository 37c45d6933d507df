//! `hami.io/vgpu-devices-to-allocate` and `hami.io/vgpu-devices-allocated`: devices per container.
//!
//! Format (spec §1.3): a device is `<UUID>,<backend>,<MiB>,<cores>:`; a container is its devices
//! followed by `;`; init containers come first. A container without devices is empty, so it writes
//! just `;`. Examples: `GPU-a,NVIDIA,4096,0:;` and `;GPU-b,NVIDIA,6144,30:;`.
//!
//! Decoding keeps HAMi's rules: empty containers are kept, only `:`-pieces containing `,` are read,
//! at least four comma fields are needed and extra fields are ignored, and any error fails the whole
//! value. Two deliberate differences:
//! - the empty piece after the final `;` is a terminator, not a container, so
//!   `parse(render(x)) == x` (HAMi's decoder yields an extra trailing empty container);
//! - memory and cores must be integers in `0..=i32::MAX`; HAMi's `Atoi` accepts negative numbers,
//!   which would subtract usage from a device and let it be over-committed.

use super::{FieldError, Quoted, parse_go_u31};
use crate::model::{ContainerDevice, PodDevices};

/// Why a pod device annotation could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PodDevicesError {
    /// A device entry with fewer than four fields (HAMi's message, with the entry).
    #[error(
        "pod annotation format error, missing fields, do not use nodeName in task spec: device entry {0} needs uuid,type,memory,cores"
    )]
    MissingFields(Quoted),
    /// A memory or cores field that does not parse.
    #[error(transparent)]
    Field(#[from] FieldError),
}

/// Parses a pod device annotation.
pub fn parse(value: &str) -> Result<PodDevices, PodDevicesError> {
    let mut pieces: Vec<&str> = value.split(';').collect();
    if pieces.len() > 1 && pieces.last().is_some_and(|p| p.is_empty()) {
        pieces.pop();
    }
    if value.is_empty() {
        return Ok(PodDevices::default());
    }
    let mut containers = Vec::with_capacity(pieces.len());
    for piece in pieces {
        let mut devices = Vec::new();
        for entry in piece.split(':').filter(|e| e.contains(',')) {
            let fields: Vec<&str> = entry.split(',').collect();
            let [uuid, backend, mem, cores, ..] = fields.as_slice() else {
                return Err(PodDevicesError::MissingFields(Quoted::new(entry)));
            };
            devices.push(ContainerDevice {
                uuid: (*uuid).to_string(),
                backend: (*backend).to_string(),
                usedmem: parse_go_u31("memory", mem)?,
                usedcores: parse_go_u31("core", cores)?,
            });
        }
        containers.push(devices);
    }
    Ok(PodDevices(containers))
}

/// Renders a pod device annotation. Fails when a UUID or backend holds `,`, `:` or `;`, or when
/// memory or cores exceed `i32::MAX`, which the format cannot carry (the parser would refuse them).
pub fn render(devices: &PodDevices) -> Result<String, FieldError> {
    let mut out = String::new();
    for container in &devices.0 {
        for d in container {
            for (field, value) in [("uuid", &d.uuid), ("type", &d.backend)] {
                if value.contains([',', ':', ';']) {
                    return Err(FieldError::new(
                        field,
                        value,
                        "contains ',', ':' or ';', which the format cannot carry",
                    ));
                }
            }
            for (field, value) in [("memory", d.usedmem), ("core", d.usedcores)] {
                if value > i32::MAX as u32 {
                    return Err(FieldError::new(
                        field,
                        &value.to_string(),
                        "out of range (at most 2147483647)",
                    ));
                }
            }
            out.push_str(&format!(
                "{},{},{},{}:",
                d.uuid, d.backend, d.usedmem, d.usedcores
            ));
        }
        out.push(';');
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dev(uuid: &str, mem: u32, cores: u32) -> ContainerDevice {
        ContainerDevice {
            uuid: uuid.into(),
            backend: "NVIDIA".into(),
            usedmem: mem,
            usedcores: cores,
        }
    }

    #[test]
    fn spec_examples() {
        let one = "GPU-2409b7b6-2df6-0343-90dd-2d73da18e0e8,NVIDIA,4096,0:;";
        let parsed = parse(one).unwrap();
        assert_eq!(
            parsed,
            PodDevices(vec![vec![dev(
                "GPU-2409b7b6-2df6-0343-90dd-2d73da18e0e8",
                4096,
                0
            )]])
        );
        assert_eq!(render(&parsed).unwrap(), one);

        let empty_first = ";GPU-9b9030a3-d81f-7d9f-5d2b-fd98cdc57b2d,NVIDIA,6144,30:;";
        let parsed = parse(empty_first).unwrap();
        assert_eq!(
            parsed,
            PodDevices(vec![
                vec![],
                vec![dev("GPU-9b9030a3-d81f-7d9f-5d2b-fd98cdc57b2d", 6144, 30)]
            ])
        );
        assert_eq!(render(&parsed).unwrap(), empty_first);

        let two = "UUID1,Type1,1000,30:UUID2,Type1,1000,30:;";
        let parsed = parse(two).unwrap();
        assert_eq!(parsed.0.len(), 1);
        assert_eq!(parsed.0[0].len(), 2);
        assert_eq!(parsed.0[0][1].backend, "Type1");
        assert_eq!(render(&parsed).unwrap(), two);

        let lifecycle = "GPU-aaa,NVIDIA,3000,30:;";
        assert_eq!(parse(lifecycle).unwrap().0[0][0], dev("GPU-aaa", 3000, 30));
    }

    /// Only a trailing `;` terminates the list: without it the last container is still a
    /// container (HAMi's writer always ends with `;`, a hand-written value may not).
    #[test]
    fn the_last_container_counts_without_a_trailing_separator() {
        let parsed = parse("GPU-a,NVIDIA,1000,30:;GPU-b,NVIDIA,2000,40:").unwrap();
        assert_eq!(
            parsed,
            PodDevices(vec![
                vec![dev("GPU-a", 1000, 30)],
                vec![dev("GPU-b", 2000, 40)]
            ])
        );
        assert_eq!(
            parse("GPU-a,NVIDIA,1000,30:").unwrap(),
            PodDevices(vec![vec![dev("GPU-a", 1000, 30)]])
        );
    }

    #[test]
    fn erased_annotations_keep_their_empty_containers() {
        assert_eq!(parse(";;").unwrap(), PodDevices(vec![vec![], vec![]]));
        assert_eq!(
            parse(";;;").unwrap(),
            PodDevices(vec![vec![], vec![], vec![]])
        );
        assert_eq!(parse(";").unwrap(), PodDevices(vec![vec![]]));
        assert_eq!(parse("").unwrap(), PodDevices(vec![]));
        assert_eq!(render(&PodDevices(vec![vec![], vec![]])).unwrap(), ";;");
    }

    #[test]
    fn hami_leniency_is_kept() {
        // No trailing ';': still one container. Extra fields ignored. Pieces without ',' skipped.
        assert_eq!(
            parse("GPU-a,NVIDIA,1,2").unwrap(),
            PodDevices(vec![vec![dev("GPU-a", 1, 2)]])
        );
        assert_eq!(
            parse("GPU-a,NVIDIA,1,2,extra:;").unwrap(),
            PodDevices(vec![vec![dev("GPU-a", 1, 2)]])
        );
        assert_eq!(
            parse("junk:GPU-a,NVIDIA,1,2:;").unwrap(),
            PodDevices(vec![vec![dev("GPU-a", 1, 2)]])
        );
    }

    #[test]
    fn errors_name_the_field_and_value() {
        assert!(
            parse("GPU-a,NVIDIA,1:;")
                .unwrap_err()
                .to_string()
                .starts_with("pod annotation format error, missing fields")
        );
        assert_eq!(
            parse("GPU-a,NVIDIA,x,1:;").unwrap_err().to_string(),
            "invalid memory field \"x\": not an integer"
        );
        assert_eq!(
            parse("GPU-a,NVIDIA,1,-3:;").unwrap_err().to_string(),
            "invalid core field \"-3\": must not be negative"
        );
        assert!(
            parse(";GPU-a,NVIDIA,1,99999999999:;")
                .unwrap_err()
                .to_string()
                .contains("out of range")
        );
    }

    #[test]
    fn render_refuses_numbers_the_parser_would_refuse() {
        // Found by the harness's codec round-trip property (invariants/tests/codec_properties.rs):
        // cores of 2147483648 rendered, then failed to parse.
        let pd = PodDevices(vec![vec![dev("GPU-0", 0, i32::MAX as u32 + 1)]]);
        let err = render(&pd).unwrap_err();
        assert_eq!(err.field, "core");
        let pd = PodDevices(vec![vec![dev("GPU-0", u32::MAX, 0)]]);
        assert_eq!(render(&pd).unwrap_err().field, "memory");
        let edge = PodDevices(vec![vec![dev("GPU-0", i32::MAX as u32, i32::MAX as u32)]]);
        assert_eq!(parse(&render(&edge).unwrap()).unwrap(), edge);
    }

    #[test]
    fn render_refuses_separators() {
        let pd = PodDevices(vec![vec![dev("GPU;a", 1, 1)]]);
        assert_eq!(render(&pd).unwrap_err().field, "uuid");
    }
}
