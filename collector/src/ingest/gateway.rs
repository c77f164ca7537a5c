//! Gateway and provider spend: LiteLLM spend logs and daily rows, OpenRouter activity, OpenAI
//! organization costs, Anthropic cost reports, Helicone and Portkey exports, and a generic
//! CSV (feeds.md §3).
//!
//! JSON inputs are flattened into the same table shape as CSV (nested objects become dotted
//! column names, bucket fields get a `bucket.` prefix), keeping every number's literal text so
//! that costs never go through floating point. Costs are stored in billionths of the major
//! unit: the Anthropic cost report's `amount` is in cents (a decimal string), everything else
//! in major units. Models map to catalog products with the catalog's model matcher, and a
//! provider-level fallback (`openai` is `openai.api`) covers rows without a known model.

#![deny(clippy::indexing_slicing, clippy::arithmetic_side_effects)] // Parsers of untrusted files (issue 18).

use std::collections::{BTreeMap, HashMap};

use aiscout_signatures::Index;
use serde_json::value::RawValue;

use super::expense::hex;
use super::mapping::{self, DateFormat, GatewayMapping};
use super::parse;
use super::table::{Header, LayoutError, cell};
use super::{RowError, Tally};
use crate::model::GatewaySpend;

/// A gateway or provider spend format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum GatewayFormat {
    /// Anthropic Admin API cost report JSON (amounts in cents, as strings).
    AnthropicCost,
    /// Anthropic Admin API usage reports (messages, Claude Code) as the connector writes them:
    /// the generic column names, tokens without cost. Not a file format (not in
    /// [`GatewayFormat::ALL`]): only the `anthropic` connector writes it.
    AnthropicUsage,
    /// Canonical CSV: date, provider, model, team or tag, tokens, cost, currency.
    Generic,
    /// Helicone export (CSV or JSON).
    Helicone,
    /// LiteLLM spend logs or daily spend rows (CSV or JSON).
    Litellm,
    /// OpenAI organization costs JSON.
    OpenaiCosts,
    /// OpenAI completions usage JSON: tokens per day, user, project, API key and model, no
    /// cost (the costs come from [`GatewayFormat::OpenaiCosts`]).
    OpenaiUsage,
    /// OpenRouter activity (JSON or CSV).
    Openrouter,
    /// Portkey log export.
    Portkey,
}

impl GatewayFormat {
    /// Every format, in the order `auto` tries them.
    pub const ALL: [GatewayFormat; 8] = [
        GatewayFormat::Litellm,
        GatewayFormat::OpenaiCosts,
        GatewayFormat::OpenaiUsage,
        GatewayFormat::AnthropicCost,
        GatewayFormat::Openrouter,
        GatewayFormat::Helicone,
        GatewayFormat::Portkey,
        GatewayFormat::Generic,
    ];

    /// The CLI and storage name.
    pub fn as_str(self) -> &'static str {
        match self {
            GatewayFormat::AnthropicCost => "anthropic-cost",
            GatewayFormat::AnthropicUsage => "anthropic-usage",
            GatewayFormat::Generic => "generic",
            GatewayFormat::Helicone => "helicone",
            GatewayFormat::Litellm => "litellm",
            GatewayFormat::OpenaiCosts => "openai-costs",
            GatewayFormat::OpenaiUsage => "openai-usage",
            GatewayFormat::Openrouter => "openrouter",
            GatewayFormat::Portkey => "portkey",
        }
    }

    /// The format with this name.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|f| f.as_str() == name)
    }

    /// Recognises a format by its (flattened) header, the generic one with `mapping`'s
    /// columns: a header that a known export would also match is that export.
    pub fn detect_with(h: &Header, mapping: &GatewayMapping) -> Option<Self> {
        match Self::detect(h) {
            Some(f) if f != GatewayFormat::Generic || mapping.is_default() => Some(f),
            _ if !mapping.is_default() => {
                Layout::generic(h, mapping).is_ok().then_some(GatewayFormat::Generic)
            }
            _ => None,
        }
    }

    /// Recognises a format by its (flattened) header (the generic one by its built-in column
    /// names).
    pub fn detect(h: &Header) -> Option<Self> {
        let any = |names: &[&str]| h.find(names).is_some();
        if any(&["spend"]) && (any(&["request_id", "startTime"]) || any(&["api_requests"])) {
            Some(GatewayFormat::Litellm)
        } else if any(&["amount.value"]) && any(&["bucket.start_time", "line_item"]) {
            Some(GatewayFormat::OpenaiCosts)
        } else if any(&["input_tokens"])
            && any(&["bucket.start_time"])
            && any(&["num_model_requests"])
        {
            Some(GatewayFormat::OpenaiUsage)
        } else if any(&["amount"])
            && any(&["bucket.starting_at", "starting_at"])
            && any(&["cost_type", "token_type", "workspace_id", "description"])
        {
            Some(GatewayFormat::AnthropicCost)
        } else if any(&["usage"])
            && any(&["byok_usage_inference", "model_permaslug", "provider_name"])
        {
            Some(GatewayFormat::Openrouter)
        } else if any(&["response_id"]) && any(&["request_created_at"]) && any(&["cost"]) {
            Some(GatewayFormat::Helicone)
        } else if any(&["ai_model"]) && any(&["cost"]) {
            Some(GatewayFormat::Portkey)
        } else if any(&["date"]) && any(&["model"]) && any(&["cost"]) {
            Some(GatewayFormat::Generic)
        } else {
            None
        }
    }
}

