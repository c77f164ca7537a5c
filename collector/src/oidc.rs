//! OpenID Connect sign-in for the web console: the relying party's side of the authorization
//! code flow with PKCE (OpenID Connect Core 1.0 section 3.1, RFC 7636), against the one
//! provider configured in `[console.oidc]`.
//!
//! Lifecycle:
//! 1. [`Provider::discover`], once at start: the discovery document and the JWKS, fetched
//!    over HTTPS, the issuer checked against the configuration.
//! 2. [`Provider::begin`], per sign-in: the authorization URL to redirect the browser to, and
//!    a [`PendingLogin`] (random `state`, `nonce` and PKCE S256 verifier) that the console
//!    keeps in a short-lived cookie ([`PendingLogin::to_cookie`]) across the redirect.
//! 3. [`Provider::finish`], at the callback: the `state` compared in constant time, the code
//!    redeemed at the token endpoint with the verifier, the ID token verified (RS256 or ES256
//!    against the JWKS, issuer, audience, times, nonce), and the [`Identity`] returned with
//!    the role mapped from the person's groups (from the ID token, or else from userinfo).
//!
//! The sign-in cookie: [`PendingLogin`] holds no secret of the collector, only values the
//! browser already carries through the flow; what makes it safe is that it belongs to that
//! browser. The console sets it `Secure; HttpOnly; SameSite=Lax` (Lax, because the callback
//! is a cross-site top-level navigation from the provider), on the callback path, with a
//! `Max-Age` of about [`MAX_LOGIN_AGE_SECS`], and clears it at the callback. [`Provider::finish`]
//! refuses a pending login older than that.
//!
//! Invariants:
//! - Nothing here logs or puts in an error a token, a code, the client secret, the PKCE
//!   verifier, the state or the nonce.
//! - Every request to the provider has a body cap ([`MAX_RESPONSE_BYTES`]) and a timeout
//!   ([`REQUEST_TIMEOUT`]); redirects are not followed.
//! - Only RS256 and ES256 ID tokens are accepted; `none`, HMAC and anything with `crit` are
//!   refused. Keys come only from the provider's `jwks_uri`, fetched again at most once per
//!   sign-in when a token names an unknown key id (key rotation).
//!
//! Key decision: no `openidconnect` crate. It brings `oauth2`, an HTTP client stack and a
//! second cryptography stack (RSA and elliptic-curve crates beside ring) for a flow that
//! needs two signature algorithms, both in ring, which the collector already uses for TLS
//! and credentials. With ring, serde_json and `base64` (already in the tree), the whole
//! protocol is this file, requests go through our own client ([`crate::client`]) with our
//! rustls roots, caps and timeouts, and nothing else is linked.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aiscout_wire::Secret;
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use hyper::Method;
use hyper::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HeaderName, HeaderValue};
use ring::rand::{SecureRandom, SystemRandom};
use ring::signature::{
    ECDSA_P256_SHA256_FIXED, RSA_PKCS1_2048_8192_SHA256, RsaPublicKeyComponents, UnparsedPublicKey,
};
use rustls::pki_types::CertificateDer;
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::client::{self, ClientError};
use crate::model::Role;

/// Largest answer read from the provider (discovery, JWKS, token, userinfo), in bytes.
pub const MAX_RESPONSE_BYTES: usize = 256 * 1024;
/// Longest wait for one request to the provider.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Clock skew tolerated on the ID token's `exp`, `iat` and `nbf`, in seconds.
pub const LEEWAY_SECS: i64 = 60;
/// Longest time from [`Provider::begin`] to [`Provider::finish`], in seconds.
pub const MAX_LOGIN_AGE_SECS: i64 = 600;
/// Longest sign-in cookie value accepted by [`PendingLogin::from_cookie`], in bytes.
const MAX_COOKIE_BYTES: usize = 512;
/// Random bytes in each of `state`, `nonce` and the PKCE verifier (43 base64url characters).
const RANDOM_BYTES: usize = 32;
/// The sign-in cookie's format version, its first field.
const COOKIE_VERSION: &str = "v1";

/// The validated `[console.oidc]` table.
#[derive(Clone, Debug)]
pub struct OidcConfig {
    /// The issuer, exactly as the provider names itself (discovery is at
    /// `{issuer}/.well-known/openid-configuration`).
    pub issuer: String,
    /// The client id registered at the provider.
    pub client_id: String,
    /// The client secret.
    pub client_secret: Secret,
    /// The console's callback URL, as registered at the provider.
    pub redirect_url: String,
    /// Scopes requested; includes `openid`.
    pub scopes: Vec<String>,
    /// The claim that lists the person's groups (a string or an array of strings).
    pub groups_claim: String,
    /// Group name to role.
    pub roles: BTreeMap<String, Role>,
    /// Trust roots for the provider in addition to the system's.
    pub extra_roots: Vec<CertificateDer<'static>>,
}

impl OidcConfig {
    /// The role for someone in `groups`: of the roles their groups map to, the first in the
    /// order admin, security, procurement, viewer; `None` when no group maps to a role.
    pub fn role_for(&self, groups: &[String]) -> Option<Role> {
        let mapped: Vec<Role> = groups.iter().filter_map(|g| self.roles.get(g).copied()).collect();
        Role::ALL.into_iter().find(|r| mapped.contains(r))
    }
}

/// Who signed in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    /// The provider's subject identifier (`sub`), stable per person at that provider.
    pub subject: String,
    /// The `email` claim, as the provider states it.
    pub email: Option<String>,
    /// The `name` claim.
    pub name: Option<String>,
    /// The groups claim's values (from the ID token, else from userinfo).
    pub groups: Vec<String>,
    /// The role mapped from the groups; `None` when no group maps to a role.
    pub role: Option<Role>,
}

