//! Online upgrades (issue 19): a collector refuses to start on a database that a newer
//! collector has migrated, on both backends, naming both versions and what to do. The old
//! and new binaries through a whole upgrade are exercised by `tests/upgrade/run OLD_REV`
//! (docs/upgrade.md), which builds an older revision and so is not part of this run.

use std::process::Command;

use aiscout_collector::store::StoreError;
use aiscout_collector::store::postgres::{self, PgStore};
use aiscout_collector::store::sqlite::{self, SqliteStore};

use crate::store::harness::{drop_schema, pg_schema};

const BIN: &str = env!("CARGO_BIN_EXE_aiscout-collector");

/// The highest migration this build knows (the same number on both backends).
fn known() -> u32 {
    let last = sqlite::MIGRATIONS.last().unwrap().version;
    assert_eq!(postgres::MIGRATIONS.last().unwrap().version, last, "both backends in step");
    last
}

/// `serve` on `db` must exit 1 before listening, with the schema error on stderr.
fn serve_refuses(db: &str) {
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("secret");
    std::fs::write(&secret, "upgrade-test-enroll-secret-0123456789abcdef").unwrap();
    let out = Command::new(BIN)
        .args(["--db", db, "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .arg("--enroll-secret-file")
        .arg(&secret)
        .arg("serve")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    let expected = format!(
        "database schema version {} is newer than this collector's {}: a newer \
         aiscout-collector has migrated it; run that version or a later one (docs/upgrade.md)",
        known() + 1,
        known()
    );
    assert!(err.contains(&expected), "{err}");
    assert!(!String::from_utf8_lossy(&out.stdout).contains("listening on"), "{out:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_collector_refuses_a_sqlite_database_a_newer_collector_migrated() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("aiscout.db");
    drop(SqliteStore::open(&path).await.unwrap());
    let conn = sqlite::open(&path).unwrap();
    conn.execute(
        "INSERT INTO schema_migrations (version, applied_at) VALUES (?1, 0)",
        [known() + 1],
    )
    .unwrap();
    drop(conn);
    let refused = SqliteStore::open(&path).await.err();
    assert!(
        matches!(refused, Some(StoreError::SchemaTooNew { found, known: k }) if found == known() + 1 && k == known()),
        "{refused:?}"
    );
    serve_refuses(&format!("sqlite:{}", path.display()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_collector_refuses_a_postgres_database_a_newer_collector_migrated() {
    let (url, schema) = pg_schema().await;
    struct Schema(String);
    impl Drop for Schema {
        fn drop(&mut self) {
            drop_schema(&self.0);
        }
    }
    let _schema = Schema(schema);
    drop(PgStore::open(&url).await.unwrap());
    let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await.unwrap();
    let driver = tokio::spawn(conn);
    let next = i32::try_from(known() + 1).unwrap();
    client
        .execute("INSERT INTO schema_migrations (version, applied_at) VALUES ($1, 0)", &[&next])
        .await
        .unwrap();
    drop(client);
    driver.await.unwrap().unwrap();
    let refused = PgStore::open(&url).await.err();
    assert!(
        matches!(refused, Some(StoreError::SchemaTooNew { found, known: k }) if found == known() + 1 && k == known()),
        "{refused:?}"
    );
    serve_refuses(&url);
}
