//! The streams and lists that name spend: OpenAI completions usage beside the costs, named by
//! the users and projects lists; LiteLLM spend logs named by the users and teams lists. The
//! fake endpoints follow collector/src/connectors/VENDORS.md ("OpenAI", "LiteLLM"):
//!
//! - `GET /v1/organization/usage/completions`: `start_time`, `end_time`, `bucket_width=1d`,
//!   `group_by` `user_id`, `project_id`, `api_key_id`, `model`, `limit` (at most 31), `page`;
//!   answer `{object: "page", data: [bucket], has_more, next_page}`, a bucket's `results` of
//!   `organization.usage.completions.result` with `input_tokens`, `output_tokens`,
//!   `input_cached_tokens`, `num_model_requests` and the grouped ids.
//! - `GET /v1/organization/users` and `/v1/organization/projects` (`include_archived=true`):
//!   `limit` (at most 100), `after`; answer `{object: "list", data, first_id, last_id,
//!   has_more}`; a user `{object: "organization.user", id, name, email, role, added_at}`, a
//!   project `{object: "organization.project", id, name, created_at, archived_at, status}`.
//! - LiteLLM `GET /user/list?page&page_size` (page size at most 100): `{users, total, page,
//!   page_size, total_pages}`, a user `{user_id, user_email, ...}`; `GET /team/list`: an array
//!   of teams `{team_id, team_alias, ...}`.
//!
//! These answer two items a page (fewer than asked, as a server may), so that a few make
//! several pages. They pass the second gate, whose faults and log are their own.

use std::collections::BTreeMap;

use aiscout_collector::model::Person;

use super::*;

pub(super) fn routes() -> axum::Router<Arc<Vendor>> {
    axum::Router::new()
        .route("/v1/organization/usage/completions", axum::routing::get(openai_usage))
        .route("/v1/organization/users", axum::routing::get(openai_users))
        .route("/v1/organization/projects", axum::routing::get(openai_projects))
        .route("/litellm/user/list", axum::routing::get(litellm_users))
        .route("/litellm/team/list", axum::routing::get(litellm_teams))
}

/// Items a fake list page holds.
const LIST_PAGE: usize = 2;

/// The second gate: logs the request under `path`, takes its fault; `true` when the answer
/// must be malformed.
fn side_gate(
    v: &Vendor,
    path: &str,
    q: &HashMap<String, String>,
    authorized: bool,
) -> Result<bool, StatusCode> {
    v.side_log.lock().unwrap().push((path.to_owned(), q.clone()));
    let fault = v.side_faults.lock().unwrap().pop_front().flatten();
    if !authorized || *v.expired.lock().unwrap() {
        return Err(StatusCode::UNAUTHORIZED);
    }
    match fault {
        Some(Fault::Unavailable) => Err(StatusCode::INTERNAL_SERVER_ERROR),
        Some(Fault::Malformed) => Ok(true),
        None => Ok(false),
        Some(other) => panic!("the second gate does not do {other:?}"),
    }
}

fn bearer_ok(headers: &HeaderMap) -> bool {
    header(headers, "authorization") == Some(&format!("Bearer {KEY}"))
}

fn json(body: String) -> Response {
    ([("content-type", "application/json")], body).into_response()
}

