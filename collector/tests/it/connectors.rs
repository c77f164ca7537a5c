//! Pull connectors against a local vendor: an HTTPS server on 127.0.0.1 (the collector's own
//! rustls listener, an rcgen CA trusted through the connector's `ca_file`) that implements
//! the documented LiteLLM `GET /spend/logs/v2`, OpenAI organization costs and Anthropic cost
//! report here, and OpenRouter, Ramp and Brex in `cards.rs`, from fixtures, with faults
//! injected per request by one `gate`: 429 with `Retry-After`, 500, a malformed page, an
//! expired key, a page that never answers (for the killed sync, run for every kind against
//! the real binary).
//!
//! Documented facts the fake follows (collector/src/connectors/VENDORS.md, "LiteLLM"):
//! `Authorization: Bearer <key>`; query `start_date`/`end_date` as `YYYY-MM-DD HH:MM:SS`
//! (UTC), `page` from 1, `page_size` at most 100, `sort_by=startTime`, `sort_order=asc`;
//! answer `{data, total, page, page_size, total_pages}`, one record per request with
//! `request_id`, `spend` (USD, a JSON number), `startTime`, tokens, `model`, `user`,
//! `team_id` and `metadata`.

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};

use std::sync::{Arc, Mutex};
use std::time::Instant;

use aiscout_collector::api;
use aiscout_collector::connectors::{self, BaseUrl, ConnectorError, Kind, Settings, Stats};
use aiscout_collector::store::Store;
use aiscout_wire::Secret;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use crate::store::harness;

mod anthropic;
mod cards;
mod costs;
mod named;
mod network;

const KEY: &str = "sk-litellm-admin-0123456789";
const DAY: i64 = 86_400;

/// What the vendor does to the next request instead of answering it.
#[derive(Clone, Debug)]
enum Fault {
    /// 429 with `Retry-After: N`.
    TooMany(u64),
    /// 500.
    Unavailable,
    /// The page, with one record missing its `spend`.
    Malformed,
    /// Answers nothing until the test ends, after saying so on the channel.
    Hang,
    /// Ramp: the access token expires (401); a new one must be asked for.
    Revoke,
    /// 403: the key is valid but lacks the rights.
    Forbidden,
}

#[derive(Default)]
struct Vendor {
    /// `(startTime, record JSON)`.
    rows: Mutex<Vec<(i64, String)>>,
    /// Applied to requests in order; `None` answers normally.
    faults: Mutex<VecDeque<Option<Fault>>>,
    /// Every request: when, and its query.
    log: Mutex<Vec<(Instant, HashMap<String, String>)>>,
    /// Whether the key is still valid.
    expired: Mutex<bool>,
    hung: Mutex<Option<tokio::sync::mpsc::Sender<u32>>>,
    /// Ready page bodies for the benchmark (page `n` is `bench[n - 1]`).
    bench: Mutex<Arc<Vec<String>>>,
    /// The access token the fake Ramp issued last (`cards.rs`).
    token: Mutex<String>,
    /// `https://127.0.0.1:PORT`, for the absolute next links Ramp answers with.
    origin: Mutex<String>,
    /// Requests to the token endpoint.
    tokens_issued: Mutex<u32>,
    /// Cost reports: results that arrived late, `(bucket start, result JSON)`, answered first
    /// in that day's bucket (so the vendor's order of the other results changes too).
    late: Mutex<Vec<(i64, String)>>,
    /// Cost reports: days without cost (their bucket has no results).
    quiet: Mutex<Vec<i64>>,
    /// Cost reports: the buckets of quiet days are left out (a page of them is `data: []`).
    omit_quiet: Mutex<bool>,
    /// The Anthropic usage reports (`anthropic.rs`).
    anthropic: anthropic::Admin,
    /// OpenAI completions usage results: `(bucket day, result JSON)` (`named.rs`).
    usage: Mutex<Vec<(i64, String)>>,
    /// OpenAI users, LiteLLM users: `(id, email)`.
    users: Mutex<Vec<(String, String)>>,
    /// OpenAI projects, LiteLLM teams: `(id, name)`.
    teams: Mutex<Vec<(String, String)>>,
    /// Faults of the second gate ([`side_gate`]): the usage and the users, projects and teams
    /// lists, so that the fault sequences of the first streams stay as they were.
    side_faults: Mutex<VecDeque<Option<Fault>>>,
    /// Requests through the second gate: path and query.
    side_log: Mutex<Vec<(String, HashMap<String, String>)>>,
}

impl Vendor {
    /// The results of the cost report bucket of `day`: the late ones, then `usual`; `None`
    /// for a quiet day whose bucket is left out.
    fn results(&self, day: i64, usual: &[&str]) -> Option<Vec<String>> {
        if self.quiet.lock().unwrap().contains(&day) {
            return (!*self.omit_quiet.lock().unwrap()).then(Vec::new);
        }
        let late = self.late.lock().unwrap();
        let mut results: Vec<String> =
            late.iter().filter(|(d, _)| *d == day).map(|(_, r)| r.clone()).collect();
        results.extend(usual.iter().map(|r| (*r).to_owned()));
        Some(results)
    }
}

/// The benchmark's spend logs: the same envelope, pages built before the clock starts.
async fn bench_pages(
    State(v): State<Arc<Vendor>>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let pages = Arc::clone(&v.bench.lock().unwrap());
    let page: usize = q["page"].parse().unwrap();
    let body = pages.get(page - 1).cloned().unwrap_or_default();
    ([("content-type", "application/json")], body).into_response()
}

/// One spend log record; `spend` is `(i % 7 + 1) * 0.0015` USD, exact in billionths.
fn record(i: u64, at: i64) -> (i64, String) {
    let spend = format!("0.{:06}", (i % 7 + 1) * 1_500);
    let time = connectors::litellm::datetime(at).replace(' ', "T") + ".000Z";
    (
        at,
        format!(
            r#"{{"request_id":"req-{i}","call_type":"acompletion","api_key":"88dc28{i:04}",
            "spend":{spend},"total_tokens":30,"prompt_tokens":20,"completion_tokens":10,
            "startTime":"{time}","endTime":"{time}","model":"gpt-4o","model_group":"gpt-4o",
            "custom_llm_provider":"openai","user":"u{}@example.com","end_user":"",
            "team_id":"team-a","request_tags":[],
            "metadata":{{"user_api_key_alias":"key-a","user_api_key_team_alias":"Team A"}}}}"#,
            i % 5
        ),
    )
}

fn nanos(i: u64) -> i64 {
    ((i % 7 + 1) * 1_500_000) as i64
}

fn header<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers.get(name).and_then(|h| h.to_str().ok())
}