/// Where each field lives in one file's header.
#[derive(Clone, Debug)]
pub struct Layout {
    format: GatewayFormat,
    id: Option<usize>,
    date: usize,
    provider: Option<usize>,
    model: Option<usize>,
    teams: Vec<usize>,
    users: Vec<usize>,
    api_key: Option<usize>,
    tags: Option<usize>,
    input: Option<usize>,
    output: Option<usize>,
    total: Option<usize>,
    costs: Vec<usize>,
    currency: Option<usize>,
    /// Decimal places between the file's cost unit and billionths of the major unit.
    scale: u32,
    default_provider: String,
    default_currency: String,
    date_format: Option<DateFormat>,
}

impl Layout {
    /// Locates the format's columns (the generic format with its built-in column names).
    ///
    /// # Errors
    /// A required column (date, cost) is missing.
    pub fn new(format: GatewayFormat, h: &Header) -> Result<Self, LayoutError> {
        Self::with_mapping(format, h, &GatewayMapping::default())
    }

    /// Locates the format's columns; the generic format reads the columns `mapping` names
    /// (other formats ignore it).
    ///
    /// # Errors
    /// A required column (date, cost) is missing, or a mapped column is not in the header:
    /// the reason names the column and, for a mapped one, its config key.
    pub fn with_mapping(
        format: GatewayFormat,
        h: &Header,
        mapping: &GatewayMapping,
    ) -> Result<Self, LayoutError> {
        if format == GatewayFormat::Generic && !mapping.is_default() {
            return Self::generic(h, mapping);
        }
        let one = |names: &[&str]| h.find(names);
        let all =
            |names: &[&str]| -> Vec<usize> { names.iter().filter_map(|n| h.find(&[n])).collect() };
        use GatewayFormat as F;
        let (date, costs) = match format {
            F::Litellm => (one(&["startTime", "start_time", "date"]), all(&["spend"])),
            F::OpenaiCosts => (one(&["bucket.start_time", "start_time"]), all(&["amount.value"])),
            F::OpenaiUsage => (one(&["bucket.start_time", "start_time"]), Vec::new()),
            F::AnthropicCost => (one(&["bucket.starting_at", "starting_at"]), all(&["amount"])),
            F::AnthropicUsage => (one(&["date"]), all(&["cost"])),
            F::Openrouter => (one(&["date"]), all(&["usage", "byok_usage_inference"])),
            F::Helicone => (one(&["request_created_at", "response_created_at"]), all(&["cost"])),
            F::Portkey => (one(&["created_at"]), all(&["cost"])),
            F::Generic => (one(&["date", "period_start"]), all(&["cost", "spend"])),
        };
        let missing =
            |what: &'static str| LayoutError::Missing { export: format.as_str(), what, map: None };
        let date = date.ok_or_else(|| missing("date"))?;
        // Usage reports carry tokens only; every other format has a cost.
        if costs.is_empty() && format != F::OpenaiUsage {
            return Err(missing("cost"));
        }
        Ok(Layout {
            format,
            date,
            costs,
            id: match format {
                F::Litellm => one(&["request_id"]),
                F::Helicone => one(&["response_id"]),
                F::Portkey => one(&["id"]),
                F::Generic | F::AnthropicUsage => one(&["id", "request_id"]),
                _ => None,
            },
            provider: one(&["custom_llm_provider", "provider_name", "ai_org", "provider"]),
            model: match format {
                F::OpenaiCosts => one(&["line_item", "model"]),
                F::Portkey => one(&["ai_model"]),
                F::AnthropicCost => one(&["model", "description"]),
                _ => one(&["model", "model_group"]),
            },
            teams: all(&[
                "metadata.user_api_key_team_alias",
                "team_alias",
                "team_id",
                "workspace_id",
                "project_id",
                "team",
                "tag",
                "organization_id",
            ]),
            users: all(&[
                "metadata.user_api_key_user_id",
                "user",
                "end_user",
                "user_id",
                "request_user_id",
                "metadata._user",
                "user_email",
            ]),
            api_key: one(&["metadata.user_api_key_alias", "api_key", "key_alias", "api_key_id"]),
            tags: one(&["request_tags", "tags", "request_properties"]),
            input: one(&["prompt_tokens", "input_tokens", "req_units"]),
            output: one(&["completion_tokens", "output_tokens", "res_units"]),
            total: one(&["total_tokens", "total_units", "tokens"]),
            currency: one(&["amount.currency", "currency", "cost_currency"]),
            scale: if format == F::AnthropicCost { 7 } else { 9 },
            default_provider: match format {
                F::OpenaiCosts | F::OpenaiUsage => "openai",
                F::AnthropicCost | F::AnthropicUsage => "anthropic",
                F::Openrouter => "openrouter",
                _ => "",
            }
            .to_owned(),
            default_currency: "USD".to_owned(),
            date_format: None,
        })
    }

