//! `/transparency` and `/transparency/catalog` (issue 21): what aiscout collects, what it never
//! collects, how long it keeps it and who can see it, for employees, works councils and
//! data-protection officers. No sign-in: anyone who can reach the collector may read it.
//!
//! Built only from the running configuration and the catalog this collector serves, never
//! from the store: the page cannot show a person, a device or a count of either, whatever is
//! in the database. The HTML and the JSON (`?format=json`) are rendered from one `Facts` value, so
//! they always say the same thing. The console's security headers apply (the route sits in
//! the console's router).

use std::sync::Arc;

use aiscout_signatures::Catalog;
use aiscout_wire::{Sighting, SightingKind, UnixSecs};
use axum::extract::{RawQuery, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use maud::{Markup, html};

use super::{PageResult, Refusal, Settings, document};
use crate::api::AppState;
use crate::model::Role;
use crate::store::Store;
use crate::store::retention::Kind;

type Shared<S> = State<Arc<AppState<S>>>;

/// `[transparency]` in the collector's config: the organisation's own words on the page.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Transparency {
    /// A paragraph (or several, split by blank lines) from the organisation: why it runs
    /// aiscout, the legal basis, the works agreement.
    pub organisation: Option<String>,
    /// Who to ask or send a request to (an email address or an `https://` page).
    pub contact: Option<String>,
    /// The retention periods (`[retention]`), which the page states.
    pub retention: crate::retention::Settings,
    /// How identities are stored (`privacy`), which the page states.
    pub privacy: crate::identity::PrivacyMode,
}

/// Longest `[transparency] organisation` text, in characters.
pub const MAX_ORGANISATION_CHARS: usize = 4000;
/// Longest `[transparency] contact`, in characters.
pub const MAX_CONTACT_CHARS: usize = 200;

/// Checks `[transparency] organisation`: printable text (line breaks allowed), not empty, at
/// most [`MAX_ORGANISATION_CHARS`].
///
/// # Errors
/// Why the text cannot be used, as a sentence.
pub fn organisation_text(text: &str) -> Result<String, String> {
    let text = text.trim();
    if text.is_empty() {
        return Err("is empty: remove the key, or write the paragraph to show".into());
    }
    if text.chars().any(|c| c.is_control() && c != '\n' && c != '\r' && c != '\t') {
        return Err("has a control character".into());
    }
    let count = text.chars().count();
    if count > MAX_ORGANISATION_CHARS {
        return Err(format!("is {count} characters long; at most {MAX_ORGANISATION_CHARS}"));
    }
    Ok(text.replace("\r\n", "\n"))
}

/// Checks `[transparency] contact`: one line, an email address or an `https://` URL.
///
/// # Errors
/// Why the text cannot be used, as a sentence.
pub fn contact_text(text: &str) -> Result<String, String> {
    let text = text.trim();
    if text.is_empty() || text.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(format!(
            "{text:?} is not an email address or an https:// URL (one word, no spaces)"
        ));
    }
    if text.chars().count() > MAX_CONTACT_CHARS {
        return Err(format!("is longer than {MAX_CONTACT_CHARS} characters"));
    }
    let email = text.split_once('@').is_some_and(|(local, domain)| {
        !local.is_empty() && domain.contains('.') && !domain.contains('@')
    });
    if !email && !text.starts_with("https://") {
        return Err(format!("{text:?} is not an email address or an https:// URL"));
    }
    Ok(text.to_owned())
}

/// One field of a sighting, as the page explains it.
struct Field {
    name: &'static str,
    meaning: &'static str,
}

/// The sighting fields, in the order of the wire type ([`aiscout_wire::Sighting`]).
const SIGHTING_FIELDS: [Field; 10] = [
    Field { name: "product", meaning: "the catalog product that matched, such as openai.chatgpt" },
    Field {
        name: "kind",
        meaning: "how it was seen: a DNS name, the server name of a TLS or QUIC connection, an \
                  installed app, extension or command-line tool, an MCP server configuration, \
                  a running process, a local model runtime or a model name",
    },
    Field {
        name: "value",
        meaning: "the catalog entry that matched (a domain such as chatgpt.com, an app or \
                  extension id, a process name); never a value that matches nothing",
    },
    Field {
        name: "user",
        meaning: "the operating-system account, or a keyed pseudonym of it when the agent is \
                  given a pseudonymisation key; empty for network sightings",
    },
    Field { name: "process", meaning: "the program's name (such as firefox), when known" },
    Field { name: "first_seen", meaning: "the first time in the window it was seen" },
    Field { name: "last_seen", meaning: "the last time in the window it was seen" },
    Field { name: "count", meaning: "how many times in the window" },
    Field { name: "window", meaning: "the start of the aggregation window" },
    Field { name: "removed", meaning: "set when an installed item seen earlier is gone" },
];

