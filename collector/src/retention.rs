//! Retention (issue 21, "keep less"): how long each kind of data is kept (`[retention]`), applied
//! daily by `serve` and on demand by `retention run [--dry-run]`, and shown on `/transparency`.
//!
//! A kind with no period is kept until someone deletes it or erases a person. The audit log is
//! kept longest: when `audit_entries_days` is set, every other kind must have a period no
//! longer than it, or the log could forget why data that is still there was changed. The
//! deletion itself, in chunks, is [`crate::store::retention`]; what the rollups hold is not
//! deleted, so the inventory's product, device and user counts stay.

use serde::Deserialize;

use crate::store::retention::{Cutoffs, Kind, Outcome};
use crate::store::{Store, StoreError};

/// The longest period accepted, in days (100 years).
pub const MAX_DAYS: u32 = 36_500;

/// How often `serve` applies retention.
pub const EVERY: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

/// `[retention]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionFile {
    /// Days sightings are kept after they were last seen.
    pub sightings_days: Option<u32>,
    /// Days expense lines are kept after the transaction.
    pub expense_lines_days: Option<u32>,
    /// Days gateway rows are kept after their period started.
    pub gateway_rows_days: Option<u32>,
    /// Days audit entries are kept (the longest of all).
    pub audit_entries_days: Option<u32>,
}

/// The validated periods, in days; `None` keeps that kind.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Settings {
    /// Sightings, after they were last seen.
    pub sightings_days: Option<u32>,
    /// Expense lines, after the transaction.
    pub expense_lines_days: Option<u32>,
    /// Gateway rows, after their period started.
    pub gateway_rows_days: Option<u32>,
    /// Audit entries, after they were written.
    pub audit_entries_days: Option<u32>,
}

impl Settings {
    /// The period of `kind`.
    pub fn days(&self, kind: Kind) -> Option<u32> {
        match kind {
            Kind::Sightings => self.sightings_days,
            Kind::ExpenseLines => self.expense_lines_days,
            Kind::GatewayRows => self.gateway_rows_days,
            Kind::AuditEntries => self.audit_entries_days,
        }
    }

    /// Whether any kind has a period.
    pub fn any(&self) -> bool {
        Kind::ALL.iter().any(|k| self.days(*k).is_some())
    }

    /// The cutoffs at `now`: a row older than its kind's period is deleted.
    pub fn cutoffs(&self, now: i64) -> Cutoffs {
        let at = |days: Option<u32>| days.map(|d| now.saturating_sub(i64::from(d) * 86_400));
        Cutoffs {
            sightings: at(self.sightings_days),
            expense_lines: at(self.expense_lines_days),
            gateway_rows: at(self.gateway_rows_days),
            audit_entries: at(self.audit_entries_days),
        }
    }
}

/// The config key of `kind`'s period.
pub fn key(kind: Kind) -> String {
    format!("retention.{}_days", kind.as_str())
}

/// Validates `[retention]`; each problem is `(key, reason)`.
pub fn check(raw: RetentionFile, problems: &mut Vec<(String, String)>) -> Settings {
    let mut settings = Settings {
        sightings_days: raw.sightings_days,
        expense_lines_days: raw.expense_lines_days,
        gateway_rows_days: raw.gateway_rows_days,
        audit_entries_days: raw.audit_entries_days,
    };
    for kind in Kind::ALL {
        if let Some(d) = settings.days(kind)
            && (d == 0 || d > MAX_DAYS)
        {
            problems.push((key(kind), format!("{d} days: must be between 1 and {MAX_DAYS}")));
        }
    }
    if let Some(audit) = settings.audit_entries_days {
        for kind in [Kind::Sightings, Kind::ExpenseLines, Kind::GatewayRows] {
            match settings.days(kind) {
                None => problems.push((
                    key(kind),
                    format!(
                        "unset (kept forever) while audit entries are kept {audit} days: the \
                         audit log must be kept longest, so set this to at most {audit}"
                    ),
                )),
                Some(d) if d > audit => problems.push((
                    key(kind),
                    format!(
                        "{d} days is longer than audit entries are kept ({audit} days): the \
                         audit log must be kept longest"
                    ),
                )),
                Some(_) => {}
            }
        }
    }
    if !problems.is_empty() {
        settings = Settings::default();
    }
    settings
}

/// Applies (or with `dry_run` only counts) the periods at `now`.
///
/// # Errors
/// A store operation fails; chunks deleted before it stay deleted.
pub async fn run<S: Store>(
    store: &S,
    settings: &Settings,
    dry_run: bool,
    now: i64,
) -> Result<Outcome, StoreError> {
    store.apply_retention(settings.cutoffs(now), dry_run).await
}

/// One line per kind, as `retention run` prints it.
pub fn render(settings: &Settings, outcome: &Outcome) -> String {
    let verb = if outcome.dry_run { "would delete" } else { "deleted" };
    let mut out = String::new();
    for kind in Kind::ALL {
        let line = match outcome.rows.iter().find(|(k, _, _)| *k == kind) {
            Some((_, cutoff, n)) => format!(
                "{}: {verb} {n} (older than {} days, before {})\n",
                kind.as_str(),
                settings.days(kind).unwrap_or(0),
                crate::review::format_day(*cutoff)
            ),
            None => format!("{}: kept (no period set)\n", kind.as_str()),
        };
        out.push_str(&line);
    }
    out
}

/// The rule for `kind` as the transparency page says it.
pub fn describe(settings: &Settings, kind: Kind) -> String {
    match settings.days(kind) {
        Some(d) => format!(
            "deleted {d} days after {}",
            match kind {
                Kind::Sightings => "they were last seen",
                Kind::ExpenseLines => "the transaction",
                Kind::GatewayRows => "the day or period they cover",
                Kind::AuditEntries => "they were written",
            }
        ),
        None => "kept until an administrator deletes them or a person's data is erased on \
                 request (no retention period is configured)"
            .to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_raw(raw: RetentionFile) -> (Settings, Vec<(String, String)>) {
        let mut problems = Vec::new();
        let s = check(raw, &mut problems);
        (s, problems)
    }

    #[test]
    fn periods_are_bounded_and_the_audit_log_is_kept_longest() {
        let (s, p) = check_raw(RetentionFile {
            sightings_days: Some(90),
            expense_lines_days: Some(400),
            gateway_rows_days: Some(400),
            audit_entries_days: Some(730),
        });
        assert!(p.is_empty(), "{p:?}");
        assert_eq!(s.cutoffs(1_000 * 86_400).sightings, Some(910 * 86_400));
        let (_, p) =
            check_raw(RetentionFile { sightings_days: Some(0), ..RetentionFile::default() });
        assert_eq!(p[0].0, "retention.sightings_days");
        let (_, p) = check_raw(RetentionFile {
            sightings_days: Some(800),
            expense_lines_days: Some(100),
            audit_entries_days: Some(730),
            ..RetentionFile::default()
        });
        let keys: Vec<&str> = p.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["retention.sightings_days", "retention.gateway_rows_days"]);
        assert!(p[0].1.contains("longer than audit entries"));
        assert!(p[1].1.contains("kept forever"));
        let (s, p) = check_raw(RetentionFile::default());
        assert!(p.is_empty() && !s.any());
    }
}