/// Every fake endpoint's first step: logs the request, takes its fault and answers it instead
/// when the fault says so (`page` is what a hang reports on the channel); `true` when the page
/// must be malformed.
async fn gate(
    v: &Vendor,
    q: &HashMap<String, String>,
    authorized: bool,
    page: u32,
) -> Result<bool, Response> {
    v.log.lock().unwrap().push((Instant::now(), q.clone()));
    let fault = v.faults.lock().unwrap().pop_front().flatten();
    if !authorized || *v.expired.lock().unwrap() {
        return Err(StatusCode::UNAUTHORIZED.into_response());
    }
    match fault {
        Some(Fault::TooMany(secs)) => {
            Err((StatusCode::TOO_MANY_REQUESTS, [("retry-after", secs.to_string())], "")
                .into_response())
        }
        Some(Fault::Unavailable) => Err(StatusCode::INTERNAL_SERVER_ERROR.into_response()),
        Some(Fault::Forbidden) => Err(StatusCode::FORBIDDEN.into_response()),
        Some(Fault::Revoke) => {
            v.token.lock().unwrap().clear();
            Err(StatusCode::UNAUTHORIZED.into_response())
        }
        Some(Fault::Hang) => {
            let tx = v.hung.lock().unwrap().clone();
            if let Some(tx) = tx {
                tx.send(page).await.unwrap();
            }
            std::future::pending::<()>().await;
            unreachable!()
        }
        Some(Fault::Malformed) => Ok(true),
        None => Ok(false),
    }
}

/// Drops the field `name` from the last record.
fn break_last(data: &mut [String], name: &str) {
    let last = data.last_mut().unwrap();
    let field =
        last.split(',').find(|f| f.trim_start().starts_with(&format!("\"{name}\":"))).unwrap();
    *last = last.replacen(&format!("{field},"), "", 1);
}

async fn spend_logs(
    State(v): State<Arc<Vendor>>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let authorized = header(&headers, "authorization") == Some(&format!("Bearer {KEY}"));
    let page: usize = q["page"].parse().unwrap();
    let malformed = match gate(&v, &q, authorized, page as u32).await {
        Ok(m) => m,
        Err(r) => return r,
    };
    let parse = aiscout_collector::ingest::parse::parse_datetime;
    let (from, to) = (parse(&q["start_date"]).unwrap(), parse(&q["end_date"]).unwrap());
    let size: usize = q["page_size"].parse().unwrap();
    assert!(size <= 100, "page_size is at most 100");
    assert_eq!((q["sort_by"].as_str(), q["sort_order"].as_str()), ("startTime", "asc"));
    let mut rows: Vec<(i64, String)> =
        v.rows.lock().unwrap().iter().filter(|(t, _)| (from..=to).contains(t)).cloned().collect();
    rows.sort_by_key(|(t, _)| *t);
    let total = rows.len();
    let mut data: Vec<String> =
        rows.into_iter().skip((page - 1) * size).take(size).map(|(_, r)| r).collect();
    if malformed {
        break_last(&mut data, "spend");
    }
    let body = format!(
        r#"{{"data":[{}],"total":{total},"page":{page},"page_size":{size},"total_pages":{}}}"#,
        data.join(","),
        total.div_ceil(size)
    );
    ([("content-type", "application/json")], body).into_response()
}

struct Served {
    vendor: Arc<Vendor>,
    base_url: String,
    ca: CertificateDer<'static>,
    ca_pem: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Drop for Served {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            // An error only means the server task has already ended.
            let _sent = stop.send(());
        }
    }
}

/// A CA and a leaf for 127.0.0.1 signed by it.
fn certificates()
-> (CertificateDer<'static>, String, Vec<CertificateDer<'static>>, PrivateKeyDer<'static>) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::from_params(&ca_params, &ca_key);
    let leaf_key = rcgen::KeyPair::generate().unwrap();
    let leaf = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()])
        .unwrap()
        .signed_by(&leaf_key, &issuer)
        .unwrap();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der()));
    (ca.der().clone(), ca.pem(), vec![leaf.der().clone()], key)
}

async fn serve_vendor() -> Served {
    serve_vendor_with(true).await
}

/// The local vendor over HTTPS (`tls`), or plain HTTP on loopback (for a relay in front).
async fn serve_vendor_with(tls: bool) -> Served {
    let vendor = Arc::new(Vendor::default());
    let router = axum::Router::new()
        .route("/litellm/spend/logs/v2", axum::routing::get(spend_logs))
        .route("/bench/spend/logs/v2", axum::routing::get(bench_pages))
        .route("/v1/organization/costs", axum::routing::get(openai_costs))
        .route("/v1/organizations/cost_report", axum::routing::get(anthropic_cost_report))
        .merge(cards::routes())
        .merge(anthropic::routes())
        .merge(named::routes())
        .with_state(Arc::clone(&vendor));
    let (ca, ca_pem, chain, key) = certificates();
    let tls = tls.then(|| api::tls::server_config(chain, key).unwrap());
    let scheme = if tls.is_some() { "https" } else { "http" };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    *vendor.origin.lock().unwrap() = format!("{scheme}://{addr}");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let counters = Arc::new(api::Counters::default());
    tokio::spawn(api::serve(listener, router, tls, api::Limits::default(), counters, async {
        drop(stopped.await);
    }));
    Served { vendor, base_url: format!("{scheme}://{addr}/litellm"), ca, ca_pem, stop: Some(stop) }
}

fn settings(served: &Served, start: i64) -> Settings {
    Settings {
        name: "litellm-prod".into(),
        kind: Kind::Litellm,
        base_url: BaseUrl::parse(&served.base_url).unwrap(),
        credential: Secret::new(KEY),
        client_id: None,
        credential_setting: "connector.litellm-prod.api_key_file (/etc/aiscout/litellm.key)".into(),
        extra_roots: vec![served.ca.clone()],
        start,
        interval: std::time::Duration::from_secs(3_600),
        overlap: std::time::Duration::from_secs(3_600),
        timeout: std::time::Duration::from_secs(30),
    }
}

fn index() -> aiscout_signatures::Index {
    aiscout_signatures::Index::new(aiscout_signatures::Catalog::builtin().unwrap())
}

async fn stored_nanos(store: &impl Store) -> (i64, i64) {
    let totals = store.gateway_totals(None).await.unwrap();
    (totals.iter().map(|t| t.cost_nanos).sum(), totals.iter().map(|t| t.rows).sum())
}

/// 250 requests over the three days before `now`, one every 1000 s back from `now - 60`.
fn fixtures(vendor: &Vendor, now: i64) -> i64 {
    let mut rows = vendor.rows.lock().unwrap();
    let mut expected = 0;
    for i in 0..250u64 {
        rows.push(record(i, now - 60 - i as i64 * 1_000));
        expected += nanos(i);
    }
    expected
}

