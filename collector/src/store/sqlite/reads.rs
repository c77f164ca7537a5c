//! The SQLite reads that aggregate in Rust rather than in SQL: a person's usage and spend,
//! the gateway totals, and the inventory from the rollups.

use std::collections::HashMap;

use rusqlite::Connection;

use crate::model::{GatewayTotal, PersonUsage, ProductUsage, SourceUsage};
use crate::store::sql::ready;
use crate::store::{PeopleUsage, StoreError, queries, rollup};

/// [`Store::person_usage`] in one read transaction: products from the rollups (the caller
/// folds first), expense lines and gateway spend read row by row and summed by
/// [`PeopleUsage`] (SQLite's `GROUP BY` would sort every row first; see [`gateway_totals`]).
/// `email` is lowercased already.
pub(super) fn person_usage(
    c: &mut Connection,
    email: Option<&str>,
) -> Result<Vec<PersonUsage>, StoreError> {
    let tx = c.transaction()?;
    let mut people = PeopleUsage::default();
    {
        let mut stmt = tx.prepare_cached(
            "SELECT lower(d.owner_email), s.product, MAX(s.last_seen)
             FROM usage_device s JOIN devices d ON d.id = s.device_id
             WHERE d.owner_email IS NOT NULL AND d.owner_email <> ''
               AND (?1 IS NULL OR lower(d.owner_email) = ?1)
             GROUP BY lower(d.owner_email), s.product",
        )?;
        let mut rows = stmt.query([email])?;
        while let Some(r) = rows.next()? {
            people.product(borrowed_text(r, 0)?, borrowed_text(r, 1)?, r.get(2)?);
        }
        let mut stmt = tx.prepare_cached(
            "SELECT payer_email, currency, amount_minor, occurred_at FROM expense_lines
             WHERE product IS NOT NULL AND payer_email <> ''
               AND (?1 IS NULL OR lower(payer_email) = ?1)",
        )?;
        let mut rows = stmt.query([email])?;
        while let Some(r) = rows.next()? {
            people.expense(borrowed_text(r, 0)?, borrowed_text(r, 1)?, r.get(2)?, r.get(3)?);
        }
        let mut stmt = tx.prepare_cached(
            "SELECT end_user, currency, cost_nanos, period_start FROM gateway_spend
             WHERE (instr(end_user, '@') > 0 OR end_user LIKE 'person-%')
               AND (?1 IS NULL OR lower(end_user) = ?1)",
        )?;
        let mut rows = stmt.query([email])?;
        while let Some(r) = rows.next()? {
            people.gateway(borrowed_text(r, 0)?, borrowed_text(r, 1)?, r.get(2)?, r.get(3)?);
        }
    }
    tx.commit()?;
    Ok(people.finish())
}

/// A text column borrowed from its row (no copy); NULL reads as `""`.
fn borrowed_text<'r>(r: &'r rusqlite::Row<'_>, i: usize) -> Result<&'r str, StoreError> {
    let value = r.get_ref(i)?;
    let text = value.as_str_or_null().map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(i, value.data_type(), Box::new(e))
    })?;
    Ok(text.unwrap_or_default())
}

