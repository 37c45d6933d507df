//! Go's `time.Duration` text: `String()` and `ParseDuration`.

use jiff::SignedDuration;

/// Formats like Go's `Duration.String`: `5m0s`, `1h0m0s`, `1.5s`, `300ms`, `0s`.
pub fn format(duration: SignedDuration) -> String {
    let nanos = duration.as_nanos();
    if nanos == 0 {
        return "0s".into();
    }
    let sign = if duration.is_negative() { "-" } else { "" };
    let abs = nanos.unsigned_abs();
    if abs < 1_000_000_000 {
        let (unit, scale) = if abs < 1_000 {
            ("ns", 1)
        } else if abs < 1_000_000 {
            ("µs", 1_000)
        } else {
            ("ms", 1_000_000)
        };
        return format!("{sign}{}{unit}", fraction(abs, scale));
    }
    let hours = abs / 3_600_000_000_000;
    let minutes = (abs / 60_000_000_000) % 60;
    let seconds = fraction(abs % 60_000_000_000, 1_000_000_000);
    if hours > 0 {
        format!("{sign}{hours}h{minutes}m{seconds}s")
    } else if minutes > 0 {
        format!("{sign}{minutes}m{seconds}s")
    } else {
        format!("{sign}{seconds}s")
    }
}

fn fraction(value: u128, scale: u128) -> String {
    let whole = value / scale;
    let rest = value % scale;
    if rest == 0 {
        return whole.to_string();
    }
    let width = scale.ilog10() as usize;
    let digits = format!("{rest:0width$}");
    format!("{whole}.{}", digits.trim_end_matches('0'))
}

/// Why a duration does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid duration {value:?}: {problem} (expected Go syntax like 5m, 30s, 1h30m, 500ms)")]
pub struct DurationError {
    /// The text.
    pub value: String,
    /// What is wrong.
    pub problem: &'static str,
}

