//! `/reconcile`: procurement's five sections with totals, drill-downs and CSV per section,
//! the unmatched AI-looking lines with a "This is…" form per row (security and admins teach
//! the collector which product a descriptor is; issue 17), the taught descriptors with undo,
//! the consumer plans paid on cards with the business seat proposed, and the gateway bypass
//! (provider APIs reached without the sanctioned gateway that fronts them).

use std::sync::Arc;

use aiscout_wire::Money;
use axum::extract::{Path, RawQuery, State};
use axum::http::HeaderMap;
use maud::html;

use crate::api::AppState;
use crate::console::view::{self, count, param, segment};
use crate::console::{
    Access, CSRF_FIELD, PageResult, Refusal, document, field, require, require_form, see_other,
};
use crate::join::{self, Purse};
use crate::model::UsageFilter;
use crate::store::Store;

type Shared<S> = State<Arc<AppState<S>>>;

/// URL names of the CSV sections, in the report's sheet order.
const SECTIONS: [&str; 8] = [
    "paid-not-sanctioned",
    "used-not-paid",
    "idle-subscriptions",
    "duplicate-subscriptions",
    "gateway-vs-shadow",
    "candidates",
    "consumer-plans",
    "gateway-bypass",
];

fn idle_days(pairs: &[(String, String)]) -> Result<u32, Refusal> {
    match param(pairs, "idle_days") {
        "" => Ok(30),
        v => v
            .parse()
            .map_err(|_| Refusal::BadRequest(format!("idle_days: {v:?} is not a number of days"))),
    }
}

async fn reconciliation<S: Store>(
    state: &AppState<S>,
    pairs: &[(String, String)],
) -> Result<(aiscout_wire::Reconciliation, join::Facts), Refusal> {
    let days = idle_days(pairs)?;
    let facts = join::gather_from(
        &state.store,
        Some(&state.cache),
        UsageFilter::default(),
        crate::store::now(),
        join::Purpose::Reconcile,
    )
    .await?;
    Ok((join::reconcile::reconcile(&state.catalog, &facts, days), facts))
}

/// Payers listed in one row of the duplicate subscriptions (the CSV has all).
const PAYERS_SHOWN: usize = 20;

/// The rows of one section's current page (its page number is the query parameter `key`).
fn rows<'a, T>(pairs: &[(String, String)], key: &str, all: &'a [T]) -> &'a [T] {
    let (_, start, end) = view::page_bounds_of(pairs, key, all.len());
    all.get(start..end).unwrap_or_default()
}

fn total<'a>(items: impl Iterator<Item = &'a Money>) -> Vec<Money> {
    let mut p = Purse::default();
    for m in items {
        p.add(&m.currency, i128::from(m.amount_minor));
    }
    p.minor()
}

/// A team plan's saving over the individual subscriptions, or what it would cost more (a
/// negative saving: team plans carry admin controls, not always a lower price).
fn saving(m: &Money) -> String {
    match m.amount.strip_prefix('-') {
        Some(more) => {
            let more = Money {
                amount: more.to_owned(),
                amount_minor: m.amount_minor.saturating_neg(),
                ..m.clone()
            };
            format!("costs {} more", view::amount(&more))
        }
        None => view::amount(m),
    }
}

