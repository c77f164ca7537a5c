//! `/admin/overlay`: the organisation overlay (issue 17) for admins: its products and
//! sanctioned gateways, with forms to add, edit and remove them. Every change goes through
//! [`crate::api::overlay::edit`], the same validated and audited write as the API and the CLI;
//! a refused change shows the page again with the field it names and what was typed.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use maud::{Markup, html};

use crate::api::AppState;
use crate::api::overlay::{self, Edit, ProductFields, WriteError};
use crate::console::view;
use crate::console::{
    Access, CSRF_FIELD, PageResult, Refusal, Signed, document, field, require, require_form,
    see_other,
};
use crate::store::Store;

type Shared<S> = State<Arc<AppState<S>>>;

const PATH: &str = "/admin/overlay";

/// What the forms show: empty, an entry to edit, or what was typed before a refusal.
#[derive(Default)]
struct Draft {
    product: ProductFields,
    gateway_id: String,
    gateway_host: String,
    gateway_fronts: String,
    /// The refusal, naming the field.
    error: Option<String>,
    /// Which form the error belongs to (`product`, `gateway`, `remove`).
    form: &'static str,
}

fn list(text: &str) -> Vec<String> {
    text.split([',', ' ', '\n', '\r', '\t']).filter(|s| !s.is_empty()).map(str::to_owned).collect()
}