/// Why discovery or a sign-in failed. Messages name what went wrong, never a token, code or
/// secret.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OidcError {
    /// The provider offers neither `client_secret_basic` nor `client_secret_post`.
    #[error(
        "the provider's token endpoint accepts neither client_secret_basic nor client_secret_post (it offers {offered:?})"
    )]
    ClientAuthUnsupported {
        /// What the provider offers.
        offered: Vec<String>,
    },
    /// The authorization code was refused at the token endpoint.
    #[error(
        "the token endpoint refused the sign-in ({status}): {error}{}",
        in_parentheses(description)
    )]
    CodeRefused {
        /// HTTP status.
        status: u16,
        /// The OAuth error code (`invalid_grant`, ...).
        error: String,
        /// The provider's `error_description`, shortened.
        description: Option<String>,
    },
    /// The discovery document is unusable.
    #[error("the provider's discovery document: {0}")]
    Discovery(String),
    /// The ID token expired.
    #[error("the ID token has expired")]
    Expired,
    /// The discovery document names another issuer.
    #[error("the discovery document names issuer {found:?}, not the configured {expected:?}")]
    IssuerMismatch {
        /// The configured issuer.
        expected: String,
        /// The one in the document.
        found: String,
    },
    /// An answer is not the JSON expected.
    #[error("the provider's {what} answer is not usable: {error}")]
    Json {
        /// Which answer.
        what: &'static str,
        /// Why.
        error: serde_json::Error,
    },
    /// The pending login is older than [`MAX_LOGIN_AGE_SECS`].
    #[error("the sign-in took too long or its cookie is stale; start again")]
    LoginExpired,
    /// The sign-in cookie could not be read.
    #[error("the sign-in cookie is malformed")]
    MalformedCookie,
    /// The ID token is not a well-formed JWS with the claims required.
    #[error("the ID token is malformed: {0}")]
    MalformedIdToken(&'static str),
    /// The JWKS holds no RS256 or ES256 signing key.
    #[error("the provider's JWKS holds no usable RS256 or ES256 signing key")]
    NoSigningKey,
    /// The ID token's `nonce` is not this sign-in's.
    #[error("the ID token's nonce does not match this sign-in")]
    NonceMismatch,
    /// The ID token is not valid yet (`iat` or `nbf` in the future).
    #[error("the ID token is not valid yet (iat or nbf is in the future)")]
    NotYetValid,
    /// The system random generator failed.
    #[error("the system random generator failed")]
    Random,
    /// A request to the provider failed.
    #[error("reaching the provider's {what}: {error}")]
    Request {
        /// Which endpoint.
        what: &'static str,
        /// Why (in the message, not the source: issue 18, each cause once).
        error: ClientError,
    },
    /// The ID token's signature does not verify.
    #[error("the ID token's signature does not verify")]
    Signature,
    /// The `state` returned with the code is not this browser's.
    #[error("the state returned by the provider does not match this browser's sign-in")]
    StateMismatch,
    /// The provider answered with an unexpected HTTP status.
    #[error("the provider's {what} answered HTTP {status}")]
    Status {
        /// Which endpoint.
        what: &'static str,
        /// The status.
        status: u16,
    },
    /// The provider did not answer in time.
    #[error("the provider's {what} did not answer within {} s", REQUEST_TIMEOUT.as_secs())]
    Timeout {
        /// Which endpoint.
        what: &'static str,
    },
    /// The TLS client for the provider could not be set up.
    #[error("TLS for the provider: {0}")]
    Tls(ClientError),
    /// The token response lacks something.
    #[error("the token response has no {0}")]
    TokenResponse(&'static str),
    /// No key of the JWKS fits the ID token, even after fetching the JWKS again.
    #[error("no key in the provider's JWKS fits the ID token ({alg}, key id {kid:?})")]
    UnknownKey {
        /// The algorithm.
        alg: &'static str,
        /// The key id the token names.
        kid: Option<String>,
    },
    /// The ID token is signed with an algorithm other than RS256 and ES256.
    #[error("the ID token is signed with {0:?}; only RS256 and ES256 are accepted")]
    UnsupportedAlgorithm(String),
    /// The userinfo answer is unusable.
    #[error("userinfo: {0}")]
    Userinfo(&'static str),
    /// The ID token is not meant for this client (`aud` or `azp`).
    #[error("the ID token is not meant for this client (aud or azp)")]
    WrongAudience,
    /// The ID token was issued by another issuer.
    #[error("the ID token was issued by {found:?}, not {expected:?}")]
    WrongIssuer {
        /// The configured issuer.
        expected: String,
        /// The token's `iss`.
        found: String,
    },
}

/// One sign-in between [`Provider::begin`] and [`Provider::finish`], kept in a cookie.
#[derive(Clone, PartialEq, Eq)]
pub struct PendingLogin {
    state: String,
    nonce: String,
    code_verifier: String,
    issued_at: i64,
}

impl std::fmt::Debug for PendingLogin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PendingLogin").field("issued_at", &self.issued_at).finish_non_exhaustive()
    }
}

impl PendingLogin {
    /// The cookie value: `v1.ISSUED_AT.STATE.NONCE.VERIFIER`, only `[A-Za-z0-9._-]`, so it
    /// needs no quoting in a `Set-Cookie` header.
    pub fn to_cookie(&self) -> String {
        format!(
            "{COOKIE_VERSION}.{}.{}.{}.{}",
            self.issued_at, self.state, self.nonce, self.code_verifier
        )
    }

    /// Reads a value written by [`PendingLogin::to_cookie`].
    ///
    /// # Errors
    /// [`OidcError::MalformedCookie`] for anything else.
    pub fn from_cookie(value: &str) -> Result<Self, OidcError> {
        if value.len() > MAX_COOKIE_BYTES {
            return Err(OidcError::MalformedCookie);
        }
        let mut parts = value.split('.');
        let (Some(COOKIE_VERSION), Some(issued_at), Some(state), Some(nonce), Some(verifier), None) =
            (parts.next(), parts.next(), parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(OidcError::MalformedCookie);
        };
        let issued_at = issued_at.parse::<i64>().map_err(|_| OidcError::MalformedCookie)?;
        // RFC 7636 section 4.1: the verifier is 43 to 128 unreserved characters; ours are
        // base64url, and so are the state and nonce.
        let token = |s: &str| {
            (43..=128).contains(&s.len())
                && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        };
        if !(token(state) && token(nonce) && token(verifier)) {
            return Err(OidcError::MalformedCookie);
        }
        Ok(Self {
            state: state.to_owned(),
            nonce: nonce.to_owned(),
            code_verifier: verifier.to_owned(),
            issued_at,
        })
    }

    /// When [`Provider::begin`] made it, in Unix seconds.
    pub fn issued_at(&self) -> i64 {
        self.issued_at
    }
}

/// How the client authenticates at the token endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ClientAuth {
    /// HTTP Basic with the form-encoded id and secret (RFC 6749 section 2.3.1).
    Basic,
    /// `client_id` and `client_secret` in the form body.
    Post,
}

/// The endpoints from discovery.
#[derive(Clone, Debug)]
struct Endpoints {
    authorization: String,
    token: String,
    userinfo: Option<String>,
    jwks: String,
    client_auth: ClientAuth,
}

/// A signature algorithm we accept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Alg {
    Es256,
    Rs256,
}

impl Alg {
    fn name(self) -> &'static str {
        match self {
            Alg::Es256 => "ES256",
            Alg::Rs256 => "RS256",
        }
    }
}

/// A public key from the JWKS.
#[derive(Clone, Debug, PartialEq, Eq)]
enum KeyMaterial {
    /// An uncompressed P-256 point: `0x04 || x || y`.
    P256(Vec<u8>),
    /// RSA modulus and exponent, big-endian.
    Rsa { n: Vec<u8>, e: Vec<u8> },
}

/// One usable signing key of the JWKS.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Jwk {
    kid: Option<String>,
    alg: Option<String>,
    material: KeyMaterial,
}

impl Jwk {
    fn fits(&self, alg: Alg) -> bool {
        let kind = matches!(
            (alg, &self.material),
            (Alg::Es256, KeyMaterial::P256(_)) | (Alg::Rs256, KeyMaterial::Rsa { .. })
        );
        kind && self.alg.as_deref().is_none_or(|a| a == alg.name())
    }

