//! The SCIM 2.0 endpoints under `/scim/v2` (protocol in [`crate::scim`]), for tokens of the
//! `scim` role only. Every answer, errors included, is `application/scim+json`.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Map, Value};

use super::{AppState, bearer};
use crate::credentials;
use crate::model::{AuditRecord, Role, ScimPerson, ScimResource, ScimWrite};
use crate::scim::{self, Kind, ScimError};
use crate::store::{Store, StoreError};
use crate::telemetry::Metrics;

type Shared<S> = State<Arc<AppState<S>>>;

fn respond(status: StatusCode, body: &Value) -> Response {
    let mut response = (status, body.to_string()).into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(scim::MEDIA_TYPE));
    response
}

struct Failure(ScimError);

impl From<ScimError> for Failure {
    fn from(e: ScimError) -> Self {
        Failure(e)
    }
}

impl From<StoreError> for Failure {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Exists { name, .. } => Failure(ScimError {
                status: 409,
                scim_type: Some("uniqueness"),
                detail: format!("{name:?} is already taken"),
            }),
            e => {
                tracing::error!(error = %e, "Store call for SCIM failed.");
                Failure(ScimError::status(500, "internal store error"))
            }
        }
    }
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        let status =
            StatusCode::from_u16(self.0.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut response = respond(status, &self.0.body());
        if status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

/// The SCIM 404 for a path under `/scim/v2` that names no endpoint.
pub(super) fn not_found(path: &str) -> Response {
    Failure(ScimError::status(404, format!("no SCIM endpoint at {path}"))).into_response()
}

/// Checks the bearer token: unrevoked, of the `scim` role. Returns the token's name, the
/// actor of the audit records of its changes.
async fn authorise<S: Store>(state: &AppState<S>, headers: &HeaderMap) -> Result<String, Failure> {
    let unauthorised = || ScimError::status(401, "a bearer token of the scim role is required");
    let token = bearer(headers).ok_or_else(unauthorised)?;
    match state.store.token_by_hash(credentials::hash(token)).await? {
        Some(t) if t.revoked_at.is_none() && t.role == Role::Scim => Ok(t.name),
        Some(t) if t.revoked_at.is_none() => Err(ScimError::status(
            403,
            format!("the {} role cannot use SCIM; create a token with --role scim", t.role),
        )
        .into()),
        _ => Err(unauthorised().into()),
    }
}

/// `https://<Host>/scim/v2`, for `meta.location`.
fn base(headers: &HeaderMap) -> String {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| h.chars().all(|c| c.is_ascii_alphanumeric() || ".-:[]".contains(c)))
        .unwrap_or("localhost");
    format!("https://{host}{}", scim::PREFIX)
}

fn etag(version: i64) -> String {
    format!("W/\"{version}\"")
}

/// The stored resource as served: with `id` and `meta`.
fn render(kind: Kind, r: &ScimResource, base: &str) -> Result<Value, Failure> {
    let mut body: Map<String, Value> = serde_json::from_str(&r.resource)
        .map_err(|error| StoreError::CorruptJson { table: "scim_resources", error })?;
    body.insert("id".into(), Value::from(r.id.clone()));
    body.insert(
        "meta".into(),
        serde_json::json!({
            "resourceType": kind.as_str(),
            "created": r.created_at.rfc3339(),
            "lastModified": r.modified_at.rfc3339(),
            "location": format!("{base}{}/{}", kind.endpoint(), r.id),
            "version": etag(r.version),
        }),
    );
    Ok(Value::Object(body))
}

fn one(kind: Kind, r: &ScimResource, base: &str, status: StatusCode) -> Result<Response, Failure> {
    let mut response = respond(status, &render(kind, r, base)?);
    if let Ok(v) = HeaderValue::from_str(&etag(r.version)) {
        response.headers_mut().insert(header::ETAG, v);
    }
    if status == StatusCode::CREATED {
        let location = format!("{base}{}/{}", kind.endpoint(), r.id);
        if let Ok(v) = HeaderValue::from_str(&location) {
            response.headers_mut().insert(header::LOCATION, v);
        }
    }
    Ok(response)
}

fn parse_body(body: &Bytes) -> Result<Value, ScimError> {
    serde_json::from_slice(body)
        .map_err(|e| ScimError::bad("invalidSyntax", format!("the body is not JSON: {e}")))
}

fn new_id() -> Result<String, Failure> {
    let hex = credentials::generate("").map_err(|_| ScimError::status(500, "no randomness"))?;
    let part = |a: usize, b: usize| hex.get(a..b).unwrap_or_default().to_owned();
    Ok(format!("{}-{}-{}-{}-{}", part(0, 8), part(8, 12), part(12, 16), part(16, 20), part(20, 32)))
}

