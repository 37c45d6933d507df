//! `hami.io/mutex.lock`: the per-node bind lock.
//!
//! Value `<RFC3339>,<namespace>,<pod>` (e.g. `2025-10-20T03:07:02Z,jingyu-test,gputest-6c77bb77f8-gvtzc`);
//! the legacy form is a bare RFC3339 timestamp with no holder (spec §1.1, §5.2). Parsing follows
//! HAMi's `ParseNodeLock`: no comma means legacy; otherwise exactly three parts. The timestamp is read
//! as Go's `time.Parse(time.RFC3339, ...)` reads it (four-digit year, `T`, optional fraction, `Z` or
//! `±HH:MM`), keeping the written offset so that `parse(render(x)) == x`.
//! sliceguard writes its own locks in UTC; HAMi writes local time. Both are the same instant.

use super::Quoted;
use jiff::Timestamp;
use jiff::civil::DateTime;
use jiff::tz::Offset;
use serde::Serialize;

/// Who holds a lock: the pod the binder took it for.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct LockHolder {
    /// Pod namespace.
    pub namespace: String,
    /// Pod name.
    pub name: String,
}

/// A parsed lock value.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LockValue {
    /// When the lock was taken.
    pub taken_at: Timestamp,
    /// The UTC offset the value was written with, in minutes (0 renders as `Z`).
    pub offset_minutes: i16,
    /// The holder; `None` for the legacy bare-timestamp form, which anyone may release.
    pub holder: Option<LockHolder>,
}

/// Why a lock value could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LockError {
    /// Not one or three comma-separated parts (HAMi's message).
    #[error("malformed lock annotation: expected 3 parts, got {parts} from {value}")]
    Parts {
        /// Parts found.
        parts: usize,
        /// The value.
        value: Quoted,
    },
    /// The timestamp is not RFC3339.
    #[error(
        "invalid lock time field {value}: {problem} (expected RFC3339 like 2006-01-02T15:04:05Z)"
    )]
    Time {
        /// The timestamp text.
        value: Quoted,
        /// What is wrong.
        problem: &'static str,
    },
    /// A namespace or name that the value cannot carry (renderer only).
    #[error("lock holder {field} {value} contains ','")]
    Holder {
        /// `namespace` or `name`.
        field: &'static str,
        /// The value.
        value: Quoted,
    },
}

impl LockValue {
    /// A lock taken now (UTC) for the pod `namespace/name`.
    pub fn new(now: Timestamp, namespace: &str, name: &str) -> Self {
        LockValue {
            taken_at: now,
            offset_minutes: 0,
            holder: Some(LockHolder {
                namespace: namespace.into(),
                name: name.into(),
            }),
        }
    }

    /// True when the lock names this pod.
    pub fn is_held_by(&self, namespace: &str, name: &str) -> bool {
        self.holder
            .as_ref()
            .is_some_and(|h| h.namespace == namespace && h.name == name)
    }

    /// True when more than `timeout` has passed since the lock was taken (HAMi: `now - t > timeout`).
    pub fn is_expired(&self, now: Timestamp, timeout: jiff::SignedDuration) -> bool {
        now.duration_since(self.taken_at) > timeout
    }
}

/// Parses a lock value.
pub fn parse(value: &str) -> Result<LockValue, LockError> {
    if !value.contains(',') {
        let (taken_at, offset_minutes) = parse_rfc3339(value)?;
        return Ok(LockValue {
            taken_at,
            offset_minutes,
            holder: None,
        });
    }
    let parts: Vec<&str> = value.split(',').collect();
    let [time, namespace, name] = parts.as_slice() else {
        return Err(LockError::Parts {
            parts: parts.len(),
            value: Quoted::new(value),
        });
    };
    let (taken_at, offset_minutes) = parse_rfc3339(time)?;
    Ok(LockValue {
        taken_at,
        offset_minutes,
        holder: Some(LockHolder {
            namespace: (*namespace).into(),
            name: (*name).into(),
        }),
    })
}

/// Renders a lock value.
pub fn render(lock: &LockValue) -> Result<String, LockError> {
    let time = render_rfc3339(lock.taken_at, lock.offset_minutes);
    match &lock.holder {
        None => Ok(time),
        Some(h) => {
            for (field, v) in [("namespace", &h.namespace), ("name", &h.name)] {
                if v.contains(',') {
                    return Err(LockError::Holder {
                        field,
                        value: Quoted::new(v),
                    });
                }
            }
            Ok(format!("{time},{},{}", h.namespace, h.name))
        }
    }
}

