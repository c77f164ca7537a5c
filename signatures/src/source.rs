//! The human-edited catalog sources: TOML files, one per vendor, under `signatures/catalog/`.
//!
//! The checker walks each parsed document by hand rather than through serde, so that one run
//! reports every problem (unknown keys, wrong types, bad values, duplicates across files), each
//! with its file, line and key path, instead of stopping at the first. The schema is documented
//! in `signatures/catalog/README.md`.

use std::collections::HashMap;
use std::fmt;
use std::ops::Range;
use std::path::Path;

use toml_edit::{Document, InlineTable, Item, Table, Value};

use crate::catalog::{
    Audience, Catalog, Category, ContextRule, DomainRule, DomainUse, Period, Price, Product,
    SharedDescriptor, WindowsApp,
};
use crate::matcher::{Indicator, collision_key};
use crate::risk::{Retention, RiskFact, RiskFacts, Sourced};
use crate::{domain, merchant};

/// A source file larger than this is refused unread: catalog files are a few kilobytes.
pub const MAX_SOURCE_BYTES: u64 = 4 * 1024 * 1024;

/// One problem in the sources, with where it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SourceError {
    /// The file name as given to [`compile`].
    pub file: String,
    /// 1-based line; 0 when the problem concerns the whole file.
    pub line: usize,
    /// The key path (`product[2].web_domains[0]`), empty for file-level problems.
    pub field: String,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for SourceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file, self.line)?;
        if !self.field.is_empty() {
            write!(f, ": {}", self.field)?;
        }
        write!(f, ": {}", self.message)
    }
}

/// Every problem found in one check, in file and line order.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct SourceErrors(pub Vec<SourceError>);

impl fmt::Display for SourceErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0.len();
        write!(f, "{n} problem{} in the catalog sources", if n == 1 { "" } else { "s" })?;
        for e in &self.0 {
            write!(f, "\n  {e}")?;
        }
        Ok(())
    }
}

/// Reads every `*.toml` file in `dir` (sorted by name) and compiles them.
///
/// # Errors
/// Unreadable or oversized files and every validation problem, all together.
pub fn compile_dir(dir: &Path, version: u64) -> Result<Catalog, SourceErrors> {
    let mut errors = Vec::new();
    let mut files = Vec::new();
    let entries = std::fs::read_dir(dir).map_err(|e| {
        SourceErrors(vec![file_error(
            &dir.display().to_string(),
            format!("cannot read folder: {e}"),
        )])
    })?;
    let toml_files = |entries: std::fs::ReadDir| -> Vec<std::path::PathBuf> {
        entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "toml"))
            .collect()
    };
    let mut paths = toml_files(entries);
    // Catalog-wide rules live in `rules/` and risk facts in `risk/<vendor>.toml`, beside the
    // vendor files.
    for sub in [RULES_DIR, RISK_DIR] {
        if let Ok(found) = std::fs::read_dir(dir.join(sub)) {
            paths.extend(toml_files(found));
        }
    }
    paths.sort();
    for path in paths {
        let name = path.display().to_string();
        match read_capped(&path) {
            Ok(text) => files.push((name, text)),
            Err(e) => errors.push(file_error(&name, e.to_string())),
        }
    }
    if files.is_empty() && errors.is_empty() {
        errors.push(file_error(&dir.display().to_string(), "no .toml catalog files".into()));
    }
    match compile(files.iter().map(|(n, t)| (n.as_str(), t.as_str())), version) {
        Ok(catalog) if errors.is_empty() => Ok(catalog),
        Ok(_) => Err(SourceErrors(errors)),
        Err(SourceErrors(more)) => {
            errors.extend(more);
            Err(SourceErrors(errors))
        }
    }
}

/// The folder (under the catalog folder) of rule files such as `rules/merchants.toml`.
pub const RULES_DIR: &str = "rules";

/// True for a file of catalog-wide rules rather than a vendor's products.
fn is_rules_file(name: &str) -> bool {
    let parent = Path::new(name).parent().and_then(Path::file_name);
    parent.is_some_and(|p| p == RULES_DIR)
}

/// Why a catalog source file could not be read; its message becomes the file's error.
#[derive(Debug, thiserror::Error)]
enum ReadError {
    #[error("cannot open: {0}")]
    Open(std::io::Error),
    #[error("cannot read: {0}")]
    Read(std::io::Error),
    #[error("larger than {MAX_SOURCE_BYTES} bytes")]
    TooLarge,
}

fn read_capped(path: &Path) -> Result<String, ReadError> {
    use std::io::Read as _;
    let file = std::fs::File::open(path).map_err(ReadError::Open)?;
    let mut text = String::new();
    file.take(MAX_SOURCE_BYTES + 1).read_to_string(&mut text).map_err(ReadError::Read)?;
    if text.len() as u64 > MAX_SOURCE_BYTES {
        return Err(ReadError::TooLarge);
    }
    Ok(text)
}

fn file_error(file: &str, message: String) -> SourceError {
    SourceError { file: file.to_owned(), line: 0, field: String::new(), message }
}

/// Compiles named source texts into a catalog at `version`.
///
/// # Errors
/// Every problem in every file, plus indicators claimed twice across files.
pub fn compile<'a>(
    sources: impl IntoIterator<Item = (&'a str, &'a str)>,
    version: u64,
) -> Result<Catalog, SourceErrors> {
    let mut errors = Vec::new();
    let mut products = Vec::new();
    let mut claims = Claims::default();
    let mut shared = Vec::new();
    let mut risk_files = Vec::new();
    for (file, text) in sources {
        if is_risk_file(file) {
            risk_files.push((file, text));
            continue;
        }
        let mut cx = Cx { file, text, errors: &mut errors };
        if is_rules_file(file) {
            shared.extend(cx.file_rules());
        } else {
            let found = cx.file_products(&mut claims);
            products.extend(found);
        }
    }
    for (s, file, line, field) in &shared {
        for (i, r) in s.rules.iter().enumerate() {
            if let Some(p) = r.product.as_deref().filter(|p| !claims.ids.contains_key(*p)) {
                errors.push(SourceError {
                    file: file.clone(),
                    line: *line,
                    field: format!("{field}.rule[{i}].product"),
                    message: format!("no product has the id {p:?}"),
                });
            }
        }
    }
    // Risk facts after every product, so that any file may name any product.
    let mut first_risk: HashMap<String, (String, usize)> = HashMap::new();
    for (file, text) in risk_files {
        let mut cx = Cx { file, text, errors: &mut errors };
        for (id, facts) in cx.file_risk(&claims, &mut first_risk) {
            if let Some(p) = products.iter_mut().find(|p| p.id == id) {
                p.risk = facts;
            }
        }
    }
    if errors.is_empty() {
        let shared = shared.into_iter().map(|(s, ..)| s).collect();
        Ok(Catalog::new(version, products).with_shared(shared))
    } else {
        errors.sort_by(|a, b| (&a.file, a.line).cmp(&(&b.file, b.line)));
        Err(SourceErrors(errors))
    }
}

