//! Expense exports: Ramp, Brex, Expensify, SAP Concur, Amex, Chase and a generic CSV.
//!
//! Each format is recognised by its header (feeds.md §2) and normalised to one shape: spend
//! positive in minor units (Chase writes purchases negative; Amex writes refunds negative),
//! dates in UTC, the payer split into email or name, payments to the card issuer and
//! personal Concur entries skipped (counted, not stored). Every descriptor goes through the
//! catalog's merchant matcher; a line matching no product is kept as a *candidate* when its
//! tokens look like AI spend, and otherwise only counted.
//!
//! Dedupe key: the export's transaction id when it has one, else a SHA-256 of date, amount,
//! currency, payer and normalised descriptor plus the occurrence number of that combination
//! in the file, so two identical charges in one file stay two, while the same charge in two
//! overlapping exports is one.

#![deny(clippy::indexing_slicing, clippy::arithmetic_side_effects)] // Parsers of untrusted files (issue 18).

use std::collections::HashMap;

use aiscout_signatures::merchant::tokens;
use aiscout_signatures::{Index, LineMatch};

use super::mapping::{self, AmountSign, CardOwners, DateFormat, ExpenseMapping};
use super::parse::{self, AmountError};
use super::table::{Header, LayoutError, cell};
use super::{RowError, Tally};
use crate::model::ExpenseLine;

/// An expense export format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ExpenseFormat {
    /// American Express card CSV.
    Amex,
    /// Brex card CSV export.
    Brex,
    /// Chase credit card CSV.
    Chase,
    /// SAP Concur expense entries export.
    Concur,
    /// Expensify CSV.
    Expensify,
    /// Canonical column names (`date`, `amount`, `currency`, `descriptor`, `payer_email`...).
    Generic,
    /// Ramp card CSV export.
    Ramp,
}

impl ExpenseFormat {
    /// Every format, in the order `auto` tries them.
    pub const ALL: [ExpenseFormat; 7] = [
        ExpenseFormat::Ramp,
        ExpenseFormat::Brex,
        ExpenseFormat::Concur,
        ExpenseFormat::Expensify,
        ExpenseFormat::Amex,
        ExpenseFormat::Chase,
        ExpenseFormat::Generic,
    ];

    /// The CLI and storage name.
    pub fn as_str(self) -> &'static str {
        match self {
            ExpenseFormat::Amex => "amex",
            ExpenseFormat::Brex => "brex",
            ExpenseFormat::Chase => "chase",
            ExpenseFormat::Concur => "concur",
            ExpenseFormat::Expensify => "expensify",
            ExpenseFormat::Generic => "generic",
            ExpenseFormat::Ramp => "ramp",
        }
    }

    /// The format with this name.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|f| f.as_str() == name)
    }

    /// Recognises a format by its header, the generic one with `mapping`'s columns: a header
    /// that a known export would also match is that export.
    pub fn detect_with(header: &Header, mapping: &ExpenseMapping) -> Option<Self> {
        match Self::detect(header) {
            Some(f) if f != ExpenseFormat::Generic || mapping.is_default() => Some(f),
            _ if !mapping.is_default() => {
                Layout::generic(header, mapping).is_ok().then_some(ExpenseFormat::Generic)
            }
            _ => None,
        }
    }

    /// Recognises a format by its header (the generic one by its built-in column names).
    pub fn detect(header: &Header) -> Option<Self> {
        let f = |names: &[&str]| header.find(names).is_some();
        if f(&["Ramp Category", "Ramp Department", "Ramp Location"]) {
            Some(ExpenseFormat::Ramp)
        } else if f(&["Statement Descriptor", "Brex Category", "Swipe Date (UTC)"]) {
            Some(ExpenseFormat::Brex)
        } else if f(&["ReportOwnerID", "VendorDescription", "TransactionCurrencyCode"]) {
            Some(ExpenseFormat::Concur)
        } else if header.has_all(&["Merchant", "Amount", "Currency", "From"]) || f(&["Receipt URL"])
        {
            Some(ExpenseFormat::Expensify)
        } else if f(&["Card Member", "Appears On Your Statement As", "Extended Details"])
            || header.has_all(&["Date", "Description", "Amount", "Reference"])
        {
            Some(ExpenseFormat::Amex)
        } else if header.has_all(&["Transaction Date", "Post Date", "Description", "Amount"]) {
            Some(ExpenseFormat::Chase)
        } else if header.find(&GENERIC_AMOUNT).is_some()
            && header.find(&GENERIC_DATE).is_some()
            && header.find(&GENERIC_DESCRIPTOR).is_some()
        {
            Some(ExpenseFormat::Generic)
        } else {
            None
        }
    }
}

