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

mod bulk;
mod fold;
mod migrate;
mod reads;

pub use migrate::MIGRATIONS;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};

use super::{Store, StoreError, queries, rollup};
use crate::model::{Batch, DeviceId, IngestOutcome, ProductUsage, SourceUsage, UsageFilter};

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

/// A read-only transaction over one snapshot (`REPEATABLE READ`), for reads that must agree
/// with each other.
async fn snapshot(
    client: &mut deadpool_postgres::Object,
) -> Result<deadpool_postgres::Transaction<'_>, StoreError> {
    Ok(client
        .build_transaction()
        .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await?)
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

/// Runs a function of [`bulk`] or [`reads`] with a pooled client of its own; see
/// [`super::shared`].
macro_rules! pg_with {
    ($s:ident, $c:ident => $e:expr) => {{
        let $c = &mut $s.client().await?;
        $e.await
    }};
}

impl PgStore {
    /// Connects (from a `postgres://` URL), applies pending migrations under the advisory
    /// lock, and builds the pool.
    ///
    /// # Errors
    /// The URL is malformed, the server cannot be reached, or a migration fails.
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        let super::postgres_tls::Connect { config, tls, .. } = super::postgres_tls::parse(url)?;
        migrate::migrate(&config, tls.clone()).await?;
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
            .map_err(StoreError::PoolBuild)?;
        Ok(Self { pool, identities: super::IdentitySlot::default() })
    }

    /// Folds pending usage into the rollups ([`fold::fold`]; a `background` fold skips when
    /// another collector is folding).
    async fn fold_now(&self, background: bool) -> Result<u64, StoreError> {
        fold::fold(&mut self.client().await?, background).await
    }

    async fn client(&self) -> Result<deadpool_postgres::Object, StoreError> {
        self.pool.get().await.map_err(StoreError::Pool)
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

    super::shared::protect_method!(pg_write);

    /// After an erasure ([`super::Store::erase_person`]): nothing, and no connection is taken
    /// for it. The old row versions an erasure leaves behind are removed by PostgreSQL's
    /// autovacuum, as any updated row's are.
    #[allow(clippy::unused_async)] // Reason: the shared `erase_person` awaits it, as SQLite's.
    async fn after_erasure(&self) -> Result<(), StoreError> {
        Ok(())
    }
}

impl Store for PgStore {
    super::shared::store_methods!("postgres", pg_read, pg_write, pg_with);

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

    async fn usage(
        &self,
        filter: UsageFilter,
    ) -> Result<(Vec<SourceUsage>, Vec<ProductUsage>), StoreError> {
        let mut client = self.client().await?;
        if let Some(plan) = rollup::plan(&filter) {
            return fold::usage_from_rollups(&mut client, &plan).await;
        }
        queries::usage(&client, &filter).await
    }
}
