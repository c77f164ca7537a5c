//! The writes of a device's and a person's lifecycle, each written once for both backends:
//! enrollment and re-enrollment, sealed identities, erasure, retention, the directory
//! (people from SCIM) and descriptor mappings. The backend opens the writing transaction
//! and these take the locks they need ([`Conn::lock`]).

use super::append_audit;
use std::sync::Arc;

use crate::identity::Identities;
use crate::model::{
    Admission, AuditRecord, DescriptorMapping, Device, DeviceId, EnrollAttempt, EnrollOutcome,
    ReenrollRequest, ScimWrite,
};
use crate::store::erase::{self, postgres_sql};
use crate::store::retention::Kind;
use crate::store::sql::from_row;
use crate::store::sql::{Conn, Lock, One, Param, TextParams};
use crate::store::{AuditFn, CredentialHash, ReenrollStep, StoreError, outbox, rollup};

// ---- Enrollment ------------------------------------------------------------------------

/// Creates or updates the device by host id, revokes its node keys and stores the new one,
/// inside the caller's transaction; returns the device's row id.
pub(crate) async fn enroll_in(
    tx: &impl Conn,
    device: &Device,
    key_hash: &CredentialHash,
    now: i64,
) -> Result<i64, StoreError> {
    // A new owner may be in another department: the rollup's departments are rebuilt.
    tx.execute(
        &format!(
            "{} AND EXISTS (SELECT 1 FROM devices WHERE host_id = $1
                            AND owner_email IS DISTINCT FROM $2)",
            rollup::DEPARTMENTS_DIRTY
        ),
        &[&device.host_id, &device.owner_email],
    )
    .await?;
    let id: Option<One<i64>> = tx
        .query_opt(
            "INSERT INTO devices (host_id, hostname, os, os_version, agent_version,
                                  owner_email, enrolled_at, last_contact)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $7)
             ON CONFLICT (host_id) DO UPDATE SET hostname = excluded.hostname,
                os = excluded.os, os_version = excluded.os_version,
                agent_version = excluded.agent_version, owner_email = excluded.owner_email,
                last_contact = excluded.last_contact
             RETURNING id",
            &[
                &device.host_id,
                &device.hostname,
                &device.os,
                &device.os_version,
                &device.agent_version,
                &device.owner_email,
                &now,
            ],
        )
        .await?;
    let One(id) = id.ok_or_else(|| StoreError::NoRow { what: "the device upsert" })?;
    tx.execute("DELETE FROM node_keys WHERE device_id = $1", &[&id]).await?;
    tx.execute(crate::store::BUMP_DEVICES, &[]).await?;
    tx.execute(
        "INSERT INTO node_keys (key_hash, device_id, created_at) VALUES ($1, $2, $3)",
        &[&&key_hash[..], &id, &now],
    )
    .await?;
    Ok(id)
}

/// [`crate::store::Store::enroll`], inside a writing transaction.
pub(crate) async fn enroll(
    tx: &impl Conn,
    device: &Device,
    key_hash: &CredentialHash,
    now: i64,
) -> Result<DeviceId, StoreError> {
    Ok(DeviceId(enroll_in(tx, device, key_hash, now).await?))
}