/// What the agent sends about the device itself, at enrollment and in heartbeats.
const DEVICE_FIELDS: [&str; 6] = [
    "a host id (the machine id the operating system and MDM tools use)",
    "the host name",
    "the operating system and its version",
    "the agent's version and its catalog version",
    "the device owner's email address, when the organisation's MDM configuration sets it",
    "counts for health: packets looked at, drops, the size of the local queue",
];

/// What the agent never collects or sends.
const NEVER: [&str; 8] = [
    "page contents, messages, prompts or answers: the agent never decrypts traffic",
    "URLs or paths: only a server name that is in the catalog",
    "names of sites and apps that are not AI tools: anything that matches no catalog entry is \
     dropped on the laptop, in memory, and never stored, logged or sent",
    "keystrokes, screenshots, the clipboard or the screen",
    "files or their contents (only whether a listed AI app, extension or tool is installed)",
    "browsing history",
    "secrets in AI tool configurations (an MCP server's name is sent, never its keys)",
    "location",
];

/// What each role of the console and API may see.
fn role_scope(role: Role) -> &'static str {
    match role {
        Role::Admin => {
            "everything below, and API tokens and the enrollment secret; admins also answer \
             a person's request to see or erase their data"
        }
        Role::Security => {
            "the inventory, review decisions, devices and their owners, people and their use \
             and spend, reconciliation and the audit log"
        }
        Role::Procurement => {
            "the inventory, people and their use and spend, reconciliation, and file imports"
        }
        Role::Viewer => {
            "the inventory and product pages: which AI tools are used, on how many devices \
             and by how many people, and what they cost"
        }
        Role::Policy => {
            "only the blocklist and policy exports (domains, extension ids): no person or device"
        }
        Role::Scim => {
            "only the SCIM provisioning endpoints (/scim/v2): writes the directory of people, \
             reads nothing else"
        }
    }
}

/// What the privacy mode in force (`privacy` in the config) means for the people named in
/// the data.
pub fn privacy_meaning(mode: crate::identity::PrivacyMode) -> &'static str {
    match mode {
        crate::identity::PrivacyMode::Pseudonymous => {
            "Pseudonymous: device owners, operating-system accounts, payers of expenses, gateway              users and the people directory's emails and names are stored only as keyed              pseudonyms (such as person-3f9a2c41d07be815) made with a key only the collector              holds; departments stay readable so reports still work. Reports, exports, alerts              and console pages show the pseudonym. An administrator may reveal one person for              one product, and must give a reason; each reveal is written to the audit log."
        }
        crate::identity::PrivacyMode::Plain => {
            "Plain: device owners, operating-system accounts, payers of expenses, gateway users              and the people directory are stored as the organisation's systems name them, and              the console shows them to the roles below."
        }
    }
}

/// Everything the page says, from the configuration and the catalog.
struct Facts<'a> {
    catalog: &'a Catalog,
    console: &'a Settings,
    example: Sighting,
}

impl<'a> Facts<'a> {
    fn new(catalog: &'a Catalog, console: &'a Settings) -> Self {
        // A real catalog entry, so the example is what a sighting of it looks like.
        let (product, value) = catalog
            .products()
            .iter()
            .find_map(|p| p.domains.iter().find(|d| !d.pattern.contains('*')).map(|d| (p, d)))
            .map_or(("openai.chatgpt".to_owned(), "chatgpt.com".to_owned()), |(p, d)| {
                (p.id.clone(), d.pattern.clone())
            });
        let example = Sighting {
            product,
            kind: SightingKind::TlsSni,
            value,
            user: None,
            process: Some("firefox".into()),
            first_seen: UnixSecs(1_767_225_600),
            last_seen: UnixSecs(1_767_229_200),
            count: 42,
            window: UnixSecs(1_767_225_600),
            removed: false,
            flags: Vec::new(),
        };
        Facts { catalog, console, example }
    }

