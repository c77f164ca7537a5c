//! Retention (issue 21, "keep less"): deleting what is older than the configured period of its
//! kind, in chunks, with the SQL both backends run.
//!
//! Kinds and what ages them: sightings by `last_seen`, expense lines by `occurred_at`, gateway
//! rows by `period_start`, audit entries by `at`. Each chunk of at most [`CHUNK`] rows is its own
//! transaction, so a large first run never holds the write lock for long and a crash loses
//! nothing but the chunk's progress (the next run deletes it). The inventory's totals are in
//! the rollups (`usage_*`), which retention does not touch, so products, devices and users seen
//! stay counted after their sightings are gone; what goes is the detail (values, per-device
//! sightings, time-bounded reads that scan sightings) and, for expense lines and gateway rows,
//! their amounts (the spend views read the lines).
//!
//! Audit entries are deleted through migration 0012's guard (`audit_unlock`), held only inside
//! each chunk's transaction; a run that deleted anything writes one `retention.apply` audit
//! entry with the counts.

use crate::model::AuditRecord;

/// Most rows one chunk deletes.
pub const CHUNK: i64 = 5_000;

/// Most chunks one run deletes per kind (bounded; the next run continues).
pub const MAX_CHUNKS: u32 = 10_000;

/// A kind of data with its own retention period.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    /// Sightings (`sightings`).
    Sightings,
    /// Expense lines (`expense_lines`).
    ExpenseLines,
    /// Gateway rows (`gateway_spend`).
    GatewayRows,
    /// Audit entries (`audit_log`).
    AuditEntries,
}

impl Kind {
    /// Every kind, in the order reports list them.
    pub const ALL: [Kind; 4] =
        [Kind::Sightings, Kind::ExpenseLines, Kind::GatewayRows, Kind::AuditEntries];

    /// The name in output and audit entries (the config key without `_days`).
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Sightings => "sightings",
            Kind::ExpenseLines => "expense_lines",
            Kind::GatewayRows => "gateway_rows",
            Kind::AuditEntries => "audit_entries",
        }
    }

    /// Counts the rows older than `?1`.
    pub(crate) fn count_sql(self) -> &'static str {
        match self {
            Kind::Sightings => "SELECT count(*) FROM sightings WHERE last_seen < ?1",
            Kind::ExpenseLines => "SELECT count(*) FROM expense_lines WHERE occurred_at < ?1",
            Kind::GatewayRows => "SELECT count(*) FROM gateway_spend WHERE period_start < ?1",
            Kind::AuditEntries => "SELECT count(*) FROM audit_log WHERE at < ?1",
        }
    }

    /// Deletes at most `?2` rows older than `?1` (row values: the sightings' key has no rowid).
    pub(crate) fn delete_sql(self) -> &'static str {
        match self {
            Kind::Sightings => {
                "DELETE FROM sightings
                 WHERE (device_id, product, kind, value, os_user, process, window_start) IN (
                    SELECT device_id, product, kind, value, os_user, process, window_start
                    FROM sightings WHERE last_seen < ?1 LIMIT ?2)"
            }
            Kind::ExpenseLines => {
                "DELETE FROM expense_lines WHERE id IN (
                    SELECT id FROM expense_lines WHERE occurred_at < ?1 LIMIT ?2)"
            }
            Kind::GatewayRows => {
                "DELETE FROM gateway_spend WHERE id IN (
                    SELECT id FROM gateway_spend WHERE period_start < ?1 LIMIT ?2)"
            }
            Kind::AuditEntries => {
                "DELETE FROM audit_log WHERE id IN (
                    SELECT id FROM audit_log WHERE at < ?1 ORDER BY id LIMIT ?2)"
            }
        }
    }

    /// The data version a deletion of this kind bumps, if any (see `join::cache`).
    pub(crate) fn bump(self) -> Option<&'static str> {
        match self {
            Kind::Sightings => Some(super::BUMP_USAGE),
            Kind::ExpenseLines | Kind::GatewayRows => Some(super::BUMP_SPEND),
            Kind::AuditEntries => None,
        }
    }
}

/// Unix seconds before which each kind is deleted; `None` keeps that kind forever.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Cutoffs {
    /// Sightings last seen before this.
    pub sightings: Option<i64>,
    /// Expense lines that occurred before this.
    pub expense_lines: Option<i64>,
    /// Gateway rows whose period started before this.
    pub gateway_rows: Option<i64>,
    /// Audit entries written before this.
    pub audit_entries: Option<i64>,
}

impl Cutoffs {
    /// The cutoff of `kind`.
    pub fn of(&self, kind: Kind) -> Option<i64> {
        match kind {
            Kind::Sightings => self.sightings,
            Kind::ExpenseLines => self.expense_lines,
            Kind::GatewayRows => self.gateway_rows,
            Kind::AuditEntries => self.audit_entries,
        }
    }
}

/// What a run deleted (or, dry, would delete), per kind with a cutoff.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    /// (kind, cutoff, rows), in [`Kind::ALL`] order, kinds kept forever left out.
    pub rows: Vec<(Kind, i64, u64)>,
    /// Whether this was a dry run (nothing deleted).
    pub dry_run: bool,
}

impl Outcome {
    /// All rows deleted (or that would be).
    pub fn total(&self) -> u64 {
        self.rows.iter().map(|(_, _, n)| n).sum()
    }
}

/// The audit record of a run that deleted something.
pub(crate) fn audit(outcome: &Outcome, now: i64) -> AuditRecord {
    let rows: serde_json::Map<String, serde_json::Value> = outcome
        .rows
        .iter()
        .map(|(k, cutoff, n)| {
            (k.as_str().to_owned(), serde_json::json!({"before": cutoff, "deleted": n}))
        })
        .collect();
    AuditRecord {
        at: aiscout_wire::UnixSecs(now),
        actor: "retention".into(),
        action: "retention.apply".into(),
        subject: "retention".into(),
        before: None,
        after: Some(serde_json::Value::Object(rows).to_string()),
    }
}
