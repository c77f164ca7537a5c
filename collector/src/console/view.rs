//! Small pieces the pages share: dates, money, badges, links that keep the current filters,
//! and pagination.

use aiscout_wire::{Money, ProductStatus, RiskFactValue};
use maud::{Markup, html};

use crate::ingest::parse::{DAY_SECS, civil_from_days};

/// Percent-encodes a query value (everything but unreserved characters).
pub(crate) fn url_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~' | b'/') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Percent-encodes one path segment (a product id, a host id, an email).
pub(crate) fn segment(s: &str) -> String {
    url_encode(s).replace('/', "%2F")
}

/// `YYYY-MM-DD` of Unix seconds (UTC).
pub(crate) fn date(secs: impl Into<i64>) -> String {
    let secs = secs.into();
    let (y, m, d) = civil_from_days(secs.div_euclid(DAY_SECS));
    format!("{y:04}-{m:02}-{d:02}")
}

/// `YYYY-MM-DD HH:MM` of Unix seconds (UTC).
pub(crate) fn datetime(secs: impl Into<i64>) -> String {
    let secs = secs.into();
    let s = secs.rem_euclid(DAY_SECS);
    format!("{} {:02}:{:02} UTC", date(secs), s / 3600, s % 3600 / 60)
}

/// How long ago, in words ("3 h ago").
pub(crate) fn ago(secs: i64, now: i64) -> String {
    let d = now.saturating_sub(secs);
    match d {
        i64::MIN..=59 => "just now".into(),
        60..=3599 => format!("{} min ago", d / 60),
        3600..=86_399 => format!("{} h ago", d / 3600),
        _ => format!("{} d ago", d / DAY_SECS),
    }
}

/// A `<time>` element: the age in words, the exact time on hover and for machines.
pub(crate) fn when(secs: impl Into<i64>, now: i64) -> Markup {
    let secs = secs.into();
    if secs <= 0 {
        return html! { span class="muted" { "never" } };
    }
    html! { time datetime=(crate::report::rfc3339(secs)) title=(datetime(secs)) { (ago(secs, now)) } }
}

/// A count with thousands separators.
pub(crate) fn count(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// An amount with its currency and thousands separators (`USD 12,345.60`).
pub(crate) fn amount(m: &Money) -> String {
    let (sign, rest) = m.amount.strip_prefix('-').map_or(("", m.amount.as_str()), |r| ("-", r));
    let (int, frac) = rest.split_once('.').map_or((rest, None), |(i, f)| (i, Some(f)));
    let grouped = count(int.parse().unwrap_or(0));
    match frac {
        Some(f) => format!("{} {sign}{grouped}.{f}", m.currency),
        None => format!("{} {sign}{grouped}", m.currency),
    }
}

/// Amounts in several currencies, or a dash.
pub(crate) fn money(list: &[Money]) -> Markup {
    html! {
        @if list.is_empty() { span class="muted" { "–" } }
        @for (i, m) in list.iter().enumerate() {
            @if i > 0 { br; }
            span class="money" { (amount(m)) }
        }
    }
}

/// Human words for a status.
pub(crate) fn status_label(s: ProductStatus) -> &'static str {
    match s {
        ProductStatus::Sanctioned => "Sanctioned",
        ProductStatus::Unsanctioned => "Unsanctioned",
        ProductStatus::UnderReview => "Under review",
        ProductStatus::Blocked => "Blocked",
        _ => "Unreviewed",
    }
}

/// The risk score, 0 to 100, with the facts behind it in a disclosure (keyboard-usable,
/// no script): each fact's value, `unknown` included.
pub(crate) fn risk(score: u8, facts: &[RiskFactValue]) -> Markup {
    let level = match score {
        0..=33 => "low",
        34..=66 => "medium",
        _ => "high",
    };
    let unknown = facts.iter().filter(|f| f.value == "unknown").count();
    html! {
        details class="risk" {
            summary { span class={ "risk-score " (level) } { (score) } span class="visually-hidden" { " risk, " (level) } }
            dl class="risk-facts small" {
                @for f in facts { dt { (risk_label(&f.fact)) } dd { (f.value) } }
            }
            @if unknown > 0 { p class="muted small" { (unknown) " of " (facts.len()) " facts unknown" } }
        }
    }
}

