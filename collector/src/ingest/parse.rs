//! Field parsers shared by the import formats: dates, decimal amounts, currencies, payers.
//!
//! Money never goes through floating point: amounts are parsed from their text (including a
//! JSON number's literal text) into integers at a fixed scale, rounding half away from zero.

#![deny(clippy::indexing_slicing, clippy::arithmetic_side_effects)] // Parsers of untrusted files (issue 18).

/// The calendar, money and text helpers live in the model (the joins and reports use them too);
/// re-exported here for the import formats.
pub use crate::model::calendar::{DAY_SECS, civil_from_days, days_from_civil, year_month, ymd};
pub use crate::model::money::{exponent, format_minor, nanos_to_minor};
pub use crate::model::text::{collapse, name_key};

fn num<T: std::str::FromStr>(s: &str) -> Option<T> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// Parses a date or date-time as exports write them, into Unix seconds (UTC):
/// - ISO 8601 / RFC 3339: `2024-05-01`, `2024-05-01T12:30:00Z`, `2024-05-01 12:30:00`,
///   `2024-05-01T12:30:00.123+02:00` (no zone means UTC, as Ramp and LiteLLM write);
/// - US: `5/1/24`, `05/01/2024`, optionally followed by a time, which is ignored;
/// - Unix seconds (`1714521600`), as the OpenAI costs API writes bucket starts.
pub fn parse_datetime(text: &str) -> Option<i64> {
    let t = text.trim();
    if t.len() >= 9 && t.len() <= 12 && t.bytes().all(|b| b.is_ascii_digit()) {
        return t.parse().ok();
    }
    if let Some((date, _time)) = t.split_once(' ').filter(|(d, _)| d.contains('/')) {
        return parse_us_date(date);
    }
    if t.contains('/') {
        return parse_us_date(t);
    }
    let date = t.get(..10)?;
    let mut parts = date.split('-');
    let (y, m, d) = (parts.next()?, parts.next()?, parts.next()?);
    if y.len() != 4 || m.len() != 2 || d.len() != 2 {
        return None;
    }
    let day = days_from_civil(num(y)?, num(m)?, num(d)?)?;
    let rest = t.get(10..)?;
    let secs = if rest.is_empty() { 0 } else { parse_time(rest)? };
    day.checked_mul(DAY_SECS)?.checked_add(secs)
}

/// `THH:MM[:SS[.frac]][Z|±HH:MM|±HHMM]` (or a space for `T`) as seconds from midnight UTC.
#[allow(clippy::arithmetic_side_effects)] // Reason: every part is checked to a clock's range first.
fn parse_time(rest: &str) -> Option<i64> {
    let rest = rest.strip_prefix(['T', ' ', 't'])?;
    let (clock, zone) = match rest.find(['Z', 'z', '+', '-']) {
        Some(i) => (rest.get(..i)?, rest.get(i..)?),
        None => (rest, ""),
    };
    let clock = clock.trim_end();
    let clock = clock.split_once('.').map_or(clock, |(c, _frac)| c);
    let mut hms = clock.split(':');
    let h: i64 = num(hms.next()?)?;
    let m: i64 = num(hms.next()?)?;
    let s: i64 = hms.next().map_or(Some(0), num)?;
    if h > 23 || m > 59 || s > 60 {
        return None;
    }
    let offset = match zone {
        "" | "Z" | "z" => 0,
        z => {
            let sign = if z.starts_with('-') { -1 } else { 1 };
            let digits: String = z.get(1..)?.chars().filter(|c| *c != ':').collect();
            if digits.len() != 4 {
                return None;
            }
            let oh: i64 = num(digits.get(..2)?)?;
            let om: i64 = num(digits.get(2..)?)?;
            if oh > 23 || om > 59 {
                return None;
            }
            sign * (oh * 3600 + om * 60)
        }
    };
    Some(h * 3600 + m * 60 + s - offset)
}