async fn pages_retries_overlap_and_a_second_sync(store: impl Store) {
    let served = serve_vendor().await;
    let now = 1_796_000_000;
    let expected = fixtures(&served.vendor, now);
    let s = settings(&served, now - 10 * DAY);
    let (index, stats) = (index(), Stats::default());
    // Page 1 is refused with 429 once, page 2 fails with 500 once.
    served.vendor.faults.lock().unwrap().extend([
        Some(Fault::TooMany(1)),
        None,
        Some(Fault::Unavailable),
        None,
        None,
    ]);
    let p = connectors::run(&store, &index, &s, &stats, now).await.unwrap();
    assert_eq!((p.fetched, p.pages, p.new, p.known), (250, 3, 250, 0));
    assert_eq!(stored_nanos(&store).await, (expected, 250), "totals to the billionth");
    {
        let log = served.vendor.log.lock().unwrap();
        assert_eq!(log.len(), 5, "one retry after the 429, one after the 500");
        let waited = log[1].0.duration_since(log[0].0);
        assert!(waited >= std::time::Duration::from_secs(1), "Retry-After honoured: {waited:?}");
        let pages: Vec<&str> = log.iter().map(|(_, q)| q["page"].as_str()).collect();
        assert_eq!(pages, ["1", "1", "2", "2", "3"]);
        assert_eq!(log[0].1["start_date"], connectors::litellm::datetime(now - 10 * DAY));
    }
    assert_eq!(store.connector_cursor(s.name.clone()).await.unwrap(), Some(now));
    let metrics = stats.render();
    assert!(metrics.contains("aiscout_connector_retries_total{connector=\"litellm-prod\"} 2"));
    assert!(
        metrics.contains(
            "aiscout_connector_rows_total{connector=\"litellm-prod\",outcome=\"new\"} 250"
        )
    );

    // Ten minutes later: a late row (written 30 minutes before the last run's end, inside the
    // one-hour overlap) and a new one. The re-asked hour holds four known rows.
    let later = now + 600;
    {
        let mut rows = served.vendor.rows.lock().unwrap();
        rows.push(record(1_000, now - 1_800));
        rows.push(record(1_001, now + 300));
    }
    let p = connectors::run(&store, &index, &s, &stats, later).await.unwrap();
    assert_eq!((p.fetched, p.pages, p.new, p.known), (6, 1, 2, 4));
    assert_eq!(p.window, (now - 3_600, later));
    let expected = expected + nanos(1_000) + nanos(1_001);
    assert_eq!(stored_nanos(&store).await, (expected, 252));

    // The same again adds nothing (the window now starts an hour before `later`: five rows).
    let p = connectors::run(&store, &index, &s, &stats, later).await.unwrap();
    assert_eq!((p.new, p.known), (0, 5));
    assert_eq!(stored_nanos(&store).await, (expected, 252));

    // A month later the window still starts at the cursor minus the overlap (five known
    // rows); the run after that asks for a window with nothing in it: one empty page, and the
    // cursor still moves.
    let month = later + 30 * DAY;
    let p = connectors::run(&store, &index, &s, &stats, month).await.unwrap();
    assert_eq!((p.fetched, p.pages, p.new, p.known), (5, 1, 0, 5));
    let p = connectors::run(&store, &index, &s, &stats, month + 60).await.unwrap();
    assert_eq!((p.fetched, p.pages, p.new, p.known), (0, 1, 0, 0));
    assert_eq!(store.connector_cursor(s.name.clone()).await.unwrap(), Some(month + 60));
    assert_eq!(stored_nanos(&store).await, (expected, 252));
    let history = store.import_runs(10).await.unwrap();
    assert_eq!(history.len(), 5);
    assert_eq!((history[4].actor.as_str(), history[4].stored), ("connector:litellm-prod", 250));
}

async fn a_malformed_page_stores_nothing_of_it_and_keeps_the_cursor(store: impl Store) {
    let served = serve_vendor().await;
    let now = 1_796_000_000;
    let expected = fixtures(&served.vendor, now);
    let s = settings(&served, now - 10 * DAY);
    let (index, stats) = (index(), Stats::default());
    served.vendor.faults.lock().unwrap().extend([None, Some(Fault::Malformed)]);
    let e = connectors::run(&store, &index, &s, &stats, now).await.unwrap_err();
    let text = e.to_string();
    assert!(matches!(e, ConnectorError::Shape { page: 2, .. }), "{text}");
    assert!(text.contains("data[99]") && text.contains("missing field `spend`"), "{text}");
    // Page 1 is stored whole; nothing of page 2.
    assert_eq!(stored_nanos(&store).await.1, 100);
    assert_eq!(store.connector_cursor(s.name.clone()).await.unwrap(), None);
    assert!(stats.render().contains("cause=\"shape\"} 1"));

    let p = connectors::run(&store, &index, &s, &stats, now).await.unwrap();
    assert_eq!((p.fetched, p.new, p.known), (250, 150, 100));
    assert_eq!(stored_nanos(&store).await, (expected, 250));
}

async fn an_expired_key_names_its_setting_and_stores_nothing(store: impl Store) {
    let served = serve_vendor().await;
    let now = 1_796_000_000;
    fixtures(&served.vendor, now);
    *served.vendor.expired.lock().unwrap() = true;
    let s = settings(&served, now - 10 * DAY);
    let e = connectors::run(&store, &index(), &s, &Stats::default(), now).await.unwrap_err();
    let text = e.to_string();
    assert!(matches!(e, ConnectorError::Auth { status: 401, page: 1, .. }), "{text}");
    assert!(text.contains("connector.litellm-prod.api_key_file (/etc/aiscout/litellm.key)"));
    assert!(!text.contains(KEY), "the key is never in an error");
    assert_eq!(served.vendor.log.lock().unwrap().len(), 1, "a refused key is not retried");
    assert_eq!(stored_nanos(&store).await.1, 0);
    assert_eq!(store.connector_cursor(s.name.clone()).await.unwrap(), None);
}

/// What a day of the fake OpenAI costs adds up to: $0.06 + $1.234567.
const OPENAI_DAY_NANOS: i64 = 1_294_567_000;
/// What a day of the fake Anthropic cost report adds up to: "123.45" + "7" cents, $1.3045.
const ANTHROPIC_DAY_NANOS: i64 = 1_304_500_000;

/// Buckets per page the fake cost reports answer with (fewer than asked for, as a server
/// may), so that a few days take several pages.
const BUCKETS_PER_PAGE: usize = 2;

