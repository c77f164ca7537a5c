//! The connectors' HTTP: one kept-alive connection to the vendor (reopened after a failure),
//! a timeout on every request, retries with exponential backoff and full jitter on 5xx,
//! timeouts and network errors, `429` honoured after its `Retry-After`, a bounded number of
//! attempts, and a 401 or 403 turned into an error naming the credential's setting.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::Method;
use hyper::header::{HeaderName, HeaderValue};

use super::{ConnectorError, LastFailure, Settings, ShapeReason, Stats};
use crate::client::{self, ClientError, Connection};

/// Most attempts at one page (the first and four retries).
pub const MAX_ATTEMPTS: u32 = 5;
/// Largest page body read.
pub const MAX_BODY_BYTES: usize = 64 << 20;
/// First backoff; doubled per attempt up to [`MAX_BACKOFF`], then a random part of it is
/// waited (full jitter), so that many collectors do not retry in step.
const BASE_BACKOFF: Duration = Duration::from_millis(200);
/// Longest backoff.
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// Longest `Retry-After` obeyed; a longer one is waited this long and then retried (or the
/// run gives up when attempts run out).
const MAX_RETRY_AFTER: Duration = Duration::from_secs(300);

/// One connector's connection to its vendor.
pub(crate) struct Client<'a> {
    settings: &'a Settings,
    stats: &'a Stats,
    tls: Option<Arc<rustls::ClientConfig>>,
    connection: Option<Connection>,
    /// An access token obtained during this run (Ramp's client credentials grant).
    pub(crate) access_token: Option<aiscout_wire::Secret>,
}

impl<'a> Client<'a> {
    /// A client for `settings` (nothing is connected yet).
    pub(crate) fn new(settings: &'a Settings, stats: &'a Stats) -> Result<Self, ConnectorError> {
        let tls = if settings.base_url.https {
            Some(
                client::tls_config_with_system_roots(&settings.extra_roots, false)
                    .map_err(ConnectorError::Tls)?,
            )
        } else {
            None
        };
        Ok(Client { settings, stats, tls, connection: None, access_token: None })
    }

    /// The settings this client serves.
    pub(crate) fn settings(&self) -> &Settings {
        self.settings
    }