/// People's words for a risk fact key.
pub(crate) fn risk_label(key: &str) -> &'static str {
    aiscout_signatures::RiskFact::parse(key)
        .map_or("Unknown fact", aiscout_signatures::RiskFact::label)
}

/// A coloured status badge (the word is always there: colour is never the only signal).
pub(crate) fn badge(s: ProductStatus) -> Markup {
    html! { span class={ "badge " (s.as_str()) } { (status_label(s)) } }
}

/// The risk flags of an MCP server (issue 17) as badges with their reviewer words; a name this
/// build does not know is shown as written.
pub(crate) fn mcp_flags(flags: &[String]) -> Markup {
    html! {
        @for f in flags {
            @let label = aiscout_wire::McpFlag::parse(f).map_or_else(|| f.clone(), |k| k.label().to_owned());
            span class="badge risk" { (label) }
            " "
        }
    }
}

/// An inventory row's gateway bypass (issue 17): a badge, how many devices and people went
/// straight to the provider's API, from which processes, and the gateway they skipped.
/// Nothing when there is none.
pub(crate) fn bypass(r: &aiscout_wire::InventoryRow) -> Markup {
    let n =
        |v: u64, one: &str, many: &str| format!("{} {}", count(v), if v == 1 { one } else { many });
    html! {
        @if r.bypass_devices > 0 {
            span class="bypass" {
                span class="badge risk" { "Gateway bypass" }
                " "
                span class="small" {
                    (n(r.bypass_devices, "device", "devices")) ", " (n(r.bypass_people, "person", "people"))
                    @if !r.bypass_processes.is_empty() { " · " (r.bypass_processes.join(", ")) }
                    @if !r.bypass_gateways.is_empty() { " · not through " (r.bypass_gateways.join(", ")) }
                }
            }
        }
    }
}

/// Human words for a discovery source.
pub(crate) fn source_label(s: &str) -> &str {
    match s {
        "dns" => "DNS",
        "tls_sni" => "TLS",
        "quic_sni" => "QUIC",
        "app" => "App",
        "extension" => "Extension",
        "cli" => "CLI",
        "mcp_server" => "MCP server",
        "process" => "Process",
        "local_runtime" => "Local runtime",
        "model" => "Local model",
        "expense" => "Expense",
        "gateway" => "Gateway",
        other => other,
    }
}

/// `?k=v&...` of pairs (empty values left out), or `""`.
pub(crate) fn query(pairs: &[(String, String)]) -> String {
    let parts: Vec<String> = pairs
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| format!("{}={}", url_encode(k), url_encode(v)))
        .collect();
    if parts.is_empty() { String::new() } else { format!("?{}", parts.join("&")) }
}

/// Rows per page.
pub(crate) const PER_PAGE: usize = 50;

/// The page number in the query (1-based), and the slice bounds for `total` rows.
pub(crate) fn page_bounds(pairs: &[(String, String)], total: usize) -> (usize, usize, usize) {
    page_bounds_of(pairs, "page", total)
}

/// [`page_bounds`] with the page number in the query parameter `key` (pages with several
/// paged tables give each its own).
pub(crate) fn page_bounds_of(
    pairs: &[(String, String)],
    key: &str,
    total: usize,
) -> (usize, usize, usize) {
    let pages = total.div_ceil(PER_PAGE).max(1);
    let page = pairs
        .iter()
        .find(|(k, _)| k == key)
        .and_then(|(_, v)| v.parse::<usize>().ok())
        .unwrap_or(1)
        .clamp(1, pages);
    let start = (page - 1) * PER_PAGE;
    (page, start.min(total), (start + PER_PAGE).min(total))
}

