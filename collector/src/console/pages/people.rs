//! `/people`: each person's AI tools and spend across card, gateway and endpoint use.

use std::sync::Arc;

use axum::extract::{Path, RawQuery, State};
use axum::http::HeaderMap;
use maud::html;

use crate::api::AppState;
use crate::console::view::{self, count, param, segment};
use crate::console::{Access, PageResult, Refusal, document, require};
use crate::join::{self, people::PersonSpend};
use crate::store::Store;

type Shared<S> = State<Arc<AppState<S>>>;

/// `GET /people?q=&page=`.
pub(crate) async fn page<S: Store>(
    State(state): Shared<S>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> PageResult {
    let signed = require(&state, &headers, "/people".into(), Access::People).await?;
    let pairs = crate::api::query_pairs(raw.as_deref());
    let now = crate::store::now();
    let all = state.cache.people(&state.store, now).await?;
    // Deprovisioned people (SCIM `active: false`) stay listed but are no active seat.
    let gone: std::collections::BTreeSet<String> = state
        .store
        .people_active()
        .await?
        .into_iter()
        .filter(|(_, active)| !active)
        .map(|(e, _)| e.to_lowercase())
        .collect();
    let active_since = now - 30 * 86_400;
    let active = all
        .people
        .iter()
        .filter(|p| p.usage.last_activity.get() >= active_since && !gone.contains(&p.usage.email))
        .count();
    let per_person: Vec<aiscout_wire::Money> = all
        .total
        .iter()
        .map(|m| {
            join::money(
                &m.currency,
                m.amount_minor / i64::try_from(all.people.len().max(1)).unwrap_or(1),
            )
        })
        .collect();
    let q = param(&pairs, "q").trim().to_lowercase();
    let rows: Vec<&PersonSpend> = all
        .people
        .iter()
        .filter(|p| {
            q.is_empty()
                || p.usage.email.contains(&q)
                || p.name.to_lowercase().contains(&q)
                || p.department.to_lowercase().contains(&q)
        })
        .collect();
    let (_, start, end) = view::page_bounds(&pairs, rows.len());
    let body = html! {
        main id="main" {
            h1 { "People" }
            section class="cards" aria-label="People" {
                div class="card" { span class="figure" { (count(all.people.len() as u64)) } span { "People using AI" } }
                div class="card" { span class="figure" { (count(active as u64)) } span { "Active in the last 30 days" } }
                div class="card" { span class="figure small" { (view::money(&per_person)) } span { "Spend per person using AI (card and gateway, all time)" } }
            }
            form class="filters" method="get" action="/people" role="search" {
                div { label for="q" { "Search" } input id="q" name="q" type="search" value=(param(&pairs, "q")) placeholder="email, name or department"; }
                div class="actions" { button type="submit" { "Apply" } a href="/people" { "Clear" } }
            }
            table class="data" {
                thead { tr { th scope="col" { "Person" } th scope="col" { "Department" } th scope="col" { "AI tools on their devices" } th scope="col" class="num" { "Card spend" } th scope="col" class="num" { "Gateway spend" } th scope="col" { "Last activity" } } }
                tbody { @for p in rows.get(start..end).unwrap_or_default() {
                    tr {
                        @let shown = display_name(&p.name, &p.usage.email);
                        td { a href={ "/people/" (segment(&p.usage.email)) } { (shown) } @if shown != p.usage.email { br; span class="muted small" { (p.usage.email) } } @if gone.contains(&p.usage.email) { " " span class="badge" { "deprovisioned" } } }
                        td { (p.department) }
                        td class="small" { (p.usage.products.iter().map(|x| state.catalog.product(x).map_or(x.clone(), |c| c.name.clone())).collect::<Vec<_>>().join(", ")) }
                        td class="num" { (view::money(&p.card())) }
                        td class="num" { (view::money(&p.gateway)) }
                        td { (view::when(p.usage.last_activity, now)) }
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
    let now = crate::store::now();
    let (all, spend) = tokio::try_join!(
        state.cache.people(&state.store, now),
        state.cache.spend(&state.store, None, now)
    )?;
    let found = all.people.iter().find(|p| p.usage.email == email);
    let person = spend.people.iter().find(|p| p.email == email);
    if found.is_none() && person.is_none() {
        return Err(Refusal::NotFound(format!(
            "Nobody with the email {email:?} is in the directory or uses AI."
        )));
    }
    let usage = found.cloned().unwrap_or_default();
    let lines: Vec<_> = spend
        .lines()
        .filter(|(l, p)| l.product.is_some() && p.email == email)
        .map(|(l, _)| l)
        .collect();
    let name = person.map_or(email.as_str(), |p| display_name(&p.name, &email));
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
                dt { "Spend (card and gateway)" } dd { (view::money(&usage.spend)) }
                dt { "Last activity" } dd { (view::when(usage.usage.last_activity, now)) }
            }
            h2 { "AI tools on their devices" }
            @if usage.usage.products.is_empty() { p class="empty" { "None seen." } }
            ul class="plain" { @for p in &usage.usage.products { li { a href={ "/products/" (segment(p)) } { (state.catalog.product(p).map_or(p.clone(), |x| x.name.clone())) } } } }
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
            p { (view::money(&usage.gateway)) }
        }
    };
    Ok(document(name, Some(&signed), "/people", body))
}

/// What a person is called on the page: their name, or their email (or its pseudonym) when the
/// name is unknown or is itself a pseudonym (pseudonymous mode keys names and emails apart, so
/// showing both would show two unrelated `person-…` values for one person).
fn display_name<'a>(name: &'a str, email: &'a str) -> &'a str {
    if name.is_empty() || crate::identity::is_pseudonym(name) { email } else { name }
}
