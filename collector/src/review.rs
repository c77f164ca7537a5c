//! Review decisions and the audit records of every review and token change.
//!
//! The audit log is append-only (enforced by triggers in the store). Each record says who
//! (the API token's name, or `cli`), when, what (`review.set`, `token.create`,
//! `token.revoke`), on which subject, and the JSON state before and after. The store writes
//! the record in the same transaction as the change it describes.

use aiscout_wire::{ReviewStatus, UnixSecs};
use serde_json::json;

use crate::model::{AuditRecord, DescriptorMapping, Review, Token, descriptor_key};
use crate::store::AuditFn;

/// The actor name of changes made on the command line.
pub const CLI_ACTOR: &str = "cli";

fn review_json(r: &Review) -> String {
    json!({ "status": r.status, "note": r.note, "reviewed_by": r.reviewed_by,
            "reviewed_at": r.reviewed_at, "business_owner": r.business_owner,
            "alternative": r.alternative, "renewal": r.renewal })
    .to_string()
}

/// What a reviewer decides about a product: the same whether it comes from the API or a
/// console form.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    /// The new status.
    pub status: ReviewStatus,
    /// The justification.
    pub note: String,
    /// Who in the business is accountable for it, `""` for nobody.
    pub business_owner: String,
    /// The sanctioned product to use instead, `""` for none.
    pub alternative: String,
    /// When the subscription renews (Unix seconds of a UTC midnight).
    pub renewal: Option<UnixSecs>,
}

impl Decision {
    /// A decision with only a status and a note.
    pub fn new(status: ReviewStatus, note: String) -> Self {
        Decision {
            status,
            note,
            business_owner: String::new(),
            alternative: String::new(),
            renewal: None,
        }
    }
}

fn token_json(t: &Token) -> String {
    json!({ "name": t.name, "role": t.role.as_str(), "created_at": t.created_at,
            "revoked_at": t.revoked_at })
    .to_string()
}

/// A review decision and the builder of its audit record.
pub fn decide(
    product: &str,
    decision: Decision,
    actor: &str,
    now: i64,
) -> (Review, AuditFn<Review>) {
    let review = Review {
        product: product.to_owned(),
        status: decision.status.as_str().to_owned(),
        note: decision.note,
        reviewed_by: actor.to_owned(),
        reviewed_at: UnixSecs(now),
        business_owner: decision.business_owner,
        alternative: decision.alternative,
        renewal: decision.renewal,
    };
    let after = review_json(&review);
    let (actor, subject) = (actor.to_owned(), product.to_owned());
    let audit: AuditFn<Review> = Box::new(move |before| AuditRecord {
        at: UnixSecs(now),
        actor,
        action: "review.set".into(),
        subject,
        before: before.map(review_json),
        after: Some(after),
    });
    (review, audit)
}

/// A `YYYY-MM-DD` date as Unix seconds of its UTC midnight; `None` when it is not a date.
pub fn parse_day(date: &str) -> Option<UnixSecs> {
    let mut parts = date.splitn(3, '-');
    let (y, m, d) = (parts.next()?, parts.next()?, parts.next()?);
    let day =
        crate::ingest::parse::days_from_civil(y.parse().ok()?, m.parse().ok()?, d.parse().ok()?)?;
    day.checked_mul(crate::ingest::parse::DAY_SECS).map(UnixSecs)
}

/// Unix seconds as the `YYYY-MM-DD` of their UTC day.
pub fn format_day(secs: impl Into<i64>) -> String {
    let secs = secs.into();
    let (y, m, d) =
        crate::ingest::parse::civil_from_days(secs.div_euclid(crate::ingest::parse::DAY_SECS));
    format!("{y:04}-{m:02}-{d:02}")
}

/// A stored review as the API answers it; `None` for a status this build does not know.
pub fn to_wire(r: Review) -> Option<aiscout_wire::Review> {
    Some(aiscout_wire::Review {
        status: ReviewStatus::parse(&r.status)?,
        product: r.product,
        note: r.note,
        reviewed_by: r.reviewed_by,
        reviewed_at: r.reviewed_at.get(),
        business_owner: r.business_owner,
        alternative: r.alternative,
        renewal: r.renewal.map(format_day),
    })
}

/// The audit record of a token creation.
pub fn token_created(token: &Token, actor: &str) -> AuditRecord {
    AuditRecord {
        at: token.created_at,
        actor: actor.to_owned(),
        action: "token.create".into(),
        subject: token.name.clone(),
        before: None,
        after: Some(token_json(token)),
    }
}

/// The builder of a token revocation's audit record.
pub fn token_revoked(actor: &str, now: i64) -> AuditFn<Token> {
    let actor = actor.to_owned();
    Box::new(move |before| {
        let after = before.map(|t| {
            let mut t = t.clone();
            t.revoked_at = Some(UnixSecs(now));
            token_json(&t)
        });
        AuditRecord {
            at: UnixSecs(now),
            actor,
            action: "token.revoke".into(),
            subject: before.map(|t| t.name.clone()).unwrap_or_default(),
            before: before.map(token_json),
            after,
        }
    })
}

fn mapping_json(m: &DescriptorMapping) -> String {
    json!({ "id": m.id, "descriptor": m.descriptor, "product": m.product, "actor": m.actor,
            "created_at": m.created_at, "note": m.note })
    .to_string()
}

/// A reviewer's teaching (issue 17) and its audit record (`descriptor.teach`): the same
/// whether it comes from the API or the reconciliation page. `Err` says why it cannot be
/// (a descriptor without words, a product the catalog does not have).
pub fn teach(
    catalog: &aiscout_signatures::Catalog,
    descriptor: &str,
    product: &str,
    note: &str,
    actor: &str,
    now: i64,
) -> Result<(DescriptorMapping, AuditRecord), String> {
    let key = descriptor_key(descriptor);
    if key.is_empty() {
        return Err(format!("descriptor {descriptor:?} has no words to match on"));
    }
    let product = product.trim();
    if catalog.product(product).is_none() {
        return Err(format!("the catalog has no product with the id {product:?}"));
    }
    let mapping = DescriptorMapping {
        id: 0,
        descriptor: key,
        product: product.to_owned(),
        actor: actor.to_owned(),
        created_at: UnixSecs(now),
        note: note.trim().to_owned(),
    };
    let audit = AuditRecord {
        at: UnixSecs(now),
        actor: actor.to_owned(),
        action: "descriptor.teach".into(),
        subject: mapping.descriptor.clone(),
        before: None,
        after: Some(mapping_json(&mapping)),
    };
    Ok((mapping, audit))
}

/// The builder of an undone teaching's audit record (`descriptor.undo`).
pub fn untaught(actor: &str, now: i64) -> AuditFn<DescriptorMapping> {
    let actor = actor.to_owned();
    Box::new(move |before| AuditRecord {
        at: UnixSecs(now),
        actor,
        action: "descriptor.undo".into(),
        subject: before.map(|m| m.descriptor.clone()).unwrap_or_default(),
        before: before.map(mapping_json),
        after: None,
    })
}

/// A stored mapping as the API answers it; `lines` is what the call resolved or restored.
pub fn mapping_to_wire(
    m: DescriptorMapping,
    lines: Option<u64>,
) -> aiscout_wire::DescriptorMapping {
    aiscout_wire::DescriptorMapping {
        id: m.id,
        descriptor: m.descriptor,
        product: m.product,
        actor: m.actor,
        created_at: m.created_at.get(),
        note: m.note,
        lines,
    }
}
