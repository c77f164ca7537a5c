//! Jira: a discovered product or an expense candidate becomes an issue, so a review is a
//! ticket; a later decision on the product comments on that issue.
//!
//! Facts relied on (Jira REST API version 2, served by Jira Cloud and Jira Data Center alike;
//! <https://developer.atlassian.com/server/jira/platform/jira-rest-api-examples/>,
//! <https://developer.atlassian.com/cloud/jira/platform/rest/v2/api-group-issues/>):
//! - `POST {base}/rest/api/2/issue` with
//!   `{"fields": {"project": {"key"}, "summary", "description", "issuetype": {"name"}, "labels"}}`
//!   creates an issue and answers `201` with `{"id", "key", "self"}`.
//! - `POST {base}/rest/api/2/issue/{key}/comment` with `{"body": "..."}` adds a comment
//!   (`201`).
//! - Jira Cloud authenticates with Basic `email:api_token`; Jira Data Center also takes a
//!   personal access token as `Authorization: Bearer`.
//! - Jira takes no idempotency key: the issue opened for a subject is remembered in the store
//!   (`alert_tickets`), so a retry after a stored answer never opens a second one. An answer
//!   lost on the way back (the issue made, the reply not received) can still open a second
//!   issue on retry; the labels `aiscout` and the event id make such a twin easy to find.

use std::sync::Arc;

use base64::Engine as _;
use hyper::Method;
use hyper::header::{HeaderName, HeaderValue};
use serde_json::{Value, json};

use super::channel::Channel;
use super::event;
use super::render::{self, About};
use crate::client;
use crate::model::{Attempt, Claimed};
use crate::store::Store;

/// What a Jira channel does with an event.
enum Action {
    /// Open an issue for this subject.
    Open(String),
    /// Comment on the issue of this subject.
    Comment(String),
    /// Nothing: Jira takes other events.
    Skip,
}

fn action(e: &crate::model::NewEvent) -> Action {
    match e.kind.as_str() {
        event::DISCOVERED | event::TEST => Action::Open(format!("product:{}", e.product)),
        event::EXPENSE_CANDIDATE => Action::Open(format!("event:{}", e.id)),
        event::REVIEW_CHANGED | event::BLOCKED_SEEN | event::SPREAD => {
            Action::Comment(format!("product:{}", e.product))
        }
        _ => Action::Skip,
    }
}

/// The `Authorization` header of a channel: Basic with a user, Bearer without.
fn authorization(channel: &Channel) -> Option<(HeaderName, HeaderValue)> {
    let token = channel.secret.as_ref()?.expose();
    let value = match channel.jira.as_ref().and_then(|j| j.username.as_deref()) {
        Some(user) => format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{token}"))
        ),
        None => format!("Bearer {token}"),
    };
    let mut v = HeaderValue::from_str(&value).ok()?;
    v.set_sensitive(true);
    Some((hyper::header::AUTHORIZATION, v))
}

