//! Catalog coverage: how many products carry each indicator kind, per category and overall
//! (issue 17, `aiscout-catalog stats`).
//!
//! [`Stats::of`] counts; it never judges. A product "has" a kind when it lists at least one
//! value of it. Group kinds ([`Kind::Domains`], [`Kind::AppIds`], ...) count a product once
//! when it has any of their detail kinds, so their coverage is not the sum of the details.
//!
//! The catalog has no "paid" flag, so a product counts as *paid* when the catalog knows it
//! charges: it lists a price or a merchant descriptor. The gaps a curator closes next are the
//! paid products without descriptors and those without prices.

use crate::catalog::{Catalog, Category, Product};
use crate::risk::RiskFact;

/// One indicator kind the stats count.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Kind {
    /// Any domain rule (web or API).
    Domains,
    /// Web domains.
    WebDomains,
    /// API domains.
    ApiDomains,
    /// Domain rules with a `*` in their leftmost label (SNI/DNS patterns).
    DomainPatterns,
    /// Any installed-application id (macOS, Windows, Linux).
    AppIds,
    /// macOS bundle ids.
    MacosBundleIds,
    /// Windows Uninstall-key display names.
    WindowsApps,
    /// Linux package names.
    LinuxPackages,
    /// Linux `.desktop` ids.
    LinuxDesktopIds,
    /// Process executable names.
    ProcessNames,
    /// Command-line tool names.
    CliNames,
    /// Any package id (`ecosystem:name`).
    Packages,
    /// npm package ids.
    NpmPackages,
    /// PyPI package ids.
    PypiPackages,
    /// Homebrew formula or cask ids.
    BrewPackages,
    /// cargo crate ids.
    CargoPackages,
    /// Any browser or IDE extension id.
    Extensions,
    /// VS Code and Open VSX extension ids.
    VscodeExtensions,
    /// JetBrains plugin ids.
    JetbrainsPlugins,
    /// Chrome Web Store extension ids (Chrome, Edge, Brave).
    ChromeExtensions,
    /// Firefox add-on ids.
    FirefoxExtensions,
    /// Local TCP ports.
    LocalPorts,
    /// Model-name prefixes reported by gateways.
    ModelPrefixes,
    /// Card merchant descriptors.
    MerchantDescriptors,
    /// List prices.
    Prices,
    /// List prices that say whether the plan is consumer or business.
    PricesWithAudience,
    /// Any risk fact.
    RiskFacts,
    /// One risk fact.
    Risk(RiskFact),
}

impl Kind {
    /// Every kind in report order: each group kind is followed by its detail kinds.
    pub const ALL: [Kind; 36] = [
        Kind::Domains,
        Kind::WebDomains,
        Kind::ApiDomains,
        Kind::DomainPatterns,
        Kind::AppIds,
        Kind::MacosBundleIds,
        Kind::WindowsApps,
        Kind::LinuxPackages,
        Kind::LinuxDesktopIds,
        Kind::ProcessNames,
        Kind::CliNames,
        Kind::Packages,
        Kind::NpmPackages,
        Kind::PypiPackages,
        Kind::BrewPackages,
        Kind::CargoPackages,
        Kind::Extensions,
        Kind::VscodeExtensions,
        Kind::JetbrainsPlugins,
        Kind::ChromeExtensions,
        Kind::FirefoxExtensions,
        Kind::LocalPorts,
        Kind::ModelPrefixes,
        Kind::MerchantDescriptors,
        Kind::Prices,
        Kind::PricesWithAudience,
        Kind::RiskFacts,
        Kind::Risk(RiskFact::TrainsConsumer),
        Kind::Risk(RiskFact::TrainsBusiness),
        Kind::Risk(RiskFact::Retention),
        Kind::Risk(RiskFact::Soc2),
        Kind::Risk(RiskFact::Iso27001),
        Kind::Risk(RiskFact::Sso),
        Kind::Risk(RiskFact::Scim),
        Kind::Risk(RiskFact::DataResidency),
        Kind::Risk(RiskFact::EnterprisePlan),
    ];

