//! The console: the pages people work in, served on the API's HTTPS listener.
//!
//! Design (ARCHITECTURE.md, "Console"):
//! - **Server-rendered.** Every page is HTML built by [`maud`] (values escaped by the type
//!   system) from the same [`crate::join`] and [`crate::store::Store`] reads as the API and
//!   the reports; the console has no SQL and no query path of its own. Charts are SVG drawn
//!   on the server ([`chart`]). One small script (`assets/console.js`) adds keyboard
//!   shortcuts, select-all and an upload progress bar; every page works without it.
//! - **Sessions in the database.** Signing in (an API token at `/login`, or OpenID Connect)
//!   stores a session keyed by the SHA-256 of a random cookie value; the cookie is
//!   `HttpOnly; Secure; SameSite=Strict` and the token itself never reaches the browser. Any
//!   collector sharing the database accepts the session, so nothing here assumes one instance.
//! - **Checks on the server, on every route.** [`Access`] lists which roles may open each page
//!   and post each form; a refused action answers 403 with a page saying why. Every form that
//!   changes state carries the session's CSRF token, and a POST whose `Origin` is another
//!   site is refused.
//! - **Strict headers.** `Content-Security-Policy` allows only this origin's script and style
//!   (no inline script, `frame-ancestors 'none'`); assets are compiled into the binary, so the
//!   console works air-gapped.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Request};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use maud::{DOCTYPE, Markup, html};

use crate::api::AppState;
use crate::credentials::RandomError;
use crate::model::{AuditRecord, Role, Session};
use crate::store::{CredentialHash, Store, StoreError};
use crate::{credentials, store};

pub mod chart;
mod pages;
pub mod transparency;
mod view;

/// The session cookie's name.
pub const COOKIE: &str = "aiscout_session";
/// The cookie that carries an OpenID Connect login across the provider's redirect.
pub const OIDC_COOKIE: &str = "aiscout_oidc";
/// The hidden form field (and header, for script uploads) carrying the CSRF token.
pub const CSRF_FIELD: &str = "csrf";
/// The header the upload script sends the CSRF token in.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// Every console answer carries these.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// How sessions expire and how large an upload may be (`[console]` in the config).
#[derive(Clone, Debug)]
pub struct Settings {
    /// A session with no request for this many seconds ends.
    pub idle_secs: i64,
    /// A session ends this many seconds after sign-in, whatever its use.
    pub absolute_secs: i64,
    /// Largest import upload, in bytes; a larger one is refused before it is read.
    pub max_upload_bytes: u64,
    /// Hours without a heartbeat after which a device shows as stale.
    pub stale_hours: i64,
    /// The organisation's words on `/transparency` (`[transparency]`).
    pub transparency: transparency::Transparency,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            idle_secs: 30 * 60,
            absolute_secs: 12 * 3600,
            max_upload_bytes: 64 << 20,
            stale_hours: 24,
            transparency: transparency::Transparency::default(),
        }
    }
}

/// Who may do what: one line per page or form, checked on the server for every request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Every signed-in role.
    All,
    /// Review changes (`/review`, the review form).
    Review,
    /// Reconciliation (read-only for security).
    Reconcile,
    /// Devices and agents.
    Devices,
    /// People and their spend.
    People,
    /// File uploads and the import history.
    Imports,
    /// The audit log.
    Audit,
    /// Alert channels and deliveries.
    Alerts,
    /// Tokens, the enroll secret, the catalog, test alerts.
    Admin,
}

