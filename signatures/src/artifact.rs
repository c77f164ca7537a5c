//! The compiled catalog artifact: the one file agents download.
//!
//! Layout (all integers big-endian):
//!
//! ```text
//! offset  size  field
//! 0       8     magic "AISCAT\0\x01" (format 1)
//! 8       8     catalog version
//! 16      32    SHA-256 of the payload (the content hash)
//! 48      4     payload length n
//! 52      n     payload: canonical JSON of the products
//! 52+n    68    optional signature block: "SIG1" then the Ed25519 signature of bytes 0..52+n
//! ```
//!
//! The payload is canonical: products sorted by id, fields in a fixed order, no floats, no
//! optional white space, so the same sources and version always give the same bytes and the
//! same hash. The signature covers the header too, so the version cannot be changed without
//! breaking it. [`crate::verify`] checks the signature on these raw bytes before anything is
//! deserialised; [`decode_payload`] is only ever called on verified bytes.

use serde::{Deserialize, Serialize};

use crate::catalog::{
    Audience, Catalog, Category, ContextRule, DomainRule, DomainUse, Period, Price, Product,
    SharedDescriptor, WindowsApp,
};
use crate::risk::{Retention, RiskFacts, Sourced};

/// The magic bytes that start every artifact (format 1).
pub const MAGIC: [u8; 8] = *b"AISCAT\x00\x01";
/// Bytes before the payload.
pub const HEADER_LEN: usize = 52;
/// The tag that starts the signature block.
pub const SIGNATURE_TAG: [u8; 4] = *b"SIG1";
/// Length of an Ed25519 signature.
pub const SIGNATURE_LEN: usize = 64;
/// Length of the signature block.
pub const SIGNATURE_BLOCK_LEN: usize = SIGNATURE_TAG.len() + SIGNATURE_LEN;
/// The largest payload accepted: a catalog is a few hundred kilobytes.
pub const MAX_PAYLOAD_BYTES: u32 = 16 * 1024 * 1024;

/// The parsed header of an artifact (not yet trusted).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// The catalog version.
    pub version: u64,
    /// SHA-256 of the payload.
    pub content_hash: [u8; 32],
    /// Payload length in bytes.
    pub payload_len: u32,
}

/// Why bytes are not a well-formed artifact.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FormatError {
    /// Shorter than its header says it is.
    #[error("artifact is truncated: {actual} bytes, at least {expected} expected")]
    Truncated {
        /// The length the header implies.
        expected: usize,
        /// The length given.
        actual: usize,
    },
    /// Not an aiscout artifact of the kind expected (catalog or organisation overlay), or a
    /// format this build does not know.
    #[error("bad magic bytes (not an aiscout artifact of this kind)")]
    BadMagic,
    /// The header claims a payload larger than [`MAX_PAYLOAD_BYTES`].
    #[error("payload length {0} exceeds the {MAX_PAYLOAD_BYTES}-byte limit")]
    TooLarge(u32),
    /// Bytes after the payload that are not one signature block.
    #[error("{0} unexpected bytes after the payload")]
    TrailingBytes(usize),
}

/// An artifact split into its parts (not yet trusted).
#[derive(Clone, Copy, Debug)]
pub struct Parts<'a> {
    /// The header.
    pub header: Header,
    /// The bytes the signature covers (header and payload).
    pub signed: &'a [u8],
    /// The payload.
    pub payload: &'a [u8],
    /// The signature, when the artifact is signed.
    pub signature: Option<&'a [u8]>,
}

/// Splits an artifact into header, payload and signature without trusting any of it.
///
/// # Errors
/// See [`FormatError`].
pub fn split(bytes: &[u8]) -> Result<Parts<'_>, FormatError> {
    split_with(bytes, &MAGIC)
}

