//! Sign-in with an API token, sign-out, and single sign-on with OpenID Connect.

use std::sync::Arc;

use axum::body::Bytes;
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
    body: Bytes,
) -> PageResult {
    if !crate::console::same_origin(&headers) {
        return Err(Refusal::Csrf);
    }
    let pairs = form(&body);
    let next = safe_next(field(&pairs, "next").unwrap_or("/"));
    let presented = field(&pairs, "token").unwrap_or("").trim();
    let token = if presented.is_empty() {
        None
    } else {
        state.store.token_by_hash(credentials::hash(presented)).await?
    };
    match token {
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
    body: Bytes,
) -> PageResult {
    let signed = crate::console::signed_in(&state, &headers, "/".into()).await?;
    let pairs = form(&body);
    crate::console::check_csrf(&signed, &headers, field(&pairs, CSRF_FIELD))?;
    let audit = session_audit(&signed.session, "session.logout", store::now());
    state.store.end_session(signed.hash, Some(audit)).await?;
    Err(Refusal::Login { next: "/".into() })
}
