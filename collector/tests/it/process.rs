//! The real `aiscout-collector` binary as operators run it: `serve` in a child process with a
//! generated certificate trusted by a rustls client, SIGKILL during ingest on SQLite and on
//! PostgreSQL, the `token` CLI against a running server's database, `--plain-http`, and
//! `check-config`.
//!
//! Every child process is killed and reaped in `Drop`; waits are on events (a stdout line, an
//! acknowledgement count) with generous deadlines that fail with a message.
// Test helpers (not #[test] fns) unwrap and panic: a failure there is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::print_stderr)]

use crate::store::harness::{drop_schema, pg_schema};
use std::collections::{BTreeMap, BTreeSet};
use std::io::BufRead;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use aiscout_collector::client::{Connection, tls_config};
use aiscout_wire::{AgentInfo, BatchAck, Sighting, SightingBatch, SightingKind, UnixSecs};
use http_body_util::{BodyExt, Empty};
use hyper::{Method, StatusCode};
use hyper_util::rt::TokioIo;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use serde_json::{Value, json};

pub(crate) const BIN: &str = env!("CARGO_BIN_EXE_aiscout-collector");
const SECRET: &str = "process-test-enroll-secret-0123456789abcdef";
/// Generous: a debug build on a loaded 2-core machine.
const DEADLINE: Duration = Duration::from_secs(120);
/// Distinct sightings per batch in the kill test.
const PER_BATCH: i64 = 20;
/// Acknowledged batches to wait for before the SIGKILL.
const ACKS_BEFORE_KILL: u64 = 60;
/// Upper bound on batches the senders take, so their loops end even if the kill never comes.
const MAX_BATCHES: u64 = 200_000;
/// Window of batch 0; batch `k` uses `WINDOW0 + k * 3600`, so windows identify batches.
const WINDOW0: i64 = 1_735_689_600;

/// A running `aiscout-collector serve`, killed (SIGKILL) and reaped on drop.
pub(crate) struct Collector {
    pub(crate) child: Child,
    lines: mpsc::Receiver<String>,
    pub(crate) scheme: String,
    pub(crate) addr: SocketAddr,
}

impl Collector {
    /// Starts `serve` with `args` placed before the subcommand and waits for `listening on`.
    pub(crate) fn start(data_dir: &Path, args: &[&str]) -> Collector {
        Collector::start_under(&[], data_dir, args)
    }

    /// [`Collector::start`] run by `wrapper` (a command that execs the rest of its arguments,
    /// such as `prlimit --nofile=...`), so the child's pid is the collector's.
    pub(crate) fn start_under(wrapper: &[&str], data_dir: &Path, args: &[&str]) -> Collector {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(data_dir.join("serve.log"))
            .unwrap();
        let mut command = match wrapper.split_first() {
            Some((program, rest)) => {
                let mut c = Command::new(program);
                c.args(rest).arg(BIN);
                c
            }
            None => Command::new(BIN),
        };
        let mut child = command
            .args(args)
            .arg("--listen")
            .arg("127.0.0.1:0")
            .arg("--data-dir")
            .arg(data_dir)
            .arg("serve")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        // Ends when the child's stdout closes (it exited or was killed).
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut collector =
            Collector { child, lines, scheme: String::new(), addr: ([0; 4], 0).into() };
        let line = collector.wait_line("listening on ");
        let url = line.trim_start_matches("listening on ");
        let (scheme, addr) = url.split_once("://").unwrap();
        collector.scheme = scheme.to_owned();
        collector.addr = addr.parse().unwrap();
        collector
    }

    /// The next stdout line starting with `prefix` (earlier lines are skipped).
    pub(crate) fn wait_line(&mut self, prefix: &str) -> String {
        let until = std::time::Instant::now() + DEADLINE;
        loop {
            let left = until.saturating_duration_since(std::time::Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line.starts_with(prefix) => return line,
                Ok(_) => {}
                Err(e) => {
                    let status = self.child.try_wait();
                    panic!("no {prefix:?} line from the collector ({e}); child status {status:?}")
                }
            }
        }
    }

