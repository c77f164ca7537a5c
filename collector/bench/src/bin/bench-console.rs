//! Console page benchmark (issue 13): every console page's server time, and the API's beside
//! it, on the data of the import benchmark.
//!
//! The database gets what `bench-import` loads (`aiscout_bench::data`): 100,000
//! devices and people and `--sightings N` aggregated sightings (default 10,000,000) folded
//! into the rollups, then `--expenses N` Ramp expense lines (default 1,000,000; about 11 % are
//! AI and stored) and as many LiteLLM log rows, and the fill's directory as a people file.
//! Each import is recorded in the import history, and a few review decisions are made
//! (three products sanctioned, one under review, one unsanctioned, one blocked), so every
//! page has data. On PostgreSQL every table of the schema is then vacuumed and analysed
//! (`bench::data::pg_vacuum`), as autovacuum would have done by then (it is off on the
//! project's server, and the fold of the fill leaves millions of dead pending rows).
//!
//! Then the real router (`api::router`, console included) is served by `api::serve` on
//! 127.0.0.1:0 with an rcgen certificate, as the API tests do. An admin token signs in once
//! (`POST /login`), and each page is fetched once to warm up, then `--repeats R` times
//! (default 20) over one HTTP/2 connection. The client time is request to last byte of the
//! answer. The server time comes from a `server-timing` header that a layer added here
//! (outside the router) sets: from the request reaching the router to the response leaving
//! it. Console pages and JSON answers are built whole before they are returned, so this
//! covers the store reads, the joins and the rendering, but not TLS or HTTP/2 framing.
//!
//! Last, the store reads behind the pages are timed one at a time (`--reads R`, default 5,
//! median shown) with their row counts, so a slow page can be traced to the read that costs.
//!
//! `cargo run --release -p aiscout-bench --bin bench-console -- sqlite|postgres
//! [--sightings N] [--expenses N] [--repeats R] [--reads R] [--data PATH|SCHEMA] [--only PATH]...`
//! (`--only` times just the pages given, for a profiler; `--reads 0` skips the store reads).
//!
//! Without `--data` the database is a temporary SQLite file, or a PostgreSQL schema
//! (`AISCOUT_BENCH_PG_URL`, default `postgres://postgres@127.0.0.1:5432/test`) dropped at the
//! end. With `--data` it is kept: a later run with the same `--data` and a database whose
//! import history is not empty skips the fill and imports and only measures. Results are in
//! `collector/BENCH-CONSOLE.md`.
#![allow(clippy::print_stdout, clippy::unwrap_used, clippy::expect_used, clippy::panic)] // A benchmark tool.

use std::sync::Arc;
use std::time::{Duration, Instant};

use aiscout_bench::data::{self, AI_MERCHANTS, FILL_DEVICES};
use aiscout_bench::ingest::person_email;
use aiscout_collector::api::{self, AppState, ratelimit::RateLimiter};
use aiscout_collector::client::{Connection, tls_config};
use aiscout_collector::ingest::file::{self, FileReport, Input};
use aiscout_collector::model::{AuditFilter, ImportRun, Role, Token, UsageFilter};
use aiscout_collector::store::Store;
use aiscout_collector::store::postgres::PgStore;
use aiscout_collector::store::sqlite::SqliteStore;
use aiscout_collector::telemetry::Metrics;
use aiscout_collector::{credentials, join, review};
use aiscout_signatures::{Catalog, Index};
use aiscout_wire::{InventoryQuery, ReviewStatus};
use axum::extract::Request;
use axum::http::HeaderValue;
use axum::middleware::{self, Next};
use axum::response::Response;
use hyper::{Method, StatusCode};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// The product of the product card and the drill-down.
const PRODUCT: &str = "openai.chatgpt";
/// A generated device (`bench::sqlite_fill` names them `host-%07d`).
const HOST: &str = "host-0000001";
/// Who the bench acts as.
const ACTOR: &str = "bench-admin";

struct Args {
    backend: String,
    sightings: u64,
    expenses: u64,
    repeats: usize,
    reads: usize,
    data: Option<String>,
    only: Vec<String>,
}

