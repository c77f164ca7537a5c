//! The organisation overlay (issue 17): an admin's own AI products and sanctioned gateway
//! hosts, stored versioned, signed with the collector's own Ed25519 key when served to
//! agents (`GET /api/v1/overlay`), and the gateway-bypass report built from it.
//!
//! Signing is deterministic (Ed25519), so every collector on one store with the same key
//! serves the same bytes for a version; each instance also remembers the highest version it
//! served and never serves a lower one.
//!
//! Each instance keeps the stored overlay it last read, validated and (once an agent asked)
//! signed, in an [`OverlayCache`] keyed by its version. Every use first reads the highest
//! stored version ([`Store::overlay_version`], one index lookup) and reads the document again
//! only when that changed, so a heartbeat never reads the document, and a write by the
//! console, the API, the CLI or another collector on the same database is served at the next
//! use. The database stays the source of truth: the cache never answers for a version it does
//! not hold.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use aiscout_signatures::Overlay;
use aiscout_wire::{Secret, UnixSecs};

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
    /// When this instance last served the overlay to an agent (Unix seconds; 0: never).
    pub last_served: AtomicI64,
}

impl OverlaySigner {
    /// A signer for a private key (hex PKCS#8).
    pub fn new(key: Secret) -> Self {
        Self { key, served: AtomicU64::new(0), last_served: AtomicI64::new(0) }
    }
}

/// The public key (hex) of the overlay key file in `dir`, without creating one: `None` when
/// the collector has none yet.
///
/// # Errors
/// An unreadable or malformed key file.
pub fn public_key(dir: &std::path::Path) -> Result<Option<String>, OverlayKeyError> {
    let path = dir.join("overlay.key");
    if !path.exists() {
        return Ok(None);
    }
    load_or_generate_key(dir).map(|(_, public)| Some(public))
}

/// Why the overlay key could not be read or made. The cause is in the message, not in
/// `source()` (issue 18).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OverlayKeyError {
    /// A new key pair could not be generated.
    #[error("{error}")]
    Generate {
        /// Why.
        error: aiscout_signatures::sign::SignError,
    },
    /// The key file could not be read or written.
    #[error("{}: {error}", .path.display())]
    Io {
        /// The key file.
        path: std::path::PathBuf,
        /// Why.
        error: std::io::Error,
    },
    /// The key file holds no usable private key.
    #[error("{}: {error}", .path.display())]
    Malformed {
        /// The key file.
        path: std::path::PathBuf,
        /// Why.
        error: aiscout_signatures::sign::SignError,
    },
}

/// The overlay key file in `dir`: read when present, else generated (0600). Returns the
/// private key and the public key (hex) agents pin as `overlay_key`.
///
/// # Errors
/// An unreadable or malformed key file, or one that cannot be written.
pub fn load_or_generate_key(dir: &std::path::Path) -> Result<(Secret, String), OverlayKeyError> {
    let path = dir.join("overlay.key");
    #[allow(clippy::disallowed_methods)] // Reason: the collector's own key file, 0600.
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t.trim().to_owned(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let (private, _) = aiscout_signatures::sign::generate()
                .map_err(|error| OverlayKeyError::Generate { error })?;
            crate::store::files::write_private(&path, private.as_bytes())
                .map_err(|error| OverlayKeyError::Io { path: path.clone(), error })?;
            private
        }
        Err(error) => return Err(OverlayKeyError::Io { path, error }),
    };
    let public = aiscout_signatures::sign::public_key(&text)
        .map_err(|error| OverlayKeyError::Malformed { path, error })?;
    Ok((Secret::new(text), public))
}

/// The stored overlay as this instance last read it (see the module documentation).
#[derive(Debug, Default)]
pub struct OverlayCache {
    entry: tokio::sync::Mutex<Option<Arc<Loaded>>>,
}

/// One stored overlay version, validated against the served catalog, and its signed
/// artifact once an agent asked for it.
#[derive(Debug)]
struct Loaded {
    overlay: Overlay,
    signed: OnceLock<Bytes>,
}