    /// SIGKILL, then reap.
    pub(crate) fn kill(&mut self) {
        // An error means the child has already exited, which is what we want.
        let _killed = self.child.kill();
        let _reaped = self.child.wait();
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The collector's generated certificate, as a trust root.
pub(crate) fn generated_cert(data_dir: &Path) -> CertificateDer<'static> {
    let pem = std::fs::read(data_dir.join("cert.pem")).unwrap();
    CertificateDer::pem_slice_iter(&pem).next().unwrap().unwrap()
}

pub(crate) async fn connect(
    addr: SocketAddr,
    ca: &CertificateDer<'static>,
    http2: bool,
) -> Connection {
    let tls = tls_config(std::slice::from_ref(ca), http2).unwrap();
    Connection::connect(addr, "localhost", tls).await.unwrap()
}

/// Two `serve` processes on the database `db`, with the same `config` and enroll secret and
/// data folders `dir/one` and `dir/two` (returned beside them, for their certificates).
pub(crate) fn two_collectors(
    dir: &Path,
    config: &Path,
    db: &str,
) -> (Collector, Collector, PathBuf, PathBuf) {
    let secret = enroll_secret_file(dir);
    let (d1, d2) = (dir.join("one"), dir.join("two"));
    std::fs::create_dir_all(&d1).unwrap();
    std::fs::create_dir_all(&d2).unwrap();
    let args = [
        "--config",
        config.to_str().unwrap(),
        "--enroll-secret-file",
        secret.to_str().unwrap(),
        "--db",
        db,
    ];
    let one = Collector::start(&d1, &args);
    let two = Collector::start(&d2, &args);
    (one, two, d1, d2)
}

pub(crate) fn enroll_secret_file(dir: &Path) -> PathBuf {
    let path = dir.join("enroll-secret");
    std::fs::write(&path, SECRET).unwrap();
    path
}

pub(crate) async fn enroll(c: &mut Connection, host: &str) -> String {
    let body = json!({"enroll_secret": SECRET, "device": {"host_id": host, "hostname": host,
        "os": "linux", "os_version": "12", "agent_version": "0.1.0"}});
    let (status, bytes) =
        c.send(Method::POST, "/api/v1/enroll", None, body.to_string()).await.unwrap();
    assert_eq!(status, StatusCode::OK, "{bytes:?}");
    let v: Value = serde_json::from_slice(&bytes).unwrap();
    v["node_key"].as_str().unwrap().to_owned()
}

/// Batch `k`: `PER_BATCH` distinct sightings, each counted once, all in window `k`.
pub(crate) fn batch(k: u64) -> Vec<u8> {
    let window = WINDOW0 + i64::try_from(k).unwrap() * 3600;
    let sightings = (0..PER_BATCH)
        .map(|j| Sighting {
            product: "openai.chatgpt".into(),
            kind: SightingKind::TlsSni,
            value: format!("host-{j}.chatgpt.com"),
            user: None,
            process: Some("firefox".into()),
            first_seen: UnixSecs(window + j),
            last_seen: UnixSecs(window + j + 1),
            count: 1,
            window: UnixSecs(window),
            removed: false,
            flags: Vec::new(),
        })
        .collect();
    let b = SightingBatch {
        batch_id: format!("batch-{k:06}"),
        agent: AgentInfo { version: "0.1.0".into(), catalog_version: 1 },
        sightings,
        dropped: 0,
        evicted: 0,
    };
    serde_json::to_vec(&b).unwrap()
}

/// Where the kill test's database lives, and how to read it back directly.
enum Db {
    Sqlite { path: PathBuf, url: String },
    Postgres { url: String, schema: String },
}

impl Db {
    fn args(&self) -> Vec<&str> {
        match self {
            Db::Sqlite { url, .. } | Db::Postgres { url, .. } => vec!["--db", url],
        }
    }

