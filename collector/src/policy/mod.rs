//! Decisions take effect (issue 20): the review decisions rendered as the policies that DNS
//! filters, browsers, IDEs, EDRs, secure web gateways and osquery/Fleet already consume.
//!
//! Pure functions: the catalog and the current reviews ([`crate::store::Store::reviews`]) in,
//! text out. No IO, no clock, no SQL; the same inputs give the same bytes, so an HTTP ETag
//! (a hash of the body) changes exactly when the policy does. Two steps:
//! 1. [`plan`] decides what is blocked: only catalog indicators of products whose current
//!    decision is one of the chosen statuses ([`Selection`], `blocked` by default, or
//!    `unsanctioned` too). Every other product (sanctioned, under review, unreviewed, or
//!    unsanctioned when only `blocked` is chosen) is *allowed*: an indicator an allowed product
//!    also uses is held back and said so ([`HeldBack`]), and an allowed product's domain below
//!    a blocked one becomes an exception ([`Exception`]: `rpz-passthru.` in the zone, the
//!    allow list of the formats that have one).
//! 2. [`render`] writes one [`Format`]. Formats that allow comments carry the held-back
//!    indicators and notes as comments; the others (JSON, CSV, the plain list) carry only
//!    what their consumer accepts, and the caller reports [`Export::notes`] beside them.
//!
//! Invariant (tested by a property test): a product in review or sanctioned, or never
//! reviewed, never has one of its own indicators in a blocklist of any format.
//!
//! Everything written into a file comes from the validated catalog (domains, extension ids,
//! app ids) or is a comment or string made single-line ([`one_line`]): a reviewer's free-text
//! alternative can never add a record to a zone or a row to a CSV.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use aiscout_signatures::Catalog;
use aiscout_signatures::catalog::WindowsApp;
use aiscout_wire::ReviewStatus;

use crate::model::Review;

mod browser;
mod dns;
mod endpoint;

pub use browser::{BrowserPolicies, policies as browser_policies};
pub use endpoint::{DEFENDER_COLUMNS, DEFENDER_ROWS_PER_FILE};

/// Longest free text (a reviewer's alternative) copied into an output, in characters.
const MAX_TEXT_CHARS: usize = 200;

/// One output format, named as `--format` and `GET /api/v1/policy/{format}` spell it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, clap::ValueEnum)]
pub enum Format {
    /// Adblock-style filter list (`||domain^`, `@@||domain^` exceptions): AdGuard Home,
    /// Pi-hole v6, uBlock Origin.
    Adblock,
    /// Chrome and Edge managed policy JSON: ExtensionInstallBlocklist, URLBlocklist,
    /// URLAllowlist.
    ChromePolicy,
    /// Microsoft Defender for Endpoint indicators CSV (DomainName; Block, Warn or Allowed).
    DefenderIndicators,
    /// Firefox policies.json: ExtensionSettings (blocked add-ons) and WebsiteFilter.
    FirefoxPolicy,
    /// hosts file (`0.0.0.0 domain`): Pi-hole, AdGuard Home and other hosts-file blocklists.
    Hosts,
    /// osquery/Fleet policy queries (JSON) that fail on a host with a blocked app or
    /// extension installed.
    Osquery,
    /// DNS Response Policy Zone for BIND, Unbound, PowerDNS and Knot.
    Rpz,
    /// One domain per line for secure web gateways (Zscaler, Netskope custom categories).
    UrlList,
    /// VS Code and Cursor `extensions.allowed` (policy AllowedExtensions).
    VscodePolicy,
}

impl Format {
    /// Every format, in name order.
    pub const ALL: [Format; 9] = [
        Format::Adblock,
        Format::ChromePolicy,
        Format::DefenderIndicators,
        Format::FirefoxPolicy,
        Format::Hosts,
        Format::Osquery,
        Format::Rpz,
        Format::UrlList,
        Format::VscodePolicy,
    ];

