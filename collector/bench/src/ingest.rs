//! `bench-ingest`: the load generator of issue 6's scale goals.
//!
//! Per backend (SQLite, PostgreSQL) in one run:
//! 1. **Floor**: the same sighting rows as the ingest run, inserted into a freshly migrated
//!    database of the same kind by a loop of prepared `INSERT`s in one transaction (rusqlite,
//!    tokio-postgres), with no HTTP, JSON, TLS or idempotence.
//! 2. **Ingest**: the real collector binary (`aiscout-collector serve`, by default the one beside
//!    this executable, `--collector` otherwise) on loopback with its
//!    generated certificate; N simulated agents enroll, then each sends realistic hourly
//!    batches (20-50 aggregated sightings drawn from catalog products) over a bounded number
//!    of kept-alive HTTPS connections. Reports sustained sightings per second, the ratio to
//!    the floor, and p50/p99 acknowledgement latency.
//! 3. **Inventory**: a fresh database filled by bulk SQL with many devices and aggregated
//!    sightings, served by the real collector, queried over HTTPS.
//!
//! Bodies are serialised before the clock starts, so the client spends its CPU on TLS and
//! HTTP only; client and server still share the machine's cores, and the CPU each used is
//! reported (from `/proc`) so the split is visible. Row generation is deterministic (a fixed
//! seed), so runs are comparable.
//!
//! [`crate::data`] holds what the other benchmarks share (`bench-import`, `bench-console`): the
//! generated import files and databases filled with [`sqlite_fill`] / [`pg_fill`].

use std::collections::BTreeSet;
use std::io::BufRead;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use aiscout_wire::{AgentInfo, BatchAck, Sighting, SightingBatch, SightingKind, UnixSecs};
use anyhow::{Context, bail};
use axum::body::Bytes;
use hyper::{Method, StatusCode};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

use aiscout_collector::client::{Connection, tls_config};
use aiscout_collector::store::Store;
use aiscout_collector::store::postgres::PgStore;
use aiscout_collector::store::sqlite::SqliteStore;

/// How long the collector child may take to print its `listening on` line.
const START_DEADLINE: Duration = Duration::from_secs(120);
/// The enroll secret of the benchmark's collectors.
pub(crate) const SECRET: &str = "bench-enroll-secret-0123456789abcdefghij";
/// Start of the first simulated hour (2025-01-01T00:00:00Z).
const HOUR0: i64 = 1_735_689_600;
/// Most stdout lines read while waiting for `listening on`.
const MAX_START_LINES: usize = 100;

/// Which databases to benchmark.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Backend {
    /// SQLite only.
    Sqlite,
    /// PostgreSQL only.
    Postgres,
    /// Both, SQLite first.
    Both,
}

/// Options of `bench-ingest`.
#[derive(Clone, Debug, clap::Args)]
pub struct BenchArgs {
    /// Simulated agents.
    #[arg(long, default_value_t = 10_000)]
    pub agents: usize,
    /// Hourly batches each agent sends.
    #[arg(long, default_value_t = 1)]
    pub rounds: usize,
    /// Fewest sightings in a batch.
    #[arg(long, default_value_t = 20)]
    pub min_sightings: usize,
    /// Most sightings in a batch.
    #[arg(long, default_value_t = 50)]
    pub max_sightings: usize,
    /// Kept-alive HTTPS connections (each carries one request at a time).
    #[arg(long, default_value_t = 64)]
    pub connections: usize,
    /// Use HTTP/1.1 instead of HTTP/2.
    #[arg(long)]
    pub http1: bool,
    /// Backends to run.
    #[arg(long, value_enum, default_value_t = Backend::Both)]
    pub backend: Backend,
    /// PostgreSQL server; each run uses a fresh schema there and drops it.
    #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432/test")]
    pub pg_url: String,
    /// Devices in the inventory database (0 skips the inventory phase).
    #[arg(long, default_value_t = 100_000)]
    pub inventory_devices: u64,
    /// Aggregated sightings in the inventory database.
    #[arg(long, default_value_t = 10_000_000)]
    pub inventory_sightings: u64,
    /// Times each inventory query is repeated.
    #[arg(long, default_value_t = 5)]
    pub inventory_repeats: usize,
    /// Skip the floor and ingest phases.
    #[arg(long)]
    pub skip_ingest: bool,
    /// Directory for databases and collector logs [default: a temporary directory].
    #[arg(long)]
    pub work_dir: Option<PathBuf>,
    /// The collector binary to measure [default: `aiscout-collector` beside this executable,
    /// as `cargo build --release -p aiscout-collector -p aiscout-bench` leaves it].
    #[arg(long, value_name = "PATH")]
    pub collector: Option<PathBuf>,
    /// Send the simulated agents to this running collector or load balancer
    /// (`https://HOST:PORT`) instead of starting one: enrollment and ingest only (no floor, no
    /// inventory, `--backend` ignored), every failed request retried with backoff until
    /// acknowledged, and the acknowledged batches, sightings and counts reported exactly, so
    /// losses and doubles can be computed against the database.
    #[arg(long, value_name = "URL")]
    pub target: Option<String>,
    /// PEM file of the certificates to trust for `--target` [default: the system's roots].
    #[arg(long, value_name = "PATH", requires = "target")]
    pub ca_file: Option<PathBuf>,
    /// File holding the enroll secret of the `--target` collectors [default: the benchmark's
    /// own secret, the one its spawned collectors use].
    #[arg(long, value_name = "PATH", requires = "target")]
    pub enroll_secret_file: Option<PathBuf>,
    /// With `--target`: how long one request may keep being retried before the run fails.
    #[arg(long, value_name = "SECONDS", default_value_t = 300, requires = "target")]
    pub retry_for_seconds: u64,
    /// With `--target`: also write the figures as JSON to this file.
    #[arg(long, value_name = "PATH", requires = "target")]
    pub report: Option<PathBuf>,
    /// Drops this index of the collector's schema before the ingest phase (after the
    /// migrations), to measure what maintaining it costs ingest (e.g. `sightings_last_seen`).
    #[arg(long, value_name = "NAME", value_parser = index_name)]
    pub drop_index: Option<String>,
}