/// The overlay stored last, validated against the served catalog: from the cache while the
/// stored version is the one it holds, else read (and counted in
/// `aiscout_collector_overlay_loads_total`) and kept.
async fn latest<S: Store>(state: &AppState<S>) -> Result<Option<Arc<Loaded>>, ApiError> {
    let Some(version) = timed(state, state.store.overlay_version()).await? else {
        return Ok(None);
    };
    // One reader per instance at a time, so a new version is read once, not once per agent.
    let mut entry = state.overlay_cache.entry.lock().await;
    if let Some(loaded) = entry.as_ref()
        && i64::try_from(loaded.overlay.version()).ok() == Some(version)
    {
        return Ok(Some(Arc::clone(loaded)));
    }
    Metrics::inc(&state.metrics.overlay_loads, 1);
    let Some(overlay) = stored(&state.store, &state.catalog).await? else { return Ok(None) };
    let loaded = Arc::new(Loaded { overlay, signed: OnceLock::new() });
    *entry = Some(Arc::clone(&loaded));
    Ok(Some(loaded))
}

/// The overlay version the heartbeat acknowledgement names (none without a signer): the
/// stored version only, never the document.
pub(super) async fn version<S: Store>(state: &AppState<S>) -> Option<u64> {
    state.overlay.as_ref()?;
    let v = timed(state, state.store.overlay_version()).await.ok()??;
    u64::try_from(v).ok()
}

