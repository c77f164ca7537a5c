//! `/admin`: API tokens (a new one is shown once), revocation, enroll secret rotation,
//! re-enrollment approvals (issue 14), and the catalog this collector serves.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::HeaderMap;
use maud::{Markup, html};

use crate::api::AppState;
use crate::console::view::{self, count};
use crate::console::{
    Access, CSRF_FIELD, PageResult, Refusal, Signed, document, field, require, require_form,
    see_other,
};
use aiscout_wire::UnixSecs;

use crate::model::{AuditRecord, ReenrollPolicy, Role, Token};
use crate::store::{Store, StoreError};
use crate::{credentials, review};

type Shared<S> = State<Arc<AppState<S>>>;

/// A secret shown once, right after it was made.
enum Shown {
    Token(String, String),
    EnrollSecret(String),
}

async fn render<S: Store>(
    state: &AppState<S>,
    signed: &Signed,
    shown: Option<Shown>,
) -> PageResult {
    let tokens = state.store.tokens().await?;
    let rotated = state.store.enroll_secret().await?;
    let reenrollments = state.store.reenroll_requests().await?;
    let now = crate::store::now();
    let csrf = |s: &Signed| -> Markup {
        html! { input type="hidden" name=(CSRF_FIELD) value=(s.session.csrf); }
    };
    let body = html! {
        main id="main" {
            h1 { "Admin" }
            @match &shown {
                Some(Shown::Token(name, secret)) => {
                    section class="panel secret" role="status" {
                        h2 { "Token " (name) " created" }
                        p { "Copy it now: it is shown once and only its hash is stored." }
                        input id="new-secret" class="secret" type="text" readonly value=(secret) aria-label="The new token";
                    }
                }
                Some(Shown::EnrollSecret(secret)) => {
                    section class="panel secret" role="status" {
                        h2 { "New enroll secret" }
                        p { "Agents enroll only with this secret from now on. Copy it into your MDM payloads now: it is shown once." }
                        input id="new-secret" class="secret" type="text" readonly value=(secret) aria-label="The new enroll secret";
                    }
                }
                None => {}
            }
            section class="panel" {
                h2 { "API tokens" }
                table class="data" {
                    thead { tr { th scope="col" { "Name" } th scope="col" { "Role" } th scope="col" { "Created" } th scope="col" { "State" } th scope="col" { span class="visually-hidden" { "Action" } } } }
                    tbody { @for t in &tokens { tr {
                        td { (t.name) } td { (t.role.as_str()) } td { (view::when(t.created_at.get(), now)) }
                        td { @if let Some(r) = t.revoked_at { "revoked " (view::when(r.get(), now)) } @else { "active" } }
                        td { @if t.revoked_at.is_none() {
                            form method="post" action="/admin/tokens/revoke" class="inline" {
                                (csrf(signed))
                                input type="hidden" name="name" value=(t.name);
                                button type="submit" class="danger" aria-label={ "Revoke " (t.name) } { "Revoke" }
                            }
                        } }
                    } } }
                }
                p class="muted" { (count(tokens.iter().filter(|t| t.revoked_at.is_none()).count() as u64)) " active." }
                form method="post" action="/admin/tokens" class="row" {
                    (csrf(signed))
                    div { label for="token-name" { "Name (shown in the audit log)" } input id="token-name" name="name" required maxlength="100" pattern="[A-Za-z0-9._@-]+"; }
                    div {
                        label for="token-role" { "Role" }
                        select id="token-role" name="role" { @for r in Role::ALL { option value=(r.as_str()) { (r.as_str()) } } }
                    }
                    div class="actions" { button type="submit" { "Create token" } }
                }
            }
            section class="panel" {
                h2 { "Agent enrollment" }
                p { @match (rotated, &state.enroll_secret) {
                    (Some((_, at)), _) => { "The enroll secret was last rotated " (view::when(at, now)) "." }
                    (None, Some(_)) => { "Agents enroll with the secret from the configuration." }
                    (None, None) => { "No enroll secret is set: enrollment is closed until one is rotated here or configured." }
                } }
                form method="post" action="/admin/enroll-secret" {
                    (csrf(signed))
                    button type="submit" class="danger" { "Rotate the enroll secret" }
                    p class="help" { "Enrolled agents keep working; new installs need the new secret." }
                }
                h3 id="reenrollments" { "Re-enrollments" }
                p { "Policy: " code { (state.enrollment.policy.as_str()) } ". " @match state.enrollment.policy {
                    ReenrollPolicy::Replace => { "Anyone with the enroll secret can take over a known host id." }
                    ReenrollPolicy::RequireKey => { "A known host id enrolls again only with the node key it holds; approve a reinstalled machine that lost its key here." }
                    ReenrollPolicy::Hold => { "A known host id that enrolls again without its node key waits here for approval." }
                    ReenrollPolicy::Separate => { "A known host id that enrolls again without its node key becomes a device of its own, flagged as sharing the host id (cloned machines)." }
                } }
                @if reenrollments.is_empty() {
                    p class="muted" { "No re-enrollment is waiting." }
                } @else {
                    table class="data" {
                        thead { tr { th scope="col" { "Host id" } th scope="col" { "Host name" } th scope="col" { "Requested" } th scope="col" { "From" } th scope="col" { "State" } th scope="col" { span class="visually-hidden" { "Action" } } } }
                        tbody { @for r in &reenrollments { tr {
                            td { code { (r.host_id) } } td { (r.hostname) }
                            td { @if let Some(at) = r.requested_at { (view::when(at, now)) } @else { "not yet" } }
                            td { (r.source) }
                            td { @if let Some(by) = &r.approved_by { "approved by " (by) } @else { "waiting" } }
                            td { @if r.approved_by.is_none() {
                                form method="post" action="/admin/reenroll" class="inline" {
                                    (csrf(signed))
                                    input type="hidden" name="host_id" value=(r.host_id);
                                    button type="submit" aria-label={ "Approve the re-enrollment of " (r.host_id) } { "Approve" }
                                }
                            } }
                        } } }
                    }
                }
                form method="post" action="/admin/reenroll" class="row" {
                    (csrf(signed))
                    div { label for="reenroll-host" { "Approve the next enrollment of host id" } input id="reenroll-host" name="host_id" required maxlength="128"; }
                    div class="actions" { button type="submit" { "Approve" } }
                }
                p class="help" { "An approval is used by the next enrollment of that host id and is written to the audit log, as is every refused or held attempt." }
            }
            section class="panel" {
                h2 { "Catalog" }
                dl class="facts" {
                    dt { "Version served to agents" } dd { @if let Some((_, v)) = &state.artifact { (v) } @else { "none (the built-in catalog is used for matching; agents get no update)" } }
                    dt { "Products" } dd { (count(state.catalog.products().len() as u64)) }
                }
                p { a href="/admin/overlay" { "Organisation overlay" } ": your own AI tools and sanctioned gateways, signed for agents." }
            }
        }
    };
    Ok(document("Admin", Some(signed), "/admin", body))
}

