//! The statements both backends run, each written once (PostgreSQL's dialect, translated for
//! SQLite; see [`super::sql`]), with the mapping of each row type by column name.
//!
//! A function here runs inside a transaction or on a connection the backend chose: the
//! backend keeps what really differs (pooling, how a writing transaction starts and commits,
//! bulk loads and locks).

pub(crate) mod alerts;
mod ingest;
pub(crate) mod lifecycle;
mod reads;

pub(crate) use ingest::{
    batch_contact, batch_events, blocked, heartbeat, insert_batch, known, mapping_keys,
    privacy_mode,
};
pub(crate) use reads::{
    device_by_key, device_counts, device_page, expenses, mcp_flags, owner_last_use,
    product_devices, product_values, rollup_usage, usage, versions,
};

use super::sql::{Conn, FromRow, One, Param, Row};
use super::{AuditFn, CredentialHash, StoreError, credential_hash, outbox, role, rollup};
use crate::alerts::event;
use crate::model::{
    AuditEntry, AuditFilter, AuditRecord, DeliveryRow, DescriptorMapping, Device, DeviceSighting,
    DeviceSummary, Health, ImportRun, Person, ProcessSighting, Review, ScimResource, Session,
    StoredEvent, Token,
};
use crate::store::sql::from_row;

// ---- Audit log -------------------------------------------------------------------------

impl FromRow for AuditEntry {
    fn from_row(r: &impl Row) -> Result<Self, StoreError> {
        Ok(AuditEntry {
            id: r.get("id")?,
            record: AuditRecord {
                at: r.get("at")?,
                actor: r.get("actor")?,
                action: r.get("action")?,
                subject: r.get("subject")?,
                before: r.get("before_json")?,
                after: r.get("after_json")?,
            },
        })
    }
}

/// Appends one entry to the audit log.
pub(crate) async fn append_audit(c: &impl Conn, a: &AuditRecord) -> Result<(), StoreError> {
    c.execute(
        "INSERT INTO audit_log (at, actor, action, subject, before_json, after_json)
         VALUES ($1, $2, $3, $4, $5, $6)",
        &[&a.at, &a.actor, &a.action, &a.subject, &a.before, &a.after],
    )
    .await?;
    Ok(())
}

/// [`super::Store::audit`].
pub(crate) async fn audit(
    c: &impl Conn,
    after: i64,
    limit: i64,
) -> Result<Vec<AuditEntry>, StoreError> {
    c.query(
        "SELECT id, at, actor, action, subject, before_json, after_json FROM audit_log
         WHERE id > $1 ORDER BY id LIMIT $2",
        &[&after, &limit],
    )
    .await
}

/// [`super::Store::audit_query`].
pub(crate) async fn audit_query(
    c: &impl Conn,
    filter: &AuditFilter,
) -> Result<Vec<AuditEntry>, StoreError> {
    let (sql, args) = super::audit_query_sql(filter, '$');
    c.query(&sql, &params(&args)).await
}

/// Built statement arguments ([`rollup::Arg`]) as statement parameters.
fn params(args: &[rollup::Arg]) -> Vec<&dyn Param> {
    args.iter()
        .map(|a| -> &dyn Param {
            match a {
                rollup::Arg::Text(t) => t,
                rollup::Arg::Int(i) => i,
            }
        })
        .collect()
}

// ---- Reviews ---------------------------------------------------------------------------

/// The columns of a [`Review`].
const REVIEW_COLUMNS: &str =
    "product, status, note, reviewed_by, reviewed_at, business_owner, alternative, renewal";

from_row!(Review {
    product,
    status,
    note,
    reviewed_by,
    reviewed_at,
    business_owner,
    alternative,
    renewal
});

/// [`super::Store::reviews`].
pub(crate) async fn reviews(c: &impl Conn) -> Result<Vec<Review>, StoreError> {
    c.query(&format!("SELECT {REVIEW_COLUMNS} FROM reviews ORDER BY product"), &[]).await
}

