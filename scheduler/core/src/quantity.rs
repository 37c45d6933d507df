//! Kubernetes resource quantities, read exactly enough to answer HAMi's question: "is this an
//! integer, and which one?" (Go `resource.Quantity.AsInt64`).
//!
//! Grammar (k8s.io/apimachinery `resource.ParseQuantity`): `[+-]digits[.digits][suffix]` where the
//! suffix is a binary SI (`Ki Mi Gi Ti Pi Ei`), a decimal SI (`n u m k M G T P E`) or an exponent
//! (`e3`, `E-2`). `1k` is 1000, `16Gi` is 17179869184, `0.5` and `100m` are not integers.

/// Why a quantity is not an integer we can use.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuantityError {
    /// Not a Kubernetes quantity at all.
    #[error("{0:?} is not a Kubernetes quantity")]
    Syntax(String),
    /// A valid quantity with a fractional value (e.g. `0.5`, `100m`).
    #[error("{0:?} is not a whole number")]
    Fraction(String),
    /// Beyond 64-bit range.
    #[error("{0:?} is too large")]
    Overflow(String),
}

/// The exact integer value of a quantity, if it has one.
pub fn parse_integer(quantity: &str) -> Result<i64, QuantityError> {
    let syntax = || QuantityError::Syntax(quantity.to_string());
    let (negative, rest) = match quantity.as_bytes().first() {
        Some(b'-') => (true, &quantity[1..]),
        Some(b'+') => (false, &quantity[1..]),
        _ => (false, quantity),
    };
    let int_len = rest.bytes().take_while(u8::is_ascii_digit).count();
    let (int_part, after_int) = rest.split_at(int_len);
    let (frac_part, suffix) = match after_int.strip_prefix('.') {
        Some(f) => {
            let n = f.bytes().take_while(u8::is_ascii_digit).count();
            f.split_at(n)
        }
        None => ("", after_int),
    };
    if int_part.is_empty() && frac_part.is_empty() {
        return Err(syntax());
    }
    // Multiplier as (power of two, power of ten).
    let (pow2, pow10): (u32, i32) = match suffix {
        "" => (0, 0),
        "Ki" => (10, 0),
        "Mi" => (20, 0),
        "Gi" => (30, 0),
        "Ti" => (40, 0),
        "Pi" => (50, 0),
        "Ei" => (60, 0),
        "n" => (0, -9),
        "u" => (0, -6),
        "m" => (0, -3),
        "k" => (0, 3),
        "M" => (0, 6),
        "G" => (0, 9),
        "T" => (0, 12),
        "P" => (0, 15),
        "E" => (0, 18),
        s if s.starts_with(['e', 'E']) => {
            let exp = &s[1..];
            let digits = exp.strip_prefix(['+', '-']).unwrap_or(exp);
            // At most four digits, so the exponent cannot run the multiplication below for long;
            // an empty exponent (`1e`, `1e+`) fails the parse.
            if !digits.bytes().all(|b| b.is_ascii_digit()) || digits.len() > 4 {
                return Err(syntax());
            }
            (0, exp.parse::<i32>().map_err(|_| syntax())?)
        }
        _ => return Err(syntax()),
    };
    // value = (int_part.frac_part) * 2^pow2 * 10^pow10; strip zeros to keep numbers small.
    let frac_trimmed = frac_part.trim_end_matches('0');
    let mut mantissa_digits = format!("{int_part}{frac_trimmed}");
    let mut exp10 = pow10 - frac_trimmed.len() as i32;
    let significant = mantissa_digits.trim_start_matches('0').to_string();
    mantissa_digits = significant;
    if mantissa_digits.is_empty() {
        return Ok(0);
    }
    while mantissa_digits.ends_with('0') {
        mantissa_digits.pop();
        exp10 += 1;
    }
    if mantissa_digits.len() > 38 {
        return Err(QuantityError::Overflow(quantity.to_string()));
    }
    let mut value: i128 = mantissa_digits.parse().map_err(|_| syntax())?;
    if exp10 < 0 {
        return Err(QuantityError::Fraction(quantity.to_string()));
    }
    let overflow = || QuantityError::Overflow(quantity.to_string());
    for _ in 0..exp10 {
        value = value
            .checked_mul(10)
            .filter(|v| *v <= i128::from(i64::MAX))
            .ok_or_else(overflow)?;
    }
    value = value
        .checked_mul(1i128 << pow2)
        .filter(|v| *v <= i128::from(i64::MAX))
        .ok_or_else(overflow)?;
    let value = i64::try_from(value).map_err(|_| overflow())?;
    Ok(if negative { -value } else { value })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers() {
        for (q, v) in [
            ("1", 1),
            ("3000", 3000),
            ("+7", 7),
            ("-2", -2),
            ("1k", 1000),
            ("16Gi", 17179869184),
            ("1Ki", 1024),
            ("1.5k", 1500),
            ("1000m", 1),
            ("2e3", 2000),
            ("2E+3", 2000),
            ("0", 0),
            ("0.0", 0),
            ("00010", 10),
            ("1.", 1),
            (".5k", 500),
            ("1E", 1_000_000_000_000_000_000),
            ("7Ei", 7 << 60),
        ] {
            assert_eq!(parse_integer(q), Ok(v), "{q}");
        }
    }

    /// Every suffix of the grammar with its exact multiplier, so a lost or mistyped arm shows.
    #[test]
    fn every_suffix_has_its_multiplier() {
        for (suffix, multiplier) in [
            ("Ki", 1i64 << 10),
            ("Mi", 1 << 20),
            ("Gi", 1 << 30),
            ("Ti", 1 << 40),
            ("Pi", 1 << 50),
            ("Ei", 1 << 60),
            ("k", 1_000),
            ("M", 1_000_000),
            ("G", 1_000_000_000),
            ("T", 1_000_000_000_000),
            ("P", 1_000_000_000_000_000),
            ("E", 1_000_000_000_000_000_000),
        ] {
            assert_eq!(
                parse_integer(&format!("3{suffix}")),
                Ok(3 * multiplier),
                "3{suffix}"
            );
        }
        for (quantity, value) in [
            ("2000000n", None),
            ("3000000000n", Some(3)),
            ("5000000u", Some(5)),
            ("7000m", Some(7)),
        ] {
            match value {
                Some(v) => assert_eq!(parse_integer(quantity), Ok(v), "{quantity}"),
                None => assert!(
                    matches!(parse_integer(quantity), Err(QuantityError::Fraction(_))),
                    "{quantity}"
                ),
            }
        }
        assert!(matches!(
            parse_integer("1u"),
            Err(QuantityError::Fraction(_))
        ));
    }

    /// An exponent of more than four digits is refused as syntax before any arithmetic, even when
    /// every digit is valid; one of four digits is read (and overflows).
    #[test]
    fn long_exponents_are_syntax_errors() {
        for q in ["1e12345", "1E+00001", "1e-12345"] {
            assert!(
                matches!(parse_integer(q), Err(QuantityError::Syntax(_))),
                "{q}"
            );
        }
        assert!(matches!(
            parse_integer("1e9999"),
            Err(QuantityError::Overflow(_))
        ));
        assert_eq!(parse_integer("1e0018"), Ok(1_000_000_000_000_000_000));
    }

    #[test]
    fn non_integers_and_garbage() {
        for q in ["0.5", "100m", "1n", "1e-3", "1.0001"] {
            assert!(
                matches!(parse_integer(q), Err(QuantityError::Fraction(_))),
                "{q}"
            );
        }
        for q in [
            "", "abc", "1x", "1 ", " 1", "1Kii", "e3", ".", "+", "1e", "--1", "1.2.3",
        ] {
            assert!(
                matches!(parse_integer(q), Err(QuantityError::Syntax(_))),
                "{q}"
            );
        }
        for q in [
            "99999999999999999999",
            "8Ei",
            "1e99999",
            "9e18k",
            "99999999999999999999999999999999999999999",
        ] {
            assert!(parse_integer(q).is_err(), "{q}");
        }
        // More than 38 significant digits is an overflow, whatever they are; 38 are read exactly,
        // so a fraction of 38 digits is a fraction.
        for q in [
            "99999999999999999999999999999999999999999",
            "123456789012345678901234567890123456789",
        ] {
            assert!(
                matches!(parse_integer(q), Err(QuantityError::Overflow(_))),
                "{q}"
            );
        }
        let fraction_of_38_digits = "0.12345678901234567890123456789012345678";
        assert!(matches!(
            parse_integer(fraction_of_38_digits),
            Err(QuantityError::Fraction(_))
        ));
    }
}
