//! The data the benchmark examples share (`examples/bench_import.rs`, issue 7, and
//! `examples/bench_console.rs`, issue 13): deterministic import files that overlap the
//! generated inventory, and databases filled with it.
//!
//! - [`expense_csv`]: Ramp-layout card lines, about 10 % of them catalog products (five
//!   merchants, [`AI_MERCHANTS`]), 1 % an AI-looking candidate, the rest other merchants
//!   (counted by an import, not stored). Payers are `Person 1` to `Person 20000` by name,
//!   so they meet the directory of [`crate::ingest::sqlite_fill`] / [`crate::ingest::pg_fill`].
//! - [`litellm_csv`]: LiteLLM spend log rows, every one stored; users `person1@example.com`
//!   to `person5000@example.com`.
//! - [`people_csv`]: the fill's directory as a people file (same emails, names and
//!   departments, plus managers).
//! - [`sqlite`] / [`postgres`]: [`FILL_DEVICES`] devices and people and N aggregated
//!   sightings, folded into the rollups, timed.
//!
//! A xorshift generator with fixed seeds keeps every run's files identical.

use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::ingest::{PG_ANALYZE_ROLLUPS, person_email, person_name};
use aiscout_collector::store::Store;
use aiscout_collector::store::postgres::PgStore;
use aiscout_collector::store::sqlite::SqliteStore;

/// Devices (and people) of the sightings fill.
pub const FILL_DEVICES: u64 = 100_000;

/// Card descriptors of catalog products, with the monthly amount charged.
pub const AI_MERCHANTS: &[(&str, &str)] = &[
    ("OPENAI *CHATGPT SUBSCR", "20.00"),
    ("CURSOR, AI POWERED IDE", "20.00"),
    ("CLAUDE.AI SUBSCRIPTION", "20.00"),
    ("GITHUB COPILOT", "19.00"),
    ("MIDJOURNEY INC.", "30.00"),
];

const OTHER_MERCHANTS: &[&str] = &[
    "STAPLES 00123 BOSTON MA",
    "UBER *TRIP HELP.UBER.COM",
    "AMAZON WEB SERVICES",
    "DELTA AIR 0062",
];

/// A small deterministic generator (xorshift), so runs are comparable.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        let n = u64::try_from(items.len()).unwrap_or(u64::MAX);
        let i = usize::try_from(self.below(n)).unwrap_or(0);
        // `below` is under `items.len()`, so the index is in bounds for a non-empty slice.
        &items[i.min(items.len().saturating_sub(1))]
    }
}

fn create(path: &Path) -> std::io::Result<std::io::BufWriter<std::fs::File>> {
    Ok(std::io::BufWriter::new(std::fs::File::create(path)?))
}

/// Writes `rows` Ramp-layout expense lines over the twelve months of 2025 (module doc).
///
/// # Errors
/// The file cannot be written.
pub fn expense_csv(path: &Path, rows: u64) -> std::io::Result<()> {
    let mut w = create(path)?;
    writeln!(
        w,
        "Transaction Date,Transaction Time,Amount,User,Merchant Name,Merchant Description,\
         Ramp Category,Ramp Department,External ID"
    )?;
    let mut r = Rng(0x9e37_79b9_7f4a_7c15);
    for i in 0..rows {
        let user = r.below(20_000);
        let month = 1 + (i * 12 / rows);
        let day = 1 + user % 28;
        let (desc, amount) = if r.below(10) == 0 {
            let (d, a) = AI_MERCHANTS[usize::try_from(user % 5).unwrap_or(0)];
            (d.to_owned(), a.to_owned())
        } else if r.below(100) == 0 {
            ("ACME GPT TOOLS".to_owned(), "9.00".to_owned())
        } else {
            let d = *r.pick(OTHER_MERCHANTS);
            (d.to_owned(), format!("{}.{:02}", r.below(900), r.below(100)))
        };
        writeln!(
            w,
            "{month:02}/{day:02}/25,2025-{month:02}-{day:02} 10:00:00,{amount},{},M,\"{desc}\",\
             SaaS,Dept {},RAMP.{i}",
            person_name(user + 1),
            user % 40
        )?;
    }
    w.flush()
}

