//! Import and report benchmark (issue 7): generates a 1M-line expense CSV (Ramp layout) and a
//! 1M-row LiteLLM spend log, times reading each with the `csv` crate alone (the floor), the
//! imports into SQLite or PostgreSQL (the LiteLLM log twice: the second pass finds every row
//! already stored), and the inventory and reconciliation reports.
//!
//! Before the imports the database is filled with `--sightings N` aggregated sightings (default
//! 10,000,000; 0 skips) over 100,000 devices and 100,000 people, as `aiscout-collector
//! bench-ingest --skip-ingest` fills it (`bench::sqlite_fill` / `bench::pg_fill`), and folded
//! into the rollups with `Store::fold`. Expense payers are the first 20,000 of those people
//! (by name) and LiteLLM users the first 5,000 (by email), so the reports' joins meet them.
//!
//! `cargo run --release -p aiscout-collector --example bench_import -- sqlite|postgres [ROWS]
//! [--sightings N]` (PostgreSQL: `AISCOUT_BENCH_PG_URL`, default
//! `postgres://postgres@127.0.0.1:5432/test`, in a fresh schema that is dropped afterwards).
//! Results are in `collector/BENCH-IMPORT.md`.
#![allow(clippy::print_stdout, clippy::unwrap_used, clippy::expect_used)] // A benchmark tool.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use aiscout_collector::bench::{person_email, person_name};
use aiscout_collector::ingest::file::{self, Input};
use aiscout_collector::join;
use aiscout_collector::model::UsageFilter;
use aiscout_collector::review;
use aiscout_collector::store::Store;
use aiscout_signatures::{Catalog, Index};
use aiscout_wire::{InventoryQuery, ReviewStatus};

const AI: &[(&str, &str)] = &[
    ("OPENAI *CHATGPT SUBSCR", "20.00"),
    ("CURSOR, AI POWERED IDE", "20.00"),
    ("CLAUDE.AI SUBSCRIPTION", "20.00"),
    ("GITHUB COPILOT", "19.00"),
    ("MIDJOURNEY INC.", "30.00"),
];
/// Devices (and people) of the sightings fill.
const DEVICES: u64 = 100_000;
const OTHER: &[&str] = &[
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
        self.next() % n
    }
}

fn expenses(path: &Path, rows: u64) {
    let mut w = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    writeln!(w, "Transaction Date,Transaction Time,Amount,User,Merchant Name,Merchant Description,Ramp Category,Ramp Department,External ID").unwrap();
    let mut r = Rng(0x9e37_79b9_7f4a_7c15);
    for i in 0..rows {
        let user = r.below(20_000);
        let month = 1 + (i * 12 / rows);
        let day = 1 + user % 28;
        let (desc, amount) = if r.below(10) == 0 {
            let (d, a) = AI[usize::try_from(user % 5).unwrap()];
            (d.to_owned(), a.to_owned())
        } else if r.below(100) == 0 {
            ("ACME GPT TOOLS".to_owned(), "9.00".to_owned())
        } else {
            let d = OTHER[usize::try_from(r.below(4)).unwrap()];
            (d.to_owned(), format!("{}.{:02}", r.below(900), r.below(100)))
        };
        writeln!(
            w,
            "{month:02}/{day:02}/25,2025-{month:02}-{day:02} 10:00:00,{amount},{},M,\"{desc}\",SaaS,Dept {},RAMP.{i}",
            person_name(user + 1),
            user % 40
        )
        .unwrap();
    }
}

fn litellm(path: &Path, rows: u64) {
    let mut w = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    writeln!(w, "request_id,spend,total_tokens,prompt_tokens,completion_tokens,startTime,model,custom_llm_provider,user,team_id").unwrap();
    let mut r = Rng(0x2545_f491_4f6c_dd1d);
    let models = ["gpt-4o", "gpt-4o-mini", "claude-sonnet-4-20250514", "text-embedding-3-small"];
    for i in 0..rows {
        let m = models[usize::try_from(r.below(4)).unwrap()];
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
        )
        .unwrap();
    }
}

fn floor(path: &Path) -> (u64, f64) {
    let t = Instant::now();
    let mut rdr = csv::Reader::from_path(path).unwrap();
    let mut rec = csv::StringRecord::new();
    let mut n = 0;
    while rdr.read_record(&mut rec).unwrap() {
        n += 1;
    }
    (n, t.elapsed().as_secs_f64())
}

