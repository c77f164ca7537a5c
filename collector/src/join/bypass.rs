//! Gateway bypass (issue 17): traffic from a device straight to a provider's API host while a
//! sanctioned gateway of the organisation overlay fronts that provider.
//!
//! [`read`] takes the gateways of the stored overlay and the network sightings (`dns`,
//! `tls_sni`, `quic_sni`) of the products they front, each with the process the agent
//! attributed it to (`agent/src/attribution.rs`); [`find`] keeps the sightings whose
//! host name is one of the product's API domains (the product's most specific domain rule
//! says `api`), so web use of the same vendor is not bypass, and neither is the gateway's own
//! host (a sighting of the gateway, not of the provider). A product no gateway fronts is never
//! bypass. The inventory, the reconciliation and `GET /api/v1/reports/bypass` all come here.
//!
//! The store's rows are summed over all time per device, host name, process and kind; a period
//! keeps a row when its first and last sighting overlap the period. The stored overlay was
//! validated when written, so only its gateways are read here: a catalog update that makes one
//! of its organisation products collide with a vendor indicator does not hide bypass.

use std::collections::BTreeMap;

use aiscout_signatures::domain::DomainMatcher;
use aiscout_signatures::{Catalog, DomainUse, Gateway};
use aiscout_wire::UnixSecs;

use crate::model::ProcessSighting;
use crate::store::{Store, StoreError};

/// The gateways of the stored overlay and the network sightings of the products they front.
#[derive(Clone, Debug, Default)]
pub struct Fronted {
    /// The overlay's gateways (none without an overlay).
    pub gateways: Vec<Gateway>,
    /// Network sightings of every fronted product, per device, host name, process and kind.
    pub sightings: Vec<ProcessSighting>,
}

/// One bypass: a device (and its owner) reached a fronted provider's API host directly from a
/// process, summed over the sighting kinds. Serialised as it is, it is a row of
/// `GET /api/v1/reports/bypass`.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Bypass {
    /// Host id of the device.
    pub host_id: String,
    /// Its host name.
    pub hostname: String,
    /// Its owner, when known.
    pub owner_email: Option<String>,
    /// The process that made the traffic (`""` when not attributed).
    pub process: String,
    /// The provider product reached directly.
    pub product: String,
    /// The API host name seen.
    pub host: String,
    /// The gateway that fronts the product (its overlay id).
    pub gateway: String,
    /// The gateway's host.
    pub gateway_host: String,
    /// First seen.
    pub first_seen: UnixSecs,
    /// Last seen.
    pub last_seen: UnixSecs,
    /// Times seen.
    pub count: i64,
}

/// The gateways of the stored overlay, without validating its products (see the module
/// documentation); none when no overlay was written or it holds no gateway.
fn gateways(document: &str) -> Vec<Gateway> {
    #[derive(serde::Deserialize)]
    struct Document {
        #[serde(default)]
        gateways: Vec<Gateway>,
    }
    serde_json::from_str::<Document>(document).map(|d| d.gateways).unwrap_or_default()
}

/// Reads the stored overlay's gateways and the network sightings of the products they front,
/// only of `product` when given. Without an overlay gateway this is one small query.
///
/// # Errors
/// A store read fails.
pub async fn read<S: Store>(store: &S, product: Option<&str>) -> Result<Fronted, StoreError> {
    let Some((_, document)) = store.overlay().await? else { return Ok(Fronted::default()) };
    let gateways = gateways(&document);
    let mut products: Vec<&String> = gateways
        .iter()
        .flat_map(|g| &g.fronts)
        .filter(|p| product.is_none_or(|q| q == p.as_str()))
        .collect();
    products.sort_unstable();
    products.dedup();
    let mut sightings = Vec::new();
    for p in products {
        sightings.extend(store.process_sightings(p.clone()).await?);
    }
    Ok(Fronted { gateways, sightings })
}

