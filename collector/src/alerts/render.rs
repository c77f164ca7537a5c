//! Each channel kind's message for an event: the body and the headers to send. Pure: the
//! caller gives the time and what is known about the product (name, status, reach).
//!
//! - Generic webhook: `{"id","type","occurred_at","subject","url"}`, signed with
//!   `X-Aiscout-Signature: t=UNIX_SECONDS,v1=HEX`, HEX the HMAC-SHA256 of `t + "." + body`
//!   under the channel's secret, and `Idempotency-Key: <event id>`.
//! - Slack incoming webhook: a Block Kit message (`text` fallback, `section`, `context`,
//!   `actions` with a link button) — <https://api.slack.com/messaging/webhooks>,
//!   <https://api.slack.com/reference/block-kit/blocks>.
//! - Microsoft Teams workflow webhook ("Post to a channel when a webhook request is
//!   received"): a `message` with one Adaptive Card 1.4 attachment —
//!   <https://learn.microsoft.com/microsoftteams/platform/webhooks-and-connectors/how-to/connectors-using>.
//! - SIEM: Splunk HTTP Event Collector JSON (`{"time","sourcetype","event"}`, header
//!   `Authorization: Splunk <token>`) whose `event` is an OCSF 1.4 Detection Finding (2004)
//!   — <https://docs.splunk.com/Documentation/Splunk/latest/Data/FormateventsforHTTPEventCollector>.

use hyper::header::{HeaderName, HeaderValue};
use ring::hmac;
use serde_json::{Map, Value, json};

use super::channel::Kind;
use super::event;
use crate::model::NewEvent;
use crate::report::ocsf;

/// What is known about an event's product when it is sent.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct About {
    /// Display name from the catalog (the id when the catalog does not know it).
    pub name: String,
    /// Vendor.
    pub vendor: String,
    /// Catalog category.
    pub category: String,
    /// Review status (`unreviewed` when never reviewed).
    pub status: String,
    /// Devices that used it.
    pub devices: i64,
    /// Users that used it.
    pub users: i64,
}

/// A message ready to send.
#[derive(Clone, Debug)]
pub struct Message {
    /// The body.
    pub body: Vec<u8>,
    /// Headers beyond `host` and `content-length`.
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

/// The console page an event links to.
pub fn link(console: &str, e: &NewEvent, subject: &Value) -> String {
    let text = |k: &str| subject.get(k).and_then(Value::as_str).unwrap_or_default().to_owned();
    let path = match e.kind.as_str() {
        _ if !e.product.is_empty() => format!("/products/{}", e.product),
        event::EXPENSE_CANDIDATE => "/reconcile".to_owned(),
        event::AGENT_STALE => format!("/devices/{}", text("device")),
        event::SPEND_THRESHOLD => "/reconcile".to_owned(),
        event::CONNECTOR_FAILED => "/imports".to_owned(),
        event::DEVICE_TAKEOVER => "/admin".to_owned(),
        _ => "/alerts".to_owned(),
    };
    format!("{console}{path}")
}

/// The event's subject as sent: what was stored, with the product's name, status and reach.
pub fn subject(e: &NewEvent, about: Option<&About>) -> Value {
    let mut map: Map<String, Value> = match serde_json::from_str(&e.subject) {
        Ok(Value::Object(m)) => m,
        _ => Map::new(),
    };
    if let Some(a) = about {
        map.insert("product".into(), json!(e.product));
        map.insert("name".into(), json!(a.name));
        map.insert("vendor".into(), json!(a.vendor));
        map.insert("category".into(), json!(a.category));
        map.insert("status".into(), json!(a.status));
        map.insert("reach".into(), json!({ "devices": a.devices, "users": a.users }));
    }
    Value::Object(map)
}

/// One line saying what happened, for chat messages, email subjects and SIEM titles.
pub fn summary(e: &NewEvent, subject: &Value) -> String {
    let text = |k: &str| subject.get(k).and_then(Value::as_str).unwrap_or_default().to_owned();
    let name = match text("name") {
        n if n.is_empty() => e.product.clone(),
        n => n,
    };
    let expense = subject.get("expense").cloned().unwrap_or(Value::Null);
    let money = || {
        let minor = expense.get("amount_minor").and_then(Value::as_i64).unwrap_or(0);
        let currency = expense.get("currency").and_then(Value::as_str).unwrap_or("");
        format!("{}.{:02} {currency}", minor / 100, (minor % 100).abs())
    };
    let payer = || expense.get("payer").and_then(Value::as_str).unwrap_or("someone").to_owned();
    match e.kind.as_str() {
        event::DISCOVERED => format!("New AI tool discovered: {name} (from {})", text("source")),
        event::BLOCKED_SEEN if text("source") == "expense" => {
            format!("Blocked AI tool {name} paid for again: {} by {}", money(), payer())
        }
        event::BLOCKED_SEEN => format!("Blocked AI tool {name} seen on {}", text("device")),
        event::REVIEW_CHANGED => {
            format!("{name}: {} → {} by {}", text("from"), text("to"), text("by"))
        }
        event::EXPENSE_CANDIDATE => {
            let descriptor = expense.get("descriptor").and_then(Value::as_str).unwrap_or("");
            format!("Possible AI expense: {descriptor}, {} by {}", money(), payer())
        }
        event::SPREAD => {
            let reach = subject.get("reach").cloned().unwrap_or(Value::Null);
            let n = |k: &str| reach.get(k).and_then(Value::as_i64).unwrap_or(0);
            format!(
                "{name} ({}) has spread to {} devices and {} users",
                text("status"),
                n("devices"),
                n("users")
            )
        }
        event::AGENT_STALE => format!("Agent on {} has been silent", text("device")),
        event::CONNECTOR_FAILED => {
            format!("Connector {} failed: {}", text("connector"), text("error"))
        }
        event::DEVICE_TAKEOVER => format!(
            "Enrollment of known device {} ({}) without its node key from {}: {}",
            text("hostname"),
            text("host_id"),
            text("source"),
            text("outcome")
        ),
        event::DESCRIPTOR_TAUGHT => format!(
            "Card descriptor {} taught as {name} by {} ({} lines)",
            text("descriptor"),
            text("by"),
            subject.get("lines").and_then(Value::as_u64).unwrap_or(0)
        ),
        event::TEST => format!("Test event from aiscout for channel {}", text("channel")),
        other => format!("{other}: {name}"),
    }
}

/// The generic webhook body.
pub fn webhook_body(e: &NewEvent, subject: &Value, url: &str) -> Vec<u8> {
    json!({
        "id": e.id,
        "type": e.kind,
        "occurred_at": e.occurred_at.rfc3339(),
        "subject": subject,
        "url": url,
    })
    .to_string()
    .into_bytes()
}

/// `t=UNIX_SECONDS,v1=HEX`: HEX the HMAC-SHA256 of `t + "." + body` under `secret`.
pub fn signature(secret: &[u8], t: i64, body: &[u8]) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret);
    let mut ctx = hmac::Context::with_key(&key);
    ctx.update(t.to_string().as_bytes());
    ctx.update(b".");
    ctx.update(body);
    let tag = ctx.sign();
    let hex: String = tag.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    format!("t={t},v1={hex}")
}

