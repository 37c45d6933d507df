//! `hami.io/node-handshake`: the scheduler's stamp on a registered node.
//!
//! HAMi v2.10 writes `Requesting_<YYYY-MM-DD HH:MM:SS>` (Go `time.DateTime`); older releases also
//! wrote `Deleted_<same>` and, from the plugin, `Reported <time.String()>` (spec §1.1). sliceguard
//! does not gate registration on the handshake (it reads the register annotation directly); it writes
//! `Requesting_` when registering nodes and reads every form for diagnostics.

use super::Quoted;
use jiff::civil::DateTime;

/// A parsed handshake.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Handshake {
    /// `Requesting_<YYYY-MM-DD HH:MM:SS>`.
    Requesting(DateTime),
    /// `Deleted_<YYYY-MM-DD HH:MM:SS>` (≤ v2.9).
    Deleted(DateTime),
    /// `Reported <anything>` (≤ v2.7, written by the plugin).
    Reported(String),
}

/// Why a handshake could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HandshakeError {
    /// Not one of the known states.
    #[error(
        "invalid handshake {0}: expected Requesting_<YYYY-MM-DD HH:MM:SS>, Deleted_<...> or Reported <...>"
    )]
    State(Quoted),
    /// The time is not Go's `time.DateTime` (e.g. the seed lab's dotted `2026.07.27 18:22:36`).
    #[error("invalid handshake time field {0}: expected YYYY-MM-DD HH:MM:SS")]
    Time(Quoted),
}

/// Parses a handshake.
pub fn parse(value: &str) -> Result<Handshake, HandshakeError> {
    if let Some(rest) = value.strip_prefix("Requesting_") {
        return parse_datetime(rest).map(Handshake::Requesting);
    }
    if let Some(rest) = value.strip_prefix("Deleted_") {
        return parse_datetime(rest).map(Handshake::Deleted);
    }
    if let Some(rest) = value.strip_prefix("Reported ") {
        return Ok(Handshake::Reported(rest.to_string()));
    }
    Err(HandshakeError::State(Quoted::new(value)))
}

/// Renders a handshake.
pub fn render(handshake: &Handshake) -> String {
    match handshake {
        Handshake::Requesting(dt) => format!("Requesting_{}", render_datetime(*dt)),
        Handshake::Deleted(dt) => format!("Deleted_{}", render_datetime(*dt)),
        Handshake::Reported(rest) => format!("Reported {rest}"),
    }
}

fn render_datetime(dt: DateTime) -> String {
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
        dt.year(),
        dt.month(),
        dt.day(),
        dt.hour(),
        dt.minute(),
        dt.second()
    )
}

fn parse_datetime(value: &str) -> Result<DateTime, HandshakeError> {
    let err = || HandshakeError::Time(Quoted::new(value));
    let b = value.as_bytes();
    if b.len() != 19
        || !value.is_ascii()
        || b[4] != b'-'
        || b[7] != b'-'
        || b[10] != b' '
        || b[13] != b':'
        || b[16] != b':'
    {
        return Err(err());
    }
    let num = |r: std::ops::Range<usize>| -> Result<i16, HandshakeError> {
        let s = &value[r];
        if !s.bytes().all(|c| c.is_ascii_digit()) {
            return Err(err());
        }
        s.parse::<i16>().map_err(|_| err())
    };
    let (y, mo, d, h, mi, s) = (
        num(0..4)?,
        num(5..7)?,
        num(8..10)?,
        num(11..13)?,
        num(14..16)?,
        num(17..19)?,
    );
    DateTime::new(y, mo as i8, d as i8, h as i8, mi as i8, s as i8, 0).map_err(|_| err())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms() {
        let v = "Requesting_2026-07-27 18:22:36";
        let h = parse(v).unwrap();
        assert_eq!(
            h,
            Handshake::Requesting(jiff::civil::date(2026, 7, 27).at(18, 22, 36, 0))
        );
        assert_eq!(render(&h), v);
        assert_eq!(
            render(&parse("Deleted_2025-01-02 03:04:05").unwrap()),
            "Deleted_2025-01-02 03:04:05"
        );
        let r = "Reported 2024-01-01 00:00:00.123 +0000 UTC m=+1.0";
        assert_eq!(render(&parse(r).unwrap()), r);
    }

    #[test]
    fn the_seed_labs_dotted_date_is_rejected_with_the_field_named() {
        let err = parse("Requesting_2026.07.27 18:22:36")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("handshake time field") && err.contains("2026.07.27"),
            "{err}"
        );
        assert!(parse("Requesting_2026-02-30 00:00:00").is_err());
        assert!(
            parse("Hello")
                .unwrap_err()
                .to_string()
                .contains("invalid handshake")
        );
    }

    /// Each separator of `YYYY-MM-DD hh:mm:ss` is checked on its own, and a time of another length
    /// (shorter, longer, or as long in bytes but not ASCII) is refused before any field is read.
    #[test]
    fn every_separator_and_the_length_are_checked() {
        assert!(parse("Requesting_2025-01-02 03:04:05").is_ok());
        for bad in [
            "2025/01-02 03:04:05",
            "2025-01/02 03:04:05",
            "2025-01-02T03:04:05",
            "2025-01-02 03.04:05",
            "2025-01-02 03:04.05",
            "2025-01-02",
            "2025-01-02 03:04:05Z",
            "2025-01-02 03:04:é",
            "",
        ] {
            let handshake = format!("Requesting_{bad}");
            assert!(parse(&handshake).is_err(), "{handshake}");
        }
    }
}