/// [`split`] for an artifact of the same layout whose magic bytes are `magic` (the
/// organisation overlay, [`crate::overlay::MAGIC`]): a catalog is never taken for an overlay
/// or the other way round.
///
/// # Errors
/// See [`FormatError`].
pub fn split_with<'a>(bytes: &'a [u8], magic_expected: &[u8; 8]) -> Result<Parts<'a>, FormatError> {
    let truncated = |expected| FormatError::Truncated { expected, actual: bytes.len() };
    let (header, _) = bytes.split_first_chunk::<HEADER_LEN>().ok_or(truncated(HEADER_LEN))?;
    let (magic, rest) = header.split_first_chunk::<8>().ok_or(truncated(HEADER_LEN))?;
    if magic != magic_expected {
        return Err(FormatError::BadMagic);
    }
    let (version, rest) = rest.split_first_chunk::<8>().ok_or(truncated(HEADER_LEN))?;
    let (hash, rest) = rest.split_first_chunk::<32>().ok_or(truncated(HEADER_LEN))?;
    let (len, _) = rest.split_first_chunk::<4>().ok_or(truncated(HEADER_LEN))?;
    let payload_len = u32::from_be_bytes(*len);
    if payload_len > MAX_PAYLOAD_BYTES {
        return Err(FormatError::TooLarge(payload_len));
    }
    let end = HEADER_LEN.saturating_add(payload_len as usize);
    let signed = bytes.get(..end).ok_or(truncated(end))?;
    let payload = bytes.get(HEADER_LEN..end).ok_or(truncated(end))?;
    let tail = bytes.get(end..).unwrap_or_default();
    let signature = match tail.len() {
        0 => None,
        SIGNATURE_BLOCK_LEN => match tail.split_first_chunk::<4>() {
            Some((tag, sig)) if *tag == SIGNATURE_TAG => Some(sig),
            _ => return Err(FormatError::TrailingBytes(tail.len())),
        },
        n if n < SIGNATURE_BLOCK_LEN
            && SIGNATURE_TAG.starts_with(tail.get(..4.min(n)).unwrap_or_default()) =>
        {
            return Err(truncated(end.saturating_add(SIGNATURE_BLOCK_LEN)));
        }
        n => return Err(FormatError::TrailingBytes(n)),
    };
    let header = Header { version: u64::from_be_bytes(*version), content_hash: *hash, payload_len };
    Ok(Parts { header, signed, payload, signature })
}

/// Encodes a catalog as an unsigned artifact (deterministic bytes).
pub fn encode_unsigned(catalog: &Catalog) -> Vec<u8> {
    encode_with(&MAGIC, catalog.version(), &canonical_payload(catalog))
}

/// Lays out an unsigned artifact: `magic`, `version`, the payload's hash, its length, itself.
pub(crate) fn encode_with(magic: &[u8; 8], version: u64, payload: &[u8]) -> Vec<u8> {
    let hash = ring::digest::digest(&ring::digest::SHA256, payload);
    let len = u32::try_from(payload.len()).unwrap_or(u32::MAX);
    let mut out = Vec::with_capacity(HEADER_LEN.saturating_add(payload.len()));
    out.extend_from_slice(magic);
    out.extend_from_slice(&version.to_be_bytes());
    out.extend_from_slice(hash.as_ref());
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// The SHA-256 content hash of a catalog's canonical payload.
pub fn content_hash(catalog: &Catalog) -> [u8; 32] {
    let digest = ring::digest::digest(&ring::digest::SHA256, &canonical_payload(catalog));
    let mut out = [0u8; 32];
    out.copy_from_slice(digest.as_ref());
    out
}

fn canonical_payload(catalog: &Catalog) -> Vec<u8> {
    let wire = WireCatalog {
        products: catalog.products().iter().map(WireProduct::from).collect(),
        shared: catalog.shared().iter().map(WireShared::from).collect(),
    };
    // Serialising plain structs of strings and integers into a Vec cannot fail; an empty
    // payload would fail verification loudly rather than ship.
    serde_json::to_vec(&wire).unwrap_or_default()
}

/// Why a verified payload could not be read (a signing-side bug, never an attack: the bytes
/// were signed by us).
#[derive(Clone, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PayloadError {
    /// Not the JSON document this crate writes (shared, so that the error stays `Clone`).
    #[error("payload is malformed: {0}")]
    Json(std::sync::Arc<serde_json::Error>),
    /// A product names a value this build does not know.
    #[error("payload is malformed: {0}")]
    Unknown(UnknownValue),
    /// An overlay entry breaks the overlay's rules.
    #[error("payload is malformed: {0}")]
    Overlay(crate::overlay::OverlayError),
}

impl PayloadError {
    pub(crate) fn json(error: serde_json::Error) -> Self {
        PayloadError::Json(std::sync::Arc::new(error))
    }
}

// By hand because `serde_json::Error` has no `PartialEq`: two JSON errors are the same when
// they say the same thing at the same place, which is what their message holds.
impl PartialEq for PayloadError {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (PayloadError::Json(a), PayloadError::Json(b)) => a.to_string() == b.to_string(),
            (PayloadError::Unknown(a), PayloadError::Unknown(b)) => a == b,
            (PayloadError::Overlay(a), PayloadError::Overlay(b)) => a == b,
            _ => false,
        }
    }
}