/// Parses Go's duration syntax: an optional sign, then one or more `<decimal><unit>` with units
/// `ns`, `us` (`µs`, `μs`), `ms`, `s`, `m`, `h`; `0` alone is zero.
pub fn parse(value: &str) -> Result<SignedDuration, DurationError> {
    let err = |problem| DurationError {
        value: value.to_string(),
        problem,
    };
    let (negative, mut rest) = match value.as_bytes().first() {
        Some(b'-') => (true, &value[1..]),
        Some(b'+') => (false, &value[1..]),
        _ => (false, value),
    };
    if rest == "0" {
        return Ok(SignedDuration::ZERO);
    }
    if rest.is_empty() {
        return Err(err("empty"));
    }
    let mut total: u128 = 0;
    while !rest.is_empty() {
        let int_len = rest.bytes().take_while(u8::is_ascii_digit).count();
        let (int_part, after) = rest.split_at(int_len);
        let (frac_part, after) = match after.strip_prefix('.') {
            Some(f) => {
                let n = f.bytes().take_while(u8::is_ascii_digit).count();
                f.split_at(n)
            }
            None => ("", after),
        };
        if int_part.is_empty() && frac_part.is_empty() {
            return Err(err("expected a number"));
        }
        let unit_len = after
            .char_indices()
            .find(|(_, c)| c.is_ascii_digit() || *c == '.')
            .map_or(after.len(), |(i, _)| i);
        let (unit, after) = after.split_at(unit_len);
        let scale: u128 = match unit {
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            "" => return Err(err("missing unit")),
            _ => return Err(err("unknown unit")),
        };
        let whole: u128 = if int_part.is_empty() {
            0
        } else {
            int_part.parse().map_err(|_| err("number out of range"))?
        };
        let mut part = whole.checked_mul(scale).ok_or(err("out of range"))?;
        if !frac_part.is_empty() {
            // At most 18 digits, as Go's `leadingFraction` keeps (it stops below 2^63): the
            // numerator stays under 10^18, so numerator × 3.6e12 (an hour) fits a u128.
            let digits = &frac_part[..frac_part.len().min(18)];
            let numerator: u128 = digits.parse().map_err(|_| err("bad fraction"))?;
            let denominator = 10u128.pow(digits.len() as u32);
            part += numerator * scale / denominator;
        }
        total = total.checked_add(part).ok_or(err("out of range"))?;
        if total > i64::MAX as u128 {
            return Err(err("out of range"));
        }
        rest = after;
    }
    let nanos = i64::try_from(total).map_err(|_| err("out of range"))?;
    let nanos = if negative { -nanos } else { nanos };
    Ok(SignedDuration::from_nanos(nanos))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::go_duration;

    #[test]
    fn go_duration_formats_like_go() {
        let cases = [
            (SignedDuration::from_mins(5), "5m0s"),
            (SignedDuration::from_secs(28), "28s"),
            (SignedDuration::from_hours(1), "1h0m0s"),
            (SignedDuration::from_secs(90), "1m30s"),
            (SignedDuration::from_millis(1500), "1.5s"),
            (SignedDuration::from_millis(300), "300ms"),
            (SignedDuration::from_micros(1500), "1.5ms"),
            (SignedDuration::from_nanos(1500), "1.5µs"),
            (SignedDuration::from_nanos(7), "7ns"),
            (SignedDuration::ZERO, "0s"),
            (SignedDuration::from_secs(-61), "-1m1s"),
            (SignedDuration::from_secs(3723), "1h2m3s"),
            // Each unit from exactly its first value (Go switches unit at 1µs, 1ms and 1s).
            (SignedDuration::from_nanos(999), "999ns"),
            (SignedDuration::from_nanos(1_000), "1µs"),
            (SignedDuration::from_nanos(999_999), "999.999µs"),
            (SignedDuration::from_nanos(1_000_000), "1ms"),
            (SignedDuration::from_nanos(999_999_999), "999.999999ms"),
            (SignedDuration::from_secs(1), "1s"),
            (SignedDuration::from_secs(-1), "-1s"),
            (SignedDuration::from_nanos(-1), "-1ns"),
            (SignedDuration::from_secs(59), "59s"),
            (SignedDuration::from_secs(60), "1m0s"),
            (SignedDuration::from_secs(3599), "59m59s"),
            (SignedDuration::from_secs(3600), "1h0m0s"),
        ];
        for (d, text) in cases {
            assert_eq!(go_duration::format(d), text);
            assert_eq!(go_duration::parse(text), Ok(d), "{text}");
        }
        assert_eq!(
            go_duration::parse("1h30m"),
            Ok(SignedDuration::from_mins(90))
        );
        assert_eq!(
            go_duration::parse(".5s"),
            Ok(SignedDuration::from_millis(500))
        );
        assert_eq!(
            go_duration::parse("2us"),
            Ok(SignedDuration::from_micros(2))
        );
        assert_eq!(go_duration::parse("0"), Ok(SignedDuration::ZERO));
        // Found writing the `go_duration` fuzz target: a 30-digit fraction times the unit overflowed
        // a u128 (a panic with overflow checks, a wrong value without).
        assert_eq!(
            go_duration::parse("1.999999999999999999999999999999h"),
            Ok(SignedDuration::from_nanos(7_199_999_999_999))
        );
        assert_eq!(
            go_duration::parse("0.123456789012345678901234567890s"),
            Ok(SignedDuration::from_nanos(123_456_789))
        );
        for bad in ["", "5", "5x", "m", "-", "1.s5", ".s", "99999999999h", "5 m"] {
            let err = go_duration::parse(bad).unwrap_err();
            assert!(
                err.to_string().contains(&format!("{bad:?}")),
                "{bad}: {err}"
            );
        }
    }

    /// A number without a unit is Go's "missing unit", apart from a bare `0`.
    #[test]
    fn a_number_without_a_unit_is_a_missing_unit() {
        for text in ["5", "1h5", "1.5"] {
            assert_eq!(
                go_duration::parse(text).unwrap_err().problem,
                "missing unit",
                "{text}"
            );
        }
        assert_eq!(
            go_duration::parse("5x").unwrap_err().problem,
            "unknown unit"
        );
        assert_eq!(go_duration::parse("0"), Ok(SignedDuration::ZERO));
    }
}