/// The days `[from, to)` as bucket starts, and the page of them that `page` (a
/// `next_page` token `p<N>`, or none for the first) names.
fn bucket_page(from: i64, to: i64, page: Option<&String>) -> (Vec<i64>, Option<String>) {
    let days: Vec<i64> = (0..).map(|d| from + d * DAY).take_while(|d| *d < to).collect();
    let n: usize = page.map_or(0, |p| p.trim_start_matches('p').parse().unwrap());
    let chunk: Vec<i64> =
        days.iter().copied().skip(n * BUCKETS_PER_PAGE).take(BUCKETS_PER_PAGE).collect();
    let more = (n + 1) * BUCKETS_PER_PAGE < days.len();
    (chunk, more.then(|| format!("p{}", n + 1)))
}

/// A report page as OpenAI (`object` `page`) and Anthropic (no `object`) answer it:
/// `{data, has_more, next_page}`, `next_page` null on the last page.
fn report_page(object: Option<&str>, items: &[String], next: Option<String>) -> Response {
    let object = object.map_or(String::new(), |o| format!(r#""object":"{o}","#));
    let body = format!(
        r#"{{{object}"data":[{}],"has_more":{},"next_page":{}}}"#,
        items.join(","),
        next.is_some(),
        next.map_or("null".to_owned(), |n| format!("\"{n}\""))
    );
    ([("content-type", "application/json")], body).into_response()
}

/// The page a cost report request asks for, from 1 (its `page` token is `p<N - 1>`).
fn page_number(q: &HashMap<String, String>) -> u32 {
    q.get("page").map_or(1, |p| p.trim_start_matches('p').parse::<u32>().unwrap() + 1)
}

/// OpenAI `GET /v1/organization/costs` (VENDORS.md, "OpenAI"): two results per daily
/// bucket, `amount.value` in USD as a JSON number, `currency` `usd`.
async fn openai_costs(
    State(v): State<Arc<Vendor>>,
    headers: HeaderMap,
    Query(q): Query<Vec<(String, String)>>,
) -> Response {
    let map: HashMap<String, String> = q.iter().cloned().collect();
    let authorized = header(&headers, "authorization") == Some(&format!("Bearer {KEY}"));
    let malformed = match gate(&v, &map, authorized, page_number(&map)).await {
        Ok(m) => m,
        Err(r) => return r,
    };
    let groups: Vec<&str> =
        q.iter().filter(|(k, _)| k == "group_by").map(|(_, v)| v.as_str()).collect();
    assert_eq!(groups, ["project_id", "line_item"]);
    assert_eq!(map["bucket_width"], "1d");
    let (from, to) = (map["start_time"].parse().unwrap(), map["end_time"].parse().unwrap());
    let (days, next) = bucket_page(from, to, map.get("page"));
    let usual = [
        r#"{"object":"organization.costs.result","amount":{"value":0.06,"currency":"usd"},
            "line_item":"gpt-4o-2024-08-06, input","project_id":"proj_a"}"#,
        r#"{"object":"organization.costs.result","amount":{"value":1.234567,"currency":"usd"},
            "line_item":"gpt-4o-2024-08-06, output","project_id":"proj_a"}"#,
    ];
    let mut buckets: Vec<String> = days
        .iter()
        .filter_map(|d| {
            let results = v.results(*d, &usual)?;
            Some(format!(
                r#"{{"object":"bucket","start_time":{d},"end_time":{},"results":[{}]}}"#,
                d + DAY,
                results.join(",")
            ))
        })
        .collect();
    if malformed {
        // The last bucket's last result loses its `amount.value`.
        let last = buckets.last_mut().unwrap();
        *last = last.replacen(r#""value":1.234567,"#, "", 1);
    }
    report_page(Some("page"), &buckets, next)
}

/// Anthropic `GET /v1/organizations/cost_report` (VENDORS.md, "Anthropic"): two results per
/// daily bucket, `amount` in cents as a decimal string.
async fn anthropic_cost_report(
    State(v): State<Arc<Vendor>>,
    headers: HeaderMap,
    Query(q): Query<Vec<(String, String)>>,
) -> Response {
    let map: HashMap<String, String> = q.iter().cloned().collect();
    let authorized = header(&headers, "x-api-key") == Some(KEY);
    let malformed = match gate(&v, &map, authorized, page_number(&map)).await {
        Ok(m) => m,
        Err(r) => return r,
    };
    assert_eq!(header(&headers, "anthropic-version"), Some("2023-06-01"));
    let groups: Vec<&str> =
        q.iter().filter(|(k, _)| k == "group_by[]").map(|(_, v)| v.as_str()).collect();
    assert_eq!(groups, ["workspace_id", "description"]);
    let parse = aiscout_collector::ingest::parse::parse_datetime;
    let (from, to) = (parse(&map["starting_at"]).unwrap(), parse(&map["ending_at"]).unwrap());
    let (days, next) = bucket_page(from, to, map.get("page"));
    let rfc = |t: i64| connectors::litellm::datetime(t).replace(' ', "T") + "Z";
    let usual = [
        r#"{"currency":"USD","amount":"123.45","workspace_id":"wrkspc_a",
            "description":"Claude Sonnet 4 Usage - Input Tokens","cost_type":"tokens",
            "context_window":"0-200k","model":"claude-sonnet-4-20250514",
            "service_tier":"standard","token_type":"uncached_input_tokens"}"#,
        r#"{"currency":"USD","amount":"7","workspace_id":"wrkspc_a",
            "description":"Web search","cost_type":"web_search","context_window":null,
            "model":null,"service_tier":null,"token_type":null}"#,
    ];
    let mut buckets: Vec<String> = days
        .iter()
        .filter_map(|d| {
            let results = v.results(*d, &usual)?;
            Some(format!(
                r#"{{"starting_at":"{}","ending_at":"{}","results":[{}]}}"#,
                rfc(*d),
                rfc(d + DAY),
                results.join(",")
            ))
        })
        .collect();
    if malformed {
        // The last bucket's last result loses its `amount`.
        let last = buckets.last_mut().unwrap();
        *last = last.replacen(r#""amount":"7","#, "", 1);
    }
    report_page(None, &buckets, next)
}

/// The first stream's part of a run: a cost report's, beside Anthropic's usage reports
/// (which the fake answers empty unless a test turns them on).
fn first(p: connectors::Progress) -> connectors::Progress {
    p.streams.into_iter().next().expect("a stream ran").1
}

fn cost_settings(served: &Served, kind: Kind, start: i64) -> Settings {
    let addr = served.base_url.trim_end_matches("/litellm");
    Settings {
        name: format!("{}-admin", kind.as_str()),
        kind,
        base_url: BaseUrl::parse(addr).unwrap(),
        overlap: kind.default_overlap(),
        ..settings(served, start)
    }
}