const GENERIC_DATE: [&str; 3] = ["date", "transaction_date", "occurred_at"];
const GENERIC_AMOUNT: [&str; 2] = ["amount", "amount_major"];
const GENERIC_DESCRIPTOR: [&str; 4] =
    ["descriptor", "merchant_descriptor", "description", "merchant"];

/// Free-text columns read as context for shared descriptors (memo, notes, category), in
/// every format; a column already read as the descriptor is not context.
const CONTEXT_COLUMNS: [&str; 13] = [
    "Memo",
    "Notes",
    "Note",
    "Comment",
    "Comments",
    "Category",
    "Ramp Category",
    "Brex Category",
    "Expense Category",
    "Extended Details",
    "Business Purpose",
    "Purpose",
    "Description",
];

/// Columns that hold the card (its number, masked number or last four digits).
const CARD_COLUMNS: [&str; 7] =
    ["Card Last 4", "Card Last Four", "Last 4", "Card Number", "Card", "Account #", "card"];

/// Where each field lives in one file's header.
#[derive(Clone, Debug)]
pub struct Layout {
    format: ExpenseFormat,
    dates: Vec<usize>,
    amount: usize,
    currency: Option<usize>,
    descriptors: Vec<usize>,
    merchant: Option<usize>,
    payer: Option<usize>,
    payer_email: Option<usize>,
    department: Option<usize>,
    id: Option<usize>,
    kind: Option<usize>,
    personal: Option<usize>,
    sign: AmountSign,
    default_currency: String,
    date_format: Option<DateFormat>,
    context: Vec<usize>,
    card: Option<usize>,
    owners: CardOwners,
}

impl Layout {
    /// Locates the format's columns in `header` (the generic format with its built-in
    /// column names).
    ///
    /// # Errors
    /// A required column (date, amount, descriptor) is missing: the reason names it.
    pub fn new(format: ExpenseFormat, header: &Header) -> Result<Self, LayoutError> {
        Self::with_mapping(format, header, &ExpenseMapping::default())
    }

