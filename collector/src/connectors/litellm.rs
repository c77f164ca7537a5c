//! LiteLLM proxy spend logs: `GET /spend/logs/v2` with `start_date`, `end_date`, `page` and
//! `page_size`, sorted by `startTime`; one record per request, keyed by `request_id`
//! (VENDORS.md, "LiteLLM"). The users (`GET /user/list`, paged by `page` and `page_size` up to
//! `total_pages`) and teams (`GET /team/list`) name the records: a user id becomes the user's
//! email, a team id the team's alias.

use serde::Deserialize;
use serde_json::value::RawValue;

use super::http::{Client, bearer};
use super::{ConnectorError, MAX_PAGES, Names, Page, Rows, ShapeReason};

/// Records asked for per page (the endpoint's documented maximum).
pub const PAGE_SIZE: u32 = 100;
/// Users asked for per `/user/list` page (the endpoint's documented maximum).
pub const USERS_PAGE_SIZE: u32 = 100;

#[derive(Deserialize)]
struct Users {
    users: Vec<User>,
    total_pages: u64,
}

#[derive(Deserialize)]
struct User {
    user_id: String,
    #[serde(default)]
    user_email: Option<String>,
}

/// `/team/list` answers an array of teams; a proxy serving the paginated form answers
/// `{teams, total_pages}`.
#[derive(Deserialize)]
struct PagedTeams {
    teams: Vec<Team>,
    total_pages: u64,
}

#[derive(Deserialize)]
struct Team {
    team_id: String,
    #[serde(default)]
    team_alias: Option<String>,
}

#[derive(Deserialize)]
struct Envelope {
    data: Vec<Box<RawValue>>,
    total_pages: u64,
}

/// The fields every record must have: the dedupe key, the cost and the time.
#[derive(Deserialize)]
#[allow(non_snake_case, dead_code)] // Field names as the API spells them; read to be checked.
struct Record {
    request_id: String,
    spend: serde_json::Number,
    startTime: String,
}

/// `YYYY-MM-DD HH:MM:SS` in UTC, the endpoint's date parameters.
pub fn datetime(secs: i64) -> String {
    let day = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = crate::ingest::parse::civil_from_days(day);
    format!("{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}", rem / 3_600, rem / 60 % 60, rem % 60)
}

/// Fetches page `page_no` of `[from, to]`; the second value is `Some` when another page
/// follows.
///
/// # Errors
/// The request failed, or the page does not match the documented shape (naming the field).
pub(crate) async fn page(
    client: &mut Client<'_>,
    from: i64,
    to: i64,
    page_no: u32,
) -> Result<(Page, Option<String>), ConnectorError> {
    let headers = bearer(client.settings())?;
    let query = form_urlencoded::Serializer::new(String::new())
        .append_pair("start_date", &datetime(from))
        .append_pair("end_date", &datetime(to))
        .append_pair("page", &page_no.to_string())
        .append_pair("page_size", &PAGE_SIZE.to_string())
        .append_pair("sort_by", "startTime")
        .append_pair("sort_order", "asc")
        .finish();
    let body = client.get(&format!("/spend/logs/v2?{query}"), &headers, page_no).await?;
    let shape =
        |reason: ShapeReason| ConnectorError::Shape { page: page_no, what: "spend logs", reason };
    let envelope: Envelope = serde_json::from_slice(&body).map_err(|e| shape(e.into()))?;
    for (i, r) in envelope.data.iter().enumerate() {
        serde_json::from_str::<Record>(r.get())
            .map_err(|error| shape(ShapeReason::JsonAt { at: format!("data[{i}]"), error }))?;
    }
    let records = u64::try_from(envelope.data.len()).unwrap_or(u64::MAX);
    let more = (records > 0 && u64::from(page_no) < envelope.total_pages).then(String::new);
    Ok((Page { rows: Rows::Json(body), records }, more))
}

/// Reads the users and teams: user id to email, team id to alias.
///
/// # Errors
/// A request failed or a page does not match the documented shape.
pub(crate) async fn names(client: &mut Client<'_>) -> Result<Names, ConnectorError> {
    let headers = bearer(client.settings())?;
    let mut names = Names::default();
    for what in ["users", "teams"] {
        for page_no in 1..=MAX_PAGES {
            let query = form_urlencoded::Serializer::new(String::new())
                .append_pair("page", &page_no.to_string())
                .append_pair("page_size", &USERS_PAGE_SIZE.to_string())
                .finish();
            let path = if what == "users" { "/user/list" } else { "/team/list" };
            let body = client.get(&format!("{path}?{query}"), &headers, page_no).await?;
            let shape = |e: serde_json::Error| ConnectorError::Shape {
                page: page_no,
                what: if what == "users" { "users" } else { "teams" },
                reason: e.into(),
            };
            let (records, total_pages) =
                if what == "users" {
                    let page: Users = serde_json::from_slice(&body).map_err(shape)?;
                    let n = page.users.len();
                    names.users.extend(page.users.into_iter().filter_map(|u| {
                        Some((u.user_id, u.user_email.filter(|e| !e.is_empty())?))
                    }));
                    (n, page.total_pages)
                } else {
                    let array = body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[');
                    let (teams, total_pages) = if array {
                        (serde_json::from_slice::<Vec<Team>>(&body).map_err(shape)?, 1)
                    } else {
                        let paged: PagedTeams = serde_json::from_slice(&body).map_err(shape)?;
                        (paged.teams, paged.total_pages)
                    };
                    let n = teams.len();
                    names.teams.extend(teams.into_iter().filter_map(|t| {
                        Some((t.team_id, t.team_alias.filter(|a| !a.is_empty())?))
                    }));
                    (n, total_pages)
                };
            if records == 0 || u64::from(page_no) >= total_pages {
                break;
            }
            if page_no == MAX_PAGES {
                return Err(ConnectorError::TooManyPages);
            }
        }
    }
    Ok(names)
}

#[cfg(test)]
mod tests {
    #[test]
    fn dates_are_utc_with_seconds() {
        assert_eq!(super::datetime(0), "1970-01-01 00:00:00");
        assert_eq!(super::datetime(1_793_491_261), "2026-11-01 00:01:01");
    }
}
