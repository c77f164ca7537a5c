//! One index over every indicator kind: the only place that decides whether a value is a
//! product.
//!
//! Each kind compares the way its platform does: macOS bundle ids, VS Code extension ids and
//! Windows display names case-insensitively; JetBrains and Firefox ids, Linux package and
//! desktop ids, and Unix process and command names exactly; Windows executables (`.exe`)
//! case-insensitively; Chrome extension ids are lowercase by definition, so any case is folded.

use std::collections::HashMap;
use std::hash::BuildHasherDefault;

use crate::catalog::{Catalog, DomainUse, Product};
use crate::domain::{DomainMatcher, FxHasher};
use crate::merchant::{MerchantMatcher, context_words, tokens};

type FxMap<K, V> = HashMap<K, V, BuildHasherDefault<FxHasher>>;

/// Which indicator matched, with the detail a report needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Indicator {
    /// A Chrome, Edge or Brave extension id.
    ChromeExtension,
    /// A command-line tool on a PATH.
    Cli,
    /// A domain rule, flagged web or API.
    Domain(DomainUse),
    /// A Firefox add-on id.
    FirefoxExtension,
    /// A JetBrains plugin id.
    JetbrainsPlugin,
    /// A Linux `.desktop` id.
    LinuxDesktopId,
    /// A Linux package name.
    LinuxPackage,
    /// A listening TCP port.
    LocalPort,
    /// A macOS bundle id.
    MacosBundleId,
    /// A card merchant descriptor.
    Merchant,
    /// A model name reported by a gateway.
    Model,
    /// A package id, `ecosystem:name` (npm, PyPI, Homebrew, cargo).
    Package,
    /// A running process's executable name.
    Process,
    /// A VS Code or Open VSX extension id.
    VscodeExtension,
    /// A Windows Uninstall-key display name.
    WindowsApp,
}

impl Indicator {
    /// A stable name for output: `web` or `api` for domains, the kind's snake-case name
    /// otherwise.
    pub fn as_str(self) -> &'static str {
        match self {
            Indicator::ChromeExtension => "chrome_extension",
            Indicator::Cli => "cli",
            Indicator::Domain(u) => u.as_str(),
            Indicator::FirefoxExtension => "firefox_extension",
            Indicator::JetbrainsPlugin => "jetbrains_plugin",
            Indicator::LinuxDesktopId => "linux_desktop_id",
            Indicator::LinuxPackage => "linux_package",
            Indicator::LocalPort => "local_port",
            Indicator::MacosBundleId => "macos_bundle_id",
            Indicator::Merchant => "merchant",
            Indicator::Model => "model",
            Indicator::Package => "package",
            Indicator::Process => "process",
            Indicator::VscodeExtension => "vscode_extension",
            Indicator::WindowsApp => "windows_app",
        }
    }
}

/// A value that matched: the product and the indicator that identified it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Match<'a> {
    /// The product.
    pub product: &'a Product,
    /// What identified it.
    pub indicator: Indicator,
}

