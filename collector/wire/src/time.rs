//! [`UnixSecs`]: a point in time as whole seconds since the Unix epoch (UTC), the one time
//! type of the contract, the agent's spool and the collector's store.
//!
//! Key decision: on the wire it is a plain JSON integer and in SQL a plain `INTEGER` /
//! `BIGINT` (`#[serde(transparent)]`, and the `ToSql`/`FromSql` impls behind the `rusqlite`
//! and `postgres` features in `src/sql.rs`), so the newtype changes no stored or sent byte;
//! it only keeps seconds from being mixed up with counts, ids and durations in code.

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// Seconds in a day.
pub const DAY_SECS: i64 = 86_400;

/// Whole seconds since 1970-01-01T00:00:00Z (negative before it).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct UnixSecs(pub i64);

impl UnixSecs {
    /// 1970-01-01T00:00:00Z.
    pub const EPOCH: UnixSecs = UnixSecs(0);

    /// The system clock now; the epoch when the clock reads before it.
    pub fn now() -> Self {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(Self::EPOCH, |d| UnixSecs(i64::try_from(d.as_secs()).unwrap_or(i64::MAX)))
    }

    /// The seconds as an integer.
    pub const fn get(self) -> i64 {
        self.0
    }

    /// The start of the UTC day this second falls in (floored, also before the epoch; the
    /// first whole day of the range for the very earliest seconds).
    pub const fn day_start(self) -> Self {
        self.window_start(DAY_SECS)
    }

    /// The start of the `width`-second window this second falls in (floored, the first whole
    /// window of the range for the very earliest seconds); `self` when `width` is not
    /// positive.
    pub const fn window_start(self, width: i64) -> Self {
        if width <= 0 {
            return self;
        }
        let n = self.0.div_euclid(width);
        match n.checked_mul(width) {
            Some(start) => UnixSecs(start),
            None => UnixSecs(n.saturating_add(1).saturating_mul(width)),
        }
    }

    /// `secs` later (earlier when negative), saturating at the ends of the range.
    #[must_use]
    pub const fn add_secs(self, secs: i64) -> Self {
        UnixSecs(self.0.saturating_add(secs))
    }

    /// Seconds from `earlier` to `self` (negative when `earlier` is later), saturating.
    pub const fn secs_since(self, earlier: UnixSecs) -> i64 {
        self.0.saturating_sub(earlier.0)
    }

    /// `YYYY-MM-DDTHH:MM:SSZ` (RFC 3339 in UTC); a time outside years 0 to 9999 is written
    /// as the nearest day of that range.
    pub fn rfc3339(self) -> String {
        let (y, m, d) = civil_from_days(self.0.div_euclid(DAY_SECS));
        let s = self.0.rem_euclid(DAY_SECS);
        format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", s / 3600, s % 3600 / 60, s % 60)
    }
}

impl From<i64> for UnixSecs {
    fn from(secs: i64) -> Self {
        UnixSecs(secs)
    }
}

impl From<UnixSecs> for i64 {
    fn from(t: UnixSecs) -> Self {
        t.0
    }
}

/// The integer, as SQL and JSON hold it (use [`UnixSecs::rfc3339`] for people).
impl fmt::Display for UnixSecs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Day numbers of 0000-03-01 and 9999-12-31, the range [`civil_from_days`] answers for.
const DAY_RANGE: (i64, i64) = (-719_468, 2_932_896);

/// The civil date (year, month, day) of a day number counted from 1970-01-01 (proleptic
/// Gregorian; H. Hinnant's `civil_from_days`); a day outside years 0 to 9999 is read as the
/// nearest end of that range. No arithmetic here can overflow: `z` is clamped first (the
/// collector runs it on imported cells).
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z.clamp(DAY_RANGE.0, DAY_RANGE.1) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = u32::try_from(doy - (153 * mp + 2) / 5 + 1).unwrap_or(1);
    let m = u32::try_from(if mp < 10 { mp + 3 } else { mp - 9 }).unwrap_or(1);
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serializes_as_a_plain_integer() {
        assert_eq!(serde_json::to_string(&UnixSecs(1_700_000_000)).unwrap(), "1700000000");
        assert_eq!(serde_json::from_str::<UnixSecs>("-5").unwrap(), UnixSecs(-5));
        assert!(serde_json::from_str::<UnixSecs>("\"5\"").is_err());
    }

    #[test]
    fn day_start_floors_before_the_epoch_too() {
        assert_eq!(UnixSecs(86_399).day_start(), UnixSecs(0));
        assert_eq!(UnixSecs(86_400).day_start(), UnixSecs(86_400));
        assert_eq!(UnixSecs(-1).day_start(), UnixSecs(-86_400));
        assert_eq!(UnixSecs(i64::MIN).day_start().get() % DAY_SECS, 0);
    }

    #[test]
    fn window_start_floors_and_ignores_a_width_below_one() {
        assert_eq!(UnixSecs(3_599).window_start(3_600), UnixSecs(0));
        assert_eq!(UnixSecs(3_600).window_start(3_600), UnixSecs(3_600));
        assert_eq!(UnixSecs(-1).window_start(60), UnixSecs(-60));
        assert_eq!(UnixSecs(17).window_start(0), UnixSecs(17));
    }

    #[test]
    fn arithmetic_saturates() {
        assert_eq!(UnixSecs(i64::MAX).add_secs(1), UnixSecs(i64::MAX));
        assert_eq!(UnixSecs(10).add_secs(-20), UnixSecs(-10));
        assert_eq!(UnixSecs(10).secs_since(UnixSecs(4)), 6);
        assert_eq!(UnixSecs(i64::MIN).secs_since(UnixSecs(1)), i64::MIN);
    }

    #[test]
    fn rfc3339_is_utc_and_clamped() {
        assert_eq!(UnixSecs(0).rfc3339(), "1970-01-01T00:00:00Z");
        assert_eq!(UnixSecs(1_700_000_000).rfc3339(), "2023-11-14T22:13:20Z");
        assert_eq!(UnixSecs(951_782_400).rfc3339(), "2000-02-29T00:00:00Z");
        assert_eq!(UnixSecs(-1).rfc3339(), "1969-12-31T23:59:59Z");
        assert_eq!(UnixSecs(i64::MAX).rfc3339().get(..10), Some("9999-12-31"));
        assert_eq!(UnixSecs(i64::MIN).rfc3339().get(..10), Some("0000-03-01"));
    }
}