    /// The stable key used in CSV and JSON output (`windows_apps`, `risk.soc2`).
    pub fn key(self) -> &'static str {
        match self {
            Kind::Domains => "domains",
            Kind::WebDomains => "web_domains",
            Kind::ApiDomains => "api_domains",
            Kind::DomainPatterns => "domain_patterns",
            Kind::AppIds => "app_ids",
            Kind::MacosBundleIds => "macos_bundle_ids",
            Kind::WindowsApps => "windows_apps",
            Kind::LinuxPackages => "linux_packages",
            Kind::LinuxDesktopIds => "linux_desktop_ids",
            Kind::ProcessNames => "process_names",
            Kind::CliNames => "cli_names",
            Kind::Packages => "packages",
            Kind::NpmPackages => "packages.npm",
            Kind::PypiPackages => "packages.pypi",
            Kind::BrewPackages => "packages.brew",
            Kind::CargoPackages => "packages.cargo",
            Kind::Extensions => "extensions",
            Kind::VscodeExtensions => "vscode_extensions",
            Kind::JetbrainsPlugins => "jetbrains_plugins",
            Kind::ChromeExtensions => "chrome_extensions",
            Kind::FirefoxExtensions => "firefox_extensions",
            Kind::LocalPorts => "local_ports",
            Kind::ModelPrefixes => "model_prefixes",
            Kind::MerchantDescriptors => "merchant_patterns",
            Kind::Prices => "prices",
            Kind::PricesWithAudience => "prices.audience",
            Kind::RiskFacts => "risk",
            Kind::Risk(f) => match f {
                RiskFact::TrainsConsumer => "risk.trains_consumer",
                RiskFact::TrainsBusiness => "risk.trains_business",
                RiskFact::Retention => "risk.retention",
                RiskFact::Soc2 => "risk.soc2",
                RiskFact::Iso27001 => "risk.iso27001",
                RiskFact::Sso => "risk.sso",
                RiskFact::Scim => "risk.scim",
                RiskFact::DataResidency => "risk.data_residency",
                RiskFact::EnterprisePlan => "risk.enterprise_plan",
            },
        }
    }

    /// A label for people.
    pub fn label(self) -> &'static str {
        match self {
            Kind::Domains => "domains (web or API)",
            Kind::WebDomains => "web domains",
            Kind::ApiDomains => "API domains",
            Kind::DomainPatterns => "SNI/DNS patterns (*)",
            Kind::AppIds => "app ids (any OS)",
            Kind::MacosBundleIds => "macOS bundle ids",
            Kind::WindowsApps => "Windows display names",
            Kind::LinuxPackages => "Linux packages",
            Kind::LinuxDesktopIds => "Linux .desktop ids",
            Kind::ProcessNames => "process names",
            Kind::CliNames => "CLI names",
            Kind::Packages => "package ids (any)",
            Kind::NpmPackages => "npm",
            Kind::PypiPackages => "PyPI",
            Kind::BrewPackages => "Homebrew",
            Kind::CargoPackages => "cargo",
            Kind::Extensions => "extensions (any)",
            Kind::VscodeExtensions => "VS Code / Open VSX",
            Kind::JetbrainsPlugins => "JetBrains",
            Kind::ChromeExtensions => "Chrome / Edge / Brave",
            Kind::FirefoxExtensions => "Firefox",
            Kind::LocalPorts => "local ports",
            Kind::ModelPrefixes => "model prefixes",
            Kind::MerchantDescriptors => "merchant descriptors",
            Kind::Prices => "list prices",
            Kind::PricesWithAudience => "with audience",
            Kind::RiskFacts => "risk facts (any)",
            Kind::Risk(f) => f.label(),
        }
    }

    /// Whether this kind details the group kind before it (indented in the table).
    pub fn is_detail(self) -> bool {
        !matches!(
            self,
            Kind::Domains
                | Kind::AppIds
                | Kind::ProcessNames
                | Kind::CliNames
                | Kind::Packages
                | Kind::Extensions
                | Kind::LocalPorts
                | Kind::ModelPrefixes
                | Kind::MerchantDescriptors
                | Kind::Prices
                | Kind::RiskFacts
        )
    }

    /// How many values of this kind the product lists (for a group kind, the sum of its
    /// details; for a risk fact, 1 when known).
    pub fn values(self, p: &Product) -> usize {
        let eco = |e: &str| {
            p.packages.iter().filter(|id| id.split_once(':').is_some_and(|(x, _)| x == e)).count()
        };
        match self {
            Kind::Domains => p.domains.len(),
            Kind::WebDomains => {
                p.domains.iter().filter(|d| d.usage == crate::DomainUse::Web).count()
            }
            Kind::ApiDomains => {
                p.domains.iter().filter(|d| d.usage == crate::DomainUse::Api).count()
            }
            Kind::DomainPatterns => p.domains.iter().filter(|d| d.pattern.contains('*')).count(),
            Kind::AppIds => [
                Kind::MacosBundleIds,
                Kind::WindowsApps,
                Kind::LinuxPackages,
                Kind::LinuxDesktopIds,
            ]
            .iter()
            .map(|k| k.values(p))
            .sum(),
            Kind::MacosBundleIds => p.macos_bundle_ids.len(),
            Kind::WindowsApps => p.windows_apps.len(),
            Kind::LinuxPackages => p.linux_packages.len(),
            Kind::LinuxDesktopIds => p.linux_desktop_ids.len(),
            Kind::ProcessNames => p.process_names.len(),
            Kind::CliNames => p.cli_names.len(),
            Kind::Packages => p.packages.len(),
            Kind::NpmPackages => eco("npm"),
            Kind::PypiPackages => eco("pypi"),
            Kind::BrewPackages => eco("brew"),
            Kind::CargoPackages => eco("cargo"),
            Kind::Extensions => [
                Kind::VscodeExtensions,
                Kind::JetbrainsPlugins,
                Kind::ChromeExtensions,
                Kind::FirefoxExtensions,
            ]
            .iter()
            .map(|k| k.values(p))
            .sum(),
            Kind::VscodeExtensions => p.vscode_extensions.len(),
            Kind::JetbrainsPlugins => p.jetbrains_plugins.len(),
            Kind::ChromeExtensions => p.chrome_extensions.len(),
            Kind::FirefoxExtensions => p.firefox_extensions.len(),
            Kind::LocalPorts => p.local_ports.len(),
            Kind::ModelPrefixes => p.model_prefixes.len(),
            Kind::MerchantDescriptors => p.merchant_patterns.len(),
            Kind::Prices => p.prices.len(),
            Kind::PricesWithAudience => p.prices.iter().filter(|x| x.audience.is_some()).count(),
            Kind::RiskFacts => RiskFact::ALL.iter().filter(|f| f.source(&p.risk).is_some()).count(),
            Kind::Risk(f) => usize::from(f.source(&p.risk).is_some()),
        }
    }
}

