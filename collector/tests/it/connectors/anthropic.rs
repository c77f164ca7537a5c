//! The local Anthropic Admin API beyond the cost report: the messages usage report, the
//! Claude Code usage report, and the users and workspaces lists that name their rows.
//!
//! Documented facts the fake follows (VENDORS.md, "Anthropic"): headers `x-api-key` and
//! `anthropic-version: 2023-06-01`; the messages usage report takes `starting_at`,
//! `ending_at`, `bucket_width=1d`, `group_by[]`, `limit` and `page`, and answers `{data:
//! [{starting_at, ending_at, results: [{uncached_input_tokens, cache_creation:
//! {ephemeral_1h_input_tokens, ephemeral_5m_input_tokens}, cache_read_input_tokens,
//! output_tokens, server_tool_use, workspace_id, api_key_id, account_id, model, ...}]}],
//! has_more, next_page}`; the Claude Code report takes `starting_at=YYYY-MM-DD`, `limit` and
//! `page`, and answers one record per actor and day (`actor` `{type: "user_actor",
//! email_address}` or `{type: "api_actor", api_key_name}`, `model_breakdown[]` with
//! `tokens {input, output, cache_creation, cache_read}` and `estimated_cost`); the lists
//! answer `{data, has_more, first_id, last_id}` and take `after_id` and `limit`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::*;

/// The fake's Anthropic state beside the shared [`Vendor`] (its faults and request log).
#[derive(Default)]
pub(super) struct Admin {
    /// Whether the organisation has usage (and the lists) at all; off, these endpoints answer
    /// empty reports and lists, without logging the request or taking its fault, so that the
    /// cost report's tests see the requests and faults they always saw.
    pub(super) on: Mutex<bool>,
    /// Messages usage results that arrived late, `(bucket start, result JSON)`.
    pub(super) late_usage: Mutex<Vec<(i64, String)>>,
    /// Claude Code records that arrived late, `(day, record JSON)`.
    pub(super) late_code: Mutex<Vec<(i64, String)>>,
    /// Days without any usage.
    pub(super) quiet: Mutex<Vec<i64>>,
    /// Pages to answer malformed once: `(report, page)`, the report `messages` or
    /// `claude_code`, the page from 1 within its request chain (a Claude Code day's chain).
    pub(super) malform: Mutex<Vec<(&'static str, u32)>>,
}

impl Admin {
    fn on(&self) -> bool {
        *self.on.lock().unwrap()
    }

    /// Whether page `page` of `report` is to be malformed (once).
    fn malformed(&self, report: &'static str, page: u32) -> bool {
        let mut m = self.malform.lock().unwrap();
        let hit = m.iter().position(|x| *x == (report, page));
        hit.map(|i| m.remove(i)).is_some()
    }
}

/// List objects per page the fake answers with (fewer than asked for), so that the lists
/// take several pages.
const LIST_PAGE: usize = 2;
/// Claude Code records per page the fake answers with.
const CODE_PAGE: usize = 2;

/// Users: `(id, email)`.
pub(super) const USERS: [(&str, &str); 3] = [
    ("user_01ann", "ann@example.com"),
    ("user_01bo", "bo@example.com"),
    ("user_01cy", "cy@example.com"),
];
/// Workspaces: `(id, name, archived)`.
pub(super) const WORKSPACES: [(&str, &str, bool); 2] =
    [("wrkspc_01res", "Research", false), ("wrkspc_01old", "Old pilots", true)];

fn authorized(headers: &HeaderMap) -> bool {
    assert_eq!(header(headers, "anthropic-version"), Some("2023-06-01"));
    header(headers, "x-api-key") == Some(KEY)
}

/// A list page after `after_id`, `LIST_PAGE` objects at a time.
fn list_page(objects: Vec<(String, String)>, after: Option<&String>) -> String {
    let start = after.map_or(0, |a| objects.iter().position(|(id, _)| id == a).unwrap() + 1);
    let page: Vec<&(String, String)> = objects.iter().skip(start).take(LIST_PAGE).collect();
    let more = start + LIST_PAGE < objects.len();
    let id =
        |o: Option<&&(String, String)>| o.map_or("null".to_owned(), |(id, _)| format!("\"{id}\""));
    format!(
        r#"{{"data":[{}],"has_more":{more},"first_id":{},"last_id":{}}}"#,
        page.iter().map(|(_, json)| json.as_str()).collect::<Vec<_>>().join(","),
        id(page.first()),
        id(page.last()),
    )
}

/// A list request through the fault gate (when the organisation has usage at all).
async fn list_gate(
    v: &Vendor,
    q: &HashMap<String, String>,
    headers: &HeaderMap,
) -> Result<(), Response> {
    if v.anthropic.on() { gate(v, q, authorized(headers), 0).await.map(drop) } else { Ok(()) }
}

async fn users(
    State(v): State<Arc<Vendor>>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if let Err(r) = list_gate(&v, &q, &headers).await {
        return r;
    }
    let objects = USERS
        .iter()
        .filter(|_| v.anthropic.on())
        .map(|(id, email)| {
            let json = format!(
                r#"{{"id":"{id}","type":"user","email":"{email}","name":"{}","role":"developer",
                "added_at":"2026-01-05T10:00:00Z"}}"#,
                email.split('@').next().unwrap()
            );
            ((*id).to_owned(), json)
        })
        .collect();
    ([("content-type", "application/json")], list_page(objects, q.get("after_id"))).into_response()
}

