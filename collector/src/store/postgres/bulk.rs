//! PostgreSQL bulk imports: a chunk of expense lines or gateway spend is `COPY`ed in binary
//! into a per-connection staging table and moved with one `INSERT ... SELECT ... ON CONFLICT
//! DO NOTHING` in the same transaction (or, when every key is new, `COPY`ed straight into
//! its table), with the alerts its new rows raise.

use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::Type;

use crate::alerts::event;
use crate::model::{ExpenseLine, GatewaySpend, ImportCounts, Person};
use crate::store::{StoreError, outbox, queries, rollup};

// The column types of the binary `COPY`s, named short so that each list reads as one row.
const TEXT: Type = Type::TEXT;
const INT8: Type = Type::INT8;
const BOOL: Type = Type::BOOL;

/// The staging table of [`PgStore::add_expenses`]: a chunk is `COPY`ed in (binary), then
/// moved with one `INSERT ... SELECT ... ON CONFLICT DO NOTHING`, whose row count is the
/// number of new lines. A temporary table lives per connection (so concurrent imports on
/// other connections never see it) and `ON COMMIT DELETE ROWS` empties it at the end of each
/// transaction, committed or not. Its columns are listed, not copied `LIKE` the real table,
/// so a later migration of `expense_lines` cannot make a pooled connection's copy stale.
const EXPENSE_STAGE: &str = "CREATE TEMPORARY TABLE IF NOT EXISTS aiscout_expense_stage (
        source TEXT, dedupe_key TEXT, file TEXT, line BIGINT, occurred_at BIGINT,
        amount_minor BIGINT, currency TEXT, descriptor TEXT, merchant TEXT, payer_email TEXT,
        payer_name TEXT, department TEXT, product TEXT, candidate BOOLEAN, candidate_reason TEXT,
        mapping_id BIGINT
    ) ON COMMIT DELETE ROWS";

/// The staging table of [`PgStore::add_gateway_spend`] (see [`EXPENSE_STAGE`]).
const GATEWAY_STAGE: &str = "CREATE TEMPORARY TABLE IF NOT EXISTS aiscout_gateway_stage (
        source TEXT, dedupe_key TEXT, file TEXT, line BIGINT, period_start BIGINT,
        provider TEXT, model TEXT, team TEXT, end_user TEXT, api_key TEXT, tags TEXT,
        input_tokens BIGINT, output_tokens BIGINT, cost_nanos BIGINT, currency TEXT,
        product TEXT
    ) ON COMMIT DELETE ROWS";

/// The gateway spend columns as [`copy_gateway`] writes them.
const GATEWAY_COLUMNS: &str = "source, dedupe_key, file, line, period_start, provider, model,
    team, end_user, api_key, tags, input_tokens, output_tokens, cost_nanos, currency, product";

/// Copies a chunk of new gateway spend straight into the table (with `imported_at`).
static GATEWAY_COPY_DIRECT: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!("COPY gateway_spend ({GATEWAY_COLUMNS}, imported_at) FROM STDIN BINARY")
});

/// Copies a chunk into [`GATEWAY_STAGE`].
static GATEWAY_COPY_STAGE: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!("COPY aiscout_gateway_stage ({GATEWAY_COLUMNS}) FROM STDIN BINARY")
});