/// An installed application as a platform reports it.
#[derive(Clone, Copy, Debug)]
#[non_exhaustive]
pub enum AppRef<'v> {
    /// A Linux `.desktop` file id (`cursor.desktop`).
    LinuxDesktopId(&'v str),
    /// A Linux package name.
    LinuxPackage(&'v str),
    /// A macOS bundle id from `Info.plist`.
    MacosBundleId(&'v str),
    /// A Windows Uninstall-key `DisplayName`, with its `Publisher` when present.
    WindowsApp {
        /// `DisplayName`.
        display_name: &'v str,
        /// `Publisher`.
        publisher: Option<&'v str>,
    },
}

/// An installed browser or IDE extension.
#[derive(Clone, Copy, Debug)]
#[non_exhaustive]
pub enum ExtensionRef<'v> {
    /// A Chromium-family extension id.
    Chrome(&'v str),
    /// A Firefox add-on id.
    Firefox(&'v str),
    /// A JetBrains plugin id.
    Jetbrains(&'v str),
    /// A VS Code-family extension id, `publisher.name`.
    Vscode(&'v str),
}

/// The index: build once per catalog, share read-only.
#[derive(Clone, Debug)]
pub struct Index {
    catalog: Catalog,
    domains: DomainMatcher<(u32, DomainUse)>,
    exact: FxMap<(Indicator, String), u32>,
    // Windows apps: lowercased display name -> (lowercased publisher, product).
    windows: FxMap<String, Vec<(Option<String>, u32)>>,
    ports: FxMap<u16, u32>,
    merchants: MerchantMatcher<u32>,
    // Shared descriptors: matcher to index in `catalog.shared()`, and per descriptor its
    // token count and each rule's phrases as token lists.
    shared: MerchantMatcher<u32>,
    shared_rules: Vec<(usize, Vec<Vec<Vec<String>>>)>,
    models: Vec<(String, u32)>,
}

/// What a card line is, from its descriptor and its other columns
/// (see [`Index::merchant_in_context`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LineMatch<'a> {
    /// The line is this product.
    Product(Match<'a>),
    /// A shared descriptor whose context says the line is not AI spend.
    NotAi,
    /// A shared descriptor that no rule resolved: a review candidate, with the reason.
    Ambiguous {
        /// The shared descriptor pattern as written in the catalog.
        descriptor: &'a str,
        /// Why the descriptor alone names no product.
        reason: &'a str,
    },
    /// Nothing in the catalog knows the descriptor.
    Unknown,
}

impl Index {
    /// Builds the index. Indicators claimed twice resolve to the later product; the source
    /// checker refuses such catalogs, so this only matters for hand-built catalogs.
    pub fn new(catalog: Catalog) -> Self {
        let mut domain_rules = Vec::new();
        let mut exact = FxMap::default();
        let mut windows: FxMap<String, Vec<(Option<String>, u32)>> = FxMap::default();
        let mut ports = FxMap::default();
        let mut merchant_patterns = Vec::new();
        let mut models = Vec::new();
        for (i, p) in catalog.products().iter().enumerate() {
            let i = u32::try_from(i).unwrap_or(u32::MAX);
            for d in &p.domains {
                domain_rules.push((d.pattern.clone(), (i, d.usage)));
            }
            let kinds: [(Indicator, &[String]); 10] = [
                (Indicator::MacosBundleId, &p.macos_bundle_ids),
                (Indicator::LinuxPackage, &p.linux_packages),
                (Indicator::LinuxDesktopId, &p.linux_desktop_ids),
                (Indicator::Process, &p.process_names),
                (Indicator::Cli, &p.cli_names),
                (Indicator::VscodeExtension, &p.vscode_extensions),
                (Indicator::JetbrainsPlugin, &p.jetbrains_plugins),
                (Indicator::ChromeExtension, &p.chrome_extensions),
                (Indicator::FirefoxExtension, &p.firefox_extensions),
                (Indicator::Package, &p.packages),
            ];
            for (kind, values) in kinds {
                for v in values {
                    exact.insert((kind, fold(kind, v).into_owned()), i);
                }
            }
            for w in &p.windows_apps {
                windows
                    .entry(display_name_key(&w.display_name))
                    .or_default()
                    .push((w.publisher.as_ref().map(|s| s.to_lowercase()), i));
            }
            for port in &p.local_ports {
                ports.insert(*port, i);
            }
            for m in &p.merchant_patterns {
                merchant_patterns.push((m.clone(), i));
            }
            for m in &p.model_prefixes {
                models.push((m.to_ascii_lowercase(), i));
            }
        }
        // Longest model prefix first, so `gpt-4o` beats `gpt-`.
        models.sort_by(|a, b| b.0.len().cmp(&a.0.len()).then_with(|| a.0.cmp(&b.0)));
        let domains = DomainMatcher::new(domain_rules.iter().map(|(r, v)| (r.as_str(), *v)));
        let merchants =
            MerchantMatcher::new(merchant_patterns.iter().map(|(m, v)| (m.as_str(), *v)));
        let shared = MerchantMatcher::new(
            catalog
                .shared()
                .iter()
                .enumerate()
                .map(|(i, s)| (s.descriptor.as_str(), u32::try_from(i).unwrap_or(u32::MAX))),
        );
        let shared_rules = catalog
            .shared()
            .iter()
            .map(|s| {
                let rules = s
                    .rules
                    .iter()
                    .map(|r| r.context.iter().map(|c| context_words(c)).collect())
                    .collect();
                (tokens(&s.descriptor).len(), rules)
            })
            .collect();
        Self { catalog, domains, exact, windows, ports, merchants, shared, shared_rules, models }
    }

    /// The catalog this index was built from.
    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    fn product(&self, i: u32) -> Option<&Product> {
        self.catalog.products().get(usize::try_from(i).ok()?)
    }

    fn hit(&self, i: u32, indicator: Indicator) -> Option<Match<'_>> {
        Some(Match { product: self.product(i)?, indicator })
    }

    /// Matches a DNS name or TLS/QUIC server name (any case, trailing dot, Unicode or
    /// punycode) on label boundaries; the most specific rule wins.
    pub fn domain(&self, name: &str) -> Option<Match<'_>> {
        let hit = self.domains.lookup(name)?;
        let (i, usage) = hit.value;
        self.hit(i, Indicator::Domain(usage))
    }

    /// Matches an installed application.
    pub fn app(&self, app: AppRef<'_>) -> Option<Match<'_>> {
        let (kind, value) = match app {
            AppRef::LinuxDesktopId(v) => (Indicator::LinuxDesktopId, v),
            AppRef::LinuxPackage(v) => (Indicator::LinuxPackage, v),
            AppRef::MacosBundleId(v) => (Indicator::MacosBundleId, v),
            AppRef::WindowsApp { display_name, publisher } => {
                let list = self.windows.get(&display_name_key(display_name))?;
                let publisher = publisher.map(|p| p.trim().to_lowercase());
                // An entry with a publisher matches only that publisher; one without matches any.
                let i = list.iter().find_map(|(want, i)| match want {
                    Some(w) if publisher.as_deref() != Some(w.as_str()) => None,
                    _ => Some(*i),
                })?;
                return self.hit(i, Indicator::WindowsApp);
            }
        };
        self.exact_hit(kind, value)
    }

    /// Matches an installed extension.
    pub fn extension(&self, ext: ExtensionRef<'_>) -> Option<Match<'_>> {
        let (kind, value) = match ext {
            ExtensionRef::Chrome(v) => (Indicator::ChromeExtension, v),
            ExtensionRef::Firefox(v) => (Indicator::FirefoxExtension, v),
            ExtensionRef::Jetbrains(v) => (Indicator::JetbrainsPlugin, v),
            ExtensionRef::Vscode(v) => (Indicator::VscodeExtension, v),
        };
        self.exact_hit(kind, value)
    }

    /// Matches a running process by executable name (`ollama`, `Cursor.exe`).
    pub fn process(&self, name: &str) -> Option<Match<'_>> {
        self.exact_hit(Indicator::Process, name)
    }

    /// Matches a command-line tool by its file name.
    pub fn cli(&self, name: &str) -> Option<Match<'_>> {
        self.exact_hit(Indicator::Cli, name)
    }

    /// Matches an installed package by its id, `ecosystem:name` (`npm:@anthropic-ai/claude-code`,
    /// `pypi:aider_chat`). Names compare the way their registry does: case-insensitively, and
    /// for PyPI and cargo with `-`, `_` and `.` alike.
    pub fn package(&self, id: &str) -> Option<Match<'_>> {
        self.exact_hit(Indicator::Package, id)
    }

    /// Matches a listening local TCP port.
    pub fn local_port(&self, port: u16) -> Option<Match<'_>> {
        self.hit(*self.ports.get(&port)?, Indicator::LocalPort)
    }

    /// Matches a card merchant descriptor (see [`crate::merchant`]).
    pub fn merchant(&self, descriptor: &str) -> Option<Match<'_>> {
        self.hit(self.merchants.lookup(descriptor)?, Indicator::Merchant)
    }

    /// Matches a card line: its descriptor, resolved with the line's other columns
    /// (`context`: memo, notes, category, merchant name) where the descriptor is shared.
    ///
    /// A product pattern that starts the descriptor wins (`GITHUB COPILOT`), then the merchant
    /// name column's. Otherwise a shared descriptor (`GITHUB`, `APPLE.COM/BILL`) is resolved by
    /// the first of its rules with a phrase in the rest of the descriptor or in a context
    /// column (whole words, in order, any case); with none it is [`LineMatch::Ambiguous`],
    /// never a guess at one of the vendor's products.
    pub fn merchant_in_context(
        &self,
        descriptor: &str,
        merchant: &str,
        context: &[&str],
    ) -> LineMatch<'_> {
        let toks = tokens(descriptor);
        if let Some(m) =
            self.merchants.lookup_tokens(&toks).and_then(|i| self.hit(i, Indicator::Merchant))
        {
            return LineMatch::Product(m);
        }
        let shared = self.shared.lookup_tokens(&toks).or_else(|| self.shared.lookup(merchant));
        let Some(si) = shared else {
            return match (!merchant.is_empty()).then(|| self.merchant(merchant)).flatten() {
                Some(m) => LineMatch::Product(m),
                None => LineMatch::Unknown,
            };
        };
        let idx = usize::try_from(si).unwrap_or(usize::MAX);
        let (Some(s), Some((len, rules))) =
            (self.catalog.shared().get(idx), self.shared_rules.get(idx))
        else {
            return LineMatch::Unknown;
        };
        let mut texts: Vec<Vec<String>> = vec![toks.get(*len..).unwrap_or(&[]).to_vec()];
        texts.push(context_words(merchant));
        texts.extend(context.iter().map(|c| context_words(c)));
        for (rule, phrases) in s.rules.iter().zip(rules) {
            let hit = phrases.iter().any(|p| texts.iter().any(|t| contains_run(t, p)));
            if hit {
                return match rule.product.as_deref().and_then(|id| self.catalog.product(id)) {
                    Some(product) => {
                        LineMatch::Product(Match { product, indicator: Indicator::Merchant })
                    }
                    None => LineMatch::NotAi,
                };
            }
        }
        LineMatch::Ambiguous { descriptor: &s.descriptor, reason: &s.reason }
    }

    /// Matches a model name as a gateway reports it (`gpt-4o-2024-08-06`,
    /// `anthropic/claude-sonnet-4`): a provider prefix before `/` is ignored, then the longest
    /// model prefix wins.
    pub fn model(&self, name: &str) -> Option<Match<'_>> {
        let bare = name.rsplit('/').next().unwrap_or(name).trim().to_ascii_lowercase();
        let i = self.models.iter().find(|(p, _)| bare.starts_with(p.as_str()))?.1;
        self.hit(i, Indicator::Model)
    }

    fn exact_hit(&self, kind: Indicator, value: &str) -> Option<Match<'_>> {
        let key = (kind, fold(kind, value.trim()).into_owned());
        self.hit(*self.exact.get(&key)?, kind)
    }
}