    fn verifies(&self, message: &[u8], signature: &[u8]) -> bool {
        match &self.material {
            KeyMaterial::P256(point) => UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, point)
                .verify(message, signature)
                .is_ok(),
            KeyMaterial::Rsa { n, e } => RsaPublicKeyComponents { n, e }
                .verify(&RSA_PKCS1_2048_8192_SHA256, message, signature)
                .is_ok(),
        }
    }
}

/// An OpenID Provider as discovered, ready for sign-ins. Share it behind an `Arc`.
#[derive(Debug)]
pub struct Provider {
    config: OidcConfig,
    tls: Arc<rustls::ClientConfig>,
    endpoints: Endpoints,
    /// Replaced whole when the JWKS is fetched again; never held across an await.
    keys: RwLock<Arc<Vec<Jwk>>>,
}

/// The discovery document fields we read (OpenID Connect Discovery 1.0 section 3).
#[derive(Deserialize)]
struct DiscoveryDocument {
    issuer: String,
    authorization_endpoint: String,
    token_endpoint: String,
    userinfo_endpoint: Option<String>,
    jwks_uri: String,
    response_types_supported: Option<Vec<String>>,
    code_challenge_methods_supported: Option<Vec<String>>,
    token_endpoint_auth_methods_supported: Option<Vec<String>>,
}

/// One JWK as written (RFC 7517, RFC 7518 section 6); unknown members are ignored.
#[derive(Deserialize)]
struct RawJwk {
    kty: String,
    kid: Option<String>,
    #[serde(rename = "use")]
    usage: Option<String>,
    alg: Option<String>,
    n: Option<String>,
    e: Option<String>,
    crv: Option<String>,
    x: Option<String>,
    y: Option<String>,
}

/// The token endpoint's answer. Deliberately no `Debug`: it holds tokens.
#[derive(Deserialize)]
struct TokenResponse {
    access_token: Option<String>,
    id_token: Option<String>,
}

/// A token endpoint error (RFC 6749 section 5.2).
#[derive(Deserialize)]
struct TokenError {
    error: String,
    error_description: Option<String>,
}

impl Provider {
    /// Fetches the discovery document and the JWKS, checking that the document names the
    /// configured issuer, offers the code flow with S256 and a client authentication we
    /// speak, and that its endpoints are `https://`.
    ///
    /// # Errors
    /// TLS setup, a request, or an unusable document or JWKS.
    pub async fn discover(config: &OidcConfig) -> Result<Provider, OidcError> {
        let tls = client::tls_config_with_system_roots(&config.extra_roots, false)
            .map_err(OidcError::Tls)?;
        let url =
            format!("{}/.well-known/openid-configuration", config.issuer.trim_end_matches('/'));
        let body = get_json(&tls, "discovery document", &url, None).await?;
        let doc: DiscoveryDocument = serde_json::from_slice(&body)
            .map_err(|error| OidcError::Json { what: "discovery document", error })?;
        let endpoints = endpoints(config, doc)?;
        let keys = fetch_keys(&tls, &endpoints.jwks).await?;
        tracing::info!(issuer = %config.issuer, keys = keys.len(), "OpenID Provider discovered");
        Ok(Provider { config: config.clone(), tls, endpoints, keys: RwLock::new(Arc::new(keys)) })
    }

    /// The configuration it was discovered with.
    pub fn config(&self) -> &OidcConfig {
        &self.config
    }

    /// Starts a sign-in: the authorization URL to redirect the browser to, and the pending
    /// login to keep in a cookie until the callback.
    ///
    /// # Errors
    /// [`OidcError::Random`] when the system random generator fails.
    pub fn begin(&self) -> Result<(String, PendingLogin), OidcError> {
        let pending = PendingLogin {
            state: random_token()?,
            nonce: random_token()?,
            code_verifier: random_token()?,
            issued_at: now(),
        };
        let challenge = URL_SAFE_NO_PAD
            .encode(ring::digest::digest(&ring::digest::SHA256, pending.code_verifier.as_bytes()));
        let query = form_urlencoded::Serializer::new(String::new())
            .append_pair("response_type", "code")
            .append_pair("client_id", &self.config.client_id)
            .append_pair("redirect_uri", &self.config.redirect_url)
            .append_pair("scope", &self.config.scopes.join(" "))
            .append_pair("state", &pending.state)
            .append_pair("nonce", &pending.nonce)
            .append_pair("code_challenge", &challenge)
            .append_pair("code_challenge_method", "S256")
            .finish();
        let base = &self.endpoints.authorization;
        let separator = if base.contains('?') { '&' } else { '?' };
        Ok((format!("{base}{separator}{query}"), pending))
    }

    /// Completes a sign-in at the callback: checks `state` against the pending login,
    /// redeems `code` at the token endpoint, verifies the ID token, and reads the groups
    /// (from the ID token, or else from the userinfo endpoint).
    ///
    /// # Errors
    /// A state mismatch, a stale pending login, a refused code, an ID token that does not
    /// verify, or a failed request.
    pub async fn finish(
        &self,
        pending: &PendingLogin,
        code: &str,
        state: &str,
    ) -> Result<Identity, OidcError> {
        if !crate::credentials::secrets_equal(&pending.state, state) {
            return Err(OidcError::StateMismatch);
        }
        let now = now();
        if now.saturating_sub(pending.issued_at) > MAX_LOGIN_AGE_SECS
            || pending.issued_at > now.saturating_add(LEEWAY_SECS)
        {
            return Err(OidcError::LoginExpired);
        }
        let tokens = self.redeem(pending, code).await?;
        let id_token = tokens.id_token.ok_or(OidcError::TokenResponse("id_token"))?;
        let claims = self.verify_id_token(&id_token, &pending.nonce).await?;
        let subject = claims
            .get("sub")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .ok_or(OidcError::MalformedIdToken("no sub"))?
            .to_owned();
        let mut email = string_claim(&claims, "email");
        let mut name = string_claim(&claims, "name");
        let groups = match groups_claim(&claims, &self.config.groups_claim) {
            Some(groups) => groups,
            None => match (&self.endpoints.userinfo, tokens.access_token.as_deref()) {
                (Some(url), Some(access_token)) => {
                    let info = self.userinfo(url, access_token, &subject).await?;
                    email = email.or_else(|| string_claim(&info, "email"));
                    name = name.or_else(|| string_claim(&info, "name"));
                    groups_claim(&info, &self.config.groups_claim).unwrap_or_default()
                }
                _ => Vec::new(),
            },
        };
        let role = self.config.role_for(&groups);
        Ok(Identity { subject, email, name, groups, role })
    }