/// [`super::Store::review`].
pub(crate) async fn review(c: &impl Conn, product: &str) -> Result<Option<Review>, StoreError> {
    c.query_opt(&format!("SELECT {REVIEW_COLUMNS} FROM reviews WHERE product = $1"), &[&product])
        .await
}

/// [`super::Store::set_review`], inside a writing transaction.
pub(crate) async fn set_review(
    tx: &impl Conn,
    review: &Review,
    audit: AuditFn<Review>,
) -> Result<Option<Review>, StoreError> {
    // Lock the product's review row (or, for a first review, serialise on the insert) so
    // that the audit's "before" is the state this change replaced.
    let before: Option<Review> = tx
        .query_opt(
            &format!("SELECT {REVIEW_COLUMNS} FROM reviews WHERE product = $1{}", tx.for_update()),
            &[&review.product],
        )
        .await?;
    tx.execute(
        &format!(
            "INSERT INTO reviews ({REVIEW_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
             ON CONFLICT (product) DO UPDATE SET status = excluded.status,
                note = excluded.note, reviewed_by = excluded.reviewed_by,
                reviewed_at = excluded.reviewed_at,
                business_owner = excluded.business_owner,
                alternative = excluded.alternative, renewal = excluded.renewal"
        ),
        &[
            &review.product,
            &review.status,
            &review.note,
            &review.reviewed_by,
            &review.reviewed_at,
            &review.business_owner,
            &review.alternative,
            &review.renewal,
        ],
    )
    .await?;
    append_audit(tx, &audit(before.as_ref())).await?;
    outbox::emit(tx, &[event::for_review(before.as_ref(), review)], review.reviewed_at.get())
        .await?;
    Ok(before)
}

// ---- API tokens ------------------------------------------------------------------------

impl FromRow for Token {
    fn from_row(r: &impl Row) -> Result<Self, StoreError> {
        let role_name: String = r.get("role")?;
        Ok(Token {
            name: r.get("name")?,
            role: role("api_tokens", &role_name)?,
            created_at: r.get("created_at")?,
            revoked_at: r.get("revoked_at")?,
        })
    }
}

/// [`super::Store::create_token`], inside a writing transaction.
pub(crate) async fn create_token(
    tx: &impl Conn,
    token: Token,
    hash: &CredentialHash,
    audit: &AuditRecord,
) -> Result<(), StoreError> {
    let inserted = tx
        .execute(
            "INSERT INTO api_tokens (name, role, token_hash, created_at, revoked_at)
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (name) DO NOTHING",
            &[&token.name, &token.role.as_str(), &&hash[..], &token.created_at, &token.revoked_at],
        )
        .await?;
    if inserted == 0 {
        return Err(StoreError::Exists { what: "token", name: token.name });
    }
    append_audit(tx, audit).await
}

/// [`super::Store::revoke_token`], inside a writing transaction.
pub(crate) async fn revoke_token(
    tx: &impl Conn,
    name: &str,
    now: i64,
    audit: AuditFn<Token>,
) -> Result<Option<Token>, StoreError> {
    let before: Option<Token> = tx
        .query_opt(
            &format!(
                "SELECT name, role, created_at, revoked_at FROM api_tokens
                 WHERE name = $1 AND revoked_at IS NULL{}",
                tx.for_update()
            ),
            &[&name],
        )
        .await?;
    let Some(before) = before else {
        return Ok(None);
    };
    tx.execute("UPDATE api_tokens SET revoked_at = $2 WHERE name = $1", &[&name, &now]).await?;
    append_audit(tx, &audit(Some(&before))).await?;
    Ok(Some(before))
}

/// [`super::Store::tokens`].
pub(crate) async fn tokens(c: &impl Conn) -> Result<Vec<Token>, StoreError> {
    c.query("SELECT name, role, created_at, revoked_at FROM api_tokens ORDER BY name", &[]).await
}

