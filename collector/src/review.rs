//! Review decisions and the audit records of every review and token change.
//!
//! The audit log is append-only (enforced by triggers in the store). Each record says who
//! (the API token's name, or `cli`), when, what (`review.set`, `token.create`,
//! `token.revoke`), on which subject, and the JSON state before and after. The store writes
//! the record in the same transaction as the change it describes.

use aiscout_wire::ReviewStatus;
use serde_json::json;

use crate::model::{AuditRecord, Review, Token};
use crate::store::AuditFn;

/// The actor name of changes made on the command line.
pub const CLI_ACTOR: &str = "cli";

fn review_json(r: &Review) -> String {
    json!({ "status": r.status, "note": r.note, "reviewed_by": r.reviewed_by,
            "reviewed_at": r.reviewed_at })
    .to_string()
}

fn token_json(t: &Token) -> String {
    json!({ "name": t.name, "role": t.role.as_str(), "created_at": t.created_at,
            "revoked_at": t.revoked_at })
    .to_string()
}

/// A review decision and the builder of its audit record.
pub fn decide(
    product: &str,
    status: ReviewStatus,
    note: String,
    actor: &str,
    now: i64,
) -> (Review, AuditFn<Review>) {
    let review = Review {
        product: product.to_owned(),
        status: status.as_str().to_owned(),
        note,
        reviewed_by: actor.to_owned(),
        reviewed_at: now,
    };
    let after = review_json(&review);
    let (actor, subject) = (actor.to_owned(), product.to_owned());
    let audit: AuditFn<Review> = Box::new(move |before| AuditRecord {
        at: now,
        actor,
        action: "review.set".into(),
        subject,
        before: before.map(review_json),
        after: Some(after),
    });
    (review, audit)
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
            t.revoked_at = Some(now);
            token_json(&t)
        });
        AuditRecord {
            at: now,
            actor,
            action: "token.revoke".into(),
            subject: before.map(|t| t.name.clone()).unwrap_or_default(),
            before: before.map(token_json),
            after,
        }
    })
}