fn header(name: &'static str, value: &str) -> Option<(HeaderName, HeaderValue)> {
    HeaderValue::from_str(value).ok().map(|v| (HeaderName::from_static(name), v))
}

/// The message for a channel of `kind`. `secret` is the webhook's signing key or the SIEM
/// token; `now` the signing time.
pub fn message(
    kind: Kind,
    e: &NewEvent,
    about: Option<&About>,
    console: &str,
    secret: Option<&str>,
    now: i64,
) -> Message {
    let subject = subject(e, about);
    let url = link(console, e, &subject);
    let summary = summary(e, &subject);
    let json_type = header("content-type", "application/json");
    let (body, mut headers) = match kind {
        Kind::Webhook => {
            let body = webhook_body(e, &subject, &url);
            let mut h = vec![header("idempotency-key", &e.id)];
            if let Some(s) = secret {
                h.push(header("x-aiscout-signature", &signature(s.as_bytes(), now, &body)));
            }
            (body, h)
        }
        // Jira is sent by `jira::send` (issue and comment bodies); this form only serves a
        // caller that wants the event as JSON.
        // Email and syslog are sent by `email::send` and `syslog::send`; likewise.
        Kind::Jira | Kind::Email | Kind::Syslog => (webhook_body(e, &subject, &url), Vec::new()),
        Kind::Slack => {
            let body = json!({
                "text": summary,
                "blocks": [
                    { "type": "section", "text": { "type": "mrkdwn", "text": format!("*{}*", slack_escape(&summary)) } },
                    { "type": "context", "elements": [
                        { "type": "mrkdwn", "text": format!("{} · {} · {}", e.kind, e.occurred_at.rfc3339(), e.id) } ] },
                    { "type": "actions", "elements": [
                        { "type": "button", "text": { "type": "plain_text", "text": "Open in aiscout" }, "url": url } ] },
                ],
            });
            (body.to_string().into_bytes(), Vec::new())
        }
        Kind::Teams => {
            let mut facts = vec![
                json!({ "title": "Event", "value": e.kind }),
                json!({ "title": "When", "value": e.occurred_at.rfc3339() }),
            ];
            if let Some(a) = about {
                facts.push(json!({ "title": "Status", "value": a.status }));
                facts.push(json!({ "title": "Reach", "value": format!("{} devices, {} users", a.devices, a.users) }));
            }
            facts.push(json!({ "title": "Id", "value": e.id }));
            let body = json!({
                "type": "message",
                "attachments": [{
                    "contentType": "application/vnd.microsoft.card.adaptive",
                    "contentUrl": null,
                    "content": {
                        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                        "type": "AdaptiveCard",
                        "version": "1.4",
                        "body": [
                            { "type": "TextBlock", "text": summary, "weight": "Bolder", "wrap": true },
                            { "type": "FactSet", "facts": facts },
                        ],
                        "actions": [ { "type": "Action.OpenUrl", "title": "Open in aiscout", "url": url } ],
                    },
                }],
            });
            (body.to_string().into_bytes(), vec![header("idempotency-key", &e.id)])
        }
        Kind::Siem => {
            let mut metadata = ocsf_metadata();
            metadata.insert("uid".into(), json!(e.id));
            let finding = json!({
                "class_uid": 2004,
                "category_uid": 2,
                "activity_id": 1,
                "type_uid": 200_401,
                "severity_id": severity(&e.kind),
                "status_id": 1,
                "time": e.occurred_at.get().saturating_mul(1000),
                "message": summary,
                "metadata": metadata,
                "finding_info": { "uid": e.id, "title": summary, "types": [e.kind], "src_url": url },
                "unmapped": subject,
            });
            let body =
                json!({ "time": e.occurred_at, "sourcetype": "aiscout:ocsf", "event": finding });
            let mut h = Vec::new();
            if let Some(token) = secret {
                h.push(header("authorization", &format!("Splunk {token}")));
            }
            (body.to_string().into_bytes(), h)
        }
    };
    headers.push(json_type);
    Message { body, headers: headers.into_iter().flatten().collect() }
}

