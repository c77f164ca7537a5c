//! OpenAI Admin API organization costs: `GET /v1/organization/costs` with `start_time`,
//! `end_time` (Unix seconds), `bucket_width=1d`, `group_by` project and line item, `limit`
//! and the `page` cursor from `next_page` while `has_more` (VENDORS.md, "OpenAI").

use serde::Deserialize;

use super::http::{Client, bearer};
use super::{ConnectorError, Page, Rows};

/// Daily buckets asked for per page (the documented maximum).
pub const BUCKETS_PER_PAGE: u32 = 180;

#[derive(Deserialize)]
#[allow(dead_code)] // Read to be checked against the documented shape.
struct Envelope {
    data: Vec<Bucket>,
    has_more: bool,
    next_page: Option<String>,
}

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
    let body = client.get(&path, &headers, page_no).await?;
    let shape = |reason: String| ConnectorError::Shape {
        page: page_no,
        what: "organization costs",
        reason,
    };
    let envelope: Envelope = serde_json::from_slice(&body).map_err(|e| shape(e.to_string()))?;
    let records: usize = envelope.data.iter().map(|b| b.results.len()).sum();
    let next = match (envelope.has_more, envelope.next_page) {
        (false, _) => None,
        (true, Some(next)) if !next.is_empty() => Some(next),
        (true, _) => return Err(shape("has_more is true without a next_page".to_owned())),
    };
    Ok((Page { rows: Rows::Json(body), records: u64::try_from(records).unwrap_or(u64::MAX) }, next))
}