fn digits(s: &str, what: &'static str, value: &str) -> Result<i32, LockError> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(LockError::Time {
            value: Quoted::new(value),
            problem: what,
        });
    }
    s.parse::<i32>().map_err(|_| LockError::Time {
        value: Quoted::new(value),
        problem: what,
    })
}

/// Parses Go's RFC3339 layout; returns the instant and the written offset in minutes.
pub fn parse_rfc3339(value: &str) -> Result<(Timestamp, i16), LockError> {
    let err = |problem| LockError::Time {
        value: Quoted::new(value),
        problem,
    };
    let bytes = value.as_bytes();
    if bytes.len() < 20 || !value.is_ascii() {
        return Err(err("too short or not ASCII"));
    }
    if bytes[4] != b'-'
        || bytes[7] != b'-'
        || bytes[10] != b'T'
        || bytes[13] != b':'
        || bytes[16] != b':'
    {
        return Err(err("bad layout"));
    }
    let year = digits(&value[0..4], "bad year", value)?;
    let month = digits(&value[5..7], "bad month", value)?;
    let day = digits(&value[8..10], "bad day", value)?;
    let hour = digits(&value[11..13], "bad hour", value)?;
    let minute = digits(&value[14..16], "bad minute", value)?;
    let second = digits(&value[17..19], "bad second", value)?;
    let mut rest = &value[19..];
    let mut nanos = 0i32;
    if let Some(fraction) = rest.strip_prefix('.') {
        let end = fraction.bytes().take_while(u8::is_ascii_digit).count();
        if end == 0 || end > 9 {
            return Err(err("bad fractional second"));
        }
        let scale = 10i32.pow(9 - end as u32);
        nanos = digits(&fraction[..end], "bad fractional second", value)? * scale;
        rest = &fraction[end..];
    }
    let offset_minutes: i16 = match rest.as_bytes() {
        [b'Z'] => 0,
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
            let oh = digits(
                &format!("{}{}", *h1 as char, *h2 as char),
                "bad offset",
                value,
            )?;
            let om = digits(
                &format!("{}{}", *m1 as char, *m2 as char),
                "bad offset",
                value,
            )?;
            if oh > 23 || om > 59 {
                return Err(err("offset out of range"));
            }
            let total = (oh * 60 + om) as i16;
            if *sign == b'-' { -total } else { total }
        }
        _ => return Err(err("missing or bad zone (Z or ±HH:MM)")),
    };
    if hour > 23 || minute > 59 || second > 59 {
        return Err(err("time of day out of range"));
    }
    let datetime = DateTime::new(
        year as i16,
        month as i8,
        day as i8,
        hour as i8,
        minute as i8,
        second as i8,
        nanos,
    )
    .map_err(|_| err("date out of range"))?;
    let offset = Offset::from_seconds(i32::from(offset_minutes) * 60)
        .map_err(|_| err("offset out of range"))?;
    let taken_at = offset
        .to_timestamp(datetime)
        .map_err(|_| err("instant out of range"))?;
    Ok((taken_at, offset_minutes))
}

