//! PostgreSQL migrations: applied at open on a dedicated connection, under a session advisory
//! lock, so several collectors can start at once.

use crate::store::{Migration, StoreError};

/// The PostgreSQL migrations, in order.
pub const MIGRATIONS: &[Migration] = crate::store::migrations!("postgres");

/// The advisory lock key that serialises migrations ("aiscout" in ASCII).
const MIGRATION_LOCK: i64 = 0x0061_6973_636f_7574;

pub(super) async fn migrate(
    config: &tokio_postgres::Config,
    tls: crate::store::postgres_tls::MakeRustls,
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
            tx.batch_execute(m.sql).await.map_err(|e| StoreError::Migration {
                version: m.version,
                error: Box::new(StoreError::Postgres(e)),
            })?;
            let version = i32::try_from(m.version).unwrap_or(i32::MAX);
            tx.execute(
                "INSERT INTO schema_migrations (version, applied_at) VALUES ($1, $2)",
                &[&version, &crate::store::now()],
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
