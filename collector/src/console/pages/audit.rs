//! `/audit`: the append-only log, filtered by actor, product (subject) and time, newest first.

use std::sync::Arc;

use aiscout_wire::UnixSecs;
use axum::extract::{RawQuery, State};
use axum::http::HeaderMap;
use maud::html;

use crate::api::AppState;
use crate::console::view::{self, param};
use crate::console::{Access, PageResult, Refusal, document, require};
use crate::model::AuditFilter;
use crate::store::Store;

type Shared<S> = State<Arc<AppState<S>>>;

/// Entries per page.
const PAGE: i64 = 100;

fn day(
    pairs: &[(String, String)],
    key: &str,
    end_of_day: bool,
) -> Result<Option<UnixSecs>, Refusal> {
    match param(pairs, key) {
        "" => Ok(None),
        d => crate::review::parse_day(d)
            .map(|t| Some(if end_of_day { t.add_secs(86_399) } else { t }))
            .ok_or_else(|| Refusal::BadRequest(format!("{key}: {d:?} is not a date (YYYY-MM-DD)"))),
    }
}

/// `GET /audit?actor=&product=&since=&until=&before=`.
pub(crate) async fn page<S: Store>(
    State(state): Shared<S>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> PageResult {
    let signed = require(&state, &headers, "/audit".into(), Access::Audit).await?;
    let pairs = crate::api::query_pairs(raw.as_deref());
    let opt = |k: &str| Some(param(&pairs, k).trim().to_owned()).filter(|v| !v.is_empty());
    let before_id = match param(&pairs, "before") {
        "" => None,
        v => Some(
            v.parse::<i64>()
                .map_err(|_| Refusal::BadRequest(format!("before: {v:?} is not an entry id")))?,
        ),
    };
    let filter = AuditFilter {
        actor: opt("actor"),
        subject: opt("product"),
        since: day(&pairs, "since", false)?,
        until: day(&pairs, "until", true)?,
        before_id,
        limit: PAGE,
    };
    let entries = state.store.audit_query(filter).await?;
    let now = crate::store::now();
    let older = (entries.len() as i64 == PAGE).then(|| entries.last().map(|e| e.id)).flatten();
    let body = html! {
        main id="main" {
            h1 { "Audit log" }
            p class="muted" { "Every review decision, token change, sign-in and sign-out, newest first. Entries cannot be changed or deleted." }
            form class="filters" method="get" action="/audit" role="search" {
                div { label for="actor" { "Who" } input id="actor" name="actor" value=(param(&pairs, "actor")) placeholder="token name or email"; }
                div { label for="product" { "Product or subject" } input id="product" name="product" value=(param(&pairs, "product")) placeholder="openai.chatgpt"; }
                div { label for="since" { "From" } input id="since" name="since" type="date" value=(param(&pairs, "since")); }
                div { label for="until" { "To" } input id="until" name="until" type="date" value=(param(&pairs, "until")); }
                div class="actions" { button type="submit" { "Apply" } a href="/audit" { "Clear" } }
            }
            (super::product::audit_table(&entries, now, true))
            @if let Some(id) = older {
                nav class="pager" aria-label="Pages" {
                    a rel="next" href={ "/audit" (view::query(&pairs.iter().filter(|(k, _)| k != "before").cloned().chain(std::iter::once(("before".to_owned(), id.to_string()))).collect::<Vec<_>>())) } { "Older entries →" }
                }
            }
        }
    };
    Ok(document("Audit log", Some(&signed), "/audit", body))
}
