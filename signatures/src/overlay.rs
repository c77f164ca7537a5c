//! The organisation overlay: an organisation's own AI tools and its sanctioned AI gateway
//! hosts, signed by the collector with its own Ed25519 key and merged by agents with the
//! vendor catalog (issue 17).
//!
//! The artifact has the catalog's layout ([`crate::artifact`]) with its own magic bytes
//! ([`MAGIC`]), so a catalog is never taken for an overlay or the other way round, and is
//! verified by [`crate::Verifier::verify_overlay`] under the same rules: signature first,
//! content hash, no rollback, and only then the payload is read.
//!
//! Payload: canonical JSON `{"products":[...],"gateways":[...]}`, products in the catalog's
//! wire form sorted by id, gateways sorted by id. Every id is in the organisation namespace
//! ([`ORG_PREFIX`]), so it never clashes with a vendor id; an overlay product whose indicator a
//! vendor product already claims is refused by [`merge`] with the indicator and the owner.
//! A gateway becomes a product of category gateway whose API domain is its host, so traffic
//! to it is seen as use of the gateway; the vendor products it fronts are listed so that the
//! collector can call traffic straight to their API hosts a bypass.

use serde::{Deserialize, Serialize};

use crate::artifact::{PayloadError, WireProduct};
use crate::catalog::{Catalog, Category, DomainRule, DomainUse, Product};
use crate::matcher::{AppRef, ExtensionRef, Index};

/// The magic bytes that start every overlay artifact (format 1).
pub const MAGIC: [u8; 8] = *b"AISOVL\x00\x01";
/// Every overlay id starts with this: vendor ids never do.
pub const ORG_PREFIX: &str = "org.";
/// Most products plus gateways in one overlay.
pub const MAX_ENTRIES: usize = 1_000;

/// A sanctioned gateway host and the vendor products whose APIs it fronts.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Gateway {
    /// Id in the organisation namespace (`org.llm-gateway`).
    pub id: String,
    /// The gateway's host name (`llm.corp.example`).
    pub host: String,
    /// Vendor product ids whose API it fronts (`openai.api`).
    pub fronts: Vec<String>,
}

/// A validated overlay: the organisation's products and gateways, at a version.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Overlay {
    version: u64,
    products: Vec<Product>,
    gateways: Vec<Gateway>,
}

/// Why an overlay document or a merge was refused; the message names the entry and field.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {message}")]
pub struct OverlayError {
    /// Where: `products[2].api_domains[0]`, `gateways[0].fronts[1]`.
    pub path: String,
    /// What is wrong.
    pub message: String,
}

fn problem(path: impl Into<String>, message: impl Into<String>) -> OverlayError {
    OverlayError { path: path.into(), message: message.into() }
}

/// The document an admin writes (and the canonical payload): products in the catalog's wire
/// form, gateways as above.
#[derive(Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct WireOverlay {
    products: Vec<WireProduct>,
    gateways: Vec<Gateway>,
}

impl Overlay {
    /// Parses and validates an overlay document (JSON, as the collector's API takes it) at a
    /// version, against the vendor catalog it will be merged with.
    ///
    /// # Errors
    /// The first problem, with its JSON path.
    pub fn from_json(version: u64, text: &[u8], vendor: &Catalog) -> Result<Self, OverlayError> {
        let wire: WireOverlay =
            serde_json::from_slice(text).map_err(|e| problem("document", e.to_string()))?;
        let overlay = Self::from_wire(version, wire)?;
        merge(vendor, &overlay)?;
        Ok(overlay)
    }

