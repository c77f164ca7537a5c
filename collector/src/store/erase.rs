//! The right to erasure (issue 21): the SQL both backends run, in one transaction, to replace a
//! person by a tombstone everywhere the collector keeps them.
//!
//! The person becomes `erased-<32 hex>@erased.invalid` (random, so the tombstone cannot be
//! computed from the email), their name `Erased person <8 hex>`, the host names of their devices
//! `erased-<8 hex>`, and every OS user name seen on their devices `erased-<8 hex>-<n>` on those
//! devices only (a shared account name like `admin` stays on everyone else's; see `OS_USER`
//! for how the rollups' user keys keep their counts). Rows are rewritten, never deleted, so
//! every count and amount stays where it was. Free text that quoted the email or name (review
//! notes, audit entries' JSON) has it replaced.
//!
//! The audit log is append-only by trigger; migration 0012 lets a transaction rewrite or
//! delete entries only while it holds the row in `audit_unlock`, which this code inserts and
//! deletes again inside the erasure's transaction, so no other transaction ever sees it.
//! Console sessions of the person are ended. Statements are written with `?N` placeholders
//! (SQLite); `postgres_sql` turns them into `$N`.
//!
//! Parameters of `PERSON`: `?1` the email (lowercased), `?2` the tombstone email, `?3` the
//! person's name (the statements marked `needs_name` run only when it is not empty), `?4` the
//! tombstone name, `?5` the tombstone host name.

use crate::model::AuditRecord;

/// One statement of the erasure, with the table it reports changes for.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Step {
    /// What the change count is reported as.
    pub(crate) table: &'static str,
    /// The SQL, `?N` placeholders.
    pub(crate) sql: &'static str,
    /// Whether it uses the name (`?3`) and is skipped when the name is empty.
    pub(crate) needs_name: bool,
}

const fn step(table: &'static str, sql: &'static str) -> Step {
    Step { table, sql, needs_name: false }
}

const fn named(table: &'static str, sql: &'static str) -> Step {
    Step { table, sql, needs_name: true }
}

/// The OS user names seen on the person's devices (run before [`PERSON`] renames the owner).
pub(crate) const OWNED_OS_USERS: &str = "SELECT DISTINCT s.os_user FROM sightings s
     JOIN devices d ON d.id = s.device_id
     WHERE lower(d.owner_email) = ?1 AND s.os_user <> ''
     UNION SELECT DISTINCT i.os_user FROM installed i
     JOIN devices d ON d.id = i.device_id
     WHERE lower(d.owner_email) = ?1 AND i.os_user <> ''
     ORDER BY 1";

/// Renames one OS user name (`?1` old, `?2` new) seen on the person's devices (`?3` the
/// owner's email, lowercased): the rows of their devices only, so a shared account name such as
/// `admin` stays as it is on everyone else's devices. The rollups' user keys (`usage_kind_user`,
/// `usage_product_user`: distinct names per product, across devices) are renamed only where no
/// other device still has the name for that product and kind (checked after the per-device
/// rows are renamed); otherwise the key stays, still counting the other devices, and the
/// renamed name is not added, so the stored user counts do not move either way. The
/// department rollups are rebuilt from `usage_device` by the next fold (the erasure marks
/// them dirty), so their keys follow the same rule. Pending rows are folded before an erasure
/// ([`crate::person::erase`]), so nothing pending adds the renamed name as a new user later.
pub(crate) const OS_USER: &[&str] = &[
    "UPDATE sightings SET os_user = ?2 WHERE os_user = ?1
     AND device_id IN (SELECT id FROM devices WHERE lower(owner_email) = ?3)",
    "UPDATE installed SET os_user = ?2 WHERE os_user = ?1
     AND device_id IN (SELECT id FROM devices WHERE lower(owner_email) = ?3)",
    "UPDATE usage_pending SET os_user = ?2 WHERE os_user = ?1
     AND device_id IN (SELECT id FROM devices WHERE lower(owner_email) = ?3)",
    "UPDATE usage_device SET os_user = ?2 WHERE os_user = ?1
     AND device_id IN (SELECT id FROM devices WHERE lower(owner_email) = ?3)",
    "UPDATE usage_kind_user SET os_user = ?2 WHERE os_user = ?1
     AND NOT EXISTS (SELECT 1 FROM usage_device u WHERE u.os_user = ?1
         AND u.product = usage_kind_user.product AND u.kind = usage_kind_user.kind)
     AND NOT EXISTS (SELECT 1 FROM usage_pending u WHERE u.os_user = ?1
         AND u.product = usage_kind_user.product AND u.kind = usage_kind_user.kind)",
    "UPDATE usage_product_user SET os_user = ?2 WHERE os_user = ?1
     AND NOT EXISTS (SELECT 1 FROM usage_device u WHERE u.os_user = ?1
         AND u.product = usage_product_user.product)
     AND NOT EXISTS (SELECT 1 FROM usage_pending u WHERE u.os_user = ?1
         AND u.product = usage_product_user.product)",
    "UPDATE usage_dept_kind_user SET os_user = ?2 WHERE os_user = ?1
     AND NOT EXISTS (SELECT 1 FROM usage_device u WHERE u.os_user = ?1
         AND u.product = usage_dept_kind_user.product AND u.kind = usage_dept_kind_user.kind)",
    "UPDATE usage_dept_user SET os_user = ?2 WHERE os_user = ?1
     AND NOT EXISTS (SELECT 1 FROM usage_device u WHERE u.os_user = ?1
         AND u.product = usage_dept_user.product)",
];