    /// Locates the format's columns in `header`; the generic format reads the columns
    /// `mapping` names (other formats ignore it).
    ///
    /// # Errors
    /// A required column (date, amount, descriptor) is missing, or a mapped column is not in
    /// the header: the reason names the column and, for a mapped one, its config key.
    pub fn with_mapping(
        format: ExpenseFormat,
        header: &Header,
        mapping: &ExpenseMapping,
    ) -> Result<Self, LayoutError> {
        if format == ExpenseFormat::Generic && !mapping.is_default() {
            return Self::generic(header, mapping);
        }
        let all = |names: &[&str]| -> Vec<usize> {
            names.iter().filter_map(|n| header.find(&[n])).collect()
        };
        let one = |names: &[&str]| header.find(names);
        use ExpenseFormat as F;
        let (dates, amount, descriptors) = match format {
            F::Ramp => (
                all(&["Transaction Time", "Transaction Date", "Clearing Date"]),
                one(&["Amount"]),
                all(&["Merchant Description", "Merchant Name", "Accounting Merchant"]),
            ),
            F::Brex => (
                all(&["Swipe Date (UTC)", "Posted Date", "Posted Date (UTC)"]),
                one(&["Amount"]),
                all(&["Statement Descriptor", "Merchant Name", "Description"]),
            ),
            F::Expensify => (all(&["Date"]), one(&["Amount"]), all(&["Merchant", "Description"])),
            F::Concur => (
                all(&["TransactionDate"]),
                one(&["TransactionAmount", "PostedAmount"]),
                all(&["VendorDescription", "VendorListItemName", "Description"]),
            ),
            F::Amex => (
                all(&["Date"]),
                one(&["Amount"]),
                all(&["Appears On Your Statement As", "Description"]),
            ),
            F::Chase => {
                (all(&["Transaction Date", "Post Date"]), one(&["Amount"]), all(&["Description"]))
            }
            F::Generic => (all(&GENERIC_DATE), one(&GENERIC_AMOUNT), all(&GENERIC_DESCRIPTOR)),
        };
        let missing =
            |what: &'static str| LayoutError::Missing { export: format.as_str(), what, map: None };
        let amount = amount.ok_or_else(|| missing("amount"))?;
        if dates.is_empty() {
            return Err(missing("date"));
        }
        if descriptors.is_empty() {
            return Err(missing("merchant descriptor"));
        }
        let layout = Layout {
            format,
            dates,
            amount,
            descriptors,
            currency: match format {
                F::Expensify => one(&["Currency"]),
                F::Concur => one(&["TransactionCurrencyCode", "PostedCurrencyCode"]),
                F::Generic => one(&["currency"]),
                _ => one(&["Currency"]),
            },
            merchant: match format {
                F::Ramp | F::Brex => one(&["Merchant Name"]),
                F::Concur => one(&["VendorListItemName"]),
                F::Generic => one(&["merchant"]),
                _ => None,
            },
            payer: match format {
                F::Ramp => one(&["User", "Cardholder Name", "Card Display Name"]),
                F::Brex => one(&["User"]),
                F::Expensify => one(&["From", "Card"]),
                F::Concur => one(&["ReportOwnerID", "EmployeeName"]),
                F::Amex => one(&["Card Member"]),
                F::Chase => None,
                F::Generic => one(&["payer", "payer_name", "user", "employee"]),
            },
            payer_email: match format {
                F::Generic => one(&["payer_email", "email"]),
                F::Concur => one(&["ReportOwnerEmail", "EmployeeEmail"]),
                _ => one(&["Email", "User Email"]),
            },
            department: match format {
                F::Ramp => one(&["Ramp Department", "Accounting Department"]),
                F::Brex => one(&["Department", "Integration Department"]),
                F::Expensify => one(&["Tag", "Department"]),
                F::Concur => one(&["OrgUnit1", "Department"]),
                F::Generic => one(&["department", "cost_center"]),
                F::Amex | F::Chase => one(&["Department"]),
            },
            id: match format {
                F::Ramp => one(&["External ID", "Transaction Link", "Id"]),
                F::Brex => one(&["Id", "Transaction ID"]),
                F::Concur => one(&["ID", "EntryID", "CompanyCardTransactionID"]),
                F::Amex => one(&["Reference"]),
                F::Generic => one(&["id", "transaction_id"]),
                F::Expensify | F::Chase => one(&["Transaction ID"]),
            },
            kind: match format {
                F::Brex | F::Chase | F::Generic => one(&["Type"]),
                _ => None,
            },
            personal: match format {
                F::Concur => one(&["IsPersonal", "IsPersonalCardCharge"]),
                _ => None,
            },
            sign: if format == F::Chase {
                AmountSign::PurchasesNegative
            } else {
                AmountSign::PurchasesPositive
            },
            default_currency: "USD".to_owned(),
            date_format: None,
            context: Vec::new(),
            card: None,
            owners: CardOwners::default(),
        };
        Ok(layout.with_context(header, mapping))
    }

    /// The generic layout with `mapping` applied: a mapped field reads exactly its column,
    /// an unmapped one the built-in names.
    fn generic(header: &Header, m: &ExpenseMapping) -> Result<Self, LayoutError> {
        const SECTION: &str = "import.expenses.generic";
        let pick = |key: &'static str, mapped: &Option<String>, builtin: &[&str]| match mapped {
            Some(name) => mapping::locate(header, SECTION, key, name),
            None => Ok(header.find(builtin)),
        };
        let date = pick("date", &m.date, &GENERIC_DATE)?;
        let amount = pick("amount", &m.amount, &GENERIC_AMOUNT)?;
        let merchant = pick("merchant", &m.merchant, &["merchant"])?;
        let mut descriptors = match &m.descriptor {
            Some(name) => {
                mapping::locate(header, SECTION, "descriptor", name)?.into_iter().collect()
            }
            None if m.merchant.is_some() => Vec::new(),
            None => GENERIC_DESCRIPTOR.iter().filter_map(|n| header.find(&[n])).collect(),
        };
        // A mapped merchant column stands in for the descriptor when a row has none.
        if let Some(i) = merchant.filter(|i| !descriptors.contains(i)) {
            descriptors.push(i);
        }
        let missing = |what: &'static str, key: &'static str| LayoutError::Missing {
            export: "generic",
            what,
            map: Some((SECTION, key)),
        };
        let amount = amount.ok_or_else(|| missing("amount", "amount"))?;
        let date = date.ok_or_else(|| missing("date", "date"))?;
        if descriptors.is_empty() {
            return Err(missing("merchant descriptor", "descriptor"));
        }
        let layout = Layout {
            format: ExpenseFormat::Generic,
            dates: vec![date],
            amount,
            descriptors,
            currency: pick("currency", &m.currency, &["currency"])?,
            merchant,
            payer: pick("payer", &m.payer, &["payer", "payer_name", "user", "employee"])?,
            payer_email: pick("payer_email", &m.payer_email, &["payer_email", "email"])?,
            department: pick("department", &m.department, &["department", "cost_center"])?,
            id: pick("id", &m.id, &["id", "transaction_id"])?,
            kind: pick("type", &m.kind, &["Type"])?,
            personal: None,
            sign: m.amount_sign,
            default_currency: m.currency_default.clone().unwrap_or_else(|| "USD".to_owned()),
            date_format: m.date_format.clone(),
            context: Vec::new(),
            card: None,
            owners: CardOwners::default(),
        };
        Ok(layout.with_context(header, m))
    }

    /// Adds the context and card columns found in `header`, and the card owners.
    fn with_context(mut self, header: &Header, mapping: &ExpenseMapping) -> Self {
        self.context = CONTEXT_COLUMNS
            .iter()
            .filter_map(|n| header.find(&[n]))
            .filter(|i| !self.descriptors.contains(i))
            .fold(Vec::new(), |mut v, i| {
                if !v.contains(&i) {
                    v.push(i);
                }
                v
            });
        self.card = header.find(&CARD_COLUMNS);
        self.owners = mapping.owners.clone();
        self
    }

    /// The format.
    pub fn format(&self) -> ExpenseFormat {
        self.format
    }
}