/// One attempt of a Jira delivery; `retry` turns a transient failure into the channel's
/// backoff.
pub async fn send<S: Store>(
    store: &S,
    channel: &Channel,
    tls: &Arc<rustls::ClientConfig>,
    c: &Claimed,
    about: Option<&About>,
    console: &str,
    retry: impl Fn(Option<i64>, Option<i64>, String) -> Attempt,
) -> Attempt {
    let Some(settings) = &channel.jira else {
        return Attempt::Failed { status: None, error: "no Jira project configured".into() };
    };
    let e = &c.event.event;
    let subject = render::subject(e, about);
    let summary = render::summary(e, &subject);
    let url = render::link(console, e, &subject);
    let base = channel.url.trim_end_matches('/');
    let (path, body, subject_key, opening) = match action(e) {
        Action::Skip => {
            return Attempt::Capped { reason: format!("Jira takes no {} events", e.kind) };
        }
        Action::Open(key) => {
            match store.ticket(channel.name.clone(), key.clone()).await {
                // Opened by an earlier attempt whose outcome was not recorded.
                Ok(Some(_)) => return Attempt::Delivered { status: 0 },
                Ok(None) => {}
                Err(err) => return retry(None, None, format!("reading the store: {err}")),
            }
            let description = format!(
                "{summary}\n\nOpen in aiscout: {url}\n\nEvent {} ({}), {}.\n\n{{code:json}}\n{}\n{{code}}",
                e.id,
                e.kind,
                e.occurred_at.rfc3339(),
                serde_json::to_string_pretty(&subject).unwrap_or_default()
            );
            let body = json!({ "fields": {
                "project": { "key": settings.project },
                "summary": truncate(&summary, 250),
                "description": description,
                "issuetype": { "name": settings.issue_type },
                "labels": ["aiscout", label(&e.id)],
            }});
            (format!("{base}/rest/api/2/issue"), body, key, true)
        }
        Action::Comment(key) => {
            let issue = match store.ticket(channel.name.clone(), key.clone()).await {
                Ok(Some(issue)) => issue,
                Ok(None) => {
                    return Attempt::Capped {
                        reason: format!("no Jira issue was opened for {key}"),
                    };
                }
                Err(err) => return retry(None, None, format!("reading the store: {err}")),
            };
            let body = json!({ "body": format!("{summary}\n\n{url}\n\n(aiscout event {})", e.id) });
            (format!("{base}/rest/api/2/issue/{issue}/comment"), body, key, false)
        }
    };
    let mut headers =
        vec![(hyper::header::CONTENT_TYPE, HeaderValue::from_static("application/json"))];
    headers.extend(authorization(channel));
    let sent = tokio::time::timeout(
        super::deliver::SEND_TIMEOUT,
        client::fetch(Arc::clone(tls), Method::POST, &path, &headers, body.to_string(), 64 * 1024),
    )
    .await;
    let response = match sent {
        Err(_) => return retry(None, None, "Jira did not answer in time".into()),
        Ok(Err(err)) => return retry(None, None, err.to_string()),
        Ok(Ok(r)) => r,
    };
    let status = i64::from(response.status.as_u16());
    match status {
        200..=299 => {}
        401 | 403 => {
            return Attempt::Failed {
                status: Some(status),
                error: format!(
                    "Jira refused the credentials ({}): check secret_file and username of \
                     channel {}",
                    response.status, channel.name
                ),
            };
        }
        429 | 500..=599 => {
            let after = response
                .headers
                .get(hyper::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<i64>().ok());
            return retry(Some(status), after, format!("Jira answered {}", response.status));
        }
        _ => {
            return Attempt::Failed {
                status: Some(status),
                error: format!("Jira answered {}: {}", response.status, snippet(&response.body)),
            };
        }
    }
    if opening {
        let key = serde_json::from_slice::<Value>(&response.body)
            .ok()
            .and_then(|v| v.get("key").and_then(Value::as_str).map(str::to_owned));
        let Some(issue) = key else {
            return Attempt::Failed {
                status: Some(status),
                error: "Jira's answer has no issue key".into(),
            };
        };
        if let Err(err) =
            store.set_ticket(channel.name.clone(), subject_key, issue, crate::store::now()).await
        {
            return retry(Some(status), None, format!("recording the Jira issue: {err}"));
        }
    }
    Attempt::Delivered { status }
}

/// A Jira label from an event id (labels take no spaces).
fn label(id: &str) -> String {
    format!("aiscout-{id}")
}

fn truncate(text: &str, max: usize) -> String {
    text.chars().take(max).collect()
}

/// The start of an error body, for the delivery's error (never a header or a secret).
fn snippet(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let t: String = text.chars().take(200).filter(|c| !c.is_control()).collect();
    if t.is_empty() { "(no body)".to_owned() } else { t }
}