    /// The generic layout with `mapping` applied: a mapped field reads exactly its column,
    /// an unmapped one the built-in names.
    fn generic(h: &Header, m: &GatewayMapping) -> Result<Self, LayoutError> {
        const SECTION: &str = "import.gateway.generic";
        let pick = |key: &'static str, mapped: &Option<String>, builtin: &[&str]| match mapped {
            Some(name) => mapping::locate(h, SECTION, key, name),
            None => Ok(h.find(builtin)),
        };
        let missing = |what: &'static str, key: &'static str| LayoutError::Missing {
            export: "generic",
            what,
            map: Some((SECTION, key)),
        };
        let date = pick("date", &m.date, &["date", "period_start"])?
            .ok_or_else(|| missing("date", "date"))?;
        let cost =
            pick("cost", &m.cost, &["cost", "spend"])?.ok_or_else(|| missing("cost", "cost"))?;
        Ok(Layout {
            format: GatewayFormat::Generic,
            id: pick("id", &m.id, &["id", "request_id"])?,
            date,
            provider: pick("provider", &m.provider, &["provider"])?,
            model: pick("model", &m.model, &["model", "model_group"])?,
            teams: pick("team", &m.team, &["team", "tag", "team_id", "project_id"])?
                .into_iter()
                .collect(),
            users: pick("user", &m.user, &["user", "user_id", "user_email"])?.into_iter().collect(),
            api_key: pick("api_key", &m.api_key, &["api_key", "key_alias"])?,
            tags: pick("tags", &m.tags, &["tags"])?,
            input: pick("tokens_in", &m.tokens_in, &["input_tokens", "prompt_tokens"])?,
            output: pick("tokens_out", &m.tokens_out, &["output_tokens", "completion_tokens"])?,
            total: pick("tokens_total", &m.tokens_total, &["total_tokens", "tokens"])?,
            costs: vec![cost],
            currency: pick("currency", &m.currency, &["currency"])?,
            scale: 9,
            default_provider: m.provider_default.clone().unwrap_or_default(),
            default_currency: m.currency_default.clone().unwrap_or_else(|| "USD".to_owned()),
            date_format: m.date_format.clone(),
        })
    }
}

/// The tag the Anthropic connector gives the rows of the Claude Code usage report
/// (`connectors::anthropic`); in an `anthropic-usage` file, such a row is Claude Code's.
pub const CLAUDE_CODE_TAG: &str = "claude-code";

/// The catalog's Claude Code product.
const CLAUDE_CODE_PRODUCT: &str = "anthropic.claude-code";

