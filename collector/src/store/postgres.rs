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

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};

use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::Type;

use super::{Migration, PeopleUsage, Store, StoreError, outbox, queries, rollup};
use crate::alerts::event;
use crate::model::{
    Batch, DeviceId, DigestClaim, ExpenseLine, GatewaySpend, GatewayTotal, ImportCounts,
    IngestOutcome, Person, PersonUsage, ProductUsage, SourceUsage, UsageFilter,
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

/// Runs a statement function of [`queries`] on a pooled client, outside any transaction it
/// does not open itself; see [`super::shared`].
macro_rules! pg_read {
    ($s:ident, $c:ident => $e:expr) => {{
        let $c = &$s.client().await?;
        $e.await
    }};
}

/// Runs a statement function of [`queries`] in a transaction ([`PgStore::write`]); see
/// [`super::shared`].
macro_rules! pg_write {
    ($s:ident, $c:ident => $e:expr) => {
        $s.write(|$c| Box::pin(async move { $e.await })).await
    };
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

    /// Applies the identity key to what a write carries, in a writing transaction, before
    /// the write itself ([`queries::lifecycle::protect`]); `device`: the device of a batch.
    async fn protect<T: Send + 'static>(
        &self,
        device: Option<DeviceId>,
        value: T,
        f: fn(&mut crate::identity::Protect<'_>, &mut T),
    ) -> Result<T, StoreError> {
        let Some(ids) = self.identities.get().cloned() else { return Ok(value) };
        pg_write!(self, tx => queries::lifecycle::protect(tx, &ids, device, value, f))
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
    let new = queries::known(tx, &names, now, "expense").await?;
    let blocked = queries::blocked(tx).await?;
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
    let new = queries::known(tx, &names, now, "gateway").await?;
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
    let usage = queries::rollup_usage(&tx, plan).await?;
    tx.commit().await?;
    Ok(usage)
}

impl Store for PgStore {
    super::shared::store_methods!(pg_read, pg_write);

    fn backend(&self) -> &'static str {
        "postgres"
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
        let mode = queries::privacy_mode(&tx, opened_with, now).await?;
        tx.commit().await?;
        Ok(mode)
    }

    async fn erase_person(
        &self,
        email: String,
        actor: String,
        reason: String,
        now: i64,
    ) -> Result<super::erase::Erasure, StoreError> {
        let erase = queries::lifecycle::Erase::new(
            self.identities.get().cloned(),
            email,
            actor,
            reason,
            now,
        );
        self.write(|tx| Box::pin(async move { queries::lifecycle::erase_person(tx, &erase).await }))
            .await
    }

    async fn ingest(
        &self,
        device: DeviceId,
        batch: Batch,
        now: i64,
    ) -> Result<IngestOutcome, StoreError> {
        let batch = self.protect(Some(device), batch, |p, b| p.batch(b)).await?;
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        if !queries::insert_batch(&tx, device, &batch.batch_id, now, batch.received).await? {
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
        queries::batch_contact(&tx, device, now, batch.dropped, batch.evicted).await?;
        queries::batch_events(&tx, device, &batch, now).await?;
        tx.commit().await?;
        Ok(IngestOutcome::Stored)
    }

    async fn fold(&self) -> Result<u64, StoreError> {
        fold(&mut self.client().await?, false).await
    }

    async fn fold_when_idle(&self) -> Result<u64, StoreError> {
        fold(&mut self.client().await?, true).await
    }

    async fn usage(
        &self,
        filter: UsageFilter,
    ) -> Result<(Vec<SourceUsage>, Vec<ProductUsage>), StoreError> {
        let mut client = self.client().await?;
        if let Some(plan) = rollup::plan(&filter) {
            return usage_from_rollups(&mut client, &plan).await;
        }
        queries::usage(&client, &filter).await
    }

    async fn add_expenses(
        &self,
        lines: Vec<ExpenseLine>,
        now: i64,
    ) -> Result<ImportCounts, StoreError> {
        if lines.is_empty() {
            return Ok(ImportCounts::default());
        }
        let mut lines = self.protect(None, lines, |p, l| p.expenses(l)).await?;
        let mut client = self.client().await?;
        let mut tx = client.transaction().await?;
        tx.execute("SELECT pg_advisory_xact_lock_shared($1)", &[&super::sql::MAPPING_LOCK]).await?;
        let mappings = queries::mapping_keys(&tx).await?;
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

    async fn add_gateway_spend(
        &self,
        rows: Vec<GatewaySpend>,
        now: i64,
    ) -> Result<ImportCounts, StoreError> {
        let rows = self.protect(None, rows, |p, r| p.gateway(r)).await?;
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
        let people = self.protect(None, people, |p, v| p.people(v)).await?;
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

    async fn claim_digest(
        &self,
        channel: String,
        period_end: i64,
        claimer: String,
        now: i64,
        lease_until: i64,
    ) -> Result<Option<DigestClaim>, StoreError> {
        let client = self.client().await?;
        queries::alerts::claim_digest(&client, &channel, period_end, &claimer, now, lease_until)
            .await
    }
}