/// The product ids the stored overlay adds (for the sightings check).
pub(super) async fn product_ids<S: Store>(state: &AppState<S>) -> Vec<String> {
    match latest(state).await {
        Ok(Some(loaded)) => loaded
            .overlay
            .products()
            .iter()
            .map(|p| p.id.clone())
            .chain(loaded.overlay.gateways().iter().map(|g| g.id.clone()))
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
    let loaded = latest(&state).await?.ok_or_else(none)?;
    let overlay = &loaded.overlay;
    let served = signer.served.fetch_max(overlay.version(), Ordering::SeqCst);
    if overlay.version() < served {
        // Never serve an older overlay than this instance served before.
        return Err(ApiError::NotFound(format!(
            "overlay version {} is older than version {served} served before",
            overlay.version()
        )));
    }
    let bytes = match loaded.signed.get() {
        Some(bytes) => bytes.clone(),
        None => {
            let bytes = aiscout_signatures::sign::sign_overlay(overlay, signer.key.expose())
                .map_err(ApiError::SignOverlay)?;
            // Deterministic signing: a racing request signed the same bytes.
            loaded.signed.get_or_init(|| Bytes::from(bytes)).clone()
        }
    };
    signer.last_served.store(crate::store::now(), Ordering::Relaxed);
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

/// Why an overlay write was refused.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// The new document breaks the overlay rules; `field` is its JSON path.
    #[error("{field}: {message}")]
    Invalid {
        /// Where: `products[0].domains[1]`, `gateways[0].fronts`.
        field: String,
        /// What is wrong.
        message: String,
    },
    /// Another admin wrote this version first.
    #[error("overlay version {0} was written by someone else; reload and retry")]
    Conflict(u64),
    /// A removal named an id the overlay does not have.
    #[error("the overlay has no product or gateway {0:?}")]
    NoSuchEntry(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<WriteError> for ApiError {
    fn from(e: WriteError) -> Self {
        match e {
            WriteError::Invalid { field, message } => {
                ApiError::BadRequest { field: Some(field), message }
            }
            WriteError::Store(e) => e.into(),
            WriteError::NoSuchEntry(_) => ApiError::NotFound(e.to_string()),
            WriteError::Conflict(_) => ApiError::BadRequest { field: None, message: e.to_string() },
        }
    }
}

/// Validates and stores a new overlay version as `actor`; the new version. The one write
/// path: the API, the console and the CLI all come here, and each write is audited
/// (`overlay.update`) in the same transaction.
///
/// # Errors
/// A document that breaks the overlay rules (with its JSON path), a concurrent write, or the
/// store failing.
pub async fn write<S: Store>(
    store: &S,
    catalog: &Catalog,
    actor: &str,
    body: &[u8],
    change: Option<&str>,
) -> Result<u64, WriteError> {
    let previous = store.overlay().await?.map_or(0, |(v, _)| v);
    let next = u64::try_from(previous.saturating_add(1)).unwrap_or(1);
    let overlay = Overlay::from_json(next, body, catalog)
        .map_err(|e| WriteError::Invalid { field: e.path, message: e.message })?;
    let document = String::from_utf8(overlay.canonical_json()).unwrap_or_default();
    let mut after = serde_json::json!({
        "version": next,
        "products": overlay.products().len(),
        "gateways": overlay.gateways().len(),
    });
    if let Some(change) = change {
        after["change"] = change.into();
    }
    let audit = crate::model::AuditRecord {
        at: UnixSecs::now(),
        actor: actor.to_owned(),
        action: "overlay.update".into(),
        subject: format!("overlay/{next}"),
        before: Some(format!("{{\"version\":{previous}}}")),
        after: Some(after.to_string()),
    };
    let version = i64::try_from(next).unwrap_or(i64::MAX);
    if store.put_overlay(version, document, audit).await? {
        Ok(next)
    } else {
        Err(WriteError::Conflict(next))
    }
}

/// One change to the stored overlay, as the console and the CLI make it.
#[derive(Clone, Debug)]
pub enum Edit {
    /// Adds a gateway, or replaces the one with its id.
    Gateway(aiscout_signatures::Gateway),
    /// Adds a product, or updates the one with its id (fields not given stay as they were).
    Product(ProductFields),
    /// Removes the product or gateway with this id.
    Remove(String),
}

/// The product fields the console form and the CLI set.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProductFields {
    /// `org.` id.
    pub id: String,
    /// Display name.
    pub name: String,
    /// Vendor (empty: "Organisation").
    pub vendor: String,
    /// Category (`chat`, `coding`, ...).
    pub category: String,
    /// Domains used in a browser.
    pub web_domains: Vec<String>,
    /// Domains used by programs (API hosts).
    pub api_domains: Vec<String>,
    /// Process names.
    pub process_names: Vec<String>,
    /// Command-line tool names.
    pub cli_names: Vec<String>,
}

impl ProductFields {
    fn to_json(&self) -> serde_json::Value {
        let domains: Vec<(&str, &str)> = self
            .web_domains
            .iter()
            .map(|d| (d.as_str(), "web"))
            .chain(self.api_domains.iter().map(|d| (d.as_str(), "api")))
            .collect();
        serde_json::json!({
            "id": self.id, "name": self.name, "vendor": self.vendor, "category": self.category,
            "domains": domains, "process_names": self.process_names, "cli_names": self.cli_names,
        })
    }
}

impl Edit {
    /// What the audit entry says changed.
    fn describe(&self) -> String {
        match self {
            Edit::Gateway(g) => format!("gateway {}", g.id),
            Edit::Product(p) => format!("product {}", p.id),
            Edit::Remove(id) => format!("remove {id}"),
        }
    }

    /// Applies the change to a stored document (`{"products":[...],"gateways":[...]}`).
    fn apply(&self, doc: &mut serde_json::Value) -> Result<(), WriteError> {
        use serde_json::Value;
        if !doc.is_object() {
            *doc = serde_json::json!({});
        }
        let list = |doc: &mut Value, key: &str| -> Vec<Value> {
            match doc.get_mut(key).map(Value::take) {
                Some(Value::Array(a)) => a,
                _ => Vec::new(),
            }
        };
        let same = |v: &Value, id: &str| v.get("id").and_then(Value::as_str) == Some(id);
        let (mut products, mut gateways) = (list(doc, "products"), list(doc, "gateways"));
        match self {
            Edit::Gateway(g) => {
                let value = serde_json::to_value(g).unwrap_or_default();
                match gateways.iter_mut().find(|v| same(v, &g.id)) {
                    Some(old) => *old = value,
                    None => gateways.push(value),
                }
            }
            Edit::Product(p) => {
                let Value::Object(new) = p.to_json() else { return Ok(()) };
                match products.iter_mut().find(|v| same(v, &p.id)) {
                    Some(Value::Object(old)) => old.extend(new),
                    Some(_) | None => products.push(Value::Object(new)),
                }
            }
            Edit::Remove(id) => {
                let before = products.len() + gateways.len();
                products.retain(|v| !same(v, id));
                gateways.retain(|v| !same(v, id));
                if products.len() + gateways.len() == before {
                    return Err(WriteError::NoSuchEntry(id.clone()));
                }
            }
        }
        doc["products"] = Value::Array(products);
        doc["gateways"] = Value::Array(gateways);
        Ok(())
    }
}

/// Applies `edit` to the stored overlay and writes the result as a new version through
/// [`write()`] (validated and audited as any other write).
///
/// # Errors
/// As [`write()`], and [`WriteError::NoSuchEntry`] for a removal of an unknown id.
pub async fn edit<S: Store>(
    store: &S,
    catalog: &Catalog,
    actor: &str,
    edit: &Edit,
) -> Result<u64, WriteError> {
    let mut doc = match store.overlay().await? {
        Some((_, d)) => serde_json::from_str(&d).unwrap_or_default(),
        None => serde_json::json!({}),
    };
    edit.apply(&mut doc)?;
    let body = serde_json::to_vec(&doc).unwrap_or_default();
    write(store, catalog, actor, &body, Some(&edit.describe())).await
}

/// The stored overlay, validated: `None` when none was ever written.
///
/// # Errors
/// The store fails, or the stored document no longer validates against `catalog` (a catalog
/// update that now claims one of its indicators); the message names the entry.
pub async fn stored<S: Store>(store: &S, catalog: &Catalog) -> Result<Option<Overlay>, WriteError> {
    let Some((version, document)) = store.overlay().await? else { return Ok(None) };
    let version = u64::try_from(version).unwrap_or(0);
    Overlay::from_json(version, document.as_bytes(), catalog)
        .map(Some)
        .map_err(|e| WriteError::Invalid { field: e.path, message: e.message })
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
    let version = write(&state.store, &state.catalog, &token.name, &body, None).await?;
    Ok(Json(serde_json::json!({ "version": version })).into_response())
}

/// One row of the bypass report: a device reached a provider's API host directly although
/// a sanctioned gateway fronts that provider.
pub type BypassRow = join::bypass::Bypass;

/// Traffic straight to provider API hosts that a sanctioned gateway fronts, per device,
/// process, host and gateway ([`crate::join::bypass`], which the inventory and the
/// reconciliation read too): web use of the same vendor, and the gateway host itself, are not
/// bypass.
///
/// # Errors
/// Store failures.
pub async fn bypass<S: Store>(store: &S, catalog: &Catalog) -> Result<Vec<BypassRow>, StoreError> {
    let fronted = join::bypass::read(store, None).await?;
    Ok(join::bypass::find(catalog, &fronted, None, None))
}

/// `GET /api/v1/reports/bypass` (any API token): `{"overlay_version": n, "rows": [...]}`.
pub(super) async fn bypass_report<S: Store>(
    State(state): Shared<S>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    person(&state, &headers).await?;
    let Some(loaded) = latest(&state).await? else {
        return Ok(Json(serde_json::json!({ "overlay_version": 0, "rows": [] })).into_response());
    };
    let overlay = &loaded.overlay;
    let rows = timed(&state, bypass(&state.store, &state.catalog)).await?;
    Ok(Json(serde_json::json!({ "overlay_version": overlay.version(), "rows": rows }))
        .into_response())
}