/// An index name as SQL may take it unquoted: letters, digits and `_`.
fn index_name(s: &str) -> Result<String, String> {
    if !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        Ok(s.to_owned())
    } else {
        Err(format!("not an index name: {s:?} (letters, digits and _ only)"))
    }
}

/// The collector binary: `--collector`, else `aiscout-collector` beside this executable.
fn collector_binary(args: &BenchArgs) -> anyhow::Result<PathBuf> {
    let path = match &args.collector {
        Some(path) => path.clone(),
        None => std::env::current_exe()?
            .parent()
            .map(|dir| dir.join("aiscout-collector"))
            .context("this executable has no folder")?,
    };
    if !path.is_file() {
        bail!(
            "no collector binary at {}: build it (`cargo build --release -p aiscout-collector`) \
             or pass --collector PATH",
            path.display()
        );
    }
    Ok(path)
}

/// Runs the benchmark; the report goes to stdout.
pub fn main(args: &BenchArgs) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            say(&format!("error: {e}"));
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            say(&format!("error: {e:#}"));
            ExitCode::FAILURE
        }
    }
}

#[allow(clippy::print_stdout)] // The benchmark's report is its output.
pub(crate) fn say(line: &str) {
    println!("{line}");
}

async fn run(args: &BenchArgs) -> anyhow::Result<()> {
    if args.min_sightings == 0 || args.max_sightings < args.min_sightings {
        bail!("need 1 <= --min-sightings <= --max-sightings");
    }
    if args.agents == 0 || args.connections == 0 || args.rounds == 0 {
        bail!("--agents, --connections and --rounds must be at least 1");
    }
    let catalog = aiscout_signatures::Catalog::builtin().context("builtin catalog")?;
    let started = Instant::now();
    let batches = generate(args, &catalog);
    let rows: usize = batches.iter().map(|b| b.sightings.len()).sum();
    say(&format!(
        "bench-ingest: {} agents x {} round(s), {} batches, {rows} sightings ({}..={} per \
         batch), {} connections over {}, generated in {:.1}s",
        args.agents,
        args.rounds,
        batches.len(),
        args.min_sightings,
        args.max_sightings,
        args.connections,
        if args.http1 { "HTTP/1.1" } else { "HTTP/2" },
        started.elapsed().as_secs_f64()
    ));
    if let Some(url) = &args.target {
        return crate::target::run(args, url, &batches).await;
    }
    let work = args.work_dir.clone().unwrap_or_else(|| {
        std::env::temp_dir().join(format!("aiscout-bench-{}", std::process::id()))
    });
    std::fs::create_dir_all(&work)?;
    let backends: &[Backend] = match args.backend {
        Backend::Sqlite => &[Backend::Sqlite],
        Backend::Postgres => &[Backend::Postgres],
        Backend::Both => &[Backend::Sqlite, Backend::Postgres],
    };
    for backend in backends {
        let name = if *backend == Backend::Sqlite { "sqlite" } else { "postgres" };
        if !args.skip_ingest {
            let floor = with_db(args, &work, *backend, "floor", |db, _| floor(db, args, &batches))
                .await
                .with_context(|| format!("{name} floor"))?;
            say(&format!(
                "[{name}] floor: {rows} prepared INSERTs in one transaction in {:.2}s = {:.0} \
                 rows/s",
                floor.as_secs_f64(),
                per_second(rows, floor)
            ));
            let ingest =
                with_db(args, &work, *backend, "ingest", |db, dir| ingest(db, dir, args, &batches))
                    .await
                    .with_context(|| format!("{name} ingest"))?;
            let rate = per_second(rows, ingest.elapsed);
            say(&format!(
                "[{name}] enroll: {} agents in {:.2}s = {:.0}/s",
                args.agents,
                ingest.enroll.as_secs_f64(),
                per_second(args.agents, ingest.enroll)
            ));
            say(&format!(
                "[{name}] ingest: {rows} sightings in {} batches in {:.2}s = {rate:.0} \
                 sightings/s ({:.0} batches/s); ingest time / floor time = {:.2}x; ack latency p50 {:.1} ms, \
                 p99 {:.1} ms, max {:.1} ms; cpu server {:.1}s, bench client {:.1}s",
                batches.len(),
                ingest.elapsed.as_secs_f64(),
                per_second(batches.len(), ingest.elapsed),
                ingest.elapsed.as_secs_f64() / floor.as_secs_f64().max(1e-9),
                ms(ingest.p50),
                ms(ingest.p99),
                ms(ingest.max),
                ingest.server_cpu,
                ingest.client_cpu
            ));
        }
        if args.inventory_devices > 0 {
            with_db(args, &work, *backend, "inventory", |db, dir| inventory(db, dir, args, name))
                .await
                .with_context(|| format!("{name} inventory"))?;
        }
    }
    if args.work_dir.is_none() {
        std::fs::remove_dir_all(&work)?;
    }
    Ok(())
}

