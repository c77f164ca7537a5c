//! The PostgreSQL store: tokio-postgres with a bounded deadpool pool.
//!
//! Several collectors may share the database. Migrations run on a dedicated connection under
//! a session advisory lock (released when that connection closes, even if a migration fails).
//! A batch's sightings go in as one `INSERT ... SELECT FROM UNNEST(...)` (one round trip per
//! batch); `ingest` sorts them by key so that concurrent batches lock rows in the same order.
//! Import chunks (expense lines, gateway spend) are `COPY`ed in binary into a per-connection
//! temporary table and moved with one `INSERT ... SELECT ... ON CONFLICT DO NOTHING` in the
//! same transaction, so duplicates are counted exactly and a chunk commits whole or not at all.
//! A chunk of gateway spend whose keys are all new is `COPY`ed straight into its table
//! instead (the unique key refuses any other, and that chunk takes the staging path).
//! Connections use TLS as the URL's `sslmode` and `sslrootcert` say (libpq's meanings, libpq's
//! default `prefer`), through rustls: see [`super::postgres_tls`].

use std::collections::HashMap;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tokio_postgres::Row;

use super::sql::FromRow;
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::Type;

use super::{
    AuditFn, CredentialHash, Migration, PRODUCT_DEVICES_LIMIT, PRODUCT_VALUES_LIMIT, PeopleUsage,
    ReenrollStep, Store, StoreError, outbox, queries, rollup,
};
use crate::alerts::event;
use crate::model::{
    Admit, AdmitRule, Attempt, AuditEntry, AuditFilter, AuditRecord, Batch, ChannelRow, Claimed,
    DeliveryRow, DescriptorMapping, Device, DeviceId, DevicePage, DeviceQuery, DeviceSighting,
    DeviceSummary, DeviceUsage, DigestClaim, EnrollAttempt, EnrollOutcome, ExpenseLine,
    GatewaySpend, GatewayTotal, Health, ImportCounts, ImportRun, IngestOutcome, McpServerFlags,
    NewEvent, OwnerUse, Person, PersonUsage, ProcessSighting, ProductUsage, ReenrollRequest,
    Review, ScimResource, ScimWrite, Session, SourceUsage, StoredEvent, Token, UsageFilter,
    ValueUsage,
};

/// The PostgreSQL migrations, in order.
pub const MIGRATIONS: &[Migration] = &[
    Migration { version: 1, sql: include_str!("migrations/postgres/0001_init.sql") },
    Migration { version: 2, sql: include_str!("migrations/postgres/0002_spend.sql") },
    Migration { version: 3, sql: include_str!("migrations/postgres/0003_rollups.sql") },
    Migration { version: 4, sql: include_str!("migrations/postgres/0004_filters.sql") },
    Migration { version: 5, sql: include_str!("migrations/postgres/0005_console.sql") },
    Migration { version: 6, sql: include_str!("migrations/postgres/0006_policy_role.sql") },
    Migration { version: 7, sql: include_str!("migrations/postgres/0007_data_versions.sql") },
    Migration { version: 8, sql: include_str!("migrations/postgres/0008_alerts.sql") },
    Migration { version: 9, sql: include_str!("migrations/postgres/0009_connectors.sql") },
    Migration { version: 10, sql: include_str!("migrations/postgres/0010_reenroll.sql") },
    Migration { version: 11, sql: include_str!("migrations/postgres/0011_digests.sql") },
    Migration { version: 12, sql: include_str!("migrations/postgres/0012_privacy.sql") },
    Migration { version: 13, sql: include_str!("migrations/postgres/0013_scim.sql") },
    Migration { version: 14, sql: include_str!("migrations/postgres/0014_alert_caps.sql") },
    Migration { version: 15, sql: include_str!("migrations/postgres/0015_connector_errors.sql") },
    Migration { version: 16, sql: include_str!("migrations/postgres/0016_pseudonyms.sql") },
    Migration { version: 17, sql: include_str!("migrations/postgres/0017_candidate_reasons.sql") },
    Migration { version: 18, sql: include_str!("migrations/postgres/0018_overlay.sql") },
    Migration { version: 19, sql: include_str!("migrations/postgres/0019_mcp_flags.sql") },
    Migration {
        version: 20,
        sql: include_str!("migrations/postgres/0020_descriptor_mappings.sql"),
    },
    Migration { version: 21, sql: include_str!("migrations/postgres/0021_privacy_mode.sql") },
];

/// The advisory lock key that serialises migrations ("aiscout" in ASCII).
const MIGRATION_LOCK: i64 = 0x0061_6973_636f_7574;
/// The advisory lock key of descriptor mappings ("mapping" in ASCII): an import chunk holds
/// it shared while it reads the mappings and stores its lines, a teach or undo holds it
/// exclusively, so no line is stored as a candidate by a chunk that read the mappings before
/// a teach committed (issue 17).
const MAPPING_LOCK: i64 = 0x006d_6170_7069_6e67;
/// The advisory lock key that serialises folds ("rollups" in ASCII).
const FOLD_LOCK: i64 = 0x0072_6f6c_6c75_7073;
/// Connections in the pool.
const POOL_SIZE: usize = 8;

/// A PostgreSQL database with a connection pool.
#[derive(Clone)]
pub struct PgStore {
    pool: Pool,
    identities: super::IdentitySlot,
}

/// The work [`PgStore::write`] runs in its transaction.
type Work<'t, T> = std::pin::Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 't>>;

fn pool_error(e: impl std::fmt::Display) -> StoreError {
    StoreError::Pool(e.to_string())
}

impl PgStore {
    /// Connects (from a `postgres://` URL), applies pending migrations under the advisory
    /// lock, and builds the pool.
    ///
    /// # Errors
    /// The URL is malformed, the server cannot be reached, or a migration fails.
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        let super::postgres_tls::Connect { config, tls, .. } = super::postgres_tls::parse(url)?;
        migrate(&config, tls.clone()).await?;
        let manager = Manager::from_config(
            config,
            tls,
            ManagerConfig { recycling_method: RecyclingMethod::Fast },
        );
        let pool = Pool::builder(manager)
            .max_size(POOL_SIZE)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(std::time::Duration::from_secs(30)))
            .build()
            .map_err(pool_error)?;
        Ok(Self { pool, identities: super::IdentitySlot::default() })
    }

    async fn client(&self) -> Result<deadpool_postgres::Object, StoreError> {
        self.pool.get().await.map_err(pool_error)
    }

    /// Runs `f` in a transaction, committed when `f` succeeds.
    async fn write<T>(
        &self,
        f: impl for<'t> FnOnce(&'t deadpool_postgres::Transaction<'t>) -> Work<'t, T>,
    ) -> Result<T, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let out = f(&tx).await?;
        tx.commit().await?;
        Ok(out)
    }

    /// Applies the identity key to what a write carries ([`crate::identity::Protect`]) and
    /// keeps the sealed identities of the pseudonyms it made, before the write itself.
    async fn protect<T: Send>(
        &self,
        value: T,
        f: fn(&mut crate::identity::Protect<'_>, &mut T),
    ) -> Result<T, StoreError> {
        self.protect_on(None, value, f).await
    }

    /// [`PgStore::protect`] of a batch from `device`, whose stored owner decides how erased
    /// OS user names come back ([`crate::identity::Protect::batch`]).
    async fn protect_on<T: Send>(
        &self,
        device: Option<DeviceId>,
        mut value: T,
        f: fn(&mut crate::identity::Protect<'_>, &mut T),
    ) -> Result<T, StoreError> {
        use super::erase::postgres_sql;
        let Some(ids) = self.identities.get().cloned() else { return Ok(value) };
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let erased = tx
            .query(super::ERASED_SQL, &[])
            .await?
            .iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
            .collect::<Result<_, tokio_postgres::Error>>()?;
        let mut p = crate::identity::Protect::new(&ids, erased);
        if let Some(device) = device {
            let owner: Option<String> = tx
                .query_opt(&postgres_sql(super::DEVICE_OWNER_SQL), &[&device.0])
                .await?
                .map(|r| r.try_get(0))
                .transpose()?
                .flatten();
            p.owner(owner);
        }
        f(&mut p, &mut value);
        if !p.sealed.is_empty() {
            let stmt = tx.prepare(&postgres_sql(super::SEAL_SQL)).await?;
            for (pseudonym, sealed) in &p.sealed {
                tx.execute(&stmt, &[pseudonym, sealed]).await?;
            }
        }
        tx.commit().await?;
        Ok(value)
    }
}

async fn migrate(
    config: &tokio_postgres::Config,
    tls: super::postgres_tls::MakeRustls,
) -> Result<(), StoreError> {
    let (mut client, connection) = config.connect(tls).await?;
    let driver = tokio::spawn(connection);
    let result = async {
        client.execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK]).await?;
        client
            .batch_execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations (
                    version INTEGER PRIMARY KEY, applied_at BIGINT NOT NULL)",
            )
            .await?;
        let current: i32 = client
            .query_one("SELECT COALESCE(MAX(version), 0) FROM schema_migrations", &[])
            .await?
            .get(0);
        let current = u32::try_from(current).unwrap_or(0);
        let known = MIGRATIONS.last().map_or(0, |m| m.version);
        if current > known {
            return Err(StoreError::SchemaTooNew { found: current, known });
        }
        for m in MIGRATIONS.iter().filter(|m| m.version > current) {
            let tx = client.transaction().await?;
            tx.batch_execute(m.sql)
                .await
                .map_err(|e| StoreError::Migration { version: m.version, reason: e.to_string() })?;
            let version = i32::try_from(m.version).unwrap_or(i32::MAX);
            tx.execute(
                "INSERT INTO schema_migrations (version, applied_at) VALUES ($1, $2)",
                &[&version, &super::now()],
            )
            .await?;
            tx.commit().await?;
        }
        client.execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK]).await?;
        Ok(())
    }
    .await;
    // Closing the connection also releases the session lock when a step above failed.
    drop(client);
    driver.await.map_err(StoreError::Join)??;
    result
}

