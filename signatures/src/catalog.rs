//! The catalog's domain types: [`Catalog`], [`Product`] and what identifies a product.
//!
//! These types hold validated data only. They are built by [`crate::source`] (from the TOML
//! sources) or by [`crate::artifact`] (from a verified artifact) and never serialised directly:
//! the artifact has its own edge types, so the on-wire form can change without touching these.

use std::fmt;

/// A versioned, validated set of products, sorted by product id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Catalog {
    version: u64,
    products: Vec<Product>,
    shared: Vec<SharedDescriptor>,
}

impl Catalog {
    /// Builds a catalog from products; they are sorted by id so that equal inputs give equal
    /// catalogs (and equal artifact bytes).
    pub fn new(version: u64, mut products: Vec<Product>) -> Self {
        products.sort_by(|a, b| a.id.cmp(&b.id));
        Self { version, products, shared: Vec::new() }
    }

    /// The same catalog with these shared-descriptor rules (see [`SharedDescriptor`]).
    pub fn with_shared(mut self, shared: Vec<SharedDescriptor>) -> Self {
        self.shared = shared;
        self
    }

    /// Card descriptors shared by an AI product and other charges, with the rules that
    /// resolve them from a line's other columns.
    pub fn shared(&self) -> &[SharedDescriptor] {
        &self.shared
    }

    /// The catalog compiled from the sources embedded at build time, at version 0.
    ///
    /// # Errors
    /// Returns every validation problem of the embedded sources. The crate's tests build this
    /// catalog, so a release never ships sources that fail here.
    pub fn builtin() -> Result<Self, crate::source::SourceErrors> {
        let sources = crate::BUILTIN_SOURCES.iter().map(|(name, text)| (*name, *text));
        crate::source::compile(sources, 0)
    }

    /// The catalog version: agents refuse an update whose version is lower than the one in use.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// Every product, sorted by id.
    pub fn products(&self) -> &[Product] {
        &self.products
    }

    /// The product with this id.
    pub fn product(&self, id: &str) -> Option<&Product> {
        self.products
            .binary_search_by(|p| p.id.as_str().cmp(id))
            .ok()
            .and_then(|i| self.products.get(i))
    }
}

/// One AI tool: its identity and every indicator that reveals its use.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Product {
    /// Stable id, `vendor.product` (for example `openai.chatgpt`).
    pub id: String,
    /// Vendor display name.
    pub vendor: String,
    /// Product display name.
    pub name: String,
    /// What kind of tool it is.
    pub category: Category,
    /// Domain rules, each flagged web or API.
    pub domains: Vec<DomainRule>,
    /// macOS bundle ids (compared case-insensitively, as Launch Services does).
    pub macos_bundle_ids: Vec<String>,
    /// Windows Uninstall-key entries.
    pub windows_apps: Vec<WindowsApp>,
    /// Linux package names (dpkg, rpm, snap, flatpak).
    pub linux_packages: Vec<String>,
    /// Linux `.desktop` file ids.
    pub linux_desktop_ids: Vec<String>,
    /// Executable names of running processes.
    pub process_names: Vec<String>,
    /// Command-line tools found on a PATH.
    pub cli_names: Vec<String>,
    /// Package ids across package managers, `ecosystem:name` with the ecosystem one of `npm`,
    /// `pypi`, `brew` or `cargo` (`npm:@anthropic-ai/claude-code`, `pypi:aider-chat`).
    pub packages: Vec<String>,
    /// VS Code and Open VSX extension ids, `publisher.name`.
    pub vscode_extensions: Vec<String>,
    /// JetBrains plugin ids.
    pub jetbrains_plugins: Vec<String>,
    /// Chrome Web Store extension ids (also installed in Edge and Brave).
    pub chrome_extensions: Vec<String>,
    /// Firefox add-on ids.
    pub firefox_extensions: Vec<String>,
    /// TCP ports a local runtime listens on.
    pub local_ports: Vec<u16>,
    /// Card descriptor patterns, as written in the source.
    pub merchant_patterns: Vec<String>,
    /// Model-name prefixes that gateways report for this product.
    pub model_prefixes: Vec<String>,
    /// List prices of one seat.
    pub prices: Vec<Price>,
    /// Where the facts come from.
    pub sources: Vec<String>,
    /// Data-handling facts from `catalog/risk/`, each with its source; unknown when absent.
    pub risk: crate::risk::RiskFacts,
}

/// What kind of AI tool a product is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum Category {
    /// Programmatic model access (APIs, inference providers).
    Api,
    /// Speech, music and voice.
    Audio,
    /// Chat assistants.
    #[default]
    Chat,
    /// Coding assistants, AI IDEs and their extensions.
    Coding,
    /// AI gateways and routers.
    Gateway,
    /// Image generation.
    Image,
    /// Models run on the user's own machine.
    LocalRuntime,
    /// Meeting note takers.
    Meeting,
    /// AI search engines.
    Search,
    /// Video generation.
    Video,
    /// Writing assistants.
    Writing,
}

impl Category {
    /// Every category, in order.
    pub const ALL: [Category; 11] = [
        Category::Api,
        Category::Audio,
        Category::Chat,
        Category::Coding,
        Category::Gateway,
        Category::Image,
        Category::LocalRuntime,
        Category::Meeting,
        Category::Search,
        Category::Video,
        Category::Writing,
    ];

    /// The name used in the sources, the artifact and reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Category::Api => "api",
            Category::Audio => "audio",
            Category::Chat => "chat",
            Category::Coding => "coding",
            Category::Gateway => "gateway",
            Category::Image => "image",
            Category::LocalRuntime => "local-runtime",
            Category::Meeting => "meeting",
            Category::Search => "search",
            Category::Video => "video",
            Category::Writing => "writing",
        }
    }

    /// Parses a category name as [`Category::as_str`] writes it.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == name)
    }
}