/// `GET /admin`.
pub(crate) async fn page<S: Store>(State(state): Shared<S>, headers: HeaderMap) -> PageResult {
    let signed = require(&state, &headers, "/admin".into(), Access::Admin).await?;
    render(&state, &signed, None).await
}

fn random() -> Result<String, Refusal> {
    Ok(credentials::generate(credentials::API_TOKEN_PREFIX)?)
}

/// `POST /admin/tokens`: creates a token and shows it once.
pub(crate) async fn create_token<S: Store>(
    State(state): Shared<S>,
    headers: HeaderMap,
    body: Body,
) -> PageResult {
    let (signed, pairs) =
        require_form(&state, &headers, "/admin".into(), Access::Admin, body).await?;
    let name = field(&pairs, "name").unwrap_or("").trim().to_owned();
    if name.is_empty()
        || name.len() > 100
        || !name.chars().all(|c| c.is_ascii_alphanumeric() || "._@-".contains(c))
    {
        return Err(Refusal::BadRequest(
            "name: 1 to 100 letters, digits, dots, dashes, underscores or @".into(),
        ));
    }
    let role: Role = field(&pairs, "role")
        .unwrap_or("")
        .parse()
        .map_err(|e: String| Refusal::BadRequest(format!("role: {e}")))?;
    let secret = random()?;
    let token = Token {
        name: name.clone(),
        role,
        created_at: UnixSecs(crate::store::now()),
        revoked_at: None,
    };
    let audit = review::token_created(&token, &signed.session.actor);
    match state.store.create_token(token, credentials::hash(&secret), audit).await {
        Ok(()) => {}
        Err(StoreError::Exists { .. }) => {
            return Err(Refusal::BadRequest(format!(
                "name: a token named {name:?} exists already"
            )));
        }
        Err(e) => return Err(e.into()),
    }
    render(&state, &signed, Some(Shown::Token(name, secret))).await
}

/// `POST /admin/tokens/revoke`.
pub(crate) async fn revoke_token<S: Store>(
    State(state): Shared<S>,
    headers: HeaderMap,
    body: Body,
) -> PageResult {
    let (signed, pairs) =
        require_form(&state, &headers, "/admin".into(), Access::Admin, body).await?;
    let name = field(&pairs, "name").unwrap_or("").to_owned();
    let now = crate::store::now();
    if state
        .store
        .revoke_token(name.clone(), now, review::token_revoked(&signed.session.actor, now))
        .await?
        .is_none()
    {
        return Err(Refusal::NotFound(format!("No active token is named {name:?}.")));
    }
    Ok(see_other("/admin"))
}

/// `POST /admin/enroll-secret`: a new enroll secret, shown once.
pub(crate) async fn rotate_secret<S: Store>(
    State(state): Shared<S>,
    headers: HeaderMap,
    body: Body,
) -> PageResult {
    let (signed, _) = require_form(&state, &headers, "/admin".into(), Access::Admin, body).await?;
    let secret = credentials::generate("aises_")?;
    let now = crate::store::now();
    let audit = AuditRecord {
        at: UnixSecs(now),
        actor: signed.session.actor.clone(),
        action: "enroll_secret.rotate".into(),
        subject: "enroll_secret".into(),
        before: None,
        after: None,
    };
    state.store.rotate_enroll_secret(credentials::hash(&secret), now, audit).await?;
    render(&state, &signed, Some(Shown::EnrollSecret(secret))).await
}

/// `POST /admin/reenroll`: lets the next enrollment of a host id in without its node key (the
/// admin override of `require_key` and `hold`), audited.
pub(crate) async fn approve_reenroll<S: Store>(
    State(state): Shared<S>,
    headers: HeaderMap,
    body: Body,
) -> PageResult {
    let (signed, pairs) =
        require_form(&state, &headers, "/admin".into(), Access::Admin, body).await?;
    let host_id = field(&pairs, "host_id").unwrap_or("").trim().to_owned();
    if host_id.is_empty() || host_id.len() > aiscout_wire::validate::MAX_ID_LEN {
        return Err(Refusal::BadRequest(format!(
            "host id: 1 to {} characters",
            aiscout_wire::validate::MAX_ID_LEN
        )));
    }
    let now = crate::store::now();
    state.store.approve_reenroll(host_id, signed.session.actor.clone(), now).await?;
    Ok(see_other("/admin#reenrollments"))
}