fn parse_us_date(t: &str) -> Option<i64> {
    let mut parts = t.trim().split('/');
    let (m, d, y) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    let y: i64 = num(y)?;
    // Two-digit years (Ramp's `M/d/yy`) are this century.
    let y = if y < 100 { y.saturating_add(2000) } else { y };
    days_from_civil(y, num(m)?, num(d)?)?.checked_mul(DAY_SECS)
}

/// Parses a date given on the command line (`YYYY-MM-DD`) into Unix seconds.
pub fn parse_day(text: &str) -> Option<i64> {
    let t = text.trim();
    if t.len() != 10 {
        return None;
    }
    parse_datetime(t)
}

/// Why an amount could not be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AmountError {
    /// The cell is empty.
    Empty,
    /// Not a decimal number.
    NotANumber,
    /// Too large for the store.
    TooLarge,
}

impl std::fmt::Display for AmountError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            AmountError::Empty => "empty amount",
            AmountError::NotANumber => "not a decimal amount",
            AmountError::TooLarge => "amount too large",
        })
    }
}

/// Parses a decimal amount into an integer count of `10^-scale` units, rounding half away
/// from zero. Accepts what exports write: a sign, a currency symbol or code, thousands
/// separators (`1,234.50`), accounting negatives (`(12.00)`), a trailing minus, and an
/// exponent (`1.5e-05`, as LiteLLM writes small costs).
///
/// # Errors
/// Empty, not a number, or outside `i64`.
pub fn parse_decimal(text: &str, scale: u32) -> Result<i64, AmountError> {
    let mut t = text.trim();
    if t.is_empty() {
        return Err(AmountError::Empty);
    }
    let mut negative = false;
    if let Some(inner) = t.strip_prefix('(').and_then(|s| s.strip_suffix(')')) {
        negative = true;
        t = inner.trim();
    }
    if let Some(inner) = t.strip_suffix('-') {
        negative = !negative;
        t = inner.trim();
    }
    // Currency symbols and codes around the number.
    let t = t.trim_matches(|c: char| c.is_alphabetic() || "$€£¥₹ \u{a0}".contains(c));
    let (sign_neg, t) = match t.as_bytes().first() {
        Some(b'-') => (true, t.get(1..).unwrap_or("")),
        Some(b'+') => (false, t.get(1..).unwrap_or("")),
        _ => (false, t),
    };
    let t = t.trim_start_matches(|c: char| "$€£¥₹".contains(c));
    negative ^= sign_neg;
    let (mantissa, exp) = match t.find(['e', 'E']) {
        Some(i) => {
            let e: i32 = t
                .get(i.saturating_add(1)..)
                .and_then(|e| e.parse().ok())
                .ok_or(AmountError::NotANumber)?;
            (t.get(..i).unwrap_or(""), e)
        }
        None => (t, 0),
    };
    let (int_part, frac_part) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let int_digits: String = int_part.chars().filter(|c| *c != ',').collect();
    if int_digits.is_empty() && frac_part.is_empty() {
        return Err(AmountError::NotANumber);
    }
    if !int_digits.bytes().all(|b| b.is_ascii_digit())
        || !frac_part.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(AmountError::NotANumber);
    }
    // value = digits * 10^(exp - frac_len); we want value * 10^scale.
    let digits = format!("{int_digits}{frac_part}");
    let digits = digits.trim_start_matches('0');
    // In i64, the sum of an i32 exponent, a u32 scale and a length cannot overflow (an i32 sum
    // did: `1e2147483647` panicked in debug builds and read as 0 in release builds).
    let frac_len = i64::try_from(frac_part.len()).map_err(|_| AmountError::TooLarge)?;
    let shift = i64::from(scale)
        .checked_add(i64::from(exp))
        .and_then(|v| v.checked_sub(frac_len))
        .ok_or(AmountError::TooLarge)?;
    if digits.is_empty() {
        return Ok(0);
    }
    if digits.len() > 36 {
        return Err(AmountError::TooLarge);
    }
    let n: i128 = digits.parse().map_err(|_| AmountError::NotANumber)?;
    let scaled = if shift >= 0 {
        if shift > 30 {
            return Err(AmountError::TooLarge);
        }
        let up = u32::try_from(shift).map_err(|_| AmountError::TooLarge)?;
        n.checked_mul(10_i128.pow(up)).ok_or(AmountError::TooLarge)?
    } else if shift < -38 {
        0
    } else {
        let down = u32::try_from(shift.unsigned_abs()).map_err(|_| AmountError::TooLarge)?;
        let div = 10_i128.pow(down);
        // n is not negative (digits only) and div is at least 10: neither can overflow.
        let (q, r) = (n.checked_div(div).unwrap_or(0), n.checked_rem(div).unwrap_or(0));
        if r.saturating_mul(2) >= div { q.saturating_add(1) } else { q }
    };
    let signed = if negative { scaled.saturating_neg() } else { scaled };
    i64::try_from(signed).map_err(|_| AmountError::TooLarge)
}

