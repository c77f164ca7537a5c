//! `/alerts`: the alert channels of the running configuration with their deliveries per
//! state, the latest deliveries with their attempts and errors, and (for admins) a button per
//! channel that sends it a test event through the same outbox as real events.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::http::HeaderMap;
use maud::html;

use crate::alerts::event;
use crate::api::AppState;
use crate::console::view::{self, count};
use crate::console::{
    Access, CSRF_FIELD, PageResult, Refusal, document, field, require, require_form, see_other,
};
use aiscout_wire::UnixSecs;

use crate::model::AuditRecord;
use crate::store::Store;

type Shared<S> = State<Arc<AppState<S>>>;

/// Deliveries listed.
const LATEST: i64 = 100;

/// The receiver's scheme and host only: a Slack or Teams webhook URL's path is itself a
/// secret, so a page never shows it.
fn host_of(url: &str) -> String {
    match url.parse::<hyper::Uri>() {
        Ok(u) => format!(
            "{}://{}/…",
            u.scheme_str().unwrap_or("?"),
            u.authority().map_or("?", |a| a.as_str())
        ),
        Err(_) => "(invalid URL)".to_owned(),
    }
}

/// Where a channel sends: the URL's scheme and host, or the SMTP or syslog server, and an
/// email channel's digest schedule.
fn receiver(c: &crate::alerts::channel::Channel) -> String {
    if let Some(m) = &c.email {
        let digest = match c.digest {
            Some(d) => format!(
                " ({} digest at {:02}:{:02} UTC)",
                if d.weekday.is_some() { "weekly" } else { "daily" },
                d.at / 3_600,
                d.at % 3_600 / 60
            ),
            None => String::new(),
        };
        return format!("smtp://{}:{}{digest}", m.host, m.port);
    }
    if let Some(s) = &c.syslog {
        return format!("syslog over TLS {}:{}", s.host, s.port);
    }
    host_of(&c.url)
}

