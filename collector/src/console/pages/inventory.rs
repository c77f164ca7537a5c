//! `/inventory`: every product, filtered, sorted, searched and paged; the same view as CSV.

use std::collections::BTreeSet;
use std::sync::Arc;

use aiscout_wire::{InventoryQuery, InventoryRow, ProductStatus, UnixSecs};
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::IntoResponse;
use maud::html;

use crate::api::AppState;
use crate::console::view::{self, count, param, segment};
use crate::console::{Access, PageResult, Refusal, document, require};
use crate::store::Store;

type Shared<S> = State<Arc<AppState<S>>>;

/// Discovery sources a person can filter by, in the order the filter lists them.
pub(crate) const SOURCES: [&str; 12] = [
    "dns",
    "tls_sni",
    "quic_sni",
    "app",
    "extension",
    "cli",
    "mcp_server",
    "process",
    "local_runtime",
    "model",
    "expense",
    "gateway",
];

/// Sort keys the table offers.
const SORTS: [(&str, &str); 8] = [
    ("reach", "Reach (devices)"),
    ("risk", "Risk score"),
    ("name", "Name"),
    ("users", "Users"),
    ("spend", "Spend"),
    ("first_seen", "First seen"),
    ("last_seen", "Last seen"),
    ("status", "Status"),
];

/// The query of the page's filters, checked; errors name the field.
fn query(pairs: &[(String, String)]) -> Result<InventoryQuery, Refusal> {
    let opt = |k: &str| Some(param(pairs, k).to_owned()).filter(|v| !v.is_empty());
    let status = match param(pairs, "status") {
        "" => None,
        s => Some(
            ProductStatus::parse(s)
                .ok_or_else(|| Refusal::BadRequest(format!("status: {s:?} is not a status")))?,
        ),
    };
    let since = match param(pairs, "since") {
        "" => None,
        d => Some(crate::review::parse_day(d).map(UnixSecs::get).ok_or_else(|| {
            Refusal::BadRequest(format!("since: {d:?} is not a date (YYYY-MM-DD)"))
        })?),
    };
    Ok(InventoryQuery {
        product: None,
        status,
        category: opt("category"),
        department: opt("department"),
        source: opt("source"),
        since,
        until: None,
    })
}

fn spend_total(r: &InventoryRow) -> i64 {
    r.expense_spend.iter().chain(&r.gateway_spend).map(|m| m.amount_minor).sum()
}

/// Applies the text search and the sort of the page to inventory rows.
pub(crate) fn arrange(rows: &mut Vec<InventoryRow>, pairs: &[(String, String)]) {
    let q = param(pairs, "q").trim().to_lowercase();
    if !q.is_empty() {
        rows.retain(|r| {
            r.name.to_lowercase().contains(&q)
                || r.vendor.to_lowercase().contains(&q)
                || r.product.to_lowercase().contains(&q)
        });
    }
    match param(pairs, "sort") {
        "name" => rows.sort_by_key(|r| r.name.to_lowercase()),
        "users" => rows.sort_by_key(|r| r.users),
        "spend" => rows.sort_by_key(spend_total),
        "first_seen" => rows.sort_by_key(|r| r.first_seen),
        "last_seen" => rows.sort_by_key(|r| r.last_seen),
        "status" => rows.sort_by_key(|r| r.status.as_str()),
        "risk" => rows.sort_by_key(|r| r.risk_score),
        _ => rows.sort_by_key(|r| (r.devices, r.users, r.payers)),
    }
    let default_desc = !matches!(param(pairs, "sort"), "name" | "status");
    let desc = match param(pairs, "dir") {
        "asc" => false,
        "desc" => true,
        _ => default_desc,
    };
    if desc {
        rows.reverse();
    }
}