    /// Posts the code to the token endpoint.
    async fn redeem(&self, pending: &PendingLogin, code: &str) -> Result<TokenResponse, OidcError> {
        const WHAT: &str = "token endpoint";
        // The serializer is not Send: build the body in a block so it is gone before the
        // request is awaited (the console's handlers run on a multi-threaded runtime).
        let (body, headers) = {
            let mut form = form_urlencoded::Serializer::new(String::new());
            form.append_pair("grant_type", "authorization_code")
                .append_pair("code", code)
                .append_pair("redirect_uri", &self.config.redirect_url)
                .append_pair("code_verifier", &pending.code_verifier);
            let mut headers = vec![
                (CONTENT_TYPE, HeaderValue::from_static("application/x-www-form-urlencoded")),
                (ACCEPT, HeaderValue::from_static("application/json")),
            ];
            match self.endpoints.client_auth {
                ClientAuth::Basic => {
                    // RFC 6749 section 2.3.1: both parts are form-encoded before base64.
                    let id: String =
                        form_urlencoded::byte_serialize(self.config.client_id.as_bytes()).collect();
                    let secret: String = form_urlencoded::byte_serialize(
                        self.config.client_secret.expose().as_bytes(),
                    )
                    .collect();
                    let mut value = HeaderValue::from_str(&format!(
                        "Basic {}",
                        STANDARD.encode(format!("{id}:{secret}"))
                    ))
                    .map_err(|_| OidcError::TokenResponse("usable client credentials"))?;
                    value.set_sensitive(true);
                    headers.push((AUTHORIZATION, value));
                }
                ClientAuth::Post => {
                    form.append_pair("client_id", &self.config.client_id)
                        .append_pair("client_secret", self.config.client_secret.expose());
                }
            }
            let body = form.finish();
            (body, headers)
        };
        let response =
            request(&self.tls, WHAT, Method::POST, &self.endpoints.token, &headers, body).await?;
        if !response.status.is_success() {
            let status = response.status.as_u16();
            return Err(match serde_json::from_slice::<TokenError>(&response.body) {
                Ok(e) => OidcError::CodeRefused {
                    status,
                    error: shorten(&e.error),
                    description: e.error_description.as_deref().map(shorten),
                },
                Err(_) => OidcError::Status { what: WHAT, status },
            });
        }
        serde_json::from_slice(&response.body)
            .map_err(|error| OidcError::Json { what: WHAT, error })
    }

    /// Reads the userinfo endpoint with the access token (OpenID Connect Core section 5.3).
    async fn userinfo(
        &self,
        url: &str,
        access_token: &str,
        subject: &str,
    ) -> Result<Map<String, Value>, OidcError> {
        let mut bearer = HeaderValue::from_str(&format!("Bearer {access_token}"))
            .map_err(|_| OidcError::TokenResponse("usable access_token"))?;
        bearer.set_sensitive(true);
        let body = get_json(&self.tls, "userinfo endpoint", url, Some(bearer)).await?;
        let info: Map<String, Value> = serde_json::from_slice(&body).map_err(|_| {
            OidcError::Userinfo("not a JSON object (signed userinfo is not supported)")
        })?;
        // Section 5.3.2: the userinfo sub must be the ID token's, or the answer is not used.
        if info.get("sub").and_then(Value::as_str) != Some(subject) {
            return Err(OidcError::Userinfo("its sub is not the ID token's"));
        }
        Ok(info)
    }

    /// Verifies an ID token, fetching the JWKS again once if no key fits (rotation).
    async fn verify_id_token(
        &self,
        token: &str,
        nonce: &str,
    ) -> Result<Map<String, Value>, OidcError> {
        let keys = self.current_keys();
        match check_id_token(&self.config, &keys, token, nonce, now()) {
            Err(OidcError::UnknownKey { .. }) => {
                let fresh = Arc::new(fetch_keys(&self.tls, &self.endpoints.jwks).await?);
                if let Ok(mut guard) = self.keys.write() {
                    *guard = Arc::clone(&fresh);
                }
                tracing::info!(keys = fresh.len(), "OpenID Provider keys fetched again");
                check_id_token(&self.config, &fresh, token, nonce, now())
            }
            other => other,
        }
    }