/// The directory entry of a user resource, with the manager's email looked up.
async fn person_of<S: Store>(
    state: &AppState<S>,
    kind: Kind,
    resource: &Map<String, Value>,
) -> Result<Option<(crate::model::Person, bool)>, Failure> {
    if kind != Kind::User {
        return Ok(None);
    }
    let mut manager_email = None;
    if let Some(id) = scim::manager_id(resource)
        && let Some(m) = state.store.scim_get(Kind::User.as_str(), id).await?
    {
        let m: Map<String, Value> = serde_json::from_str(&m.resource).unwrap_or_default();
        manager_email = scim::person(&m, |_| None).map(|(p, _)| p.email);
    }
    Ok(scim::person(resource, |_| manager_email))
}

/// The audit record of a directory change: who (the token), what (`scim.create`, `.update`
/// or `.delete`), which resource (`User/ID`, `Group/ID`), its versions, and for a user
/// whether it is active. Never a name or an email: the audit log outlives a person's erasure.
fn change_audit(
    actor: &str,
    action: &str,
    kind: Kind,
    id: &str,
    before: Option<i64>,
    after: Option<Value>,
) -> AuditRecord {
    AuditRecord {
        at: aiscout_wire::UnixSecs::now(),
        actor: actor.to_owned(),
        action: action.to_owned(),
        subject: format!("{}/{id}", kind.as_str()),
        before: before.map(|v| serde_json::json!({ "version": v }).to_string()),
        after: after.map(|v| v.to_string()),
    }
}

async fn write<S: Store>(
    state: &AppState<S>,
    actor: &str,
    kind: Kind,
    previous: Option<&ScimResource>,
    resource: Value,
    base: &str,
) -> Result<Response, Failure> {
    let (body, name) = scim::normalise(kind, resource)?;
    let now = aiscout_wire::UnixSecs::now();
    let id = match previous {
        Some(p) => p.id.clone(),
        None => new_id()?,
    };
    let previous_email = match previous {
        Some(p) => {
            let old: Map<String, Value> = serde_json::from_str(&p.resource).unwrap_or_default();
            scim::person(&old, |_| None).map(|(p, _)| p.email)
        }
        None => None,
    };
    let person = person_of(state, kind, &body).await?.map(|(person, active)| ScimPerson {
        person,
        active,
        previous_email,
    });
    let stored = ScimResource {
        kind: kind.as_str(),
        id,
        resource: Value::Object(body).to_string(),
        version: previous.map_or(1, |p| p.version + 1),
        created_at: previous.map_or(now, |p| p.created_at),
        modified_at: now,
    };
    let mut after = serde_json::json!({ "version": stored.version });
    if let Some(p) = &person {
        after["active"] = Value::Bool(p.active);
    }
    let (action, counter) = match previous {
        Some(_) => ("scim.update", &state.metrics.scim_changes[1]),
        None => ("scim.create", &state.metrics.scim_changes[0]),
    };
    let audit =
        change_audit(actor, action, kind, &stored.id, previous.map(|p| p.version), Some(after));
    let written =
        state.store.scim_write(ScimWrite { resource: stored.clone(), name, person, audit }).await?;
    if !written {
        return Err(
            ScimError::status(409, "the resource changed or was deleted meanwhile; retry").into()
        );
    }
    Metrics::inc(counter, 1);
    let status = if previous.is_some() { StatusCode::OK } else { StatusCode::CREATED };
    one(kind, &stored, base, status)
}

async fn existing<S: Store>(
    state: &AppState<S>,
    kind: Kind,
    id: String,
    headers: &HeaderMap,
) -> Result<ScimResource, Failure> {
    let r =
        state.store.scim_get(kind.as_str(), id.clone()).await?.ok_or_else(|| {
            ScimError::status(404, format!("no {} with id {id:?}", kind.as_str()))
        })?;
    if let Some(expected) = headers.get(header::IF_MATCH).and_then(|v| v.to_str().ok()) {
        let tag = etag(r.version);
        if expected.trim() != "*" && !expected.split(',').any(|e| e.trim() == tag) {
            return Err(ScimError::status(412, format!("If-Match does not match {tag}")).into());
        }
    }
    Ok(r)
}

#[derive(Default, serde::Deserialize)]
struct ListQuery {
    filter: Option<String>,
    #[serde(rename = "startIndex")]
    start_index: Option<String>,
    count: Option<String>,
    attributes: Option<String>,
    #[serde(rename = "excludedAttributes")]
    excluded_attributes: Option<String>,
}

fn number(name: &str, text: Option<&str>, default: i64) -> Result<i64, ScimError> {
    match text {
        None => Ok(default),
        Some(t) => t.trim().parse::<i64>().map_err(|_| {
            ScimError::bad("invalidValue", format!("{name} must be an integer, not {t:?}"))
        }),
    }
}