/// Writes `rows` through the binary `COPY` statement `copy`, each followed by `imported_at`
/// when given; returns the rows copied.
///
/// A first import takes `COPY` straight into `gateway_spend` (under a savepoint in
/// [`PgStore::add_gateway_spend`]): `COPY` inserts rows in batches, where the staging path
/// writes every row twice (into the temporary table, then through `INSERT ... SELECT`, one
/// row at a time). `COPY` has no `ON CONFLICT`, so a chunk with any key already stored
/// fails whole, and goes through the staging path instead (collector/BENCH-IMPORT.md).
async fn copy_gateway(
    tx: &deadpool_postgres::Transaction<'_>,
    copy: &str,
    rows: &[GatewaySpend],
    imported_at: Option<i64>,
) -> Result<u64, tokio_postgres::Error> {
    let sink = tx.copy_in(copy).await?;
    let mut types = vec![
        TEXT, TEXT, TEXT, INT8, INT8, TEXT, TEXT, TEXT, TEXT, TEXT, TEXT, INT8, INT8, INT8, TEXT,
        TEXT,
    ];
    if imported_at.is_some() {
        types.push(INT8);
    }
    let mut writer = std::pin::pin!(BinaryCopyInWriter::new(sink, &types));
    for g in rows {
        let mut values: [&(dyn tokio_postgres::types::ToSql + Sync); 17] = [
            &g.source,
            &g.dedupe_key,
            &g.file,
            &g.line,
            &g.period_start,
            &g.provider,
            &g.model,
            &g.team,
            &g.user,
            &g.api_key,
            &g.tags,
            &g.input_tokens,
            &g.output_tokens,
            &g.cost_nanos,
            &g.currency,
            &g.product,
            &0_i64,
        ];
        let width = match &imported_at {
            Some(at) => {
                values[16] = at;
                17
            }
            None => 16,
        };
        writer.as_mut().write(values.get(..width).unwrap_or(&values)).await?;
    }
    writer.finish().await
}

/// Moves a staged chunk into its table, whose unique key is `(source, dedupe_key)`; returns
/// the rows inserted. `insert` is `INSERT INTO table (...) SELECT ..., $1 FROM stage s`.
///
/// Fast path: a plain insert, under a savepoint. It avoids `ON CONFLICT`'s speculative
/// insertion, which costs about 1.5 times as much per row (collector/BENCH-IMPORT.md), and
/// a chunk of new rows (a first import) takes it whole. A key already stored, committed by
/// a concurrent import meanwhile, or repeated within the chunk raises a unique violation on
/// the first such row; the savepoint then undoes the partial insert and the chunk is redone
/// with `ON CONFLICT DO NOTHING`, as it is after a deadlock with a concurrent chunk. Either
/// way the count is exactly the rows new to the table.
/// (An anti-join on the stored keys instead of the retry was tried: on an unanalysed
/// temporary table the planner chose a sequential scan of the whole table per chunk.)
async fn move_staged(
    tx: &mut deadpool_postgres::Transaction<'_>,
    insert: &str,
    now: i64,
) -> Result<u64, StoreError> {
    let savepoint = tx.savepoint("aiscout_move_staged").await?;
    match savepoint.execute(insert, &[&now]).await {
        Ok(n) => {
            savepoint.commit().await?;
            Ok(n)
        }
        // Two chunks of one file written at once that share a key can deadlock on it; the
        // loser redoes its chunk after the winner, so it is a retry, not a failure.
        Err(e)
            if e.code() == Some(&SqlState::UNIQUE_VIOLATION)
                || e.code() == Some(&SqlState::T_R_DEADLOCK_DETECTED) =>
        {
            savepoint.rollback().await?;
            let safe = format!("{insert} ON CONFLICT (source, dedupe_key) DO NOTHING");
            Ok(tx.execute(safe.as_str(), &[&now]).await?)
        }
        Err(e) => Err(e.into()),
    }
}

