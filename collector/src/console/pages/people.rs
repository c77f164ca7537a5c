//! `/people`: each person's AI tools and spend across card, gateway and endpoint use.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Path, RawQuery, State};
use axum::http::HeaderMap;
use maud::html;

use crate::api::AppState;
use crate::console::view::{self, count, param, segment};
use crate::console::{Access, PageResult, Refusal, document, require};
use crate::join::{self, Directory, Purse};
use crate::model::PersonUsage;
use crate::store::Store;

type Shared<S> = State<Arc<AppState<S>>>;

/// A person's gateway spend in minor units, per currency.
fn gateway(u: &PersonUsage) -> Vec<aiscout_wire::Money> {
    let mut g = Purse::default();
    for (c, v) in &u.gateway_nanos {
        g.add(c, i128::from(*v));
    }
    g.nanos()
}

/// A person's card and gateway spend together, per currency.
fn spend(u: &PersonUsage) -> Vec<aiscout_wire::Money> {
    let mut p = Purse::default();
    for (c, v) in &u.expense_minor {
        p.add(c, i128::from(*v));
    }
    for m in gateway(u) {
        p.add(&m.currency, i128::from(m.amount_minor));
    }
    p.minor()
}

/// Replaces the store's card spend (lines whose export named the payer's email) with the
/// reconciliation's: each matched line's payer resolved through the directory by email, else by
/// name, as `join::Directory` does; people who only pay by card are added.
fn with_card_spend(
    usage: Vec<PersonUsage>,
    people: &[crate::model::Person],
    expenses: &[crate::model::ExpenseLine],
) -> Vec<PersonUsage> {
    let dir = Directory::new(people);
    let mut card: BTreeMap<String, (BTreeMap<String, i64>, i64)> = BTreeMap::new();
    for l in expenses.iter().filter(|l| l.product.is_some()) {
        let payer = dir.payer(l);
        if payer.email.is_empty() {
            continue;
        }
        let e = card.entry(payer.email.to_lowercase()).or_default();
        let sum = e.0.entry(l.currency.clone()).or_default();
        *sum = sum.saturating_add(l.amount_minor);
        e.1 = e.1.max(l.occurred_at);
    }
    let mut by_email: BTreeMap<String, PersonUsage> = usage
        .into_iter()
        .map(|u| (u.email.clone(), PersonUsage { expense_minor: Vec::new(), ..u }))
        .collect();
    for (email, (sums, last)) in card {
        let u = by_email
            .entry(email.clone())
            .or_insert_with(|| PersonUsage { email, ..PersonUsage::default() });
        u.expense_minor = sums.into_iter().collect();
        u.last_activity = u.last_activity.max(last);
    }
    by_email.into_values().collect()
}