/// `GET /inventory`.
pub(crate) async fn page<S: Store>(
    State(state): Shared<S>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> PageResult {
    let next = format!("/inventory{}", raw.as_deref().map(|q| format!("?{q}")).unwrap_or_default());
    let signed = require(&state, &headers, next, Access::All).await?;
    let pairs = crate::api::query_pairs(raw.as_deref());
    let q = query(&pairs)?;
    let (mut rows, _) = super::inventory_rows(&state, &q).await?;
    let departments: BTreeSet<String> =
        rows.iter().flat_map(|r| r.departments.iter().cloned()).collect();
    arrange(&mut rows, &pairs);
    let (_, start, end) = view::page_bounds(&pairs, rows.len());
    let now = crate::store::now();
    let statuses: Vec<(String, String)> = std::iter::once((String::new(), "Any status".to_owned()))
        .chain(
            [
                ProductStatus::Unreviewed,
                ProductStatus::UnderReview,
                ProductStatus::Sanctioned,
                ProductStatus::Unsanctioned,
                ProductStatus::Blocked,
            ]
            .iter()
            .map(|s| (s.as_str().to_owned(), view::status_label(*s).to_owned())),
        )
        .collect();
    let categories: Vec<(String, String)> =
        std::iter::once((String::new(), "Any category".to_owned()))
            .chain(
                aiscout_signatures::Category::ALL
                    .iter()
                    .map(|c| (c.as_str().to_owned(), c.as_str().to_owned())),
            )
            .collect();
    let sources: Vec<(String, String)> = std::iter::once((String::new(), "Any source".to_owned()))
        .chain(SOURCES.iter().map(|s| ((*s).to_owned(), view::source_label(s).to_owned())))
        .collect();
    let sorts: Vec<(String, String)> =
        SORTS.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
    let csv_href = format!(
        "/inventory.csv{}",
        view::query(&pairs.iter().filter(|(k, _)| k != "page").cloned().collect::<Vec<_>>())
    );
    let body = html! {
        main id="main" {
            h1 { "Inventory" }
            form class="filters" method="get" action="/inventory" role="search" {
                div { label for="q" { "Search" } input id="q" name="q" type="search" value=(param(&pairs, "q")) placeholder="name, vendor or id"; }
                div { (view::select("status", "Status", &statuses, param(&pairs, "status"))) }
                div { (view::select("category", "Category", &categories, param(&pairs, "category"))) }
                div { (view::select("source", "Source", &sources, param(&pairs, "source"))) }
                div {
                    label for="department" { "Department" }
                    input id="department" name="department" list="departments" value=(param(&pairs, "department"));
                    datalist id="departments" { @for d in &departments { option value=(d) {} } }
                }
                div { label for="since" { "Seen since" } input id="since" name="since" type="date" value=(param(&pairs, "since")); }
                div { (view::select("sort", "Sort by", &sorts, param(&pairs, "sort"))) }
                div class="actions" {
                    button type="submit" { "Apply" }
                    a href="/inventory" { "Clear" }
                    a class="button secondary" href=(csv_href) download { "Download this view as CSV" }
                }
            }
            p class="muted" { (count(rows.len() as u64)) " products" }
            table class="data" {
                thead {
                    tr {
                        th scope="col" { "Product" }
                        th scope="col" class="num" { "Risk" }
                        th scope="col" { "Status" }
                        th scope="col" { "Category" }
                        th scope="col" { "Sources" }
                        th scope="col" class="num" { "Devices" }
                        th scope="col" class="num" { "Users" }
                        th scope="col" { "Departments" }
                        th scope="col" class="num" { "Spend (cards)" }
                        th scope="col" class="num" { "Spend (gateway)" }
                        th scope="col" { "Last seen" }
                    }
                }
                tbody {
                    @for r in rows.get(start..end).unwrap_or_default() {
                        tr {
                            td {
                                a href={ "/products/" (segment(&r.product)) } { (r.name) } br; span class="muted small" { (r.vendor) }
                                @if r.bypass_devices > 0 { br; (view::bypass(r)) }
                            }
                            td class="num" { (view::risk(r.risk_score, &r.risk_facts)) }
                            td { (view::badge(r.status)) }
                            td { (r.category) }
                            td { @for s in &r.sources { span class="chip" { (view::source_label(s)) } } }
                            td class="num" { (count(r.devices)) }
                            td class="num" { (count(r.users)) }
                            td class="small" { (r.departments.join(", ")) }
                            td class="num" { (view::money(&r.expense_spend)) }
                            td class="num" { (view::money(&r.gateway_spend)) }
                            td { (view::when(r.last_seen, now)) }
                        }
                    }
                }
            }
            @if rows.is_empty() { p class="empty" { "No product matches these filters." } }
            (view::pager("/inventory", &pairs, rows.len()))
        }
    };
    Ok(document("Inventory", Some(&signed), "/inventory", body))
}

/// `GET /inventory.csv`: the view above as the report's formula-safe CSV.
pub(crate) async fn csv<S: Store>(
    State(state): Shared<S>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> PageResult {
    require(&state, &headers, "/inventory".into(), Access::All).await?;
    let pairs = crate::api::query_pairs(raw.as_deref());
    let q = query(&pairs)?;
    let (mut rows, _) = super::inventory_rows(&state, &q).await?;
    arrange(&mut rows, &pairs);
    let body = crate::report::csv(&crate::report::inventory_sheet(&rows));
    Ok(csv_response("aiscout-inventory.csv", body))
}

/// A CSV download.
pub(crate) fn csv_response(name: &str, body: String) -> axum::response::Response {
    let mut r = body.into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/csv; charset=utf-8"));
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{name}\"")) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    r
}