/// The advisory lock class of enrollments ("enro" in ASCII); the key is the host id's hash.
const ENROLL_LOCK: i32 = 0x656e_726f;

/// Creates or updates the device by host id, revokes its node keys and stores the new one,
/// inside the caller's transaction; returns the device's row id.
async fn enroll_in(
    tx: &deadpool_postgres::Transaction<'_>,
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
    let id: i64 = tx
        .query_one(
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
        .await?
        .try_get(0)?;
    tx.execute("DELETE FROM node_keys WHERE device_id = $1", &[&id]).await?;
    tx.batch_execute(super::BUMP_DEVICES).await?;
    tx.execute(
        "INSERT INTO node_keys (key_hash, device_id, created_at) VALUES ($1, $2, $3)",
        &[&&key_hash[..], &id, &now],
    )
    .await?;
    Ok(id)
}

/// The usage filter as SQL: every parameter may be NULL, meaning "no filter".
const FILTER: &str = "($1::text IS NULL OR s.product = $1)
    AND ($2::text IS NULL OR s.kind = $2)
    AND ($3::text IS NULL OR EXISTS (SELECT 1 FROM devices d JOIN people p
                                     ON p.email = d.owner_email
                                     WHERE d.id = s.device_id AND p.department = $3))
    AND ($4::bigint IS NULL OR s.last_seen >= $4)
    AND ($5::bigint IS NULL OR s.first_seen <= $5)";

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
        Type::TEXT,
        Type::TEXT,
        Type::TEXT,
        Type::INT8,
        Type::INT8,
        Type::TEXT,
        Type::TEXT,
        Type::TEXT,
        Type::TEXT,
        Type::TEXT,
        Type::TEXT,
        Type::INT8,
        Type::INT8,
        Type::INT8,
        Type::TEXT,
        Type::TEXT,
    ];
    if imported_at.is_some() {
        types.push(Type::INT8);
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

/// The alert events of a stored batch (see [`event::for_batch`]), in its transaction.
async fn batch_events(
    tx: &deadpool_postgres::Transaction<'_>,
    device: DeviceId,
    b: &Batch,
    now: i64,
) -> Result<(), StoreError> {
    let seen = b.sightings.iter().map(|s| (s.product.as_str(), s.kind, s.last_seen));
    let installed =
        b.installs.iter().filter(|i| i.present).map(|i| (i.product.as_str(), i.kind, i.at));
    let products = event::batch_products(seen.chain(installed));
    let names: Vec<&str> = products.iter().map(|p| p.product).collect();
    let new = outbox::pg_known(tx, &names, now, "sighting").await?;
    let blocked = outbox::pg_blocked(tx).await?;
    if new.is_empty() && !blocked.iter().any(|(b, _)| names.contains(&b.as_str())) {
        return Ok(());
    }
    let host = outbox::pg_host(tx, device.0).await?;
    outbox::emit(tx, &event::for_batch(&host, &products, &new, &blocked), now).await?;
    Ok(())
}

/// The alert events of an expense chunk, in its transaction. The bulk path does not say which
/// lines were new, so every line of the chunk is offered: a line stored before has the same
/// event id as when it was new, so it adds nothing.
async fn expense_events(
    tx: &deadpool_postgres::Transaction<'_>,
    lines: &[ExpenseLine],
    now: i64,
) -> Result<(), StoreError> {
    let all: Vec<&ExpenseLine> = lines.iter().collect();
    let names = event::products_of(all.iter().map(|l| l.product.as_deref()));
    let new = outbox::pg_known(tx, &names, now, "expense").await?;
    let blocked = outbox::pg_blocked(tx).await?;
    let relevant: Vec<&ExpenseLine> = all
        .into_iter()
        .filter(|l| match &l.product {
            Some(p) => new.contains(p) || blocked.iter().any(|(b, _)| b == p),
            None => l.candidate,
        })
        .collect();
    outbox::emit(tx, &event::for_expenses(&relevant, &new, &blocked), now).await?;
    Ok(())
}

/// The alert events of a gateway chunk, in its transaction.
async fn gateway_events(
    tx: &deadpool_postgres::Transaction<'_>,
    rows: &[GatewaySpend],
    now: i64,
) -> Result<(), StoreError> {
    let all: Vec<&GatewaySpend> = rows.iter().collect();
    let names = event::products_of(all.iter().map(|g| g.product.as_deref()));
    let new = outbox::pg_known(tx, &names, now, "gateway").await?;
    outbox::emit(tx, &event::for_gateway(&all, &new), now).await?;
    Ok(())
}

fn counts(total: usize, inserted: u64) -> ImportCounts {
    let total = u64::try_from(total).unwrap_or(u64::MAX);
    ImportCounts { inserted, duplicates: total.saturating_sub(inserted), mapped: 0 }
}

/// Folds pending usage into the rollups (see [`rollup`]) on one connection. A `background`
/// fold skips when another fold holds the lock; a fold for a read waits for it, so the read
/// sees everything acknowledged before it. Either vacuums after a large fold.
async fn fold(client: &mut deadpool_postgres::Object, background: bool) -> Result<u64, StoreError> {
    // Cheap check first: most calls find nothing to do and take no lock.
    let busy: bool = client
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM usage_pending)
                 OR (SELECT departments_dirty <> 0 FROM rollup_state WHERE id = 1)",
            &[],
        )
        .await?
        .try_get(0)?;
    if !busy {
        return Ok(0);
    }
    let tx = client.transaction().await?;
    if background {
        let locked: bool = tx
            .query_one("SELECT pg_try_advisory_xact_lock($1)", &[&FOLD_LOCK])
            .await?
            .try_get(0)?;
        if !locked {
            // Another collector is folding; its fold takes in these rows.
            return Ok(0);
        }
    } else {
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&FOLD_LOCK]).await?;
    }
    // Lock the flag before reading anything: an enroll or people import that marks the
    // departments dirty either committed before this (and every statement below sees its
    // change) or waits until this fold commits (and the next fold rebuilds).
    let dirty: i64 = tx
        .query_one("SELECT departments_dirty FROM rollup_state WHERE id = 1 FOR UPDATE", &[])
        .await?
        .try_get(0)?;
    tx.batch_execute(&rollup::FOLD_TABLES_POSTGRES).await?;
    // Only rows committed before this statement are visible and deleted; a batch still in
    // flight is folded next time.
    let group = rollup::GROUP_PENDING.replace("{rows}", "moved");
    let folded: i64 = tx
        .query_one(
            &format!(
                "WITH moved AS (DELETE FROM usage_pending
                                RETURNING device_id, product, kind, os_user, first_seen,
                                          last_seen, count),
                      grouped AS ({group})
                 SELECT COUNT(*) FROM moved"
            ),
            &[],
        )
        .await?
        .try_get(0)?;
    let folded = u64::try_from(folded).unwrap_or(0);
    if folded > 0 {
        tx.batch_execute(rollup::FOLD_KEYS).await?;
        if folded >= ANALYZE_AFTER {
            tx.batch_execute(rollup::ANALYZE_FOLD_TABLES).await?;
        }
        tx.batch_execute(rollup::FOLD_TOTALS).await?;
    }
    if dirty != 0 {
        tx.batch_execute(&rollup::REBUILD_DEPARTMENTS).await?;
    }
    if folded > 0 || dirty != 0 {
        tx.batch_execute(super::BUMP_USAGE).await?;
    }
    tx.commit().await?;
    if folded >= VACUUM_AFTER {
        // The deleted rows stay in the table until vacuumed, and every fold and read would
        // step over them; autovacuum gets there eventually, this gets there now.
        client.batch_execute("VACUUM usage_pending").await?;
    }
    Ok(folded)
}

/// Pending rows folded at once after which the fold analyzes its temporary tables.
const ANALYZE_AFTER: u64 = 10_000;

/// Pending rows folded at once after which the fold vacuums `usage_pending` (a fold for a read
/// does too: rarely that large, and leaving the dead rows would slow every later check).
const VACUUM_AFTER: u64 = 100_000;