/// [`crate::store::Store::enroll_checked`], inside a writing transaction that decides one
/// enrollment of the host id at a time (the backend's lock).
pub(crate) async fn enroll_checked(
    tx: &impl Conn,
    a: &EnrollAttempt,
) -> Result<EnrollOutcome, StoreError> {
    let host = &a.device.host_id;
    tx.lock(Lock::Enrollment(host)).await?;
    let existing: Option<One<i64>> =
        tx.query_opt("SELECT id FROM devices WHERE host_id = $1", &[host]).await?;
    // A key proves the host id's device or one of its duplicates: the one it belongs to.
    let mut proved: Option<String> = None;
    for key in a.proofs().filter(|_| existing.is_some()) {
        proved = tx
            .query_opt::<One<String>>(
                "SELECT d.host_id FROM node_keys k JOIN devices d ON d.id = k.device_id
                 WHERE k.key_hash = $1 AND (d.host_id = $2 OR d.duplicate_of = $2)",
                &[&&key[..], host],
            )
            .await?
            .map(|One(h)| h);
        if proved.is_some() {
            break;
        }
    }
    let approved = tx
        .query_opt::<One<i32>>(
            "SELECT 1 FROM reenroll_requests WHERE host_id = $1 AND approved_at IS NOT NULL",
            &[host],
        )
        .await?
        .is_some();
    let step =
        crate::store::reenroll_step(a.policy, existing.is_some(), proved.is_some(), approved);
    let duplicate = if step == ReenrollStep::Admit(Admission::Duplicate) {
        Some(free_duplicate_id(tx, host).await?)
    } else {
        None
    };
    let audit = crate::store::reenroll_audit(a, step, duplicate.as_deref());
    if let Some(audit) = &audit {
        append_audit(tx, audit).await?;
    }
    if let Some(event) = crate::store::takeover_event(a, step) {
        outbox::emit(tx, &[event], a.now.get()).await?;
    }
    Ok(match step {
        ReenrollStep::Admit(how) => {
            let mut device = a.device.clone();
            if let Some(own) = proved.or_else(|| duplicate.clone()) {
                device.host_id = own;
            }
            let id = enroll_in(tx, &device, &a.key_hash, a.now.get()).await?;
            if duplicate.is_some() {
                tx.execute("UPDATE devices SET duplicate_of = $1 WHERE id = $2", &[host, &id])
                    .await?;
            } else {
                tx.execute("DELETE FROM reenroll_requests WHERE host_id = $1", &[host]).await?;
            }
            EnrollOutcome::Enrolled { device: DeviceId(id), how }
        }
        ReenrollStep::Refuse => EnrollOutcome::Refused,
        ReenrollStep::Hold => {
            tx.execute(
                "INSERT INTO reenroll_requests (host_id, hostname, os, source, requested_at)
                 VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (host_id) DO UPDATE SET hostname = excluded.hostname,
                    os = excluded.os, source = excluded.source,
                    requested_at = excluded.requested_at",
                &[host, &a.device.hostname, &a.device.os, &a.source, &a.now],
            )
            .await?;
            EnrollOutcome::Held
        }
    })
}

/// The first free host id for one more duplicate of `host`.
async fn free_duplicate_id(tx: &impl Conn, host: &str) -> Result<String, StoreError> {
    let One(n): One<i64> = tx
        .query_opt("SELECT COUNT(*) FROM devices WHERE duplicate_of = $1", &[&host])
        .await?
        .ok_or_else(|| StoreError::NoRow { what: "COUNT(*)" })?;
    for k in 0..64_i64 {
        let id = crate::store::duplicate_host_id(host, n.saturating_add(k));
        let taken: Option<One<i32>> =
            tx.query_opt("SELECT 1 FROM devices WHERE host_id = $1", &[&id]).await?;
        if taken.is_none() {
            return Ok(id);
        }
    }
    Err(StoreError::NoFreeHostId { host: host.to_owned() })
}

/// [`crate::store::Store::approve_reenroll`], inside a writing transaction.
pub(crate) async fn approve_reenroll(
    tx: &impl Conn,
    host_id: &str,
    actor: &str,
    now: i64,
) -> Result<(), StoreError> {
    tx.execute(
        "INSERT INTO reenroll_requests (host_id, approved_by, approved_at) VALUES ($1, $2, $3)
         ON CONFLICT (host_id) DO UPDATE SET approved_by = excluded.approved_by,
            approved_at = excluded.approved_at",
        &[&host_id, &actor, &now],
    )
    .await?;
    append_audit(tx, &crate::store::approve_audit(host_id, actor, now)).await
}

from_row!(ReenrollRequest {
    host_id,
    hostname,
    os,
    source,
    requested_at,
    approved_by,
    approved_at
});

/// [`crate::store::Store::reenroll_requests`].
pub(crate) async fn reenroll_requests(c: &impl Conn) -> Result<Vec<ReenrollRequest>, StoreError> {
    c.query(
        "SELECT host_id, hostname, os, source, requested_at, approved_by, approved_at
         FROM reenroll_requests ORDER BY host_id",
        &[],
    )
    .await
}

// ---- Sealed identities and erasure -----------------------------------------------------