    /// How long each kind of data is kept, as (kind, rule) lines.
    fn retention(&self) -> Vec<(&'static str, String)> {
        let hours = |secs: i64| secs / 3600;
        vec![
            (
                "On the laptop",
                "matched sightings wait in the agent's local queue until the collector \
                 acknowledges them, then are deleted; the queue has a size cap; \
                 `aiscout-agent status` on the laptop shows what it holds and has sent"
                    .to_owned(),
            ),
            (
                "Sightings",
                crate::retention::describe(&self.console.transparency.retention, Kind::Sightings),
            ),
            (
                "Expense lines",
                crate::retention::describe(
                    &self.console.transparency.retention,
                    Kind::ExpenseLines,
                ),
            ),
            (
                "Gateway spend",
                crate::retention::describe(&self.console.transparency.retention, Kind::GatewayRows),
            ),
            (
                "Devices, the people directory",
                "kept until an administrator deletes them or a person's data is erased on \
                 request; the inventory's totals (products, devices and users seen) are kept \
                 after the sightings they came from are deleted"
                    .to_owned(),
            ),
            (
                "Audit log",
                crate::retention::describe(
                    &self.console.transparency.retention,
                    Kind::AuditEntries,
                ),
            ),
            (
                "Console sessions",
                format!(
                    "end after {} minutes without use or {} hours after sign-in",
                    self.console.idle_secs / 60,
                    hours(self.console.absolute_secs)
                ),
            ),
        ]
    }

    fn json(&self) -> serde_json::Value {
        let t = &self.console.transparency;
        serde_json::json!({
            "collects": {
                "sighting_fields": SIGHTING_FIELDS.iter()
                    .map(|f| serde_json::json!({"name": f.name, "meaning": f.meaning}))
                    .collect::<Vec<_>>(),
                "example_sighting": self.example,
                "device": DEVICE_FIELDS,
            },
            "never_collects": NEVER,
            "retention": self.retention().into_iter()
                .map(|(kind, rule)| serde_json::json!({"data": kind, "kept": rule}))
                .collect::<Vec<_>>(),
            "roles": Role::ALL.iter()
                .map(|r| serde_json::json!({"role": r.as_str(), "sees": role_scope(*r)}))
                .collect::<Vec<_>>(),
            "catalog": {
                "version": self.catalog.version(),
                "products": self.catalog.products().len(),
                "list": "/transparency/catalog",
            },
            "organisation": t.organisation,
            "contact": t.contact,
            "privacy": {
                "mode": t.privacy.as_str(),
                "pseudonymous": t.privacy == crate::identity::PrivacyMode::Pseudonymous,
                "meaning": privacy_meaning(t.privacy),
            },
        })
    }

    fn html(&self) -> Markup {
        let t = &self.console.transparency;
        let example = serde_json::to_string_pretty(&self.example).unwrap_or_default();
        html! {
            main id="main" class="transparency" {
                h1 { "What aiscout collects" }
                p class="lead" {
                    "This organisation runs aiscout to know which AI tools are in use and what "
                    "they cost. A small agent on work computers recognises AI tools from a "
                    "published list and reports only those. This page is built from the "
                    "collector's running configuration."
                }
                @if let Some(text) = &t.organisation {
                    section class="panel" aria-labelledby="org" {
                        h2 id="org" { "From the organisation" }
                        @for para in text.split("\n\n").map(str::trim).filter(|p| !p.is_empty()) {
                            p { (para) }
                        }
                    }
                }
                section class="panel" aria-labelledby="collects" {
                    h2 id="collects" { "What the agent sends" }
                    p { "A " strong { "sighting" } " for each AI tool it recognises, counted per time window:" }
                    table class="data" {
                        caption { "Fields of a sighting" }
                        thead { tr { th scope="col" { "Field" } th scope="col" { "What it holds" } } }
                        tbody {
                            @for f in &SIGHTING_FIELDS {
                                tr { td { code { (f.name) } } td { (f.meaning) } }
                            }
                        }
                    }
                    h3 { "An example, exactly as sent" }
                    pre class="example" { code { (example) } }
                    h3 { "About the device" }
                    ul { @for d in &DEVICE_FIELDS { li { (d) } } }
                }
                section class="panel" aria-labelledby="never" {
                    h2 id="never" { "What it never collects" }
                    ul { @for n in &NEVER { li { (n) } } }
                }
                section class="panel" aria-labelledby="privacy" {
                    h2 id="privacy" { "How people are named" }
                    p { "Privacy mode: " strong { (t.privacy.as_str()) } }
                    p { (privacy_meaning(t.privacy)) }
                }
                section class="panel" aria-labelledby="kept" {
                    h2 id="kept" { "How long it is kept" }
                    dl class="facts" {
                        @for (kind, rule) in self.retention() { dt { (kind) } dd { (rule) } }
                    }
                }
                section class="panel" aria-labelledby="who" {
                    h2 id="who" { "Who can see what" }
                    p { "People sign in to the console with a role; every page checks it on the server, and sign-ins and changes are written to an audit log." }
                    dl class="facts" {
                        @for r in Role::ALL { dt { (r.as_str()) } dd { (role_scope(r)) } }
                    }
                }
                section class="panel" aria-labelledby="catalog" {
                    h2 id="catalog" { "The list of AI tools" }
                    p {
                        "The agent recognises only the products in catalog version "
                        strong { (self.catalog.version()) } " ("
                        (self.catalog.products().len()) " products). "
                        a href="/transparency/catalog" { "See every product and what it is recognised by" } "."
                    }
                }
                @if let Some(contact) = &t.contact {
                    section class="panel" aria-labelledby="contact" {
                        h2 id="contact" { "Questions and requests" }
                        p {
                            "To ask what is stored about you, or to have it erased: "
                            @if contact.starts_with("https://") {
                                a href=(contact) { (contact) }
                            } @else {
                                a href={ "mailto:" (contact) } { (contact) }
                            }
                        }
                    }
                }
                p class="muted" { a href="/transparency?format=json" { "This page as JSON" } }
            }
        }
    }
}