/// Five whole days, two buckets a page: three pages, two results a day. A second run a day
/// later asks again from two days before its cursor and stores only the new day.
async fn daily_costs_page_by_next_page_and_count_once(kind: Kind, day_nanos: i64) {
    let h = harness::sqlite().await;
    let store = h.store.clone();
    let served = serve_vendor().await;
    let today = 1_796_083_200; // 2026-12-01T00:00:00Z
    let now = today + 3_600;
    let s = cost_settings(&served, kind, today - 5 * DAY);
    let (index, stats) = (index(), Stats::default());
    let p = first(connectors::run(&store, &index, &s, &stats, now).await.unwrap());
    assert_eq!((p.fetched, p.pages, p.new, p.known), (10, 3, 10, 0));
    assert_eq!(p.window, (today - 5 * DAY, today), "whole finished days only");
    assert_eq!(stored_nanos(&store).await, (5 * day_nanos, 10), "totals to the billionth");
    let pages: Vec<Option<String>> =
        served.vendor.log.lock().unwrap().iter().map(|(_, q)| q.get("page").cloned()).collect();
    assert_eq!(pages, [None, Some("p1".into()), Some("p2".into())]);

    let p = first(connectors::run(&store, &index, &s, &stats, now + DAY).await.unwrap());
    assert_eq!(p.window, (today - 2 * DAY, today + DAY));
    assert_eq!((p.fetched, p.new, p.known), (6, 2, 4));
    // Run again: the cursor moved a day, so two days are asked again, all known.
    let p = first(connectors::run(&store, &index, &s, &stats, now + DAY).await.unwrap());
    assert_eq!((p.new, p.known), (0, 4));
    assert_eq!(stored_nanos(&store).await, (6 * day_nanos, 12));
    let totals = store.gateway_totals(None).await.unwrap();
    assert!(totals.iter().all(|t| t.currency == "USD"), "{totals:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openai_costs_page_by_next_page_and_count_once() {
    daily_costs_page_by_next_page_and_count_once(Kind::Openai, OPENAI_DAY_NANOS).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anthropic_cost_report_cents_page_by_next_page_and_count_once() {
    daily_costs_page_by_next_page_and_count_once(Kind::Anthropic, ANTHROPIC_DAY_NANOS).await;
}

/// The cost reports through the issue's faults: page 1 never answers within the request
/// timeout and is then refused with 429 once, page 2 fails with 500 once, page 3 is
/// malformed. The run fails naming page 3 and the field, with pages 1 and 2 stored whole and
/// the cursor where it was; the next run stores the rest once. Later an expired key fails at
/// once, naming its setting, never its value, also in the imports history.
async fn cost_reports_through_timeouts_retries_and_a_malformed_page(
    kind: Kind,
    day_nanos: i64,
    field: &str,
) {
    let h = harness::sqlite().await;
    let store = h.store.clone();
    let served = serve_vendor().await;
    let today = 1_796_083_200; // 2026-12-01T00:00:00Z
    let now = today + 3_600;
    let mut s = cost_settings(&served, kind, today - 5 * DAY);
    s.timeout = std::time::Duration::from_secs(1);
    let (index, stats) = (index(), Stats::default());
    served.vendor.faults.lock().unwrap().extend([
        Some(Fault::Hang),
        Some(Fault::TooMany(1)),
        None,
        Some(Fault::Unavailable),
        None,
        Some(Fault::Malformed),
    ]);
    let e = connectors::run(&store, &index, &s, &stats, now).await.unwrap_err();
    let text = e.to_string();
    assert!(matches!(e, ConnectorError::Shape { page: 3, .. }), "{kind:?}: {text}");
    assert!(text.contains(&format!("missing field `{field}`")), "{kind:?}: {text}");
    assert_eq!(stored_nanos(&store).await, (4 * day_nanos, 8), "{kind:?}: pages 1 and 2 whole");
    assert_eq!(store.connector_cursor(s.name.clone()).await.unwrap(), None);
    {
        let log = served.vendor.log.lock().unwrap();
        let pages: Vec<u32> = log.iter().map(|(_, q)| page_number(q)).collect();
        assert_eq!(pages, [1, 1, 1, 2, 2, 3], "{kind:?}: each failed request asked again");
        let waited = log[2].0.duration_since(log[1].0);
        assert!(waited >= std::time::Duration::from_secs(1), "Retry-After honoured: {waited:?}");
    }
    let metrics = stats.render();
    assert!(
        metrics.contains(&format!("aiscout_connector_retries_total{{connector=\"{}\"}} 3", s.name)),
        "{metrics}"
    );
    assert!(metrics.contains("cause=\"shape\"} 1"), "{metrics}");

    let p = first(connectors::run(&store, &index, &s, &stats, now).await.unwrap());
    assert_eq!((p.fetched, p.pages, p.new, p.known), (10, 3, 2, 8), "{kind:?}");
    assert_eq!(stored_nanos(&store).await, (5 * day_nanos, 10), "{kind:?}: totals to the cent");
    assert_eq!(store.connector_cursor(s.name.clone()).await.unwrap(), Some(today));

    *served.vendor.expired.lock().unwrap() = true;
    let asked = served.vendor.log.lock().unwrap().len();
    let e = connectors::run(&store, &index, &s, &stats, now + DAY).await.unwrap_err();
    let text = e.to_string();
    assert!(matches!(e, ConnectorError::Auth { status: 401, page: 1, .. }), "{text}");
    assert!(text.contains(&s.credential_setting), "{text}");
    assert_eq!(served.vendor.log.lock().unwrap().len(), asked + 1, "a refused key is not retried");
    assert_eq!(store.connector_cursor(s.name.clone()).await.unwrap(), Some(today));
    let history = store.import_runs(10).await.unwrap();
    assert!(history[0].error.contains(&s.credential_setting), "{:?}", history[0]);
    for run in &history {
        assert!(!run.error.contains(KEY), "{run:?}");
    }
    assert!(!stats.render().contains(KEY));

    // A key without the rights (403) is named the same way, also not retried.
    *served.vendor.expired.lock().unwrap() = false;
    served.vendor.faults.lock().unwrap().extend([Some(Fault::Forbidden)]);
    let e = connectors::run(&store, &index, &s, &stats, now + DAY).await.unwrap_err();
    let text = e.to_string();
    assert!(matches!(e, ConnectorError::Auth { status: 403, page: 1, .. }), "{text}");
    assert!(text.contains(&s.credential_setting) && !text.contains(KEY), "{text}");
    assert_eq!(served.vendor.log.lock().unwrap().len(), asked + 2, "a 403 is not retried");
    assert_eq!(store.connector_cursor(s.name.clone()).await.unwrap(), Some(today));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openai_costs_through_timeouts_retries_and_a_malformed_page() {
    cost_reports_through_timeouts_retries_and_a_malformed_page(
        Kind::Openai,
        OPENAI_DAY_NANOS,
        "value",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anthropic_cost_report_through_timeouts_retries_and_a_malformed_page() {
    cost_reports_through_timeouts_retries_and_a_malformed_page(
        Kind::Anthropic,
        ANTHROPIC_DAY_NANOS,
        "amount",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_anthropic_key_refused_names_its_setting() {
    let h = harness::sqlite().await;
    let served = serve_vendor().await;
    let mut s = cost_settings(&served, Kind::Anthropic, 1_796_083_200 - 5 * DAY);
    s.credential = Secret::new("sk-ant-admin-expired");
    let e = connectors::run(&h.store, &index(), &s, &Stats::default(), 1_796_083_200)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("fix connector.litellm-prod.api_key_file"), "{e}");
    assert!(!e.to_string().contains("sk-ant-admin-expired"));
}

macro_rules! on_both {
    ($($case:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let h = super::harness::sqlite().await;
                    super::$case(h.store.clone()).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let h = super::harness::postgres().await;
                    super::$case(h.store.clone()).await;
                }
            )*
        }
    };
}

on_both!(
    pages_retries_overlap_and_a_second_sync,
    a_malformed_page_stores_nothing_of_it_and_keeps_the_cursor,
    an_expired_key_names_its_setting_and_stores_nothing,
);

const BIN: &str = env!("CARGO_BIN_EXE_aiscout-collector");

/// The credentials the fake vendors accept, none of which may ever be printed.
const SECRETS: [&str; 4] = [KEY, RAMP_ID, RAMP_SECRET, BREX_TOKEN];
const RAMP_ID: &str = "ramp-client-id-7";
const RAMP_SECRET: &str = "ramp-client-secret-0123456789";
const BREX_TOKEN: &str = "bxt_user_token_0123456789";

/// The configured name of the test connector of `kind`.
fn connector_name(kind: Kind) -> String {
    format!("{}-prod", kind.as_str())
}

/// A config with one `[[connector]]` of `kind` (named [`connector_name`]) against the local
/// vendor, its credentials in files the way an operator writes them.
fn write_config(dir: &Path, served: &Served, kind: Kind, start: &str) -> PathBuf {
    let secret = |setting: &str, value: &str| {
        let file = dir.join(setting.trim_end_matches("_file"));
        std::fs::write(&file, format!("{value}\n")).unwrap();
        format!("{setting} = \"{}\"\n", file.display())
    };
    let credentials = match kind {
        Kind::Ramp => {
            secret("client_id_file", RAMP_ID) + &secret("client_secret_file", RAMP_SECRET)
        }
        Kind::Brex => secret("token_file", BREX_TOKEN),
        Kind::Anthropic | Kind::Litellm | Kind::Openai | Kind::Openrouter => {
            secret("api_key_file", KEY)
        }
    };
    let base_url = match kind {
        Kind::Litellm => served.base_url.as_str(),
        _ => served.base_url.trim_end_matches("/litellm"),
    };
    let ca = dir.join("vendor-ca.pem");
    std::fs::write(&ca, &served.ca_pem).unwrap();
    let config = dir.join("collector.toml");
    std::fs::write(
        &config,
        format!(
            "[[connector]]\nname = \"{}\"\nkind = \"{}\"\nbase_url = \"{base_url}\"\n\
             {credentials}ca_file = \"{}\"\nstart = \"{start}\"\ninterval = \"1h\"\n",
            connector_name(kind),
            kind.as_str(),
            ca.display()
        ),
    )
    .unwrap();
    config
}

/// The stored total of a connector of `kind` and its row count: billionths of a dollar of
/// gateway spend, or cents of expense lines (Ramp, Brex).
async fn stored(kind: Kind, store: &impl Store) -> (i64, i64) {
    match kind {
        Kind::Ramp | Kind::Brex => {
            let lines = store.expenses(None).await.unwrap();
            (lines.iter().map(|l| l.amount_minor).sum(), lines.len() as i64)
        }
        Kind::Anthropic | Kind::Litellm | Kind::Openai | Kind::Openrouter => {
            stored_nanos(store).await
        }
    }
}

/// What the vendor of one kind holds for a killed sync, and what a whole run of it reads.
struct Case {
    /// The stored total and rows once every page is in.
    expected: (i64, i64),
    /// The first second to sync from (the config's `start` is its day).
    start: i64,
    /// Records fetched and pages read by a whole run.
    whole: (u64, u64),
    /// Rows stored by pages 1 and 2, before the run hangs on page 3.
    before_kill: i64,
}

/// Fills the vendor for `kind` with at least three pages.
fn case(kind: Kind, vendor: &Vendor, now: i64) -> Case {
    let today = now / DAY * DAY;
    match kind {
        // 250 requests, 100 a page.
        Kind::Litellm => Case {
            expected: (fixtures(vendor, now), 250),
            start: now - 10 * DAY,
            whole: (250, 3),
            before_kill: 200,
        },
        // Five finished days of two results, two days a page; the usage stream's three pages
        // are empty.
        Kind::Openai => Case {
            expected: (5 * OPENAI_DAY_NANOS, 10),
            start: today - 5 * DAY,
            whole: (10, 6),
            before_kill: 8,
        },
        // The usage reports answer empty: three pages of empty buckets and five empty days.
        Kind::Anthropic => Case {
            expected: (5 * ANTHROPIC_DAY_NANOS, 10),
            start: today - 5 * DAY,
            whole: (10, 3 + 3 + 5),
            before_kill: 8,
        },
        Kind::Openrouter | Kind::Ramp | Kind::Brex => {
            let (total, count, start) = cards::Vend::of(kind).fixtures(vendor, now);
            if kind == Kind::Openrouter {
                // A day a page (the third is empty), two items a day.
                Case { expected: (total, count), start, whole: (8, 5), before_kill: 4 }
            } else {
                // Eleven transactions (one not spend) four a page.
                Case { expected: (total, count), start, whole: (11, 3), before_kill: 8 }
            }
        }
    }
}

/// `sync --once` in the real binary, killed with SIGKILL while it waits for page 3, then run
/// again: pages 1 and 2 were stored whole before the kill and the cursor did not move; the
/// second run finds them known, stores the rest and moves the cursor; the totals count each
/// record once, to the cent; no credential is printed by either run.
async fn killed_sync(kind: Kind) {
    let served = serve_vendor().await;
    let dir = tempfile::tempdir().unwrap();
    let now = aiscout_collector::store::now();
    let case = case(kind, &served.vendor, now);
    let name = connector_name(kind);
    let start = aiscout_collector::ingest::parse::ymd(case.start);
    let config = write_config(dir.path(), &served, kind, &start);
    let (tx, mut rx) = tokio::sync::mpsc::channel(1);
    *served.vendor.hung.lock().unwrap() = Some(tx);
    served.vendor.faults.lock().unwrap().extend([None, None, Some(Fault::Hang)]);
    let path = dir.path().join("a.db");
    let db = format!("sqlite:{}", path.display());
    let args = |extra: &[&str]| {
        let mut c = std::process::Command::new(BIN);
        c.arg("--config").arg(&config).arg("--db").arg(&db).arg("--data-dir").arg(dir.path());
        c.args(extra);
        c
    };
    let no_secret = |out: &std::process::Output| {
        let text = String::from_utf8_lossy(&out.stdout) + String::from_utf8_lossy(&out.stderr);
        for secret in SECRETS {
            assert!(!text.contains(secret), "{kind:?}: a credential was printed:\n{text}");
        }
    };
    let check = args(&["check-config"]).output().unwrap();
    assert!(check.status.success(), "{}", String::from_utf8_lossy(&check.stderr));
    no_secret(&check);
    let mut child = args(&["sync", "--once"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let hung_page = tokio::time::timeout(std::time::Duration::from_secs(120), rx.recv())
        .await
        .expect("the sync never asked for page 3")
        .unwrap();
    assert_eq!(hung_page, 3, "{kind:?}");
    child.kill().unwrap(); // SIGKILL on Unix
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&out.status),
        Some(9),
        "{kind:?}: killed by SIGKILL"
    );
    no_secret(&out);
    {
        let store = aiscout_collector::store::sqlite::SqliteStore::open(&path).await.unwrap();
        assert_eq!(stored(kind, &store).await.1, case.before_kill, "{kind:?}: pages 1 and 2");
        assert_eq!(store.connector_cursor(name.clone()).await.unwrap(), None, "{kind:?}");
    }

    let before = aiscout_collector::store::now();
    let out = args(&["sync", "--once", &name]).output().unwrap();
    let after = aiscout_collector::store::now();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    let (fetched, pages) = case.whole;
    let (new, known) = (case.expected.1 - case.before_kill, case.before_kill);
    let want =
        format!("{name}: {fetched} rows fetched, {pages} pages, {new} new, {known} already known");
    assert!(stdout.starts_with(&want), "{kind:?}: want {want:?}, got {stdout}");
    if kind == Kind::Openai {
        // Two streams: each one's counts follow the totals.
        let streams = "[costs: 10 rows fetched, 3 pages, 2 new, 8 already known";
        assert!(stdout.contains(streams), "{stdout}");
        assert!(stdout.contains("; usage: 0 rows fetched, 3 pages, 0 new"), "{stdout}");
    }
    no_secret(&out);
    let store = aiscout_collector::store::sqlite::SqliteStore::open(&path).await.unwrap();
    assert_eq!(stored(kind, &store).await, case.expected, "{kind:?}: totals to the cent");
    let cursor = store.connector_cursor(name.clone()).await.unwrap().unwrap();
    if matches!(kind, Kind::Anthropic | Kind::Openai | Kind::Openrouter) {
        // Daily reports: the cursor is the end of the last finished day asked for.
        assert!((before / DAY * DAY..=after / DAY * DAY).contains(&cursor), "{kind:?}: {cursor}");
        assert_eq!(cursor % DAY, 0);
    } else {
        assert!((before..=after).contains(&cursor), "{kind:?}: the cursor is the run's end");
    }

    let unknown = args(&["sync", "--once", "nope"]).output().unwrap();
    assert!(!unknown.status.success());
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("no connector named \"nope\""));
}

/// [`killed_sync`] for each connector kind.
mod a_killed_sync_resumes_without_counting_twice {
    use aiscout_collector::connectors::Kind;

    macro_rules! each_kind {
        ($($name:ident: $kind:expr),* $(,)?) => {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::killed_sync($kind).await;
                }
            )*
        };
    }

    each_kind!(
        openai: Kind::Openai,
        anthropic: Kind::Anthropic,
        litellm: Kind::Litellm,
        openrouter: Kind::Openrouter,
        ramp: Kind::Ramp,
        brex: Kind::Brex,
    );
}

#[test]
fn check_config_names_every_connector_problem() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("c.toml");
    std::fs::write(
        &config,
        format!(
            "[[connector]]\nname = \"a\"\nkind = \"litellm\"\nbase_url = \"http://litellm.corp\"\n\
             api_key_file = \"{0}/missing.key\"\n\
             [[connector]]\nname = \"a\"\nkind = \"ramp2\"\napi_key_env = \"AISCOUT_NO_SUCH_VAR\"\n\
             interval = \"5x\"\nstart = \"2026-13-01\"\n\
             [[connector]]\nkind = \"openai\"\n\
             [[connector]]\nname = \"r\"\nkind = \"ramp\"\nclient_id_file = \"{0}/id\"\n\
             api_key_file = \"{0}/id\"\n\
             [[connector]]\nname = \"b\"\nkind = \"brex\"\nclient_secret_file = \"{0}/id\"\n",
            dir.path().display()
        ),
    )
    .unwrap();
    std::fs::write(dir.path().join("id"), "ramp-client-id\n").unwrap();
    let out = std::process::Command::new(BIN)
        .arg("--config")
        .arg(&config)
        .arg("--data-dir")
        .arg(dir.path())
        .arg("check-config")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    for want in [
        "connector.a.base_url: \"http://litellm.corp\": http:// is accepted for a loopback host only",
        "connector.a.api_key_file:",
        "connector.a.name: another [[connector]] has this name",
        "connector.a.kind: \"ramp2\" is not one of",
        "connector.a.api_key_env: the environment variable AISCOUT_NO_SUCH_VAR is not set",
        "connector.a.interval: \"5x\" is not a duration",
        "connector.a.start: \"2026-13-01\" is not YYYY-MM-DD",
        "connector[2].name: required",
        "connector.r.client_secret_file: required for a ramp connector",
        "connector.r.api_key_file: not a setting of a ramp connector",
        "connector.b.token_file: required for a brex connector",
        "connector.b.client_secret_file: not a setting of a brex connector",
    ] {
        assert!(err.contains(want), "missing {want:?} in:\n{err}");
    }
}