/// The bypasses in `fronted` seen within `[since, until]`, summed per product, device,
/// process, API host and gateway; sorted by product, host id, process, host and gateway.
pub fn find(
    catalog: &Catalog,
    fronted: &Fronted,
    since: Option<i64>,
    until: Option<i64>,
) -> Vec<Bypass> {
    type Key<'k> = (&'k str, &'k str, &'k str, &'k str, &'k str);
    // Per fronted product, a matcher over its own domain rules: the sighting is the agent's
    // match of the product, so its most specific rule of the product says web or API.
    let mut matchers: BTreeMap<&str, DomainMatcher<DomainUse>> = BTreeMap::new();
    for id in fronted.gateways.iter().flat_map(|g| &g.fronts) {
        if let Some(p) = catalog.product(id) {
            matchers.entry(id.as_str()).or_insert_with(|| {
                DomainMatcher::new(p.domains.iter().map(|d| (d.pattern.as_str(), d.usage)))
            });
        }
    }
    let mut acc: BTreeMap<Key<'_>, Bypass> = BTreeMap::new();
    for s in &fronted.sightings {
        if since.is_some_and(|t| s.last_seen < UnixSecs(t))
            || until.is_some_and(|t| s.first_seen > UnixSecs(t))
        {
            continue;
        }
        let api = matchers
            .get(s.product.as_str())
            .and_then(|m| m.lookup(&s.value))
            .is_some_and(|hit| hit.value == DomainUse::Api);
        if !api {
            continue;
        }
        for g in fronted.gateways.iter().filter(|g| g.fronts.contains(&s.product)) {
            let key = (
                s.product.as_str(),
                s.host_id.as_str(),
                s.process.as_str(),
                s.value.as_str(),
                g.id.as_str(),
            );
            let e = acc.entry(key).or_insert_with(|| Bypass {
                product: s.product.clone(),
                host_id: s.host_id.clone(),
                hostname: s.hostname.clone(),
                owner_email: s.owner_email.clone(),
                process: s.process.clone(),
                host: s.value.clone(),
                gateway: g.id.clone(),
                gateway_host: g.host.clone(),
                first_seen: s.first_seen,
                last_seen: s.last_seen,
                count: 0,
            });
            e.first_seen = e.first_seen.min(s.first_seen);
            e.last_seen = e.last_seen.max(s.last_seen);
            e.count = e.count.saturating_add(s.count);
        }
    }
    acc.into_values().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sighting(product: &str, host_id: &str, value: &str, process: &str) -> ProcessSighting {
        ProcessSighting {
            host_id: host_id.into(),
            hostname: format!("{host_id}.local"),
            owner_email: Some(format!("{host_id}@example.com")),
            product: product.into(),
            kind: aiscout_wire::SightingKind::TlsSni,
            value: value.into(),
            process: process.into(),
            first_seen: UnixSecs(100),
            last_seen: UnixSecs(200),
            count: 2,
        }
    }

    #[test]
    fn only_api_hosts_of_fronted_products_in_the_period_are_bypass() {
        let catalog = Catalog::builtin().unwrap();
        let gateway = Gateway {
            id: "org.llm-gateway".into(),
            host: "llm.corp.example".into(),
            fronts: vec!["openai.api".into()],
        };
        let mut dns = sighting("openai.api", "laptop-1", "api.openai.com", "python3");
        dns.kind = aiscout_wire::SightingKind::Dns;
        let fronted = Fronted {
            gateways: vec![gateway],
            sightings: vec![
                sighting("openai.api", "laptop-1", "api.openai.com", "python3"),
                dns,
                // Another provider's API, which the gateway does not front.
                sighting("anthropic.api", "laptop-1", "api.anthropic.com", "python3"),
                // The web product of the same vendor.
                sighting("openai.chatgpt", "laptop-1", "chatgpt.com", "firefox"),
            ],
        };
        let rows = find(&catalog, &fronted, None, None);
        assert_eq!(rows.len(), 1, "{rows:?}");
        let r = &rows[0];
        assert_eq!((r.product.as_str(), r.process.as_str()), ("openai.api", "python3"));
        assert_eq!(
            (r.host.as_str(), r.gateway_host.as_str()),
            ("api.openai.com", "llm.corp.example")
        );
        assert_eq!(r.count, 4, "the DNS answer and the ClientHello are summed");
        assert!(find(&catalog, &fronted, Some(201), None).is_empty(), "seen before the period");
        assert!(find(&catalog, &fronted, None, Some(99)).is_empty(), "seen after the period");
        assert_eq!(find(&catalog, &fronted, Some(200), Some(100)).len(), 1);
    }

    #[test]
    fn the_stored_document_gives_its_gateways_and_nothing_else() {
        let doc = r#"{"products":[{"id":"org.x"}],"gateways":[{"id":"org.g","host":"g.example","fronts":["openai.api"]}]}"#;
        let g = gateways(doc);
        assert_eq!(g.len(), 1);
        assert_eq!(g[0].fronts, ["openai.api"]);
        assert!(gateways("{}").is_empty());
        assert!(gateways("not json").is_empty());
    }
}