impl Access {
    /// The roles allowed.
    pub fn roles(self) -> &'static [Role] {
        match self {
            Access::All => &[Role::Admin, Role::Security, Role::Procurement, Role::Viewer],
            Access::Review | Access::Devices | Access::Audit | Access::Alerts => {
                &[Role::Admin, Role::Security]
            }
            Access::Reconcile => &[Role::Admin, Role::Procurement, Role::Security],
            Access::People => &[Role::Admin, Role::Procurement, Role::Security],
            Access::Imports => &[Role::Admin, Role::Procurement],
            Access::Admin => &[Role::Admin],
        }
    }

    /// Whether `role` may.
    pub fn allows(self, role: Role) -> bool {
        self.roles().contains(&role)
    }

    /// What the refusal page says.
    fn why(self) -> &'static str {
        match self {
            Access::All => "Any signed-in role may open this page.",
            Access::Review => "Only the security and admin roles may change a review decision.",
            Access::Reconcile => "The reconciliation is for procurement, security and admins.",
            Access::Devices => "Devices and agents are for security and admins.",
            Access::People => "People and their spend are for procurement, security and admins.",
            Access::Imports => "Imports are for procurement and admins.",
            Access::Audit => "The audit log is for security and admins.",
            Access::Alerts => "Alert channels and deliveries are for security and admins.",
            Access::Admin => "Tokens and enrollment are for admins.",
        }
    }
}

/// A signed-in request: its session and the hash that keys it.
#[derive(Clone, Debug)]
pub struct Signed {
    /// The session.
    pub session: Session,
    pub(crate) hash: CredentialHash,
}

impl Signed {
    /// Whether the session's role may.
    pub fn may(&self, access: Access) -> bool {
        access.allows(self.session.role)
    }
}

/// Why a console request did not get its page.
#[derive(Debug)]
pub enum Refusal {
    /// Not signed in, or the session ended: to `/login`, then back to `next`.
    Login {
        /// Where to return after signing in.
        next: String,
    },
    /// Signed in, but the role may not.
    Forbidden {
        /// The session's role.
        role: Role,
        /// What the rule says.
        why: &'static str,
    },
    /// A form without the session's CSRF token, or from another origin.
    Csrf,
    /// Nothing here.
    NotFound(String),
    /// The request is malformed; the message says how.
    BadRequest(String),
    /// An upload over the limit, refused before it was read.
    TooLarge(u64),
    /// Every import permit is taken (`server.max_concurrent_imports`).
    Busy,
    /// The system random generator failed (a session, token or secret could not be made).
    Random(RandomError),
    /// The store failed.
    Store(StoreError),
    /// An upload could not be written to its file on disk.
    UploadFile {
        /// The file or folder.
        path: String,
        /// Why.
        error: std::io::Error,
    },
    /// The task that parsed an import panicked or was cancelled: a bug or a shutdown, not the
    /// file's fault.
    ImportTask(tokio::task::JoinError),
}

impl From<RandomError> for Refusal {
    fn from(e: RandomError) -> Self {
        Refusal::Random(e)
    }
}

impl From<StoreError> for Refusal {
    fn from(e: StoreError) -> Self {
        Refusal::Store(e)
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        // An upload's failure leads back to the imports page, to try again from there.
        let back = match &self {
            Refusal::TooLarge(_)
            | Refusal::Busy
            | Refusal::UploadFile { .. }
            | Refusal::ImportTask(_) => ("/imports", "Back to imports"),
            _ => ("/", "Back to the overview"),
        };
        let (status, title, text) = match self {
            Refusal::Login { next } => {
                let to = format!("/login?next={}", view::url_encode(&next));
                let mut r = see_other(&to);
                r.headers_mut().append(header::SET_COOKIE, clear_cookie(COOKIE));
                return r;
            }
            Refusal::Forbidden { role, why } => (
                StatusCode::FORBIDDEN,
                "Not allowed",
                format!("You are signed in with the {role} role. {why}"),
            ),
            Refusal::Csrf => (
                StatusCode::FORBIDDEN,
                "Form expired",
                "This form did not carry a valid security token (it may come from an old tab \
                 or another site). Nothing was changed. Reload the page and try again."
                    .to_owned(),
            ),
            Refusal::NotFound(what) => (StatusCode::NOT_FOUND, "Not found", what),
            Refusal::BadRequest(what) => (StatusCode::BAD_REQUEST, "Bad request", what),
            Refusal::TooLarge(limit) => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "File too large",
                format!(
                    "Uploads are limited to {} MiB (console.max_upload_mb). Nothing was read.",
                    limit >> 20
                ),
            ),
            Refusal::Busy => (
                StatusCode::SERVICE_UNAVAILABLE,
                "Busy",
                "Other imports are running. Nothing was read; try again in a minute.".to_owned(),
            ),
            Refusal::Store(e) => {
                tracing::error!(error = %e, "Store call failed for a console page.");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "Something failed",
                    "The database could not answer. The collector's log has the details."
                        .to_owned(),
                )
            }
            Refusal::Random(e) => {
                tracing::error!(error = %e, "A console page needed a random value.");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "Something failed",
                    "The collector could not make a random value. Its log has the details."
                        .to_owned(),
                )
            }
            Refusal::UploadFile { path, error } => {
                tracing::error!(path, error = %error, "A console upload could not be written.");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "Something failed",
                    "The upload could not be written to disk. The collector's log has the \
                     details."
                        .to_owned(),
                )
            }
            Refusal::ImportTask(e) => {
                tracing::error!(error = %e, "A console import's parsing task failed.");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "Something failed",
                    "The import stopped on the collector's side, not because of the file; rows \
                     read before it stopped may be stored. The collector's log has the details."
                        .to_owned(),
                )
            }
        };
        let body = html! {
            main id="main" class="narrow" {
                h1 { (title) }
                p class="refusal" { (text) }
                p { a href=(back.0) { (back.1) } }
            }
        };
        (status, document(title, None, "", body)).into_response()
    }
}

