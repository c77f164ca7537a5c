//! Anthropic Admin API (VENDORS.md, "Anthropic"), headers `x-api-key` and
//! `anthropic-version: 2023-06-01` on every request:
//!
//! - the cost report, `GET /v1/organizations/cost_report` with `starting_at`, `ending_at`
//!   (RFC 3339), `bucket_width=1d`, `group_by[]` workspace and description, `limit` and the
//!   `page` token from `next_page` while `has_more`; amounts in cents, as decimal strings;
//! - the messages usage report, `GET /v1/organizations/usage_report/messages`, the same
//!   window and paging, grouped by workspace, API key, user account and model: tokens, no cost;
//! - the Claude Code usage report, `GET /v1/organizations/usage_report/claude_code`, one UTC
//!   day per request (`starting_at=YYYY-MM-DD`), paged by `next_page`: one record per actor
//!   (a user's email, or an API key's name) and day, with tokens per model;
//! - the users and workspaces lists (`GET /v1/organizations/users`, `.../workspaces`, paged by
//!   `after_id` = the last `last_id` while `has_more`), read once per run to name a usage
//!   row's user account (its email) and workspace (its name).
//!
//! The usage reports' records become rows under the gateway import's column names (`date`,
//! `provider`, `model`, `team`, `user`, `api_key`, tokens, `cost`, `currency`, and an `id`
//! built from the record's own identifiers, so that renaming a workspace never makes a known
//! row new).

use hyper::header::{HeaderName, HeaderValue};
use serde::Deserialize;
use serde::de::DeserializeOwned;

use super::http::{Client, IdList, Report, id_list, json_report_page, secret_header};
use super::{ConnectorError, Names, Page, ShapeReason, Table, rfc3339};
use crate::ingest::gateway::CLAUDE_CODE_TAG;

/// Daily buckets asked for per page (the documented maximum).
pub const BUCKETS_PER_PAGE: u32 = 31;
/// The API version header value the shapes in VENDORS.md are documented for.
pub const API_VERSION: &str = "2023-06-01";

#[derive(Deserialize)]
#[allow(dead_code)]
struct Bucket {
    starting_at: String,
    ending_at: String,
    results: Vec<CostResult>,
}

#[derive(Deserialize)]
#[allow(dead_code)]
struct CostResult {
    /// Cents, as a decimal string.
    amount: String,
    currency: String,
}

/// The admin key and the API version, on every request.
fn headers(client: &Client<'_>) -> Result<[(HeaderName, HeaderValue); 2], ConnectorError> {
    let settings = client.settings();
    let key = secret_header(settings.credential.expose(), &settings.credential_setting)?;
    Ok([
        (HeaderName::from_static("x-api-key"), key),
        (HeaderName::from_static("anthropic-version"), HeaderValue::from_static(API_VERSION)),
    ])
}

/// Fetches one page of `[from, to)`; the second value is the next page's token.
///
/// # Errors
/// The request failed, or the page does not match the documented shape (naming the field).
pub(crate) async fn page(
    client: &mut Client<'_>,
    from: i64,
    to: i64,
    page_no: u32,
    cursor: Option<&str>,
) -> Result<(Page, Option<String>), ConnectorError> {
    let headers = headers(client)?;
    // Built in a block: the serializer is not Send and must not live across the await.
    let path = {
        let mut query = form_urlencoded::Serializer::new(String::new());
        query
            .append_pair("starting_at", &rfc3339(from))
            .append_pair("ending_at", &rfc3339(to))
            .append_pair("bucket_width", "1d")
            .append_pair("group_by[]", "workspace_id")
            .append_pair("group_by[]", "description")
            .append_pair("limit", &BUCKETS_PER_PAGE.to_string());
        if let Some(c) = cursor {
            query.append_pair("page", c);
        }
        format!("/v1/organizations/cost_report?{}", query.finish())
    };
    let results = |b: &Bucket| b.results.len();
    json_report_page(client, &path, &headers, page_no, "cost report", results).await
}

