//! `/`: the overview every role lands on.

use std::collections::BTreeMap;
use std::sync::Arc;

use aiscout_wire::{InventoryQuery, ProductStatus};
use axum::extract::State;
use axum::http::HeaderMap;
use maud::html;

use crate::api::AppState;
use crate::console::chart::{self, Bar, Series};
use crate::console::view::{self, count, segment};
use crate::console::{Access, PageResult, document, require};
use crate::ingest::parse::{DAY_SECS, format_minor, year_month};
use crate::join;
use crate::store::Store;

type Shared<S> = State<Arc<AppState<S>>>;

/// The currency most of the spend is in (charts show one currency; the tables show all).
pub(crate) fn main_currency(spend: &[join::MonthSpend]) -> String {
    let mut lines: BTreeMap<&str, i128> = BTreeMap::new();
    for s in spend {
        *lines.entry(&s.currency).or_default() +=
            i128::from(s.expense_minor) + i128::from(s.gateway_minor);
    }
    lines
        .into_iter()
        .max_by_key(|(_, v)| *v)
        .map_or_else(|| "USD".to_owned(), |(c, _)| c.to_owned())
}

/// `GET /`.
pub(crate) async fn page<S: Store>(State(state): Shared<S>, headers: HeaderMap) -> PageResult {
    let signed = require(&state, &headers, "/".into(), Access::All).await?;
    let now = crate::store::now();
    let (rows, facts) = super::inventory_rows(&state, &InventoryQuery::default()).await?;
    let mut by_status: BTreeMap<&str, u64> = BTreeMap::new();
    for r in &rows {
        *by_status.entry(r.status.as_str()).or_default() += 1;
    }
    let unreviewed = by_status.get("unreviewed").copied().unwrap_or(0);
    let week_ago = now - 7 * DAY_SECS;
    let new_this_week: Vec<_> = rows.iter().filter(|r| r.first_seen >= week_ago).collect();

    let spend = join::spend_by_month(&facts, None);
    let currency = main_currency(&spend);
    let months: Vec<String> =
        (0..12).rev().map(|k| year_month(view::month_start(now, k))).collect();
    let this_month = year_month(now);
    let last_month = year_month(view::month_start(now, 1));
    let mut expense = vec![0_i64; months.len()];
    let mut gateway = vec![0_i64; months.len()];
    let mut departments: BTreeMap<String, (i64, i64)> = BTreeMap::new();
    let (mut shadow_now, mut gateway_now) = (0_i64, 0_i64);
    let (mut shadow_before, mut gateway_before) = (0_i64, 0_i64);
    for s in spend.iter().filter(|s| s.currency == currency) {
        if let Some(i) = months.iter().position(|m| *m == s.month) {
            expense[i] = expense[i].saturating_add(s.expense_minor);
            gateway[i] = gateway[i].saturating_add(s.gateway_minor);
            let d = departments
                .entry(if s.department.is_empty() {
                    "(no department)".into()
                } else {
                    s.department.clone()
                })
                .or_default();
            d.0 = d.0.saturating_add(s.shadow_minor);
            d.1 = d.1.saturating_add(s.gateway_minor);
        }
        if s.month == this_month {
            shadow_now = shadow_now.saturating_add(s.shadow_minor);
            gateway_now = gateway_now.saturating_add(s.gateway_minor);
        } else if s.month == last_month {
            shadow_before = shadow_before.saturating_add(s.shadow_minor);
            gateway_before = gateway_before.saturating_add(s.gateway_minor);
        }
    }
    let money = |v: i64| {
        let text = format_minor(v, &currency);
        let whole =
            text.split('.').next().unwrap_or("0").parse::<u64>().map_or(text.clone(), count);
        format!("{currency} {whole}")
    };
    let by_source = vec![
        Series { label: "Expense (cards)".into(), class: "s0".into(), values: expense },
        Series { label: "Gateway".into(), class: "s1".into(), values: gateway },
    ];
    let mut dept_rows: Vec<(String, (i64, i64))> = departments.into_iter().collect();
    dept_rows.sort_by_key(|(_, (s, g))| std::cmp::Reverse(s.saturating_add(*g)));
    dept_rows.truncate(8);
    let dept_names: Vec<String> = dept_rows.iter().map(|(d, _)| d.clone()).collect();
    let by_dept = vec![
        Series {
            label: "Shadow (unsanctioned cards)".into(),
            class: "s2".into(),
            values: dept_rows.iter().map(|(_, v)| v.0).collect(),
        },
        Series {
            label: "Gateway".into(),
            class: "s1".into(),
            values: dept_rows.iter().map(|(_, v)| v.1).collect(),
        },
    ];
    let mut reach: Vec<_> = rows.iter().collect();
    reach.sort_by_key(|r| std::cmp::Reverse((r.devices, r.users, r.payers)));
    let top: Vec<Bar> = reach
        .iter()
        .take(10)
        .filter(|r| r.devices > 0)
        .map(|r| Bar {
            label: r.name.clone(),
            href: Some(format!("/products/{}", segment(&r.product))),
            value: i64::try_from(r.devices).unwrap_or(i64::MAX),
        })
        .collect();
    let statuses = [
        ProductStatus::Unreviewed,
        ProductStatus::UnderReview,
        ProductStatus::Sanctioned,
        ProductStatus::Unsanctioned,
        ProductStatus::Blocked,
    ];
    let body = html! {
        main id="main" {
            h1 { "Overview" }
            section class="cards" aria-label="Key figures" {
                a class="card" href="/inventory" {
                    span class="figure" { (count(rows.len() as u64)) }
                    span { "AI products found" }
                }
                a class="card attention" href="/inventory?status=unreviewed" {
                    span class="figure" { (count(unreviewed)) }
                    span { "Unreviewed" }
                }
                a class="card" href="/inventory?sort=first_seen&dir=desc" {
                    span class="figure" { (count(new_this_week.len() as u64)) }
                    span { "New this week" }
                }
                div class="card" {
                    span class="figure" { (money(shadow_now)) }
                    span { "Shadow spend this month" }
                    span class="muted small" { (money(shadow_before)) " last month" }
                }
                div class="card" {
                    span class="figure" { (money(gateway_now)) }
                    span { "Gateway spend this month" }
                    span class="muted small" { (money(gateway_before)) " last month" }
                }
            }
            section class="grid2" {
                div class="panel" {
                    h2 { "Products by status" }
                    ul class="statuses" {
                        @for s in statuses {
                            li {
                                a href={ "/inventory?status=" (s.as_str()) } {
                                    (view::badge(s)) " "
                                    span class="num" { (count(by_status.get(s.as_str()).copied().unwrap_or(0))) }
                                }
                            }
                        }
                    }
                    @if !new_this_week.is_empty() {
                        h2 { "New this week" }
                        ul class="plain" {
                            @for r in new_this_week.iter().take(8) {
                                li { a href={ "/products/" (segment(&r.product)) } { (r.name) } " " (view::badge(r.status)) }
                            }
                        }
                    }
                }
                div class="panel" {
                    (chart::bars("top-reach", "Top products by reach (devices)", &top, &|v| count(u64::try_from(v).unwrap_or(0))))
                }
            }
            section class="panel" {
                (chart::stacked("spend-by-source", &format!("Monthly spend by source ({currency})"), &months, &by_source, &money))
            }
            section class="panel" {
                (chart::stacked("spend-by-department", &format!("Spend by department, last 12 months ({currency})"), &dept_names, &by_dept, &money))
            }
        }
    };
    Ok(document("Overview", Some(&signed), "/", body))
}