/// [`super::Store::token_by_hash`].
pub(crate) async fn token_by_hash(
    c: &impl Conn,
    hash: &CredentialHash,
) -> Result<Option<Token>, StoreError> {
    c.query_opt(
        "SELECT name, role, created_at, revoked_at FROM api_tokens WHERE token_hash = $1",
        &[&&hash[..]],
    )
    .await
}

// ---- Console sessions ------------------------------------------------------------------

impl FromRow for Session {
    fn from_row(r: &impl Row) -> Result<Self, StoreError> {
        let role_name: String = r.get("role")?;
        Ok(Session {
            actor: r.get("actor")?,
            role: role("console_sessions", &role_name)?,
            method: r.get("method")?,
            token: r.get("token")?,
            csrf: r.get("csrf")?,
            created_at: r.get("created_at")?,
            last_seen: r.get("last_seen")?,
            expires_at: r.get("expires_at")?,
        })
    }
}

/// [`super::Store::create_session`], inside a writing transaction.
pub(crate) async fn create_session(
    tx: &impl Conn,
    hash: &CredentialHash,
    session: Session,
    audit: &AuditRecord,
) -> Result<(), StoreError> {
    let inserted = tx
        .execute(
            "INSERT INTO console_sessions (session_hash, actor, role, method, token, csrf,
                created_at, last_seen, expires_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
             ON CONFLICT (session_hash) DO NOTHING",
            &[
                &&hash[..],
                &session.actor,
                &session.role.as_str(),
                &session.method,
                &session.token,
                &session.csrf,
                &session.created_at,
                &session.last_seen,
                &session.expires_at,
            ],
        )
        .await?;
    if inserted == 0 {
        return Err(StoreError::Exists { what: "session", name: session.actor });
    }
    append_audit(tx, audit).await
}

/// [`super::Store::session`]: a session that is still valid at `now` (its absolute expiry is
/// later, and the token it signed in with, if any, exists and is not revoked). Idle expiry
/// is the caller's to judge from `last_seen`.
pub(crate) async fn session(
    c: &impl Conn,
    hash: &CredentialHash,
    now: i64,
) -> Result<Option<Session>, StoreError> {
    c.query_opt(
        "SELECT s.actor, s.role, s.method, s.token, s.csrf, s.created_at, s.last_seen,
                s.expires_at
         FROM console_sessions s
         WHERE s.session_hash = $1 AND s.expires_at > $2
           AND (s.token IS NULL OR EXISTS (SELECT 1 FROM api_tokens t
                                           WHERE t.name = s.token AND t.revoked_at IS NULL))",
        &[&&hash[..], &now],
    )
    .await
}

/// [`super::Store::touch_session`]: `last_seen` never moves back.
pub(crate) async fn touch_session(
    c: &impl Conn,
    hash: &CredentialHash,
    now: i64,
) -> Result<(), StoreError> {
    c.execute(
        "UPDATE console_sessions
         SET last_seen = CASE WHEN last_seen < $2 THEN $2 ELSE last_seen END
         WHERE session_hash = $1",
        &[&&hash[..], &now],
    )
    .await?;
    Ok(())
}

/// [`super::Store::end_session`], inside a writing transaction.
pub(crate) async fn end_session(
    tx: &impl Conn,
    hash: &CredentialHash,
    audit: Option<&AuditRecord>,
) -> Result<bool, StoreError> {
    let deleted =
        tx.execute("DELETE FROM console_sessions WHERE session_hash = $1", &[&&hash[..]]).await?;
    if deleted == 0 {
        return Ok(false);
    }
    if let Some(audit) = audit {
        append_audit(tx, audit).await?;
    }
    Ok(true)
}

/// [`super::Store::purge_sessions`].
pub(crate) async fn purge_sessions(
    c: &impl Conn,
    now: i64,
    idle_before: i64,
) -> Result<u64, StoreError> {
    c.execute(
        "DELETE FROM console_sessions WHERE expires_at <= $1 OR last_seen < $2",
        &[&now, &idle_before],
    )
    .await
}

