//! Sign-in with an API token, sign-out, and single sign-on with OpenID Connect.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use maud::html;

use crate::api::AppState;
use crate::console::{
    CSRF_FIELD, PageResult, Refusal, document, field, form, safe_next, session_audit, start_session,
};
use crate::store::Store;
use crate::{credentials, store};

type Shared<S> = State<Arc<AppState<S>>>;

fn login_form(next: &str, error: Option<&str>, sso: bool) -> maud::Markup {
    html! {
        main id="main" class="narrow login" {
            h1 { "Sign in to aiscout" }
            @if let Some(e) = error { p class="error" role="alert" { (e) } }
            form method="post" action="/login" {
                input type="hidden" name="next" value=(next);
                label for="token" { "API token" }
                input id="token" name="token" type="password" autocomplete="off" required autofocus
                    aria-describedby="token-help";
                p id="token-help" class="help" {
                    "A token from " code { "aiscout-collector token create --role ROLE --name NAME" }
                    ". It starts a session; the token itself is not kept in the browser."
                }
                button type="submit" { "Sign in" }
            }
            @if sso {
                p { a class="button secondary" href={ "/auth/oidc/start?next=" (crate::console::view::url_encode(next)) } { "Sign in with single sign-on" } }
            }
        }
    }
}

/// `GET /login`.
pub(crate) async fn login_page<S: Store>(
    State(state): Shared<S>,
    RawQuery(query): RawQuery,
) -> Response {
    let pairs = crate::api::query_pairs(query.as_deref());
    let next = safe_next(crate::console::view::param(&pairs, "next"));
    document("Sign in", None, "", login_form(&next, None, crate::console::sso(&state)))
        .into_response()
}

/// `POST /login`: a valid, unrevoked token starts a session.
pub(crate) async fn login<S: Store>(
    State(state): Shared<S>,
    headers: HeaderMap,
    body: Body,
) -> PageResult {
    if !crate::console::same_origin(&headers) {
        return Err(Refusal::Csrf);
    }
    let pairs = form(&crate::console::read_form(&headers, body).await?);
    let next = safe_next(field(&pairs, "next").unwrap_or("/"));
    let presented = field(&pairs, "token").unwrap_or("").trim();
    let token = if presented.is_empty() {
        None
    } else {
        state.store.token_by_hash(credentials::hash(presented)).await?
    };
    match token {
        Some(t) if t.revoked_at.is_none() && !t.role.is_person() => {
            tracing::info!(role = %t.role, "Console sign-in refused: a machine's token.");
            let why = format!(
                "This token's role ({}) is for {} only.",
                t.role,
                t.role.machine_api().unwrap_or("machines")
            );
            let page = login_form(&next, Some(&why), crate::console::sso(&state));
            Ok((StatusCode::FORBIDDEN, document("Sign in", None, "", page)).into_response())
        }
        Some(t) if t.revoked_at.is_none() => {
            start_session(&state, t.name.clone(), t.role, "token", Some(t.name), &next, false).await
        }
        _ => {
            tracing::info!("Console sign-in refused: unknown or revoked token.");
            let page = login_form(
                &next,
                Some("That token is not valid, or it has been revoked."),
                crate::console::sso(&state),
            );
            Ok((StatusCode::UNAUTHORIZED, document("Sign in", None, "", page)).into_response())
        }
    }
}

/// `POST /logout`: ends the session (audited) and clears the cookie.
pub(crate) async fn logout<S: Store>(
    State(state): Shared<S>,
    headers: HeaderMap,
    body: Body,
) -> PageResult {
    let signed = crate::console::signed_in(&state, &headers, "/".into()).await?;
    let pairs = form(&crate::console::read_form(&headers, body).await?);
    crate::console::check_csrf(&signed, &headers, field(&pairs, CSRF_FIELD))?;
    let audit = session_audit(&signed.session, "session.logout", store::now());
    state.store.end_session(signed.hash, Some(audit)).await?;
    Err(Refusal::Login { next: "/".into() })
}

/// The cookie value that carries a pending sign-in and where to return: `PENDING~NEXT`.
fn oidc_cookie(pending: &str, next: &str, max_age: u32) -> String {
    format!(
        "{}={pending}~{}; Path=/auth/oidc; HttpOnly; Secure; SameSite=Lax; Max-Age={max_age}",
        crate::console::OIDC_COOKIE,
        crate::console::view::url_encode(next)
    )
}