/// The comparable form of a Windows display name: lowercased, with trailing version numbers and
/// architecture or scope tags removed, since installers write `Ollama version 0.5.7` or
/// `Cursor (User)` where the catalog says `Ollama` and `Cursor`.
/// True when `phrase` (non-empty) occurs in `text` as consecutive whole tokens.
fn contains_run(text: &[String], phrase: &[String]) -> bool {
    !phrase.is_empty() && text.windows(phrase.len()).any(|w| w == phrase)
}

fn display_name_key(name: &str) -> String {
    const NOISE: &[&str] = &[
        "version",
        "(x64)",
        "(x86)",
        "(user)",
        "(machine)",
        "(64-bit)",
        "(32-bit)",
        "x64",
        "x86",
        "-",
    ];
    let lower = name.trim().to_lowercase();
    let mut words: Vec<&str> = lower.split_whitespace().collect();
    while words.len() > 1 {
        let last = words.last().copied().unwrap_or_default();
        let versionish = last.trim_start_matches('v').starts_with(|c: char| c.is_ascii_digit());
        if versionish || NOISE.contains(&last) {
            words.pop();
        } else {
            break;
        }
    }
    words.join(" ")
}

/// Folds a value to the form its platform compares (see the module docs).
fn fold(kind: Indicator, value: &str) -> std::borrow::Cow<'_, str> {
    if kind == Indicator::Package {
        return std::borrow::Cow::Owned(package_key(value));
    }
    let insensitive = match kind {
        Indicator::MacosBundleId | Indicator::VscodeExtension | Indicator::ChromeExtension => true,
        Indicator::Process | Indicator::Cli => {
            value.len() >= 4
                && value.get(value.len() - 4..).is_some_and(|ext| ext.eq_ignore_ascii_case(".exe"))
        }
        _ => false,
    };
    if insensitive {
        std::borrow::Cow::Owned(value.to_lowercase())
    } else {
        std::borrow::Cow::Borrowed(value)
    }
}

