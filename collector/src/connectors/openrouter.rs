//! OpenRouter activity: `GET /api/v1/activity?date=YYYY-MM-DD` with a management key as
//! `Authorization: Bearer`, one completed UTC day per request (the endpoint keeps the last 30),
//! answering `{ "data": [item] }` with spend per model and provider endpoint (VENDORS.md,
//! "OpenRouter"). One day is one page; the next page is the next day.

use serde::Deserialize;

use super::http::{Client, bearer};
use super::{ConnectorError, Page, Rows, ShapeReason};

/// Completed days the endpoint answers for.
pub const DAYS_KEPT: i64 = 30;

#[derive(Deserialize)]
struct Envelope {
    data: Vec<Item>,
}

/// The fields every item must have: its day, its model and what it cost.
#[derive(Deserialize)]
#[allow(dead_code)] // Read to be checked against the documented shape.
struct Item {
    date: String,
    model: String,
    usage: serde_json::Number,
    byok_usage_inference: serde_json::Number,
}

/// Fetches the day starting at `day` (Unix seconds, a UTC midnight); the second value is the
/// next day, when it is before `to`.
///
/// # Errors
/// The request failed, or the page does not match the documented shape (naming the field).
pub(crate) async fn page(
    client: &mut Client<'_>,
    day: i64,
    to: i64,
    page_no: u32,
) -> Result<(Page, Option<String>), ConnectorError> {
    let headers = bearer(client.settings())?;
    let date = crate::ingest::parse::ymd(day);
    let body = client.get(&format!("/api/v1/activity?date={date}"), &headers, page_no).await?;
    let shape =
        |reason: ShapeReason| ConnectorError::Shape { page: page_no, what: "activity", reason };
    let envelope: Envelope = serde_json::from_slice(&body).map_err(|e| shape(e.into()))?;
    if let Some((i, item)) = envelope.data.iter().enumerate().find(|(_, it)| it.date != date) {
        return Err(shape(
            format!("data[{i}].date: {:?} on the page for {date}", item.date).into(),
        ));
    }
    let records = u64::try_from(envelope.data.len()).unwrap_or(u64::MAX);
    let next = day.saturating_add(86_400);
    Ok((Page { rows: Rows::Json(body), records }, (next < to).then(|| next.to_string())))
}
