//! The organisation overlay (issue 17): an admin's own AI products and sanctioned gateway
//! hosts, stored versioned, signed with the collector's own Ed25519 key when served to
//! agents (`GET /api/v1/overlay`), and the gateway-bypass report built from it.
//!
//! Signing is deterministic (Ed25519), so every collector on one store with the same key
//! serves the same bytes for a version; each instance also remembers the highest version it
//! served and never serves a lower one.

use std::sync::atomic::{AtomicU64, Ordering};

use aiscout_signatures::{DomainUse, Index, Indicator, Overlay};
use aiscout_wire::Secret;
use serde::Serialize;

#[allow(clippy::wildcard_imports)]
// Reason: the handlers share the API module's helpers and types.
use super::*;

/// The collector's overlay signing key and the highest version this instance served.
#[derive(Debug)]
pub struct OverlaySigner {
    /// The private key, hex PKCS#8 (the `overlay.key` file in the data folder).
    pub key: Secret,
    /// The highest overlay version served by this instance.
    pub served: AtomicU64,
}

impl OverlaySigner {
    /// A signer for a private key (hex PKCS#8).
    pub fn new(key: Secret) -> Self {
        Self { key, served: AtomicU64::new(0) }
    }
}

/// The overlay key file in `dir`: read when present, else generated (0600). Returns the
/// private key and the public key (hex) agents pin as `overlay_key`.
///
/// # Errors
/// An unreadable or malformed key file, or one that cannot be written.
pub fn load_or_generate_key(dir: &std::path::Path) -> Result<(Secret, String), String> {
    let path = dir.join("overlay.key");
    #[allow(clippy::disallowed_methods)] // Reason: the collector's own key file, 0600.
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t.trim().to_owned(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let (private, _) = aiscout_signatures::sign::generate().map_err(|e| e.to_string())?;
            crate::store::files::write_private(&path, private.as_bytes())
                .map_err(|e| format!("{}: {e}", path.display()))?;
            private
        }
        Err(e) => return Err(format!("{}: {e}", path.display())),
    };
    let public = aiscout_signatures::sign::public_key(&text)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    Ok((Secret::new(text), public))
}

/// The overlay stored last, validated against the served catalog.
async fn latest<S: Store>(state: &AppState<S>) -> Result<Option<Overlay>, ApiError> {
    let Some((version, document)) = timed(state, state.store.overlay()).await? else {
        return Ok(None);
    };
    let version = u64::try_from(version).unwrap_or(0);
    Overlay::from_json(version, document.as_bytes(), &state.catalog)
        .map(Some)
        .map_err(|e| ApiError::BadRequest { field: Some(e.path), message: e.message })
}

/// The overlay version the heartbeat acknowledgement names (none without a signer).
pub(super) async fn version<S: Store>(state: &AppState<S>) -> Option<u64> {
    state.overlay.as_ref()?;
    let (v, _) = state.store.overlay().await.ok()??;
    u64::try_from(v).ok()
}

/// The product ids the stored overlay adds (for the sightings check).
pub(super) async fn product_ids<S: Store>(state: &AppState<S>) -> Vec<String> {
    match latest(state).await {
        Ok(Some(o)) => o
            .products()
            .iter()
            .map(|p| p.id.clone())
            .chain(o.gateways().iter().map(|g| g.id.clone()))
            .collect(),
        _ => Vec::new(),
    }
}

/// `GET /api/v1/overlay` (node key): the signed overlay artifact.
pub(super) async fn artifact<S: Store>(
    State(state): Shared<S>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    agent(&state, &headers).await?;
    let none = || ApiError::NotFound("this collector serves no organisation overlay".into());
    let signer = state.overlay.as_ref().ok_or_else(none)?;
    let overlay = latest(&state).await?.ok_or_else(none)?;
    let served = signer.served.fetch_max(overlay.version(), Ordering::SeqCst);
    if overlay.version() < served {
        // Never serve an older overlay than this instance served before.
        return Err(ApiError::NotFound(format!(
            "overlay version {} is older than version {served} served before",
            overlay.version()
        )));
    }
    let bytes = aiscout_signatures::sign::sign_overlay(&overlay, signer.key.expose())
        .map_err(|e| ApiError::NotFound(format!("cannot sign the overlay: {e}")))?;
    Ok(([(header::CONTENT_TYPE, aiscout_wire::CATALOG_MEDIA_TYPE)], bytes).into_response())
}

/// `GET /api/v1/overlay/document` (any API token): `{"version": n, "document": {...}}`.
pub(super) async fn document<S: Store>(
    State(state): Shared<S>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    person(&state, &headers).await?;
    let (version, document) =
        timed(&state, state.store.overlay()).await?.unwrap_or((0, "{}".to_owned()));
    let document: serde_json::Value = serde_json::from_str(&document).unwrap_or_default();
    Ok(Json(serde_json::json!({ "version": version, "document": document })).into_response())
}