/// The comparable form of a package id: lowercased (npm names are lowercase, Homebrew,
/// PyPI and crates.io compare case-insensitively), and for PyPI (PEP 503) and cargo (crates.io
/// treats `-` and `_` alike) every run of `-`, `_` and `.` folded to one `-`.
fn package_key(id: &str) -> String {
    let lower = id.to_lowercase();
    let Some((eco, name)) = lower.split_once(':') else { return lower };
    if eco != "pypi" && eco != "cargo" {
        return lower;
    }
    let mut out = String::with_capacity(lower.len());
    out.push_str(eco);
    out.push(':');
    let mut sep = false;
    for c in name.chars() {
        if matches!(c, '-' | '_' | '.') {
            sep = true;
        } else {
            if sep {
                out.push('-');
                sep = false;
            }
            out.push(c);
        }
    }
    if sep {
        out.push('-');
    }
    out
}

/// The key under which two indicator values collide, for the source checker's duplicate test.
pub(crate) fn collision_key(kind: Indicator, value: &str) -> String {
    fold(kind, value).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::{Category, DomainRule, WindowsApp};

    fn index() -> Index {
        let chat = Product {
            id: "openai.chatgpt".into(),
            vendor: "OpenAI".into(),
            name: "ChatGPT".into(),
            category: Category::Chat,
            domains: vec![DomainRule { pattern: "chatgpt.com".into(), usage: DomainUse::Web }],
            macos_bundle_ids: vec!["com.openai.chat".into()],
            process_names: vec!["ChatGPT".into(), "ChatGPT.exe".into()],
            windows_apps: vec![WindowsApp {
                display_name: "ChatGPT".into(),
                publisher: Some("OpenAI".into()),
            }],
            merchant_patterns: vec!["OPENAI CHATGPT".into()],
            ..Product::default()
        };
        let api = Product {
            id: "openai.api".into(),
            vendor: "OpenAI".into(),
            name: "OpenAI API".into(),
            category: Category::Api,
            domains: vec![DomainRule { pattern: "api.openai.com".into(), usage: DomainUse::Api }],
            model_prefixes: vec!["gpt-".into(), "gpt-4o".into()],
            merchant_patterns: vec!["OPENAI".into()],
            ..Product::default()
        };
        let code = Product {
            id: "microsoft.vscode-copilot".into(),
            vendor: "GitHub".into(),
            name: "Copilot".into(),
            category: Category::Coding,
            vscode_extensions: vec!["GitHub.copilot".into()],
            jetbrains_plugins: vec!["com.github.copilot".into()],
            chrome_extensions: vec!["fcoeoabgfenejglbffodgkkbkcdhcgfn".into()],
            local_ports: vec![11434],
            packages: vec!["npm:@github/copilot".into(), "pypi:copilot-cli".into()],
            ..Product::default()
        };
        Index::new(Catalog::new(1, vec![chat, api, code]))
    }

    fn id(m: Option<Match<'_>>) -> Option<&str> {
        m.map(|m| m.product.id.as_str())
    }

    #[test]
    fn case_rules_per_platform() {
        let ix = index();
        assert_eq!(id(ix.app(AppRef::MacosBundleId("COM.OpenAI.Chat"))), Some("openai.chatgpt"));
        assert_eq!(id(ix.process("ChatGPT")), Some("openai.chatgpt"));
        assert_eq!(id(ix.process("chatgpt")), None, "unix process names are case-sensitive");
        assert_eq!(id(ix.process("CHATGPT.EXE")), Some("openai.chatgpt"));
        let vs = ix.extension(ExtensionRef::Vscode("github.COPILOT"));
        assert_eq!(id(vs), Some("microsoft.vscode-copilot"));
        assert_eq!(id(ix.extension(ExtensionRef::Jetbrains("COM.GITHUB.COPILOT"))), None);
        let chrome = ix.extension(ExtensionRef::Chrome("FCOEOABGFENEJGLBFFODGKKBKCDHCGFN"));
        assert_eq!(id(chrome), Some("microsoft.vscode-copilot"));
    }

    #[test]
    fn package_ids_compare_as_their_registry_does() {
        let ix = index();
        let code = Some("microsoft.vscode-copilot");
        assert_eq!(id(ix.package("npm:@github/copilot")), code);
        assert_eq!(id(ix.package("pypi:Copilot_CLI")), code, "PEP 503 normalisation");
        assert_eq!(id(ix.package("pypi:copilot.cli")), code);
        assert_eq!(id(ix.package("pypi:copilotcli")), None);
        assert_eq!(id(ix.package("npm:@github/copilot-x")), None);
        assert_eq!(id(ix.package("cargo:copilot-cli")), None, "the ecosystem is part of the id");
        assert_eq!(
            ix.package("npm:@github/copilot").map(|m| m.indicator.as_str()),
            Some("package")
        );
    }

    #[test]
    fn windows_app_needs_matching_publisher() {
        let ix = index();
        let ok = AppRef::WindowsApp { display_name: "chatgpt ", publisher: Some("OPENAI") };
        assert_eq!(id(ix.app(ok)), Some("openai.chatgpt"));
        let versioned = AppRef::WindowsApp {
            display_name: "ChatGPT version 1.2.3 (x64)",
            publisher: Some("OpenAI"),
        };
        assert_eq!(id(ix.app(versioned)), Some("openai.chatgpt"));
        let other =
            AppRef::WindowsApp { display_name: "ChatGPT Helper", publisher: Some("OpenAI") };
        assert_eq!(id(ix.app(other)), None);
        let fake = AppRef::WindowsApp { display_name: "ChatGPT", publisher: Some("Scam Ltd") };
        assert_eq!(id(ix.app(fake)), None);
    }

    #[test]
    fn domains_merchants_models_ports() {
        let ix = index();
        let m = ix.domain("API.OpenAI.com.").expect("api");
        assert_eq!(m.product.id, "openai.api");
        assert_eq!(m.indicator.as_str(), "api");
        assert_eq!(ix.domain("chat.chatgpt.com").map(|m| m.indicator.as_str()), Some("web"));
        assert_eq!(id(ix.merchant("OPENAI *CHATGPT SUBSCR")), Some("openai.chatgpt"));
        assert_eq!(id(ix.merchant("OPENAI")), Some("openai.api"));
        assert_eq!(id(ix.model("openai/GPT-4o-2024-08-06")), Some("openai.api"));
        assert_eq!(id(ix.model("claude-3")), None);
        assert_eq!(id(ix.local_port(11434)), Some("microsoft.vscode-copilot"));
        assert_eq!(id(ix.local_port(80)), None);
    }
}

