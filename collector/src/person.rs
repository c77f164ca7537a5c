//! A person's rights (issue 21): access, everything the collector stores about one person,
//! found by their email address, as one JSON document (`person export EMAIL`, and
//! `GET /api/v1/people/{email}/export` for admins); and erasure (`person erase EMAIL --reason`,
//! `POST /api/v1/people/{email}/erase`), which replaces them by a tombstone everywhere.
//!
//! Built only from [`Store`] reads the rest of the collector already uses (the directory,
//! devices and their sightings, expense lines, per-person usage, the audit log), so it works on
//! every store and never has its own SQL. What it gathers:
//! - the directory entry (`people`) with that email, and whether it is an active seat;
//! - devices whose owner is that email, each with what was seen on it (product, kind, matched
//!   value, first and last seen, count);
//! - expense lines they paid (payer email);
//! - their per-person totals: products seen on their devices, card spend, and gateway spend
//!   with them as the end user (the gateway's per-request rows are summed, not listed);
//! - audit entries they are the actor or the subject of (review decisions they took, their
//!   sign-ins).

use serde_json::{Value, json};

use crate::model::{
    AuditEntry, AuditFilter, DeviceSighting, DeviceSummary, ExpenseLine, Person, PersonUsage,
};
use crate::store::erase::Erasure;
use crate::store::{Store, StoreError};

/// Most audit entries of each kind (as actor, as subject) an export lists (the store answers
/// at most a thousand per query).
pub const AUDIT_LIMIT: i64 = 1_000;

/// Everything stored about one person.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// The email asked about, lowercased.
    pub email: String,
    /// Their directory entry.
    pub person: Option<Person>,
    /// Whether their directory entry is an active seat (false once deprovisioned over SCIM).
    pub active: bool,
    /// Devices they own.
    pub devices: Vec<DeviceSummary>,
    /// What was seen on those devices, per device, product, kind and value.
    pub sightings: Vec<DeviceSighting>,
    /// Expense lines they paid.
    pub expenses: Vec<ExpenseLine>,
    /// Their usage and spend totals (including gateway spend as end user).
    pub usage: Option<PersonUsage>,
    /// Audit entries with them as the actor or the subject, oldest first.
    pub audit: Vec<AuditEntry>,
}

impl Record {
    /// Whether nothing at all is stored about the person.
    pub fn is_empty(&self) -> bool {
        self.person.is_none()
            && self.devices.is_empty()
            && self.expenses.is_empty()
            && self.usage.is_none()
            && self.audit.is_empty()
    }
}

/// Checks and normalises an email address given on the command line or in a URL.
///
/// # Errors
/// A sentence saying why the text is not an email address.
pub fn email(text: &str) -> Result<String, String> {
    let email = text.trim().to_lowercase();
    let valid = email.split_once('@').is_some_and(|(local, domain)| {
        !local.is_empty() && !domain.is_empty() && !domain.contains('@')
    }) && !email.chars().any(|c| c.is_whitespace() || c.is_control())
        && email.len() <= 320;
    if valid { Ok(email) } else { Err(format!("{text:?} is not an email address")) }
}

/// The most characters a reason ([`checked_reason`]) may have.
pub const MAX_REASON_CHARS: usize = 1_000;

/// Checks a reason an audit entry keeps (an erasure's, a reveal's): required, printable (line
/// breaks allowed), at most [`MAX_REASON_CHARS`]; returns it trimmed.
///
/// # Errors
/// A sentence saying what is wrong with it.
pub fn checked_reason(text: &str) -> Result<String, String> {
    let reason = text.trim();
    if reason.is_empty() {
        return Err("a reason is required (it is kept in the audit log)".into());
    }
    if reason.chars().count() > MAX_REASON_CHARS {
        return Err(format!("the reason is longer than {MAX_REASON_CHARS} characters"));
    }
    if reason.chars().any(|c| c.is_control() && c != '\n') {
        return Err("the reason contains control characters".into());
    }
    Ok(reason.to_owned())
}

/// Checks the reason given for an erasure ([`checked_reason`]) and takes the email out of
/// it, so the audit entry never holds the address it erased.
///
/// # Errors
/// A sentence saying what is wrong with the reason.
pub fn reason(text: &str, email: &str) -> Result<String, String> {
    let reason = checked_reason(text)?;
    let reason = reason.as_str();
    let mut out = String::with_capacity(reason.len());
    let lower = reason.to_lowercase();
    // Case-insensitive removal; `to_lowercase` keeps byte offsets only for ASCII, so other
    // text is searched as written.
    if lower.len() == reason.len() && !email.is_empty() {
        let mut at = 0;
        while let Some(i) = lower.get(at..).and_then(|rest| rest.find(email)) {
            out.push_str(reason.get(at..at + i).unwrap_or_default());
            out.push_str("[erased]");
            at += i + email.len();
        }
        out.push_str(reason.get(at..).unwrap_or_default());
    } else {
        out = reason.replace(email, "[erased]");
    }
    Ok(out)
}

/// Erases `email` (normalised by [`email`]): the person becomes a tombstone everywhere
/// ([`crate::store::erase`]); `reason` (checked by [`reason`]) and `actor` go into the one
/// audit entry. Idempotent: a second call finds nothing and changes nothing.
///
/// # Errors
/// A store write fails (then nothing changed).
pub async fn erase<S: Store>(
    store: &S,
    email: &str,
    actor: &str,
    reason: &str,
) -> Result<Erasure, StoreError> {
    // Fold first: pending rows of the person's devices would otherwise reach the rollups'
    // user keys under their new name after the erasure (see `store::erase::OS_USER`).
    store.fold().await?;
    store
        .erase_person(email.to_owned(), actor.to_owned(), reason.to_owned(), crate::store::now())
        .await
}

