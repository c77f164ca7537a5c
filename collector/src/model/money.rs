//! Money: ISO 4217 minor units, their formatting and rounding. Amounts never go through
//! floating point.

#![deny(clippy::indexing_slicing, clippy::arithmetic_side_effects)] // Also run on imported cells.

/// The ISO 4217 minor-unit exponent of a currency (2 unless listed).
pub fn exponent(currency: &str) -> u32 {
    match currency {
        "BIF" | "CLP" | "DJF" | "GNF" | "ISK" | "JPY" | "KMF" | "KRW" | "PYG" | "RWF" | "UGX"
        | "UYI" | "VND" | "VUV" | "XAF" | "XOF" | "XPF" => 0,
        "BHD" | "IQD" | "JOD" | "KWD" | "LYD" | "OMR" | "TND" => 3,
        _ => 2,
    }
}

/// Formats minor units as a decimal string (`1234` USD is `12.34`).
pub fn format_minor(amount: i64, currency: &str) -> String {
    let exp = exponent(currency);
    if exp == 0 {
        return amount.to_string();
    }
    let div = 10_u64.pow(exp);
    let sign = if amount < 0 { "-" } else { "" };
    let abs = amount.unsigned_abs();
    // div is 10, 100 or 1000: the division and remainder cannot fail.
    let (units, minor) = (abs.checked_div(div).unwrap_or(0), abs.checked_rem(div).unwrap_or(0));
    format!("{sign}{units}.{minor:0width$}", width = exp as usize)
}

/// Converts billionths of the major unit to minor units, rounding half away from zero.
pub fn nanos_to_minor(nanos: i128, currency: &str) -> i64 {
    let div = 10_i128.pow(9_u32.saturating_sub(exponent(currency)));
    // div is at least 1: the division and remainder cannot fail.
    let (q, r) = (nanos.checked_div(div).unwrap_or(0), nanos.checked_rem(div).unwrap_or(0));
    let q = if r.unsigned_abs().saturating_mul(2) >= div.unsigned_abs() {
        q.saturating_add(r.signum())
    } else {
        q
    };
    i64::try_from(q).unwrap_or(if q < 0 { i64::MIN } else { i64::MAX })
}