// ---- Devices ---------------------------------------------------------------------------

/// A device and its last heartbeat, as [`DeviceSummary`]'s [`FromRow`] reads them; the
/// caller adds its `WHERE` or `ORDER BY`.
pub(crate) const DEVICE_SELECT: &str = "SELECT d.host_id, d.hostname, d.os, d.os_version,
        d.agent_version, d.owner_email, d.enrolled_at, d.last_contact, d.dropped_sightings,
        d.evicted_sightings, h.received_at, h.agent_version AS h_agent_version,
        h.catalog_version, h.interfaces_json, h.packets, h.drops, h.spool_depth, h.evictions,
        h.last_scan, d.duplicate_of
    FROM devices d LEFT JOIN heartbeats h ON h.device_id = d.id";

impl FromRow for DeviceSummary {
    fn from_row(r: &impl Row) -> Result<Self, StoreError> {
        let received_at: Option<aiscout_wire::UnixSecs> = r.get("received_at")?;
        let health = match received_at {
            None => None,
            Some(received_at) => Some(Health {
                received_at,
                agent_version: r.get("h_agent_version")?,
                catalog_version: r.get("catalog_version")?,
                interfaces_json: r.get("interfaces_json")?,
                packets: r.get("packets")?,
                drops: r.get("drops")?,
                spool_depth: r.get("spool_depth")?,
                evictions: r.get("evictions")?,
                last_scan: r.get("last_scan")?,
            }),
        };
        Ok(DeviceSummary {
            device: Device {
                host_id: r.get("host_id")?,
                hostname: r.get("hostname")?,
                os: r.get("os")?,
                os_version: r.get("os_version")?,
                agent_version: r.get("agent_version")?,
                owner_email: r.get("owner_email")?,
            },
            enrolled_at: r.get("enrolled_at")?,
            last_contact: r.get("last_contact")?,
            dropped_sightings: r.get("dropped_sightings")?,
            evicted_sightings: r.get("evicted_sightings")?,
            health,
            duplicate_of: r.get("duplicate_of")?,
        })
    }
}

from_row!(DeviceSighting {
    host_id,
    hostname,
    os,
    owner_email,
    product,
    kind,
    value,
    first_seen,
    last_seen,
    count
});

/// [`super::Store::devices`].
pub(crate) async fn devices(c: &impl Conn) -> Result<Vec<DeviceSummary>, StoreError> {
    c.query(&format!("{DEVICE_SELECT} ORDER BY d.host_id"), &[]).await
}

/// [`super::Store::device`].
pub(crate) async fn device(
    c: &impl Conn,
    host_id: &str,
) -> Result<Option<DeviceSummary>, StoreError> {
    c.query_opt(&format!("{DEVICE_SELECT} WHERE d.host_id = $1"), &[&host_id]).await
}

/// [`super::Store::device_products`], ordered by bytes whatever the database's collation (one
/// device's rows are few, so the sort costs little).
pub(crate) async fn device_products(
    c: &impl Conn,
    host_id: &str,
) -> Result<Vec<DeviceSighting>, StoreError> {
    c.query(
        "SELECT d.host_id, d.hostname, d.os, d.owner_email, s.product, s.kind, s.value,
                MIN(s.first_seen) AS first_seen, MAX(s.last_seen) AS last_seen,
                SUM(s.count)::bigint AS count
         FROM devices d JOIN sightings s ON s.device_id = d.id
         WHERE d.host_id = $1
         GROUP BY d.id, s.product, s.kind, s.value
         ORDER BY s.product COLLATE \"C\", s.kind COLLATE \"C\", s.value COLLATE \"C\"",
        &[&host_id],
    )
    .await
}