/// Renders Go's RFC3339 (with a fraction only when the instant has one).
pub fn render_rfc3339(at: Timestamp, offset_minutes: i16) -> String {
    let offset = Offset::from_seconds(i32::from(offset_minutes) * 60).unwrap_or(Offset::UTC);
    let dt = offset.to_datetime(at);
    let mut out = format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
        dt.year(),
        dt.month(),
        dt.day(),
        dt.hour(),
        dt.minute(),
        dt.second()
    );
    let nanos = dt.subsec_nanosecond();
    if nanos != 0 {
        let fraction = format!("{nanos:09}");
        out.push('.');
        out.push_str(fraction.trim_end_matches('0'));
    }
    if offset_minutes == 0 {
        out.push('Z');
    } else {
        let sign = if offset_minutes.is_negative() {
            '-'
        } else {
            '+'
        };
        let abs = offset_minutes.unsigned_abs();
        out.push_str(&format!("{sign}{:02}:{:02}", abs / 60, abs % 60));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_examples() {
        let v = "2025-10-20T03:07:02Z,jingyu-test,gputest-6c77bb77f8-gvtzc";
        let lock = parse(v).unwrap();
        assert_eq!(
            lock.holder,
            Some(LockHolder {
                namespace: "jingyu-test".into(),
                name: "gputest-6c77bb77f8-gvtzc".into()
            })
        );
        assert_eq!(
            lock.taken_at,
            "2025-10-20T03:07:02Z".parse::<Timestamp>().unwrap()
        );
        assert_eq!(render(&lock).unwrap(), v);

        let legacy = "2026-07-03T15:35:10+08:00";
        let lock = parse(legacy).unwrap();
        assert_eq!(lock.holder, None);
        assert_eq!(lock.offset_minutes, 480);
        assert_eq!(
            lock.taken_at,
            "2026-07-03T07:35:10Z".parse::<Timestamp>().unwrap()
        );
        assert_eq!(render(&lock).unwrap(), legacy);

        let lifecycle = "2025-06-05T15:41:28Z,default,mypod";
        assert!(parse(lifecycle).unwrap().is_held_by("default", "mypod"));
    }

    /// Each layout character, each numeric field and each range is checked on its own (cargo-mutants
    /// found these untested: one wrong separator, a `+` sign inside a field, an empty or ten-digit
    /// fraction, and the offset's bounds were all accepted by mutated checks).
    #[test]
    fn every_rfc3339_field_is_checked_on_its_own() {
        let problem = |value: &str| match parse_rfc3339(value) {
            Err(LockError::Time { problem, .. }) => problem,
            other => panic!("{value}: expected a time error, got {other:?}"),
        };
        for (at, bad) in [(4, '/'), (7, '/'), (10, ' '), (13, '.'), (16, '.')] {
            let mut value: Vec<char> = "2025-10-20T03:07:02Z".chars().collect();
            value[at] = bad;
            let value: String = value.into_iter().collect();
            assert_eq!(problem(&value), "bad layout", "{value}");
        }
        assert_eq!(problem("2025-10-20T03:07:+2Z"), "bad second");
        assert_eq!(problem("+025-10-20T03:07:02Z"), "bad year");
        assert_eq!(problem("2025-10-20T03:07:02.Z"), "bad fractional second");
        assert_eq!(
            problem("2025-10-20T03:07:02.1234567891Z"),
            "bad fractional second"
        );
        assert!(parse_rfc3339("2025-10-20T03:07:02.123456789Z").is_ok());
        assert_eq!(problem("2025-10-20T03:07:02+24:00"), "offset out of range");
        assert_eq!(problem("2025-10-20T03:07:02+05:60"), "offset out of range");
        assert_eq!(
            parse_rfc3339("2025-10-20T03:07:02+23:59").unwrap().1,
            23 * 60 + 59
        );
        assert_eq!(
            parse_rfc3339("2025-10-20T03:07:02-23:00").unwrap().1,
            -23 * 60
        );
        assert!(parse_rfc3339("2025-10-20T23:59:59Z").is_ok());
        assert_eq!(problem("2025-10-20T24:07:02Z"), "time of day out of range");
        assert_eq!(problem("2025-10-20T03:60:02Z"), "time of day out of range");
        assert_eq!(problem("2025-10-20T03:07:60Z"), "time of day out of range");
    }

    #[test]
    fn malformed_values_give_hami_messages() {
        assert_eq!(
            parse("2025-10-20T03:07:02Z,ns").unwrap_err().to_string(),
            "malformed lock annotation: expected 3 parts, got 2 from \"2025-10-20T03:07:02Z,ns\""
        );
        assert!(parse("a,b,c,d").unwrap_err().to_string().contains("got 4"));
        for bad in [
            "lock",
            "",
            "2025-10-20 03:07:02Z",
            "2025-13-20T03:07:02Z",
            "2025-02-30T03:07:02Z",
            "2025-10-20T24:07:02Z",
            "2025-10-20T03:07:02",
            "2025-10-20T03:07:02+8:00",
            "2025-10-20T03:07:02.Z",
            "2025-10-20T03:07:02z",
            "2025-10-20T03:07:60Z",
            "２025-10-20T03:07:02Z",
        ] {
            let err = parse(bad).unwrap_err().to_string();
            assert!(err.contains("lock time field"), "{bad}: {err}");
        }
    }

    #[test]
    fn fractions_and_offsets_round_trip() {
        for v in [
            "2025-10-20T03:07:02.5Z",
            "2025-10-20T03:07:02.123456789-05:30,a,b",
            "0001-01-01T00:00:00Z",
        ] {
            assert_eq!(render(&parse(v).unwrap()).unwrap(), v);
        }
    }

    #[test]
    fn expiry_and_ownership() {
        let t0: Timestamp = "2025-01-01T00:00:00Z".parse().unwrap();
        let lock = LockValue::new(t0, "ns", "p");
        let five = jiff::SignedDuration::from_mins(5);
        assert!(!lock.is_expired(t0 + jiff::SignedDuration::from_mins(5), five));
        assert!(lock.is_expired(t0 + jiff::SignedDuration::from_secs(301), five));
        assert!(lock.is_held_by("ns", "p") && !lock.is_held_by("ns", "q"));
        assert_eq!(render(&lock).unwrap(), "2025-01-01T00:00:00Z,ns,p");
        let bad = LockValue::new(t0, "n,s", "p");
        assert!(render(&bad).is_err());
    }
}