/// A console page result.
pub type PageResult = Result<Response, Refusal>;

/// `303 See Other` to a local path.
pub fn see_other(to: &str) -> Response {
    let mut r = StatusCode::SEE_OTHER.into_response();
    if let Ok(v) = HeaderValue::from_str(to) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r
}

fn clear_cookie(name: &str) -> HeaderValue {
    HeaderValue::from_str(&format!("{name}=; Path=/; HttpOnly; Secure; SameSite=Strict; Max-Age=0"))
        .unwrap_or_else(|_| HeaderValue::from_static("x=; Max-Age=0"))
}

/// The value of cookie `name` in the request.
pub fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// The signed-in session of a request, if its cookie names a live one. Ends sessions that
/// have been idle too long and records the request (at most once a minute per session).
///
/// # Errors
/// [`Refusal::Login`] without a live session; [`Refusal::Store`] when the store fails.
pub async fn signed_in<S: Store>(
    state: &AppState<S>,
    headers: &HeaderMap,
    next: String,
) -> Result<Signed, Refusal> {
    let Some(value) = cookie(headers, COOKIE).filter(|v| !v.is_empty()) else {
        return Err(Refusal::Login { next });
    };
    let hash = credentials::hash(value);
    let now = store::now();
    let Some(session) = state.store.session(hash, now).await? else {
        return Err(Refusal::Login { next });
    };
    if now.saturating_sub(session.last_seen.get()) > state.console.idle_secs {
        let audit = session_audit(&session, "session.expire", now);
        state.store.end_session(hash, Some(audit)).await?;
        return Err(Refusal::Login { next });
    }
    if now.saturating_sub(session.last_seen.get()) >= 60 {
        state.store.touch_session(hash, now).await?;
    }
    Ok(Signed { session, hash })
}

/// [`signed_in`], then the access rule.
///
/// # Errors
/// As [`signed_in`], and [`Refusal::Forbidden`] when the role may not.
pub async fn require<S: Store>(
    state: &AppState<S>,
    headers: &HeaderMap,
    next: String,
    access: Access,
) -> Result<Signed, Refusal> {
    let signed = signed_in(state, headers, next).await?;
    if !signed.may(access) {
        return Err(Refusal::Forbidden { role: signed.session.role, why: access.why() });
    }
    Ok(signed)
}

/// [`require`] for a form post: the session, the role, then the form's fields with its CSRF
/// token checked.
///
/// # Errors
/// As [`require`], and [`Refusal::Csrf`].
pub async fn require_form<S: Store>(
    state: &AppState<S>,
    headers: &HeaderMap,
    next: String,
    access: Access,
    body: axum::body::Body,
) -> Result<(Signed, Vec<(String, String)>), Refusal> {
    let signed = require(state, headers, next, access).await?;
    let pairs = form(&read_form(headers, body).await?);
    check_csrf(&signed, headers, field(&pairs, CSRF_FIELD))?;
    Ok((signed, pairs))
}

