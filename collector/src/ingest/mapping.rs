//! Column mappings for the generic expense and gateway CSVs (issue 7: "a generic CSV with a
//! column mapping given in config").
//!
//! A mapping names, per field, the column of the customer's export that holds it, plus a few
//! settings (`date_format`, `amount_sign`, `currency_default`). It comes from the config
//! sections `[import.expenses.generic]` and `[import.gateway.generic]`, and `--map KEY=VALUE`
//! flags of `import expenses` / `import gateway` override single keys. Every value goes
//! through [`ExpenseMapping::set`] or [`GatewayMapping::set`], so the file and the flags are
//! validated the same way (unknown keys, date formats, sign and currency spellings).
//!
//! A field left unmapped keeps the built-in column names (`date`, `amount`, `descriptor`...).
//! A mapped column that is missing from a file's header fails that file with an error naming
//! the config key and the header found: a mapping is a promise about the file, and silently
//! falling back to another column would import wrong data.

#![deny(clippy::indexing_slicing, clippy::arithmetic_side_effects)] // Parsers of untrusted files (issue 18).

use std::fmt;

use super::parse::{DAY_SECS, days_from_civil};
use super::table::{Header, LayoutError};

/// How a `strftime`-like date format reads a cell (see [`DateFormat::parse`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DateFormat {
    text: String,
    items: Vec<Item>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Item {
    Year4,
    Year2,
    Month,
    MonthName,
    Day,
    Hour,
    Minute,
    Second,
    /// A space in the format: one or more whitespace characters in the cell.
    Space,
    Literal(char),
}

const MONTHS: [&str; 12] = [
    "january",
    "february",
    "march",
    "april",
    "may",
    "june",
    "july",
    "august",
    "september",
    "october",
    "november",
    "december",
];

impl DateFormat {
    /// Parses a format: `%Y` (4-digit year), `%y` (2-digit year, 20yy), `%m` (month, 1 or 2
    /// digits), `%b` / `%B` (English month name or its 3-letter abbreviation), `%d` (day),
    /// `%H`, `%M`, `%S` (24-hour time), `%%`; a space matches any run of whitespace and every
    /// other character itself. Times are read as UTC.
    ///
    /// # Errors
    /// An unknown directive, a field given twice, or no year, month or day.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut items = Vec::new();
        let mut chars = text.chars();
        while let Some(c) = chars.next() {
            let item = match c {
                '%' => match chars.next() {
                    Some('Y') => Item::Year4,
                    Some('y') => Item::Year2,
                    Some('m') => Item::Month,
                    Some('b' | 'B') => Item::MonthName,
                    Some('d') => Item::Day,
                    Some('H') => Item::Hour,
                    Some('M') => Item::Minute,
                    Some('S') => Item::Second,
                    Some('%') => Item::Literal('%'),
                    Some(other) => {
                        return Err(format!(
                            "unknown directive %{other} (known: %Y %y %m %b %B %d %H %M %S %%)"
                        ));
                    }
                    None => return Err("ends with a lone %".into()),
                },
                c if c.is_whitespace() => Item::Space,
                c => Item::Literal(c),
            };
            items.push(item);
        }
        let count = |pred: &dyn Fn(&Item) -> bool| items.iter().filter(|i| pred(i)).count();
        let fields: [(&str, usize); 6] = [
            ("year (%Y or %y)", count(&|i| matches!(i, Item::Year4 | Item::Year2))),
            ("month (%m or %b)", count(&|i| matches!(i, Item::Month | Item::MonthName))),
            ("day (%d)", count(&|i| *i == Item::Day)),
            ("hour (%H)", count(&|i| *i == Item::Hour)),
            ("minute (%M)", count(&|i| *i == Item::Minute)),
            ("second (%S)", count(&|i| *i == Item::Second)),
        ];
        for (name, n) in fields {
            if n > 1 {
                return Err(format!("{text:?} gives the {name} twice"));
            }
        }
        for (name, n) in fields.iter().take(3) {
            if *n == 0 {
                return Err(format!("{text:?} has no {name}"));
            }
        }
        Ok(Self { text: text.to_owned(), items })
    }

    /// The format as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Reads `cell` as Unix seconds (UTC); `None` when it does not match the format or names
    /// a day that does not exist.
    pub fn apply(&self, cell: &str) -> Option<i64> {
        let mut rest = cell.trim();
        let (mut y, mut mo, mut d, mut h, mut mi, mut s) = (None, None, None, 0, 0, 0);
        for item in &self.items {
            match *item {
                Item::Year4 => y = Some(i64::from(digits(&mut rest, 4, 4)?)),
                Item::Year2 => y = Some(i64::from(digits(&mut rest, 2, 2)?).saturating_add(2000)),
                Item::Month => mo = Some(digits(&mut rest, 1, 2)?),
                Item::Day => d = Some(digits(&mut rest, 1, 2)?),
                Item::Hour => h = digits(&mut rest, 1, 2)?,
                Item::Minute => mi = digits(&mut rest, 1, 2)?,
                Item::Second => s = digits(&mut rest, 1, 2)?,
                Item::MonthName => mo = Some(month_name(&mut rest)?),
                Item::Space => {
                    let trimmed = rest.trim_start();
                    if trimmed.len() == rest.len() {
                        return None;
                    }
                    rest = trimmed;
                }
                Item::Literal(c) => rest = rest.strip_prefix(c)?,
            }
        }
        if !rest.is_empty() || h > 23 || mi > 59 || s > 60 {
            return None;
        }
        let day = days_from_civil(y?, mo?, d?)?;
        let secs =
            i64::from(h.checked_mul(3600)?.checked_add(mi.checked_mul(60)?)?.checked_add(s)?);
        day.checked_mul(DAY_SECS)?.checked_add(secs)
    }
}

