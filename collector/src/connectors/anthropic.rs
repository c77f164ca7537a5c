//! Anthropic Admin API cost report: `GET /v1/organizations/cost_report` with `starting_at`,
//! `ending_at` (RFC 3339), `bucket_width=1d`, `group_by[]` workspace and description, `limit`
//! and the `page` token from `next_page` while `has_more`; headers `x-api-key` and
//! `anthropic-version: 2023-06-01`. Amounts are in cents, as decimal strings (VENDORS.md,
//! "Anthropic").

use hyper::header::{HeaderName, HeaderValue};
use serde::Deserialize;

use super::http::{Client, secret_header};
use super::{ConnectorError, Page, Rows, rfc3339};

/// Daily buckets asked for per page (the documented maximum).
pub const BUCKETS_PER_PAGE: u32 = 31;
/// The API version header value the shapes in VENDORS.md are documented for.
pub const API_VERSION: &str = "2023-06-01";

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
    let settings = client.settings();
    let key = secret_header(settings.credential.expose(), &settings.credential_setting)?;
    let headers: [(HeaderName, HeaderValue); 2] = [
        (HeaderName::from_static("x-api-key"), key),
        (HeaderName::from_static("anthropic-version"), HeaderValue::from_static(API_VERSION)),
    ];
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
    let body = client.get(&path, &headers, page_no).await?;
    let shape =
        |reason: String| ConnectorError::Shape { page: page_no, what: "cost report", reason };
    let envelope: Envelope = serde_json::from_slice(&body).map_err(|e| shape(e.to_string()))?;
    let records: usize = envelope.data.iter().map(|b| b.results.len()).sum();
    let next = match (envelope.has_more, envelope.next_page) {
        (false, _) => None,
        (true, Some(next)) if !next.is_empty() => Some(next),
        (true, _) => return Err(shape("has_more is true without a next_page".to_owned())),
    };
    Ok((Page { rows: Rows::Json(body), records: u64::try_from(records).unwrap_or(u64::MAX) }, next))
}

#[cfg(test)]
mod tests {
    #[test]
    fn times_are_rfc3339_utc() {
        assert_eq!(super::rfc3339(1_793_491_200), "2026-11-01T00:00:00Z");
    }
}