/// Checks a state-changing request: same origin (when the browser says), and the session's
/// CSRF token in the form field or the header.
///
/// # Errors
/// [`Refusal::Csrf`].
pub fn check_csrf(
    signed: &Signed,
    headers: &HeaderMap,
    presented: Option<&str>,
) -> Result<(), Refusal> {
    if !same_origin(headers) {
        return Err(Refusal::Csrf);
    }
    let header = headers.get(CSRF_HEADER).and_then(|v| v.to_str().ok());
    let given = presented.or(header).unwrap_or("");
    if given.is_empty() || !credentials::secrets_equal(given, &signed.session.csrf) {
        return Err(Refusal::Csrf);
    }
    Ok(())
}

/// False when the request carries an `Origin` (or, failing that, a `Referer`) naming another
/// host than its `Host` header. (HTTP/2 requests carry no `Host`; the CSRF token and the
/// `SameSite=Strict` cookie still hold for them.)
pub fn same_origin(headers: &HeaderMap) -> bool {
    let origin = headers
        .get(header::ORIGIN)
        .or_else(|| headers.get(header::REFERER))
        .and_then(|v| v.to_str().ok());
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
    match (origin, host) {
        (Some("null"), _) => false,
        (Some(o), Some(h)) => {
            let rest = o.split_once("://").map_or(o, |(_, r)| r);
            let authority = rest.split('/').next().unwrap_or("");
            authority.eq_ignore_ascii_case(h)
        }
        _ => true,
    }
}

/// The audit record of a session event (`session.login`, `session.logout`, `session.expire`).
pub fn session_audit(session: &Session, action: &str, now: i64) -> AuditRecord {
    let state = serde_json::json!({
        "method": session.method,
        "role": session.role.as_str(),
        "token": session.token,
    })
    .to_string();
    AuditRecord {
        at: aiscout_wire::UnixSecs(now),
        actor: session.actor.clone(),
        action: action.to_owned(),
        subject: session.actor.clone(),
        before: None,
        after: Some(state),
    }
}

/// Starts a session and answers with its cookie and a redirect to `next`.
///
/// # Errors
/// The store fails, or the system random generator does.
pub async fn start_session<S: Store>(
    state: &AppState<S>,
    actor: String,
    role: Role,
    method: &str,
    token: Option<String>,
    next: &str,
    via_page: bool,
) -> Result<Response, Refusal> {
    let random = || credentials::generate("").map_err(Refusal::Random);
    let (value, csrf) = (random()?, random()?);
    let now = store::now();
    let session = Session {
        actor,
        role,
        method: method.to_owned(),
        token,
        csrf,
        created_at: aiscout_wire::UnixSecs(now),
        last_seen: aiscout_wire::UnixSecs(now),
        expires_at: aiscout_wire::UnixSecs(now).add_secs(state.console.absolute_secs),
    };
    let audit = session_audit(&session, "session.login", now);
    state.store.create_session(credentials::hash(&value), session, audit).await?;
    tracing::info!(method, "Console sign-in.");
    let cookie = format!(
        "{COOKIE}={value}; Path=/; HttpOnly; Secure; SameSite=Strict; Max-Age={}",
        state.console.absolute_secs
    );
    let to = safe_next(next);
    let mut response = if via_page {
        // After a cross-site redirect chain (the identity provider's), a browser withholds
        // SameSite=Strict cookies from further redirects; a page that moves on by itself is a
        // same-site navigation, so the new cookie goes along.
        let body = html! {
            main id="main" class="narrow" {
                h1 { "Signed in" }
                p { a id="continue" href=(to) { "Continue to the console" } }
            }
        };
        let mut r = document("Signed in", None, "", body).into_response();
        if let Ok(v) = HeaderValue::from_str(&format!("0;url={to}")) {
            r.headers_mut().insert(header::REFRESH, v);
        }
        r
    } else {
        see_other(&to)
    };
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        response.headers_mut().append(header::SET_COOKIE, v);
    }
    Ok(response)
}