/// `GET /reconcile`.
pub(crate) async fn page<S: Store>(
    State(state): Shared<S>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> PageResult {
    let signed = require(&state, &headers, "/reconcile".into(), Access::Reconcile).await?;
    let pairs = crate::api::query_pairs(raw.as_deref());
    let (r, _) = reconciliation(&state, &pairs).await?;
    let teaches = signed.may(Access::Review);
    let taught = state.store.mappings().await?;
    let products = state.catalog.products();
    let now = crate::store::now();
    let card = |p: &str| format!("/products/{}", segment(p));
    let lines = |product: &str, payer: &str| {
        format!(
            "/reconcile/lines?product={}&payer={}",
            view::url_encode(product),
            view::url_encode(payer)
        )
    };
    let csv =
        |i: usize| format!("/reconcile/{}.csv", SECTIONS.get(i).copied().unwrap_or("candidates"));
    // Newest month first.
    let months: Vec<_> = r.gateway_vs_shadow.iter().rev().cloned().collect();
    let body = html! {
        main id="main" {
            h1 { "Reconciliation" }
            p class="muted" { "Idle means no use for " (r.idle_days) " days." }
            // Counts from the redirect after a teach or an undo; anything but a number is no
            // notice (the page never repeats other text from its address).
            @if let Ok(n) = param(&pairs, "taught").parse::<u64>() {
                p class="notice" role="status" { "Taught: " (n) @if n == 1 { " expense line is" } @else { " expense lines are" } " now counted for that product, and future imports resolve the descriptor too. Written to the audit log." }
            }
            @if let Ok(n) = param(&pairs, "undone").parse::<u64>() {
                p class="notice" role="status" { "Undone: " (n) @if n == 1 { " expense line is a candidate" } @else { " expense lines are candidates" } " again. Written to the audit log." }
            }
            nav class="toc" aria-label="Sections" { ol {
                li { a href="#s1" { "Paid but not sanctioned (" (r.paid_not_sanctioned.len()) ")" } }
                li { a href="#s2" { "Used but not paid (" (r.used_not_paid.len()) ")" } }
                li { a href="#s3" { "Idle subscriptions (" (r.idle_subscriptions.len()) ")" } }
                li { a href="#s4" { "Duplicate subscriptions (" (r.duplicate_subscriptions.len()) ")" } }
                li { a href="#s5" { "Gateway and shadow spend" } }
                li { a href="#s6" { "Unmatched AI-looking lines (" (r.candidates.len()) ")" } }
                li { a href="#s7" { "Consumer plans (" (r.consumer_plans.len()) ")" } }
                li { a href="#s8" { "Taught descriptors (" (taught.len()) ")" } }
                li { a href="#s9" { "Gateway bypass (" (r.gateway_bypass.len()) ")" } }
            } }
            section class="panel" id="s1" {
                h2 { "1. Paid but not sanctioned" }
                p class="total" { "Total " (view::money(&total(r.paid_not_sanctioned.iter().map(|x| &x.spend)))) " · " a href=(csv(0)) download { "CSV" } }
                table class="data" {
                    thead { tr { th scope="col" { "Product" } th scope="col" { "Status" } th scope="col" { "Payer" } th scope="col" { "Department" } th scope="col" class="num" { "Spend" } th scope="col" class="num" { "Lines" } th scope="col" { "Last charge" } } }
                    tbody { @for x in rows(&pairs, "s1", &r.paid_not_sanctioned) { tr {
                        td { a href=(card(&x.product)) { (x.name) } } td { (view::badge(x.status)) } td { (x.payer) } td { (x.department) }
                        td class="num" { (view::amount(&x.spend)) }
                        td class="num" { a href=(lines(&x.product, &x.payer)) { (x.lines) span class="visually-hidden" { " expense lines of " (x.payer) " for " (x.name) } } }
                        td { (view::date(x.last_charge)) }
                    } } }
                }
                (view::pager_of("/reconcile", &pairs, "s1", "#s1", r.paid_not_sanctioned.len()))
            }
            section class="panel" id="s2" {
                h2 { "2. Used but not paid" }
                @let devices: u64 = r.used_not_paid.iter().map(|x| x.devices).sum();
                p class="total" { (count(devices)) @if devices == 1 { " device · " } @else { " devices · " } a href=(csv(1)) download { "CSV" } }
                table class="data" {
                    thead { tr { th scope="col" { "Product" } th scope="col" { "Status" } th scope="col" class="num" { "Devices" } th scope="col" class="num" { "Users" } th scope="col" { "Departments" } th scope="col" { "Last seen" } } }
                    tbody { @for x in rows(&pairs, "s2", &r.used_not_paid) { tr {
                        td { a href={ (card(&x.product)) "#devices" } { (x.name) } } td { (view::badge(x.status)) }
                        td class="num" { (count(x.devices)) } td class="num" { (count(x.users)) } td class="small" { (x.departments.join(", ")) }
                        td { (view::when(x.last_seen, now)) }
                    } } }
                }
                (view::pager_of("/reconcile", &pairs, "s2", "#s2", r.used_not_paid.len()))
            }
            section class="panel" id="s3" {
                h2 { "3. Idle subscriptions" }
                p class="total" { "Seats " (view::money(&total(r.idle_subscriptions.iter().map(|x| &x.seat_price)))) " per charge · " a href=(csv(2)) download { "CSV" } }
                table class="data" {
                    thead { tr { th scope="col" { "Product" } th scope="col" { "Payer" } th scope="col" { "Department" } th scope="col" { "Cadence" } th scope="col" class="num" { "Seat" } th scope="col" { "Last charge" } th scope="col" { "Last used" } } }
                    tbody { @for x in rows(&pairs, "s3", &r.idle_subscriptions) { tr {
                        td { a href=(card(&x.product)) { (x.name) } } td { a href=(lines(&x.product, &x.payer)) { (x.payer) } } td { (x.department) } td { (x.cadence) }
                        td class="num" { (view::amount(&x.seat_price)) } td { (view::date(x.last_charge)) }
                        td { @if let Some(t) = x.last_used { (view::when(t, now)) } @else { "never" } }
                    } } }
                }
                (view::pager_of("/reconcile", &pairs, "s3", "#s3", r.idle_subscriptions.len()))
            }
            section class="panel" id="s4" {
                h2 { "4. Duplicate individual subscriptions" }
                @let cheaper = total(r.duplicate_subscriptions.iter().filter_map(|x| x.saving.as_ref()).filter(|m| m.amount_minor > 0));
                p class="total" {
                    @if cheaper.is_empty() { "No team plan costs less than the individual subscriptions it would replace" }
                    @else { "Team plans would save " (view::money(&cheaper)) " a year where they cost less" }
                    " · " a href=(csv(3)) download { "CSV" }
                }
                table class="data" {
                    thead { tr { th scope="col" { "Product" } th scope="col" { "Payers" } th scope="col" class="num" { "Per year now" } th scope="col" { "Team plan" } th scope="col" class="num" { "Saving" } } }
                    tbody { @for x in rows(&pairs, "s4", &r.duplicate_subscriptions) { tr {
                        td { a href=(card(&x.product)) { (x.name) } }
                        td class="small" {
                            @for (i, p) in x.payers.iter().take(PAYERS_SHOWN).enumerate() { @if i > 0 { ", " } a href=(lines(&x.product, p)) { (p) } }
                            @if x.payers.len() > PAYERS_SHOWN { " and " (count((x.payers.len() - PAYERS_SHOWN) as u64)) " more (all in the CSV)" }
                        }
                        td class="num" { (view::amount(&x.current_annual)) } td { (x.team_plan.as_deref().unwrap_or("–")) }
                        td class="num" { @if let Some(s) = &x.saving { (saving(s)) } @else { "–" } }
                    } } }
                }
                (view::pager_of("/reconcile", &pairs, "s4", "#s4", r.duplicate_subscriptions.len()))
            }
            section class="panel" id="s5" {
                h2 { "5. Gateway and shadow spend by department and month" }
                p class="total" { "Gateway " (view::money(&total(r.gateway_vs_shadow.iter().map(|x| &x.gateway)))) ", shadow " (view::money(&total(r.gateway_vs_shadow.iter().map(|x| &x.shadow)))) " · " a href=(csv(4)) download { "CSV" } }
                table class="data" {
                    thead { tr { th scope="col" { "Month" } th scope="col" { "Department" } th scope="col" class="num" { "Gateway" } th scope="col" class="num" { "Shadow" } } }
                    tbody { @for x in rows(&pairs, "s5", &months) { tr {
                        td { (x.month) } td { @if x.department.is_empty() { span class="muted" { "(no department)" } } @else { (x.department) } } td class="num" { (view::amount(&x.gateway)) } td class="num" { (view::amount(&x.shadow)) }
                    } } }
                }
                (view::pager_of("/reconcile", &pairs, "s5", "#s5", months.len()))
            }
            section class="panel" id="s6" {
                h2 { "6. Unmatched AI-looking expense lines" }
                p class="total" { "Total " (view::money(&total(r.candidates.iter().map(|x| &x.spend)))) " · " a href=(csv(5)) download { "CSV" } }
                @if teaches { p class="muted" { "Type a product's id or name under “This is…” and press Enter: every line with that descriptor, past and future, counts for the product." } }
                table class="data" {
                    thead { tr { th scope="col" { "Descriptor" } th scope="col" { "Payer" } th scope="col" { "Department" } th scope="col" class="num" { "Spend" } th scope="col" class="num" { "Lines" } th scope="col" { "Last charge" } @if teaches { th scope="col" { "This is…" } } } }
                    tbody { @for (i, x) in rows(&pairs, "s6", &r.candidates).iter().enumerate() { tr {
                        td { code { (x.descriptor) } } td { (x.payer) } td { (x.department) } td class="num" { (view::amount(&x.spend)) }
                        td class="num" { a href={ "/reconcile/lines?descriptor=" (view::url_encode(&x.descriptor)) } { (x.lines) } } td { (view::date(x.last_charge)) }
                        @if teaches { td {
                            form class="teach" method="post" action="/reconcile/mappings" {
                                input type="hidden" name=(CSRF_FIELD) value=(signed.session.csrf);
                                input type="hidden" name="descriptor" value=(x.descriptor);
                                label class="visually-hidden" for={ "teach-" (i) } { "Product for " (x.descriptor) }
                                input type="text" id={ "teach-" (i) } name="product" list="catalog-products" required autocomplete="off" placeholder="product id or name";
                                " " button type="submit" { "Teach" }
                            }
                        } }
                    } } }
                }
                @if teaches { datalist id="catalog-products" { @for p in products { option value=(p.id) { (p.name) } } } }
                (view::pager_of("/reconcile", &pairs, "s6", "#s6", r.candidates.len()))
            }
            section class="panel" id="s7" {
                h2 { "7. Consumer plans paid on cards" }
                p class="muted" { "Personal subscriptions (the amount is a consumer plan's list price, or the descriptor names the plan) to products that also sell a business seat." }
                p class="total" { "Total " (view::money(&total(r.consumer_plans.iter().map(|x| &x.spend)))) " · " a href=(csv(6)) download { "CSV" } }
                table class="data" {
                    thead { tr { th scope="col" { "Product" } th scope="col" { "Payer" } th scope="col" { "Department" } th scope="col" { "Consumer plan" } th scope="col" class="num" { "Spend" } th scope="col" class="num" { "Lines" } th scope="col" { "Proposed business seat" } } }
                    tbody { @for x in rows(&pairs, "s7", &r.consumer_plans) { tr {
                        td { a href=(card(&x.product)) { (x.name) } } td { (x.payer) } td { (x.department) }
                        td { (x.plan) " (" (view::amount(&x.plan_price)) " a " (x.period) ")" }
                        td class="num" { (view::amount(&x.spend)) }
                        td class="num" { a href=(lines(&x.product, &x.payer)) { (x.lines) span class="visually-hidden" { " expense lines of " (x.payer) " for " (x.name) } } }
                        td { @match (&x.business_plan, &x.business_price, &x.business_period) {
                            (Some(plan), Some(price), Some(per)) => { (plan) " (" (view::amount(price)) " per seat per " (per) @if let Some(m) = x.business_min_seats { ", minimum " (m) " seats" } ")" }
                            _ => { "–" }
                        } }
                    } } }
                }
                (view::pager_of("/reconcile", &pairs, "s7", "#s7", r.consumer_plans.len()))
            }
            section class="panel" id="s8" {
                h2 { "8. Taught descriptors" }
                @if taught.is_empty() { p class="muted" { "None yet." } } @else {
                    table class="data" {
                        thead { tr { th scope="col" { "Descriptor" } th scope="col" { "Product" } th scope="col" { "Taught by" } th scope="col" { "When" } @if teaches { th scope="col" { "Undo" } } } }
                        tbody { @for m in &taught { tr {
                            td { code { (m.descriptor) } }
                            td { a href=(card(&m.product)) { (state.catalog.product(&m.product).map_or(m.product.as_str(), |p| p.name.as_str())) } }
                            td { (m.actor) } td { (view::date(m.created_at)) }
                            @if teaches { td {
                                form class="undo" method="post" action={ "/reconcile/mappings/" (m.id) "/undo" } {
                                    input type="hidden" name=(CSRF_FIELD) value=(signed.session.csrf);
                                    button type="submit" { "Undo" span class="visually-hidden" { " " (m.descriptor) } }
                                }
                            } }
                        } } }
                    }
                }
            }
            section class="panel" id="s9" {
                h2 { "9. Gateway bypass" }
                p class="muted" { "Devices that reached a provider's API directly although a sanctioned gateway of the organisation overlay fronts it, per device, person and process, with the gateway that should have carried the traffic." }
                @let devices: std::collections::BTreeSet<&str> = r.gateway_bypass.iter().map(|x| x.host_id.as_str()).collect();
                p class="total" { (count(devices.len() as u64)) @if devices.len() == 1 { " device · " } @else { " devices · " } a href=(csv(7)) download { "CSV" } }
                table class="data" {
                    thead { tr { th scope="col" { "Provider API" } th scope="col" { "Device" } th scope="col" { "Person" } th scope="col" { "Department" } th scope="col" { "Process" } th scope="col" { "API host" } th scope="col" { "Should go through" } th scope="col" class="num" { "Count" } th scope="col" { "Last seen" } } }
                    tbody { @for x in rows(&pairs, "s9", &r.gateway_bypass) { tr {
                        td { a href={ (card(&x.product)) "#bypass" } { (x.name) } } td { (x.hostname) } td { (x.person) } td { (x.department) }
                        td { @if x.process.is_empty() { span class="muted" { "not attributed" } } @else { code { (x.process) } } }
                        td { code { (x.host) } } td { code { (x.gateway_host) } " (" (x.gateway) ")" }
                        td class="num" { (count(x.count)) } td { (view::when(x.last_seen, now)) }
                    } } }
                }
                (view::pager_of("/reconcile", &pairs, "s9", "#s9", r.gateway_bypass.len()))
            }
        }
    };
    Ok(document("Reconciliation", Some(&signed), "/reconcile", body))
}

/// `GET /reconcile/lines?product=&payer=&descriptor=`: the expense lines behind a row.
pub(crate) async fn lines<S: Store>(
    State(state): Shared<S>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> PageResult {
    let signed = require(&state, &headers, "/reconcile".into(), Access::Reconcile).await?;
    let pairs = crate::api::query_pairs(raw.as_deref());
    let (product, payer, descriptor) = (
        param(&pairs, "product"),
        param(&pairs, "payer").to_lowercase(),
        param(&pairs, "descriptor"),
    );
    let spend = state.cache.spend(&state.store, None, crate::store::now()).await?;
    let rows: Vec<_> = spend
        .lines()
        .filter(|(l, _)| product.is_empty() || l.product.as_deref() == Some(product))
        .filter(|(l, _)| descriptor.is_empty() || l.descriptor == descriptor)
        .filter(|(_, p)| payer.is_empty() || p.label().to_lowercase() == payer || p.email == payer)
        .collect();
    let (_, start, end) = view::page_bounds(&pairs, rows.len());
    let body = html! {
        main id="main" {
            p class="crumbs" { a href="/reconcile" { "Reconciliation" } " / expense lines" }
            h1 { "Expense lines" }
            p class="muted" {
                @if !product.is_empty() { "Product " code { (product) } ". " }
                @if !payer.is_empty() { "Payer " (payer) ". " }
                @if !descriptor.is_empty() { "Descriptor " code { (descriptor) } ". " }
                (count(rows.len() as u64)) " lines."
            }
            table class="data" {
                thead { tr { th scope="col" { "Date" } th scope="col" { "Descriptor" } th scope="col" { "Payer" } th scope="col" { "Department" } th scope="col" class="num" { "Amount" } th scope="col" { "File, line" } } }
                tbody { @for (l, p) in rows.get(start..end).unwrap_or_default() { tr {
                    td { (view::date(l.occurred_at)) } td { code { (l.descriptor) } } td { (p.label()) } td { (p.department) }
                    td class="num" { (view::amount(&join::money(&l.currency, l.amount_minor))) }
                    td class="small" { (l.file) ":" (l.line) }
                } } }
            }
            (view::pager("/reconcile/lines", &pairs, rows.len()))
        }
    };
    Ok(document("Expense lines", Some(&signed), "/reconcile", body))
}

/// `GET /reconcile/{section}.csv`: one section as the report's formula-safe CSV.
pub(crate) async fn csv<S: Store>(
    State(state): Shared<S>,
    headers: HeaderMap,
    Path(section): Path<String>,
    RawQuery(raw): RawQuery,
) -> PageResult {
    require(&state, &headers, "/reconcile".into(), Access::Reconcile).await?;
    let name = section.strip_suffix(".csv").unwrap_or(&section);
    let Some(index) = SECTIONS.iter().position(|s| *s == name) else {
        return Err(Refusal::NotFound(format!(
            "No reconciliation section {name:?}; sections are {}.",
            SECTIONS.join(", ")
        )));
    };
    let pairs = crate::api::query_pairs(raw.as_deref());
    let (r, _) = reconciliation(&state, &pairs).await?;
    let sheets = crate::report::reconcile_sheets(&r);
    let Some(sheet) = sheets.get(index) else {
        return Err(Refusal::NotFound(format!("No reconciliation section {name:?}.")));
    };
    Ok(super::inventory::csv_response(&format!("aiscout-{name}.csv"), crate::report::csv(sheet)))
}

/// The product a "This is…" field names: a catalog id, else a product name (any case).
fn chosen_product<'c>(catalog: &'c aiscout_signatures::Catalog, given: &str) -> Option<&'c str> {
    let given = given.trim();
    catalog
        .product(given)
        .or_else(|| catalog.products().iter().find(|p| p.name.eq_ignore_ascii_case(given)))
        .map(|p| p.id.as_str())
}