async fn run<S: Store>(store: S, dir: &Path, rows: u64) {
    let index = Arc::new(Index::new(Catalog::builtin().unwrap()));
    let exp = dir.join("expenses.csv");
    let gw = dir.join("litellm.csv");
    let (n, s) = floor(&exp);
    println!("csv crate floor, expenses: {n} rows in {s:.2} s = {:.0} rows/s", n as f64 / s);
    let (n, s) = floor(&gw);
    println!("csv crate floor, litellm:  {n} rows in {s:.2} s = {:.0} rows/s", n as f64 / s);
    let t = Instant::now();
    let r = file::expenses(
        &store,
        Arc::clone(&index),
        Input::Path(exp),
        None,
        &Default::default(),
        None,
        0,
    )
    .await
    .unwrap();
    let s = t.elapsed().as_secs_f64();
    println!(
        "import expenses ({}): {r}\n  {s:.2} s = {:.0} rows/s",
        store.backend(),
        rows as f64 / s
    );
    // The second import finds every row already stored: the duplicate-counting path.
    for pass in ["import litellm", "import litellm again"] {
        let t = Instant::now();
        let r = file::gateway(
            &store,
            Arc::clone(&index),
            Input::Path(gw.clone()),
            None,
            &Default::default(),
            None,
            0,
        )
        .await
        .unwrap();
        let s = t.elapsed().as_secs_f64();
        println!("{pass} ({}): {r}\n  {s:.2} s = {:.0} rows/s", store.backend(), rows as f64 / s);
    }
    let catalog = Catalog::builtin().unwrap();
    let now = 1_767_225_600; // 2026-01-01
    // Sanctioned products make the reconciliation look for idle subscriptions: each payer's
    // last use of the product on the devices they own.
    let sanctioned: Vec<String> =
        AI.iter().take(3).map(|(d, _)| index.merchant(d).unwrap().product.id.clone()).collect();
    for product in &sanctioned {
        let (review, audit) = review::decide(
            product,
            review::Decision::new(ReviewStatus::Sanctioned, String::new()),
            "bench",
            now,
        );
        store.set_review(review, audit).await.unwrap();
    }
    let t = Instant::now();
    let facts =
        join::gather(&store, UsageFilter::default(), now, join::Purpose::Inventory).await.unwrap();
    let rows_out = join::inventory(&catalog, &InventoryQuery::default(), &facts);
    println!("report inventory: {} rows in {:.2} s", rows_out.len(), t.elapsed().as_secs_f64());
    let t = Instant::now();
    let facts =
        join::gather(&store, UsageFilter::default(), now, join::Purpose::Reconcile).await.unwrap();
    let t_gather = t.elapsed().as_secs_f64();
    let rec = join::reconcile::reconcile(&catalog, &facts, 30);
    println!(
        "report reconcile: {} paid-not-sanctioned rows, {} duplicate products, {} idle \
         subscriptions in {:.2} s (gather {t_gather:.2} s)",
        rec.paid_not_sanctioned.len(),
        rec.duplicate_subscriptions.len(),
        rec.idle_subscriptions.len(),
        t.elapsed().as_secs_f64()
    );
    breakdown(&store, sanctioned).await;
}

/// Times each store read of `join::gather` on its own (after the reports, so on warm caches).
async fn breakdown<S: Store>(store: &S, sanctioned: Vec<String>) {
    let mut line = String::from("store reads:");
    let t = Instant::now();
    let (sources, products) = store.usage(UsageFilter::default()).await.unwrap();
    let n = sources.len() + products.len();
    line += &format!(" usage {:.2} s ({n} rows),", t.elapsed().as_secs_f64());
    let t = Instant::now();
    let n = store.devices().await.unwrap().len();
    line += &format!(" devices {:.2} s ({n}),", t.elapsed().as_secs_f64());
    let t = Instant::now();
    let n = store.owner_last_use(sanctioned).await.unwrap().len();
    line += &format!(" owner_last_use {:.2} s ({n}),", t.elapsed().as_secs_f64());
    let t = Instant::now();
    let n = store.expenses(None).await.unwrap().len();
    line += &format!(" expenses {:.2} s ({n}),", t.elapsed().as_secs_f64());
    let t = Instant::now();
    let n = store.gateway_totals(None).await.unwrap().len();
    line += &format!(" gateway_totals {:.2} s ({n}),", t.elapsed().as_secs_f64());
    let t = Instant::now();
    let n = store.people().await.unwrap().len();
    line += &format!(" people {:.2} s ({n}),", t.elapsed().as_secs_f64());
    let t = Instant::now();
    let n = store.reviews().await.unwrap().len();
    line += &format!(" reviews {:.2} s ({n})", t.elapsed().as_secs_f64());
    println!("{line}");
}