    /// Per window (= per batch): (rows, summed count).
    async fn windows(&self) -> BTreeMap<i64, (i64, i64)> {
        const SQL: &str =
            "SELECT window_start, COUNT(*), SUM(count) FROM sightings GROUP BY window_start";
        match self {
            Db::Sqlite { path, .. } => {
                let path = path.clone();
                tokio::task::spawn_blocking(move || {
                    let conn = aiscout_collector::store::sqlite::open(&path).unwrap();
                    let mut stmt = conn.prepare(SQL).unwrap();
                    stmt.query_map([], |r| Ok((r.get(0)?, (r.get(1)?, r.get(2)?))))
                        .unwrap()
                        .collect::<Result<BTreeMap<_, _>, _>>()
                        .unwrap()
                })
                .await
                .unwrap()
            }
            Db::Postgres { url, .. } => {
                let (client, conn) =
                    tokio_postgres::connect(url, tokio_postgres::NoTls).await.unwrap();
                let driver = tokio::spawn(conn);
                let sql = "SELECT window_start, COUNT(*), SUM(count)::bigint FROM sightings
                           GROUP BY window_start";
                let rows = client.query(sql, &[]).await.unwrap();
                drop(client);
                driver.await.unwrap().unwrap();
                rows.iter().map(|r| (r.get(0), (r.get(1), r.get(2)))).collect()
            }
        }
    }
}

impl Drop for Db {
    fn drop(&mut self) {
        if let Db::Postgres { schema, .. } = self {
            drop_schema(schema);
        }
    }
}

/// What one sender saw: the batches acknowledged, and the one it had in flight when the
/// connection died (if any).
struct Sent {
    acked: Vec<u64>,
    unacked: Option<u64>,
}

async fn send_until_connection_dies(
    mut c: Connection,
    key: String,
    next: Arc<AtomicU64>,
    acks: tokio::sync::watch::Sender<u64>,
) -> Sent {
    let mut acked = Vec::new();
    loop {
        let k = next.fetch_add(1, Ordering::SeqCst);
        if k >= MAX_BATCHES {
            return Sent { acked, unacked: None };
        }
        match c.send(Method::POST, "/api/v1/sightings", Some(&key), batch(k)).await {
            Ok((StatusCode::OK, bytes)) => {
                let ack: BatchAck = serde_json::from_slice(&bytes).unwrap();
                assert_eq!(ack.batch_id, format!("batch-{k:06}"));
                assert!(!ack.duplicate, "batch {k} was new");
                acked.push(k);
                acks.send_modify(|n| *n += 1);
            }
            Ok((status, bytes)) => panic!("batch {k}: {status} {bytes:?}"),
            Err(_) => return Sent { acked, unacked: Some(k) },
        }
    }
}

async fn sigkill_during_ingest_loses_no_acknowledged_batch(db: Db) {
    let dir = tempfile::tempdir().unwrap();
    let secret = enroll_secret_file(dir.path());
    let secret = secret.to_str().unwrap();
    let mut args = db.args();
    args.extend([
        "--enroll-secret-file",
        secret,
        "--rate-limit-per-minute",
        "1000000",
        "--rate-limit-burst",
        "1000000",
    ]);
    let mut server = Collector::start(dir.path(), &args);
    assert_eq!(server.scheme, "https");
    let ca = generated_cert(dir.path());

    // Four agents, each on its own kept-alive connection (two HTTP/2, two HTTP/1.1).
    let next = Arc::new(AtomicU64::new(0));
    let (acks, mut acks_seen) = tokio::sync::watch::channel(0_u64);
    let mut keys = Vec::new();
    let mut senders = Vec::new();
    for i in 0..4 {
        let mut c = connect(server.addr, &ca, i % 2 == 0).await;
        let key = enroll(&mut c, &format!("agent-{i}")).await;
        keys.push(key.clone());
        senders.push(tokio::spawn(send_until_connection_dies(
            c,
            key,
            Arc::clone(&next),
            acks.clone(),
        )));
    }
    drop(acks);
    tokio::time::timeout(DEADLINE, acks_seen.wait_for(|n| *n >= ACKS_BEFORE_KILL))
        .await
        .expect("the collector never acknowledged enough batches")
        .unwrap();
    server.kill();

    // Batch ids are unique per device, so a replay must come from the agent that sent it.
    let mut acked = BTreeSet::new();
    let mut unacked = BTreeSet::new();
    let mut sender_of = BTreeMap::new();
    for (agent, s) in senders.into_iter().enumerate() {
        let sent = tokio::time::timeout(DEADLINE, s).await.expect("a sender hung").unwrap();
        sender_of.extend(sent.acked.iter().chain(&sent.unacked).map(|k| (*k, agent)));
        acked.extend(sent.acked);
        unacked.extend(sent.unacked);
    }
    let taken = next.load(Ordering::SeqCst).min(MAX_BATCHES);
    assert_eq!(sender_of.len() as u64, taken, "every batch taken was sent by someone");
    assert!(unacked.len() == 4, "every sender was cut off mid-stream: {unacked:?}");
    assert!(acked.len() as u64 >= ACKS_BEFORE_KILL);

    // Restart on the same database (and certificate); nothing acknowledged is missing.
    let server = Collector::start(dir.path(), &args);
    let windows = db.windows().await;
    for k in &acked {
        let w = WINDOW0 + i64::try_from(*k).unwrap() * 3600;
        assert_eq!(windows.get(&w), Some(&(PER_BATCH, PER_BATCH)), "acknowledged batch {k}");
    }
    for k in &unacked {
        let w = WINDOW0 + i64::try_from(*k).unwrap() * 3600;
        let got = windows.get(&w).copied().unwrap_or((0, 0));
        assert!(
            got == (0, 0) || got == (PER_BATCH, PER_BATCH),
            "unacknowledged batch {k} is all or nothing, not {got:?}"
        );
    }

    // Replay every batch (the node keys survived the crash): acknowledged ones are
    // duplicates, and afterwards every batch is counted exactly once.
    let mut c = connect(server.addr, &ca, true).await;
    for k in 0..taken {
        let key = &keys[sender_of[&k]];
        let (status, bytes) =
            c.send(Method::POST, "/api/v1/sightings", Some(key), batch(k)).await.unwrap();
        assert_eq!(status, StatusCode::OK, "{bytes:?}");
        let ack: BatchAck = serde_json::from_slice(&bytes).unwrap();
        if acked.contains(&k) {
            assert!(ack.duplicate, "acknowledged batch {k} replayed is a duplicate");
        }
    }
    let windows = db.windows().await;
    assert_eq!(windows.len() as u64, taken, "one window per batch");
    assert!(windows.values().all(|v| *v == (PER_BATCH, PER_BATCH)), "{windows:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_ingest_loses_no_acknowledged_batch_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kill.db");
    let url = format!("sqlite:{}", path.display());
    sigkill_during_ingest_loses_no_acknowledged_batch(Db::Sqlite { path, url }).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_ingest_loses_no_acknowledged_batch_on_postgres() {
    let (url, schema) = pg_schema().await;
    sigkill_during_ingest_loses_no_acknowledged_batch(Db::Postgres { url, schema }).await;
}

/// Runs a CLI subcommand with `--data-dir` (before the subcommand, where the flag lives).
pub(crate) fn cli(data_dir: &Path, args: &[&str]) -> Output {
    Command::new(BIN).arg("--data-dir").arg(data_dir).args(args).output().unwrap()
}

pub(crate) fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_cli_creates_lists_and_revokes_while_serve_runs_on_the_same_sqlite_file() {
    let dir = tempfile::tempdir().unwrap();
    let server = Collector::start(dir.path(), &[]);
    let ca = generated_cert(dir.path());
    let mut c = connect(server.addr, &ca, true).await;

    let created = cli(dir.path(), &["token", "create", "--role", "procurement", "--name", "alice"]);
    assert!(created.status.success(), "{created:?}");
    let token = stdout(&created).trim().to_owned();
    assert!(token.starts_with("aistk_"), "{token}");
    let (status, _) = c.send(Method::GET, "/api/v1/devices", Some(&token), "").await.unwrap();
    assert_eq!(status, StatusCode::OK, "a token created by the CLI works at once");

    let again = cli(dir.path(), &["token", "create", "--role", "admin", "--name", "alice"]);
    assert_eq!(again.status.code(), Some(1), "a taken name is refused: {again:?}");

    let listed = cli(dir.path(), &["token", "list"]);
    assert!(listed.status.success(), "{listed:?}");
    let text = stdout(&listed);
    assert!(text.starts_with("alice\tprocurement\tcreated "), "{text}");
    assert!(text.trim_end().ends_with("\tactive"), "{text}");
    assert!(!text.contains(&token), "list never shows the token itself");

    let revoked = cli(dir.path(), &["token", "revoke", "alice"]);
    assert!(revoked.status.success(), "{revoked:?}");
    assert_eq!(stdout(&revoked).trim(), "revoked alice");
    let (status, _) = c.send(Method::GET, "/api/v1/devices", Some(&token), "").await.unwrap();
    assert_eq!(status, StatusCode::UNAUTHORIZED, "the revoked token is refused at once");

    let text = stdout(&cli(dir.path(), &["token", "list"]));
    assert!(text.contains("\trevoked "), "{text}");
    let twice = cli(dir.path(), &["token", "revoke", "alice"]);
    assert_eq!(twice.status.code(), Some(1), "nothing left to revoke: {twice:?}");

    // The audit log, read through the API with a fresh admin token, holds all three changes.
    let admin = cli(dir.path(), &["token", "create", "--role", "admin", "--name", "root"]);
    let admin = stdout(&admin).trim().to_owned();
    let (status, bytes) = c.send(Method::GET, "/api/v1/audit", Some(&admin), "").await.unwrap();
    assert_eq!(status, StatusCode::OK);
    let v: Value = serde_json::from_slice(&bytes).unwrap();
    let actions: Vec<&str> =
        v["entries"].as_array().unwrap().iter().map(|e| e["action"].as_str().unwrap()).collect();
    assert_eq!(actions, ["token.create", "token.revoke", "token.create"]);
}

#[test]
fn read_only_commands_never_create_a_database_and_name_where_the_path_came_from() {
    let dir = tempfile::tempdir().unwrap();
    let typo = dir.path().join("no-such-dir").join("aiscout.db");
    let db = format!("sqlite:{}", typo.display());
    let commands: [&[&str]; 6] = [
        &["report", "inventory"],
        &["report", "reconcile", "--format", "csv"],
        &["policy", "export", "--format", "hosts"],
        &["person", "export", "ada@example.com"],
        &["token", "list"],
        &["device", "reenrollments"],
    ];
    for args in commands {
        let out = Command::new(BIN).args(["--db", &db]).args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}: {out:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(&typo.display().to_string()), "{args:?} names the path: {err}");
        assert!(err.contains("(from --db)"), "{args:?} names the flag: {err}");
        assert!(out.stdout.is_empty(), "{args:?} prints no (empty) report: {out:?}");
        assert!(!typo.parent().unwrap().exists(), "{args:?} created the folder");
    }

    // From the data folder: the error says so, and nothing is created there either.
    let data = dir.path().join("data");
    let out = cli(&data, &["report", "inventory"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("data folder"), "{out:?}");
    assert!(!data.exists(), "the data folder was created");

    // `check-config` reads only the configuration: the same paths pass (serve creates them),
    // and neither the folder nor the database is created.
    for args in [vec!["--db", &db, "check-config"], vec!["check-config"]] {
        let out = cli(&data, &args);
        assert!(out.status.success(), "{args:?}: {out:?}");
        assert!(!typo.parent().unwrap().exists(), "{args:?} created the database's folder");
        assert!(!data.exists(), "{args:?} created the data folder");
    }

    // From the config file's `db` setting: the file is named.
    let file = dir.path().join("collector.toml");
    std::fs::write(&file, format!("db = {db:?}\n")).unwrap();
    let out =
        Command::new(BIN).arg("--config").arg(&file).args(["token", "list"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("the `db` setting of {}", file.display())), "{err}");

    // A command that writes creates the database; then the same reads succeed.
    let made = cli(&data, &["token", "create", "--role", "viewer", "--name", "v"]);
    assert!(made.status.success(), "{made:?}");
    let out = cli(&data, &["report", "inventory", "--format", "csv"]);
    assert!(out.status.success(), "{out:?}");
}

#[test]
fn a_nested_failure_prints_each_cause_once() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("not-a-database.db");
    std::fs::write(&bad, "this is not SQLite\n".repeat(100)).unwrap();
    let db = format!("sqlite:{}", bad.display());
    let out = Command::new(BIN).args(["--db", &db, "token", "list"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.matches("not a database").count(), 1, "{err}");

    // A closed loopback port: the driver's message and the socket error, once each.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let url = format!("postgres://nobody@127.0.0.1:{port}/x?sslmode=disable");
    let out = Command::new(BIN).args(["--db", &url, "token", "list"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.matches("error connecting to server").count(), 1, "{err}");
    assert_eq!(err.matches("refused").count(), 1, "{err}");
    assert!(err.contains("from --db"), "{err}");

    // An IO failure under the command's own error: the operating system's reason once.
    // `policy export --out` into a folder that does not exist...
    let enoent = std::io::Error::from_raw_os_error(2).to_string();
    let data = dir.path().join("data");
    let made = cli(&data, &["token", "create", "--role", "viewer", "--name", "v"]);
    assert!(made.status.success(), "{made:?}");
    let to = dir.path().join("no-such-folder").join("aiscout.rpz");
    let out = cli(&data, &["policy", "export", "--format", "rpz", "--out", to.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("{}: ", to.display())), "{err}");
    assert_eq!(err.matches(&enoent).count(), 1, "{err}");
    // ...an import of a file that does not exist (its line, then the command's summary)...
    let gone = dir.path().join("gone.csv");
    let out = cli(&data, &["import", "expenses", gone.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("error: gone.csv: "), "{err}");
    assert_eq!(err.matches(&enoent).count(), 1, "{err}");
    // ...and `backup` of a database that does not exist: the store's IO error, under the
    // command's context.
    let absent = format!("sqlite:{}", dir.path().join("absent.db").display());
    let to = dir.path().join("backup.db");
    let out =
        Command::new(BIN).args(["--db", &absent, "backup", "--to"]).arg(&to).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.matches("no collector database here").count(), 1, "{err}");
}

/// A database keeps people one way (issue 21): after people were imported in pseudonymous
/// mode, a command that writes people or looks them up (import, person erase) started with
/// `privacy = "plain"` refuses with exit 1 and says what to do, and stores nothing; a token
/// command needs no setting; the mode the data was written with still works.
#[test]
fn a_switch_of_privacy_mode_on_an_existing_database_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let people = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/people.csv");
    let run = |privacy: &str, args: &[&str]| {
        Command::new(BIN)
            .arg("--data-dir")
            .arg(dir.path())
            .env("AISCOUT_PRIVACY", privacy)
            .args(args)
            .output()
            .unwrap()
    };
    let people = people.to_str().unwrap();
    let first = run("pseudonymous", &["import", "people", people]);
    assert!(first.status.success(), "{first:?}");
    let refused = run("plain", &["import", "people", people]);
    assert_eq!(refused.status.code(), Some(1), "{refused:?}");
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(err.contains("this database keeps people as keyed pseudonyms"), "{err}");
    assert!(err.contains("Start it with privacy = \"pseudonymous\""), "{err}");
    let erase = run("plain", &["person", "erase", "ann.lee@example.com", "--reason", "ticket 4"]);
    assert_eq!(erase.status.code(), Some(1), "an erasure in the other mode would find nothing");
    // Commands that neither write people nor look them up work without the setting.
    let token = run("plain", &["token", "create", "--role", "viewer", "--name", "ops"]);
    assert!(token.status.success(), "{token:?}");
    let again = run("pseudonymous", &["report", "inventory"]);
    assert!(again.status.success(), "{again:?}");
    let db = rusqlite::Connection::open(dir.path().join("aiscout.db")).unwrap();
    let plain: i64 = db
        .query_row("SELECT count(*) FROM people WHERE email LIKE '%@%'", [], |r| r.get(0))
        .unwrap();
    assert_eq!(plain, 0, "the refused import stored plain emails");
}

/// One plain-HTTP/1.1 GET; an error when the peer does not answer HTTP.
async fn plain_get(addr: SocketAddr, path: &str) -> Result<StatusCode, hyper::Error> {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await?;
    tokio::spawn(conn);
    let req = hyper::Request::get(path)
        .header("host", addr.to_string())
        .body(Empty::<axum::body::Bytes>::new())
        .unwrap();
    let response = sender.send_request(req).await?;
    let status = response.status();
    response.into_body().collect().await?;
    Ok(status)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_http_is_served_only_with_the_flag() {
    let tls_dir = tempfile::tempdir().unwrap();
    let tls = Collector::start(tls_dir.path(), &[]);
    assert_eq!(tls.scheme, "https");
    assert!(plain_get(tls.addr, "/healthz").await.is_err(), "no plain HTTP by default");
    let mut c = connect(tls.addr, &generated_cert(tls_dir.path()), false).await;
    assert_eq!(c.send(Method::GET, "/healthz", None, "").await.unwrap().0, StatusCode::OK);

    let plain_dir = tempfile::tempdir().unwrap();
    let plain = Collector::start(plain_dir.path(), &["--plain-http"]);
    assert_eq!(plain.scheme, "http");
    assert_eq!(plain_get(plain.addr, "/healthz").await.unwrap(), StatusCode::OK);
    assert!(!plain_dir.path().join("cert.pem").exists(), "no certificate is generated");
    let ca = generated_cert(tls_dir.path());
    let tls_config = tls_config(std::slice::from_ref(&ca), false).unwrap();
    assert!(
        Connection::connect(plain.addr, "localhost", tls_config).await.is_err(),
        "a plain-HTTP collector does not speak TLS"
    );
}

#[test]
fn check_config_exits_non_zero_listing_every_problem() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("collector.toml");
    std::fs::write(
        &file,
        "listen = \"nowhere\"\nlog_format = \"xml\"\nmax_connections = 0\n\
         tls_cert = \"/nonexistent/cert.pem\"\ncatalog = \"/nonexistent/catalog.bin\"\n",
    )
    .unwrap();
    let out = Command::new(BIN)
        .arg("--config")
        .arg(&file)
        .args(["--db", "mysql://nope", "check-config"])
        .output()
        .unwrap();
    crate::assert_config_problems(
        &out,
        6,
        &["listen:", "db:", "tls_key:", "catalog:", "log_format:", "max_connections:"],
    );
    assert!(out.stdout.is_empty(), "nothing claims the configuration is ok");

    std::fs::write(&file, "listen = \"127.0.0.1:0\"\nlisten_port = 1\n").unwrap();
    let out = Command::new(BIN).arg("--config").arg(&file).arg("check-config").output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("listen_port"), "{out:?}");

    std::fs::write(&file, "listen = \"127.0.0.1:0\"\nlog_format = \"json\"\n").unwrap();
    let out = Command::new(BIN).arg("--config").arg(&file).arg("check-config").output().unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(stdout(&out).trim(), "configuration ok");
}

/// Issue 21 through the binary: `retention run [--dry-run]` with `[retention]` from the config,
/// `person erase EMAIL --reason`, and `check-config` naming a period that outlives the audit log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_run_and_person_erase_from_the_command_line() {
    use aiscout_collector::model::{ExpenseLine, Person};
    use aiscout_collector::store::Store;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let day = 86_400;
    let now = aiscout_collector::store::now();
    {
        let store = aiscout_collector::store::sqlite::SqliteStore::open(&data.join("aiscout.db"))
            .await
            .unwrap();
        store
            .upsert_people(vec![Person {
                email: "ann@example.com".into(),
                name: "Ann Lee".into(),
                department: "Sales".into(),
                manager: None,
            }])
            .await
            .unwrap();
        let line = |key: &str, at: i64| ExpenseLine {
            source: "ramp".into(),
            dedupe_key: key.into(),
            file: "ramp.csv".into(),
            line: 2,
            occurred_at: UnixSecs(at),
            amount_minor: 2_000,
            currency: "USD".into(),
            descriptor: "OPENAI *CHATGPT".into(),
            merchant: "OpenAI".into(),
            payer_email: "ann@example.com".into(),
            payer_name: "Ann Lee".into(),
            department: "Sales".into(),
            candidate: false,
            candidate_reason: String::new(),
            product: Some("openai.chatgpt".into()),
        };
        store
            .add_expenses(vec![line("old", now - 400 * day), line("new", now - 10 * day)], now)
            .await
            .unwrap();
    }
    let config = dir.path().join("collector.toml");
    std::fs::write(
        &config,
        "[retention]\nsightings_days = 90\nexpense_lines_days = 365\ngateway_rows_days = 365\n\
         audit_entries_days = 730\n",
    )
    .unwrap();
    let run = |args: &[&str]| {
        Command::new(BIN)
            .arg("--config")
            .arg(&config)
            .arg("--data-dir")
            .arg(&data)
            .args(args)
            .output()
            .unwrap()
    };
    let dry = run(&["retention", "run", "--dry-run"]);
    assert!(dry.status.success(), "{dry:?}");
    let text = stdout(&dry);
    assert!(text.contains("expense_lines: would delete 1 (older than 365 days"), "{text}");
    assert!(text.contains("sightings: would delete 0"), "{text}");
    let done = run(&["retention", "run"]);
    assert!(done.status.success(), "{done:?}");
    assert!(stdout(&done).contains("expense_lines: deleted 1 "), "{}", stdout(&done));
    assert!(stdout(&run(&["retention", "run"])).contains("expense_lines: deleted 0 "));