impl Eq for PayloadError {}

/// A product field whose value this build does not know (a category, domain use, period,
/// audience, risk fact…).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{product}: unknown {field} {value:?}")]
pub struct UnknownValue {
    /// The product's id.
    pub product: String,
    /// Which field: `category`, `domain use`, `period`, `audience`…
    pub field: &'static str,
    /// The value found.
    pub value: String,
}

/// Decodes a payload that [`crate::verify`] has already checked.
///
/// # Errors
/// A payload that is not the canonical JSON this crate writes.
pub fn decode_payload(version: u64, payload: &[u8]) -> Result<Catalog, PayloadError> {
    let wire: WireCatalog = serde_json::from_slice(payload).map_err(PayloadError::json)?;
    let products = wire
        .products
        .into_iter()
        .map(Product::try_from)
        .collect::<Result<Vec<_>, _>>()
        .map_err(PayloadError::Unknown)?;
    let shared = wire.shared.into_iter().map(SharedDescriptor::from).collect();
    Ok(Catalog::new(version, products).with_shared(shared))
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct WireCatalog {
    products: Vec<WireProduct>,
    // Absent in artifacts signed before shared descriptors existed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    shared: Vec<WireShared>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct WireShared {
    descriptor: String,
    reason: String,
    source: String,
    rules: Vec<WireRule>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct WireRule {
    context: Vec<String>,
    product: Option<String>,
    source: String,
}

impl From<&SharedDescriptor> for WireShared {
    fn from(s: &SharedDescriptor) -> Self {
        Self {
            descriptor: s.descriptor.clone(),
            reason: s.reason.clone(),
            source: s.source.clone(),
            rules: s
                .rules
                .iter()
                .map(|r| WireRule {
                    context: r.context.clone(),
                    product: r.product.clone(),
                    source: r.source.clone(),
                })
                .collect(),
        }
    }
}

impl From<WireShared> for SharedDescriptor {
    fn from(w: WireShared) -> Self {
        Self {
            descriptor: w.descriptor,
            reason: w.reason,
            source: w.source,
            rules: w
                .rules
                .into_iter()
                .map(|r| ContextRule { context: r.context, product: r.product, source: r.source })
                .collect(),
        }
    }
}

/// A product on the wire; in an overlay document every field but `id`, `name` and `category`
/// may be left out.
#[derive(Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct WireProduct {
    id: String,
    vendor: String,
    name: String,
    category: String,
    domains: Vec<(String, String)>,
    macos_bundle_ids: Vec<String>,
    windows_apps: Vec<(String, Option<String>)>,
    linux_packages: Vec<String>,
    linux_desktop_ids: Vec<String>,
    process_names: Vec<String>,
    cli_names: Vec<String>,
    // Absent in artifacts built before package ids existed.
    #[serde(default)]
    packages: Vec<String>,
    vscode_extensions: Vec<String>,
    jetbrains_plugins: Vec<String>,
    chrome_extensions: Vec<String>,
    firefox_extensions: Vec<String>,
    local_ports: Vec<u16>,
    merchant_patterns: Vec<String>,
    model_prefixes: Vec<String>,
    prices: Vec<WirePrice>,
    sources: Vec<String>,
    /// Absent when no fact is known, to keep the artifact small.
    #[serde(default, skip_serializing_if = "WireRisk::is_empty")]
    risk: WireRisk,
}

/// The risk facts: each `[value, source]`, absent when unknown.
#[derive(Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct WireRisk {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    trains_consumer: Option<(bool, String)>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    trains_business: Option<(bool, String)>,
    /// `[days, policy, source]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    retention: Option<(Option<u32>, Option<String>, String)>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    soc2: Option<(bool, String)>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    iso27001: Option<(bool, String)>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    sso: Option<(bool, String)>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    scim: Option<(bool, String)>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    data_residency: Option<(Vec<String>, String)>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    enterprise_plan: Option<(bool, String)>,
}

impl WireRisk {
    fn is_empty(&self) -> bool {
        self.trains_consumer.is_none()
            && self.trains_business.is_none()
            && self.retention.is_none()
            && self.soc2.is_none()
            && self.iso27001.is_none()
            && self.sso.is_none()
            && self.scim.is_none()
            && self.data_residency.is_none()
            && self.enterprise_plan.is_none()
    }
}

fn to_pair<T: Clone>(s: &Option<Sourced<T>>) -> Option<(T, String)> {
    s.as_ref().map(|s| (s.value.clone(), s.source.clone()))
}

