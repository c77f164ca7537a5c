//! `aiscout-catalog`: check, build, sign, verify and query the AI-vendor catalog.

use std::io::{BufRead as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use aiscout_signatures::matcher::{AppRef, ExtensionRef, Match};
use aiscout_signatures::stats::{self, Coverage, Stats};
use aiscout_signatures::{Catalog, Category, Index, Verifier, artifact, hex, sign, source};
use anyhow::{Context as _, bail};
use clap::{Parser, Subcommand, ValueEnum};

/// The aiscout AI-vendor catalog tool.
///
/// The catalog is edited as TOML under signatures/catalog/ (one file per vendor). `check`
/// validates it, `build` compiles it into one canonical artifact, `sign` signs that artifact
/// with an Ed25519 key from `keygen`, and agents accept only artifacts that `verify` against
/// the public key pinned in their config. `lookup` says which product a domain, app,
/// extension, process or card descriptor belongs to. `stats` shows how much of the catalog
/// carries each kind of indicator, so curators see which gaps to close next.
///
/// Typical release:
///   aiscout-catalog check
///   aiscout-catalog stats
///   aiscout-catalog build --catalog-version 42 --out catalog.bin
///   aiscout-catalog sign --key release.key --out catalog.signed catalog.bin
///   aiscout-catalog verify --public-key release.pub catalog.signed
#[derive(Parser)]
#[command(name = "aiscout-catalog", version, verbatim_doc_comment)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Validate the catalog sources and list every problem with file, line and key path.
    Check {
        /// Folder of catalog TOML files.
        #[arg(default_value = "signatures/catalog")]
        dir: PathBuf,
    },
    /// Print catalog coverage: products per category, and per indicator kind how many products
    /// list it.
    ///
    /// Counts come from the TOML sources in DIR, validated as `check` does (a catalog with
    /// problems prints them and exits 1, like `check`).
    ///
    /// The output has three parts:
    ///   1. Products per category, with each category's share of the catalog and, per column,
    ///      the percentage of that category's products listing the kind (domains, app ids,
    ///      extensions, package ids, merchant descriptors, list prices, risk facts).
    ///   2. Per indicator kind: how many products list at least one value ("products"), that
    ///      as a percentage of all products ("coverage"), and how many values they list in all.
    ///      Indented rows detail the row above: web vs API domains, SNI/DNS patterns (`*`),
    ///      macOS / Windows / Linux app ids, npm / PyPI / Homebrew / cargo package ids, VS Code /
    ///      JetBrains / Chrome / Firefox extensions, prices that say consumer or business, and
    ///      each of the nine risk facts. A group row counts a product once, so its coverage is
    ///      not the sum of its details.
    ///   3. Paid products, meaning products the catalog knows charge money (they list a price or
    ///      a merchant descriptor), and the ids of those without merchant descriptors and those
    ///      without list prices: the gaps to close next.
    ///
    /// Formats:
    ///   table  the three parts as plain text for people (default)
    ///   csv    one row per (category, kind) for a spreadsheet pivot table, columns
    ///          category,kind,products,of,coverage_percent,values; category "all" is the whole
    ///          catalog, kind "products" gives a category's size, kinds "paid",
    ///          "paid_without_merchant_patterns" and "paid_without_prices" the paid gaps
    ///   json   one object with the same numbers plus the product ids of the paid gaps
    ///
    /// Examples:
    ///   aiscout-catalog stats
    ///   aiscout-catalog stats --format csv > coverage.csv
    ///   aiscout-catalog stats --format json | jq '.paid.without_prices'
    #[command(verbatim_doc_comment)]
    Stats {
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
        /// Folder of catalog TOML files.
        #[arg(default_value = "signatures/catalog")]
        dir: PathBuf,
    },
    /// Compile the sources into an unsigned canonical artifact.
    Build {
        /// Version of this catalog; agents refuse a version lower than the one they run.
        #[arg(long)]
        catalog_version: u64,
        /// Where to write the artifact.
        #[arg(long, default_value = "catalog.bin")]
        out: PathBuf,
        /// Folder of catalog TOML files.
        #[arg(default_value = "signatures/catalog")]
        dir: PathBuf,
    },
    /// Generate an Ed25519 key pair: PREFIX.key (private, mode 0600) and PREFIX.pub.
    Keygen {
        /// Path prefix of the two files; existing files are never overwritten.
        #[arg(long)]
        out: PathBuf,
    },
    /// Sign an artifact built by `build`.
    Sign {
        /// The private key file from `keygen`.
        #[arg(long)]
        key: PathBuf,
        /// Where to write the signed artifact.
        #[arg(long)]
        out: PathBuf,
        /// The artifact to sign.
        artifact: PathBuf,
    },
    /// Verify a signed artifact as an agent would, and print its version and content hash.
    Verify {
        /// The public key file (64 hex digits) that agents pin.
        #[arg(long)]
        public_key: PathBuf,
        /// Refuse artifacts older than this version, as an agent running it would.
        #[arg(long)]
        current_version: Option<u64>,
        /// The signed artifact.
        artifact: PathBuf,
    },
    /// Say which product each value belongs to (values from the command line, or one per line
    /// on standard input when none are given).
    Lookup {
        /// How to read each value.
        #[arg(long, value_enum, default_value_t = Kind::Domain)]
        kind: Kind,
        /// Print one JSON object per line instead of tab-separated columns.
        #[arg(long)]
        json: bool,
        /// A signed artifact to use instead of the built-in catalog (needs --public-key).
        #[arg(long, requires = "public_key")]
        catalog: Option<PathBuf>,
        /// The public key that --catalog must verify against.
        #[arg(long)]
        public_key: Option<PathBuf>,
        /// The values to classify.
        values: Vec<String>,
    },
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Format {
    /// Plain text tables for people.
    Table,
    /// Comma-separated rows for spreadsheets.
    Csv,
    /// One JSON object.
    Json,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Kind {
    /// A DNS name or TLS server name.
    Domain,
    /// A macOS bundle id, Windows display name, Linux package or .desktop id.
    App,
    /// A VS Code, JetBrains, Chrome or Firefox extension id.
    Extension,
    /// A process executable name.
    Process,
    /// A command-line tool name.
    Cli,
    /// A package id, `ecosystem:name` (`npm:@anthropic-ai/claude-code`, `pypi:aider-chat`).
    Package,
    /// A card merchant descriptor.
    Merchant,
    /// A local TCP port.
    Port,
    /// A model name from a gateway.
    Model,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Domain => "domain",
            Kind::App => "app",
            Kind::Extension => "extension",
            Kind::Process => "process",
            Kind::Cli => "cli",
            Kind::Package => "package",
            Kind::Merchant => "merchant",
            Kind::Port => "port",
            Kind::Model => "model",
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            if is_broken_pipe(&e) {
                return ExitCode::SUCCESS;
            }
            let mut err = std::io::stderr().lock();
            let _written = writeln!(err, "aiscout-catalog: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let mut out = std::io::stdout().lock();
    match cli.command {
        Command::Check { dir } => match source::compile_dir(&dir, 0) {
            Ok(catalog) => {
                writeln!(out, "{}", summary(&catalog, &dir))?;
                Ok(ExitCode::SUCCESS)
            }
            Err(errors) => {
                let mut err = std::io::stderr().lock();
                writeln!(err, "{errors}")?;
                Ok(ExitCode::FAILURE)
            }
        },
        Command::Stats { format, dir } => match source::compile_dir(&dir, 0) {
            Ok(catalog) => {
                let stats = Stats::of(&catalog);
                let text = match format {
                    Format::Table => stats_table(&stats, &dir)?,
                    Format::Csv => stats_csv(&stats),
                    Format::Json => format!("{}\n", stats_json(&stats, &dir)),
                };
                out.write_all(text.as_bytes())?;
                Ok(ExitCode::SUCCESS)
            }
            Err(errors) => {
                let mut err = std::io::stderr().lock();
                writeln!(err, "{errors}")?;
                Ok(ExitCode::FAILURE)
            }
        },
        Command::Build { catalog_version, out: path, dir } => {
            let catalog = source::compile_dir(&dir, catalog_version)?;
            let bytes = artifact::encode_unsigned(&catalog);
            write_new(&path, &bytes, false)?;
            let hash = hex::encode(&artifact::content_hash(&catalog));
            writeln!(
                out,
                "wrote {} (version {catalog_version}, {} products, {} bytes, sha256 {hash}, unsigned)",
                path.display(),
                catalog.products().len(),
                bytes.len()
            )?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Keygen { out: prefix } => {
            let (private, public) = sign::generate()?;
            let key_path = with_suffix(&prefix, "key");
            let pub_path = with_suffix(&prefix, "pub");
            for p in [&key_path, &pub_path] {
                if p.exists() {
                    bail!("{} already exists; keys are never overwritten", p.display());
                }
            }
            write_new(&key_path, format!("{private}\n").as_bytes(), true)?;
            write_new(&pub_path, format!("{public}\n").as_bytes(), false)?;
            writeln!(
                out,
                "wrote {} (keep secret) and {} (public key {public})",
                key_path.display(),
                pub_path.display()
            )?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Sign { key, out: path, artifact: input } => {
            let private = read_small(&key)?;
            let bytes = read_capped(&input, 64 * 1024 * 1024)?;
            let signed = sign::sign(&bytes, private.trim())
                .with_context(|| format!("signing {} with {}", input.display(), key.display()))?;
            write_new(&path, &signed, false)?;
            let public = sign::public_key(private.trim())?;
            writeln!(out, "wrote {} signed by public key {public}", path.display())?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Verify { public_key, current_version, artifact: input } => {
            let catalog = load_verified(&input, &public_key, current_version)?;
            let hash = hex::encode(&artifact::content_hash(&catalog));
            writeln!(
                out,
                "ok: {} verifies, version {}, {} products, sha256 {hash}",
                input.display(),
                catalog.version(),
                catalog.products().len()
            )?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Lookup { kind, json, catalog, public_key, values } => {
            let catalog = match (catalog, public_key) {
                (Some(c), Some(k)) => load_verified(&c, &k, None)?,
                _ => Catalog::builtin()?,
            };
            let index = Index::new(catalog);
            let mut emit = |value: &str| -> anyhow::Result<()> {
                let found = classify(&index, kind, value);
                let line =
                    if json { json_line(kind, value, found) } else { tsv_line(value, found) };
                writeln!(out, "{line}")?;
                Ok(())
            };
            if values.is_empty() {
                for line in std::io::stdin().lock().lines() {
                    let line = line.context("reading standard input")?;
                    let value = line.trim();
                    if !value.is_empty() {
                        emit(value)?;
                    }
                }
            } else {
                for value in &values {
                    emit(value)?;
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn classify<'a>(index: &'a Index, kind: Kind, value: &str) -> Option<Match<'a>> {
    match kind {
        Kind::Domain => index.domain(value),
        Kind::App => index
            .app(AppRef::MacosBundleId(value))
            .or_else(|| index.app(AppRef::WindowsApp { display_name: value, publisher: None }))
            .or_else(|| index.app(AppRef::LinuxPackage(value)))
            .or_else(|| index.app(AppRef::LinuxDesktopId(value))),
        Kind::Extension => index
            .extension(ExtensionRef::Vscode(value))
            .or_else(|| index.extension(ExtensionRef::Chrome(value)))
            .or_else(|| index.extension(ExtensionRef::Jetbrains(value)))
            .or_else(|| index.extension(ExtensionRef::Firefox(value))),
        Kind::Process => index.process(value),
        Kind::Cli => index.cli(value),
        Kind::Package => index.package(value),
        Kind::Merchant => index.merchant(value),
        Kind::Port => value.parse().ok().and_then(|p| index.local_port(p)),
        Kind::Model => index.model(value),
    }
}

fn json_line(kind: Kind, value: &str, found: Option<Match<'_>>) -> String {
    let obj = match found {
        Some(m) => serde_json::json!({
            "value": value,
            "kind": kind.as_str(),
            "product": m.product.id,
            "vendor": m.product.vendor,
            "name": m.product.name,
            "category": m.product.category.as_str(),
            "indicator": m.indicator.as_str(),
        }),
        None => serde_json::json!({
            "value": value,
            "kind": kind.as_str(),
            "product": null,
            "vendor": null,
            "name": null,
            "category": null,
            "indicator": null,
        }),
    };
    obj.to_string()
}

fn tsv_line(value: &str, found: Option<Match<'_>>) -> String {
    match found {
        Some(m) => format!(
            "{value}\t{}\t{}\t{}\t{}",
            m.product.id,
            m.product.vendor,
            m.product.category.as_str(),
            m.indicator.as_str()
        ),
        None => format!("{value}\t-\t-\t-\t-"),
    }
}

fn summary(catalog: &Catalog, dir: &Path) -> String {
    let products = catalog.products();
    let count =
        |f: &dyn Fn(&aiscout_signatures::Product) -> usize| products.iter().map(f).sum::<usize>();
    let per_category: Vec<String> = Category::ALL
        .iter()
        .map(|c| format!("{c} {}", products.iter().filter(|p| p.category == *c).count()))
        .collect();
    format!(
        "ok: {} products in {}\n  categories: {}\n  indicators: {} domains, {} app ids, {} extensions, {} process/CLI names, {} package ids, {} ports, {} merchant patterns, {} prices",
        products.len(),
        dir.display(),
        per_category.join(", "),
        count(&|p| p.domains.len()),
        count(&|p| p.macos_bundle_ids.len()
            + p.windows_apps.len()
            + p.linux_packages.len()
            + p.linux_desktop_ids.len()),
        count(&|p| p.vscode_extensions.len()
            + p.jetbrains_plugins.len()
            + p.chrome_extensions.len()
            + p.firefox_extensions.len()),
        count(&|p| p.process_names.len() + p.cli_names.len()),
        count(&|p| p.packages.len()),
        count(&|p| p.local_ports.len()),
        count(&|p| p.merchant_patterns.len()),
        count(&|p| p.prices.len()),
    )
}

/// The kinds shown as columns of the per-category table.
const CATEGORY_COLUMNS: [(stats::Kind, &str); 7] = [
    (stats::Kind::Domains, "domains"),
    (stats::Kind::AppIds, "app ids"),
    (stats::Kind::Extensions, "extensions"),
    (stats::Kind::Packages, "packages"),
    (stats::Kind::MerchantDescriptors, "merchant"),
    (stats::Kind::Prices, "prices"),
    (stats::Kind::RiskFacts, "risk"),
];

fn pct(part: usize, whole: usize) -> String {
    if whole == 0 { "-".to_owned() } else { format!("{:.1}%", stats::percent(part, whole)) }
}

fn stats_table(s: &Stats, dir: &Path) -> Result<String, std::fmt::Error> {
    use std::fmt::Write as _;
    let mut t = String::new();
    let n = s.products;
    writeln!(t, "{n} products in {}", dir.display())?;
    writeln!(
        t,
        "\nProducts per category (columns: % of the category's products that list the kind)"
    )?;
    write!(t, "{:<14} {:>8} {:>7}", "category", "products", "share")?;
    for (_, head) in CATEGORY_COLUMNS {
        write!(t, " {head:>10}")?;
    }
    t.push('\n');
    for c in &s.categories {
        write!(t, "{:<14} {:>8} {:>7}", c.category.as_str(), c.products, pct(c.products, n))?;
        for (kind, _) in CATEGORY_COLUMNS {
            let have = c.kinds.iter().find(|k| k.kind == kind).map_or(0, |k| k.products);
            write!(t, " {:>10}", pct(have, c.products))?;
        }
        t.push('\n');
    }
    write!(t, "{:<14} {:>8} {:>7}", "all", n, pct(n, n))?;
    for (kind, _) in CATEGORY_COLUMNS {
        let have = s.kind(kind).map_or(0, |k| k.products);
        write!(t, " {:>10}", pct(have, n))?;
    }
    t.push('\n');
    writeln!(
        t,
        "\nIndicator kinds (products listing at least one value; coverage of all {n} products)"
    )?;
    writeln!(t, "{:<34} {:>8} {:>8} {:>7}", "kind", "products", "coverage", "values")?;
    for Coverage { kind, products, values } in &s.kinds {
        let label =
            if kind.is_detail() { format!("  {}", kind.label()) } else { kind.label().to_owned() };
        writeln!(t, "{label:<34} {products:>8} {:>8} {values:>7}", pct(*products, n))?;
    }
    let paid = s.paid.len();
    writeln!(
        t,
        "\nPaid products (they list a price or a merchant descriptor): {paid} of {n} ({})",
        pct(paid, n)
    )?;
    for (what, ids) in [
        ("without merchant descriptors", &s.paid_without_descriptors),
        ("without list prices", &s.paid_without_prices),
    ] {
        writeln!(t, "  {what}: {} ({})", ids.len(), pct(ids.len(), paid))?;
        t.push_str(&wrap(ids, 4, 100));
    }
    Ok(t)
}

/// The ids as comma-separated lines of at most `width` columns, indented.
fn wrap(ids: &[String], indent: usize, width: usize) -> String {
    let mut out = String::new();
    let mut line = String::new();
    for (i, id) in ids.iter().enumerate() {
        let piece = if i + 1 < ids.len() { format!("{id},") } else { id.clone() };
        if !line.is_empty() && indent + line.len() + 1 + piece.len() > width {
            out.push_str(&format!("{:indent$}{line}\n", ""));
            line.clear();
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(&piece);
    }
    if !line.is_empty() {
        out.push_str(&format!("{:indent$}{line}\n", ""));
    }
    out
}

fn stats_csv(s: &Stats) -> String {
    let mut t = String::from("category,kind,products,of,coverage_percent,values\n");
    let n = s.products;
    let mut row =
        |category: &str, kind: &str, products: usize, of: usize, values: Option<usize>| {
            let values = values.map(|v| v.to_string()).unwrap_or_default();
            t.push_str(&format!(
                "{category},{kind},{products},{of},{:.1},{values}\n",
                stats::percent(products, of)
            ));
        };
    row("all", "products", n, n, None);
    for k in &s.kinds {
        row("all", k.kind.key(), k.products, n, Some(k.values));
    }
    for c in &s.categories {
        row(c.category.as_str(), "products", c.products, n, None);
        for k in &c.kinds {
            row(c.category.as_str(), k.kind.key(), k.products, c.products, Some(k.values));
        }
    }
    let paid = s.paid.len();
    row("all", "paid", paid, n, None);
    row("all", "paid_without_merchant_patterns", s.paid_without_descriptors.len(), paid, None);
    row("all", "paid_without_prices", s.paid_without_prices.len(), paid, None);
    t
}

fn stats_json(s: &Stats, dir: &Path) -> serde_json::Value {
    let n = s.products;
    let kinds = |list: &[Coverage], of: usize| -> Vec<serde_json::Value> {
        list.iter()
            .map(|k| {
                serde_json::json!({
                    "kind": k.kind.key(),
                    "label": k.kind.label(),
                    "products": k.products,
                    "coverage_percent": stats::percent(k.products, of),
                    "values": k.values,
                })
            })
            .collect()
    };
    let categories: Vec<serde_json::Value> = s
        .categories
        .iter()
        .map(|c| {
            serde_json::json!({
                "category": c.category.as_str(),
                "products": c.products,
                "share_percent": stats::percent(c.products, n),
                "kinds": kinds(&c.kinds, c.products),
            })
        })
        .collect();
    serde_json::json!({
        "dir": dir.display().to_string(),
        "products": n,
        "categories": categories,
        "kinds": kinds(&s.kinds, n),
        "paid": {
            "products": s.paid.len(),
            "without_merchant_patterns": s.paid_without_descriptors,
            "without_prices": s.paid_without_prices,
        },
    })
}

fn load_verified(path: &Path, key: &Path, current: Option<u64>) -> anyhow::Result<Catalog> {
    let key_text = read_small(key)?;
    let verifier =
        Verifier::from_hex(&key_text).with_context(|| format!("reading {}", key.display()))?;
    let bytes = read_capped(path, 64 * 1024 * 1024)?;
    verifier.verify(&bytes, current).with_context(|| format!("verifying {}", path.display()))
}

fn read_small(path: &Path) -> anyhow::Result<String> {
    let bytes = read_capped(path, 64 * 1024)?;
    String::from_utf8(bytes).with_context(|| format!("{} is not text", path.display()))
}

fn read_capped(path: &Path, cap: u64) -> anyhow::Result<Vec<u8>> {
    use std::io::Read as _;
    let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut bytes = Vec::new();
    file.take(cap + 1)
        .read_to_end(&mut bytes)
        .with_context(|| format!("reading {}", path.display()))?;
    if bytes.len() as u64 > cap {
        bail!("{} is larger than {cap} bytes", path.display());
    }
    Ok(bytes)
}

fn with_suffix(prefix: &Path, ext: &str) -> PathBuf {
    let mut s = prefix.as_os_str().to_owned();
    s.push(".");
    s.push(ext);
    PathBuf::from(s)
}

fn write_new(path: &Path, bytes: &[u8], secret: bool) -> anyhow::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    if secret {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600).create_new(true);
    }
    #[cfg(not(unix))]
    let _ = secret;
    let mut file = options.open(path).with_context(|| format!("creating {}", path.display()))?;
    file.write_all(bytes).with_context(|| format!("writing {}", path.display()))?;
    file.sync_all().with_context(|| format!("syncing {}", path.display()))?;
    Ok(())
}