/// Writes `rows` LiteLLM spend log rows over the twelve months of 2025 (module doc).
///
/// # Errors
/// The file cannot be written.
pub fn litellm_csv(path: &Path, rows: u64) -> std::io::Result<()> {
    let mut w = create(path)?;
    writeln!(
        w,
        "request_id,spend,total_tokens,prompt_tokens,completion_tokens,startTime,model,\
         custom_llm_provider,user,team_id"
    )?;
    let mut r = Rng(0x2545_f491_4f6c_dd1d);
    let models = ["gpt-4o", "gpt-4o-mini", "claude-sonnet-4-20250514", "text-embedding-3-small"];
    for i in 0..rows {
        let m = *r.pick(&models);
        let day = 1 + r.below(28);
        let month = 1 + (i * 12 / rows);
        writeln!(
            w,
            "req-{i},0.{:06},{},{},{},2025-{month:02}-{day:02}T{:02}:00:00Z,{m},openai,{},team-{}",
            r.below(1_000_000),
            r.below(5000),
            r.below(4000),
            r.below(1000),
            r.below(24),
            person_email(r.below(5000) + 1),
            r.below(30)
        )?;
    }
    w.flush()
}

/// Writes the fill's directory of `people` people as a people file (`email,name,department,
/// manager`): the departments the fill gives them, each tenth person managing the next nine.
///
/// # Errors
/// The file cannot be written.
pub fn people_csv(path: &Path, people: u64) -> std::io::Result<()> {
    let mut w = create(path)?;
    writeln!(w, "email,name,department,manager")?;
    for i in 1..=people {
        let manager = if i % 10 == 1 { String::new() } else { person_email(i - (i - 1) % 10) };
        writeln!(w, "{},{},dept-{:02},{manager}", person_email(i), person_name(i), i % 20)?;
    }
    w.flush()
}

/// How long filling a database took.
#[derive(Clone, Copy, Debug)]
pub struct Filled {
    /// The bulk SQL of the fill.
    pub fill: Duration,
    /// [`Store::fold`] of what the fill appended.
    pub fold: Duration,
    /// Pending rows folded.
    pub folded: u64,
    /// `ANALYZE` of the rollups (PostgreSQL only).
    pub analyze: Option<Duration>,
}

/// Migrates the SQLite database at `db`, fills it with [`FILL_DEVICES`] devices and people
/// and `sightings` aggregated sightings of `products` ([`crate::ingest::sqlite_fill`]), and folds them.
///
/// # Errors
/// SQLite fails.
pub async fn sqlite(db: &Path, products: &[String], sightings: u64) -> anyhow::Result<Filled> {
    drop(SqliteStore::open(db).await?);
    let t = Instant::now();
    let (path, products) = (db.to_owned(), products.to_vec());
    tokio::task::spawn_blocking(move || {
        crate::ingest::sqlite_fill(&path, &products, FILL_DEVICES, sightings)
    })
    .await??;
    let fill = t.elapsed();
    let t = Instant::now();
    let folded = SqliteStore::open(db).await?.fold().await?;
    Ok(Filled { fill, fold: t.elapsed(), folded, analyze: None })
}

/// [`sqlite`] for the PostgreSQL database (or schema, by `search_path`) at `url`, with
/// [`PG_ANALYZE_ROLLUPS`] after the fold, as `bench-ingest` does (autovacuum would get there
/// later).
///
/// # Errors
/// PostgreSQL fails.
pub async fn postgres(url: &str, products: &[String], sightings: u64) -> anyhow::Result<Filled> {
    // The store migrates the schema the fill writes into; the fill goes in beside it, as
    // bench-ingest's does, and the store that folds opens after it.
    drop(PgStore::open(url).await?);
    let t = Instant::now();
    crate::ingest::pg_fill(url, products, FILL_DEVICES, sightings).await?;
    let fill = t.elapsed();
    let t = Instant::now();
    let folded = PgStore::open(url).await?.fold().await?;
    let fold = t.elapsed();
    let t = Instant::now();
    let (client, conn) = aiscout_collector::store::postgres_tls::connect(url).await?;
    let driver = tokio::spawn(conn);
    client.batch_execute(PG_ANALYZE_ROLLUPS).await?;
    drop(client);
    driver.await??;
    Ok(Filled { fill, fold, folded, analyze: Some(t.elapsed()) })
}