/// Reads a (product, kind, first seen, last seen, count, devices) row.
fn read_source(r: &Row) -> Result<SourceUsage, StoreError> {
    Ok(SourceUsage {
        product: r.try_get(0)?,
        source: r.try_get(1)?,
        first_seen: r.try_get(2)?,
        last_seen: r.try_get(3)?,
        count: r.try_get(4)?,
        devices: r.try_get(5)?,
    })
}

/// Answers a usage filter from the rollups (see [`rollup::plan`]), after folding.
async fn usage_from_rollups(
    client: &mut deadpool_postgres::Object,
    plan: &rollup::Plan,
) -> Result<(Vec<SourceUsage>, Vec<ProductUsage>), StoreError> {
    fold(client, false).await?;
    // One snapshot for the three reads, so another collector's fold cannot land between them.
    let tx = client
        .build_transaction()
        .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await?;
    let sources = query(&tx, &plan.sources).await?;
    let sources = sources.iter().map(read_source).collect::<Result<Vec<_>, StoreError>>()?;
    let mut departments: HashMap<String, Vec<String>> = HashMap::new();
    for r in query(&tx, &plan.departments).await? {
        departments.entry(r.try_get(0)?).or_default().push(r.try_get(1)?);
    }
    let rows = query(&tx, &plan.products).await?;
    tx.commit().await?;
    let products = rows
        .iter()
        .map(|r| {
            let product: String = r.try_get(0)?;
            let departments = departments.remove(&product).unwrap_or_default();
            Ok(ProductUsage { devices: r.try_get(1)?, users: r.try_get(2)?, product, departments })
        })
        .collect::<Result<Vec<_>, StoreError>>()?;
    Ok((sources, products))
}

/// Runs one of the rollups' reads.
async fn query(
    tx: &deadpool_postgres::Transaction<'_>,
    read: &rollup::Read,
) -> Result<Vec<Row>, StoreError> {
    let refs: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = read
        .args
        .iter()
        .map(|a| -> &(dyn tokio_postgres::types::ToSql + Sync) {
            match a {
                rollup::Arg::Text(t) => t,
                rollup::Arg::Int(i) => i,
            }
        })
        .collect();
    Ok(tx.query(read.sql, &refs).await?)
}