impl fmt::Display for DateFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// Takes `min..=max` ASCII digits from the front of `rest`.
fn digits(rest: &mut &str, min: usize, max: usize) -> Option<u32> {
    let n = rest.bytes().take(max).take_while(u8::is_ascii_digit).count();
    if n < min {
        return None;
    }
    let (num, tail) = rest.split_at_checked(n)?;
    *rest = tail;
    num.parse().ok()
}

/// Takes an English month name or 3-letter abbreviation from the front of `rest`.
fn month_name(rest: &mut &str) -> Option<u32> {
    let n = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
    let (word, tail) = rest.split_at_checked(n)?;
    let word = word.to_ascii_lowercase();
    let i = MONTHS.iter().position(|m| *m == word || (word.len() == 3 && m.starts_with(&word)))?;
    *rest = tail;
    u32::try_from(i).ok()?.checked_add(1)
}

/// How an expense export writes the sign of a purchase.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum AmountSign {
    /// Purchases negative, refunds positive (Chase).
    PurchasesNegative,
    /// Purchases positive, refunds negative (most exports).
    #[default]
    PurchasesPositive,
}

/// A column mapping problem: the key, and what is wrong with its value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MappingProblem {
    /// The key within its section (`date`, `date_format`...).
    pub key: String,
    /// What is wrong.
    pub reason: String,
}

fn currency_code(key: &str, value: &str) -> Result<String, MappingProblem> {
    super::parse::currency(value).ok_or_else(|| MappingProblem {
        key: key.to_owned(),
        reason: format!("{value:?} is not a three-letter currency code"),
    })
}

fn date_format(key: &str, value: &str) -> Result<DateFormat, MappingProblem> {
    DateFormat::parse(value).map_err(|reason| MappingProblem { key: key.to_owned(), reason })
}

fn column(key: &str, value: &str) -> Result<String, MappingProblem> {
    let v = value.trim();
    if v.is_empty() {
        return Err(MappingProblem { key: key.to_owned(), reason: "empty column name".into() });
    }
    Ok(v.to_owned())
}

fn unknown(key: &str, known: &[&str]) -> MappingProblem {
    MappingProblem {
        key: key.to_owned(),
        reason: format!("unknown key (known: {})", known.join(", ")),
    }
}