#[derive(Deserialize)]
struct User {
    id: String,
    email: String,
}

#[derive(Deserialize)]
struct Workspace {
    id: String,
    name: String,
}

/// Objects a list page asks for (within the workspaces list's documented 1 to 1,000; the
/// users list's range is not documented in the pages we have).
pub const LIST_LIMIT: u32 = 100;

/// Every object of a list, page by page: `after_id` is the previous page's `last_id` while
/// `has_more` (at most [`super::MAX_PAGES`] pages).
async fn list<T: DeserializeOwned>(
    client: &mut Client<'_>,
    path: &str,
    extra: &[(&str, &str)],
    what: &'static str,
) -> Result<Vec<T>, ConnectorError> {
    let headers = headers(client)?;
    let list = IdList { path, extra, what, cursor: "after_id", limit: LIST_LIMIT };
    id_list(client, &headers, list).await
}

/// Reads the users and workspaces (archived ones too: their past usage is still theirs): user
/// account id to email, workspace id (the usage rows' team) to its name.
///
/// # Errors
/// A request failed or a page does not match the documented shape.
pub(crate) async fn names(client: &mut Client<'_>) -> Result<Names, ConnectorError> {
    let users: Vec<User> = list(client, "/v1/organizations/users", &[], "users").await?;
    let workspaces: Vec<Workspace> =
        list(client, "/v1/organizations/workspaces", &[("include_archived", "true")], "workspaces")
            .await?;
    Ok(Names {
        users: users.into_iter().map(|u| (u.id, u.email)).collect(),
        teams: workspaces.into_iter().map(|w| (w.id, w.name)).collect(),
    })
}

/// The gateway import's column names the usage reports' rows are written under.
const USAGE_COLUMNS: [&str; 12] = [
    "id",
    "date",
    "provider",
    "model",
    "team",
    "user",
    "api_key",
    "input_tokens",
    "output_tokens",
    "cost",
    "currency",
    "tags",
];

/// Whom a usage row is for: a team (the workspace), a user (an email) and an API key.
struct Who<'a> {
    team: &'a str,
    user: &'a str,
    api_key: &'a str,
}

/// One usage row under [`USAGE_COLUMNS`]: no cost, in USD.
fn push_usage(
    table: &mut Table,
    id: &str,
    at: i64,
    model: &str,
    who: Who<'_>,
    (input, output): (u64, u64),
    tags: &str,
) {
    table.push([
        id,
        &rfc3339(at),
        "anthropic",
        model,
        who.team,
        who.user,
        who.api_key,
        &input.to_string(),
        &output.to_string(),
        "0",
        "USD",
        tags,
    ]);
}

/// A stable id of a usage record from the vendor's own identifiers (never a display name):
/// the report, then each part, hashed.
fn usage_id(parts: &[&str]) -> String {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    for p in parts {
        ctx.update(p.as_bytes());
        ctx.update(b"\x1f");
    }
    let digest = ctx.finish();
    crate::ingest::expense::hex(digest.as_ref().get(..16).unwrap_or_default())
}

#[derive(Deserialize)]
struct UsageBucket {
    starting_at: String,
    results: Vec<UsageResult>,
}

/// One messages usage result: the token counts are required, the grouped dimensions are
/// `null` when not grouped by or not known (`workspace_id` `null` is the default workspace).
#[derive(Deserialize)]
struct UsageResult {
    uncached_input_tokens: u64,
    cache_creation: CacheCreation,
    cache_read_input_tokens: u64,
    output_tokens: u64,
    #[serde(default)]
    workspace_id: Option<String>,
    #[serde(default)]
    api_key_id: Option<String>,
    #[serde(default)]
    account_id: Option<String>,
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    service_tier: Option<String>,
    #[serde(default)]
    context_window: Option<String>,
}