/// Tokens that make an unmatched descriptor a candidate for review.
const AI_TOKENS: &[&str] =
    &["AI", "GPT", "LLM", "LLMS", "CHATBOT", "COPILOT", "OPENAI", "ANTHROPIC", "GENAI"];

/// True when a descriptor's tokens look like AI spend (`AI`, `GPT`, `LLM`, `...GPT...`).
pub fn looks_like_ai(toks: &[String]) -> bool {
    toks.iter().any(|t| AI_TOKENS.contains(&t.as_str()) || (t.len() > 3 && t.contains("GPT")))
}

/// Descriptors of a card payment, not a purchase.
fn is_issuer_payment(descriptor: &str) -> bool {
    let d = descriptor.to_ascii_uppercase();
    ["PAYMENT RECEIVED", "PAYMENT - THANK YOU", "PAYMENT THANK YOU", "AUTOPAY", "AUTOMATIC PAYMENT"]
        .iter()
        .any(|p| d.contains(p))
        || d.starts_with("ONLINE PAYMENT")
        || d.starts_with("PAYMENT TO ")
}

/// Parses one file's rows into expense lines.
pub struct ExpenseParser<'a> {
    layout: Layout,
    index: &'a Index,
    file: String,
    seen: HashMap<[u8; 16], u32>,
}

impl<'a> ExpenseParser<'a> {
    /// A parser for one file.
    pub fn new(layout: Layout, index: &'a Index, file: String) -> Self {
        Self { layout, index, file, seen: HashMap::new() }
    }

    fn error(&self, header: &Header, line: u64, col: Option<usize>, reason: String) -> RowError {
        RowError::at(&self.file, header, line, col, reason)
    }