    /// The counters it adds to.
    pub(crate) fn stats(&self) -> &'a Stats {
        self.stats
    }

    async fn connect(&self) -> Result<Connection, ClientError> {
        let url = &self.settings.base_url;
        let addrs: Vec<SocketAddr> = tokio::net::lookup_host((url.host.as_str(), url.port))
            .await
            .map_err(|error| ClientError::Resolve { host: url.host.clone(), error })?
            .collect();
        let mut last = ClientError::Url(format!("{} has no address", url.host));
        for addr in addrs {
            let connected = match &self.tls {
                Some(tls) => Connection::connect(addr, &url.host, Arc::clone(tls)).await,
                None => Connection::connect_plain(addr, url.authority.clone()).await,
            };
            match connected {
                Ok(mut c) => {
                    c.set_authority(url.authority.clone());
                    return Ok(c);
                }
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    async fn once(
        &mut self,
        method: Method,
        path: &str,
        headers: &[(HeaderName, HeaderValue)],
        body: &[u8],
    ) -> Result<client::Response, ClientError> {
        let mut connection = match self.connection.take() {
            Some(c) => c,
            None => self.connect().await?,
        };
        let response =
            connection.request(method, path, headers, body.to_vec(), MAX_BODY_BYTES).await?;
        // Kept for the next page only after a whole answer.
        self.connection = Some(connection);
        Ok(response)
    }

    /// GETs `path` (appended to the base URL's path) with `headers`, retrying as the module
    /// says, and returns the body of a 2xx answer.
    ///
    /// # Errors
    /// A refused credential, a status that is not retried, or retries exhausted.
    pub(crate) async fn get(
        &mut self,
        path: &str,
        headers: &[(HeaderName, HeaderValue)],
        page: u32,
    ) -> Result<Vec<u8>, ConnectorError> {
        self.send(Method::GET, path, headers, &[], page).await
    }

    /// POSTs `body` (an `application/x-www-form-urlencoded` form) to `path`, as [`Self::get`].
    ///
    /// # Errors
    /// As [`Self::get`].
    pub(crate) async fn post_form(
        &mut self,
        path: &str,
        headers: &[(HeaderName, HeaderValue)],
        body: &str,
        page: u32,
    ) -> Result<Vec<u8>, ConnectorError> {
        let mut all = headers.to_vec();
        all.push((
            hyper::header::CONTENT_TYPE,
            HeaderValue::from_static("application/x-www-form-urlencoded"),
        ));
        self.send(Method::POST, path, &all, body.as_bytes(), page).await
    }

    /// The path and query of a next-page link the vendor gave (an absolute URL), relative to
    /// the base URL, so that it can be passed to [`Self::get`]; `None` when the link points
    /// anywhere but the configured host, port and path prefix (it is never followed there,
    /// since the credential would go with it).
    pub(crate) fn relative(&self, link: &str) -> Option<String> {
        let uri: hyper::Uri = link.parse().ok()?;
        let url = &self.settings.base_url;
        let scheme_ok = uri.scheme_str() == Some(if url.https { "https" } else { "http" });
        let authority = uri.authority()?;
        let port = authority.port_u16().unwrap_or(if url.https { 443 } else { 80 });
        let host = authority.host().trim_start_matches('[').trim_end_matches(']');
        if !scheme_ok || !host.eq_ignore_ascii_case(&url.host) || port != url.port {
            return None;
        }
        let rest = uri.path_and_query()?.as_str().strip_prefix(url.prefix.as_str())?;
        rest.starts_with('/').then(|| rest.to_owned())
    }

    async fn send(
        &mut self,
        method: Method,
        path: &str,
        headers: &[(HeaderName, HeaderValue)],
        body: &[u8],
        page: u32,
    ) -> Result<Vec<u8>, ConnectorError> {
        let full = format!("{}{path}", self.settings.base_url.prefix);
        let mut attempt = 0;
        loop {
            attempt += 1;
            let outcome = tokio::time::timeout(
                self.settings.timeout,
                self.once(method.clone(), &full, headers, body),
            )
            .await;
            let (last, wait) = match outcome {
                Err(_) => {
                    self.connection = None;
                    (LastFailure::Timeout { waited: self.settings.timeout }, backoff(attempt))
                }
                Ok(Err(ClientError::BodyTooLarge { limit })) => {
                    return Err(ConnectorError::Shape {
                        page,
                        what: "page",
                        reason: format!("the body is larger than {limit} bytes").into(),
                    });
                }
                Ok(Err(error)) => {
                    self.connection = None;
                    (LastFailure::Client { error }, backoff(attempt))
                }
                Ok(Ok(r)) => {
                    let status = r.status.as_u16();
                    match status {
                        200..=299 => return Ok(r.body.to_vec()),
                        401 | 403 => {
                            return Err(ConnectorError::Auth {
                                status,
                                page,
                                setting: self.settings.credential_setting.clone(),
                            });
                        }
                        429 => (
                            LastFailure::Status { status },
                            retry_after(&r.headers).unwrap_or_else(|| backoff(attempt)),
                        ),
                        500..=599 => (LastFailure::Status { status }, backoff(attempt)),
                        _ => return Err(ConnectorError::Status { status, page }),
                    }
                }
            };
            if attempt >= MAX_ATTEMPTS {
                return Err(ConnectorError::Exhausted { page, attempts: MAX_ATTEMPTS, last });
            }
            self.stats.retry(&self.settings.name);
            tracing::debug!(
                connector = %self.settings.name,
                page,
                attempt,
                wait_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
                reason = %last,
                "Retrying a connector request."
            );
            tokio::time::sleep(wait).await;
        }
    }
}

/// Exponential backoff with full jitter: a random duration up to `BASE * 2^(attempt-1)`,
/// capped at [`MAX_BACKOFF`], and at least a tenth of it.
fn backoff(attempt: u32) -> Duration {
    let ceiling = BASE_BACKOFF
        .saturating_mul(1u32.checked_shl(attempt.saturating_sub(1)).unwrap_or(u32::MAX))
        .min(MAX_BACKOFF);
    let mut byte = [0u8; 2];
    let random = match ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut byte) {
        Ok(()) => u32::from(u16::from_le_bytes(byte)),
        // No randomness: the whole backoff, which is only less spread.
        Err(_) => u32::from(u16::MAX),
    };
    let millis = u64::try_from(ceiling.as_millis()).unwrap_or(u64::MAX);
    let jittered = millis.saturating_mul(u64::from(random)) / u64::from(u16::MAX);
    Duration::from_millis(jittered.max(millis / 10))
}

/// A `Retry-After` in seconds (RFC 9110 §10.2.3), capped at [`MAX_RETRY_AFTER`]. The
/// HTTP-date form is not read: the backoff is used instead.
fn retry_after(headers: &hyper::HeaderMap) -> Option<Duration> {
    let secs: u64 = headers.get(hyper::header::RETRY_AFTER)?.to_str().ok()?.trim().parse().ok()?;
    Some(Duration::from_secs(secs).min(MAX_RETRY_AFTER))
}

/// `Authorization: Bearer` the connector's credential (OpenAI, LiteLLM, OpenRouter, Brex).
///
/// # Errors
/// As [`secret_header`].
pub(crate) fn bearer(
    settings: &Settings,
) -> Result<[(HeaderName, HeaderValue); 1], ConnectorError> {
    let value = secret_header(
        &format!("Bearer {}", settings.credential.expose()),
        &settings.credential_setting,
    )?;
    Ok([(hyper::header::AUTHORIZATION, value)])
}

/// A header value holding a credential, marked sensitive (never printed by hyper's `Debug`).
///
/// # Errors
/// The credential holds characters a header cannot carry; the error names its setting only.
pub(crate) fn secret_header(value: &str, setting: &str) -> Result<HeaderValue, ConnectorError> {
    let mut v = HeaderValue::from_str(value).map_err(|_| ConnectorError::Shape {
        page: 0,
        what: "credential",
        reason: format!("the key in {setting} holds characters an HTTP header cannot carry").into(),
    })?;
    v.set_sensitive(true);
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_stays_under_the_cap() {
        for attempt in 1..=40 {
            let b = backoff(attempt);
            assert!(b <= MAX_BACKOFF, "{attempt}: {b:?}");
            let ceiling = BASE_BACKOFF.saturating_mul(1 << (attempt - 1).min(20)).min(MAX_BACKOFF);
            assert!(b >= ceiling / 10, "{attempt}: {b:?}");
        }
    }

    #[test]
    fn retry_after_reads_seconds_and_is_capped() {
        let mut h = hyper::HeaderMap::new();
        assert_eq!(retry_after(&h), None);
        h.insert(hyper::header::RETRY_AFTER, HeaderValue::from_static("3"));
        assert_eq!(retry_after(&h), Some(Duration::from_secs(3)));
        h.insert(hyper::header::RETRY_AFTER, HeaderValue::from_static("86400"));
        assert_eq!(retry_after(&h), Some(MAX_RETRY_AFTER));
        h.insert(
            hyper::header::RETRY_AFTER,
            HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT"),
        );
        assert_eq!(retry_after(&h), None);
    }
}

/// A list page of a vendor that pages by the last id of the page before (`has_more`,
/// `last_id`; OpenAI's and Anthropic's admin lists).
#[derive(serde::Deserialize)]
struct IdPage<T> {
    data: Vec<T>,
    has_more: bool,
    #[serde(default)]
    last_id: Option<String>,
}

/// Where and how one id-paged list is read.
pub(crate) struct IdList<'a> {
    /// The path, without a query.
    pub(crate) path: &'a str,
    /// Query pairs besides the page size and the cursor.
    pub(crate) extra: &'a [(&'a str, &'a str)],
    /// The list as a shape error names it (`users`, `projects`, ...).
    pub(crate) what: &'static str,
    /// The cursor's parameter: `after` (OpenAI) or `after_id` (Anthropic).
    pub(crate) cursor: &'static str,
    /// The page size asked for.
    pub(crate) limit: u32,
}