/// Applies the identity key to what a write carries ([`crate::identity::Protect`]) and keeps
/// the sealed identities of the pseudonyms it made, inside the caller's writing transaction,
/// before the write itself. `device`: the device a batch comes from, whose stored owner
/// decides how erased OS user names come back ([`crate::identity::Protect::batch`]).
pub(crate) async fn protect<T>(
    tx: &impl Conn,
    ids: &Identities,
    device: Option<DeviceId>,
    mut value: T,
    f: fn(&mut crate::identity::Protect<'_>, &mut T),
) -> Result<T, StoreError> {
    let erased: Vec<(String, String)> = tx.query(crate::store::ERASED_SQL, &[]).await?;
    let mut p = crate::identity::Protect::new(ids, erased.into_iter().collect());
    if let Some(device) = device {
        let owner: Option<One<Option<String>>> =
            tx.query_opt(&postgres_sql(crate::store::DEVICE_OWNER_SQL), &[&device.0]).await?;
        p.owner(owner.and_then(|One(o)| o));
    }
    f(&mut p, &mut value);
    for (pseudonym, sealed) in &p.sealed {
        tx.execute(&postgres_sql(crate::store::SEAL_SQL), &[pseudonym, sealed]).await?;
    }
    Ok(value)
}

/// The sealed identity behind a pseudonym, if it is kept.
async fn sealed(c: &impl Conn, pseudonym: &str) -> Result<Option<Vec<u8>>, StoreError> {
    let sealed: Option<One<Vec<u8>>> =
        c.query_opt(&postgres_sql(crate::store::SEALED_SQL), &[&pseudonym]).await?;
    Ok(sealed.map(|One(s)| s))
}

/// [`crate::store::Store::reveal_sealed`], inside a writing transaction: the audit entry is
/// written only when there is something to reveal.
pub(crate) async fn reveal_sealed(
    tx: &impl Conn,
    pseudonym: &str,
    audit: &AuditRecord,
) -> Result<Option<Vec<u8>>, StoreError> {
    let sealed = sealed(tx, pseudonym).await?;
    if sealed.is_some() {
        append_audit(tx, audit).await?;
    }
    Ok(sealed)
}

/// Who is erased and why (see [`erase_person`]).
pub(crate) struct Erase {
    /// The email as stored: the pseudonym in pseudonymous mode.
    email: String,
    /// The email as given.
    plain: String,
    /// The identity key, when identities are protected.
    ids: Option<Arc<Identities>>,
    /// Who asked.
    actor: String,
    /// Why.
    reason: String,
    /// When.
    now: i64,
}

impl Erase {
    /// The erasure of `email`, stored under its pseudonym when `ids` are pseudonymous.
    pub(crate) fn new(
        ids: Option<Arc<Identities>>,
        email: String,
        actor: String,
        reason: String,
        now: i64,
    ) -> Self {
        let stored = match &ids {
            Some(ids) if ids.pseudonymous() => ids.pseudonym(&email),
            _ => email.clone(),
        };
        Erase { email: stored, plain: email, ids, actor, reason, now }
    }
}

/// [`crate::store::Store::erase_person`], inside a writing transaction (see [`erase`]).
pub(crate) async fn erase_person(
    tx: &impl TextParams,
    e: &Erase,
) -> Result<erase::Erasure, StoreError> {
    let email = e.email.as_str();
    let name: String = tx
        .query_opt::<One<String>>(
            "SELECT name FROM people WHERE lower(email) = $1
             UNION ALL SELECT payer_name FROM expense_lines WHERE lower(payer_email) = $1
             LIMIT 1",
            &[&email],
        )
        .await?
        .map(|One(n)| n)
        .unwrap_or_default();
    let users: Vec<String> = tx
        .query::<One<String>>(&postgres_sql(erase::OWNED_OS_USERS), &[&email])
        .await?
        .into_iter()
        .map(|One(u)| u)
        .collect();
    let t = erase::Tombstone::new();
    let mut rows = std::collections::BTreeMap::<String, u64>::new();
    tx.execute(erase::UNLOCK_AUDIT, &[]).await?;
    for (n, user) in users.iter().enumerate() {
        let new = t.os_user_name(n);
        let args: [&dyn Param; 3] = [user, &new, &email];
        for sql in erase::OS_USER {
            let params = args.get(..erase::arity(sql)).unwrap_or(&args);
            tx.execute(&postgres_sql(sql), params).await?;
        }
        *rows.entry("os_users".into()).or_default() += 1;
    }
    let args: [&str; 5] = [email, &t.email, &name, &t.name, &t.hostname];
    for step in erase::PERSON {
        if step.needs_name && name.trim().is_empty() {
            continue;
        }
        let params = args.get(..erase::arity(step.sql)).unwrap_or(&args);
        let n = tx.execute_text(&postgres_sql(step.sql), params).await?;
        *rows.entry(step.table.into()).or_default() += n;
    }
    tx.execute(erase::LOCK_AUDIT, &[]).await?;
    rows.retain(|_, n| *n > 0);
    if rows.is_empty() {
        // Nothing named them: already erased or never known; nothing to record.
        return Ok(erase::Erasure::default());
    }
    if let Some(ids) = e.ids.as_deref() {
        // The plain name: as stored, or sealed behind its pseudonym.
        let plain_name = crate::store::plain_of(ids, &name, sealed(tx, &name).await?);
        let mut plain_users = Vec::with_capacity(users.len());
        for user in &users {
            plain_users.push(crate::store::plain_of(ids, user, sealed(tx, user).await?));
        }
        let erased =
            crate::store::erased_identities(ids, &e.plain, plain_name.as_deref(), &plain_users, &t);
        for (hash, tombstone) in erased {
            tx.execute(&postgres_sql(crate::store::REMEMBER_ERASED_SQL), &[&hash, &tombstone])
                .await?;
        }
        for pseudonym in users.iter().map(String::as_str).chain([email, &name]) {
            tx.execute(&postgres_sql(crate::store::FORGET_SQL), &[&pseudonym]).await?;
        }
    }
    append_audit(tx, &erase::audit(&t.email, &e.actor, &e.reason, &rows, e.now)).await?;
    tx.execute(crate::store::BUMP_SPEND, &[]).await?;
    tx.execute(crate::store::BUMP_DEVICES, &[]).await?;
    tx.execute(crate::store::BUMP_USAGE, &[]).await?;
    tx.execute(rollup::DEPARTMENTS_DIRTY, &[]).await?;
    Ok(erase::Erasure { tombstone: Some(t.email), rows })
}

// ---- Retention -------------------------------------------------------------------------

/// The rows of `kind` older than `cutoff` (a retention dry run).
pub(crate) async fn retention_count(
    c: &impl Conn,
    kind: Kind,
    cutoff: i64,
) -> Result<u64, StoreError> {
    let n: Option<One<i64>> = c.query_opt(&postgres_sql(kind.count_sql()), &[&cutoff]).await?;
    Ok(n.map_or(0, |One(n)| u64::try_from(n).unwrap_or(0)))
}

/// Deletes one chunk of the rows of `kind` older than `cutoff`, inside a writing
/// transaction; answers the rows deleted.
pub(crate) async fn retention_chunk(
    tx: &impl Conn,
    kind: Kind,
    cutoff: i64,
) -> Result<u64, StoreError> {
    use crate::store::retention::CHUNK;
    if kind == Kind::AuditEntries {
        tx.execute(erase::UNLOCK_AUDIT, &[]).await?;
    }
    let n = tx.execute(&postgres_sql(kind.delete_sql()), &[&cutoff, &CHUNK]).await?;
    if kind == Kind::AuditEntries {
        tx.execute(erase::LOCK_AUDIT, &[]).await?;
    }
    if n > 0
        && let Some(bump) = kind.bump()
    {
        tx.execute(bump, &[]).await?;
    }
    Ok(n)
}

// ---- Directory (SCIM) ------------------------------------------------------------------

/// [`crate::store::Store::scim_write`], inside a writing transaction.
pub(crate) async fn scim_write(tx: &impl Conn, write: ScimWrite) -> Result<bool, StoreError> {
    let r = &write.resource;
    let taken: Option<One<String>> = tx
        .query_opt(
            "SELECT id FROM scim_resources WHERE kind = $1 AND name = $2 AND id <> $3",
            &[&r.kind, &write.name, &r.id],
        )
        .await?;
    if taken.is_some() {
        return Err(StoreError::Exists { what: "SCIM resource", name: write.name });
    }
    let n = if r.version == 1 {
        tx.execute(
            "INSERT INTO scim_resources
                (kind, id, name, resource, version, created_at, modified_at)
             VALUES ($1, $2, $3, $4, 1, $5, $6) ON CONFLICT DO NOTHING",
            &[&r.kind, &r.id, &write.name, &r.resource, &r.created_at, &r.modified_at],
        )
        .await?
    } else {
        tx.execute(
            "UPDATE scim_resources SET name = $3, resource = $4, version = $5,
                modified_at = $6
             WHERE kind = $1 AND id = $2 AND version = $5::bigint - 1",
            &[&r.kind, &r.id, &write.name, &r.resource, &r.version, &r.modified_at],
        )
        .await?
    };
    if n == 0 {
        return Ok(false);
    }
    if let Some(sp) = &write.person {
        let p = &sp.person;
        if let Some(old) = sp.previous_email.as_deref().filter(|o| *o != p.email) {
            tx.execute("UPDATE people SET active = FALSE WHERE email = $1", &[&old]).await?;
        }
        tx.execute(
            "INSERT INTO people (email, name, department, manager, active)
             VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (email) DO UPDATE SET name = excluded.name,
                department = excluded.department, manager = excluded.manager,
                active = excluded.active",
            &[&p.email, &p.name, &p.department, &p.manager, &sp.active],
        )
        .await?;
        tx.execute(rollup::DEPARTMENTS_DIRTY, &[]).await?;
        tx.execute(crate::store::BUMP_SPEND, &[]).await?;
    }
    append_audit(tx, &write.audit).await?;
    Ok(true)
}

/// [`crate::store::Store::scim_delete`], inside a writing transaction.
pub(crate) async fn scim_delete(
    tx: &impl Conn,
    kind: &str,
    id: &str,
    email: Option<&str>,
    audit: &AuditRecord,
) -> Result<bool, StoreError> {
    let n =
        tx.execute("DELETE FROM scim_resources WHERE kind = $1 AND id = $2", &[&kind, &id]).await?;
    if n > 0 {
        append_audit(tx, audit).await?;
    }
    if n > 0
        && let Some(email) = email
    {
        tx.execute("UPDATE people SET active = FALSE WHERE email = $1", &[&email]).await?;
        tx.execute(crate::store::BUMP_SPEND, &[]).await?;
    }
    Ok(n > 0)
}

// ---- Descriptor mappings ---------------------------------------------------------------

/// [`crate::store::Store::add_mapping`], inside a writing transaction that holds the
/// mappings' lock (the backend's).
pub(crate) async fn add_mapping(
    tx: &impl Conn,
    mapping: DescriptorMapping,
    audit: &AuditRecord,
) -> Result<(DescriptorMapping, u64), StoreError> {
    tx.lock(Lock::Mappings).await?;
    let id: Option<One<i64>> = tx
        .query_opt(
            "INSERT INTO descriptor_mappings (descriptor, product, actor, created_at, note)
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (descriptor) DO NOTHING RETURNING id",
            &[
                &mapping.descriptor,
                &mapping.product,
                &mapping.actor,
                &mapping.created_at,
                &mapping.note,
            ],
        )
        .await?;
    let Some(One(id)) = id else {
        return Err(StoreError::Exists { what: "descriptor mapping", name: mapping.descriptor });
    };
    let candidates: Vec<(i64, String)> = tx
        .query(
            "SELECT id, descriptor FROM expense_lines
             WHERE candidate AND product IS NULL AND mapping_id IS NULL",
            &[],
        )
        .await?;
    let mut resolved = 0_u64;
    for line in crate::store::lines_for_key(candidates, &mapping.descriptor) {
        resolved += tx
            .execute(
                "UPDATE expense_lines SET product = $1, candidate = FALSE, mapping_id = $2
                 WHERE id = $3",
                &[&mapping.product, &id, &line],
            )
            .await?;
    }
    if resolved > 0 {
        tx.execute(crate::store::BUMP_SPEND, &[]).await?;
    }
    append_audit(tx, audit).await?;
    // Its alert, in the same transaction (issue 17).
    let mapping = DescriptorMapping { id, ..mapping };
    let event = crate::alerts::event::descriptor_taught(&mapping, resolved);
    outbox::emit(tx, &[event], mapping.created_at.get()).await?;
    Ok((mapping, resolved))
}

/// [`crate::store::Store::remove_mapping`], inside a writing transaction that holds the
/// mappings' lock (the backend's).
pub(crate) async fn remove_mapping(
    tx: &impl Conn,
    id: i64,
    audit: AuditFn<DescriptorMapping>,
) -> Result<Option<(DescriptorMapping, u64)>, StoreError> {
    tx.lock(Lock::Mappings).await?;
    let Some(before) = super::mapping_for_update(tx, id).await? else { return Ok(None) };
    let restored = tx
        .execute(
            "UPDATE expense_lines SET product = NULL, candidate = TRUE, mapping_id = NULL
             WHERE mapping_id = $1",
            &[&id],
        )
        .await?;
    tx.execute("DELETE FROM descriptor_mappings WHERE id = $1", &[&id]).await?;
    if restored > 0 {
        tx.execute(crate::store::BUMP_SPEND, &[]).await?;
    }
    append_audit(tx, &audit(Some(&before))).await?;
    Ok(Some((before, restored)))
}