/// [`Store::gateway_totals`], summed here rather than by `GROUP BY`: SQLite has no hash
/// aggregate, and sorting a million rows of spend (about one group per row when each user's
/// day is a group) took longer than the 2 s a report may take (collector/BENCH-IMPORT.md).
/// One scan reads the rows; the directory is read first, in the same snapshot, and looked up
/// by the end user's email lowercased (ASCII only, as SQLite's `lower`). Sums saturate.
pub(super) fn gateway_totals(
    c: &mut Connection,
    since: Option<i64>,
) -> Result<Vec<GatewayTotal>, StoreError> {
    /// Distinct strings as small numbers, so that a row's key is `Copy` and hashing it
    /// allocates nothing; only a string not seen before is copied.
    #[derive(Default)]
    struct Names {
        ids: HashMap<String, u32>,
        names: Vec<String>,
    }
    impl Names {
        fn id(&mut self, name: &str) -> u32 {
            if let Some(&id) = self.ids.get(name) {
                return id;
            }
            let id = u32::try_from(self.names.len()).unwrap_or(u32::MAX);
            self.names.push(name.to_owned());
            self.ids.insert(name.to_owned(), id);
            id
        }
        fn name(&self, id: u32) -> String {
            usize::try_from(id).ok().and_then(|i| self.names.get(i)).cloned().unwrap_or_default()
        }
    }
    fn text<'r>(r: &'r rusqlite::Row<'_>, i: usize) -> Result<Option<&'r str>, StoreError> {
        let value = r.get_ref(i)?;
        let text = value.as_str_or_null().map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(i, value.data_type(), Box::new(e))
        })?;
        Ok(text)
    }
    let required = |r: &rusqlite::Row<'_>, i: usize| -> Result<String, StoreError> {
        Ok(text(r, i)?.unwrap_or_default().to_owned())
    };
    let tx = c.transaction()?;
    let mut departments: HashMap<String, String> = HashMap::new();
    {
        let mut stmt = tx.prepare("SELECT email, department FROM people WHERE department <> ''")?;
        let mut rows = stmt.query([])?;
        while let Some(r) = rows.next()? {
            departments.insert(required(r, 0)?, required(r, 1)?);
        }
    }
    /// Product (0 = none, else 1 + its name's id), provider, department, currency, day.
    type Key = (u32, u32, u32, u32, i64);
    /// Cost, tokens, rows.
    type Sums = (i64, i64, i64);
    let mut names = Names::default();
    let mut totals: HashMap<Key, Sums> = HashMap::new();
    let mut lower = String::new();
    {
        let mut stmt = tx.prepare(
            "SELECT product, provider, end_user, team, currency,
                    period_start - (period_start % 86400), cost_nanos,
                    input_tokens + output_tokens
             FROM gateway_spend WHERE (?1 IS NULL OR period_start >= ?1)",
        )?;
        let mut rows = stmt.query([since])?;
        while let Some(r) = rows.next()? {
            let product = match text(r, 0)? {
                Some(p) => names.id(p).saturating_add(1),
                None => 0,
            };
            let provider = names.id(text(r, 1)?.unwrap_or_default());
            let user = text(r, 2)?.unwrap_or_default();
            let user = if user.bytes().any(|b| b.is_ascii_uppercase()) {
                lower.clear();
                lower.push_str(user);
                lower.make_ascii_lowercase();
                lower.as_str()
            } else {
                user
            };
            let department = match departments.get(user) {
                Some(d) => names.id(d),
                None => names.id(text(r, 3)?.unwrap_or_default()),
            };
            let currency = names.id(text(r, 4)?.unwrap_or_default());
            let day: i64 = r.get(5)?;
            let (cost, tokens): (i64, i64) = (r.get(6)?, r.get(7)?);
            let sums = totals.entry((product, provider, department, currency, day)).or_default();
            sums.0 = sums.0.saturating_add(cost);
            sums.1 = sums.1.saturating_add(tokens);
            sums.2 += 1;
        }
    }
    tx.commit()?;
    let mut out: Vec<GatewayTotal> = totals
        .into_iter()
        .map(|((product, provider, department, currency, day), (cost, tokens, rows))| {
            GatewayTotal {
                product: product.checked_sub(1).map(|p| names.name(p)),
                provider: names.name(provider),
                department: names.name(department),
                currency: names.name(currency),
                day: day.into(),
                cost_nanos: cost,
                tokens,
                rows,
            }
        })
        .collect();
    // The order of the SQL it replaces: day, product (none first), provider, department,
    // currency, each string by its bytes (SQLite's BINARY collation).
    out.sort_unstable_by(|a, b| {
        (a.day, &a.product, &a.provider, &a.department, &a.currency).cmp(&(
            b.day,
            &b.product,
            &b.provider,
            &b.department,
            &b.currency,
        ))
    });
    Ok(out)
}

/// Answers a usage filter from the rollups (see [`rollup::plan`]) in one read transaction;
/// the caller folds first.
pub(super) fn usage_from_rollups(
    c: &mut Connection,
    plan: &rollup::Plan,
) -> Result<(Vec<SourceUsage>, Vec<ProductUsage>), StoreError> {
    let tx = c.transaction()?;
    let usage = ready(queries::rollup_usage(&*tx, plan))?;
    tx.commit()?;
    Ok(usage)
}