/// The folder, beside the vendor files, that holds the risk facts.
pub const RISK_DIR: &str = "risk";

/// Whether a source file holds risk facts: it sits in a folder named [`RISK_DIR`].
fn is_risk_file(name: &str) -> bool {
    Path::new(name).parent().and_then(Path::file_name).is_some_and(|d| d == RISK_DIR)
}

/// The longest retention policy text and residency region name.
const MAX_RISK_TEXT: usize = 120;

/// Who claimed each indicator first, for duplicate detection across files.
#[derive(Default)]
struct Claims {
    ids: HashMap<String, (String, usize)>,
    values: HashMap<(&'static str, String), (String, String, usize)>,
}

/// A table or inline table, walked the same way.
#[derive(Clone, Copy)]
enum TableRef<'a> {
    Inline(&'a InlineTable),
    Table(&'a Table),
}

enum Node<'a> {
    Tables(Vec<TableRef<'a>>),
    Value(&'a Value),
    Table(&'a Table),
}

impl<'a> Node<'a> {
    /// A `[table]` or an inline `{ table }`.
    fn table(&self) -> Option<TableRef<'a>> {
        match self {
            Node::Table(t) => Some(TableRef::Table(t)),
            Node::Value(v) => v.as_inline_table().map(TableRef::Inline),
            Node::Tables(_) => None,
        }
    }
}

impl<'a> TableRef<'a> {
    fn entries(self) -> Vec<(&'a str, Option<Range<usize>>, Node<'a>)> {
        match self {
            TableRef::Table(t) => t
                .iter()
                .filter_map(|(k, item)| {
                    let span = t.key(k).and_then(toml_edit::Key::span).or_else(|| item.span());
                    let node = match item {
                        Item::Value(v) => Node::Value(v),
                        Item::Table(t) => Node::Table(t),
                        Item::ArrayOfTables(a) => {
                            Node::Tables(a.iter().map(TableRef::Table).collect())
                        }
                        Item::None => return None,
                    };
                    Some((k, span, node))
                })
                .collect(),
            TableRef::Inline(t) => t
                .iter()
                .map(|(k, v)| {
                    let span = t.key(k).and_then(toml_edit::Key::span).or_else(|| v.span());
                    (k, span, Node::Value(v))
                })
                .collect(),
        }
    }

    fn span(self) -> Option<Range<usize>> {
        match self {
            TableRef::Inline(t) => t.span(),
            TableRef::Table(t) => t.span(),
        }
    }
}

struct Cx<'e, 's> {
    file: &'s str,
    text: &'s str,
    errors: &'e mut Vec<SourceError>,
}

impl Cx<'_, '_> {
    fn line(&self, span: Option<&Range<usize>>) -> usize {
        let Some(span) = span else { return 0 };
        let upto = self.text.get(..span.start).unwrap_or(self.text);
        upto.bytes().filter(|&b| b == b'\n').count().saturating_add(1)
    }

    fn err(&mut self, span: Option<&Range<usize>>, field: &str, message: impl Into<String>) {
        let line = self.line(span);
        self.errors.push(SourceError {
            file: self.file.to_owned(),
            line,
            field: field.to_owned(),
            message: message.into(),
        });
    }

    fn file_products(&mut self, claims: &mut Claims) -> Vec<Product> {
        let doc = match Document::parse(self.text) {
            Ok(doc) => doc,
            Err(e) => {
                let span = e.span();
                self.err(span.as_ref(), "", format!("invalid TOML: {}", e.message().trim()));
                return Vec::new();
            }
        };
        let mut vendor = None;
        let mut product_tables = Vec::new();
        for (key, span, node) in TableRef::Table(doc.as_table()).entries() {
            match (key, node) {
                ("vendor", node) => vendor = self.string(&node, span.as_ref(), "vendor"),
                ("product", Node::Tables(tables)) => product_tables = tables,
                ("product", Node::Value(v)) if v.as_array().is_some() => {
                    product_tables = self.inline_tables(v, "product");
                }
                ("product", _) => self.err(span.as_ref(), "product", "expected [[product]] tables"),
                (other, _) => self.err(span.as_ref(), other, "unknown key"),
            }
        }
        if vendor.is_none() {
            self.err(None, "vendor", "missing required key");
        }
        if product_tables.is_empty() {
            self.err(None, "product", "the file defines no [[product]]");
        }
        let vendor = vendor.unwrap_or_default();
        product_tables
            .into_iter()
            .enumerate()
            .filter_map(|(i, t)| self.product(t, &format!("product[{i}]"), &vendor, claims))
            .collect()
    }

    /// A rules file: `[[shared]]` descriptors with their `[[shared.rule]]`s. Returns each
    /// descriptor with its file, line and field, for the product check after all files.
    fn file_rules(&mut self) -> Vec<(SharedDescriptor, String, usize, String)> {
        let doc = match Document::parse(self.text) {
            Ok(doc) => doc,
            Err(e) => {
                let span = e.span();
                self.err(span.as_ref(), "", format!("invalid TOML: {}", e.message().trim()));
                return Vec::new();
            }
        };
        let mut tables = Vec::new();
        for (key, span, node) in TableRef::Table(doc.as_table()).entries() {
            match (key, node) {
                ("shared", Node::Tables(t)) => tables = t,
                ("shared", _) => self.err(span.as_ref(), "shared", "expected [[shared]] tables"),
                (other, _) => self.err(span.as_ref(), other, "unknown key"),
            }
        }
        let mut out = Vec::new();
        let mut seen: HashMap<Vec<String>, usize> = HashMap::new();
        for (i, t) in tables.into_iter().enumerate() {
            let f = format!("shared[{i}]");
            let tspan = t.span();
            let line = self.line(tspan.as_ref());
            let before = self.errors.len();
            let (mut descriptor, mut reason, mut source, mut rules) = (None, None, None, None);
            for (key, span, node) in t.entries() {
                let kf = format!("{f}.{key}");
                let span = span.as_ref();
                match key {
                    "descriptor" => {
                        descriptor = self.string(&node, span, &kf).filter(|d| {
                            let toks = merchant::tokens(d);
                            if toks.is_empty() {
                                self.err(span, &kf, "descriptor is empty after normalisation");
                                return false;
                            }
                            if let Some(first) = seen.insert(toks, line) {
                                let msg = format!("descriptor already shared at line {first}");
                                self.err(span, &kf, msg);
                                return false;
                            }
                            true
                        });
                    }
                    "reason" => reason = self.string(&node, span, &kf),
                    "source" => source = self.string(&node, span, &kf),
                    "rule" => rules = Some(self.context_rules(&node, span, &kf)),
                    _ => self.err(span, &kf, "unknown key"),
                }
            }
            for (present, key) in [
                (descriptor.is_some(), "descriptor"),
                (reason.is_some(), "reason"),
                (source.is_some(), "source"),
            ] {
                if !present && self.errors.len() == before {
                    self.err(tspan.as_ref(), &format!("{f}.{key}"), "missing required key");
                }
            }
            if let (Some(descriptor), Some(reason), Some(source)) = (descriptor, reason, source) {
                let rules = rules.unwrap_or_default();
                out.push((
                    SharedDescriptor { descriptor, reason, source, rules },
                    self.file.to_owned(),
                    line,
                    f,
                ));
            }
        }
        out
    }

    fn context_rules(
        &mut self,
        node: &Node<'_>,
        span: Option<&Range<usize>>,
        field: &str,
    ) -> Vec<ContextRule> {
        let Node::Tables(tables) = node else {
            self.err(span, field, "expected [[shared.rule]] tables");
            return Vec::new();
        };
        let mut out = Vec::new();
        for (i, t) in tables.iter().enumerate() {
            let f = format!("{field}[{i}]");
            let tspan = t.span();
            let before = self.errors.len();
            let (mut context, mut product, mut not_ai, mut source) = (None, None, false, None);
            for (key, span, node) in t.entries() {
                let kf = format!("{f}.{key}");
                let span = span.as_ref();
                match key {
                    "context" => {
                        let list = self.strings(&node, span, &kf);
                        for (c, cspan) in &list {
                            if merchant::tokens(c).is_empty() {
                                self.err(
                                    cspan.as_ref(),
                                    &kf,
                                    "phrase is empty after normalisation",
                                );
                            }
                        }
                        context = Some(list.into_iter().map(|(c, _)| c).collect::<Vec<_>>());
                    }
                    "product" => product = self.string(&node, span, &kf),
                    "not_ai" => match node {
                        Node::Value(v) if v.as_bool().is_some() => {
                            not_ai = v.as_bool().unwrap_or(false);
                        }
                        _ => self.err(span, &kf, "expected true or false"),
                    },
                    "source" => source = self.string(&node, span, &kf),
                    _ => self.err(span, &kf, "unknown key"),
                }
            }
            if self.errors.len() != before {
                continue;
            }
            let Some(context) = context.filter(|c| !c.is_empty()) else {
                self.err(tspan.as_ref(), &format!("{f}.context"), "a rule needs context phrases");
                continue;
            };
            let Some(source) = source else {
                self.err(tspan.as_ref(), &format!("{f}.source"), "missing required key");
                continue;
            };
            if product.is_some() == not_ai {
                self.err(
                    tspan.as_ref(),
                    &format!("{f}.product"),
                    "a rule names a product or says not_ai = true, not both or neither",
                );
                continue;
            }
            out.push(ContextRule { context, product, source });
        }
        out
    }

    fn inline_tables<'a>(&mut self, v: &'a Value, field: &str) -> Vec<TableRef<'a>> {
        let mut out = Vec::new();
        for (i, item) in v.as_array().into_iter().flat_map(|a| a.iter()).enumerate() {
            match item.as_inline_table() {
                Some(t) => out.push(TableRef::Inline(t)),
                None => {
                    self.err(item.span().as_ref(), &format!("{field}[{i}]"), "expected a table")
                }
            }
        }
        out
    }

    fn string(
        &mut self,
        node: &Node<'_>,
        span: Option<&Range<usize>>,
        field: &str,
    ) -> Option<String> {
        match node {
            Node::Value(v) => match v.as_str() {
                Some(s) if !s.trim().is_empty() => Some(s.to_owned()),
                Some(_) => {
                    self.err(span, field, "must not be empty");
                    None
                }
                None => {
                    self.err(span, field, "expected a string");
                    None
                }
            },
            _ => {
                self.err(span, field, "expected a string");
                None
            }
        }
    }

    /// A list of strings; each element comes back with its span.
    fn strings(
        &mut self,
        node: &Node<'_>,
        span: Option<&Range<usize>>,
        field: &str,
    ) -> Vec<(String, Option<Range<usize>>)> {
        let Node::Value(Value::Array(array)) = node else {
            self.err(span, field, "expected a list of strings");
            return Vec::new();
        };
        let mut out = Vec::new();
        for (i, v) in array.iter().enumerate() {
            match v.as_str() {
                Some(s) if !s.trim().is_empty() && s.trim() == s => {
                    out.push((s.to_owned(), v.span()))
                }
                Some(_) => self.err(
                    v.span().as_ref(),
                    &format!("{field}[{i}]"),
                    "must not be empty or have surrounding white space",
                ),
                None => self.err(v.span().as_ref(), &format!("{field}[{i}]"), "expected a string"),
            }
        }
        out
    }

    fn claim(
        &mut self,
        claims: &mut Claims,
        what: &'static str,
        key: String,
        product: &str,
        span: Option<&Range<usize>>,
        field: &str,
    ) {
        let line = self.line(span);
        match claims.values.get(&(what, key.clone())) {
            Some((owner, file, first_line)) => {
                let message = format!(
                    "{what} {key:?} is already claimed by {owner} at {file}:{first_line}; an \
                     indicator belongs to one product"
                );
                self.err(span, field, message);
            }
            None => {
                claims.values.insert((what, key), (product.to_owned(), self.file.to_owned(), line));
            }
        }
    }

    fn product(
        &mut self,
        table: TableRef<'_>,
        path: &str,
        vendor: &str,
        claims: &mut Claims,
    ) -> Option<Product> {
        let mut p = Product { vendor: vendor.to_owned(), ..Product::default() };
        let errors_before = self.errors.len();
        let mut seen = Seen::default();
        let entries = table.entries();
        // The id first, so that duplicate claims can name their owner.
        let id = entries.iter().find(|(k, _, _)| *k == "id").and_then(|(_, span, node)| {
            let field = format!("{path}.id");
            let id = self.string(node, span.as_ref(), &field)?;
            if !valid_id(&id) {
                self.err(
                    span.as_ref(),
                    &field,
                    "must be vendor.product: lowercase a-z, 0-9 and '-'",
                );
            }
            let line = self.line(span.as_ref());
            if let Some((file, first)) = claims.ids.get(&id) {
                let message =
                    format!("duplicate product id {id:?}, first defined at {file}:{first}");
                self.err(span.as_ref(), &field, message);
            } else {
                claims.ids.insert(id.clone(), (self.file.to_owned(), line));
            }
            Some(id)
        });
        let Some(id) = id else {
            self.err(table.span().as_ref(), &format!("{path}.id"), "missing required key");
            return None;
        };
        p.id = id;
        for (key, span, node) in &entries {
            let span = span.as_ref();
            let field = format!("{path}.{key}");
            seen.mark(key);
            match *key {
                "id" => {}
                "name" => p.name = self.string(node, span, &field).unwrap_or_default(),
                "category" => {
                    if let Some(c) = self.string(node, span, &field) {
                        match Category::parse(&c) {
                            Some(c) => p.category = c,
                            None => {
                                let all: Vec<_> =
                                    Category::ALL.iter().map(|c| c.as_str()).collect();
                                let msg =
                                    format!("unknown category {c:?}; one of {}", all.join(", "));
                                self.err(span, &field, msg);
                            }
                        }
                    }
                }
                "sources" => {
                    p.sources =
                        self.strings(node, span, &field).into_iter().map(|(s, _)| s).collect();
                    if p.sources.is_empty() {
                        self.err(span, &field, "needs at least one source");
                    }
                }
                "web_domains" | "api_domains" => {
                    let usage = if *key == "api_domains" { DomainUse::Api } else { DomainUse::Web };
                    for (i, (d, s)) in self.strings(node, span, &field).into_iter().enumerate() {
                        let f = format!("{field}[{i}]");
                        match domain::validate_rule(&d) {
                            Ok(()) => {
                                self.claim(claims, "domain", d.clone(), &p.id, s.as_ref(), &f);
                                p.domains.push(DomainRule { pattern: d, usage });
                            }
                            Err(e) => {
                                self.err(s.as_ref(), &f, format!("invalid domain {d:?}: {e}"))
                            }
                        }
                    }
                }
                "windows_apps" => {
                    p.windows_apps = self.windows_apps(node, span, &field, &p.id, claims)
                }
                "local_ports" => p.local_ports = self.ports(node, span, &field, &p.id, claims),
                "merchant_patterns" => {
                    for (i, (m, s)) in self.strings(node, span, &field).into_iter().enumerate() {
                        let f = format!("{field}[{i}]");
                        match merchant::validate_pattern(&m) {
                            Ok(tokens) => {
                                let key = tokens.join(" ");
                                self.claim(claims, "merchant pattern", key, &p.id, s.as_ref(), &f);
                                p.merchant_patterns.push(m);
                            }
                            Err(e) => {
                                self.err(s.as_ref(), &f, format!("invalid pattern {m:?}: {e}"))
                            }
                        }
                    }
                }
                "model_prefixes" => {
                    for (i, (m, s)) in self.strings(node, span, &field).into_iter().enumerate() {
                        let f = format!("{field}[{i}]");
                        let key = m.to_ascii_lowercase();
                        self.claim(claims, "model prefix", key, &p.id, s.as_ref(), &f);
                        p.model_prefixes.push(m);
                    }
                }
                "price" => p.prices = self.prices(node, span, &field),
                other => match exact_kind(other) {
                    Some((kind, what)) => {
                        let mut values = Vec::new();
                        for (i, (v, s)) in self.strings(node, span, &field).into_iter().enumerate()
                        {
                            let f = format!("{field}[{i}]");
                            if kind == Indicator::ChromeExtension && !valid_chrome_id(&v) {
                                self.err(s.as_ref(), &f, "a Chrome extension id is 32 letters a-p");
                                continue;
                            }
                            if kind == Indicator::Package
                                && let Err(e) = valid_package(&v)
                            {
                                self.err(s.as_ref(), &f, format!("invalid package id {v:?}: {e}"));
                                continue;
                            }
                            self.claim(
                                claims,
                                what,
                                collision_key(kind, &v),
                                &p.id,
                                s.as_ref(),
                                &f,
                            );
                            values.push(v);
                        }
                        *exact_field(&mut p, kind) = values;
                    }
                    None => self.err(span, &field, "unknown key"),
                },
            }
        }
        for required in ["name", "category", "sources"] {
            if !seen.has(required) {
                self.err(
                    table.span().as_ref(),
                    &format!("{path}.{required}"),
                    "missing required key",
                );
            }
        }
        (self.errors.len() == errors_before).then_some(p)
    }

    /// The risk facts of one `risk/<vendor>.toml`: a table per product id, a table per fact.
    fn file_risk(
        &mut self,
        claims: &Claims,
        first: &mut HashMap<String, (String, usize)>,
    ) -> Vec<(String, RiskFacts)> {
        let doc = match Document::parse(self.text) {
            Ok(doc) => doc,
            Err(e) => {
                let span = e.span();
                self.err(span.as_ref(), "", format!("invalid TOML: {}", e.message().trim()));
                return Vec::new();
            }
        };
        let mut out = Vec::new();
        for (id, span, node) in TableRef::Table(doc.as_table()).entries() {
            let span = span.as_ref();
            let field = format!("{id:?}");
            let Some(table) = node.table() else {
                self.err(span, &field, "expected a table of facts for this product id");
                continue;
            };
            if !claims.ids.contains_key(id) {
                self.err(
                    span,
                    &field,
                    format!("unknown product id {id:?}: no vendor file defines it"),
                );
                continue;
            }
            let line = self.line(span);
            if let Some((file, at)) = first.get(id) {
                let msg = format!("risk facts for {id:?} are already given at {file}:{at}");
                self.err(span, &field, msg);
                continue;
            }
            first.insert(id.to_owned(), (self.file.to_owned(), line));
            let before = self.errors.len();
            let facts = self.risk_facts(table, &field);
            if self.errors.len() == before {
                out.push((id.to_owned(), facts));
            }
        }
        out
    }

    fn risk_facts(&mut self, table: TableRef<'_>, path: &str) -> RiskFacts {
        let mut facts = RiskFacts::default();
        for (key, span, node) in table.entries() {
            let span = span.as_ref();
            let field = format!("{path}.{key}");
            let Some(fact) = RiskFact::parse(key) else {
                let all: Vec<_> = RiskFact::ALL.iter().map(|f| f.key()).collect();
                self.err(span, &field, format!("unknown fact; one of {}", all.join(", ")));
                continue;
            };
            let Some(t) = node.table() else {
                self.err(span, &field, "expected { value = ..., source = \"...\" }");
                continue;
            };
            let (mut value, mut days, mut policy, mut source) = (None, None, None, None);
            let before = self.errors.len();
            for (k, kspan, knode) in t.entries() {
                let kspan = kspan.as_ref();
                let kf = format!("{field}.{k}");
                match (k, fact) {
                    ("source", _) => source = self.string(&knode, kspan, &kf),
                    ("days", RiskFact::Retention) => {
                        days = match &knode {
                            Node::Value(v) => v.as_integer().and_then(|d| u32::try_from(d).ok()),
                            _ => None,
                        }
                        .filter(|d| *d <= 36_500);
                        if days.is_none() {
                            self.err(kspan, &kf, "expected a number of days from 0 to 36500");
                        }
                    }
                    ("policy", RiskFact::Retention) => {
                        policy = self.string(&knode, kspan, &kf).filter(|p| {
                            let ok = p.chars().count() <= MAX_RISK_TEXT;
                            if !ok {
                                let msg =
                                    format!("at most {MAX_RISK_TEXT} characters: keep it short");
                                self.err(kspan, &kf, msg);
                            }
                            ok
                        });
                    }
                    ("value", RiskFact::Retention) => {
                        self.err(kspan, &kf, "retention takes days and/or policy, not value")
                    }
                    ("value", _) => value = Some((knode, kspan.cloned())),
                    _ => self.err(kspan, &kf, "unknown key"),
                }
            }
            let tspan = t.span();
            let Some(source) = source else {
                self.err(
                    tspan.as_ref(),
                    &format!("{field}.source"),
                    "missing required key: every fact names its source",
                );
                continue;
            };
            match fact {
                RiskFact::Retention => {
                    if days.is_none() && policy.is_none() && self.errors.len() == before {
                        self.err(tspan.as_ref(), &field, "give days, policy or both");
                    } else {
                        facts.retention =
                            Some(Sourced { value: Retention { days, policy }, source });
                    }
                }
                RiskFact::DataResidency => {
                    let Some((node, vspan)) = value else {
                        self.err(tspan.as_ref(), &format!("{field}.value"), "missing required key");
                        continue;
                    };
                    let vf = format!("{field}.value");
                    let regions: Vec<String> = self
                        .strings(&node, vspan.as_ref(), &vf)
                        .into_iter()
                        .filter_map(|(r, s)| {
                            if r.chars().count() > MAX_RISK_TEXT {
                                self.err(
                                    s.as_ref(),
                                    &vf,
                                    "a region name is at most 120 characters",
                                );
                                return None;
                            }
                            Some(r)
                        })
                        .collect();
                    facts.data_residency = Some(Sourced { value: regions, source });
                }
                _ => {
                    let Some((node, vspan)) = value else {
                        self.err(tspan.as_ref(), &format!("{field}.value"), "missing required key");
                        continue;
                    };
                    let Some(b) = (match &node {
                        Node::Value(v) => v.as_bool(),
                        _ => None,
                    }) else {
                        self.err(
                            vspan.as_ref(),
                            &format!("{field}.value"),
                            "expected true or false",
                        );
                        continue;
                    };
                    let sourced = Some(Sourced { value: b, source });
                    match fact {
                        RiskFact::TrainsConsumer => facts.trains_consumer = sourced,
                        RiskFact::TrainsBusiness => facts.trains_business = sourced,
                        RiskFact::Soc2 => facts.soc2 = sourced,
                        RiskFact::Iso27001 => facts.iso27001 = sourced,
                        RiskFact::Sso => facts.sso = sourced,
                        RiskFact::Scim => facts.scim = sourced,
                        _ => facts.enterprise_plan = sourced,
                    }
                }
            }
        }
        facts
    }

    fn windows_apps(
        &mut self,
        node: &Node<'_>,
        span: Option<&Range<usize>>,
        field: &str,
        product: &str,
        claims: &mut Claims,
    ) -> Vec<WindowsApp> {
        let tables = match node {
            Node::Tables(t) => t.clone(),
            Node::Value(v) if v.as_array().is_some() => self.inline_tables(v, field),
            _ => {
                self.err(span, field, "expected a list of { display_name, publisher } tables");
                return Vec::new();
            }
        };
        let mut out = Vec::new();
        for (i, t) in tables.into_iter().enumerate() {
            let f = format!("{field}[{i}]");
            let (mut name, mut publisher) = (None, None);
            for (key, span, node) in t.entries() {
                let kf = format!("{f}.{key}");
                match key {
                    "display_name" => name = self.string(&node, span.as_ref(), &kf),
                    "publisher" => publisher = self.string(&node, span.as_ref(), &kf),
                    _ => self.err(span.as_ref(), &kf, "unknown key"),
                }
            }
            match name {
                Some(display_name) => {
                    let key = format!(
                        "{} / {}",
                        display_name.to_lowercase(),
                        publisher.as_deref().unwrap_or("").to_lowercase()
                    );
                    self.claim(claims, "windows app", key, product, t.span().as_ref(), &f);
                    out.push(WindowsApp { display_name, publisher });
                }
                None => self.err(
                    t.span().as_ref(),
                    &format!("{f}.display_name"),
                    "missing required key",
                ),
            }
        }
        out
    }

    fn ports(
        &mut self,
        node: &Node<'_>,
        span: Option<&Range<usize>>,
        field: &str,
        product: &str,
        claims: &mut Claims,
    ) -> Vec<u16> {
        let Node::Value(Value::Array(array)) = node else {
            self.err(span, field, "expected a list of port numbers");
            return Vec::new();
        };
        let mut out = Vec::new();
        for (i, v) in array.iter().enumerate() {
            let f = format!("{field}[{i}]");
            match v.as_integer().and_then(|n| u16::try_from(n).ok()).filter(|&n| n != 0) {
                Some(port) => {
                    self.claim(
                        claims,
                        "local port",
                        port.to_string(),
                        product,
                        v.span().as_ref(),
                        &f,
                    );
                    out.push(port);
                }
                None => self.err(v.span().as_ref(), &f, "expected a port number from 1 to 65535"),
            }
        }
        out
    }

    fn prices(&mut self, node: &Node<'_>, span: Option<&Range<usize>>, field: &str) -> Vec<Price> {
        let tables = match node {
            Node::Tables(t) => t.clone(),
            Node::Value(v) if v.as_array().is_some() => self.inline_tables(v, field),
            _ => {
                self.err(span, field, "expected [[product.price]] tables");
                return Vec::new();
            }
        };
        let mut out = Vec::new();
        for (i, t) in tables.into_iter().enumerate() {
            let f = format!("{field}[{i}]");
            let (mut plan, mut amount, mut currency, mut period, mut source) =
                (None, None, None, None, None);
            let mut audience = None;
            let (mut min_seats, mut min_seats_source) = (None, None);
            let before = self.errors.len();
            for (key, span, node) in t.entries() {
                let kf = format!("{f}.{key}");
                let span = span.as_ref();
                match key {
                    "plan" => plan = self.string(&node, span, &kf),
                    "source" => source = self.string(&node, span, &kf),
                    "amount" => {
                        amount = self.string(&node, span, &kf).and_then(|a| {
                            let minor = parse_minor(&a);
                            if minor.is_none() {
                                let msg = format!(
                                    "amount {a:?} must be a decimal string such as \"20.00\""
                                );
                                self.err(span, &kf, msg);
                            }
                            minor
                        });
                    }
                    "currency" => {
                        currency = self.string(&node, span, &kf).filter(|c| {
                            let ok = c.len() == 3 && c.bytes().all(|b| b.is_ascii_uppercase());
                            if !ok {
                                self.err(
                                    span,
                                    &kf,
                                    format!("currency {c:?} must be an ISO 4217 code such as USD"),
                                );
                            }
                            ok
                        });
                    }
                    "period" => {
                        period = self.string(&node, span, &kf).and_then(|p| match p.as_str() {
                            "month" => Some(Period::Month),
                            "year" => Some(Period::Year),
                            _ => {
                                self.err(span, &kf, format!("period {p:?} must be month or year"));
                                None
                            }
                        });
                    }
                    "audience" => {
                        audience = self.string(&node, span, &kf).and_then(|a| {
                            let parsed = Audience::parse(&a);
                            if parsed.is_none() {
                                let msg = format!("audience {a:?} must be consumer or business");
                                self.err(span, &kf, msg);
                            }
                            parsed
                        });
                    }
                    "min_seats" => {
                        let n = match &node {
                            Node::Value(v) => v.as_integer().and_then(|n| u32::try_from(n).ok()),
                            _ => None,
                        };
                        min_seats = match n {
                            Some(n) if n >= 2 => Some(n),
                            _ => {
                                let msg = "min_seats must be a whole number of seats, 2 or more";
                                self.err(span, &kf, msg);
                                None
                            }
                        };
                    }
                    "min_seats_source" => min_seats_source = self.string(&node, span, &kf),
                    _ => self.err(span, &kf, "unknown key"),
                }
            }
            let tspan = t.span();
            // A minimum is a fact like a price: it needs its own source (issue 17).
            if self.errors.len() == before {
                match (min_seats.is_some(), min_seats_source.is_some()) {
                    (true, false) => self.err(
                        tspan.as_ref(),
                        &format!("{f}.min_seats_source"),
                        "min_seats needs the source that states it",
                    ),
                    (false, true) => self.err(
                        tspan.as_ref(),
                        &format!("{f}.min_seats"),
                        "min_seats_source without min_seats",
                    ),
                    _ => {}
                }
            }
            for (present, key) in [
                (plan.is_some(), "plan"),
                (amount.is_some(), "amount"),
                (currency.is_some(), "currency"),
                (period.is_some(), "period"),
                (source.is_some(), "source"),
            ] {
                if !present && self.errors.len() == before {
                    let msg = if key == "currency" {
                        "a price needs its currency".to_owned()
                    } else {
                        "missing required key".to_owned()
                    };
                    self.err(tspan.as_ref(), &format!("{f}.{key}"), msg);
                }
            }
            if let (Some(plan), Some(amount_minor), Some(currency), Some(period), Some(source)) =
                (plan, amount, currency, period, source)
            {
                out.push(Price {
                    plan,
                    amount_minor,
                    currency,
                    period,
                    source,
                    audience,
                    min_seats,
                    min_seats_source,
                });
            }
        }
        out
    }
}

#[derive(Default)]
struct Seen(Vec<String>);

impl Seen {
    fn mark(&mut self, key: &str) {
        self.0.push(key.to_owned());
    }
    fn has(&self, key: &str) -> bool {
        self.0.iter().any(|k| k == key)
    }
}

fn exact_kind(key: &str) -> Option<(Indicator, &'static str)> {
    Some(match key {
        "macos_bundle_ids" => (Indicator::MacosBundleId, "macOS bundle id"),
        "linux_packages" => (Indicator::LinuxPackage, "Linux package"),
        "linux_desktop_ids" => (Indicator::LinuxDesktopId, "Linux desktop id"),
        "process_names" => (Indicator::Process, "process name"),
        "cli_names" => (Indicator::Cli, "command name"),
        "packages" => (Indicator::Package, "package id"),
        "vscode_extensions" => (Indicator::VscodeExtension, "VS Code extension"),
        "jetbrains_plugins" => (Indicator::JetbrainsPlugin, "JetBrains plugin"),
        "chrome_extensions" => (Indicator::ChromeExtension, "Chrome extension"),
        "firefox_extensions" => (Indicator::FirefoxExtension, "Firefox extension"),
        _ => return None,
    })
}

fn exact_field(p: &mut Product, kind: Indicator) -> &mut Vec<String> {
    match kind {
        Indicator::MacosBundleId => &mut p.macos_bundle_ids,
        Indicator::LinuxPackage => &mut p.linux_packages,
        Indicator::LinuxDesktopId => &mut p.linux_desktop_ids,
        Indicator::Process => &mut p.process_names,
        Indicator::Cli => &mut p.cli_names,
        Indicator::VscodeExtension => &mut p.vscode_extensions,
        Indicator::JetbrainsPlugin => &mut p.jetbrains_plugins,
        Indicator::ChromeExtension => &mut p.chrome_extensions,
        Indicator::Package => &mut p.packages,
        _ => &mut p.firefox_extensions,
    }
}

fn valid_id(id: &str) -> bool {
    let mut parts = id.split('.');
    let ok_part = |s: &str| {
        !s.is_empty()
            && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !s.starts_with('-')
            && !s.ends_with('-')
    };
    matches!((parts.next(), parts.next(), parts.next()), (Some(v), Some(p), None) if ok_part(v) && ok_part(p))
}

fn valid_chrome_id(id: &str) -> bool {
    id.len() == 32 && id.bytes().all(|b| (b'a'..=b'p').contains(&b.to_ascii_lowercase()))
}

/// The package managers a package id may name.
pub const PACKAGE_ECOSYSTEMS: [&str; 4] = ["npm", "pypi", "brew", "cargo"];

/// Checks an `ecosystem:name` package id: a known ecosystem and a name of the characters that
/// ecosystem allows (npm: an optional `@scope/`; others: letters, digits, `-`, `_`, `.`, and
/// `@` for versioned Homebrew formulae such as `python@3.12`).
fn valid_package(id: &str) -> Result<(), String> {
    let Some((eco, name)) = id.split_once(':') else {
        return Err(format!(
            "must be ecosystem:name, ecosystem one of {}",
            PACKAGE_ECOSYSTEMS.join(", ")
        ));
    };
    if !PACKAGE_ECOSYSTEMS.contains(&eco) {
        return Err(format!(
            "unknown ecosystem {eco:?}; one of {} (Linux packages go in linux_packages)",
            PACKAGE_ECOSYSTEMS.join(", ")
        ));
    }
    let plain = |s: &str| {
        !s.is_empty()
            && s.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
            && s.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
    };
    let ok = match eco {
        "npm" => {
            let shape = match name.strip_prefix('@') {
                Some(scoped) => scoped.split_once('/').is_some_and(|(s, n)| plain(s) && plain(n)),
                None => plain(name),
            };
            shape && name == name.to_lowercase()
        }
        "brew" => name.split_once('@').map_or(plain(name), |(n, v)| plain(n) && plain(v)),
        _ => plain(name),
    };
    if ok { Ok(()) } else { Err(format!("{name:?} is not a valid {eco} package name")) }
}

/// Parses `20`, `20.5` or `20.00` into minor units (two decimals); `None` for anything else.
pub(crate) fn parse_minor(text: &str) -> Option<i64> {
    let (whole, frac) = text.split_once('.').unwrap_or((text, ""));
    if whole.is_empty() || !whole.bytes().all(|b| b.is_ascii_digit()) || frac.len() > 2 {
        return None;
    }
    if !frac.bytes().all(|b| b.is_ascii_digit()) || (text.contains('.') && frac.is_empty()) {
        return None;
    }
    let whole: i64 = whole.parse().ok()?;
    let frac: i64 = if frac.is_empty() { 0 } else { format!("{frac:0<2}").parse().ok()? };
    whole.checked_mul(100)?.checked_add(frac)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
vendor = "OpenAI"

[[product]]
id = "openai.chatgpt"
name = "ChatGPT"
category = "chat"
sources = ["test"]
web_domains = ["chatgpt.com"]
windows_apps = [{ display_name = "ChatGPT", publisher = "OpenAI" }]
merchant_patterns = ["OPENAI *CHATGPT"]

[[product.price]]
plan = "Plus"
amount = "20.00"
currency = "USD"
period = "month"
source = "test"
"#;

    fn errors(files: &[(&str, &str)]) -> Vec<String> {
        match compile(files.iter().copied(), 1) {
            Ok(_) => Vec::new(),
            Err(SourceErrors(e)) => e.iter().map(ToString::to_string).collect(),
        }
    }

    #[test]
    fn good_file_compiles() {
        let c = compile([("openai.toml", GOOD)], 7).expect("compiles");
        assert_eq!(c.version(), 7);
        let p = c.product("openai.chatgpt").expect("product");
        assert_eq!(p.vendor, "OpenAI");
        assert_eq!(p.prices.first().map(|p| p.amount_minor), Some(2_000));
        assert_eq!(p.windows_apps.first().and_then(|w| w.publisher.as_deref()), Some("OpenAI"));
    }

    #[test]
    fn every_error_is_listed_with_file_line_and_field() {
        let bad = r#"vendor = "X"
colour = "red"

[[product]]
id = "x.one"
name = "One"
category = "chat"
sources = ["s"]
web_domains = ["Bad Domain.com", "chatgpt.com"]
nickname = "o"

[[product.price]]
plan = "Pro"
amount = "20.00"
period = "month"
source = "s"
"#;
        let e = errors(&[("openai.toml", GOOD), ("x.toml", bad)]);
        assert_eq!(
            e,
            vec![
                "x.toml:2: colour: unknown key",
                "x.toml:9: product[0].web_domains[0]: invalid domain \"Bad Domain.com\": domain must be lowercase",
                "x.toml:9: product[0].web_domains[1]: domain \"chatgpt.com\" is already claimed by openai.chatgpt at openai.toml:9; an indicator belongs to one product",
                "x.toml:10: product[0].nickname: unknown key",
                "x.toml:12: product[0].price[0].currency: a price needs its currency",
            ]
        );
    }

    #[test]
    fn duplicate_ids_and_missing_keys() {
        let dup = GOOD.replace("chatgpt.com", "chat.com").replace("OPENAI *CHATGPT", "CHATGPT X");
        let dup = dup.replace("display_name = \"ChatGPT\"", "display_name = \"Other\"");
        let e = errors(&[("a.toml", GOOD), ("b.toml", &dup)]);
        assert_eq!(
            e,
            vec![
                "b.toml:5: product[0].id: duplicate product id \"openai.chatgpt\", first defined at a.toml:5"
            ]
        );
        let e = errors(&[("c.toml", "vendor = \"C\"\n[[product]]\nid = \"c.x\"\n")]);
        assert_eq!(
            e,
            vec![
                "c.toml:2: product[0].name: missing required key",
                "c.toml:2: product[0].category: missing required key",
                "c.toml:2: product[0].sources: missing required key",
            ]
        );
    }

    #[test]
    fn syntax_errors_name_the_line() {
        let e = errors(&[("s.toml", "vendor = \"S\"\n[[product]\n")]);
        assert_eq!(e.len(), 1);
        assert!(e[0].starts_with("s.toml:2: invalid TOML"), "{e:?}");
    }

    #[test]
    fn bad_values() {
        let f = r#"vendor = "V"
[[product]]
id = "V.Bad"
name = "n"
category = "robots"
sources = []
chrome_extensions = ["notanid"]
local_ports = [0, 70000, 11434]
merchant_patterns = ["GITHUB"]
"#;
        let e = errors(&[("v.toml", f)]);
        assert_eq!(
            e,
            vec![
                "v.toml:3: product[0].id: must be vendor.product: lowercase a-z, 0-9 and '-'",
                "v.toml:5: product[0].category: unknown category \"robots\"; one of api, audio, chat, coding, gateway, image, local-runtime, meeting, search, video, writing",
                "v.toml:6: product[0].sources: needs at least one source",
                "v.toml:7: product[0].chrome_extensions[0]: a Chrome extension id is 32 letters a-p",
                "v.toml:8: product[0].local_ports[0]: expected a port number from 1 to 65535",
                "v.toml:8: product[0].local_ports[1]: expected a port number from 1 to 65535",
                "v.toml:9: product[0].merchant_patterns[0]: invalid pattern \"GITHUB\": pattern \"GITHUB\" alone would claim charges that are not AI",
            ]
        );
    }

    #[test]
    fn package_ids_are_checked_and_claimed_once() {
        let f = r#"vendor = "P"
[[product]]
id = "p.one"
name = "One"
category = "coding"
sources = ["s"]
packages = ["npm:@anthropic-ai/claude-code", "pypi:aider-chat", "brew:aider", "cargo:aichat"]

[[product]]
id = "p.two"
name = "Two"
category = "coding"
sources = ["s"]
packages = [
    "pypi:Aider_Chat",
    "gem:rails",
    "npm:Bad",
    "npm:@scope",
    "nocolon",
    "brew:python@3.12",
]
"#;
        let e = errors(&[("p.toml", f)]);
        assert_eq!(
            e,
            vec![
                "p.toml:15: product[1].packages[0]: package id \"pypi:aider-chat\" is already claimed by p.one at p.toml:7; an indicator belongs to one product",
                "p.toml:16: product[1].packages[1]: invalid package id \"gem:rails\": unknown ecosystem \"gem\"; one of npm, pypi, brew, cargo (Linux packages go in linux_packages)",
                "p.toml:17: product[1].packages[2]: invalid package id \"npm:Bad\": \"Bad\" is not a valid npm package name",
                "p.toml:18: product[1].packages[3]: invalid package id \"npm:@scope\": \"@scope\" is not a valid npm package name",
                "p.toml:19: product[1].packages[4]: invalid package id \"nocolon\": must be ecosystem:name, ecosystem one of npm, pypi, brew, cargo",
            ]
        );
        let ok =
            compile([("p.toml", f.split("[[product]]\nid = \"p.two\"").next().unwrap_or(f))], 1)
                .expect("compiles");
        let p = ok.product("p.one").expect("product");
        assert_eq!(p.packages.len(), 4);
    }

    #[test]
    fn risk_facts_compile_and_carry_their_sources() {
        let risk = r#"["openai.chatgpt"]
trains_consumer = { value = true, source = "help article" }
retention = { days = 30, policy = "then deleted", source = "privacy page" }
data_residency = { value = ["EU", "US"], source = "trust page" }
"#;
        let c = compile([("openai.toml", GOOD), ("risk/openai.toml", risk)], 1).expect("compiles");
        let r = &c.product("openai.chatgpt").expect("product").risk;
        assert_eq!(
            r.trains_consumer.as_ref().map(|s| (s.value, s.source.as_str())),
            Some((true, "help article"))
        );
        assert_eq!(r.retention.as_ref().and_then(|s| s.value.days), Some(30));
        assert_eq!(r.data_residency.as_ref().map(|s| s.value.len()), Some(2));
        assert!(r.soc2.is_none(), "absent is unknown");
    }

    #[test]
    fn risk_errors_name_file_line_and_field() {
        let risk = r#"["openai.chatgpt"]
soc2 = { value = "yes", source = "s" }
sso = { value = true }
colour = { value = true, source = "s" }
retention = { days = -1, source = "s" }
scim = { value = true, source = "s", note = "n" }
retention_note = 3

["openai.nothing"]
soc2 = { value = true, source = "s" }
"#;
        let again = "[\"openai.chatgpt\"]\nsoc2 = { value = true, source = \"s\" }\n";
        let e = errors(&[("openai.toml", GOOD), ("risk/a.toml", risk), ("risk/b.toml", again)]);
        assert_eq!(
            e,
            vec![
                "risk/a.toml:2: \"openai.chatgpt\".soc2.value: expected true or false",
                "risk/a.toml:3: \"openai.chatgpt\".sso.source: missing required key: every fact names its source",
                "risk/a.toml:4: \"openai.chatgpt\".colour: unknown fact; one of trains_consumer, trains_business, retention, soc2, iso27001, sso, scim, data_residency, enterprise_plan",
                "risk/a.toml:5: \"openai.chatgpt\".retention.days: expected a number of days from 0 to 36500",
                "risk/a.toml:6: \"openai.chatgpt\".scim.note: unknown key",
                "risk/a.toml:7: \"openai.chatgpt\".retention_note: unknown fact; one of trains_consumer, trains_business, retention, soc2, iso27001, sso, scim, data_residency, enterprise_plan",
                "risk/a.toml:9: \"openai.nothing\": unknown product id \"openai.nothing\": no vendor file defines it",
                "risk/b.toml:1: \"openai.chatgpt\": risk facts for \"openai.chatgpt\" are already given at risk/a.toml:1",
            ]
        );
    }

    #[test]
    fn minor_units() {
        assert_eq!(parse_minor("20"), Some(2_000));
        assert_eq!(parse_minor("20.5"), Some(2_050));
        assert_eq!(parse_minor("0.99"), Some(99));
        assert_eq!(parse_minor("20."), None);
        assert_eq!(parse_minor("20.001"), None);
        assert_eq!(parse_minor("-1"), None);
        assert_eq!(parse_minor("1e3"), None);
        assert_eq!(parse_minor("99999999999999999999"), None);
    }
}

#[cfg(test)]
mod rules_tests {
    use super::*;