pub(crate) fn per_second(n: usize, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64().max(1e-9)
}

pub(crate) fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

// ---------------------------------------------------------------------------------------------
// Databases

/// A fresh database for one phase.
#[derive(Clone, Debug)]
enum Db {
    Sqlite(PathBuf),
    Postgres { url: String },
}

impl Db {
    fn url(&self) -> String {
        match self {
            Db::Sqlite(path) => format!("sqlite:{}", path.display()),
            Db::Postgres { url } => url.clone(),
        }
    }
}

async fn pg_admin(base: &str, sql: &str) -> anyhow::Result<()> {
    let (client, conn) = aiscout_collector::store::postgres_tls::connect(base)
        .await
        .with_context(|| "connecting to PostgreSQL (see --pg-url)")?;
    let driver = tokio::spawn(conn);
    let result = client.batch_execute(sql).await;
    drop(client);
    driver.await??;
    Ok(result?)
}

/// Runs `phase` on a fresh database, then removes it (a PostgreSQL schema is dropped even
/// when the phase failed).
async fn with_db<T, F, Fut>(
    args: &BenchArgs,
    work: &Path,
    backend: Backend,
    phase: &str,
    f: F,
) -> anyhow::Result<T>
where
    F: FnOnce(Db, PathBuf) -> Fut,
    Fut: Future<Output = anyhow::Result<T>>,
{
    let name = if backend == Backend::Postgres { "postgres" } else { "sqlite" };
    let dir = work.join(format!("{name}-{phase}"));
    if dir.exists() {
        std::fs::remove_dir_all(&dir)?;
    }
    std::fs::create_dir_all(&dir)?;
    let collector_dir = dir.join("collector");
    let result = match backend {
        Backend::Sqlite | Backend::Both => {
            f(Db::Sqlite(dir.join("aiscout.db")), collector_dir).await
        }
        Backend::Postgres => {
            let suffix = aiscout_collector::credentials::generate("")?;
            let schema =
                format!("aiscout_bench_{phase}_{}", suffix.chars().take(12).collect::<String>());
            pg_admin(&args.pg_url, &format!("CREATE SCHEMA {schema}")).await?;
            let sep = if args.pg_url.contains('?') { '&' } else { '?' };
            let url = format!("{}{sep}options=-csearch_path%3D{schema}", args.pg_url);
            let result = f(Db::Postgres { url }, collector_dir).await;
            let dropped = pg_admin(&args.pg_url, &format!("DROP SCHEMA {schema} CASCADE")).await;
            result.and_then(|value| dropped.map(|()| value))
        }
    };
    // Keep the collector's log of a failed phase for the operator.
    if result.is_ok() {
        std::fs::remove_dir_all(&dir)?;
    }
    result
}

/// Creates the schema through the store's own migrations.
async fn migrate(db: &Db) -> anyhow::Result<()> {
    match db {
        Db::Sqlite(path) => drop(SqliteStore::open(path).await?),
        Db::Postgres { url } => drop(PgStore::open(url).await?),
    }
    Ok(())
}

/// Migrates `db`, then drops `index` from it (`--drop-index`); the migrations are numbered,
/// so the collector started next does not create it again.
async fn drop_index(db: &Db, index: &str) -> anyhow::Result<()> {
    migrate(db).await?;
    let sql = format!("DROP INDEX {index}");
    match db {
        Db::Sqlite(path) => {
            aiscout_collector::store::sqlite::open(path)?.execute_batch(&sql)?;
        }
        Db::Postgres { url } => pg_admin(url, &sql).await?,
    }
    say(&format!("dropped index {index} before ingest"));
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Generated load

/// splitmix64: a tiny deterministic generator, so every run sends the same rows.
pub(crate) struct Rng(pub(crate) u64);

impl Rng {
    pub(crate) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        usize::try_from(self.next() % u64::try_from(n.max(1)).unwrap_or(1)).unwrap_or(0)
    }
}

/// One simulated agent's batch.
pub(crate) struct AgentBatch {
    pub(crate) agent: usize,
    pub(crate) sightings: Vec<Sighting>,
    pub(crate) body: Bytes,
}

/// The (kind, value) pairs a product can be sighted by.
fn indicators(p: &aiscout_signatures::catalog::Product) -> Vec<(SightingKind, String)> {
    let mut out = Vec::new();
    for d in &p.domains {
        let host = d.pattern.trim_start_matches("*.").to_owned();
        for kind in [SightingKind::Dns, SightingKind::TlsSni, SightingKind::QuicSni] {
            out.push((kind, host.clone()));
        }
    }
    out.extend(p.macos_bundle_ids.iter().map(|v| (SightingKind::App, v.clone())));
    out.extend(p.process_names.iter().map(|v| (SightingKind::Process, v.clone())));
    out.extend(p.cli_names.iter().map(|v| (SightingKind::Cli, v.clone())));
    out.extend(p.vscode_extensions.iter().map(|v| (SightingKind::Extension, v.clone())));
    out
}