/// The kinds of indicator other than domains a product is recognised by, as one phrase.
fn other_indicators(p: &aiscout_signatures::catalog::Product) -> String {
    let kinds = [
        (
            "installed apps",
            !p.macos_bundle_ids.is_empty()
                || !p.windows_apps.is_empty()
                || !p.linux_packages.is_empty()
                || !p.linux_desktop_ids.is_empty(),
        ),
        ("browser extensions", !p.chrome_extensions.is_empty() || !p.firefox_extensions.is_empty()),
        ("IDE extensions", !p.vscode_extensions.is_empty() || !p.jetbrains_plugins.is_empty()),
        ("command-line tools", !p.cli_names.is_empty()),
        ("process names", !p.process_names.is_empty()),
        ("local ports", !p.local_ports.is_empty()),
        ("model names", !p.model_prefixes.is_empty()),
    ];
    kinds.iter().filter(|(_, has)| *has).map(|(k, _)| *k).collect::<Vec<_>>().join(", ")
}

fn wants_json(raw: Option<&str>) -> Result<bool, Refusal> {
    let mut json = false;
    for (k, v) in crate::api::query_pairs(raw) {
        match (k.as_str(), v.as_str()) {
            ("format", "json") => json = true,
            ("format", "html") => json = false,
            ("format", other) => {
                return Err(Refusal::BadRequest(format!("format {other:?}: html or json")));
            }
            (other, _) => {
                return Err(Refusal::BadRequest(format!("{other}: unknown parameter (format)")));
            }
        }
    }
    Ok(json)
}

fn json_response(value: &serde_json::Value) -> Response {
    let mut response = value.to_string().into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// `GET /transparency[?format=json]`: no sign-in.
pub(crate) async fn page<S: Store>(State(state): Shared<S>, RawQuery(raw): RawQuery) -> PageResult {
    let facts = Facts::new(&state.catalog, &state.console);
    if wants_json(raw.as_deref())? {
        return Ok(json_response(&facts.json()));
    }
    Ok(document("What aiscout collects", None, "", facts.html()))
}

/// `GET /transparency/catalog[?format=json]`: every product the agent recognises, with what it
/// is recognised by. No sign-in.
pub(crate) async fn catalog<S: Store>(
    State(state): Shared<S>,
    RawQuery(raw): RawQuery,
) -> PageResult {
    let catalog = &state.catalog;
    if wants_json(raw.as_deref())? {
        let products: Vec<serde_json::Value> = catalog
            .products()
            .iter()
            .map(|p| {
                serde_json::json!({
                    "id": p.id,
                    "name": p.name,
                    "vendor": p.vendor,
                    "category": p.category.as_str(),
                    "domains": p.domains.iter().map(|d| d.pattern.as_str()).collect::<Vec<_>>(),
                })
            })
            .collect();
        return Ok(json_response(
            &serde_json::json!({"version": catalog.version(), "products": products}),
        ));
    }
    let body = html! {
        main id="main" class="transparency" {
            p class="crumbs" { a href="/transparency" { "What aiscout collects" } " / Catalog" }
            h1 { "Every AI tool aiscout recognises" }
            p { "Catalog version " strong { (catalog.version()) } ", " (catalog.products().len()) " products. Anything not listed here is never reported." }
            table class="data" {
                caption { "Products and the domains they are recognised by (each with every name below it)" }
                thead { tr {
                    th scope="col" { "Product" } th scope="col" { "Vendor" }
                    th scope="col" { "Category" } th scope="col" { "Domains" }
                    th scope="col" { "Also recognised by" }
                } }
                tbody {
                    @for p in catalog.products() {
                        tr {
                            td { (p.name) br; code { (p.id) } }
                            td { (p.vendor) }
                            td { (p.category.as_str()) }
                            td { @for d in &p.domains { code { (d.pattern) } " " } }
                            td { (other_indicators(p)) }
                        }
                    }
                }
            }
            p class="muted" { a href="/transparency/catalog?format=json" { "This list as JSON" } }
        }
    };
    Ok(document("AI tools recognised", None, "", body))
}
