//! The HTTP API: routes, credentials, body caps, rate limits and the one mapping from errors
//! to answers. The only module that knows HTTP.
//!
//! Agents authenticate with `Authorization: Bearer <node key>`, people with
//! `Authorization: Bearer <API token>`; both are looked up by their SHA-256. Every non-2xx
//! answer carries an [`aiscout_wire::ErrorBody`]. A batch is acknowledged only after the
//! store committed it.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aiscout_signatures::Catalog;
use aiscout_wire::validate::{DecodeError, MAX_BODY_BYTES};
use aiscout_wire::{
    AuditList, BatchAck, DeviceList, DeviceRow, EnrollRequest, EnrollResponse, ErrorBody,
    Heartbeat, HeartbeatAck, InventoryList, InventoryQuery, ReviewRequest, Secret, SightingBatch,
    UnixSecs,
};
use axum::body::{Body, Bytes};
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path, RawQuery, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use tokio::net::TcpListener;

use crate::model::{Admission, DeviceId, EnrollOutcome, Health, IngestOutcome, Role, Token};
use crate::store::{Store, StoreError};
use crate::telemetry::Metrics;
use crate::{credentials, ingest, join, review};

pub mod conn;
pub mod overlay;
pub mod ratelimit;
mod scim;
pub mod tls;
pub mod upload;

pub use conn::{Counters, Limits, serve};

/// Most audit entries per page.
const AUDIT_PAGE_MAX: i64 = 1_000;
/// Largest body of the small JSON calls: enrollment, heartbeat, review decisions.
pub const MAX_SMALL_BODY_BYTES: usize = 256 * 1024;

/// What every handler shares. Nothing here is state another instance would need.
pub struct AppState<S> {
    /// The store.
    pub store: S,
    /// The catalog product ids are checked against.
    pub catalog: Catalog,
    /// The signed artifact served to agents, with its version.
    pub artifact: Option<(Bytes, u64)>,
    /// The enroll secret; `None` refuses enrollments.
    pub enroll_secret: Option<Secret>,
    /// Counters.
    pub metrics: Metrics,
    /// Per-agent, per-instance rate limiter.
    pub limiter: ratelimit::RateLimiter,
    /// The generic import column mappings (`[import]` in the config).
    pub mappings: ingest::mapping::Mappings,
    /// Console sessions, uploads and staleness (`[console]` in the config).
    pub console: crate::console::Settings,
    /// Single sign-on for the console (`[console.oidc]`), when configured.
    pub sso: Option<crate::console::Sso>,
    /// Policy exports (`[policy]`): the coaching page.
    pub policy: crate::policy::Settings,
    /// Derived data kept while the store's data versions are unchanged (`join::cache`).
    pub cache: join::Cache,
    /// The bearer token `/metrics` requires (`metrics_token_file`); `None` leaves it open.
    pub metrics_token: Option<Secret>,
    /// Where uploads are written and how many imports may run at once.
    pub uploads: upload::Uploads,
    /// Alert rules and channels (`[alerts]`), for the console's alerts page.
    pub alerts: Arc<crate::alerts::channel::Settings>,
    /// The re-enrollment policy and the wrong-secret throttle (`[enroll]`).
    pub enrollment: Enrollment,
    /// The organisation overlay's signing key (`overlay.key` in the data folder); `None`
    /// serves no overlay.
    pub overlay: Option<overlay::OverlaySigner>,
    /// The stored overlay as this instance last read it, checked against the stored version
    /// at each use (issue 17).
    pub overlay_cache: overlay::OverlayCache,
    /// The risk score's weights (`[risk]`), for the inventory, the queue and the exports.
    pub risk: aiscout_signatures::RiskWeights,
}

/// How enrollments are guarded (`[enroll]` in the config; issue 14 item 3).
#[derive(Debug)]
pub struct Enrollment {
    /// What a re-enrollment of a known host id may do.
    pub policy: crate::model::ReenrollPolicy,
    /// Wrong enroll secrets per source address.
    pub throttle: ratelimit::FailureThrottle,
}

impl Default for Enrollment {
    /// `require_key`; 10 wrong secrets per address, then one more each 6 minutes.
    fn default() -> Self {
        Self {
            policy: crate::model::ReenrollPolicy::default(),
            throttle: ratelimit::FailureThrottle::new(10, 10),
        }
    }
}

/// Why a request failed; one variant per answer.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400.
    #[error("{message}")]
    BadRequest {
        /// Offending field's JSON path.
        field: Option<String>,
        /// What is wrong.
        message: String,
    },
    /// 401.
    #[error("missing or invalid credentials")]
    Unauthorized,
    /// 403.
    #[error("role {0} may not do this")]
    Forbidden(Role),
    /// 404.
    #[error("{0}")]
    NotFound(String),
    /// 413, with the route's limit in bytes.
    #[error("request body larger than {0} bytes")]
    TooLarge(usize),
    /// 415: the body is not of the media type the route takes.
    #[error("Content-Type must be {0}")]
    UnsupportedMediaType(&'static str),
    /// 503: every import permit is taken.
    #[error("{0}")]
    Busy(String),
    /// 429.
    #[error("rate limit exceeded; retry later")]
    RateLimited,
    /// 429 with `Retry-After`: too many wrong enroll secrets from this address.
    #[error("too many wrong enroll secrets from this address; retry in {0} s")]
    Throttled(u64),
    /// 403: a known host id re-enrolled without proving its node key (`require_key`).
    #[error(
        "host id {0:?} is enrolled already; re-enrolling it needs the node key it holds, or an \
         admin's approval (`aiscout-collector device approve-reenroll`, or the console's \
         Devices page)"
    )]
    TakeoverRefused(String),
    /// 409 with `Retry-After`: a known host id's re-enrollment waits for an admin (`hold`).
    #[error("host id {0:?} is enrolled already; this re-enrollment waits for an admin's approval")]
    Held(String),
    /// 409: the thing exists already.
    #[error("{0}")]
    Conflict(String),
    /// 500: the system random generator failed (a new node key could not be made).
    #[error("{0}")]
    Random(credentials::RandomError),
    /// 500 (or 503 when the database is out of reach, [`StoreError::is_unavailable`]).
    // The cause is in the message, not also in `source()` (issue 18: each cause once).
    #[error("store: {0}")]
    Store(StoreError),
    /// 500: a stored review has a status this build does not know.
    #[error("review status {0:?} is unknown to this build")]
    UnknownReviewStatus(String),
    /// 500: the task that parsed an import panicked or was cancelled (a bug or a shutdown, not
    /// the file's fault: a file the parser refuses is a 400 with the row and column).
    #[error("the import's parsing task failed: {0}")]
    ImportTask(tokio::task::JoinError),
    /// 500: the overlay could not be signed with the collector's overlay key.
    #[error("cannot sign the overlay: {0}")]
    SignOverlay(aiscout_signatures::sign::SignError),
    /// 500: an upload could not be written to its file on disk.
    #[error("writing the upload to {path}: {error}")]
    UploadFile {
        /// The file or folder.
        path: String,
        /// Why.
        error: std::io::Error,
    },
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        ApiError::Store(e)
    }
}