/// Folds what the fill appended, timed.
async fn fold<S: Store>(store: &S) {
    let t = Instant::now();
    let n = store.fold().await.unwrap();
    println!("fold: {n} pending rows in {:.1} s", t.elapsed().as_secs_f64());
}

fn fill_done(sightings: u64, t: Instant) {
    println!(
        "fill: {DEVICES} devices, {DEVICES} people, {sightings} aggregated sightings in {:.1} s",
        t.elapsed().as_secs_f64()
    );
}

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let mut positional = Vec::new();
    let mut sightings: u64 = 10_000_000;
    while let Some(a) = args.next() {
        if a == "--sightings" {
            sightings = args.next().and_then(|n| n.parse().ok()).expect("--sightings N");
        } else {
            positional.push(a);
        }
    }
    let backend = positional.first().map_or("sqlite", String::as_str).to_owned();
    let rows: u64 = positional.get(1).and_then(|r| r.parse().ok()).unwrap_or(1_000_000);
    let products: Vec<String> =
        Catalog::builtin().unwrap().products().iter().map(|p| p.id.clone()).collect();
    let dir = tempfile::tempdir().unwrap();
    let t = Instant::now();
    expenses(&dir.path().join("expenses.csv"), rows);
    litellm(&dir.path().join("litellm.csv"), rows);
    println!("generated 2 x {rows} rows in {:.1} s", t.elapsed().as_secs_f64());
    if backend == "postgres" {
        let base = std::env::var("AISCOUT_BENCH_PG_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned());
        let schema = format!("aiscout_bench_{}", std::process::id());
        let (client, conn) = tokio_postgres::connect(&base, tokio_postgres::NoTls).await.unwrap();
        let driver = tokio::spawn(conn);
        client.batch_execute(&format!("CREATE SCHEMA {schema}")).await.unwrap();
        let url = format!("{base}?options=-csearch_path%3D{schema}");
        let open = || aiscout_collector::store::postgres::PgStore::open(&url);
        // The store migrates the schema the fill writes into; the fill goes in beside it, as
        // bench-ingest's does, and the store that folds and imports opens after it.
        drop(open().await.unwrap());
        if sightings > 0 {
            let t = Instant::now();
            aiscout_collector::bench::pg_fill(&url, &products, DEVICES, sightings).await.unwrap();
            fill_done(sightings, t);
        }
        let store = open().await.unwrap();
        if sightings > 0 {
            fold(&store).await;
            // As bench-ingest does after its fold (autovacuum would get there later).
            let t = Instant::now();
            client
                .batch_execute(&format!(
                    "SET search_path TO {schema}; {}; SET search_path TO DEFAULT",
                    aiscout_collector::bench::PG_ANALYZE_ROLLUPS
                ))
                .await
                .unwrap();
            println!("analyze rollups: {:.1} s", t.elapsed().as_secs_f64());
        }
        run(store, dir.path(), rows).await;
        client.batch_execute(&format!("DROP SCHEMA {schema} CASCADE")).await.unwrap();
        drop(client);
        driver.await.unwrap().unwrap();
    } else {
        let db = dir.path().join("b.db");
        let open = || aiscout_collector::store::sqlite::SqliteStore::open(&db);
        drop(open().await.unwrap());
        if sightings > 0 {
            let t = Instant::now();
            let db = db.clone();
            tokio::task::spawn_blocking(move || {
                aiscout_collector::bench::sqlite_fill(&db, &products, DEVICES, sightings)
            })
            .await
            .unwrap()
            .unwrap();
            fill_done(sightings, t);
        }
        let store = open().await.unwrap();
        if sightings > 0 {
            fold(&store).await;
        }
        run(store, dir.path(), rows).await;
    }
}