fn generate(args: &BenchArgs, catalog: &aiscout_signatures::Catalog) -> Vec<AgentBatch> {
    let products: Vec<(&str, Vec<(SightingKind, String)>)> = catalog
        .products()
        .iter()
        .map(|p| (p.id.as_str(), indicators(p)))
        .filter(|(_, i)| !i.is_empty())
        .collect();
    let mut rng = Rng(0x00a1_5c00_7000_0006);
    let mut out = Vec::with_capacity(args.agents.saturating_mul(args.rounds));
    for round in 0..args.rounds {
        let window = HOUR0 + i64::try_from(round).unwrap_or(0) * 3600;
        for agent in 0..args.agents {
            let span = args.max_sightings - args.min_sightings + 1;
            let n = args.min_sightings + rng.below(span);
            let user = format!("u{:08x}", rng.next() & 0xffff_ffff);
            // Each agent uses a handful of products; a batch repeats them across indicators,
            // processes and users as a real hour does.
            let mut keys = BTreeSet::new();
            let mut sightings = Vec::with_capacity(n);
            for _ in 0..n.saturating_mul(8) {
                if sightings.len() == n {
                    break;
                }
                let Some((product, inds)) = products.get(rng.below(products.len())) else {
                    break;
                };
                let Some((kind, value)) = inds.get(rng.below(inds.len())) else { continue };
                let network = matches!(
                    kind,
                    SightingKind::Dns | SightingKind::TlsSni | SightingKind::QuicSni
                );
                let process = match rng.below(4) {
                    0 => None,
                    1 => Some("firefox"),
                    2 => Some("chrome"),
                    _ => Some("code"),
                };
                let user = if network && rng.below(2) == 0 { None } else { Some(user.clone()) };
                let key = (*product, kind.as_str(), value.as_str(), user.clone(), process);
                if !keys.insert(key) {
                    continue;
                }
                let first = window + i64::try_from(rng.below(1800)).unwrap_or(0);
                let last = first + i64::try_from(rng.below(1800)).unwrap_or(0);
                sightings.push(Sighting {
                    product: (*product).to_owned(),
                    kind: *kind,
                    value: value.clone(),
                    user,
                    process: process.map(str::to_owned),
                    first_seen: UnixSecs(first),
                    last_seen: UnixSecs(last),
                    count: 1 + rng.next() % 200,
                    window: UnixSecs(window),
                    removed: false,
                    flags: Vec::new(),
                });
            }
            let batch = SightingBatch {
                batch_id: format!("bench-{agent:06}-{round:04}"),
                agent: AgentInfo { version: "0.1.0".into(), catalog_version: catalog.version() },
                sightings,
                dropped: 0,
                evicted: 0,
            };
            let body = Bytes::from(serde_json::to_vec(&batch).unwrap_or_default());
            out.push(AgentBatch { agent, sightings: batch.sightings, body });
        }
    }
    out
}

pub(crate) fn host_id(agent: usize) -> String {
    format!("bench-host-{agent:06}")
}

// ---------------------------------------------------------------------------------------------
// Floor

async fn floor(db: Db, args: &BenchArgs, batches: &[AgentBatch]) -> anyhow::Result<Duration> {
    migrate(&db).await?;
    let agents = args.agents;
    match db {
        Db::Sqlite(path) => {
            let rows: Vec<(i64, Sighting)> = batches
                .iter()
                .flat_map(|b| {
                    let id = i64::try_from(b.agent + 1).unwrap_or(0);
                    b.sightings.iter().map(move |s| (id, s.clone()))
                })
                .collect();
            tokio::task::spawn_blocking(move || sqlite_floor(&path, agents, &rows)).await?
        }
        Db::Postgres { url } => pg_floor(&url, agents, batches).await,
    }
}

fn sqlite_floor(path: &Path, agents: usize, rows: &[(i64, Sighting)]) -> anyhow::Result<Duration> {
    let mut conn = aiscout_collector::store::sqlite::open(path)?;
    let tx = conn.transaction()?;
    {
        let mut stmt = tx.prepare(
            "INSERT INTO devices (id, host_id, hostname, os, os_version, agent_version,
                                  enrolled_at, last_contact) VALUES (?1, ?2, ?2, 'linux', '12',
                                  '0.1.0', 0, 0)",
        )?;
        for a in 0..agents {
            stmt.execute(rusqlite::params![i64::try_from(a + 1)?, host_id(a)])?;
        }
    }
    tx.commit()?;
    let start = Instant::now();
    let tx = conn.transaction()?;
    {
        let mut stmt = tx.prepare(
            "INSERT INTO sightings (device_id, product, kind, value, os_user, process,
                                    window_start, first_seen, last_seen, count)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
        )?;
        for (device, s) in rows {
            stmt.execute(rusqlite::params![
                device,
                s.product,
                s.kind.as_str(),
                s.value,
                s.user.as_deref().unwrap_or(""),
                s.process.as_deref().unwrap_or(""),
                s.window,
                s.first_seen,
                s.last_seen,
                i64::try_from(s.count)?
            ])?;
        }
    }
    tx.commit()?;
    Ok(start.elapsed())
}

async fn pg_floor(url: &str, agents: usize, batches: &[AgentBatch]) -> anyhow::Result<Duration> {
    let (mut client, conn) = aiscout_collector::store::postgres_tls::connect(url).await?;
    let driver = tokio::spawn(conn);
    let ids: Vec<i64> = (1..=i64::try_from(agents)?).collect();
    let hosts: Vec<String> = (0..agents).map(host_id).collect();
    client
        .execute(
            "INSERT INTO devices (id, host_id, hostname, os, os_version, agent_version,
                                  enrolled_at, last_contact)
             SELECT i, h, h, 'linux', '12', '0.1.0', 0, 0 FROM UNNEST($1::bigint[], $2::text[])
             AS t(i, h)",
            &[&ids, &hosts],
        )
        .await?;
    let start = Instant::now();
    let tx = client.transaction().await?;
    let stmt = tx
        .prepare(
            "INSERT INTO sightings (device_id, product, kind, value, os_user, process,
                                    window_start, first_seen, last_seen, count)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .await?;
    for b in batches {
        let device = i64::try_from(b.agent + 1)?;
        for s in &b.sightings {
            let count = i64::try_from(s.count)?;
            tx.execute(
                &stmt,
                &[
                    &device,
                    &s.product,
                    &s.kind.as_str(),
                    &s.value,
                    &s.user.as_deref().unwrap_or(""),
                    &s.process.as_deref().unwrap_or(""),
                    &s.window,
                    &s.first_seen,
                    &s.last_seen,
                    &count,
                ],
            )
            .await?;
        }
    }
    tx.commit().await?;
    let elapsed = start.elapsed();
    drop(client);
    driver.await??;
    Ok(elapsed)
}