/// A local path to return to after sign-in; anything else (another site, `//host`) is `/`.
pub fn safe_next(next: &str) -> String {
    let local = next.starts_with('/')
        && !next.starts_with("//")
        && !next.starts_with("/\\")
        && !next.chars().any(char::is_control)
        && !next.starts_with("/login");
    if local { next.to_owned() } else { "/".to_owned() }
}

/// A whole page: the shell (navigation for the session's role, the sign-out form) around
/// `body`.
pub fn document(title: &str, signed: Option<&Signed>, active: &str, body: Markup) -> Response {
    let nav: [(&str, &str, Access); 10] = [
        ("/", "Overview", Access::All),
        ("/inventory", "Inventory", Access::All),
        ("/review", "Review queue", Access::Review),
        ("/reconcile", "Reconcile", Access::Reconcile),
        ("/devices", "Devices", Access::Devices),
        ("/people", "People", Access::People),
        ("/imports", "Imports", Access::Imports),
        ("/audit", "Audit log", Access::Audit),
        ("/alerts", "Alerts", Access::Alerts),
        ("/admin", "Admin", Access::Admin),
    ];
    let markup = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · aiscout" }
                link rel="stylesheet" href="/assets/console.css";
                script src="/assets/console.js" defer {}
            }
            body {
                a class="skip" href="#main" { "Skip to content" }
                header class="top" {
                    a class="brand" href="/" { "aiscout" }
                    @if let Some(s) = signed {
                        nav aria-label="Console" {
                            ul {
                                @for (href, label, access) in nav.iter().filter(|n| !n.0.is_empty()) {
                                    @if s.may(*access) {
                                        li {
                                            @if *href == active {
                                                a href=(href) aria-current="page" { (label) }
                                            } @else {
                                                a href=(href) { (label) }
                                            }
                                        }
                                    }
                                }
                            }
                        }
                        div class="who" {
                            span { (s.session.actor) " · " (s.session.role.as_str()) }
                            form method="post" action="/logout" {
                                input type="hidden" name=(CSRF_FIELD) value=(s.session.csrf);
                                button type="submit" class="link" { "Sign out" }
                            }
                        }
                    }
                }
                (body)
            }
        }
    };
    let mut response = markup.into_string().into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    response
}

async fn headers_layer(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let h = response.headers_mut();
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

async fn asset(Path(name): Path<String>) -> Response {
    let (body, kind): (&'static str, &'static str) = match name.as_str() {
        "console.css" => (include_str!("assets/console.css"), "text/css; charset=utf-8"),
        "console.js" => (include_str!("assets/console.js"), "text/javascript; charset=utf-8"),
        _ => return Refusal::NotFound(format!("no asset {name:?}")).into_response(),
    };
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(kind)),
            (header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=3600")),
        ],
        body,
    )
        .into_response()
}

/// Largest console form body (a bulk review ticks at most every product), in bytes.
pub const MAX_FORM_BYTES: usize = 256 * 1024;

/// Reads a form body of at most [`MAX_FORM_BYTES`]; callers check the session first, so a
/// body is read only for someone signed in (issue 14), login aside.
///
/// # Errors
/// The body is too large or could not be read.
pub async fn read_form(headers: &HeaderMap, body: axum::body::Body) -> Result<Bytes, Refusal> {
    use crate::api::upload::{BodyError, read};
    read(headers, body, MAX_FORM_BYTES).await.map_err(|e| match e {
        BodyError::TooLarge(_) => {
            Refusal::BadRequest(format!("the form is larger than {MAX_FORM_BYTES} bytes"))
        }
        other => Refusal::BadRequest(other.to_string()),
    })
}

/// Form fields of an `application/x-www-form-urlencoded` body.
pub fn form(body: &Bytes) -> Vec<(String, String)> {
    let text = String::from_utf8_lossy(body);
    crate::api::query_pairs(Some(&text))
}