async fn workspaces(
    State(v): State<Arc<Vendor>>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if let Err(r) = list_gate(&v, &q, &headers).await {
        return r;
    }
    let archived = q.get("include_archived").map(String::as_str) == Some("true");
    let objects = WORKSPACES
        .iter()
        .filter(|(_, _, gone)| v.anthropic.on() && (archived || !gone))
        .map(|(id, name, gone)| {
            let at = if *gone { "\"2026-06-01T00:00:00Z\"" } else { "null" };
            let json = format!(
                r##"{{"id":"{id}","type":"workspace","name":"{name}","created_at":
                "2025-11-01T00:00:00Z","archived_at":{at},"display_color":"#6C5BB9"}}"##
            );
            ((*id).to_owned(), json)
        })
        .collect();
    ([("content-type", "application/json")], list_page(objects, q.get("after_id"))).into_response()
}

/// A messages usage result.
pub(super) fn usage_result(
    workspace: Option<&str>,
    key: &str,
    account: Option<&str>,
    model: &str,
    (uncached, cache_1h, cache_5m, cache_read, output): (u64, u64, u64, u64, u64),
) -> String {
    let opt = |v: Option<&str>| v.map_or("null".to_owned(), |s| format!("\"{s}\""));
    format!(
        r#"{{"uncached_input_tokens":{uncached},"cache_creation":{{"ephemeral_1h_input_tokens":
        {cache_1h},"ephemeral_5m_input_tokens":{cache_5m}}},"cache_read_input_tokens":
        {cache_read},"output_tokens":{output},"server_tool_use":{{"web_search_requests":0}},
        "workspace_id":{},"api_key_id":"{key}","account_id":{},"model":"{model}",
        "service_tier":null,"context_window":null,"inference_geo":null}}"#,
        opt(workspace),
        opt(account)
    )
}

/// A usual day's messages usage: three results, 1,000 + 2,500 input and 600 output tokens.
/// One is in the default workspace (`workspace_id` null), one by a user account no longer in
/// the users list.
pub(super) fn usual_usage() -> [String; 3] {
    [
        usage_result(
            Some("wrkspc_01res"),
            "apikey_01a",
            Some("user_01ann"),
            "claude-sonnet-4-20250514",
            (400, 100, 50, 250, 300),
        ),
        usage_result(
            None,
            "apikey_01b",
            Some("user_01gone"),
            "claude-3-5-haiku-20241022",
            (1_000, 0, 0, 500, 200),
        ),
        usage_result(
            Some("wrkspc_01old"),
            "apikey_01c",
            None,
            "claude-sonnet-4-20250514",
            (1_000, 0, 0, 200, 100),
        ),
    ]
}

/// Input and output tokens of [`usual_usage`].
pub(super) const USAGE_DAY_TOKENS: i64 = 3_500 + 600;