/// The product a provider's API is, when the model is unknown to the catalog.
fn provider_product(provider: &str) -> Option<&'static str> {
    Some(match provider.to_ascii_lowercase().as_str() {
        "openai" | "text-completion-openai" => "openai.api",
        "anthropic" => "anthropic.api",
        "azure" | "azure_ai" | "azure-openai" => "microsoft.azure-openai",
        "bedrock" | "aws" => "aws.bedrock",
        "vertex_ai" | "vertex" => "google.vertex-ai",
        "gemini" | "google" => "google.ai-studio",
        "mistral" => "mistral.api",
        "cohere" => "cohere.api",
        "deepseek" => "deepseek.api",
        "xai" => "xai.api",
        "together_ai" | "together" => "together.api",
        "fireworks_ai" | "fireworks" => "fireworks.api",
        "openrouter" => "openrouter.openrouter",
        _ => return None,
    })
}

/// Parses one file's rows into gateway spend.
pub struct GatewayParser<'a> {
    layout: Layout,
    index: &'a Index,
    file: String,
    seen: HashMap<[u8; 16], u32>,
}

impl<'a> GatewayParser<'a> {
    /// A parser for one file.
    pub fn new(layout: Layout, index: &'a Index, file: String) -> Self {
        Self { layout, index, file, seen: HashMap::new() }
    }

    fn error(&self, h: &Header, line: u64, col: Option<usize>, reason: String) -> RowError {
        RowError::at(&self.file, h, line, col, reason)
    }

    fn tokens(
        &self,
        h: &Header,
        rec: &csv::StringRecord,
        line: u64,
        col: Option<usize>,
    ) -> Result<i64, RowError> {
        let t = cell(rec, col);
        if t.is_empty() || t == "null" {
            return Ok(0);
        }
        parse::parse_decimal(t, 0).map_err(|e| self.error(h, line, col, format!("{e}: {t:?}")))
    }

    /// One record as gateway spend, or `None` when it was counted in `tally` instead.
    ///
    /// # Errors
    /// The row is malformed; the error names file, line and column.
    pub fn row(
        &mut self,
        h: &Header,
        rec: &csv::StringRecord,
        line: u64,
        tally: &mut Tally,
    ) -> Result<Option<GatewaySpend>, RowError> {
        let l = &self.layout;
        if rec.iter().all(|c| c.trim().is_empty()) {
            tally.skipped = tally.skipped.saturating_add(1);
            return Ok(None);
        }
        let raw_date = cell(rec, Some(l.date));
        let parsed = match &l.date_format {
            Some(f) => f.apply(raw_date),
            None => parse::parse_datetime(raw_date),
        };
        let period_start = parsed.ok_or_else(|| {
            let expected = l.date_format.as_ref().map(|f| format!(" (expected {f})"));
            let reason = format!("not a date: {raw_date:?}{}", expected.unwrap_or_default());
            self.error(h, line, Some(l.date), reason)
        })?;
        let mut cost_nanos: i64 = 0;
        for &c in &l.costs {
            let t = cell(rec, Some(c));
            if t.is_empty() || t == "null" {
                continue;
            }
            let v = parse::parse_decimal(t, l.scale)
                .map_err(|e| self.error(h, line, Some(c), format!("{e}: {t:?}")))?;
            cost_nanos = cost_nanos.saturating_add(v);
        }
        let currency = match cell(rec, l.currency) {
            "" => l.default_currency.clone(),
            c => parse::currency(c).ok_or_else(|| {
                self.error(h, line, l.currency, format!("{c:?} is not a currency code"))
            })?,
        };
        let input = self.tokens(h, rec, line, l.input)?;
        let output = self.tokens(h, rec, line, l.output)?;
        let total = self.tokens(h, rec, line, l.total)?;
        let (input_tokens, output_tokens) =
            if input == 0 && output == 0 { (total, 0) } else { (input, output) };
        let first = |cols: &[usize]| {
            cols.iter()
                .map(|&i| cell(rec, Some(i)))
                .find(|v| !v.is_empty() && *v != "null")
                .unwrap_or("")
        };
        let model_raw = cell(rec, l.model);
        // OpenAI cost line items read `gpt-4o-2024-08-06, input`.
        let model = model_raw.split(',').next().unwrap_or("").trim().to_owned();
        let provider = match cell(rec, l.provider) {
            "" | "null" => l.default_provider.clone(),
            p => p.to_ascii_lowercase(),
        };
        let tags = cell(rec, l.tags).to_owned();
        let product = if l.format == GatewayFormat::AnthropicUsage
            && tags == CLAUDE_CODE_TAG
            && self.index.catalog().product(CLAUDE_CODE_PRODUCT).is_some()
        {
            // Anthropic's Claude Code usage report: the tool's use, whatever model it ran.
            Some(CLAUDE_CODE_PRODUCT.to_owned())
        } else {
            self.index
                .model(&model)
                .map(|m| m.product.id.clone())
                .or_else(|| provider_product(&provider).map(str::to_owned))
        };
        let team = first(&l.teams).to_owned();
        let user = first(&l.users).to_owned();
        let api_key = cell(rec, l.api_key).to_owned();
        let id = cell(rec, l.id);
        let dedupe_key = if id.is_empty() {
            // Every field of the row: a bucket row has no id of its own.
            let basis: Vec<&str> = rec.iter().collect();
            let digest =
                ring::digest::digest(&ring::digest::SHA256, basis.join("\u{1f}").as_bytes());
            let mut short = [0u8; 16];
            short.copy_from_slice(digest.as_ref().get(..16).unwrap_or(&[0; 16]));
            let n = self.seen.entry(short).or_insert(0);
            *n = n.saturating_add(1);
            format!("h:{}:{}", hex(&short), *n)
        } else {
            format!("id:{id}")
        };
        Ok(Some(GatewaySpend {
            source: l.format.as_str().to_owned(),
            dedupe_key,
            file: self.file.clone(),
            line: i64::try_from(line).unwrap_or(i64::MAX),
            period_start: aiscout_wire::UnixSecs(period_start),
            provider,
            model,
            team,
            user,
            api_key,
            tags,
            input_tokens,
            output_tokens,
            cost_nanos,
            currency,
            product,
        }))
    }
}

