//! LiteLLM proxy spend logs: `GET /spend/logs/v2` with `start_date`, `end_date`, `page` and
//! `page_size`, sorted by `startTime`; one record per request, keyed by `request_id`
//! (VENDORS.md, "LiteLLM").

use serde::Deserialize;
use serde_json::value::RawValue;

use super::http::{Client, bearer};
use super::{ConnectorError, Page, Rows};

/// Records asked for per page (the endpoint's documented maximum).
pub const PAGE_SIZE: u32 = 100;

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
        |reason: String| ConnectorError::Shape { page: page_no, what: "spend logs", reason };
    let envelope: Envelope = serde_json::from_slice(&body).map_err(|e| shape(e.to_string()))?;
    for (i, r) in envelope.data.iter().enumerate() {
        serde_json::from_str::<Record>(r.get()).map_err(|e| shape(format!("data[{i}]: {e}")))?;
    }
    let records = u64::try_from(envelope.data.len()).unwrap_or(u64::MAX);
    let more = (records > 0 && u64::from(page_no) < envelope.total_pages).then(String::new);
    Ok((Page { rows: Rows::Json(body), records }, more))
}

#[cfg(test)]
mod tests {
    #[test]
    fn dates_are_utc_with_seconds() {
        assert_eq!(super::datetime(0), "1970-01-01 00:00:00");
        assert_eq!(super::datetime(1_793_491_261), "2026-11-01 00:01:01");
    }
}