/// `serve` runs the configured connector at once (and then every interval), prints its
/// progress line, and `/metrics` counts the run and its rows by connector.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_runs_connectors_and_counts_them_in_metrics() {
    let served = serve_vendor().await;
    let dir = tempfile::tempdir().unwrap();
    let now = aiscout_collector::store::now();
    fixtures(&served.vendor, now);
    let start = aiscout_collector::ingest::parse::ymd(now - 10 * DAY);
    let config = write_config(dir.path(), &served, Kind::Litellm, &start);
    let db = format!("sqlite:{}", dir.path().join("a.db").display());
    let config = config.display().to_string();
    let mut collector =
        crate::process::Collector::start(dir.path(), &["--config", &config, "--db", &db]);
    let line = collector.wait_line("litellm-prod: ");
    assert!(line.starts_with("litellm-prod: 250 rows fetched, 3 pages, 250 new, 0 already known"));
    let ca = crate::process::generated_cert(dir.path());
    let mut c = crate::process::connect(collector.addr, &ca, false).await;
    let (status, body) = c.send(hyper::Method::GET, "/metrics", None, Vec::new()).await.unwrap();
    assert_eq!(status, StatusCode::OK);
    let metrics = String::from_utf8(body.to_vec()).unwrap();
    for want in [
        "aiscout_connector_runs_total{connector=\"litellm-prod\",outcome=\"ok\"} 1",
        "aiscout_connector_rows_total{connector=\"litellm-prod\",outcome=\"new\"} 250",
        "aiscout_connector_pages_total{connector=\"litellm-prod\"} 3",
    ] {
        assert!(metrics.contains(want), "missing {want:?} in:\n{metrics}");
    }
    assert!(!metrics.contains(KEY));
}