impl Store for PgStore {
    fn backend(&self) -> &'static str {
        "postgres"
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.client().await?.query_one("SELECT 1", &[]).await?;
        Ok(())
    }

    async fn privacy_mode(
        &self,
        opened_with: crate::identity::PrivacyMode,
        now: i64,
    ) -> Result<crate::identity::PrivacyMode, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        // Several collectors starting at once read and record one answer.
        tx.execute("LOCK TABLE privacy_mode IN EXCLUSIVE MODE", &[]).await?;
        let recorded: Option<String> =
            tx.query_opt(super::RECORDED_PRIVACY_MODE, &[]).await?.map(|r| r.get(0));
        let known = recorded.is_some();
        let (plain, pseudonym) = if known {
            (false, false)
        } else {
            let plain = tx.query_opt(&super::plain_identity_sql(), &[]).await?.is_some();
            (plain, tx.query_opt(super::ANY_PSEUDONYM, &[]).await?.is_some())
        };
        let mode = super::privacy_mode_of(recorded, plain, pseudonym, opened_with)?;
        if !known && (plain || pseudonym) {
            tx.execute(super::RECORD_PRIVACY_MODE, &[&mode.as_str(), &now]).await?;
        }
        tx.commit().await?;
        Ok(mode)
    }

    fn protect_identities(&self, ids: std::sync::Arc<crate::identity::Identities>) {
        self.identities.set(ids).ok();
    }

    fn identities(&self) -> Option<std::sync::Arc<crate::identity::Identities>> {
        self.identities.get().cloned()
    }

    async fn reveal_sealed(
        &self,
        pseudonym: String,
        audit: AuditRecord,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let sealed: Option<Vec<u8>> = tx
            .query_opt(&super::erase::postgres_sql(super::SEALED_SQL), &[&pseudonym])
            .await?
            .map(|r| r.try_get(0))
            .transpose()?;
        if sealed.is_some() {
            queries::append_audit(&tx, &audit).await?;
            tx.commit().await?;
        }
        Ok(sealed)
    }

    async fn enroll(
        &self,
        device: Device,
        key_hash: CredentialHash,
        now: i64,
    ) -> Result<DeviceId, StoreError> {
        let device = self.protect(device, |p, d| p.device(d)).await?;
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let id = enroll_in(&tx, &device, &key_hash, now).await?;
        tx.commit().await?;
        Ok(DeviceId(id))
    }

    async fn enroll_checked(&self, a: EnrollAttempt) -> Result<EnrollOutcome, StoreError> {
        let a = self.protect(a, |p, a| p.device(&mut a.device)).await?;
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let host = &a.device.host_id;
        // One enrollment per host id decides at a time, across every collector (a row lock
        // cannot serialise two first enrollments: there is no row yet).
        tx.execute("SELECT pg_advisory_xact_lock($1::int4, hashtext($2))", &[&ENROLL_LOCK, host])
            .await?;
        let existing: Option<i64> = tx
            .query_opt("SELECT id FROM devices WHERE host_id = $1", &[host])
            .await?
            .map(|r| r.try_get(0))
            .transpose()?;
        // A key proves the host id's device or one of its duplicates: the one it belongs to.
        let mut proved: Option<String> = None;
        for key in a.proofs().filter(|_| existing.is_some()) {
            proved = tx
                .query_opt(
                    "SELECT d.host_id FROM node_keys k JOIN devices d ON d.id = k.device_id
                     WHERE k.key_hash = $1 AND (d.host_id = $2 OR d.duplicate_of = $2)",
                    &[&&key[..], host],
                )
                .await?
                .map(|r| r.try_get(0))
                .transpose()?;
            if proved.is_some() {
                break;
            }
        }
        let approved = tx
            .query_opt(
                "SELECT 1 FROM reenroll_requests WHERE host_id = $1 AND approved_at IS NOT NULL",
                &[host],
            )
            .await?
            .is_some();
        let step = super::reenroll_step(a.policy, existing.is_some(), proved.is_some(), approved);
        let duplicate = if step == ReenrollStep::Admit(crate::model::Admission::Duplicate) {
            let n: i64 = tx
                .query_one("SELECT COUNT(*) FROM devices WHERE duplicate_of = $1", &[host])
                .await?
                .try_get(0)?;
            let mut free = None;
            for k in 0..64_i64 {
                let id = super::duplicate_host_id(host, n.saturating_add(k));
                if tx.query_opt("SELECT 1 FROM devices WHERE host_id = $1", &[&id]).await?.is_none()
                {
                    free = Some(id);
                    break;
                }
            }
            Some(free.ok_or_else(|| StoreError::NoFreeHostId { host: host.to_owned() })?)
        } else {
            None
        };
        let audit = super::reenroll_audit(&a, step, duplicate.as_deref());
        if let Some(audit) = &audit {
            queries::append_audit(&tx, audit).await?;
        }
        if let Some(event) = super::takeover_event(&a, step) {
            outbox::emit(&tx, &[event], a.now).await?;
        }
        let outcome = match step {
            ReenrollStep::Admit(how) => {
                let mut device = a.device.clone();
                if let Some(own) = proved.or_else(|| duplicate.clone()) {
                    device.host_id = own;
                }
                let id = enroll_in(&tx, &device, &a.key_hash, a.now).await?;
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
        };
        tx.commit().await?;
        Ok(outcome)
    }

    async fn approve_reenroll(
        &self,
        host_id: String,
        actor: String,
        now: i64,
    ) -> Result<(), StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        tx.execute(
            "INSERT INTO reenroll_requests (host_id, approved_by, approved_at) VALUES ($1, $2, $3)
             ON CONFLICT (host_id) DO UPDATE SET approved_by = excluded.approved_by,
                approved_at = excluded.approved_at",
            &[&host_id, &actor, &now],
        )
        .await?;
        queries::append_audit(&tx, &super::approve_audit(&host_id, &actor, now)).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn erase_person(
        &self,
        email: String,
        actor: String,
        reason: String,
        now: i64,
    ) -> Result<super::erase::Erasure, StoreError> {
        use super::erase::{self, postgres_sql};
        let ids = self.identities.get().cloned();
        let plain = email.clone();
        let email = match &ids {
            Some(ids) if ids.pseudonymous() => ids.pseudonym(&email),
            _ => email,
        };
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let name: String = tx
            .query_opt(
                "SELECT name FROM people WHERE lower(email) = $1
                 UNION ALL SELECT payer_name FROM expense_lines WHERE lower(payer_email) = $1
                 LIMIT 1",
                &[&email],
            )
            .await?
            .map(|r| r.try_get(0))
            .transpose()?
            .unwrap_or_default();
        let users: Vec<String> = tx
            .query(&postgres_sql(erase::OWNED_OS_USERS), &[&email])
            .await?
            .iter()
            .map(|r| r.try_get(0))
            .collect::<Result<_, _>>()?;
        let t = erase::Tombstone::new();
        let mut rows = std::collections::BTreeMap::<String, u64>::new();
        tx.execute(erase::UNLOCK_AUDIT, &[]).await?;
        for (n, user) in users.iter().enumerate() {
            let new = t.os_user_name(n);
            let args: [&(dyn tokio_postgres::types::ToSql + Sync); 3] = [user, &new, &email];
            for sql in erase::OS_USER {
                let params = args.get(..erase::arity(sql)).unwrap_or(&args);
                tx.execute(&postgres_sql(sql), params).await?;
            }
            *rows.entry("os_users".into()).or_default() += 1;
        }
        let args: [&(dyn tokio_postgres::types::ToSql + Sync); 5] =
            [&email, &t.email, &name, &t.name, &t.hostname];
        for step in erase::PERSON {
            if step.needs_name && name.trim().is_empty() {
                continue;
            }
            let arity = erase::arity(step.sql);
            // Typed, so a parameter a statement does not use still has a type.
            let stmt = tx.prepare_typed(&postgres_sql(step.sql), &vec![Type::TEXT; arity]).await?;
            let n = tx.execute(&stmt, args.get(..arity).unwrap_or(&args)).await?;
            *rows.entry(step.table.into()).or_default() += n;
        }
        tx.execute(erase::LOCK_AUDIT, &[]).await?;
        rows.retain(|_, n| *n > 0);
        if rows.is_empty() {
            // Nothing named them: already erased or never known; nothing to record.
            return Ok(erase::Erasure::default());
        }
        if let Some(ids) = &ids {
            // The plain name: as stored, or sealed behind its pseudonym.
            let sealed_name: Option<Vec<u8>> = tx
                .query_opt(&postgres_sql(super::SEALED_SQL), &[&name])
                .await?
                .map(|r| r.try_get(0))
                .transpose()?;
            let plain_name = super::plain_of(ids, &name, sealed_name);
            let mut plain_users = Vec::with_capacity(users.len());
            for user in &users {
                let sealed: Option<Vec<u8>> = tx
                    .query_opt(&postgres_sql(super::SEALED_SQL), &[user])
                    .await?
                    .map(|r| r.try_get(0))
                    .transpose()?;
                plain_users.push(super::plain_of(ids, user, sealed));
            }
            for (hash, tombstone) in
                super::erased_identities(ids, &plain, plain_name.as_deref(), &plain_users, &t)
            {
                tx.execute(&postgres_sql(super::REMEMBER_ERASED_SQL), &[&hash, &tombstone]).await?;
            }
            for pseudonym in users.iter().chain([&email, &name]) {
                tx.execute(&postgres_sql(super::FORGET_SQL), &[pseudonym]).await?;
            }
        }
        queries::append_audit(&tx, &erase::audit(&t.email, &actor, &reason, &rows, now)).await?;
        tx.batch_execute(super::BUMP_SPEND).await?;
        tx.batch_execute(super::BUMP_DEVICES).await?;
        tx.batch_execute(super::BUMP_USAGE).await?;
        tx.execute(rollup::DEPARTMENTS_DIRTY, &[]).await?;
        tx.commit().await?;
        Ok(erase::Erasure { tombstone: Some(t.email), rows })
    }

    async fn apply_retention(
        &self,
        cutoffs: super::retention::Cutoffs,
        dry_run: bool,
    ) -> Result<super::retention::Outcome, StoreError> {
        use super::erase::postgres_sql;
        use super::retention::{self, CHUNK, Kind, MAX_CHUNKS, Outcome};
        let mut outcome = Outcome { rows: Vec::new(), dry_run };
        let mut client = self.client().await?;
        for kind in Kind::ALL {
            let Some(cutoff) = cutoffs.of(kind) else { continue };
            let n = if dry_run {
                let row = client.query_one(&postgres_sql(kind.count_sql()), &[&cutoff]).await?;
                u64::try_from(row.try_get::<_, i64>(0)?).unwrap_or(0)
            } else {
                let mut total = 0u64;
                for _ in 0..MAX_CHUNKS {
                    let tx = client.transaction().await?;
                    if kind == Kind::AuditEntries {
                        tx.execute(super::erase::UNLOCK_AUDIT, &[]).await?;
                    }
                    let n =
                        tx.execute(&postgres_sql(kind.delete_sql()), &[&cutoff, &CHUNK]).await?;
                    if kind == Kind::AuditEntries {
                        tx.execute(super::erase::LOCK_AUDIT, &[]).await?;
                    }
                    if n > 0
                        && let Some(bump) = kind.bump()
                    {
                        tx.batch_execute(bump).await?;
                    }
                    tx.commit().await?;
                    total += n;
                    if n < CHUNK.unsigned_abs() {
                        break;
                    }
                }
                total
            };
            outcome.rows.push((kind, cutoff, n));
        }
        if !dry_run && outcome.total() > 0 {
            queries::append_audit(&client, &retention::audit(&outcome, super::now())).await?;
        }
        Ok(outcome)
    }

    async fn reenroll_requests(&self) -> Result<Vec<ReenrollRequest>, StoreError> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT host_id, hostname, os, source, requested_at, approved_by, approved_at
                 FROM reenroll_requests ORDER BY host_id",
                &[],
            )
            .await?;
        rows.iter()
            .map(|r| {
                Ok(ReenrollRequest {
                    host_id: r.try_get(0)?,
                    hostname: r.try_get(1)?,
                    os: r.try_get(2)?,
                    source: r.try_get(3)?,
                    requested_at: r.try_get(4)?,
                    approved_by: r.try_get(5)?,
                    approved_at: r.try_get(6)?,
                })
            })
            .collect()
    }

    async fn device_by_key(
        &self,
        key_hash: CredentialHash,
    ) -> Result<Option<DeviceId>, StoreError> {
        let client = self.client().await?;
        let row = client
            .query_opt(
                &client
                    .prepare_cached("SELECT device_id FROM node_keys WHERE key_hash = $1")
                    .await?,
                &[&&key_hash[..]],
            )
            .await?;
        row.map(|r| r.try_get(0).map(DeviceId)).transpose().map_err(StoreError::from)
    }

    async fn ingest(
        &self,
        device: DeviceId,
        batch: Batch,
        now: i64,
    ) -> Result<IngestOutcome, StoreError> {
        let batch = self.protect_on(Some(device), batch, |p, b| p.batch(b)).await?;
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let inserted = tx
            .execute(
                &tx.prepare_cached(
                    "INSERT INTO batches (device_id, batch_id, received_at, sightings)
                 VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
                )
                .await?,
                &[&device.0, &batch.batch_id, &now, &batch.received],
            )
            .await?;
        if inserted == 0 {
            return Ok(IngestOutcome::Duplicate);
        }
        let s = &batch.sightings;
        let products: Vec<&str> = s.iter().map(|s| s.product.as_str()).collect();
        let kinds: Vec<&str> = s.iter().map(|s| s.kind.as_str()).collect();
        let values: Vec<&str> = s.iter().map(|s| s.value.as_str()).collect();
        let users: Vec<&str> = s.iter().map(|s| s.user.as_str()).collect();
        let processes: Vec<&str> = s.iter().map(|s| s.process.as_str()).collect();
        let windows: Vec<i64> = s.iter().map(|s| s.window.get()).collect();
        let firsts: Vec<i64> = s.iter().map(|s| s.first_seen.get()).collect();
        let lasts: Vec<i64> = s.iter().map(|s| s.last_seen.get()).collect();
        let counts: Vec<i64> = s.iter().map(|s| s.count).collect();
        tx.execute(
            &tx.prepare_cached(
                "INSERT INTO sightings (device_id, product, kind, value, os_user, process,
                                    window_start, first_seen, last_seen, count)
             SELECT $1, * FROM UNNEST($2::text[], $3::text[], $4::text[], $5::text[],
                                      $6::text[], $7::bigint[], $8::bigint[], $9::bigint[],
                                      $10::bigint[])
             ON CONFLICT (device_id, product, kind, value, os_user, process, window_start)
             DO UPDATE SET first_seen = LEAST(sightings.first_seen, excluded.first_seen),
                           last_seen = GREATEST(sightings.last_seen, excluded.last_seen),
                           count = sightings.count + excluded.count",
            )
            .await?,
            &[
                &device.0, &products, &kinds, &values, &users, &processes, &windows, &firsts,
                &lasts, &counts,
            ],
        )
        .await?;
        let pending = batch.pending();
        let products: Vec<&str> = pending.iter().map(|p| p.product).collect();
        let kinds: Vec<&str> = pending.iter().map(|p| p.kind.as_str()).collect();
        let users: Vec<&str> = pending.iter().map(|p| p.user).collect();
        let firsts: Vec<i64> = pending.iter().map(|p| p.first_seen.get()).collect();
        let lasts: Vec<i64> = pending.iter().map(|p| p.last_seen.get()).collect();
        let counts: Vec<i64> = pending.iter().map(|p| p.count).collect();
        tx.execute(
            &tx.prepare_cached("INSERT INTO usage_pending (device_id, product, kind, os_user, first_seen, last_seen,
                                        count)
             SELECT $1, * FROM UNNEST($2::text[], $3::text[], $4::text[], $5::bigint[],
                                      $6::bigint[], $7::bigint[])").await?,
            &[&device.0, &products, &kinds, &users, &firsts, &lasts, &counts],
        )
        .await?;
        let i = &batch.installs;
        if !i.is_empty() {
            let products: Vec<&str> = i.iter().map(|i| i.product.as_str()).collect();
            let kinds: Vec<&str> = i.iter().map(|i| i.kind.as_str()).collect();
            let values: Vec<&str> = i.iter().map(|i| i.value.as_str()).collect();
            let users: Vec<&str> = i.iter().map(|i| i.user.as_str()).collect();
            let present: Vec<bool> = i.iter().map(|i| i.present).collect();
            let at: Vec<i64> = i.iter().map(|i| i.at.get()).collect();
            let flags: Vec<&str> = i.iter().map(|i| i.flags.as_str()).collect();
            tx.execute(
            &tx.prepare_cached("INSERT INTO installed (device_id, product, kind, value, os_user, present, changed_at, flags)
             SELECT $1, * FROM UNNEST($2::text[], $3::text[], $4::text[], $5::text[],
                                      $6::bool[], $7::bigint[], $8::text[])
             ON CONFLICT (device_id, product, kind, value, os_user) DO UPDATE
             SET present = excluded.present, changed_at = excluded.changed_at,
                 flags = excluded.flags
             WHERE excluded.changed_at > installed.changed_at
                OR (excluded.changed_at = installed.changed_at AND NOT excluded.present)").await?,
            &[&device.0, &products, &kinds, &values, &users, &present, &at, &flags],
        )
        .await?;
        }
        tx.execute(
            &tx.prepare_cached(
                "UPDATE devices SET last_contact = GREATEST(last_contact, $2),
                dropped_sightings = dropped_sightings + $3,
                evicted_sightings = evicted_sightings + $4
             WHERE id = $1",
            )
            .await?,
            &[&device.0, &now, &batch.dropped, &batch.evicted],
        )
        .await?;
        batch_events(&tx, device, &batch, now).await?;
        tx.commit().await?;
        Ok(IngestOutcome::Stored)
    }

    async fn fold(&self) -> Result<u64, StoreError> {
        fold(&mut self.client().await?, false).await
    }

    async fn fold_when_idle(&self) -> Result<u64, StoreError> {
        fold(&mut self.client().await?, true).await
    }

    async fn heartbeat(&self, device: DeviceId, h: Health) -> Result<(), StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        tx.execute(
            "INSERT INTO heartbeats (device_id, received_at, agent_version, catalog_version,
                interfaces_json, packets, drops, spool_depth, evictions, last_scan)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
             ON CONFLICT (device_id) DO UPDATE SET received_at = excluded.received_at,
                agent_version = excluded.agent_version,
                catalog_version = excluded.catalog_version,
                interfaces_json = excluded.interfaces_json, packets = excluded.packets,
                drops = excluded.drops, spool_depth = excluded.spool_depth,
                evictions = excluded.evictions, last_scan = excluded.last_scan",
            &[
                &device.0,
                &h.received_at,
                &h.agent_version,
                &h.catalog_version,
                &h.interfaces_json,
                &h.packets,
                &h.drops,
                &h.spool_depth,
                &h.evictions,
                &h.last_scan,
            ],
        )
        .await?;
        tx.execute(
            "UPDATE devices SET last_contact = GREATEST(last_contact, $2), agent_version = $3
             WHERE id = $1",
            &[&device.0, &h.received_at, &h.agent_version],
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn devices(&self) -> Result<Vec<DeviceSummary>, StoreError> {
        queries::devices(&self.client().await?).await
    }

    async fn usage(
        &self,
        filter: UsageFilter,
    ) -> Result<(Vec<SourceUsage>, Vec<ProductUsage>), StoreError> {
        let mut client = self.client().await?;
        if let Some(plan) = rollup::plan(&filter) {
            return usage_from_rollups(&mut client, &plan).await;
        }
        let p: [&(dyn tokio_postgres::types::ToSql + Sync); 5] =
            [&filter.product, &filter.kind, &filter.department, &filter.since, &filter.until];
        let rows = client
            .query(
                &format!(
                    "SELECT s.product, s.kind, MIN(s.first_seen), MAX(s.last_seen),
                            SUM(s.count)::bigint, COUNT(DISTINCT s.device_id)
                     FROM sightings s WHERE {FILTER}
                     GROUP BY s.product, s.kind ORDER BY s.product, s.kind"
                ),
                &p,
            )
            .await?;
        let sources = rows.iter().map(read_source).collect::<Result<Vec<_>, StoreError>>()?;
        let rows = client
            .query(
                &format!(
                    "SELECT s.product, COUNT(DISTINCT s.device_id),
                            COUNT(DISTINCT NULLIF(s.os_user, '')),
                            ARRAY(SELECT DISTINCT p.department FROM sightings s2
                                  JOIN devices d ON d.id = s2.device_id
                                  JOIN people p ON p.email = d.owner_email
                                  WHERE s2.product = s.product ORDER BY 1)
                     FROM sightings s WHERE {FILTER}
                     GROUP BY s.product ORDER BY s.product"
                ),
                &p,
            )
            .await?;
        let products = rows
            .iter()
            .map(|r| {
                Ok(ProductUsage {
                    product: r.try_get(0)?,
                    devices: r.try_get(1)?,
                    users: r.try_get(2)?,
                    departments: r.try_get(3)?,
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        Ok((sources, products))
    }

    async fn product_people(&self, product: String) -> Result<Vec<String>, StoreError> {
        queries::product_people(&self.client().await?, &product).await
    }

    async fn product_devices(&self, product: String) -> Result<Vec<DeviceUsage>, StoreError> {
        let mut client = self.client().await?;
        fold(&mut client, false).await?;
        let rows = client
            .query(
                // Users and the installed flag only for the devices listed.
                "SELECT t.host_id, t.hostname, t.owner_email, t.first_seen, t.last_seen, t.count,
                        ARRAY(SELECT DISTINCT s2.os_user FROM usage_device s2
                              WHERE s2.device_id = t.id AND s2.product = $1
                                AND s2.os_user <> '' ORDER BY 1),
                        (SELECT bool_or(i.present) FROM installed i
                         WHERE i.device_id = t.id AND i.product = $1)
                 FROM (SELECT d.id, d.host_id, d.hostname, d.owner_email,
                              MIN(s.first_seen) AS first_seen, MAX(s.last_seen) AS last_seen,
                              SUM(s.count)::bigint AS count
                       FROM usage_device s JOIN devices d ON d.id = s.device_id
                       WHERE s.product = $1
                       GROUP BY d.id ORDER BY d.host_id LIMIT $2) t
                 ORDER BY t.host_id",
                &[&product, &PRODUCT_DEVICES_LIMIT],
            )
            .await?;
        rows.iter()
            .map(|r| {
                Ok(DeviceUsage {
                    host_id: r.try_get(0)?,
                    hostname: r.try_get(1)?,
                    owner_email: r.try_get(2)?,
                    first_seen: r.try_get(3)?,
                    last_seen: r.try_get(4)?,
                    count: r.try_get(5)?,
                    users: r.try_get(6)?,
                    installed: r.try_get(7)?,
                })
            })
            .collect()
    }

    async fn devices_page(&self, q: DeviceQuery) -> Result<DevicePage, StoreError> {
        // The counts and the page are independent scans: one connection each, at once.
        let (counter, pager) = tokio::try_join!(self.client(), self.client())?;
        let hb = super::DEVICE_LAST_HEARTBEAT;
        let filter = format!(
            "($2 = '' OR strpos(lower(d.hostname), $2) > 0 OR strpos(lower(d.host_id), $2) > 0
              OR strpos(lower(COALESCE(d.owner_email, '')), $2) > 0)
             AND (NOT $3 OR {hb} < $1)"
        );
        let count_sql = format!(
            "SELECT COUNT(*), COUNT(*) FILTER (WHERE {hb} < $1), COUNT(*) FILTER (WHERE {filter})
             FROM devices d LEFT JOIN heartbeats h ON h.device_id = d.id"
        );
        let page_sql = format!(
            "{} WHERE {filter}
             ORDER BY {hb} >= $1, {hb}, d.hostname COLLATE \"C\" LIMIT $4 OFFSET $5",
            queries::DEVICE_SELECT
        );
        let count_params: [&(dyn tokio_postgres::types::ToSql + Sync); 3] =
            [&q.stale_before, &q.search, &q.only_stale];
        let page_params: [&(dyn tokio_postgres::types::ToSql + Sync); 5] =
            [&q.stale_before, &q.search, &q.only_stale, &q.limit, &q.offset];
        let counts = counter.query_one(&count_sql, &count_params);
        let rows = pager.query(&page_sql, &page_params);
        let (counts, rows) = tokio::try_join!(counts, rows)?;
        Ok(DevicePage {
            total: counts.try_get(0)?,
            stale: counts.try_get(1)?,
            matched: counts.try_get(2)?,
            devices: rows.iter().map(DeviceSummary::from_row).collect::<Result<_, _>>()?,
        })
    }

    async fn versions(&self) -> Result<super::Versions, StoreError> {
        let mut client = self.client().await?;
        fold(&mut client, false).await?;
        let mut v = super::Versions::default();
        for r in client.query(super::VERSIONS_SELECT, &[]).await? {
            let name: String = r.try_get(0)?;
            v.set(&name, r.try_get(1)?);
        }
        Ok(v)
    }

    async fn product_values(
        &self,
        product: String,
        limit: i64,
    ) -> Result<Vec<ValueUsage>, StoreError> {
        // Found through sightings_product; ordered by bytes (the C collation), as SQLite
        // orders, whatever the database's collation.
        let client = self.client().await?;
        let rows = client
            .query(
                &client
                    .prepare_cached(
                        "SELECT kind, value, COUNT(DISTINCT device_id), SUM(count)::bigint,
                                MIN(first_seen), MAX(last_seen)
                         FROM sightings WHERE product = $1
                         GROUP BY kind, value
                         ORDER BY kind COLLATE \"C\", value COLLATE \"C\" LIMIT $2",
                    )
                    .await?,
                &[&product, &limit.clamp(1, PRODUCT_VALUES_LIMIT)],
            )
            .await?;
        rows.iter()
            .map(|r| {
                Ok(ValueUsage {
                    kind: r.try_get(0)?,
                    value: r.try_get(1)?,
                    devices: r.try_get(2)?,
                    count: r.try_get(3)?,
                    first_seen: r.try_get(4)?,
                    last_seen: r.try_get(5)?,
                })
            })
            .collect()
    }

    async fn mcp_flags(&self) -> Result<Vec<McpServerFlags>, StoreError> {
        let client = self.client().await?;
        let rows =
            client.query(&client.prepare_cached(super::MCP_FLAGS_SELECT).await?, &[]).await?;
        let mut out = rows
            .iter()
            .map(|r| {
                let flags: String = r.try_get(2)?;
                Ok(super::mcp_flags_row(r.try_get(0)?, r.try_get(1)?, &flags, r.try_get(3)?))
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        out.sort_by(|a, b| (&a.product, &a.value, &a.flags).cmp(&(&b.product, &b.value, &b.flags)));
        Ok(out)
    }

    async fn reviews(&self) -> Result<Vec<Review>, StoreError> {
        queries::reviews(&self.client().await?).await
    }

    async fn review(&self, product: String) -> Result<Option<Review>, StoreError> {
        queries::review(&self.client().await?, &product).await
    }

    async fn set_review(
        &self,
        review: Review,
        audit: AuditFn<Review>,
    ) -> Result<Option<Review>, StoreError> {
        self.write(|tx| Box::pin(async move { queries::set_review(tx, &review, audit).await }))
            .await
    }

    async fn create_token(
        &self,
        token: Token,
        hash: CredentialHash,
        audit: AuditRecord,
    ) -> Result<(), StoreError> {
        self.write(|tx| {
            Box::pin(async move { queries::create_token(tx, token, &hash, &audit).await })
        })
        .await
    }

    async fn revoke_token(
        &self,
        name: String,
        now: i64,
        audit: AuditFn<Token>,
    ) -> Result<Option<Token>, StoreError> {
        self.write(|tx| Box::pin(async move { queries::revoke_token(tx, &name, now, audit).await }))
            .await
    }

    async fn tokens(&self) -> Result<Vec<Token>, StoreError> {
        queries::tokens(&self.client().await?).await
    }

    async fn token_by_hash(&self, hash: CredentialHash) -> Result<Option<Token>, StoreError> {
        queries::token_by_hash(&self.client().await?, &hash).await
    }

    async fn add_expenses(
        &self,
        lines: Vec<ExpenseLine>,
        now: i64,
    ) -> Result<ImportCounts, StoreError> {
        if lines.is_empty() {
            return Ok(ImportCounts::default());
        }
        let mut lines = self.protect(lines, |p, l| p.expenses(l)).await?;
        let mut client = self.client().await?;
        let mut tx = client.transaction().await?;
        tx.execute("SELECT pg_advisory_xact_lock_shared($1)", &[&MAPPING_LOCK]).await?;
        let mappings: HashMap<String, (i64, String)> = tx
            .query("SELECT descriptor, id, product FROM descriptor_mappings", &[])
            .await?
            .iter()
            .map(|r| Ok((r.try_get(0)?, (r.try_get(1)?, r.try_get(2)?))))
            .collect::<Result<_, tokio_postgres::Error>>()?;
        let mapped = super::resolve_mapped(&mut lines, &mappings);
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
            Type::TEXT,
            Type::TEXT,
            Type::TEXT,
            Type::INT8,
            Type::INT8,
            Type::INT8,
            Type::TEXT,
            Type::TEXT,
            Type::TEXT,
            Type::TEXT,
            Type::TEXT,
            Type::TEXT,
            Type::TEXT,
            Type::BOOL,
            Type::TEXT,
            Type::INT8,
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
        if inserted > 0 {
            tx.batch_execute(super::BUMP_SPEND).await?;
            expense_events(&tx, &lines, now).await?;
        }
        tx.commit().await?;
        let resolved = mapped.iter().flatten().count();
        Ok(ImportCounts {
            mapped: u64::try_from(resolved).unwrap_or(u64::MAX),
            ..counts(lines.len(), inserted)
        })
    }

    async fn mappings(&self) -> Result<Vec<DescriptorMapping>, StoreError> {
        queries::mappings(&self.client().await?).await
    }

    async fn add_mapping(
        &self,
        mapping: DescriptorMapping,
        audit: AuditRecord,
    ) -> Result<(DescriptorMapping, u64), StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MAPPING_LOCK]).await?;
        let row = tx
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
        let Some(row) = row else {
            return Err(StoreError::Exists {
                what: "descriptor mapping",
                name: mapping.descriptor,
            });
        };
        let id: i64 = row.try_get(0)?;
        let candidates = tx
            .query(
                "SELECT id, descriptor FROM expense_lines
                 WHERE candidate AND product IS NULL AND mapping_id IS NULL",
                &[],
            )
            .await?
            .iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
            .collect::<Result<Vec<(i64, String)>, tokio_postgres::Error>>()?;
        let ids = super::lines_for_key(candidates, &mapping.descriptor);
        let resolved = tx
            .execute(
                "UPDATE expense_lines SET product = $1, candidate = false, mapping_id = $2
                 WHERE id = ANY($3)",
                &[&mapping.product, &id, &ids],
            )
            .await?;
        if resolved > 0 {
            tx.batch_execute(super::BUMP_SPEND).await?;
        }
        queries::append_audit(&tx, &audit).await?;
        // Its alert, in the same transaction (issue 17).
        let mapping = DescriptorMapping { id, ..mapping };
        let event = event::descriptor_taught(&mapping, resolved);
        outbox::emit(&tx, &[event], mapping.created_at).await?;
        tx.commit().await?;
        Ok((mapping, resolved))
    }

    async fn remove_mapping(
        &self,
        id: i64,
        audit: AuditFn<DescriptorMapping>,
    ) -> Result<Option<(DescriptorMapping, u64)>, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MAPPING_LOCK]).await?;
        let Some(before) = queries::mapping_for_update(&tx, id).await? else { return Ok(None) };
        let restored = tx
            .execute(
                "UPDATE expense_lines SET product = NULL, candidate = true, mapping_id = NULL
                 WHERE mapping_id = $1",
                &[&id],
            )
            .await?;
        tx.execute("DELETE FROM descriptor_mappings WHERE id = $1", &[&id]).await?;
        if restored > 0 {
            tx.batch_execute(super::BUMP_SPEND).await?;
        }
        queries::append_audit(&tx, &audit(Some(&before))).await?;
        tx.commit().await?;
        Ok(Some((before, restored)))
    }

    async fn expenses(&self, since: Option<i64>) -> Result<Vec<ExpenseLine>, StoreError> {
        let rows = self
            .client()
            .await?
            .query(
                "SELECT source, dedupe_key, file, line, occurred_at, amount_minor, currency,
                        descriptor, merchant, payer_email, payer_name, department, product,
                        candidate, candidate_reason
                 FROM expense_lines WHERE ($1::bigint IS NULL OR occurred_at >= $1)
                 ORDER BY occurred_at, id",
                &[&since],
            )
            .await?;
        rows.iter()
            .map(|r| {
                Ok(ExpenseLine {
                    source: r.try_get(0)?,
                    dedupe_key: r.try_get(1)?,
                    file: r.try_get(2)?,
                    line: r.try_get(3)?,
                    occurred_at: r.try_get(4)?,
                    amount_minor: r.try_get(5)?,
                    currency: r.try_get(6)?,
                    descriptor: r.try_get(7)?,
                    merchant: r.try_get(8)?,
                    payer_email: r.try_get(9)?,
                    payer_name: r.try_get(10)?,
                    department: r.try_get(11)?,
                    product: r.try_get(12)?,
                    candidate: r.try_get(13)?,
                    candidate_reason: r.try_get(14)?,
                })
            })
            .collect()
    }

    async fn add_gateway_spend(
        &self,
        rows: Vec<GatewaySpend>,
        now: i64,
    ) -> Result<ImportCounts, StoreError> {
        let rows = self.protect(rows, |p, r| p.gateway(r)).await?;
        let Some(first) = rows.first() else {
            return Ok(ImportCounts::default());
        };
        let mut client = self.client().await?;
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
                    if inserted > 0 {
                        tx.batch_execute(super::BUMP_SPEND).await?;
                        gateway_events(&tx, &rows, now).await?;
                    }
                    tx.commit().await?;
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
        if inserted > 0 {
            tx.batch_execute(super::BUMP_SPEND).await?;
            gateway_events(&tx, &rows, now).await?;
        }
        tx.commit().await?;
        Ok(counts(rows.len(), inserted))
    }

    async fn gateway_totals(&self, since: Option<i64>) -> Result<Vec<GatewayTotal>, StoreError> {
        // The directory's emails are ASCII-lowercased on import, and so is the end user here:
        // `lower` under the C collation touches only ASCII letters (as SQLite's does), and is
        // a fifth faster over a million rows than the locale's.
        let rows = self
            .client()
            .await?
            .query(
                "SELECT g.product, g.provider, COALESCE(NULLIF(p.department, ''), g.team) AS dep,
                        g.currency, g.period_start - mod(g.period_start, 86400) AS day,
                        SUM(g.cost_nanos)::bigint, SUM(g.input_tokens + g.output_tokens)::bigint,
                        COUNT(*)
                 FROM gateway_spend g
                 LEFT JOIN people p ON p.email = lower(g.end_user COLLATE \"C\")
                 WHERE ($1::bigint IS NULL OR g.period_start >= $1)
                 GROUP BY g.product, g.provider, dep, g.currency, day
                 ORDER BY day, g.product NULLS FIRST, g.provider, dep, g.currency",
                &[&since],
            )
            .await?;
        rows.iter()
            .map(|r| {
                Ok(GatewayTotal {
                    product: r.try_get(0)?,
                    provider: r.try_get(1)?,
                    department: r.try_get(2)?,
                    currency: r.try_get(3)?,
                    day: r.try_get(4)?,
                    cost_nanos: r.try_get(5)?,
                    tokens: r.try_get(6)?,
                    rows: r.try_get(7)?,
                })
            })
            .collect()
    }

    async fn upsert_people(&self, people: Vec<Person>) -> Result<ImportCounts, StoreError> {
        let people = self.protect(people, |p, v| p.people(v)).await?;
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
        let mut client = self.client().await?;
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
            tx.batch_execute(super::BUMP_SPEND).await?;
        }
        tx.commit().await?;
        Ok(counts(total, changed))
    }

    async fn people_active(&self) -> Result<Vec<(String, bool)>, StoreError> {
        queries::people_active(&self.client().await?).await
    }

    async fn scim_get(
        &self,
        kind: &'static str,
        id: String,
    ) -> Result<Option<ScimResource>, StoreError> {
        let row = queries::scim_get(&self.client().await?, kind, &id).await?;
        row.map(|r| super::open_scim(self.identities.get().map(|i| &**i), r)).transpose()
    }

    async fn scim_list(
        &self,
        kind: &'static str,
        name: Option<String>,
        offset: i64,
        limit: i64,
    ) -> Result<(i64, Vec<ScimResource>), StoreError> {
        let ids = self.identities.get().cloned();
        let name = super::scim_name(ids.as_deref(), name);
        let client = self.client().await?;
        let (total, page) =
            queries::scim_list(&client, kind, name.as_deref(), offset, limit).await?;
        let page = page
            .into_iter()
            .map(|r| super::open_scim(ids.as_deref(), r))
            .collect::<Result<_, _>>()?;
        Ok((total, page))
    }

    async fn scim_write(&self, write: ScimWrite) -> Result<bool, StoreError> {
        let write = self.protect(write, |p, w| p.scim(w)).await?;
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let r = &write.resource;
        let taken = tx
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
            tx.batch_execute(super::BUMP_SPEND).await?;
        }
        queries::append_audit(&tx, &write.audit).await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn scim_delete(
        &self,
        kind: &'static str,
        id: String,
        email: Option<String>,
        audit: AuditRecord,
    ) -> Result<bool, StoreError> {
        let email = self.protect(email, |p, e| p.optional(e)).await?;
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let n = tx
            .execute("DELETE FROM scim_resources WHERE kind = $1 AND id = $2", &[&kind, &id])
            .await?;
        if n > 0 {
            queries::append_audit(&tx, &audit).await?;
        }
        if n > 0
            && let Some(email) = email
        {
            tx.execute("UPDATE people SET active = FALSE WHERE email = $1", &[&email]).await?;
            tx.batch_execute(super::BUMP_SPEND).await?;
        }
        tx.commit().await?;
        Ok(n > 0)
    }

    async fn people(&self) -> Result<Vec<Person>, StoreError> {
        queries::people(&self.client().await?).await
    }

    async fn owner_last_use(&self, products: Vec<String>) -> Result<Vec<OwnerUse>, StoreError> {
        if products.is_empty() {
            return Ok(Vec::new());
        }
        let mut client = self.client().await?;
        fold(&mut client, false).await?;
        let rows = client
            .query(
                "SELECT lower(d.owner_email), s.product, MAX(s.last_seen)
                 FROM usage_device s JOIN devices d ON d.id = s.device_id
                 WHERE s.product = ANY($1)
                   AND d.owner_email IS NOT NULL AND d.owner_email <> ''
                 GROUP BY lower(d.owner_email), s.product
                 ORDER BY 1, 2",
                &[&products],
            )
            .await?;
        rows.iter()
            .map(|r| {
                Ok(OwnerUse {
                    owner_email: r.try_get(0)?,
                    product: r.try_get(1)?,
                    last_seen: r.try_get(2)?,
                })
            })
            .collect()
    }

    async fn device_sightings(
        &self,
        since: Option<i64>,
    ) -> Result<Vec<DeviceSighting>, StoreError> {
        queries::device_sightings(&self.client().await?, since).await
    }

    async fn overlay(&self) -> Result<Option<(i64, String)>, StoreError> {
        queries::overlay(&self.client().await?).await
    }

    async fn overlay_version(&self) -> Result<Option<i64>, StoreError> {
        let client = self.client().await?;
        let row =
            client.query_one(&client.prepare_cached(super::OVERLAY_VERSION).await?, &[]).await?;
        Ok(row.try_get(0)?)
    }

    async fn put_overlay(
        &self,
        version: i64,
        document: String,
        audit: AuditRecord,
    ) -> Result<bool, StoreError> {
        self.write(|tx| {
            Box::pin(async move { queries::put_overlay(tx, version, &document, &audit).await })
        })
        .await
    }

    async fn process_sightings(&self, product: String) -> Result<Vec<ProcessSighting>, StoreError> {
        queries::process_sightings(&self.client().await?, &product).await
    }

    async fn audit(&self, after: i64, limit: i64) -> Result<Vec<AuditEntry>, StoreError> {
        queries::audit(&self.client().await?, after, limit).await
    }

    async fn create_session(
        &self,
        hash: CredentialHash,
        session: Session,
        audit: AuditRecord,
    ) -> Result<(), StoreError> {
        self.write(|tx| {
            Box::pin(async move { queries::create_session(tx, &hash, session, &audit).await })
        })
        .await
    }

    async fn session(&self, hash: CredentialHash, now: i64) -> Result<Option<Session>, StoreError> {
        queries::session(&self.client().await?, &hash, now).await
    }

    async fn touch_session(&self, hash: CredentialHash, now: i64) -> Result<(), StoreError> {
        queries::touch_session(&self.client().await?, &hash, now).await
    }

    async fn end_session(
        &self,
        hash: CredentialHash,
        audit: Option<AuditRecord>,
    ) -> Result<bool, StoreError> {
        self.write(|tx| {
            Box::pin(async move { queries::end_session(tx, &hash, audit.as_ref()).await })
        })
        .await
    }

    async fn purge_sessions(&self, now: i64, idle_before: i64) -> Result<u64, StoreError> {
        queries::purge_sessions(&self.client().await?, now, idle_before).await
    }

    async fn audit_query(&self, filter: AuditFilter) -> Result<Vec<AuditEntry>, StoreError> {
        queries::audit_query(&self.client().await?, &filter).await
    }

    async fn connector_cursor(&self, name: String) -> Result<Option<i64>, StoreError> {
        queries::connector_cursor(&self.client().await?, &name).await
    }

    async fn set_connector_cursor(
        &self,
        name: String,
        cursor_at: i64,
        now: i64,
    ) -> Result<(), StoreError> {
        queries::set_connector_cursor(&self.client().await?, &name, cursor_at, now).await
    }

    async fn record_import(&self, run: ImportRun) -> Result<(), StoreError> {
        queries::record_import(&self.client().await?, &run).await
    }

    async fn import_runs(&self, limit: i64) -> Result<Vec<ImportRun>, StoreError> {
        queries::import_runs(&self.client().await?, limit).await
    }

    async fn device(&self, host_id: String) -> Result<Option<DeviceSummary>, StoreError> {
        queries::device(&self.client().await?, &host_id).await
    }

    async fn device_products(&self, host_id: String) -> Result<Vec<DeviceSighting>, StoreError> {
        queries::device_products(&self.client().await?, &host_id).await
    }

    async fn person_usage(&self, email: Option<String>) -> Result<Vec<PersonUsage>, StoreError> {
        let email = email.map(|e| e.to_ascii_lowercase());
        let mut client = self.client().await?;
        // The products come from the rollups.
        fold(&mut client, false).await?;
        // One snapshot for the three reads. Emails are lowercased under the C collation
        // (ASCII letters only, as SQLite's `lower` and the directory's import).
        let tx = client
            .build_transaction()
            .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()
            .await?;
        let mut people = PeopleUsage::default();
        let products = tx
            .query(
                &tx.prepare_cached(
                    "SELECT lower(d.owner_email COLLATE \"C\") AS email, s.product,
                            MAX(s.last_seen)
                     FROM usage_device s JOIN devices d ON d.id = s.device_id
                     WHERE d.owner_email IS NOT NULL AND d.owner_email <> ''
                       AND ($1::text IS NULL OR lower(d.owner_email COLLATE \"C\") = $1)
                     GROUP BY email, s.product",
                )
                .await?,
                &[&email],
            )
            .await?;
        for r in &products {
            people.product(r.try_get(0)?, r.try_get(1)?, r.try_get(2)?);
        }
        let expenses = tx
            .query(
                &tx.prepare_cached(
                    "SELECT lower(payer_email COLLATE \"C\") AS email, currency,
                            SUM(amount_minor)::bigint, MAX(occurred_at)
                     FROM expense_lines
                     WHERE product IS NOT NULL AND payer_email <> ''
                       AND ($1::text IS NULL OR lower(payer_email COLLATE \"C\") = $1)
                     GROUP BY email, currency",
                )
                .await?,
                &[&email],
            )
            .await?;
        for r in &expenses {
            people.expense(r.try_get(0)?, r.try_get(1)?, r.try_get(2)?, r.try_get(3)?);
        }
        let gateway = tx
            .query(
                &tx.prepare_cached(
                    "SELECT lower(end_user COLLATE \"C\") AS email, currency,
                            SUM(cost_nanos)::bigint, MAX(period_start)
                     FROM gateway_spend
                     WHERE (strpos(end_user, '@') > 0 OR end_user LIKE 'person-%')
                       AND ($1::text IS NULL OR lower(end_user COLLATE \"C\") = $1)
                     GROUP BY email, currency",
                )
                .await?,
                &[&email],
            )
            .await?;
        for r in &gateway {
            people.gateway(r.try_get(0)?, r.try_get(1)?, r.try_get(2)?, r.try_get(3)?);
        }
        tx.commit().await?;
        Ok(people.finish())
    }

    async fn rotate_enroll_secret(
        &self,
        hash: CredentialHash,
        now: i64,
        audit: AuditRecord,
    ) -> Result<(), StoreError> {
        self.write(|tx| {
            Box::pin(async move { queries::rotate_enroll_secret(tx, &hash, now, &audit).await })
        })
        .await
    }

    async fn enroll_secret(&self) -> Result<Option<(CredentialHash, i64)>, StoreError> {
        queries::enroll_secret(&self.client().await?).await
    }
    async fn sync_channels(&self, channels: Vec<ChannelRow>, now: i64) -> Result<(), StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        tx.execute(outbox::CHANNELS_OFF, &[]).await?;
        for ch in &channels {
            tx.execute(outbox::CHANNEL_ON, &[&ch.name, &ch.kind, &outbox::events_text(ch), &now])
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn emit(
        &self,
        events: Vec<NewEvent>,
        audit: Option<AuditRecord>,
        now: i64,
    ) -> Result<u64, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let new = outbox::emit(&tx, &events, now).await?;
        if let Some(a) = &audit {
            queries::append_audit(&tx, a).await?;
        }
        tx.commit().await?;
        Ok(new)
    }

    async fn claim_deliveries(
        &self,
        channel: String,
        claimer: String,
        now: i64,
        lease_until: i64,
        limit: i64,
    ) -> Result<Vec<Claimed>, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let claim = tx.prepare_cached(outbox::pg_claim_sql()).await?;
        tx.execute(&claim, &[&channel, &now, &lease_until, &limit, &claimer]).await?;
        let select = tx.prepare_cached(outbox::CLAIMED).await?;
        let rows = tx.query(&select, &[&channel, &claimer, &lease_until]).await?;
        let claimed = rows
            .iter()
            .map(|r| {
                Ok(Claimed {
                    channel: channel.clone(),
                    event: StoredEvent::from_row(r)?,
                    attempts: r.try_get(6)?,
                    created_at: r.try_get(7)?,
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        tx.commit().await?;
        Ok(claimed)
    }

    async fn finish_delivery(
        &self,
        claimed: Claimed,
        claimer: String,
        attempt: Attempt,
        audit: Option<AuditRecord>,
        now: i64,
    ) -> Result<bool, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let (state, next_at, done_at, status, error) = outbox::finish_values(&attempt, now);
        let n = tx
            .execute(
                &tx.prepare_cached(outbox::FINISH).await?,
                &[
                    &claimed.channel,
                    &claimed.event.seq,
                    &state,
                    &next_at,
                    &done_at,
                    &status,
                    &error,
                    &claimer,
                ],
            )
            .await?;
        if n == 1
            && let Some(a) = &audit
        {
            queries::append_audit(&tx, a).await?;
        }
        tx.commit().await?;
        Ok(n == 1)
    }

    async fn admit_deliveries(
        &self,
        claimed: Vec<Claimed>,
        claimer: String,
        now: i64,
        rule: AdmitRule,
    ) -> Result<Vec<Admit>, StoreError> {
        let mut client = self.client().await?;
        outbox::pg_admit(&mut client, &claimed, &claimer, now, &rule).await
    }

    async fn deliveries(&self, limit: i64) -> Result<Vec<DeliveryRow>, StoreError> {
        queries::deliveries(&self.client().await?, limit).await
    }

    async fn delivery_counts(&self) -> Result<Vec<(String, String, i64)>, StoreError> {
        queries::delivery_counts(&self.client().await?).await
    }

    async fn ticket(&self, channel: String, subject: String) -> Result<Option<String>, StoreError> {
        queries::ticket(&self.client().await?, &channel, &subject).await
    }

    async fn set_ticket(
        &self,
        channel: String,
        subject: String,
        issue_key: String,
        now: i64,
    ) -> Result<(), StoreError> {
        queries::set_ticket(&self.client().await?, &channel, &subject, &issue_key, now).await
    }

    async fn channel_events(
        &self,
        channel: String,
        state: String,
        from: i64,
        to: i64,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        queries::channel_events(&self.client().await?, &channel, &state, from, to).await
    }

    async fn claim_digest(
        &self,
        channel: String,
        period_end: i64,
        claimer: String,
        now: i64,
        lease_until: i64,
    ) -> Result<Option<DigestClaim>, StoreError> {
        let client = self.client().await?;
        // INSERT ... ON CONFLICT is atomic: of two collectors claiming at once, the second
        // sees the first's committed row, whose lease has not run out, and changes nothing.
        let claimed = client
            .execute(outbox::DIGEST_CLAIM, &[&channel, &period_end, &claimer, &lease_until, &now])
            .await?;
        if claimed == 0 {
            return Ok(None);
        }
        let row = client.query_one(outbox::DIGEST_PREVIOUS, &[&channel, &period_end]).await?;
        let attempts = client.query_one(outbox::DIGEST_ATTEMPTS, &[&channel, &period_end]).await?;
        Ok(Some(DigestClaim { previous: row.try_get(0)?, attempts: attempts.try_get(0)? }))
    }

    async fn digest_failed(
        &self,
        channel: String,
        period_end: i64,
        claimer: String,
        retry_at: i64,
    ) -> Result<(), StoreError> {
        self.client()
            .await?
            .execute(outbox::DIGEST_FAILED, &[&channel, &period_end, &claimer, &retry_at])
            .await?;
        Ok(())
    }

    async fn digest_sent(
        &self,
        channel: String,
        period_end: i64,
        claimer: String,
        now: i64,
        events: i64,
    ) -> Result<bool, StoreError> {
        let n = self
            .client()
            .await?
            .execute(outbox::DIGEST_SENT, &[&channel, &period_end, &claimer, &now, &events])
            .await?;
        Ok(n == 1)
    }
}