async fn messages_usage(
    State(v): State<Arc<Vendor>>,
    headers: HeaderMap,
    Query(q): Query<Vec<(String, String)>>,
) -> Response {
    let map: HashMap<String, String> = q.iter().cloned().collect();
    let page = page_number(&map);
    let on = v.anthropic.on();
    let malformed = if on {
        match gate(&v, &map, authorized(&headers), page).await {
            Ok(m) => m || v.anthropic.malformed("messages", page),
            Err(r) => return r,
        }
    } else {
        false
    };
    let groups: Vec<&str> =
        q.iter().filter(|(k, _)| k == "group_by[]").map(|(_, v)| v.as_str()).collect();
    assert_eq!(groups, ["workspace_id", "api_key_id", "account_id", "model"]);
    assert_eq!(map["bucket_width"], "1d");
    let parse = aiscout_collector::ingest::parse::parse_datetime;
    let (from, to) = (parse(&map["starting_at"]).unwrap(), parse(&map["ending_at"]).unwrap());
    let (days, next) = bucket_page(from, to, map.get("page"));
    let rfc = |t: i64| connectors::litellm::datetime(t).replace(' ', "T") + "Z";
    let state = &v.anthropic;
    let mut buckets: Vec<String> = days
        .iter()
        .map(|d| {
            let mut results: Vec<String> = state
                .late_usage
                .lock()
                .unwrap()
                .iter()
                .filter(|(day, _)| day == d)
                .map(|(_, r)| r.clone())
                .collect();
            if on && !state.quiet.lock().unwrap().contains(d) {
                results.extend(usual_usage());
            }
            format!(
                r#"{{"starting_at":"{}","ending_at":"{}","results":[{}]}}"#,
                rfc(*d),
                rfc(d + DAY),
                results.join(",")
            )
        })
        .collect();
    if malformed {
        // The last bucket's first result loses its `output_tokens`.
        let last = buckets.last_mut().unwrap();
        *last = last.replacen(r#""output_tokens":300,"#, "", 1);
    }
    report_page(None, &buckets, next)
}

/// A Claude Code record of `day`.
pub(super) fn code_record(day: i64, actor: &str, models: &[(&str, [u64; 4])]) -> String {
    let date = connectors::litellm::datetime(day).replace(' ', "T") + "Z";
    let breakdown: Vec<String> = models
        .iter()
        .map(|(model, [input, output, cache_creation, cache_read])| {
            format!(
                r#"{{"model":"{model}","tokens":{{"input":{input},"output":{output},
                "cache_creation":{cache_creation},"cache_read":{cache_read}}},
                "estimated_cost":{{"amount":186,"currency":"USD"}}}}"#
            )
        })
        .collect();
    format!(
        r#"{{"date":"{date}","actor":{actor},"organization_id":"12345678-1234-5678-1234-567812345678",
        "customer_type":"api","terminal_type":"vscode","core_metrics":{{"num_sessions":3,
        "lines_of_code":{{"added":10,"removed":2}},"commits_by_claude_code":1,
        "pull_requests_by_claude_code":0}},"model_breakdown":[{}],
        "tool_actions":{{"edit_tool":{{"accepted":4,"rejected":1}}}}}}"#,
        breakdown.join(",")
    )
}

