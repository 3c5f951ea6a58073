//! `allowed_dvr_ranges` of a backend answer (T5, ADV-02): which stretches of the archive a
//! session may read.
//!
//! The field absent ⇒ the whole archive; `[]` ⇒ none. Each item is
//! `{"opened_at": FROM, "closed_at": TO}` in unix seconds, `opened_at` inclusive and
//! `closed_at` exclusive; one of the two (not both) may be left out for an open interval.
//! The spec says nothing about malformed values, so they fail closed: a value that is not an
//! array grants nothing, and an item that is not such an object (or has neither bound, or a
//! bound that is not a number) grants nothing while the other items still count.

use serde_json::Value;

/// A half-open stretch of wall-clock time in unix milliseconds: `[from, to)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeRange {
    pub from: i64,
    pub to: i64,
}

impl TimeRange {
    /// `FROM` and `DUR` in seconds, as the archive URLs carry them; `None` if they overflow.
    pub fn from_secs(from: u64, duration: u64) -> Option<TimeRange> {
        let from = i64::try_from(from).ok()?.checked_mul(1000)?;
        let to = from.checked_add(i64::try_from(duration).ok()?.checked_mul(1000)?)?;
        Some(TimeRange { from, to })
    }

    pub fn overlaps(&self, other: &TimeRange) -> bool {
        self.from < other.to && other.from < self.to
    }
}

/// What a session may read of the archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AllowedRanges {
    /// The answer had no `allowed_dvr_ranges`.
    All,
    /// Merged, sorted, non-overlapping `[from, to)` in unix milliseconds; empty = nothing.
    Only(Vec<TimeRange>),
}

impl AllowedRanges {
    /// Reads the field as the backend sent it (`None`: absent).
    pub fn from_answer(value: Option<&Value>) -> AllowedRanges {
        let Some(value) = value else {
            return AllowedRanges::All;
        };
        let Some(items) = value.as_array() else {
            tracing::warn!(%value, "allowed_dvr_ranges is not an array; no archive access");
            return AllowedRanges::Only(Vec::new());
        };
        let mut ranges: Vec<TimeRange> = items
            .iter()
            .filter_map(|item| {
                let range = item_range(item);
                if range.is_none() {
                    tracing::warn!(%item, "allowed_dvr_ranges item ignored: expected {{opened_at, closed_at}} in unix seconds, at least one of them");
                }
                range
            })
            .filter(|r| r.from < r.to)
            .collect();
        ranges.sort_by_key(|r| r.from);
        let mut merged: Vec<TimeRange> = Vec::with_capacity(ranges.len());
        for r in ranges {
            match merged.last_mut() {
                Some(last) if r.from <= last.to => last.to = last.to.max(r.to),
                _ => merged.push(r),
            }
        }
        AllowedRanges::Only(merged)
    }

    /// Whether all of `range` may be read (an archive request's FROM..FROM+DUR).
    pub fn covers(&self, range: &TimeRange) -> bool {
        match self {
            AllowedRanges::All => true,
            AllowedRanges::Only(list) => list.iter().any(|r| r.from <= range.from && range.to <= r.to),
        }
    }

    /// Whether some of `range` may be read (one archived segment: segments are the unit of
    /// delivery, so one that straddles a bound is served whole).
    pub fn touches(&self, range: &TimeRange) -> bool {
        match self {
            AllowedRanges::All => true,
            AllowedRanges::Only(list) => list.iter().any(|r| r.overlaps(range)),
        }
    }
}

/// Unix seconds (integer or not) in milliseconds.
fn millis(v: &Value) -> Option<i64> {
    if let Some(n) = v.as_i64() {
        return n.checked_mul(1000);
    }
    let x = v.as_f64()?;
    let ms = (x * 1000.0).floor();
    (ms.is_finite() && ms.abs() < 9.0e15).then_some(ms as i64)
}

fn item_range(item: &Value) -> Option<TimeRange> {
    let object = item.as_object()?;
    let bound = |key: &str| -> Option<Option<i64>> {
        match object.get(key) {
            None | Some(Value::Null) => Some(None),
            Some(v) => millis(v).map(Some),
        }
    };
    let (from, to) = (bound("opened_at")?, bound("closed_at")?);
    if from.is_none() && to.is_none() {
        return None;
    }
    Some(TimeRange {
        from: from.unwrap_or(i64::MIN),
        to: to.unwrap_or(i64::MAX),
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn r(from: i64, to: i64) -> TimeRange {
        TimeRange {
            from: from * 1000,
            to: to * 1000,
        }
    }

    #[test]
    fn absent_is_everything_and_empty_is_nothing() {
        assert!(AllowedRanges::from_answer(None).covers(&r(0, 10)));
        let none = AllowedRanges::from_answer(Some(&json!([])));
        assert!(!none.covers(&r(0, 10)));
        assert!(!none.touches(&r(0, 10)));
    }

    #[test]
    fn bounds_are_inclusive_then_exclusive_and_may_be_open() {
        let a = AllowedRanges::from_answer(Some(&json!([{"opened_at": 100, "closed_at": 200}])));
        assert!(a.covers(&r(100, 200)));
        assert!(!a.covers(&r(99, 150)));
        assert!(!a.covers(&r(150, 201)));
        assert!(a.touches(&r(199, 300)));
        assert!(!a.touches(&r(200, 300)));
        let open_end = AllowedRanges::from_answer(Some(&json!([{"opened_at": 100}])));
        assert!(open_end.covers(&r(100, 1_000_000)));
        assert!(!open_end.covers(&r(99, 101)));
        let open_start = AllowedRanges::from_answer(Some(&json!([{"closed_at": 100}])));
        assert!(open_start.covers(&r(0, 100)));
        assert!(!open_start.covers(&r(50, 101)));
    }

    #[test]
    fn adjacent_ranges_merge() {
        let a = AllowedRanges::from_answer(Some(&json!([
            {"opened_at": 200, "closed_at": 300},
            {"opened_at": 100, "closed_at": 200}
        ])));
        assert!(a.covers(&r(150, 250)));
        let gap = AllowedRanges::from_answer(Some(&json!([
            {"opened_at": 100, "closed_at": 199},
            {"opened_at": 200, "closed_at": 300}
        ])));
        assert!(!gap.covers(&r(150, 250)));
    }

    #[test]
    fn malformed_values_grant_nothing() {
        for bad in [
            json!({}),
            json!("all"),
            json!(5),
            json!([{}]),
            json!([{"opened_at": "x"}]),
            json!([[1, 2]]),
        ] {
            let a = AllowedRanges::from_answer(Some(&bad));
            assert!(!a.touches(&r(0, i64::MAX / 2000)), "{bad}");
        }
        let mixed = AllowedRanges::from_answer(Some(&json!([{"opened_at": "x"}, {"opened_at": 10, "closed_at": 20}])));
        assert!(mixed.covers(&r(10, 20)));
    }
}