    /// The name in `--format` and the API path.
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Adblock => "adblock",
            Format::ChromePolicy => "chrome-policy",
            Format::DefenderIndicators => "defender-indicators",
            Format::FirefoxPolicy => "firefox-policy",
            Format::Hosts => "hosts",
            Format::Osquery => "osquery",
            Format::Rpz => "rpz",
            Format::UrlList => "url-list",
            Format::VscodePolicy => "vscode-policy",
        }
    }

    /// The format with this name.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|f| f.as_str() == name)
    }

    /// Every name, comma-separated, for error messages.
    pub fn names() -> String {
        Self::ALL.map(Format::as_str).join(", ")
    }

    /// The media type served for it.
    pub fn media_type(self) -> &'static str {
        match self {
            // RFC 4027: the master-file format.
            Format::Rpz => "text/dns; charset=utf-8",
            Format::ChromePolicy | Format::FirefoxPolicy | Format::VscodePolicy => {
                "application/json"
            }
            Format::Osquery => "application/json",
            Format::DefenderIndicators => "text/csv; charset=utf-8",
            Format::Adblock | Format::Hosts | Format::UrlList => "text/plain; charset=utf-8",
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A decision that policy exports may enforce: only these two ever block anything.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Status {
    /// Must not be used.
    Blocked,
    /// Not approved (exported as a warning where the consumer has one: Defender's Warn).
    Unsanctioned,
}

impl Status {
    /// The review decision it stands for.
    pub fn review(self) -> ReviewStatus {
        match self {
            Status::Blocked => ReviewStatus::Blocked,
            Status::Unsanctioned => ReviewStatus::Unsanctioned,
        }
    }

    /// `blocked` or `unsanctioned`.
    pub fn as_str(self) -> &'static str {
        self.review().as_str()
    }

    /// Parses `blocked` or `unsanctioned`.
    ///
    /// # Errors
    /// Any other name, with a sentence saying which names are accepted and why.
    pub fn parse(name: &str) -> Result<Self, String> {
        match name {
            "blocked" => Ok(Status::Blocked),
            "unsanctioned" => Ok(Status::Unsanctioned),
            "sanctioned" | "under_review" => Err(format!(
                "status {name:?} cannot be exported: only decisions to block are (blocked, \
                 unsanctioned)"
            )),
            other => Err(format!("unknown status {other:?} (blocked or unsanctioned)")),
        }
    }

    fn of(review: ReviewStatus) -> Option<Self> {
        match review {
            ReviewStatus::Blocked => Some(Status::Blocked),
            ReviewStatus::Unsanctioned => Some(Status::Unsanctioned),
            // Sanctioned, under review, and any decision added later: never blocked.
            _ => None,
        }
    }
}

/// Which decisions an export enforces: a non-empty set of [`Status`]. Sanctioned and under
/// review cannot be chosen: the type has no way to hold them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Selection(BTreeSet<Status>);

impl Default for Selection {
    /// `blocked` only.
    fn default() -> Self {
        Selection(BTreeSet::from([Status::Blocked]))
    }
}

impl Selection {
    /// The chosen statuses; none chosen means the default (`blocked`).
    pub fn new(statuses: impl IntoIterator<Item = Status>) -> Self {
        let set: BTreeSet<Status> = statuses.into_iter().collect();
        if set.is_empty() { Selection::default() } else { Selection(set) }
    }

    /// Parses status names (`blocked`, `unsanctioned`), as the API's `status` parameter gives
    /// them.
    ///
    /// # Errors
    /// A name that is not one of the two, with a sentence saying why.
    pub fn parse<'a>(names: impl IntoIterator<Item = &'a str>) -> Result<Self, String> {
        let set = names.into_iter().map(Status::parse).collect::<Result<BTreeSet<_>, _>>()?;
        Ok(Selection::new(set))
    }

    /// Whether products with this decision are exported.
    pub fn includes(&self, status: ReviewStatus) -> bool {
        Status::of(status).is_some_and(|s| self.0.contains(&s))
    }

    /// The chosen statuses in order.
    pub fn statuses(&self) -> impl Iterator<Item = Status> + '_ {
        self.0.iter().copied()
    }

    fn describe(&self) -> String {
        self.statuses().map(Status::as_str).collect::<Vec<_>>().join(", ")
    }
}

/// `[policy]` in the collector's config, validated.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Settings {
    /// The organisation's "use this instead" page (`https://...`), whose host the RPZ answers
    /// with (a CNAME) for a blocked product that has a sanctioned alternative.
    pub coaching_url: Option<CoachingUrl>,
    /// The organisation's own words after "Use X instead:" ([`coaching`]), one line.
    pub coaching_message: Option<String>,
}

