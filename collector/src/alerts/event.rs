//! The events themselves: their types, their ids and the events a change causes. Pure (no
//! IO): the store calls these inside the transaction that makes the change, so the change
//! and its events commit together (the outbox), and the periodic rules call them with what
//! they read.
//!
//! An event's id is a hash of its type and of the key of its cause (a product for
//! `product.discovered`, a product, device and decision for `product.blocked_seen`, ...), so
//! the same cause written twice, by a retry, a replayed import, a restarted collector or a
//! second collector, is one event with one id.

use aiscout_wire::{SightingKind, UnixSecs};
use ring::digest;
use serde_json::{Value, json};

use crate::model::{DescriptorMapping, ExpenseLine, GatewaySpend, NewEvent, Review};

/// `product.discovered`: a product seen for the first time from any source.
pub const DISCOVERED: &str = "product.discovered";
/// `product.spread`: an unsanctioned or unreviewed product passes N devices or users.
pub const SPREAD: &str = "product.spread";
/// `product.blocked_seen`: a blocked product seen or paid for after the decision.
pub const BLOCKED_SEEN: &str = "product.blocked_seen";
/// `review.changed`: a review decision.
pub const REVIEW_CHANGED: &str = "review.changed";
/// `expense.candidate`: a new AI-looking expense line that matches no product.
pub const EXPENSE_CANDIDATE: &str = "expense.candidate";
/// `spend.threshold`: monthly spend passes an amount or a budget's share.
pub const SPEND_THRESHOLD: &str = "spend.threshold";
/// `agent.stale`: an enrolled device has not sent a heartbeat for N hours.
pub const AGENT_STALE: &str = "agent.stale";
/// `subscription.renewal`: an annual subscription renews in N days.
pub const SUBSCRIPTION_RENEWAL: &str = "subscription.renewal";
/// `connector.failed`: a pull connector's run failed (once per failure streak).
pub const CONNECTOR_FAILED: &str = "connector.failed";
/// `device.takeover`: an enrollment of a known host id that did not prove it holds the host's
/// node key (refused, held for an admin, let in by `replace`, or kept apart as a clone).
pub const DEVICE_TAKEOVER: &str = "device.takeover";
/// `descriptor.taught`: a reviewer mapped a card descriptor to a product (issue 17).
pub const DESCRIPTOR_TAUGHT: &str = "descriptor.taught";
/// `alert.test`: sent by an admin from the console to try a channel.
pub const TEST: &str = "alert.test";

/// Every event type a channel may subscribe to, in the order the documentation lists them.
pub const TYPES: &[&str] = &[
    DISCOVERED,
    SPREAD,
    BLOCKED_SEEN,
    REVIEW_CHANGED,
    EXPENSE_CANDIDATE,
    SPEND_THRESHOLD,
    AGENT_STALE,
    SUBSCRIPTION_RENEWAL,
    CONNECTOR_FAILED,
    DEVICE_TAKEOVER,
    DESCRIPTOR_TAUGHT,
    TEST,
];