fn sso_failed(why: &str) -> Response {
    let page = html! {
        main id="main" class="narrow" {
            h1 { "Single sign-on failed" }
            p class="refusal" role="alert" { (why) }
            p { a href="/login" { "Back to sign-in" } }
        }
    };
    let mut r = (StatusCode::FORBIDDEN, document("Sign-in failed", None, "", page)).into_response();
    if let Ok(v) = axum::http::HeaderValue::from_str(&oidc_cookie("", "/", 0)) {
        r.headers_mut().append(axum::http::header::SET_COOKIE, v);
    }
    r
}

/// `GET /auth/oidc/start?next=`: to the identity provider, with state, nonce and PKCE kept in
/// a short-lived cookie (no server-side state, so any collector can finish the sign-in).
pub(crate) async fn oidc_start<S: Store>(
    State(state): Shared<S>,
    RawQuery(query): RawQuery,
) -> PageResult {
    let Some(sso) = &state.sso else {
        return Err(Refusal::NotFound(
            "Single sign-on is not configured on this collector.".into(),
        ));
    };
    let provider = match sso.provider().await {
        Ok(p) => p,
        Err(e) => {
            tracing::warn!(error = %e, "OpenID Provider discovery failed.");
            return Ok(sso_failed(
                "The identity provider could not be reached. Sign in with a token, or try again later.",
            ));
        }
    };
    let (url, pending) = match provider.begin() {
        Ok(v) => v,
        Err(e) => {
            tracing::warn!(error = %e, "Could not start an OpenID Connect sign-in.");
            return Ok(sso_failed("The sign-in could not be started."));
        }
    };
    let pairs = crate::api::query_pairs(query.as_deref());
    let next = safe_next(crate::console::view::param(&pairs, "next"));
    let mut r = crate::console::see_other(&url);
    let age = u32::try_from(crate::oidc::MAX_LOGIN_AGE_SECS).unwrap_or(600);
    if let Ok(v) = axum::http::HeaderValue::from_str(&oidc_cookie(&pending.to_cookie(), &next, age))
    {
        r.headers_mut().append(axum::http::header::SET_COOKIE, v);
    }
    Ok(r)
}

/// `GET /auth/oidc/callback?code=&state=`: checks the answer, maps the groups to a role and
/// starts a session.
pub(crate) async fn oidc_callback<S: Store>(
    State(state): Shared<S>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> PageResult {
    let Some(sso) = &state.sso else {
        return Err(Refusal::NotFound(
            "Single sign-on is not configured on this collector.".into(),
        ));
    };
    let pairs = crate::api::query_pairs(query.as_deref());
    let param = |k: &str| crate::console::view::param(&pairs, k).to_owned();
    if !param("error").is_empty() {
        tracing::info!(error = %param("error"), "The identity provider refused the sign-in.");
        return Ok(sso_failed(&format!("The identity provider said: {}", param("error"))));
    }
    let Some(cookie) = crate::console::cookie(&headers, crate::console::OIDC_COOKIE) else {
        return Ok(sso_failed("This sign-in was not started here, or took too long. Start again."));
    };
    let (pending_text, next) = cookie.split_once('~').unwrap_or((cookie, "/"));
    let next = safe_next(&crate::api::percent_decode(next));
    let Ok(pending) = crate::oidc::PendingLogin::from_cookie(pending_text) else {
        return Ok(sso_failed("This sign-in was not started here, or took too long. Start again."));
    };
    let provider = match sso.provider().await {
        Ok(p) => p,
        Err(e) => {
            tracing::warn!(error = %e, "OpenID Provider discovery failed.");
            return Ok(sso_failed("The identity provider could not be reached."));
        }
    };
    if !param("iss").is_empty() && param("iss") != provider.config().issuer {
        return Ok(sso_failed("The answer came from another identity provider."));
    }
    let identity = match provider.finish(&pending, &param("code"), &param("state")).await {
        Ok(i) => i,
        Err(e) => {
            tracing::warn!(error = %e, "OpenID Connect sign-in refused.");
            return Ok(sso_failed(
                "The identity provider's answer could not be verified. Start again.",
            ));
        }
    };
    let actor = identity.email.clone().unwrap_or_else(|| identity.subject.clone());
    let Some(role) = identity.role else {
        tracing::info!("OpenID Connect sign-in with no mapped role.");
        return Ok(sso_failed(&format!(
            "You ({actor}) signed in, but none of your groups is mapped to an aiscout role. Ask an administrator to add your group to [console.oidc.roles]."
        )));
    };
    let mut r = start_session(&state, actor, role, "oidc", None, &next, true).await?;
    if let Ok(v) = axum::http::HeaderValue::from_str(&oidc_cookie("", "/", 0)) {
        r.headers_mut().append(axum::http::header::SET_COOKIE, v);
    }
    Ok(r)
}