// ---------------------------------------------------------------------------------------------
// The collector under test

/// The real collector binary serving `db`, killed and reaped on drop.
struct Collector {
    child: Child,
    addr: SocketAddr,
    ca: CertificateDer<'static>,
}

impl Drop for Collector {
    fn drop(&mut self) {
        // Errors mean the child already exited.
        let _killed = self.child.kill();
        let _reaped = self.child.wait();
    }
}

impl Collector {
    #[allow(clippy::disallowed_methods)] // Reason: the collector's own generated certificate.
    fn start(exe: &Path, db: &Db, data_dir: &Path) -> anyhow::Result<Collector> {
        std::fs::create_dir_all(data_dir)?;
        let secret = data_dir.join("enroll-secret");
        std::fs::write(&secret, SECRET)?;
        let log = std::fs::File::create(data_dir.join("collector.log"))?;
        let mut child = Command::new(exe)
            .arg("--db")
            .arg(db.url())
            .arg("--data-dir")
            .arg(data_dir)
            .arg("--listen")
            .arg("127.0.0.1:0")
            .arg("--enroll-secret-file")
            .arg(&secret)
            .arg("--log-format")
            .arg("json")
            .arg("serve")
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .spawn()
            .context("starting the collector")?;
        let stdout = child.stdout.take().context("collector stdout")?;
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = std::io::BufReader::new(stdout).lines();
            for _ in 0..MAX_START_LINES {
                match lines.next() {
                    Some(Ok(line)) if line.starts_with("listening on ") => {
                        // The receiver may have given up; nothing else to do then.
                        let _sent = tx.send(line);
                        break;
                    }
                    Some(Ok(_)) => {}
                    _ => break,
                }
            }
            // Keep draining so the child never blocks on a full pipe.
            for line in lines {
                if line.is_err() {
                    break;
                }
            }
        });
        let mut collector = Collector {
            child,
            addr: ([127, 0, 0, 1], 0).into(),
            ca: CertificateDer::from(Vec::new()),
        };
        let line = rx
            .recv_timeout(START_DEADLINE)
            .context("the collector did not print `listening on` (see collector.log)")?;
        let addr = line.trim_start_matches("listening on https://");
        collector.addr = addr.parse().with_context(|| format!("bad listen line {line:?}"))?;
        let pem = std::fs::read(data_dir.join("cert.pem"))?;
        collector.ca = CertificateDer::pem_slice_iter(&pem).next().context("no certificate")??;
        Ok(collector)
    }

    async fn connect(&self, http1: bool) -> anyhow::Result<Connection> {
        let tls = tls_config(std::slice::from_ref(&self.ca), !http1)?;
        Ok(Connection::connect(self.addr, "localhost", tls).await?)
    }

    /// User plus system CPU seconds the child has used.
    fn cpu(&self) -> f64 {
        cpu_seconds(&format!("/proc/{}/stat", self.child.id()))
    }
}

/// utime + stime of a `/proc/<pid>/stat` file, in seconds (0 when unreadable).
#[allow(clippy::disallowed_methods)] // Reason: /proc/PID/stat, a small kernel file.
pub(crate) fn cpu_seconds(path: &str) -> f64 {
    let Ok(text) = std::fs::read_to_string(path) else { return 0.0 };
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let Some((_, rest)) = text.rsplit_once(')') else { return 0.0 };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let tick = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok()).unwrap_or(0.0);
    (tick(11) + tick(12)) / 100.0
}

// ---------------------------------------------------------------------------------------------
// Ingest

struct IngestResult {
    enroll: Duration,
    elapsed: Duration,
    p50: Duration,
    p99: Duration,
    max: Duration,
    server_cpu: f64,
    client_cpu: f64,
}