/// A LiteLLM spend log exported to a file and imported first, then pulled: the pull goes
/// through the same idempotent path, so every pulled record is already known.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pull_after_the_file_import_of_the_same_rows_counts_them_once() {
    let h = harness::sqlite().await;
    let served = serve_vendor().await;
    let now = 1_796_000_000;
    let expected = fixtures(&served.vendor, now);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("spend-logs.json");
    let records: Vec<String> =
        served.vendor.rows.lock().unwrap().iter().map(|(_, r)| r.clone()).collect();
    std::fs::write(&file, format!("[{}]", records.join(","))).unwrap();
    let index = Arc::new(index());
    let report = aiscout_collector::ingest::file::gateway(
        &h.store,
        Arc::clone(&index),
        aiscout_collector::ingest::Input::Path(file),
        Some(aiscout_collector::ingest::gateway::GatewayFormat::Litellm),
        &Default::default(),
        None,
        now,
    )
    .await
    .unwrap();
    assert_eq!(report.stored, 250);
    let s = settings(&served, now - 10 * DAY);
    let p = connectors::run(&h.store, &index, &s, &Stats::default(), now).await.unwrap();
    assert_eq!((p.fetched, p.new, p.known), (250, 0, 250));
    assert_eq!(stored_nanos(&h.store).await, (expected, 250));
}