    let missing = run(&["person", "erase", "ann@example.com"]);
    assert_eq!(missing.status.code(), Some(2), "--reason is required: {missing:?}");
    let erased = run(&["person", "erase", "Ann@Example.com", "--reason", "DSAR 2026-3"]);
    assert!(erased.status.success(), "{erased:?}");
    let v: Value = serde_json::from_slice(&erased.stdout).unwrap();
    assert_eq!(v["erased"], true);
    assert_eq!(v["rows"]["expense_lines"], 1);
    let export = run(&["person", "export", "ann@example.com"]);
    let v: Value = serde_json::from_slice(&export.stdout).unwrap();
    assert_eq!(v["found"], false);
    let again = run(&["person", "erase", "ann@example.com", "--reason", "DSAR 2026-3"]);
    assert!(again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("nothing is stored"), "{again:?}");

    std::fs::write(&config, "[retention]\nsightings_days = 900\naudit_entries_days = 730\n")
        .unwrap();
    let bad = run(&["check-config"]);
    assert!(!bad.status.success());
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(
        err.contains("retention.sightings_days") && err.contains("retention.expense_lines_days"),
        "{err}"
    );
}

/// The (soft, hard) open-file limits of `pid` (`self` for this process), from `/proc`.
fn nofile(pid: &str) -> (u64, u64) {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let line = limits.lines().find(|l| l.starts_with("Max open files")).unwrap();
    let number = |i: usize| line.split_whitespace().nth(i).unwrap().parse().unwrap();
    (number(3), number(4))
}