impl From<DecodeError> for ApiError {
    fn from(e: DecodeError) -> Self {
        ApiError::BadRequest { field: Some(e.field().to_owned()), message: e.to_string() }
    }
}

impl From<BytesRejection> for ApiError {
    fn from(e: BytesRejection) -> Self {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::TooLarge(MAX_BODY_BYTES)
        } else {
            ApiError::BadRequest { field: None, message: e.body_text() }
        }
    }
}

impl From<upload::BodyError> for ApiError {
    fn from(e: upload::BodyError) -> Self {
        match e {
            upload::BodyError::TooLarge(limit) => ApiError::TooLarge(limit),
            upload::BodyError::Read(why) => {
                ApiError::BadRequest { field: None, message: format!("reading the body: {why}") }
            }
            upload::BodyError::Busy(_) => ApiError::Busy(e.to_string()),
            upload::BodyError::Io { path, error } => ApiError::UploadFile { path, error },
        }
    }
}

/// Reads a JSON call's body (at most `limit` bytes) once its headers have been accepted:
/// 415 unless it is declared `application/json`.
async fn json_body(headers: &HeaderMap, body: Body, limit: usize) -> Result<Bytes, ApiError> {
    if !upload::is_json(headers) {
        return Err(ApiError::UnsupportedMediaType("application/json"));
    }
    Ok(upload::read(headers, body, limit).await?)
}

/// `Retry-After` of a 503 for a database out of reach (a restart takes seconds).
const UNAVAILABLE_RETRY_SECS: u64 = 5;

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, field) = match &self {
            ApiError::BadRequest { field, .. } => (StatusCode::BAD_REQUEST, field.clone()),
            ApiError::Unauthorized => (StatusCode::UNAUTHORIZED, None),
            ApiError::Forbidden(_) => (StatusCode::FORBIDDEN, None),
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, None),
            ApiError::TooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, None),
            ApiError::UnsupportedMediaType(_) => (StatusCode::UNSUPPORTED_MEDIA_TYPE, None),
            ApiError::Busy(_) => (StatusCode::SERVICE_UNAVAILABLE, None),
            ApiError::RateLimited | ApiError::Throttled(_) => (StatusCode::TOO_MANY_REQUESTS, None),
            ApiError::TakeoverRefused(_) => (StatusCode::FORBIDDEN, None),
            ApiError::Held(_) => (StatusCode::CONFLICT, None),
            ApiError::Conflict(_) => (StatusCode::CONFLICT, None),
            ApiError::Store(e) if e.is_unavailable() => {
                tracing::warn!(error = %e, "The database is unavailable; answered 503.");
                (StatusCode::SERVICE_UNAVAILABLE, None)
            }
            ApiError::Store(e) => {
                tracing::error!(error = %e, "Store call failed.");
                (StatusCode::INTERNAL_SERVER_ERROR, None)
            }
            ApiError::Random(_)
            | ApiError::UnknownReviewStatus(_)
            | ApiError::ImportTask(_)
            | ApiError::SignOverlay(_)
            | ApiError::UploadFile { .. } => {
                tracing::error!(error = %self, "Request failed on the collector's side.");
                (StatusCode::INTERNAL_SERVER_ERROR, None)
            }
        };
        let error = match &self {
            ApiError::Store(e) if e.is_unavailable() => {
                "database unavailable; retry later".to_owned()
            }
            ApiError::Store(_) => "internal store error".to_owned(),
            ApiError::Random(_)
            | ApiError::UnknownReviewStatus(_)
            | ApiError::ImportTask(_)
            | ApiError::SignOverlay(_) => "internal error".to_owned(),
            ApiError::UploadFile { .. } => "the upload could not be written to disk".to_owned(),
            other => other.to_string(),
        };
        let retry_after = match &self {
            ApiError::Throttled(secs) => Some(*secs),
            ApiError::Busy(_) | ApiError::Held(_) => Some(30),
            ApiError::Store(e) if e.is_unavailable() => Some(UNAVAILABLE_RETRY_SECS),
            _ => None,
        };
        let mut response = (status, Json(ErrorBody { error, field })).into_response();
        if let Some(secs) = retry_after {
            response.headers_mut().insert(header::RETRY_AFTER, header::HeaderValue::from(secs));
        }
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                "Bearer".parse().unwrap_or_else(|_| header::HeaderValue::from_static("Bearer")),
            );
        }
        response
    }
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case(aiscout_wire::AUTHORIZATION_SCHEME).then_some(token.trim())
}

async fn timed<S, T>(
    state: &AppState<S>,
    call: impl Future<Output = Result<T, StoreError>>,
) -> Result<T, ApiError> {
    let start = Instant::now();
    let result = call.await;
    state.metrics.store_call(start.elapsed(), result.is_ok());
    Ok(result?)
}

async fn agent<S: Store>(state: &AppState<S>, headers: &HeaderMap) -> Result<DeviceId, ApiError> {
    let key = bearer(headers).ok_or(ApiError::Unauthorized)?;
    let device = timed(state, state.store.device_by_key(credentials::hash(key)))
        .await?
        .ok_or(ApiError::Unauthorized)?;
    if !state.limiter.allow(device.0) {
        Metrics::inc(&state.metrics.rate_limited, 1);
        return Err(ApiError::RateLimited);
    }
    Ok(device)
}