    fn from_wire(version: u64, wire: WireOverlay) -> Result<Self, OverlayError> {
        if wire.products.len().saturating_add(wire.gateways.len()) > MAX_ENTRIES {
            return Err(problem("document", format!("more than {MAX_ENTRIES} entries")));
        }
        let mut products = Vec::with_capacity(wire.products.len());
        for (i, w) in wire.products.into_iter().enumerate() {
            let path = format!("products[{i}]");
            let mut p = Product::try_from(w).map_err(|e| problem(&path, e.to_string()))?;
            check_id(&format!("{path}.id"), &p.id)?;
            if p.name.trim().is_empty() {
                return Err(problem(format!("{path}.name"), "must not be empty"));
            }
            if p.vendor.trim().is_empty() {
                "Organisation".clone_into(&mut p.vendor);
            }
            for (j, d) in p.domains.iter().enumerate() {
                crate::domain::validate_rule(&d.pattern)
                    .map_err(|e| problem(format!("{path}.domains[{j}]"), e.to_string()))?;
            }
            products.push(p);
        }
        let mut gateways = wire.gateways;
        for (i, g) in gateways.iter().enumerate() {
            let path = format!("gateways[{i}]");
            check_id(&format!("{path}.id"), &g.id)?;
            crate::domain::validate_rule(&g.host)
                .map_err(|e| problem(format!("{path}.host"), e.to_string()))?;
            if g.host.contains('*') {
                return Err(problem(format!("{path}.host"), "a gateway host is one name, no '*'"));
            }
            if g.fronts.is_empty() {
                return Err(problem(format!("{path}.fronts"), "name the products it fronts"));
            }
        }
        products.sort_by(|a, b| a.id.cmp(&b.id));
        gateways.sort_by(|a, b| a.id.cmp(&b.id));
        let mut ids: Vec<&str> = products.iter().map(|p| p.id.as_str()).collect();
        ids.extend(gateways.iter().map(|g| g.id.as_str()));
        ids.sort_unstable();
        if let Some(w) = ids.windows(2).find(|w| w.first() == w.get(1)) {
            let id = w.first().copied().unwrap_or_default();
            return Err(problem("document", format!("id {id:?} is used twice")));
        }
        Ok(Self { version, products, gateways })
    }

    /// The overlay version (agents refuse one older than they accepted before).
    pub fn version(&self) -> u64 {
        self.version
    }

    /// The organisation's products, sorted by id.
    pub fn products(&self) -> &[Product] {
        &self.products
    }

    /// The sanctioned gateways, sorted by id.
    pub fn gateways(&self) -> &[Gateway] {
        &self.gateways
    }

    /// The same content at another version.
    #[must_use]
    pub fn with_version(mut self, version: u64) -> Self {
        self.version = version;
        self
    }

    /// The canonical payload (deterministic bytes; also the form the collector stores).
    pub fn canonical_json(&self) -> Vec<u8> {
        let wire = WireOverlay {
            products: self.products.iter().map(WireProduct::from).collect(),
            gateways: self.gateways.clone(),
        };
        // Plain structs of strings and integers into a Vec cannot fail to serialise.
        serde_json::to_vec(&wire).unwrap_or_default()
    }

    /// The unsigned artifact ([`MAGIC`], version, hash, payload).
    pub fn encode_unsigned(&self) -> Vec<u8> {
        crate::artifact::encode_with(&MAGIC, self.version, &self.canonical_json())
    }

    /// The products the gateway products stand for: one per gateway, category gateway, its
    /// host as an API domain.
    fn gateway_products(&self) -> impl Iterator<Item = Product> + '_ {
        self.gateways.iter().map(|g| Product {
            id: g.id.clone(),
            vendor: "Organisation".into(),
            name: g.host.clone(),
            category: Category::Gateway,
            domains: vec![DomainRule { pattern: g.host.clone(), usage: DomainUse::Api }],
            ..Product::default()
        })
    }
}

fn check_id(path: &str, id: &str) -> Result<(), OverlayError> {
    let rest = id.strip_prefix(ORG_PREFIX).ok_or_else(|| {
        problem(path, format!("{id:?} must start with {ORG_PREFIX:?} (the organisation namespace)"))
    })?;
    let ok = !rest.is_empty()
        && rest.len() <= 100
        && rest
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        && !rest.starts_with(['-', '.'])
        && !rest.ends_with(['-', '.']);
    if ok {
        Ok(())
    } else {
        Err(problem(path, format!("{id:?}: after {ORG_PREFIX:?} use a-z, 0-9, '-' and '.'")))
    }
}

/// Decodes a payload that [`crate::verify`] has already checked.
///
/// # Errors
/// A payload that is not an overlay document or breaks its rules.
pub fn decode_payload(version: u64, payload: &[u8]) -> Result<Overlay, PayloadError> {
    let wire: WireOverlay = serde_json::from_slice(payload).map_err(PayloadError::json)?;
    Overlay::from_wire(version, wire).map_err(PayloadError::Overlay)
}

