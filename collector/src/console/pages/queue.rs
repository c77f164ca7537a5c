//! `/review`: the queue: highest risk first, then unreviewed first, by reach and spend; bulk
//! decisions with one note.

use std::sync::Arc;

use aiscout_wire::{InventoryQuery, InventoryRow, ProductStatus, ReviewStatus};
use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::http::HeaderMap;
use maud::html;

use crate::api::AppState;
use crate::console::view::{self, count, param, segment};
use crate::console::{
    Access, CSRF_FIELD, PageResult, Refusal, document, require, require_form, see_other,
};
use crate::review::{self, Decision};
use crate::store::Store;

type Shared<S> = State<Arc<AppState<S>>>;

/// Most products one bulk decision may change.
const BULK_MAX: usize = 500;

fn rank(s: ProductStatus) -> u8 {
    match s {
        ProductStatus::Unreviewed => 0,
        ProductStatus::UnderReview => 1,
        _ => 2,
    }
}

fn spend(r: &InventoryRow) -> i64 {
    r.expense_spend.iter().chain(&r.gateway_spend).map(|m| m.amount_minor).sum()
}

/// The queue's order: highest risk score first (`[risk]` weights); on equal scores,
/// unreviewed, then under review, then the rest; within each, by reach (devices, then users
/// and payers), then spend.
pub(crate) fn order(rows: &mut [InventoryRow]) {
    rows.sort_by_key(|r| {
        (
            std::cmp::Reverse(r.risk_score),
            rank(r.status),
            std::cmp::Reverse((r.devices, r.users + r.payers, spend(r))),
            r.product.clone(),
        )
    });
}

/// `GET /review`.
pub(crate) async fn page<S: Store>(
    State(state): Shared<S>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> PageResult {
    let signed = require(&state, &headers, "/review".into(), Access::Review).await?;
    let pairs = crate::api::query_pairs(raw.as_deref());
    let (mut rows, _) = super::inventory_rows(&state, &InventoryQuery::default()).await?;
    let all = param(&pairs, "all") == "1";
    if !all {
        rows.retain(|r| rank(r.status) < 2);
    }
    order(&mut rows);
    let (_, start, end) = view::page_bounds(&pairs, rows.len());
    let now = crate::store::now();
    let done = param(&pairs, "done");
    let actions = [
        ReviewStatus::Sanctioned,
        ReviewStatus::Unsanctioned,
        ReviewStatus::Blocked,
        ReviewStatus::UnderReview,
    ];
    let body = html! {
        main id="main" {
            h1 { "Review queue" }
            p class="muted" {
                @if all { "Every product, highest risk first, then unreviewed first. " a href="/review" { "Only those waiting for a decision" } }
                @else { (count(rows.len() as u64)) " products wait for a decision. " a href="/review?all=1" { "Show every product" } }
            }
            @if !done.is_empty() { p class="notice" role="status" { "Decision saved for " (done) " products and written to the audit log." } }
            p class="help keys" {
                "Keyboard: " kbd { "Tab" } " moves, " kbd { "Space" } " ticks a product; with the script on, "
                kbd { "j" } "/" kbd { "k" } " move between rows, " kbd { "x" } " ticks, " kbd { "s" } " " kbd { "u" } " " kbd { "b" }
                " pick sanction, unsanction or block and jump to the note."
            }
            form id="bulk" method="post" action="/review" {
                input type="hidden" name=(CSRF_FIELD) value=(signed.session.csrf);
                table class="data queue" {
                    thead { tr {
                        th scope="col" { input type="checkbox" id="select-all" aria-label="Select every product on this page"; }
                        th scope="col" { "Product" } th scope="col" class="num" { "Risk" } th scope="col" { "Status" } th scope="col" { "Category" }
                        th scope="col" class="num" { "Devices" } th scope="col" class="num" { "Users" } th scope="col" class="num" { "Payers" }
                        th scope="col" class="num" { "Spend" } th scope="col" { "Last seen" }
                    } }
                    tbody {
                        @for r in rows.get(start..end).unwrap_or_default() {
                            tr {
                                td { input type="checkbox" name="product" value=(r.product) id={ "p-" (r.product) } aria-label={ "Select " (r.name) }; }
                                td { a href={ "/products/" (segment(&r.product)) } { (r.name) } br; span class="muted small" { (r.vendor) } }
                                td class="num" { (view::risk(r.risk_score, &r.risk_facts)) }
                                td { (view::badge(r.status)) }
                                td { (r.category) }
                                td class="num" { (count(r.devices)) }
                                td class="num" { (count(r.users)) }
                                td class="num" { (count(r.payers)) }
                                td class="num" { (view::money(&r.expense_spend)) }
                                td { (view::when(r.last_seen, now)) }
                            }
                        }
                    }
                }
                @if rows.is_empty() { p class="empty" { "Nothing waits for a decision." } }
                (view::pager("/review", &pairs, rows.len()))
                fieldset class="bulk" {
                    legend { "Decide for the ticked products" }
                    @for s in actions {
                        label class="radio" {
                            input type="radio" name="status" value=(s.as_str()) required accesskey=(match s { ReviewStatus::Sanctioned => "s", ReviewStatus::Unsanctioned => "u", ReviewStatus::Blocked => "b", _ => "r" });
                            " " (view::status_label(ProductStatus::from(s)))
                        }
                    }
                    label for="bulk-note" { "Note (the same for every product)" }
                    textarea id="bulk-note" name="note" rows="2" required {}
                    button type="submit" { "Apply to ticked products" }
                }
            }
        }
    };
    Ok(document("Review queue", Some(&signed), "/review", body))
}

/// `POST /review`: one decision and note for every ticked product, each through the same
/// decision code (and its own audit entry) as a single review.
pub(crate) async fn bulk<S: Store>(
    State(state): Shared<S>,
    headers: HeaderMap,
    body: Body,
) -> PageResult {
    let (signed, pairs) =
        require_form(&state, &headers, "/review".into(), Access::Review, body).await?;
    let chosen: Decision = super::product::decision(&pairs)?;
    let mut products: Vec<&str> =
        pairs.iter().filter(|(k, _)| k == "product").map(|(_, v)| v.as_str()).collect();
    products.sort_unstable();
    products.dedup();
    if products.is_empty() {
        return Err(Refusal::BadRequest("product: tick at least one product".into()));
    }
    if products.len() > BULK_MAX {
        return Err(Refusal::BadRequest(format!("product: at most {BULK_MAX} products at once")));
    }
    if let Some(unknown) = products.iter().find(|p| state.catalog.product(p).is_none()) {
        return Err(Refusal::BadRequest(format!(
            "product: {unknown:?} is not in the catalog; nothing was changed"
        )));
    }
    let now = crate::store::now();
    for p in &products {
        let (decision, audit) = review::decide(p, chosen.clone(), &signed.session.actor, now);
        state.store.set_review(decision, audit).await?;
    }
    tracing::info!(products = products.len(), "Bulk review in the console.");
    Ok(see_other(&format!("/review?done={}", products.len())))
}