/// The generic expense CSV's mapping (`[import.expenses.generic]`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExpenseMapping {
    /// Column of the transaction date.
    pub date: Option<String>,
    /// Column of the amount.
    pub amount: Option<String>,
    /// Column of the currency code.
    pub currency: Option<String>,
    /// Column of the raw card descriptor.
    pub descriptor: Option<String>,
    /// Column of the normalised merchant name (also read as the descriptor when there is
    /// no descriptor column).
    pub merchant: Option<String>,
    /// Column of the payer's name (or an email inside it).
    pub payer: Option<String>,
    /// Column of the payer's email.
    pub payer_email: Option<String>,
    /// Column of the department or cost center.
    pub department: Option<String>,
    /// Column of the transaction id (the dedupe key).
    pub id: Option<String>,
    /// Column of the transaction type (rows whose type contains "payment" are not spend).
    pub kind: Option<String>,
    /// The currency of rows without a currency cell (default USD).
    pub currency_default: Option<String>,
    /// How dates are written; unset reads the usual ISO and US forms.
    pub date_format: Option<DateFormat>,
    /// How purchases are signed.
    pub amount_sign: AmountSign,
    /// Who owns lines without a cardholder: applies to every expense format, not only the
    /// generic one (see [`CardOwners`]).
    pub owners: CardOwners,
}

/// The owner of card lines whose export names no cardholder (bank card statements): by the
/// card's last four digits (`[cards]` in the config), else the import's `--cardholder`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CardOwners {
    /// Card last four digits to the owner's email, lowercased.
    pub cards: std::collections::BTreeMap<String, String>,
    /// The owner of every line that names no cardholder and no configured card.
    pub cardholder: Option<String>,
}

impl CardOwners {
    /// Adds `[cards] "LAST4" = "EMAIL"`.
    ///
    /// # Errors
    /// The key is not four digits or the value is not an email address.
    pub fn add_card(&mut self, last4: &str, email: &str) -> Result<(), MappingProblem> {
        if last4.len() != 4 || !last4.bytes().all(|b| b.is_ascii_digit()) {
            return Err(MappingProblem {
                key: last4.to_owned(),
                reason: "a card is named by its last four digits, such as \"1234\"".into(),
            });
        }
        self.cards.insert(last4.to_owned(), owner_email(last4, email)?);
        Ok(())
    }

    /// Sets `--cardholder EMAIL`.
    ///
    /// # Errors
    /// Not an email address.
    pub fn set_cardholder(&mut self, email: &str) -> Result<(), MappingProblem> {
        self.cardholder = Some(owner_email("cardholder", email)?);
        Ok(())
    }

    /// The owner of a line without a cardholder, from its card cell (any text whose last
    /// four digits name the card: `1234`, `XXXX-1234`, `-41234`).
    pub fn owner(&self, card_cell: &str) -> Option<&str> {
        let digits: Vec<u8> = card_cell.bytes().filter(u8::is_ascii_digit).collect();
        let last4 = digits.len().checked_sub(4).and_then(|start| digits.get(start..));
        last4
            .and_then(|d| std::str::from_utf8(d).ok())
            .and_then(|k| self.cards.get(k))
            .or(self.cardholder.as_ref())
            .map(String::as_str)
    }
}

fn owner_email(key: &str, value: &str) -> Result<String, MappingProblem> {
    let v = value.trim();
    if super::parse::looks_like_email(v) {
        Ok(v.to_ascii_lowercase())
    } else {
        Err(MappingProblem {
            key: key.to_owned(),
            reason: format!("{v:?} is not an email address"),
        })
    }
}

impl ExpenseMapping {
    /// Every key, in the order the docs list them.
    pub const KEYS: [&'static str; 13] = [
        "date",
        "amount",
        "currency",
        "descriptor",
        "merchant",
        "payer",
        "payer_email",
        "department",
        "id",
        "type",
        "currency_default",
        "date_format",
        "amount_sign",
    ];