/// Issue 14: a service manager's low soft open-file limit is raised at start as far as the
/// hard limit allows (4,096 connections plus 512 of headroom by default); where the hard limit
/// is lower, the soft limit goes up to it and the log says what to change.
#[test]
fn serve_raises_a_low_soft_open_file_limit_up_to_the_hard_one() {
    // Only the soft limit is lowered (an unprivileged process cannot raise its hard one).
    let (_, hard) = nofile("self");
    assert!(hard > 1_024, "this test needs a hard open-file limit above 1,024: {hard}");
    let dir = tempfile::tempdir().unwrap();
    let mut c = Collector::start_under(&["prlimit", "--nofile=256:"], dir.path(), &[]);
    assert_eq!(nofile(&c.child.id().to_string()), (hard.min(4_608), hard));
    c.kill();
    let dir = tempfile::tempdir().unwrap();
    let mut c = Collector::start_under(&["prlimit", "--nofile=256:1024"], dir.path(), &[]);
    assert_eq!(nofile(&c.child.id().to_string()), (1_024, 1_024));
    c.kill();
    let log = std::fs::read_to_string(dir.path().join("serve.log")).unwrap();
    assert!(log.contains("the hard limit allows no more"), "{log}");
    assert!(log.contains("LimitNOFILE"), "{log}");
}
