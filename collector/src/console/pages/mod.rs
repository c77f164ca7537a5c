//! One module per console page (or group of pages). Each handler checks the session and the
//! role first, reads through `join` and `Store`, and renders with `view` and `chart`.

pub(super) mod admin;
pub(super) mod alerts;
pub(super) mod audit;
pub(super) mod auth;
pub(super) mod devices;
pub(super) mod imports;
pub(super) mod inventory;
pub(super) mod overlay;
pub(super) mod overview;
pub(super) mod people;
pub(super) mod product;
pub(super) mod queue;
pub(super) mod reconcile;

use aiscout_wire::{InventoryQuery, InventoryRow};

use super::Refusal;
use crate::api::AppState;
use crate::join;
use crate::store::Store;

/// Inventory rows for `query`, through the same gather and join as the API.
pub(super) async fn inventory_rows<S: Store>(
    state: &AppState<S>,
    query: &InventoryQuery,
) -> Result<(Vec<InventoryRow>, join::Facts), Refusal> {
    let facts = join::gather_from(
        &state.store,
        Some(&state.cache),
        join::usage_filter(query),
        crate::store::now(),
        join::Purpose::Inventory,
    )
    .await?;
    let rows = join::inventory(&state.catalog, &state.risk, query, &facts);
    Ok((rows, facts))
}