/// The body of `POST .search` (RFC 7644 section 3.4.3) as the query it stands for.
fn search_query(body: &Value) -> Result<ListQuery, ScimError> {
    let Some(o) = body.as_object() else {
        return Err(ScimError::bad("invalidSyntax", "the search body must be a JSON object"));
    };
    let text = |k: &str| -> Result<Option<String>, ScimError> {
        match o.get(k) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(Value::Number(n)) => Ok(Some(n.to_string())),
            Some(Value::Array(a)) => {
                Ok(Some(a.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(",")))
            }
            Some(other) => Err(ScimError::bad("invalidValue", format!("{k} cannot be {other}"))),
        }
    };
    Ok(ListQuery {
        filter: text("filter")?,
        start_index: text("startIndex")?,
        count: text("count")?,
        attributes: text("attributes")?,
        excluded_attributes: text("excludedAttributes")?,
    })
}

/// Lists resources of `kinds` (one, or both for a search at the root), users first.
async fn list<S: Store>(
    state: &AppState<S>,
    kinds: &[Kind],
    headers: &HeaderMap,
    query: &ListQuery,
) -> Result<Response, Failure> {
    authorise(state, headers).await?;
    // Per kind: None lists all, Some(None) none (the filter names another kind's attribute).
    let mut names = Vec::new();
    for &kind in kinds {
        names.push(match query.filter.as_deref() {
            None => Some(None),
            Some(f) => match scim::filter(kind, f) {
                Ok(name) => Some(Some(name)),
                Err(e) if kinds.len() == 1 => return Err(e.into()),
                Err(_) => None,
            },
        });
    }
    if names.iter().all(Option::is_none) {
        let f = query.filter.as_deref().unwrap_or_default();
        return Err(ScimError::bad(
            "invalidFilter",
            format!("filter {f:?} is not supported; use userName eq or displayName eq"),
        )
        .into());
    }
    // RFC 7644 section 3.4.2.4: startIndex below 1 is 1, a negative count is 0.
    let start = number("startIndex", query.start_index.as_deref(), 1)?.max(1);
    let count =
        number("count", query.count.as_deref(), scim::DEFAULT_PAGE)?.clamp(0, scim::MAX_PAGE);
    let base = base(headers);
    let (mut total, mut skip, mut room) = (0, start.saturating_sub(1), count);
    let mut resources = Vec::new();
    for (&kind, name) in kinds.iter().zip(names) {
        let Some(name) = name else { continue };
        let (n, page) = state.store.scim_list(kind.as_str(), name, skip, room).await?;
        total += n;
        skip = skip.saturating_sub(n).max(0);
        room -= i64::try_from(page.len()).unwrap_or(room);
        for r in &page {
            let mut v = render(kind, r, &base)?;
            if let Some(o) = v.as_object_mut() {
                scim::project(o, query.attributes.as_deref(), query.excluded_attributes.as_deref());
            }
            resources.push(v);
        }
    }
    Ok(respond(StatusCode::OK, &scim::list(total, start, resources)))
}