fn ocsf_metadata() -> Map<String, Value> {
    match ocsf::metadata() {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

/// OCSF severity: blocked tools back in use and device takeover attempts are high, discoveries
/// and spread medium, the rest informational.
fn severity(kind: &str) -> i64 {
    match kind {
        event::BLOCKED_SEEN | event::DEVICE_TAKEOVER => 4,
        event::DISCOVERED | event::SPREAD | event::SPEND_THRESHOLD => 3,
        event::EXPENSE_CANDIDATE | event::AGENT_STALE | event::CONNECTOR_FAILED => 2,
        _ => 1,
    }
}

/// Slack mrkdwn needs `&`, `<` and `>` escaped.
fn slack_escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn discovered() -> NewEvent {
        event::make(
            event::DISCOVERED,
            "openai.chatgpt",
            1_767_225_600,
            "openai.chatgpt",
            &json!({ "product": "openai.chatgpt", "source": "dns", "device": "host-1" }),
        )
    }

    fn about() -> About {
        About {
            name: "ChatGPT".into(),
            vendor: "OpenAI".into(),
            category: "chat".into(),
            status: "unreviewed".into(),
            devices: 40,
            users: 38,
        }
    }

    #[test]
    fn the_webhook_body_carries_the_product_and_a_verifiable_signature() {
        let e = discovered();
        let m = message(
            Kind::Webhook,
            &e,
            Some(&about()),
            "https://a.example",
            Some("k"),
            1_767_225_601,
        );
        let body: Value = serde_json::from_slice(&m.body).unwrap();
        assert_eq!(body["id"], json!(e.id));
        assert_eq!(body["type"], json!("product.discovered"));
        assert_eq!(body["occurred_at"], json!("2026-01-01T00:00:00Z"));
        assert_eq!(body["subject"]["product"], json!("openai.chatgpt"));
        assert_eq!(body["subject"]["name"], json!("ChatGPT"));
        assert_eq!(body["subject"]["reach"]["devices"], json!(40));
        assert_eq!(body["url"], json!("https://a.example/products/openai.chatgpt"));
        let sig =
            m.headers.iter().find(|(n, _)| n == "x-aiscout-signature").unwrap().1.to_str().unwrap();
        let (t, v1) = sig.split_once(",v1=").unwrap();
        assert_eq!(t, "t=1767225601");
        // Recomputed from its definition: HMAC-SHA256(secret, t + "." + body).
        let key = hmac::Key::new(hmac::HMAC_SHA256, b"k");
        let mut signed = b"1767225601.".to_vec();
        signed.extend_from_slice(&m.body);
        let want: String =
            hmac::sign(&key, &signed).as_ref().iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(v1, want);
        let idem = m.headers.iter().find(|(n, _)| n == "idempotency-key").unwrap();
        assert_eq!(idem.1, e.id.as_str());
    }

    #[test]
    fn chat_messages_link_to_the_app_card() {
        let e = discovered();
        for kind in [Kind::Slack, Kind::Teams, Kind::Siem] {
            let m = message(kind, &e, Some(&about()), "https://a.example", Some("tok"), 0);
            let text = String::from_utf8(m.body).unwrap();
            assert!(text.contains("https://a.example/products/openai.chatgpt"), "{kind:?}: {text}");
            assert!(text.contains("New AI tool discovered: ChatGPT"), "{kind:?}: {text}");
            let _: Value = serde_json::from_str(&text).unwrap();
        }
        let siem = message(Kind::Siem, &e, None, "https://a.example", Some("tok"), 0);
        let auth = siem.headers.iter().find(|(n, _)| n == "authorization").unwrap();
        assert_eq!(auth.1, "Splunk tok");
    }
}