async fn ingest(
    db: Db,
    data_dir: PathBuf,
    args: &BenchArgs,
    batches: &[AgentBatch],
) -> anyhow::Result<IngestResult> {
    if let Some(index) = &args.drop_index {
        drop_index(&db, index).await.with_context(|| format!("dropping index {index}"))?;
    }
    let collector = Collector::start(&collector_binary(args)?, &db, &data_dir)?;
    let mut connections = Vec::with_capacity(args.connections);
    for _ in 0..args.connections {
        connections.push(collector.connect(args.http1).await?);
    }

    // Enrollment: every agent once, spread over the connections.
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for mut c in connections {
        let next = Arc::clone(&next);
        let agents = args.agents;
        tasks.push(tokio::spawn(async move {
            let mut keys = Vec::new();
            for _ in 0..agents {
                let agent = next.fetch_add(1, Ordering::Relaxed);
                if agent >= agents {
                    break;
                }
                let body = serde_json::json!({"enroll_secret": SECRET, "device": {
                    "host_id": host_id(agent), "hostname": host_id(agent), "os": "linux",
                    "os_version": "12", "agent_version": "0.1.0",
                    "owner_email": format!("person{agent}@example.com")}});
                let (status, bytes) =
                    c.send(Method::POST, "/api/v1/enroll", None, body.to_string()).await?;
                if status != StatusCode::OK {
                    bail!("enroll answered {status}: {}", String::from_utf8_lossy(&bytes));
                }
                let v: serde_json::Value = serde_json::from_slice(&bytes)?;
                let key = v["node_key"].as_str().context("no node_key")?.to_owned();
                keys.push((agent, key));
            }
            Ok::<_, anyhow::Error>((c, keys))
        }));
    }
    let mut keys = vec![String::new(); args.agents];
    let mut connections = Vec::new();
    for t in tasks {
        let (c, got) = t.await??;
        connections.push(c);
        for (agent, key) in got {
            if let Some(slot) = keys.get_mut(agent) {
                *slot = key;
            }
        }
    }
    let enroll = start.elapsed();

    // Batches, round by round, over the same connections.
    let keys = Arc::new(keys);
    let jobs: Arc<Vec<(usize, Bytes, usize)>> =
        Arc::new(batches.iter().map(|b| (b.agent, b.body.clone(), b.sightings.len())).collect());
    let next = Arc::new(AtomicUsize::new(0));
    let server_cpu0 = collector.cpu();
    let client_cpu0 = cpu_seconds("/proc/self/stat");
    let start = Instant::now();
    let mut tasks = Vec::new();
    for mut c in connections {
        let (next, jobs, keys) = (Arc::clone(&next), Arc::clone(&jobs), Arc::clone(&keys));
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            for _ in 0..jobs.len() {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some((agent, body, n)) = jobs.get(i) else { break };
                let key = keys.get(*agent).map(String::as_str);
                let sent = Instant::now();
                let (status, bytes) =
                    c.send(Method::POST, "/api/v1/sightings", key, body.clone()).await?;
                latencies.push(sent.elapsed());
                if status != StatusCode::OK {
                    bail!("batch answered {status}: {}", String::from_utf8_lossy(&bytes));
                }
                let ack: BatchAck = serde_json::from_slice(&bytes)?;
                if ack.duplicate || ack.accepted != u64::try_from(*n)? {
                    bail!("unexpected ack {ack:?}");
                }
            }
            Ok::<_, anyhow::Error>(latencies)
        }));
    }
    let mut latencies = Vec::with_capacity(jobs.len());
    for t in tasks {
        latencies.extend(t.await??);
    }
    let elapsed = start.elapsed();
    let server_cpu = collector.cpu() - server_cpu0;
    let client_cpu = cpu_seconds("/proc/self/stat") - client_cpu0;
    latencies.sort_unstable();
    let pick = |q: f64| {
        let i = ((latencies.len() as f64) * q).ceil() as usize;
        latencies.get(i.saturating_sub(1)).copied().unwrap_or_default()
    };
    let result = IngestResult {
        enroll,
        elapsed,
        p50: pick(0.50),
        p99: pick(0.99),
        max: latencies.last().copied().unwrap_or_default(),
        server_cpu,
        client_cpu,
    };
    drop(collector);
    Ok(result)
}

// ---------------------------------------------------------------------------------------------
// Inventory

/// Sightings rows per (device, product) pair: 2 kinds x `WINDOWS` daily windows.
const WINDOWS: u64 = 10;

async fn inventory(db: Db, data_dir: PathBuf, args: &BenchArgs, name: &str) -> anyhow::Result<()> {
    migrate(&db).await?;
    let catalog = aiscout_signatures::Catalog::builtin()?;
    let products: Vec<String> = catalog.products().iter().map(|p| p.id.clone()).collect();
    let devices = args.inventory_devices;
    let rows = args.inventory_sightings;
    let start = Instant::now();
    match &db {
        Db::Sqlite(path) => {
            let (path, products) = (path.clone(), products.clone());
            tokio::task::spawn_blocking(move || sqlite_fill(&path, &products, devices, rows))
                .await??;
        }
        Db::Postgres { url } => pg_fill(url, &products, devices, rows).await?,
    }
    say(&format!(
        "[{name}] inventory data: {devices} devices, {rows} aggregated sightings, {} people, \
         generated in {:.1}s",
        devices,
        start.elapsed().as_secs_f64()
    ));

    // The rollups take in everything generated; a running collector does this as batches
    // arrive, one second's worth at a time.
    let start = Instant::now();
    let folded = match &db {
        Db::Sqlite(path) => SqliteStore::open(path).await?.fold().await?,
        Db::Postgres { url } => PgStore::open(url).await?.fold().await?,
    };
    say(&format!(
        "[{name}] rollups: folded {folded} pending rows in {:.1}s",
        start.elapsed().as_secs_f64()
    ));
    if let Db::Postgres { url } = &db {
        pg_admin(url, PG_ANALYZE_ROLLUPS).await?;
    }

    let token =
        aiscout_collector::credentials::generate(aiscout_collector::credentials::API_TOKEN_PREFIX)?;
    let record = aiscout_collector::model::Token {
        name: "bench".into(),
        role: aiscout_collector::model::Role::Procurement,
        created_at: UnixSecs(aiscout_collector::store::now()),
        revoked_at: None,
    };
    let audit =
        aiscout_collector::review::token_created(&record, aiscout_collector::review::CLI_ACTOR);
    match &db {
        Db::Sqlite(path) => {
            SqliteStore::open(path)
                .await?
                .create_token(record, aiscout_collector::credentials::hash(&token), audit)
                .await?;
        }
        Db::Postgres { url } => {
            PgStore::open(url)
                .await?
                .create_token(record, aiscout_collector::credentials::hash(&token), audit)
                .await?;
        }
    }
    let collector = Collector::start(&collector_binary(args)?, &db, &data_dir)?;
    let mut c = collector.connect(false).await?;
    let product = products.first().cloned().unwrap_or_default();
    let last_day = HOUR0 + i64::try_from(WINDOWS - 1)? * 86_400;
    let queries = [
        ("inventory, no filter", "/api/v1/inventory".to_owned()),
        ("inventory, product", format!("/api/v1/inventory?product={product}")),
        ("inventory, source=dns", "/api/v1/inventory?source=dns".to_owned()),
        ("inventory, last day", format!("/api/v1/inventory?since={last_day}")),
        ("inventory, department", "/api/v1/inventory?department=dept-03".to_owned()),
        ("product detail", format!("/api/v1/products/{product}")),
    ];
    for (label, path) in queries {
        let mut times = Vec::new();
        let mut size = 0;
        for _ in 0..args.inventory_repeats.max(1) {
            let sent = Instant::now();
            let (status, bytes) = c.send(Method::GET, &path, Some(&token), "").await?;
            times.push(sent.elapsed());
            if status != StatusCode::OK {
                bail!("{path} answered {status}: {}", String::from_utf8_lossy(&bytes));
            }
            size = bytes.len();
        }
        times.sort_unstable();
        let median = times.get(times.len() / 2).copied().unwrap_or_default();
        let max = times.last().copied().unwrap_or_default();
        say(&format!(
            "[{name}] {label}: GET {path}: median {:.1} ms, max {:.1} ms over {} runs ({size} \
             bytes)",
            ms(median),
            ms(max),
            times.len()
        ));
    }
    drop(collector);
    Ok(())
}

