//! Days and dates: Unix seconds to and from the proleptic Gregorian calendar, in UTC.
//!
//! Used by the imports, the joins and the reports alike, so it lives with the model rather
//! than in the import parser.

#![deny(clippy::indexing_slicing, clippy::arithmetic_side_effects)] // Also run on imported cells.

/// Seconds in a day.
pub use aiscout_wire::time::DAY_SECS;

/// Days from 1970-01-01 to the given civil date (proleptic Gregorian; H. Hinnant's
/// `days_from_civil`). `None` when the date does not exist.
#[allow(clippy::arithmetic_side_effects)] // Reason: y is 1..=9999, m 1..=12 and d 1..=31 here.
pub fn days_from_civil(y: i64, m: u32, d: u32) -> Option<i64> {
    if !(1..=12).contains(&m) || d == 0 || d > days_in_month(y, m) || !(1..=9999).contains(&y) {
        return None;
    }
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = i64::from((m + 9) % 12);
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    Some(era * 146_097 + doe - 719_468)
}

/// The civil date (year, month, day) of a day number, shared with [`aiscout_wire::UnixSecs`].
pub use aiscout_wire::time::civil_from_days;

fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// `YYYY-MM-DD` of Unix seconds (UTC).
pub fn ymd(secs: i64) -> String {
    let (y, m, d) = civil_from_days(secs.div_euclid(DAY_SECS));
    format!("{y:04}-{m:02}-{d:02}")
}

/// `YYYY-MM` of Unix seconds (UTC).
pub fn year_month(secs: impl Into<i64>) -> String {
    let secs = secs.into();
    let (y, m, _) = civil_from_days(secs.div_euclid(DAY_SECS));
    format!("{y:04}-{m:02}")
}