fn from_pair<T>(p: Option<(T, String)>) -> Option<Sourced<T>> {
    p.map(|(value, source)| Sourced { value, source })
}

impl From<&RiskFacts> for WireRisk {
    fn from(r: &RiskFacts) -> Self {
        Self {
            trains_consumer: to_pair(&r.trains_consumer),
            trains_business: to_pair(&r.trains_business),
            retention: r
                .retention
                .as_ref()
                .map(|s| (s.value.days, s.value.policy.clone(), s.source.clone())),
            soc2: to_pair(&r.soc2),
            iso27001: to_pair(&r.iso27001),
            sso: to_pair(&r.sso),
            scim: to_pair(&r.scim),
            data_residency: to_pair(&r.data_residency),
            enterprise_plan: to_pair(&r.enterprise_plan),
        }
    }
}

impl From<WireRisk> for RiskFacts {
    fn from(w: WireRisk) -> Self {
        Self {
            trains_consumer: from_pair(w.trains_consumer),
            trains_business: from_pair(w.trains_business),
            retention: w.retention.map(|(days, policy, source)| Sourced {
                value: Retention { days, policy },
                source,
            }),
            soc2: from_pair(w.soc2),
            iso27001: from_pair(w.iso27001),
            sso: from_pair(w.sso),
            scim: from_pair(w.scim),
            data_residency: from_pair(w.data_residency),
            enterprise_plan: from_pair(w.enterprise_plan),
        }
    }
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct WirePrice {
    plan: String,
    amount_minor: i64,
    currency: String,
    period: String,
    source: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    audience: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    min_seats: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    min_seats_source: Option<String>,
}

impl From<&Product> for WireProduct {
    fn from(p: &Product) -> Self {
        Self {
            id: p.id.clone(),
            vendor: p.vendor.clone(),
            name: p.name.clone(),
            category: p.category.as_str().to_owned(),
            domains: p
                .domains
                .iter()
                .map(|d| (d.pattern.clone(), d.usage.as_str().to_owned()))
                .collect(),
            macos_bundle_ids: p.macos_bundle_ids.clone(),
            windows_apps: p
                .windows_apps
                .iter()
                .map(|w| (w.display_name.clone(), w.publisher.clone()))
                .collect(),
            linux_packages: p.linux_packages.clone(),
            linux_desktop_ids: p.linux_desktop_ids.clone(),
            process_names: p.process_names.clone(),
            cli_names: p.cli_names.clone(),
            packages: p.packages.clone(),
            vscode_extensions: p.vscode_extensions.clone(),
            jetbrains_plugins: p.jetbrains_plugins.clone(),
            chrome_extensions: p.chrome_extensions.clone(),
            firefox_extensions: p.firefox_extensions.clone(),
            local_ports: p.local_ports.clone(),
            merchant_patterns: p.merchant_patterns.clone(),
            model_prefixes: p.model_prefixes.clone(),
            prices: p
                .prices
                .iter()
                .map(|pr| WirePrice {
                    plan: pr.plan.clone(),
                    amount_minor: pr.amount_minor,
                    currency: pr.currency.clone(),
                    period: pr.period.as_str().to_owned(),
                    source: pr.source.clone(),
                    audience: pr.audience.map(|a| a.as_str().to_owned()),
                    min_seats: pr.min_seats,
                    min_seats_source: pr.min_seats_source.clone(),
                })
                .collect(),
            sources: p.sources.clone(),
            risk: WireRisk::from(&p.risk),
        }
    }
}

impl TryFrom<WireProduct> for Product {
    type Error = UnknownValue;

