//! Inventory rows and product detail: store reads joined with the catalog and reviews.
//!
//! Catalog facts (vendor, name, category) come from the catalog, review status from the
//! review table, usage from the store; a product seen but absent from the collector's
//! catalog (an agent with a newer catalog) is shown with its id as name and empty vendor.

use std::collections::{BTreeMap, BTreeSet};

use aiscout_signatures::Catalog;
use aiscout_wire::{
    InventoryQuery, InventoryRow, ProductDetail, ProductDevice, ProductStatus, ReviewStatus,
    SourceSummary,
};

use crate::model::{DeviceUsage, ProductUsage, Review, SourceUsage, UsageFilter};

fn u64_of(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

/// The store-side part of an inventory query.
pub fn usage_filter(q: &InventoryQuery) -> UsageFilter {
    UsageFilter {
        product: q.product.clone(),
        kind: q.source.clone(),
        department: q.department.clone(),
        since: q.since,
        until: q.until,
    }
}

/// The status of a product given its review, if any.
pub fn status(review: Option<&Review>) -> ProductStatus {
    review
        .and_then(|r| ReviewStatus::parse(&r.status))
        .map_or(ProductStatus::Unreviewed, ProductStatus::from)
}

fn catalog_facts(catalog: &Catalog, id: &str) -> (String, String, String) {
    catalog.product(id).map_or_else(
        || (String::new(), id.to_owned(), String::new()),
        |p| (p.vendor.clone(), p.name.clone(), p.category.as_str().to_owned()),
    )
}

/// Builds inventory rows and applies the catalog-side filters (status, category).
pub fn inventory(
    catalog: &Catalog,
    query: &InventoryQuery,
    sources: Vec<SourceUsage>,
    products: Vec<ProductUsage>,
    reviews: &[Review],
) -> Vec<InventoryRow> {
    let reviews: BTreeMap<&str, &Review> =
        reviews.iter().map(|r| (r.product.as_str(), r)).collect();
    let mut by_product: BTreeMap<String, Vec<SourceUsage>> = BTreeMap::new();
    for s in sources {
        by_product.entry(s.product.clone()).or_default().push(s);
    }
    products
        .into_iter()
        .filter_map(|p| {
            let srcs = by_product.remove(&p.product)?;
            let (vendor, name, category) = catalog_facts(catalog, &p.product);
            let status = status(reviews.get(p.product.as_str()).copied());
            let sources: BTreeSet<String> = srcs.iter().map(|s| s.source.clone()).collect();
            Some(InventoryRow {
                vendor,
                name,
                category,
                status,
                sources: sources.into_iter().collect(),
                devices: u64_of(p.devices),
                users: u64_of(p.users),
                departments: p.departments,
                first_seen: srcs.iter().map(|s| s.first_seen).min().unwrap_or(0),
                last_seen: srcs.iter().map(|s| s.last_seen).max().unwrap_or(0),
                sightings: srcs.iter().map(|s| u64_of(s.count)).sum(),
                product: p.product,
            })
        })
        .filter(|row| query.status.is_none_or(|s| s == row.status))
        .filter(|row| query.category.as_ref().is_none_or(|c| *c == row.category))
        .collect()
}

/// Builds a product's detail.
pub fn product_detail(
    catalog: &Catalog,
    product: &str,
    sources: Vec<SourceUsage>,
    devices: Vec<DeviceUsage>,
    review: Option<Review>,
) -> ProductDetail {
    let (vendor, name, category) = catalog_facts(catalog, product);
    ProductDetail {
        product: product.to_owned(),
        vendor,
        name,
        category,
        status: status(review.as_ref()),
        review: review.and_then(|r| {
            Some(aiscout_wire::Review {
                status: ReviewStatus::parse(&r.status)?,
                product: r.product,
                note: r.note,
                reviewed_by: r.reviewed_by,
                reviewed_at: r.reviewed_at,
            })
        }),
        sources: sources
            .into_iter()
            .map(|s| SourceSummary {
                source: s.source,
                first_seen: s.first_seen,
                last_seen: s.last_seen,
                count: u64_of(s.count),
                devices: u64_of(s.devices),
            })
            .collect(),
        devices: devices
            .into_iter()
            .map(|d| ProductDevice {
                host_id: d.host_id,
                hostname: d.hostname,
                owner_email: d.owner_email,
                users: d.users,
                first_seen: d.first_seen,
                last_seen: d.last_seen,
                count: u64_of(d.count),
            })
            .collect(),
    }
}
