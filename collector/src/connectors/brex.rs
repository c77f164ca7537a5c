//! Brex API primary card transactions: `GET /v2/transactions/card/primary` with
//! `posted_at_start` (RFC 3339), `limit` and the `cursor` from `next_cursor` until it is null;
//! `Authorization: Bearer` a user token. Amounts are Money objects in minor units. The payer
//! comes from the Team API: `GET /v2/cards` (a card's `owner.user_id`) and `GET /v2/users`
//! (name and email), read whole at the start of each run (VENDORS.md, "Brex"). Records become
//! rows of the Brex CSV export's columns and go through the expense import's own parser.

use std::collections::HashMap;

use serde::Deserialize;
use serde::de::DeserializeOwned;

use super::http::{Client, bearer};
use super::{ConnectorError, MAX_PAGES, Page, ShapeReason, Table, rfc3339};

/// Items asked for per page (the documented maximum).
pub const PAGE_SIZE: u32 = 1_000;

/// Transaction types that are card spend (a `REFUND` or `CHARGEBACK` comes negative); the
/// others (`COLLECTION` payments to Brex, rewards, fees) are not stored.
const SPEND_TYPES: [&str; 3] = ["PURCHASE", "REFUND", "CHARGEBACK"];

#[derive(Deserialize)]
struct Envelope<T> {
    next_cursor: Option<String>,
    items: Vec<T>,
}

#[derive(Deserialize)]
struct User {
    id: String,
    first_name: String,
    last_name: String,
    email: String,
}

#[derive(Deserialize)]
struct Card {
    id: String,
    owner: Owner,
}

#[derive(Deserialize)]
struct Owner {
    #[serde(default)]
    user_id: Option<String>,
}

#[derive(Deserialize)]
struct Transaction {
    id: String,
    #[serde(default)]
    card_id: Option<String>,
    description: String,
    amount: Money,
    #[serde(default)]
    initiated_at_date: Option<String>,
    posted_at_date: String,
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    merchant: Option<Merchant>,
}

#[derive(Deserialize)]
struct Money {
    amount: i64,
    currency: String,
}

#[derive(Deserialize)]
struct Merchant {
    #[serde(default)]
    raw_descriptor: Option<String>,
}

/// A card's holder: name and email.
#[derive(Clone, Debug, Default)]
pub(crate) struct Holder {
    name: String,
    email: String,
}

/// Card id to its holder.
pub(crate) type Directory = HashMap<String, Holder>;

/// The Brex CSV export's columns the rows are written in (feeds.md §2).
const COLUMNS: [&str; 10] = [
    "Id",
    "Swipe Date (UTC)",
    "Posted Date",
    "Amount",
    "Currency",
    "Statement Descriptor",
    "Description",
    "User",
    "Email",
    "Type",
];

/// Every item of a cursor-paginated list, page by page (at most [`MAX_PAGES`]).
async fn list<T: DeserializeOwned>(
    client: &mut Client<'_>,
    path: &str,
    what: &'static str,
) -> Result<Vec<T>, ConnectorError> {
    let headers = bearer(client.settings())?;
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    for page_no in 1..=MAX_PAGES {
        let query = {
            let mut q = form_urlencoded::Serializer::new(String::new());
            q.append_pair("limit", &PAGE_SIZE.to_string());
            if let Some(c) = &cursor {
                q.append_pair("cursor", c);
            }
            q.finish()
        };
        let body = client.get(&format!("{path}?{query}"), &headers, page_no).await?;
        let page: Envelope<T> = serde_json::from_slice(&body)
            .map_err(|e| ConnectorError::Shape { page: page_no, what, reason: e.into() })?;
        let empty = page.items.is_empty();
        out.extend(page.items);
        match page.next_cursor.filter(|c| !c.is_empty()) {
            Some(c) if !empty => cursor = Some(c),
            _ => return Ok(out),
        }
    }
    Err(ConnectorError::TooManyPages)
}

/// Reads the users and cards: who holds each card.
///
/// # Errors
/// A request failed or a page does not match the documented shape.
pub(crate) async fn directory(client: &mut Client<'_>) -> Result<Directory, ConnectorError> {
    let users: Vec<User> = list(client, "/v2/users", "users").await?;
    let cards: Vec<Card> = list(client, "/v2/cards", "cards").await?;
    let by_id: HashMap<String, Holder> = users
        .into_iter()
        .map(|u| {
            let name = format!("{} {}", u.first_name, u.last_name).trim().to_owned();
            (u.id, Holder { name, email: u.email })
        })
        .collect();
    Ok(cards
        .into_iter()
        .filter_map(|c| {
            let holder = by_id.get(c.owner.user_id.as_deref()?)?.clone();
            Some((c.id, holder))
        })
        .collect())
}

/// Fetches one page of transactions posted at or after `from`; the second value is the next
/// page's cursor.
///
/// # Errors
/// The request failed, or the page does not match the documented shape (naming the field).
pub(crate) async fn page(
    client: &mut Client<'_>,
    from: i64,
    page_no: u32,
    cursor: Option<&str>,
    directory: &Directory,
) -> Result<(Page, Option<String>), ConnectorError> {
    let headers = bearer(client.settings())?;
    let query = {
        let mut q = form_urlencoded::Serializer::new(String::new());
        q.append_pair("posted_at_start", &rfc3339(from))
            .append_pair("limit", &PAGE_SIZE.to_string());
        if let Some(c) = cursor {
            q.append_pair("cursor", c);
        }
        q.finish()
    };
    let body =
        client.get(&format!("/v2/transactions/card/primary?{query}"), &headers, page_no).await?;
    let shape = |reason: ShapeReason| ConnectorError::Shape {
        page: page_no,
        what: "card transactions",
        reason,
    };
    let envelope: Envelope<Transaction> =
        serde_json::from_slice(&body).map_err(|e| shape(e.into()))?;
    let mut table = Table::new(&COLUMNS);
    for (i, t) in envelope.items.iter().enumerate() {
        if !SPEND_TYPES.contains(&t.kind.as_str()) {
            continue;
        }
        let currency = crate::ingest::parse::currency(&t.amount.currency).ok_or_else(|| {
            shape(
                format!("items[{i}].amount.currency: {:?} is not a currency", t.amount.currency)
                    .into(),
            )
        })?;
        let holder = t.card_id.as_ref().and_then(|c| directory.get(c)).cloned().unwrap_or_default();
        let descriptor =
            t.merchant.as_ref().and_then(|m| m.raw_descriptor.as_deref()).unwrap_or_default();
        table.push([
            t.id.as_str(),
            t.initiated_at_date.as_deref().unwrap_or_default(),
            &t.posted_at_date,
            &crate::model::money::format_minor(t.amount.amount, &currency),
            &currency,
            descriptor,
            &t.description,
            &holder.name,
            &holder.email,
            &t.kind,
        ]);
    }
    let records = u64::try_from(envelope.items.len()).unwrap_or(u64::MAX);
    let next = match envelope.next_cursor.filter(|c| !c.is_empty()) {
        Some(c) if records > 0 => Some(c),
        _ => None,
    };
    Ok((Page { rows: table.into_rows(), records }, next))
}