/// The vendor catalog with the overlay's products and gateways added, at the vendor
/// catalog's version. An overlay entry whose id or indicator a vendor product already has, or
/// a gateway that fronts a product the catalog does not know, is refused.
///
/// # Errors
/// The first collision, naming the overlay entry, the indicator and the vendor product.
pub fn merge(vendor: &Catalog, overlay: &Overlay) -> Result<Catalog, OverlayError> {
    let index = Index::new(vendor.clone());
    for (i, p) in overlay.products.iter().enumerate() {
        if let Some((field, value, owner)) = collision(&index, p) {
            return Err(problem(
                format!("products[{i}] ({}).{field}", p.id),
                format!(
                    "{value:?} is already an indicator of the vendor product {owner}; an \
                     indicator belongs to one product"
                ),
            ));
        }
    }
    for (i, g) in overlay.gateways.iter().enumerate() {
        if let Some(m) = index.domain(&g.host) {
            return Err(problem(
                format!("gateways[{i}] ({}).host", g.id),
                format!("{:?} is already a domain of the vendor product {}", g.host, m.product.id),
            ));
        }
        for (j, f) in g.fronts.iter().enumerate() {
            if vendor.product(f).is_none() {
                return Err(problem(
                    format!("gateways[{i}] ({}).fronts[{j}]", g.id),
                    format!("{f:?} is not a product of the vendor catalog"),
                ));
            }
        }
    }
    // Two overlay entries claiming one indicator: checked like the vendor catalog.
    // (Bounded by MAX_ENTRIES; an overlay is small, so the quadratic check is cheap.)
    let mut seen: Vec<Product> = Vec::new();
    for p in overlay.products.iter().cloned().chain(overlay.gateway_products()) {
        let earlier = Index::new(Catalog::new(0, seen.clone()));
        if let Some((field, value, owner)) = collision(&earlier, &p) {
            return Err(problem(
                format!("{}.{field}", p.id),
                format!("{value:?} is already an indicator of {owner} in this overlay"),
            ));
        }
        seen.push(p);
    }
    let mut products = vendor.products().to_vec();
    products.extend(seen);
    Ok(Catalog::new(vendor.version(), products))
}