/// How many products have one kind, and how many values they list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Coverage {
    /// The kind.
    pub kind: Kind,
    /// Products listing at least one value of it.
    pub products: usize,
    /// Values listed, over all those products.
    pub values: usize,
}

/// The products of one category and their coverage.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CategoryStats {
    /// The category.
    pub category: Category,
    /// Products in it.
    pub products: usize,
    /// Per kind, in [`Kind::ALL`] order, counted over this category's products.
    pub kinds: Vec<Coverage>,
}

/// Coverage of a whole catalog.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stats {
    /// Products in the catalog.
    pub products: usize,
    /// Per category, in [`Category::ALL`] order (empty categories included).
    pub categories: Vec<CategoryStats>,
    /// Per kind over the whole catalog, in [`Kind::ALL`] order.
    pub kinds: Vec<Coverage>,
    /// Ids of the products the catalog knows are paid (a price or a merchant descriptor).
    pub paid: Vec<String>,
    /// Paid products without a merchant descriptor, by id.
    pub paid_without_descriptors: Vec<String>,
    /// Paid products without a list price, by id.
    pub paid_without_prices: Vec<String>,
}

impl Stats {
    /// Counts the catalog's coverage.
    pub fn of(catalog: &Catalog) -> Self {
        let all: Vec<&Product> = catalog.products().iter().collect();
        let categories = Category::ALL
            .iter()
            .map(|&category| {
                let in_cat: Vec<&Product> =
                    all.iter().copied().filter(|p| p.category == category).collect();
                CategoryStats { category, products: in_cat.len(), kinds: coverage(&in_cat) }
            })
            .collect();
        let paid: Vec<&Product> = all
            .iter()
            .copied()
            .filter(|p| !p.prices.is_empty() || !p.merchant_patterns.is_empty())
            .collect();
        let ids = |f: &dyn Fn(&Product) -> bool| -> Vec<String> {
            paid.iter().copied().filter(|p| f(p)).map(|p| p.id.clone()).collect()
        };
        Self {
            products: all.len(),
            categories,
            kinds: coverage(&all),
            paid_without_descriptors: ids(&|p| p.merchant_patterns.is_empty()),
            paid_without_prices: ids(&|p| p.prices.is_empty()),
            paid: ids(&|_| true),
        }
    }

