//! Import and report benchmark (issue 7): generates a 1M-line expense CSV (Ramp layout) and a
//! 1M-row LiteLLM spend log, times reading each with the `csv` crate alone (the floor), the
//! imports into SQLite or PostgreSQL (the LiteLLM log twice: the second pass finds every row
//! already stored), and the inventory and reconciliation reports.
//!
//! `cargo run --release -p aiscout-collector --example bench_import -- sqlite|postgres [ROWS]`
//! (PostgreSQL: `AISCOUT_BENCH_PG_URL`, default `postgres://postgres@127.0.0.1:5432/test`,
//! in a fresh schema that is dropped afterwards). Results are in `collector/BENCH-IMPORT.md`.
#![allow(clippy::print_stdout, clippy::unwrap_used, clippy::expect_used)] // A benchmark tool.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use aiscout_collector::ingest::file::{self, Input};
use aiscout_collector::join;
use aiscout_collector::model::UsageFilter;
use aiscout_collector::store::Store;
use aiscout_signatures::{Catalog, Index};
use aiscout_wire::InventoryQuery;

const AI: &[(&str, &str)] = &[
    ("OPENAI *CHATGPT SUBSCR", "20.00"),
    ("CURSOR, AI POWERED IDE", "20.00"),
    ("CLAUDE.AI SUBSCRIPTION", "20.00"),
    ("GITHUB COPILOT", "19.00"),
    ("MIDJOURNEY INC.", "30.00"),
];
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
            "{month:02}/{day:02}/25,2025-{month:02}-{day:02} 10:00:00,{amount},User {user},M,\"{desc}\",SaaS,Dept {},RAMP.{i}",
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
            "req-{i},0.{:06},{},{},{},2025-{month:02}-{day:02}T{:02}:00:00Z,{m},openai,user{}@example.com,team-{}",
            r.below(1_000_000),
            r.below(5000),
            r.below(4000),
            r.below(1000),
            r.below(24),
            r.below(5000),
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
    let t = Instant::now();
    let facts =
        join::gather(&store, UsageFilter::default(), now, join::Purpose::Inventory).await.unwrap();
    let rows_out = join::inventory(&catalog, &InventoryQuery::default(), &facts);
    println!("report inventory: {} rows in {:.2} s", rows_out.len(), t.elapsed().as_secs_f64());
    let t = Instant::now();
    let facts =
        join::gather(&store, UsageFilter::default(), now, join::Purpose::Reconcile).await.unwrap();
    let rec = join::reconcile::reconcile(&catalog, &facts, 30);
    println!(
        "report reconcile: {} paid-not-sanctioned rows, {} duplicate products in {:.2} s",
        rec.paid_not_sanctioned.len(),
        rec.duplicate_subscriptions.len(),
        t.elapsed().as_secs_f64()
    );
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let backend = args.get(1).map_or("sqlite", String::as_str).to_owned();
    let rows: u64 = args.get(2).and_then(|r| r.parse().ok()).unwrap_or(1_000_000);
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
        let store = aiscout_collector::store::postgres::PgStore::open(&url).await.unwrap();
        run(store, dir.path(), rows).await;
        client.batch_execute(&format!("DROP SCHEMA {schema} CASCADE")).await.unwrap();
        drop(client);
        driver.await.unwrap().unwrap();
    } else {
        let store = aiscout_collector::store::sqlite::SqliteStore::open(&dir.path().join("b.db"))
            .await
            .unwrap();
        run(store, dir.path(), rows).await;
    }
}
