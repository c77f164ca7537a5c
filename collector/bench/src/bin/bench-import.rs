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
//! `cargo run --release -p aiscout-bench --bin bench-import -- sqlite|postgres [ROWS]
//! [--sightings N]` (PostgreSQL: `AISCOUT_BENCH_PG_URL`, default
//! `postgres://postgres@127.0.0.1:5432/test`, in a fresh schema that is dropped afterwards).
//! Results are in `collector/BENCH-IMPORT.md`.
#![allow(clippy::print_stdout, clippy::unwrap_used, clippy::expect_used)] // A benchmark tool.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use aiscout_bench::data::{self, AI_MERCHANTS as AI, FILL_DEVICES as DEVICES};
use aiscout_collector::ingest::file::{self, Input};
use aiscout_collector::join;
use aiscout_collector::model::UsageFilter;
use aiscout_collector::review;
use aiscout_collector::store::Store;
use aiscout_signatures::{Catalog, Index};
use aiscout_wire::{InventoryQuery, ReviewStatus};

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
    let rows_out =
        join::inventory(&catalog, &Default::default(), &InventoryQuery::default(), &facts);
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

fn fill_done(sightings: u64, f: &data::Filled) {
    println!(
        "fill: {DEVICES} devices, {DEVICES} people, {sightings} aggregated sightings in {:.1} s",
        f.fill.as_secs_f64()
    );
    println!("fold: {} pending rows in {:.1} s", f.folded, f.fold.as_secs_f64());
    if let Some(a) = f.analyze {
        println!("analyze rollups: {:.1} s", a.as_secs_f64());
    }
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
    data::expense_csv(&dir.path().join("expenses.csv"), rows).unwrap();
    data::litellm_csv(&dir.path().join("litellm.csv"), rows).unwrap();
    println!("generated 2 x {rows} rows in {:.1} s", t.elapsed().as_secs_f64());
    if backend == "postgres" {
        let schema = format!("aiscout_bench_{}", std::process::id());
        let (schema, _) = data::PgSchema::open(&data::pg_base_url(), &schema).await.unwrap();
        if sightings > 0 {
            let filled = data::postgres(schema.url(), &products, sightings).await.unwrap();
            fill_done(sightings, &filled);
        }
        let store = aiscout_collector::store::postgres::PgStore::open(schema.url()).await.unwrap();
        run(store, dir.path(), rows).await;
        schema.drop_schema().await.unwrap();
    } else {
        let db = dir.path().join("b.db");
        if sightings > 0 {
            let filled = data::sqlite(&db, &products, sightings).await.unwrap();
            fill_done(sightings, &filled);
        }
        let store = aiscout_collector::store::sqlite::SqliteStore::open(&db).await.unwrap();
        run(store, dir.path(), rows).await;
    }
}
