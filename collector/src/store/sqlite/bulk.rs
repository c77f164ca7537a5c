//! SQLite bulk imports: a chunk of expense lines, gateway spend or people in one `BEGIN
//! IMMEDIATE` transaction, each row through one cached prepared statement (SQLite has no
//! `COPY`, and a prepared insert is its fastest path), with the alerts its new rows raise.

use rusqlite::{Connection, TransactionBehavior, params};

use crate::alerts::event;
use crate::model::{ExpenseLine, GatewaySpend, ImportCounts, Person};
use crate::store::sql::ready;
use crate::store::{StoreError, outbox, queries, rollup};

/// [`crate::store::Store::add_expenses`] of lines the identity key was applied to: one
/// `BEGIN IMMEDIATE` transaction that resolves mapped descriptors and inserts each line
/// through one prepared statement, raising the alerts of the new ones.
pub(super) fn expenses(
    c: &mut Connection,
    mut lines: Vec<ExpenseLine>,
    now: i64,
) -> Result<ImportCounts, StoreError> {
    let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let mut counts = ImportCounts::default();
    let mut inserted = Vec::new();
    let mappings = ready(queries::mapping_keys(&*tx))?;
    let mapped = crate::store::resolve_mapped(&mut lines, &mappings);
    counts.mapped = u64::try_from(mapped.iter().flatten().count()).unwrap_or(u64::MAX);
    {
        let mut stmt = tx.prepare_cached(
            "INSERT INTO expense_lines (source, dedupe_key, file, line, occurred_at,
                amount_minor, currency, descriptor, merchant, payer_email, payer_name,
                department, product, candidate, imported_at, candidate_reason,
                mapping_id)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16,
                ?17)
             ON CONFLICT (source, dedupe_key) DO NOTHING",
        )?;
        for (l, mapping) in lines.iter().zip(&mapped) {
            let n = stmt.execute(params![
                l.source,
                l.dedupe_key,
                l.file,
                l.line,
                l.occurred_at,
                l.amount_minor,
                l.currency,
                l.descriptor,
                l.merchant,
                l.payer_email,
                l.payer_name,
                l.department,
                l.product,
                l.candidate,
                now,
                l.candidate_reason,
                mapping
            ])?;
            if n == 0 {
                counts.duplicates += 1;
            } else {
                counts.inserted += 1;
                inserted.push(l);
            }
        }
    }
    if counts.inserted > 0 {
        tx.execute_batch(crate::store::BUMP_SPEND)?;
        let names = event::products_of(inserted.iter().map(|l| l.product.as_deref()));
        let new = ready(queries::known(&*tx, &names, now, "expense"))?;
        let blocked = ready(queries::blocked(&*tx))?;
        outbox::sqlite_emit(&tx, &event::for_expenses(&inserted, &new, &blocked), now)?;
    }
    tx.commit()?;
    Ok(counts)
}

/// [`crate::store::Store::add_gateway_spend`] of rows the identity key was applied to.
pub(super) fn gateway(
    c: &mut Connection,
    rows: Vec<GatewaySpend>,
    now: i64,
) -> Result<ImportCounts, StoreError> {
    let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let mut counts = ImportCounts::default();
    let mut inserted = Vec::new();
    {
        let mut stmt = tx.prepare_cached(
            "INSERT INTO gateway_spend (source, dedupe_key, file, line, period_start,
                provider, model, team, end_user, api_key, tags, input_tokens,
                output_tokens, cost_nanos, currency, product, imported_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15,
                     ?16, ?17)
             ON CONFLICT (source, dedupe_key) DO NOTHING",
        )?;
        for g in &rows {
            let n = stmt.execute(params![
                g.source,
                g.dedupe_key,
                g.file,
                g.line,
                g.period_start,
                g.provider,
                g.model,
                g.team,
                g.user,
                g.api_key,
                g.tags,
                g.input_tokens,
                g.output_tokens,
                g.cost_nanos,
                g.currency,
                g.product,
                now
            ])?;
            if n == 0 {
                counts.duplicates += 1;
            } else {
                counts.inserted += 1;
                inserted.push(g);
            }
        }
    }
    if counts.inserted > 0 {
        tx.execute_batch(crate::store::BUMP_SPEND)?;
        let names = event::products_of(inserted.iter().map(|g| g.product.as_deref()));
        let new = ready(queries::known(&*tx, &names, now, "gateway"))?;
        outbox::sqlite_emit(&tx, &event::for_gateway(&inserted, &new), now)?;
    }
    tx.commit()?;
    Ok(counts)
}

/// [`crate::store::Store::upsert_people`] of people the identity key was applied to: an
/// unchanged person counts as a duplicate.
pub(super) fn people(c: &mut Connection, people: Vec<Person>) -> Result<ImportCounts, StoreError> {
    let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let mut counts = ImportCounts::default();
    {
        // The WHERE clause leaves an unchanged row alone, so it reports 0 changes.
        let mut stmt = tx.prepare_cached(
            "INSERT INTO people (email, name, department, manager) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (email) DO UPDATE SET name = excluded.name,
                department = excluded.department, manager = excluded.manager
             WHERE people.name IS NOT excluded.name
                OR people.department IS NOT excluded.department
                OR people.manager IS NOT excluded.manager",
        )?;
        for p in &people {
            let n = stmt.execute(params![p.email, p.name, p.department, p.manager])?;
            if n == 0 {
                counts.duplicates += 1;
            } else {
                counts.inserted += 1;
            }
        }
    }
    if counts.inserted > 0 {
        tx.execute(rollup::DEPARTMENTS_DIRTY, [])?;
        tx.execute_batch(crate::store::BUMP_SPEND)?;
    }
    tx.commit()?;
    Ok(counts)
}