    /// The coverage of one kind over the whole catalog.
    pub fn kind(&self, kind: Kind) -> Option<&Coverage> {
        self.kinds.iter().find(|c| c.kind == kind)
    }

    /// The stats of one category.
    pub fn category(&self, category: Category) -> Option<&CategoryStats> {
        self.categories.iter().find(|c| c.category == category)
    }
}

/// `part` as a percentage of `whole`, rounded to one decimal; 0 when `whole` is 0.
pub fn percent(part: usize, whole: usize) -> f64 {
    if whole == 0 {
        return 0.0;
    }
    // Catalog counts are far below 2^52, so the conversions are exact.
    #[allow(clippy::cast_precision_loss)]
    let (part, whole) = (part as f64, whole as f64);
    (part * 1000.0 / whole).round() / 10.0
}

fn coverage(products: &[&Product]) -> Vec<Coverage> {
    Kind::ALL
        .iter()
        .map(|&kind| {
            let per: Vec<usize> = products.iter().map(|p| kind.values(p)).collect();
            Coverage {
                kind,
                products: per.iter().filter(|&&n| n > 0).count(),
                values: per.iter().sum(),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIXTURE: &str = r#"
vendor = "V"

[[product]]
id = "v.chat"
name = "Chat"
category = "chat"
sources = ["s"]
web_domains = ["chat.example", "*-chat.example.net"]
api_domains = ["api.chat.example"]
macos_bundle_ids = ["com.example.chat"]
windows_apps = [{ display_name = "Chat", publisher = "V" }]
packages = ["npm:chat-cli", "pypi:chat"]
merchant_patterns = ["V CHAT"]

[[product.price]]
plan = "Plus"
amount = "20.00"
currency = "USD"
period = "month"
source = "s"
audience = "consumer"

[[product]]
id = "v.code"
name = "Code"
category = "coding"
sources = ["s"]
vscode_extensions = ["v.code"]
chrome_extensions = ["abcdefghijklmnopabcdefghijklmnop"]
merchant_patterns = ["V CODE"]

[[product]]
id = "v.local"
name = "Local"
category = "local-runtime"
sources = ["s"]
local_ports = [1234]
linux_packages = ["v-local"]

[[product]]
id = "v.api"
name = "API"
category = "api"
sources = ["s"]
api_domains = ["api.v.example"]

[[product.price]]
plan = "Pay as you go"
amount = "5.00"
currency = "USD"
period = "month"
source = "s"
"#;

    const RISK: &str = r#"
["v.chat"]
soc2 = { value = true, source = "s" }
sso = { value = false, source = "s" }
"#;

    fn fixture() -> Stats {
        let catalog = crate::source::compile([("v.toml", FIXTURE), ("risk/v.toml", RISK)], 0)
            .unwrap_or_else(|e| panic!("{e}"));
        Stats::of(&catalog)
    }

    fn cov(s: &Stats, k: Kind) -> (usize, usize) {
        let c = s.kind(k).unwrap_or_else(|| panic!("no {k:?}"));
        (c.products, c.values)
    }

    #[test]
    fn counts_products_and_values_per_kind() {
        let s = fixture();
        assert_eq!(s.products, 4);
        assert_eq!(cov(&s, Kind::Domains), (2, 4));
        assert_eq!(cov(&s, Kind::WebDomains), (1, 2));
        assert_eq!(cov(&s, Kind::ApiDomains), (2, 2));
        assert_eq!(cov(&s, Kind::DomainPatterns), (1, 1));
        assert_eq!(cov(&s, Kind::AppIds), (2, 3));
        assert_eq!(cov(&s, Kind::WindowsApps), (1, 1));
        assert_eq!(cov(&s, Kind::LinuxPackages), (1, 1));
        assert_eq!(cov(&s, Kind::Packages), (1, 2));
        assert_eq!(cov(&s, Kind::NpmPackages), (1, 1));
        assert_eq!(cov(&s, Kind::CargoPackages), (0, 0));
        assert_eq!(cov(&s, Kind::Extensions), (1, 2));
        assert_eq!(cov(&s, Kind::LocalPorts), (1, 1));
        assert_eq!(cov(&s, Kind::MerchantDescriptors), (2, 2));
        assert_eq!(cov(&s, Kind::Prices), (2, 2));
        assert_eq!(cov(&s, Kind::PricesWithAudience), (1, 1));
        assert_eq!(cov(&s, Kind::RiskFacts), (1, 2));
        assert_eq!(cov(&s, Kind::Risk(RiskFact::Sso)), (1, 1));
        assert_eq!(cov(&s, Kind::Risk(RiskFact::Scim)), (0, 0));
        assert_eq!(s.kinds.len(), Kind::ALL.len());
    }

    #[test]
    fn counts_per_category_and_paid_gaps() {
        let s = fixture();
        assert_eq!(s.categories.len(), Category::ALL.len());
        let chat = s.category(Category::Chat).unwrap_or_else(|| panic!("chat"));
        assert_eq!(chat.products, 1);
        let domains = chat.kinds.iter().find(|c| c.kind == Kind::Domains);
        assert_eq!(domains.map(|c| (c.products, c.values)), Some((1, 3)));
        assert_eq!(s.category(Category::Video).map(|c| c.products), Some(0));
        assert_eq!(s.paid, ["v.api", "v.chat", "v.code"]);
        assert_eq!(s.paid_without_descriptors, ["v.api"]);
        assert_eq!(s.paid_without_prices, ["v.code"]);
    }

    #[test]
    fn keys_are_unique_and_details_follow_a_group() {
        let mut keys: Vec<&str> = Kind::ALL.iter().map(|k| k.key()).collect();
        keys.sort_unstable();
        keys.dedup();
        assert_eq!(keys.len(), Kind::ALL.len());
        assert!(!Kind::ALL[0].is_detail());
        assert_eq!(Kind::ALL.iter().filter(|k| matches!(k, Kind::Risk(_))).count(), 9);
    }

    #[test]
    fn percent_rounds_to_one_decimal() {
        assert!((percent(1, 3) - 33.3).abs() < 1e-9);
        assert!((percent(2, 3) - 66.7).abs() < 1e-9);
        assert!((percent(0, 0)).abs() < 1e-9);
        assert!((percent(400, 400) - 100.0).abs() < 1e-9);
    }
}