/// Every generated sighting as the pending usage row its batch would have appended (each
/// window of the generated data stands for one batch). [`sqlite_fill`] and [`pg_fill`] run it
/// last; [`Store::fold`] then takes the rows into the rollups.
pub const PENDING_FROM_SIGHTINGS: &str =
    "INSERT INTO usage_pending (device_id, product, kind, os_user, first_seen, last_seen, count)
     SELECT device_id, product, kind, os_user, first_seen, last_seen, count FROM sightings";

/// What the planner needs after a fold of the generated data on PostgreSQL (`bench-ingest`
/// runs it; autovacuum would get there later).
pub const PG_ANALYZE_ROLLUPS: &str =
    "ANALYZE usage_device; ANALYZE usage_product_device; ANALYZE usage_pending";

/// The owner of generated device `i` (from 1), also the email of generated person `i`:
/// another generator that uses these emails or [`person_name`] overlaps the inventory data.
/// (The fills' SQL writes the same two formats.)
pub fn person_email(i: u64) -> String {
    format!("person{i}@example.com")
}

/// The name of generated person `i` (from 1), in the directory with [`person_email`].
pub fn person_name(i: u64) -> String {
    format!("Person {i}")
}

/// The shape of the generated inventory, shared by both backends' SQL: row `i` belongs to
/// device `i / per_device + 1`; each device uses 5 products (chosen by device id), each seen
/// by 2 kinds in `WINDOWS` daily windows; owners belong to 20 departments.
fn per_device(devices: u64, rows: u64) -> u64 {
    (rows / devices.max(1)).max(1)
}

/// Fills a migrated SQLite database with `devices` devices (owned by [`person_email`]),
/// as many people in 20 departments, and `rows` aggregated sightings of `products` from
/// 2025-01-01 on, then appends them as pending usage ([`PENDING_FROM_SIGHTINGS`]) for
/// [`Store::fold`] and runs `ANALYZE`. Blocking; bulk SQL, no ingest path.
///
/// # Errors
/// SQLite fails, or a count does not fit an `i64`.
pub fn sqlite_fill(
    path: &Path,
    products: &[String],
    devices: u64,
    rows: u64,
) -> anyhow::Result<()> {
    let mut conn = aiscout_collector::store::sqlite::open(path)?;
    let per = i64::try_from(per_device(devices, rows))?;
    let (devices, rows) = (i64::try_from(devices)?, i64::try_from(rows)?);
    let np = i64::try_from(products.len())?;
    let tx = conn.transaction()?;
    tx.execute_batch("CREATE TEMP TABLE bench_products (idx INTEGER PRIMARY KEY, id TEXT)")?;
    for (i, p) in products.iter().enumerate() {
        tx.execute(
            "INSERT INTO bench_products VALUES (?1, ?2)",
            rusqlite::params![i64::try_from(i)?, p],
        )?;
    }
    tx.execute(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?1)
         INSERT INTO devices (id, host_id, hostname, os, os_version, agent_version, owner_email,
                              enrolled_at, last_contact)
         SELECT i, printf('host-%07d', i), printf('host-%07d', i), 'linux', '12', '0.1.0',
                printf('person%d@example.com', i), ?2, ?2 FROM n",
        rusqlite::params![devices, HOUR0],
    )?;
    tx.execute(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?1)
         INSERT INTO people (email, name, department)
         SELECT printf('person%d@example.com', i), printf('Person %d', i),
                printf('dept-%02d', i % 20) FROM n",
        [devices],
    )?;
    tx.commit()?;
    tx_fill_sqlite(&mut conn, per, devices, rows, np)?;
    // What ingest appends beside each batch's sightings, for the fold to take in.
    conn.execute_batch(PENDING_FROM_SIGHTINGS)?;
    conn.execute_batch("ANALYZE")?;
    Ok(())
}