/// Validates and stores a new overlay version as `actor`; the new version.
///
/// # Errors
/// A document that breaks the overlay rules (with its JSON path), or a concurrent write.
pub async fn put<S: Store>(state: &AppState<S>, actor: &str, body: &[u8]) -> Result<u64, ApiError> {
    let previous = timed(state, state.store.overlay()).await?.map_or(0, |(v, _)| v);
    let next = u64::try_from(previous.saturating_add(1)).unwrap_or(1);
    let overlay = Overlay::from_json(next, body, &state.catalog)
        .map_err(|e| ApiError::BadRequest { field: Some(e.path), message: e.message })?;
    let document = String::from_utf8(overlay.canonical_json()).unwrap_or_default();
    let audit = crate::model::AuditRecord {
        at: crate::store::now(),
        actor: actor.to_owned(),
        action: "overlay.update".into(),
        subject: format!("overlay/{next}"),
        before: Some(format!("{{\"version\":{previous}}}")),
        after: Some(format!(
            "{{\"version\":{next},\"products\":{},\"gateways\":{}}}",
            overlay.products().len(),
            overlay.gateways().len()
        )),
    };
    let version = i64::try_from(next).unwrap_or(i64::MAX);
    if timed(state, state.store.put_overlay(version, document, audit)).await? {
        Ok(next)
    } else {
        Err(ApiError::BadRequest {
            field: None,
            message: format!(
                "overlay version {next} was written by someone else; reload and retry"
            ),
        })
    }
}

/// `PUT /api/v1/overlay/document` (admin token): the new document -> `{"version": n}`.
pub(super) async fn set_document<S: Store>(
    State(state): Shared<S>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let token = api_token(&state, &headers).await?;
    if token.role != Role::Admin {
        return Err(ApiError::Forbidden(token.role));
    }
    let body = json_body(&headers, body, MAX_SMALL_BODY_BYTES).await?;
    let version = put(&state, &token.name, &body).await?;
    Ok(Json(serde_json::json!({ "version": version })).into_response())
}

/// One row of the bypass report: a device reached a provider's API host directly although
/// a sanctioned gateway fronts that provider.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct BypassRow {
    /// Host id of the device.
    pub host_id: String,
    /// Its host name.
    pub hostname: String,
    /// Its owner, when known.
    pub owner_email: Option<String>,
    /// The process that made the traffic (empty when not attributed).
    pub process: String,
    /// The provider product reached directly.
    pub product: String,
    /// The API host name seen.
    pub host: String,
    /// The gateway that fronts it (id).
    pub gateway: String,
    /// The gateway's host.
    pub gateway_host: String,
    /// First seen.
    pub first_seen: i64,
    /// Last seen.
    pub last_seen: i64,
    /// Times seen.
    pub count: i64,
}

/// Traffic straight to provider API hosts that a sanctioned gateway fronts: network
/// sightings of a fronted product whose host is one of its API domains (web use of the
/// same vendor, and the gateway host itself, are not bypass).
///
/// # Errors
/// Store failures.
pub async fn bypass<S: Store>(
    store: &S,
    catalog: &Catalog,
    overlay: &Overlay,
) -> Result<Vec<BypassRow>, StoreError> {
    let index = Index::new(catalog.clone());
    let mut rows = Vec::new();
    for gateway in overlay.gateways() {
        for product in &gateway.fronts {
            for s in store.process_sightings(product.clone()).await? {
                let api = index.domain(&s.value).is_some_and(|m| {
                    m.product.id == *product
                        && matches!(m.indicator, Indicator::Domain(DomainUse::Api))
                });
                if !api {
                    continue;
                }
                rows.push(BypassRow {
                    host_id: s.host_id,
                    hostname: s.hostname,
                    owner_email: s.owner_email,
                    process: s.process,
                    product: s.product,
                    host: s.value,
                    gateway: gateway.id.clone(),
                    gateway_host: gateway.host.clone(),
                    first_seen: s.first_seen,
                    last_seen: s.last_seen,
                    count: s.count,
                });
            }
        }
    }
    Ok(rows)
}

/// `GET /api/v1/reports/bypass` (any API token): `{"overlay_version": n, "rows": [...]}`.
pub(super) async fn bypass_report<S: Store>(
    State(state): Shared<S>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    person(&state, &headers).await?;
    let Some(overlay) = latest(&state).await? else {
        return Ok(Json(serde_json::json!({ "overlay_version": 0, "rows": [] })).into_response());
    };
    let rows = timed(&state, bypass(&state.store, &state.catalog, &overlay)).await?;
    Ok(Json(serde_json::json!({ "overlay_version": overlay.version(), "rows": rows }))
        .into_response())
}