async fn openai_usage(
    State(v): State<Arc<Vendor>>,
    headers: HeaderMap,
    Query(q): Query<Vec<(String, String)>>,
) -> Response {
    let map: HashMap<String, String> = q.iter().cloned().collect();
    let malformed = match side_gate(&v, "usage", &map, bearer_ok(&headers)) {
        Ok(m) => m,
        Err(status) => return status.into_response(),
    };
    let groups: Vec<&str> =
        q.iter().filter(|(k, _)| k == "group_by").map(|(_, v)| v.as_str()).collect();
    assert_eq!(groups, ["user_id", "project_id", "api_key_id", "model"]);
    assert_eq!(map["bucket_width"], "1d");
    assert!(map["limit"].parse::<u32>().unwrap() <= 31, "limit is at most 31 for 1d");
    let (from, to) = (map["start_time"].parse().unwrap(), map["end_time"].parse().unwrap());
    let (days, next) = bucket_page(from, to, map.get("page"));
    let usage = v.usage.lock().unwrap().clone();
    let mut buckets: Vec<String> = days
        .iter()
        .map(|d| {
            let results: Vec<&str> =
                usage.iter().filter(|(day, _)| day == d).map(|(_, r)| r.as_str()).collect();
            format!(
                r#"{{"object":"bucket","start_time":{d},"end_time":{},"results":[{}]}}"#,
                d + DAY,
                results.join(",")
            )
        })
        .collect();
    if malformed {
        // The last result of the page loses its `output_tokens`.
        let last = buckets.iter_mut().rev().find(|b| b.contains("output_tokens")).unwrap();
        let at = last.rfind(r#""output_tokens":"#).unwrap();
        let end = at + last.get(at..).unwrap().find(',').unwrap() + 1;
        last.replace_range(at..end, "");
    }
    report_page(Some("page"), &buckets, next)
}

/// One usage result: `tokens` in and out, for a user, project, key and model.
fn usage(user: &str, project: &str, model: &str, tokens: (u64, u64)) -> String {
    format!(
        r#"{{"object":"organization.usage.completions.result","input_tokens":{},
        "output_tokens":{},"input_cached_tokens":0,"input_audio_tokens":0,"output_audio_tokens":0,
        "num_model_requests":3,"project_id":"{project}","user_id":"{user}",
        "api_key_id":"key_{user}","model":"{model}","batch":null}}"#,
        tokens.0, tokens.1
    )
}

/// An OpenAI list page `after` the given id: `{object, data, first_id, last_id, has_more}`.
fn openai_list(
    items: &[(String, String)],
    q: &HashMap<String, String>,
    item: &dyn Fn(&(String, String)) -> String,
    malformed: bool,
) -> Response {
    assert!(q["limit"].parse::<u32>().unwrap() <= 100, "limit is at most 100");
    let start = q.get("after").map_or(0, |a| items.iter().position(|(id, _)| id == a).unwrap() + 1);
    let page: Vec<&(String, String)> = items.iter().skip(start).take(LIST_PAGE).collect();
    let mut data: Vec<String> = page.iter().map(|i| item(i)).collect();
    if malformed {
        let last = data.last_mut().unwrap();
        *last = last.replacen(r#""id":"#, r#""ident":"#, 1);
    }
    let id =
        |i: Option<&&(String, String)>| i.map_or("null".to_owned(), |(id, _)| format!("\"{id}\""));
    json(format!(
        r#"{{"object":"list","data":[{}],"first_id":{},"last_id":{},"has_more":{}}}"#,
        data.join(","),
        id(page.first()),
        id(page.last()),
        start + page.len() < items.len()
    ))
}

async fn openai_users(
    State(v): State<Arc<Vendor>>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let malformed = match side_gate(&v, "users", &q, bearer_ok(&headers)) {
        Ok(m) => m,
        Err(status) => return status.into_response(),
    };
    let users = v.users.lock().unwrap().clone();
    openai_list(
        &users,
        &q,
        &|(id, email)| {
            format!(
                r#"{{"object":"organization.user","id":"{id}","name":"N","email":"{email}",
                "role":"reader","added_at":1711471533}}"#
            )
        },
        malformed,
    )
}

async fn openai_projects(
    State(v): State<Arc<Vendor>>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let malformed = match side_gate(&v, "projects", &q, bearer_ok(&headers)) {
        Ok(m) => m,
        Err(status) => return status.into_response(),
    };
    assert_eq!(q["include_archived"], "true");
    let projects = v.teams.lock().unwrap().clone();
    openai_list(
        &projects,
        &q,
        &|(id, name)| {
            format!(
                r#"{{"id":"{id}","object":"organization.project","name":"{name}",
                "created_at":1711471533,"archived_at":null,"status":"active"}}"#
            )
        },
        malformed,
    )
}