/// The first value of `key`.
pub fn field<'a>(pairs: &'a [(String, String)], key: &str) -> Option<&'a str> {
    pairs.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

/// The console's routes (merged into the API router by [`crate::api::router`]).
pub fn router<S: Store>(state: &AppState<S>) -> Router<Arc<AppState<S>>> {
    use pages::*;
    let upload_limit = usize::try_from(state.console.max_upload_bytes).unwrap_or(usize::MAX);
    Router::new()
        .route("/", get(overview::page::<S>))
        .route("/inventory", get(inventory::page::<S>))
        .route("/inventory.csv", get(inventory::csv::<S>))
        .route("/products/{id}", get(product::page::<S>))
        .route("/products/{id}/review", post(product::review::<S>))
        .route("/products/{id}/reveal", post(product::reveal::<S>))
        .route("/review", get(queue::page::<S>).post(queue::bulk::<S>))
        .route("/reconcile", get(reconcile::page::<S>))
        .route("/reconcile/lines", get(reconcile::lines::<S>))
        .route("/reconcile/mappings", post(reconcile::teach::<S>))
        .route("/reconcile/mappings/{id}/undo", post(reconcile::undo::<S>))
        .route("/reconcile/{section}", get(reconcile::csv::<S>))
        .route("/devices", get(devices::page::<S>))
        .route("/devices/{host}", get(devices::detail::<S>))
        .route("/people", get(people::page::<S>))
        .route("/people/{email}", get(people::detail::<S>))
        .route(
            "/imports",
            get(imports::page::<S>)
                .post(imports::upload::<S>)
                .layer(axum::extract::DefaultBodyLimit::max(upload_limit)),
        )
        .route("/audit", get(audit::page::<S>))
        .route("/alerts", get(alerts::page::<S>))
        .route("/alerts/test", post(alerts::test::<S>))
        .route("/admin", get(admin::page::<S>))
        .route("/admin/tokens", post(admin::create_token::<S>))
        .route("/admin/tokens/revoke", post(admin::revoke_token::<S>))
        .route("/admin/enroll-secret", post(admin::rotate_secret::<S>))
        .route("/admin/reenroll", post(admin::approve_reenroll::<S>))
        .route("/admin/overlay", get(overlay::page::<S>))
        .route("/admin/overlay/products", post(overlay::save_product::<S>))
        .route("/admin/overlay/gateways", post(overlay::save_gateway::<S>))
        .route("/admin/overlay/remove", post(overlay::remove::<S>))
        .route("/login", get(auth::login_page::<S>).post(auth::login::<S>))
        .route("/auth/oidc/start", get(auth::oidc_start::<S>))
        .route("/auth/oidc/callback", get(auth::oidc_callback::<S>))
        .route("/logout", post(auth::logout::<S>))
        .route("/transparency", get(transparency::page::<S>))
        .route("/transparency/catalog", get(transparency::catalog::<S>))
        .route("/assets/{name}", get(asset))
        .layer(middleware::from_fn(headers_layer))
}

/// Whether single sign-on is configured.
pub fn sso<S>(state: &AppState<S>) -> bool {
    state.sso.is_some()
}

/// Single sign-on: the configuration, and the provider discovered on first use (so a
/// collector starts, and token sign-in works, while the identity provider is down).
#[derive(Debug)]
pub struct Sso {
    config: crate::oidc::OidcConfig,
    provider: tokio::sync::OnceCell<crate::oidc::Provider>,
}

impl Sso {
    /// Single sign-on with this provider configuration.
    pub fn new(config: crate::oidc::OidcConfig) -> Self {
        Sso { config, provider: tokio::sync::OnceCell::new() }
    }

    /// The discovered provider (discovery runs once it succeeds).
    ///
    /// # Errors
    /// Discovery failed; the next call tries again.
    pub async fn provider(&self) -> Result<&crate::oidc::Provider, crate::oidc::OidcError> {
        self.provider.get_or_try_init(|| crate::oidc::Provider::discover(&self.config)).await
    }
}