/// Most records taken from one JSON file.
pub const MAX_JSON_RECORDS: usize = 5_000_000;
/// Deepest nesting flattened.
const MAX_DEPTH: usize = 4;

/// Why a JSON body could not be flattened into a table. The cause is in the message, not in
/// `source()` (issue 18).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FlattenError {
    /// The body is not UTF-8.
    #[error("not UTF-8: {error}")]
    NotUtf8 {
        /// Why.
        error: std::str::Utf8Error,
    },
    /// The body is not JSON.
    #[error("not valid JSON: {error}")]
    Json {
        /// Why.
        error: serde_json::Error,
    },
    /// A part of the body (`data`, a `record`, a bucket's `results`) is not the JSON expected.
    #[error("{at}: {error}")]
    JsonAt {
        /// Which part.
        at: &'static str,
        /// Why.
        error: serde_json::Error,
    },
    /// More than [`MAX_JSON_RECORDS`] records.
    #[error("more than {MAX_JSON_RECORDS} records")]
    TooMany,
}

impl FlattenError {
    /// The JSON ends before it is complete: an export cut short (a download or a copy that
    /// stopped), not a file of another kind.
    #[must_use]
    pub fn cut_short(&self) -> bool {
        match self {
            FlattenError::Json { error } | FlattenError::JsonAt { error, .. } => error.is_eof(),
            FlattenError::NotUtf8 { .. } | FlattenError::TooMany => false,
        }
    }
}

fn json(error: serde_json::Error) -> FlattenError {
    FlattenError::Json { error }
}

fn json_at(at: &'static str) -> impl FnOnce(serde_json::Error) -> FlattenError {
    move |error| FlattenError::JsonAt { at, error }
}