/// A user actor.
pub(super) fn user_actor(email: &str) -> String {
    format!(r#"{{"type":"user_actor","email_address":"{email}"}}"#)
}

/// A usual day's Claude Code records: two users (one with two models) and an API key; 6,000
/// input (with cache) and 1,500 output tokens, four rows.
pub(super) fn usual_code(day: i64) -> [String; 3] {
    [
        code_record(
            day,
            &user_actor("ann@example.com"),
            &[
                ("claude-sonnet-4-20250514", [1_000, 400, 200, 800]),
                ("claude-3-5-haiku-20241022", [500, 100, 0, 0]),
            ],
        ),
        code_record(
            day,
            &user_actor("bo@example.com"),
            &[("claude-sonnet-4-20250514", [2_000, 800, 0, 500])],
        ),
        code_record(
            day,
            r#"{"type":"api_actor","api_key_name":"ci-bot"}"#,
            &[("claude-sonnet-4-20250514", [1_000, 200, 0, 0])],
        ),
    ]
}

/// Input and output tokens of [`usual_code`].
pub(super) const CODE_DAY_TOKENS: i64 = 6_000 + 1_500;

async fn claude_code(
    State(v): State<Arc<Vendor>>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let n: usize = q.get("page").map_or(0, |p| p.trim_start_matches('c').parse().unwrap());
    let on = v.anthropic.on();
    let malformed = if on {
        match gate(&v, &q, authorized(&headers), n as u32 + 1).await {
            Ok(m) => m || v.anthropic.malformed("claude_code", n as u32 + 1),
            Err(r) => return r,
        }
    } else {
        false
    };
    let day = aiscout_collector::ingest::parse::parse_day(&q["starting_at"]).unwrap();
    let state = &v.anthropic;
    let mut records: Vec<String> = Vec::new();
    if on && !state.quiet.lock().unwrap().contains(&day) {
        records.extend(usual_code(day));
    }
    records.extend(
        state.late_code.lock().unwrap().iter().filter(|(d, _)| *d == day).map(|(_, r)| r.clone()),
    );
    let mut page: Vec<String> =
        records.iter().skip(n * CODE_PAGE).take(CODE_PAGE).cloned().collect();
    let more = (n + 1) * CODE_PAGE < records.len();
    if malformed {
        // The page's last record's actor loses its type.
        let last = page.last_mut().unwrap();
        *last = last.replacen(r#""type":"#, r#""kind":"#, 1);
    }
    report_page(None, &page, more.then(|| format!("c{}", n + 1)))
}

/// The fake's routes.
pub(super) fn routes() -> axum::Router<Arc<Vendor>> {
    axum::Router::new()
        .route("/v1/organizations/users", axum::routing::get(users))
        .route("/v1/organizations/workspaces", axum::routing::get(workspaces))
        .route("/v1/organizations/usage_report/messages", axum::routing::get(messages_usage))
        .route("/v1/organizations/usage_report/claude_code", axum::routing::get(claude_code))
}

/// One stream's counts in a run's progress: `(fetched, pages, new, known)`.
fn counts(p: &connectors::Progress, stream: &str) -> (u64, u64, u64, u64) {
    let (_, s) = p
        .streams
        .iter()
        .find(|(s, _)| s.as_str() == stream)
        .unwrap_or_else(|| panic!("no stream {stream} in {p:?}"));
    (s.fetched, s.pages, s.new, s.known)
}

/// Stored tokens per department (the people directory's for a known email, else the team:
/// here the workspace's name), and the whole cost and row count.
async fn by_department(store: &impl Store) -> (HashMap<String, i64>, i64, i64) {
    let totals = store.gateway_totals(None).await.unwrap();
    let mut tokens: HashMap<String, i64> = HashMap::new();
    for t in &totals {
        *tokens.entry(t.department.clone()).or_default() += t.tokens;
    }
    (tokens, totals.iter().map(|t| t.cost_nanos).sum(), totals.iter().map(|t| t.rows).sum())
}

/// Two people of the directory, so that a row's user email shows as their department.
async fn people(store: &impl Store) {
    use aiscout_collector::model::Person;
    let person = |email: &str, department: &str| Person {
        email: email.to_owned(),
        name: email.to_owned(),
        department: department.to_owned(),
        manager: None,
    };
    store
        .upsert_people(vec![person("ann@example.com", "R&D"), person("bo@example.com", "Support")])
        .await
        .unwrap();
}

/// Five finished days: the cost report, the messages usage report (two days a page, a quiet
/// day's bucket without results) and the Claude Code report (a day a chain of two pages, the
/// quiet day one empty page), with user accounts and workspaces named from their lists. Then
/// a late usage result and a late Claude Code record for yesterday, inside the overlap: the
/// next day's run stores them once; the run after that adds nothing. Tokens and cost exact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anthropic_usage_reports_name_their_rows_and_count_once() {
    let h = harness::sqlite().await;
    let store = h.store.clone();
    people(&store).await;
    let served = serve_vendor().await;
    let today = 1_796_083_200; // 2026-12-01T00:00:00Z
    let now = today + 3_600;
    let s = cost_settings(&served, Kind::Anthropic, today - 5 * DAY);
    let (index, stats) = (index(), Stats::default());
    *served.vendor.anthropic.on.lock().unwrap() = true;
    served.vendor.anthropic.quiet.lock().unwrap().push(today - 3 * DAY);

    let p = connectors::run(&store, &index, &s, &stats, now).await.unwrap();
    assert_eq!(counts(&p, "cost-report"), (10, 3, 10, 0));
    assert_eq!(counts(&p, "messages-usage"), (12, 3, 12, 0));
    assert_eq!(counts(&p, "claude-code"), (12, 9, 16, 0), "records, pages, rows");
    let (tokens, cost, rows) = by_department(&store).await;
    assert_eq!((cost, rows), (5 * ANTHROPIC_DAY_NANOS, 38));
    let want = |pairs: &[(&str, i64)]| -> HashMap<String, i64> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect()
    };
    assert_eq!(
        tokens,
        want(&[
            ("R&D", 4 * (1_100 + 3_000)),
            ("Support", 4 * 3_300),
            ("Old pilots", 4 * 1_300),
            ("", 4 * (1_700 + 1_200)),
            ("wrkspc_a", 0),
        ])
    );
    assert_eq!(4 * (USAGE_DAY_TOKENS + CODE_DAY_TOKENS), tokens.values().sum::<i64>());
    {
        let log = served.vendor.log.lock().unwrap();
        let lists: Vec<Option<&String>> = log
            .iter()
            .filter(|(_, q)| q.contains_key("limit") && !q.contains_key("starting_at"))
            .map(|(_, q)| q.get("after_id"))
            .collect();
        assert_eq!(lists.len(), 3, "users in two pages, workspaces in one: {lists:?}");
    }

    // Yesterday gains a usage result (Bo, in Research) and a Claude Code record (Cy, not in
    // the directory).
    served.vendor.anthropic.late_usage.lock().unwrap().push((
        today - DAY,
        usage_result(
            Some("wrkspc_01res"),
            "apikey_01d",
            Some("user_01bo"),
            "claude-opus-4-20250514",
            (10, 0, 0, 0, 5),
        ),
    ));
    served.vendor.anthropic.late_code.lock().unwrap().push((
        today - DAY,
        code_record(
            today - DAY,
            &user_actor("cy@example.com"),
            &[("claude-sonnet-4-20250514", [100, 50, 0, 0])],
        ),
    ));
    let p = connectors::run(&store, &index, &s, &stats, now + DAY).await.unwrap();
    assert_eq!(counts(&p, "cost-report"), (6, 2, 2, 4));
    assert_eq!(counts(&p, "messages-usage"), (10, 2, 4, 6));
    assert_eq!(counts(&p, "claude-code"), (10, 6, 5, 8));
    let (tokens, cost, rows) = by_department(&store).await;
    assert_eq!((cost, rows), (6 * ANTHROPIC_DAY_NANOS, 12 + 16 + 21));
    assert_eq!(tokens["Support"], 5 * 3_300 + 15);
    assert_eq!(tokens.values().sum::<i64>(), 5 * (USAGE_DAY_TOKENS + CODE_DAY_TOKENS) + 15 + 150);

    // The same again (the cursors moved a day: yesterday and today are asked again).
    let p = connectors::run(&store, &index, &s, &stats, now + DAY).await.unwrap();
    assert_eq!((p.new, counts(&p, "messages-usage").3, counts(&p, "claude-code").3), (0, 7, 9));
    assert_eq!(by_department(&store).await, (tokens, cost, rows));
}

