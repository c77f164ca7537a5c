//! `/products/{id}`: the app card, with the review form.

use std::sync::Arc;

use aiscout_wire::{InventoryQuery, ProductStatus, ReviewStatus};
use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::HeaderMap;
use maud::{Markup, html};

use crate::api::AppState;
use crate::console::chart::{self, Series};
use crate::console::view::{self, count, segment};
use crate::console::{
    Access, CSRF_FIELD, PageResult, Refusal, document, field, require, require_form, see_other,
};
use crate::ingest::parse::{format_minor, year_month};
use crate::join;
use crate::model::{AuditEntry, AuditFilter, UsageFilter};
use crate::review::{self, Decision};
use crate::store::Store;

type Shared<S> = State<Arc<AppState<S>>>;

/// The audit trail of one subject, as a table (also used by the audit page).
pub(crate) fn audit_table(entries: &[AuditEntry], now: i64, with_subject: bool) -> Markup {
    let status_of = |json: &Option<String>| {
        json.as_deref()
            .and_then(|j| serde_json::from_str::<serde_json::Value>(j).ok())
            .map(|v| {
                let status = v.get("status").and_then(|s| s.as_str()).unwrap_or("").to_owned();
                let note = v.get("note").and_then(|s| s.as_str()).unwrap_or("").to_owned();
                let role = v.get("role").and_then(|s| s.as_str()).unwrap_or("").to_owned();
                (status, note, role)
            })
            .unwrap_or_default()
    };
    html! {
        @if entries.is_empty() { p class="empty" { "No entries." } }
        @else {
            table class="data audit" {
                thead { tr {
                    th scope="col" { "When" } th scope="col" { "Who" } th scope="col" { "Action" }
                    @if with_subject { th scope="col" { "Subject" } }
                    th scope="col" { "Change" }
                } }
                tbody {
                    @for e in entries {
                        @let (before, _, _) = status_of(&e.record.before);
                        @let (after, note, role) = status_of(&e.record.after);
                        tr {
                            td { (view::when(e.record.at, now)) }
                            td { (e.record.actor) }
                            td { code { (e.record.action) } }
                            @if with_subject {
                                td {
                                    @if e.record.action.starts_with("review.") {
                                        a href={ "/products/" (segment(&e.record.subject)) } { (e.record.subject) }
                                    } @else { (e.record.subject) }
                                }
                            }
                            td {
                                @if !after.is_empty() {
                                    @if !before.is_empty() { (before.replace('_', " ")) " → " }
                                    strong { (after.replace('_', " ")) }
                                    @if !note.is_empty() { ": " q { (note) } }
                                } @else if !role.is_empty() {
                                    "role " (role)
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

fn review_form(
    id: &str,
    csrf: &str,
    current: Option<&crate::model::Review>,
    sanctioned: &[(String, String)],
) -> Markup {
    let status = current.map_or("", |r| r.status.as_str());
    html! {
        form class="review" method="post" action={ "/products/" (segment(id)) "/review" } {
            input type="hidden" name=(CSRF_FIELD) value=(csrf);
            fieldset {
                legend { "Decision" }
                @for s in ReviewStatus::ALL {
                    label class="radio" {
                        @if s.as_str() == status {
                            input type="radio" name="status" value=(s.as_str()) checked required;
                        } @else {
                            input type="radio" name="status" value=(s.as_str()) required;
                        }
                        " " (view::status_label(ProductStatus::from(s)))
                    }
                }
            }
            label for="note" { "Justification" }
            textarea id="note" name="note" rows="3" required { (current.map_or("", |r| r.note.as_str())) }
            div class="row" {
                div {
                    label for="business_owner" { "Business owner" }
                    input id="business_owner" name="business_owner" type="text" autocomplete="email" value=(current.map_or("", |r| r.business_owner.as_str()));
                }
                div {
                    label for="alternative" { "Sanctioned alternative" }
                    input id="alternative" name="alternative" list="sanctioned" value=(current.map_or("", |r| r.alternative.as_str()));
                    datalist id="sanctioned" { @for (pid, name) in sanctioned { option value=(pid) { (name) } } }
                }
                div {
                    label for="renewal" { "Renewal date" }
                    input id="renewal" name="renewal" type="date" value=(current.and_then(|r| r.renewal).map(view::date).unwrap_or_default());
                }
            }
            button type="submit" { "Save decision" }
        }
    }
}

/// Payers listed per kind of reconciliation finding on the card.
const FINDINGS_SHOWN: usize = 20;

/// The reveal form (admins, pseudonymous mode): one pseudonym of those seen with the product,
/// and the required reason.
fn reveal_form(id: &str, csrf: &str, pseudonyms: &[&str]) -> Markup {
    html! {
        form class="reveal" method="post" action={ "/products/" (segment(id)) "/reveal" } {
            input type="hidden" name=(CSRF_FIELD) value=(csrf);
            h3 { "Reveal one person" }
            p class="muted" { "Shows who is behind one pseudonym (a device owner, OS user, payer or gateway user), for this product only. The reveal, your reason and the pseudonym are written to the audit log." }
            label for="pseudonym" { "Pseudonym" }
            select id="pseudonym" name="pseudonym" required {
                @for p in pseudonyms { option value=(p) { (p) } }
            }
            label for="reveal-reason" { "Reason" }
            textarea id="reveal-reason" name="reason" rows="2" required {}
            button type="submit" { "Reveal" }
        }
    }
}

/// `POST /products/{id}/reveal`: admins reveal one pseudonym seen with the product, with a
/// reason ([`crate::identity::reveal`]); the answer is a page showing it once.
pub(crate) async fn reveal<S: Store>(
    State(state): Shared<S>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Body,
) -> PageResult {
    let next = format!("/products/{}", segment(&id));
    let (signed, pairs) = require_form(&state, &headers, next, Access::Admin, body).await?;
    let Some(product) = state.catalog.product(&id).cloned() else {
        return Err(Refusal::NotFound(format!("The catalog has no product with the id {id:?}.")));
    };
    let pseudonym = field(&pairs, "pseudonym").unwrap_or("").trim().to_owned();
    let identity = crate::identity::reveal(
        &state.store,
        &id,
        &pseudonym,
        &signed.session.actor,
        field(&pairs, "reason").unwrap_or(""),
        crate::store::now(),
    )
    .await
    .map_err(|e| match e {
        crate::identity::RevealError::Refused(why) => Refusal::BadRequest(why),
        crate::identity::RevealError::Store(e) => Refusal::from(e),
    })?;
    tracing::info!(product = %id, "A pseudonym was revealed in the console.");
    let body = html! {
        main id="main" {
            p class="crumbs" { a href="/inventory" { "Inventory" } " / " a href={ "/products/" (segment(&id)) } { (product.name) } " / Reveal" }
            h1 { "Revealed for " (product.name) }
            dl class="facts" {
                dt { "Pseudonym" } dd { code { (pseudonym) } }
                dt { "Person" } dd { strong { (identity) } }
            }
            p class="notice" role="status" { "This reveal was written to the audit log (without the person's identity)." }
            p { a href={ "/products/" (segment(&id)) "#devices" } { "Back to " (product.name) } }
        }
    };
    Ok(document(&format!("Revealed for {}", product.name), Some(&signed), "/inventory", body))
}

/// `GET /products/{id}`.
pub(crate) async fn page<S: Store>(
    State(state): Shared<S>,
    headers: HeaderMap,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
) -> PageResult {
    let signed =
        require(&state, &headers, format!("/products/{}", segment(&id)), Access::All).await?;
    let Some(product) = state.catalog.product(&id).cloned() else {
        return Err(Refusal::NotFound(format!("The catalog has no product with the id {id:?}.")));
    };
    let pairs = crate::api::query_pairs(raw.as_deref());
    let now = crate::store::now();
    let filter = UsageFilter { product: Some(id.clone()), ..UsageFilter::default() };
    // Independent reads, at once: the card takes about its longest read.
    let usage_filter = UsageFilter { product: Some(id.clone()), ..UsageFilter::default() };
    let trail_filter =
        AuditFilter { subject: Some(id.clone()), limit: 50, ..AuditFilter::default() };
    let (facts, devices, current, trail, (sources, _), values) = tokio::try_join!(
        join::gather_from(&state.store, Some(&state.cache), filter, now, join::Purpose::Reconcile),
        state.store.product_devices(id.clone()),
        state.store.review(id.clone()),
        state.store.audit_query(trail_filter),
        state.store.usage(usage_filter),
        state.cache.product_values(&state.store, &id, 200),
    )?;
    let q = InventoryQuery { product: Some(id.clone()), ..InventoryQuery::default() };
    let row = join::inventory(&state.catalog, &state.risk, &q, &facts).into_iter().next();
    let recon = join::reconcile::reconcile(&state.catalog, &facts, 30);
    let (risk_score, risk_facts) = join::risk(&state.catalog, &state.risk, &id);
    let subs: Vec<_> =
        facts.spend.subscriptions(&state.catalog).iter().filter(|s| s.product == id).collect();
    let (_, sub_start, sub_end) = view::page_bounds(&pairs, subs.len());
    let lines: Vec<_> =
        facts.spend.expenses.iter().filter(|l| l.product.as_deref() == Some(id.as_str())).collect();
    let gateway: Vec<_> =
        facts.spend.gateway.iter().filter(|g| g.product.as_deref() == Some(id.as_str())).collect();

    let spend = join::spend_by_month(&facts, Some(&id));
    let currency = super::overview::main_currency(&spend);
    let months: Vec<String> =
        (0..12).rev().map(|k| year_month(view::month_start(now, k))).collect();
    let mut exp = vec![0_i64; 12];
    let mut gw = vec![0_i64; 12];
    for s in spend.iter().filter(|s| s.currency == currency) {
        if let Some(i) = months.iter().position(|m| *m == s.month) {
            exp[i] = exp[i].saturating_add(s.expense_minor);
            gw[i] = gw[i].saturating_add(s.gateway_minor);
        }
    }
    let money = |v: i64| format!("{currency} {}", format_minor(v, &currency));
    let series = vec![
        Series { label: "Expense (cards)".into(), class: "s0".into(), values: exp },
        Series { label: "Gateway".into(), class: "s1".into(), values: gw },
    ];
    let status = join::status(current.as_ref());
    // "Use X instead: <the organisation's message>", as the email digest says it.
    let coaching = crate::policy::coaching(&state.catalog, &facts.reviews, &state.policy, &id);
    let sanctioned: Vec<(String, String)> = facts
        .reviews
        .iter()
        .filter(|r| r.status == "sanctioned" && r.product != id)
        .map(|r| {
            let name =
                state.catalog.product(&r.product).map_or(r.product.clone(), |p| p.name.clone());
            (r.product.clone(), name)
        })
        .collect();
    let network = ["dns", "tls_sni", "quic_sni"];
    let mut descriptors: std::collections::BTreeMap<&str, (u64, i64)> =
        std::collections::BTreeMap::new();
    for l in &lines {
        let e = descriptors.entry(l.descriptor.as_str()).or_default();
        e.0 += 1;
        e.1 = e.1.max(l.occurred_at.get());
    }
    let mut providers: std::collections::BTreeMap<&str, (u64, i64)> =
        std::collections::BTreeMap::new();
    for g in &gateway {
        let e = providers
            .entry(if g.provider.is_empty() { "(unknown provider)" } else { g.provider.as_str() })
            .or_default();
        e.0 += u64::try_from(g.rows).unwrap_or(0);
        e.1 = e.1.max(g.day.get());
    }
    let pns: Vec<_> = recon.paid_not_sanctioned.iter().filter(|r| r.product == id).collect();
    let unp: Vec<_> = recon.used_not_paid.iter().filter(|r| r.product == id).collect();
    let idle: Vec<_> = recon.idle_subscriptions.iter().filter(|r| r.product == id).collect();
    let dup: Vec<_> = recon.duplicate_subscriptions.iter().filter(|r| r.product == id).collect();
    let bypass: Vec<_> = recon.gateway_bypass.iter().filter(|r| r.product == id).collect();
    // Admins in pseudonymous mode may reveal one of the pseudonyms seen with the product:
    // device owners, OS users, payers and gateway end users.
    let mut pseudonyms: Vec<&str> = Vec::new();
    let revealing =
        signed.may(Access::Admin) && state.store.identities().is_some_and(|ids| ids.pseudonymous());
    let paying = if revealing { state.store.product_people(id.clone()).await? } else { Vec::new() };
    if revealing {
        pseudonyms = devices
            .iter()
            .flat_map(|d| {
                d.owner_email.as_deref().into_iter().chain(d.users.iter().map(String::as_str))
            })
            .chain(paying.iter().map(String::as_str))
            .filter(|p| crate::identity::is_pseudonym(p))
            .collect();
        pseudonyms.sort_unstable();
        pseudonyms.dedup();
    }
    let body = html! {
        main id="main" {
            p class="crumbs" { a href="/inventory" { "Inventory" } " / " (product.name) }
            header class="card-head" {
                h1 { (product.name) }
                (view::badge(status))
                p class="muted" { (product.vendor) " · " (product.category.as_str()) " · " code { (id) } }
            }
            @if view::param(&pairs, "saved") == "1" { p class="notice" role="status" { "Decision saved and written to the audit log." } }
            section class="cards" aria-label="Reach and spend" {
                div class="card" { span class="figure" { (count(row.as_ref().map_or(0, |r| r.devices))) } span { "Devices" } }
                div class="card" { span class="figure" { (count(row.as_ref().map_or(0, |r| r.users))) } span { "Users" } }
                div class="card" { span class="figure" { (count(row.as_ref().map_or(0, |r| r.payers))) } span { "Payers" } }
                div class="card" { span class="figure small" { (view::money(row.as_ref().map_or(&[][..], |r| &r.expense_spend))) } span { "Card spend" } }
                div class="card" { span class="figure small" { (view::money(row.as_ref().map_or(&[][..], |r| &r.gateway_spend))) } span { "Gateway spend" } }
                div class="card" { span class="figure" { (count(row.as_ref().map_or(0, |r| r.gateway_tokens))) } span { "Gateway tokens" } }
                div class="card" { span class="figure small" { (view::money(row.as_ref().map_or(&[][..], |r| &r.annualized_cost))) } span { "Estimated per year" } }
                div class="card" { span class="figure" { (risk_score) } span { "Risk score (0-100)" } }
                @if let Some(r) = row.as_ref().filter(|r| r.bypass_devices > 0) {
                    div class="card" { span class="figure" { (count(r.bypass_devices)) } span { a href="#bypass" { "Devices bypassing the gateway" } } }
                }
            }
            section class="panel" id="risk" {
                h2 { "Risk facts" }
                p class="muted small" { "From the catalog; the score weighs them with the organisation's " code { "[risk]" } " settings. Unknown facts are scored as unknown, not as safe." }
                table class="data risk-table" {
                    thead { tr { th scope="col" { "Fact" } th scope="col" { "Value" } th scope="col" { "Source" } } }
                    tbody {
                        @for f in &risk_facts {
                            tr {
                                th scope="row" { (view::risk_label(&f.fact)) }
                                td { (f.value) }
                                td class="small" { @if let Some(s) = &f.source { (s) } @else { span class="muted" { "no source states it" } } }
                            }
                        }
                    }
                }
            }
            div class="grid2" {
                section class="panel" id="review" {
                    h2 { "Review" }
                    @if let Some(r) = &current {
                        p { "Last decision by " strong { (r.reviewed_by) } ", " (view::when(r.reviewed_at, now)) "." }
                        @if !r.business_owner.is_empty() { p { "Business owner: " (r.business_owner) } }
                        @if let Some(c) = &coaching {
                            p class="coaching" {
                                strong { "Coaching: " }
                                (c.line())
                                @if let Some(alt) = &c.alternative_id {
                                    " (" a href={ "/products/" (segment(alt)) } { "see " (c.alternative) } ")"
                                }
                            }
                        } @else if !r.alternative.is_empty() {
                            p { "Use instead: "
                                @if state.catalog.product(&r.alternative).is_some() {
                                    a href={ "/products/" (segment(&r.alternative)) } { (r.alternative) }
                                } @else { (r.alternative) }
                            }
                        }
                        @if let Some(d) = r.renewal { p { "Renews on " (view::date(d)) } }
                    } @else {
                        p { "Nobody has reviewed this product yet: it counts as shadow AI." }
                    }
                    @if signed.may(Access::Review) {
                        (review_form(&id, &signed.session.csrf, current.as_ref(), &sanctioned))
                    } @else {
                        p class="muted" { "Your role (" (signed.session.role.as_str()) ") can see decisions but not change them." }
                    }
                }
                section class="panel" {
                    h2 { "Catalog facts" }
                    dl class="facts" {
                        dt { "Vendor" } dd { (product.vendor) }
                        dt { "Category" } dd { (product.category.as_str()) }
                        @if !product.domains.is_empty() {
                            dt { "Domains" } dd { @for d in &product.domains { code { (d.pattern) } " " } }
                        }
                        @let installs: Vec<&String> = product.macos_bundle_ids.iter().chain(&product.linux_packages).chain(&product.cli_names).chain(&product.vscode_extensions).chain(&product.chrome_extensions).chain(&product.firefox_extensions).chain(&product.jetbrains_plugins).collect();
                        @if !installs.is_empty() {
                            dt { "Installed as" } dd { @for d in installs { code { (d) } " " } }
                        }
                        @if !product.merchant_patterns.is_empty() {
                            dt { "Card descriptors" } dd { @for d in &product.merchant_patterns { code { (d) } " " } }
                        }
                        @if !product.prices.is_empty() {
                            dt { "List prices" }
                            dd { ul class="plain" { @for p in &product.prices {
                                li { (p.plan) ": " (p.currency) " " (format_minor(p.amount_minor, &p.currency)) " per " (format!("{:?}", p.period).to_lowercase()) }
                            } } }
                        }
                        @if !product.sources.is_empty() {
                            dt { "Sources" } dd { ul class="plain" { @for s in &product.sources { li { code class="url" { (s) } } } } }
                        }
                    }
                }
            }
            section class="panel" {
                h2 { "Evidence by source" }
                table class="data" {
                    thead { tr { th scope="col" { "Source" } th scope="col" { "Kind" } th scope="col" class="num" { "Devices" } th scope="col" class="num" { "Sightings" } th scope="col" { "First seen" } th scope="col" { "Last seen" } } }
                    tbody {
                        @for s in &sources {
                            tr {
                                td { (view::source_label(&s.source)) }
                                td { @if network.contains(&s.source.as_str()) { "network name" } @else { "installed item" } }
                                td class="num" { (count(u64::try_from(s.devices).unwrap_or(0))) }
                                td class="num" { (count(u64::try_from(s.count).unwrap_or(0))) }
                                td { (view::when(s.first_seen.get(), now)) }
                                td { (view::when(s.last_seen.get(), now)) }
                            }
                        }
                        @if !lines.is_empty() {
                            tr { td { "Expense" } td { "card lines" } td class="num" { "–" } td class="num" { (count(lines.len() as u64)) }
                                 td { (view::when(lines.iter().map(|l| l.occurred_at.get()).min().unwrap_or(0), now)) }
                                 td { (view::when(lines.iter().map(|l| l.occurred_at.get()).max().unwrap_or(0), now)) } }
                        }
                        @if !gateway.is_empty() {
                            tr { td { "Gateway" } td { "spend rows" } td class="num" { "–" } td class="num" { (count(gateway.iter().map(|g| u64::try_from(g.rows).unwrap_or(0)).sum())) }
                                 td { (view::when(gateway.iter().map(|g| g.day.get()).min().unwrap_or(0), now)) }
                                 td { (view::when(gateway.iter().map(|g| g.day.get()).max().unwrap_or(0), now)) } }
                        }
                    }
                }
                @if let Some(r) = &row { @if !r.departments.is_empty() { p { "Departments: " (r.departments.join(", ")) } } }
                @let mcp: Vec<_> = facts.mcp.iter().filter(|m| m.product == id).collect();
                @if !mcp.is_empty() {
                    h3 id="mcp-risk" { "MCP servers with risk flags" }
                    p class="muted" { "Read from the servers' configurations on the devices: a flag says a risk is there, never a secret's value." }
                    table class="data" {
                        thead { tr { th scope="col" { "Server" } th scope="col" { "Risk flags" } th scope="col" class="num" { "Devices" } } }
                        tbody {
                            @for m in &mcp {
                                tr {
                                    td { code { (m.value) } }
                                    td { (view::mcp_flags(&m.flags)) }
                                    td class="num" { (count(u64::try_from(m.devices).unwrap_or(0))) }
                                }
                            }
                        }
                    }
                }
                h3 { "What matched" }
                @if values.is_empty() && descriptors.is_empty() && providers.is_empty() { p class="empty" { "Nothing yet." } }
                @else {
                    table class="data" {
                        thead { tr { th scope="col" { "Source" } th scope="col" { "Matched" } th scope="col" class="num" { "Devices" } th scope="col" class="num" { "Count" } th scope="col" { "Last seen" } } }
                        tbody {
                            @for v in values.iter() {
                                tr {
                                    td { (view::source_label(v.kind.as_str())) @if network.contains(&v.kind.as_str()) { " (network name)" } @else { " (installed)" } }
                                    td { code { (v.value) } }
                                    td class="num" { (count(u64::try_from(v.devices).unwrap_or(0))) }
                                    td class="num" { (count(u64::try_from(v.count).unwrap_or(0))) }
                                    td { (view::when(v.last_seen.get(), now)) }
                                }
                            }
                            @for (d, (n, last)) in &descriptors {
                                tr { td { "Expense (card line)" } td { code { (d) } } td class="num" { "–" } td class="num" { (count(*n)) } td { (view::when(*last, now)) } }
                            }
                            @for (p, (n, last)) in &providers {
                                tr { td { "Gateway (spend rows)" } td { code { (p) } } td class="num" { "–" } td class="num" { (count(*n)) } td { (view::when(*last, now)) } }
                            }
                        }
                    }
                }
            }
            section class="panel" {
                (chart::stacked("product-spend", &format!("Spend per month by source ({currency})"), &months, &series, &money))
            }
            section class="panel" id="devices" {
                h2 { "Devices" }
                @if devices.is_empty() { p class="empty" { "No agent has seen it." } }
                @else {
                    table class="data" {
                        thead { tr { th scope="col" { "Device" } th scope="col" { "Owner" } th scope="col" { "Users" } th scope="col" { "Installed" } th scope="col" class="num" { "Sightings" } th scope="col" { "Last seen" } } }
                        tbody {
                            @for d in devices.iter().take(100) {
                                tr {
                                    td { @if signed.may(Access::Devices) { a href={ "/devices/" (segment(&d.host_id)) } { (d.hostname) } } @else { (d.hostname) } }
                                    td { (d.owner_email.as_deref().unwrap_or("")) }
                                    td class="small" { (d.users.join(", ")) }
                                    td { @match d.installed { Some(true) => "yes", Some(false) => "removed", None => "–" } }
                                    td class="num" { (count(u64::try_from(d.count).unwrap_or(0))) }
                                    td { (view::when(d.last_seen.get(), now)) }
                                }
                            }
                        }
                    }
                    @if devices.len() > 100 { p class="muted" { "The first 100 of " (count(devices.len() as u64)) " devices." } }
                }
                @if !pseudonyms.is_empty() {
                    (reveal_form(&id, &signed.session.csrf, &pseudonyms))
                }
            }
            @if !bypass.is_empty() {
                section class="panel warn" id="bypass" {
                    h2 { "Gateway bypass" }
                    p class="muted" { "These devices reached " (product.name) " directly, although a sanctioned gateway of the organisation overlay fronts it: the gateway should have carried this traffic." }
                    table class="data" {
                        thead { tr { th scope="col" { "Device" } th scope="col" { "Person" } th scope="col" { "Process" } th scope="col" { "API host" } th scope="col" { "Should go through" } th scope="col" class="num" { "Count" } th scope="col" { "Last seen" } } }
                        tbody {
                            @for b in bypass.iter().take(100) {
                                tr {
                                    td { @if signed.may(Access::Devices) { a href={ "/devices/" (segment(&b.host_id)) } { (b.hostname) } } @else { (b.hostname) } }
                                    td { (b.person) }
                                    td { @if b.process.is_empty() { span class="muted" { "not attributed" } } @else { code { (b.process) } } }
                                    td { code { (b.host) } }
                                    td { code { (b.gateway_host) } " (" (b.gateway) ")" }
                                    td class="num" { (count(b.count)) }
                                    td { (view::when(b.last_seen, now)) }
                                }
                            }
                        }
                    }
                    @if bypass.len() > 100 { p class="muted" { "The first 100 of " (count(bypass.len() as u64)) "; " a href="/reconcile#s9" { "the reconciliation" } " lists all." } }
                }
            }
            section class="panel" {
                h2 { "Subscriptions and seats" }
                @if subs.is_empty() { p class="empty" { "No recurring charge found on cards." } }
                @else {
                    table class="data" {
                        thead { tr { th scope="col" { "Payer" } th scope="col" { "Department" } th scope="col" { "Cadence" } th scope="col" class="num" { "Seat" } th scope="col" { "Since" } th scope="col" { "Last charge" } th scope="col" { "Active" } } }
                        tbody { @for s in subs.get(sub_start..sub_end).unwrap_or_default() { tr {
                            td { (s.payer.label()) } td { (s.payer.department) } td { (s.cadence.as_str()) }
                            td class="num" { (s.currency) " " (format_minor(s.seat_minor, &s.currency)) }
                            td { (view::date(s.start)) } td { (view::date(s.last_charge)) } td { @if s.active { "yes" } @else { "no" } }
                        } } }
                    }
                    (view::pager(&format!("/products/{}", segment(&id)), &pairs, subs.len()))
                }
            }
            section class="panel" {
                h2 { "Reconciliation findings" }
                ul class="plain findings" {
                    @for r in pns.iter().take(FINDINGS_SHOWN) { li { "Paid but not sanctioned: " (r.payer) " (" (r.department) "), " (view::amount(&r.spend)) " over " (r.lines) " lines" } }
                    @for r in &unp { li { "Used but not paid: " (r.devices) " devices, " (r.users) " users, last seen " (view::when(r.last_seen, now)) } }
                    @for r in idle.iter().take(FINDINGS_SHOWN) { li { "Idle subscription: " (r.payer) " pays " (view::amount(&r.seat_price)) " " (r.cadence) ", last used " @if let Some(t) = r.last_used { (view::when(t, now)) } @else { "never" } } }
                    @for r in &dup { li { "Duplicate subscriptions: " (r.payers.len()) " payers, " (view::amount(&r.current_annual)) " a year" @if let Some(s) = &r.saving { ", a team plan would save " (view::amount(s)) } } }
                }
                @if pns.len() > FINDINGS_SHOWN || idle.len() > FINDINGS_SHOWN {
                    p class="muted" { "The first " (FINDINGS_SHOWN) " payers of " (count(pns.len() as u64)) " paying without sanction and of " (count(idle.len() as u64)) " idle subscriptions; " a href="/reconcile" { "the reconciliation" } " lists all." }
                }
                @if pns.is_empty() && unp.is_empty() && idle.is_empty() && dup.is_empty() { p class="empty" { "Nothing to reconcile for this product." } }
                @if !lines.is_empty() && signed.may(Access::Reconcile) {
                    p { a href={ "/reconcile/lines?product=" (view::url_encode(&id)) } { "Its " (count(lines.len() as u64)) " expense lines" } }
                }
            }
            section class="panel" {
                h2 { "Audit trail" }
                (audit_table(&trail, now, false))
            }
        }
    };
    Ok(document(&product.name, Some(&signed), "/inventory", body))
}

/// The decision in a review form; errors name the field.
pub(crate) fn decision(pairs: &[(String, String)]) -> Result<Decision, Refusal> {
    let status_text = field(pairs, "status").unwrap_or("");
    let status = ReviewStatus::parse(status_text).ok_or_else(|| {
        Refusal::BadRequest(format!("status: choose a decision (got {status_text:?})"))
    })?;
    let note = field(pairs, "note").unwrap_or("").trim().to_owned();
    let renewal = match field(pairs, "renewal").unwrap_or("").trim() {
        "" => None,
        d => Some(
            review::parse_day(d)
                .ok_or_else(|| Refusal::BadRequest(format!("renewal: {d:?} is not a date")))?,
        ),
    };
    let request = aiscout_wire::ReviewRequest {
        status,
        note,
        business_owner: field(pairs, "business_owner").unwrap_or("").trim().to_owned(),
        alternative: field(pairs, "alternative").unwrap_or("").trim().to_owned(),
        renewal: None,
    };
    aiscout_wire::Validate::validate(&request)
        .map_err(|e| Refusal::BadRequest(format!("{}: {}", e.field, e.reason)))?;
    Ok(Decision {
        status,
        note: request.note,
        business_owner: request.business_owner,
        alternative: request.alternative,
        renewal,
    })
}

/// `POST /products/{id}/review`: the same decision code as the API's review call.
pub(crate) async fn review<S: Store>(
    State(state): Shared<S>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Body,
) -> PageResult {
    let next = format!("/products/{}", segment(&id));
    let (signed, pairs) = require_form(&state, &headers, next, Access::Review, body).await?;
    if state.catalog.product(&id).is_none() {
        return Err(Refusal::NotFound(format!("The catalog has no product with the id {id:?}.")));
    }
    let chosen = decision(&pairs)?;
    let (decision, audit) = review::decide(&id, chosen, &signed.session.actor, crate::store::now());
    state.store.set_review(decision, audit).await?;
    tracing::info!(product = %id, "Product reviewed in the console.");
    Ok(see_other(&format!("/products/{}?saved=1#review", segment(&id))))
}