/// Checks `[policy] coaching_message`: one line of at most 200 characters, not empty; runs
/// of spaces are collapsed.
///
/// # Errors
/// Why the text cannot be used, as a sentence.
pub fn coaching_message(text: &str) -> Result<String, String> {
    if text.chars().any(char::is_control) {
        return Err("must be one line of text without control characters".into());
    }
    let count = text.trim().chars().count();
    if count > MAX_TEXT_CHARS {
        return Err(format!("is {count} characters long; at most {MAX_TEXT_CHARS} are shown"));
    }
    let line = one_line(text);
    if line.is_empty() {
        return Err("is empty: remove the key, or write the sentence to show".into());
    }
    Ok(line)
}

/// "Use X instead" for one product: shown on the console's app card and in the email digest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Coaching {
    /// The sanctioned alternative's display name (a catalog product's name, or the
    /// reviewer's text), single-line.
    pub alternative: String,
    /// Its catalog id, when the alternative is a catalog product.
    pub alternative_id: Option<String>,
    /// The organisation's message (`[policy] coaching_message`).
    pub message: Option<String>,
}

impl Coaching {
    /// The line to show: `Use X instead: <message>`, or `Use X instead.` without a message.
    pub fn line(&self) -> String {
        match &self.message {
            Some(m) => format!("Use {} instead: {m}", self.alternative),
            None => format!("Use {} instead.", self.alternative),
        }
    }
}

/// The coaching for `product`, when its current decision is blocked or unsanctioned and its
/// review names an alternative that is sanctioned (a catalog product sanctioned now, or the
/// reviewer's free text, which counts as the organisation's word). `None` otherwise: a
/// product in use may be coached only towards something the organisation allows.
pub fn coaching(
    catalog: &Catalog,
    reviews: &[Review],
    settings: &Settings,
    product: &str,
) -> Option<Coaching> {
    let decided = decisions(reviews);
    let (status, review) = decided.get(product)?;
    Status::of(*status)?;
    let status_of = |id: &str| decided.get(id).map(|(s, _)| *s);
    let (Some(alternative), true) = alternative(catalog, review, &status_of) else {
        return None;
    };
    let alternative_id = catalog.product(review.alternative.trim()).map(|p| p.id.clone());
    Some(Coaching { alternative, alternative_id, message: settings.coaching_message.clone() })
}

/// A validated coaching page URL: `https://` with a DNS host name (a CNAME cannot point at an
/// address literal).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CoachingUrl {
    url: String,
    host: String,
}

impl CoachingUrl {
    /// Checks a coaching page URL.
    ///
    /// # Errors
    /// Why the text is not an `https://` URL with a host name, as a sentence.
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let rest = text
            .strip_prefix("https://")
            .ok_or_else(|| format!("{text:?} is not an https:// URL"))?;
        if text.chars().any(|c| c.is_control() || c.is_whitespace()) {
            return Err(format!("{text:?} has a space or a control character"));
        }
        if text.contains('#') {
            return Err(format!("{text:?} has a fragment"));
        }
        let authority = rest.split(['/', '?']).next().unwrap_or_default();
        if authority.contains('@') {
            return Err(format!("{text:?} has user information"));
        }
        if authority.starts_with('[') {
            return Err(format!(
                "{text:?}: the host must be a DNS name, not an address (the zone answers with a \
                 CNAME to it)"
            ));
        }
        let host = match authority.rsplit_once(':') {
            Some((host, port)) if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) => {
                host
            }
            Some(_) => return Err(format!("{text:?} has a bad port")),
            None => authority,
        };
        let host = host.strip_suffix('.').unwrap_or(host).to_ascii_lowercase();
        if host.parse::<std::net::Ipv4Addr>().is_ok() {
            return Err(format!(
                "{text:?}: the host must be a DNS name, not an address (the zone answers with a \
                 CNAME to it)"
            ));
        }
        if !is_host_name(&host) {
            return Err(format!("{text:?}: {host:?} is not a DNS host name"));
        }
        Ok(CoachingUrl { url: text.to_owned(), host })
    }

    /// The URL as configured.
    pub fn as_str(&self) -> &str {
        &self.url
    }

    /// Its host, lowercase, without a trailing dot.
    pub fn host(&self) -> &str {
        &self.host
    }
}

/// A DNS host name: dot-separated labels of a-z, 0-9 and '-', none starting or ending with
/// '-', at most 63 bytes each and 253 in all.
fn is_host_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        })
}