/// The id of the event of type `kind` caused by `key`: `evt_` and 32 hex digits of
/// SHA-256(length of type as 8 big-endian bytes, type, key).
pub fn id(kind: &str, key: &str) -> String {
    let mut ctx = digest::Context::new(&digest::SHA256);
    // The type's length first, so that no (type, key) pair hashes like another.
    ctx.update(&(kind.len() as u64).to_be_bytes());
    ctx.update(kind.as_bytes());
    ctx.update(key.as_bytes());
    let d = ctx.finish();
    let mut out = String::with_capacity(36);
    out.push_str("evt_");
    for b in d.as_ref().iter().take(16) {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

/// An event of `kind` about `product` (or none), keyed by `key`.
pub fn make(kind: &str, key: &str, occurred_at: i64, product: &str, subject: &Value) -> NewEvent {
    NewEvent {
        id: id(kind, key),
        kind: kind.to_owned(),
        occurred_at: UnixSecs(occurred_at),
        product: product.to_owned(),
        subject: subject.to_string(),
        to_channel: String::new(),
    }
}

/// `connector.failed` for connector `name` whose run failed with `cause` (a bounded label) and
/// `error` (its message, which never holds a credential). Keyed by the connector and its
/// cursor, which a failed run leaves where it was: every failure until the next successful
/// run (which moves the cursor) is the same event, so a streak alerts once.
pub fn connector_failed(
    name: &str,
    kind: &str,
    cursor: Option<i64>,
    cause: &str,
    error: &str,
    now: i64,
) -> NewEvent {
    let since = cursor.map_or_else(|| "never".to_owned(), |c| c.to_string());
    make(
        CONNECTOR_FAILED,
        &format!("{name}\0{since}"),
        now,
        "",
        &json!({ "connector": name, "kind": kind, "cause": cause, "error": error,
                 "last_success": cursor }),
    )
}

/// `device.takeover` for an enrollment of `host` from `source`, named `hostname`, with its
/// `outcome` (`refused`, `held`, `replaced` or `duplicate`). Keyed by host, outcome, source and
/// UTC day, so an agent retrying all day is one alert a day, and another address or another
/// outcome is another alert.
pub fn device_takeover(
    host: &str,
    hostname: &str,
    outcome: &str,
    source: &str,
    policy: &str,
    now: i64,
) -> NewEvent {
    let day = now.div_euclid(86_400);
    make(
        DEVICE_TAKEOVER,
        &format!("{host}\0{outcome}\0{source}\0{day}"),
        now,
        "",
        &json!({ "host_id": host, "hostname": hostname, "outcome": outcome, "source": source,
                 "policy": policy }),
    )
}

/// `descriptor.taught` for `mapping` (stored, with its id), which resolved `lines` stored
/// candidate lines. Keyed by the mapping's id and normalised descriptor: a retried commit is
/// one event, and teaching the descriptor again after an undo (a new mapping) is another.
pub fn descriptor_taught(mapping: &DescriptorMapping, lines: u64) -> NewEvent {
    make(
        DESCRIPTOR_TAUGHT,
        &format!("{}\0{}", mapping.id, mapping.descriptor),
        mapping.created_at.get(),
        &mapping.product,
        &json!({ "descriptor": mapping.descriptor, "by": mapping.actor, "note": mapping.note,
                 "lines": lines }),
    )
}

/// A test event for one channel, sent by `actor` at `now` (each press is a new event).
pub fn test(channel: &str, actor: &str, now: i64, nonce: &str) -> NewEvent {
    let mut e = make(
        TEST,
        &format!("{channel}\0{now}\0{nonce}"),
        now,
        "",
        &json!({ "channel": channel, "by": actor }),
    );
    e.to_channel = channel.to_owned();
    e
}

/// One product an agent batch reported: its id and the latest time it was seen in the batch.
#[derive(Clone, Debug)]
pub struct BatchProduct<'a> {
    /// Product id.
    pub product: &'a str,
    /// The indicator kind of its first sighting in the batch.
    pub kind: SightingKind,
    /// Latest `last_seen` in the batch.
    pub last_seen: i64,
}

/// The products of a batch, each once, with their latest sighting time.
pub fn batch_products<'a>(
    sightings: impl IntoIterator<Item = (&'a str, SightingKind, UnixSecs)>,
) -> Vec<BatchProduct<'a>> {
    let mut out: Vec<BatchProduct<'a>> = Vec::new();
    for (product, kind, last_seen) in sightings {
        let last_seen = last_seen.get();
        match out.iter_mut().find(|p| p.product == product) {
            Some(p) => p.last_seen = p.last_seen.max(last_seen),
            None => out.push(BatchProduct { product, kind, last_seen }),
        }
    }
    out
}

