//! Reason lists: the `FailedNodes` values and `FilteringFailed` inputs.
//!
//! HAMi's `GenReason` writes `"<count>/<total> <Reason>"` entries, sorted as whole strings and joined by
//! `", "` (so `1/10 X` sorts before `2/10 A`); other failures are bare strings such as
//! `NodeInsufficientDevice` or `node unregistered` (spec §4.4). HAMi's `ParseReason` reads the counted
//! entries and ignores bare ones; [`parse`] keeps both kinds, and rejects entries that start like a
//! count but are not one (`1/x Foo`), empty entries and empty values.

use super::Quoted;
use serde::Serialize;
use std::fmt;

/// One entry of a reason list.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(untagged)]
pub enum ReasonItem {
    /// `<count>/<total> <Reason>`: `count` of `total` candidate devices failed for `reason`.
    Counted {
        /// Devices that failed for this reason.
        count: u32,
        /// Candidate devices on the node.
        total: u32,
        /// The reason constant, e.g. `CardInsufficientMemory`.
        reason: String,
    },
    /// A bare reason such as `NodeInsufficientDevice`.
    Bare(String),
}

impl fmt::Display for ReasonItem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReasonItem::Counted {
                count,
                total,
                reason,
            } => write!(f, "{count}/{total} {reason}"),
            ReasonItem::Bare(s) => f.write_str(s),
        }
    }
}

/// A parsed reason list, in written order.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct ReasonList(pub Vec<ReasonItem>);

impl ReasonList {
    /// HAMi's `GenReason`: counted entries sorted as whole strings.
    pub fn from_counts<'a>(counts: impl IntoIterator<Item = (&'a str, u32)>, total: u32) -> Self {
        let mut items: Vec<ReasonItem> = counts
            .into_iter()
            .map(|(reason, count)| ReasonItem::Counted {
                count,
                total,
                reason: reason.to_string(),
            })
            .collect();
        items.sort_by_cached_key(ToString::to_string);
        ReasonList(items)
    }

    /// The reason names of the counted entries (what HAMi's `ParseReason` yields).
    pub fn counted_reasons(&self) -> impl Iterator<Item = &str> {
        self.0.iter().filter_map(|item| match item {
            ReasonItem::Counted { reason, .. } => Some(reason.as_str()),
            ReasonItem::Bare(_) => None,
        })
    }
}

impl fmt::Display for ReasonList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, item) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{item}")?;
        }
        Ok(())
    }
}

/// Why a reason list could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReasonsError {
    /// Empty value or empty entry.
    #[error("empty reason entry at position {position} in {value}")]
    Empty {
        /// Entry position.
        position: usize,
        /// The whole value.
        value: Quoted,
    },
    /// An entry that starts with a digit but is not `<count>/<total> <Reason>`.
    #[error("invalid reason entry {0}: expected <count>/<total> <Reason>")]
    Counted(Quoted),
}

/// Parses a reason list.
pub fn parse(value: &str) -> Result<ReasonList, ReasonsError> {
    let mut items = Vec::new();
    for (position, entry) in value.split(", ").enumerate() {
        if entry.is_empty() {
            return Err(ReasonsError::Empty {
                position,
                value: Quoted::new(value),
            });
        }
        if entry.starts_with(|c: char| c.is_ascii_digit()) {
            items.push(
                parse_counted(entry).ok_or_else(|| ReasonsError::Counted(Quoted::new(entry)))?,
            );
        } else {
            items.push(ReasonItem::Bare(entry.to_string()));
        }
    }
    Ok(ReasonList(items))
}

fn parse_counted(entry: &str) -> Option<ReasonItem> {
    let (numbers, reason) = entry.split_once(' ')?;
    let (count, total) = numbers.split_once('/')?;
    // Digits only, no leading zero (as Go's `%d` writes them); an empty number fails the parse.
    let number = |s: &str| -> Option<u32> {
        if !s.bytes().all(|b| b.is_ascii_digit()) || (s.len() > 1 && s.starts_with('0')) {
            return None;
        }
        s.parse().ok()
    };
    if reason.is_empty() || reason.contains(' ') {
        return None;
    }
    Some(ReasonItem::Counted {
        count: number(count)?,
        total: number(total)?,
        reason: reason.to_string(),
    })
}

/// Renders a reason list in its order (use [`ReasonList::from_counts`] to get HAMi's sorting).
pub fn render(list: &ReasonList) -> String {
    list.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_examples() {
        let v = "1/2 AllocatedCardsInsufficientRequest, 1/2 NumaNotFit";
        let list = parse(v).unwrap();
        assert_eq!(
            list.counted_reasons().collect::<Vec<_>>(),
            ["AllocatedCardsInsufficientRequest", "NumaNotFit"]
        );
        assert_eq!(render(&list), v);
        assert_eq!(
            parse("1/1 CardInsufficientMemory").unwrap().0[0],
            ReasonItem::Counted {
                count: 1,
                total: 1,
                reason: "CardInsufficientMemory".into()
            }
        );
        assert_eq!(
            parse("NodeInsufficientDevice").unwrap().0,
            vec![ReasonItem::Bare("NodeInsufficientDevice".into())]
        );
        assert_eq!(
            parse("node unregistered")
                .unwrap()
                .counted_reasons()
                .count(),
            0
        );
    }

    #[test]
    fn gen_reason_sorts_as_whole_strings() {
        // "1/10 X" sorts before "2/10 A", as in HAMi.
        let list = ReasonList::from_counts([("A", 2), ("X", 1)], 10);
        assert_eq!(render(&list), "1/10 X, 2/10 A");
        let list = ReasonList::from_counts(
            [("CardInsufficientMemory", 2), ("CardInsufficientCore", 2)],
            2,
        );
        assert_eq!(
            render(&list),
            "2/2 CardInsufficientCore, 2/2 CardInsufficientMemory"
        );
    }

    #[test]
    fn malformed_entries_are_rejected() {
        assert!(parse("").is_err());
        assert!(parse("1/2 A, ").is_err());
        assert!(
            parse("1/x Foo")
                .unwrap_err()
                .to_string()
                .contains("\"1/x Foo\"")
        );
        assert!(parse("1/2").is_err());
        assert!(parse("1/2 ").is_err());
        assert!(parse("99999999999/1 A").is_err());
        for bad in ["1/ A", "01/2 A", "1/02 A", "1/-2 A"] {
            assert!(matches!(parse(bad), Err(ReasonsError::Counted(_))), "{bad}");
        }
        for good in ["0/2 A", "1/0 A", "10/20 A"] {
            assert!(parse(good).is_ok(), "{good}");
        }
    }
}