/// Lets this transaction rewrite the audit log (migration 0012's guard).
pub(crate) const UNLOCK_AUDIT: &str = "INSERT INTO audit_unlock (id) VALUES (1)";
/// Closes the guard again before the commit.
pub(crate) const LOCK_AUDIT: &str = "DELETE FROM audit_unlock";

/// Everything that names the person, in order (the devices' host names before their owner).
pub(crate) const PERSON: &[Step] = &[
    step("devices", "UPDATE devices SET hostname = ?5 WHERE lower(owner_email) = ?1"),
    step("devices", "UPDATE devices SET owner_email = ?2 WHERE lower(owner_email) = ?1"),
    step("people", "UPDATE people SET email = ?2, name = ?4 WHERE lower(email) = ?1"),
    step("people", "UPDATE people SET manager = ?2 WHERE lower(manager) = ?1"),
    step(
        "expense_lines",
        "UPDATE expense_lines SET payer_email = ?2, payer_name = ?4 WHERE lower(payer_email) = ?1",
    ),
    named(
        "expense_lines",
        "UPDATE expense_lines SET payer_name = ?4
         WHERE payer_email = '' AND lower(payer_name) = lower(?3)",
    ),
    step("gateway_spend", "UPDATE gateway_spend SET end_user = ?2 WHERE lower(end_user) = ?1"),
    step("reviews", "UPDATE reviews SET reviewed_by = ?2 WHERE lower(reviewed_by) = ?1"),
    step(
        "descriptor_mappings",
        "UPDATE descriptor_mappings SET actor = ?2 WHERE lower(actor) = ?1",
    ),
    step(
        "reviews",
        "UPDATE reviews SET note = replace(note, ?1, ?2), business_owner = replace(business_owner, ?1, ?2)
         WHERE lower(note) LIKE '%' || ?1 || '%' OR lower(business_owner) LIKE '%' || ?1 || '%'",
    ),
    named(
        "reviews",
        "UPDATE reviews SET note = replace(note, ?3, ?4), business_owner = replace(business_owner, ?3, ?4)
         WHERE note LIKE '%' || ?3 || '%' OR business_owner LIKE '%' || ?3 || '%'",
    ),
    step("audit_log", "UPDATE audit_log SET actor = ?2 WHERE lower(actor) = ?1"),
    step("audit_log", "UPDATE audit_log SET subject = ?2 WHERE lower(subject) = ?1"),
    step(
        "audit_log",
        "UPDATE audit_log SET actor = replace(actor, ?1, ?2), subject = replace(subject, ?1, ?2),
            before_json = replace(before_json, ?1, ?2), after_json = replace(after_json, ?1, ?2)
         WHERE lower(actor) LIKE '%' || ?1 || '%' OR lower(subject) LIKE '%' || ?1 || '%'
            OR lower(before_json) LIKE '%' || ?1 || '%' OR lower(after_json) LIKE '%' || ?1 || '%'",
    ),
    named(
        "audit_log",
        "UPDATE audit_log SET before_json = replace(before_json, ?3, ?4),
            after_json = replace(after_json, ?3, ?4)
         WHERE before_json LIKE '%' || ?3 || '%' OR after_json LIKE '%' || ?3 || '%'",
    ),
    step("console_sessions", "DELETE FROM console_sessions WHERE lower(actor) = ?1"),
    step("import_runs", "UPDATE import_runs SET actor = ?2 WHERE lower(actor) = ?1"),
    step(
        "alert_events",
        "UPDATE alert_events SET subject = replace(subject, ?1, ?2)
         WHERE lower(subject) LIKE '%' || ?1 || '%'",
    ),
    named(
        "alert_events",
        "UPDATE alert_events SET subject = replace(subject, ?3, ?4)
         WHERE subject LIKE '%' || ?3 || '%'",
    ),
    step(
        "alert_tickets",
        "UPDATE alert_tickets SET subject = replace(subject, ?1, ?2)
         WHERE lower(subject) LIKE '%' || ?1 || '%'",
    ),
    // The person's SCIM user (by userName, as stored; or, in plain mode, a document naming
    // the email): the identity provider provisions them again, under the tombstone.
    step(
        "scim_resources",
        "DELETE FROM scim_resources WHERE kind = 'User'
         AND (name = ?1 OR lower(resource) LIKE '%' || ?1 || '%')",
    ),
    step(
        "reenroll_requests",
        "UPDATE reenroll_requests SET approved_by = ?2 WHERE lower(approved_by) = ?1",
    ),
];