async fn render<S: Store>(state: &AppState<S>, signed: &Signed, draft: Draft) -> PageResult {
    let stored = overlay::stored(&state.store, &state.catalog).await;
    let (current, broken) = match stored {
        Ok(o) => (o, None),
        Err(WriteError::Store(e)) => return Err(e.into()),
        Err(e) => (None, Some(e.to_string())),
    };
    let now = crate::store::now();
    let last_served = state.overlay.as_ref().map(|s| s.last_served.load(Ordering::Relaxed));
    let csrf = html! { input type="hidden" name=(CSRF_FIELD) value=(signed.session.csrf); };
    let error_for = |form: &str| -> Markup {
        html! {
            @if draft.form == form {
                @if let Some(e) = &draft.error {
                    p class="error" role="alert" id={ (form) "-error" } { "Not saved: " (e) }
                }
            }
        }
    };
    let p = &draft.product;
    let body = html! {
        main id="main" {
            p class="crumbs" { a href="/admin" { "Admin" } " / Organisation overlay" }
            h1 { "Organisation overlay" }
            p class="help" { "Your own AI tools and your sanctioned AI gateways. The collector signs them with its own key (" code { "overlay.key" } ") and agents that pin its public key (" code { "overlay_key" } ") merge them with the vendor catalog. Traffic straight to an API a gateway fronts is reported as bypass." }
            section class="panel" {
                h2 { "State" }
                dl class="facts" {
                    dt { "Version" } dd id="overlay-version" { @if let Some(o) = &current { (o.version()) } @else { "none written yet" } }
                    dt { "Served to agents" } dd { @match (&state.overlay, last_served) {
                        (None, _) => { "no: this collector has no overlay key" }
                        (Some(_), Some(at)) if at > 0 => { "last fetched from this collector " (view::when(at, now)) }
                        (Some(_), _) => { "not fetched from this collector since it started (agents fetch it when their heartbeat names a newer version)" }
                    } }
                }
                @if let Some(b) = &broken {
                    p class="error" role="alert" { "The stored overlay no longer validates against the catalog: " (b) ". Remove or change that entry." }
                }
            }
            section class="panel" aria-labelledby="products-h" {
                h2 id="products-h" { "Products" }
                @let products = current.as_ref().map(|o| o.products()).unwrap_or_default();
                @if products.is_empty() {
                    p class="empty" { "No organisation products yet." }
                } @else {
                    table class="data" {
                        thead { tr { th scope="col" { "Id" } th scope="col" { "Name" } th scope="col" { "Category" } th scope="col" { "Domains" } th scope="col" { "Processes and tools" } th scope="col" { span class="visually-hidden" { "Actions" } } } }
                        tbody { @for prod in products { tr {
                            td { code { (prod.id) } } td { (prod.name) } td { (prod.category.as_str()) }
                            td { @for d in &prod.domains { span class="chip" { (d.pattern) " (" (d.usage.as_str()) ")" } } }
                            td { @for n in prod.process_names.iter().chain(&prod.cli_names) { span class="chip" { (n) } } }
                            td {
                                a href={ (PATH) "?edit=" (view::url_encode(&prod.id)) "#product-form" } aria-label={ "Edit " (prod.id) } { "Edit" } " "
                                form method="post" action={ (PATH) "/remove" } class="inline" {
                                    (csrf)
                                    input type="hidden" name="id" value=(prod.id);
                                    button type="submit" class="danger" aria-label={ "Remove " (prod.id) } { "Remove" }
                                }
                            }
                        } } }
                    }
                }
                h3 id="product-form" { @if p.id.is_empty() { "Add a product" } @else { "Add or change a product" } }
                (error_for("product"))
                form method="post" action={ (PATH) "/products" } class="row" {
                    (csrf)
                    div { label for="p-id" { "Id (starts with org.)" } input id="p-id" name="id" required maxlength="104" value=(p.id) placeholder="org.helpdesk-bot"; }
                    div { label for="p-name" { "Name" } input id="p-name" name="name" required maxlength="200" value=(p.name); }
                    div { label for="p-vendor" { "Vendor (optional)" } input id="p-vendor" name="vendor" maxlength="200" value=(p.vendor); }
                    div {
                        label for="p-category" { "Category" }
                        select id="p-category" name="category" {
                            @for c in aiscout_signatures::Category::ALL {
                                option value=(c.as_str()) selected[p.category == c.as_str() || (p.category.is_empty() && c == aiscout_signatures::Category::Chat)] { (c.as_str()) }
                            }
                        }
                    }
                    div { label for="p-web" { "Web domains (in a browser)" } input id="p-web" name="web_domains" value=(p.web_domains.join(", ")) placeholder="helpbot.corp.example"; }
                    div { label for="p-api" { "API domains (used by programs)" } input id="p-api" name="api_domains" value=(p.api_domains.join(", ")); }
                    div { label for="p-proc" { "Process names" } input id="p-proc" name="process_names" value=(p.process_names.join(", ")); }
                    div { label for="p-cli" { "Command-line tools" } input id="p-cli" name="cli_names" value=(p.cli_names.join(", ")); }
                    div class="actions" { button type="submit" { "Save product" } }
                }
                p class="help" { "Separate several values with commas. Saving an id that exists changes that product. An indicator a vendor product already has is refused." }
            }
            section class="panel" aria-labelledby="gateways-h" {
                h2 id="gateways-h" { "Sanctioned gateways" }
                @let gateways = current.as_ref().map(|o| o.gateways()).unwrap_or_default();
                @if gateways.is_empty() {
                    p class="empty" { "No sanctioned gateway yet." }
                } @else {
                    table class="data" {
                        thead { tr { th scope="col" { "Id" } th scope="col" { "Host" } th scope="col" { "Fronts" } th scope="col" { span class="visually-hidden" { "Actions" } } } }
                        tbody { @for g in gateways { tr {
                            td { code { (g.id) } } td { code { (g.host) } }
                            td { @for f in &g.fronts { span class="chip" { (f) } } }
                            td {
                                form method="post" action={ (PATH) "/remove" } class="inline" {
                                    (csrf)
                                    input type="hidden" name="id" value=(g.id);
                                    button type="submit" class="danger" aria-label={ "Remove " (g.id) } { "Remove" }
                                }
                            }
                        } } }
                    }
                }
                h3 { "Add or change a gateway" }
                (error_for("gateway"))
                form method="post" action={ (PATH) "/gateways" } class="row" {
                    (csrf)
                    div { label for="g-id" { "Id (starts with org.)" } input id="g-id" name="id" required maxlength="104" value=(draft.gateway_id) placeholder="org.llm-gateway"; }
                    div { label for="g-host" { "Host" } input id="g-host" name="host" required maxlength="253" value=(draft.gateway_host) placeholder="llm.corp.example"; }
                    div { label for="g-fronts" { "Vendor products it fronts" } input id="g-fronts" name="fronts" required value=(draft.gateway_fronts) placeholder="openai.api, anthropic.api"; }
                    div class="actions" { button type="submit" { "Save gateway" } }
                }
                p class="help" { "Fronted products are vendor catalog ids (see " a href="/transparency/catalog" { "the catalog" } "). Saving an id that exists replaces that gateway." }
                (error_for("remove"))
            }
        }
    };
    let mut response = document("Organisation overlay", Some(signed), "/admin", body);
    if draft.error.is_some() {
        *response.status_mut() = StatusCode::BAD_REQUEST;
    }
    Ok(response)
}