async fn litellm_users(
    State(v): State<Arc<Vendor>>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let malformed = match side_gate(&v, "user/list", &q, bearer_ok(&headers)) {
        Ok(m) => m,
        Err(status) => return status.into_response(),
    };
    assert!(q["page_size"].parse::<u32>().unwrap() <= 100, "page_size is at most 100");
    let page: usize = q["page"].parse().unwrap();
    let users = v.users.lock().unwrap().clone();
    let mut data: Vec<String> = users
        .iter()
        .skip((page - 1) * LIST_PAGE)
        .take(LIST_PAGE)
        .map(|(id, email)| {
            format!(
                r#"{{"user_id":"{id}","user_email":"{email}","user_role":"internal_user",
                "spend":0.5,"max_budget":null,"teams":[]}}"#
            )
        })
        .collect();
    if malformed {
        let last = data.last_mut().unwrap();
        *last = last.replacen(r#""user_id":"#, r#""uid":"#, 1);
    }
    json(format!(
        r#"{{"users":[{}],"total":{},"page":{page},"page_size":{LIST_PAGE},"total_pages":{}}}"#,
        data.join(","),
        users.len(),
        users.len().div_ceil(LIST_PAGE)
    ))
}

async fn litellm_teams(
    State(v): State<Arc<Vendor>>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if let Err(status) = side_gate(&v, "team/list", &q, bearer_ok(&headers)) {
        return status.into_response();
    }
    let teams = v.teams.lock().unwrap().clone();
    let data: Vec<String> = teams
        .iter()
        .map(|(id, alias)| {
            format!(r#"{{"team_id":"{id}","team_alias":"{alias}","models":[],"spend":1.5}}"#)
        })
        .collect();
    json(format!("[{}]", data.join(",")))
}

fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
    items.iter().map(|(a, b)| ((*a).to_owned(), (*b).to_owned())).collect()
}

/// The directory: Ana is in Research; nobody else is known.
async fn directory(store: &impl Store) {
    let ana = Person {
        email: "ana@example.com".into(),
        name: "Ana".into(),
        department: "Research".into(),
        manager: None,
    };
    store.upsert_people(vec![ana]).await.unwrap();
}

/// Tokens and cost by department (the person's department, else the team or project name as
/// the vendor's lists name it), and all rows.
async fn by_department(store: &impl Store) -> (BTreeMap<String, (i64, i64)>, i64) {
    let mut out = BTreeMap::new();
    let mut rows = 0;
    for t in store.gateway_totals(None).await.unwrap() {
        let e = out.entry(t.department.clone()).or_insert((0, 0));
        e.0 += t.tokens;
        e.1 += t.cost_nanos;
        rows += t.rows;
    }
    (out, rows)
}

