//! Every wire format of the protocol, each a `parse`/`render` pair.
//!
//! | format | module |
//! |---|---|
//! | `hami.io/node-nvidia-register`, JSON (v2.8+) and legacy text | [`register`] |
//! | `hami.io/vgpu-devices-{to-allocate,allocated}` | [`pod_devices`] |
//! | `hami.io/mutex.lock` (`RFC3339,ns,name` and bare RFC3339) | [`lock`] |
//! | `hami.io/node-handshake` | [`handshake`] |
//! | reason lists (`1/2 CardInsufficientMemory, ...`) | [`reasons`] |
//! | Go's `time.Duration` text (`5m0s`, `1h30m`), a `format`/`parse` pair | [`go_duration`] |
//!
//! Parsers never panic, never index out of bounds and never overflow; every error names the field
//! and quotes the bad value (shortened when long). `parse(render(x)) == x` holds for every value a
//! renderer accepts; the harness checks it by property and by fuzzing.

pub mod go_duration;
pub mod handshake;
pub mod lock;
pub mod pod_devices;
pub mod reasons;
pub mod register;

use std::fmt;

/// The longest quoted value an error message carries before it is shortened.
const QUOTE_LIMIT: usize = 80;

/// A value quoted for an error message: Rust debug quoting, shortened to [`QUOTE_LIMIT`] characters.
#[derive(Clone, PartialEq, Eq)]
pub struct Quoted(pub String);

impl Quoted {
    /// Quotes `value`, keeping at most [`QUOTE_LIMIT`] characters of it.
    pub fn new(value: &str) -> Self {
        let mut chars = value.chars();
        let head: String = chars.by_ref().take(QUOTE_LIMIT).collect();
        if chars.next().is_some() {
            Quoted(format!("{head:?}… ({} bytes)", value.len()))
        } else {
            Quoted(format!("{head:?}"))
        }
    }
}

impl fmt::Debug for Quoted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Display for Quoted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A field that does not hold what its format requires, e.g. `invalid memory field "abc": not an integer`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {field} field {value}: {problem}")]
pub struct FieldError {
    /// The field's name as HAMi's messages spell it (`memory`, `core`, `count`, ...).
    pub field: &'static str,
    /// The bad value, quoted.
    pub value: Quoted,
    /// What is wrong with it.
    pub problem: String,
}

impl FieldError {
    /// Builds the error for `field` holding `value`.
    pub fn new(field: &'static str, value: &str, problem: impl Into<String>) -> Self {
        FieldError {
            field,
            value: Quoted::new(value),
            problem: problem.into(),
        }
    }
}

/// Parses a decimal integer the way Go's `strconv.ParseInt(s, 10, 64)` does (optional sign, ASCII
/// digits only, no spaces or underscores), then requires it to lie in `0..=i32::MAX`, the range of
/// HAMi's `int32` fields that makes sense for a count, memory or cores.
pub fn parse_go_u31(field: &'static str, value: &str) -> Result<u32, FieldError> {
    let digits = value.strip_prefix('+').unwrap_or(value);
    let (negative, digits) = match digits.strip_prefix('-') {
        Some(rest) if !value.starts_with('+') => (true, rest),
        _ => (false, digits),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(FieldError::new(field, value, "not an integer"));
    }
    if negative {
        if digits.bytes().all(|b| b == b'0') {
            return Ok(0);
        }
        return Err(FieldError::new(field, value, "must not be negative"));
    }
    let significant = digits.trim_start_matches('0');
    if significant.len() > 10 {
        return Err(FieldError::new(
            field,
            value,
            "out of range (at most 2147483647)",
        ));
    }
    match significant.parse::<u64>() {
        Ok(n) if n <= i32::MAX as u64 => Ok(n as u32),
        Ok(_) => Err(FieldError::new(
            field,
            value,
            "out of range (at most 2147483647)",
        )),
        Err(_) if significant.is_empty() => Ok(0),
        Err(_) => Err(FieldError::new(field, value, "not an integer")),
    }
}

/// Parses a boolean the way Go's `strconv.ParseBool` does: `1 t T TRUE true True` and
/// `0 f F FALSE false False`.
pub fn parse_go_bool(field: &'static str, value: &str) -> Result<bool, FieldError> {
    match value {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Ok(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Ok(false),
        _ => Err(FieldError::new(
            field,
            value,
            "not a boolean (true/false/1/0/t/f)",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_integers() {
        assert_eq!(parse_go_u31("memory", "15360"), Ok(15360));
        assert_eq!(parse_go_u31("memory", "+7"), Ok(7));
        assert_eq!(parse_go_u31("memory", "-0"), Ok(0));
        assert_eq!(parse_go_u31("memory", "0000000000000000042"), Ok(42));
        assert_eq!(parse_go_u31("memory", "2147483647"), Ok(i32::MAX as u32));
        for bad in [
            "", "+", "-", "abc", " 1", "1 ", "1_000", "0x10", "+-1", "-+1", "1.5", "١",
        ] {
            let err = parse_go_u31("memory", bad).unwrap_err();
            assert_eq!(err.field, "memory", "{bad}");
            assert!(err.to_string().contains("not an integer"), "{bad}: {err}");
        }
        assert!(
            parse_go_u31("core", "-1")
                .unwrap_err()
                .to_string()
                .contains("must not be negative")
        );
        assert!(
            parse_go_u31("core", "2147483648")
                .unwrap_err()
                .to_string()
                .contains("out of range")
        );
        assert!(
            parse_go_u31("core", "99999999999999999999999")
                .unwrap_err()
                .to_string()
                .contains("out of range")
        );
    }

    #[test]
    fn go_booleans() {
        for t in ["1", "t", "T", "TRUE", "true", "True"] {
            assert_eq!(parse_go_bool("health", t), Ok(true));
        }
        for f in ["0", "f", "F", "FALSE", "false", "False"] {
            assert_eq!(parse_go_bool("health", f), Ok(false));
        }
        assert!(
            parse_go_bool("health", "yes")
                .unwrap_err()
                .to_string()
                .contains("invalid health field \"yes\"")
        );
    }

    #[test]
    fn long_values_are_shortened_in_messages() {
        let long = "x".repeat(1000);
        let err = FieldError::new("memory", &long, "not an integer");
        assert!(err.to_string().len() < 200, "{err}");
        assert!(err.to_string().contains("(1000 bytes)"));
    }

    #[test]
    fn a_quoted_value_debugs_as_it_displays() {
        let quoted = Quoted::new("a\"b");
        assert_eq!(format!("{quoted:?}"), r#""a\"b""#);
        assert_eq!(format!("{quoted:?}"), quoted.to_string());
    }
}