/// A `[[connector]]` with only its name, kind and key: the vendor's URL, the first sync 90 days
/// back (at a UTC midnight), an hourly interval and the kind's overlap.
#[test]
fn a_connector_takes_the_documented_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("openai.key");
    std::fs::write(&key, "sk-admin-0123\n").unwrap();
    let file = dir.path().join("c.toml");
    std::fs::write(
        &file,
        format!(
            "[[connector]]\nname = \"openai-admin\"\nkind = \"openai\"\napi_key_file = \"{}\"\n",
            key.display()
        ),
    )
    .unwrap();
    let o = aiscout_collector::config::Overrides::default();
    let before = aiscout_collector::store::now();
    let config = aiscout_collector::config::load(Some(&file), None, None, &o).unwrap();
    let after = aiscout_collector::store::now();
    let s = &config.connectors[0];
    assert_eq!(s.base_url, BaseUrl::parse("https://api.openai.com").unwrap());
    let day = |t: i64| (t - 90 * DAY) / DAY * DAY;
    assert!((day(before)..=day(after)).contains(&s.start), "{}", s.start);
    assert_eq!(s.interval, std::time::Duration::from_secs(3_600));
    assert_eq!(s.overlap, Kind::Openai.default_overlap());
    assert_eq!(s.credential.expose(), "sk-admin-0123");
    assert!(s.credential_setting.contains("connector.openai-admin.api_key_file"));
}

/// The issue 16 benchmark: LiteLLM spend logs pulled from the local HTTPS vendor beside the
/// file import of the same rows in the same run, each into its own fresh SQLite database.
/// `AISCOUT_BENCH_ROWS` rows (default 100,000). Run with
/// `cargo test -p aiscout-collector --release --test it bench_litellm -- --ignored --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a benchmark: run on purpose, in release"]
async fn bench_litellm_pull_beside_the_file_import() {
    let rows: u64 =
        std::env::var("AISCOUT_BENCH_ROWS").ok().and_then(|v| v.parse().ok()).unwrap_or(100_000);
    let served = serve_vendor().await;
    let now = 1_796_000_000;
    let records: Vec<String> = (0..rows).map(|i| record(i, now - 10 - i as i64).1).collect();
    let size = connectors::litellm::PAGE_SIZE as usize;
    let total_pages = records.len().div_ceil(size);
    let pages: Vec<String> = records
        .chunks(size)
        .enumerate()
        .map(|(i, c)| {
            format!(
                r#"{{"data":[{}],"total":{rows},"page":{},"page_size":{size},"total_pages":{total_pages}}}"#,
                c.join(","),
                i + 1
            )
        })
        .collect();
    *served.vendor.bench.lock().unwrap() = Arc::new(pages);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("spend-logs.json");
    std::fs::write(&file, format!("[{}]", records.join(","))).unwrap();
    drop(records);
    let index = Arc::new(index());

    let file_store = aiscout_collector::store::sqlite::SqliteStore::open(&dir.path().join("f.db"))
        .await
        .unwrap();
    let t = Instant::now();
    let report = aiscout_collector::ingest::file::gateway(
        &file_store,
        Arc::clone(&index),
        aiscout_collector::ingest::Input::Path(file),
        Some(aiscout_collector::ingest::gateway::GatewayFormat::Litellm),
        &Default::default(),
        None,
        now,
    )
    .await
    .unwrap();
    let file_secs = t.elapsed().as_secs_f64();
    assert_eq!(report.stored, rows);

    let pull_store = aiscout_collector::store::sqlite::SqliteStore::open(&dir.path().join("p.db"))
        .await
        .unwrap();
    let mut s = settings(&served, now - 10 * DAY);
    s.base_url = BaseUrl::parse(&served.base_url.replace("/litellm", "/bench")).unwrap();
    let t = Instant::now();
    let p = connectors::run(&pull_store, &index, &s, &Stats::default(), now).await.unwrap();
    let pull_secs = t.elapsed().as_secs_f64();
    assert_eq!(p.new, rows);
    assert_eq!(stored_nanos(&pull_store).await, stored_nanos(&file_store).await);
    eprintln!(
        "litellm {rows} rows: file import {:.0} rows/s ({file_secs:.2} s), pull {:.0} rows/s \
         ({pull_secs:.2} s, {} pages), pull/file time {:.2}x",
        rows as f64 / file_secs,
        rows as f64 / pull_secs,
        p.pages,
        pull_secs / file_secs
    );
}