/// The first indicator of `p` that `index` already matches: (field, value, owner id).
fn collision(index: &Index, p: &Product) -> Option<(&'static str, String, String)> {
    let hit = |field: &'static str, value: &str, m: Option<crate::Match<'_>>| {
        m.map(|m| (field, value.to_owned(), m.product.id.clone()))
    };
    for d in &p.domains {
        let probe = d.pattern.strip_prefix("*.").unwrap_or(&d.pattern);
        if let Some(c) = hit("domains", &d.pattern, index.domain(probe)) {
            return Some(c);
        }
    }
    let exact: [(&'static str, &[String]); 9] = [
        ("macos_bundle_ids", &p.macos_bundle_ids),
        ("linux_packages", &p.linux_packages),
        ("linux_desktop_ids", &p.linux_desktop_ids),
        ("process_names", &p.process_names),
        ("cli_names", &p.cli_names),
        ("vscode_extensions", &p.vscode_extensions),
        ("jetbrains_plugins", &p.jetbrains_plugins),
        ("chrome_extensions", &p.chrome_extensions),
        ("firefox_extensions", &p.firefox_extensions),
    ];
    for (field, values) in exact {
        for v in values {
            let owner = match field {
                "macos_bundle_ids" => index.app(AppRef::MacosBundleId(v)),
                "linux_packages" => index.app(AppRef::LinuxPackage(v)),
                "linux_desktop_ids" => index.app(AppRef::LinuxDesktopId(v)),
                "process_names" => index.process(v),
                "cli_names" => index.cli(v),
                "vscode_extensions" => index.extension(ExtensionRef::Vscode(v)),
                "jetbrains_plugins" => index.extension(ExtensionRef::Jetbrains(v)),
                "chrome_extensions" => index.extension(ExtensionRef::Chrome(v)),
                _ => index.extension(ExtensionRef::Firefox(v)),
            };
            if let Some(c) = hit(field, v, owner) {
                return Some(c);
            }
        }
    }
    for w in &p.windows_apps {
        let app =
            AppRef::WindowsApp { display_name: &w.display_name, publisher: w.publisher.as_deref() };
        if let Some(c) = hit("windows_apps", &w.display_name, index.app(app)) {
            return Some(c);
        }
    }
    for port in &p.local_ports {
        if let Some(c) = hit("local_ports", &port.to_string(), index.local_port(*port)) {
            return Some(c);
        }
    }
    for m in &p.merchant_patterns {
        if let Some(c) = hit("merchant_patterns", m, index.merchant(m)) {
            return Some(c);
        }
    }
    for m in &p.model_prefixes {
        if let Some(c) = hit("model_prefixes", m, index.model(m)) {
            return Some(c);
        }
    }
    None
}

#[cfg(test)]
#[cfg(feature = "signing")]
mod tests {
    use super::*;
    use crate::{Artifact, Verifier, VerifyError};

    fn vendor() -> Catalog {
        Catalog::builtin().expect("builtin")
    }

    #[test]
    fn a_payload_that_breaks_the_overlay_rules_is_an_overlay_error_naming_the_field() {
        let doc = br#"{"gateways": [{"id": "llm-gateway", "host": "llm.corp.example",
                                     "fronts": ["openai.api"]}]}"#;
        let e = decode_payload(1, doc).unwrap_err();
        let PayloadError::Overlay(overlay) = &e else { panic!("{e:?}") };
        assert_eq!(overlay.path, "gateways[0].id");
        assert!(e.to_string().starts_with("payload is malformed: gateways[0].id: "), "{e}");
        let e = decode_payload(1, b"{\"products\": 1}").unwrap_err();
        assert!(matches!(e, PayloadError::Json(_)), "{e:?}");
    }

    const DOC: &str = r#"{
        "products": [{"id": "org.helpdesk-bot", "name": "Helpdesk Bot", "category": "chat",
                      "domains": [["helpbot.corp.example", "web"]],
                      "process_names": ["helpbot"]}],
        "gateways": [{"id": "org.llm-gateway", "host": "llm.corp.example",
                      "fronts": ["openai.api"]}]
    }"#;

    fn keys() -> (String, Verifier) {
        let (private, public) = crate::sign::generate().expect("keygen");
        (private, Verifier::from_hex(&public).expect("key"))
    }

    #[test]
    fn signed_overlay_verifies_and_merges() {
        let (private, verifier) = keys();
        let overlay = Overlay::from_json(4, DOC.as_bytes(), &vendor()).expect("valid");
        let bytes = crate::sign::sign_overlay(&overlay, &private).expect("sign");
        let back = verifier.verify_overlay(&bytes, Some(4)).expect("verifies");
        assert_eq!(back, overlay);
        let merged = merge(&vendor(), &back).expect("merge");
        assert_eq!(merged.version(), vendor().version(), "the vendor version stays");
        let index = Index::new(merged);
        assert_eq!(
            index.domain("helpbot.corp.example").map(|m| m.product.id.as_str()),
            Some("org.helpdesk-bot")
        );
        assert_eq!(
            index.process("helpbot").map(|m| m.product.id.as_str()),
            Some("org.helpdesk-bot")
        );
        let gw = index.domain("llm.corp.example").expect("gateway host");
        assert_eq!(
            (gw.product.id.as_str(), gw.product.category),
            ("org.llm-gateway", Category::Gateway)
        );
        assert_eq!(
            index.domain("api.openai.com").map(|m| m.product.id.as_str()),
            Some("openai.api")
        );
    }

    #[test]
    fn tampered_older_and_wrong_kind_are_refused() {
        let (private, verifier) = keys();
        let overlay = Overlay::from_json(4, DOC.as_bytes(), &vendor()).expect("valid");
        let bytes = crate::sign::sign_overlay(&overlay, &private).expect("sign");
        let mut tampered = bytes.clone();
        let at = crate::artifact::HEADER_LEN + 10;
        tampered[at] ^= 1;
        assert_eq!(
            verifier.verify_overlay(&tampered, None),
            Err(VerifyError::BadSignature(Artifact::Overlay))
        );
        assert_eq!(
            verifier.verify_overlay(&bytes, Some(5)),
            Err(VerifyError::Rollback { artifact: Artifact::Overlay, offered: 4, current: 5 })
        );
        let (_, other) = keys();
        assert_eq!(
            other.verify_overlay(&bytes, None),
            Err(VerifyError::BadSignature(Artifact::Overlay))
        );
        // A catalog signed by the same key is not an overlay, nor the other way round.
        let catalog = crate::sign::sign(&crate::artifact::encode_unsigned(&vendor()), &private)
            .expect("sign");
        assert!(matches!(verifier.verify_overlay(&catalog, None), Err(VerifyError::Format { .. })));
        assert!(matches!(verifier.verify(&bytes, None), Err(VerifyError::Format { .. })));
    }

    /// Issue 17: an overlay refusal names the organisation overlay, never the catalog, so an
    /// operator fixes `overlay_key`, not `catalog_key`.
    #[test]
    fn every_overlay_refusal_names_the_overlay() {
        let (private, verifier) = keys();
        let overlay = Overlay::from_json(4, DOC.as_bytes(), &vendor()).expect("valid");
        let bytes = crate::sign::sign_overlay(&overlay, &private).expect("sign");
        let mut tampered = bytes.clone();
        tampered[crate::artifact::HEADER_LEN + 10] ^= 1;
        let unsigned = &bytes[..bytes.len() - crate::artifact::SIGNATURE_BLOCK_LEN];
        let catalog = crate::sign::sign(&crate::artifact::encode_unsigned(&vendor()), &private)
            .expect("sign");
        let (_, other) = keys();
        let refusals = [
            verifier.verify_overlay(&tampered, None),
            verifier.verify_overlay(&bytes, Some(5)),
            verifier.verify_overlay(unsigned, None),
            verifier.verify_overlay(&bytes[..40], None),
            verifier.verify_overlay(&catalog, None),
            other.verify_overlay(&bytes, None),
        ];
        for refused in refusals {
            let error = refused.expect_err("refused");
            assert_eq!(error.artifact(), Artifact::Overlay);
            let text = error.to_string();
            assert!(text.starts_with("organisation overlay "), "{text}");
            assert!(!text.contains("catalog"), "{text}");
        }
        // And the catalog's say so.
        let refused = verifier.verify(&bytes, None).expect_err("an overlay is not a catalog");
        assert!(refused.to_string().starts_with("catalog refused: bad magic"), "{refused}");
    }

    #[test]
    fn collisions_and_bad_ids_are_refused_with_their_path() {
        let v = vendor();
        let err =
            |doc: &str| Overlay::from_json(1, doc.as_bytes(), &v).expect_err("refused").to_string();
        let vendor_domain = r#"{"products":[{"id":"org.x","name":"X","category":"chat","domains":[["chat.chatgpt.com","web"]]}]}"#;
        assert!(err(vendor_domain).contains("products[0] (org.x).domains: \"chat.chatgpt.com\" is already an indicator of the vendor product openai.chatgpt"), "{}", err(vendor_domain));
        let no_ns = r#"{"products":[{"id":"openai.chatgpt2","name":"X","category":"chat"}]}"#;
        assert!(
            err(no_ns).starts_with("products[0].id: \"openai.chatgpt2\" must start with \"org.\""),
            "{}",
            err(no_ns)
        );
        let unknown_front =
            r#"{"gateways":[{"id":"org.gw","host":"gw.corp.example","fronts":["nobody.api"]}]}"#;
        assert!(
            err(unknown_front).contains("fronts[0]: \"nobody.api\" is not a product"),
            "{}",
            err(unknown_front)
        );
        let vendor_host =
            r#"{"gateways":[{"id":"org.gw","host":"api.openai.com","fronts":["openai.api"]}]}"#;
        assert!(
            err(vendor_host).contains("already a domain of the vendor product openai.api"),
            "{}",
            err(vendor_host)
        );
        let twice = r#"{"products":[{"id":"org.a","name":"A","category":"chat","cli_names":["corp-ai"]},{"id":"org.b","name":"B","category":"chat","cli_names":["corp-ai"]}]}"#;
        assert!(
            err(twice).contains("org.b.cli_names: \"corp-ai\" is already an indicator of org.a"),
            "{}",
            err(twice)
        );
        let bad_domain = r#"{"products":[{"id":"org.a","name":"A","category":"chat","domains":[["Bad Domain","web"]]}]}"#;
        assert!(err(bad_domain).starts_with("products[0].domains[0]:"), "{}", err(bad_domain));
        assert!(err("{\"products\": 3}").starts_with("document:"));
        // Not a vendor collision: a name under a different label boundary.
        let near = r#"{"products":[{"id":"org.a","name":"A","category":"chat","domains":[["notopenai.com","web"]]}]}"#;
        assert!(Overlay::from_json(1, near.as_bytes(), &v).is_ok());
    }
}