    const VENDOR: &str = "vendor = \"V\"\n[[product]]\nid = \"v.x\"\nname = \"X\"\ncategory = \"chat\"\nsources = [\"s\"]\n[[product.price]]\nplan = \"Pro\"\namount = \"10.00\"\ncurrency = \"USD\"\nperiod = \"month\"\nsource = \"s\"\naudience = \"people\"\n";

    fn errors(files: &[(&str, &str)]) -> Vec<String> {
        match compile(files.iter().copied(), 1) {
            Ok(_) => Vec::new(),
            Err(SourceErrors(e)) => e.iter().map(ToString::to_string).collect(),
        }
    }

    #[test]
    fn rule_files_are_checked_with_file_line_and_field() {
        let rules = "[[shared]]\ndescriptor = \"VEND\"\nreason = \"r\"\nsource = \"s\"\n\
                     [[shared.rule]]\ncontext = [\"X\"]\nproduct = \"v.missing\"\nsource = \"s\"\n\
                     [[shared.rule]]\ncontext = [\"Y\"]\nproduct = \"v.x\"\nnot_ai = true\nsource = \"s\"\n\
                     [[shared.rule]]\ncontext = []\nnot_ai = true\nsource = \"s\"\n\
                     [[shared]]\ndescriptor = \"vend\"\nreason = \"r\"\nsource = \"s\"\n\
                     [[shared]]\ndescriptor = \"OTHER\"\nsource = \"s\"\nextra = 1\n";
        let got = errors(&[("v.toml", VENDOR), ("rules/merchants.toml", rules)]);
        let want = [
            "v.toml:13: product[0].price[0].audience: audience \"people\" must be consumer or business",
            "rules/merchants.toml:1: shared[0].rule[0].product: no product has the id \"v.missing\"",
            "rules/merchants.toml:9: shared[0].rule[1].product: a rule names a product or says not_ai = true, not both or neither",
            "rules/merchants.toml:14: shared[0].rule[2].context: a rule needs context phrases",
            "rules/merchants.toml:19: shared[1].descriptor: descriptor already shared at line 1",
            "rules/merchants.toml:25: shared[2].extra: unknown key",
        ];
        for w in want {
            assert!(got.iter().any(|g| g == w), "missing {w:?} in {got:#?}");
        }
    }