/// [`super::Store::device_sightings`].
pub(crate) async fn device_sightings(
    c: &impl Conn,
    since: Option<i64>,
) -> Result<Vec<DeviceSighting>, StoreError> {
    c.query(
        "SELECT d.host_id, d.hostname, d.os, d.owner_email, s.product, s.kind, s.value,
                MIN(s.first_seen) AS first_seen, MAX(s.last_seen) AS last_seen,
                SUM(s.count)::bigint AS count
         FROM sightings s JOIN devices d ON d.id = s.device_id
         WHERE ($1::bigint IS NULL OR s.last_seen >= $1)
         GROUP BY d.id, s.product, s.kind, s.value
         ORDER BY d.host_id, s.product, s.kind, s.value",
        &[&since],
    )
    .await
}

// ---- Enrollment secret -----------------------------------------------------------------

/// [`super::Store::rotate_enroll_secret`], inside a writing transaction.
pub(crate) async fn rotate_enroll_secret(
    tx: &impl Conn,
    hash: &CredentialHash,
    now: i64,
    audit: &AuditRecord,
) -> Result<(), StoreError> {
    tx.execute(
        "INSERT INTO enroll_secret (id, secret_hash, set_at) VALUES (1, $1, $2)
         ON CONFLICT (id) DO UPDATE SET secret_hash = excluded.secret_hash,
            set_at = excluded.set_at",
        &[&&hash[..], &now],
    )
    .await?;
    append_audit(tx, audit).await
}

/// [`super::Store::enroll_secret`].
pub(crate) async fn enroll_secret(
    c: &impl Conn,
) -> Result<Option<(CredentialHash, i64)>, StoreError> {
    let row: Option<(Vec<u8>, i64)> =
        c.query_opt("SELECT secret_hash, set_at FROM enroll_secret WHERE id = 1", &[]).await?;
    row.map(|(hash, at)| Ok((credential_hash("enroll_secret", &hash)?, at))).transpose()
}

// ---- Descriptor mappings ---------------------------------------------------------------

from_row!(DescriptorMapping { id, descriptor, product, actor, created_at, note });

/// [`super::Store::mappings`].
pub(crate) async fn mappings(c: &impl Conn) -> Result<Vec<DescriptorMapping>, StoreError> {
    let sql = format!(
        "SELECT {} FROM descriptor_mappings ORDER BY descriptor COLLATE \"C\"",
        super::MAPPING_COLUMNS
    );
    c.query(&sql, &[]).await
}

/// One descriptor mapping by id, locked for the writing transaction it is read in.
pub(crate) async fn mapping_for_update(
    tx: &impl Conn,
    id: i64,
) -> Result<Option<DescriptorMapping>, StoreError> {
    let sql = format!(
        "SELECT {} FROM descriptor_mappings WHERE id = $1{}",
        super::MAPPING_COLUMNS,
        tx.for_update()
    );
    tx.query_opt(&sql, &[&id]).await
}

// ---- People ----------------------------------------------------------------------------

from_row!(Person { email, name, department, manager });

/// [`super::Store::people`].
pub(crate) async fn people(c: &impl Conn) -> Result<Vec<Person>, StoreError> {
    c.query("SELECT email, name, department, manager FROM people ORDER BY email", &[]).await
}

/// [`super::Store::people_active`].
pub(crate) async fn people_active(c: &impl Conn) -> Result<Vec<(String, bool)>, StoreError> {
    c.query("SELECT email, active FROM people ORDER BY email", &[]).await
}

// ---- Organisation overlay --------------------------------------------------------------

/// [`super::Store::overlay`].
pub(crate) async fn overlay(c: &impl Conn) -> Result<Option<(i64, String)>, StoreError> {
    c.query_opt(super::OVERLAY_LATEST, &[]).await
}

/// [`super::Store::overlay_version`].
pub(crate) async fn overlay_version(c: &impl Conn) -> Result<Option<i64>, StoreError> {
    let max: Option<One<Option<i64>>> = c.query_opt(super::OVERLAY_VERSION, &[]).await?;
    Ok(max.and_then(|One(v)| v))
}