async fn search<S: Store>(
    state: Arc<AppState<S>>,
    kinds: &[Kind],
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Failure> {
    authorise(&state, &headers).await?;
    let query = search_query(&parse_body(&body)?)?;
    list(&state, kinds, &headers, &query).await
}

async fn create<S: Store>(
    state: Arc<AppState<S>>,
    kind: Kind,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Failure> {
    let actor = authorise(&state, &headers).await?;
    let resource = parse_body(&body)?;
    write(&state, &actor, kind, None, resource, &base(&headers)).await
}

async fn read<S: Store>(
    state: Arc<AppState<S>>,
    kind: Kind,
    id: String,
    headers: HeaderMap,
    query: ListQuery,
) -> Result<Response, Failure> {
    authorise(&state, &headers).await?;
    let r =
        state.store.scim_get(kind.as_str(), id.clone()).await?.ok_or_else(|| {
            ScimError::status(404, format!("no {} with id {id:?}", kind.as_str()))
        })?;
    let mut v = render(kind, &r, &base(&headers))?;
    if let Some(o) = v.as_object_mut() {
        scim::project(o, query.attributes.as_deref(), query.excluded_attributes.as_deref());
    }
    let mut response = respond(StatusCode::OK, &v);
    if let Ok(tag) = HeaderValue::from_str(&etag(r.version)) {
        response.headers_mut().insert(header::ETAG, tag);
    }
    Ok(response)
}

async fn replace<S: Store>(
    state: Arc<AppState<S>>,
    kind: Kind,
    id: String,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Failure> {
    let actor = authorise(&state, &headers).await?;
    let resource = parse_body(&body)?;
    let old = existing(&state, kind, id, &headers).await?;
    write(&state, &actor, kind, Some(&old), resource, &base(&headers)).await
}

async fn modify<S: Store>(
    state: Arc<AppState<S>>,
    kind: Kind,
    id: String,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Failure> {
    let actor = authorise(&state, &headers).await?;
    let ops = parse_body(&body)?;
    let old = existing(&state, kind, id, &headers).await?;
    let mut resource: Map<String, Value> = serde_json::from_str(&old.resource)
        .map_err(|error| StoreError::CorruptJson { table: "scim_resources", error })?;
    scim::patch(&mut resource, &ops)?;
    write(&state, &actor, kind, Some(&old), Value::Object(resource), &base(&headers)).await
}

async fn remove<S: Store>(
    state: Arc<AppState<S>>,
    kind: Kind,
    id: String,
    headers: HeaderMap,
) -> Result<Response, Failure> {
    let actor = authorise(&state, &headers).await?;
    let old = existing(&state, kind, id.clone(), &headers).await?;
    let stored: Map<String, Value> = serde_json::from_str(&old.resource).unwrap_or_default();
    let email = if kind == Kind::User {
        scim::person(&stored, |_| None).map(|(p, _)| p.email)
    } else {
        None
    };
    let audit = change_audit(&actor, "scim.delete", kind, &id, Some(old.version), None);
    if !state.store.scim_delete(kind.as_str(), id.clone(), email, audit).await? {
        return Err(ScimError::status(404, format!("no {} with id {id:?}", kind.as_str())).into());
    }
    Metrics::inc(&state.metrics.scim_changes[2], 1);
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn discovery<S: Store>(
    state: Arc<AppState<S>>,
    headers: HeaderMap,
    what: &'static str,
    id: Option<String>,
) -> Result<Response, Failure> {
    authorise(&state, &headers).await?;
    let base = base(&headers);
    let all = match what {
        "Schemas" => scim::schemas(&base),
        "ResourceTypes" => scim::resource_types(&base),
        _ => return Ok(respond(StatusCode::OK, &scim::service_provider_config(&base))),
    };
    match id {
        None => {
            let total = i64::try_from(all.len()).unwrap_or(i64::MAX);
            Ok(respond(StatusCode::OK, &scim::list(total, 1, all)))
        }
        Some(id) => match all.into_iter().find(|v| v["id"].as_str() == Some(id.as_str())) {
            Some(v) => Ok(respond(StatusCode::OK, &v)),
            None => Err(ScimError::status(404, format!("no {what} with id {id:?}")).into()),
        },
    }
}

/// The routes under `/scim/v2`.
pub(super) fn router<S: Store>() -> Router<Arc<AppState<S>>> {
    let mut router = Router::new();
    for what in ["ServiceProviderConfig", "Schemas", "ResourceTypes"] {
        router = router
            .route(
                &format!("{}/{what}", scim::PREFIX),
                get(move |State(s): Shared<S>, h: HeaderMap| discovery(s, h, what, None)),
            )
            .route(
                &format!("{}/{what}/{{id}}", scim::PREFIX),
                get(move |State(s): Shared<S>, h: HeaderMap, Path(id): Path<String>| {
                    discovery(s, h, what, Some(id))
                }),
            );
    }
    router = router.route(
        &format!("{}/.search", scim::PREFIX),
        axum::routing::post(|State(s): Shared<S>, h: HeaderMap, b: Bytes| {
            search(s, &[Kind::User, Kind::Group], h, b)
        }),
    );
    for kind in [Kind::User, Kind::Group] {
        router = router
            .route(
                &format!("{}{}/.search", scim::PREFIX, kind.endpoint()),
                axum::routing::post(move |State(s): Shared<S>, h: HeaderMap, b: Bytes| async move {
                    search(s, &[kind], h, b).await
                }),
            )
            .route(
                &format!("{}{}", scim::PREFIX, kind.endpoint()),
                get(move |State(s): Shared<S>, h: HeaderMap, Query(q): Query<ListQuery>| async move {
                    list(&s, &[kind], &h, &q).await
                })
                .post(move |State(s): Shared<S>, h: HeaderMap, b: Bytes| create(s, kind, h, b)),
            )
            .route(
                &format!("{}{}/{{id}}", scim::PREFIX, kind.endpoint()),
                get(
                    move |State(s): Shared<S>,
                          h: HeaderMap,
                          Path(id): Path<String>,
                          Query(q): Query<ListQuery>| read(s, kind, id, h, q),
                )
                .put(move |State(s): Shared<S>, h: HeaderMap, Path(id): Path<String>, b: Bytes| {
                    replace(s, kind, id, h, b)
                })
                .patch(
                    move |State(s): Shared<S>, h: HeaderMap, Path(id): Path<String>, b: Bytes| {
                        modify(s, kind, id, h, b)
                    },
                )
                .delete(move |State(s): Shared<S>, h: HeaderMap, Path(id): Path<String>| {
                    remove(s, kind, id, h)
                }),
            );
    }
    router
}