/// A JSON export flattened into a table: a header (union of keys, in order of first
/// appearance) and one row per record.
///
/// Accepts an array of records, an object whose `data` is an array of records or of buckets
/// (a bucket's `results` are the records, its other fields prefixed `bucket.`), and JSON
/// lines. Numbers keep their literal text.
///
/// # Errors
/// Not JSON, or more than [`MAX_JSON_RECORDS`] records.
pub fn flatten_json(bytes: &[u8]) -> Result<(Header, Vec<csv::StringRecord>), FlattenError> {
    let text = std::str::from_utf8(bytes).map_err(|error| FlattenError::NotUtf8 { error })?;
    let trimmed = text.trim_start_matches('\u{feff}').trim();
    let mut records: Vec<Vec<(String, String)>> = Vec::new();
    let top: Vec<Box<RawValue>> = if trimmed.starts_with('[') {
        serde_json::from_str(trimmed).map_err(json)?
    } else if trimmed.starts_with('{') && serde_json::from_str::<&RawValue>(trimmed).is_ok() {
        let obj: BTreeMap<String, Box<RawValue>> = serde_json::from_str(trimmed).map_err(json)?;
        match obj.get("data") {
            Some(data) => serde_json::from_str(data.get()).map_err(json_at("data"))?,
            None => vec![RawValue::from_string(trimmed.to_owned()).map_err(json)?],
        }
    } else {
        // JSON lines.
        trimmed
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| RawValue::from_string(l.trim().to_owned()).map_err(json))
            .collect::<Result<_, _>>()?
    };
    for item in top {
        let obj: BTreeMap<String, Box<RawValue>> =
            serde_json::from_str(item.get()).map_err(json_at("record"))?;
        match obj.get("results") {
            Some(results) => {
                let mut bucket = Vec::new();
                for (k, v) in &obj {
                    if k != "results" {
                        flatten(&format!("bucket.{k}"), v, 0, &mut bucket);
                    }
                }
                let results: Vec<Box<RawValue>> =
                    serde_json::from_str(results.get()).map_err(json_at("results"))?;
                for r in results {
                    let mut row = bucket.clone();
                    flatten("", &r, 0, &mut row);
                    records.push(row);
                }
            }
            None => {
                let mut row = Vec::new();
                flatten("", &item, 0, &mut row);
                records.push(row);
            }
        }
        if records.len() > MAX_JSON_RECORDS {
            return Err(FlattenError::TooMany);
        }
    }
    let mut names: Vec<String> = Vec::new();
    let mut index: HashMap<String, usize> = HashMap::new();
    for row in &records {
        for (k, _) in row {
            if !index.contains_key(k) {
                index.insert(k.clone(), names.len());
                names.push(k.clone());
            }
        }
    }
    let rows = records
        .into_iter()
        .map(|row| {
            let mut cells = vec![String::new(); names.len()];
            for (k, v) in row {
                if let Some(slot) = index.get(&k).and_then(|&i| cells.get_mut(i)) {
                    *slot = v;
                }
            }
            csv::StringRecord::from(cells)
        })
        .collect();
    Ok((Header::from_names(names), rows))
}

fn flatten(prefix: &str, value: &RawValue, depth: usize, out: &mut Vec<(String, String)>) {
    let text = value.get().trim();
    let key = |k: &str| if prefix.is_empty() { k.to_owned() } else { format!("{prefix}.{k}") };
    if text.starts_with('{')
        && depth < MAX_DEPTH
        && let Ok(obj) = serde_json::from_str::<BTreeMap<String, Box<RawValue>>>(text)
    {
        for (k, v) in &obj {
            flatten(&key(k), v, depth.saturating_add(1), out);
        }
        return;
    }
    let cell = if text.starts_with('"') {
        serde_json::from_str::<String>(text).unwrap_or_default()
    } else {
        text.to_owned()
    };
    if !prefix.is_empty() {
        out.push((prefix.to_owned(), cell));
    }
}

#[cfg(test)]
#[allow(clippy::indexing_slicing, clippy::arithmetic_side_effects)] // Reason: tests index their own fixtures.
mod tests {
    use super::*;
    use crate::ingest::table;

    fn rows(
        header: &Header,
        records: &[csv::StringRecord],
    ) -> (GatewayFormat, Vec<GatewaySpend>, Tally) {
        let index = Index::new(aiscout_signatures::Catalog::builtin().unwrap());
        let format = GatewayFormat::detect(header).expect("format not detected");
        let mut p = GatewayParser::new(Layout::new(format, header).unwrap(), &index, "g".into());
        let mut tally = Tally::default();
        let mut out = Vec::new();
        for (i, r) in records.iter().enumerate() {
            match p.row(header, r, i as u64 + 2, &mut tally) {
                Ok(Some(g)) => out.push(g),
                Ok(None) => {}
                Err(e) => tally.errors.push(e),
            }
        }
        (format, out, tally)
    }

    fn json(text: &str) -> (GatewayFormat, Vec<GatewaySpend>, Tally) {
        let (h, recs) = flatten_json(text.as_bytes()).unwrap();
        rows(&h, &recs)
    }

    fn csv_rows(text: &str) -> (GatewayFormat, Vec<GatewaySpend>, Tally) {
        let mut rdr = table::reader(text.as_bytes());
        let mut rec = csv::StringRecord::new();
        assert!(rdr.read_record(&mut rec).unwrap());
        let header = Header::new(&rec);
        let mut recs = Vec::new();
        while rdr.read_record(&mut rec).unwrap() {
            recs.push(rec.clone());
        }
        rows(&header, &recs)
    }