/// Reads every page of an id-paged list: the next page's cursor is the page's `last_id` while
/// `has_more` is true (at most [`super::MAX_PAGES`] pages). A page that says there is more but
/// has no rows or no `last_id` is a shape error, since asking again could not move on.
///
/// # Errors
/// A request failed or a page does not match the documented shape.
pub(crate) async fn id_list<T: serde::de::DeserializeOwned>(
    client: &mut Client<'_>,
    headers: &[(HeaderName, HeaderValue)],
    list: IdList<'_>,
) -> Result<Vec<T>, ConnectorError> {
    let mut out = Vec::new();
    let mut after: Option<String> = None;
    for page_no in 1..=super::MAX_PAGES {
        // Built in a block: the serializer is not Send and must not live across the await.
        let query = {
            let mut q = form_urlencoded::Serializer::new(String::new());
            q.append_pair("limit", &list.limit.to_string());
            for (k, v) in list.extra {
                q.append_pair(k, v);
            }
            if let Some(a) = &after {
                q.append_pair(list.cursor, a);
            }
            q.finish()
        };
        let body = client.get(&format!("{}?{query}", list.path), headers, page_no).await?;
        let what = list.what;
        let shape = |reason: ShapeReason| ConnectorError::Shape { page: page_no, what, reason };
        let page: IdPage<T> = serde_json::from_slice(&body).map_err(|e| shape(e.into()))?;
        let empty = page.data.is_empty();
        out.extend(page.data);
        match (page.has_more, page.last_id.filter(|l| !l.is_empty())) {
            (false, _) => return Ok(out),
            (true, Some(last)) if !empty => after = Some(last),
            (true, _) => {
                return Err(shape("has_more is true without data and a last_id".to_owned().into()));
            }
        }
    }
    Err(ConnectorError::TooManyPages)
}