/// [`super::Store::ping`]: one round trip.
pub(crate) async fn ping(c: &impl Conn) -> Result<(), StoreError> {
    let _one: Vec<One<i64>> = c.query("SELECT 1::bigint", &[]).await?;
    Ok(())
}

/// [`super::Store::put_overlay`], inside a writing transaction.
pub(crate) async fn put_overlay(
    tx: &impl Conn,
    version: i64,
    document: &str,
    audit: &AuditRecord,
) -> Result<bool, StoreError> {
    let inserted =
        tx.execute(super::OVERLAY_INSERT, &[&version, &document, &audit.actor, &audit.at]).await?;
    if inserted == 0 {
        return Ok(false);
    }
    append_audit(tx, audit).await?;
    Ok(true)
}

// ---- Connectors ------------------------------------------------------------------------

/// [`super::Store::connector_cursor`].
pub(crate) async fn connector_cursor(c: &impl Conn, name: &str) -> Result<Option<i64>, StoreError> {
    let row: Option<One<i64>> =
        c.query_opt("SELECT cursor_at FROM connector_cursors WHERE name = $1", &[&name]).await?;
    Ok(row.map(|One(at)| at))
}

/// [`super::Store::set_connector_cursor`]: a cursor only moves forward.
pub(crate) async fn set_connector_cursor(
    c: &impl Conn,
    name: &str,
    cursor_at: i64,
    now: i64,
) -> Result<(), StoreError> {
    c.execute(
        "INSERT INTO connector_cursors (name, cursor_at, updated_at) VALUES ($1, $2, $3)
         ON CONFLICT (name) DO UPDATE SET
             cursor_at = CASE WHEN excluded.cursor_at > connector_cursors.cursor_at
                              THEN excluded.cursor_at ELSE connector_cursors.cursor_at END,
             updated_at = excluded.updated_at",
        &[&name, &cursor_at, &now],
    )
    .await?;
    Ok(())
}

from_row!(ImportRun { at, actor, kind, file, format, rows, stored, duplicates, errors, error });

/// [`super::Store::record_import`].
pub(crate) async fn record_import(c: &impl Conn, run: &ImportRun) -> Result<(), StoreError> {
    c.execute(
        "INSERT INTO import_runs (at, actor, kind, file, format, rows, stored, duplicates,
            errors, error)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        &[
            &run.at,
            &run.actor,
            &run.kind,
            &run.file,
            &run.format,
            &run.rows,
            &run.stored,
            &run.duplicates,
            &run.errors,
            &run.error,
        ],
    )
    .await?;
    Ok(())
}

/// [`super::Store::import_runs`], the newest first.
pub(crate) async fn import_runs(c: &impl Conn, limit: i64) -> Result<Vec<ImportRun>, StoreError> {
    // PostgreSQL refuses a negative limit; SQLite would read it as none at all.
    c.query(
        "SELECT at, actor, kind, file, format, rows, stored, duplicates, errors, error
         FROM import_runs ORDER BY id DESC LIMIT $1",
        &[&limit.max(0)],
    )
    .await
}

// ---- Alerts: what the console and the senders read -------------------------------------

/// [`super::Store::ticket`].
pub(crate) async fn ticket(
    c: &impl Conn,
    channel: &str,
    subject: &str,
) -> Result<Option<String>, StoreError> {
    let row: Option<One<String>> = c.query_opt(outbox::TICKET, &[&channel, &subject]).await?;
    Ok(row.map(|One(key)| key))
}

/// [`super::Store::delivery_counts`].
pub(crate) async fn delivery_counts(
    c: &impl Conn,
) -> Result<Vec<(String, String, i64)>, StoreError> {
    c.query(outbox::COUNTS, &[]).await
}

// ---- Sightings of one product ----------------------------------------------------------

from_row!(ProcessSighting {
    host_id,
    hostname,
    owner_email,
    product,
    kind,
    value,
    process,
    first_seen,
    last_seen,
    count
});

