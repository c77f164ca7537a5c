//! `/devices`: agents, their health and staleness; `/devices/{host}`: one device's AI tools.

use std::sync::Arc;

use axum::extract::{Path, RawQuery, State};
use axum::http::HeaderMap;
use maud::html;

use crate::api::AppState;
use crate::console::view::{self, count, param, segment};
use crate::console::{Access, PageResult, Refusal, document, require};
use aiscout_wire::UnixSecs;

use crate::model::{DeviceQuery, DeviceSummary};
use crate::store::Store;

type Shared<S> = State<Arc<AppState<S>>>;

fn last_heartbeat(d: &DeviceSummary) -> UnixSecs {
    d.health.as_ref().map_or(d.last_contact, |h| h.received_at)
}

/// `GET /devices?q=&stale=1`.
pub(crate) async fn page<S: Store>(
    State(state): Shared<S>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> PageResult {
    let signed = require(&state, &headers, "/devices".into(), Access::Devices).await?;
    let pairs = crate::api::query_pairs(raw.as_deref());
    let now = crate::store::now();
    let stale_before = UnixSecs(now - state.console.stale_hours * 3600);
    let q = param(&pairs, "q").trim().to_lowercase();
    let only_stale = param(&pairs, "stale") == "1";
    let (page, offset, _) = view::page_bounds(&pairs, usize::MAX);
    let mut found = state
        .store
        .devices_page(DeviceQuery {
            search: q.clone(),
            stale_before,
            only_stale,
            offset: i64::try_from(offset).unwrap_or(i64::MAX),
            limit: i64::try_from(view::PER_PAGE).unwrap_or(50),
        })
        .await?;
    let matched = usize::try_from(found.matched).unwrap_or(0);
    let (last_page, ..) = view::page_bounds(&pairs, matched);
    if last_page < page {
        // Past the end (a stale link): the last page, as the other lists do.
        let offset = (last_page - 1) * view::PER_PAGE;
        found = state
            .store
            .devices_page(DeviceQuery {
                search: q,
                stale_before,
                only_stale,
                offset: i64::try_from(offset).unwrap_or(i64::MAX),
                limit: i64::try_from(view::PER_PAGE).unwrap_or(50),
            })
            .await?;
    }
    let (total, stale_total) = (found.total, found.stale);
    let devices = found.devices;
    let catalog_version = state.artifact.as_ref().map(|(_, v)| *v);
    let body = html! {
        main id="main" {
            h1 { "Devices" }
            section class="cards" aria-label="Agents" {
                div class="card" { span class="figure" { (count(u64::try_from(total).unwrap_or(0))) } span { "Enrolled devices" } }
                a class={ "card" @if stale_total > 0 { " attention" } } href="/devices?stale=1" { span class="figure" { (count(u64::try_from(stale_total).unwrap_or(0))) } span { "Silent for over " (state.console.stale_hours) " h" } }
                div class="card" { span class="figure" { @if let Some(v) = catalog_version { (v) } @else { "built-in" } } span { "Catalog version served" } }
            }
            form class="filters" method="get" action="/devices" role="search" {
                div { label for="q" { "Search" } input id="q" name="q" type="search" value=(param(&pairs, "q")) placeholder="host name, host id or owner"; }
                div class="check" {
                    @if param(&pairs, "stale") == "1" { input id="stale" name="stale" type="checkbox" value="1" checked; } @else { input id="stale" name="stale" type="checkbox" value="1"; }
                    label for="stale" { "Only silent devices" }
                }
                div class="actions" { button type="submit" { "Apply" } a href="/devices" { "Clear" } }
            }
            table class="data" {
                thead { tr {
                    th scope="col" { "Device" } th scope="col" { "Owner" } th scope="col" { "OS" } th scope="col" { "Agent" }
                    th scope="col" { "Catalog" } th scope="col" { "Last heartbeat" } th scope="col" { "Capture" } th scope="col" class="num" { "Spool" }
                } }
                tbody {
                    @for d in &devices {
                        @let stale = last_heartbeat(d) < stale_before;
                        tr class=[stale.then_some("stale")] {
                            td { a href={ "/devices/" (segment(&d.device.host_id)) } { (d.device.hostname) } br; span class="muted small" { (d.device.host_id) } @if let Some(of) = &d.duplicate_of { br; span class="badge warn" title="Another machine has the same host id (a clone); enrolled as a device of its own" { "shares host id " (of) } } }
                            td { (d.device.owner_email.as_deref().unwrap_or("")) }
                            td { (d.device.os) " " (d.device.os_version) }
                            td { (d.health.as_ref().map_or(d.device.agent_version.as_str(), |h| h.agent_version.as_str())) }
                            td { @if let Some(h) = &d.health { (h.catalog_version) } @else { "–" } }
                            td { (view::when(last_heartbeat(d), now)) @if stale { " " span class="badge blocked" { "silent" } } }
                            td { @if let Some(h) = &d.health { (count(u64::try_from(h.packets).unwrap_or(0))) " packets" @if h.drops > 0 { ", " (h.drops) " dropped" } } @else { "–" } }
                            td class="num" { @if let Some(h) = &d.health { (h.spool_depth) } @else { "–" } }
                        }
                    }
                }
            }
            @if devices.is_empty() { p class="empty" { "No device matches." } }
            (view::pager("/devices", &pairs, matched))
        }
    };
    Ok(document("Devices", Some(&signed), "/devices", body))
}

/// `GET /devices/{host}`.
pub(crate) async fn detail<S: Store>(
    State(state): Shared<S>,
    headers: HeaderMap,
    Path(host): Path<String>,
) -> PageResult {
    let signed =
        require(&state, &headers, format!("/devices/{}", segment(&host)), Access::Devices).await?;
    let Some(d) = state.store.device(host.clone()).await? else {
        return Err(Refusal::NotFound(format!("No enrolled device has the host id {host:?}.")));
    };
    let sightings = state.store.device_products(host.clone()).await?;
    let now = crate::store::now();
    let name = |p: &str| state.catalog.product(p).map_or(p.to_owned(), |x| x.name.clone());
    let body = html! {
        main id="main" {
            p class="crumbs" { a href="/devices" { "Devices" } " / " (d.device.hostname) }
            h1 { (d.device.hostname) }
            dl class="facts" {
                dt { "Host id" } dd { code { (d.device.host_id) } @if let Some(of) = &d.duplicate_of { " (a clone: shares host id " code { (of) } " with another machine)" } }
                dt { "Owner" } dd { (d.device.owner_email.as_deref().unwrap_or("unknown")) }
                dt { "OS" } dd { (d.device.os) " " (d.device.os_version) }
                dt { "Agent" } dd { (d.device.agent_version) }
                dt { "Enrolled" } dd { (view::when(d.enrolled_at.get(), now)) }
                dt { "Last heartbeat" } dd { (view::when(last_heartbeat(&d), now)) }
                @if let Some(h) = &d.health {
                    dt { "Catalog version" } dd { (h.catalog_version) }
                    dt { "Last inventory scan" } dd { @if let Some(t) = h.last_scan { (view::when(t.get(), now)) } @else { "never" } }
                }
            }
            h2 { "AI tools on this device" }
            @if sightings.is_empty() { p class="empty" { "Nothing seen yet." } }
            @else {
                table class="data" {
                    thead { tr { th scope="col" { "Product" } th scope="col" { "Source" } th scope="col" { "Matched" } th scope="col" class="num" { "Sightings" } th scope="col" { "First seen" } th scope="col" { "Last seen" } } }
                    tbody { @for s in &sightings { tr {
                        td { a href={ "/products/" (segment(&s.product)) } { (name(&s.product)) } }
                        td { (view::source_label(s.kind.as_str())) } td { code { (s.value) } }
                        td class="num" { (count(u64::try_from(s.count).unwrap_or(0))) }
                        td { (view::when(s.first_seen.get(), now)) } td { (view::when(s.last_seen.get(), now)) }
                    } } }
                }
            }
        }
    };
    Ok(document(&d.device.hostname, Some(&signed), "/devices", body))
}