fn args() -> Args {
    let mut a = Args {
        backend: "sqlite".into(),
        sightings: 10_000_000,
        expenses: 1_000_000,
        repeats: 20,
        reads: 5,
        data: None,
        only: Vec::new(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = |name: &str| it.next().unwrap_or_else(|| panic!("{name} needs a value"));
        match arg.as_str() {
            "--sightings" => a.sightings = value("--sightings").parse().expect("--sightings N"),
            "--expenses" => a.expenses = value("--expenses").parse().expect("--expenses N"),
            "--repeats" => a.repeats = value("--repeats").parse().expect("--repeats R"),
            "--reads" => a.reads = value("--reads").parse().expect("--reads R"),
            "--data" => a.data = Some(value("--data")),
            "--only" => a.only.push(value("--only")),
            "sqlite" | "postgres" => a.backend = arg,
            other => panic!(
                "unknown argument {other:?}; usage: sqlite|postgres [--sightings N] \
                 [--expenses N] [--repeats R] [--reads R] [--data PATH|SCHEMA] [--only PATH]"
            ),
        }
    }
    a.repeats = a.repeats.max(1);
    a
}

/// The 1, 5 and 15 minute load averages.
#[allow(clippy::disallowed_methods)] // Reason: /proc/loadavg, a small kernel file.
fn load() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn record(report: &FileReport, kind: &str, now: i64) -> ImportRun {
    let i = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
    ImportRun {
        at: aiscout_wire::UnixSecs(now),
        actor: ACTOR.into(),
        kind: kind.into(),
        file: report.file.clone(),
        format: report.format.clone(),
        rows: i(report.tally.rows),
        stored: i(report.stored),
        duplicates: i(report.duplicates),
        errors: i(report.tally.error_count),
        error: String::new(),
    }
}

/// Imports the three files (recorded in the import history, as a console upload is) and
/// makes the review decisions.
async fn prepare<S: Store>(store: &S, rows: u64) {
    let dir = tempfile::tempdir().unwrap();
    let (exp, gw, people) = (
        dir.path().join("expenses.csv"),
        dir.path().join("litellm.csv"),
        dir.path().join("people.csv"),
    );
    let t = Instant::now();
    data::expense_csv(&exp, rows).unwrap();
    data::litellm_csv(&gw, rows).unwrap();
    data::people_csv(&people, FILL_DEVICES).unwrap();
    println!(
        "generated {rows} expense lines, {rows} LiteLLM rows, {FILL_DEVICES} people in {:.1} s",
        secs(t.elapsed())
    );
    let catalog = Catalog::builtin().unwrap();
    let index = Arc::new(Index::new(catalog.clone()));
    let now = aiscout_collector::store::now();
    let t = Instant::now();
    let r = file::expenses(
        store,
        Arc::clone(&index),
        Input::Path(exp),
        None,
        &Default::default(),
        None,
        now,
    )
    .await
    .unwrap();
    println!("import expenses: {r} in {:.1} s", secs(t.elapsed()));
    store.record_import(record(&r, "expenses", now)).await.unwrap();
    let t = Instant::now();
    let r = file::gateway(
        store,
        Arc::clone(&index),
        Input::Path(gw),
        None,
        &Default::default(),
        None,
        now,
    )
    .await
    .unwrap();
    println!("import LiteLLM: {r} in {:.1} s", secs(t.elapsed()));
    store.record_import(record(&r, "gateway", now)).await.unwrap();
    let t = Instant::now();
    let r = file::people(store, Input::Path(people)).await.unwrap();
    println!("import people: {r} in {:.1} s", secs(t.elapsed()));
    store.record_import(record(&r, "people", now)).await.unwrap();
    // The card merchants' products: sanctioned ones make the reconciliation look for idle
    // subscriptions; the rest give the review queue and the audit log every status.
    let merchant = |i: usize| index.merchant(AI_MERCHANTS[i].0).unwrap().product.id.clone();
    let blocked = catalog.products().iter().map(|p| p.id.clone()).find(|p| p.contains("deepseek"));
    let mut decisions = vec![
        (merchant(0), ReviewStatus::Sanctioned),
        (merchant(1), ReviewStatus::Sanctioned),
        (merchant(2), ReviewStatus::Sanctioned),
        (merchant(3), ReviewStatus::UnderReview),
        (merchant(4), ReviewStatus::Unsanctioned),
    ];
    decisions.extend(blocked.map(|p| (p, ReviewStatus::Blocked)));
    for (product, status) in decisions {
        let decision = review::Decision::new(status, format!("bench: {}", status.as_str()));
        let (review, audit) = review::decide(&product, decision, ACTOR, now);
        store.set_review(review, audit).await.unwrap();
    }
}

fn certificates() -> (CertificateDer<'static>, Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)
{
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::from_params(&ca_params, &ca_key);
    let leaf_key = rcgen::KeyPair::generate().unwrap();
    let leaf = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
        .unwrap()
        .signed_by(&leaf_key, &issuer)
        .unwrap();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der()));
    (ca.der().clone(), vec![leaf.der().clone()], key)
}