#[cfg(test)]
mod shared_tests {
    use super::*;

    fn builtin() -> Index {
        Index::new(Catalog::builtin().expect("builtin catalog"))
    }

    fn what(m: LineMatch<'_>) -> String {
        match m {
            LineMatch::Product(m) => m.product.id.clone(),
            LineMatch::NotAi => "not-ai".into(),
            LineMatch::Ambiguous { descriptor, .. } => format!("ambiguous:{descriptor}"),
            LineMatch::Unknown => "unknown".into(),
        }
    }

    /// Every shared descriptor of `rules/merchants.toml`: one memo that makes it AI, a
    /// near-miss memo that does not, and no memo at all.
    #[test]
    fn shared_descriptors_resolve_from_context_and_never_guess() {
        let ix = builtin();
        let cases: &[(&str, &str, &str, &str)] = &[
            // descriptor, merchant, memo, expected
            ("GITHUB", "", "Copilot Business seats", "github.copilot"),
            ("GITHUB", "", "Actions minutes overage", "not-ai"),
            ("GITHUB", "", "copilots for the team offsite", "ambiguous:GITHUB"),
            ("GITHUB", "", "", "ambiguous:GITHUB"),
            ("GITHUB.COM 8774484820 CA", "GitHub", "", "ambiguous:GITHUB"),
            ("GITHUB COPILOT", "", "Actions", "github.copilot"),
            ("APPLE.COM/BILL 866-712-7753 CA", "", "ChatGPT Plus (iPhone)", "openai.chatgpt"),
            ("APPLE.COM/BILL", "", "Claude Pro", "anthropic.claude"),
            ("APPLE.COM/BILL", "", "iCloud+ 200 GB", "ambiguous:APPLE.COM/BILL"),
            ("APPLE.COM/BILL", "", "chatgptish notes", "ambiguous:APPLE.COM/BILL"),
            ("GOOGLE ONE*AI PREMIUM", "", "", "google.gemini"),
            ("GOOGLE ONE", "", "Gemini Advanced via Google One", "google.gemini"),
            ("GOOGLE ONE", "", "Photos storage 100 GB", "not-ai"),
            ("GOOGLE ONE", "", "premium support", "ambiguous:GOOGLE ONE"),
            ("GOOGLE CLOUD", "", "Vertex AI project ml-prod", "google.vertex-ai"),
            ("GOOGLE CLOUD", "", "Gemini API key for the bot", "google.ai-studio"),
            ("GOOGLE CLOUD", "", "Compute Engine VMs", "ambiguous:GOOGLE CLOUD"),
            ("GITHUBS BAKERY", "", "Copilot", "unknown"),
            ("THAI PALACE", "", "Copilot", "unknown"),
        ];
        for (descriptor, merchant, memo, want) in cases {
            let got = what(ix.merchant_in_context(descriptor, merchant, &[memo]));
            assert_eq!(&got, want, "{descriptor} / {merchant} / {memo}");
        }
        // The merchant name column is context too, and so is a category column.
        assert_eq!(what(ix.merchant_in_context("GITHUB", "GitHub Copilot", &[])), "github.copilot");
        assert_eq!(what(ix.merchant_in_context("GITHUB", "", &["", "Copilot"])), "github.copilot");
        let LineMatch::Ambiguous { reason, .. } = ix.merchant_in_context("GITHUB", "", &[]) else {
            panic!("bare GITHUB must be ambiguous");
        };
        assert!(reason.contains("Copilot"), "{reason}");
    }
}