/// A product whose indicators an export blocks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Blocked {
    /// Catalog id.
    pub id: String,
    /// Display name.
    pub name: String,
    /// Vendor.
    pub vendor: String,
    /// Its decision.
    pub status: Status,
    /// The sanctioned alternative to name ("use X instead"), single-line: a catalog product's
    /// name, or the reviewer's text.
    pub alternative: Option<String>,
    /// Whether the RPZ answers with a CNAME to the coaching page instead of NXDOMAIN.
    pub coach: bool,
    /// Domains (each with every name below it), normalised, sorted.
    pub domains: Vec<String>,
    /// Chrome Web Store (and Edge) extension ids.
    pub chrome_extensions: Vec<String>,
    /// Firefox add-on ids.
    pub firefox_extensions: Vec<String>,
    /// VS Code / Open VSX extension ids.
    pub vscode_extensions: Vec<String>,
    /// macOS bundle ids.
    pub macos_bundle_ids: Vec<String>,
    /// Windows Uninstall entries.
    pub windows_apps: Vec<WindowsApp>,
    /// Linux package names.
    pub linux_packages: Vec<String>,
}

/// An allowed product's domain below a blocked domain: it keeps resolving.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Exception {
    /// The allowed domain (and every name below it).
    pub domain: String,
    /// The allowed product that uses it.
    pub product: String,
    /// That product's status (`sanctioned`, `under_review`, `unreviewed`, ...).
    pub status: String,
    /// The blocked domain it lies under.
    pub under: String,
}

/// An indicator of a blocked product that no export writes, and why.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct HeldBack {
    /// The blocked product.
    pub product: String,
    /// What kind of indicator (`domain`, `chrome extension`, ...).
    pub kind: &'static str,
    /// The indicator.
    pub value: String,
    /// Why, as a sentence fragment.
    pub reason: String,
}

impl fmt::Display for HeldBack {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "held back {} {} of {}: {}", self.kind, self.value, self.product, self.reason)
    }
}

/// What the decisions block, resolved against the catalog: the input of every format.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    /// The statuses exported.
    pub selection: Selection,
    /// The zone serial: the latest decision time (Unix seconds), at least 1.
    pub serial: u32,
    /// Products exported, by id.
    pub blocked: Vec<Blocked>,
    /// Allowed names under blocked ones, by domain.
    pub exceptions: Vec<Exception>,
    /// Indicators not written, with why.
    pub held_back: Vec<HeldBack>,
    /// VS Code extension ids of sanctioned products (allowed by `vscode-policy`), with the
    /// product, by id.
    pub sanctioned_vscode: Vec<(String, String)>,
    /// The coaching page's host, when coaching applies to some product.
    pub coaching_host: Option<String>,
    /// Anything else the person running the export should know (one line each).
    pub notes: Vec<String>,
}

/// One rendered export.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Export {
    /// The file.
    pub body: String,
    /// Held-back indicators and notes, one line each, for stderr or a log.
    pub notes: Vec<String>,
    /// How many indicators were held back.
    pub held_back: usize,
}

/// Makes free text one line of printable characters, at most 200 characters long, so it
/// can sit in a comment, a JSON string or a CSV cell without adding a line or a record.
pub fn one_line(text: &str) -> String {
    let mut out: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(MAX_TEXT_CHARS)
        .collect::<String>()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    if text.chars().count() > MAX_TEXT_CHARS {
        out.push('…');
    }
    out
}

/// Whether `name` is `parent` or a name below it (on a label boundary).
fn under_or_at(name: &str, parent: &str) -> bool {
    name == parent || strictly_under(name, parent)
}

/// Whether `name` is a name below `parent` (on a label boundary), not `parent` itself.
fn strictly_under(name: &str, parent: &str) -> bool {
    name.len() > parent.len()
        && name.ends_with(parent)
        && name.as_bytes().get(name.len() - parent.len() - 1) == Some(&b'.')
}

/// The current decision of every product that has one (unknown status strings are ignored:
/// such a product counts as unreviewed, so it is never blocked).
fn decisions(reviews: &[Review]) -> BTreeMap<&str, (ReviewStatus, &Review)> {
    reviews
        .iter()
        .filter_map(|r| ReviewStatus::parse(&r.status).map(|s| (r.product.as_str(), (s, r))))
        .collect()
}

fn status_name(status: Option<ReviewStatus>) -> &'static str {
    status.map_or("unreviewed", ReviewStatus::as_str)
}