/// The events an agent batch from device `host` causes: `product.discovered` for each product
/// in `new` (just inserted into the known products), and `product.blocked_seen` for each
/// product of the batch that is blocked (`blocked`: product and decision time) and was seen
/// after the decision. One blocked-seen event per (product, device, decision).
pub fn for_batch(
    host: &str,
    products: &[BatchProduct<'_>],
    new: &[String],
    blocked: &[(String, i64)],
) -> Vec<NewEvent> {
    let mut out = Vec::new();
    for p in products {
        if new.iter().any(|n| n == p.product) {
            out.push(new_product(
                p.product,
                p.kind.as_str(),
                p.last_seen,
                json!({ "device": host }),
            ));
        }
        if let Some((_, decided)) = blocked.iter().find(|(b, _)| b == p.product)
            && p.last_seen > *decided
        {
            out.push(make(
                BLOCKED_SEEN,
                &format!("{}\0device\0{host}\0{decided}", p.product),
                p.last_seen,
                p.product,
                &json!({ "product": p.product, "device": host, "source": p.kind.as_str(),
                         "decided_at": decided }),
            ));
        }
    }
    out
}

fn new_product(product: &str, source: &str, at: i64, mut extra: Value) -> NewEvent {
    if let Some(map) = extra.as_object_mut() {
        map.insert("product".into(), json!(product));
        map.insert("source".into(), json!(source));
    }
    make(DISCOVERED, product, at, product, &extra)
}

/// The events newly inserted expense lines cause: `product.discovered` for the products in
/// `new`, `product.blocked_seen` for a line of a blocked product dated after the decision, and
/// `expense.candidate` for a line that matches no product but looks like AI.
pub fn for_expenses(
    lines: &[&ExpenseLine],
    new: &[String],
    blocked: &[(String, i64)],
) -> Vec<NewEvent> {
    let mut out = Vec::new();
    let mut announced: Vec<&str> = Vec::new();
    for l in lines {
        let money = json!({ "amount_minor": l.amount_minor, "currency": l.currency,
                            "descriptor": l.descriptor, "payer": l.payer_email,
                            "department": l.department });
        match &l.product {
            Some(p) => {
                if new.iter().any(|n| n == p) && !announced.contains(&p.as_str()) {
                    announced.push(p);
                    out.push(new_product(
                        p,
                        "expense",
                        l.occurred_at.get(),
                        json!({ "expense": money }),
                    ));
                }
                if let Some((_, decided)) = blocked.iter().find(|(b, _)| b == p)
                    && l.occurred_at.get() > *decided
                {
                    out.push(make(
                        BLOCKED_SEEN,
                        &format!("{p}\0expense\0{}\0{}\0{decided}", l.source, l.dedupe_key),
                        l.occurred_at.get(),
                        p,
                        &json!({ "product": p, "source": "expense", "expense": money,
                                 "decided_at": decided }),
                    ));
                }
            }
            None if l.candidate => out.push(make(
                EXPENSE_CANDIDATE,
                &format!("{}\0{}", l.source, l.dedupe_key),
                l.occurred_at.get(),
                "",
                &json!({ "expense": money, "occurred_at": l.occurred_at }),
            )),
            None => {}
        }
    }
    out
}

/// The events newly inserted gateway rows cause: `product.discovered` for the products in
/// `new` (a sanctioned gateway's spend is not "blocked seen": it is the organisation's own).
pub fn for_gateway(rows: &[&GatewaySpend], new: &[String]) -> Vec<NewEvent> {
    let mut out = Vec::new();
    for p in new {
        if let Some(r) = rows.iter().find(|r| r.product.as_deref() == Some(p.as_str())) {
            out.push(new_product(
                p,
                "gateway",
                r.period_start.get(),
                json!({ "gateway": { "provider": r.provider, "model": r.model, "team": r.team } }),
            ));
        }
    }
    out
}

/// The `review.changed` event of a decision (`before` is the previous review, if any).
pub fn for_review(before: Option<&Review>, after: &Review) -> NewEvent {
    let from = before.map_or("unreviewed", |b| b.status.as_str());
    make(
        REVIEW_CHANGED,
        &format!(
            "{}\0{}\0{}\0{}",
            after.product, after.reviewed_at, after.status, after.reviewed_by
        ),
        after.reviewed_at.get(),
        &after.product,
        &json!({ "product": after.product, "by": after.reviewed_by, "from": from,
                 "to": after.status, "note": after.note, "alternative": after.alternative }),
    )
}

/// The products of `lines` (each once), for the known-products insert.
pub fn products_of<'a>(products: impl IntoIterator<Item = Option<&'a str>>) -> Vec<&'a str> {
    let mut out: Vec<&str> = Vec::new();
    for p in products.into_iter().flatten() {
        if !out.contains(&p) {
            out.push(p);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_stable_and_differ_by_type_and_key() {
        let a = id(DISCOVERED, "openai.chatgpt");
        assert_eq!(a, id(DISCOVERED, "openai.chatgpt"));
        assert_eq!(a.len(), 36);
        assert!(a.starts_with("evt_"));
        assert_ne!(a, id(SPREAD, "openai.chatgpt"));
        assert_ne!(a, id(DISCOVERED, "openai.api"));
        // The separator keeps ("a", "b\0c") and ("a\0b", "c") apart.
        assert_ne!(id("a", "b\0c"), id("a\0b", "c"));
    }

    #[test]
    fn a_blocked_product_fires_only_when_seen_after_the_decision() {
        let products = batch_products([
            ("x.chat", SightingKind::Dns, UnixSecs(100)),
            ("x.chat", SightingKind::TlsSni, UnixSecs(300)),
        ]);
        assert_eq!(products.len(), 1);
        let blocked = vec![("x.chat".to_owned(), 200)];
        let events = for_batch("host-1", &products, &[], &blocked);
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].kind, BLOCKED_SEEN);
        let earlier = batch_products([("x.chat", SightingKind::Dns, UnixSecs(150))]);
        assert!(for_batch("host-1", &earlier, &[], &blocked).is_empty());
        // Another device is another event; the same device again is the same id.
        let again = for_batch("host-1", &products, &[], &blocked);
        let other = for_batch("host-2", &products, &[], &blocked);
        assert_eq!(events[0].id, again[0].id);
        assert_ne!(events[0].id, other[0].id);
    }
}
