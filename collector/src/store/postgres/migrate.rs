//! PostgreSQL migrations: applied at open on a dedicated connection, under a session advisory
//! lock, so several collectors can start at once.

use crate::store::{Migration, StoreError};

/// The PostgreSQL migrations, in order.
pub const MIGRATIONS: &[Migration] = &[
    Migration { version: 1, sql: include_str!("../migrations/postgres/0001_init.sql") },
    Migration { version: 2, sql: include_str!("../migrations/postgres/0002_spend.sql") },
    Migration { version: 3, sql: include_str!("../migrations/postgres/0003_rollups.sql") },
    Migration { version: 4, sql: include_str!("../migrations/postgres/0004_filters.sql") },
    Migration { version: 5, sql: include_str!("../migrations/postgres/0005_console.sql") },
    Migration { version: 6, sql: include_str!("../migrations/postgres/0006_policy_role.sql") },
    Migration { version: 7, sql: include_str!("../migrations/postgres/0007_data_versions.sql") },
    Migration { version: 8, sql: include_str!("../migrations/postgres/0008_alerts.sql") },
    Migration { version: 9, sql: include_str!("../migrations/postgres/0009_connectors.sql") },
    Migration { version: 10, sql: include_str!("../migrations/postgres/0010_reenroll.sql") },
    Migration { version: 11, sql: include_str!("../migrations/postgres/0011_digests.sql") },
    Migration { version: 12, sql: include_str!("../migrations/postgres/0012_privacy.sql") },
    Migration { version: 13, sql: include_str!("../migrations/postgres/0013_scim.sql") },
    Migration { version: 14, sql: include_str!("../migrations/postgres/0014_alert_caps.sql") },
    Migration {
        version: 15,
        sql: include_str!("../migrations/postgres/0015_connector_errors.sql"),
    },
    Migration { version: 16, sql: include_str!("../migrations/postgres/0016_pseudonyms.sql") },
    Migration {
        version: 17,
        sql: include_str!("../migrations/postgres/0017_candidate_reasons.sql"),
    },
    Migration { version: 18, sql: include_str!("../migrations/postgres/0018_overlay.sql") },
    Migration { version: 19, sql: include_str!("../migrations/postgres/0019_mcp_flags.sql") },
    Migration {
        version: 20,
        sql: include_str!("../migrations/postgres/0020_descriptor_mappings.sql"),
    },
    Migration { version: 21, sql: include_str!("../migrations/postgres/0021_privacy_mode.sql") },
];

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