    fn current_keys(&self) -> Arc<Vec<Jwk>> {
        match self.keys.read() {
            Ok(guard) => Arc::clone(&guard),
            // A writer panicked mid-replace; the Arc it held is still whole.
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }
}

/// Checks the discovery document and picks the endpoints and client authentication.
fn endpoints(config: &OidcConfig, doc: DiscoveryDocument) -> Result<Endpoints, OidcError> {
    if doc.issuer != config.issuer {
        return Err(OidcError::IssuerMismatch {
            expected: config.issuer.clone(),
            found: doc.issuer,
        });
    }
    if let Some(types) = &doc.response_types_supported
        && !types.iter().any(|t| t == "code")
    {
        return Err(OidcError::Discovery("response type \"code\" is not supported".into()));
    }
    if let Some(methods) = &doc.code_challenge_methods_supported
        && !methods.iter().any(|m| m == "S256")
    {
        return Err(OidcError::Discovery("PKCE method S256 is not supported".into()));
    }
    // Discovery section 3: absent means client_secret_basic.
    let offered = doc
        .token_endpoint_auth_methods_supported
        .unwrap_or_else(|| vec!["client_secret_basic".to_owned()]);
    let client_auth = if offered.iter().any(|m| m == "client_secret_basic") {
        ClientAuth::Basic
    } else if offered.iter().any(|m| m == "client_secret_post") {
        ClientAuth::Post
    } else {
        return Err(OidcError::ClientAuthUnsupported { offered });
    };
    let https = |name: &str, url: String| -> Result<String, OidcError> {
        if url.starts_with("https://") && url.parse::<hyper::Uri>().is_ok() {
            Ok(url)
        } else {
            Err(OidcError::Discovery(format!("{name} {url:?} is not an https:// URL")))
        }
    };
    Ok(Endpoints {
        authorization: https("authorization_endpoint", doc.authorization_endpoint)?,
        token: https("token_endpoint", doc.token_endpoint)?,
        userinfo: doc.userinfo_endpoint.map(|u| https("userinfo_endpoint", u)).transpose()?,
        jwks: https("jwks_uri", doc.jwks_uri)?,
        client_auth,
    })
}

/// Fetches and parses the JWKS, keeping the RS256 and ES256 signing keys.
async fn fetch_keys(tls: &Arc<rustls::ClientConfig>, url: &str) -> Result<Vec<Jwk>, OidcError> {
    let body = get_json(tls, "JWKS", url, None).await?;
    parse_jwks(&body)
}

/// Parses a JWKS, skipping keys that are not for signatures, of other types, or malformed
/// (a provider may publish encryption or post-quantum keys beside its signing keys).
fn parse_jwks(body: &[u8]) -> Result<Vec<Jwk>, OidcError> {
    #[derive(Deserialize)]
    struct Set {
        keys: Vec<Value>,
    }
    let set: Set =
        serde_json::from_slice(body).map_err(|error| OidcError::Json { what: "JWKS", error })?;
    let keys: Vec<Jwk> = set
        .keys
        .into_iter()
        .filter_map(|v| serde_json::from_value::<RawJwk>(v).ok())
        .filter_map(|raw| jwk(&raw))
        .collect();
    if keys.is_empty() {
        return Err(OidcError::NoSigningKey);
    }
    Ok(keys)
}

fn jwk(raw: &RawJwk) -> Option<Jwk> {
    if raw.usage.as_deref().is_some_and(|u| u != "sig") {
        return None;
    }
    let decode = |s: &Option<String>| s.as_deref().and_then(|s| URL_SAFE_NO_PAD.decode(s).ok());
    let material = match (raw.kty.as_str(), raw.crv.as_deref()) {
        ("RSA", _) => {
            let (n, e) = (decode(&raw.n)?, decode(&raw.e)?);
            if n.is_empty() || e.is_empty() {
                return None;
            }
            KeyMaterial::Rsa { n, e }
        }
        ("EC", Some("P-256")) => {
            let (x, y) = (decode(&raw.x)?, decode(&raw.y)?);
            if x.len() != 32 || y.len() != 32 {
                return None;
            }
            let mut point = Vec::with_capacity(65);
            point.push(0x04);
            point.extend_from_slice(&x);
            point.extend_from_slice(&y);
            KeyMaterial::P256(point)
        }
        _ => return None,
    };
    let jwk = Jwk { kid: raw.kid.clone(), alg: raw.alg.clone(), material };
    (jwk.fits(Alg::Rs256) || jwk.fits(Alg::Es256)).then_some(jwk)
}

/// Verifies a compact JWS ID token against `keys` and checks its claims (OpenID Connect
/// Core section 3.1.3.7) at time `now`, returning the claims.
fn check_id_token(
    config: &OidcConfig,
    keys: &[Jwk],
    token: &str,
    nonce: &str,
    now: i64,
) -> Result<Map<String, Value>, OidcError> {
    let mut parts = token.split('.');
    let (Some(header_b64), Some(payload_b64), Some(signature_b64), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(OidcError::MalformedIdToken("not three dot-separated parts"));
    };
    let header: Map<String, Value> = decode_json(header_b64)
        .ok_or(OidcError::MalformedIdToken("the header is not base64url JSON"))?;
    let alg = match header.get("alg").and_then(Value::as_str) {
        Some("RS256") => Alg::Rs256,
        Some("ES256") => Alg::Es256,
        Some(other) => return Err(OidcError::UnsupportedAlgorithm(shorten(other))),
        None => return Err(OidcError::MalformedIdToken("no alg")),
    };
    // RFC 7515 section 4.1.11: an extension we do not understand must be refused.
    if header.contains_key("crit") {
        return Err(OidcError::MalformedIdToken("critical header extensions"));
    }
    let kid = match header.get("kid") {
        None => None,
        Some(Value::String(kid)) => Some(kid.as_str()),
        Some(_) => return Err(OidcError::MalformedIdToken("kid is not a string")),
    };
    let signature = URL_SAFE_NO_PAD
        .decode(signature_b64)
        .map_err(|_| OidcError::MalformedIdToken("the signature is not base64url"))?;
    let candidates: Vec<&Jwk> =
        keys.iter().filter(|k| k.fits(alg) && (kid.is_none() || k.kid.as_deref() == kid)).collect();
    if candidates.is_empty() {
        return Err(OidcError::UnknownKey { alg: alg.name(), kid: kid.map(shorten) });
    }
    // The signing input is the first two parts exactly as sent (RFC 7515 section 5.2).
    let signed_len = header_b64.len() + 1 + payload_b64.len();
    let signing_input = token.as_bytes().get(..signed_len).unwrap_or_default();
    if !candidates.iter().any(|k| k.verifies(signing_input, &signature)) {
        return Err(OidcError::Signature);
    }
    let claims: Map<String, Value> = decode_json(payload_b64)
        .ok_or(OidcError::MalformedIdToken("the payload is not base64url JSON"))?;
    match claims.get("iss").and_then(Value::as_str) {
        Some(iss) if iss == config.issuer => {}
        Some(iss) => {
            return Err(OidcError::WrongIssuer {
                expected: config.issuer.clone(),
                found: shorten(iss),
            });
        }
        None => return Err(OidcError::MalformedIdToken("no iss")),
    }
    let audiences: Vec<&str> = match claims.get("aud") {
        Some(Value::String(aud)) => vec![aud.as_str()],
        Some(Value::Array(auds)) => auds.iter().filter_map(Value::as_str).collect(),
        _ => return Err(OidcError::MalformedIdToken("no aud")),
    };
    if !audiences.contains(&config.client_id.as_str()) {
        return Err(OidcError::WrongAudience);
    }
    // Core 3.1.3.7 items 4 and 5: with several audiences azp must be there, and when it is
    // there it must be us.
    match claims.get("azp") {
        Some(Value::String(azp)) if *azp == config.client_id => {}
        None if audiences.len() == 1 => {}
        _ => return Err(OidcError::WrongAudience),
    }
    let exp = time_claim(&claims, "exp")?.ok_or(OidcError::MalformedIdToken("no exp"))?;
    if now >= exp.saturating_add(LEEWAY_SECS) {
        return Err(OidcError::Expired);
    }
    let iat = time_claim(&claims, "iat")?.ok_or(OidcError::MalformedIdToken("no iat"))?;
    let nbf = time_claim(&claims, "nbf")?;
    if iat > now.saturating_add(LEEWAY_SECS)
        || nbf.is_some_and(|nbf| nbf > now.saturating_add(LEEWAY_SECS))
    {
        return Err(OidcError::NotYetValid);
    }
    match claims.get("nonce").and_then(Value::as_str) {
        Some(n) if crate::credentials::secrets_equal(n, nonce) => {}
        _ => return Err(OidcError::NonceMismatch),
    }
    Ok(claims)
}

/// A NumericDate claim, in whole seconds (fractions are allowed by RFC 7519 and dropped).
fn time_claim(claims: &Map<String, Value>, name: &'static str) -> Result<Option<i64>, OidcError> {
    match claims.get(name) {
        None => Ok(None),
        Some(Value::Number(n)) => match (n.as_i64(), n.as_f64()) {
            (Some(i), _) => Ok(Some(i)),
            // Saturating float-to-int conversion: absurd values become absurd times, which
            // then fail the checks.
            (None, Some(f)) if f.is_finite() => Ok(Some(f.floor() as i64)),
            _ => Err(OidcError::MalformedIdToken("a time claim is not a number")),
        },
        Some(_) => Err(OidcError::MalformedIdToken("a time claim is not a number")),
    }
}

fn string_claim(claims: &Map<String, Value>, name: &str) -> Option<String> {
    claims.get(name).and_then(Value::as_str).filter(|s| !s.is_empty()).map(str::to_owned)
}

/// The groups claim: a string is one group, an array its string members; `None` when the
/// claim is absent or null.
fn groups_claim(claims: &Map<String, Value>, name: &str) -> Option<Vec<String>> {
    match claims.get(name)? {
        Value::String(group) => Some(vec![group.clone()]),
        Value::Array(groups) => {
            Some(groups.iter().filter_map(Value::as_str).map(str::to_owned).collect())
        }
        _ => None,
    }
}

fn decode_json(part: &str) -> Option<Map<String, Value>> {
    let bytes = URL_SAFE_NO_PAD.decode(part).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// ` (TEXT)` for an error message, or nothing.
fn in_parentheses(text: &Option<String>) -> String {
    text.as_deref().map(|t| format!(" ({t})")).unwrap_or_default()
}

/// A value from the provider cut to 200 characters, for an error message.
fn shorten(text: &str) -> String {
    text.chars().take(200).collect()
}

/// 32 random bytes in base64url (43 characters).
fn random_token() -> Result<String, OidcError> {
    let mut bytes = [0u8; RANDOM_BYTES];
    SystemRandom::new().fill(&mut bytes).map_err(|_| OidcError::Random)?;
    Ok(URL_SAFE_NO_PAD.encode(bytes))
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// One request with the body cap and the timeout; the status is the caller's to check.
async fn request(
    tls: &Arc<rustls::ClientConfig>,
    what: &'static str,
    method: Method,
    url: &str,
    headers: &[(HeaderName, HeaderValue)],
    body: String,
) -> Result<client::Response, OidcError> {
    let call = client::fetch(Arc::clone(tls), method, url, headers, body, MAX_RESPONSE_BYTES);
    match tokio::time::timeout(REQUEST_TIMEOUT, call).await {
        Err(_) => Err(OidcError::Timeout { what }),
        Ok(Err(error)) => Err(OidcError::Request { what, error }),
        Ok(Ok(response)) => Ok(response),
    }
}

/// A GET that must answer 200, returning the body.
async fn get_json(
    tls: &Arc<rustls::ClientConfig>,
    what: &'static str,
    url: &str,
    authorization: Option<HeaderValue>,
) -> Result<axum::body::Bytes, OidcError> {
    let mut headers = vec![(ACCEPT, HeaderValue::from_static("application/json"))];
    if let Some(value) = authorization {
        headers.push((AUTHORIZATION, value));
    }
    let response = request(tls, what, Method::GET, url, &headers, String::new()).await?;
    if response.status != hyper::StatusCode::OK {
        return Err(OidcError::Status { what, status: response.status.as_u16() });
    }
    Ok(response.body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::rand::SystemRandom;
    use ring::signature::{
        ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair, RSA_PKCS1_SHA256, RsaKeyPair,
    };
    use serde_json::json;

    const RSA_KEY: &[u8] = include_bytes!("../tests/data/oidc/rsa-2048-test-key.pk8");
    const NOW: i64 = 1_750_000_000;

    fn config() -> OidcConfig {
        OidcConfig {
            issuer: "https://idp.example".into(),
            client_id: "aiscout".into(),
            client_secret: Secret::new("s3cret"),
            redirect_url: "https://aiscout.example/auth/oidc/callback".into(),
            scopes: vec!["openid".into(), "email".into()],
            groups_claim: "groups".into(),
            roles: [("ai-admins", Role::Admin), ("secops", Role::Security), ("all", Role::Viewer)]
                .into_iter()
                .map(|(g, r)| (g.to_owned(), r))
                .collect(),
            extra_roots: Vec::new(),
        }
    }

    fn b64(bytes: impl AsRef<[u8]>) -> String {
        URL_SAFE_NO_PAD.encode(bytes)
    }

    /// An ES256 key pair and its JWK.
    fn ec_key(kid: &str) -> (EcdsaKeyPair, Jwk) {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
            .unwrap();
        let point = pair.public_key().as_ref().to_vec();
        let raw = json!({"kty": "EC", "crv": "P-256", "kid": kid, "use": "sig",
            "x": b64(&point[1..33]), "y": b64(&point[33..65])});
        let jwk = jwk(&serde_json::from_value(raw).unwrap()).unwrap();
        assert_eq!(jwk.material, KeyMaterial::P256(point));
        (pair, jwk)
    }

    fn rsa_key(kid: &str) -> (RsaKeyPair, Jwk) {
        let pair = RsaKeyPair::from_pkcs8(RSA_KEY).unwrap();
        let public = RsaPublicKeyComponents::<Vec<u8>>::from(pair.public());
        let raw = json!({"kty": "RSA", "kid": kid, "alg": "RS256",
            "n": b64(&public.n), "e": b64(&public.e)});
        (pair, jwk(&serde_json::from_value(raw).unwrap()).unwrap())
    }

    fn claims() -> Value {
        json!({"iss": "https://idp.example", "sub": "alice", "aud": "aiscout",
            "exp": NOW + 300, "iat": NOW, "nonce": "n-123", "email": "alice@example.com",
            "groups": ["secops", "other"]})
    }

    fn sign_es256(pair: &EcdsaKeyPair, header: &Value, claims: &Value) -> String {
        let input = format!("{}.{}", b64(header.to_string()), b64(claims.to_string()));
        let sig = pair.sign(&SystemRandom::new(), input.as_bytes()).unwrap();
        format!("{input}.{}", b64(sig))
    }

    fn sign_rs256(pair: &RsaKeyPair, header: &Value, claims: &Value) -> String {
        let input = format!("{}.{}", b64(header.to_string()), b64(claims.to_string()));
        let mut sig = vec![0u8; pair.public().modulus_len()];
        pair.sign(&RSA_PKCS1_SHA256, &SystemRandom::new(), input.as_bytes(), &mut sig).unwrap();
        format!("{input}.{}", b64(sig))
    }

    fn check(keys: &[Jwk], token: &str) -> Result<Map<String, Value>, OidcError> {
        check_id_token(&config(), keys, token, "n-123", NOW)
    }

    #[test]
    fn es256_and_rs256_id_tokens_verify() {
        let (ec, ec_jwk) = ec_key("ec1");
        let (rsa, rsa_jwk) = rsa_key("rsa1");
        let keys = [ec_jwk, rsa_jwk];
        let token = sign_es256(&ec, &json!({"alg": "ES256", "kid": "ec1"}), &claims());
        assert_eq!(check(&keys, &token).unwrap()["sub"], "alice");
        let token = sign_rs256(&rsa, &json!({"alg": "RS256", "kid": "rsa1"}), &claims());
        assert_eq!(check(&keys, &token).unwrap()["sub"], "alice");
        // Without a kid, every key of the right type is tried.
        let token = sign_rs256(&rsa, &json!({"alg": "RS256"}), &claims());
        assert!(check(&keys, &token).is_ok());
    }

    #[test]
    fn a_tampered_signature_or_payload_is_refused() {
        let (ec, ec_jwk) = ec_key("ec1");
        let (rsa, rsa_jwk) = rsa_key("rsa1");
        let keys = [ec_jwk, rsa_jwk];
        for token in [
            sign_es256(&ec, &json!({"alg": "ES256", "kid": "ec1"}), &claims()),
            sign_rs256(&rsa, &json!({"alg": "RS256", "kid": "rsa1"}), &claims()),
        ] {
            let (input, sig) = token.rsplit_once('.').unwrap();
            let mut sig = URL_SAFE_NO_PAD.decode(sig).unwrap();
            sig[10] ^= 0x01;
            let tampered = format!("{input}.{}", b64(&sig));
            assert!(matches!(check(&keys, &tampered), Err(OidcError::Signature)));

            let (header, rest) = token.split_once('.').unwrap();
            let (_, sig) = rest.split_once('.').unwrap();
            let mut other = claims();
            other["sub"] = json!("mallory");
            let swapped = format!("{header}.{}.{sig}", b64(other.to_string()));
            assert!(matches!(check(&keys, &swapped), Err(OidcError::Signature)));
        }
    }

    #[test]
    fn a_key_of_another_provider_is_unknown_and_none_or_hmac_is_refused() {
        let (ec, _) = ec_key("ec1");
        let (_, other) = ec_key("ec1");
        let other = [other];
        let token = sign_es256(&ec, &json!({"alg": "ES256", "kid": "ec1"}), &claims());
        assert!(matches!(check(&other, &token), Err(OidcError::Signature)));
        let token = sign_es256(&ec, &json!({"alg": "ES256", "kid": "rotated"}), &claims());
        assert!(matches!(
            check(&other, &token),
            Err(OidcError::UnknownKey { alg: "ES256", kid: Some(k) }) if k == "rotated"
        ));
        let unsigned =
            format!("{}.{}.", b64(json!({"alg": "none"}).to_string()), b64(claims().to_string()));
        assert!(matches!(
            check(&other, &unsigned),
            Err(OidcError::UnsupportedAlgorithm(a)) if a == "none"
        ));
        let hmac = format!(
            "{}.{}.AAAA",
            b64(json!({"alg": "HS256"}).to_string()),
            b64(claims().to_string())
        );
        assert!(matches!(check(&other, &hmac), Err(OidcError::UnsupportedAlgorithm(_))));
    }

    #[test]
    fn wrong_audience_issuer_nonce_and_times_are_refused() {
        let (ec, jwk) = ec_key("k");
        let keys = [jwk];
        let header = json!({"alg": "ES256", "kid": "k"});
        let with = |key: &str, value: Value| {
            let mut c = claims();
            c[key] = value;
            sign_es256(&ec, &header, &c)
        };
        let wrong_aud = with("aud", json!("someone-else"));
        assert!(matches!(check(&keys, &wrong_aud), Err(OidcError::WrongAudience)));
        let several = with("aud", json!(["aiscout", "other"]));
        assert!(matches!(check(&keys, &several), Err(OidcError::WrongAudience)), "azp missing");
        let mut c = claims();
        c["aud"] = json!(["aiscout", "other"]);
        c["azp"] = json!("aiscout");
        assert!(check(&keys, &sign_es256(&ec, &header, &c)).is_ok());
        c["azp"] = json!("other");
        assert!(matches!(
            check(&keys, &sign_es256(&ec, &header, &c)),
            Err(OidcError::WrongAudience)
        ));

        let wrong_iss = with("iss", json!("https://evil.example"));
        assert!(matches!(check(&keys, &wrong_iss), Err(OidcError::WrongIssuer { .. })));
        let expired = with("exp", json!(NOW - LEEWAY_SECS - 1));
        assert!(matches!(check(&keys, &expired), Err(OidcError::Expired)));
        let within_leeway = with("exp", json!(NOW - LEEWAY_SECS + 5));
        assert!(check(&keys, &within_leeway).is_ok());
        let future = with("iat", json!(NOW + LEEWAY_SECS + 10));
        assert!(matches!(check(&keys, &future), Err(OidcError::NotYetValid)));
        let not_before = with("nbf", json!(NOW + LEEWAY_SECS + 10));
        assert!(matches!(check(&keys, &not_before), Err(OidcError::NotYetValid)));
        let nonce = with("nonce", json!("n-124"));
        assert!(matches!(check(&keys, &nonce), Err(OidcError::NonceMismatch)));
        let mut c = claims();
        c.as_object_mut().unwrap().remove("nonce");
        assert!(matches!(
            check(&keys, &sign_es256(&ec, &header, &c)),
            Err(OidcError::NonceMismatch)
        ));
        let crit = sign_es256(&ec, &json!({"alg": "ES256", "kid": "k", "crit": ["x"]}), &claims());
        assert!(matches!(check(&keys, &crit), Err(OidcError::MalformedIdToken(_))));
    }

    #[test]
    fn jwks_keeps_signing_keys_only() {
        let body = json!({"keys": [
            {"kty": "RSA", "use": "enc", "n": "AQAB", "e": "AQAB"},
            {"kty": "OKP", "crv": "Ed25519", "x": "AAAA"},
            {"kty": "EC", "crv": "P-384", "x": "AAAA", "y": "AAAA"},
            {"kty": "EC", "crv": "P-256", "x": "AAAA", "y": "AAAA"},
            {"kty": "RSA", "alg": "PS256", "n": "AQAB", "e": "AQAB"},
            {"kty": "RSA", "kid": "good", "n": "AQAB", "e": "AQAB"},
            "not an object"
        ]});
        let keys = parse_jwks(body.to_string().as_bytes()).unwrap();
        assert_eq!(keys.len(), 1);
        assert_eq!(keys[0].kid.as_deref(), Some("good"));
        let none = json!({"keys": [{"kty": "oct", "k": "AAAA"}]});
        assert!(matches!(parse_jwks(none.to_string().as_bytes()), Err(OidcError::NoSigningKey)));
    }

    fn provider(auth: Option<Vec<&str>>) -> Result<Endpoints, OidcError> {
        let doc = DiscoveryDocument {
            issuer: "https://idp.example".into(),
            authorization_endpoint: "https://idp.example/auth?tenant=1".into(),
            token_endpoint: "https://idp.example/token".into(),
            userinfo_endpoint: None,
            jwks_uri: "https://idp.example/jwks".into(),
            response_types_supported: Some(vec!["code".into()]),
            code_challenge_methods_supported: Some(vec!["S256".into()]),
            token_endpoint_auth_methods_supported: auth
                .map(|a| a.into_iter().map(str::to_owned).collect()),
        };
        endpoints(&config(), doc)
    }

    #[test]
    fn discovery_picks_basic_then_post_and_checks_the_issuer() {
        assert_eq!(provider(None).unwrap().client_auth, ClientAuth::Basic);
        let both = provider(Some(vec!["client_secret_post", "client_secret_basic"])).unwrap();
        assert_eq!(both.client_auth, ClientAuth::Basic);
        let post = provider(Some(vec!["private_key_jwt", "client_secret_post"])).unwrap();
        assert_eq!(post.client_auth, ClientAuth::Post);
        assert!(matches!(
            provider(Some(vec!["private_key_jwt"])),
            Err(OidcError::ClientAuthUnsupported { .. })
        ));
        let mut c = config();
        c.issuer = "https://idp.example/".into();
        let doc = DiscoveryDocument {
            issuer: "https://idp.example".into(),
            authorization_endpoint: "https://idp.example/auth".into(),
            token_endpoint: "http://idp.example/token".into(),
            userinfo_endpoint: None,
            jwks_uri: "https://idp.example/jwks".into(),
            response_types_supported: None,
            code_challenge_methods_supported: None,
            token_endpoint_auth_methods_supported: None,
        };
        assert!(matches!(endpoints(&c, doc), Err(OidcError::IssuerMismatch { .. })));
        let doc = DiscoveryDocument {
            issuer: "https://idp.example".into(),
            authorization_endpoint: "https://idp.example/auth".into(),
            token_endpoint: "http://idp.example/token".into(),
            userinfo_endpoint: None,
            jwks_uri: "https://idp.example/jwks".into(),
            response_types_supported: None,
            code_challenge_methods_supported: Some(vec!["plain".into()]),
            token_endpoint_auth_methods_supported: None,
        };
        match endpoints(&config(), doc) {
            Err(OidcError::Discovery(why)) => assert!(why.contains("S256"), "{why}"),
            other => panic!("{other:?}"),
        }
        let doc = DiscoveryDocument {
            issuer: "https://idp.example".into(),
            authorization_endpoint: "https://idp.example/auth".into(),
            token_endpoint: "http://idp.example/token".into(),
            userinfo_endpoint: None,
            jwks_uri: "https://idp.example/jwks".into(),
            response_types_supported: None,
            code_challenge_methods_supported: None,
            token_endpoint_auth_methods_supported: None,
        };
        match endpoints(&config(), doc) {
            Err(OidcError::Discovery(why)) => assert!(why.contains("token_endpoint"), "{why}"),
            other => panic!("{other:?}"),
        }
    }

    fn offline_provider() -> Provider {
        Provider {
            config: config(),
            tls: client::tls_config(&[], false).unwrap(),
            endpoints: provider(None).unwrap(),
            keys: RwLock::new(Arc::new(Vec::new())),
        }
    }

    #[test]
    fn begin_makes_an_s256_challenge_and_the_cookie_round_trips() {
        let p = offline_provider();
        let (url, pending) = p.begin().unwrap();
        assert!(url.starts_with("https://idp.example/auth?tenant=1&response_type=code&"), "{url}");
        let query: BTreeMap<String, String> =
            form_urlencoded::parse(url.split_once('?').unwrap().1.as_bytes())
                .into_owned()
                .collect();
        assert_eq!(query["client_id"], "aiscout");
        assert_eq!(query["redirect_uri"], "https://aiscout.example/auth/oidc/callback");
        assert_eq!(query["scope"], "openid email");
        assert_eq!(query["state"], pending.state);
        assert_eq!(query["nonce"], pending.nonce);
        assert_eq!(query["code_challenge_method"], "S256");
        let digest = ring::digest::digest(&ring::digest::SHA256, pending.code_verifier.as_bytes());
        assert_eq!(query["code_challenge"], b64(digest));
        assert_eq!(pending.code_verifier.len(), 43);

        let cookie = pending.to_cookie();
        assert!(cookie.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b)));
        assert_eq!(PendingLogin::from_cookie(&cookie).unwrap(), pending);
        assert!(!format!("{pending:?}").contains(&pending.state), "Debug hides the values");

        let (_, other) = p.begin().unwrap();
        assert_ne!(other.state, pending.state);
        assert_ne!(other.code_verifier, pending.code_verifier);
        for bad in [
            "",
            "v2.1.a.b.c",
            &cookie.replacen("v1.", "v1.x", 1),
            &format!("{cookie}.extra"),
            &cookie.replace(&pending.nonce, "short"),
            &cookie.replace(&pending.state, &"=".repeat(43)),
            &"v1.1.".repeat(200),
        ] {
            assert!(
                matches!(PendingLogin::from_cookie(bad), Err(OidcError::MalformedCookie)),
                "{bad}"
            );
        }
    }

    #[tokio::test]
    async fn a_wrong_state_or_a_stale_login_is_refused_before_any_request() {
        // The token endpoint is unreachable here, so reaching it would be another error.
        let p = offline_provider();
        let (_, pending) = p.begin().unwrap();
        let wrong = p.finish(&pending, "code", "not-the-state").await;
        assert!(matches!(wrong, Err(OidcError::StateMismatch)), "{wrong:?}");
        let mut stale = pending.clone();
        stale.issued_at -= MAX_LOGIN_AGE_SECS + 1;
        let state = stale.state.clone();
        let old = p.finish(&stale, "code", &state).await;
        assert!(matches!(old, Err(OidcError::LoginExpired)), "{old:?}");
    }

    #[tokio::test]
    async fn an_unknown_key_id_fetches_the_jwks_again_once() {
        let (ec, jwk) = ec_key("k1");
        let mut p = offline_provider();
        // Nothing listens on port 1, so a fetch shows up as a JWKS request error.
        p.endpoints.jwks = "https://127.0.0.1:1/jwks".into();
        p.keys = RwLock::new(Arc::new(vec![jwk]));
        let mut c = claims();
        c["iat"] = json!(now());
        c["exp"] = json!(now() + 300);
        let known = sign_es256(&ec, &json!({"alg": "ES256", "kid": "k1"}), &c);
        assert!(p.verify_id_token(&known, "n-123").await.is_ok(), "no fetch for a known key");
        let rotated = sign_es256(&ec, &json!({"alg": "ES256", "kid": "k2"}), &c);
        let fetched = p.verify_id_token(&rotated, "n-123").await;
        assert!(matches!(fetched, Err(OidcError::Request { what: "JWKS", .. })), "{fetched:?}");
    }

    #[test]
    fn the_most_powerful_mapped_role_wins() {
        let c = config();
        let groups = |g: &[&str]| g.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        assert_eq!(c.role_for(&groups(&["all", "secops"])), Some(Role::Security));
        assert_eq!(c.role_for(&groups(&["secops", "ai-admins"])), Some(Role::Admin));
        assert_eq!(c.role_for(&groups(&["all"])), Some(Role::Viewer));
        assert_eq!(c.role_for(&groups(&["unknown"])), None);
        assert_eq!(c.role_for(&[]), None);
    }

    #[test]
    fn groups_claim_is_a_string_or_an_array() {
        let m = |v: Value| v.as_object().unwrap().clone();
        assert_eq!(groups_claim(&m(json!({"g": "one"})), "g"), Some(vec!["one".to_owned()]));
        assert_eq!(
            groups_claim(&m(json!({"g": ["a", 1, "b"]})), "g"),
            Some(vec!["a".to_owned(), "b".to_owned()])
        );
        assert_eq!(groups_claim(&m(json!({"g": null})), "g"), None);
        assert_eq!(groups_claim(&m(json!({})), "g"), None);
    }

    #[test]
    fn errors_carry_no_secret() {
        let e = OidcError::CodeRefused {
            status: 400,
            error: "invalid_grant".into(),
            description: Some("grant request is invalid".into()),
        };
        assert_eq!(
            e.to_string(),
            "the token endpoint refused the sign-in (400): invalid_grant (grant request is invalid)"
        );
        assert!(!format!("{:?}", config()).contains("s3cret"));
    }
}