    #[test]
    fn audience_and_shared_rules_reach_the_catalog_and_the_artifact() {
        let vendor = VENDOR.replace("people", "consumer");
        let rules = "[[shared]]\ndescriptor = \"VEND\"\nreason = \"r\"\nsource = \"s\"\n\
                     [[shared.rule]]\ncontext = [\"X\"]\nproduct = \"v.x\"\nsource = \"s\"\n";
        let c = compile([("v.toml", vendor.as_str()), ("rules/m.toml", rules)], 1).unwrap();
        assert_eq!(c.products()[0].prices[0].audience, Some(Audience::Consumer));
        assert_eq!(c.shared().len(), 1);
        let bytes = crate::artifact::encode_unsigned(&c);
        let parts = crate::artifact::split(&bytes).unwrap();
        let back = crate::artifact::decode_payload(1, parts.payload).unwrap();
        assert_eq!(back, c);
    }

    /// Issue 17: a plan's minimum seat count, with its source, reaches the catalog and the
    /// artifact; one without a source, or not a seat count, is refused by file, line and field.
    #[test]
    fn min_seats_needs_its_source_and_reaches_the_artifact() {
        let base = VENDOR.replace("people", "business");
        let good = format!("{base}min_seats = 5\nmin_seats_source = \"vendor billing page\"\n");
        let c = compile([("v.toml", good.as_str())], 1).unwrap();
        let price = &c.products()[0].prices[0];
        assert_eq!(price.min_seats, Some(5));
        assert_eq!(price.min_seats_source.as_deref(), Some("vendor billing page"));
        let bytes = crate::artifact::encode_unsigned(&c);
        let parts = crate::artifact::split(&bytes).unwrap();
        assert_eq!(crate::artifact::decode_payload(1, parts.payload).unwrap(), c);

        let unsourced = format!("{base}min_seats = 5\n");
        let got = errors(&[("v.toml", unsourced.as_str())]);
        assert!(
            got.iter().any(|g| g.ends_with(
                "product[0].price[0].min_seats_source: min_seats needs the source that states it"
            )),
            "{got:#?}"
        );
        let one = format!("{base}min_seats = 1\nmin_seats_source = \"s\"\n");
        let got = errors(&[("v.toml", one.as_str())]);
        assert!(
            got.iter().any(|g| g
                == "v.toml:14: product[0].price[0].min_seats: min_seats must be a whole number of seats, 2 or more"),
            "{got:#?}"
        );
    }
}