/// Indicators of allowed products, to test blocked ones against.
#[derive(Default)]
struct Allowed<'a> {
    /// Exact domain rules (no `*`), with their product and status.
    domains: BTreeMap<&'a str, (&'a str, &'static str)>,
    /// One-label wildcard rules: (parent after the first label, rule, product).
    globs: Vec<(&'a str, &'a str, &'a str)>,
    /// Every other indicator, by kind then value (VS Code ids lowercased).
    others: BTreeMap<(&'static str, String), (&'a str, &'static str)>,
}

const CHROME: &str = "chrome extension";
const FIREFOX: &str = "firefox add-on";
const VSCODE: &str = "vscode extension";
const MACOS: &str = "macos app";
const WINDOWS: &str = "windows app";
const LINUX: &str = "linux package";

fn windows_key(app: &WindowsApp) -> String {
    format!(
        "{}\u{1f}{}",
        app.display_name.to_lowercase(),
        app.publisher.as_deref().unwrap_or("").to_lowercase()
    )
}

fn windows_text(app: &WindowsApp) -> String {
    match &app.publisher {
        Some(p) => format!("{} ({p})", app.display_name),
        None => app.display_name.clone(),
    }
}

/// A Chrome Web Store or Edge Add-ons id: 32 letters a to p.
fn is_chrome_id(id: &str) -> bool {
    id.len() == 32 && id.bytes().all(|b| (b'a'..=b'p').contains(&b))
}

/// A VS Code extension id as `extensions.allowed` accepts it: `publisher.name`, each part
/// `[a-zA-Z0-9][a-zA-Z0-9-]*`.
fn is_vscode_id(id: &str) -> bool {
    let part = |p: &str| {
        p.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
            && p.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    };
    matches!(id.split_once('.'), Some((publisher, name)) if part(publisher) && part(name))
}

/// Decides what the reviews block. See the module doc for the rules.
pub fn plan(
    catalog: &Catalog,
    reviews: &[Review],
    selection: &Selection,
    settings: &Settings,
) -> Plan {
    let decided = decisions(reviews);
    let status_of = |id: &str| decided.get(id).map(|(s, _)| *s);
    let selected = |id: &str| status_of(id).is_some_and(|s| selection.includes(s));

    let mut allowed = Allowed::default();
    for p in catalog.products().iter().filter(|p| !selected(&p.id)) {
        let status = status_name(status_of(&p.id));
        for d in &p.domains {
            match d.pattern.split_once('.') {
                Some((first, parent)) if first.contains('*') => {
                    allowed.globs.push((parent, &d.pattern, &p.id));
                }
                _ => {
                    allowed.domains.entry(&d.pattern).or_insert((&p.id, status));
                }
            }
        }
        let kinds: [(&'static str, Vec<String>); 6] = [
            (CHROME, p.chrome_extensions.clone()),
            (FIREFOX, p.firefox_extensions.clone()),
            (VSCODE, p.vscode_extensions.iter().map(|e| e.to_lowercase()).collect()),
            (MACOS, p.macos_bundle_ids.iter().map(|e| e.to_lowercase()).collect()),
            (WINDOWS, p.windows_apps.iter().map(windows_key).collect()),
            (LINUX, p.linux_packages.clone()),
        ];
        for (kind, values) in kinds {
            for v in values {
                allowed.others.entry((kind, v)).or_insert((&p.id, status));
            }
        }
    }

    let mut held_back = Vec::new();
    // By domain; the most specific blocked parent is the one reported.
    let mut exceptions: BTreeMap<String, Exception> = BTreeMap::new();
    let mut blocked = Vec::new();
    let mut notes = Vec::new();
    let mut written_domains: BTreeSet<String> = BTreeSet::new();
    let coaching = settings.coaching_url.as_ref();

    for p in catalog.products().iter().filter(|p| selected(&p.id)) {
        let Some((review_status, review)) = decided.get(p.id.as_str()) else { continue };
        let Some(status) = Status::of(*review_status) else { continue };
        let mut hold = |kind: &'static str, value: &str, reason: String| {
            held_back.push(HeldBack { product: p.id.clone(), kind, value: value.into(), reason });
        };
        let mut domains = Vec::new();
        for d in &p.domains {
            let pattern = d.pattern.as_str();
            if pattern.contains('*') {
                hold(
                    "domain",
                    pattern,
                    "a wildcard inside a label cannot be written as a DNS, hosts or URL rule"
                        .into(),
                );
                continue;
            }
            if let Some((other, st)) = allowed.domains.get(pattern) {
                hold("domain", pattern, format!("also used by {other} ({st})"));
                continue;
            }
            if let Some((_, rule, other)) =
                allowed.globs.iter().find(|(parent, _, _)| under_or_at(parent, pattern))
            {
                hold(
                    "domain",
                    pattern,
                    format!("it would also block {rule}, a wildcard rule of {other} (allowed)"),
                );
                continue;
            }
            if !written_domains.insert(pattern.to_owned()) {
                // Two exported products list the same name: it is written once.
                continue;
            }
            for (name, (other, st)) in &allowed.domains {
                let more_specific =
                    exceptions.get(*name).is_none_or(|e| e.under.len() < pattern.len());
                if strictly_under(name, pattern) && more_specific {
                    let exception = Exception {
                        domain: (*name).to_owned(),
                        product: (*other).to_owned(),
                        status: (*st).to_owned(),
                        under: pattern.to_owned(),
                    };
                    exceptions.insert((*name).to_owned(), exception);
                }
            }
            domains.push(pattern.to_owned());
        }
        domains.sort();

        let mut keep = |kind: &'static str, values: &[String], valid: fn(&str) -> bool| {
            let mut out = Vec::new();
            for v in values {
                let key = if matches!(kind, VSCODE | MACOS) { v.to_lowercase() } else { v.clone() };
                if !valid(v) {
                    hold(kind, v, format!("not a valid {kind} id"));
                } else if let Some((other, st)) = allowed.others.get(&(kind, key)) {
                    hold(kind, v, format!("also used by {other} ({st})"));
                } else {
                    out.push(v.clone());
                }
            }
            out.sort();
            out.dedup();
            out
        };
        let chrome_extensions = keep(CHROME, &p.chrome_extensions, is_chrome_id);
        let firefox_extensions = keep(FIREFOX, &p.firefox_extensions, |v| !v.is_empty());
        let vscode_extensions = keep(VSCODE, &p.vscode_extensions, is_vscode_id);
        let macos_bundle_ids = keep(MACOS, &p.macos_bundle_ids, |v| !v.is_empty());
        let linux_packages = keep(LINUX, &p.linux_packages, |v| !v.is_empty());
        let mut windows_apps = Vec::new();
        for app in &p.windows_apps {
            if let Some((other, st)) = allowed.others.get(&(WINDOWS, windows_key(app))) {
                hold(WINDOWS, &windows_text(app), format!("also used by {other} ({st})"));
            } else {
                windows_apps.push(app.clone());
            }
        }

        let (alternative, sanctioned_alternative) = alternative(catalog, review, &status_of);
        if let (Some(alt), false) = (&alternative, sanctioned_alternative) {
            notes.push(format!(
                "{}: the alternative {alt} is not sanctioned, so the zone answers NXDOMAIN, not \
                 the coaching page",
                p.id
            ));
        }
        blocked.push(Blocked {
            id: p.id.clone(),
            name: one_line(&p.name),
            vendor: one_line(&p.vendor),
            status,
            coach: coaching.is_some() && sanctioned_alternative,
            alternative,
            domains,
            chrome_extensions,
            firefox_extensions,
            vscode_extensions,
            macos_bundle_ids,
            windows_apps,
            linux_packages,
        });
    }

    // A coaching page under a blocked name would answer its own CNAME with NXDOMAIN.
    let mut coaching_host = None;
    if let Some(url) = coaching {
        let host = url.host();
        if let Some(d) = written_domains.iter().find(|d| under_or_at(host, d)) {
            let excepted = exceptions.keys().any(|e| under_or_at(host, e));
            if !excepted {
                notes.push(format!(
                    "the coaching page {} is under the blocked domain {d}: the zone answers \
                     NXDOMAIN instead of pointing at it",
                    url.as_str()
                ));
                for b in &mut blocked {
                    b.coach = false;
                }
            }
        }
        if blocked.iter().any(|b| b.coach) {
            coaching_host = Some(host.to_owned());
        }
    }

    let blocked_vscode: BTreeSet<String> =
        blocked.iter().flat_map(|b| b.vscode_extensions.iter().map(|e| e.to_lowercase())).collect();
    let mut sanctioned_vscode: Vec<(String, String)> = catalog
        .products()
        .iter()
        .filter(|p| status_of(&p.id) == Some(ReviewStatus::Sanctioned))
        .flat_map(|p| {
            p.vscode_extensions
                .iter()
                .filter(|e| is_vscode_id(e) && !blocked_vscode.contains(&e.to_lowercase()))
                .map(|e| (e.clone(), p.id.clone()))
        })
        .collect();
    sanctioned_vscode.sort();
    sanctioned_vscode.dedup_by(|a, b| a.0.eq_ignore_ascii_case(&b.0));

    held_back.sort();
    let serial = reviews
        .iter()
        .map(|r| r.reviewed_at.get())
        .max()
        .and_then(|t| u32::try_from(t).ok())
        .unwrap_or(1)
        .max(1);
    Plan {
        selection: selection.clone(),
        serial,
        blocked,
        exceptions: exceptions.into_values().collect(),
        held_back,
        sanctioned_vscode,
        coaching_host,
        notes,
    }
}