/// OpenAI: costs and completions usage, each with its own cursor; users and projects (three
/// each, over two list pages) name them. Usage starts on the third of five days, so the first
/// usage page is empty; the second run finds a late usage row inside the two-day overlap and a
/// new day; the third finds nothing new. Totals are checked exactly: the cost to the
/// billionth, the tokens to the token, per department.
async fn openai_usage_beside_costs_named_by_users_and_projects(store: impl Store) {
    let served = serve_vendor().await;
    let v = &served.vendor;
    *v.users.lock().unwrap() = pairs(&[
        ("user-ana", "ana@example.com"),
        ("user-bo", "bo@example.com"),
        ("user-cy", "cy@example.com"),
    ]);
    *v.teams.lock().unwrap() =
        pairs(&[("proj_a", "Search"), ("proj_b", "Support"), ("proj_c", "Old bot")]);
    let today = 1_796_083_200; // 2026-12-01T00:00:00Z
    let now = today + 3_600;
    for d in 1..=3 {
        let day = today - d * DAY;
        let mut held = v.usage.lock().unwrap();
        held.push((day, usage("user-ana", "proj_b", "gpt-4o-mini", (1_000, 500))));
        held.push((day, usage("user-bo", "proj_a", "gpt-4o", (200, 100))));
    }
    directory(&store).await;
    let s = cost_settings(&served, Kind::Openai, today - 5 * DAY);
    let (index, stats) = (index(), Stats::default());
    let p = connectors::run(&store, &index, &s, &stats, now).await.unwrap();
    assert_eq!((p.fetched, p.pages, p.new, p.known), (16, 6, 16, 0));
    let [(costs, c), (used, u)] = &p.streams[..] else { panic!("{p:?}") };
    assert_eq!((costs.as_str(), c.fetched, c.pages), ("costs", 10, 3));
    assert_eq!((used.as_str(), u.fetched, u.pages, u.new), ("usage", 6, 3, 6));
    let side: Vec<String> = v.side_log.lock().unwrap().iter().map(|(p, _)| p.clone()).collect();
    assert_eq!(side, ["users", "users", "projects", "projects", "usage", "usage", "usage"]);
    let first_usage = v.side_log.lock().unwrap()[4].1.clone();
    assert_eq!(first_usage["start_time"], (today - 5 * DAY).to_string());
    assert_eq!(store.connector_cursor("openai-admin".into()).await.unwrap(), Some(today));
    assert_eq!(store.connector_cursor("openai-admin/usage".into()).await.unwrap(), Some(today));
    let (departments, rows) = by_department(&store).await;
    assert_eq!(rows, 16);
    // Ana's usage is hers (Research); Bo is not in the directory, so his usage keeps the
    // project's name; the costs (all proj_a) are named Search.
    let want: BTreeMap<String, (i64, i64)> = [
        ("Research".to_owned(), (3 * 1_500, 0)),
        ("Search".to_owned(), (3 * 300, 5 * OPENAI_DAY_NANOS)),
    ]
    .into();
    assert_eq!(departments, want);
    let ana = store.person_usage(Some("ana@example.com".into())).await.unwrap();
    assert_eq!(ana.len(), 1, "the usage lands on the person");

    // A day later: a late row for a finished day inside the overlap, and the new day.
    {
        let mut held = v.usage.lock().unwrap();
        held.push((today - DAY, usage("user-cy", "proj_c", "gpt-4o", (40, 2))));
        held.push((today, usage("user-ana", "proj_b", "gpt-4o-mini", (1_000, 500))));
        held.push((today, usage("user-bo", "proj_a", "gpt-4o", (200, 100))));
    }
    let p = connectors::run(&store, &index, &s, &stats, now + DAY).await.unwrap();
    let u = &p.streams[1].1;
    assert_eq!(u.window, (today - 2 * DAY, today + DAY));
    assert_eq!((u.fetched, u.new, u.known), (7, 3, 4));
    assert_eq!(
        store.connector_cursor("openai-admin/usage".into()).await.unwrap(),
        Some(today + DAY)
    );
    // The same again adds nothing.
    let p = connectors::run(&store, &index, &s, &stats, now + DAY).await.unwrap();
    assert_eq!((p.new, p.known), (0, 9), "the window is now yesterday and today");
    let (departments, rows) = by_department(&store).await;
    assert_eq!(rows, 16 + 2 + 3);
    let want: BTreeMap<String, (i64, i64)> = [
        ("Research".to_owned(), (4 * 1_500, 0)),
        ("Search".to_owned(), (4 * 300, 6 * OPENAI_DAY_NANOS)),
        ("Old bot".to_owned(), (42, 0)),
    ]
    .into();
    assert_eq!(departments, want);

    // The inventory shows the tokens beside the spend.
    let facts = aiscout_collector::join::gather(
        &store,
        Default::default(),
        now + DAY,
        aiscout_collector::join::Purpose::Inventory,
    )
    .await
    .unwrap();
    let catalog = aiscout_signatures::Catalog::builtin().unwrap();
    let rows = aiscout_collector::join::inventory(
        &catalog,
        &Default::default(),
        &Default::default(),
        &facts,
    );
    let tokens: u64 = rows.iter().map(|r| r.gateway_tokens).sum();
    assert_eq!(tokens, 4 * 1_800 + 42);
}