/// Previous and next links, with "rows A–B of N".
pub(crate) fn pager(path: &str, pairs: &[(String, String)], total: usize) -> Markup {
    pager_of(path, pairs, "page", "", total)
}

/// [`pager`] for the table paged by the query parameter `key`; the links end in `anchor`
/// (`"#id"` or `""`) so that the reader lands back at the table.
pub(crate) fn pager_of(
    path: &str,
    pairs: &[(String, String)],
    key: &str,
    anchor: &str,
    total: usize,
) -> Markup {
    let (page, start, end) = page_bounds_of(pairs, key, total);
    let pages = total.div_ceil(PER_PAGE).max(1);
    let link = |p: usize| {
        let mut kept: Vec<(String, String)> =
            pairs.iter().filter(|(k, _)| k != key).cloned().collect();
        kept.push((key.into(), p.to_string()));
        format!("{path}{}{anchor}", query(&kept))
    };
    html! {
        nav class="pager" aria-label="Pages" {
            span { "Rows " (start + usize::from(total > 0)) "–" (end) " of " (count(total as u64)) }
            @if page > 1 { a rel="prev" href=(link(page - 1)) { "← Previous" } }
            @if page < pages { a rel="next" href=(link(page + 1)) { "Next →" } }
        }
    }
}

/// The first value of `key` in the query.
pub(crate) fn param<'a>(pairs: &'a [(String, String)], key: &str) -> &'a str {
    pairs.iter().find(|(k, _)| k == key).map_or("", |(_, v)| v.as_str())
}

/// A `<select>` with a label; `options` are (value, text).
pub(crate) fn select(
    name: &str,
    label: &str,
    options: &[(String, String)],
    chosen: &str,
) -> Markup {
    html! {
        label for=(name) { (label) }
        select id=(name) name=(name) {
            @for (value, text) in options {
                @if value == chosen {
                    option value=(value) selected { (text) }
                } @else {
                    option value=(value) { (text) }
                }
            }
        }
    }
}

/// Start of the UTC month `months_back` months before the one holding `now`.
pub(crate) fn month_start(now: i64, months_back: i64) -> i64 {
    let (y, m, _) = civil_from_days(now.div_euclid(DAY_SECS));
    let index = y * 12 + i64::from(m) - 1 - months_back;
    let (y, m) = (index.div_euclid(12), u32::try_from(index.rem_euclid(12) + 1).unwrap_or(1));
    crate::ingest::parse::days_from_civil(y, m, 1).map_or(0, |d| d * DAY_SECS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_amounts_are_grouped() {
        assert_eq!(count(0), "0");
        assert_eq!(count(1234567), "1,234,567");
        let m = Money { currency: "USD".into(), amount_minor: -123456, amount: "-1234.56".into() };
        assert_eq!(amount(&m), "USD -1,234.56");
    }

    #[test]
    fn queries_encode_and_skip_empty_values() {
        let pairs = vec![
            ("status".to_owned(), "blocked".to_owned()),
            ("q".into(), "a b&c".into()),
            ("x".into(), String::new()),
        ];
        assert_eq!(query(&pairs), "?status=blocked&q=a%20b%26c");
        assert_eq!(query(&[]), "");
    }

    #[test]
    fn pages_are_clamped() {
        let pairs = vec![("page".to_owned(), "99".to_owned())];
        assert_eq!(page_bounds(&pairs, 120), (3, 100, 120));
        assert_eq!(page_bounds(&[], 0), (1, 0, 0));
    }

    #[test]
    fn month_starts_cross_years() {
        // 2026-01-15 -> 2025-11-01
        let jan15 = crate::ingest::parse::days_from_civil(2026, 1, 15).unwrap() * DAY_SECS;
        assert_eq!(date(month_start(jan15, 2)), "2025-11-01");
        assert_eq!(date(month_start(jan15, 0)), "2026-01-01");
    }
}