/// What an erasure changed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Erasure {
    /// The tombstone email the person became; `None` when nothing named them (already erased,
    /// or never known), and then nothing was written, not even an audit entry.
    pub tombstone: Option<String>,
    /// Rows changed per table (OS user renames under `os_users`, as names renamed).
    pub rows: std::collections::BTreeMap<String, u64>,
}

/// The highest `?N` a statement uses: how many parameters it takes.
pub(crate) fn arity(sql: &str) -> usize {
    sql.split('?')
        .skip(1)
        .filter_map(|rest| {
            let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
            digits.parse::<usize>().ok()
        })
        .max()
        .unwrap_or(0)
}

/// A statement with `?N` placeholders as PostgreSQL writes them (`$N`).
pub(crate) fn postgres_sql(sql: &str) -> String {
    sql.replace('?', "$")
}

/// Random hex of `bytes` bytes.
pub(crate) fn random_hex(bytes: usize) -> String {
    use ring::rand::SecureRandom as _;
    let mut buf = vec![0u8; bytes];
    if ring::rand::SystemRandom::new().fill(&mut buf).is_err() {
        // Without randomness, the time still gives a tombstone no one can derive from the
        // email, which is what it must not be.
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        for (b, n) in buf.iter_mut().zip(nanos.to_le_bytes().iter().cycle()) {
            *b = *n;
        }
    }
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

/// The names an erasure writes in place of the person.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Tombstone {
    pub(crate) email: String,
    pub(crate) name: String,
    pub(crate) hostname: String,
    /// The prefix of renamed OS users (`<prefix>-<n>`).
    pub(crate) os_user: String,
}

impl Tombstone {
    /// The name the `n`th (from 0) OS user of the person's devices becomes.
    pub(crate) fn os_user_name(&self, n: usize) -> String {
        format!("{}-{}", self.os_user, n + 1)
    }

    pub(crate) fn new() -> Self {
        let id = random_hex(16);
        let short = id.get(..8).unwrap_or("00000000").to_owned();
        Self {
            email: format!("erased-{id}@erased.invalid"),
            name: format!("Erased person {short}"),
            hostname: format!("erased-{short}"),
            os_user: format!("erased-{short}"),
        }
    }
}

/// The audit record of an erasure: the tombstone, the reason and the rows changed, never the
/// email or name.
pub(crate) fn audit(
    tombstone: &str,
    actor: &str,
    reason: &str,
    rows: &std::collections::BTreeMap<String, u64>,
    now: i64,
) -> AuditRecord {
    AuditRecord {
        at: aiscout_wire::UnixSecs(now),
        actor: actor.to_owned(),
        action: "person.erase".into(),
        subject: tombstone.to_owned(),
        before: None,
        after: Some(serde_json::json!({ "reason": reason, "rows": rows }).to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_become_postgres_ones() {
        assert_eq!(postgres_sql("a = ?1 AND b LIKE '%' || ?3"), "a = $1 AND b LIKE '%' || $3");
        for s in PERSON {
            assert!(!s.sql.contains('$'), "{}", s.sql);
            assert_eq!(s.needs_name, s.sql.contains("?3"), "{}", s.sql);
        }
    }

    #[test]
    fn arity_is_the_highest_placeholder() {
        assert_eq!(arity("UPDATE t SET a = ?5 WHERE b = ?1"), 5);
        assert_eq!(arity(OS_USER[0]), 3);
        assert_eq!(arity(OS_USER[4]), 2);
        assert_eq!(arity(LOCK_AUDIT), 0);
    }

    #[test]
    fn tombstones_are_random_and_shaped() {
        let (a, b) = (Tombstone::new(), Tombstone::new());
        assert_ne!(a.email, b.email);
        assert!(a.email.starts_with("erased-") && a.email.ends_with("@erased.invalid"));
        assert_eq!(a.email.len(), "erased-@erased.invalid".len() + 32);
    }
}