#[derive(Deserialize)]
struct CacheCreation {
    ephemeral_1h_input_tokens: u64,
    ephemeral_5m_input_tokens: u64,
}

/// Daily buckets asked for per messages usage page (the documented maximum for `1d`).
pub const USAGE_BUCKETS_PER_PAGE: u32 = 31;

/// Fetches one page of the messages usage report for `[from, to)`, grouped by workspace, API
/// key, user account and model; the second value is the next page's token. Input tokens are
/// the uncached, cache-write and cache-read ones together.
///
/// # Errors
/// The request failed, or the page does not match the documented shape (naming the field).
pub(crate) async fn messages_page(
    client: &mut Client<'_>,
    from: i64,
    to: i64,
    page_no: u32,
    cursor: Option<&str>,
) -> Result<(Page, Option<String>), ConnectorError> {
    let headers = headers(client)?;
    let path = {
        let mut query = form_urlencoded::Serializer::new(String::new());
        query
            .append_pair("starting_at", &rfc3339(from))
            .append_pair("ending_at", &rfc3339(to))
            .append_pair("bucket_width", "1d");
        for group in ["workspace_id", "api_key_id", "account_id", "model"] {
            query.append_pair("group_by[]", group);
        }
        query.append_pair("limit", &USAGE_BUCKETS_PER_PAGE.to_string());
        if let Some(c) = cursor {
            query.append_pair("page", c);
        }
        format!("/v1/organizations/usage_report/messages?{}", query.finish())
    };
    let body = client.get(&path, &headers, page_no).await?;
    let shape =
        |reason: ShapeReason| ConnectorError::Shape { page: page_no, what: "usage report", reason };
    let envelope: Report<UsageBucket> = Report::parse(&body, page_no, "usage report")?;
    let mut table = Table::new(&USAGE_COLUMNS);
    let mut records: u64 = 0;
    for (b, bucket) in envelope.data.iter().enumerate() {
        let day = crate::ingest::parse::parse_datetime(&bucket.starting_at).ok_or_else(|| {
            shape(format!("data[{b}].starting_at: {:?} is not a time", bucket.starting_at).into())
        })?;
        for r in &bucket.results {
            records += 1;
            let opt = |v: &Option<String>| v.clone().unwrap_or_default();
            let (workspace, key, account, model) =
                (opt(&r.workspace_id), opt(&r.api_key_id), opt(&r.account_id), opt(&r.model));
            let id = usage_id(&[
                "messages",
                &day.to_string(),
                &workspace,
                &key,
                &account,
                &model,
                &opt(&r.service_tier),
                &opt(&r.context_window),
            ]);
            let input = r
                .uncached_input_tokens
                .saturating_add(r.cache_creation.ephemeral_1h_input_tokens)
                .saturating_add(r.cache_creation.ephemeral_5m_input_tokens)
                .saturating_add(r.cache_read_input_tokens);
            let who = Who { team: &workspace, user: &account, api_key: &key };
            push_usage(&mut table, &id, day, &model, who, (input, r.output_tokens), "");
        }
    }
    let next = envelope.next_page().map_err(|e| shape(e.into()))?;
    Ok((Page { rows: table.into_rows(), records }, next))
}

/// One Claude Code record: one actor's day.
#[derive(Deserialize)]
struct CodeRecord {
    date: String,
    actor: Actor,
    model_breakdown: Vec<ModelUsage>,
}

/// The user (OAuth, by email) or API key (by name) that used Claude Code.
#[derive(Deserialize)]
#[serde(tag = "type")]
enum Actor {
    #[serde(rename = "user_actor")]
    User { email_address: String },
    #[serde(rename = "api_actor")]
    ApiKey { api_key_name: String },
}

#[derive(Deserialize)]
struct ModelUsage {
    model: String,
    tokens: CodeTokens,
}