/// A malformed usage page fails the run naming the page and the field: the costs stream before
/// it has moved its cursor, the usage stream keeps its own and stores nothing of that page;
/// the next run finishes it. A malformed users page fails the costs stream before any row of
/// its page is stored (the names are read before the first page is stored); the usage stream
/// after it still runs and moves its own cursor.
async fn a_failing_stream_keeps_its_own_cursor(store: impl Store) {
    let served = serve_vendor().await;
    let v = &served.vendor;
    *v.users.lock().unwrap() =
        pairs(&[("user-ana", "ana@example.com"), ("user-bo", "b@x.io"), ("user-cy", "c@x.io")]);
    *v.teams.lock().unwrap() = pairs(&[("proj_a", "Search")]);
    let today = 1_796_083_200;
    let now = today + 3_600;
    for d in 1..=5 {
        v.usage.lock().unwrap().push((today - d * DAY, usage("user-ana", "proj_a", "o3", (7, 3))));
    }
    let s = cost_settings(&served, Kind::Openai, today - 5 * DAY);
    let (index, stats) = (index(), Stats::default());

    // Usage page 2 is malformed (users 1 and 2, projects 1, usage 1, usage 2).
    v.side_faults.lock().unwrap().extend([None, None, None, None, Some(Fault::Malformed)]);
    let e = connectors::run(&store, &index, &s, &stats, now).await.unwrap_err();
    let text = e.to_string();
    assert!(
        matches!(e, ConnectorError::Shape { page: 2, what: "completions usage", .. }),
        "{text}"
    );
    assert!(text.contains("missing field `output_tokens`"), "{text}");
    assert_eq!(store.connector_cursor("openai-admin".into()).await.unwrap(), Some(today));
    assert_eq!(store.connector_cursor("openai-admin/usage".into()).await.unwrap(), None);
    let (departments, rows) = by_department(&store).await;
    assert_eq!(rows, 10 + 2, "the costs and usage page 1 (two days), nothing of page 2");
    assert_eq!(departments["Search"], (2 * 10, 5 * OPENAI_DAY_NANOS));
    let history = store.import_runs(1).await.unwrap();
    assert!(history[0].error.contains("completions usage"), "{:?}", history[0]);

    let p = connectors::run(&store, &index, &s, &stats, now).await.unwrap();
    assert_eq!((p.streams[1].1.new, p.streams[1].1.known), (3, 2));
    assert_eq!(store.connector_cursor("openai-admin/usage".into()).await.unwrap(), Some(today));
    let (departments, rows) = by_department(&store).await;
    assert_eq!(rows, 15);
    assert_eq!(departments["Search"], (5 * 10, 5 * OPENAI_DAY_NANOS));

    // A day later users page 2 is malformed: the costs stream fails before storing its first
    // page and keeps its cursor; the usage stream after it reads the lists again and moves.
    v.side_faults.lock().unwrap().extend([None, Some(Fault::Malformed)]);
    let e = connectors::run(&store, &index, &s, &stats, now + DAY).await.unwrap_err();
    let text = e.to_string();
    assert!(matches!(e, ConnectorError::Shape { page: 2, what: "users", .. }), "{text}");
    assert!(text.contains("missing field `id`"), "{text}");
    assert_eq!(store.connector_cursor("openai-admin".into()).await.unwrap(), Some(today));
    assert_eq!(
        store.connector_cursor("openai-admin/usage".into()).await.unwrap(),
        Some(today + DAY)
    );
    let (departments, rows) = by_department(&store).await;
    assert_eq!(rows, 15, "nothing of the new day's costs page");
    assert_eq!(departments["Search"], (5 * 10, 5 * OPENAI_DAY_NANOS));
}