    #[test]
    fn anthropic_cost_report_amounts_are_cents_as_strings() {
        let (f, spend, _) = json(
            r#"{"data":[{"starting_at":"2026-11-01T00:00:00Z","ending_at":"2026-11-02T00:00:00Z",
                "results":[{"currency":"USD","amount":"123.45","workspace_id":"w1",
                "description":"Claude Sonnet 4 Usage","cost_type":"tokens","model":"claude-sonnet-4-20250514"}]}],
                "has_more":false}"#,
        );
        assert_eq!(f, GatewayFormat::AnthropicCost);
        // "123.45" cents is $1.2345.
        assert_eq!(spend[0].cost_nanos, 1_234_500_000);
        assert_eq!(
            (spend[0].product.as_deref(), spend[0].team.as_str()),
            (Some("anthropic.api"), "w1")
        );
    }

    #[test]
    fn openai_costs_are_usd_numbers_kept_exact() {
        let (f, spend, _) = json(
            r#"{"object":"page","data":[{"object":"bucket","start_time":1793491200,"end_time":1793577600,
                "results":[{"object":"organization.costs.result","amount":{"value":0.06,"currency":"usd"},
                "line_item":"gpt-4o-2024-08-06, input","project_id":"proj_1"}]}]}"#,
        );
        assert_eq!(f, GatewayFormat::OpenaiCosts);
        assert_eq!(spend[0].cost_nanos, 60_000_000);
        assert_eq!(spend[0].currency, "USD");
        assert_eq!(spend[0].product.as_deref(), Some("openai.api"));
        assert_eq!(spend[0].model, "gpt-4o-2024-08-06");
    }

    #[test]
    fn openai_usage_is_tokens_per_user_project_key_and_model_without_cost() {
        let (f, spend, _) = json(
            r#"{"object":"page","data":[{"object":"bucket","start_time":1793491200,"end_time":1793577600,
                "results":[{"object":"organization.usage.completions.result","input_tokens":1000,
                "output_tokens":500,"input_cached_tokens":800,"num_model_requests":5,
                "project_id":"proj_1","user_id":"user-1","api_key_id":"key_1",
                "model":"gpt-4o-mini-2024-07-18","batch":null}]}],"has_more":false,"next_page":null}"#,
        );
        assert_eq!(f, GatewayFormat::OpenaiUsage);
        let r = &spend[0];
        assert_eq!((r.input_tokens, r.output_tokens, r.cost_nanos), (1000, 500, 0));
        assert_eq!(
            (r.user.as_str(), r.team.as_str(), r.api_key.as_str()),
            ("user-1", "proj_1", "key_1")
        );
        assert_eq!((r.period_start.get(), r.provider.as_str()), (1_793_491_200, "openai"));
        assert!(r.product.is_some());
    }

    #[test]
    fn claude_code_usage_rows_are_claude_code_and_other_anthropic_usage_is_the_models() {
        // The Anthropic connector's usage rows (`connectors::anthropic::push_usage`).
        let text = "id,date,provider,model,team,user,api_key,input_tokens,output_tokens,cost,currency,tags\n\
            a,2026-11-01T00:00:00Z,anthropic,claude-sonnet-4-20250514,,ann@example.com,,100,50,,USD,claude-code\n\
            b,2026-11-01T00:00:00Z,anthropic,claude-sonnet-4-20250514,Legal,,key-1,10,5,,USD,\n\
            c,2026-11-01T00:00:00Z,anthropic,claude-sonnet-4-20250514,,,key-2,1,1,,USD,claude-codex\n";
        let mut rdr = table::reader(text.as_bytes());
        let mut rec = csv::StringRecord::new();
        assert!(rdr.read_record(&mut rec).unwrap());
        let header = Header::new(&rec);
        let index = Index::new(aiscout_signatures::Catalog::builtin().unwrap());
        let layout = Layout::new(GatewayFormat::AnthropicUsage, &header).unwrap();
        let mut p = GatewayParser::new(layout, &index, "g".into());
        let mut tally = Tally::default();
        let mut products = Vec::new();
        let mut line = 1;
        while rdr.read_record(&mut rec).unwrap() {
            line += 1;
            let g = p.row(&header, &rec, line, &mut tally).unwrap().unwrap();
            assert_eq!(g.cost_nanos, 0, "usage carries no cost");
            products.push(g.product);
        }
        assert_eq!(
            products,
            [
                Some("anthropic.claude-code".into()),
                Some("anthropic.api".into()),
                Some("anthropic.api".into())
            ]
        );
    }

    #[test]
    fn openrouter_activity_sums_credits_and_byok() {
        let (f, spend, _) = json(
            r#"{"data":[{"date":"2026-11-01","model":"anthropic/claude-sonnet-4","model_permaslug":"x",
                "endpoint_id":"e","provider_name":"Anthropic","usage":0.5,"byok_usage_inference":0.25,
                "requests":3,"prompt_tokens":100,"completion_tokens":50,"reasoning_tokens":0}]}"#,
        );
        assert_eq!(f, GatewayFormat::Openrouter);
        assert_eq!(spend[0].cost_nanos, 750_000_000);
        assert_eq!(spend[0].product.as_deref(), Some("anthropic.api"));
        assert_eq!((spend[0].input_tokens, spend[0].output_tokens), (100, 50));
    }

    #[test]
    fn litellm_spend_logs_keep_sub_cent_costs_and_request_ids() {
        let (f, spend, t) = csv_rows(
            "request_id,spend,total_tokens,prompt_tokens,completion_tokens,startTime,model,custom_llm_provider,user,team_id\n\
             r1,2.6e-06,130,130,0,2026-10-15T16:21:00.000Z,text-embedding-3-small,openai,a@x.io,t1\n\
             r2,abc,1,1,0,2026-10-15T16:21:00.000Z,gpt-4o,openai,a@x.io,t1\n\
             r3,0.1,1,1,0,2026-10-15T16:21:00.000Z,some-unknown-model,mistral,,t1\n",
        );
        assert_eq!(f, GatewayFormat::Litellm);
        assert_eq!(spend[0].cost_nanos, 2_600);
        assert_eq!(spend[0].dedupe_key, "id:r1");
        assert_eq!(spend[1].product.as_deref(), Some("mistral.api"));
        assert_eq!((t.errors[0].line, t.errors[0].column.as_str()), (3, "spend"));
    }

    #[test]
    fn helicone_and_portkey_exports_are_recognised() {
        let (f, spend, _) = csv_rows(
            "response_id,response_created_at,response_status,request_created_at,request_body,request_properties,request_user_id,model,prompt_tokens,completion_tokens,latency,cost\n\
             h1,2026-10-01T00:00:01Z,200,2026-10-01T00:00:00Z,{},{},u@x.io,gpt-4o,10,5,100,0.001\n",
        );
        assert_eq!((f, spend[0].user.as_str()), (GatewayFormat::Helicone, "u@x.io"));
        let (f, spend, _) = json(
            r#"[{"id":"p1","created_at":"2026-10-01T00:00:00Z","ai_org":"openai","ai_model":"gpt-4o",
                 "req_units":10,"res_units":5,"total_units":15,"cost":0.02,"cost_currency":"USD",
                 "metadata":{"_user":"v@x.io"}}]"#,
        );
        assert_eq!(f, GatewayFormat::Portkey);
        assert_eq!((spend[0].cost_nanos, spend[0].user.as_str()), (20_000_000, "v@x.io"));
    }

    /// A body that is not JSON is told apart from one that is not UTF-8, and a part of it
    /// that is wrong is named, with the parser's own words once.
    #[test]
    fn a_json_body_that_cannot_be_flattened_says_which_part_is_wrong() {
        let not_utf8 = flatten_json(b"[\xff]").unwrap_err();
        assert!(matches!(not_utf8, FlattenError::NotUtf8 { .. }), "{not_utf8}");
        assert!(not_utf8.to_string().starts_with("not UTF-8: "), "{not_utf8}");
        let not_json = flatten_json(b"[1,").unwrap_err();
        assert!(matches!(not_json, FlattenError::Json { .. }), "{not_json}");
        assert!(
            not_json.to_string().starts_with("not valid JSON: EOF while parsing"),
            "{not_json}"
        );
        assert!(not_json.cut_short(), "{not_json}");
        assert!(!flatten_json(b"[1,}").unwrap_err().cut_short());
        let data = flatten_json(br#"{"data": 3}"#).unwrap_err();
        assert!(matches!(data, FlattenError::JsonAt { at: "data", .. }), "{data}");
        assert!(data.to_string().starts_with("data: "), "{data}");
    }
}