    /// Sets one key.
    ///
    /// # Errors
    /// The key is unknown or the value is not valid for it.
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), MappingProblem> {
        let col = |v: &str| column(key, v).map(Some);
        match key {
            "date" => self.date = col(value)?,
            "amount" => self.amount = col(value)?,
            "currency" => self.currency = col(value)?,
            "descriptor" => self.descriptor = col(value)?,
            "merchant" => self.merchant = col(value)?,
            "payer" => self.payer = col(value)?,
            "payer_email" => self.payer_email = col(value)?,
            "department" => self.department = col(value)?,
            "id" => self.id = col(value)?,
            "type" => self.kind = col(value)?,
            "currency_default" => self.currency_default = Some(currency_code(key, value)?),
            "date_format" => self.date_format = Some(date_format(key, value)?),
            "amount_sign" => {
                self.amount_sign = match value.trim() {
                    "purchases_positive" => AmountSign::PurchasesPositive,
                    "purchases_negative" => AmountSign::PurchasesNegative,
                    other => {
                        return Err(MappingProblem {
                            key: key.to_owned(),
                            reason: format!(
                                "{other:?} is not purchases_positive or purchases_negative"
                            ),
                        });
                    }
                }
            }
            _ => return Err(unknown(key, &Self::KEYS)),
        }
        Ok(())
    }

    /// True when no column is mapped and no setting of the generic format is set (card
    /// owners apply to every format and do not count).
    pub fn is_default(&self) -> bool {
        *self == Self { owners: self.owners.clone(), ..Self::default() }
    }
}

/// The generic gateway spend CSV's mapping (`[import.gateway.generic]`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GatewayMapping {
    /// Column of the date or period start.
    pub date: Option<String>,
    /// Column of the provider (`openai`, `anthropic`...).
    pub provider: Option<String>,
    /// Column of the model.
    pub model: Option<String>,
    /// Column of the team, tag or project.
    pub team: Option<String>,
    /// Column of the user.
    pub user: Option<String>,
    /// Column of the API key alias.
    pub api_key: Option<String>,
    /// Column of free-form tags.
    pub tags: Option<String>,
    /// Column of input (prompt) tokens.
    pub tokens_in: Option<String>,
    /// Column of output (completion) tokens.
    pub tokens_out: Option<String>,
    /// Column of total tokens (used when neither input nor output is given).
    pub tokens_total: Option<String>,
    /// Column of the cost, in major units.
    pub cost: Option<String>,
    /// Column of the currency code.
    pub currency: Option<String>,
    /// Column of the request or row id (the dedupe key).
    pub id: Option<String>,
    /// The currency of rows without a currency cell (default USD).
    pub currency_default: Option<String>,
    /// The provider of rows without a provider cell.
    pub provider_default: Option<String>,
    /// How dates are written; unset reads the usual ISO and US forms.
    pub date_format: Option<DateFormat>,
}

impl GatewayMapping {
    /// Every key, in the order the docs list them.
    pub const KEYS: [&'static str; 16] = [
        "date",
        "provider",
        "model",
        "team",
        "user",
        "api_key",
        "tags",
        "tokens_in",
        "tokens_out",
        "tokens_total",
        "cost",
        "currency",
        "id",
        "currency_default",
        "provider_default",
        "date_format",
    ];

    /// Sets one key.
    ///
    /// # Errors
    /// The key is unknown or the value is not valid for it.
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), MappingProblem> {
        let col = |v: &str| column(key, v).map(Some);
        match key {
            "date" => self.date = col(value)?,
            "provider" => self.provider = col(value)?,
            "model" => self.model = col(value)?,
            "team" => self.team = col(value)?,
            "user" => self.user = col(value)?,
            "api_key" => self.api_key = col(value)?,
            "tags" => self.tags = col(value)?,
            "tokens_in" => self.tokens_in = col(value)?,
            "tokens_out" => self.tokens_out = col(value)?,
            "tokens_total" => self.tokens_total = col(value)?,
            "cost" => self.cost = col(value)?,
            "currency" => self.currency = col(value)?,
            "id" => self.id = col(value)?,
            "currency_default" => self.currency_default = Some(currency_code(key, value)?),
            "provider_default" => {
                self.provider_default = Some(column(key, value)?.to_ascii_lowercase());
            }
            "date_format" => self.date_format = Some(date_format(key, value)?),
            _ => return Err(unknown(key, &Self::KEYS)),
        }
        Ok(())
    }

    /// True when nothing is mapped or set.
    pub fn is_default(&self) -> bool {
        *self == Self::default()
    }
}

/// Both generic mappings, as configured.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Mappings {
    /// `[import.expenses.generic]`.
    pub expenses: ExpenseMapping,
    /// `[import.gateway.generic]`.
    pub gateway: GatewayMapping,
}