/// Sets `server-timing: app;dur=MS`: the time from the request reaching the router to the
/// (fully built) response leaving it.
async fn server_timing(request: Request, next: Next) -> Response {
    let t = Instant::now();
    let mut response = next.run(request).await;
    let value = format!("app;dur={:.3}", ms(t.elapsed()));
    if let Ok(v) = HeaderValue::from_str(&value) {
        response.headers_mut().insert("server-timing", v);
    }
    response
}

fn server_ms(headers: &hyper::HeaderMap) -> Option<f64> {
    let v = headers.get("server-timing")?.to_str().ok()?;
    v.split_once("dur=")?.1.parse().ok()
}

/// One page's timings.
struct Timed {
    path: String,
    /// The warm-up request: the first after start, so it builds what the cache keeps.
    first: Duration,
    client: Vec<Duration>,
    server: Vec<f64>,
    bytes: usize,
}

/// Nearest-rank percentile of sorted values.
fn pct<T: Copy + Default>(sorted: &[T], p: f64) -> T {
    if sorted.is_empty() {
        return T::default();
    }
    let rank = (p / 100.0 * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

impl Timed {
    fn row(&mut self) -> String {
        self.client.sort_unstable();
        self.server.sort_by(f64::total_cmp);
        let c = |p: f64| ms(pct(&self.client, p));
        let s = |p: f64| pct(&self.server, p);
        format!(
            "| `{}` | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {} |",
            self.path,
            ms(self.first),
            c(50.0),
            c(95.0),
            ms(self.client.last().copied().unwrap_or_default()),
            s(50.0),
            s(95.0),
            self.bytes
        )
    }
}

/// One request with string headers; the whole answer (up to 256 MiB).
async fn send(
    c: &mut Connection,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: String,
) -> (StatusCode, hyper::HeaderMap, hyper::body::Bytes) {
    let headers: Vec<(hyper::header::HeaderName, HeaderValue)> =
        headers.iter().map(|(k, v)| (k.parse().unwrap(), v.parse().unwrap())).collect();
    let r = c.request(method, path, &headers, body, 256 << 20).await.unwrap();
    (r.status, r.headers, r.body)
}

async fn fetch(
    c: &mut Connection,
    path: &str,
    headers: &[(&str, &str)],
) -> (Duration, Option<f64>, usize) {
    let t = Instant::now();
    let (status, h, body) = send(c, Method::GET, path, headers, String::new()).await;
    let took = t.elapsed();
    assert_eq!(
        status,
        StatusCode::OK,
        "{path}: {}",
        String::from_utf8_lossy(&body[..body.len().min(2000)])
    );
    (took, server_ms(&h), body.len())
}

/// Serves the router, signs in and times every page.
async fn pages<S: Store + Clone>(store: S, args: &Args) {
    let secret = credentials::generate(credentials::API_TOKEN_PREFIX).unwrap();
    let name = format!("{ACTOR}-{}", std::process::id());
    let token = Token {
        name,
        role: Role::Admin,
        created_at: aiscout_wire::UnixSecs(aiscout_collector::store::now()),
        revoked_at: None,
    };
    let audit = review::token_created(&token, "cli");
    store.create_token(token, credentials::hash(&secret), audit).await.unwrap();

    let (ca, chain, key) = certificates();
    let tls = api::tls::server_config(chain, key).unwrap();
    let state = Arc::new(AppState {
        store,
        catalog: Catalog::builtin().unwrap(),
        artifact: None,
        enroll_secret: None,
        metrics: Metrics::default(),
        limiter: RateLimiter::new(1, 100),
        mappings: Default::default(),
        console: Default::default(),
        sso: None,
        policy: Default::default(),
        cache: Default::default(),
        metrics_token: None,
        uploads: api::upload::Uploads::new(std::env::temp_dir().join("aiscout-bench-uploads"), 2),
        alerts: Arc::default(),
        enrollment: Default::default(),
        overlay: None,
        overlay_cache: Default::default(),
        risk: Default::default(),
    });
    let counters = Arc::clone(&state.metrics.connections);
    let router = api::router(state).layer(middleware::from_fn(server_timing));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let limits = api::Limits { max_connections: 64, ..api::Limits::default() };
    let server = tokio::spawn(api::serve(listener, router, Some(tls), limits, counters, async {
        drop(stopped.await);
    }));
    let mut c =
        Connection::connect(addr, "localhost", tls_config(&[ca], true).unwrap()).await.unwrap();
    assert!(c.is_http2());

    let form = ("content-type", "application/x-www-form-urlencoded");
    let (status, h, body) =
        send(&mut c, Method::POST, "/login", &[form], format!("token={secret}&next=%2F")).await;
    assert_eq!(status, StatusCode::SEE_OTHER, "{}", String::from_utf8_lossy(&body));
    let set = h["set-cookie"].to_str().unwrap();
    let cookie = set.split(';').next().unwrap().to_owned();

    let email = person_email(1);
    let console = [
        "/".to_owned(),
        "/inventory".into(),
        "/inventory?status=unreviewed&sort=spend".into(),
        "/inventory.csv".into(),
        format!("/products/{PRODUCT}"),
        "/review".into(),
        "/reconcile".into(),
        format!("/reconcile/lines?product={PRODUCT}"),
        "/devices".into(),
        format!("/devices/{HOST}"),
        "/people".into(),
        format!("/people/{email}"),
        "/imports".into(),
        "/audit".into(),
        "/admin".into(),
    ];
    let api_paths = [
        "/api/v1/inventory".to_owned(),
        format!("/api/v1/products/{PRODUCT}"),
        "/api/v1/reports/reconcile".into(),
        "/api/v1/devices".into(),
    ];
    let bearer = format!("Bearer {secret}");
    println!(
        "\ntiming pages: {} requests each after one warm-up, one HTTP/2 connection; load {}",
        args.repeats,
        load()
    );
    let header = "| page | first ms | p50 ms | p95 ms | max ms | server p50 ms | server p95 ms | bytes |\n\
                  | --- | --- | --- | --- | --- | --- | --- | --- |";
    let mut table = String::from(header);
    let t_all = Instant::now();
    for (paths, auth) in [
        (&console[..], ("cookie", cookie.as_str())),
        (&api_paths[..], ("authorization", bearer.as_str())),
    ] {
        if auth.0 == "authorization" {
            table.push_str("\n\nAPI, same data:\n\n");
            table.push_str(header);
        }
        for path in paths.iter().filter(|p| args.only.is_empty() || args.only.contains(p)) {
            let headers = [auth];
            let (first, _, bytes) = fetch(&mut c, path, &headers).await;
            let mut timed =
                Timed { path: path.clone(), first, client: Vec::new(), server: Vec::new(), bytes };
            for _ in 0..args.repeats {
                let (took, server, bytes) = fetch(&mut c, path, &headers).await;
                timed.client.push(took);
                timed.server.extend(server);
                timed.bytes = bytes;
            }
            let row = timed.row();
            println!("{row}");
            table.push('\n');
            table.push_str(&row);
        }
    }
    println!("\n{table}\n\n(pages timed in {:.1} s; load {})", secs(t_all.elapsed()), load());
    drop(c);
    // An error only means the server task has already ended.
    let _sent = stop.send(());
    server.await.unwrap();
}

/// Times `f` `n` times; the median and the size of its last answer.
async fn time_read<T, F, Fut>(n: usize, mut f: F, size: impl Fn(&T) -> String) -> (Duration, String)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = T>,
{
    let mut times = Vec::new();
    let mut last = String::new();
    for _ in 0..n {
        let t = Instant::now();
        let v = f().await;
        times.push(t.elapsed());
        last = size(&v);
    }
    times.sort_unstable();
    (pct(&times, 50.0), last)
}

#[allow(clippy::ptr_arg)] // `time_read` hands each answer over as it is: a `&Vec`.
fn len<T>(v: &Vec<T>) -> String {
    format!("{} rows", v.len())
}

fn ok_len<T, E>(r: &Result<Vec<T>, E>) -> String {
    format!("{} rows", r.as_ref().map_or(0, Vec::len))
}

/// Each store read (and join) behind the pages, alone.
async fn reads<S: Store>(store: &S, n: usize) {
    let now = aiscout_collector::store::now();
    let catalog = Catalog::builtin().unwrap();
    let email = person_email(1);
    let sanctioned: Vec<String> = store
        .reviews()
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.status == "sanctioned")
        .map(|r| r.product)
        .collect();
    let mut out = String::from("| read | median ms | returned |\n| --- | --- | --- |\n");
    let mut line = |name: &str, (d, size): (Duration, String)| {
        let row = format!("| {name} | {:.1} | {size} |", ms(d));
        println!("{row}");
        out.push_str(&row);
        out.push('\n');
    };
    println!("\nstore reads, one at a time, median of {n}; load {}", load());
    let facts = |purpose, product: Option<&str>| {
        let filter = UsageFilter { product: product.map(str::to_owned), ..UsageFilter::default() };
        join::gather(store, filter, now, purpose)
    };
    line(
        "`join::gather` (inventory)",
        time_read(
            n,
            || facts(join::Purpose::Inventory, None),
            |f| {
                let f = f.as_ref().unwrap();
                format!(
                    "{} expense lines, {} gateway totals, {} people",
                    f.spend.expenses.len(),
                    f.spend.gateway.len(),
                    f.spend.people.len()
                )
            },
        )
        .await,
    );
    line(
        "`join::gather` (reconcile)",
        time_read(
            n,
            || facts(join::Purpose::Reconcile, None),
            |f| {
                let f = f.as_ref().unwrap();
                format!(
                    "{} owners, {} owner uses",
                    f.owners.device_owners.len(),
                    f.owners.owner_use.len()
                )
            },
        )
        .await,
    );
    line(
        &format!("`join::gather` (reconcile, product {PRODUCT})"),
        time_read(
            n,
            || facts(join::Purpose::Reconcile, Some(PRODUCT)),
            |f| format!("{} products", f.as_ref().unwrap().products.len()),
        )
        .await,
    );
    let all = facts(join::Purpose::Reconcile, None).await.unwrap();
    let q = InventoryQuery::default();
    line(
        "`join::inventory` (CPU)",
        time_read(n, || async { join::inventory(&catalog, &Default::default(), &q, &all) }, len)
            .await,
    );
    line(
        "`join::reconcile::reconcile` (CPU)",
        time_read(
            n,
            || async { join::reconcile::reconcile(&catalog, &all, 30) },
            |r| {
                format!(
                    "{} paid-not-sanctioned, {} idle",
                    r.paid_not_sanctioned.len(),
                    r.idle_subscriptions.len()
                )
            },
        )
        .await,
    );
    line(
        "`join::spend_by_month` (CPU)",
        time_read(n, || async { join::spend_by_month(&all, None) }, len).await,
    );
    drop(all);
    line(
        "`usage` (all)",
        time_read(
            n,
            || store.usage(UsageFilter::default()),
            |r| {
                let (s, p) = r.as_ref().unwrap();
                format!("{} sources, {} products", s.len(), p.len())
            },
        )
        .await,
    );
    line(
        &format!("`usage` ({PRODUCT})"),
        time_read(
            n,
            || store.usage(UsageFilter { product: Some(PRODUCT.into()), ..UsageFilter::default() }),
            |r| format!("{} sources", r.as_ref().unwrap().0.len()),
        )
        .await,
    );
    line("`devices`", time_read(n, || store.devices(), ok_len).await);
    line(
        &format!("`owner_last_use` ({} sanctioned)", sanctioned.len()),
        time_read(n, || store.owner_last_use(sanctioned.clone()), ok_len).await,
    );
    line("`expenses(None)`", time_read(n, || store.expenses(None), ok_len).await);
    line("`people`", time_read(n, || store.people(), ok_len).await);
    line("`gateway_totals(None)`", time_read(n, || store.gateway_totals(None), ok_len).await);
    line("`reviews`", time_read(n, || store.reviews(), ok_len).await);
    line(
        &format!("`product_devices` ({PRODUCT})"),
        time_read(n, || store.product_devices(PRODUCT.into()), ok_len).await,
    );
    line(
        &format!("`review` ({PRODUCT})"),
        time_read(n, || store.review(PRODUCT.into()), |_| "1".into()).await,
    );
    line("`person_usage(None)`", time_read(n, || store.person_usage(None), ok_len).await);
    line(
        &format!("`person_usage({email})`"),
        time_read(n, || store.person_usage(Some(email.clone())), ok_len).await,
    );
    line(
        &format!("`device` ({HOST})"),
        time_read(n, || store.device(HOST.into()), |_| "1".into()).await,
    );
    line(
        &format!("`device_products` ({HOST})"),
        time_read(n, || store.device_products(HOST.into()), ok_len).await,
    );
    line(
        "`audit_query` (newest 100)",
        time_read(
            n,
            || store.audit_query(AuditFilter { limit: 100, ..AuditFilter::default() }),
            ok_len,
        )
        .await,
    );
    line(
        &format!("`audit_query` (subject {PRODUCT}, 50)"),
        time_read(
            n,
            || {
                store.audit_query(AuditFilter {
                    subject: Some(PRODUCT.into()),
                    limit: 50,
                    ..AuditFilter::default()
                })
            },
            ok_len,
        )
        .await,
    );
    line("`import_runs(100)`", time_read(n, || store.import_runs(100), ok_len).await);
    line("`tokens`", time_read(n, || store.tokens(), ok_len).await);
    println!("\n{out}\n(load {})", load());
}

/// Fills in what a fresh database lacks (or says it reuses one).
async fn ready<S: Store>(store: &S, fresh: bool, args: &Args) {
    if fresh || store.import_runs(1).await.unwrap().is_empty() {
        prepare(store, args.expenses).await;
    } else {
        println!("reusing the prepared database (its import history is not empty)");
    }
}

async fn measure<S: Store + Clone>(store: S, args: &Args) {
    pages(store.clone(), args).await;
    if args.reads > 0 {
        reads(&store, args.reads).await;
    }
}

fn filled(f: &data::Filled, sightings: u64) {
    println!(
        "fill: {FILL_DEVICES} devices, {FILL_DEVICES} people, {sightings} aggregated sightings in \
         {:.1} s; fold of {} pending rows {:.1} s{}",
        secs(f.fill),
        f.folded,
        secs(f.fold),
        f.analyze.map_or(String::new(), |a| format!("; analyze {:.1} s", secs(a)))
    );
}

#[tokio::main]
async fn main() {
    let args = args();
    println!(
        "bench_console {} --sightings {} --expenses {} --repeats {}; load {}",
        args.backend,
        args.sightings,
        args.expenses,
        args.repeats,
        load()
    );
    let products: Vec<String> =
        Catalog::builtin().unwrap().products().iter().map(|p| p.id.clone()).collect();
    if args.backend == "postgres" {
        let name =
            args.data.clone().unwrap_or_else(|| format!("aiscout_console_{}", std::process::id()));
        let (schema, created) = data::PgSchema::open(&data::pg_base_url(), &name).await.unwrap();
        if created && args.sightings > 0 {
            filled(
                &data::postgres(schema.url(), &products, args.sightings).await.unwrap(),
                args.sightings,
            );
        }
        let store = PgStore::open(schema.url()).await.unwrap();
        ready(&store, created, &args).await;
        let took = data::pg_vacuum(schema.url()).await.unwrap();
        println!("vacuum (analyze) of every table: {:.1} s", secs(took));
        measure(store, &args).await;
        if args.data.is_some() {
            schema.close().await.unwrap();
        } else {
            schema.drop_schema().await.unwrap();
        }
    } else {
        let dir = tempfile::tempdir().unwrap();
        let db = args.data.as_ref().map_or_else(|| dir.path().join("console.db"), Into::into);
        let fresh = !db.exists();
        if fresh && args.sightings > 0 {
            filled(&data::sqlite(&db, &products, args.sightings).await.unwrap(), args.sightings);
        }
        let store = SqliteStore::open(&db).await.unwrap();
        ready(&store, fresh, &args).await;
        measure(store, &args).await;
    }
    println!("done; load {}", load());
}