/// `GET /alerts`.
pub(crate) async fn page<S: Store>(
    State(state): Shared<S>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> PageResult {
    let signed = require(&state, &headers, "/alerts".into(), Access::Alerts).await?;
    let pairs = crate::api::query_pairs(raw.as_deref());
    let sent = view::param(&pairs, "sent");
    let counts = state.store.delivery_counts().await?;
    let rows = state.store.deliveries(LATEST).await?;
    let now = crate::store::now();
    let of = |channel: &str, st: &str| -> i64 {
        counts.iter().filter(|(c, s, _)| c == channel && s == st).map(|(_, _, n)| *n).sum()
    };
    let total =
        |st: &str| -> i64 { counts.iter().filter(|(_, s, _)| s == st).map(|(_, _, n)| *n).sum() };
    let admin = signed.may(Access::Admin);
    let settings = &state.alerts;
    let body = html! {
        main id="main" {
            h1 { "Alerts" }
            @if !sent.is_empty() {
                p class="panel" role="status" { "A test event is on its way to " strong { (sent) } ". Its delivery appears below within a few seconds." }
            }
            dl class="facts" {
                dt { "Delivered" } dd { (count(total("delivered").unsigned_abs())) }
                dt { "Waiting, retrying or held for a digest" } dd { (count((total("pending") + total("sending") + total("held")).unsigned_abs())) }
                dt { "Failed (given up)" } dd { (count(total("failed").unsigned_abs())) }
                dt { "Held back (cap, quiet period, filter)" } dd { (count(total("capped").unsigned_abs())) }
            }
            section class="panel" {
                h2 { "Channels" }
                @if settings.channels.is_empty() {
                    p { "No channel is configured. Add " code { "[[alerts.channel]]" } " entries to the collector's configuration (see the README, “Alerts”), check them with " code { "aiscout-collector check-config" } ", and restart." }
                } @else {
                    table class="data" {
                        thead { tr {
                            th scope="col" { "Name" } th scope="col" { "Kind" } th scope="col" { "Receiver" }
                            th scope="col" { "Events" } th scope="col" { "Limits" }
                            th scope="col" class="num" { "Delivered" } th scope="col" class="num" { "Waiting" }
                            th scope="col" class="num" { "Failed" } th scope="col" class="num" { "Held back" }
                            @if admin { th scope="col" { span class="visually-hidden" { "Action" } } }
                        } }
                        tbody { @for c in &settings.channels { tr {
                            td { (c.name) } td { (c.kind.name()) } td { code { (receiver(c)) } }
                            td { @if c.events.is_empty() { "all" } @else { (c.events.join(", ")) } }
                            td { (c.max_per_day) " a day"
                                 @if let Some(q) = c.quiet { ", quiet " (q.as_secs() / 60) " min" }
                                 ", give up after " (c.give_up_after.as_secs() / 3600) " h" }
                            td class="num" { (of(&c.name, "delivered")) }
                            td class="num" { (of(&c.name, "pending") + of(&c.name, "sending") + of(&c.name, "held")) }
                            td class="num" { (of(&c.name, "failed")) }
                            td class="num" { (of(&c.name, "capped")) }
                            @if admin { td {
                                form method="post" action="/alerts/test" class="inline" {
                                    input type="hidden" name=(CSRF_FIELD) value=(signed.session.csrf);
                                    input type="hidden" name="channel" value=(c.name);
                                    button type="submit" aria-label={ "Send test to " (c.name) } { "Send test" }
                                }
                            } }
                        } } }
                    }
                }
            }
            section class="panel" {
                h2 { "Latest deliveries" }
                @if rows.is_empty() {
                    p class="muted" { "Nothing has been sent yet." }
                } @else {
                    table class="data" {
                        thead { tr {
                            th scope="col" { "Event" } th scope="col" { "About" } th scope="col" { "Happened" }
                            th scope="col" { "Channel" } th scope="col" { "State" } th scope="col" class="num" { "Attempts" }
                            th scope="col" { "Last answer" }
                        } }
                        tbody { @for r in &rows { tr {
                            td { (r.kind) br; small class="muted" { (r.event_id) } }
                            td { @if r.product.is_empty() { "—" } @else { a href={ "/products/" (view::segment(&r.product)) } { (r.product) } } }
                            td { (view::when(r.occurred_at, now)) }
                            td { (r.channel) }
                            td { span class={ "state state-" (r.state) } { (r.state) }
                                 @if r.state == "pending" && r.attempts > 0 { br; small class="muted" { "next try " (view::when(r.next_at, now)) } } }
                            td class="num" { (r.attempts) }
                            td { @if let Some(s) = r.last_status { (s) " " }
                                 @if let Some(e) = &r.last_error { small { (e) } } }
                        } } }
                    }
                    p class="muted" { "The latest " (LATEST) " deliveries, newest event first. A failed delivery is also in the audit log (" code { "alert.failed" } ")." }
                }
            }
        }
    };
    Ok(document("Alerts", Some(&signed), "/alerts", body))
}

/// `POST /alerts/test`: queues a test event for one channel (admins).
pub(crate) async fn test<S: Store>(
    State(state): Shared<S>,
    headers: HeaderMap,
    body: Body,
) -> PageResult {
    let (signed, pairs) =
        require_form(&state, &headers, "/alerts".into(), Access::Admin, body).await?;
    let channel = field(&pairs, "channel").unwrap_or("").to_owned();
    if !state.alerts.channels.iter().any(|c| c.name == channel) {
        return Err(Refusal::BadRequest(format!("channel: no channel is named {channel:?}")));
    }
    let now = crate::store::now();
    let nonce = crate::credentials::generate("")?;
    let e = event::test(&channel, &signed.session.actor, now, &nonce);
    let audit = AuditRecord {
        at: UnixSecs(now),
        actor: signed.session.actor.clone(),
        action: "alert.test".into(),
        subject: channel.clone(),
        before: None,
        after: Some(serde_json::json!({ "event": e.id }).to_string()),
    };
    state.store.emit(vec![e], Some(audit), now).await?;
    Ok(see_other(&format!("/alerts?sent={}", view::url_encode(&channel))))
}