/// Any valid, unrevoked API token.
async fn api_token<S: Store>(state: &AppState<S>, headers: &HeaderMap) -> Result<Token, ApiError> {
    let token = bearer(headers).ok_or(ApiError::Unauthorized)?;
    match timed(state, state.store.token_by_hash(credentials::hash(token))).await? {
        Some(t) if t.revoked_at.is_none() => Ok(t),
        _ => Err(ApiError::Unauthorized),
    }
}

/// A person's token: any role but `policy`, which reads the policy exports and nothing else.
async fn person<S: Store>(state: &AppState<S>, headers: &HeaderMap) -> Result<Token, ApiError> {
    let token = api_token(state, headers).await?;
    if !token.role.is_person() {
        return Err(ApiError::Forbidden(token.role));
    }
    Ok(token)
}

type Shared<S> = State<Arc<AppState<S>>>;

async fn enroll<S: Store>(State(state): Shared<S>, request: Request) -> Result<Response, ApiError> {
    let (parts, body) = request.into_parts();
    let headers = &parts.headers;
    // Set by the accept loop for every connection; a request without it (none in `serve`)
    // shares the throttle bucket of the unspecified address.
    let source = parts
        .extensions
        .get::<axum::extract::ConnectInfo<SocketAddr>>()
        .map_or(IpAddr::from([0, 0, 0, 0]), |c| c.0.ip());
    // An address that sent too many wrong secrets is refused before anything is read.
    if let Err(wait) = state.enrollment.throttle.check(source) {
        Metrics::inc(&state.metrics.enroll_throttled, 1);
        return Err(ApiError::Throttled(wait));
    }
    // The enroll secret is in the body, so the body is read first, but only a small one.
    let body = json_body(headers, body, MAX_SMALL_BODY_BYTES).await?;
    let req: EnrollRequest = aiscout_wire::decode(&body)?;
    // A secret rotated in the console replaces the configured one.
    let ok = match timed(&state, state.store.enroll_secret()).await? {
        Some((hash, _)) => {
            let presented = credentials::hash(req.enroll_secret.expose());
            presented.iter().zip(hash.iter()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
        }
        None => state
            .enroll_secret
            .as_ref()
            .is_some_and(|s| credentials::secrets_equal(s.expose(), req.enroll_secret.expose())),
    };
    if !ok {
        state.enrollment.throttle.fail(source);
        Metrics::inc(&state.metrics.enroll_bad_secret, 1);
        return Err(ApiError::Unauthorized);
    }
    // The agent's own key when it proposed one (validated as 32 random bytes in hex): its
    // retry after a lost answer then proves the host id (issue 19).
    let key = match &req.proposed_node_key {
        Some(proposed) => proposed.expose().to_owned(),
        None => credentials::generate(credentials::NODE_KEY_PREFIX).map_err(ApiError::Random)?,
    };
    let d = req.device;
    let host_id = d.host_id.clone();
    let attempt = crate::model::EnrollAttempt {
        device: crate::model::Device {
            host_id: d.host_id,
            hostname: d.hostname,
            os: d.os,
            os_version: d.os_version,
            agent_version: d.agent_version,
            owner_email: d.owner_email,
        },
        key_hash: credentials::hash(&key),
        previous_key: req.previous_node_key.as_ref().map(|k| credentials::hash(k.expose())),
        policy: state.enrollment.policy,
        source: source.to_string(),
        now: UnixSecs::now(),
    };
    match timed(&state, state.store.enroll_checked(attempt)).await? {
        EnrollOutcome::Enrolled { how, .. } => {
            Metrics::inc(&state.metrics.enrollments, 1);
            if how == Admission::New {
                tracing::info!("Agent enrolled.");
            } else {
                tracing::info!(how = how.as_str(), "Agent re-enrolled.");
            }
            Ok(Json(EnrollResponse { node_key: Secret::new(key) }).into_response())
        }
        EnrollOutcome::Refused => {
            Metrics::inc(&state.metrics.enroll_takeover_refused, 1);
            tracing::warn!(%source, "Re-enrollment of a known host id without its node key refused.");
            Err(ApiError::TakeoverRefused(host_id))
        }
        EnrollOutcome::Held => {
            Metrics::inc(&state.metrics.enroll_held, 1);
            tracing::warn!(%source, "Re-enrollment of a known host id held for an admin.");
            Err(ApiError::Held(host_id))
        }
    }
}

#[tracing::instrument(skip_all, fields(batch_id, sightings))]
async fn sightings<S: Store>(
    State(state): Shared<S>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<BatchAck>, ApiError> {
    let device = agent(&state, &headers).await?;
    let body = json_body(&headers, body, MAX_BODY_BYTES).await?;
    let wire: SightingBatch = aiscout_wire::decode(&body)?;
    if known_products(&state.catalog, &wire).is_err() {
        // Products the organisation overlay adds are known too (issue 17).
        let own = overlay::product_ids(&state).await;
        let mut catalog_ids = state.catalog.products().to_vec();
        catalog_ids.extend(own.into_iter().map(|id| {
            let mut p = aiscout_signatures::Product::default();
            p.id = id;
            p
        }));
        known_products(&Catalog::new(state.catalog.version(), catalog_ids), &wire)?;
    }
    let span = tracing::Span::current();
    span.record("batch_id", wire.batch_id.as_str());
    span.record("sightings", wire.sightings.len());
    let accepted = u64::try_from(wire.sightings.len()).unwrap_or(u64::MAX);
    let batch_id = wire.batch_id.clone();
    let batch = ingest::batch(wire);
    let outcome = timed(&state, state.store.ingest(device, batch, crate::store::now())).await?;
    let duplicate = outcome == IngestOutcome::Duplicate;
    if duplicate {
        Metrics::inc(&state.metrics.batches_duplicate, 1);
        tracing::debug!("Replayed batch acknowledged without counting.");
    } else {
        Metrics::inc(&state.metrics.batches_stored, 1);
        Metrics::inc(&state.metrics.sightings, accepted);
    }
    Ok(Json(BatchAck { batch_id, accepted, duplicate }))
}

/// Refuses a batch that names a product the served catalog does not have (issue 14 item 3):
/// a node key may report only what the catalog knows, so nothing else reaches the inventory.
/// The whole batch is refused, so nothing of it is stored.
fn known_products(catalog: &Catalog, batch: &SightingBatch) -> Result<(), ApiError> {
    for (i, s) in batch.sightings.iter().enumerate() {
        if catalog.product(&s.product).is_none() {
            return Err(ApiError::BadRequest {
                field: Some(format!("sightings[{i}].product")),
                message: format!(
                    "sightings[{i}].product: {:?} is not a product of the catalog this collector \
                     serves (version {})",
                    s.product,
                    catalog.version()
                ),
            });
        }
    }
    Ok(())
}

async fn heartbeat<S: Store>(
    State(state): Shared<S>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<HeartbeatAck>, ApiError> {
    let device = agent(&state, &headers).await?;
    let body = json_body(&headers, body, MAX_SMALL_BODY_BYTES).await?;
    let hb: Heartbeat = aiscout_wire::decode(&body)?;
    let now = crate::store::now();
    let i = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
    let health = Health {
        received_at: UnixSecs(now),
        agent_version: hb.agent.version,
        catalog_version: i(hb.agent.catalog_version),
        interfaces_json: serde_json::to_string(&hb.interfaces).unwrap_or_else(|_| "[]".into()),
        packets: i(hb.packets),
        drops: i(hb.drops),
        spool_depth: i(hb.spool_depth),
        evictions: i(hb.evictions),
        last_scan: hb.last_scan,
    };
    timed(&state, state.store.heartbeat(device, health)).await?;
    Metrics::inc(&state.metrics.heartbeats, 1);
    Ok(Json(HeartbeatAck {
        server_time: UnixSecs(now),
        catalog_version: state.artifact.as_ref().map(|(_, v)| *v),
        overlay_version: overlay::version(&state).await,
    }))
}

async fn catalog<S: Store>(
    State(state): Shared<S>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    agent(&state, &headers).await?;
    match &state.artifact {
        Some((bytes, _)) => {
            Ok(([(header::CONTENT_TYPE, aiscout_wire::CATALOG_MEDIA_TYPE)], bytes.clone())
                .into_response())
        }
        None => Err(ApiError::NotFound(
            "this collector serves no catalog (start it with --catalog FILE)".into(),
        )),
    }
}

async fn inventory<S: Store>(
    State(state): Shared<S>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Result<Json<InventoryList>, ApiError> {
    person(&state, &headers).await?;
    let pairs: Vec<(String, String)> = query
        .as_deref()
        .map(|q| {
            q.split('&')
                .filter(|p| !p.is_empty())
                .map(|p| {
                    let (k, v) = p.split_once('=').unwrap_or((p, ""));
                    (percent_decode(k), percent_decode(v))
                })
                .collect()
        })
        .unwrap_or_default();
    let q =
        InventoryQuery::from_pairs(pairs.iter().map(|(k, v)| (k.as_str(), v.as_str()))).map_err(
            |e| ApiError::BadRequest { field: Some(e.field.clone()), message: e.to_string() },
        )?;
    let facts = timed(
        &state,
        join::gather_from(
            &state.store,
            Some(&state.cache),
            join::usage_filter(&q),
            crate::store::now(),
            join::Purpose::Inventory,
        ),
    )
    .await?;
    Ok(Json(InventoryList { rows: join::inventory(&state.catalog, &state.risk, &q, &facts) }))
}

/// Largest import upload, in bytes.
pub const MAX_IMPORT_BYTES: usize = 64 << 20;

pub(crate) fn query_pairs(query: Option<&str>) -> Vec<(String, String)> {
    query
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

fn import_summary(r: ingest::FileReport) -> aiscout_wire::ImportSummary {
    aiscout_wire::ImportSummary {
        rows: r.tally.rows,
        stored: r.stored,
        duplicates: r.duplicates,
        candidates: r.tally.candidates,
        not_ai: r.tally.not_ai,
        not_spend: r.tally.not_spend,
        error_count: r.tally.error_count,
        errors: r.tally.errors.iter().map(ToString::to_string).collect(),
        file: r.file,
        format: r.format,
    }
}

fn import_error(e: ingest::ImportError) -> ApiError {
    match e {
        ingest::ImportError::Store(e) => ApiError::Store(e),
        ingest::ImportError::Task(e) => ApiError::ImportTask(e),
        other => ApiError::BadRequest { field: None, message: other.to_string() },
    }
}

#[derive(Clone, Copy)]
enum ImportKind {
    Expenses,
    Gateway,
}

async fn import_upload<S: Store>(
    state: Arc<AppState<S>>,
    headers: HeaderMap,
    query: Option<String>,
    body: Body,
    kind: ImportKind,
) -> Result<Json<aiscout_wire::ImportSummary>, ApiError> {
    let token = person(&state, &headers).await?;
    if !matches!(token.role, Role::Admin | Role::Procurement) {
        return Err(ApiError::Forbidden(token.role));
    }
    // Held until the import is stored: the ceiling on memory and disk that imports take.
    let _permit = state.uploads.permit()?;
    let (mut format, mut name) = ("auto".to_owned(), "upload".to_owned());
    let mut cardholder = None;
    for (k, v) in query_pairs(query.as_deref()) {
        match k.as_str() {
            "format" => format = v,
            "cardholder" if !v.trim().is_empty() => cardholder = Some(v),
            "name" => name = v.chars().filter(|c| !c.is_control() && *c != '/').take(200).collect(),
            _ => {}
        }
    }
    let mut spooled = state.uploads.create(MAX_IMPORT_BYTES).await?;
    spooled.body(&headers, body).await?;
    spooled.finish().await?;
    let input = ingest::Input::Spooled { name, path: spooled.path().to_owned() };
    let index = Arc::new(aiscout_signatures::Index::new(state.catalog.clone()));
    let bad_format = || ApiError::BadRequest {
        field: Some("format".into()),
        message: format!("unknown format {format:?}"),
    };
    let now = crate::store::now();
    let report = match kind {
        ImportKind::Expenses => {
            let f = match format.as_str() {
                "auto" => None,
                f => Some(ingest::expense::ExpenseFormat::parse(f).ok_or_else(bad_format)?),
            };
            let mut mapping = state.mappings.expenses.clone();
            if let Some(email) = &cardholder {
                mapping.owners.set_cardholder(email).map_err(|p| ApiError::BadRequest {
                    field: Some("cardholder".into()),
                    message: p.reason,
                })?;
            }
            ingest::file::expenses(&state.store, index, input, f, &mapping, None, now).await
        }
        ImportKind::Gateway => {
            let f = match format.as_str() {
                "auto" => None,
                f => Some(ingest::gateway::GatewayFormat::parse(f).ok_or_else(bad_format)?),
            };
            let mapping = &state.mappings.gateway;
            ingest::file::gateway(&state.store, index, input, f, mapping, None, now).await
        }
    };
    let report = report.map_err(import_error)?;
    let kind = match kind {
        ImportKind::Expenses => "expenses",
        ImportKind::Gateway => "gateway",
    };
    ingest::file::record(&state.store, kind, &token.name, &report, now).await;
    Ok(Json(import_summary(report)))
}

async fn import_expenses<S: Store>(
    State(state): Shared<S>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
    body: Body,
) -> Result<Json<aiscout_wire::ImportSummary>, ApiError> {
    import_upload(state, headers, query, body, ImportKind::Expenses).await
}

async fn import_gateway<S: Store>(
    State(state): Shared<S>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
    body: Body,
) -> Result<Json<aiscout_wire::ImportSummary>, ApiError> {
    import_upload(state, headers, query, body, ImportKind::Gateway).await
}

async fn reconcile<S: Store>(
    State(state): Shared<S>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Result<Json<aiscout_wire::Reconciliation>, ApiError> {
    person(&state, &headers).await?;
    let (mut idle_days, mut since) = (30_u32, None);
    for (k, v) in query_pairs(query.as_deref()) {
        let bad = |what: &str| ApiError::BadRequest {
            field: Some(k.clone()),
            message: format!("{k}: not {what}"),
        };
        match k.as_str() {
            "idle_days" => idle_days = v.parse().map_err(|_| bad("a number of days"))?,
            "since" => since = Some(UnixSecs(v.parse().map_err(|_| bad("Unix seconds"))?)),
            _ => {}
        }
    }
    let filter = crate::model::UsageFilter { since, ..crate::model::UsageFilter::default() };
    let facts = timed(
        &state,
        join::gather_from(
            &state.store,
            Some(&state.cache),
            filter,
            crate::store::now(),
            join::Purpose::Reconcile,
        ),
    )
    .await?;
    Ok(Json(join::reconcile::reconcile(&state.catalog, &facts, idle_days)))
}

/// Decodes `%XX` escapes and `+` (form encoding); invalid escapes are kept as written.
pub(crate) fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        let hex = |j: usize| bytes.get(j).and_then(|c| char::from(*c).to_digit(16));
        match (b, hex(i + 1), hex(i + 2)) {
            (b'%', Some(h), Some(l)) => {
                out.push(u8::try_from(h * 16 + l).unwrap_or(b'?'));
                i += 3;
            }
            (b'+', _, _) => {
                out.push(b' ');
                i += 1;
            }
            _ => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

async fn devices<S: Store>(
    State(state): Shared<S>,
    headers: HeaderMap,
) -> Result<Json<DeviceList>, ApiError> {
    person(&state, &headers).await?;
    let rows = timed(&state, state.store.devices()).await?;
    let u = |v: i64| u64::try_from(v).unwrap_or(0);
    let devices = rows
        .into_iter()
        .map(|d| DeviceRow {
            host_id: d.device.host_id,
            hostname: d.device.hostname,
            os: d.device.os,
            os_version: d.device.os_version,
            agent_version: d.device.agent_version,
            owner_email: d.device.owner_email,
            duplicate_of: d.duplicate_of,
            enrolled_at: d.enrolled_at.get(),
            last_contact: d.last_contact.get(),
            health: d.health.map(|h| aiscout_wire::DeviceHealth {
                received_at: h.received_at.get(),
                agent_version: h.agent_version,
                catalog_version: u(h.catalog_version),
                interfaces: serde_json::from_str(&h.interfaces_json).unwrap_or_default(),
                packets: u(h.packets),
                drops: u(h.drops),
                spool_depth: u(h.spool_depth),
                evictions: u(h.evictions),
                last_scan: h.last_scan.map(UnixSecs::get),
                dropped_sightings: u(d.dropped_sightings),
                evicted_sightings: u(d.evicted_sightings),
            }),
        })
        .collect();
    Ok(Json(DeviceList { devices }))
}

fn known_product<S>(state: &AppState<S>, id: &str) -> Result<(), ApiError> {
    if state.catalog.product(id).is_none() {
        return Err(ApiError::NotFound(format!("unknown product {id:?}")));
    }
    Ok(())
}

async fn product<S: Store>(
    State(state): Shared<S>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<aiscout_wire::ProductDetail>, ApiError> {
    person(&state, &headers).await?;
    known_product(&state, &id)?;
    let filter = crate::model::UsageFilter { product: Some(id.clone()), ..Default::default() };
    let (sources, _) = timed(&state, state.store.usage(filter)).await?;
    let devices = timed(&state, state.store.product_devices(id.clone())).await?;
    let review = timed(&state, state.store.review(id.clone())).await?;
    let mcp = timed(&state, state.store.mcp_flags()).await?;
    Ok(Json(join::product_detail(&state.catalog, &id, sources, devices, review, &mcp)))
}

async fn set_review<S: Store>(
    State(state): Shared<S>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Body,
) -> Result<Json<aiscout_wire::Review>, ApiError> {
    let token = person(&state, &headers).await?;
    if !token.role.may_review() {
        return Err(ApiError::Forbidden(token.role));
    }
    known_product(&state, &id)?;
    let body = json_body(&headers, body, MAX_SMALL_BODY_BYTES).await?;
    let req: ReviewRequest = aiscout_wire::decode(&body)?;
    let renewal = match req.renewal.as_deref() {
        None | Some("") => None,
        Some(d) => Some(review::parse_day(d).ok_or_else(|| ApiError::BadRequest {
            field: Some("renewal".into()),
            message: format!("renewal: {d:?} is not a date"),
        })?),
    };
    let status = req.status;
    let chosen = review::Decision {
        status,
        note: req.note,
        business_owner: req.business_owner,
        alternative: req.alternative,
        renewal,
    };
    let (decision, audit) = review::decide(&id, chosen, &token.name, crate::store::now());
    let answer = review::to_wire(decision.clone())
        .ok_or_else(|| ApiError::UnknownReviewStatus(status.as_str().to_owned()))?;
    timed(&state, state.store.set_review(decision, audit)).await?;
    tracing::info!(product = %id, status = status.as_str(), "Product reviewed.");
    Ok(Json(answer))
}

async fn mappings<S: Store>(
    State(state): Shared<S>,
    headers: HeaderMap,
) -> Result<Json<aiscout_wire::MappingList>, ApiError> {
    person(&state, &headers).await?;
    let rows = timed(&state, state.store.mappings()).await?;
    let mappings = rows.into_iter().map(|m| review::mapping_to_wire(m, None)).collect();
    Ok(Json(aiscout_wire::MappingList { mappings }))
}

/// `POST /api/v1/mappings`: a reviewer teaches that a descriptor is a product (issue 17).
async fn teach<S: Store>(
    State(state): Shared<S>,
    headers: HeaderMap,
    body: Body,
) -> Result<(StatusCode, Json<aiscout_wire::DescriptorMapping>), ApiError> {
    let token = person(&state, &headers).await?;
    if !token.role.may_review() {
        return Err(ApiError::Forbidden(token.role));
    }
    let body = json_body(&headers, body, MAX_SMALL_BODY_BYTES).await?;
    let req: aiscout_wire::MappingRequest = aiscout_wire::decode(&body)?;
    let now = crate::store::now();
    let (mapping, audit) =
        review::teach(&state.catalog, &req.descriptor, &req.product, &req.note, &token.name, now)
            .map_err(|message| ApiError::BadRequest { field: None, message })?;
    let (stored, lines) = match state.store.add_mapping(mapping, audit).await {
        Err(StoreError::Exists { name, .. }) => {
            return Err(ApiError::Conflict(format!(
                "descriptor {name:?} is mapped already; undo that mapping first"
            )));
        }
        other => other?,
    };
    tracing::info!(product = %stored.product, lines, "Descriptor taught.");
    Ok((StatusCode::CREATED, Json(review::mapping_to_wire(stored, Some(lines)))))
}

/// `DELETE /api/v1/mappings/{id}`: undo a teaching; its lines are candidates again.
async fn unteach<S: Store>(
    State(state): Shared<S>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<aiscout_wire::DescriptorMapping>, ApiError> {
    let token = person(&state, &headers).await?;
    if !token.role.may_review() {
        return Err(ApiError::Forbidden(token.role));
    }
    let missing = || ApiError::NotFound(format!("no descriptor mapping {id:?}"));
    let n: i64 = id.parse().map_err(|_| missing())?;
    let audit = review::untaught(&token.name, crate::store::now());
    let (removed, lines) =
        timed(&state, state.store.remove_mapping(n, audit)).await?.ok_or_else(missing)?;
    tracing::info!(product = %removed.product, lines, "Descriptor mapping undone.");
    Ok(Json(review::mapping_to_wire(removed, Some(lines))))
}

async fn audit<S: Store>(
    State(state): Shared<S>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Result<Json<AuditList>, ApiError> {
    person(&state, &headers).await?;
    let (mut after, mut limit) = (0_i64, 100_i64);
    for pair in query.as_deref().unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let n = v.parse::<i64>().map_err(|_| ApiError::BadRequest {
            field: Some(k.to_owned()),
            message: format!("{k}: not an integer"),
        });
        match k {
            "after" => after = n?,
            "limit" => limit = n?.clamp(1, AUDIT_PAGE_MAX),
            other => {
                return Err(ApiError::BadRequest {
                    field: Some(other.to_owned()),
                    message: format!("{other}: unknown parameter"),
                });
            }
        }
    }
    let entries = timed(&state, state.store.audit(after, limit)).await?;
    let json = |s: Option<String>| s.and_then(|s| serde_json::from_str(&s).ok());
    Ok(Json(AuditList {
        entries: entries
            .into_iter()
            .map(|e| aiscout_wire::AuditEntry {
                id: e.id,
                at: e.record.at.get(),
                actor: e.record.actor,
                action: e.record.action,
                subject: e.record.subject,
                before: json(e.record.before),
                after: json(e.record.after),
            })
            .collect(),
    }))
}

/// The strong entity tag of a body: its SHA-256, quoted.
fn entity_tag(body: &[u8]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, body);
    format!("\"{}\"", aiscout_signatures::hex::encode(digest.as_ref()))
}

/// Whether an `If-None-Match` value names `etag` (RFC 9110 section 13.1.2: `*`, or a list
/// compared weakly, so `W/"x"` matches `"x"`).
fn none_match(header: &str, etag: &str) -> bool {
    header.split(',').map(str::trim).any(|tag| tag == "*" || tag.trim_start_matches("W/") == etag)
}

/// `GET /api/v1/policy/{format}[?status=blocked&status=unsanctioned]`: the review decisions as
/// a blocklist or policy file (see [`crate::policy`]), for policy and admin tokens.
/// `defender-indicators` also takes `page=N`: file N (from 1) of the export split into files of
/// at most 500 indicators, as Defender imports them; `aiscout-pages` says how many there are. Answers
/// carry a strong ETag (a hash of the body) and `Cache-Control: no-cache`, so a consumer
/// polling with `If-None-Match` gets 304 until a decision changes.
async fn policy_export<S: Store>(
    State(state): Shared<S>,
    headers: HeaderMap,
    Path(format): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let token = api_token(&state, &headers).await?;
    if !token.role.may_read_policy() {
        return Err(ApiError::Forbidden(token.role));
    }
    let format = crate::policy::Format::parse(&format).ok_or_else(|| {
        ApiError::NotFound(format!(
            "unknown policy format {format:?} ({})",
            crate::policy::Format::names()
        ))
    })?;
    let mut statuses = Vec::new();
    let mut page = None;
    for (k, v) in query_pairs(query.as_deref()) {
        match k.as_str() {
            "status" => statuses.push(v),
            "page" if format == crate::policy::Format::DefenderIndicators => {
                let n = v.parse::<usize>().ok().filter(|n| *n >= 1).ok_or_else(|| {
                    ApiError::BadRequest {
                        field: Some("page".into()),
                        message: format!("page: {v:?} is not a file number (1, 2, ...)"),
                    }
                })?;
                page = Some(n);
            }
            "page" => {
                return Err(ApiError::BadRequest {
                    field: Some("page".into()),
                    message: format!(
                        "page: only defender-indicators is split into files; {format} is one file"
                    ),
                });
            }
            other => {
                return Err(ApiError::BadRequest {
                    field: Some(other.to_owned()),
                    message: format!("{other}: unknown parameter (status, page)"),
                });
            }
        }
    }
    let selection = crate::policy::Selection::parse(statuses.iter().map(String::as_str))
        .map_err(|message| ApiError::BadRequest { field: Some("status".into()), message })?;
    let reviews = timed(&state, state.store.reviews()).await?;
    let plan = crate::policy::plan(&state.catalog, &reviews, &selection, &state.policy);
    let mut export = crate::policy::render(&plan, format);
    // Defender imports at most 500 indicators per file: `page` picks one of the numbered
    // files, and every answer says how many there are.
    let files = crate::policy::render_files(&plan, format);
    let pages = files.len();
    if let Some(n) = page {
        export.body = files.into_iter().nth(n - 1).ok_or_else(|| {
            ApiError::NotFound(format!(
                "page {n}: this export has {pages} file(s) of at most {} indicators",
                crate::policy::DEFENDER_ROWS_PER_FILE
            ))
        })?;
    }
    let etag = entity_tag(export.body.as_bytes());
    let unchanged = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| none_match(v, &etag));
    let mut response = if unchanged {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        ([(header::CONTENT_TYPE, format.media_type())], export.body).into_response()
    };
    let h = response.headers_mut();
    for (name, value) in [
        (header::ETAG, etag),
        (header::CACHE_CONTROL, "no-cache".to_owned()),
        (header::HeaderName::from_static("aiscout-held-back"), export.held_back.to_string()),
        (header::HeaderName::from_static("aiscout-pages"), pages.to_string()),
    ] {
        if let Ok(value) = header::HeaderValue::from_str(&value) {
            h.insert(name, value);
        }
    }
    Ok(response)
}

/// `GET /api/v1/people/{email}/export`: everything stored about one person, as JSON
/// ([`crate::person`]), for admin tokens only (a person's right of access is answered by an
/// administrator). `found` is false when nothing is stored about the address.
async fn person_export<S: Store>(
    State(state): Shared<S>,
    headers: HeaderMap,
    Path(email): Path<String>,
) -> Result<Response, ApiError> {
    let token = api_token(&state, &headers).await?;
    if token.role != Role::Admin {
        return Err(ApiError::Forbidden(token.role));
    }
    let email = crate::person::email(&email)
        .map_err(|message| ApiError::BadRequest { field: Some("email".into()), message })?;
    let record = timed(&state, crate::person::export(&state.store, &email)).await?;
    Ok(Json(crate::person::to_json(&record)).into_response())
}

/// `POST /api/v1/people/{email}/erase` with `{"reason": "..."}`: the right to erasure
/// ([`crate::person::erase`]), for admin tokens only. Answers what changed; a second call
/// answers `erased: false`.
async fn person_erase<S: Store>(
    State(state): Shared<S>,
    headers: HeaderMap,
    Path(email): Path<String>,
    body: Body,
) -> Result<Response, ApiError> {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct EraseRequest {
        reason: String,
    }
    let token = api_token(&state, &headers).await?;
    if token.role != Role::Admin {
        return Err(ApiError::Forbidden(token.role));
    }
    let email = crate::person::email(&email)
        .map_err(|message| ApiError::BadRequest { field: Some("email".into()), message })?;
    let body = json_body(&headers, body, MAX_SMALL_BODY_BYTES).await?;
    let req: EraseRequest = serde_json::from_slice(&body)
        .map_err(|e| ApiError::BadRequest { field: None, message: format!("request body: {e}") })?;
    let reason = crate::person::reason(&req.reason, &email)
        .map_err(|message| ApiError::BadRequest { field: Some("reason".into()), message })?;
    let erasure =
        timed(&state, crate::person::erase(&state.store, &email, &token.name, &reason)).await?;
    if erasure.tombstone.is_some() {
        tracing::info!("A person's data was erased.");
    }
    Ok(Json(crate::person::erasure_json(&erasure)).into_response())
}

/// `POST /api/v1/products/{id}/reveal` with `{"pseudonym": "person-…", "reason": "..."}`:
/// the identity behind one pseudonym seen with one product, in pseudonymous mode, for admin
/// tokens only ([`crate::identity::reveal`]); the reveal is audited without the identity.
async fn reveal<S: Store>(
    State(state): Shared<S>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Body,
) -> Result<Response, ApiError> {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct RevealRequest {
        pseudonym: String,
        reason: String,
    }
    let token = api_token(&state, &headers).await?;
    if token.role != Role::Admin {
        return Err(ApiError::Forbidden(token.role));
    }
    if state.catalog.product(&id).is_none() {
        return Err(ApiError::NotFound(format!("unknown product {id:?}")));
    }
    let body = json_body(&headers, body, MAX_SMALL_BODY_BYTES).await?;
    let req: RevealRequest = serde_json::from_slice(&body)
        .map_err(|e| ApiError::BadRequest { field: None, message: format!("request body: {e}") })?;
    let identity = crate::identity::reveal(
        &state.store,
        &id,
        &req.pseudonym,
        &token.name,
        &req.reason,
        crate::store::now(),
    )
    .await
    .map_err(|e| match e {
        crate::identity::RevealError::Refused(message) => {
            ApiError::BadRequest { field: None, message }
        }
        crate::identity::RevealError::Store(e) => ApiError::from(e),
    })?;
    tracing::info!(product = %id, "A pseudonym was revealed.");
    Ok(Json(serde_json::json!({
        "product": id,
        "pseudonym": req.pseudonym.trim(),
        "identity": identity,
    }))
    .into_response())
}

/// `GET /metrics`: counters only (no label names a device, person or product). With
/// `metrics_token_file` set, only a request bearing that token gets them.
async fn metrics<S: Store>(
    State(state): Shared<S>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    if let Some(expected) = &state.metrics_token {
        let presented = bearer(&headers).ok_or(ApiError::Unauthorized)?;
        if !credentials::secrets_equal(expected.expose(), presented) {
            return Err(ApiError::Unauthorized);
        }
    }
    let mut text = state.metrics.render();
    // Alert deliveries per channel and state, read from the outbox (shared by every
    // collector on the database, so each reports the same figures).
    match timed(&state, state.store.delivery_counts()).await {
        Ok(counts) => text.push_str(&crate::alerts::deliver::metrics(&counts)),
        Err(e) => tracing::warn!(error = %e, "Reading alert delivery counts for /metrics failed."),
    }
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response())
}

/// How long `/readyz` waits for the database: a probe must not hang on the pool's own
/// (30 s) timeout when the database is gone (issue 19).
const READY_DEADLINE: Duration = Duration::from_secs(2);

/// Ready when the store answers a ping within [`READY_DEADLINE`]; otherwise 503 with
/// `Retry-After`, as every call that finds the database out of reach.
async fn readyz<S: Store>(State(state): Shared<S>) -> Result<&'static str, ApiError> {
    let ping = timed(&state, state.store.ping());
    match tokio::time::timeout(READY_DEADLINE, ping).await {
        Ok(answer) => answer?,
        Err(_) => {
            state.metrics.store_call(READY_DEADLINE, false);
            return Err(ApiError::Store(StoreError::NoAnswer { waited: READY_DEADLINE }));
        }
    }
    Ok("ready\n")
}

async fn count_responses<S: Store>(
    State(state): Shared<S>,
    request: Request,
    next: Next,
) -> Response {
    let response = next.run(request).await;
    state.metrics.response(response.status().as_u16());
    response
}

/// The router with every route, the body cap and the response counter.
pub fn router<S: Store>(state: Arc<AppState<S>>) -> Router {
    use aiscout_wire::routes;
    Router::new()
        .route(routes::ENROLL, post(enroll::<S>))
        .route(routes::SIGHTINGS, post(sightings::<S>))
        .route(routes::HEARTBEAT, post(heartbeat::<S>))
        .route(routes::CATALOG, get(catalog::<S>))
        .route(routes::OVERLAY, get(overlay::artifact::<S>))
        .route(
            routes::OVERLAY_DOCUMENT,
            get(overlay::document::<S>).put(overlay::set_document::<S>),
        )
        .route(routes::BYPASS, get(overlay::bypass_report::<S>))
        .route(routes::INVENTORY, get(inventory::<S>))
        .route(routes::DEVICES, get(devices::<S>))
        .route("/api/v1/products/{id}", get(product::<S>))
        .route("/api/v1/products/{id}/review", put(set_review::<S>))
        .route(routes::AUDIT, get(audit::<S>))
        .route(routes::MAPPINGS, get(mappings::<S>).post(teach::<S>))
        .route(routes::MAPPING, axum::routing::delete(unteach::<S>))
        .route(routes::RECONCILE, get(reconcile::<S>))
        .route(routes::POLICY, get(policy_export::<S>))
        .route("/api/v1/people/{email}/export", get(person_export::<S>))
        .route("/api/v1/people/{email}/erase", post(person_erase::<S>))
        .route("/api/v1/products/{id}/reveal", post(reveal::<S>))
        .route(routes::IMPORT_EXPENSES, post(import_expenses::<S>))
        .route(routes::IMPORT_GATEWAY, post(import_gateway::<S>))
        .route("/metrics", get(metrics::<S>))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz::<S>))
        .merge(scim::router::<S>())
        .merge(crate::console::router(&state))
        .fallback(|uri: axum::http::Uri| async move {
            if uri.path().starts_with(crate::scim::PREFIX) {
                scim::not_found(uri.path())
            } else if uri.path().starts_with(aiscout_wire::API_PREFIX) {
                ApiError::NotFound("no such route".into()).into_response()
            } else {
                crate::console::Refusal::NotFound("There is no page at this address.".into())
                    .into_response()
            }
        })
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(middleware::from_fn_with_state(Arc::clone(&state), count_responses::<S>))
        .with_state(state)
}

/// The address a listener is bound to, for the `listening on` line.
pub fn bound(listener: &TcpListener) -> std::io::Result<SocketAddr> {
    listener.local_addr()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A database out of reach is the server's passing trouble, not the request's fault:
    /// 503 with `Retry-After`, so agents back off and load balancers take the collector out;
    /// any other store failure stays a 500 without one.
    #[test]
    fn an_unreachable_database_answers_503_with_retry_after_and_other_failures_500() {
        let unavailable = ApiError::Store(StoreError::NoAnswer { waited: READY_DEADLINE });
        let r = unavailable.into_response();
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(r.headers()[header::RETRY_AFTER], "5");
        let corrupt = ApiError::Store(StoreError::Corrupt { table: "t", reason: "bad".into() });
        let r = corrupt.into_response();
        assert_eq!(r.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert!(r.headers().get(header::RETRY_AFTER).is_none());
    }

    /// A parse task that died is the collector's failure, not a bad file: 500, and the body
    /// does not echo the panic's text.
    #[tokio::test]
    async fn an_import_whose_parsing_task_died_is_a_500_not_a_400() {
        let died = tokio::spawn(async { panic!("the parser's own bug") }).await.unwrap_err();
        let r = import_error(ingest::ImportError::Task(died)).into_response();
        assert_eq!(r.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let body = axum::body::to_bytes(r.into_body(), 4096).await.unwrap();
        let body = String::from_utf8_lossy(&body);
        assert!(body.contains("internal error") && !body.contains("own bug"), "{body}");
        // A file the parser refuses stays the client's 400.
        let refused = ingest::ImportError::Format { file: "x.csv".into(), reason: "empty".into() };
        assert_eq!(import_error(refused).into_response().status(), StatusCode::BAD_REQUEST);
    }

    /// An overlay the collector cannot sign is its own fault, not a missing overlay: 500, and
    /// the body names no key.
    #[tokio::test]
    async fn an_overlay_that_cannot_be_signed_is_a_500_not_a_404() {
        let r = ApiError::SignOverlay(aiscout_signatures::sign::SignError::BadKey).into_response();
        assert_eq!(r.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let body = axum::body::to_bytes(r.into_body(), 4096).await.unwrap();
        let body = String::from_utf8_lossy(&body);
        assert!(body.contains("internal error") && !body.contains("key"), "{body}");
    }
}