impl fmt::Display for Category {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One domain rule: the domain and all its subdomains, or a one-label pattern under a domain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DomainRule {
    /// The normalised rule (`openai.com`, `*-aiplatform.googleapis.com`).
    pub pattern: String,
    /// Whether the domain serves people (web) or programs (API).
    pub usage: DomainUse,
}

/// Whether a domain serves people or programs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DomainUse {
    /// Programmatic endpoints: use by scripts, agents and SDKs.
    Api,
    /// Consumer UI, downloads, CDN and telemetry.
    Web,
}

impl DomainUse {
    /// `web` or `api`.
    pub fn as_str(self) -> &'static str {
        match self {
            DomainUse::Api => "api",
            DomainUse::Web => "web",
        }
    }
}

/// A Windows program as its Uninstall registry key names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WindowsApp {
    /// `DisplayName`, compared case-insensitively.
    pub display_name: String,
    /// `Publisher`, when the source gives one; compared case-insensitively.
    pub publisher: Option<String>,
}

/// The list price of one seat.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Price {
    /// Plan name (`Plus`, `Team`).
    pub plan: String,
    /// The amount in minor units (cents for USD): money never goes through floating point.
    pub amount_minor: i64,
    /// ISO 4217 currency code.
    pub currency: String,
    /// The period the amount pays for.
    pub period: Period,
    /// Where the price comes from.
    pub source: String,
    /// Who the plan is sold to, when the source says (`None`: not stated).
    pub audience: Option<Audience>,
    /// The fewest seats the plan is sold with (Claude Team: 5, ChatGPT Team: 2), when a
    /// source says there is a minimum (`None`: none stated); with [`Price::min_seats_source`].
    pub min_seats: Option<u32>,
    /// Where the minimum comes from (set exactly when [`Price::min_seats`] is).
    pub min_seats_source: Option<String>,
}

/// Who a plan is sold to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Audience {
    /// A personal subscription.
    Consumer,
    /// A team, business or enterprise seat.
    Business,
}

impl Audience {
    /// `consumer` or `business`.
    pub fn as_str(self) -> &'static str {
        match self {
            Audience::Consumer => "consumer",
            Audience::Business => "business",
        }
    }

    /// The audience with this name.
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "consumer" => Some(Audience::Consumer),
            "business" => Some(Audience::Business),
            _ => None,
        }
    }
}

/// A card descriptor that an AI product shares with other charges: a vendor that sells AI
/// and other things under one name (`GITHUB`), or a marketplace or app store
/// (`APPLE.COM/BILL`). Such a descriptor names no product by itself; its [`ContextRule`]s
/// decide from the line's other columns, and without a match the line is a review candidate
/// with [`SharedDescriptor::reason`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SharedDescriptor {
    /// The descriptor pattern, matched like a product's merchant pattern (its tokens start
    /// the line's descriptor).
    pub descriptor: String,
    /// Why the descriptor alone is ambiguous (shown to the reviewer).
    pub reason: String,
    /// Where the fact that it is shared comes from.
    pub source: String,
    /// Rules tried in order; the first whose context matches wins.
    pub rules: Vec<ContextRule>,
}

/// One way to resolve a [`SharedDescriptor`] from a line's other columns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContextRule {
    /// Phrases, any of which (as whole tokens, in order) in the memo, notes, category,
    /// merchant name or the rest of the descriptor selects this rule.
    pub context: Vec<String>,
    /// The product the line is; `None` for a rule that says the line is not AI spend.
    pub product: Option<String>,
    /// Where the rule comes from.
    pub source: String,
}

impl Price {
    /// The amount as a decimal string with two places (`20.00`).
    pub fn amount_decimal(&self) -> String {
        let sign = if self.amount_minor < 0 { "-" } else { "" };
        let abs = self.amount_minor.unsigned_abs();
        format!("{sign}{}.{:02}", abs / 100, abs % 100)
    }

    /// The amount for one seat for a year, in minor units.
    pub fn annual_minor(&self) -> i64 {
        match self.period {
            Period::Month => self.amount_minor.saturating_mul(12),
            Period::Year => self.amount_minor,
        }
    }

    /// The seats paid for when `wanted` people take the plan: at least its minimum.
    pub fn billed_seats(&self, wanted: u64) -> u64 {
        wanted.max(self.min_seats.map_or(0, u64::from))
    }
}

/// The period a price pays for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Period {
    /// One month.
    Month,
    /// One year.
    Year,
}

impl Period {
    /// `month` or `year`.
    pub fn as_str(self) -> &'static str {
        match self {
            Period::Month => "month",
            Period::Year => "year",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn category_names_round_trip() {
        for c in Category::ALL {
            assert_eq!(Category::parse(c.as_str()), Some(c));
        }
        assert_eq!(Category::parse("Chat"), None);
    }

    #[test]
    fn price_decimal_and_annual() {
        let p = Price {
            plan: "Plus".into(),
            amount_minor: 2_000,
            currency: "USD".into(),
            period: Period::Month,
            source: "s".into(),
            audience: None,
            min_seats: None,
            min_seats_source: None,
        };
        assert_eq!(p.amount_decimal(), "20.00");
        assert_eq!(p.billed_seats(2), 2);
        let team = Price { min_seats: Some(5), ..p.clone() };
        assert_eq!((team.billed_seats(2), team.billed_seats(7)), (5, 7));
        assert_eq!(p.annual_minor(), 24_000);
        let y = Price { amount_minor: 20_005, period: Period::Year, ..p };
        assert_eq!(y.amount_decimal(), "200.05");
        assert_eq!(y.annual_minor(), 20_005);
    }
}