/// A currency code normalised to upper case, or `None` when it is not three letters.
pub fn currency(text: &str) -> Option<String> {
    let t = text.trim();
    (t.len() == 3 && t.bytes().all(|b| b.is_ascii_alphabetic())).then(|| t.to_ascii_uppercase())
}

/// A payer as exports give it, split into (email, display name). An email anywhere in the
/// cell wins (Expensify writes `user@company.com – 1234`); `Last, First` becomes
/// `First Last`; an all-capitals name (Amex `JANE A DOE`) becomes `Jane A Doe`.
pub fn payer(text: &str) -> (String, String) {
    let t = collapse(text);
    if let Some(email) = t.split([' ', '<', '>', ',', ';']).find(|w| looks_like_email(w)) {
        return (email.to_ascii_lowercase(), String::new());
    }
    let name = match t.split_once(',') {
        Some((last, first)) if !first.trim().is_empty() => {
            format!("{} {}", first.trim(), last.trim())
        }
        _ => t,
    };
    let name = if name.chars().any(char::is_lowercase) { name } else { title_case(&name) };
    (String::new(), name)
}

fn title_case(name: &str) -> String {
    name.split(' ')
        .map(|w| {
            let mut cs = w.chars();
            cs.next().map_or_else(String::new, |f| {
                f.to_uppercase().chain(cs.flat_map(char::to_lowercase)).collect()
            })
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// True when `w` has the shape `local@domain.tld`.
pub fn looks_like_email(w: &str) -> bool {
    match w.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && domain.contains('.')
                && !domain.starts_with('.')
                && !w.contains(' ')
        }
        None => false,
    }
}

#[cfg(test)]
#[allow(clippy::indexing_slicing, clippy::arithmetic_side_effects)] // Reason: tests index their own fixtures.
mod tests {
    use super::*;

    #[test]
    fn extreme_values_are_clamped_or_saturated_never_a_panic() {
        // Unix seconds far outside the calendar read as its ends (debug builds overflowed).
        assert_eq!(ymd(i64::MAX), "9999-12-31");
        assert_eq!(ymd(i64::MIN), "0000-03-01");
        assert_eq!(year_month(i64::MAX), "9999-12");
        assert_eq!(ymd(0), "1970-01-01");
        assert_eq!(nanos_to_minor(i128::MAX, "USD"), i64::MAX);
        assert_eq!(nanos_to_minor(i128::MIN, "USD"), i64::MIN);
        assert_eq!(nanos_to_minor(-5_000_000, "USD"), -1, "half away from zero");
        assert_eq!(format_minor(i64::MIN, "USD"), "-92233720368547758.08");
        assert_eq!(format_minor(-5, "KWD"), "-0.005");
        assert_eq!(parse_datetime("2024-05-01T00:00:00+99:99"), None, "no such zone");
    }

    fn check_date(input: &str, expected: Option<&str>) {
        assert_eq!(parse_datetime(input).map(ymd).as_deref(), expected, "{input}");
    }

    #[test]
    fn dates_in_every_export_format() {
        check_date("2024-05-01", Some("2024-05-01"));
        check_date("2024-05-01T23:30:00Z", Some("2024-05-01"));
        check_date("2024-05-01T23:30:00-02:00", Some("2024-05-02"));
        check_date("2024-05-01 12:00:00", Some("2024-05-01"));
        check_date("2024-05-01T12:00:00.123456+00:00", Some("2024-05-01"));
        check_date("05/11/22", Some("2022-05-11"));
        check_date("5/1/2024", Some("2024-05-01"));
        check_date("05/01/2024 10:00 AM", Some("2024-05-01"));
        check_date("1714521600", Some("2024-05-01"));
        check_date("2024-02-30", None);
        check_date("13/01/2024", None);
        check_date("yesterday", None);
        check_date("", None);
    }

    #[test]
    fn civil_dates_round_trip() {
        for day in [-1, 0, 59, 60, 11_016, 19_844, 2_932_896] {
            let (y, m, d) = civil_from_days(day);
            assert_eq!(days_from_civil(y, m, d), Some(day));
        }
    }

    fn check_amount(input: &str, scale: u32, expected: Result<i64, AmountError>) {
        assert_eq!(parse_decimal(input, scale), expected, "{input}");
    }

    #[test]
    fn amounts_never_go_through_floats() {
        check_amount("20.00", 2, Ok(2000));
        check_amount("-20", 2, Ok(-2000));
        check_amount("$1,234.56", 2, Ok(123_456));
        check_amount("(12.50)", 2, Ok(-1250));
        check_amount("12.50-", 2, Ok(-1250));
        check_amount("USD 7.5", 2, Ok(750));
        check_amount("0.1", 2, Ok(10));
        check_amount("0.005", 2, Ok(1));
        check_amount("-0.005", 2, Ok(-1));
        check_amount("1.5e-05", 9, Ok(15_000));
        check_amount("123.45", 7, Ok(1_234_500_000));
        check_amount("0.000000000049", 9, Ok(0));
        check_amount("", 2, Err(AmountError::Empty));
        check_amount("abc", 2, Err(AmountError::NotANumber));
        check_amount("1.2.3", 2, Err(AmountError::NotANumber));
        check_amount("99999999999999999999", 2, Err(AmountError::TooLarge));
        // Exponents at the ends of i32: a row error, never a panic or a silent 0.
        check_amount("1e2147483647", 2, Err(AmountError::TooLarge));
        check_amount("-1e2147483647", 2, Err(AmountError::TooLarge));
        check_amount("1.5e2147483647", 9, Err(AmountError::TooLarge));
        check_amount("1e-2147483648", 2, Ok(0));
        check_amount("1.25e-2147483648", 2, Ok(0));
    }

    #[test]
    fn minor_units_format_with_the_currency_exponent() {
        assert_eq!(format_minor(123_456, "USD"), "1234.56");
        assert_eq!(format_minor(-5, "USD"), "-0.05");
        assert_eq!(format_minor(500, "JPY"), "500");
        assert_eq!(format_minor(1_234, "KWD"), "1.234");
        assert_eq!(nanos_to_minor(4_999_999, "USD"), 0);
        assert_eq!(nanos_to_minor(5_000_000, "USD"), 1);
        assert_eq!(nanos_to_minor(-5_000_000, "USD"), -1);
    }

    #[test]
    fn payers_are_split_into_email_or_name() {
        assert_eq!(payer("Ann@Example.com – 1234"), ("ann@example.com".into(), String::new()));
        assert_eq!(payer("Lee,  Ann"), (String::new(), "Ann Lee".into()));
        assert_eq!(payer("JANE A DOE"), (String::new(), "Jane A Doe".into()));
        assert_eq!(payer("  Bob   McKay "), (String::new(), "Bob McKay".into()));
    }
}