/// Splits a `--map KEY=VALUE` argument.
///
/// # Errors
/// There is no `=`.
pub fn split_flag(arg: &str) -> Result<(&str, &str), MappingProblem> {
    arg.split_once('=')
        .map(|(k, v)| (k.trim(), v))
        .ok_or_else(|| MappingProblem { key: arg.to_owned(), reason: "expected KEY=VALUE".into() })
}

/// Finds a mapped column, or explains which key named a column the header lacks.
///
/// `section` is the config section (`import.expenses.generic`).
///
/// # Errors
/// The column is not in the header.
pub fn locate(
    header: &Header,
    section: &'static str,
    key: &'static str,
    name: &str,
) -> Result<Option<usize>, LayoutError> {
    match header.find(&[name]) {
        Some(i) => Ok(Some(i)),
        None => {
            let found: Vec<String> =
                (0..header.len()).map(|i| format!("{:?}", header.name(i))).collect();
            Err(LayoutError::NotInHeader {
                column: name.to_owned(),
                section,
                key,
                header: found.join(", "),
            })
        }
    }
}

#[cfg(test)]
#[allow(clippy::indexing_slicing, clippy::arithmetic_side_effects)] // Reason: tests index their own fixtures.
mod tests {
    use super::*;
    use crate::ingest::parse::ymd;

    fn check(format: &str, cell: &str, expected: Option<&str>) {
        let f = DateFormat::parse(format).unwrap();
        let got = f.apply(cell).map(|s| {
            let t = s.rem_euclid(DAY_SECS);
            format!("{} {:02}:{:02}:{:02}", ymd(s), t / 3600, t / 60 % 60, t % 60)
        });
        assert_eq!(got.as_deref(), expected, "{format} on {cell:?}");
    }

    #[test]
    fn date_formats_read_what_they_describe_and_nothing_else() {
        check("%d/%m/%Y", "05/11/2026", Some("2026-11-05 00:00:00"));
        check("%d/%m/%Y", "5/1/2026", Some("2026-01-05 00:00:00"));
        check("%d/%m/%Y", "31/02/2026", None);
        check("%d/%m/%Y", "05/11/26", None);
        check("%d/%m/%Y", "05/11/2026 10:00", None);
        check("%d.%m.%y %H:%M", "05.11.26  23:59", Some("2026-11-05 23:59:00"));
        check("%d %b %Y", "7 Nov 2026", Some("2026-11-07 00:00:00"));
        check("%B %d, %Y", "september 30, 2026", Some("2026-09-30 00:00:00"));
        check("%Y%m%dT%H%M%S", "20261105T081502", Some("2026-11-05 08:15:02"));
        check("%Y-%m-%d %H:%M:%S", "2026-11-05 24:00:00", None);
        check("%Y-%m-%d", "", None);
    }

    #[test]
    fn bad_date_formats_are_refused_with_a_reason() {
        let err = |f: &str| DateFormat::parse(f).unwrap_err();
        assert!(err("%d/%m/%Q").contains("unknown directive %Q"), "{}", err("%d/%m/%Q"));
        assert!(err("%d/%m").contains("no year"));
        assert!(err("%d/%m/%Y %Y").contains("twice"));
        assert!(err("%d/%m/%Y%").contains("lone %"));
    }

    #[test]
    fn mapping_keys_are_checked_one_by_one() {
        let mut m = ExpenseMapping::default();
        m.set("date", "Posted On").unwrap();
        m.set("amount_sign", "purchases_negative").unwrap();
        m.set("currency_default", "eur").unwrap();
        assert_eq!(
            (m.date.as_deref(), m.amount_sign, m.currency_default.as_deref()),
            (Some("Posted On"), AmountSign::PurchasesNegative, Some("EUR"))
        );
        assert!(m.set("dtae", "x").unwrap_err().reason.starts_with("unknown key"));
        assert!(m.set("amount_sign", "up").is_err());
        assert!(m.set("currency_default", "dollars").is_err());
        assert!(m.set("date", " ").is_err());
        let mut g = GatewayMapping::default();
        g.set("provider_default", "OpenAI").unwrap();
        assert_eq!(g.provider_default.as_deref(), Some("openai"));
        assert!(g.set("amount", "x").is_err());
    }
}