#[derive(Deserialize)]
struct CodeTokens {
    input: u64,
    output: u64,
    cache_creation: u64,
    cache_read: u64,
}

/// Records asked for per Claude Code page (the documented maximum).
pub const CODE_RECORDS_PER_PAGE: u32 = 1_000;

/// Fetches one page of the Claude Code usage report of the UTC day starting at `day`; the
/// second value is where the next page starts: `DAY:TOKEN` for the same day's next page,
/// `DAY` for the next day (when it is before `to`). A record becomes one row per model it
/// used; its `estimated_cost` is not stored (VENDORS.md: already in the cost report, or in a
/// subscription's invoice).
///
/// # Errors
/// The request failed, or the page does not match the documented shape (naming the field).
pub(crate) async fn claude_code_page(
    client: &mut Client<'_>,
    day: i64,
    to: i64,
    page_no: u32,
    token: Option<&str>,
) -> Result<(Page, Option<String>), ConnectorError> {
    let headers = headers(client)?;
    let date = crate::ingest::parse::ymd(day);
    let path = {
        let mut query = form_urlencoded::Serializer::new(String::new());
        query
            .append_pair("starting_at", &date)
            .append_pair("limit", &CODE_RECORDS_PER_PAGE.to_string());
        if let Some(t) = token {
            query.append_pair("page", t);
        }
        format!("/v1/organizations/usage_report/claude_code?{}", query.finish())
    };
    let body = client.get(&path, &headers, page_no).await?;
    let shape = |reason: ShapeReason| ConnectorError::Shape {
        page: page_no,
        what: "claude code usage report",
        reason,
    };
    let envelope: Report<CodeRecord> = Report::parse(&body, page_no, "claude code usage report")?;
    let mut table = Table::new(&USAGE_COLUMNS);
    for (i, r) in envelope.data.iter().enumerate() {
        let at = crate::ingest::parse::parse_datetime(&r.date)
            .filter(|t| t.div_euclid(86_400) * 86_400 == day)
            .ok_or_else(|| {
                shape(format!("data[{i}].date: {:?} on the page for {date}", r.date).into())
            })?;
        let (kind, who, user, key) = match &r.actor {
            Actor::User { email_address } => ("user", email_address, email_address.as_str(), ""),
            Actor::ApiKey { api_key_name } => ("api_key", api_key_name, "", api_key_name.as_str()),
        };
        for m in &r.model_breakdown {
            let id = usage_id(&["claude_code", &at.to_string(), kind, who, &m.model]);
            let t = &m.tokens;
            let input = t.input.saturating_add(t.cache_creation).saturating_add(t.cache_read);
            let who = Who { team: "", user, api_key: key };
            push_usage(&mut table, &id, at, &m.model, who, (input, t.output), CLAUDE_CODE_TAG);
        }
    }
    let records = u64::try_from(envelope.data.len()).unwrap_or(u64::MAX);
    let next = match envelope.next_page().map_err(|e| shape(e.into()))? {
        Some(token) => Some(format!("{day}:{token}")),
        None => {
            let next_day = day.saturating_add(86_400);
            (next_day < to).then(|| next_day.to_string())
        }
    };
    Ok((Page { rows: table.into_rows(), records }, next))
}

/// Splits a Claude Code page cursor (`DAY` or `DAY:TOKEN`, as [`claude_code_page`] returns
/// it) into the day and the token; `None` (the first page) is the window's first day.
pub(crate) fn claude_code_cursor(cursor: Option<&str>, from: i64) -> (i64, Option<&str>) {
    match cursor {
        None => (from, None),
        Some(c) => match c.split_once(':') {
            Some((day, token)) => (day.parse().unwrap_or(from), Some(token)),
            None => (c.parse().unwrap_or(from), None),
        },
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn times_are_rfc3339_utc() {
        assert_eq!(super::rfc3339(1_793_491_200), "2026-11-01T00:00:00Z");
    }
}
