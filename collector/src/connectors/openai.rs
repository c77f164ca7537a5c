//! OpenAI Admin API: organization costs (`GET /v1/organization/costs`, grouped by project and
//! line item) and completions usage (`GET /v1/organization/usage/completions`, grouped by
//! user, project, API key and model), both with `start_time`, `end_time` (Unix seconds),
//! `bucket_width=1d`, `limit` and the `page` cursor from `next_page` while `has_more`; and the
//! users and projects lists (`after` the previous page's `last_id` while `has_more`) that name
//! them: a user id becomes the user's email, a project id the project's name (VENDORS.md,
//! "OpenAI").

use serde::Deserialize;

use serde::de::DeserializeOwned;

use super::http::{Client, IdList, bearer, id_list, json_report_page};
use super::{ConnectorError, Names, Page};

/// Daily buckets asked for per costs page (the documented maximum).
pub const BUCKETS_PER_PAGE: u32 = 180;
/// Daily buckets asked for per usage page (the documented maximum for `1d`).
pub const USAGE_BUCKETS_PER_PAGE: u32 = 31;
/// Users or projects asked for per list page (the documented maximum).
pub const LIST_LIMIT: u32 = 100;

#[derive(Deserialize)]
#[allow(dead_code)]
struct Bucket {
    start_time: i64,
    end_time: i64,
    results: Vec<CostResult>,
}

#[derive(Deserialize)]
#[allow(dead_code)]
struct CostResult {
    amount: Amount,
}

#[derive(Deserialize)]
#[allow(dead_code)]
struct Amount {
    value: serde_json::Number,
    currency: String,
}

#[derive(Deserialize)]
#[allow(dead_code)]
struct UsageBucket {
    start_time: i64,
    end_time: i64,
    results: Vec<UsageResult>,
}

/// A completions usage result: the token counts are required; the grouped fields are null
/// when not grouped by.
#[derive(Deserialize)]
#[allow(dead_code)]
struct UsageResult {
    input_tokens: u64,
    output_tokens: u64,
    num_model_requests: u64,
    #[serde(default)]
    user_id: Option<String>,
    #[serde(default)]
    project_id: Option<String>,
    #[serde(default)]
    api_key_id: Option<String>,
    #[serde(default)]
    model: Option<String>,
}

#[derive(Deserialize)]
struct User {
    id: String,
    #[serde(default)]
    email: Option<String>,
}

#[derive(Deserialize)]
struct Project {
    id: String,
    name: String,
}

/// Fetches one page of `[from, to)`; the second value is the next page's cursor.
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
    let headers = bearer(client.settings())?;
    // Built in a block: the serializer is not Send and must not live across the await.
    let path = {
        let mut query = form_urlencoded::Serializer::new(String::new());
        query
            .append_pair("start_time", &from.to_string())
            .append_pair("end_time", &to.to_string())
            .append_pair("bucket_width", "1d")
            .append_pair("group_by", "project_id")
            .append_pair("group_by", "line_item")
            .append_pair("limit", &BUCKETS_PER_PAGE.to_string());
        if let Some(c) = cursor {
            query.append_pair("page", c);
        }
        format!("/v1/organization/costs?{}", query.finish())
    };
    let results = |b: &Bucket| b.results.len();
    json_report_page(client, &path, &headers, page_no, "organization costs", results).await
}

/// Fetches one page of completions usage of `[from, to)`, grouped by user, project, API key
/// and model; the second value is the next page's cursor.
///
/// # Errors
/// The request failed, or the page does not match the documented shape (naming the field).
pub(crate) async fn usage_page(
    client: &mut Client<'_>,
    from: i64,
    to: i64,
    page_no: u32,
    cursor: Option<&str>,
) -> Result<(Page, Option<String>), ConnectorError> {
    let headers = bearer(client.settings())?;
    // Built in a block: the serializer is not Send and must not live across the await.
    let path = {
        let mut query = form_urlencoded::Serializer::new(String::new());
        query
            .append_pair("start_time", &from.to_string())
            .append_pair("end_time", &to.to_string())
            .append_pair("bucket_width", "1d")
            .append_pair("group_by", "user_id")
            .append_pair("group_by", "project_id")
            .append_pair("group_by", "api_key_id")
            .append_pair("group_by", "model")
            .append_pair("limit", &USAGE_BUCKETS_PER_PAGE.to_string());
        if let Some(c) = cursor {
            query.append_pair("page", c);
        }
        format!("/v1/organization/usage/completions?{}", query.finish())
    };
    let results = |b: &UsageBucket| b.results.len();
    json_report_page(client, &path, &headers, page_no, "completions usage", results).await
}

/// Every item of a users or projects list, `after` the last id while `has_more` (at most
/// [`super::MAX_PAGES`] pages).
async fn list<T: DeserializeOwned>(
    client: &mut Client<'_>,
    path: &str,
    extra: &[(&str, &str)],
    what: &'static str,
) -> Result<Vec<T>, ConnectorError> {
    let headers = bearer(client.settings())?;
    let list = IdList { path, extra, what, cursor: "after", limit: LIST_LIMIT };
    id_list(client, &headers, list).await
}

/// Reads the users and projects lists: user id to email, project id to name. Archived
/// projects are included, since their usage stays in the reports.
///
/// # Errors
/// A request failed or a page does not match the documented shape.
pub(crate) async fn names(client: &mut Client<'_>) -> Result<Names, ConnectorError> {
    let users: Vec<User> = list(client, "/v1/organization/users", &[], "users").await?;
    let projects: Vec<Project> =
        list(client, "/v1/organization/projects", &[("include_archived", "true")], "projects")
            .await?;
    Ok(Names {
        users: users
            .into_iter()
            .filter_map(|u| Some((u.id, u.email.filter(|e| !e.is_empty())?)))
            .collect(),
        teams: projects.into_iter().map(|p| (p.id, p.name)).collect(),
    })
}