/// `GET /people?q=&page=`.
pub(crate) async fn page<S: Store>(
    State(state): Shared<S>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> PageResult {
    let signed = require(&state, &headers, "/people".into(), Access::People).await?;
    let pairs = crate::api::query_pairs(raw.as_deref());
    let now = crate::store::now();
    let (usage, people, expenses) = tokio::try_join!(
        state.store.person_usage(None),
        state.store.people(),
        state.store.expenses(None)
    )?;
    let usage = with_card_spend(usage, &people, &expenses);
    let directory: BTreeMap<&str, &crate::model::Person> =
        people.iter().map(|p| (p.email.as_str(), p)).collect();
    let active_since = now - 30 * 86_400;
    let active = usage.iter().filter(|u| u.last_activity >= active_since).count();
    let mut all = Purse::default();
    for u in &usage {
        for m in spend(u) {
            all.add(&m.currency, i128::from(m.amount_minor));
        }
    }
    let per_person: Vec<aiscout_wire::Money> = all
        .minor()
        .into_iter()
        .map(|m| {
            join::money(
                &m.currency,
                m.amount_minor / i64::try_from(usage.len().max(1)).unwrap_or(1),
            )
        })
        .collect();
    let q = param(&pairs, "q").trim().to_lowercase();
    let mut rows: Vec<&PersonUsage> = usage
        .iter()
        .filter(|u| {
            q.is_empty()
                || u.email.contains(&q)
                || directory.get(u.email.as_str()).is_some_and(|p| {
                    p.name.to_lowercase().contains(&q) || p.department.to_lowercase().contains(&q)
                })
        })
        .collect();
    rows.sort_by_key(|u| {
        std::cmp::Reverse((spend(u).iter().map(|m| m.amount_minor).sum::<i64>(), u.products.len()))
    });
    let (_, start, end) = view::page_bounds(&pairs, rows.len());
    let body = html! {
        main id="main" {
            h1 { "People" }
            section class="cards" aria-label="People" {
                div class="card" { span class="figure" { (count(usage.len() as u64)) } span { "People using AI" } }
                div class="card" { span class="figure" { (count(active as u64)) } span { "Active in the last 30 days" } }
                div class="card" { span class="figure small" { (view::money(&per_person)) } span { "Spend per person using AI (card and gateway, all time)" } }
            }
            form class="filters" method="get" action="/people" role="search" {
                div { label for="q" { "Search" } input id="q" name="q" type="search" value=(param(&pairs, "q")) placeholder="email, name or department"; }
                div class="actions" { button type="submit" { "Apply" } a href="/people" { "Clear" } }
            }
            table class="data" {
                thead { tr { th scope="col" { "Person" } th scope="col" { "Department" } th scope="col" { "AI tools on their devices" } th scope="col" class="num" { "Card spend" } th scope="col" class="num" { "Gateway spend" } th scope="col" { "Last activity" } } }
                tbody { @for u in rows.get(start..end).unwrap_or_default() {
                    @let person = directory.get(u.email.as_str());
                    tr {
                        td { a href={ "/people/" (segment(&u.email)) } { (person.map_or(u.email.as_str(), |p| p.name.as_str())) } br; span class="muted small" { (u.email) } }
                        td { (person.map_or("", |p| p.department.as_str())) }
                        td class="small" { (u.products.iter().map(|p| state.catalog.product(p).map_or(p.clone(), |x| x.name.clone())).collect::<Vec<_>>().join(", ")) }
                        td class="num" { (view::money(&u.expense_minor.iter().map(|(c, v)| join::money(c, *v)).collect::<Vec<_>>())) }
                        td class="num" { (view::money(&gateway(u))) }
                        td { (view::when(u.last_activity, now)) }
                    }
                } }
            }
            @if rows.is_empty() { p class="empty" { "Nobody matches." } }
            (view::pager("/people", &pairs, rows.len()))
        }
    };
    Ok(document("People", Some(&signed), "/people", body))
}

/// `GET /people/{email}`.
pub(crate) async fn detail<S: Store>(
    State(state): Shared<S>,
    headers: HeaderMap,
    Path(email): Path<String>,
) -> PageResult {
    let email = email.to_lowercase();
    let signed =
        require(&state, &headers, format!("/people/{}", segment(&email)), Access::People).await?;
    let (usage, people, expenses) = tokio::try_join!(
        state.store.person_usage(Some(email.clone())),
        state.store.people(),
        state.store.expenses(None)
    )?;
    let usage = with_card_spend(usage, &people, &expenses).into_iter().find(|u| u.email == email);
    let person = people.iter().find(|p| p.email == email);
    if usage.is_none() && person.is_none() {
        return Err(Refusal::NotFound(format!(
            "Nobody with the email {email:?} is in the directory or uses AI."
        )));
    }
    let usage = usage.unwrap_or_default();
    let dir = Directory::new(&people);
    let lines: Vec<_> =
        expenses.iter().filter(|l| l.product.is_some() && dir.payer(l).email == email).collect();
    let now = crate::store::now();
    let name = person.map_or(email.as_str(), |p| p.name.as_str());
    let body = html! {
        main id="main" {
            p class="crumbs" { a href="/people" { "People" } " / " (name) }
            h1 { (name) }
            dl class="facts" {
                dt { "Email" } dd { (email) }
                @if let Some(p) = person {
                    dt { "Department" } dd { (p.department) }
                    @if let Some(m) = &p.manager { dt { "Manager" } dd { (m) } }
                }
                dt { "Spend (card and gateway)" } dd { (view::money(&spend(&usage))) }
                dt { "Last activity" } dd { (view::when(usage.last_activity, now)) }
            }
            h2 { "AI tools on their devices" }
            @if usage.products.is_empty() { p class="empty" { "None seen." } }
            ul class="plain" { @for p in &usage.products { li { a href={ "/products/" (segment(p)) } { (state.catalog.product(p).map_or(p.clone(), |x| x.name.clone())) } } } }
            h2 { "Card payments" }
            @if lines.is_empty() { p class="empty" { "None." } }
            @else {
                table class="data" {
                    thead { tr { th scope="col" { "Date" } th scope="col" { "Product" } th scope="col" { "Descriptor" } th scope="col" class="num" { "Amount" } } }
                    tbody { @for l in lines.iter().rev().take(200) { tr {
                        td { (view::date(l.occurred_at)) }
                        td { @if let Some(p) = &l.product { a href={ "/products/" (segment(p)) } { (state.catalog.product(p).map_or(p.clone(), |x| x.name.clone())) } } }
                        td { code { (l.descriptor) } }
                        td class="num" { (view::amount(&join::money(&l.currency, l.amount_minor))) }
                    } } }
                }
            }
            h2 { "Gateway spend" }
            p { (view::money(&gateway(&usage))) }
        }
    };
    Ok(document(name, Some(&signed), "/people", body))
}