/// The rows of a chunk, for the alert events they raise.
enum Chunk<'a> {
    Expenses(&'a [ExpenseLine]),
    Gateway(&'a [GatewaySpend]),
}

/// Commits a chunk's transaction; when it stored rows, first bumps the spend version and
/// raises their alert events. The bulk path does not say which rows were new, so every row of
/// the chunk is offered: a row stored before has the same event id as when it was new, so it
/// adds nothing.
async fn commit_chunk(
    tx: deadpool_postgres::Transaction<'_>,
    chunk: Chunk<'_>,
    inserted: u64,
    now: i64,
) -> Result<(), StoreError> {
    if inserted > 0 {
        tx.batch_execute(crate::store::BUMP_SPEND).await?;
        let events = match chunk {
            Chunk::Expenses(lines) => {
                let all: Vec<&ExpenseLine> = lines.iter().collect();
                let names = event::products_of(all.iter().map(|l| l.product.as_deref()));
                let new = queries::known(&tx, &names, now, "expense").await?;
                let blocked = queries::blocked(&tx).await?;
                let relevant: Vec<&ExpenseLine> = all
                    .into_iter()
                    .filter(|l| match &l.product {
                        Some(p) => new.contains(p) || blocked.iter().any(|(b, _)| b == p),
                        None => l.candidate,
                    })
                    .collect();
                event::for_expenses(&relevant, &new, &blocked)
            }
            Chunk::Gateway(rows) => {
                let all: Vec<&GatewaySpend> = rows.iter().collect();
                let names = event::products_of(all.iter().map(|g| g.product.as_deref()));
                let new = queries::known(&tx, &names, now, "gateway").await?;
                event::for_gateway(&all, &new)
            }
        };
        outbox::emit(&tx, &events, now).await?;
    }
    tx.commit().await?;
    Ok(())
}

pub(super) fn counts(total: usize, inserted: u64) -> ImportCounts {
    let total = u64::try_from(total).unwrap_or(u64::MAX);
    ImportCounts { inserted, duplicates: total.saturating_sub(inserted), mapped: 0 }
}

/// [`crate::store::Store::add_expenses`] of lines the identity key was applied to: one
/// transaction that holds the mappings lock shared, resolves mapped descriptors, `COPY`s the
/// chunk into [`EXPENSE_STAGE`] and moves the new lines.
pub(super) async fn expenses(
    client: &mut deadpool_postgres::Object,
    mut lines: Vec<ExpenseLine>,
    now: i64,
) -> Result<ImportCounts, StoreError> {
    let mut tx = client.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock_shared($1)", &[&crate::store::sql::MAPPING_LOCK])
        .await?;
    let mappings = queries::mapping_keys(&tx).await?;
    let mapped = crate::store::resolve_mapped(&mut lines, &mappings);
    tx.batch_execute(EXPENSE_STAGE).await?;
    let sink = tx
        .copy_in(
            "COPY aiscout_expense_stage (source, dedupe_key, file, line, occurred_at,
                amount_minor, currency, descriptor, merchant, payer_email, payer_name,
                department, product, candidate, candidate_reason, mapping_id)
             FROM STDIN BINARY",
        )
        .await?;
    let types = [
        TEXT, TEXT, TEXT, INT8, INT8, INT8, TEXT, TEXT, TEXT, TEXT, TEXT, TEXT, TEXT, BOOL, TEXT,
        INT8,
    ];
    let mut writer = std::pin::pin!(BinaryCopyInWriter::new(sink, &types));
    for (l, mapping) in lines.iter().zip(&mapped) {
        writer
            .as_mut()
            .write(&[
                &l.source,
                &l.dedupe_key,
                &l.file,
                &l.line,
                &l.occurred_at,
                &l.amount_minor,
                &l.currency,
                &l.descriptor,
                &l.merchant,
                &l.payer_email,
                &l.payer_name,
                &l.department,
                &l.product,
                &l.candidate,
                &l.candidate_reason,
                mapping,
            ])
            .await?;
    }
    writer.finish().await?;
    let inserted = move_staged(
        &mut tx,
        "INSERT INTO expense_lines (source, dedupe_key, file, line, occurred_at,
            amount_minor, currency, descriptor, merchant, payer_email, payer_name,
            department, product, candidate, imported_at, candidate_reason, mapping_id)
         SELECT s.source, s.dedupe_key, s.file, s.line, s.occurred_at, s.amount_minor,
            s.currency, s.descriptor, s.merchant, s.payer_email, s.payer_name, s.department,
            s.product, s.candidate, $1::bigint, s.candidate_reason, s.mapping_id
         FROM aiscout_expense_stage s",
        now,
    )
    .await?;
    commit_chunk(tx, Chunk::Expenses(&lines), inserted, now).await?;
    let resolved = mapped.iter().flatten().count();
    Ok(ImportCounts {
        mapped: u64::try_from(resolved).unwrap_or(u64::MAX),
        ..counts(lines.len(), inserted)
    })
}