/// `POST /reconcile/mappings`: teach that a candidate descriptor is a product (issue 17).
pub(crate) async fn teach<S: Store>(
    State(state): Shared<S>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> PageResult {
    let (signed, pairs) =
        require_form(&state, &headers, "/reconcile".into(), Access::Review, body).await?;
    let descriptor = field(&pairs, "descriptor").unwrap_or("");
    let given = field(&pairs, "product").unwrap_or("");
    let product = chosen_product(&state.catalog, given).ok_or_else(|| {
        Refusal::BadRequest(format!("The catalog has no product with the id or name {given:?}."))
    })?;
    let (mapping, audit) = crate::review::teach(
        &state.catalog,
        descriptor,
        product,
        field(&pairs, "note").unwrap_or(""),
        &signed.session.actor,
        crate::store::now(),
    )
    .map_err(Refusal::BadRequest)?;
    let lines = match state.store.add_mapping(mapping, audit).await {
        Ok((_, lines)) => lines,
        Err(crate::store::StoreError::Exists { name, .. }) => {
            return Err(Refusal::BadRequest(format!(
                "The descriptor {name:?} is taught already; undo it under Taught descriptors first."
            )));
        }
        Err(e) => return Err(e.into()),
    };
    tracing::info!(product, lines, "Descriptor taught in the console.");
    Ok(see_other(&format!("/reconcile?taught={lines}#s8")))
}

/// `POST /reconcile/mappings/{id}/undo`: undo a teaching; its lines are candidates again.
pub(crate) async fn undo<S: Store>(
    State(state): Shared<S>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: axum::body::Body,
) -> PageResult {
    let (signed, _) =
        require_form(&state, &headers, "/reconcile".into(), Access::Review, body).await?;
    let missing = || Refusal::NotFound(format!("No taught descriptor {id:?}."));
    let n: i64 = id.parse().map_err(|_| missing())?;
    let audit = crate::review::untaught(&signed.session.actor, crate::store::now());
    let (_, lines) = state.store.remove_mapping(n, audit).await?.ok_or_else(missing)?;
    tracing::info!(lines, "Descriptor mapping undone in the console.");
    Ok(see_other(&format!("/reconcile?undone={lines}#s6")))
}