/// `VACUUM (ANALYZE)` of every table in the schema `url` opens (its `search_path`), one table
/// at a time: what autovacuum does after a bulk load, done now so that a measurement does not
/// depend on when it runs, or on whether it is on (it is off on the project's server). After
/// the fold of a fill, `usage_pending` is otherwise millions of dead rows that every rollup
/// read's "anything pending?" check steps over, and freshly imported tables have no
/// statistics for the planner.
///
/// # Errors
/// PostgreSQL refuses.
pub async fn pg_vacuum(url: &str) -> anyhow::Result<Duration> {
    let t = Instant::now();
    let (client, conn) = aiscout_collector::store::postgres_tls::connect(url).await?;
    let driver = tokio::spawn(conn);
    let tables = client
        .query("SELECT tablename FROM pg_tables WHERE schemaname = current_schema()", &[])
        .await?;
    for row in tables {
        let table: String = row.try_get(0)?;
        // VACUUM takes no parameters; the names come from the catalog, quoted as identifiers.
        client
            .batch_execute(&format!("VACUUM (ANALYZE) \"{}\"", table.replace('"', "\"\"")))
            .await?;
    }
    drop(client);
    driver.await??;
    Ok(t.elapsed())
}

/// The PostgreSQL server of the benchmarks: `AISCOUT_BENCH_PG_URL`, else the project's
/// `postgres://postgres@127.0.0.1:5432/test`.
pub fn pg_base_url() -> String {
    std::env::var("AISCOUT_BENCH_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

/// A schema of its own on the benchmark's PostgreSQL server, so a run leaves the rest of the
/// database alone.
pub struct PgSchema {
    client: tokio_postgres::Client,
    driver: tokio::task::JoinHandle<Result<(), tokio_postgres::Error>>,
    name: String,
    url: String,
}

impl PgSchema {
    /// Creates schema `name` on the server at `base` unless it exists; says whether it did.
    ///
    /// # Errors
    /// PostgreSQL refuses.
    pub async fn open(base: &str, name: &str) -> anyhow::Result<(Self, bool)> {
        if !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            anyhow::bail!("schema name {name:?}: letters, digits and underscores only");
        }
        let (client, conn) = aiscout_collector::store::postgres_tls::connect(base).await?;
        let driver = tokio::spawn(conn);
        let exists = client
            .query_opt("SELECT 1 FROM pg_namespace WHERE nspname = $1", &[&name])
            .await?
            .is_some();
        if !exists {
            client.batch_execute(&format!("CREATE SCHEMA {name}")).await?;
        }
        let sep = if base.contains('?') { '&' } else { '?' };
        let url = format!("{base}{sep}options=-csearch_path%3D{name}");
        Ok((PgSchema { client, driver, name: name.to_owned(), url }, !exists))
    }

    /// The URL that opens the schema (its `search_path`).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Drops the schema with everything in it.
    ///
    /// # Errors
    /// PostgreSQL refuses.
    pub async fn drop_schema(self) -> anyhow::Result<()> {
        self.client.batch_execute(&format!("DROP SCHEMA {} CASCADE", self.name)).await?;
        self.close().await
    }

    /// Closes the admin connection, keeping the schema.
    ///
    /// # Errors
    /// The connection had failed.
    pub async fn close(self) -> anyhow::Result<()> {
        drop(self.client);
        self.driver.await??;
        Ok(())
    }
}