    /// One record: a line to store, or `None` when it was counted in `tally` instead.
    ///
    /// # Errors
    /// The row is malformed; the error names file, line and column.
    pub fn row(
        &mut self,
        header: &Header,
        rec: &csv::StringRecord,
        line: u64,
        tally: &mut Tally,
    ) -> Result<Option<ExpenseLine>, RowError> {
        let l = &self.layout;
        if rec.iter().all(|c| c.trim().is_empty()) {
            tally.skipped = tally.skipped.saturating_add(1);
            return Ok(None);
        }
        let descriptor = l
            .descriptors
            .iter()
            .map(|&i| cell(rec, Some(i)))
            .find(|d| !d.is_empty())
            .unwrap_or("")
            .to_owned();
        let kind = cell(rec, l.kind).to_ascii_lowercase();
        if kind.contains("payment") {
            tally.not_spend = tally.not_spend.saturating_add(1);
            return Ok(None);
        }
        let personal = cell(rec, l.personal).to_ascii_lowercase();
        if matches!(personal.as_str(), "y" | "yes" | "true" | "1") {
            tally.not_spend = tally.not_spend.saturating_add(1);
            return Ok(None);
        }
        let currency = match l.currency.map(|i| cell(rec, Some(i))).filter(|c| !c.is_empty()) {
            None => l.default_currency.clone(),
            Some(c) => parse::currency(c).ok_or_else(|| {
                self.error(header, line, l.currency, format!("{c:?} is not a currency code"))
            })?,
        };
        let raw_amount = cell(rec, Some(l.amount));
        let amount = parse::parse_decimal(raw_amount, parse::exponent(&currency)).map_err(
            |e: AmountError| {
                self.error(header, line, Some(l.amount), format!("{e}: {raw_amount:?}"))
            },
        )?;
        let amount = match l.sign {
            AmountSign::PurchasesPositive => amount,
            AmountSign::PurchasesNegative => amount.checked_neg().unwrap_or(i64::MAX),
        };
        if amount < 0 && is_issuer_payment(&descriptor) {
            tally.not_spend = tally.not_spend.saturating_add(1);
            return Ok(None);
        }
        let date_col = l.dates.iter().copied().find(|&i| !cell(rec, Some(i)).is_empty());
        let raw_date = cell(rec, date_col);
        let parsed = match &l.date_format {
            Some(f) => f.apply(raw_date),
            None => parse::parse_datetime(raw_date),
        };
        let occurred_at = parsed.ok_or_else(|| {
            let col = date_col.or(l.dates.first().copied());
            let expected = l.date_format.as_ref().map(|f| format!(" (expected {f})"));
            self.error(
                header,
                line,
                col,
                format!("not a date: {raw_date:?}{}", expected.unwrap_or_default()),
            )
        })?;
        if descriptor.is_empty() {
            return Err(self.error(
                header,
                line,
                l.descriptors.first().copied(),
                "empty merchant descriptor".into(),
            ));
        }
        let merchant = cell(rec, l.merchant).to_owned();
        let context: Vec<&str> = l.context.iter().map(|&i| cell(rec, Some(i))).collect();
        let toks = tokens(&descriptor);
        let (product, candidate, candidate_reason) =
            match self.index.merchant_in_context(&descriptor, &merchant, &context) {
                LineMatch::Product(m) => (Some(m.product.id.clone()), false, String::new()),
                LineMatch::Ambiguous { reason, .. } => (None, true, reason.to_owned()),
                LineMatch::NotAi => (None, false, String::new()),
                LineMatch::Unknown => {
                    let ai = looks_like_ai(&toks) || looks_like_ai(&tokens(&merchant));
                    (None, ai, String::new())
                }
            };
        if product.is_none() && !candidate {
            tally.not_ai = tally.not_ai.saturating_add(1);
            return Ok(None);
        }
        let (mut payer_email, payer_name) = parse::payer(cell(rec, l.payer));
        let explicit = cell(rec, l.payer_email);
        if parse::looks_like_email(explicit) {
            payer_email = explicit.to_ascii_lowercase();
        }
        if payer_email.is_empty()
            && payer_name.is_empty()
            && let Some(owner) = l.owners.owner(cell(rec, l.card))
        {
            owner.clone_into(&mut payer_email);
        }
        let department = parse::collapse(cell(rec, l.department));
        let id = cell(rec, l.id).trim_matches(['\'', '"']).trim();
        let dedupe_key = if id.is_empty() {
            let name_key = parse::name_key(&payer_name);
            let payer_key = if payer_email.is_empty() { &name_key } else { &payer_email };
            let basis = format!(
                "{}\u{1f}{amount}\u{1f}{currency}\u{1f}{payer_key}\u{1f}{}",
                parse::ymd(occurred_at),
                toks.join(" ")
            );
            let digest = ring::digest::digest(&ring::digest::SHA256, basis.as_bytes());
            let mut short = [0u8; 16];
            short.copy_from_slice(digest.as_ref().get(..16).unwrap_or(&[0; 16]));
            let n = self.seen.entry(short).or_insert(0);
            *n = n.saturating_add(1);
            format!("h:{}:{}", hex(&short), *n)
        } else {
            format!("id:{id}")
        };
        if candidate {
            tally.candidates = tally.candidates.saturating_add(1);
        }
        Ok(Some(ExpenseLine {
            source: l.format.as_str().to_owned(),
            dedupe_key,
            file: self.file.clone(),
            line: i64::try_from(line).unwrap_or(i64::MAX),
            occurred_at: aiscout_wire::UnixSecs(occurred_at),
            amount_minor: amount,
            currency,
            descriptor,
            merchant,
            payer_email,
            payer_name,
            department,
            product,
            candidate,
            candidate_reason,
        }))
    }
}

/// Lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len().saturating_mul(2));
    for b in bytes {
        for nibble in [b >> 4, b & 0xf] {
            s.push(char::from(DIGITS.get(usize::from(nibble)).copied().unwrap_or(b'0')));
        }
    }
    s
}

#[cfg(test)]
#[allow(clippy::indexing_slicing, clippy::arithmetic_side_effects)] // Reason: tests index their own fixtures.
mod tests {
    use super::*;
    use crate::ingest::table;