fn tx_fill_sqlite(
    conn: &mut rusqlite::Connection,
    per: i64,
    devices: i64,
    rows: i64,
    np: i64,
) -> anyhow::Result<()> {
    // Row j of a device: product slot j % 5, kind (j / 5) % 2, window (j / 10) % WINDOWS,
    // distinct values when a device has more rows than slots x kinds x windows.
    let windows = i64::try_from(WINDOWS)?;
    let chunk = 100_000_i64.max(per);
    let mut first = 0_i64;
    while first < rows {
        let last = (first + chunk).min(rows);
        let tx = conn.transaction()?;
        tx.execute(
            "WITH RECURSIVE n(i) AS (SELECT ?1 UNION ALL SELECT i + 1 FROM n WHERE i < ?2 - 1)
             INSERT INTO sightings (device_id, product, kind, value, os_user, process,
                                    window_start, first_seen, last_seen, count)
             SELECT d, p.id, CASE WHEN (j / 5) % 2 = 0 THEN 'dns' ELSE 'tls_sni' END,
                    printf('%s.example.com', p.id) || CASE WHEN j / (10 * ?5) > 0
                        THEN printf('-%d', j / (10 * ?5)) ELSE '' END,
                    printf('u%d', d), 'chrome', w, w + 60, w + 3000, 1 + (i % 97)
             FROM (SELECT i, i / ?3 + 1 AS d, i % ?3 AS j,
                          ?6 + ((i % ?3) / 10 % ?5) * 86400 AS w FROM n) AS r
             JOIN bench_products p ON p.idx = (r.d * 7 + (r.j % 5) * 13) % ?4
             WHERE r.d <= ?7",
            rusqlite::params![first, last, per, np, windows, HOUR0, devices],
        )?;
        tx.commit()?;
        first = last;
    }
    Ok(())
}

/// [`sqlite_fill`] for the migrated PostgreSQL database at `url` (the sightings' indexes are
/// dropped for the load and built once after it).
///
/// # Errors
/// PostgreSQL fails, or a count does not fit an `i64`.
pub async fn pg_fill(
    url: &str,
    products: &[String],
    devices: u64,
    rows: u64,
) -> anyhow::Result<()> {
    let (client, conn) = aiscout_collector::store::postgres_tls::connect(url).await?;
    let driver = tokio::spawn(conn);
    let per = i64::try_from(per_device(devices, rows))?;
    let (devices, rows) = (i64::try_from(devices)?, i64::try_from(rows)?);
    let np = i64::try_from(products.len())?;
    let windows = i64::try_from(WINDOWS)?;
    client
        .batch_execute("CREATE TEMP TABLE bench_products (idx BIGINT PRIMARY KEY, id TEXT)")
        .await?;
    let idx: Vec<i64> = (0..np).collect();
    client
        .execute(
            "INSERT INTO bench_products SELECT * FROM UNNEST($1::bigint[], $2::text[])",
            &[&idx, &products],
        )
        .await?;
    client
        .execute(
            "INSERT INTO devices (id, host_id, hostname, os, os_version, agent_version,
                                  owner_email, enrolled_at, last_contact)
             SELECT i, format('host-%s', lpad(i::text, 7, '0')), format('host-%s', i), 'linux',
                    '12', '0.1.0', format('person%s@example.com', i), $2, $2
             FROM generate_series(1, $1::bigint) AS i",
            &[&devices, &HOUR0],
        )
        .await?;
    client
        .execute(
            "INSERT INTO people (email, name, department)
             SELECT format('person%s@example.com', i), format('Person %s', i),
                    format('dept-%s', lpad((i % 20)::text, 2, '0'))
             FROM generate_series(1, $1::bigint) AS i",
            &[&devices],
        )
        .await?;
    // Bulk load without the sightings indexes, then build them once (the same end state as
    // the migration's, reached much faster).
    client
        .batch_execute(
            "ALTER TABLE sightings DROP CONSTRAINT sightings_pkey;
             DROP INDEX sightings_product;",
        )
        .await?;
    client
        .execute(
            "INSERT INTO sightings (device_id, product, kind, value, os_user, process,
                                    window_start, first_seen, last_seen, count)
             SELECT d, p.id, CASE WHEN (j / 5) % 2 = 0 THEN 'dns' ELSE 'tls_sni' END,
                    p.id || '.example.com' || CASE WHEN j / (10 * $4::bigint) > 0
                        THEN '-' || (j / (10 * $4::bigint))::text ELSE '' END,
                    'u' || d::text, 'chrome', w, w + 60, w + 3000, 1 + (i % 97)
             FROM (SELECT i, i / $2::bigint + 1 AS d, i % $2::bigint AS j,
                          $5::bigint + ((i % $2::bigint) / 10 % $4::bigint) * 86400 AS w
                   FROM generate_series(0, $1::bigint - 1) AS i) AS r
             JOIN bench_products p ON p.idx = (r.d * 7 + (r.j % 5) * 13) % $3::bigint
             WHERE r.d <= $6::bigint",
            &[&rows, &per, &np, &windows, &HOUR0, &devices],
        )
        .await?;
    client
        .batch_execute(
            "ALTER TABLE sightings ADD PRIMARY KEY
                (device_id, product, kind, value, os_user, process, window_start);
             CREATE INDEX sightings_product ON sightings(product, last_seen);",
        )
        .await?;
    client.batch_execute(PENDING_FROM_SIGHTINGS).await?;
    client.batch_execute("ANALYZE;").await?;
    drop(client);
    driver.await??;
    Ok(())
}