/// [`super::Store::product_people`].
pub(crate) async fn product_people(
    c: &impl Conn,
    product: &str,
) -> Result<Vec<String>, StoreError> {
    let rows: Vec<One<String>> =
        c.query(super::PRODUCT_PEOPLE, &[&product, &super::PRODUCT_PEOPLE_LIMIT]).await?;
    Ok(rows.into_iter().map(|One(p)| p).collect())
}

/// [`super::Store::process_sightings`].
pub(crate) async fn process_sightings(
    c: &impl Conn,
    product: &str,
) -> Result<Vec<ProcessSighting>, StoreError> {
    c.query(super::PROCESS_SIGHTINGS, &[&product, &super::PROCESS_SIGHTINGS_LIMIT]).await
}

/// [`super::Store::set_ticket`].
pub(crate) async fn set_ticket(
    c: &impl Conn,
    channel: &str,
    subject: &str,
    issue_key: &str,
    now: i64,
) -> Result<(), StoreError> {
    c.execute(outbox::TICKET_SET, &[&channel, &subject, &issue_key, &now]).await?;
    Ok(())
}

/// [`super::Store::deliveries`], the newest first.
pub(crate) async fn deliveries(c: &impl Conn, limit: i64) -> Result<Vec<DeliveryRow>, StoreError> {
    c.query(outbox::LIST, &[&limit]).await
}

/// [`super::Store::channel_events`].
pub(crate) async fn channel_events(
    c: &impl Conn,
    channel: &str,
    state: &str,
    from: i64,
    to: i64,
) -> Result<Vec<StoredEvent>, StoreError> {
    c.query(outbox::EVENTS_OF, &[&channel, &state, &from, &to]).await
}

// ---- SCIM resources --------------------------------------------------------------------

/// A stored SCIM resource; its kind is the one the caller asked for ([`ScimRow::of`]).
struct ScimRow(ScimResource);

impl ScimRow {
    fn of(self, kind: &'static str) -> ScimResource {
        ScimResource { kind, ..self.0 }
    }
}

impl FromRow for ScimRow {
    fn from_row(r: &impl Row) -> Result<Self, StoreError> {
        Ok(ScimRow(ScimResource {
            kind: "",
            id: r.get("id")?,
            resource: r.get("resource")?,
            version: r.get("version")?,
            created_at: r.get("created_at")?,
            modified_at: r.get("modified_at")?,
        }))
    }
}

/// [`super::Store::scim_get`], as stored (the caller opens sealed names).
pub(crate) async fn scim_get(
    c: &impl Conn,
    kind: &'static str,
    id: &str,
) -> Result<Option<ScimResource>, StoreError> {
    let row: Option<ScimRow> = c
        .query_opt(
            "SELECT id, resource, version, created_at, modified_at FROM scim_resources
             WHERE kind = $1 AND id = $2",
            &[&kind, &id],
        )
        .await?;
    Ok(row.map(|r| r.of(kind)))
}

/// [`super::Store::scim_list`]: the number of matches and one page, as stored (the caller
/// opens sealed names).
pub(crate) async fn scim_list(
    c: &impl Conn,
    kind: &'static str,
    name: Option<&str>,
    offset: i64,
    limit: i64,
) -> Result<(i64, Vec<ScimResource>), StoreError> {
    let total: Option<One<i64>> = c
        .query_opt(
            "SELECT COUNT(*) FROM scim_resources
             WHERE kind = $1 AND ($2::text IS NULL OR name = $2)",
            &[&kind, &name],
        )
        .await?;
    let rows: Vec<ScimRow> = c
        .query(
            "SELECT id, resource, version, created_at, modified_at FROM scim_resources
             WHERE kind = $1 AND ($2::text IS NULL OR name = $2)
             ORDER BY created_at, id LIMIT $3 OFFSET $4",
            &[&kind, &name, &limit, &offset],
        )
        .await?;
    let page = rows.into_iter().map(|r| r.of(kind)).collect();
    Ok((total.map_or(0, |One(n)| n), page))
}