    #[test]
    fn a_header_that_does_not_fit_is_a_typed_layout_error_naming_the_column_and_key() {
        let names = |n: &[&str]| Header::from_names(n.iter().map(|s| (*s).to_owned()).collect());
        let ramp = names(&["Transaction Time", "Merchant Description"]);
        let e = Layout::new(ExpenseFormat::Ramp, &ramp).expect_err("no amount column");
        assert_eq!(e, LayoutError::Missing { export: "ramp", what: "amount", map: None });
        assert_eq!(e.to_string(), "ramp export without an amount column");
        let generic = names(&["when", "how much", "shop"]);
        let mapping = ExpenseMapping { amount: Some("Total".into()), ..ExpenseMapping::default() };
        let e = Layout::with_mapping(ExpenseFormat::Generic, &generic, &mapping)
            .expect_err("the mapped column is missing");
        assert!(
            matches!(&e, LayoutError::NotInHeader { column, key: "amount", .. } if column == "Total"),
            "{e:?}"
        );
        // Named by file around it, its cause in the message only (printed once).
        let import =
            crate::ingest::file::ImportError::Layout { file: "cards.csv".into(), error: e };
        assert!(std::error::Error::source(&import).is_none());
        let text = import.to_string();
        assert!(
            text.starts_with("cards.csv: column \"Total\" (import.expenses.generic.amount)"),
            "{text}"
        );
    }

    /// Parses `csv` with format detection; returns the format, the lines and the tally.
    fn parse(csv: &str) -> (ExpenseFormat, Vec<ExpenseLine>, Tally) {
        parse_with(csv, &ExpenseMapping::default())
    }

    /// [`parse`] with a mapping (its card owners apply to every format).
    fn parse_with(csv: &str, mapping: &ExpenseMapping) -> (ExpenseFormat, Vec<ExpenseLine>, Tally) {
        let index = Index::new(aiscout_signatures::Catalog::builtin().unwrap());
        let mut rdr = table::reader(csv.as_bytes());
        let mut rec = csv::StringRecord::new();
        assert!(rdr.read_record(&mut rec).unwrap());
        let header = Header::new(&rec);
        let format = ExpenseFormat::detect(&header).expect("format not detected");
        let layout = Layout::with_mapping(format, &header, mapping).unwrap();
        let mut p = ExpenseParser::new(layout, &index, "t.csv".into());
        let mut tally = Tally::default();
        let mut lines = Vec::new();
        while rdr.read_record(&mut rec).unwrap() {
            let line = rec.position().unwrap().line();
            match p.row(&header, &rec, line, &mut tally) {
                Ok(Some(l)) => lines.push(l),
                Ok(None) => {}
                Err(e) => tally.errors.push(e),
            }
        }
        (format, lines, tally)
    }

    fn summary(l: &ExpenseLine) -> (String, i64, &str, Option<&str>, bool) {
        (
            parse::ymd(l.occurred_at.get()),
            l.amount_minor,
            l.currency.as_str(),
            l.product.as_deref(),
            l.candidate,
        )
    }

    #[test]
    fn chase_purchases_are_negative_and_payments_are_not_spend() {
        let (f, lines, t) = parse(
            "Transaction Date,Post Date,Description,Category,Type,Amount,Memo\n\
             10/07/2026,10/08/2026,OPENAI *CHATGPT SUBSCR,Shopping,Sale,-20.00,\n\
             10/09/2026,10/09/2026,OPENAI *CHATGPT SUBSCR,Shopping,Return,20.00,\n\
             10/28/2026,10/28/2026,Payment Thank You-Mobile,,Payment,500.00,\n\
             10/15/2026,10/16/2026,WHOLEFDS MKT 10234,Groceries,Sale,-84.12,\n",
        );
        assert_eq!(f, ExpenseFormat::Chase);
        let got: Vec<_> = lines.iter().map(summary).collect();
        assert_eq!(
            got,
            [
                ("2026-10-07".into(), 2000, "USD", Some("openai.chatgpt"), false),
                ("2026-10-09".into(), -2000, "USD", Some("openai.chatgpt"), false),
            ]
        );
        assert_eq!((t.not_spend, t.not_ai), (1, 1));
    }