/// LiteLLM spend logs whose records name users and teams by id: the users list (three users
/// over two pages) and the teams list turn them into emails and aliases; a malformed users
/// page fails the run naming it, storing nothing.
async fn litellm_spend_named_by_users_and_teams(store: impl Store) {
    let served = serve_vendor().await;
    let v = &served.vendor;
    *v.users.lock().unwrap() = pairs(&[
        ("lu-0", "ana@example.com"),
        ("lu-1", "eli@example.com"),
        ("lu-2", "fay@example.com"),
    ]);
    *v.teams.lock().unwrap() = pairs(&[("team-0", "Platform"), ("team-1", "Data")]);
    let now = 1_796_000_000;
    let mut expected = 0;
    {
        let mut rows = v.rows.lock().unwrap();
        for i in 0..120u64 {
            let (at, record) = record(i, now - 60 - i as i64 * 10);
            // Ids instead of the emails and aliases `record` writes.
            let record = record
                .replace(
                    &format!("\"user\":\"u{}@example.com\"", i % 5),
                    &format!("\"user\":\"lu-{}\"", i % 2),
                )
                .replace("\"team_id\":\"team-a\"", &format!("\"team_id\":\"team-{}\"", i % 2))
                .replace(",\"user_api_key_team_alias\":\"Team A\"", "");
            rows.push((at, record));
            expected += nanos(i);
        }
    }
    directory(&store).await;
    let s = settings(&served, now - DAY);
    let (index, stats) = (index(), Stats::default());

    v.side_faults.lock().unwrap().extend([None, Some(Fault::Malformed)]);
    let e = connectors::run(&store, &index, &s, &stats, now).await.unwrap_err();
    assert!(matches!(e, ConnectorError::Shape { page: 2, what: "users", .. }), "{e}");
    assert!(e.to_string().contains("missing field `user_id`"), "{e}");
    assert_eq!(stored_nanos(&store).await, (0, 0));
    assert_eq!(store.connector_cursor(s.name.clone()).await.unwrap(), None);

    let p = connectors::run(&store, &index, &s, &stats, now).await.unwrap();
    assert_eq!((p.fetched, p.pages, p.new, p.known), (120, 2, 120, 0));
    let side: Vec<(String, String)> = v
        .side_log
        .lock()
        .unwrap()
        .iter()
        .skip(2)
        .map(|(p, q)| (p.clone(), q["page"].clone()))
        .collect();
    let want: Vec<(String, String)> =
        pairs(&[("user/list", "1"), ("user/list", "2"), ("team/list", "1")]);
    assert_eq!(side, want);
    assert_eq!(stored_nanos(&store).await, (expected, 120), "totals to the billionth");
    let (departments, _) = by_department(&store).await;
    // lu-0 is Ana (Research); lu-1 is Eli, not in the directory: the team's alias.
    let keys: Vec<&str> = departments.keys().map(String::as_str).collect();
    assert_eq!(keys, ["Data", "Research"]);
    let p = connectors::run(&store, &index, &s, &stats, now).await.unwrap();
    assert_eq!((p.new, p.known), (0, 120), "a second sync adds nothing");
    assert_eq!(stored_nanos(&store).await, (expected, 120));
}

mod sqlite {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn openai_usage_beside_costs_named_by_users_and_projects() {
        let h = super::harness::sqlite().await;
        super::openai_usage_beside_costs_named_by_users_and_projects(h.store.clone()).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failing_stream_keeps_its_own_cursor() {
        let h = super::harness::sqlite().await;
        super::a_failing_stream_keeps_its_own_cursor(h.store.clone()).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn litellm_spend_named_by_users_and_teams() {
        let h = super::harness::sqlite().await;
        super::litellm_spend_named_by_users_and_teams(h.store.clone()).await;
    }
}

mod postgres {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn openai_usage_beside_costs_named_by_users_and_projects() {
        let h = super::harness::postgres().await;
        super::openai_usage_beside_costs_named_by_users_and_projects(h.store.clone()).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn litellm_spend_named_by_users_and_teams() {
        let h = super::harness::postgres().await;
        super::litellm_spend_named_by_users_and_teams(h.store.clone()).await;
    }
}