/// `GET /admin/overlay` (`?edit=ID` fills the product form).
pub(crate) async fn page<S: Store>(
    State(state): Shared<S>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> PageResult {
    let signed = require(&state, &headers, PATH.into(), Access::Admin).await?;
    let pairs = crate::api::query_pairs(query.as_deref());
    let mut draft = Draft::default();
    if let Some(id) = field(&pairs, "edit") {
        let current = overlay::stored(&state.store, &state.catalog).await.ok().flatten();
        let found = current.as_ref().and_then(|o| o.products().iter().find(|p| p.id == id));
        let Some(p) = found else {
            return Err(Refusal::NotFound(format!("The overlay has no product {id:?}.")));
        };
        let domains = |usage: aiscout_signatures::DomainUse| -> Vec<String> {
            p.domains.iter().filter(|d| d.usage == usage).map(|d| d.pattern.clone()).collect()
        };
        draft.product = ProductFields {
            id: p.id.clone(),
            name: p.name.clone(),
            vendor: p.vendor.clone(),
            category: p.category.as_str().to_owned(),
            web_domains: domains(aiscout_signatures::DomainUse::Web),
            api_domains: domains(aiscout_signatures::DomainUse::Api),
            process_names: p.process_names.clone(),
            cli_names: p.cli_names.clone(),
        };
    }
    render(&state, &signed, draft).await
}

/// Runs an edit as the signed-in admin: back to the page on success, else the page again with
/// the refusal next to the form it came from.
async fn apply<S: Store>(
    state: &AppState<S>,
    signed: &Signed,
    edit: Edit,
    draft: Draft,
) -> PageResult {
    match overlay::edit(&state.store, &state.catalog, &signed.session.actor, &edit).await {
        Ok(_) => Ok(see_other(PATH)),
        Err(WriteError::Store(e)) => Err(e.into()),
        Err(e) => {
            let draft = Draft { error: Some(e.to_string()), ..draft };
            render(state, signed, draft).await
        }
    }
}

/// `POST /admin/overlay/products`: adds a product or changes the one with that id.
pub(crate) async fn save_product<S: Store>(
    State(state): Shared<S>,
    headers: HeaderMap,
    body: Body,
) -> PageResult {
    let (signed, pairs) = require_form(&state, &headers, PATH.into(), Access::Admin, body).await?;
    let text = |k: &str| field(&pairs, k).unwrap_or("").trim().to_owned();
    let product = ProductFields {
        id: text("id"),
        name: text("name"),
        vendor: text("vendor"),
        category: text("category"),
        web_domains: list(&text("web_domains")),
        api_domains: list(&text("api_domains")),
        process_names: list(&text("process_names")),
        cli_names: list(&text("cli_names")),
    };
    let draft = Draft { product: product.clone(), form: "product", ..Draft::default() };
    apply(&state, &signed, Edit::Product(product), draft).await
}

/// `POST /admin/overlay/gateways`: adds a gateway or replaces the one with that id.
pub(crate) async fn save_gateway<S: Store>(
    State(state): Shared<S>,
    headers: HeaderMap,
    body: Body,
) -> PageResult {
    let (signed, pairs) = require_form(&state, &headers, PATH.into(), Access::Admin, body).await?;
    let text = |k: &str| field(&pairs, k).unwrap_or("").trim().to_owned();
    let gateway = aiscout_signatures::Gateway {
        id: text("id"),
        host: text("host"),
        fronts: list(&text("fronts")),
    };
    let draft = Draft {
        gateway_id: gateway.id.clone(),
        gateway_host: gateway.host.clone(),
        gateway_fronts: text("fronts"),
        form: "gateway",
        ..Draft::default()
    };
    apply(&state, &signed, Edit::Gateway(gateway), draft).await
}

/// `POST /admin/overlay/remove`: removes the product or gateway `id`.
pub(crate) async fn remove<S: Store>(
    State(state): Shared<S>,
    headers: HeaderMap,
    body: Body,
) -> PageResult {
    let (signed, pairs) = require_form(&state, &headers, PATH.into(), Access::Admin, body).await?;
    let id = field(&pairs, "id").unwrap_or("").trim().to_owned();
    let draft = Draft { form: "remove", ..Draft::default() };
    apply(&state, &signed, Edit::Remove(id), draft).await
}
