//! Backup and restore (issue 19) with the real binary: `backup --to` on SQLite while `serve`
//! ingests, and `pg_dump`/`pg_restore` on PostgreSQL; each copy is restored into a fresh
//! collector that must serve the same inventory as the original and know the batches the
//! original acknowledged.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use aiscout_collector::client::Connection;
use aiscout_wire::BatchAck;
use hyper::{Method, StatusCode};
use serde_json::Value;

use crate::process::{
    Collector, batch, cli, connect, enroll, enroll_secret_file, generated_cert, stdout,
};
use crate::store::harness::{drop_schema, pg_schema, pg_url};

/// Batches acknowledged before any backup starts.
const BEFORE: u64 = 20;
/// Batches acknowledged during the SQLite backup run before the backup starts, so the copy
/// overlaps ingest.
const DURING: u64 = 5;
/// Bound on the batches the background sender takes.
const MAX_BATCHES: u64 = 100_000;

fn args(secret: &Path) -> Vec<String> {
    ["--enroll-secret-file", secret.to_str().unwrap()]
        .into_iter()
        .chain(["--rate-limit-per-minute", "1000000", "--rate-limit-burst", "1000000"])
        .map(str::to_owned)
        .collect()
}

async fn send(c: &mut Connection, key: &str, k: u64) -> BatchAck {
    let (status, bytes) =
        c.send(Method::POST, "/api/v1/sightings", Some(key), batch(k)).await.unwrap();
    assert_eq!(status, StatusCode::OK, "batch {k}: {bytes:?}");
    serde_json::from_slice(&bytes).unwrap()
}

async fn inventory(c: &mut Connection, token: &str) -> Value {
    let (status, bytes) = c.send(Method::GET, "/api/v1/inventory", Some(token), "").await.unwrap();
    assert_eq!(status, StatusCode::OK, "{bytes:?}");
    serde_json::from_slice(&bytes).unwrap()
}

/// Per window (one per batch) in a SQLite file: (rows, summed count).
fn sqlite_windows(path: &Path) -> BTreeMap<i64, (i64, i64)> {
    let conn = aiscout_collector::store::sqlite::open(path).unwrap();
    let mut stmt = conn
        .prepare("SELECT window_start, COUNT(*), SUM(count) FROM sightings GROUP BY window_start")
        .unwrap();
    stmt.query_map([], |r| Ok((r.get(0)?, (r.get(1)?, r.get(2)?))))
        .unwrap()
        .collect::<Result<BTreeMap<_, _>, _>>()
        .unwrap()
}

/// An admin token made with the CLI against the database in `args` (so the restored copy
/// holds it too).
fn admin_token(data_dir: &Path, db: &[&str]) -> String {
    let mut argv = db.to_vec();
    argv.extend(["token", "create", "--role", "admin", "--name", "backup-check"]);
    let out = cli(data_dir, &argv);
    assert!(out.status.success(), "{out:?}");
    stdout(&out).trim().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_backup_while_serve_ingests_restores_into_a_collector_serving_the_same_inventory() {
    let dir = tempfile::tempdir().unwrap();
    let secret = enroll_secret_file(dir.path());
    let args = args(&secret);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let server = Collector::start(dir.path(), &args);
    let ca = generated_cert(dir.path());
    let token = admin_token(dir.path(), &[]);
    let mut c = connect(server.addr, &ca, true).await;
    let key = enroll(&mut c, "agent-0").await;
    for k in 0..BEFORE {
        assert!(!send(&mut c, &key, k).await.duplicate);
    }

    // A second agent keeps ingesting while the backup runs.
    let stop = Arc::new(AtomicBool::new(false));
    let (acks, mut acks_seen) = tokio::sync::watch::channel(0_u64);
    let mut c2 = connect(server.addr, &ca, false).await;
    let key2 = enroll(&mut c2, "agent-1").await;
    let sender = tokio::spawn({
        let (stop, key2) = (Arc::clone(&stop), key2.clone());
        async move {
            let mut acked = Vec::new();
            for k in BEFORE..MAX_BATCHES {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                assert!(!send(&mut c2, &key2, k).await.duplicate);
                acked.push(k);
                acks.send_modify(|n| *n += 1);
            }
            acked
        }
    });
    acks_seen.wait_for(|n| *n >= DURING).await.unwrap();
    let copy = dir.path().join("during.db");
    let out = {
        let (dir, copy) = (dir.path().to_owned(), copy.clone());
        tokio::task::spawn_blocking(move || cli(&dir, &["backup", "--to", copy.to_str().unwrap()]))
            .await
            .unwrap()
    };
    let acked_before_backup_ended = *acks_seen.borrow();
    stop.store(true, Ordering::SeqCst);
    let acked_during = sender.await.unwrap();
    assert!(out.status.success(), "{out:?}");
    let said = stdout(&out);
    assert!(said.starts_with("backed up sqlite:"), "{said}");
    assert!(said.contains("schema version "), "{said}");
    let mode = std::fs::metadata(&copy).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the backup is as private as the database");

    // The copy taken under ingest is consistent: every batch acknowledged before the backup
    // started is whole in it, and every other batch is whole or absent.
    let windows = sqlite_windows(&copy);
    let window = |k: u64| 1_735_689_600 + i64::try_from(k).unwrap() * 3600;
    for k in 0..BEFORE + DURING {
        assert_eq!(windows.get(&window(k)), Some(&(20, 20)), "batch {k} in the copy");
    }
    assert!(windows.values().all(|v| *v == (20, 20)), "{windows:?}");
    assert!(windows.len() as u64 <= BEFORE + acked_during.len() as u64);
    assert!(acked_before_backup_ended >= DURING);

    // A second backup once ingest has stopped; a file that exists is never overwritten.
    let copy = dir.path().join("after.db");
    let out = cli(dir.path(), &["backup", "--to", copy.to_str().unwrap()]);
    assert!(out.status.success(), "{out:?}");
    let again = cli(dir.path(), &["backup", "--to", copy.to_str().unwrap()]);
    assert_eq!(again.status.code(), Some(1), "{again:?}");
    let err = String::from_utf8_lossy(&again.stderr);
    assert!(err.contains("a backup never overwrites"), "{err}");
    let original = inventory(&mut c, &token).await;
    assert!(!original["rows"].as_array().unwrap().is_empty(), "{original}");

    // Restore: a fresh collector in a new data folder whose database is the copy.
    let restored_dir = tempfile::tempdir().unwrap();
    std::fs::copy(&copy, restored_dir.path().join("aiscout.db")).unwrap();
    let secret = enroll_secret_file(restored_dir.path());
    let args = self::args(&secret);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let restored = Collector::start(restored_dir.path(), &args);
    let ca = generated_cert(restored_dir.path());
    let mut r = connect(restored.addr, &ca, true).await;
    assert_eq!(inventory(&mut r, &token).await, original, "the same inventory, same token");
    // The agents' node keys and acknowledged batches came along: a replay is a duplicate.
    assert!(send(&mut r, &key, 0).await.duplicate);
    assert!(send(&mut r, &key2, *acked_during.last().unwrap()).await.duplicate);
    drop(server);
}

/// A database made for one test, dropped (connections and all) at the end.
struct Database {
    name: String,
}

impl Drop for Database {
    fn drop(&mut self) {
        let out = Command::new("psql")
            .arg(pg_url())
            .args(["-v", "ON_ERROR_STOP=1", "-qc"])
            .arg(format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name))
            .output();
        if !out.as_ref().is_ok_and(|o| o.status.success()) {
            eprintln!("warning: could not drop test database {}: {out:?}", self.name);
        }
    }
}