    fn try_from(w: WireProduct) -> Result<Self, UnknownValue> {
        let bad = |field: &'static str, v: &str| UnknownValue {
            product: w.id.clone(),
            field,
            value: v.to_owned(),
        };
        let category = Category::parse(&w.category).ok_or_else(|| bad("category", &w.category))?;
        let mut domains = Vec::with_capacity(w.domains.len());
        for (pattern, usage) in &w.domains {
            let usage = match usage.as_str() {
                "api" => DomainUse::Api,
                "web" => DomainUse::Web,
                other => return Err(bad("domain use", other)),
            };
            domains.push(DomainRule { pattern: pattern.clone(), usage });
        }
        let mut prices = Vec::with_capacity(w.prices.len());
        for p in &w.prices {
            let period = match p.period.as_str() {
                "month" => Period::Month,
                "year" => Period::Year,
                other => return Err(bad("period", other)),
            };
            let audience = match p.audience.as_deref() {
                None => None,
                Some(a) => Some(Audience::parse(a).ok_or_else(|| bad("audience", a))?),
            };
            prices.push(Price {
                audience,
                plan: p.plan.clone(),
                amount_minor: p.amount_minor,
                currency: p.currency.clone(),
                period,
                source: p.source.clone(),
                min_seats: p.min_seats,
                min_seats_source: p.min_seats_source.clone(),
            });
        }
        Ok(Product {
            id: w.id,
            vendor: w.vendor,
            name: w.name,
            category,
            domains,
            macos_bundle_ids: w.macos_bundle_ids,
            windows_apps: w
                .windows_apps
                .into_iter()
                .map(|(display_name, publisher)| WindowsApp { display_name, publisher })
                .collect(),
            linux_packages: w.linux_packages,
            linux_desktop_ids: w.linux_desktop_ids,
            process_names: w.process_names,
            cli_names: w.cli_names,
            packages: w.packages,
            vscode_extensions: w.vscode_extensions,
            jetbrains_plugins: w.jetbrains_plugins,
            chrome_extensions: w.chrome_extensions,
            firefox_extensions: w.firefox_extensions,
            local_ports: w.local_ports,
            merchant_patterns: w.merchant_patterns,
            model_prefixes: w.model_prefixes,
            prices,
            sources: w.sources,
            risk: RiskFacts::from(w.risk),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn catalog(version: u64) -> Catalog {
        Catalog::builtin().map(|c| Catalog::new(version, c.products().to_vec())).expect("builtin")
    }

    #[test]
    fn encoding_is_deterministic_and_round_trips() {
        let a = encode_unsigned(&catalog(3));
        let b = encode_unsigned(&catalog(3));
        assert_eq!(a, b);
        let parts = split(&a).expect("split");
        assert_eq!(parts.header.version, 3);
        assert!(parts.signature.is_none());
        assert_eq!(parts.header.content_hash, content_hash(&catalog(3)));
        let back = decode_payload(3, parts.payload).expect("decode");
        assert_eq!(back, catalog(3));
        // The risk facts from catalog/risk/ travel in the artifact.
        let risk = &back.product("openai.chatgpt").expect("chatgpt").risk;
        assert_eq!(risk.soc2.as_ref().map(|s| s.value), Some(true));
        assert!(back.products().iter().any(|p| p.risk.is_empty()), "absent facts stay unknown");
    }

    #[test]
    fn a_payload_error_keeps_its_kind_and_says_what_is_wrong() {
        let json = decode_payload(1, b"{\"products\": [").unwrap_err();
        assert!(matches!(&json, PayloadError::Json(e) if e.is_eof()), "{json:?}");
        assert!(json.to_string().starts_with("payload is malformed: EOF while parsing"), "{json}");
        assert_eq!(json, json.clone());

        let mut wire: serde_json::Value =
            serde_json::from_slice(&canonical_payload(&catalog(1))).unwrap();
        wire["products"][0]["category"] = "robots".into();
        let id = wire["products"][0]["id"].as_str().unwrap().to_owned();
        let unknown = decode_payload(1, wire.to_string().as_bytes()).unwrap_err();
        let want = UnknownValue { product: id.clone(), field: "category", value: "robots".into() };
        assert_eq!(unknown, PayloadError::Unknown(want));
        assert_eq!(
            unknown.to_string(),
            format!("payload is malformed: {id}: unknown category \"robots\"")
        );
        assert_ne!(unknown, json);
    }

    #[test]
    fn malformed_headers() {
        let a = encode_unsigned(&catalog(1));
        assert_eq!(
            split(&a[..10]).err(),
            Some(FormatError::Truncated { expected: 52, actual: 10 })
        );
        let mut bad = a.clone();
        bad[0] = b'X';
        assert_eq!(split(&bad).err(), Some(FormatError::BadMagic));
        let cut = a.len() - 1;
        assert!(matches!(split(&a[..cut]), Err(FormatError::Truncated { .. })));
        let mut long = a.clone();
        long.extend_from_slice(b"junk");
        assert_eq!(split(&long).err(), Some(FormatError::TrailingBytes(4)));
        let mut half = a.clone();
        half.extend_from_slice(b"SIG1abc");
        assert!(matches!(split(&half), Err(FormatError::Truncated { .. })));
        let mut huge = a;
        huge[48..52].copy_from_slice(&u32::MAX.to_be_bytes());
        assert_eq!(split(&huge).err(), Some(FormatError::TooLarge(u32::MAX)));
    }
}
