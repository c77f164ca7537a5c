//! Days and dates: Unix seconds to and from the proleptic Gregorian calendar, in UTC.
//!
//! Used by the imports, the joins and the reports alike, so it lives with the model rather
//! than in the import parser.

#![deny(clippy::indexing_slicing, clippy::arithmetic_side_effects)] // Also run on imported cells.

/// Seconds in a day.
pub const DAY_SECS: i64 = 86_400;

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

/// Day numbers of 0000-03-01 and 9999-12-31, the range [`civil_from_days`] answers for.
const DAY_RANGE: (i64, i64) = (-719_468, 2_932_896);

/// The civil date (year, month, day) of a day number (inverse of [`days_from_civil`]); a day
/// outside years 0 to 9999 is read as the nearest end of that range.
#[allow(clippy::arithmetic_side_effects)] // Reason: z is clamped to DAY_RANGE first.
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
pub fn year_month(secs: i64) -> String {
    let (y, m, _) = civil_from_days(secs.div_euclid(DAY_SECS));
    format!("{y:04}-{m:02}")
}