/// The alternative a review names, as text to show, and whether it is sanctioned: a catalog
/// product must be sanctioned now; free text counts as the organisation's own word.
fn alternative(
    catalog: &Catalog,
    review: &Review,
    status_of: &dyn Fn(&str) -> Option<ReviewStatus>,
) -> (Option<String>, bool) {
    let text = review.alternative.trim();
    if text.is_empty() {
        return (None, false);
    }
    match catalog.product(text) {
        Some(p) => {
            let sanctioned = status_of(&p.id) == Some(ReviewStatus::Sanctioned);
            (Some(one_line(&p.name)), sanctioned)
        }
        None => (Some(one_line(text)), true),
    }
}

impl Plan {
    /// Every domain written as blocked, sorted, each with its product.
    pub fn blocked_domains(&self) -> Vec<(&str, &Blocked)> {
        let mut out: Vec<(&str, &Blocked)> = self
            .blocked
            .iter()
            .flat_map(|b| b.domains.iter().map(move |d| (d.as_str(), b)))
            .collect();
        out.sort_by(|a, b| a.0.cmp(b.0));
        out
    }

    /// The lines every export reports beside its body: held-back indicators, then notes.
    pub fn report_lines(&self) -> Vec<String> {
        self.held_back.iter().map(ToString::to_string).chain(self.notes.iter().cloned()).collect()
    }

