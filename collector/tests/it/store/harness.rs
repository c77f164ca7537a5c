//! Fresh databases for the conformance suite: a temporary SQLite file, or a PostgreSQL
//! schema `aiscout_test_<random>` at 127.0.0.1:5432 that is dropped when the harness drops.
//!
//! PostgreSQL: `AISCOUT_TEST_PG_URL` overrides the server URL (default
//! `postgres://postgres@127.0.0.1:5432/test`). A server that cannot be reached fails the test
//! with a message saying so; it is never skipped.

use aiscout_collector::store::postgres::PgStore;
use aiscout_collector::store::sqlite::SqliteStore;

pub(crate) struct Harness<S> {
    pub(crate) store: S,
    _dir: Option<tempfile::TempDir>,
    schema: Option<String>,
}

pub(crate) fn pg_url() -> String {
    std::env::var("AISCOUT_TEST_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

pub(crate) async fn sqlite() -> Harness<SqliteStore> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("aiscout.db");
    drop(SqliteStore::open(&path).await.unwrap());
    // Opening twice proves the migrations are idempotent.
    let store = SqliteStore::open(&path).await.unwrap();
    Harness { store, _dir: Some(dir), schema: None }
}

/// Creates a fresh schema and returns a URL whose connections use it as `search_path`.
pub(crate) async fn pg_schema() -> (String, String) {
    let base = pg_url();
    let (client, conn) =
        tokio_postgres::connect(&base, tokio_postgres::NoTls).await.unwrap_or_else(|e| {
            panic!("PostgreSQL at {base} is required for this test and is unreachable: {e}")
        });
    let driver = tokio::spawn(conn);
    let suffix = aiscout_collector::credentials::generate("").unwrap();
    let schema = format!("aiscout_test_{}", suffix.chars().take(16).collect::<String>());
    client.batch_execute(&format!("CREATE SCHEMA {schema}")).await.unwrap();
    drop(client);
    driver.await.unwrap().unwrap();
    let sep = if base.contains('?') { '&' } else { '?' };
    (format!("{base}{sep}options=-csearch_path%3D{schema}"), schema)
}

pub(crate) async fn postgres() -> Harness<PgStore> {
    let (url, schema) = pg_schema().await;
    drop(PgStore::open(&url).await.unwrap());
    let store = PgStore::open(&url).await.unwrap();
    Harness { store, _dir: None, schema: Some(schema) }
}

/// Drops a test schema, from any context (a Drop impl cannot await).
pub(crate) fn drop_schema(schema: &str) {
    let sql = format!("DROP SCHEMA IF EXISTS {schema} CASCADE");
    let base = pg_url();
    let done = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let (client, conn) = tokio_postgres::connect(&base, tokio_postgres::NoTls).await?;
            let driver = tokio::spawn(conn);
            client.batch_execute(&sql).await?;
            drop(client);
            driver.await.ok();
            Ok::<(), tokio_postgres::Error>(())
        })
    })
    .join();
    if !matches!(done, Ok(Ok(()))) {
        eprintln!("warning: could not drop test schema {schema}");
    }
}

impl<S> Harness<S> {
    /// The temporary folder of a SQLite harness (the database is `aiscout.db` in it).
    pub(crate) fn dir(&self) -> Option<&std::path::Path> {
        self._dir.as_ref().map(tempfile::TempDir::path)
    }

    /// The schema of a PostgreSQL harness.
    pub(crate) fn schema(&self) -> Option<&str> {
        self.schema.as_deref()
    }
}

impl<S> Drop for Harness<S> {
    fn drop(&mut self) {
        if let Some(schema) = &self.schema {
            drop_schema(schema);
        }
    }
}