/// What an erasure did, as the CLI prints it and the API answers.
pub fn erasure_json(e: &Erasure) -> Value {
    json!({
        "erased": e.tombstone.is_some(),
        "tombstone": e.tombstone,
        "rows": e.rows,
    })
}

/// Gathers everything stored about `email` (already normalised by [`email`]).
///
/// # Errors
/// A store read fails.
pub async fn export<S: Store>(store: &S, email: &str) -> Result<Record, StoreError> {
    // In pseudonymous mode the store knows the person by their pseudonym only.
    let pseudonym =
        store.identities().filter(|ids| ids.pseudonymous()).map(|ids| ids.pseudonym(email));
    let email = pseudonym.as_deref().unwrap_or(email);
    let person = store.people().await?.into_iter().find(|p| p.email == email);
    let active =
        store.people_active().await?.into_iter().find(|(e, _)| e == email).is_none_or(|(_, a)| a);
    let devices: Vec<DeviceSummary> = store
        .devices()
        .await?
        .into_iter()
        .filter(|d| d.device.owner_email.as_deref().is_some_and(|o| o.eq_ignore_ascii_case(email)))
        .collect();
    let mut sightings = Vec::new();
    for d in &devices {
        sightings.extend(store.device_products(d.device.host_id.clone()).await?);
    }
    let expenses = store
        .expenses(None)
        .await?
        .into_iter()
        .filter(|l| l.payer_email.eq_ignore_ascii_case(email))
        .collect();
    let usage = store.person_usage(Some(email.to_owned())).await?.into_iter().next();
    let mut audit = store
        .audit_query(AuditFilter {
            actor: Some(email.to_owned()),
            limit: AUDIT_LIMIT,
            ..AuditFilter::default()
        })
        .await?;
    audit.extend(
        store
            .audit_query(AuditFilter {
                subject: Some(email.to_owned()),
                limit: AUDIT_LIMIT,
                ..AuditFilter::default()
            })
            .await?,
    );
    audit.sort_by_key(|e| e.id);
    audit.dedup_by_key(|e| e.id);
    Ok(Record {
        email: email.to_owned(),
        person,
        active,
        devices,
        sightings,
        expenses,
        usage,
        audit,
    })
}

/// The record as the JSON document the CLI prints and the API serves.
pub fn to_json(r: &Record) -> Value {
    json!({
        "email": r.email,
        "found": !r.is_empty(),
        "person": r.person.as_ref().map(|p| json!({
            "email": p.email,
            "name": p.name,
            "department": p.department,
            "manager": p.manager,
            "active": r.active,
        })),
        "devices": r.devices.iter().map(|d| json!({
            "host_id": d.device.host_id,
            "hostname": d.device.hostname,
            "os": d.device.os,
            "os_version": d.device.os_version,
            "agent_version": d.device.agent_version,
            "owner_email": d.device.owner_email,
            "enrolled_at": d.enrolled_at,
            "last_contact": d.last_contact,
        })).collect::<Vec<_>>(),
        "sightings": r.sightings.iter().map(|s| json!({
            "host_id": s.host_id,
            "product": s.product,
            "kind": s.kind,
            "value": s.value,
            "first_seen": s.first_seen,
            "last_seen": s.last_seen,
            "count": s.count,
        })).collect::<Vec<_>>(),
        "expense_lines": r.expenses.iter().map(|l| json!({
            "source": l.source,
            "file": l.file,
            "line": l.line,
            "occurred_at": l.occurred_at,
            "amount_minor": l.amount_minor,
            "currency": l.currency,
            "descriptor": l.descriptor,
            "merchant": l.merchant,
            "payer_email": l.payer_email,
            "payer_name": l.payer_name,
            "department": l.department,
            "product": l.product,
        })).collect::<Vec<_>>(),
        "usage": r.usage.as_ref().map(|u| json!({
            "products": u.products,
            "expense_minor": u.expense_minor.iter()
                .map(|(c, v)| json!({"currency": c, "amount_minor": v})).collect::<Vec<_>>(),
            "gateway_as_end_user_nanos": u.gateway_nanos.iter()
                .map(|(c, v)| json!({"currency": c, "cost_nanos": v})).collect::<Vec<_>>(),
            "last_activity": u.last_activity,
        })),
        "audit": r.audit.iter().map(|e| json!({
            "id": e.id,
            "at": e.record.at,
            "actor": e.record.actor,
            "action": e.record.action,
            "subject": e.record.subject,
            "before": e.record.before,
            "after": e.record.after,
        })).collect::<Vec<_>>(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_checked_and_lowercased() {
        assert_eq!(email("  Ann.Lee@Example.COM ").unwrap(), "ann.lee@example.com");
        for bad in ["", "ann", "@example.com", "ann@", "a b@example.com", "a@b@c"] {
            assert!(email(bad).unwrap_err().contains("is not an email address"), "{bad}");
        }
    }

    #[test]
    fn reasons_are_required_and_lose_the_email() {
        let e = "ann.lee@example.com";
        assert_eq!(
            reason(" Request of Ann.Lee@Example.com, ticket 7 ", e).unwrap(),
            "Request of [erased], ticket 7"
        );
        assert!(reason("  ", e).unwrap_err().contains("required"));
        assert!(reason(&"x".repeat(MAX_REASON_CHARS + 1), e).unwrap_err().contains("longer"));
        assert!(reason("a\u{7}b", e).unwrap_err().contains("control"));
    }
}