/// A messages usage page without a result's `output_tokens` fails the run naming the page
/// and the field and stores nothing of that page; the cost report and the Claude Code report
/// (their own cursors) are stored whole; the next run stores the rest once. Then a malformed
/// Claude Code page (an actor without its type) fails the same way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_anthropic_usage_page_names_page_and_field() {
    let h = harness::sqlite().await;
    let store = h.store.clone();
    let served = serve_vendor().await;
    let today = 1_796_083_200;
    let now = today + 3_600;
    let s = cost_settings(&served, Kind::Anthropic, today - 5 * DAY);
    let (index, stats) = (index(), Stats::default());
    *served.vendor.anthropic.on.lock().unwrap() = true;
    served.vendor.anthropic.malform.lock().unwrap().push(("messages", 2));
    let e = connectors::run(&store, &index, &s, &stats, now).await.unwrap_err();
    let text = e.to_string();
    assert!(matches!(e, ConnectorError::Shape { page: 2, .. }), "{text}");
    assert!(
        text.contains("usage report") && text.contains("missing field `output_tokens`"),
        "{text}"
    );
    let (_, cost, rows) = by_department(&store).await;
    assert_eq!((cost, rows), (5 * ANTHROPIC_DAY_NANOS, 10 + 6 + 20), "page 1 of the usage only");
    let key = |stream: &str| format!("{}/{stream}", s.name);
    assert_eq!(store.connector_cursor(key("messages-usage")).await.unwrap(), None);
    assert_eq!(store.connector_cursor(key("claude-code")).await.unwrap(), Some(today));

    let p = connectors::run(&store, &index, &s, &stats, now).await.unwrap();
    assert_eq!(counts(&p, "messages-usage"), (15, 3, 9, 6));
    let (tokens, cost, rows) = by_department(&store).await;
    assert_eq!((cost, rows), (5 * ANTHROPIC_DAY_NANOS, 10 + 15 + 20));
    assert_eq!(tokens.values().sum::<i64>(), 5 * (USAGE_DAY_TOKENS + CODE_DAY_TOKENS));

    served.vendor.anthropic.malform.lock().unwrap().push(("claude_code", 2));
    let e = connectors::run(&store, &index, &s, &stats, now + DAY).await.unwrap_err();
    let text = e.to_string();
    assert!(
        text.contains("claude code usage report") && text.contains("missing field `type`"),
        "{text}"
    );
    assert_eq!(store.connector_cursor(key("claude-code")).await.unwrap(), Some(today));
    let p = connectors::run(&store, &index, &s, &stats, now + DAY).await.unwrap();
    assert_eq!(counts(&p, "claude-code").2, 4, "the new day's rows once");
}