/// One page of a report paged by a `next_page` token while `has_more` (OpenAI's and
/// Anthropic's cost and usage reports): its items, buckets or records.
#[derive(serde::Deserialize)]
pub(crate) struct Report<T> {
    /// The page's items.
    pub(crate) data: Vec<T>,
    has_more: bool,
    next_page: Option<String>,
}

impl<T: serde::de::DeserializeOwned> Report<T> {
    /// Reads a page; a body that does not match the documented shape is a shape error naming
    /// the page and the report.
    pub(crate) fn parse(
        body: &[u8],
        page: u32,
        what: &'static str,
    ) -> Result<Self, ConnectorError> {
        serde_json::from_slice(body).map_err(|e| ConnectorError::Shape {
            page,
            what,
            reason: e.into(),
        })
    }
}

impl<T> Report<T> {
    /// The next page's token, checked: `has_more` needs a `next_page`.
    pub(crate) fn next_page(&self) -> Result<Option<String>, String> {
        match (self.has_more, &self.next_page) {
            (false, _) => Ok(None),
            (true, Some(next)) if !next.is_empty() => Ok(Some(next.clone())),
            (true, _) => Err("has_more is true without a next_page".to_owned()),
        }
    }
}

/// One page of a bucketed report kept as the vendor's JSON (the cost reports, OpenAI's usage):
/// fetched from `path`, checked against the bucket type `B`, counted with `results` (the
/// results of one bucket), with the next page's token.
///
/// # Errors
/// The request failed, or the page does not match the documented shape (naming the field).
pub(crate) async fn json_report_page<B: serde::de::DeserializeOwned>(
    client: &mut Client<'_>,
    path: &str,
    headers: &[(HeaderName, HeaderValue)],
    page_no: u32,
    what: &'static str,
    results: fn(&B) -> usize,
) -> Result<(super::Page, Option<String>), ConnectorError> {
    let body = client.get(path, headers, page_no).await?;
    let report: Report<B> = Report::parse(&body, page_no, what)?;
    let records: usize = report.data.iter().map(results).sum();
    let next = report.next_page().map_err(|reason| ConnectorError::Shape {
        page: page_no,
        what,
        reason: reason.into(),
    })?;
    let records = u64::try_from(records).unwrap_or(u64::MAX);
    Ok((super::Page { rows: super::Rows::Json(body), records }, next))
}
