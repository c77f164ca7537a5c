//! Ramp developer API card transactions: an access token from `POST /developer/v1/token`
//! (OAuth 2.0 client credentials, the client id and secret as HTTP Basic, scope
//! `transactions:read`), then `GET /developer/v1/transactions` with `from_date`, `to_date`,
//! `page_size` and `order_by_date_asc`, following `page.next` (an absolute link) until it is
//! null (VENDORS.md, "Ramp"). Records become rows of the Ramp CSV export's columns and go
//! through the expense import's own parser.

use aiscout_wire::Secret;
use base64::Engine as _;
use hyper::header::{AUTHORIZATION, HeaderName, HeaderValue};
use serde::Deserialize;

use super::http::{Client, secret_header};
use super::{ConnectorError, Page, ShapeReason, Table, rfc3339};

/// Transactions asked for per page.
pub const PAGE_SIZE: u32 = 500;
/// The scope the token is asked for (read-only).
pub const SCOPE: &str = "transactions:read";

#[derive(Deserialize)]
struct Token {
    access_token: String,
}

#[derive(Deserialize)]
struct Envelope {
    data: Vec<Transaction>,
    page: PageInfo,
}

#[derive(Deserialize)]
struct PageInfo {
    next: Option<String>,
}

#[derive(Deserialize)]
struct Transaction {
    id: String,
    amount: serde_json::Number,
    currency_code: String,
    user_transaction_time: String,
    merchant_name: Option<String>,
    #[serde(default)]
    merchant_descriptor: Option<String>,
    state: String,
    #[serde(default)]
    card_holder: Option<CardHolder>,
    #[serde(default)]
    sk_category_name: Option<String>,
}

#[derive(Deserialize)]
struct CardHolder {
    #[serde(default)]
    first_name: Option<String>,
    #[serde(default)]
    last_name: Option<String>,
    #[serde(default)]
    department_name: Option<String>,
}

/// The Ramp CSV export's columns the rows are written in (feeds.md §2).
const COLUMNS: [&str; 9] = [
    "Id",
    "Transaction Time",
    "Amount",
    "Currency",
    "Merchant Name",
    "Merchant Description",
    "User",
    "Ramp Department",
    "Ramp Category",
];

/// Asks for an access token with the client credentials.
async fn token(client: &mut Client<'_>, page_no: u32) -> Result<Secret, ConnectorError> {
    let settings = client.settings();
    let id = settings.client_id.as_ref().map(Secret::expose).unwrap_or_default();
    let basic = base64::engine::general_purpose::STANDARD
        .encode(format!("{id}:{}", settings.credential.expose()));
    let headers =
        [(AUTHORIZATION, secret_header(&format!("Basic {basic}"), &settings.credential_setting)?)];
    let form = form_urlencoded::Serializer::new(String::new())
        .append_pair("grant_type", "client_credentials")
        .append_pair("scope", SCOPE)
        .finish();
    let body = client.post_form("/developer/v1/token", &headers, &form, page_no).await?;
    let token: Token = serde_json::from_slice(&body).map_err(|e| ConnectorError::Shape {
        page: page_no,
        what: "token",
        reason: e.into(),
    })?;
    Ok(Secret::new(token.access_token))
}

/// Fetches one page of `[from, to]`: the first from the dates, the next ones from the
/// previous page's `page.next` link; the second value is that link.
///
/// # Errors
/// The request failed, a token could not be had, or the page does not match the documented
/// shape (naming the field).
pub(crate) async fn page(
    client: &mut Client<'_>,
    from: i64,
    to: i64,
    page_no: u32,
    next: Option<&str>,
) -> Result<(Page, Option<String>), ConnectorError> {
    let shape =
        |reason: ShapeReason| ConnectorError::Shape { page: page_no, what: "transactions", reason };
    let path = match next {
        Some(link) => client.relative(link).ok_or_else(|| {
            shape(format!("page.next {link:?} is not under the configured base_url").into())
        })?,
        None => format!(
            "/developer/v1/transactions?{}",
            form_urlencoded::Serializer::new(String::new())
                .append_pair("from_date", &rfc3339(from))
                .append_pair("to_date", &rfc3339(to))
                .append_pair("page_size", &PAGE_SIZE.to_string())
                .append_pair("order_by_date_asc", "true")
                .finish()
        ),
    };
    // An access token expires (`expires_in`); a refused one is asked for again once.
    let mut fresh = false;
    let body = loop {
        let bearer = match &client.access_token {
            Some(t) => t.clone(),
            None => {
                fresh = true;
                let t = token(client, page_no).await?;
                client.access_token = Some(t.clone());
                t
            }
        };
        let setting = client.settings().credential_setting.clone();
        let headers: [(HeaderName, HeaderValue); 1] =
            [(AUTHORIZATION, secret_header(&format!("Bearer {}", bearer.expose()), &setting)?)];
        match client.get(&path, &headers, page_no).await {
            Err(ConnectorError::Auth { .. }) if !fresh => client.access_token = None,
            other => break other?,
        }
    };
    let envelope: Envelope = serde_json::from_slice(&body).map_err(|e| shape(e.into()))?;
    let mut table = Table::new(&COLUMNS);
    for t in &envelope.data {
        // Declined and failed attempts are not spend; a pending one is stored once it has
        // cleared (the overlap window asks again).
        if t.state != "CLEARED" {
            continue;
        }
        let holder = t.card_holder.as_ref();
        let name = holder
            .map(|h| {
                let first = h.first_name.as_deref().unwrap_or_default();
                let last = h.last_name.as_deref().unwrap_or_default();
                format!("{first} {last}").trim().to_owned()
            })
            .unwrap_or_default();
        table.push([
            t.id.as_str(),
            &t.user_transaction_time,
            &t.amount.to_string(),
            &t.currency_code,
            t.merchant_name.as_deref().unwrap_or_default(),
            t.merchant_descriptor.as_deref().unwrap_or_default(),
            &name,
            holder.and_then(|h| h.department_name.as_deref()).unwrap_or_default(),
            t.sk_category_name.as_deref().unwrap_or_default(),
        ]);
    }
    let records = u64::try_from(envelope.data.len()).unwrap_or(u64::MAX);
    Ok((Page { rows: table.into_rows(), records }, envelope.page.next.filter(|n| !n.is_empty())))
}