    #[test]
    fn amex_refunds_stay_negative_and_autopay_is_not_spend() {
        let (f, lines, t) = parse(
            "Date,Description,Card Member,Account #,Amount,Appears On Your Statement As,Reference\n\
             10/18/2026,CURSOR,JANE A DOE,-41007,20.00,CURSOR AI POWERED IDE,'3202630001'\n\
             10/20/2026,CURSOR,JANE A DOE,-41007,-20.00,CURSOR AI POWERED IDE,'3202630002'\n\
             10/30/2026,AUTOPAY PAYMENT - THANK YOU,JANE A DOE,-41007,-1500.00,AUTOPAY PAYMENT - THANK YOU,'3202630003'\n",
        );
        assert_eq!(f, ExpenseFormat::Amex);
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[1].amount_minor, -2000);
        assert_eq!(lines[0].payer_name, "Jane A Doe");
        assert_eq!(lines[0].dedupe_key, "id:3202630001");
        assert_eq!(t.not_spend, 1);
    }

    #[test]
    fn ramp_brex_expensify_and_concur_are_recognised_and_normalised() {
        let (f, lines, _) = parse(
            "Transaction Date,Transaction Time,Amount,User,Merchant Name,Merchant Description,Ramp Category,Ramp Department,External ID\n\
             05/11/22,2022-05-11 23:30:00,20,\"Lee, Ann\",OpenAI,OPENAI *CHATGPT SUBSCR,SaaS,Sales,RAMP.1\n",
        );
        assert_eq!(f, ExpenseFormat::Ramp);
        assert_eq!(
            (lines[0].payer_name.as_str(), lines[0].department.as_str()),
            ("Ann Lee", "Sales")
        );
        assert_eq!(parse::ymd(lines[0].occurred_at.get()), "2022-05-11");

        let (f, lines, t) = parse(
            "Swipe Date (UTC),Posted Date,Type,Amount,User,Department,Statement Descriptor,Merchant Name,Id\n\
             2026-09-05T14:02:11Z,09/06/2026,Transaction,\"1,020.00\",Erin Moss,Legal,ANTHROPIC CLAUDE PRO,Anthropic,b1\n\
             2026-09-30T00:00:00Z,09/30/2026,Payment to Brex,-1000.00,,,BREX PAYMENT,Brex,b2\n",
        );
        assert_eq!(f, ExpenseFormat::Brex);
        assert_eq!((lines[0].amount_minor, t.not_spend), (102_000, 1));

        let (f, lines, _) = parse(
            "Date,Merchant,Description,From,To,Category,Tag,Tax,Amount,Currency,Type,Receipt URL\n\
             2026-10-01,Midjourney,,dana@example.com – 1234,,Software,Marketing,0,(30.00),EUR,card,\n",
        );
        assert_eq!(f, ExpenseFormat::Expensify);
        assert_eq!(
            summary(&lines[0]),
            ("2026-10-01".into(), -3000, "EUR", Some("midjourney.midjourney"), false)
        );
        assert_eq!(
            (lines[0].payer_email.as_str(), lines[0].department.as_str()),
            ("dana@example.com", "Marketing")
        );

        let (f, lines, t) = parse(
            "ID,ReportOwnerID,TransactionDate,TransactionAmount,TransactionCurrencyCode,VendorDescription,IsPersonal,OrgUnit1\n\
             e1,Bob.Kim@Example.com,2026-10-12T00:00:00,19.00,usd,GITHUB COPILOT,N,Engineering\n\
             e2,Bob.Kim@Example.com,2026-10-13T00:00:00,25.00,USD,CLAUDE.AI,Y,Engineering\n",
        );
        assert_eq!(f, ExpenseFormat::Concur);
        assert_eq!(lines.len(), 1);
        assert_eq!(
            (lines[0].payer_email.as_str(), lines[0].currency.as_str()),
            ("bob.kim@example.com", "USD")
        );
        assert_eq!(t.not_spend, 1);
    }

    #[test]
    fn unmatched_ai_looking_lines_are_candidates_and_others_are_only_counted() {
        let (f, lines, t) = parse(
            "date,amount,currency,descriptor,payer_email\n\
             2026-10-01,49.00,USD,JASPER AI INC,a@example.com\n\
             2026-10-01,12.00,USD,SQ *NOTEGPT,a@example.com\n\
             2026-10-01,12.00,USD,THAI PALACE,a@example.com\n",
        );
        assert_eq!(f, ExpenseFormat::Generic);
        assert!(lines.iter().all(|l| l.candidate && l.product.is_none()));
        assert_eq!((lines.len(), t.candidates, t.not_ai), (2, 2, 1));
    }

    #[test]
    fn identical_charges_in_one_file_stay_two_with_stable_keys() {
        let csv = "date,amount,currency,descriptor,payer_email\n\
                   2026-10-01,20.00,USD,CURSOR,a@example.com\n\
                   2026-10-01,20.00,USD,CURSOR,a@example.com\n";
        let (_, first, _) = parse(csv);
        let (_, again, _) = parse(csv);
        assert_ne!(first[0].dedupe_key, first[1].dedupe_key);
        let keys = |v: &[ExpenseLine]| v.iter().map(|l| l.dedupe_key.clone()).collect::<Vec<_>>();
        assert_eq!(keys(&first), keys(&again));
    }

    #[test]
    fn row_errors_name_the_column() {
        let (_, lines, t) = parse(
            "date,amount,currency,descriptor\n\
             2026-10-01,abc,USD,CURSOR\n\
             2026-99-01,1.00,USD,CURSOR\n\
             2026-10-01,1.00,DOLLARS,CURSOR\n\
             2026-10-01,1.00,USD,CURSOR\n",
        );
        assert_eq!(lines.len(), 1);
        let cols: Vec<_> = t.errors.iter().map(|e| (e.line, e.column.as_str())).collect();
        assert_eq!(cols, [(2, "amount"), (3, "date"), (4, "currency")]);
        assert_eq!(
            t.errors[0].to_string(),
            "t.csv:2: column \"amount\": not a decimal amount: \"abc\""
        );
    }

    #[test]
    fn a_shared_descriptor_is_ai_with_one_memo_not_ai_with_another_and_a_candidate_without() {
        let (f, lines, t) = parse(
            "Transaction Date,Post Date,Description,Category,Type,Amount,Memo\n\
             10/07/2026,10/08/2026,GITHUB,Software,Sale,-19.00,Copilot Business seat\n\
             10/07/2026,10/08/2026,GITHUB,Software,Sale,-4.00,Actions minutes\n\
             10/07/2026,10/08/2026,GITHUB,Software,Sale,-21.00,\n\
             10/09/2026,10/09/2026,APPLE.COM/BILL,Shopping,Sale,-19.99,ChatGPT Plus\n\
             10/09/2026,10/09/2026,APPLE.COM/BILL,Shopping,Sale,-2.99,iCloud storage\n\
             10/10/2026,10/10/2026,GITHUBS BAKERY,Food,Sale,-8.00,copilot lunch\n",
        );
        assert_eq!(f, ExpenseFormat::Chase);
        let got: Vec<_> = lines
            .iter()
            .map(|l| {
                (l.amount_minor, l.product.as_deref(), l.candidate, l.candidate_reason.is_empty())
            })
            .collect();
        assert_eq!(
            got,
            [
                (1900, Some("github.copilot"), false, true),
                (2100, None, true, false),
                (1999, Some("openai.chatgpt"), false, true),
                (299, None, true, false),
            ]
        );
        assert!(lines[1].candidate_reason.contains("GitHub"), "{}", lines[1].candidate_reason);
        assert!(lines[3].candidate_reason.contains("App Store"), "{}", lines[3].candidate_reason);
        // Actions is not AI; the bakery is not GitHub: both only counted.
        assert_eq!((t.not_ai, t.candidates), (2, 2));
    }

    #[test]
    fn statements_without_a_cardholder_take_the_card_owner_or_the_cardholder_flag() {
        let csv = "Transaction Date,Post Date,Description,Category,Type,Amount,Card\n\
                   10/07/2026,10/08/2026,OPENAI *CHATGPT SUBSCR,Shopping,Sale,-20.00,XXXX-1234\n\
                   10/08/2026,10/08/2026,OPENAI *CHATGPT SUBSCR,Shopping,Sale,-20.00,XXXX-9999\n";
        let mut m = ExpenseMapping::default();
        m.owners.add_card("1234", "Alice@Example.com").unwrap();
        let (_, lines, _) = parse_with(csv, &m);
        let payers: Vec<_> = lines.iter().map(|l| l.payer_email.as_str()).collect();
        assert_eq!(payers, ["alice@example.com", ""]);
        m.owners.set_cardholder("bob@example.com").unwrap();
        let (_, lines, _) = parse_with(csv, &m);
        let payers: Vec<_> = lines.iter().map(|l| l.payer_email.as_str()).collect();
        assert_eq!(payers, ["alice@example.com", "bob@example.com"]);
        // A line that names its payer keeps it.
        let (_, lines, _) = parse_with(
            "date,amount,currency,descriptor,payer_email,card\n\
             2026-10-01,20.00,USD,CURSOR,carol@example.com,1234\n",
            &m,
        );
        assert_eq!(lines[0].payer_email, "carol@example.com");
        assert!(m.owners.add_card("12345", "a@example.com").is_err());
        assert!(m.owners.add_card("1234", "alice").is_err());
        assert!(m.owners.set_cardholder("not an email").is_err());
        // Card owners do not make the generic mapping "configured".
        assert!(m.is_default());
    }
}