/// [`crate::store::Store::add_gateway_spend`] of rows the identity key was applied to: a
/// straight `COPY` when the chunk's keys are new, else through [`GATEWAY_STAGE`].
pub(super) async fn gateway(
    client: &mut deadpool_postgres::Object,
    rows: Vec<GatewaySpend>,
    now: i64,
) -> Result<ImportCounts, StoreError> {
    let Some(first) = rows.first() else {
        return Ok(ImportCounts::default());
    };
    let mut tx = client.transaction().await?;
    // A chunk whose first key is stored is most likely a file imported before: straight to
    // the staging path, which counts duplicates. Otherwise try the direct copy.
    let stored: bool = tx
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM gateway_spend WHERE source = $1 AND dedupe_key = $2)",
            &[&first.source, &first.dedupe_key],
        )
        .await?
        .try_get(0)?;
    if !stored {
        let savepoint = tx.savepoint("aiscout_copy_direct").await?;
        match copy_gateway(&savepoint, &GATEWAY_COPY_DIRECT, &rows, Some(now)).await {
            Ok(inserted) => {
                savepoint.commit().await?;
                commit_chunk(tx, Chunk::Gateway(&rows), inserted, now).await?;
                return Ok(counts(rows.len(), inserted));
            }
            // A key already stored or repeated in the chunk, or a deadlock with a
            // concurrent chunk over a shared key: the staging path sorts it out.
            Err(e)
                if e.code() == Some(&SqlState::UNIQUE_VIOLATION)
                    || e.code() == Some(&SqlState::T_R_DEADLOCK_DETECTED) =>
            {
                savepoint.rollback().await?;
            }
            Err(e) => return Err(e.into()),
        }
    }
    tx.batch_execute(GATEWAY_STAGE).await?;
    copy_gateway(&tx, &GATEWAY_COPY_STAGE, &rows, None).await?;
    let inserted = move_staged(
        &mut tx,
        "INSERT INTO gateway_spend (source, dedupe_key, file, line, period_start,
            provider, model, team, end_user, api_key, tags, input_tokens, output_tokens,
            cost_nanos, currency, product, imported_at)
         SELECT s.source, s.dedupe_key, s.file, s.line, s.period_start, s.provider,
            s.model, s.team, s.end_user, s.api_key, s.tags, s.input_tokens,
            s.output_tokens, s.cost_nanos, s.currency, s.product, $1::bigint
         FROM aiscout_gateway_stage s",
        now,
    )
    .await?;
    commit_chunk(tx, Chunk::Gateway(&rows), inserted, now).await?;
    Ok(counts(rows.len(), inserted))
}

/// [`crate::store::Store::upsert_people`] of people the identity key was applied to, in one
/// statement: an unchanged person counts as a duplicate.
pub(super) async fn people(
    client: &mut deadpool_postgres::Object,
    people: Vec<Person>,
) -> Result<ImportCounts, StoreError> {
    // One statement may not update a row twice: the last entry per email wins.
    let total = people.len();
    let mut by_email = std::collections::BTreeMap::new();
    for p in people {
        by_email.insert(p.email.clone(), p);
    }
    let p: Vec<&Person> = by_email.values().collect();
    let emails: Vec<&str> = p.iter().map(|p| p.email.as_str()).collect();
    let names: Vec<&str> = p.iter().map(|p| p.name.as_str()).collect();
    let departments: Vec<&str> = p.iter().map(|p| p.department.as_str()).collect();
    let managers: Vec<Option<&str>> = p.iter().map(|p| p.manager.as_deref()).collect();
    // The people and the flag that makes the next fold rebuild departments change together.
    let tx = client.transaction().await?;
    let changed = tx
        .execute(
            "INSERT INTO people (email, name, department, manager)
             SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[])
             ON CONFLICT (email) DO UPDATE SET name = excluded.name,
                department = excluded.department, manager = excluded.manager
             WHERE (people.name, people.department, people.manager)
                IS DISTINCT FROM (excluded.name, excluded.department, excluded.manager)",
            &[&emails, &names, &departments, &managers],
        )
        .await?;
    if changed > 0 {
        tx.execute(rollup::DEPARTMENTS_DIRTY, &[]).await?;
        tx.batch_execute(crate::store::BUMP_SPEND).await?;
    }
    tx.commit().await?;
    Ok(counts(total, changed))
}