struct Schema(String);

impl Drop for Schema {
    fn drop(&mut self) {
        drop_schema(&self.0);
    }
}

/// `url` with its database replaced by `db` (the query string kept).
fn with_database(url: &str, db: &str) -> String {
    let (base, query) = url.split_once('?').map_or((url, None), |(b, q)| (b, Some(q)));
    let (server, _) = base.rsplit_once('/').unwrap();
    match query {
        Some(q) => format!("{server}/{db}?{q}"),
        None => format!("{server}/{db}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_pg_dump_and_pg_restore_into_a_fresh_database_serve_the_same_inventory() {
    let (url, schema) = pg_schema().await;
    let _schema = Schema(schema.clone());
    let dir = tempfile::tempdir().unwrap();
    let secret = enroll_secret_file(dir.path());
    let mut args = vec!["--db".to_owned(), url.clone()];
    args.extend(self::args(&secret));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let server = Collector::start(dir.path(), &args);
    let ca = generated_cert(dir.path());
    let token = admin_token(dir.path(), &["--db", &url]);
    let mut c = connect(server.addr, &ca, true).await;
    let key = enroll(&mut c, "agent-0").await;
    for k in 0..BEFORE {
        assert!(!send(&mut c, &key, k).await.duplicate);
    }
    let original = inventory(&mut c, &token).await;
    assert!(!original["rows"].as_array().unwrap().is_empty(), "{original}");

    // `backup` points PostgreSQL users at pg_dump.
    let refused = cli(dir.path(), &["--db", &url, "backup", "--to", "x.db"]);
    assert_eq!(refused.status.code(), Some(2), "{refused:?}");
    assert!(String::from_utf8_lossy(&refused.stderr).contains("pg_dump"), "{refused:?}");

    // The documented commands, while the collector runs (pg_dump reads one snapshot).
    let dump = dir.path().join("aiscout.dump");
    let out = Command::new("pg_dump")
        .args(["--format=custom", "--no-owner", "--schema", &schema, "--file"])
        .arg(&dump)
        .arg(pg_url())
        .output()
        .unwrap();
    assert!(out.status.success(), "pg_dump: {}", String::from_utf8_lossy(&out.stderr));
    let name = format!("{schema}_restored");
    let created = Command::new("psql")
        .arg(pg_url())
        .arg("-qc")
        .arg(format!("CREATE DATABASE {name}"))
        .output();
    assert!(created.as_ref().unwrap().status.success(), "{created:?}");
    let _database = Database { name: name.clone() };
    let out = Command::new("pg_restore")
        .args(["--no-owner", "--exit-on-error", "--dbname"])
        .arg(with_database(&pg_url(), &name))
        .arg(&dump)
        .output()
        .unwrap();
    assert!(out.status.success(), "pg_restore: {}", String::from_utf8_lossy(&out.stderr));

    // A fresh collector on the restored database.
    let restored_url = with_database(&url, &name);
    let restored_dir = tempfile::tempdir().unwrap();
    let secret = enroll_secret_file(restored_dir.path());
    let mut args = vec!["--db".to_owned(), restored_url];
    args.extend(self::args(&secret));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let restored = Collector::start(restored_dir.path(), &args);
    let ca = generated_cert(restored_dir.path());
    let mut r = connect(restored.addr, &ca, true).await;
    assert_eq!(inventory(&mut r, &token).await, original, "the same inventory, same token");
    assert!(send(&mut r, &key, BEFORE - 1).await.duplicate, "acknowledged batches came along");
    assert!(!send(&mut r, &key, BEFORE).await.duplicate);
    drop((restored, server));
}