    /// The header sentence every commented format starts with.
    fn headline(&self, format: Format) -> String {
        format!(
            "aiscout policy export ({format}): decisions {}; {} product(s), {} name(s) \
             blocked, {} exception(s), {} indicator(s) held back",
            self.selection.describe(),
            self.blocked.len(),
            self.blocked.iter().map(|b| b.domains.len()).sum::<usize>(),
            self.exceptions.len(),
            self.held_back.len()
        )
    }
}

/// Renders one format of a plan.
pub fn render(plan: &Plan, format: Format) -> Export {
    let (body, mut notes) = match format {
        Format::Rpz => (dns::rpz(plan), Vec::new()),
        Format::Hosts => dns::hosts(plan),
        Format::Adblock => (dns::adblock(plan), Vec::new()),
        Format::UrlList => dns::url_list(plan),
        Format::ChromePolicy => (browser::chrome(plan), Vec::new()),
        Format::FirefoxPolicy => browser::firefox(plan),
        Format::VscodePolicy => (browser::vscode(plan), Vec::new()),
        Format::DefenderIndicators => endpoint::defender(plan),
        Format::Osquery => (endpoint::osquery(plan), Vec::new()),
    };
    let mut lines = plan.report_lines();
    lines.append(&mut notes);
    Export { body, notes: lines, held_back: plan.held_back.len() }
}

/// One format of a plan as the files its consumer imports: Defender indicators in files of at
/// most [`DEFENDER_ROWS_PER_FILE`] rows (each with the header), every other format as one file.
/// Never empty.
pub fn render_files(plan: &Plan, format: Format) -> Vec<String> {
    match format {
        Format::DefenderIndicators => endpoint::defender_pages(plan),
        other => vec![render(plan, other).body],
    }
}

/// [`plan`] then [`render`].
pub fn export(
    catalog: &Catalog,
    reviews: &[Review],
    selection: &Selection,
    settings: &Settings,
    format: Format,
) -> Export {
    render(&plan(catalog, reviews, selection, settings), format)
}

#[cfg(test)]
mod tests;
